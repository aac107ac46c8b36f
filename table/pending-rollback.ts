import { WalshipError } from '../core/index.js';
import { DESIGNATED_TIMESTAMP_COLUMN, decodeTxnRecord, type TxnRecord } from '../wal/index.js';
import type { PendingTxn } from './table-state.js';

/**
 * Undoing a table's pending txns (TableStore.rollBackPending): what they did, read from their
 * encoded records. Rows carry no txn number: each table is a rowid table into which every txn
 * inserted its rows in txn order, and SQLite gives a new row the largest rowid plus one (no
 * AUTOINCREMENT, nothing deletes rows), so the rows of the last txns are the rows with the
 * largest rowids — as many as those txns' records hold. The schema changes they made are in the
 * records too: a column a txn created carries `addedInTxn`, and the txn that created the table is
 * txn 1. Each record is checked against the rows before anything is undone (their designated
 * timestamps, in order): a database that does not hold what its queue says is left alone.
 */

/** Encoded bytes of the pending queue read at a time: bounds memory whatever the queue holds. */
export const ROLLBACK_CHUNK_BYTES = 4 * 1024 * 1024;

export interface RollbackPlan {
  /** Txns undone (uploadedTxn+1..lastTxn). */
  txns: number;
  /** Rows those txns inserted. */
  rows: number;
  /** Names (folded) of the columns those txns created, in no particular order. */
  addedColumns: Set<string>;
  /**
   * One of those txns cannot be undone in place: it set or cleared the table's upsert keys, set its
   * TTL, deleted rows below a timestamp or dropped it.
   */
  irreversible: boolean;
}

/**
 * Reads the records of txns `uploadedTxn+1..lastTxn` through `read` (the pending queue after a txn,
 * a chunk at a time) and returns what undoing them means. Throws ROLLBACK_UNSAFE when the queue
 * does not hold exactly those txns, or a record cannot be decoded or names another txn.
 */
export function planRollback(
  table: string,
  watermarks: { uploadedTxn: bigint; lastTxn: bigint },
  read: (afterTxn: bigint) => PendingTxn[],
): RollbackPlan {
  const plan: RollbackPlan = { txns: 0, rows: 0, addedColumns: new Set(), irreversible: false };
  let expected = watermarks.uploadedTxn + 1n;
  for (const record of pendingRecords(table, expected, read)) {
    if (record.txn !== expected)
      throw unsafe(table, `its pending queue holds txn ${record.txn} where txn ${expected} was expected`);
    expected++;
    plan.txns++;
    if (record.kind !== 'data' && record.kind !== 'fence') plan.irreversible = true;
    if (record.kind !== 'data') continue;
    plan.rows += record.rowCount;
    for (const column of record.columns)
      if (column.addedInTxn) plan.addedColumns.add(column.name.toLowerCase());
  }
  if (expected - 1n !== watermarks.lastTxn)
    throw unsafe(
      table,
      `its pending queue ends at txn ${expected - 1n}, its last committed txn is ${watermarks.lastTxn}`,
    );
  return plan;
}

/** The decoded records of the pending queue from txn `firstTxn` on, in txn order, a chunk at a time. */
export function* pendingRecords(
  table: string,
  firstTxn: bigint,
  read: (afterTxn: bigint) => PendingTxn[],
): Generator<TxnRecord> {
  let afterTxn = firstTxn - 1n;
  for (;;) {
    const chunk = read(afterTxn);
    if (chunk.length === 0) return;
    for (const pending of chunk) {
      afterTxn = pending.txn;
      let record: TxnRecord;
      try {
        record = decodeTxnRecord(pending.bytes);
      } catch (error) {
        throw unsafe(table, `pending txn ${pending.txn} cannot be decoded: ${(error as Error).message}`);
      }
      if (record.txn !== pending.txn)
        throw unsafe(table, `pending txn ${pending.txn} holds a record of txn ${record.txn}`);
      yield record;
    }
  }
}

/** The designated timestamps of a data record's rows, in row order (the column is never null). */
export function designatedTimestamps(table: string, record: TxnRecord): BigInt64Array {
  const column = record.columns.find((c) => c.name.toLowerCase() === DESIGNATED_TIMESTAMP_COLUMN);
  if (column === undefined || column.data.type !== 'timestamp')
    throw unsafe(table, `pending txn ${record.txn} has rows but no designated timestamp`);
  return column.data.values;
}

export function unsafe(table: string, why: string): WalshipError {
  return new WalshipError(
    'ROLLBACK_UNSAFE',
    'data',
    `cannot roll table ${JSON.stringify(table)} back to its last uploaded txn: ${why}`,
    { details: { table } },
  );
}
