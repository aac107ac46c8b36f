/**
 * The seam between writers and the ordering service (RFC-0003): one interface, every method's
 * contract, and the errors every backend throws. Backends are siblings: `sqlite-store.ts`
 * (embedded, served by `walship sequencer serve`), `http-client.ts` (a client of that service),
 * `fdb-store.ts` (FoundationDB). One contract suite (`contract.ts`) runs against all of them.
 *
 * The sequencer holds numbers and pointers, never rows: a commit turns staged segments (uploaded
 * already, un-numbered) into gap-free per-table txn ranges and records them in the table's log.
 */
import { WalshipError, type WalshipErrorOptions } from '../core/index.js';
import type { LogEntry } from '../layout/index.js';

// The txnlog/ record and its bounds belong to the bucket's vocabulary (layout/txn-log-entry.ts).
export { type LogEntry, SEQUENCER_SEGMENT_TXNS_MAX, WRITER_ID_PATTERN } from '../layout/index.js';

/** Segments in one commit: one per table, so a batch is at most this many tables (RFC-0003 limits). */
export const SEQUENCER_BATCH_MAX = 100;
/** Entries one readLog call returns at most (≤ ~600 kB; one short FDB transaction per page). */
export const SEQUENCER_READ_LIMIT_MAX = 1000;

/** A segment uploaded under its staged key, not numbered yet. */
export interface StagedSegmentRef {
  /** The table key (table/names.ts tableKey). */
  table: string;
  /** Its staged object key (layout/keys.ts stagedKey). */
  staged: string;
  /** Txns it holds, numbered 1..txnCount inside it; 1..SEQUENCER_SEGMENT_TXNS_MAX. */
  txnCount: number;
  bytes: number;
  /** The segment's object checksum (wal objectChecksum), as an unsigned 32-bit number. */
  crc32: number;
}

export interface CommitRequest {
  writer: string;
  writerEpoch: bigint;
  /** Idempotency key with (writer, writerEpoch): 1, 2, 3… per writer epoch, one batch in flight. */
  batchSeq: bigint;
  /** 1..SEQUENCER_BATCH_MAX segments, each of a different table. */
  segments: StagedSegmentRef[];
}

export interface CommitResult {
  /** One per request segment, in request order. */
  entries: LogEntry[];
  /** True when an earlier attempt of this same batch had committed it: nothing changed now. */
  replayed: boolean;
}

export interface ClosedWriterEpoch {
  epoch: bigint;
  /** The last batch that epoch committed (0n: none). Staged batches above it are orphans. */
  lastBatchSeq: bigint;
}

export interface WriterRecord {
  writer: string;
  /** The current epoch; commits of any other epoch are fenced. */
  epoch: bigint;
  /** 0n before the first commit of this epoch. */
  lastBatchSeq: bigint;
  /** fence() without a new registration: no epoch of this writer may commit. */
  fenced: boolean;
  /** Superseded epochs, oldest first (orphan GC reads them). */
  closed: ClosedWriterEpoch[];
}

export interface Heads {
  /** Grows at every commit and never repeats or goes back (not gap-free). */
  version: bigint;
  /** Table key → last txn, for every table the sequencer has numbered or was initialised with. */
  tables: Map<string, bigint>;
}

export interface SequencerStatus {
  clusterId: string | null;
  heads: Heads;
  writers: WriterRecord[];
}

/**
 * The ordering service. Every method may throw SEQUENCER_UNAVAILABLE (retryable; for commit the
 * outcome is then unknown and the caller sends the same request again) and ClosedError after
 * close(). Backends never retry a commit on their caller's behalf beyond what keeps it
 * exactly-once (FDB's doTn with the idempotency check).
 */
export interface SequencerStore {
  /**
   * Once per cluster: bind to `clusterId` and start each table after `startAfter` (its
   * single-primary chain ends there). Repeating it with the same arguments is a no-op; another
   * cluster id is SEQUENCER_CLUSTER_MISMATCH; other startAfter values for an initialised
   * cluster are SEQUENCER_CLUSTER_MISMATCH too. Commits before initialize are
   * SEQUENCER_NOT_INITIALIZED.
   */
  initialize(clusterId: string, startAfter: Map<string, bigint>): Promise<void>;
  /** The cluster id initialize bound, or null before it. */
  clusterId(): Promise<string | null>;
  /**
   * A new epoch for `writer`: the previous epoch + 1 (1 for a new writer), unfenced, with
   * lastBatchSeq 0n. The previous epoch is closed (kept in `closed` with its lastBatchSeq) and
   * fenced from then on.
   */
  registerWriter(writer: string): Promise<WriterRecord>;
  /**
   * Fence `writer` at `epoch` and below: commits of those epochs fail SEQUENCER_FENCED from
   * now on. A current epoch above `epoch` is left alone. Returns the heads: every entry of a
   * fenced epoch is at or below them. Unknown writer: SEQUENCER_FENCED is not thrown; the
   * record comes back with epoch 0n, fenced, so a later registration starts at 1.
   */
  fence(writer: string, epoch: bigint): Promise<{ record: WriterRecord; heads: Heads }>;
  /**
   * Atomically number every segment of the batch (all or none): per table the next txnCount
   * txns after its head. Idempotent for (writer, writerEpoch, batchSeq): batchSeq equal to the
   * epoch's lastBatchSeq returns the stored entries with replayed true; anything but
   * lastBatchSeq or lastBatchSeq + 1 is SEQUENCER_BATCH_ORDER; a stale, fenced or unknown
   * writer epoch is SEQUENCER_FENCED; a malformed request is INVALID_ARGUMENT.
   */
  commit(request: CommitRequest): Promise<CommitResult>;
  /**
   * Entries of `table` from the one holding `fromTxn` (its txnFirst may be below fromTxn), in
   * txn order, contiguous, at most `limit` (1..SEQUENCER_READ_LIMIT_MAX); [] past the head or
   * for a table never numbered.
   */
  readLog(table: string, fromTxn: bigint, limit: number): Promise<LogEntry[]>;
  heads(): Promise<Heads>;
  /**
   * Resolves with the heads version once it exceeds `after` (at once when it already does), or
   * with `after` when `signal` aborts. No lost wake-up: a commit between heads() and watch()
   * resolves it.
   */
  watch(after: bigint, signal: AbortSignal): Promise<bigint>;
  writers(): Promise<WriterRecord[]>;
  /** Releases connections and files; pending watches resolve with their `after`. Idempotent. */
  close(): Promise<void>;
}

export class SequencerFencedError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('SEQUENCER_FENCED', 'fenced', message, options);
    this.name = 'SequencerFencedError';
  }
}

export class SequencerBatchOrderError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('SEQUENCER_BATCH_ORDER', 'invalid', message, options);
    this.name = 'SequencerBatchOrderError';
  }
}

export class SequencerClusterMismatchError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('SEQUENCER_CLUSTER_MISMATCH', 'invalid', message, options);
    this.name = 'SequencerClusterMismatchError';
  }
}

export class SequencerNotInitializedError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('SEQUENCER_NOT_INITIALIZED', 'invalid', message, options);
    this.name = 'SequencerNotInitializedError';
  }
}

/** The sequencer could not be reached or did not answer in time; for a commit the outcome is unknown. */
export class SequencerUnavailableError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('SEQUENCER_UNAVAILABLE', 'unavailable', message, options);
    this.name = 'SequencerUnavailableError';
  }
}

export const FDB_CLIENT_MISSING_MESSAGE =
  'FoundationDB client library not found: install foundationdb-clients 7.2+ matching your cluster';

export class FdbClientMissingError extends WalshipError {
  constructor(options: WalshipErrorOptions = {}) {
    super('FDB_CLIENT_MISSING', 'invalid', FDB_CLIENT_MISSING_MESSAGE, options);
    this.name = 'FdbClientMissingError';
  }
}
