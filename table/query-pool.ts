import {
  type Clock,
  ClosedError,
  deserializeWalshipError,
  InvalidArgumentError,
  InvalidConfigError,
  systemClock,
  type Timer,
  WalshipError,
} from '../core/index.js';
import type { ResultColumn } from './query-format.js';
import { describeExit, type QueryHostExit, QueryHostProcess } from './query-host-process.js';
import type { QueryHostMessage } from './query-host-protocol.js';
import type { PgPage } from './query-pg.js';
import { RespawnBudget } from './query-respawn-budget.js';
import type { QueryOutput, QueryRequest } from './query-runner.js';

/**
 * Serves read queries in query host processes (query-host.ts), each with its own read-only
 * connection to the node's SQLite file, so a slow query never stalls apply or the HTTP server
 * (DESIGN §6 "Serve reads"; child processes rather than threads: RFC-0004).
 *
 * Time limit. better-sqlite3 cannot interrupt a statement (no sqlite3_interrupt nor progress
 * handler), and a thread inside one long SQLite step cannot be stopped either, so at the limit the
 * pool rejects the query with QUERY_TIMEOUT, ends its host with SIGKILL and starts a replacement; the
 * other hosts keep answering meanwhile. This holds for any query, including one that spends minutes
 * in one SQLite step without producing a row (an aggregate over a huge scan, an endless recursive
 * CTE): its CPU, memory and WAL snapshot are released when the kernel ends the process. A killed host
 * is counted in `stats().terminating` until it has exited (normally within milliseconds); should
 * more than `workers` of them linger, replacements wait for one to end, so the pool never has more
 * than 2 × `workers` processes. A host that dies on its own fails its running query and is replaced;
 * replacements are rate-limited (RespawnBudget) so a crash loop cannot spin.
 *
 * Bounds per query (RFC-0004 §6–§8): the statement is judged before it runs and no query can leave a
 * setting behind (a host whose connection changed is replaced); a host's resident memory is bounded
 * by `memoryLimitBytes` (past it the host is killed and the query fails with QUERY_TOO_LARGE); a
 * query waits for a free host at most `maxQueueWaitMs` and only behind `maxQueueLength` others, then
 * fails with QUERY_BUSY, so endless queries on every host cost other readers a quick refusal rather
 * than a hang.
 *
 * Error codes (WalshipError): QUERY_TIMEOUT, QUERY_BUSY, QUERY_ABORTED, QUERY_WORKER_FAILED
 * (unavailable: retry may help); QUERY_INVALID, QUERY_READ_ONLY, QUERY_TOO_LARGE (invalid: change
 * the query; `details.position` is QuestDB's error position); CLOSED; INVALID_ARGUMENT.
 */

/** Options of QueryPool.start; every bound has its unit in its name. */
export interface QueryPoolOptions {
  /** The node's SQLite file. It must exist; hosts open it read-only. */
  databaseFile: string;
  /** Query host processes, each running one query at a time. Default 2, at most 64. */
  workers?: number;
  /** Time limit of a query, from the moment a host starts it. Default 30 000 ms. */
  queryTimeoutMs?: number;
  /** Rows a query may return without a limit (with a limit, the page is cut to this). Default 1 000 000. */
  maxResultRows?: number;
  /** Queries waiting for a host; one more is refused with QUERY_BUSY. Default 256. */
  maxQueueLength?: number;
  /**
   * Longest a query waits for a free host, in ms; then it fails with QUERY_BUSY (`query.queue.wait.max`).
   * Default 5 000.
   */
  maxQueueWaitMs?: number;
  /**
   * Resident memory of one host (SQLite's heap, its temp tables and sorts, the JavaScript heap and
   * buffers), in bytes; a query that takes its host past it fails with QUERY_TOO_LARGE and the host is
   * replaced (`query.memory.limit`). At least 128 MiB (an idle host holds ~60 MiB). Default 1 GiB.
   */
  memoryLimitBytes?: number;
  /** Bound on one rendered result, in UTF-8 bytes. Default 128 MiB. */
  maxResultBytes?: number;
  /**
   * JavaScript heap of each host (`--max-old-space-size`), in MB: a result that outgrows it fails
   * alone with QUERY_TOO_LARGE. Default 512.
   */
  workerHeapMb?: number;
  /** Times queue waits, query time limits and host restarts. Default systemClock. */
  clock?: Clock;
}

/** Per-query options. */
export interface QueryOptions {
  /**
   * The page: row indexes [lo, hi), counted from 0, hi exclusive. Without it every row is returned
   * and more than `maxResultRows` is QUERY_TOO_LARGE; with it the page is cut to `maxResultRows`.
   * (QuestDB's `/exec?limit=lo,hi` is 1-based inclusive, i.e. [lo - 1, hi] here: see parseQuestDbLimit.)
   */
  limit?: readonly [number, number];
  /** Overrides the pool's time limit for this query, in ms. */
  timeoutMs?: number;
  /** Aborting rejects with QUERY_ABORTED; a running query's host is killed and replaced. */
  signal?: AbortSignal;
  /** Count all rows of the result, not only up to the page end (QuestDB's `count=true`). */
  countAll?: boolean;
}

/** Options of exportCsv. */
export interface CsvExportOptions extends QueryOptions {
  /** Write the header line of column names. Default true. */
  header?: boolean;
  /** Field delimiter, one character other than `"`, CR or LF. Default `,`. */
  delimiter?: string;
}

/** A query's answer, ready for QuestDB's `/exec` shape (formatExecJson). */
export interface QueryResult {
  query: string;
  columns: ResultColumn[];
  /** Index of the designated timestamp column in `columns`, or -1. */
  timestampIndex: number;
  /** The page as JSON text `[[…],…]`; int64 values are exact JSON numbers. */
  datasetJson: string;
  /** Rows in the page. */
  rowCount: number;
  /** QuestDB's `count`: rows read up to the page end, or all rows with `countAll` (see QueryOutput). */
  count: number;
}

/** What operators watch. */
export interface QueryPoolStats {
  /** Query hosts ready or running a query. */
  workers: number;
  /** Hosts running a query. */
  busy: number;
  /** Queries waiting for a host. */
  queued: number;
  /** Queries a host answered (rows or a query error). */
  completed: number;
  /** Queries stopped at their time limit. */
  timedOut: number;
  /** Hosts killed by the pool that have not exited yet (normally 0 within milliseconds). */
  terminating: number;
}

/** Process ids of the pool's hosts, for diagnostics and tests (a host killed from outside, say). */
export interface QueryHostPids {
  /** Hosts starting or ready and idle. */
  idle: number[];
  /** Hosts running a query. */
  busy: number[];
  /** Hosts killed by the pool that have not exited yet. */
  terminating: number[];
}

export const QUERY_POOL_DEFAULTS = Object.freeze({
  workers: 2,
  queryTimeoutMs: 30_000,
  maxResultRows: 1_000_000,
  maxQueueLength: 256,
  maxQueueWaitMs: 5_000,
  maxResultBytes: 128 * 1024 * 1024,
  workerHeapMb: 512,
  memoryLimitBytes: 1024 * 1024 * 1024,
});

/** The limits a node's configuration sets beside `workers` and `queryTimeoutMs` (cli/config.ts). */
export type QueryPoolLimits = Pick<
  QueryPoolOptions,
  'maxQueueLength' | 'maxQueueWaitMs' | 'memoryLimitBytes'
>;

/** Longest a new host may take to open the database before it counts as failed, in ms. */
const HOST_START_TIMEOUT_MS = 10_000;
/** Wait before starting a host again after a failed start, in ms. */
const HOST_RESTART_DELAY_MS = 1_000;
/**
 * Replacement hosts that may start at once, then one per HOST_RESPAWN_INTERVAL_MS. A host start costs
 * ~50 ms of CPU (compiled), so a crash loop costs at most ~20 % of one core; normal operation (a few
 * timeouts or aborted queries a second) never waits.
 */
const HOST_RESPAWN_BURST = 8;
const HOST_RESPAWN_INTERVAL_MS = 250;
const MAX_WORKERS = 64;
/** The smallest memoryLimitBytes: an idle host holds ~60 MiB, so less would kill hosts at rest. */
const MIN_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;
/** The longest time limit a timer (setTimeout, under systemClock) can hold, in ms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

type Config = Required<Omit<QueryPoolOptions, 'clock'>> & { clock: Clock };
/**
 * starting → idle ⇄ busy; a killed or dead host's slot goes to `delayed` (waiting for the respawn
 * budget, briefly) or `waiting` (too many killed hosts have not exited) before starting again, and to
 * `failed` when a start failed (retried after HOST_RESTART_DELAY_MS).
 */
type SlotState = 'starting' | 'idle' | 'busy' | 'delayed' | 'waiting' | 'failed';

interface Job {
  id: number;
  request: QueryRequest;
  timeoutMs: number;
  resolve: (output: QueryOutput) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Fires after maxQueueWaitMs while the job waits in the queue. */
  queueTimer: Timer | undefined;
  settled: boolean;
}

interface Slot {
  state: SlotState;
  host: QueryHostProcess | null;
  job: Job | null;
  timer: Timer | null;
}

export class QueryPool {
  private readonly slots: Slot[];
  private readonly queue: Job[] = [];
  /** Every started host until it has exited, so close() can wait for all of them. */
  private readonly hosts = new Set<QueryHostProcess>();
  /** Hosts the pool killed that have not exited yet. */
  private readonly terminating = new Set<QueryHostProcess>();
  private readonly respawns = new RespawnBudget(HOST_RESPAWN_BURST, HOST_RESPAWN_INTERVAL_MS);
  private nextJobId = 1;
  private completed = 0;
  private timedOut = 0;
  private closed = false;
  private lastStartFailure = '';

  private constructor(private readonly config: Config) {
    this.slots = Array.from({ length: config.workers }, () => ({
      state: 'starting',
      host: null,
      job: null,
      timer: null,
    }));
  }

  /**
   * Starts `workers` host processes and resolves once every one has opened the database read-only.
   * Rejects with INVALID_CONFIG for a bad option, QUERY_WORKER_FAILED when the file cannot be opened.
   */
  static async start(options: QueryPoolOptions): Promise<QueryPool> {
    const pool = new QueryPool(resolveConfig(options));
    try {
      await Promise.all(pool.slots.map((slot) => pool.spawn(slot)));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /**
   * Runs one read-only statement and renders its page as `/exec` JSON text. Rejects with the codes
   * in the class comment; never writes, whatever the SQL.
   */
  async query(sql: string, options: QueryOptions = {}): Promise<QueryResult> {
    const output = await this.submit(this.requestOf(sql, 'json', options), options);
    return {
      query: sql,
      columns: output.columns,
      timestampIndex: output.timestampIndex,
      datasetJson: output.body,
      rowCount: output.rowCount,
      count: output.count,
    };
  }

  /**
   * Runs one read-only statement for the PostgreSQL door (pg/): every row up to the pool's row and
   * byte bounds, as a PostgreSQL type per column and canonical text per value (query-pg.ts).
   * `params` binds `$1`… (key `1`…). With `describeOnly` the statement is prepared, not run: its
   * columns come back with no rows. Same errors as query().
   */
  async queryPg(
    sql: string,
    options: QueryOptions & { params?: Record<string, unknown>; describeOnly?: boolean } = {},
  ): Promise<PgPage> {
    const request = this.requestOf(sql, 'pg', options);
    if (options.params !== undefined) request.params = options.params;
    if (options.describeOnly === true) request.describeOnly = true;
    const output = await this.submit(request, options);
    if (output.pg === undefined) {
      throw new WalshipError('QUERY_WORKER_FAILED', 'unavailable', 'the query host answered without a page');
    }
    return output.pg;
  }

  /** Runs one read-only statement and renders it as CSV, QuestDB's `/exp` format. Same errors as query(). */
  async exportCsv(sql: string, options: CsvExportOptions = {}): Promise<string> {
    const output = await this.submit(this.requestOf(sql, 'csv', options), options);
    return output.body;
  }

  /** A snapshot of the pool's counters. */
  stats(): QueryPoolStats {
    return {
      workers: this.slots.filter((s) => s.state === 'idle' || s.state === 'busy').length,
      busy: this.slots.filter((s) => s.state === 'busy').length,
      queued: this.queue.length,
      completed: this.completed,
      timedOut: this.timedOut,
      terminating: this.terminating.size,
    };
  }

  /** The process ids of the hosts now, for diagnostics and tests; all lists empty once close() resolved. */
  hostPids(): QueryHostPids {
    const pidsOf = (hosts: Iterable<QueryHostProcess | null>) =>
      [...hosts].flatMap((host) => (host?.pid === undefined ? [] : [host.pid]));
    return {
      idle: pidsOf(this.slots.filter((s) => s.state !== 'busy').map((s) => s.host)),
      busy: pidsOf(this.slots.filter((s) => s.state === 'busy').map((s) => s.host)),
      terminating: pidsOf(this.terminating),
    };
  }

  /**
   * Rejects waiting and running queries with CLOSED, kills every host (SIGKILL: whatever a host is
   * doing, even inside one SQLite step) and resolves when all of them have exited. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const closedError = () => new ClosedError('the query pool is closed');
      for (const job of this.queue.splice(0)) this.settle(job, closedError());
      for (const slot of this.slots) {
        if (slot.job !== null) this.settle(slot.job, closedError());
        this.clearJob(slot);
        if (slot.host !== null) this.retire(slot, slot.host);
        slot.state = 'failed';
      }
    }
    await Promise.all([...this.hosts].map((host) => host.exited));
  }

  private requestOf(sql: string, format: QueryRequest['format'], options: CsvExportOptions): QueryRequest {
    if (typeof sql !== 'string' || sql.trim() === '') {
      throw new WalshipError('QUERY_INVALID', 'invalid', 'No query text', { details: { position: 0 } });
    }
    const { skip, stop } = pageOf(options.limit, this.config.maxResultRows);
    return {
      sql,
      format,
      skip,
      stop,
      countAll: options.countAll ?? false,
      maxRows: this.config.maxResultRows,
      maxBytes: this.config.maxResultBytes,
      csvHeader: options.header ?? true,
      csvDelimiter: delimiterOf(options.delimiter),
    };
  }

  private submit(request: QueryRequest, options: QueryOptions): Promise<QueryOutput> {
    const timeoutMs = options.timeoutMs ?? this.config.queryTimeoutMs;
    // A timer (setTimeout) fires at once past 2^31 - 1 ms, so that is the longest limit there can be.
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
      throw new InvalidArgumentError(
        `timeoutMs must be an integer in [1, ${MAX_TIMEOUT_MS}] ms, got ${timeoutMs}`,
      );
    }
    if (this.closed) return Promise.reject(new ClosedError('the query pool is closed'));
    if (options.signal?.aborted) return Promise.reject(abortedError(options.signal));
    return new Promise<QueryOutput>((resolve, reject) => {
      const job: Job = {
        id: this.nextJobId++,
        request,
        timeoutMs,
        resolve,
        reject,
        signal: options.signal,
        onAbort: undefined,
        queueTimer: undefined,
        settled: false,
      };
      this.enqueue(job);
    });
  }

  private enqueue(job: Job): void {
    const idle = this.slots.find((s) => s.state === 'idle');
    const unavailable = this.noHostError();
    if (unavailable !== null) {
      this.settle(job, unavailable);
      return;
    }
    if (idle === undefined && this.queue.length >= this.config.maxQueueLength) {
      this.settle(job, busyError(this.config));
      return;
    }
    if (job.signal !== undefined) {
      const signal = job.signal;
      job.onAbort = () => this.abort(job, abortedError(signal));
      signal.addEventListener('abort', job.onAbort, { once: true });
    }
    if (idle !== undefined) {
      this.dispatch(idle, job);
      return;
    }
    this.queue.push(job);
    job.queueTimer = this.config.clock.setTimer(this.config.maxQueueWaitMs, () => this.onQueueWait(job));
  }

  /** A job waited maxQueueWaitMs for a host: it leaves the queue with QUERY_BUSY. */
  private onQueueWait(job: Job): void {
    const queued = this.queue.indexOf(job);
    if (queued < 0) return;
    this.queue.splice(queued, 1);
    this.settle(job, queueWaitError(this.config, this.slots.filter((s) => s.state === 'busy').length));
  }

  private dispatch(slot: Slot, job: Job): void {
    const host = slot.host;
    if (host === null || !host.usable)
      throw new WalshipError('ASSERTION_FAILED', 'internal', 'dispatch to a slot without a usable host');
    job.queueTimer?.cancel();
    job.queueTimer = undefined;
    slot.state = 'busy';
    slot.job = job;
    slot.timer = this.config.clock.setTimer(job.timeoutMs, () => this.onTimeout(slot, job));
    host.run(job.id, job.request);
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      const idle = this.slots.find((s) => s.state === 'idle');
      if (idle === undefined) return;
      const job = this.queue.shift();
      if (job !== undefined) this.dispatch(idle, job);
    }
  }

  private onAnswer(slot: Slot, host: QueryHostProcess, message: AnswerMessage): void {
    const job = slot.job;
    // Answers are matched by host and id: a job that was abandoned (timeout, abort) left with its host.
    if (slot.host !== host || job === null || job.id !== message.id) return;
    this.clearJob(slot);
    this.completed++;
    if (message.type === 'result') this.settle(job, null, message.output);
    else this.settle(job, deserializeWalshipError(message.error));
    if (message.type === 'error' && message.recycle === true) {
      // The query changed its connection (RFC-0004 §6): the host must not serve another query.
      this.retire(slot, host);
      this.replace(slot);
      return;
    }
    slot.state = 'idle';
    this.pump();
  }

  private onTimeout(slot: Slot, job: Job): void {
    if (slot.job !== job) return;
    this.timedOut++;
    this.abandon(slot, timeoutError(job.timeoutMs));
  }

  private abort(job: Job, error: WalshipError): void {
    const queued = this.queue.indexOf(job);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      this.settle(job, error);
      return;
    }
    const slot = this.slots.find((s) => s.job === job);
    if (slot !== undefined) this.abandon(slot, error);
  }

  /** Gives up on the slot's running query: rejects it, kills the host, starts another. */
  private abandon(slot: Slot, error: unknown): void {
    const job = slot.job;
    this.clearJob(slot);
    if (job !== null) this.settle(job, error);
    if (slot.host !== null) this.retire(slot, slot.host);
    this.replace(slot);
  }

  /** Detaches a host from its slot and kills it; it stays in `terminating` until it has exited. */
  private retire(slot: Slot, host: QueryHostProcess): void {
    if (slot.host === host) slot.host = null;
    if (!this.hosts.has(host)) return;
    this.terminating.add(host);
    host.kill();
  }

  /**
   * Starts a replacement host, unless too many killed hosts have not exited yet (`waiting`) or the
   * respawn budget says to wait (`delayed`, then tried again).
   */
  private replace(slot: Slot): void {
    if (this.closed) return;
    if (this.terminating.size > this.config.workers) {
      slot.state = 'waiting';
      this.failQueueIfNoHost();
      return;
    }
    const waitMs = this.respawns.take(this.config.clock.monotonicMs());
    if (waitMs > 0) {
      slot.state = 'delayed';
      this.config.clock.setTimer(
        waitMs,
        () => {
          if (slot.state === 'delayed') this.replace(slot);
        },
        { unref: true },
      );
      return;
    }
    this.spawn(slot).catch((error: unknown) => this.onStartFailed(slot, error));
  }

  private onStartFailed(slot: Slot, error: unknown): void {
    if (this.closed) return;
    slot.state = 'failed';
    this.lastStartFailure = error instanceof Error ? error.message : String(error);
    this.config.clock.setTimer(
      HOST_RESTART_DELAY_MS,
      () => {
        if (slot.state === 'failed') this.replace(slot);
      },
      { unref: true },
    );
    this.failQueueIfNoHost();
  }

  /**
   * Why no host can take a query now (every slot failed to start or waits for killed hosts to exit),
   * or null when one is running, idle, starting or about to start. Queries then fail at once instead
   * of waiting without a bound.
   */
  private noHostError(): WalshipError | null {
    const coming: readonly SlotState[] = ['idle', 'busy', 'starting', 'delayed'];
    if (this.slots.some((s) => coming.includes(s.state))) return null;
    if (this.slots.some((s) => s.state === 'waiting')) {
      return new WalshipError(
        'QUERY_BUSY',
        'unavailable',
        `no query host is free: ${this.terminating.size} stopped query hosts have not exited yet; retry later`,
        { details: { terminating: this.terminating.size, position: 0 } },
      );
    }
    return new WalshipError(
      'QUERY_WORKER_FAILED',
      'unavailable',
      `no query host could start: ${this.lastStartFailure}`,
      { details: { position: 0 } },
    );
  }

  private failQueueIfNoHost(): void {
    const error = this.noHostError();
    if (error !== null) for (const job of this.queue.splice(0)) this.settle(job, error);
  }

  /** Starts a host in `slot`; resolves when it has opened the database. */
  private spawn(slot: Slot): Promise<void> {
    const host: QueryHostProcess = QueryHostProcess.start({
      databaseFile: this.config.databaseFile,
      heapMb: this.config.workerHeapMb,
      memoryLimitBytes: this.config.memoryLimitBytes,
      startTimeoutMs: HOST_START_TIMEOUT_MS,
      clock: this.config.clock,
      onAnswer: (message) => this.onAnswer(slot, host, message),
      onExit: (exit) => this.onExit(slot, host, exit),
    });
    slot.host = host;
    slot.state = 'starting';
    this.hosts.add(host);
    return host.started.then(
      () => this.onStarted(slot, host),
      (error: unknown) => {
        this.retire(slot, host);
        throw error;
      },
    );
  }

  private onStarted(slot: Slot, host: QueryHostProcess): void {
    if (slot.host !== host || this.closed) return;
    slot.state = 'idle';
    this.pump();
  }

  /**
   * A host is gone. If it was still the slot's host once started, it died on its own or was killed
   * from outside: its running query fails and a replacement starts. (One that died while starting is
   * handled by its `started` rejection; one the pool killed was already detached.)
   */
  private onExit(slot: Slot, host: QueryHostProcess, exit: QueryHostExit): void {
    this.hosts.delete(host);
    this.terminating.delete(host);
    if (slot.host === host && slot.state !== 'starting') {
      slot.host = null;
      const job = slot.job;
      this.clearJob(slot);
      if (job !== null) this.settle(job, crashError(exit, this.config));
      this.replace(slot);
    }
    this.releaseWaiting();
  }

  /** After a killed host exits, slots held back by the bound on lingering hosts may start. */
  private releaseWaiting(): void {
    for (const slot of this.slots) if (slot.state === 'waiting') this.replace(slot);
  }

  private clearJob(slot: Slot): void {
    slot.timer?.cancel();
    slot.timer = null;
    slot.job = null;
  }

  /** Resolves or rejects a job exactly once and drops its abort listener. */
  private settle(job: Job, error: unknown, output?: QueryOutput): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort);
    job.queueTimer?.cancel();
    if (error !== null) job.reject(error);
    else if (output !== undefined) job.resolve(output);
  }
}

type AnswerMessage = Extract<QueryHostMessage, { type: 'result' | 'error' }>;

function resolveConfig(options: QueryPoolOptions): Config {
  const config: Config = {
    ...QUERY_POOL_DEFAULTS,
    ...stripUndefined(options),
    databaseFile: options.databaseFile,
    clock: options.clock ?? systemClock,
  };
  if (typeof config.databaseFile !== 'string' || config.databaseFile === '') {
    throw new InvalidConfigError('databaseFile must name the node’s SQLite file');
  }
  requireInteger('workers', config.workers, 1, MAX_WORKERS);
  requireInteger('queryTimeoutMs', config.queryTimeoutMs, 1, MAX_TIMEOUT_MS);
  requireInteger('maxResultRows', config.maxResultRows, 1, Number.MAX_SAFE_INTEGER);
  requireInteger('maxQueueLength', config.maxQueueLength, 0, Number.MAX_SAFE_INTEGER);
  requireInteger('maxQueueWaitMs', config.maxQueueWaitMs, 1, MAX_TIMEOUT_MS);
  requireInteger(
    'memoryLimitBytes',
    config.memoryLimitBytes,
    MIN_MEMORY_LIMIT_BYTES,
    Number.MAX_SAFE_INTEGER,
  );
  requireInteger('maxResultBytes', config.maxResultBytes, 1, Number.MAX_SAFE_INTEGER);
  requireInteger('workerHeapMb', config.workerHeapMb, 16, 1 << 20);
  return config;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function requireInteger(key: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidConfigError(`${key} must be an integer in [${min}, ${max}], got ${value}`);
  }
}

function pageOf(
  limit: readonly [number, number] | undefined,
  maxRows: number,
): { skip: number; stop: number | null } {
  if (limit === undefined) return { skip: 0, stop: null };
  const [lo, hi] = limit;
  if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < 0 || hi < lo) {
    throw new InvalidArgumentError(
      `limit must be [lo, hi] with 0 <= lo <= hi (row indexes, hi exclusive), got [${lo}, ${hi}]`,
    );
  }
  // As QuestDB does with its row limit: a page larger than the bound is cut, not refused.
  return { skip: lo, stop: Math.min(hi, lo + maxRows) };
}

function delimiterOf(delimiter: string | undefined): string {
  const value = delimiter ?? ',';
  if (value.length !== 1 || value === '"' || value === '\r' || value === '\n') {
    throw new InvalidArgumentError(
      `delimiter must be one character other than '"', CR or LF, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function timeoutError(timeoutMs: number): WalshipError {
  return new WalshipError(
    'QUERY_TIMEOUT',
    'unavailable',
    `the query ran longer than its ${timeoutMs} ms limit and was stopped; narrow it (a time range, a LIMIT) ` +
      'or raise the limit (queryTimeoutMs of the query pool, or timeoutMs per query)',
    { details: { timeoutMs, position: 0 } },
  );
}

function busyError(config: Config): WalshipError {
  return new WalshipError(
    'QUERY_BUSY',
    'unavailable',
    `all ${config.workers} query hosts are busy and ${config.maxQueueLength} queries are waiting ` +
      '(the queue limit, query.queue.max); retry shortly',
    { details: { workers: config.workers, maxQueueLength: config.maxQueueLength, position: 0 } },
  );
}

function queueWaitError(config: Config, busy: number): WalshipError {
  return new WalshipError(
    'QUERY_BUSY',
    'unavailable',
    `no query host became free within ${config.maxQueueWaitMs} ms (the queue wait limit, ` +
      `query.queue.wait.max): ${busy} of ${config.workers} hosts are running queries that may take up to ` +
      'their time limit (query.timeout); retry shortly',
    { details: { workers: config.workers, maxQueueWaitMs: config.maxQueueWaitMs, position: 0 } },
  );
}

function abortedError(signal: AbortSignal): WalshipError {
  return new WalshipError('QUERY_ABORTED', 'unavailable', 'the query was aborted by its caller', {
    cause: signal.reason,
    details: { position: 0 },
  });
}

function crashError(exit: QueryHostExit, config: Config): WalshipError {
  if (exit.memoryLimitExceeded) {
    const limitMiB = Math.round(config.memoryLimitBytes / (1024 * 1024));
    return new WalshipError(
      'QUERY_TOO_LARGE',
      'invalid',
      `the query took its query host past its memory limit of ${limitMiB} MiB (query.memory.limit; ` +
        'SQLite values, temporary tables and sorts count in it) and was stopped; the host is replaced. ' +
        'Ask for less: fewer rows, smaller values, a narrower DISTINCT, GROUP BY or ORDER BY',
      { details: { position: 0, memoryLimitBytes: config.memoryLimitBytes } },
    );
  }
  if (exit.outOfMemory) {
    return new WalshipError(
      'QUERY_TOO_LARGE',
      'invalid',
      `the query needed more than the host's ${config.workerHeapMb} MB heap (workerHeapMb); ask for fewer rows or columns`,
      { details: { position: 0 } },
    );
  }
  return new WalshipError(
    'QUERY_WORKER_FAILED',
    'unavailable',
    `the query host running this query died: ${describeExit(exit)}; a new host is started, retry may help`,
    { details: { position: 0, exitCode: exit.code, signal: exit.signal } },
  );
}
