import { Buffer } from 'node:buffer';
import type { Agent } from 'undici';
import { type ClientClock, systemClientClock } from './clock.js';
import { WalshipClientError } from './errors.js';
import { createAgent, type ExchangeResult, exchange } from './http-exchange.js';

/**
 * Routes SQL reads (`GET /exec`) across a walship cluster by read preference, as GreptimeDB's
 * READ_PREFERENCE (shared/reference/questdb-replication.md):
 *
 * - `primary` (GreptimeDB `leader`): the primary only;
 * - `replica` (`follower`): replicas only; an error when none qualifies;
 * - `replica_preferred` (`follower_preferred`): replicas first, then the primary.
 *
 * Per read it carries the consistency controls of DESIGN §6 to replicas: a commit token
 * (`minTxn`, sent as `X-Walship-Min-Txn`; a replica that cannot reach it in time answers 504) and a
 * staleness bound (`maxStalenessMs`, sent as `max_staleness_ms`; a replica too stale answers 503
 * STALE_REPLICA). Either refusal — and any 503, a network error or a timeout — moves the read to
 * the next candidate. A 400 (bad SQL) or 401/403 fails at once: another node would say the same.
 *
 * Roles come from each node's `GET /status` (`role`, `acceptingWrites`), asked again when they are
 * older than `roleRefreshIntervalMs` and after a 421 or a network error; a primary that does not
 * accept writes (demoted or fenced) is not routed to. Replicas take turns (round robin) so reads
 * spread across them.
 */

export type ReadPreference = 'primary' | 'replica' | 'replica_preferred';

/** What a node is, as last learnt; `unknown` nodes (unreachable, demoted) take no reads. */
export type NodeRole = 'primary' | 'replica' | 'unknown';

export interface RouterNode {
  /** The node's base URL, e.g. `http://10.0.0.5:9000`. */
  url: string;
  /** A role to assume before (or, with `discoverRoles: false`, instead of) asking `/status`. */
  role?: 'primary' | 'replica';
}

export interface ReadRouterOptions {
  /** The nodes, as base URLs or {url, role}; at least one. */
  nodes: readonly (string | RouterNode)[];
  /** The default preference of query(); default `replica_preferred`. */
  preference?: ReadPreference;
  /** The default staleness bound (ms) for replicas; default none. */
  maxStalenessMs?: number;
  /** Ask `/status` again after this many ms; default 5000. */
  roleRefreshIntervalMs?: number;
  /** false: use the roles given and never ask `/status`. Default true. */
  discoverRoles?: boolean;
  /** The most one HTTP request may take, in ms; default 10000. */
  requestTimeoutMs?: number;
  /** Credentials (reads need the same as writes on a secured node). */
  auth?: { username: string; password: string } | { token: string };
  /** TLS for https URLs: verify certificates (default true), PEM CA certificates to trust. */
  tls?: { verify?: boolean; ca?: string | Buffer };
  clock?: ClientClock;
}

export interface QueryOptions {
  preference?: ReadPreference;
  /** A commit token (Sender.lastCommitToken): replicas answer only once they applied it. */
  minTxn?: string | undefined;
  /** Refuse replicas that have not confirmed being caught up within this many ms. */
  maxStalenessMs?: number;
  /** The most a replica waits for `minTxn` / freshness, in ms (its own bound applies too). */
  waitMs?: number;
  /** QuestDB's `limit` parameter (`10` or `10,20`). */
  limit?: string;
}

/** QuestDB's `/exec` JSON. */
export interface ExecResult {
  query: string;
  columns: { name: string; type: string }[];
  timestamp?: number;
  dataset: unknown[][];
  count: number;
  [key: string]: unknown;
}

/** What a routed read got. */
export interface ReadResult<T = ExecResult> {
  /** The parsed JSON body (numbers beyond 2^53 lose precision, as with any JSON.parse). */
  body: T;
  /** The URL of the node that answered. */
  node: string;
  role: 'primary' | 'replica';
  /** `X-Walship-Applied-Txn` (replicas): what the answer reflects, itself a valid commit token. */
  appliedTxn: string | undefined;
  /** `X-Walship-Staleness-Ms` (replicas); null for `unknown`, undefined when absent. */
  stalenessMs: number | null | undefined;
  /** The candidates that were tried and refused before this one. */
  skipped: ReadAttempt[];
}

export interface ReadAttempt {
  node: string;
  /** `503 STALE_REPLICA`, `504 MIN_TXN_TIMEOUT`, `connection refused (ECONNREFUSED)`, … */
  answer: string;
}

export interface NodeState {
  url: string;
  role: NodeRole;
  /** Why the role is unknown, or what /status last said. */
  note: string;
}

/** Nodes one router knows. */
export const ROUTER_NODES_MAX = 256;
/** Characters of SQL a result or error repeats. */
const SHOWN_SQL_MAX_CHARS = 200;

export class ReadRouter {
  readonly #nodes: { url: string; role: NodeRole; note: string }[];
  readonly #preference: ReadPreference;
  readonly #maxStalenessMs: number | undefined;
  readonly #refreshIntervalMs: number;
  readonly #discover: boolean;
  readonly #timeoutMs: number;
  readonly #headers: Record<string, string>;
  readonly #clock: ClientClock;
  readonly #agent: Agent;
  #refreshedAtMs: number | undefined;
  #refreshing: Promise<void> | undefined;
  #nextReplica = 0;
  #closed = false;

  constructor(options: ReadRouterOptions) {
    if (options.nodes.length === 0 || options.nodes.length > ROUTER_NODES_MAX) {
      throw invalid(`a ReadRouter needs 1..${ROUTER_NODES_MAX} nodes, not ${options.nodes.length}`);
    }
    this.#nodes = options.nodes.map((node) => {
      const spec = typeof node === 'string' ? { url: node } : node;
      return { url: normalizeUrl(spec.url), role: spec.role ?? 'unknown', note: 'not asked yet' };
    });
    this.#preference = checkPreference(options.preference ?? 'replica_preferred');
    this.#maxStalenessMs = options.maxStalenessMs;
    this.#refreshIntervalMs = options.roleRefreshIntervalMs ?? 5_000;
    this.#discover = options.discoverRoles ?? true;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#headers = authHeaders(options.auth);
    this.#clock = options.clock ?? systemClientClock;
    this.#agent = createAgent({
      tlsVerify: options.tls?.verify ?? true,
      ca: options.tls?.ca,
      connectTimeoutMs: this.#timeoutMs,
    });
  }

  /** What the router believes about each node now. */
  get nodes(): NodeState[] {
    return this.#nodes.map((n) => ({ ...n }));
  }

  /** Asks every node's `/status` now (concurrent callers share one round). */
  refreshRoles(): Promise<void> {
    this.#refreshing ??= this.#refreshAll().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /**
   * Runs `sql` on a node chosen by the preference; see the file comment. Rejects with
   * READ_REJECTED (the node refused the SQL or the credentials) or NO_NODE_FOR_READ (none qualified,
   * or every candidate refused — the error lists what each answered).
   */
  async query<T = ExecResult>(sql: string, options: QueryOptions = {}): Promise<ReadResult<T>> {
    if (this.#closed) throw new WalshipClientError('CLOSED', 'closed', 'the read router is closed');
    const preference = checkPreference(options.preference ?? this.#preference);
    await this.#refreshIfDue();
    const first = await this.#tryCandidates<T>(sql, preference, options);
    if (first.result !== undefined) return first.result;
    // A 421 or a network error may mean a promotion: learn the roles again and try once more.
    if (first.rolesSuspect && this.#discover) {
      await this.refreshRoles();
      const second = await this.#tryCandidates<T>(sql, preference, options);
      if (second.result !== undefined) return second.result;
      throw noNode(sql, preference, [...first.skipped, ...second.skipped]);
    }
    throw noNode(sql, preference, first.skipped);
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#refreshing?.catch(() => {});
    await this.#agent.close();
  }

  async #refreshIfDue(): Promise<void> {
    if (!this.#discover) return;
    const due =
      this.#refreshedAtMs === undefined ||
      this.#clock.monotonicMs() - this.#refreshedAtMs >= this.#refreshIntervalMs;
    if (due) await this.refreshRoles();
  }

  async #refreshAll(): Promise<void> {
    await Promise.all(this.#nodes.map((node) => this.#refreshNode(node)));
    this.#refreshedAtMs = this.#clock.monotonicMs();
  }

  async #refreshNode(node: { url: string; role: NodeRole; note: string }): Promise<void> {
    const result = await exchange(this.#agent, `${node.url}/status`, {
      method: 'GET',
      headers: this.#headers,
      timeoutMs: this.#timeoutMs,
    });
    if (result.kind === 'network') {
      node.role = 'unknown';
      node.note = `/status: ${result.answer}`;
      return;
    }
    const status = result.status === 200 ? parseJson(result.body) : undefined;
    const learnt = roleOfStatus(status);
    node.role = learnt.role;
    node.note = result.status === 200 ? learnt.note : `/status answered ${result.status}`;
  }

  /** The nodes to try, in order, for `preference`. */
  #candidates(preference: ReadPreference): { url: string; role: 'primary' | 'replica' }[] {
    const primaries = this.#nodes.filter((n) => n.role === 'primary') as { url: string; role: 'primary' }[];
    const replicas = this.#nodes.filter((n) => n.role === 'replica') as { url: string; role: 'replica' }[];
    const start = replicas.length === 0 ? 0 : this.#nextReplica++ % replicas.length;
    const rotated = [...replicas.slice(start), ...replicas.slice(0, start)];
    if (preference === 'primary') return primaries;
    if (preference === 'replica') return rotated;
    return [...rotated, ...primaries];
  }

  async #tryCandidates<T>(
    sql: string,
    preference: ReadPreference,
    options: QueryOptions,
  ): Promise<{ result?: ReadResult<T>; skipped: ReadAttempt[]; rolesSuspect: boolean }> {
    const skipped: ReadAttempt[] = [];
    let rolesSuspect = false;
    for (const candidate of this.#candidates(preference)) {
      const answer = await this.#read(candidate, sql, options);
      if (answer.kind === 'network') {
        rolesSuspect = true;
        this.#markSuspect(candidate.url, answer.answer);
        skipped.push({ node: candidate.url, answer: answer.answer });
        continue;
      }
      if (answer.status === 200) {
        return { result: resultOf<T>(candidate, answer, sql, skipped), skipped, rolesSuspect };
      }
      if (answer.status === 400 || answer.status === 401 || answer.status === 403) {
        throw rejected(sql, candidate.url, answer);
      }
      if (answer.status === 421) {
        rolesSuspect = true;
        this.#markSuspect(candidate.url, '421');
      }
      skipped.push({ node: candidate.url, answer: describeRefusal(answer) });
    }
    return { skipped, rolesSuspect };
  }

  #read(
    candidate: { url: string; role: 'primary' | 'replica' },
    sql: string,
    options: QueryOptions,
  ): Promise<ExchangeResult> {
    const params = new URLSearchParams({ query: sql });
    if (options.limit !== undefined) params.set('limit', options.limit);
    const headers = { ...this.#headers };
    if (candidate.role === 'replica') {
      // The primary has every committed txn and is never stale: these only concern replicas.
      const maxStalenessMs = options.maxStalenessMs ?? this.#maxStalenessMs;
      if (maxStalenessMs !== undefined)
        params.set('max_staleness_ms', String(Math.max(0, Math.floor(maxStalenessMs))));
      if (options.waitMs !== undefined)
        params.set('wait_ms', String(Math.max(0, Math.floor(options.waitMs))));
      if (options.minTxn !== undefined && options.minTxn !== '')
        headers['x-walship-min-txn'] = options.minTxn;
    }
    return exchange(this.#agent, `${candidate.url}/exec?${params}`, {
      method: 'GET',
      headers,
      timeoutMs: this.#timeoutMs,
    });
  }

  /** A node that refused or vanished: its role is asked again before the next read. */
  #markSuspect(url: string, why: string): void {
    const node = this.#nodes.find((n) => n.url === url);
    if (node !== undefined) node.note = `suspect after ${why}`;
    this.#refreshedAtMs = undefined;
  }
}

function resultOf<T>(
  candidate: { url: string; role: 'primary' | 'replica' },
  answer: Extract<ExchangeResult, { kind: 'response' }>,
  sql: string,
  skipped: ReadAttempt[],
): ReadResult<T> {
  const body = parseJson(answer.body);
  if (body === undefined) {
    throw new WalshipClientError(
      'NO_NODE_FOR_READ',
      'unavailable',
      `${candidate.url} answered ${shownSql(sql)} with a body that is not JSON`,
      { details: { node: candidate.url } },
    );
  }
  const staleness = answer.headers['x-walship-staleness-ms'];
  return {
    body: body as T,
    node: candidate.url,
    role: candidate.role,
    appliedTxn: answer.headers['x-walship-applied-txn'] || undefined,
    stalenessMs: staleness === undefined ? undefined : staleness === 'unknown' ? null : Number(staleness),
    skipped,
  };
}

/** The role a `/status` body states. */
function roleOfStatus(status: unknown): { role: NodeRole; note: string } {
  if (status === null || typeof status !== 'object')
    return { role: 'unknown', note: '/status is not a JSON object' };
  const { role, acceptingWrites } = status as { role?: unknown; acceptingWrites?: unknown };
  if (role === 'replica') return { role: 'replica', note: 'replica' };
  if (role === 'primary' && acceptingWrites !== false) return { role: 'primary', note: 'primary' };
  if (role === 'primary')
    return { role: 'unknown', note: 'primary not accepting writes (demoted or fenced)' };
  return { role: 'unknown', note: `/status role ${JSON.stringify(role)}` };
}

/** `503 STALE_REPLICA: …`, `504 MIN_TXN_TIMEOUT: …` or `<status>: <error>`. */
function describeRefusal(answer: Extract<ExchangeResult, { kind: 'response' }>): string {
  const error = errorText(answer.body);
  let code = '';
  // QuestDB's error body has no code field; walship's messages name the bound they refer to.
  if (answer.status === 503 && error.includes('max_staleness_ms')) code = ' STALE_REPLICA';
  if (answer.status === 504) code = ' MIN_TXN_TIMEOUT';
  return `${answer.status}${code}${error === '' ? '' : `: ${error.slice(0, 300)}`}`;
}

function errorText(body: string): string {
  const parsed = parseJson(body) as { error?: unknown } | undefined;
  return typeof parsed?.error === 'string' ? parsed.error : body.slice(0, 300);
}

function rejected(
  sql: string,
  url: string,
  answer: Extract<ExchangeResult, { kind: 'response' }>,
): WalshipClientError {
  const parsed = parseJson(answer.body) as { error?: unknown; position?: unknown } | undefined;
  return new WalshipClientError(
    'READ_REJECTED',
    'invalid',
    `${url} refused ${shownSql(sql)} with HTTP ${answer.status}: ${errorText(answer.body)}`,
    {
      details: {
        node: url,
        status: answer.status,
        ...(typeof parsed?.position === 'number' ? { position: parsed.position } : {}),
      },
    },
  );
}

function noNode(sql: string, preference: ReadPreference, skipped: ReadAttempt[]): WalshipClientError {
  const tried =
    skipped.length === 0
      ? preference === 'primary'
        ? 'no node is known as a writable primary'
        : preference === 'replica'
          ? 'no node is known as a replica'
          : 'no node is known as a replica or primary'
      : `tried ${skipped.map((s) => `${s.node} (${s.answer})`).join('; ')}`;
  return new WalshipClientError(
    'NO_NODE_FOR_READ',
    'unavailable',
    `no node answered ${shownSql(sql)} with read preference ${preference}: ${tried}`,
    { details: { preference, skipped } },
  );
}

function checkPreference(preference: ReadPreference): ReadPreference {
  if (preference === 'primary' || preference === 'replica' || preference === 'replica_preferred')
    return preference;
  throw invalid(
    `read preference must be primary, replica or replica_preferred, not ${JSON.stringify(preference)}`,
  );
}

function normalizeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`node URL ${JSON.stringify(url)} is not a URL such as http://host:9000`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw invalid(`node URL ${JSON.stringify(url)} must be http:// or https://`);
  }
  return parsed.origin;
}

function authHeaders(auth: ReadRouterOptions['auth']): Record<string, string> {
  if (auth === undefined) return {};
  if ('token' in auth) return { authorization: `Bearer ${auth.token}` };
  return {
    authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`, 'utf8').toString('base64')}`,
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function shownSql(sql: string): string {
  return JSON.stringify(sql.length <= SHOWN_SQL_MAX_CHARS ? sql : `${sql.slice(0, SHOWN_SQL_MAX_CHARS)}…`);
}

function invalid(message: string): WalshipClientError {
  return new WalshipClientError('INVALID_ARGUMENT', 'invalid', message);
}
