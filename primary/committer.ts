import { assert, type Clock, isWalshipError, WalshipError } from '../core/index.js';
import { asBatch, type IlpLineBatch, type IlpLineSource, type IlpLines } from '../ilp/index.js';
import {
  type BatchPart,
  freezeSchema,
  isDropped,
  type TableSchema,
  type TableStore,
} from '../table/index.js';
import {
  type ColumnData,
  type ColumnType,
  type ColumnValues,
  DESIGNATED_TIMESTAMP_COLUMN,
  designatedTimestampRange,
  encodeTxnRecordInSlices,
  type RecordFacts,
  type TableTtl,
  type TxnRecord,
  TxnRecordEncoder,
} from '../wal/index.js';
import { applyRequest, assertNextTxns } from './apply-request.js';
import { BatchesInFlight, type BatchIdentity, planBatch, stampBatch } from './batch-plan.js';
import { type BuiltTxn, buildTxns, TxnBuilder } from './txn-builder.js';
import type { Uploader } from './uploader.js';
import { type UnsyncedTxns, WriteWindow } from './write-window.js';
import type { WriteWorker } from './write-worker.js';
import { isOwnBuffer } from './write-worker-protocol.js';

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
  /**
   * The thread that makes every write to `tables` (RFC-0009 §4): a request's SQLite work runs there
   * and the next request is built meanwhile. Without one, requests are applied on the event loop
   * (tests and the simulation, which need one thread).
   */
  worker?: WriteWorker;
  /**
   * The epoch of this primary: commit tokens then name it (`trades=42@3`, RFC-0005) and batch stamps
   * carry it (RFC-0011). Without one (unit tests, the simulation) tokens carry no epoch and stamps
   * epoch 1.
   */
  epoch?: () => bigint;
  /**
   * In `durable` mode, each request's wait from its local commit (fsynced) to the store holding its
   * txns, and how it ended: `ok`, `timeout` (DURABLE_TIMEOUT) or `error` (fenced, closed) (`/metrics`).
   */
  onDurableAck?: (outcome: 'ok' | 'timeout' | 'error', seconds: number) => void;
}

export interface CommitResult {
  /**
   * Per table (by store key) the txn this request committed, with the epoch when the committer has
   * one: `trades=42@3,quotes=17@3` (X-Walship-Txn). For a batch, every table of it, written now or
   * before.
   */
  txnHeader: string;
  /** The txns written by this request (none for a replayed batch). */
  txns: { table: string; txn: bigint; rows: number }[];
  /**
   * For a request with a batch identity: `committed` when this request wrote it (or what was
   * missing of it), `replayed` when it was committed before and nothing was written (RFC-0011).
   */
  batch?: 'committed' | 'replayed';
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
  /** The requests with the write worker, not yet answered (worker mode): what the next is built on. */
  readonly #queued = new QueuedTxns();
  /** Requests handed to the worker whose fsync has not started yet: idle() waits for them. */
  readonly #writing = new Set<Promise<unknown>>();
  /** The fsyncs (with their uploader notice) of commits made and not yet reported: idle() waits for them. */
  readonly #syncing = new Set<Promise<void>>();
  /** Settles when the last holder of the write lock (or waiter for it) is done. */
  #lockTail: Promise<void> = Promise.resolve();
  /** Holders of and waiters for the write lock. */
  #lockUsers = 0;
  readonly #batches = new BatchesInFlight();

  constructor(options: CommitterOptions) {
    this.#options = options;
    this.#window = options.writeWindow ?? new WriteWindow();
    this.#pause = options.pause ?? nextTurn;
  }

  /**
   * Commits lines already parsed (TCP batches, tests). Without a write worker, a request of at most
   * COMMIT_SLICE_ROWS lines arriving while no other commit runs is committed synchronously up to its
   * durable wait (its local commit has happened, or failed, when this returns); a larger one goes
   * in slices.
   */
  commit(lines: IlpLines, identity?: BatchIdentity): Promise<CommitResult> {
    const batch = asBatch(lines);
    const count = batch.lineCount;
    if (
      identity !== undefined ||
      this.#options.worker !== undefined ||
      this.#lockUsers > 0 ||
      count > COMMIT_SLICE_ROWS
    ) {
      return this.commitSlices(slicesOf(batch, this.#pause), identity);
    }
    let committed: CommittedTxn[];
    try {
      this.#checkAccepting();
      if (count === 0) return Promise.resolve({ txnHeader: '', txns: [] });
      const { tables } = this.#options;
      const built = tables.batchReads(() => buildTxns(batch, this.#buildOptions()));
      committed = this.#applyNow(encodeAll(built));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#acknowledge(committed).then(answerOf);
  }

  /**
   * Commits the lines of `source` as they are parsed (the HTTP path: no array of every line is
   * built). A parse error (the source's rejection) commits nothing. Waits for the write lock first.
   */
  async commitSlices(source: IlpLineSource, identity?: BatchIdentity): Promise<CommitResult> {
    if (identity === undefined) return answerOf(await this.#commitSource(source, undefined));
    // A retry of a batch whose first attempt is still being committed waits for it (and then finds
    // it committed, or not).
    const leave = await this.#batches.enter(identity);
    try {
      return await this.#commitBatch(source, identity);
    } finally {
      leave();
    }
  }

  /**
   * A request with a batch identity (RFC-0011): answered from the ledger when every table of it is
   * committed (here, or by an earlier primary whose segments this node applied), refused when the
   * identity was used for other content or is below its writer's window; otherwise the tables not
   * committed yet are written, stamped with the batch. The token names every table of the batch.
   */
  async #commitBatch(source: IlpLineSource, identity: BatchIdentity): Promise<CommitResult> {
    this.#checkAccepting();
    const { tables } = this.#options;
    const plan = planBatch(identity, tables.batch(identity.writer, identity.seq));
    const known = plan.known.map(({ tableKey, txn, epoch }) => ({ key: tableKey, txn, epoch }));
    if (plan.kind === 'replay') {
      await this.#durablyKnown(plan.known);
      return { txnHeader: this.#tokenOf([], known), txns: [], batch: 'replayed' };
    }
    const batch = { identity, known: plan.known, epoch: this.#options.epoch?.() ?? 1n };
    const result = await this.#commitSource(source, batch);
    if (plan.known.length === 0) return { ...answerOf(result), batch: 'committed' };
    await this.#durablyKnown(plan.known);
    return { ...answerOf(result), txnHeader: this.#tokenOf(result.committed, known), batch: 'committed' };
  }

  /**
   * In `durable` mode, waits until the committed parts of a batch are in the object store: a replay
   * answers 204 only on what a first answer would have promised.
   */
  async #durablyKnown(known: readonly BatchPart[]): Promise<void> {
    if (this.#options.ackMode !== 'durable') return;
    const { tables, uploader, durableTimeoutMs } = this.#options;
    const byKey = new Map<string, string>(tables.schemas().map((schema) => [schema.key, schema.name]));
    await Promise.all(
      known.map(({ tableKey, txn }) => {
        const table = byKey.get(tableKey);
        return table === undefined ? undefined : uploader.waitUploaded(table, txn, durableTimeoutMs);
      }),
    );
  }

  /** `trades=42@3,quotes=17@3`: the txns committed now and the parts known before, sorted by key. */
  #tokenOf(
    committed: readonly CommittedTxn[],
    known: readonly { key: string; txn: bigint; epoch: bigint }[],
  ): string {
    const epoch = this.#options.epoch?.();
    const parts = [
      ...committed.map(({ key, facts }) => ({ key, txn: facts.txn, epoch })),
      ...known.map((part) => ({
        ...part,
        epoch: this.#options.epoch === undefined ? undefined : part.epoch,
      })),
    ];
    return parts
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map(({ key, txn, epoch: e }) => (e === undefined ? `${key}=${txn}` : `${key}=${txn}@${e}`))
      .join(',');
  }

  /** The write path of one request, stamped with `batch` when it has one. */
  #commitSource(source: IlpLineSource, batch: BatchContext | undefined): Promise<SourceResult> {
    return this.#commitEncoded(() => this.#buildAndEncode(source, batch));
  }

  /**
   * Sets the upsert keys of `table` (RFC-0011, QuestDB's `ALTER TABLE … DEDUP ENABLE UPSERT KEYS`):
   * a dedup txn, committed, uploaded and applied on every replica like any other, so every node
   * deduplicates the same rows. `keys` must name columns of the table, the designated timestamp
   * among them; none turns deduplication off. Throws DEDUP_KEYS_INVALID or TABLE_UNKNOWN (invalid)
   * before anything is written.
   */
  setDedupKeys(table: string, keys: readonly string[]): Promise<CommitResult> {
    return this.#commitTableTxn(table, (schema, txn, commitTimeUs) => ({
      record: dedupRecord(schema, keys, txn, commitTimeUs),
      schemaAfter: schema,
    }));
  }

  /**
   * Sets the time to live of `table` (RFC-0007 "Retention of rows", QuestDB's `ALTER TABLE … SET
   * TTL`): a ttl txn, applied on every node like any other; a count of 0 removes it. The primary's
   * TtlKeeper then commits the trims it calls for. A TTL in hours must be whole days: walship
   * tables are partitioned by day for TTL, as QuestDB's ILP-created tables are (TTL_INVALID).
   */
  setTtl(table: string, ttl: TableTtl): Promise<CommitResult> {
    if (ttl.unit === 'HOUR' && ttl.count % 24 !== 0)
      throw new WalshipError(
        'TTL_INVALID',
        'invalid',
        `a TTL of ${ttl.count} hours is not whole days: tables are partitioned by day, so a TTL is a whole number of days (24 HOURS, 2 DAYS, 3 MONTHS)`,
      );
    return this.#commitTableTxn(table, (schema, txn, commitTimeUs) => ({
      record: { txn, commitTimeUs, kind: 'ttl', rowCount: 0, columns: [], ttl: { ...ttl } },
      schemaAfter: schema,
    }));
  }

  /** Deletes the rows of `table` whose designated timestamp is below `beforeUs`, on every node: a trim txn. */
  trim(table: string, beforeUs: bigint): Promise<CommitResult> {
    return this.#commitTableTxn(table, (schema, txn, commitTimeUs) => ({
      record: { txn, commitTimeUs, kind: 'trim', rowCount: 0, columns: [], trimBeforeUs: beforeUs },
      schemaAfter: schema,
    }));
  }

  /**
   * Drops `table` on every node (QuestDB's `DROP TABLE`): a drop txn. The table's txn numbers go
   * on, so a later write of the same name creates it anew as txn n+1 of the same chain.
   */
  dropTable(table: string): Promise<CommitResult> {
    return this.#commitTableTxn(table, (schema, txn, commitTimeUs) => ({
      record: { txn, commitTimeUs, kind: 'drop', rowCount: 0, columns: [] },
      schemaAfter: freezeSchema({ name: schema.name, key: schema.key, columns: [] }),
    }));
  }

  /**
   * Commits one txn of an existing table that `make` builds from its schema, its next txn number and
   * the commit time, under the write lock like a request. Throws TABLE_UNKNOWN (invalid) for a
   * table that does not exist (or was dropped), before anything is written.
   */
  async #commitTableTxn(
    table: string,
    make: (
      schema: TableSchema,
      txn: bigint,
      commitTimeUs: bigint,
    ) => { record: TxnRecord; schemaAfter: TableSchema },
  ): Promise<CommitResult> {
    return answerOf(
      await this.#commitEncoded(async () => {
        this.#checkAccepting();
        const options = this.#buildOptions();
        const schema = options.schemaOf(table);
        if (schema === undefined)
          throw new WalshipError('TABLE_UNKNOWN', 'invalid', `table ${JSON.stringify(table)} does not exist`);
        const { record, schemaAfter } = make(schema, options.nextTxn(table), options.commitTimeUs);
        return encodeAll([{ table: schema.name, record, schemaAfter }]);
      }),
    );
  }

  /** Commits the txns `produce` makes under the write lock. */
  async #commitEncoded(produce: () => Promise<EncodedTxn[]>): Promise<SourceResult> {
    const { worker } = this.#options;
    if (worker !== undefined) return this.#commitThroughWorker(produce, worker);
    const release = await this.#lock();
    let committed: CommittedTxn[] = [];
    try {
      const encoded = await produce();
      if (encoded.length > 0) {
        committed =
          rowsOf(encoded) <= COMMIT_SLICE_ROWS ? this.#applyNow(encoded) : await this.#applyInSlices(encoded);
      }
    } finally {
      release();
    }
    // The next request may go on while this one's fsync runs (and shares it).
    return this.#acknowledge(committed);
  }

  /**
   * Resolves once no commit holds or waits for the write lock and every commit made has had its
   * fsync and told the uploader of its txns (a demotion and a shutdown wait for this before they
   * flush the uploader: a committed txn it has not heard of would be left behind).
   */
  async idle(): Promise<void> {
    while (this.#lockUsers > 0 || this.#writing.size > 0 || this.#syncing.size > 0) {
      await this.#lockTail;
      await Promise.allSettled([...this.#writing]);
      await Promise.allSettled([...this.#syncing]);
    }
  }

  /**
   * The write path with a write worker: the request is built and encoded under the write lock, on
   * the txns and schemas of the requests still with the worker (#queued), handed to the worker, and
   * the lock is released, so the next request is parsed and built while the worker applies this
   * one. The worker commits in the order it was handed requests; a failed one makes it refuse the
   * ones behind it (WRITE_ABORTED, retryable) until the next request renumbers from the store.
   */
  async #commitThroughWorker(
    produce: () => Promise<EncodedTxn[]>,
    worker: WriteWorker,
  ): Promise<SourceResult> {
    const release = await this.#lock();
    let committed: CommittedTxn[];
    let written: Promise<void>;
    try {
      await this.#recoverFromFailedWrite(worker);
      const encoded = await produce();
      if (encoded.length === 0) return { txnHeader: '', txns: [], committed: [] };
      this.#checkAccepting();
      // Only what the answer needs is kept: the request's columns can go while the worker applies,
      // and a copy of each record for the uploader (the records themselves go to the worker).
      committed = committedOf(encoded, true);
      written = this.#queued.add(encoded, this.#window.unsynced, worker);
    } finally {
      release();
    }
    const writing = written.catch(() => {});
    this.#writing.add(writing);
    try {
      await written;
      // #acknowledge registers its fsync with #syncing before this request leaves #writing.
      return this.#acknowledge(committed);
    } finally {
      this.#writing.delete(writing);
    }
  }

  /**
   * After a failed write, the requests handed to the worker behind it fail too (WRITE_ABORTED):
   * waits until they all have, forgets their txns, and lets the worker take commits again.
   */
  async #recoverFromFailedWrite(worker: WriteWorker): Promise<void> {
    if (!this.#queued.failed) return;
    while (this.#queued.size > 0) await this.#queued.settled();
    this.#queued.failed = false;
    await worker.resume();
  }

  /** Builds and encodes the request's txns (none for a request without lines). */
  async #buildAndEncode(source: IlpLineSource, batch?: BatchContext): Promise<EncodedTxn[]> {
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
    const all = tables.batchReads(() => builder.finish(options.nextTxn));
    const built = batch === undefined ? all : stampBatch(all, batch.identity, batch.known, batch.epoch);
    if (builder.rowCount <= COMMIT_SLICE_ROWS) return encodeAll(built);
    const encoded = await this.#encodeInSlices(built);
    this.#checkAccepting();
    return encoded;
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
        encoded.push(withBytes(b, await encodeTxnRecordInSlices(record, { pause: this.#pause })));
        slices.reset();
      } else {
        encoded.push(withBytes(b, encoder.encode(record)));
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

  /** Schemas and next txns: the store's, or those of the requests still with the worker. */
  #buildOptions() {
    const { tables, clock } = this.#options;
    const queued = this.#queued;
    return {
      // A dropped table (no columns) is built as a new one: its next data txn creates it anew.
      schemaOf: (table: string) => {
        const schema = queued.schema(table) ?? tables.schema(table);
        return schema === undefined || isDropped(schema) ? undefined : schema;
      },
      commitTimeUs: BigInt(Math.floor(clock.wallMs() * 1000)),
      nextTxn: (table: string) => (queued.lastTxn(table) ?? tables.lastTxn(table)) + 1n,
    };
  }

  /** The local commit in one synchronous step (its fsync comes after: #acknowledge). */
  #applyNow(encoded: EncodedTxn[]): CommittedTxn[] {
    applyRequest(this.#options.tables, encoded);
    return this.#committedUnsynced(encoded);
  }

  /**
   * The local commit with the rows inserted in slices, in one SQLite transaction held open across
   * them (the write window defers the uploader's writes on the same connection meanwhile). The
   * records are queued in the last step, right before COMMIT, so the uploader never sees them
   * uncommitted; that step first checks again that the node takes writes, so nothing commits
   * after a demotion or a fence closed the gate (both rely on no commit following it).
   */
  async #applyInSlices(encoded: EncodedTxn[]): Promise<CommittedTxn[]> {
    const { tables } = this.#options;
    await this.#window.during(() =>
      tables.deferringSync(() =>
        tables.transactionInSlices(async () => {
          // The build and the encoding took turns of the event loop; the write lock kept other
          // commits out. Checked inside the transaction, where the table cache needs no refresh.
          assertNextTxns(tables, encoded);
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

  /** The txns just committed, kept from the uploader until their fsync (#acknowledge). */
  #committedUnsynced(encoded: EncodedTxn[]): CommittedTxn[] {
    for (const { table, record } of encoded) this.#window.unsynced.add(table, record.txn);
    return committedOf(encoded);
  }

  /**
   * Waits for the WAL fsync that makes `encoded` durable (shared with the commits made meanwhile:
   * TableStore.syncWal), tells the uploader of the txns, and resolves when the ack mode is
   * satisfied: then (`local`), or once uploaded (`durable`). A failed fsync rejects with
   * STORAGE_FAILED and leaves the txns unsynced: they are never uploaded from this run.
   */
  async #acknowledge(committed: CommittedTxn[]): Promise<SourceResult> {
    const { tables, uploader } = this.#options;
    if (committed.length === 0) return { txnHeader: '', txns: [], committed: [] };
    const synced = tables.syncWal().then(() => {
      for (const { table, size, facts, record } of committed) {
        this.#window.unsynced.remove(table, facts.txn);
        uploader.committed(table, size, facts, record);
      }
    });
    this.#syncing.add(synced);
    try {
      await synced;
    } finally {
      this.#syncing.delete(synced);
    }
    const epoch = this.#options.epoch?.();
    const result = {
      txnHeader: committed
        .map(({ key, facts }) =>
          epoch === undefined ? `${key}=${facts.txn}` : `${key}=${facts.txn}@${epoch}`,
        )
        .join(','),
      txns: committed.map(({ table, facts }) => ({ table, txn: facts.txn, rows: facts.rowCount })),
      committed,
    };
    if (this.#options.ackMode === 'durable') await this.#durablyCommitted(result.txns);
    return result;
  }

  /** Waits until the store holds `txns` (durable mode), reporting the wait to onDurableAck. */
  async #durablyCommitted(txns: readonly { table: string; txn: bigint }[]): Promise<void> {
    const { uploader, durableTimeoutMs, clock, onDurableAck } = this.#options;
    const startedMs = clock.monotonicMs();
    let outcome: 'ok' | 'timeout' | 'error' = 'error';
    try {
      await Promise.all(txns.map(({ table, txn }) => uploader.waitUploaded(table, txn, durableTimeoutMs)));
      outcome = 'ok';
    } catch (error) {
      if (isWalshipError(error, 'DURABLE_TIMEOUT')) outcome = 'timeout';
      throw error;
    } finally {
      onDurableAck?.(outcome, (clock.monotonicMs() - startedMs) / 1000);
    }
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

/**
 * The requests handed to the write worker and not yet answered: per table (case-insensitively), the
 * last txn and schema they leave it with, which the next request is built on. A table's entry goes
 * when the request that last touched it is answered: the main thread's cache then has the same
 * (WriteWorker.commit told it), or the request failed and so did every later one touching the table.
 */
class QueuedTxns {
  readonly #byTable = new Map<string, { txn: bigint; schema: TableSchema }>();
  readonly #requests = new Set<Promise<void>>();
  /** A request failed: the ones after it fail too, and the next is built once they all have. */
  failed = false;

  get size(): number {
    return this.#requests.size;
  }

  lastTxn(table: string): bigint | undefined {
    return this.#byTable.get(table.toLowerCase())?.txn;
  }

  schema(table: string): TableSchema | undefined {
    return this.#byTable.get(table.toLowerCase())?.schema;
  }

  /**
   * Hands `encoded` to the worker: its txns are unsynced (kept from the uploader) from now until
   * their fsync, or until the worker refuses them. Resolves when committed.
   */
  add(encoded: readonly EncodedTxn[], unsynced: UnsyncedTxns, worker: WriteWorker): Promise<void> {
    const txns = encoded.map(({ table, record, bytes, schemaAfter }) => ({
      table,
      txn: record.txn,
      bytes,
      schemaAfter,
      reload: record.kind !== 'data',
    }));
    for (const { table, txn, schemaAfter } of txns) {
      this.#byTable.set(table.toLowerCase(), { txn, schema: schemaAfter });
      unsynced.add(table, txn);
    }
    const request = worker
      .commit(txns)
      .catch((error: unknown) => {
        this.failed = true;
        for (const { table, txn } of txns) unsynced.remove(table, txn);
        throw error;
      })
      .finally(() => {
        this.#requests.delete(request);
        for (const { table, txn } of txns) {
          const folded = table.toLowerCase();
          if (this.#byTable.get(folded)?.txn === txn) this.#byTable.delete(folded);
        }
      });
    this.#requests.add(request);
    return request;
  }

  /** Resolves when the requests handed over so far have all been answered. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#requests]);
  }
}

/** A batched request's identity, the parts of it committed before, and the epoch to stamp. */
interface BatchContext {
  identity: BatchIdentity;
  known: readonly BatchPart[];
  epoch: bigint;
}

/** A commit's result with the txns it committed (the batch path builds its token from them). */
type SourceResult = CommitResult & { committed: CommittedTxn[] };

/**
 * The dedup txn setting `schema`'s upsert keys to `keys` (case-insensitive names, spelled as the
 * table spells them in the record). Throws DEDUP_KEYS_INVALID for a key the table lacks, a key
 * named twice, or keys without the designated timestamp.
 */
function dedupRecord(
  schema: TableSchema,
  keys: readonly string[],
  txn: bigint,
  commitTimeUs: bigint,
): TxnRecord {
  const invalid = (problem: string) =>
    new WalshipError(
      'DEDUP_KEYS_INVALID',
      'invalid',
      `upsert keys of table ${JSON.stringify(schema.name)}: ${problem}`,
    );
  const columns: ColumnData[] = [];
  for (const key of keys) {
    const column = schema.columns.find((c) => c.name.toLowerCase() === key.toLowerCase());
    if (column === undefined) throw invalid(`${JSON.stringify(key)} is not a column of the table`);
    if (columns.some((c) => c.name === column.name)) throw invalid(`${JSON.stringify(key)} is named twice`);
    columns.push({ name: column.name, addedInTxn: false, nulls: null, data: emptyValues(column.type) });
  }
  if (columns.length > 0 && !columns.some((c) => c.name === DESIGNATED_TIMESTAMP_COLUMN))
    throw invalid(`they must include the designated timestamp (${DESIGNATED_TIMESTAMP_COLUMN})`);
  return { txn, commitTimeUs, kind: 'dedup', rowCount: 0, columns };
}

/** A column of `type` with no rows: the descriptor of an upsert key. */
function emptyValues(type: ColumnType): ColumnValues {
  switch (type) {
    case 'boolean':
      return { type, values: new Uint8Array(0) };
    case 'long':
    case 'timestamp':
      return { type, values: new BigInt64Array(0) };
    case 'double':
      return { type, values: new Float64Array(0) };
    default:
      return { type, values: [] };
  }
}

/** The result without the txns' records, which the caller must not keep. */
function answerOf({ txnHeader, txns }: SourceResult): CommitResult {
  return { txnHeader, txns };
}

/** A built txn with its encoded record, and the record's size (the bytes go to the worker). */
type EncodedTxn = BuiltTxn & { bytes: Uint8Array; size: number };

/** What answering a committed txn takes: no rows, so a large request's columns can go meanwhile. */
interface CommittedTxn {
  table: string;
  /** The table's store key (X-Walship-Txn names tables by it). */
  key: string;
  /** The size of the encoded record. */
  size: number;
  facts: RecordFacts & { txn: bigint };
  /**
   * The encoded record, for the uploader to seal without reading it back (Uploader.committed);
   * none for a record over RECENT_RECORD_COPY_MAX_BYTES handed to the write worker.
   */
  record: Uint8Array | undefined;
}

/**
 * The largest record the committer copies for the uploader when the record itself goes to the
 * write worker: two default rollovers. A larger one (a request of 100 MB) would double what the
 * request holds; the uploader reads it back from the pending queue instead.
 */
const RECENT_RECORD_COPY_MAX_BYTES = 4 * 1024 * 1024;

/**
 * What answering `encoded` takes. `copy` when its records are handed to the write worker: a record
 * the worker takes itself (isOwnBuffer) is copied for the uploader; one it copies (the small records
 * of the encoder's shared buffers) stays usable here as it is.
 */
function committedOf(encoded: readonly EncodedTxn[], copy = false): CommittedTxn[] {
  return encoded.map(({ table, schemaAfter, size, record, bytes }) => ({
    table,
    key: schemaAfter.key,
    size,
    facts: { txn: record.txn, rowCount: record.rowCount, tsRange: designatedTimestampRange(record) },
    record:
      !copy || !isOwnBuffer(bytes) ? bytes : size <= RECENT_RECORD_COPY_MAX_BYTES ? bytes.slice() : undefined,
  }));
}

function withBytes(built: BuiltTxn, bytes: Uint8Array): EncodedTxn {
  // Spelled out, not spread: a request over 1 000 tables makes 1 000 of these (a spread cost ~2 µs each).
  const { table, record, schemaAfter } = built;
  return { table, record, schemaAfter, bytes, size: bytes.byteLength };
}

/** Each txn with its encoded record, in one synchronous step. */
function encodeAll(built: BuiltTxn[]): EncodedTxn[] {
  const encoder = new TxnRecordEncoder();
  return built.map((b) => withBytes(b, encoder.encode(b.record)));
}

function rowsOf(encoded: readonly EncodedTxn[]): number {
  let rows = 0;
  for (const { record } of encoded) rows += record.rowCount;
  return rows;
}

/** Lines already parsed, as a source of slices of COMMIT_SLICE_ROWS lines with `pause` between. */
function slicesOf(batch: IlpLineBatch, pause: () => Promise<void>): IlpLineSource {
  const count = batch.lineCount;
  return {
    forEachSlice: async (sink) => {
      for (let at = 0; at < count; at += COMMIT_SLICE_ROWS) {
        if (at > 0) await pause();
        sink(batch, at, Math.min(count, at + COMMIT_SLICE_ROWS));
      }
      return count;
    },
  };
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
