import type { Logger } from 'pino';
import {
  assert,
  type Clock,
  isoTime,
  isWalshipError,
  type Random,
  type Timer,
  WalshipError,
} from '../core/index.js';
import {
  encodeHead,
  epochKey,
  HEAD_KEY,
  registerTables,
  segmentKey,
  TABLES_REGISTRY_KEY,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { TableKey } from '../table/index.js';
import { type Codec, decodeSegment, encodeTxnRecord, type RecordFacts, sealSegment } from '../wal/index.js';
import { overdueAtMs, sealDueAtMs, sealReason, type Unsealed } from './seal-policy.js';
import { segmentInChain } from './segment-in-chain.js';

/** What the uploader needs from the node's database (implemented by TableStore). */
export interface PendingSource {
  /** Tables with pending txns. */
  pendingSummary(): { table: string; count: number; bytes: number; oldestTxn: bigint }[];
  /**
   * Pending encoded txn records of a table in txn order, after `afterTxn` if given, about
   * `limitBytes` worth (at least one).
   * A primary reads them in its write worker (a large record would hold the event loop), so the
   * answer may come later.
   */
  pending(
    table: string,
    options: { limitBytes: number; afterTxn?: bigint },
  ): { txn: bigint; bytes: Uint8Array }[] | Promise<{ txn: bigint; bytes: Uint8Array }[]>;
  /** In one local transaction: uploaded watermark := txn, and drop pending records through it. */
  markUploaded(table: string, txn: bigint): void;
  uploadedTxn(table: string): bigint;
  /** Every table's uploaded watermark (for head.json, which lists every table, not only those written since start). */
  uploadedAll(): { table: string; uploadedTxn: bigint }[];
  tableKey(table: string): TableKey;
}

export interface UploaderOptions {
  store: ObjectStore;
  source: PendingSource;
  nodeId: string;
  /** The epoch segments are written in; read at each seal (a promotion changes it). */
  epoch: () => bigint;
  clock: Clock;
  random: Random;
  log: Logger;
  /** Seal a segment once a table's pending records reach this size (`cairo.wal.segment.rollover.size`). */
  rolloverSizeBytes: number;
  /** Seal once the oldest pending txn is this old (`replication.primary.throttle.window.duration`). */
  windowMs: number;
  /** Tables uploading at once (`replication.requests.max.concurrent`). */
  maxConcurrentTables: number;
  /** Rewrite head.json at most this often. */
  headIntervalMs: number;
  codec: Codec;
  compressionLevel: number;
  /** A segment slot is held by another writer: this node has been replaced (DESIGN §5 step 5). */
  onFenced: (detail: { table: string; txnFirst: bigint; writerNodeId: string; epoch: bigint }) => void;
  /** Called once per segment upload attempt, however it ends (for `/metrics`). */
  onUpload?: (event: SegmentUploadEvent) => void;
  /** Bytes of recent records kept for all tables (TableState.recent). Default RECENT_RECORDS_MAX_BYTES. */
  recentMaxBytes?: number;
}

/** One segment upload attempt, as `onUpload` reports it. */
export interface SegmentUploadEvent {
  table: string;
  /**
   * `ok`: written; `ours`: the slot already held this upload (a lost answer); `fenced`: another
   * writer holds the slot or closed registration; `error`: failed, retried later.
   */
  outcome: 'ok' | 'ours' | 'fenced' | 'error';
  /** The sealed segment's size; 0 when the attempt failed before sealing. */
  bytes: number;
  /** From sealing to the store's answer (and the read-back of a taken slot). */
  seconds: number;
}

interface TableState {
  pendingBytes: number;
  /** Monotonic ms when the oldest pending txn was committed (or when the uploader learnt of it). */
  /**
   * Monotonic ms at which each pending txn was committed, oldest first (one entry per txn, in txn
   * order: commits of one table are serial). The window runs from the oldest one's commit.
   */
  pendingCommitsAtMs: number[];
  uploading: boolean;
  waiters: { txn: bigint; resolve: () => void; reject: (error: Error) => void }[];
  /** Monotonic ms before which a failed table is not retried. */
  retryAtMs: number;
  /** Monotonic ms of the last failure (retryAtMs is counted from it). */
  failedAtMs: number;
  failures: number;
  lastError: string | null;
  lastUploadAtMs: number | null;
  segmentsUploaded: number;
  /**
   * What the committer knew of each pending txn it committed since this uploader started (row
   * count, timestamp range), by txn: a segment of txns all found here is sealed without decoding
   * them again (sealSegment's `known`). Txns committed before a restart are decoded.
   */
  facts: Map<bigint, RecordFacts>;
  /**
   * The encoded records the committer handed over with their commit (`committed`), by txn, while
   * they fit in RECENT_RECORDS_MAX_BYTES: an upload of txns all found here, from the watermark on,
   * is sealed from them without reading the pending queue (a read that waits for the write
   * worker's job under way). The pending queue stays the record; these are a copy of it.
   */
  recent: Map<bigint, Uint8Array>;
}

/**
 * Bytes of recent records the uploader keeps for all tables at most: a few rollovers' worth. Past
 * it, records are read back from the pending queue as before (a store outage, a slow store).
 */
export const RECENT_RECORDS_MAX_BYTES = 32 * 1024 * 1024;

/** How long stop() waits for uploads in flight (each is bounded by the store's own time limits). */
const STOP_WAIT_MS = 30_000;
/** How long stop() waits for a head.json write in flight. */
const HEAD_STOP_WAIT_MS = 2_000;
/** Backoff after a failed upload (after the store's own retries): doubles from 250 ms to 10 s, jittered. */
const FAILURE_BACKOFF_MS = { base: 250, max: 10_000 };
/**
 * While a durable writer waits on a table, its failed uploads are retried at least this often: a
 * 10 s backoff would spend a durable writer's whole time limit (`replication.ack.durable.timeout`,
 * 10 s by default) on one wait, so a store failing one request in eight timed writers out.
 */
const WAITING_BACKOFF_MAX_MS = 1_000;

/**
 * Ships each table's pending txns to the store as create-only segments (DESIGN §5 step 4):
 * sealed on rollover size, throttle window, or a waiting durable writer; strictly in order per
 * table, different tables in parallel under a cap; a failed upload is retried with backoff and
 * ingestion is never blocked by it. A segment already in the store at our slot is recognised
 * as ours (same writer, same epoch, same records: a retry after a crash or a lost response)
 * or reported as a fence.
 */
export class Uploader {
  readonly #options: UploaderOptions;
  readonly #tables = new Map<string, TableState>();
  #timer: Timer | undefined;
  /** Monotonic ms the armed #timer fires at; +∞ when none is armed. */
  #timerAtMs = Number.POSITIVE_INFINITY;
  #running = 0;
  /** Bytes of every table's `recent` records. */
  #recentBytes = 0;
  #stopped = false;
  #fenced = false;
  #headDirty = false;
  #headWrittenAtMs = Number.NEGATIVE_INFINITY;
  /** The head.json write in flight, which stop() waits for so nothing writes after it returns. */
  #headWrite: Promise<void> | null = null;
  /** flush() calls in progress: every table with pending txns is due while one runs. */
  #flushing = 0;
  #lastStoreError: { message: string; atMs: number } | null = null;
  /** Table keys known to be in tables.json: registered once before their first upload (RFC-0002 W2). */
  readonly #registered = new Set<string>();
  /** The tables.json write in flight (#register): every upload that needs one waits for it. */
  #registering: Promise<'registered' | 'fenced'> | null = null;
  /** The HEAD of `epochs/<E+1>.json` in flight (RFC-0002 W5), or null. */
  #epochCheck: Promise<boolean> | null = null;
  /** The check queued behind it, shared by every upload that completed while it ran. */
  #epochCheckNext: Promise<boolean> | null = null;
  /** Epoch checks sent so far (one per batch of completed uploads, not one per upload). */
  #epochChecks = 0;
  /** A check found `epochs/<E+1>.json`: this node was replaced, for good. */
  #replaced = false;

  constructor(options: UploaderOptions) {
    this.#options = options;
  }

  /** Pick up txns left pending by an earlier run: they are due at once. */
  start(): void {
    for (const { table, bytes, count } of this.#options.source.pendingSummary()) {
      const state = this.#state(table);
      state.pendingBytes = bytes;
      const dueAtMs = overdueAtMs(this.#options, this.#options.clock.monotonicMs());
      state.pendingCommitsAtMs = Array.from({ length: count }, () => dueAtMs);
    }
    // A promoted node writes head.json at once: the one in the store may be stale (a primary can
    // die between an upload and its head.json), and replicas trust it between sweeps.
    if (this.#options.source.uploadedAll().some((t) => t.uploadedTxn > 0n)) {
      this.#headDirty = true;
      void this.#writeHead(true);
    }
    this.#pump();
  }

  /**
   * A txn of `bytes` encoded bytes was committed to `table`'s pending queue; `facts` (its number,
   * row count and timestamp range, as the committer built it) lets the seal skip decoding it.
   */
  committed(table: string, bytes: number, facts?: RecordFacts & { txn: bigint }, record?: Uint8Array): void {
    const state = this.#state(table);
    state.pendingBytes += bytes;
    if (facts !== undefined) {
      state.facts.set(facts.txn, facts);
      const max = this.#options.recentMaxBytes ?? RECENT_RECORDS_MAX_BYTES;
      if (record !== undefined && this.#recentBytes + record.byteLength <= max) {
        state.recent.set(facts.txn, record);
        this.#recentBytes += record.byteLength;
      }
    }
    const nowMs = this.#options.clock.monotonicMs();
    state.pendingCommitsAtMs.push(nowMs);
    // A commit starts an upload itself only on size: the window has the timer, and a durable
    // waiter pumps as it starts waiting.
    if (sealReason(this.#options, unsealedOf(state), nowMs) === 'size') this.#pump();
    else if (!this.#timerCovers(state)) this.#schedule();
  }

  /**
   * Whether the armed timer fires no later than `state` needs it: then `#schedule` would arm the
   * same timer again, and skipping it keeps a request that commits to a thousand tables from
   * scanning every table once per table (issue 15). The timer's own run reschedules from scratch.
   */
  #timerCovers(state: TableState): boolean {
    // A failed head.json write marks it dirty again without rescheduling.
    if (this.#headDirty && this.#headWrittenAtMs + this.#options.headIntervalMs < this.#timerAtMs)
      return false;
    const oldestAtMs = state.pendingCommitsAtMs[0];
    if (state.uploading || oldestAtMs === undefined) return true;
    return this.#timerAtMs <= Math.max(sealDueAtMs(this.#options, oldestAtMs), retryAtMs(state));
  }

  /** Resolves once `table`'s txn `txn` is in the store; rejects with DURABLE_TIMEOUT after `timeoutMs`. */
  waitUploaded(table: string, txn: bigint, timeoutMs: number): Promise<void> {
    if (this.#options.source.uploadedTxn(table) >= txn) return Promise.resolve();
    if (this.#fenced) return Promise.reject(fencedError());
    if (this.#stopped) return Promise.reject(closedError());
    const state = this.#state(table);
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        txn,
        resolve: () => {
          timer.cancel();
          resolve();
        },
        reject: (error: Error) => {
          timer.cancel();
          reject(error);
        },
      };
      const timer = this.#options.clock.setTimer(timeoutMs, () => {
        state.waiters = state.waiters.filter((w) => w !== waiter);
        const cause = state.lastError ?? 'the upload is still in progress';
        const committed = `committed locally as ${table} txn ${txn} but not in the object store after ${timeoutMs} ms`;
        const next =
          'it stays committed and will be uploaded: retrying this request would write the rows again';
        reject(
          new WalshipError('DURABLE_TIMEOUT', 'unavailable', `${committed} (${cause}); ${next}`, {
            // What the client is told (HTTP passes it on): the store's error may name internals.
            details: { clientMessage: `${committed}; ${next}` },
          }),
        );
      });
      state.waiters.push(waiter);
      this.#pump();
    });
  }

  /** Per-table upload state for /status. */
  status(): {
    tables: Record<
      string,
      {
        pendingBytes: number;
        lastError: string | null;
        segmentsUploaded: number;
        lastUploadAgoMs: number | null;
        /** Age of the oldest committed txn not uploaded yet; null when none is pending. */
        oldestPendingAgeMs: number | null;
      }
    >;
    lastStoreError: { message: string; agoMs: number } | null;
  } {
    const now = this.#options.clock.monotonicMs();
    const tables: Record<
      string,
      {
        pendingBytes: number;
        lastError: string | null;
        segmentsUploaded: number;
        lastUploadAgoMs: number | null;
        /** Age of the oldest committed txn not uploaded yet; null when none is pending. */
        oldestPendingAgeMs: number | null;
      }
    > = {};
    for (const [table, s] of this.#tables) {
      const oldestAtMs = s.pendingBytes === 0 ? undefined : s.pendingCommitsAtMs[0];
      tables[table] = {
        pendingBytes: s.pendingBytes,
        lastError: s.lastError,
        segmentsUploaded: s.segmentsUploaded,
        lastUploadAgoMs: s.lastUploadAtMs === null ? null : Math.round(now - s.lastUploadAtMs),
        oldestPendingAgeMs: oldestAtMs === undefined ? null : Math.max(0, Math.round(now - oldestAtMs)),
      };
    }
    const e = this.#lastStoreError;
    return {
      tables,
      lastStoreError: e === null ? null : { message: e.message, agoMs: Math.round(now - e.atMs) },
    };
  }

  /** Encoded bytes committed but not yet uploaded, over all tables. */
  get pendingBytes(): number {
    let sum = 0;
    for (const s of this.#tables.values()) sum += s.pendingBytes;
    return sum;
  }

  /** True while any table has pending txns or an upload in flight. */
  get busy(): boolean {
    return this.#running > 0 || [...this.#tables.values()].some((s) => s.pendingBytes > 0);
  }

  /** Upload everything pending now, ignoring the window; resolves when done or when `timeoutMs` passes. */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = this.#options.clock.monotonicMs() + timeoutMs;
    this.#flushing++;
    try {
      this.#pump();
      while (this.busy && !this.#fenced && this.#options.clock.monotonicMs() < deadline) {
        await this.#options.clock.sleep(10);
        this.#pump();
      }
    } finally {
      this.#flushing--;
    }
    await this.#writeHead(true);
    return !this.busy;
  }

  /** Start no more uploads, fail waiters, and wait (bounded) for uploads in flight to settle. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timerAtMs = Number.POSITIVE_INFINITY;
    // A waiter whose upload is in flight learns that upload's outcome (#settleAfterUpload); the
    // others can never be satisfied now.
    this.#rejectIdleWaiters(() => closedError());
    const deadline = this.#options.clock.monotonicMs() + STOP_WAIT_MS;
    while (this.#running > 0 && this.#options.clock.monotonicMs() < deadline)
      await this.#options.clock.sleep(5);
    for (const s of this.#tables.values()) this.#rejectWaiters(s, closedError());
    // A head.json write in flight normally ends in milliseconds; one stuck behind a lock a killed
    // process left (broken after 30 s) must not hold up the shutdown: it is only a hint.
    const headWrite = this.#headWrite;
    if (headWrite !== null) await Promise.race([headWrite, this.#options.clock.sleep(HEAD_STOP_WAIT_MS)]);
  }

  /**
   * The recent records that follow `watermark` without a gap, up to a rollover's bytes (at least
   * one, as the pending queue's read), or undefined when the next one is not among them.
   */
  #recentFrom(watermark: bigint, state: TableState): { txn: bigint; bytes: Uint8Array }[] | undefined {
    const records: { txn: bigint; bytes: Uint8Array }[] = [];
    let total = 0;
    for (let txn = watermark + 1n; ; txn++) {
      const bytes = state.recent.get(txn);
      if (bytes === undefined) break;
      if (records.length > 0 && total + bytes.byteLength > this.#options.rolloverSizeBytes) break;
      records.push({ txn, bytes });
      total += bytes.byteLength;
    }
    return records.length === 0 ? undefined : records;
  }

  #forgetRecent(state: TableState, txn: bigint): void {
    const bytes = state.recent.get(txn);
    if (bytes === undefined) return;
    state.recent.delete(txn);
    this.#recentBytes -= bytes.byteLength;
  }

  #state(table: string): TableState {
    let state = this.#tables.get(table);
    if (state === undefined) {
      state = {
        pendingBytes: 0,
        facts: new Map(),
        recent: new Map(),
        pendingCommitsAtMs: [],
        uploading: false,
        waiters: [],
        retryAtMs: 0,
        failedAtMs: 0,
        failures: 0,
        lastError: null,
        lastUploadAtMs: null,
        segmentsUploaded: 0,
      };
      this.#tables.set(table, state);
    }
    return state;
  }

  #isDue(state: TableState, nowMs: number): boolean {
    if (state.uploading || state.pendingBytes === 0 || nowMs < retryAtMs(state)) return false;
    // flush() uploads whatever is pending, whatever the seal rule says.
    if (this.#flushing > 0) return true;
    return sealReason(this.#options, unsealedOf(state), nowMs) !== null;
  }

  /** Start uploads for due tables, up to the cap; then arm the timer for the next one. */
  #pump(): void {
    if (this.#stopped || this.#fenced) return;
    const nowMs = this.#options.clock.monotonicMs();
    for (const [table, state] of this.#tables) {
      if (this.#running >= this.#options.maxConcurrentTables) break;
      if (!this.#isDue(state, nowMs)) continue;
      state.uploading = true;
      this.#running++;
      assert(this.#running <= this.#options.maxConcurrentTables, `${this.#running} uploads in flight`);
      void this.#uploadOne(table, state).finally(() => {
        state.uploading = false;
        this.#running--;
        this.#settleAfterUpload(state);
        this.#pump();
      });
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const nowMs = this.#options.clock.monotonicMs();
    let nextMs = Number.POSITIVE_INFINITY;
    for (const s of this.#tables.values()) {
      const oldestAtMs = s.pendingCommitsAtMs[0];
      if (s.pendingBytes === 0 || s.uploading || oldestAtMs === undefined) continue;
      nextMs = Math.min(nextMs, Math.max(sealDueAtMs(this.#options, oldestAtMs), retryAtMs(s)));
    }
    if (this.#headDirty) nextMs = Math.min(nextMs, this.#headWrittenAtMs + this.#options.headIntervalMs);
    this.#timer?.cancel();
    this.#timerAtMs = nextMs;
    if (nextMs === Number.POSITIVE_INFINITY) return;
    this.#timer = this.#options.clock.setTimer(
      Math.max(0, nextMs - nowMs),
      () => {
        this.#timerAtMs = Number.POSITIVE_INFINITY;
        void this.#writeHead(false);
        this.#pump();
      },
      { unref: true },
    );
  }

  async #uploadOne(table: string, state: TableState): Promise<void> {
    const { source, store, clock } = this.#options;
    const records =
      this.#recentFrom(source.uploadedTxn(table), state) ??
      (await source.pending(table, { limitBytes: this.#options.rolloverSizeBytes }));
    if (records.length === 0) {
      state.pendingBytes = 0;
      state.pendingCommitsAtMs = [];
      return;
    }
    const txnFirst = records[0]!.txn;
    const txnLast = records.at(-1)!.txn;
    // A segment's slot is named by its first txn: one starting anywhere but right after the
    // watermark would leave a gap (or an overlap) in the chain replicas follow.
    const uploaded = source.uploadedTxn(table);
    assert(
      txnFirst === uploaded + 1n,
      `${table}: pending txns start at ${txnFirst}, uploaded through ${uploaded}`,
    );
    const epoch = this.#options.epoch();
    const startedMs = clock.monotonicMs();
    let bytes = 0;
    const report = (outcome: SegmentUploadEvent['outcome']) =>
      this.#options.onUpload?.({ table, outcome, bytes, seconds: (clock.monotonicMs() - startedMs) / 1000 });
    try {
      const tableKey = source.tableKey(table);
      if (!this.#registered.has(tableKey)) {
        if ((await this.#register(tableKey, epoch)) === 'fenced') {
          report('fenced');
          this.#fence({
            table,
            key: TABLES_REGISTRY_KEY,
            txnFirst,
            writerNodeId: TABLES_REGISTRY_KEY,
            epoch: null,
            ourEpoch: epoch,
          });
          return;
        }
        this.#registered.add(tableKey);
      }
      const segment = await sealSegment({
        tableName: table,
        epoch,
        writerNodeId: this.#options.nodeId,
        records: records.map((r) => r.bytes),
        ...knownFacts(state.facts, records),
        codec: this.#options.codec,
        compressionLevel: this.#options.compressionLevel,
      });
      bytes = segment.byteLength;
      const key = segmentKey(tableKey, txnFirst);
      // Unique per segment content: a retry after more txns were sealed into the same slot must not
      // pass for the earlier, shorter upload (withRetries trusts a matching write id).
      const writeId = `${this.#options.nodeId}.${epoch}.${txnFirst}-${txnLast}`;
      const result = await store.put(key, segment, { condition: { type: 'absent' }, writeId });
      const uploadedThrough =
        result.status === 'written' ? txnLast : await this.#recognise(table, key, txnFirst, epoch);
      if (uploadedThrough === null) {
        report('fenced');
        return;
      }
      // RFC-0002 W5: a create-only PUT proves nothing once GC may have collected the slot (a fence
      // included), so no txn counts as uploaded until the epoch is confirmed the newest.
      if (!(await this.#confirmEpoch(epoch))) {
        await this.#replacedAfterUpload(
          table,
          state,
          { tableKey, key, txnFirst, txnLast: uploadedThrough, epoch },
          records,
        );
        report('fenced');
        return;
      }
      this.#uploaded(table, state, uploadedThrough, records, clock.monotonicMs());
      report(result.status === 'written' ? 'ok' : 'ours');
    } catch (error) {
      report('error');
      // A broken invariant is a bug, not an outage: a retry cannot mend it, so it crashes the node.
      if (isWalshipError(error, 'ASSERTION_FAILED')) throw error;
      this.#failed(table, state, error);
    }
  }

  /**
   * Our slot is taken. If the segment there is ours (this node, this epoch, records identical to
   * our pending ones: an upload whose success we never learnt of), the txns it holds are
   * uploaded; otherwise another writer owns the slot and this node is fenced. Returns the last
   * txn now known uploaded, or null when fenced.
   */
  async #recognise(table: string, key: string, txnFirst: bigint, epoch: bigint): Promise<bigint | null> {
    const existing = await this.#options.store.get(key);
    if (existing === null || existing.status !== 'ok') {
      throw new WalshipError(
        'STORE_INCONSISTENT',
        'unavailable',
        `${key} refused a create-only write but cannot be read`,
      );
    }
    const { header, txns } = await decodeSegment(existing.body);
    // The records a segment of ours would hold take at most its raw body size: ask for that much.
    const pending = await this.#options.source.pending(table, { limitBytes: header.bodyBytesRaw });
    const mine = new Map(pending.map((r) => [r.txn, r.bytes]));
    // Txns already recorded uploaded (a watermark write deferred by a large commit, say) are ours
    // without a byte comparison: their records are no longer pending to compare with.
    const uploaded = this.#options.source.uploadedTxn(table);
    const ours =
      header.writerNodeId === this.#options.nodeId &&
      header.epoch === epoch &&
      header.txnFirst === txnFirst &&
      txns.every((txn) => {
        if (txn.txn <= uploaded) return true;
        const bytes = mine.get(txn.txn);
        return bytes !== undefined && Buffer.from(encodeTxnRecord(txn)).equals(bytes);
      });
    if (ours) {
      this.#options.log.info(
        { table, key, txnLast: header.txnLast },
        'segment already in the store is ours: recorded as uploaded',
      );
      return header.txnLast;
    }
    this.#fence({
      table,
      key,
      txnFirst,
      writerNodeId: header.writerNodeId,
      epoch: header.epoch,
      ourEpoch: epoch,
    });
    return null;
  }

  /** Epoch checks sent so far (RFC-0002 W5): one per batch of uploads that completed while the previous one ran. */
  get epochChecks(): number {
    return this.#epochChecks;
  }

  /**
   * RFC-0002 W5: resolves true when `epochs/<epoch + 1>.json` is absent, by a HEAD that started after
   * the caller's upload completed. Amortised: a check in flight may have started before that upload
   * completed, so the caller waits for the next one, which every upload completing meanwhile
   * shares — at most one HEAD in flight and one queued, whatever the number of tables. Epoch
   * records are never garbage-collected (RFC-0007), and a slot can be reopened only after a fence
   * was written there, which is after its epoch's record: so a write into a reopened slot is always
   * followed by a check that finds the newer epoch. A failed HEAD rejects (the upload is retried:
   * its PUT then finds its own segment, and checks again).
   */
  #confirmEpoch(epoch: bigint): Promise<boolean> {
    if (this.#replaced) return Promise.resolve(false);
    if (this.#epochCheck === null) return this.#startEpochCheck(epoch);
    if (this.#epochCheckNext === null) {
      this.#epochCheckNext = this.#epochCheck
        .catch(() => undefined)
        .then(() => {
          this.#epochCheckNext = null;
          return this.#replaced ? false : this.#startEpochCheck(epoch);
        });
    }
    return this.#epochCheckNext;
  }

  #startEpochCheck(epoch: bigint): Promise<boolean> {
    this.#epochChecks++;
    const check = this.#options.store.head(epochKey(epoch + 1n)).then((info) => {
      if (info !== null) this.#replaced = true;
      return info === null;
    });
    this.#epochCheck = check;
    const clear = () => {
      if (this.#epochCheck === check) this.#epochCheck = null;
    };
    check.then(clear, clear);
    return check;
  }

  /**
   * An upload landed, but a newer epoch exists (RFC-0002 W5). Its txns count as uploaded — and
   * their durable writers are answered — only if the segment is in the chain the new primary
   * continues (it raced the promotion and the fence lies above it); a segment in a slot GC had
   * reopened is in no node's future, so they stay pending and go to the divergence file. Either
   * way the node is fenced.
   */
  async #replacedAfterUpload(
    table: string,
    state: TableState,
    segment: { tableKey: TableKey; key: string; txnFirst: bigint; txnLast: bigint; epoch: bigint },
    records: { txn: bigint; bytes: Uint8Array }[],
  ): Promise<void> {
    const verdict = await segmentInChain(this.#options.store, segment);
    const { key, txnFirst, txnLast, epoch } = segment;
    this.#options.log.error(
      { table, key, txnFirst: txnFirst.toString(), txnLast: txnLast.toString(), inChain: verdict.inChain },
      verdict.inChain
        ? `segment written, then epoch ${epoch + 1n} was found to have taken over; it is in the cluster's chain (${verdict.reason})`
        : `segment written, but epoch ${epoch + 1n} took over and ${verdict.reason}: its txns are not acknowledged`,
    );
    this.#fence({
      table,
      key: epochKey(epoch + 1n),
      txnFirst,
      writerNodeId: epochKey(epoch + 1n),
      epoch: epoch + 1n,
      ourEpoch: epoch,
    });
    // After the fence, in the same turn: its writers are answered, and head.json (a hint written
    // by the epoch's primary only) is not rewritten by a replaced node.
    if (verdict.inChain) this.#uploaded(table, state, txnLast, records, this.#options.clock.monotonicMs());
  }

  /** This node was replaced (RFC-0002 "fenced"): stop uploading, fail every durable waiter, tell the node. */
  #fence(detail: {
    table: string;
    key: string;
    txnFirst: bigint;
    writerNodeId: string;
    epoch: bigint | null;
    ourEpoch: bigint;
  }): void {
    if (this.#fenced) return;
    this.#fenced = true;
    this.#options.log.error(
      {
        table: detail.table,
        key: detail.key,
        writerNodeId: detail.writerNodeId,
        writerEpoch: detail.epoch?.toString() ?? 'newer',
        ourEpoch: detail.ourEpoch.toString(),
      },
      'another primary holds a newer epoch: this node has been fenced and stops accepting writes',
    );
    this.#options.onFenced({
      table: detail.table,
      txnFirst: detail.txnFirst,
      writerNodeId: detail.writerNodeId,
      epoch: detail.epoch ?? detail.ourEpoch + 1n,
    });
    // Only waiters with nothing in flight: an upload already sent may still land, and then its
    // writers were committed (telling them otherwise would make clients write the rows again).
    this.#rejectIdleWaiters(() => fencedError());
  }

  /** Rejects the waiters of every table with no upload in flight. */
  #rejectIdleWaiters(error: () => WalshipError): void {
    for (const s of this.#tables.values()) if (!s.uploading) this.#rejectWaiters(s, error());
  }

  /** After an upload settled (its own waiters resolved): once fenced or stopped, no later one will come. */
  #settleAfterUpload(state: TableState): void {
    if (this.#fenced) this.#rejectWaiters(state, fencedError());
    else if (this.#stopped) this.#rejectWaiters(state, closedError());
  }

  #rejectWaiters(state: TableState, error: WalshipError): void {
    for (const w of state.waiters) w.reject(error);
    state.waiters = [];
  }

  #uploaded(
    table: string,
    state: TableState,
    txnLast: bigint,
    records: { txn: bigint; bytes: Uint8Array }[],
    nowMs: number,
  ): void {
    // Only this table's one upload in flight moves its watermark: still where the upload began,
    // and it only moves forward.
    const watermark = this.#options.source.uploadedTxn(table);
    assert(
      records[0]?.txn === watermark + 1n && txnLast > watermark,
      `${table}: upload of txns ${records[0]?.txn}..${txnLast} does not continue the uploaded watermark ${watermark}`,
    );
    this.#options.source.markUploaded(table, txnLast);
    const sent = records.filter((r) => r.txn <= txnLast);
    state.pendingBytes = Math.max(
      0,
      state.pendingBytes - sent.reduce((sum, r) => sum + r.bytes.byteLength, 0),
    );
    state.pendingCommitsAtMs.splice(0, sent.length);
    for (const r of sent) {
      state.facts.delete(r.txn);
      this.#forgetRecent(state, r.txn);
    }
    if (state.pendingBytes === 0) state.pendingCommitsAtMs = [];
    state.failures = 0;
    state.retryAtMs = 0;
    state.lastError = null;
    state.lastUploadAtMs = nowMs;
    state.segmentsUploaded++;
    const still: TableState['waiters'] = [];
    for (const waiter of state.waiters) {
      if (waiter.txn <= txnLast) waiter.resolve();
      else still.push(waiter);
    }
    state.waiters = still;
    this.#headDirty = true;
    void this.#writeHead(false);
  }

  #failed(table: string, state: TableState, error: unknown): void {
    const message = (error as Error).message ?? String(error);
    state.failures++;
    state.lastError = message;
    this.#lastStoreError = { message, atMs: this.#options.clock.monotonicMs() };
    const ceiling = Math.min(FAILURE_BACKOFF_MS.max, FAILURE_BACKOFF_MS.base * 2 ** (state.failures - 1));
    state.failedAtMs = this.#options.clock.monotonicMs();
    state.retryAtMs = state.failedAtMs + ceiling * (0.5 + this.#options.random.next() / 2);
    const level = isWalshipError(error) && error.kind === 'unavailable' ? 'warn' : 'error';
    this.#options.log[level](
      { table, failures: state.failures, err: message },
      'segment upload failed; will retry',
    );
  }

  /**
   * Registers `key` in tables.json before its first segment (RFC-0002 W2), together with every
   * other table that has txns waiting and is not registered yet: one CAS write for all the tables
   * a request created, instead of one per table, each rewriting the whole registry (at 10 000 new
   * tables that was O(T²) bytes, serialized by the CAS). Uploads that need a registration while a
   * write is in flight wait for it, then start the next batch together.
   */
  async #register(key: TableKey, epoch: bigint): Promise<'registered' | 'fenced'> {
    while (!this.#registered.has(key)) {
      if (this.#registering !== null) {
        if ((await this.#registering) === 'fenced') return 'fenced';
        continue;
      }
      const batch = new Set<TableKey>([key]);
      for (const [table, state] of this.#tables) {
        if (state.pendingBytes === 0) continue;
        const other = this.#options.source.tableKey(table);
        if (!this.#registered.has(other)) batch.add(other);
      }
      const write = registerTables(this.#options.store, [...batch], epoch).then((outcome) => {
        if (outcome === 'registered') for (const registered of batch) this.#registered.add(registered);
        return outcome;
      });
      this.#registering = write;
      void write.then(
        () => (this.#registering = null),
        () => (this.#registering = null),
      );
      if ((await write) === 'fenced') return 'fenced';
    }
    return 'registered';
  }

  /** head.json is a hint for idle replicas (DESIGN §3); rate-limited, never required for correctness. */
  #writeHead(force: boolean): Promise<void> {
    const nowMs = this.#options.clock.monotonicMs();
    if (!this.#headDirty || this.#headWrite !== null || this.#fenced) return Promise.resolve();
    if (!force && nowMs - this.#headWrittenAtMs < this.#options.headIntervalMs) return Promise.resolve();
    this.#headDirty = false;
    this.#headWrittenAtMs = nowMs;
    this.#headWrite = this.#putHead().finally(() => {
      this.#headWrite = null;
    });
    return this.#headWrite;
  }

  async #putHead(): Promise<void> {
    const tables = new Map<string, bigint>();
    for (const { table, uploadedTxn } of this.#options.source.uploadedAll()) tables.set(table, uploadedTxn);
    const head = encodeHead({
      epoch: this.#options.epoch(),
      nodeId: this.#options.nodeId,
      tables,
      at: isoTime(this.#options.clock.wallMs()),
    });
    try {
      await this.#options.store.put(HEAD_KEY, head);
    } catch (error) {
      this.#headDirty = true;
      this.#options.log.warn(
        { err: (error as Error).message },
        'head.json update failed (a hint only; will retry)',
      );
    }
  }
}

/** When a failed table is retried: its backoff, at most WAITING_BACKOFF_MAX_MS after the failure while a writer waits. */
function retryAtMs(state: TableState): number {
  return state.waiters.length === 0
    ? state.retryAtMs
    : Math.min(state.retryAtMs, state.failedAtMs + WAITING_BACKOFF_MAX_MS);
}

/** What the seal rule looks at for one table. */
function unsealedOf(state: TableState): Unsealed {
  return {
    bytes: state.pendingBytes,
    oldestAtMs: state.pendingCommitsAtMs[0],
    // A waiter's txn is not uploaded yet, so it is in the records the next upload seals.
    writerWaiting: state.waiters.length > 0,
  };
}

function closedError(): WalshipError {
  return new WalshipError('CLOSED', 'closed', 'the node is shutting down');
}

function fencedError(): WalshipError {
  return new WalshipError(
    'FENCED',
    'fenced',
    'this node was replaced by a newer primary and no longer accepts writes',
  );
}

/** `known` for sealSegment when the committer's facts cover every record, else nothing (decode them). */
function knownFacts(
  facts: ReadonlyMap<bigint, RecordFacts>,
  records: readonly { txn: bigint }[],
): { known?: RecordFacts[] } {
  const known: RecordFacts[] = [];
  for (const { txn } of records) {
    const fact = facts.get(txn);
    if (fact === undefined) return {};
    known.push(fact);
  }
  return { known };
}
