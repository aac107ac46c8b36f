/**
 * Read consistency on a replica (DESIGN §6 "Consistency controls"):
 * - a **commit token** (`X-Walship-Min-Txn`, the value of the primary's `X-Walship-Txn`, e.g.
 *   `trades=42@2,quotes=17@2`) makes a read wait until this replica has applied those txns, up to a
 *   bound, then fail with `MIN_TXN_TIMEOUT`; a txn whose `@epoch` is not the epoch that wrote that
 *   txn here was lost in a failover (local ack) and fails with `TXN_NOT_IN_CLUSTER`;
 * - **bounded staleness** (`max_staleness_ms`) refuses a read with `STALE_REPLICA` when the replica
 *   has not confirmed, within that many ms of its own monotonic clock, that it was caught up with
 *   the object store (it asks the store once more before refusing);
 * - every answer says what it reflects: `X-Walship-Applied-Txn` and `X-Walship-Staleness-Ms`.
 *
 * No clock sync is assumed: staleness is a duration on the replica's monotonic clock, and a commit
 * token names txn numbers, never times.
 *
 * Error codes (WalshipError): INVALID_COMMIT_TOKEN, INVALID_ARGUMENT (invalid); MIN_TXN_TIMEOUT,
 * STALE_REPLICA, READ_BUSY (unavailable); TXN_NOT_IN_CLUSTER (conflict); QUERY_ABORTED (closed).
 */
import type { IncomingMessage } from 'node:http';
import { assert, type Clock, InvalidArgumentError, isWalshipError, WalshipError } from '../core/index.js';
import { decodeTableKey, MAX_TABLE_KEY_CHARS } from '../table/index.js';

/**
 * Characters of a commit token. Node refuses request headers above 16 KiB in total
 * (`--max-http-header-size`), so a longer token could not arrive as a header anyway; the bound also
 * caps the parsing work one request can cause.
 */
export const COMMIT_TOKEN_MAX_CHARS = 16 * 1024;

/**
 * Tables in one commit token. One ILP request rarely writes more than a few tables; the bound caps
 * the index entries one waiting read holds and the work of checking it.
 */
export const COMMIT_TOKEN_MAX_ENTRIES = 1_000;

/** The largest txn a token may name: txns are signed 64-bit in the segment format. */
export const TXN_MAX = 2n ** 63n - 1n;

/**
 * Reads waiting for a commit token at once. Each holds a timer and index entries; past this a read
 * is refused with READ_BUSY rather than letting a slow applier pile up unbounded memory.
 */
export const WAITERS_MAX = 10_000;

/** Tables named in `X-Walship-Applied-Txn` of a read without a commit token (keeps the header small). */
export const APPLIED_HEADER_MAX_ENTRIES = 100;

/** Characters of client input an error message repeats, so a hostile token cannot bloat logs. */
const SHOWN_INPUT_MAX_CHARS = 100;

/** Digits of an integer parameter (ms): below Number.MAX_SAFE_INTEGER, more than any sane wait. */
const INTEGER_PARAM_MAX_DIGITS = 15;
const INTEGER_PARAM = new RegExp(`^[0-9]{1,${INTEGER_PARAM_MAX_DIGITS}}$`);

function shown(text: string): string {
  return text.length <= SHOWN_INPUT_MAX_CHARS
    ? JSON.stringify(text)
    : `${JSON.stringify(text.slice(0, SHOWN_INPUT_MAX_CHARS))}… (${text.length} characters)`;
}

function invalidToken(reason: string, details: Record<string, unknown> = {}, cause?: unknown): WalshipError {
  return new WalshipError(
    'INVALID_COMMIT_TOKEN',
    'invalid',
    `invalid commit token: ${reason}; expected the primary's X-Walship-Txn value, e.g. trades=42,quotes=17`,
    { details: { reason, ...details }, cause },
  );
}

/** One table's part of a commit token: the txn, and the epoch that committed it when the token says. */
export interface CommitTokenEntry {
  txn: bigint;
  epoch: bigint | undefined;
}

/**
 * Parses a commit token: comma-separated `key=txn` or `key=txn@epoch` parts, where `key` is a
 * table's store key (`decodeTableKey` accepts it) and `txn` and `epoch` decimals in 1..TXN_MAX
 * without sign or leading zeros. Whitespace around parts is ignored; a table named twice keeps its
 * later entry (the newer epoch when both name one, else the larger txn). Throws
 * INVALID_COMMIT_TOKEN (kind invalid) for anything else, including an empty token, an empty part,
 * more than COMMIT_TOKEN_MAX_ENTRIES parts or more than COMMIT_TOKEN_MAX_CHARS characters; the
 * message names the problem and repeats at most ~100 characters of the input. Pure.
 */
export function parseCommitTokenEntries(value: string): Map<string, CommitTokenEntry> {
  if (value.length > COMMIT_TOKEN_MAX_CHARS) {
    throw invalidToken(`${value.length} characters, above the limit of ${COMMIT_TOKEN_MAX_CHARS}`);
  }
  const parts = value.split(',');
  if (parts.length > COMMIT_TOKEN_MAX_ENTRIES) {
    throw invalidToken(`${parts.length} tables, above the limit of ${COMMIT_TOKEN_MAX_ENTRIES}`);
  }
  const token = new Map<string, CommitTokenEntry>();
  for (const [index, raw] of parts.entries()) {
    const [key, entry] = parseTokenPart(raw.trim(), index);
    token.set(key, laterEntry(token.get(key), entry));
  }
  return token;
}

/** The txns of a commit token by table key (parseCommitTokenEntries without the epochs). Pure. */
export function parseCommitToken(value: string): Map<string, bigint> {
  return new Map([...parseCommitTokenEntries(value)].map(([key, entry]) => [key, entry.txn]));
}

/** The later of two entries of one table: by epoch when both name one (and differ), else by txn. */
function laterEntry(a: CommitTokenEntry | undefined, b: CommitTokenEntry): CommitTokenEntry {
  if (a === undefined) return b;
  if (a.epoch !== undefined && b.epoch !== undefined && a.epoch !== b.epoch) return a.epoch > b.epoch ? a : b;
  return b.txn > a.txn ? b : a;
}

function parseTokenPart(part: string, index: number): [string, CommitTokenEntry] {
  const where = `part ${index + 1}`;
  if (part === '') throw invalidToken(`${where} is empty`, { part: index + 1 });
  const equals = part.indexOf('=');
  if (equals < 0) throw invalidToken(`${where} ${shown(part)} is not key=txn`, { part: index + 1 });
  const key = part.slice(0, equals);
  const at = part.indexOf('@', equals);
  const txnText = part.slice(equals + 1, at < 0 ? undefined : at);
  const epochText = at < 0 ? undefined : part.slice(at + 1);
  if (key.length > MAX_TABLE_KEY_CHARS) {
    throw invalidToken(`${where}: ${shown(key)} is longer than a table key`, { part: index + 1 });
  }
  try {
    decodeTableKey(key);
  } catch (error) {
    const why = isWalshipError(error) && typeof error.details.reason === 'string' ? error.details.reason : '';
    throw invalidToken(`${where}: ${shown(key)} is not a table key (${why})`, { part: index + 1 }, error);
  }
  const txn = positive64(txnText);
  if (txn === undefined) {
    throw invalidToken(`${where}: txn ${shown(txnText)} is not an integer in 1..${TXN_MAX}`, {
      part: index + 1,
    });
  }
  const epoch = epochText === undefined ? undefined : positive64(epochText);
  if (epochText !== undefined && epoch === undefined) {
    throw invalidToken(`${where}: epoch ${shown(epochText)} is not an integer in 1..${TXN_MAX}`, {
      part: index + 1,
    });
  }
  return [key, { txn, epoch }];
}

/** A decimal in 1..TXN_MAX without sign or leading zeros, else undefined. */
function positive64(text: string): bigint | undefined {
  const value = /^[1-9][0-9]{0,18}$/.test(text) ? BigInt(text) : undefined;
  return value === undefined || value > TXN_MAX ? undefined : value;
}

/** The token of `token`'s entries sorted by key (`quotes=17,trades=42`); '' for an empty map. Pure. */
export function formatCommitToken(token: ReadonlyMap<string, bigint>): string {
  return [...token.keys()]
    .sort()
    .map((key) => `${key}=${token.get(key)}`)
    .join(',');
}

/** Options of AppliedWaiters.wait. */
export interface WaitOptions {
  /** Reject with MIN_TXN_TIMEOUT after this many ms of the waiters' clock (monotonic). */
  timeoutMs: number;
  /** Aborting rejects with QUERY_ABORTED (kind closed) and frees the waiter at once. */
  signal?: AbortSignal;
  /** The txn this replica has applied for a table (0n when none); read before waiting and at timeout. */
  applied: (tableKey: string) => bigint;
  /** Called once, synchronously, with the keys that are behind when the wait starts (never if none). */
  onBehind?: (keys: string[]) => void;
}

/** One read waiting for a commit token; `behind` shrinks as notify() reports progress. */
interface Waiter {
  behind: Map<string, bigint>;
  settle: (error?: Error) => void;
}

/**
 * Reads waiting until this replica has applied a commit token. The applier calls `notify` after
 * every commit (and after anything else that advances a table, such as a snapshot restore); each
 * waiting read resumes as soon as all its tables are far enough. At most `waitersMax` reads wait
 * at once; timers run on the injected clock and are cancelled as soon as a wait settles.
 */
export class AppliedWaiters {
  readonly #clock: Clock;
  readonly #waitersMax: number;
  /** Waiters by the table keys they still wait for. */
  readonly #byTable = new Map<string, Set<Waiter>>();
  #count = 0;

  constructor(options: { clock: Clock; waitersMax?: number }) {
    this.#clock = options.clock;
    this.#waitersMax = options.waitersMax ?? WAITERS_MAX;
    assert(Number.isInteger(this.#waitersMax) && this.#waitersMax >= 0, 'waitersMax is a count');
  }

  /** Reads waiting now. */
  get size(): number {
    return this.#count;
  }

  /** The table keys some read still waits on (the follower probes them at once and often). */
  tables(): IterableIterator<string> {
    return this.#byTable.keys();
  }

  /** Reports that `tableKey` has applied up to `appliedTxn`; wakes the reads this satisfies. Sync. */
  notify(tableKey: string, appliedTxn: bigint): void {
    const waiters = this.#byTable.get(tableKey);
    if (waiters === undefined) return;
    for (const waiter of [...waiters]) {
      const wanted = waiter.behind.get(tableKey);
      if (wanted === undefined || appliedTxn < wanted) continue;
      waiter.behind.delete(tableKey);
      waiters.delete(waiter);
      if (waiter.behind.size === 0) waiter.settle();
    }
    if (waiters.size === 0) this.#byTable.delete(tableKey);
  }

  /**
   * Resolves once every table of `token` has applied at least its txn: at once when it already has
   * (never refused then), else when notify() says so. Rejects with MIN_TXN_TIMEOUT (unavailable,
   * details {table, wantedTxn, appliedTxn, waitedMs} of the first table still behind) after
   * `timeoutMs`, with QUERY_ABORTED (closed) when `signal` aborts, and with READ_BUSY (unavailable)
   * when WAITERS_MAX reads already wait. Leaves no timer or listener behind once settled.
   */
  wait(token: ReadonlyMap<string, bigint>, options: WaitOptions): Promise<void> {
    assert(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0, 'timeoutMs is a duration');
    if (options.signal?.aborted) return Promise.reject(abortedError(options.signal));
    const behind = behindOf(token, options.applied);
    if (behind.size === 0) return Promise.resolve();
    if (this.#count >= this.#waitersMax) {
      return Promise.reject(
        new WalshipError(
          'READ_BUSY',
          'unavailable',
          `${this.#count} reads already wait for a commit token on this replica (limit ${this.#waitersMax}); ` +
            'retry shortly, or read from another node',
          { details: { waiters: this.#count } },
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const settled = this.#register(behind, options, resolve, reject);
      try {
        options.onBehind?.([...behind.keys()]);
      } catch (error) {
        settled(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Indexes a waiter, starts its timer and abort listener; returns its settle function. */
  #register(
    behind: Map<string, bigint>,
    options: WaitOptions,
    resolve: () => void,
    reject: (error: Error) => void,
  ): (error?: Error) => void {
    const startedMs = this.#clock.monotonicMs();
    const timer = new AbortController();
    const onAbort = () => waiter.settle(abortedError(options.signal!));
    let done = false;
    const waiter: Waiter = {
      behind,
      settle: (error) => {
        if (done) return;
        done = true;
        this.#unregister(waiter);
        timer.abort();
        options.signal?.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      },
    };
    for (const key of behind.keys()) {
      const waiters = this.#byTable.get(key) ?? new Set<Waiter>();
      waiters.add(waiter);
      this.#byTable.set(key, waiters);
    }
    this.#count++;
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#clock.sleep(options.timeoutMs, timer.signal).then(
      () => {
        // A notify may have been missed (or not sent): look once more before failing the read.
        const still = behindOf(waiter.behind, options.applied);
        const waitedMs = Math.round(this.#clock.monotonicMs() - startedMs);
        waiter.settle(still.size === 0 ? undefined : timeoutError(still, waitedMs, options.applied));
      },
      () => {}, // Cancelled by settle.
    );
    return waiter.settle;
  }

  #unregister(waiter: Waiter): void {
    for (const key of waiter.behind.keys()) {
      const waiters = this.#byTable.get(key);
      waiters?.delete(waiter);
      if (waiters?.size === 0) this.#byTable.delete(key);
    }
    this.#count--;
  }
}

/** The entries of `token` whose table has not applied that far, in key order. */
function behindOf(
  token: ReadonlyMap<string, bigint>,
  applied: (tableKey: string) => bigint,
): Map<string, bigint> {
  const behind = new Map<string, bigint>();
  for (const key of [...token.keys()].sort()) {
    const wanted = token.get(key)!;
    if (applied(key) < wanted) behind.set(key, wanted);
  }
  return behind;
}

function timeoutError(
  behind: Map<string, bigint>,
  waitedMs: number,
  applied: (tableKey: string) => bigint,
): WalshipError {
  const [table, wantedTxn] = behind.entries().next().value!;
  const appliedTxn = applied(table);
  const others = behind.size > 1 ? ` (and ${behind.size - 1} more tables are behind)` : '';
  return new WalshipError(
    'MIN_TXN_TIMEOUT',
    'unavailable',
    `waited ${waitedMs} ms for ${table} txn ${wantedTxn} but this replica has applied txn ${appliedTxn}` +
      `${others}; the primary may not have uploaded it yet ` +
      '(see replication.primary.throttle.window.duration) — retry, or read from the primary',
    { details: { table, wantedTxn, appliedTxn, waitedMs } },
  );
}

function abortedError(signal: AbortSignal): WalshipError {
  return new WalshipError('QUERY_ABORTED', 'closed', 'the read was aborted by its caller', {
    cause: signal.reason,
    details: { position: 0 },
  });
}

/**
 * Why a replica refused a read (`walship_reads_refused_total{reason}`), by error code: `stale`
 * (STALE_REPLICA), `token_timeout` (MIN_TXN_TIMEOUT), `busy` (READ_BUSY: too many reads waiting
 * for commit tokens), `txn_not_in_cluster` (TXN_NOT_IN_CLUSTER: a token's write lost in a failover).
 * A bad parameter or token is the client's error, and an aborted read no refusal.
 */
export const READ_REFUSAL_REASONS = {
  STALE_REPLICA: 'stale',
  MIN_TXN_TIMEOUT: 'token_timeout',
  READ_BUSY: 'busy',
  TXN_NOT_IN_CLUSTER: 'txn_not_in_cluster',
} as const;
export type ReadRefusalReason = (typeof READ_REFUSAL_REASONS)[keyof typeof READ_REFUSAL_REASONS];

/** The refusal reason of `error`, or undefined when it is no read refusal. */
export function readRefusalReasonOf(error: unknown): ReadRefusalReason | undefined {
  if (!isWalshipError(error) || !Object.hasOwn(READ_REFUSAL_REASONS, error.code)) return undefined;
  return READ_REFUSAL_REASONS[error.code as keyof typeof READ_REFUSAL_REASONS];
}

/** What createReadConsistency needs from the replica node. */
export interface ReadConsistencyOptions {
  /** Where reads wait for commit tokens; the applier notifies it. */
  waiters: AppliedWaiters;
  /** The txn this replica has applied for a table key; 0n for a table it does not know. */
  applied(tableKey: string): bigint;
  /** Every table this replica knows, by key, with its applied txn. */
  appliedAll(): Map<string, bigint>;
  /**
   * Ms of the monotonic clock since this replica last confirmed it was caught up with the object
   * store (every table probed, nothing newer found); null when it never confirmed.
   */
  stalenessMs(): number | null;
  /**
   * Asks the follower to confirm freshness now (probe every table); resolves when that probe has
   * finished, successfully or not. Concurrent reads share one call while it runs.
   */
  refresh(): Promise<void>;
  /** Tables a read waits for: the node polls them at once instead of at the next poll tick. */
  onBehind(keys: string[]): void;
  /**
   * Whether txn `txn` of table `tableKey`, applied here, was written at `epoch` (replica/epoch-history.ts);
   * undefined when this node cannot tell. Without it, tokens' epochs are not checked.
   */
  txnIsOfEpoch?(tableKey: string, txn: bigint, epoch: bigint): boolean | undefined;
  /** The most a read waits, commit token and freshness check together, in ms. */
  waitMaxMs: number;
  clock: Clock;
  /** Called for each read refused, with why (`/metrics`). Default: nothing. */
  onRefused?: (reason: ReadRefusalReason) => void;
}

/** The hook `createQueryHttpHandler` runs before dispatching a read (QueryHttpOptions.consistency). */
export type ReadConsistencyHook = (
  req: Pick<IncomingMessage, 'headers'>,
  params: URLSearchParams,
  signal: AbortSignal,
) => Promise<Record<string, string>>;

/** What one read asked for. */
interface ReadRequirements {
  token: Map<string, bigint> | undefined;
  /** The epoch of each table of `token` that named one. */
  epochs: Map<string, bigint>;
  waitMs: number;
  maxStalenessMs: number | undefined;
}

/**
 * The consistency hook of a replica's read endpoints. Per read:
 * 1. a commit token from the `x-walship-min-txn` header and/or the `min_txn` query parameter (both
 *    count; an empty value means none) makes the read wait until it is applied;
 * 2. `max_staleness_ms` (query parameter, or the `x-walship-max-staleness-ms` header; the smaller
 *    counts) refuses the read with STALE_REPLICA unless the replica confirmed it was caught up
 *    within that many ms — when it has not, it asks the store once (refresh) before refusing;
 * 3. resolves the response headers `X-Walship-Applied-Txn` and `X-Walship-Staleness-Ms`.
 * The waits of 1 and 2 share one budget: `waitMaxMs`, or less when the read asks with
 * `x-walship-wait-ms` / `wait_ms` (0 = do not wait at all). Bad parameters are INVALID_ARGUMENT or
 * INVALID_COMMIT_TOKEN, checked before any wait.
 *
 * The header values are read just before the query is dispatched, and the applier never goes
 * backwards, so they are a lower bound of what the read sees: it may see later txns, never
 * earlier ones.
 */
export function createReadConsistency(options: ReadConsistencyOptions): ReadConsistencyHook {
  assert(Number.isFinite(options.waitMaxMs) && options.waitMaxMs >= 0, 'waitMaxMs is a duration');
  const refresh = sharedCalls(options.refresh);
  const check = checkRead(options, refresh);
  const onRefused = options.onRefused;
  if (onRefused === undefined) return check;
  return async (req, params, signal) => {
    try {
      return await check(req, params, signal);
    } catch (error) {
      const reason = readRefusalReasonOf(error);
      if (reason !== undefined) onRefused(reason);
      throw error;
    }
  };
}

/** The checks of createReadConsistency, in order. */
function checkRead(options: ReadConsistencyOptions, refresh: () => Promise<void>): ReadConsistencyHook {
  return async (req, params, signal) => {
    const startedMs = options.clock.monotonicMs();
    const wanted = requirementsOf(req, params, options.waitMaxMs);
    if (signal.aborted) throw abortedError(signal);
    if (wanted.token !== undefined) {
      await options.waiters.wait(wanted.token, {
        timeoutMs: wanted.waitMs,
        signal,
        applied: options.applied,
        onBehind: options.onBehind,
      });
      checkEpochs(options, wanted.token, wanted.epochs);
    }
    if (wanted.maxStalenessMs !== undefined) {
      const leftMs = Math.max(0, wanted.waitMs - (options.clock.monotonicMs() - startedMs));
      await checkStaleness(options, refresh, {
        maxStalenessMs: wanted.maxStalenessMs,
        leftMs,
        signal,
        arrivedAtMs: startedMs,
      });
    }
    return responseHeaders(options, wanted.token);
  };
}

function requirementsOf(
  req: Pick<IncomingMessage, 'headers'>,
  params: URLSearchParams,
  waitMaxMs: number,
): ReadRequirements {
  const tokens = [headerOf(req, 'x-walship-min-txn'), params.get('min_txn')]
    .filter((value): value is string => value !== null && value.trim() !== '')
    .map(parseCommitTokenEntries);
  const merged = tokens.length === 0 ? undefined : mergeTokens(tokens);
  const token = merged === undefined ? undefined : new Map([...merged].map(([key, e]) => [key, e.txn]));
  const epochs = new Map<string, bigint>();
  for (const [key, entry] of merged ?? []) if (entry.epoch !== undefined) epochs.set(key, entry.epoch);
  const waitMs = minOfDefined([
    waitMaxMs,
    integerParam('x-walship-wait-ms', headerOf(req, 'x-walship-wait-ms')),
    integerParam('wait_ms', params.get('wait_ms')),
  ]);
  const maxStalenessMs = minOfDefined([
    integerParam('max_staleness_ms', params.get('max_staleness_ms')),
    integerParam('x-walship-max-staleness-ms', headerOf(req, 'x-walship-max-staleness-ms')),
  ]);
  return { token, epochs, waitMs: waitMs ?? waitMaxMs, maxStalenessMs };
}

/** A header's value, or null. Node joins repeated custom headers with ', ', which tokens accept. */
function headerOf(req: Pick<IncomingMessage, 'headers'>, name: string): string | null {
  const value = req.headers[name];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(',') : value;
}

function mergeTokens(tokens: Map<string, CommitTokenEntry>[]): Map<string, CommitTokenEntry> {
  const merged = new Map<string, CommitTokenEntry>();
  for (const token of tokens) {
    for (const [key, entry] of token) merged.set(key, laterEntry(merged.get(key), entry));
  }
  return merged;
}

/**
 * Throws TXN_NOT_IN_CLUSTER when a txn of the token, now applied, was written by another epoch
 * than the token's: the write the token stands for was lost in a failover (a `local`-ack primary
 * answered it, then was replaced before uploading it), and this node's txn of that number is
 * another write. Unknown (no history) counts as held, as before epochs were recorded.
 */
function checkEpochs(
  options: ReadConsistencyOptions,
  token: ReadonlyMap<string, bigint>,
  epochs: ReadonlyMap<string, bigint>,
): void {
  if (options.txnIsOfEpoch === undefined) return;
  for (const [key, epoch] of [...epochs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const txn = token.get(key)!;
    if (options.txnIsOfEpoch(key, txn, epoch) !== false) continue;
    throw new WalshipError(
      'TXN_NOT_IN_CLUSTER',
      'conflict',
      `${key} txn ${txn} of epoch ${epoch} never reached the cluster: a newer primary took over before it was ` +
        'uploaded, and txn ' +
        `${txn} here is another write (the old primary's divergence files hold the lost rows; see docs/operations.md, ` +
        '"Recovering a divergence file")',
      { details: { table: key, txn, epoch } },
    );
  }
}

/** A non-negative integer parameter in ms, or undefined when absent; else INVALID_ARGUMENT. */
function integerParam(name: string, value: string | null): number | undefined {
  if (value === null) return undefined;
  if (!INTEGER_PARAM.test(value)) {
    throw new InvalidArgumentError(
      `${name} must be a non-negative integer of at most ${INTEGER_PARAM_MAX_DIGITS} digits (ms), not ${shown(value)}`,
      { details: { name } },
    );
  }
  return Number(value);
}

function minOfDefined(values: (number | undefined)[]): number | undefined {
  const defined = values.filter((value): value is number => value !== undefined);
  return defined.length === 0 ? undefined : Math.min(...defined);
}

/**
 * Throws STALE_REPLICA unless the replica vouches for `maxStalenessMs`, after one refresh if needed.
 * Staleness is judged as of the read's arrival: a confirmation whose request went out after the
 * read arrived makes it 0, so even `max_staleness_ms=0` is met by a refresh on a healthy store.
 */
async function checkStaleness(
  options: ReadConsistencyOptions,
  refresh: () => Promise<void>,
  check: { maxStalenessMs: number; leftMs: number; signal: AbortSignal; arrivedAtMs: number },
): Promise<void> {
  const atArrival = () => {
    const stalenessMs = options.stalenessMs();
    if (stalenessMs === null) return null;
    return Math.max(0, stalenessMs - (options.clock.monotonicMs() - check.arrivedAtMs));
  };
  if (isFresh(atArrival(), check.maxStalenessMs)) return;
  let refreshError: unknown;
  let outcome: 'done' | 'timeout' = 'timeout';
  if (check.leftMs > 0) {
    try {
      outcome = await withinMs(refresh(), check.leftMs, options.clock, check.signal);
    } catch (error) {
      if (isWalshipError(error, 'QUERY_ABORTED')) throw error;
      refreshError = error;
    }
  }
  const stalenessMs = atArrival();
  if (isFresh(stalenessMs, check.maxStalenessMs)) return;
  throw staleError({ stalenessMs, ...check, outcome, refreshError });
}

function isFresh(stalenessMs: number | null, maxStalenessMs: number): boolean {
  return stalenessMs !== null && stalenessMs <= maxStalenessMs;
}

function staleError(facts: {
  stalenessMs: number | null;
  maxStalenessMs: number;
  leftMs: number;
  outcome: 'done' | 'timeout';
  refreshError: unknown;
}): WalshipError {
  const { stalenessMs, maxStalenessMs, leftMs, refreshError } = facts;
  const last =
    stalenessMs === null
      ? `this replica has not yet confirmed it is caught up with the object store (max_staleness_ms=${maxStalenessMs})`
      : `this replica last confirmed it was caught up with the object store ${Math.floor(stalenessMs)} ms before ` +
        `this read arrived (max_staleness_ms=${maxStalenessMs})`;
  let checked: string;
  if (leftMs <= 0) checked = 'no wait time was left to check again';
  else if (refreshError !== undefined) checked = `checking again failed: ${String(refreshError)}`;
  else if (facts.outcome === 'timeout')
    checked = `checking again did not finish within ${Math.round(leftMs)} ms`;
  else
    checked =
      'checking again could not confirm it within the bound (a table may be suspended or the store failing)';
  return new WalshipError(
    'STALE_REPLICA',
    'unavailable',
    `${last}; ${checked} — retry, read from another replica or the primary, or allow more staleness`,
    { details: { stalenessMs, maxStalenessMs }, cause: refreshError },
  );
}

/**
 * Settles with 'done' when `promise` resolves (rejects as it does), 'timeout' after `timeoutMs`,
 * or rejects with QUERY_ABORTED when `signal` aborts; cancels its timer and listener either way.
 */
async function withinMs(
  promise: Promise<void>,
  timeoutMs: number,
  clock: Clock,
  signal: AbortSignal,
): Promise<'done' | 'timeout'> {
  const timer = new AbortController();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortedError(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([
      promise.then(() => 'done' as const),
      clock.sleep(timeoutMs, timer.signal).then(
        () => 'timeout' as const,
        () => 'timeout' as const,
      ),
      aborted,
    ]);
  } finally {
    timer.abort();
    signal.removeEventListener('abort', onAbort);
  }
}

/** `call`, but concurrent callers share the one call in flight. */
function sharedCalls(call: () => Promise<void>): () => Promise<void> {
  let inFlight: Promise<void> | undefined;
  return () => {
    if (inFlight === undefined) {
      inFlight = call().finally(() => {
        inFlight = undefined;
      });
    }
    return inFlight;
  };
}

/**
 * `X-Walship-Applied-Txn`: the applied txns of the token's tables when the read gave a token,
 * else of every table — the first APPLIED_HEADER_MAX_ENTRIES by key, to keep the header small.
 * Tables with nothing applied are left out, so the value is itself a valid commit token: a client
 * can pass it to another replica as X-Walship-Min-Txn to never read older data than it just saw.
 * `X-Walship-Staleness-Ms`: whole ms since the replica last confirmed it was caught up, or
 * `unknown` when it never did.
 */
function responseHeaders(
  options: ReadConsistencyOptions,
  token: Map<string, bigint> | undefined,
): Record<string, string> {
  const applied = new Map<string, bigint>();
  if (token !== undefined) {
    for (const key of token.keys()) {
      const txn = options.applied(key);
      if (txn > 0n) applied.set(key, txn);
    }
  } else {
    const all = options.appliedAll();
    for (const key of [...all.keys()].sort()) {
      if (applied.size === APPLIED_HEADER_MAX_ENTRIES) break;
      const txn = all.get(key)!;
      if (txn > 0n) applied.set(key, txn);
    }
  }
  const stalenessMs = options.stalenessMs();
  return {
    'x-walship-applied-txn': formatCommitToken(applied),
    'x-walship-staleness-ms': stalenessMs === null ? 'unknown' : String(Math.floor(stalenessMs)),
  };
}
