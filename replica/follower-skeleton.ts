/**
 * What the store follower (replica/follower.ts) and the sequenced follower (sequencer/follower.ts)
 * do the same way, written once: per-table bookkeeping (finding a table by name or key, suspending
 * and resuming it, staleness, the common status fields), the backoff after failures, and reading
 * a segment again when it fails verification.
 *
 * Their run loops stay apart, on purpose: the store follower polls on a timer that probeNow(),
 * refresh() and resume() cut short (except while it backs off) and stops for good on
 * CLUSTER_MISMATCH; the sequenced follower blocks on its source's wait(), which stop(), resume(),
 * tablesChanged() and the export catch-up's timer abort, runs the export catch-up after every round (failed or not), and
 * bounds stop(). One loop for both would change when each looks at the store.
 */
import type { Logger } from 'pino';
import { assert, isWalshipError, type WalshipError } from '../core/index.js';
import { type TableKey, tableKey } from '../table/index.js';
import type { FollowedTableStatus, Suspension } from './table-follower.js';

/** What both followers keep per table. Txn numbers are bigint; times are this node's monotonic ms. */
export interface FollowedTableState {
  key: TableKey;
  name: string;
  appliedTxn: bigint;
  lastAppliedAtMs: number | null;
  /** When a read that found nothing newer was sent: the table was caught up then. */
  confirmedAtMs: number | null;
  suspended: Suspension | null;
  /** Segments applied since this process started (FollowedTableStatus.segmentsApplied). */
  segmentsApplied: number;
  rowsApplied: number;
}

/** The table `nameOrKey` names: a store key, else a table name (case-insensitive); undefined when unknown. */
export function findTable<T>(tables: ReadonlyMap<string, T>, nameOrKey: string): T | undefined {
  const direct = tables.get(nameOrKey);
  if (direct !== undefined) return direct;
  try {
    return tables.get(tableKey(nameOrKey));
  } catch {
    return undefined;
  }
}

/** The message of a suspension an operator lifts after repairing the object: it names the resume command. */
function resumableMessage(t: FollowedTableState, error: WalshipError): string {
  return (
    `table ${JSON.stringify(t.name)} is suspended at txn ${t.appliedTxn}: ${error.message}. ` +
    'Other tables go on. Repair or restore the object, then resume with ' +
    `\`walship admin resume --table ${t.name}\` (POST /admin/resume?table=${encodeURIComponent(t.name)} with the admin token).`
  );
}

/** Suspends `t` on a data error, with `message` (default: resumableMessage), and logs it. */
export function suspendTable(
  t: FollowedTableState,
  error: WalshipError,
  deps: { atMs: number; log: Logger },
  message = resumableMessage(t, error),
): void {
  const objectKey = typeof error.details.key === 'string' ? error.details.key : null;
  t.suspended = { code: error.code, message, objectKey, atMs: deps.atMs };
  deps.log.error({ table: t.name, code: error.code, key: objectKey }, message);
}

/**
 * Lifts the suspension of `t` and logs it; false when it was not suspended. The caller
 * then has the table looked at again (each follower its own way).
 */
export function resumeTable(t: FollowedTableState, log: Logger): boolean {
  if (t.suspended === null) return false;
  log.info({ table: t.name, was: t.suspended.code }, 'table resumed');
  t.suspended = null;
  return true;
}

/**
 * Milliseconds since every table in `tables` was last confirmed caught up (the oldest
 * confirmation); null when one never was. With no tables: since `emptyConfirmedAtMs` (when the
 * follower last saw there were none), null when it never did.
 */
export function stalenessOf(
  tables: Iterable<FollowedTableState>,
  nowMs: number,
  emptyConfirmedAtMs: number | null,
): number | null {
  let oldest = Number.POSITIVE_INFINITY;
  let count = 0;
  for (const t of tables) {
    if (t.confirmedAtMs === null) return null;
    oldest = Math.min(oldest, t.confirmedAtMs);
    count++;
  }
  if (count === 0) return emptyConfirmedAtMs === null ? null : nowMs - emptyConfirmedAtMs;
  return nowMs - oldest;
}

/** The status fields both followers report the same way (the others are each follower's own). */
export function commonTableStatus(
  t: FollowedTableState,
  nowMs: number,
): Omit<FollowedTableStatus, 'epoch' | 'headTxn' | 'txnsBehind'> {
  const ago = (atMs: number | null) => (atMs === null ? null : Math.round(nowMs - atMs));
  return {
    name: t.name,
    key: t.key,
    appliedTxn: t.appliedTxn,
    sinceCaughtUpMs: ago(t.confirmedAtMs),
    lastAppliedAgoMs: ago(t.lastAppliedAtMs),
    segmentsApplied: t.segmentsApplied,
    rowsApplied: t.rowsApplied,
    suspended: t.suspended,
  };
}

/** Tables in key order (status()). */
export function sortedByKey<T extends { key: string }>(tables: Iterable<T>): T[] {
  return [...tables].sort((a, b) => (a.key < b.key ? -1 : 1));
}

/**
 * Consecutive failures of a follower's poll or round and the delay before the next attempt:
 * `base` doubling per failure up to `max`, so an outage costs few requests. Also keeps the last
 * error for `/status`.
 */
export class FailureBackoff {
  readonly #policy: { base: number; max: number };
  #failures = 0;
  #lastError: { message: string; atMs: number } | null = null;

  /** `policy`: ms; the exponent is capped at 16, so `max` must be reached by then. */
  constructor(policy: { base: number; max: number }) {
    assert(
      policy.base > 0 && policy.max >= policy.base && policy.max <= policy.base * 2 ** 16,
      `backoff ${policy.base}..${policy.max} ms: need 0 < base ≤ max ≤ base·2^16`,
    );
    this.#policy = policy;
  }

  /** Consecutive failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  /** One more failure, at `atMs` (monotonic): records it and returns the delay before the next attempt, in ms. */
  failed(message: string, atMs: number): number {
    this.#failures++;
    this.recordError(message, atMs);
    const { base, max } = this.#policy;
    return Math.min(max, base * 2 ** Math.min(this.#failures - 1, 16));
  }

  /** A success: the next failure starts the backoff again from `base`. The last error is kept for `/status`. */
  succeeded(): void {
    this.#failures = 0;
  }

  /** Records an error for `/status` without counting a failure (one that delays nothing). */
  recordError(message: string, atMs: number): void {
    this.#lastError = { message, atMs };
  }

  /** The last error and how long before `nowMs` it happened (whole ms); null when none. */
  lastError(nowMs: number): { message: string; agoMs: number } | null {
    const error = this.#lastError;
    return error === null ? null : { message: error.message, agoMs: Math.round(nowMs - error.atMs) };
  }
}

/**
 * Reads an object (`read`) and verifies it (`verify`); a verification failure (a WalshipError of
 * kind `data`: a torn or corrupt read heals on a second read) reads it again, up to `attempts`
 * reads in all, calling `onRetry` before each new read. Errors of `read` itself are never retried
 * here, nor verification errors of another kind.
 */
export async function readVerified<Bytes, Verified>(options: {
  attempts: number;
  read: (attempt: number) => Promise<Bytes>;
  verify: (bytes: Bytes, attempt: number) => Promise<Verified>;
  onRetry: (error: WalshipError) => void;
}): Promise<Verified> {
  for (let attempt = 1; ; attempt++) {
    const bytes = await options.read(attempt);
    try {
      return await options.verify(bytes, attempt);
    } catch (error) {
      if (!isWalshipError(error) || error.kind !== 'data' || attempt >= options.attempts) throw error;
      options.onRetry(error);
    }
  }
}
