/**
 * The write path of a sequenced primary (RFC-0003 "Commit protocol"): local commit into the
 * writer's staged queue (step 1), sealing whole requests into a batch recorded before any upload
 * (step 2), create-only upload of one staged segment per table (step 3), the sequencer commit,
 * retried with the same request until it returns or is fenced (step 4), the durable ack with the
 * sequencer's numbers (step 5) and the export of each entry to `txnlog/` off the ack path
 * (step 6, its TxnLogExporter). It never applies rows: the follower does, in sequencer order (step 7).
 *
 * One batch is in flight per writer epoch, and its batchSeq is persisted before its upload, so a
 * restart re-seals the same records and re-sends the same commit: replayed, same numbers.
 */
import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import {
  assert,
  type Clock,
  InvalidArgumentError,
  InvalidConfigError,
  isWalshipError,
  type Random,
  type Timer,
  WalshipError,
} from '../core/index.js';
import { type IlpLines, lineCountOf } from '../ilp/index.js';
import { readRegistry, registerTable, stagedKey } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { buildTxns, overdueAtMs, sealDueAtMs, sealReason } from '../primary/index.js';
import { type TableKey, type TableSchema, tableKey } from '../table/index.js';
import {
  type Codec,
  decodeSegment,
  decodeSegmentHeader,
  encodeTxnRecord,
  sealSegment,
} from '../wal/index.js';
import {
  type CommitRequest,
  type CommitResult,
  type LogEntry,
  SequencerFencedError,
  type SequencerStore,
} from './sequencer-store.js';
import {
  REQUEST_TABLES_MAX,
  type SegmentPlan,
  type StagedBatch,
  type StagedQueue,
  type StagedSegment,
} from './staged-queue.js';
import { TxnLogExporter } from './txn-log-exporter.js';

export type SequencedAckMode = 'local' | 'durable';

/** Backoff of every retried step (upload, registration, commit, export): doubling, jittered. */
export interface RetryBackoff {
  baseMs: number;
  maxMs: number;
}

/** Test hooks: a rejection is handled like a crash at that point (the writer stops there). */
export interface SequencedWriterFaults {
  /** After every segment of the batch is in the store, before the commit. */
  afterUpload?: (batchSeq: bigint) => Promise<void>;
  /** After the sequencer committed the batch, before the queue drops it and waiters are answered. */
  afterCommit?: (batchSeq: bigint) => Promise<void>;
}

export interface SequencedWriterOptions {
  store: ObjectStore;
  sequencer: SequencerStore;
  queue: StagedQueue;
  /** This node's id: the writer id at the sequencer and in staged keys. */
  nodeId: string;
  clock: Clock;
  random: Random;
  log: Logger;
  /** The table's current schema (the follower's view), undefined for a table it does not have. */
  schemaOf: (table: string) => TableSchema | undefined;
  /** Seal once the unsealed records reach this many bytes (`cairo.wal.segment.rollover.size`). */
  rolloverSizeBytes: number;
  /** Seal once the oldest unsealed request is this old (`replication.primary.throttle.window.duration`). */
  windowMs: number;
  codec: Codec;
  compressionLevel: number;
  /** How long a durable request waits for the sequencer's numbers before DURABLE_TIMEOUT. */
  durableTimeoutMs: number;
  /** Writes are refused (PENDING_FULL) while the queue holds more than this many bytes. */
  pendingMaxBytes: number;
  /** Default RFC-0003's 250 ms → 10 s. */
  commitRetry?: RetryBackoff;
  /** A batch was committed: its entries in request order, and the sealed bytes by staged key. */
  onCommitted?: (entries: LogEntry[], segments: Map<string, Uint8Array>) => void;
  /** The sequencer fenced this writer epoch: the writer has stopped. */
  onFenced?: (error: WalshipError) => void;
  faults?: SequencedWriterFaults;
}

export interface SequencedCommitResult {
  /** Durable: `key=txn,…` with the sequencer's numbers (X-Walship-Txn); local: ''. */
  txnHeader: string;
  /** `txn` (the sequencer's number) only in durable mode. */
  txns: { table: string; txn?: bigint; rows: number }[];
}

export interface SequencedWriterStatus {
  writer: string;
  epoch: bigint;
  acceptingWrites: boolean;
  fenced: boolean;
  /** The batch being uploaded or committed. */
  batchInFlight: bigint | null;
  queuedTxns: number;
  queuedBytes: number;
  /** Of the queued ones, those in no batch yet. */
  unsealedTxns: number;
  lastCommitAgoMs: number | null;
  /** Batches committed since start (replays included). */
  commits: number;
  lastError: { message: string; agoMs: number } | null;
  exportsPending: number;
  /** Why exports stopped (TXNLOG_CONFLICT), or null. */
  exportError: string | null;
  /** Why the writer stopped itself (an internal error), or null. */
  haltedBy: string | null;
}

export const DEFAULT_COMMIT_RETRY: RetryBackoff = { baseMs: 250, maxMs: 10_000 };
/** Staged segments uploading at once (a batch holds up to SEQUENCER_BATCH_MAX). */
const UPLOADS_IN_FLIGHT_MAX = 16;
/** How long stop() waits for the step in flight (each request is bounded by its client's limits). */
const STOP_WAIT_MS = 30_000;
/** CAS rounds of a discovery registration in tables.json before the step is retried. */
const REGISTRY_ROUNDS_MAX = 4;

interface Waiter {
  requestId: bigint;
  tables: { table: string; tableKey: TableKey; seq: bigint; rows: number }[];
  resolve: (result: SequencedCommitResult) => void;
  reject: (error: Error) => void;
}

interface RetryState {
  failures: number;
}

export class SequencedWriter {
  readonly #o: SequencedWriterOptions;
  readonly #epoch: bigint;
  readonly #backoff: RetryBackoff;
  readonly #abort = new AbortController();
  #started = false;
  #stopped = false;
  #fenced = false;
  #haltedBy: string | null = null;
  #step: Promise<void> | null = null;
  #timer: Timer | undefined;
  #batchInFlight: bigint | null = null;
  #waiters: Waiter[] = [];
  /** Unsealed requests' local commit times (monotonic ms), oldest first: the window's clock. */
  #unsealedSince: { requestId: bigint; atMs: number }[] = [];
  readonly #registered = new Set<string>();
  #commits = 0;
  #lastCommitAtMs: number | null = null;
  #lastError: { message: string; atMs: number } | null = null;
  /** Step 6, off the ack path: shares this writer's retry loop, stop and last error. */
  readonly #exporter: TxnLogExporter;

  private constructor(options: SequencedWriterOptions, epoch: bigint) {
    this.#o = options;
    this.#epoch = epoch;
    this.#backoff = options.commitRetry ?? DEFAULT_COMMIT_RETRY;
    this.#exporter = new TxnLogExporter({
      store: options.store,
      log: options.log,
      signal: this.#abort.signal,
      retrying: (what, state, fn) => this.#retrying(what, state, fn),
      onError: (error) => this.#noteError(error),
    });
  }

  /**
   * The writer epoch comes from the queue; only a queue that never had one registers (RFC-0003:
   * a restart never re-registers). A queue of another writer id is a configuration error.
   */
  static async open(options: SequencedWriterOptions): Promise<SequencedWriter> {
    checkOptions(options);
    const { queue, nodeId } = options;
    const owner = queue.writerEpoch();
    if (owner !== null && owner.writer !== nodeId) {
      throw new InvalidConfigError(`${queue.file} is the queue of writer ${owner.writer}, not of ${nodeId}`);
    }
    if (owner !== null) return new SequencedWriter(options, owner.epoch);
    const record = await options.sequencer.registerWriter(nodeId);
    queue.setWriterEpoch(nodeId, record.epoch);
    options.log.info({ writer: nodeId, epoch: record.epoch.toString() }, 'registered as a sequenced writer');
    return new SequencedWriter(options, record.epoch);
  }

  /** Starts the pump: an unfinished batch is re-sent first, unsealed requests are due at once. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const summary = this.#o.queue.pendingSummary();
    if (summary.unsealedTxns > 0) {
      const dueAtMs = overdueAtMs(this.#o, this.#o.clock.monotonicMs());
      this.#unsealedSince.push({ requestId: summary.lastRequest, atMs: dueAtMs });
    }
    this.#pump();
  }

  acceptingWrites(): boolean {
    return this.#started && !this.#stopped && !this.#fenced;
  }

  /**
   * One ILP request: one txn per table, queued in one SQLite transaction (all or none). `local`
   * answers at once; `durable` once the batch holding it is committed, with the sequencer's
   * numbers, or DURABLE_TIMEOUT after durableTimeoutMs (the request stays queued).
   */
  async commitLines(lines: IlpLines, ackMode: SequencedAckMode): Promise<SequencedCommitResult> {
    const { queue, clock } = this.#o;
    if (!this.acceptingWrites()) {
      throw new WalshipError('NOT_ACCEPTING_WRITES', 'fenced', this.#refusal());
    }
    const pendingBytes = queue.pendingBytes();
    if (pendingBytes > this.#o.pendingMaxBytes) {
      throw new WalshipError(
        'PENDING_FULL',
        'unavailable',
        `${pendingBytes} bytes await the sequencer (limit ${this.#o.pendingMaxBytes}): the object store or the ` +
          'sequencer has been unavailable for a while; writes resume when commits catch up',
      );
    }
    if (lineCountOf(lines) === 0) return { txnHeader: '', txns: [] };
    const built = buildTxns(lines, {
      schemaOf: this.#o.schemaOf,
      commitTimeUs: BigInt(Math.floor(clock.wallMs() * 1000)),
      nextTxn: (table) => queue.nextSeq(tableKey(table)),
    });
    if (built.length > REQUEST_TABLES_MAX) {
      throw new WalshipError(
        'TOO_MANY_TABLES_IN_REQUEST',
        'invalid',
        `this request writes ${built.length} tables; a sequenced writer numbers one request in one batch, which holds at most ${REQUEST_TABLES_MAX}`,
      );
    }
    const tables = built.map((b) => ({
      table: b.table,
      tableKey: b.schemaAfter.key,
      seq: b.record.txn,
      rows: b.record.rowCount,
      bytes: encodeTxnRecord(b.record),
    }));
    const { requestId } = queue.enqueue(
      tables.map((t) => ({ tableKey: t.tableKey, tableName: t.table, seq: t.seq, bytes: t.bytes })),
    );
    this.#unsealedSince.push({ requestId, atMs: clock.monotonicMs() });
    if (ackMode === 'local') {
      this.#pump();
      return { txnHeader: '', txns: tables.map((t) => ({ table: t.table, rows: t.rows })) };
    }
    const committed = this.#waitCommitted(requestId, tables);
    this.#pump();
    return committed;
  }

  status(): SequencedWriterStatus {
    const now = this.#o.clock.monotonicMs();
    const summary = this.#o.queue.pendingSummary();
    const error = this.#lastError;
    return {
      writer: this.#o.nodeId,
      epoch: this.#epoch,
      acceptingWrites: this.acceptingWrites(),
      fenced: this.#fenced,
      batchInFlight: this.#batchInFlight,
      queuedTxns: summary.txns,
      queuedBytes: summary.bytes,
      unsealedTxns: summary.unsealedTxns,
      lastCommitAgoMs: this.#lastCommitAtMs === null ? null : Math.round(now - this.#lastCommitAtMs),
      commits: this.#commits,
      lastError: error === null ? null : { message: error.message, agoMs: Math.round(now - error.atMs) },
      exportsPending: this.#exporter.pending,
      exportError: this.#exporter.error,
      haltedBy: this.#haltedBy,
    };
  }

  /** Starts nothing new, waits (bounded) for the step and exports in flight, fails the waiters left. */
  async stop(): Promise<void> {
    this.#halt(null);
    await withTimeout(Promise.all([this.#step, this.#exporter.running]), STOP_WAIT_MS, this.#o.clock);
    this.#rejectWaiters(() => new WalshipError('CLOSED', 'closed', 'the writer is shutting down'));
  }

  // --- the pump: one step (one batch) at a time ---

  #pump(): void {
    if (!this.#started || this.#stopped || this.#step !== null) return;
    const unfinished = this.#o.queue.batches()[0];
    if (unfinished === undefined && !this.#due()) {
      this.#schedule();
      return;
    }
    this.#timer?.cancel();
    this.#step = this.#runStep(unfinished)
      .catch((error: unknown) => this.#halt(error))
      .finally(() => {
        this.#step = null;
        this.#batchInFlight = null;
        this.#pump();
      });
  }

  #due(): boolean {
    const summary = this.#o.queue.pendingSummary();
    if (summary.unsealedTxns === 0) return false;
    const unsealed = {
      bytes: summary.unsealedBytes,
      oldestAtMs: this.#unsealedSince[0]?.atMs,
      // Waiters of requests already sealed wait for the batch in flight, not for a seal.
      writerWaiting: this.#waiters.some((w) => w.requestId > summary.sealedRequest),
    };
    return sealReason(this.#o, unsealed, this.#o.clock.monotonicMs()) !== null;
  }

  #schedule(): void {
    this.#timer?.cancel();
    const oldest = this.#unsealedSince[0];
    if (oldest === undefined || this.#stopped) return;
    const delayMs = Math.max(0, sealDueAtMs(this.#o, oldest.atMs) - this.#o.clock.monotonicMs());
    this.#timer = this.#o.clock.setTimer(delayMs, () => this.#pump(), { unref: true });
  }

  /** RFC-0003 steps 2–6 for one batch: the unfinished one (a restart) or a newly sealed one. */
  async #runStep(unfinished: StagedBatch | undefined): Promise<void> {
    let batch: StagedBatch;
    let sealed: Map<string, Uint8Array>;
    if (unfinished !== undefined) {
      batch = unfinished;
      sealed = await this.#reseal(batch);
      this.#o.log.info({ batchSeq: batch.batchSeq.toString() }, 'resuming an unfinished batch');
    } else {
      sealed = new Map();
      const next = await this.#o.queue.sealNextBatch(this.#o.rolloverSizeBytes, (b) => this.#seal(b, sealed));
      if (next === null) return;
      batch = next;
      this.#unsealedSince = this.#unsealedSince.filter((u) => u.requestId > batch.requestLast);
    }
    this.#batchInFlight = batch.batchSeq;
    const stored = await this.#uploadAll(batch, sealed);
    if (stored === null) return;
    await this.#o.faults?.afterUpload?.(batch.batchSeq);
    if ((await this.#registerTables(batch)) === null) return;
    const result = await this.#commit(batch, stored);
    if (result === null) return;
    await this.#o.faults?.afterCommit?.(batch.batchSeq);
    this.#committed(batch, result, stored);
  }

  /** makeSegments of sealNextBatch: one staged segment per plan, its bytes kept in `sealed`. */
  async #seal(
    b: { batchSeq: bigint; writerEpoch: bigint; plans: SegmentPlan[] },
    sealed: Map<string, Uint8Array>,
  ): Promise<StagedSegment[]> {
    const segments: StagedSegment[] = [];
    for (const plan of b.plans) {
      const bytes = await this.#sealRecords(plan.tableName, b.writerEpoch, plan.records);
      const staged = stagedKey(plan.tableKey, this.#o.nodeId, b.writerEpoch, b.batchSeq);
      sealed.set(staged, bytes);
      segments.push({
        tableKey: plan.tableKey,
        tableName: plan.tableName,
        seqFirst: plan.seqFirst,
        seqLast: plan.seqLast,
        staged,
        bytes: bytes.byteLength,
        crc32: decodeSegmentHeader(bytes).objectChecksum,
      });
    }
    return segments;
  }

  /** The same records sealed again after a restart: the same bytes unless the codec settings changed. */
  async #reseal(batch: StagedBatch): Promise<Map<string, Uint8Array>> {
    const sealed = new Map<string, Uint8Array>();
    for (const s of batch.segments) {
      const records = this.#o.queue.records(s.tableKey, s.seqFirst, s.seqLast);
      const bytes = await this.#sealRecords(s.tableName, batch.writerEpoch, records);
      if (decodeSegmentHeader(bytes).objectChecksum !== s.crc32) {
        this.#o.log.warn(
          { staged: s.staged },
          're-sealed staged segment differs from the first seal (codec settings changed?): the stored one is read back',
        );
      }
      sealed.set(s.staged, bytes);
    }
    return sealed;
  }

  #sealRecords(tableName: string, epoch: bigint, records: Uint8Array[]): Promise<Uint8Array> {
    return sealSegment({
      tableName,
      epoch,
      writerNodeId: this.#o.nodeId,
      records,
      codec: this.#o.codec,
      compressionLevel: this.#o.compressionLevel,
      staged: true,
    });
  }

  // --- step 3: upload ---

  /** Every segment create-only, in parallel (bounded); the bytes now in the store by key, or null when stopped. */
  async #uploadAll(
    batch: StagedBatch,
    sealed: Map<string, Uint8Array>,
  ): Promise<Map<string, Uint8Array> | null> {
    const stored = new Map<string, Uint8Array>();
    const todo = [...batch.segments];
    const state: RetryState = { failures: 0 };
    const worker = async (): Promise<boolean> => {
      for (let s = todo.shift(); s !== undefined; s = todo.shift()) {
        const bytes = sealed.get(s.staged);
        assert(bytes !== undefined, `no sealed bytes for ${s.staged}`);
        const segment = s;
        const got = await this.#retrying('staged upload', state, () =>
          this.#uploadOne(batch, segment, bytes),
        );
        if (got === null) return false;
        stored.set(s.staged, got);
      }
      return true;
    };
    const workers = Array.from({ length: Math.min(UPLOADS_IN_FLIGHT_MAX, batch.segments.length) }, worker);
    const done = await Promise.all(workers);
    return done.every(Boolean) ? stored : null;
  }

  /** One create-only PUT; a taken key is ours when it holds these bytes (or these records, re-sealed). */
  async #uploadOne(batch: StagedBatch, s: StagedSegment, bytes: Uint8Array): Promise<Uint8Array> {
    const { store, nodeId } = this.#o;
    const writeId = `${nodeId}.${batch.writerEpoch}.${batch.batchSeq}`;
    const put = await store.put(s.staged, bytes, { condition: { type: 'absent' }, writeId });
    if (put.status === 'written') return bytes;
    const existing = await store.get(s.staged);
    if (existing === null || existing.status !== 'ok') {
      throw new WalshipError(
        'STORE_INCONSISTENT',
        'unavailable',
        `${s.staged} refused a create-only write but cannot be read`,
      );
    }
    if (Buffer.from(existing.body).equals(bytes)) return bytes;
    if (await this.#holdsOurRecords(batch, s, existing.body)) return existing.body;
    throw new WalshipError(
      'STAGED_CONFLICT',
      'internal',
      `${s.staged} holds another segment than the one this writer sealed for batch ${batch.batchSeq}: ` +
        'the staged queue does not match the store (a restored or copied data dir?); the writer stops',
    );
  }

  /** A segment sealed by this writer epoch from exactly the queued records (sealed with other codec settings). */
  async #holdsOurRecords(batch: StagedBatch, s: StagedSegment, body: Uint8Array): Promise<boolean> {
    try {
      const { header, txns } = await decodeSegment(body);
      const records = this.#o.queue.records(s.tableKey, s.seqFirst, s.seqLast);
      return (
        header.staged &&
        header.writerNodeId === this.#o.nodeId &&
        header.epoch === batch.writerEpoch &&
        header.txnFirst === s.seqFirst &&
        txns.length === records.length &&
        txns.every((txn, i) => Buffer.from(encodeTxnRecord(txn)).equals(records[i]!))
      );
    } catch (error) {
      if (isWalshipError(error) && error.kind === 'data') return false;
      throw error;
    }
  }

  /**
   * tables.json lists every table so nodes without sequencer access discover it. Sequenced writers
   * are fenced by the sequencer, not by this registry (RFC-0003 "Two kinds of epoch"), so the
   * registration takes the registry's own epoch: it is for discovery only.
   */
  async #registerTables(batch: StagedBatch): Promise<true | null> {
    const missing = batch.segments.map((s) => s.tableKey).filter((k) => !this.#registered.has(k));
    if (missing.length === 0) return true;
    return this.#retrying('table registration', { failures: 0 }, async () => {
      for (const key of missing) {
        await this.#registerOne(key);
        this.#registered.add(key);
      }
      return true as const;
    });
  }

  async #registerOne(key: TableKey): Promise<void> {
    for (let round = 0; round < REGISTRY_ROUNDS_MAX; round++) {
      const current = await readRegistry(this.#o.store);
      if (current?.registry.tables.includes(key)) return;
      if ((await registerTable(this.#o.store, key, current?.registry.epoch ?? 1n)) === 'registered') return;
    }
    throw new WalshipError(
      'REGISTRY_CONTENDED',
      'unavailable',
      `tables.json kept changing while registering ${key}`,
    );
  }

  // --- step 4: commit ---

  /** The same request until it returns; null when stopped or fenced. */
  async #commit(batch: StagedBatch, stored: Map<string, Uint8Array>): Promise<CommitResult | null> {
    const request: CommitRequest = {
      writer: this.#o.nodeId,
      writerEpoch: batch.writerEpoch,
      batchSeq: batch.batchSeq,
      segments: batch.segments.map((s) => {
        const bytes = stored.get(s.staged)!;
        return {
          table: s.tableKey,
          staged: s.staged,
          txnCount: Number(s.seqLast - s.seqFirst + 1n),
          bytes: bytes.byteLength,
          crc32: decodeSegmentHeader(bytes).objectChecksum,
        };
      }),
    };
    let outcomeUnknown = false;
    try {
      const result = await this.#retrying('sequencer commit', { failures: 0 }, async () => {
        try {
          return await this.#o.sequencer.commit(request);
        } catch (error) {
          if (isWalshipError(error, 'SEQUENCER_UNAVAILABLE')) outcomeUnknown = true;
          throw error;
        }
      });
      if (result !== null) checkCommitResult(request, result);
      return result;
    } catch (error) {
      if (!isWalshipError(error, 'SEQUENCER_FENCED')) throw error;
      await this.#fence(error, batch, outcomeUnknown);
      return null;
    }
  }

  /** Step 5: the queue drops the batch, durable waiters get their numbers, exports start. */
  #committed(batch: StagedBatch, result: CommitResult, stored: Map<string, Uint8Array>): void {
    this.#o.queue.finishBatch(batch.batchSeq);
    this.#commits++;
    this.#lastCommitAtMs = this.#o.clock.monotonicMs();
    if (result.replayed) {
      this.#o.log.info({ batchSeq: batch.batchSeq.toString() }, 'batch had been committed before: replayed');
    }
    const still: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.requestId <= batch.requestLast) waiter.resolve(ackOf(waiter, batch, result.entries));
      else still.push(waiter);
    }
    this.#waiters = still;
    try {
      this.#o.onCommitted?.(result.entries, stored);
    } catch (error) {
      this.#o.log.error({ err: (error as Error).message }, 'onCommitted failed');
    }
    this.#exporter.add(result.entries);
  }

  /**
   * RFC-0003 "fenced writer": stop, fail every waiter, delete our uncommitted staged objects. They
   * are ours to delete only when no attempt of this batch may have committed: after an unknown
   * outcome the sequencer's writer record decides, and on any doubt GC does it later.
   */
  async #fence(cause: WalshipError, batch: StagedBatch, outcomeUnknown: boolean): Promise<void> {
    const error = new SequencerFencedError(
      `writer ${this.#o.nodeId} epoch ${batch.writerEpoch} was fenced by the sequencer (this node was ` +
        'registered again or replaced): it no longer accepts writes; unacknowledged requests were not committed',
      { cause },
    );
    this.#fenced = true;
    this.#halt(null);
    this.#noteError(error);
    this.#o.log.error({ writer: this.#o.nodeId, epoch: batch.writerEpoch.toString() }, error.message);
    this.#rejectWaiters(() => error);
    try {
      this.#o.onFenced?.(error);
    } catch (hookError) {
      this.#o.log.error({ err: (hookError as Error).message }, 'onFenced failed');
    }
    try {
      if (outcomeUnknown) {
        const last = await this.#lastCommittedBatch(batch.writerEpoch);
        if (last === null || last >= batch.batchSeq) {
          this.#o.log.warn(
            { batchSeq: batch.batchSeq.toString() },
            'fenced batch may be committed: its staged objects stay',
          );
          return;
        }
      }
      await this.#o.store.deleteMany(batch.segments.map((s) => s.staged));
      this.#o.log.info({ batchSeq: batch.batchSeq.toString() }, 'deleted the fenced batch’s staged objects');
    } catch (error) {
      this.#o.log.warn({ err: (error as Error).message }, 'could not delete fenced staged objects: GC will');
    }
  }

  /** The last batch the sequencer committed for our epoch `epoch`, or null when it does not say. */
  async #lastCommittedBatch(epoch: bigint): Promise<bigint | null> {
    const record = (await this.#o.sequencer.writers()).find((w) => w.writer === this.#o.nodeId);
    if (record === undefined) return null;
    if (record.epoch === epoch) return record.lastBatchSeq;
    return record.closed.find((c) => c.epoch === epoch)?.lastBatchSeq ?? null;
  }

  // --- helpers ---

  /**
   * `fn` until it returns; an `unavailable` error is retried after a jittered, doubling backoff,
   * anything else is thrown. Null once the writer stops.
   */
  async #retrying<T>(what: string, state: RetryState, fn: () => Promise<T>): Promise<T | null> {
    for (;;) {
      if (this.#abort.signal.aborted) return null;
      try {
        const value = await fn();
        state.failures = 0;
        return value;
      } catch (error) {
        if (!isWalshipError(error) || error.kind !== 'unavailable') throw error;
        state.failures++;
        this.#noteError(error);
        this.#o.log.warn({ err: error.message, failures: state.failures }, `${what} failed; will retry`);
        const ceilingMs = Math.min(this.#backoff.maxMs, this.#backoff.baseMs * 2 ** (state.failures - 1));
        try {
          await this.#o.clock.sleep(ceilingMs * (0.5 + this.#o.random.next() / 2), this.#abort.signal);
        } catch {
          return null;
        }
      }
    }
  }

  #waitCommitted(requestId: bigint, tables: Waiter['tables']): Promise<SequencedCommitResult> {
    const timeoutMs = this.#o.durableTimeoutMs;
    return new Promise<SequencedCommitResult>((resolve, reject) => {
      const waiter: Waiter = {
        requestId,
        tables,
        resolve: (result) => {
          timer.cancel();
          resolve(result);
        },
        reject: (error) => {
          timer.cancel();
          reject(error);
        },
      };
      const timer = this.#o.clock.setTimer(timeoutMs, () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(this.#durableTimeout(tables, timeoutMs));
      });
      this.#waiters.push(waiter);
    });
  }

  #durableTimeout(tables: Waiter['tables'], timeoutMs: number): WalshipError {
    const names = tables.map((t) => t.table).join(', ');
    const cause = this.#lastError?.message ?? 'the commit is still in progress';
    const committed = `committed locally (${names}) but not numbered by the sequencer after ${timeoutMs} ms`;
    const next = 'it stays queued and will be committed: retrying this request would write the rows again';
    return new WalshipError('DURABLE_TIMEOUT', 'unavailable', `${committed} (${cause}); ${next}`, {
      // What the client is told (HTTP passes it on): the store's or sequencer's error may name internals.
      details: { clientMessage: `${committed}; ${next}` },
    });
  }

  /** Stops the writer; with an error (an internal one, or a fault hook's "crash") it is logged and kept. */
  #halt(error: unknown): void {
    if (error !== null) {
      this.#haltedBy = (error as Error).message ?? String(error);
      this.#noteError(error);
      this.#o.log.error({ err: this.#haltedBy }, 'sequenced writer stopped');
      const halted = isWalshipError(error)
        ? error
        : new WalshipError('INTERNAL', 'internal', this.#haltedBy, { cause: error });
      this.#rejectWaiters(() => halted);
    }
    this.#stopped = true;
    this.#timer?.cancel();
    this.#abort.abort();
  }

  #rejectWaiters(error: () => Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.reject(error());
  }

  #noteError(error: unknown): void {
    this.#lastError = {
      message: (error as Error).message ?? String(error),
      atMs: this.#o.clock.monotonicMs(),
    };
  }

  #refusal(): string {
    if (this.#fenced) return 'this writer was fenced by the sequencer and no longer accepts writes';
    if (!this.#started) return 'this writer has not started yet';
    return 'this writer has stopped and no longer accepts writes';
  }
}

/** The durable answer of one request: each table's sequencer txn = entry.txnFirst + (seq − seqFirst). */
function ackOf(waiter: Waiter, batch: StagedBatch, entries: LogEntry[]): SequencedCommitResult {
  const txns = waiter.tables.map((t) => {
    const index = batch.segments.findIndex((s) => s.tableKey === t.tableKey);
    const segment = batch.segments[index];
    const entry = entries[index];
    assert(
      segment !== undefined && entry !== undefined && t.seq >= segment.seqFirst && t.seq <= segment.seqLast,
      `request ${waiter.requestId} (${t.tableKey} seq ${t.seq}) is not in batch ${batch.batchSeq}`,
    );
    return {
      table: t.table,
      tableKey: t.tableKey,
      txn: entry.txnFirst + (t.seq - segment.seqFirst),
      rows: t.rows,
    };
  });
  return {
    txnHeader: txns.map((t) => `${t.tableKey}=${t.txn}`).join(','),
    txns: txns.map(({ table, txn, rows }) => ({ table, txn, rows })),
  };
}

/** The sequencer's answer must describe exactly our request (STYLE rule 5). */
function checkCommitResult(request: CommitRequest, result: CommitResult): void {
  assert(result.entries.length === request.segments.length, 'commit answered another number of entries');
  request.segments.forEach((s, i) => {
    const e = result.entries[i]!;
    assert(
      e.table === s.table &&
        e.staged === s.staged &&
        e.txnLast - e.txnFirst + 1n === BigInt(s.txnCount) &&
        e.writer === request.writer &&
        e.writerEpoch === request.writerEpoch &&
        e.batchSeq === request.batchSeq,
      `commit entry ${i} does not match segment ${s.staged}`,
    );
  });
}

function checkOptions(o: SequencedWriterOptions): void {
  const positive = {
    rolloverSizeBytes: o.rolloverSizeBytes,
    durableTimeoutMs: o.durableTimeoutMs,
    pendingMaxBytes: o.pendingMaxBytes,
  };
  for (const [name, value] of Object.entries(positive)) {
    if (!Number.isFinite(value) || value <= 0)
      throw new InvalidArgumentError(`${name} ${value} must be positive`);
  }
  if (!Number.isFinite(o.windowMs) || o.windowMs < 0)
    throw new InvalidArgumentError(`windowMs ${o.windowMs} must be ≥ 0`);
  const retry = o.commitRetry ?? DEFAULT_COMMIT_RETRY;
  if (!(retry.baseMs > 0 && retry.maxMs >= retry.baseMs))
    throw new InvalidArgumentError(
      `commitRetry ${retry.baseMs}..${retry.maxMs} ms must satisfy 0 < base ≤ max`,
    );
}

async function withTimeout(promise: Promise<unknown>, timeoutMs: number, clock: Clock): Promise<void> {
  let timer: Timer | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = clock.setTimer(timeoutMs, resolve);
  });
  try {
    await Promise.race([promise.then(() => undefined), timeout]);
  } finally {
    timer?.cancel();
  }
}
