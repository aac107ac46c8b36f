import type Database from 'better-sqlite3';
import type { BatchStamp } from '../wal/index.js';

/**
 * The batches a node knows to be committed (RFC-0011): every txn record stamped with a client batch
 * identity leaves a row here, in the transaction that applies it — on the primary that commits it,
 * on every replica that applies its segment, on a node restoring a snapshot (the table is part of
 * the image) — so a node promoted after a failover knows which batches its predecessor committed.
 *
 * The window is bounded per writer: the BATCH_WINDOW_SEQS newest sequences (a retry of an older one
 * is refused as outside the window, never written twice), and a writer whose newest batch is
 * BATCH_WRITER_TTL_US older than a batch committed since is forgotten with its rows. Both bounds
 * read only the records' own fields (seq, commit time), so every node that applied the same txns
 * holds the same window.
 *
 * Tables (created with the store's metadata, store-sql.ts):
 * - `_walship_batches`: `(writer, seq, table_key)` → the txn, the epoch that committed it, the
 *   request's table count (`parts`), the body digest, the commit time;
 * - `_walship_batch_writers`: per writer its highest seq, the lowest seq still in its window, and
 *   its newest commit time.
 */

/** Sequences of one writer remembered: a client may hold at most this many unacknowledged batches. */
export const BATCH_WINDOW_SEQS = 1000n;
/** A writer with no batch for this long (by the primaries' commit clocks) is forgotten: 7 days. */
export const BATCH_WRITER_TTL_US = 7n * 24n * 3600n * 1_000_000n;

export const BATCH_LEDGER_DDL = `
CREATE TABLE IF NOT EXISTS _walship_batches (
  writer TEXT NOT NULL,
  seq INTEGER NOT NULL,
  table_key TEXT NOT NULL,
  txn INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  parts INTEGER NOT NULL,
  hash BLOB NOT NULL,
  commit_us INTEGER NOT NULL,
  PRIMARY KEY (writer, seq, table_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _walship_batch_writers (
  writer TEXT NOT NULL PRIMARY KEY,
  max_seq INTEGER NOT NULL,
  low_seq INTEGER NOT NULL,
  last_commit_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _walship_batch_writers_by_time ON _walship_batch_writers (last_commit_us);
`;

/** One table's part of a committed batch. */
export interface BatchPart {
  tableKey: string;
  txn: bigint;
  epoch: bigint;
  parts: number;
  hash: Uint8Array;
}

/** What a node knows of batch `writer:seq`. */
export type BatchLookup =
  /** Never seen (or its writer was forgotten): write it. */
  | { state: 'unknown' }
  /** Below the writer's window: whether it was committed can no longer be told. */
  | { state: 'outside-window'; lowSeq: bigint }
  /** Committed, in part or whole: `parts` holds the tables found. */
  | { state: 'known'; parts: BatchPart[] };

type Statements = ReturnType<typeof prepareLedger>;

function prepareLedger(db: Database.Database) {
  const safe = (sql: string) => db.prepare(sql).safeIntegers(true);
  return {
    insert: db.prepare(
      `INSERT INTO _walship_batches (writer, seq, table_key, txn, epoch, parts, hash, commit_us)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (writer, seq, table_key) DO UPDATE SET txn = excluded.txn, epoch = excluded.epoch,
         parts = excluded.parts, hash = excluded.hash, commit_us = excluded.commit_us`,
    ),
    writer: safe('SELECT max_seq, low_seq FROM _walship_batch_writers WHERE writer = ?'),
    upsertWriter: safe(
      `INSERT INTO _walship_batch_writers (writer, max_seq, low_seq, last_commit_us) VALUES (?, ?, 1, ?)
       ON CONFLICT (writer) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq),
         last_commit_us = max(last_commit_us, excluded.last_commit_us)
       RETURNING max_seq, low_seq`,
    ),
    setLowSeq: db.prepare('UPDATE _walship_batch_writers SET low_seq = ? WHERE writer = ?'),
    dropBelow: db.prepare('DELETE FROM _walship_batches WHERE writer = ? AND seq < ?'),
    expired: db.prepare('SELECT writer FROM _walship_batch_writers WHERE last_commit_us < ?').pluck(),
    dropWriterBatches: db.prepare('DELETE FROM _walship_batches WHERE writer = ?'),
    dropWriter: db.prepare('DELETE FROM _walship_batch_writers WHERE writer = ?'),
    forgetAfter: db.prepare('DELETE FROM _walship_batches WHERE table_key = ? AND txn > ?'),
    parts: safe(
      'SELECT table_key, txn, epoch, parts, hash FROM _walship_batches WHERE writer = ? AND seq = ? ORDER BY table_key',
    ),
  };
}

/** The ledger over a writable table store's connection; every method runs in the caller's transaction. */
export class BatchLedger {
  readonly #sql: Statements;

  constructor(db: Database.Database) {
    this.#sql = prepareLedger(db);
  }

  /** Records that txn `txn` of `tableKey` belongs to `stamp`'s batch, and moves the writer's window. */
  record(tableKey: string, txn: bigint, commitTimeUs: bigint, stamp: BatchStamp): void {
    const sql = this.#sql;
    const { writer, seq } = stamp;
    const known = sql.writer.get(writer) as { max_seq: bigint; low_seq: bigint } | undefined;
    if (known === undefined) this.#forgetWritersBefore(commitTimeUs - BATCH_WRITER_TTL_US);
    else if (seq < known.low_seq) return; // already out of the window: nothing would look it up
    sql.insert.run(writer, seq, tableKey, txn, stamp.epoch, stamp.parts, stamp.hash, commitTimeUs);
    const row = sql.upsertWriter.get(writer, seq, commitTimeUs) as { max_seq: bigint; low_seq: bigint };
    const lowSeq = row.max_seq - BATCH_WINDOW_SEQS + 1n;
    if (lowSeq > row.low_seq) {
      sql.setLowSeq.run(lowSeq, writer);
      sql.dropBelow.run(writer, lowSeq);
    }
  }

  /** What is known of batch `writer:seq`. */
  lookup(writer: string, seq: bigint): BatchLookup {
    const sql = this.#sql;
    const known = sql.writer.get(writer) as { max_seq: bigint; low_seq: bigint } | undefined;
    if (known === undefined) return { state: 'unknown' };
    if (seq < known.low_seq) return { state: 'outside-window', lowSeq: known.low_seq };
    const rows = sql.parts.all(writer, seq) as {
      table_key: string;
      txn: bigint;
      epoch: bigint;
      parts: bigint;
      hash: Uint8Array;
    }[];
    if (rows.length === 0) return { state: 'unknown' };
    return {
      state: 'known',
      parts: rows.map((r) => ({
        tableKey: r.table_key,
        txn: r.txn,
        epoch: r.epoch,
        parts: Number(r.parts),
        hash: r.hash,
      })),
    };
  }

  /**
   * Forgets the batch parts of `tableKey`'s txns after `txn`: txns rolled back (TableStore
   * rollBackPending) never reached the cluster, so their batches are not committed.
   */
  forgetTxnsAfter(tableKey: string, txn: bigint): void {
    this.#sql.forgetAfter.run(tableKey, txn);
  }

  /** Forgets the writers silent since before `beforeUs`, and their batches (a new writer's turn). */
  #forgetWritersBefore(beforeUs: bigint): void {
    const sql = this.#sql;
    for (const writer of sql.expired.all(beforeUs) as string[]) {
      sql.dropWriterBatches.run(writer);
      sql.dropWriter.run(writer);
    }
  }
}
