/**
 * The cluster as one node sees it, for its status page (`GET /status/cluster`, issue 19): every
 * node registered in the store (`nodes/<id>.json`, node-registry.ts), each looked at through its
 * own `/status`, and this node from its own status at the moment of the answer.
 *
 * Cost: the view is built only while someone asks, at most once per `refreshMs` however many
 * pages poll (one LIST of `nodes/` and a GET per registration, then one `/status` GET per peer,
 * PEER_REQUESTS_IN_FLIGHT_MAX at a time, each within PEER_STATUS_TIMEOUT_MS). An answer never
 * waits for a refresh but the first, and that one for at most FIRST_REFRESH_WAIT_MS: it is the
 * view as last refreshed, which is what a page that polls every second needs.
 */
import type { Clock, ClusterStatus, ClusterStatusNode } from '../core/index.js';
import { listNodeRegistrations, type NodeRegistrationRecord } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { sampleOf } from './node-activity.js';

// --- Bounds (STYLE rule 7) ---

/** The view is rebuilt at most this often (ms): a store LIST per this, not per page poll. */
export const CLUSTER_REFRESH_MS = 5_000;
/** One peer's `/status` may take this long (ms) before it counts as unreachable this round. */
export const PEER_STATUS_TIMEOUT_MS = 1_500;
/** Peers' `/status` requests in flight at once. */
export const PEER_REQUESTS_IN_FLIGHT_MAX = 4;
/** Nodes shown: a cluster has a handful; registrations beyond this are counted in `note`. */
export const CLUSTER_NODES_MAX = 64;
/** Bytes of one peer's `/status` read (10 000 tables at ~300 bytes fit); a longer answer is an error. */
export const PEER_STATUS_BYTES_MAX = 8 * 1024 * 1024;
/** The first answer waits this long (ms) for the first refresh, then answers with this node alone. */
export const FIRST_REFRESH_WAIT_MS = 2_000;

/** What a node's `/status` JSON says for the cluster view. Pure. */
export interface StatusSummary {
  nodeId: string | null;
  role: string;
  epoch: string | null;
  appliedEpoch: string | null;
  acceptingWrites: boolean | null;
  lagMs: number | null;
  backlogTxns: number | null;
}

/** Reads `<url>/status` as JSON; rejects when it cannot (tests pass their own). */
export type PeerStatusReader = (url: string, signal: AbortSignal) => Promise<unknown>;

export interface ClusterStatusSourceOptions {
  store: ObjectStore;
  clock: Clock;
  /** This node's id (undefined before a role first ran). */
  nodeId: () => string | undefined;
  /** This node's URL. */
  url: () => string;
  /** This node's `/status` JSON now; may throw while a role closes (its row then says `switching`). */
  status: () => Record<string, unknown>;
  /** Default CLUSTER_REFRESH_MS. */
  refreshMs?: number;
  /** Default: `fetch` within PEER_STATUS_TIMEOUT_MS, at most PEER_STATUS_BYTES_MAX. */
  readStatus?: PeerStatusReader;
}

/** A registered peer as last looked at. */
interface Peer {
  record: NodeRegistrationRecord;
  /** When the store last saw the registration written (its wall clock). */
  registeredAtMs: number;
  /** Its last `/status` that answered, and when (monotonic ms); null when it never did. */
  summary: StatusSummary | null;
  seenAtMs: number | null;
  error: string | null;
}

interface View {
  /** Registered nodes in node id order, this node among them when it is registered. */
  peers: Peer[];
  refreshedAtMs: number;
  storeError: string | null;
  note: string | null;
}

export class ClusterStatusSource {
  readonly #options: ClusterStatusSourceOptions;
  readonly #refreshMs: number;
  readonly #readStatus: PeerStatusReader;
  readonly #closing = new AbortController();
  #view: View | null = null;
  #refreshing: Promise<void> | undefined;

  constructor(options: ClusterStatusSourceOptions) {
    this.#options = options;
    this.#refreshMs = options.refreshMs ?? CLUSTER_REFRESH_MS;
    this.#readStatus = options.readStatus ?? readPeerStatus;
  }

  /** `GET /status/cluster`: the view as last refreshed, a refresh started when it is older than `refreshMs`. */
  async current(): Promise<ClusterStatus> {
    const { clock } = this.#options;
    if (this.#view === null) {
      const waited = new AbortController();
      await Promise.race([
        this.#refresh(),
        clock.sleep(FIRST_REFRESH_WAIT_MS, waited.signal).catch(() => {}),
      ]);
      waited.abort();
    } else if (clock.monotonicMs() - this.#view.refreshedAtMs >= this.#refreshMs) {
      void this.#refresh();
    }
    return this.#body();
  }

  /** Aborts a refresh in flight; later calls answer the last view without refreshing. Idempotent. */
  close(): void {
    this.#closing.abort();
  }

  /** One refresh at a time; never rejects (a failure is the view's `storeError` or a peer's `error`). */
  #refresh(): Promise<void> {
    if (this.#closing.signal.aborted) return Promise.resolve();
    this.#refreshing ??= this.#refreshOnce().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refreshOnce(): Promise<void> {
    const { store, clock } = this.#options;
    const known = new Map((this.#view?.peers ?? []).map((p) => [p.record.nodeId, p]));
    let peers = this.#view?.peers ?? [];
    let storeError: string | null = null;
    let note: string | null = null;
    try {
      const listing = await listNodeRegistrations(store, { signal: this.#closing.signal });
      peers = listing.nodes.slice(0, CLUSTER_NODES_MAX).map(({ record, modifiedAtMs }) => {
        const before = known.get(record.nodeId);
        return {
          record,
          registeredAtMs: modifiedAtMs,
          summary: before?.summary ?? null,
          seenAtMs: before?.seenAtMs ?? null,
          error: before?.error ?? null,
        };
      });
      note = listingNote(listing.nodes.length, listing.unreadable.length, listing.truncated);
    } catch (error) {
      storeError = (error as Error).message;
    }
    const selfId = this.#options.nodeId();
    await eachAtMost(
      peers.filter((p) => p.record.nodeId !== selfId),
      PEER_REQUESTS_IN_FLIGHT_MAX,
      (peer) => this.#look(peer),
    );
    this.#view = { peers, refreshedAtMs: clock.monotonicMs(), storeError, note };
  }

  async #look(peer: Peer): Promise<void> {
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(PEER_STATUS_TIMEOUT_MS)]);
    try {
      peer.summary = summariseStatus(await this.#readStatus(peer.record.url, signal));
      peer.seenAtMs = this.#options.clock.monotonicMs();
      peer.error = null;
    } catch (error) {
      peer.error = `/status: ${describeError(error)}`;
    }
  }

  #selfStatus(): Record<string, unknown> {
    try {
      return this.#options.status();
    } catch {
      return { role: 'switching' };
    }
  }

  #body(): ClusterStatus {
    const { clock } = this.#options;
    const nowMs = clock.monotonicMs();
    const wallMs = clock.wallMs();
    const selfId = this.#options.nodeId();
    const summary = summariseStatus(this.#selfStatus());
    const view = this.#view;
    const selfRow = (registeredAtMs: number | null): ClusterStatusNode => ({
      ...summary,
      nodeId: selfId ?? summary.nodeId,
      url: this.#options.url(),
      lastSeenAgoMs: 0,
      registeredAgoMs: registeredAtMs === null ? null : Math.max(0, Math.round(wallMs - registeredAtMs)),
      self: true,
      error: null,
    });
    const nodes = (view?.peers ?? []).map((peer) =>
      peer.record.nodeId === selfId ? selfRow(peer.registeredAtMs) : peerRow(peer, nowMs, wallMs),
    );
    if (!nodes.some((n) => n.self)) nodes.unshift(selfRow(null));
    const note =
      view === null
        ? 'the store has not answered yet'
        : view.peers.length === 0 && view.storeError === null
          ? 'no node is registered in the store (replication.node.register.interval = 0?): this node alone'
          : view.note;
    return {
      from: 'store registrations',
      refreshedAgoMs: view === null ? null : Math.round(nowMs - view.refreshedAtMs),
      primary: null,
      nodes,
      storeError: view?.storeError ?? null,
      note,
    };
  }
}

/** A peer's row: its last `/status` when it answered, else what its registration says. */
function peerRow(peer: Peer, nowMs: number, wallMs: number): ClusterStatusNode {
  const { record, summary, seenAtMs } = peer;
  const sinceSeenMs = seenAtMs === null ? null : Math.round(nowMs - seenAtMs);
  // A replica's staleness grows with the age of the answer; a primary's backlog age is as it said.
  const lagMs =
    summary === null || summary.lagMs === null || sinceSeenMs === null
      ? null
      : summary.role === 'replica'
        ? summary.lagMs + sinceSeenMs
        : summary.lagMs;
  return {
    nodeId: record.nodeId,
    url: record.url,
    role: peer.error === null ? (summary?.role ?? record.role) : 'unreachable',
    epoch: summary === null ? record.epoch : summary.epoch,
    appliedEpoch: summary?.appliedEpoch ?? null,
    acceptingWrites: peer.error === null ? (summary?.acceptingWrites ?? null) : false,
    lagMs,
    backlogTxns: summary?.backlogTxns ?? null,
    lastSeenAgoMs: sinceSeenMs,
    registeredAgoMs: Math.max(0, Math.round(wallMs - peer.registeredAtMs)),
    self: false,
    error: peer.error,
  };
}

/** What a `/status` JSON says about the node, for one row of the view. Pure. */
export function summariseStatus(body: unknown): StatusSummary {
  const status = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const sample = sampleOf(status, 0);
  const role = typeof status.role === 'string' ? status.role : 'unknown';
  return {
    nodeId: typeof status.nodeId === 'string' ? status.nodeId : null,
    role,
    epoch: typeof status.epoch === 'string' && /^\d{1,20}$/.test(status.epoch) ? status.epoch : null,
    appliedEpoch: role === 'replica' ? newestEpochOf(status.tables) : null,
    acceptingWrites: typeof status.acceptingWrites === 'boolean' ? status.acceptingWrites : null,
    lagMs: sample.lagMs,
    backlogTxns: role === 'replica' ? sample.txnsBehind : role === 'primary' ? sample.pendingTxns : null,
  };
}

/** The newest `epoch` among a replica's tables (decimal strings), null when none says. */
function newestEpochOf(tables: unknown): string | null {
  let newest: bigint | null = null;
  for (const table of Array.isArray(tables) ? tables : []) {
    const epoch = (table as { epoch?: unknown } | null)?.epoch;
    if (typeof epoch !== 'string' || !/^\d{1,20}$/.test(epoch)) continue;
    if (newest === null || BigInt(epoch) > newest) newest = BigInt(epoch);
  }
  return newest === null ? null : newest.toString();
}

function listingNote(read: number, unreadable: number, truncated: boolean): string | null {
  const notes: string[] = [];
  if (read > CLUSTER_NODES_MAX) notes.push(`${read} nodes registered; the first ${CLUSTER_NODES_MAX} shown`);
  if (truncated) notes.push('more registrations than a listing reads');
  if (unreadable > 0)
    notes.push(`${unreadable} unreadable registration(s) under nodes/ (walship status --store)`);
  return notes.length === 0 ? null : notes.join('; ');
}

/** Runs `step` over `items`, at most `limit` at a time. */
async function eachAtMost<T>(
  items: readonly T[],
  limit: number,
  step: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await step(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** `GET <url>/status` with `fetch`: 200 and JSON within PEER_STATUS_BYTES_MAX, or a rejection. */
export async function readPeerStatus(url: string, signal: AbortSignal): Promise<unknown> {
  const response = await fetch(new URL('/status', url), { signal, headers: { accept: 'application/json' } });
  if (response.status !== 200 || response.body === null) {
    await response.body?.cancel();
    throw new Error(`answered HTTP ${response.status}`);
  }
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of response.body) {
    bytes += chunk.byteLength;
    if (bytes > PEER_STATUS_BYTES_MAX) {
      await response.body.cancel().catch(() => {});
      throw new Error(`answer longer than ${PEER_STATUS_BYTES_MAX} bytes`);
    }
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** A failed look in words: `no answer in time`, `connection refused (ECONNREFUSED)`, … */
function describeError(error: unknown): string {
  const e = error as { name?: string; message?: string; cause?: { code?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'no answer in time';
  const code = e.cause?.code;
  return code === undefined ? (e.message ?? String(error)) : `${e.message ?? 'network error'} (${code})`;
}
