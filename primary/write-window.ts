import type { PendingSource } from './uploader.js';

/**
 * The span during which the committer holds one SQLite transaction open across event-loop turns
 * (a large request applied in slices, TableStore.transactionInSlices). Anything else that writes
 * through the same connection meanwhile would join that transaction — and be undone if it rolls
 * back — so such writes wait here and run right after it ends, in the same synchronous step.
 */
export class WriteWindow {
  /** Txns committed whose fsync is still to come (the committer's group commit): not for upload yet. */
  readonly unsynced = new UnsyncedTxns();
  #open = false;
  #deferred: (() => void)[] = [];
  readonly #onError: (error: unknown) => void;

  /** `onError` hears of a deferred write that failed (it is not retried here). */
  constructor(onError: (error: unknown) => void = () => {}) {
    this.#onError = onError;
  }

  get open(): boolean {
    return this.#open;
  }

  /** Runs `fn` with the window open; the deferred writes run once it settles, whatever the outcome. */
  async during<T>(fn: () => Promise<T>): Promise<T> {
    this.#open = true;
    try {
      return await fn();
    } finally {
      this.#open = false;
      const deferred = this.#deferred;
      this.#deferred = [];
      for (const write of deferred) {
        // A deferred write that fails must not turn the committed request into an error: the one
        // kind deferred (an uploaded watermark) heals itself — the next upload of those txns finds
        // its own segment in the slot and records them uploaded then.
        try {
          write();
        } catch (error) {
          this.#onError(error);
        }
      }
    }
  }

  /** Runs `write` now, or right after the window closes when it is open. */
  run(write: () => void): void {
    if (this.#open) this.#deferred.push(write);
    else write();
  }
}

/**
 * Per table, the txns the committer committed with SQLite's fsync deferred (TableStore.deferringSync)
 * and not yet made durable by its WAL fsync. A segment holding one could reach the store and then
 * vanish from this node on power loss, so the uploader sees pending records only below them.
 */
export class UnsyncedTxns {
  readonly #byTable = new Map<string, bigint[]>();

  add(table: string, txn: bigint): void {
    const txns = this.#byTable.get(table);
    if (txns === undefined) this.#byTable.set(table, [txn]);
    else txns.push(txn);
  }

  /** `txn` of `table` is durable now. */
  remove(table: string, txn: bigint): void {
    const txns = this.#byTable.get(table);
    if (txns === undefined) return;
    const at = txns.indexOf(txn);
    if (at >= 0) txns.splice(at, 1);
    if (txns.length === 0) this.#byTable.delete(table);
  }

  /** The oldest txn of `table` not durable yet, if any. */
  oldest(table: string): bigint | undefined {
    const txns = this.#byTable.get(table);
    if (txns === undefined) return undefined;
    let oldest = txns[0]!;
    for (const txn of txns) if (txn < oldest) oldest = txn;
    return oldest;
  }
}

/**
 * `source` whose uploaded-watermark writes wait for `window` to close, and whose pending records
 * stop below the first txn not yet durable (`window.unsynced`). The watermark it reports
 * includes a deferred write at once, so a durable writer asking after such an upload is not left
 * waiting for an upload that already happened. Deferring is safe: the uploader's in-memory state
 * moves on at once, and the rows it marks uploaded were committed before the window opened (the
 * committer's own pending records are queued in the window's last, synchronous step).
 */
export function deferWritesDuring(source: PendingSource, window: WriteWindow): PendingSource {
  return withLaterWatermarks(source, window.unsynced, (table, txn, forget) =>
    window.run(() => {
      forget();
      source.markUploaded(table, txn);
    }),
  );
}

/**
 * `source` whose uploaded-watermark writes are made by `write`, now or later: until `write` calls
 * `forget` (when it has written, or given up), the watermark this reports and the pending records
 * it lists take the write as made. Its pending records stop below the first txn not yet durable
 * (`unsynced`).
 */
export function withLaterWatermarks(
  source: PendingSource,
  unsynced: UnsyncedTxns,
  write: (table: string, txn: bigint, forget: () => void) => void,
): PendingSource {
  const deferredUploaded = new Map<string, bigint>();
  return {
    ...source,
    markUploaded: (table, txn) => {
      deferredUploaded.set(table, txn);
      write(table, txn, () => {
        if (deferredUploaded.get(table) === txn) deferredUploaded.delete(table);
      });
    },
    // Records through a deferred watermark are uploaded: the next upload must not seal them again
    // (its create-only PUT would find our own segment in the slot with records no longer pending).
    // So the records asked for start after it. (Asking for more from the oldest until one is past
    // it stopped at a record larger than the doubled limit, and answered "nothing pending" while a
    // later txn was: found by big-write-failover with the write worker.)
    pending: async (table, options) => {
      const records = await pendingThroughDeferred(table, options);
      const oldest = unsynced.oldest(table);
      return oldest === undefined ? records : records.filter((r) => r.txn < oldest);
    },
    uploadedTxn: (table) => laterOf(deferredUploaded.get(table), source.uploadedTxn(table)),
    // head.json is written from this: a watermark it missed would not be published until the next
    // upload of the table, and a replica would not fetch the segment meanwhile.
    uploadedAll: () =>
      source.uploadedAll().map(({ table, uploadedTxn }) => ({
        table,
        uploadedTxn: laterOf(deferredUploaded.get(table), uploadedTxn),
      })),
  };

  async function pendingThroughDeferred(table: string, options: { limitBytes: number; afterTxn?: bigint }) {
    const deferred = deferredUploaded.get(table);
    if (deferred === undefined) return source.pending(table, options);
    const afterTxn =
      options.afterTxn !== undefined && options.afterTxn > deferred ? options.afterTxn : deferred;
    const records = await source.pending(table, { ...options, afterTxn });
    return records.filter((r) => r.txn > afterTxn);
  }
}

function laterOf(deferred: bigint | undefined, stored: bigint): bigint {
  return deferred !== undefined && deferred > stored ? deferred : stored;
}
