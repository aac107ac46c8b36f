import { assert, type Clock, WalshipError } from '../core/index.js';
import { asBatch, type IlpLineSource, type IlpLines } from '../ilp/index.js';
import type { TableStore } from '../table/index.js';
import { designatedTimestampRange, encodeTxnRecordInSlices, TxnRecordEncoder } from '../wal/index.js';
import { type BuiltTxn, buildTxns, TxnBuilder } from './txn-builder.js';
import type { Uploader } from './uploader.js';
import { WriteWindow } from './write-window.js';

export type AckMode = 'local' | 'durable';

export interface CommitterOptions {
  tables: TableStore;
  uploader: Uploader;
  clock: Clock;
  ackMode: AckMode;
  /** How long a durable writer waits for its segment before a 503 (`replication.ack.durable.timeout`). */
  durableTimeoutMs: number;
  /** Writes are refused while the pending queue holds more than this (the store is down for long). */
  pendingMaxBytes: number;
  /** False once the node was fenced or demoted; writes are then answered 421. */
  acceptingWrites: () => boolean;
  /**
   * Open while a large request's SQLite transaction spans several event-loop turns; whoever else
   * writes through `tables` (the uploader's watermarks) defers to it. Default: a private one.
   */
  writeWindow?: WriteWindow;
  /** Awaited between the slices of a large request. Default: one event-loop turn (setImmediate). */
  pause?: () => Promise<void>;
}

export interface CommitResult {
  /** Per table (by store key) the txn this request committed: `trades=42,quotes=17` (X-Walship-Txn). */
  txnHeader: string;
  txns: { table: string; txn: bigint; rows: number }[];
}

/**
 * Rows above which a request is committed in slices rather than in one synchronous step. Every
 * step of a commit costs time in proportion to its rows (about 1–5 µs a row each for building,
 * encoding and inserting), so a slice of this many rows holds the event loop for a few ms, and a
 * request of up to this many rows (the official clients' default flush is 75 000 rows over HTTP,
 * 600 over TCP) keeps the one-step path, which has no per-slice overhead.
 */
export const COMMIT_SLICE_ROWS = 4096;

/**
 * The write path of one ILP request (DESIGN §5): build one txn per table, then ONE SQLite
 * transaction that inserts the rows, queues the encoded txn records for upload and advances the
 * committed watermarks — so a request is all or nothing across its tables — then, in `durable`
 * mode, wait until the uploader has put the segments holding those txns in the store.
 *
 * No step holds the event loop for long, whatever the request's size (a blocked loop stops lease
 * renewals, so one big write could make a replica promote itself): a large request is built,
 * encoded and applied COMMIT_SLICE_ROWS rows at a time, with the loop free in between, under the
 * committer's write lock (other writes wait for it; reads, `/ping`, `/status` and the lease go on)
 * and inside one SQLite transaction held open across the slices. A small request with the lock
 * free is committed in one synchronous step, as before.
 */
export class Committer {
  readonly #options: CommitterOptions;
  readonly #window: WriteWindow;
  readonly #pause: () => Promise<void>;
  /** The fsyncs (with their uploader notice) of commits made and not yet reported: idle() waits for them. */
  readonly #syncing = new Set<Promise<void>>();
  /** Settles when the last holder of the write lock (or waiter for it) is done. */
  #lockTail: Promise<void> = Promise.resolve();
  /** Holders of and waiters for the write lock. */
  #lockUsers = 0;

  constructor(options: CommitterOptions) {
    this.#options = options;
    this.#window = options.writeWindow ?? new WriteWindow();
    this.#pause = options.pause ?? nextTurn;
  }

  /**
   * Commits lines already parsed (TCP batches, tests). A request of at most COMMIT_SLICE_ROWS lines
   * arriving while no other commit runs is committed synchronously up to its durable wait (its
   * local commit has happened, or failed, when this returns); a larger one goes in slices.
   */
  commit(lines: IlpLines): Promise<CommitResult> {
    const batch = asBatch(lines);
    const count = batch.lineCount;
    if (this.#lockUsers > 0 || count > COMMIT_SLICE_ROWS) {
      return this.commitSlices({
        forEachSlice: async (sink) => {
          for (let at = 0; at < count; at += COMMIT_SLICE_ROWS) {
            if (at > 0) await this.#pause();
            sink(batch, at, Math.min(count, at + COMMIT_SLICE_ROWS));
          }
          return count;
        },
      });
    }
    let encoded: EncodedTxn[];
    try {
      this.#checkAccepting();
      if (count === 0) return Promise.resolve({ txnHeader: '', txns: [] });
      const { tables } = this.#options;
      const built = tables.batchReads(() => buildTxns(batch, this.#buildOptions()));
      encoded = this.#applyNow(encodeAll(built));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#acknowledge(encoded);
  }

  /**
   * Commits the lines of `source` as they are parsed (the HTTP path: no array of every line is
   * built). A parse error (the source's rejection) commits nothing. Waits for the write lock first.
   */
  async commitSlices(source: IlpLineSource): Promise<CommitResult> {
    const release = await this.#lock();
    let encoded: EncodedTxn[];
    try {
      encoded = await this.#commitInSlices(source);
    } finally {
      release();
    }
    // The next request may go on while this one's fsync runs (and shares it).
    return this.#acknowledge(encoded);
  }

  /**
   * Resolves once no commit holds or waits for the write lock and every commit made has had its
   * fsync and told the uploader of its txns (a demotion and a shutdown wait for this before they
   * flush the uploader: a committed txn it has not heard of would be left behind).
   */
  async idle(): Promise<void> {
    while (this.#lockUsers > 0 || this.#syncing.size > 0) {
      await this.#lockTail;
      await Promise.allSettled([...this.#syncing]);
    }
  }

  async #commitInSlices(source: IlpLineSource): Promise<EncodedTxn[]> {
    this.#checkAccepting();
    const { tables } = this.#options;
    const options = this.#buildOptions();
    const builder = new TxnBuilder(options);
    // The builder reads the schema of each table as it first appears: one cache check per slice.
    await source.forEachSlice((batch, from, to) =>
      tables.batchReads(() => builder.addLines(batch, from, to)),
    );
    if (builder.rowCount === 0) return [];
    // The parse took turns of the event loop: the node may have been fenced meanwhile.
    this.#checkAccepting();
    const built = tables.batchReads(() => builder.finish(options.nextTxn));
    if (builder.rowCount <= COMMIT_SLICE_ROWS) {
      return this.#applyNow(encodeAll(built));
    }
    const encoded = await this.#encodeInSlices(built);
    this.#checkAccepting();
    return this.#applyInSlices(encoded);
  }

  /**
   * Encodes the records of a large request with the event loop freed every COMMIT_SLICE_ROWS rows:
   * a record of more rows is encoded in slices of its own, smaller ones whole, one after another
   * until their rows reach the slice size. A request spread over a thousand tables has a thousand
   * small records, and a pause for each (or for each of their columns) would cost more than the
   * encoding itself.
   */
  async #encodeInSlices(built: BuiltTxn[]): Promise<EncodedTxn[]> {
    const slices = new SliceBudget(this.#pause);
    const encoder = new TxnRecordEncoder();
    const encoded: EncodedTxn[] = [];
    for (const b of built) {
      const { record } = b;
      if (record.rowCount > COMMIT_SLICE_ROWS) {
        encoded.push({ ...b, bytes: await encodeTxnRecordInSlices(record, { pause: this.#pause }) });
        slices.reset();
      } else {
        encoded.push({ ...b, bytes: encoder.encode(record) });
        await slices.spend(record.rowCount);
      }
    }
    return encoded;
  }

  /** Refuses the write when the node does not take writes or the pending queue is full. */
  #checkAccepting(): void {
    const { uploader } = this.#options;
    this.#checkPrimary();
    const pendingBytes = uploader.pendingBytes;
    if (pendingBytes > this.#options.pendingMaxBytes) {
      throw new WalshipError(
        'PENDING_FULL',
        'unavailable',
        `${pendingBytes} bytes await upload (limit ${this.#options.pendingMaxBytes}): the object store has been ` +
          'unavailable for a while; writes resume when uploads catch up',
      );
    }
  }

  /** Refuses the write when the node does not take writes (fenced, demoted, closing). */
  #checkPrimary(): void {
    if (!this.#options.acceptingWrites()) {
      throw new WalshipError(
        'NOT_ACCEPTING_WRITES',
        'fenced',
        'this node is not accepting writes (not the primary)',
      );
    }
  }

  #buildOptions() {
    const { tables, clock } = this.#options;
    return {
      schemaOf: (table: string) => tables.schema(table),
      commitTimeUs: BigInt(Math.floor(clock.wallMs() * 1000)),
      nextTxn: (table: string) => tables.lastTxn(table) + 1n,
    };
  }

  /** The local commit in one synchronous step (its fsync comes after: #acknowledge). */
  #applyNow(encoded: EncodedTxn[]): EncodedTxn[] {
    const { tables } = this.#options;
    tables.deferringSync(() =>
      tables.transaction(() => {
        this.#assertNextTxns(encoded);
        for (const { table, record, bytes } of encoded) {
          tables.applyTxn(table, record);
          tables.enqueuePending(table, record.txn, bytes);
        }
      }),
    );
    return this.#committedUnsynced(encoded);
  }

  /**
   * The local commit with the rows inserted in slices, in one SQLite transaction held open across
   * them (the write window defers the uploader's writes on the same connection meanwhile). The
   * records are queued in the last step, right before COMMIT, so the uploader never sees them
   * uncommitted; that step first checks again that the node takes writes, so nothing commits
   * after a demotion or a fence closed the gate (both rely on no commit following it).
   */
  async #applyInSlices(encoded: EncodedTxn[]): Promise<EncodedTxn[]> {
    const { tables } = this.#options;
    await this.#window.during(() =>
      tables.deferringSync(() =>
        tables.transactionInSlices(async () => {
          // The build and the encoding took turns of the event loop; the write lock kept other
          // commits out. Checked inside the transaction, where the table cache needs no refresh.
          this.#assertNextTxns(encoded);
          // A record of many rows pauses between its own slices; small ones (one per table of a
          // request spread over many tables) are applied whole, joining this transaction, until
          // their rows reach a slice.
          const slices = new SliceBudget(this.#pause);
          for (const { table, record } of encoded) {
            if (record.rowCount > COMMIT_SLICE_ROWS) {
              await tables.applyTxnInSlices(table, record, {
                rowsPerSlice: COMMIT_SLICE_ROWS,
                pause: this.#pause,
              });
              slices.reset();
            } else {
              tables.applyTxn(table, record);
              await slices.spend(record.rowCount);
            }
          }
          this.#checkPrimary();
          for (const { table, record, bytes } of encoded) tables.enqueuePending(table, record.txn, bytes);
        }),
      ),
    );
    return this.#committedUnsynced(encoded);
  }

  /**
   * What a commit relies on before it applies: one txn per table, each the table's next (its last
   * txn + 1; the txns were numbered before the slices' awaits, and the write lock kept every other
   * commit out since), and none empty. A failure here is a bug (the lock, the builder), not bad input.
   */
  #assertNextTxns(encoded: EncodedTxn[]): void {
    const { tables } = this.#options;
    const seen = new Set<string>();
    for (const { table, record } of encoded) {
      const lastTxn = tables.lastTxn(table);
      // Messages are made only for a failure: this runs for each of a request's thousand tables.
      if (!seen.has(table) && record.txn === lastTxn + 1n && record.rowCount > 0) {
        seen.add(table);
        continue;
      }
      assert(!seen.has(table), `one request built two txns for table ${JSON.stringify(table)}`);
      assert(
        record.txn === lastTxn + 1n,
        `txn ${record.txn} of table ${JSON.stringify(table)} does not follow its last txn ${lastTxn}`,
      );
      assert(record.rowCount > 0, `txn ${record.txn} of table ${JSON.stringify(table)} has no rows`);
    }
  }

  /** The txns just committed, kept from the uploader until their fsync (#acknowledge). */
  #committedUnsynced(encoded: EncodedTxn[]): EncodedTxn[] {
    for (const { table, record } of encoded) this.#window.unsynced.add(table, record.txn);
    return encoded;
  }

  /**
   * Waits for the WAL fsync that makes `encoded` durable (shared with the commits made meanwhile:
   * TableStore.syncWal), tells the uploader of the txns, and resolves when the ack mode is
   * satisfied: then (`local`), or once uploaded (`durable`). A failed fsync rejects with
   * STORAGE_FAILED and leaves the txns unsynced: they are never uploaded from this run.
   */
  async #acknowledge(encoded: EncodedTxn[]): Promise<CommitResult> {
    const { tables, uploader } = this.#options;
    if (encoded.length === 0) return { txnHeader: '', txns: [] };
    const synced = tables.syncWal().then(() => {
      for (const { table, bytes, record } of encoded) {
        this.#window.unsynced.remove(table, record.txn);
        const facts = {
          txn: record.txn,
          rowCount: record.rowCount,
          tsRange: designatedTimestampRange(record),
        };
        uploader.committed(table, bytes.byteLength, facts);
      }
    });
    this.#syncing.add(synced);
    try {
      await synced;
    } finally {
      this.#syncing.delete(synced);
    }
    const result = {
      txnHeader: encoded.map(({ schemaAfter, record }) => `${schemaAfter.key}=${record.txn}`).join(','),
      txns: encoded.map(({ table, record }) => ({ table, txn: record.txn, rows: record.rowCount })),
    };
    if (this.#options.ackMode === 'durable') {
      const { durableTimeoutMs } = this.#options;
      await Promise.all(
        result.txns.map(({ table, txn }) => uploader.waitUploaded(table, txn, durableTimeoutMs)),
      );
    }
    return result;
  }

  /** Takes the write lock: resolves with its release once every earlier holder released it. */
  async #lock(): Promise<() => void> {
    this.#lockUsers++;
    const before = this.#lockTail;
    let release!: () => void;
    this.#lockTail = new Promise<void>((resolve) => {
      release = () => {
        assert(this.#lockUsers > 0, 'the write lock was released more often than it was taken');
        this.#lockUsers--;
        resolve();
      };
    });
    await before;
    return release;
  }
}

type EncodedTxn = BuiltTxn & { bytes: Uint8Array };

/** Each txn with its encoded record, in one synchronous step. */
function encodeAll(built: BuiltTxn[]): EncodedTxn[] {
  const encoder = new TxnRecordEncoder();
  return built.map((b) => ({ ...b, bytes: encoder.encode(b.record) }));
}

/** Counts rows of work done since the event loop was last freed; frees it every COMMIT_SLICE_ROWS. */
class SliceBudget {
  readonly #pause: () => Promise<void>;
  #rows = 0;

  constructor(pause: () => Promise<void>) {
    this.#pause = pause;
  }

  /** Counts `rows` more; pauses (and starts counting again) once a slice's worth is done. */
  async spend(rows: number): Promise<void> {
    this.#rows += rows;
    if (this.#rows < COMMIT_SLICE_ROWS) return;
    this.#rows = 0;
    await this.#pause();
  }

  /** The caller just paused on its own. */
  reset(): void {
    this.#rows = 0;
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
