import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { type Clock, isoTime, systemClock, type Timer } from '../core/index.js';
import { listNodeRegistrations, newestEpoch } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { QueryTables } from './sql-tables.js';

/**
 * What a router believes about its cluster: who takes writes, what each node serves and how fresh.
 * It is a cache, rebuilt every `refreshIntervalMs` (`router.refresh.interval`) and at once when a
 * forwarded request met a 421 or a dead node — a router holds no other state, so several can run
 * side by side and agree as soon as each has refreshed.
 *
 * One refresh:
 * 1. the node URLs: `router.nodes` when given, else the URLs of the registrations in the store
 *    (`nodes/*.json`, re-listed at most every REGISTRATIONS_REFRESH_MS) plus the URL of the newest
 *    epoch record, so a node promoted since is reached before its registration is read;
 * 2. the store's newest epoch record (`epochs/<n>.json`: one LIST and one GET);
 * 3. every node's `GET /status`, concurrently, each within STATUS_TIMEOUT_MS.
 *
 * The primary is the node the newest epoch record names, once its own /status says it is a primary
 * that accepts writes; a node claiming an older epoch is never chosen (a deposed primary that has
 * not noticed yet), one claiming a newer epoch than the record read is (the record was read just
 * before a promotion). In a sequenced cluster (RFC-0003) every writer accepting writes is a write
 * target. Without a store (tests) the accepting primary with the highest epoch is chosen.
 */

// --- Bounds (STYLE rule 7) ---

/** Nodes one router follows: a cluster has a handful; registrations beyond this are ignored. */
export const VIEW_NODES_MAX = 256;
/** One `/status` request may take this long before the node counts as unreachable this round. */
export const STATUS_TIMEOUT_MS = 2_000;
/** Bytes of one `/status` answer read (10 000 tables at ~300 bytes fit). */
const STATUS_BODY_MAX_BYTES = 8 * 1024 * 1024;
/** Registrations are listed again at most this often (they change at a node's start and role changes). */
export const REGISTRATIONS_REFRESH_MS = 10_000;
/**
 * Replicas within this many ms of the least stale one count as equally fresh and take turns. An
 * idle replica's staleness grows until its next sweep (`replication.replica.sweep.interval`, 30 s
 * by default) although it holds everything: a finer tie would send every read to whichever
 * replica swept last. A read's own `max_staleness_ms` is enforced by the replica (503 → next).
 */
export const STALENESS_TIE_MS = 30_000;

export type ViewRole = 'primary' | 'replica' | 'switching' | 'unreachable' | 'unknown';

export interface TableView {
  name: string;
  /** The table's store key (commit tokens name keys), null when /status did not say. */
  key: string | null;
  /** A primary's committed txn. */
  committedTxn: string | null;
  /** A replica's applied txn. */
  appliedTxn: string | null;
  /** How far a replica knows it is behind the store. */
  txnsBehind: string | null;
  suspended: boolean;
}

export interface NodeView {
  url: string;
  nodeId: string | null;
  role: ViewRole;
  /** A primary's epoch (decimal), null otherwise. */
  epoch: string | null;
  acceptingWrites: boolean;
  /** A writer of a sequenced cluster (RFC-0003): one of several that take writes. */
  sequenced: boolean;
  /**
   * False for a replica of chosen tables (`servedTables` in /status, replica/table-filter.ts, is
   * not include `*` without exclusions): it never qualifies for a query of "all tables".
   */
  servesAll: boolean;
  /** False once a replica's follower stopped for good. */
  following: boolean;
  /** The replica's `stalenessMs` when /status was read; null when unknown (or a primary). */
  stalenessMs: number | null;
  tables: TableView[];
  /** Monotonic ms of the last /status answered, null when never. */
  seenAtMs: number | null;
  /** Wall time of the same, ISO 8601. */
  lastSeenAt: string | null;
  /** Why the last /status failed; null when it was answered. */
  error: string | null;
}

/** The facts of `epochs/<n>.json` the router uses. */
export interface EpochFacts {
  epoch: bigint;
  nodeId: string;
  url: string;
  reason: string;
  at: string;
}

export interface PrimaryChoice {
  /** Where writes go now; null when no node qualifies (a switchover or failover in progress). */
  url: string | null;
  nodeId: string | null;
  epoch: string | null;
  /** Every write target: the primary, or every writer of a sequenced cluster. */
  writers: string[];
  /** Why, in words, for `/cluster` and error messages. */
  why: string;
}

export interface ClusterSnapshot {
  nodes: NodeView[];
  primary: PrimaryChoice;
  epochRecord: EpochFacts | null;
  /** Monotonic ms when this was built; null before the first refresh. */
  refreshedAtMs: number | null;
  /** The store's last error (epochs or registrations), null when it answered. */
  storeError: string | null;
  /** Where the node list came from. */
  nodesFrom: 'router.nodes' | 'store registrations';
}

/** One read candidate, in the order to try. */
export interface ReadCandidate {
  url: string;
  nodeId: string | null;
  role: 'primary' | 'replica';
  /** Estimated staleness now (ms), null when unknown or a primary. */
  stalenessMs: number | null;
}

/** A node that could not take a read, and why (for NO_REPLICA). */
export interface Excluded {
  node: string;
  why: string;
}

export interface ClusterViewOptions {
  /** `router.nodes`: base URLs; undefined = the nodes registered in `store`. */
  nodes?: readonly string[] | undefined;
  /** The cluster's store: epoch records (and registrations without `nodes`). */
  store?: ObjectStore | undefined;
  refreshIntervalMs: number;
  log: Logger;
  clock?: Clock;
  statusTimeoutMs?: number;
}

export class ClusterView {
  readonly #options: ClusterViewOptions;
  readonly #clock: Clock;
  readonly #agent = new Agent({ keepAliveTimeout: 30_000, pipelining: 1 });
  readonly #nodes = new Map<string, NodeView>();
  #registered: string[] = [];
  #registeredAtMs: number | undefined;
  #snapshot: ClusterSnapshot;
  #refreshing: Promise<void> | undefined;
  #timer: Timer | undefined;
  #readTurn = 0;
  #writeTurn = 0;
  readonly #suspects = new Set<string>();
  #closed = false;

  constructor(options: ClusterViewOptions) {
    if (options.nodes === undefined && options.store === undefined)
      throw new Error('a ClusterView needs router.nodes or a store to find the nodes');
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    for (const url of options.nodes ?? []) this.#nodeFor(normalizeUrl(url));
    this.#snapshot = {
      nodes: [],
      primary: { url: null, nodeId: null, epoch: null, writers: [], why: 'not refreshed yet' },
      epochRecord: null,
      refreshedAtMs: null,
      storeError: null,
      nodesFrom: options.nodes === undefined ? 'store registrations' : 'router.nodes',
    };
  }

  /** The view as of the last refresh (plus suspicions noted since). */
  get snapshot(): ClusterSnapshot {
    return this.#snapshot;
  }

  /** Refreshes once now, then every refreshIntervalMs (an unref'ed timer). */
  async start(): Promise<void> {
    await this.refresh();
    this.#schedule();
  }

  /** Rebuilds the view now; concurrent callers share one round. Never rejects. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refreshOnce()
      .catch((error: unknown) => {
        this.#options.log.warn({ err: (error as Error).message }, 'router: refresh failed');
      })
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }

  /** A node that answered 421 or vanished: no writes or reads go to it until the next refresh. */
  markSuspect(url: string): void {
    this.#suspects.add(url);
  }

  /** Every node that takes writes now, suspects left out. */
  writeTargets(): string[] {
    return this.#snapshot.primary.writers.filter((url) => !this.#suspects.has(url));
  }

  /** Where the next write goes, or null; several writers of a sequenced cluster take turns. */
  writeTarget(): string | null {
    const writers = this.writeTargets();
    if (writers.length === 0) return null;
    return writers[this.#writeTurn++ % writers.length]!;
  }

  /** The replicas that serve `tables` (least stale first, equals in turn) and the primary. */
  readCandidates(tables: QueryTables): {
    replicas: ReadCandidate[];
    primary: ReadCandidate | null;
    excluded: Excluded[];
  } {
    const nodes = this.#snapshot.nodes.filter((n) => !this.#suspects.has(n.url));
    const chosen = orderReplicas(nodes, tables, this.#clock.monotonicMs(), this.#readTurn++);
    const excluded = [
      ...chosen.excluded,
      ...[...this.#suspects].map((url) => ({
        node: url,
        why: 'refused or unreachable since the last refresh',
      })),
    ];
    const target = this.writeTarget();
    const node = target === null ? undefined : this.#snapshot.nodes.find((n) => n.url === target);
    const primary: ReadCandidate | null =
      target === null ? null : { url: target, nodeId: node?.nodeId ?? null, role: 'primary', stalenessMs: 0 };
    return { replicas: chosen.replicas, primary, excluded };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    await this.#refreshing;
    await this.#agent.close();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimer(
      this.#options.refreshIntervalMs,
      () => void this.refresh().finally(() => this.#schedule()),
      { unref: true },
    );
  }

  async #refreshOnce(): Promise<void> {
    let storeError: string | null = null;
    let record: EpochFacts | null = this.#snapshot.epochRecord;
    const { store } = this.#options;
    if (store !== undefined) {
      try {
        const newest = await newestEpoch(store);
        record =
          newest === null
            ? null
            : {
                epoch: newest.epoch,
                nodeId: newest.nodeId,
                url: newest.url,
                reason: newest.reason,
                at: newest.at,
              };
        await this.#refreshRegistrations(store);
      } catch (error) {
        storeError = (error as Error).message;
      }
    }
    if (this.#options.nodes === undefined) {
      for (const url of this.#registered) this.#nodeFor(url);
      if (record !== null) this.#nodeFor(normalizeUrl(record.url));
    }
    await Promise.all([...this.#nodes.values()].map((node) => this.#readStatus(node)));
    this.#suspects.clear();
    const nodes = [...this.#nodes.values()].map((n) => ({ ...n }));
    this.#snapshot = {
      nodes,
      primary: choosePrimary(nodes, record),
      epochRecord: record,
      refreshedAtMs: this.#clock.monotonicMs(),
      storeError,
      nodesFrom: this.#snapshot.nodesFrom,
    };
  }

  async #refreshRegistrations(store: ObjectStore): Promise<void> {
    if (this.#options.nodes !== undefined) return;
    const now = this.#clock.monotonicMs();
    if (this.#registeredAtMs !== undefined && now - this.#registeredAtMs < REGISTRATIONS_REFRESH_MS) return;
    const listing = await listNodeRegistrations(store);
    this.#registered = listing.nodes.map((n) => normalizeUrl(n.record.url)).slice(0, VIEW_NODES_MAX);
    this.#registeredAtMs = now;
  }

  #nodeFor(url: string): NodeView {
    const known = this.#nodes.get(url);
    if (known !== undefined) return known;
    const node: NodeView = {
      url,
      nodeId: null,
      role: 'unknown',
      epoch: null,
      acceptingWrites: false,
      sequenced: false,
      servesAll: false,
      following: false,
      stalenessMs: null,
      tables: [],
      seenAtMs: null,
      lastSeenAt: null,
      error: 'not asked yet',
    };
    if (this.#nodes.size < VIEW_NODES_MAX) this.#nodes.set(url, node);
    return node;
  }

  async #readStatus(node: NodeView): Promise<void> {
    const timeoutMs = this.#options.statusTimeoutMs ?? STATUS_TIMEOUT_MS;
    let body: unknown;
    try {
      const response = await request(`${node.url}/status`, {
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await readText(response.body, STATUS_BODY_MAX_BYTES);
      if (response.statusCode !== 200) {
        markUnreachable(node, `/status answered ${response.statusCode}`);
        return;
      }
      body = JSON.parse(text);
    } catch (error) {
      markUnreachable(node, `/status: ${describeError(error)}`);
      return;
    }
    Object.assign(node, parseNodeStatus(node.url, body), {
      seenAtMs: this.#clock.monotonicMs(),
      lastSeenAt: isoTime(this.#clock.wallMs()),
      error: null,
    });
  }
}

function markUnreachable(node: NodeView, why: string): void {
  node.role = 'unreachable';
  node.acceptingWrites = false;
  node.error = why;
}

/** The routing facts of a node's `/status` JSON (primary-node.ts, replica-node.ts, sequenced-roles.ts). Pure. */
export function parseNodeStatus(
  url: string,
  body: unknown,
): Omit<NodeView, 'seenAtMs' | 'lastSeenAt' | 'error'> {
  const s = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const role: ViewRole =
    s.role === 'primary' || s.role === 'replica' || s.role === 'switching' ? s.role : 'unknown';
  const sequenced = typeof s.sequenced === 'object' && s.sequenced !== null;
  const rawTables = Array.isArray(s.tables) ? (s.tables as Record<string, unknown>[]) : [];
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  const txn = (v: unknown) => (typeof v === 'string' && /^\d{1,20}$/.test(v) ? v : null);
  return {
    url,
    nodeId: text(s.nodeId),
    role,
    epoch: txn(s.epoch),
    acceptingWrites: s.acceptingWrites === true,
    sequenced,
    servesAll: servesAllTables(s.servedTables),
    following: s.following === undefined || s.following === true,
    stalenessMs: typeof s.stalenessMs === 'number' ? s.stalenessMs : null,
    tables: rawTables
      .filter((t) => typeof t?.name === 'string')
      .map((t) => ({
        name: t.name as string,
        key: text(t.key),
        committedTxn: txn(t.committedTxn),
        appliedTxn: txn(t.appliedTxn),
        txnsBehind: txn(t.txnsBehind),
        suspended: t.suspended !== undefined && t.suspended !== null,
      })),
  };
}

/** `servedTables` absent (a node without table filters) or `{include: ['*'], exclude: []}`. */
function servesAllTables(served: unknown): boolean {
  if (served === undefined || served === null) return true;
  const { include, exclude } = served as { include?: unknown; exclude?: unknown };
  return Array.isArray(include) && include.includes('*') && (!Array.isArray(exclude) || exclude.length === 0);
}

/** Who takes writes; see the file comment. Pure. */
export function choosePrimary(nodes: readonly NodeView[], record: EpochFacts | null): PrimaryChoice {
  const accepting = nodes.filter((n) => n.role === 'primary' && n.acceptingWrites);
  const writers = accepting.filter((n) => n.sequenced);
  if (writers.length > 0) {
    return {
      url: writers[0]!.url,
      nodeId: writers[0]!.nodeId,
      epoch: null,
      writers: writers.map((n) => n.url),
      why: `sequenced cluster: ${writers.map(nameOf).join(', ')} accept writes (/status)`,
    };
  }
  const chosen = (node: NodeView, why: string): PrimaryChoice => ({
    url: node.url,
    nodeId: node.nodeId,
    epoch: node.epoch,
    writers: [node.url],
    why,
  });
  const byEpochDesc = [...accepting]
    .filter((n) => n.epoch !== null && /^\d+$/.test(n.epoch))
    .sort((a, b) => (BigInt(b.epoch!) > BigInt(a.epoch!) ? 1 : BigInt(b.epoch!) < BigInt(a.epoch!) ? -1 : 0));
  if (record === null) {
    const top = byEpochDesc[0];
    if (top === undefined)
      return {
        url: null,
        nodeId: null,
        epoch: null,
        writers: [],
        why: 'no node says it is a primary accepting writes',
      };
    return chosen(
      top,
      `no epoch record was read; ${nameOf(top)} is the accepting primary with the highest epoch (${top.epoch}) by /status`,
    );
  }
  const named = nodes.find((n) => n.nodeId === record.nodeId);
  if (
    named !== undefined &&
    accepting.includes(named) &&
    (named.epoch === null || BigInt(named.epoch) >= record.epoch)
  ) {
    return chosen(
      named,
      `the newest epoch record (epoch ${record.epoch}, ${record.reason} at ${record.at}) names ${record.nodeId}, and its /status says primary, accepting writes`,
    );
  }
  const newer = byEpochDesc.find((n) => BigInt(n.epoch!) > record.epoch);
  if (newer !== undefined) {
    return chosen(
      newer,
      `${nameOf(newer)}'s /status says primary at epoch ${newer.epoch}, newer than the newest epoch record read (${record.epoch})`,
    );
  }
  const state =
    named === undefined
      ? `is not among the nodes reached (${record.url})`
      : named.role === 'unreachable'
        ? `is unreachable (${named.error})`
        : `says role ${named.role}${named.role === 'primary' ? ', not accepting writes' : ''}`;
  const stale = accepting.filter((n) => n !== named);
  return {
    url: null,
    nodeId: null,
    epoch: null,
    writers: [],
    why:
      `the newest epoch record (epoch ${record.epoch}) names ${record.nodeId}, which ${state}` +
      (stale.length === 0 ? '' : `; ${stale.map(nameOf).join(', ')} claim older epochs and get no writes`),
  };
}

/** The replicas that can answer a read of `tables`, least stale first, rotated among equals. Pure. */
export function orderReplicas(
  nodes: readonly NodeView[],
  tables: QueryTables,
  nowMs: number,
  turn: number,
): { replicas: ReadCandidate[]; excluded: Excluded[] } {
  const all = allTableNames(nodes);
  const excluded: Excluded[] = [];
  const fit: ReadCandidate[] = [];
  for (const node of nodes) {
    if (node.role === 'unreachable' || node.role === 'switching' || node.role === 'unknown') {
      excluded.push({ node: nameOf(node), why: node.error ?? `its /status says role ${node.role}` });
      continue;
    }
    if (node.role !== 'replica') continue;
    if (!node.following) {
      excluded.push({ node: nameOf(node), why: 'its follower stopped' });
      continue;
    }
    if (tables.kind === 'all' && !node.servesAll) {
      excluded.push({
        node: nameOf(node),
        why: `serves chosen tables only, and the query reads all tables (${tables.reason})`,
      });
      continue;
    }
    const served = new Set(node.tables.filter((t) => !t.suspended).map((t) => t.name.toLowerCase()));
    const suspended = new Set(node.tables.filter((t) => t.suspended).map((t) => t.name.toLowerCase()));
    const wanted = tables.kind === 'tables' ? tables.names.map((n) => n.toLowerCase()) : all;
    // A replica that follows every table serves one it has not listed yet: a table created since
    // its last /status (a read-your-writes read then waits there for it), or one that does not
    // exist, which it answers "no such table" for (issue 17 item 5).
    const missing = wanted.filter((name) => (node.servesAll ? suspended.has(name) : !served.has(name)));
    if (missing.length > 0) {
      excluded.push({ node: nameOf(node), why: `does not serve ${missing.slice(0, 5).join(', ')}` });
      continue;
    }
    const stalenessMs =
      node.stalenessMs === null || node.seenAtMs === null ? null : node.stalenessMs + (nowMs - node.seenAtMs);
    fit.push({ url: node.url, nodeId: node.nodeId, role: 'replica', stalenessMs });
  }
  const known = fit.filter((c) => c.stalenessMs !== null).sort((a, b) => a.stalenessMs! - b.stalenessMs!);
  const freshest = known[0]?.stalenessMs ?? 0;
  const tied = known
    .filter((c) => c.stalenessMs! - freshest <= STALENESS_TIE_MS)
    .sort((a, b) => (a.url < b.url ? -1 : 1));
  const start = tied.length === 0 ? 0 : turn % tied.length;
  const replicas = [
    ...tied.slice(start),
    ...tied.slice(0, start),
    ...known.filter((c) => !tied.includes(c)),
    ...fit.filter((c) => c.stalenessMs === null),
  ];
  return { replicas, excluded };
}

/** Every table some node lists (lower case): what "all tables" means for a replica. */
function allTableNames(nodes: readonly NodeView[]): string[] {
  const names = new Set<string>();
  for (const node of nodes) for (const t of node.tables) names.add(t.name.toLowerCase());
  return [...names];
}

export function nameOf(node: Pick<NodeView, 'nodeId' | 'url'>): string {
  return node.nodeId === null ? node.url : `${node.nodeId} (${node.url})`;
}

export function normalizeUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new Error(`node URL ${JSON.stringify(url)} must be http:// or https://`);
  return parsed.origin;
}

/** A network error in words: `connection refused (ECONNREFUSED)`, `timeout`, … */
export function describeError(error: unknown): string {
  const e = error as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'no answer in time';
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  return code === undefined ? (e.message ?? String(error)) : `${e.message ?? 'network error'} (${code})`;
}

/** A response body as text, at most `maxBytes` (the rest is discarded). */
export async function readText(
  body: AsyncIterable<Uint8Array> & { destroy(): unknown },
  maxBytes: number,
): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const room = maxBytes - bytes;
    chunks.push(Buffer.from(chunk.subarray(0, Math.max(0, room))));
    bytes += Math.min(room, chunk.length);
    if (bytes >= maxBytes) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}
