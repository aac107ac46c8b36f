/**
 * A sequenced writer's private, durable queue (RFC-0003 "Commit protocol" steps 1–2): txn records
 * committed locally but not yet numbered by the sequencer, and the batches sealed from them. It
 * lives in its OWN SQLite file (`<dataDir>/staged.sqlite`) so a writer's queue never shares a
 * lock or a transaction with the tables its follower applies to.
 *
 * Numbering: every record carries the writer's own per-table local sequence (`seq`), contiguous
 * and never reused (the counter is persisted, not derived from the queue, so finishing a batch
 * never lets a number come back). A staged segment holds a contiguous seq range; the applier maps
 * record i to `entry.txnFirst + i`.
 *
 * Batches are cut at request boundaries (every record of the requests ≤ R, none above), so one
 * ILP request's txns are always numbered in one sequencer transaction. One batch is unfinished at
 * most (RFC-0003: one batch in flight per writer epoch).
 *
 * Synchronous (better-sqlite3) apart from `sealNextBatch`, whose caller seals the segments.
 * Not safe to share across threads.
 */
import Database from 'better-sqlite3';
import { assert, InvalidArgumentError, WalshipError } from '../core/index.js';
import { asTableKey, type TableKey } from '../table/index.js';
import { SEQUENCER_BATCH_MAX, SEQUENCER_SEGMENT_TXNS_MAX } from './sequencer-store.js';

/** The file layout this code reads and writes (PRAGMA user_version). */
const QUEUE_FORMAT_VERSION = 1;
/** How long a statement waits for a lock another connection holds (a second opener, a backup). */
const BUSY_TIMEOUT_MS = 5_000;
/** Tables one request may touch: all of them must fit one batch, which holds one segment per table. */
export const REQUEST_TABLES_MAX = SEQUENCER_BATCH_MAX;
/** Bytes of one segment's raw body at most (wal DEFAULT_SEGMENT_LIMITS.maxRawBodyBytes, 256 MiB). */
const SEGMENT_RAW_BYTES_MAX = 256 * 1024 * 1024;

const DDL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
  table_key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  table_name TEXT NOT NULL,
  request INTEGER NOT NULL,
  bytes BLOB NOT NULL,
  PRIMARY KEY (table_key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_by_request ON queue (request, table_key);
CREATE TABLE IF NOT EXISTS batches (
  batch_seq INTEGER PRIMARY KEY,
  writer_epoch INTEGER NOT NULL,
  request_last INTEGER NOT NULL,
  segments TEXT NOT NULL
);
`;

/** One table's txn of one request, encoded (encodeTxnRecord) with `seq` as its txn number. */
export interface QueuedTxn {
  tableKey: TableKey;
  /** The table's spelling for the segment header. */
  tableName: string;
  /** Must be `nextSeq(tableKey)`: the number the record was encoded with. */
  seq: bigint;
  bytes: Uint8Array;
}

/** What sealNextBatch hands its caller for one table: the records of one staged segment. */
export interface SegmentPlan {
  tableKey: TableKey;
  tableName: string;
  seqFirst: bigint;
  seqLast: bigint;
  records: Uint8Array[];
}

/** One sealed segment of a batch, as recorded before any upload. */
export interface StagedSegment {
  tableKey: TableKey;
  tableName: string;
  seqFirst: bigint;
  seqLast: bigint;
  /** Its stagedKey. */
  staged: string;
  /** The sealed object's size and objectChecksum. */
  bytes: number;
  crc32: number;
}

export interface StagedBatch {
  batchSeq: bigint;
  writerEpoch: bigint;
  /** Every request ≤ this one is in this batch or an earlier one. */
  requestLast: bigint;
  segments: StagedSegment[];
}

export interface StagedQueueSummary {
  /** Records in the queue (sealed or not) and their encoded bytes. */
  txns: number;
  bytes: number;
  /** Of those, records in no batch yet. */
  unsealedTxns: number;
  unsealedBytes: number;
  /** The newest request enqueued (0n: none ever). */
  lastRequest: bigint;
  /** Every request ≤ this one is in a batch. */
  sealedRequest: bigint;
}

export class StagedQueue {
  readonly file: string;
  readonly #db: Database.Database;
  /** Last seq per table key, cached from meta. */
  readonly #lastSeq = new Map<string, bigint>();
  #lastRequest: bigint;
  #sealedRequest: bigint;
  #lastBatchSeq: bigint;
  #txns: number;
  #bytes: number;
  #unsealedTxns: number;
  #unsealedBytes: number;
  #sealing = false;
  #closed = false;

  private constructor(db: Database.Database, file: string) {
    this.#db = db;
    this.file = file;
    this.#lastRequest = this.#metaBigint('last_request');
    this.#sealedRequest = this.#metaBigint('sealed_request');
    this.#lastBatchSeq = this.#metaBigint('last_batch_seq');
    const all = db.prepare('SELECT count(*) AS n, coalesce(sum(length(bytes)), 0) AS b FROM queue').get() as {
      n: bigint;
      b: bigint;
    };
    const unsealed = db
      .prepare('SELECT count(*) AS n, coalesce(sum(length(bytes)), 0) AS b FROM queue WHERE request > ?')
      .get(this.#sealedRequest) as { n: bigint; b: bigint };
    this.#txns = Number(all.n);
    this.#bytes = Number(all.b);
    this.#unsealedTxns = Number(unsealed.n);
    this.#unsealedBytes = Number(unsealed.b);
  }

  /** Opens (creating) the queue file: WAL, synchronous FULL (an enqueue that returned survives a crash). */
  static open(file: string): StagedQueue {
    const db = new Database(file);
    try {
      db.defaultSafeIntegers(true);
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
      if (mode !== 'wal') {
        throw new WalshipError(
          'STORAGE_FAILED',
          'unavailable',
          `SQLite refused WAL journal mode for ${file}`,
        );
      }
      db.pragma('synchronous = FULL');
      const version = Number(db.pragma('user_version', { simple: true }));
      if (version !== 0 && version !== QUEUE_FORMAT_VERSION) {
        throw new WalshipError(
          'STORE_FORMAT_UNSUPPORTED',
          'invalid',
          `${file} has staged-queue layout ${version}; this walship reads ${QUEUE_FORMAT_VERSION}`,
        );
      }
      db.exec(`BEGIN IMMEDIATE; ${DDL} PRAGMA user_version = ${QUEUE_FORMAT_VERSION}; COMMIT;`);
      return new StagedQueue(db, file);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /** The writer this queue belongs to and its sequencer epoch, or null before the first registration. */
  writerEpoch(): { writer: string; epoch: bigint } | null {
    const writer = this.#meta('writer');
    const epoch = this.#meta('writer_epoch');
    return writer === undefined || epoch === undefined ? null : { writer, epoch: BigInt(epoch) };
  }

  /**
   * Records the epoch `registerWriter` gave `writer`; batch numbers restart at 1. Only with no
   * unfinished batch (its staged keys name the old epoch) and only upwards.
   */
  setWriterEpoch(writer: string, epoch: bigint): void {
    this.#checkOpen();
    const current = this.writerEpoch();
    if (current !== null && (current.writer !== writer || current.epoch >= epoch)) {
      throw new InvalidArgumentError(
        `writer epoch ${writer}/${epoch} does not follow ${current.writer}/${current.epoch} of ${this.file}`,
      );
    }
    assert(this.batches().length === 0, 'a new writer epoch with a batch of the old one unfinished');
    this.#db.transaction(() => {
      this.#setMeta('writer', writer);
      this.#setMeta('writer_epoch', epoch.toString());
      this.#setMeta('last_batch_seq', '0');
    })();
    this.#lastBatchSeq = 0n;
  }

  /** The seq the next record of `tableKey` must carry: one past the last ever enqueued (1 at first). */
  nextSeq(tableKey: string): bigint {
    this.#checkOpen();
    let last = this.#lastSeq.get(tableKey);
    if (last === undefined) {
      last = this.#metaBigint(`seq/${tableKey}`);
      this.#lastSeq.set(tableKey, last);
    }
    return last + 1n;
  }

  /**
   * Queues one request's txns (one per table, each numbered nextSeq of its table) in ONE SQLite
   * transaction: all of them or none. Returns the request id and each table's seq.
   */
  enqueue(txns: readonly QueuedTxn[]): { requestId: bigint; seqs: Map<string, bigint> } {
    this.#checkOpen();
    if (txns.length < 1 || txns.length > REQUEST_TABLES_MAX) {
      throw new InvalidArgumentError(`a request holds 1..${REQUEST_TABLES_MAX} tables, not ${txns.length}`);
    }
    const seqs = new Map<string, bigint>();
    let bytes = 0;
    for (const txn of txns) {
      if (seqs.has(txn.tableKey))
        throw new InvalidArgumentError(`table ${txn.tableKey} is twice in one request`);
      const expected = this.nextSeq(txn.tableKey);
      if (txn.seq !== expected) {
        throw new InvalidArgumentError(`table ${txn.tableKey}: record seq ${txn.seq}, expected ${expected}`);
      }
      seqs.set(txn.tableKey, txn.seq);
      bytes += txn.bytes.byteLength;
    }
    const requestId = this.#lastRequest + 1n;
    const insert = this.#db.prepare(
      'INSERT INTO queue (table_key, seq, table_name, request, bytes) VALUES (?, ?, ?, ?, ?)',
    );
    this.#db.transaction(() => {
      for (const txn of txns) {
        insert.run(txn.tableKey, txn.seq, txn.tableName, requestId, txn.bytes);
        this.#setMeta(`seq/${txn.tableKey}`, txn.seq.toString());
      }
      this.#setMeta('last_request', requestId.toString());
    })();
    for (const [key, seq] of seqs) this.#lastSeq.set(key, seq);
    this.#lastRequest = requestId;
    this.#txns += txns.length;
    this.#bytes += bytes;
    this.#unsealedTxns += txns.length;
    this.#unsealedBytes += bytes;
    return { requestId, seqs };
  }

  /**
   * Seals the next batch: every record of the requests ≤ R not yet in a batch, R the largest that
   * keeps the batch within `limitBytes` (at least one request), ≤ SEQUENCER_BATCH_MAX tables and
   * ≤ SEQUENCER_SEGMENT_TXNS_MAX txns per table. `makeSegments` seals one segment per plan (same
   * order) for `batchSeq` = last + 1; the batch is recorded only once it returns, before any
   * upload. Resolves null when nothing is unsealed. Only with no unfinished batch.
   */
  async sealNextBatch(
    limitBytes: number,
    makeSegments: (batch: {
      batchSeq: bigint;
      writerEpoch: bigint;
      plans: SegmentPlan[];
    }) => Promise<StagedSegment[]>,
  ): Promise<StagedBatch | null> {
    this.#checkOpen();
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 1)
      throw new InvalidArgumentError(`limitBytes ${limitBytes} must be a positive integer`);
    const owner = this.writerEpoch();
    assert(owner !== null, 'sealNextBatch before the writer epoch was recorded');
    assert(!this.#sealing && this.batches().length === 0, 'one batch in flight per writer epoch');
    const picked = this.#pick(limitBytes);
    if (picked === null) return null;
    const batchSeq = this.#lastBatchSeq + 1n;
    this.#sealing = true;
    let segments: StagedSegment[];
    try {
      segments = await makeSegments({ batchSeq, writerEpoch: owner.epoch, plans: picked.plans });
    } finally {
      this.#sealing = false;
    }
    this.#checkOpen();
    checkSegments(picked.plans, segments);
    const batch: StagedBatch = {
      batchSeq,
      writerEpoch: owner.epoch,
      requestLast: picked.requestLast,
      segments,
    };
    this.#db.transaction(() => {
      this.#db
        .prepare('INSERT INTO batches (batch_seq, writer_epoch, request_last, segments) VALUES (?, ?, ?, ?)')
        .run(batchSeq, owner.epoch, picked.requestLast, encodeSegments(segments));
      this.#setMeta('last_batch_seq', batchSeq.toString());
      this.#setMeta('sealed_request', picked.requestLast.toString());
    })();
    this.#lastBatchSeq = batchSeq;
    this.#sealedRequest = picked.requestLast;
    this.#unsealedTxns -= picked.txns;
    this.#unsealedBytes -= picked.bytes;
    return batch;
  }

  /** Unfinished batches, oldest first (at most one while the one-in-flight rule holds). */
  batches(): StagedBatch[] {
    this.#checkOpen();
    const rows = this.#db
      .prepare('SELECT batch_seq, writer_epoch, request_last, segments FROM batches ORDER BY batch_seq')
      .all() as { batch_seq: bigint; writer_epoch: bigint; request_last: bigint; segments: string }[];
    return rows.map((row) => ({
      batchSeq: row.batch_seq,
      writerEpoch: row.writer_epoch,
      requestLast: row.request_last,
      segments: decodeSegments(row.segments),
    }));
  }

  /** The encoded records of `tableKey` with seq in seqFirst..seqLast, in order (to re-seal a batch). */
  records(tableKey: string, seqFirst: bigint, seqLast: bigint): Uint8Array[] {
    this.#checkOpen();
    const rows = this.#db
      .prepare('SELECT seq, bytes FROM queue WHERE table_key = ? AND seq BETWEEN ? AND ? ORDER BY seq')
      .all(tableKey, seqFirst, seqLast) as { seq: bigint; bytes: Buffer }[];
    assert(
      BigInt(rows.length) === seqLast - seqFirst + 1n,
      `queue of ${tableKey} lacks records of ${seqFirst}..${seqLast}`,
    );
    return rows.map((row) => new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength));
  }

  /** The batch was committed: delete its records and itself in one transaction. Only the oldest batch. */
  finishBatch(batchSeq: bigint): void {
    this.#checkOpen();
    const oldest = this.batches()[0];
    assert(oldest?.batchSeq === batchSeq, `finishBatch(${batchSeq}) is not the oldest unfinished batch`);
    const sum = this.#db.prepare(
      'SELECT count(*) AS n, coalesce(sum(length(bytes)), 0) AS b FROM queue WHERE table_key = ? AND seq BETWEEN ? AND ?',
    );
    const remove = this.#db.prepare('DELETE FROM queue WHERE table_key = ? AND seq BETWEEN ? AND ?');
    let txns = 0;
    let bytes = 0;
    this.#db.transaction(() => {
      for (const s of oldest.segments) {
        const got = sum.get(s.tableKey, s.seqFirst, s.seqLast) as { n: bigint; b: bigint };
        txns += Number(got.n);
        bytes += Number(got.b);
        remove.run(s.tableKey, s.seqFirst, s.seqLast);
      }
      this.#db.prepare('DELETE FROM batches WHERE batch_seq = ?').run(batchSeq);
    })();
    this.#txns -= txns;
    this.#bytes -= bytes;
  }

  /** Encoded bytes in the queue, sealed or not (what `pendingMaxBytes` bounds). */
  pendingBytes(): number {
    return this.#bytes;
  }

  pendingSummary(): StagedQueueSummary {
    return {
      txns: this.#txns,
      bytes: this.#bytes,
      unsealedTxns: this.#unsealedTxns,
      unsealedBytes: this.#unsealedBytes,
      lastRequest: this.#lastRequest,
      sealedRequest: this.#sealedRequest,
    };
  }

  /** Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Whole requests above the sealed one, as many as the bounds allow; null when there are none. */
  #pick(
    limitBytes: number,
  ): { plans: SegmentPlan[]; requestLast: bigint; txns: number; bytes: number } | null {
    const rows = this.#db
      .prepare(
        'SELECT request, table_key, table_name, seq, length(bytes) AS n FROM queue WHERE request > ? ORDER BY request, table_key',
      )
      .iterate(this.#sealedRequest) as IterableIterator<{
      request: bigint;
      table_key: string;
      table_name: string;
      seq: bigint;
      n: bigint;
    }>;
    const chosen = new BatchPick();
    let group: GroupRow[] = [];
    let full = false;
    for (const row of rows) {
      if (group.length > 0 && group[0]!.request !== row.request) {
        // Leaving the loop ends the statement (the iterator's return()).
        if (!chosen.tryAdd(group, limitBytes)) {
          full = true;
          break;
        }
        group = [];
      }
      group.push({
        request: row.request,
        // From this node's own queue database: a key tableKey did not produce fails here.
        tableKey: asTableKey(row.table_key),
        tableName: row.table_name,
        seq: row.seq,
        bytes: Number(row.n),
      });
    }
    if (!full && group.length > 0) chosen.tryAdd(group, limitBytes);
    if (chosen.requestLast === 0n) return null;
    const plans = chosen.tables().map((t) => ({
      tableKey: t.tableKey,
      tableName: t.tableName,
      seqFirst: t.seqFirst,
      seqLast: t.seqLast,
      records: this.records(t.tableKey, t.seqFirst, t.seqLast),
    }));
    return { plans, requestLast: chosen.requestLast, txns: chosen.txns, bytes: chosen.bytes };
  }

  #meta(key: string): string | undefined {
    const row = this.#db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
      | { value: string }
      | undefined;
    return row?.value;
  }

  #metaBigint(key: string): bigint {
    const value = this.#meta(key);
    return value === undefined ? 0n : BigInt(value);
  }

  #setMeta(key: string, value: string): void {
    this.#db
      .prepare(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      )
      .run(key, value);
  }

  #checkOpen(): void {
    if (this.#closed) throw new WalshipError('CLOSED', 'closed', `the staged queue ${this.file} is closed`);
  }
}

interface GroupRow {
  request: bigint;
  tableKey: TableKey;
  tableName: string;
  seq: bigint;
  bytes: number;
}

interface PickedTable {
  tableKey: TableKey;
  tableName: string;
  seqFirst: bigint;
  seqLast: bigint;
  txns: number;
  bytes: number;
}

/** The requests chosen so far for one batch, per table in order of first appearance. */
class BatchPick {
  requestLast = 0n;
  txns = 0;
  bytes = 0;
  readonly #tables = new Map<string, PickedTable>();

  /** Adds one whole request when it fits (the first one always does); false when it does not. */
  tryAdd(group: GroupRow[], limitBytes: number): boolean {
    const groupBytes = group.reduce((sum, r) => sum + r.bytes, 0);
    if (this.requestLast !== 0n && !this.#fits(group, groupBytes, limitBytes)) return false;
    for (const row of group) {
      const table = this.#tables.get(row.tableKey);
      if (table === undefined) {
        this.#tables.set(row.tableKey, {
          tableKey: row.tableKey,
          tableName: row.tableName,
          seqFirst: row.seq,
          seqLast: row.seq,
          txns: 1,
          bytes: row.bytes,
        });
        continue;
      }
      // Seqs of one table grow with the request id: the records a batch takes are contiguous.
      assert(
        row.seq === table.seqLast + 1n,
        `queue of ${row.tableKey} skips from ${table.seqLast} to ${row.seq}`,
      );
      table.seqLast = row.seq;
      table.txns++;
      table.bytes += row.bytes;
    }
    this.requestLast = group[0]!.request;
    this.txns += group.length;
    this.bytes += groupBytes;
    return true;
  }

  tables(): PickedTable[] {
    return [...this.#tables.values()];
  }

  #fits(group: GroupRow[], groupBytes: number, limitBytes: number): boolean {
    if (this.bytes + groupBytes > limitBytes) return false;
    const added = group.filter((r) => !this.#tables.has(r.tableKey)).length;
    if (this.#tables.size + added > SEQUENCER_BATCH_MAX) return false;
    return group.every((r) => {
      const table = this.#tables.get(r.tableKey);
      return (
        table === undefined ||
        (table.txns < SEQUENCER_SEGMENT_TXNS_MAX && table.bytes + r.bytes <= SEGMENT_RAW_BYTES_MAX)
      );
    });
  }
}

function checkSegments(plans: SegmentPlan[], segments: StagedSegment[]): void {
  assert(segments.length === plans.length, 'makeSegments must return one segment per plan');
  segments.forEach((s, i) => {
    const p = plans[i]!;
    assert(
      s.tableKey === p.tableKey && s.seqFirst === p.seqFirst && s.seqLast === p.seqLast,
      `segment ${i} does not match its plan (${p.tableKey} ${p.seqFirst}..${p.seqLast})`,
    );
    assert(Number.isSafeInteger(s.bytes) && s.bytes > 0, `segment ${i} has no size`);
    assert(Number.isInteger(s.crc32) && s.crc32 >= 0 && s.crc32 <= 0xffff_ffff, `segment ${i} crc32`);
  });
}

function encodeSegments(segments: StagedSegment[]): string {
  return JSON.stringify(
    segments.map((s) => ({ ...s, seqFirst: s.seqFirst.toString(), seqLast: s.seqLast.toString() })),
  );
}

function decodeSegments(json: string): StagedSegment[] {
  const raw = JSON.parse(json) as (Omit<StagedSegment, 'seqFirst' | 'seqLast'> & {
    seqFirst: string;
    seqLast: string;
  })[];
  return raw.map((s) => ({
    tableKey: asTableKey(s.tableKey),
    tableName: s.tableName,
    seqFirst: BigInt(s.seqFirst),
    seqLast: BigInt(s.seqLast),
    staged: s.staged,
    bytes: s.bytes,
    crc32: s.crc32,
  }));
}
