/**
 * TableStore.rollBackPending (issue 13 item 3): a replaced primary undoes the txns that never
 * reached the store and keeps the rest, so it follows the new primary without replaying history.
 * The result must be the database of a node that applied only the uploaded txns: same rows, same
 * columns in the same order, same watermarks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ColumnData, type ColumnValues, encodeTxnRecord, type TxnRecord } from '../wal/index.js';
import { TableStore } from './table-store.js';

const T0 = 1_700_000_000_000_000n;

let dir: string;
const opened: TableStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-rollback-'));
});
afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(name: string): TableStore {
  const store = TableStore.open(join(dir, name));
  opened.push(store);
  return store;
}

function column(name: string, data: ColumnValues, addedInTxn = false): ColumnData {
  return { name, addedInTxn, nulls: null, data };
}

/** Txn `txn` of `rows` rows (timestamps from `firstTs`), a long `id`, and `extra` columns. */
function txnRecord(
  txn: bigint,
  firstTs: bigint,
  rows: number,
  options: { newTable?: boolean; extra?: ColumnData[] } = {},
): TxnRecord {
  const ts = BigInt64Array.from({ length: rows }, (_, i) => firstTs + BigInt(i));
  const ids = BigInt64Array.from({ length: rows }, (_, i) => firstTs + BigInt(i));
  return {
    txn,
    commitTimeUs: T0,
    kind: 'data',
    rowCount: rows,
    columns: [
      column('timestamp', { type: 'timestamp', values: ts }, options.newTable === true),
      column('id', { type: 'long', values: ids }, options.newTable === true),
      ...(options.extra ?? []),
    ],
  };
}

/** Commits `record` as a primary does: applied and queued for upload. */
function commit(store: TableStore, table: string, record: TxnRecord): void {
  store.transaction(() => {
    store.applyTxn(table, record);
    store.enqueuePending(table, record.txn, encodeTxnRecord(record));
  });
}

/** Marks txns through `txn` uploaded, as the uploader does. */
function uploaded(store: TableStore, table: string, txn: bigint): void {
  store.transaction(() => {
    store.setUploadedTxn(table, txn);
    store.dropPendingThrough(table, txn);
  });
}

/** Every row (int64 as text), the declared columns in order, and the watermarks of `table` in `file`. */
function contents(file: string, table: string) {
  const db = new Database(join(dir, file), { readonly: true });
  try {
    const columns = db.prepare(`SELECT name, type FROM pragma_table_info('${table}')`).all();
    const rows =
      columns.length === 0
        ? []
        : db
            .prepare(`SELECT * FROM "${table}" ORDER BY rowid`)
            .safeIntegers(true)
            .all()
            .map((r) => JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
    const meta = db
      .prepare('SELECT "column", type, position FROM _walship_columns WHERE "table" = ? ORDER BY position')
      .all(table);
    const marks = db.prepare('SELECT last_txn, uploaded_txn FROM _walship_tables WHERE name = ?').all(table);
    const pending = db.prepare('SELECT count(*) AS n FROM _walship_pending WHERE "table" = ?').get(table);
    return { columns, rows, meta, marks, pending };
  } finally {
    db.close();
  }
}

const extraDouble = (rows: number, addedInTxn: boolean) =>
  column(
    'extra',
    { type: 'double', values: Float64Array.from({ length: rows }, (_, i) => i + 0.25) },
    addedInTxn,
  );
const extraString = (rows: number, addedInTxn: boolean) =>
  column('note', { type: 'string', values: Array.from({ length: rows }, (_, i) => `n${i}`) }, addedInTxn);

describe('TableStore.rollBackPending', () => {
  it('undoes the pending txns, their rows and the columns they created: the table equals one that applied only the uploaded txns', () => {
    const history = [
      txnRecord(1n, T0, 3, { newTable: true }),
      txnRecord(2n, T0 + 100n, 2, { extra: [extraDouble(2, true)] }),
    ];
    const lost = [
      txnRecord(3n, T0 + 200n, 4, { extra: [extraDouble(4, false), extraString(4, true)] }),
      txnRecord(4n, T0 + 300n, 1, { extra: [extraString(1, false)] }),
    ];
    const primary = open('primary.sqlite');
    for (const record of [...history, ...lost]) commit(primary, 't', record);
    uploaded(primary, 't', 2n);
    const reference = open('reference.sqlite');
    for (const record of history) reference.applyTxn('t', record);
    reference.setUploadedTxn('t', 2n);

    const result = primary.rollBackPending('t');

    expect(result).toEqual({ txns: 2, rows: 5, droppedColumns: ['note'], droppedTable: false });
    expect(primary.lastTxn('t')).toBe(2n);
    expect(primary.uploadedTxn('t')).toBe(2n);
    expect(primary.schema('t')?.columns.map((c) => c.name)).toEqual(['timestamp', 'id', 'extra']);
    expect(primary.pendingSummary()).toEqual([]);
    expect(contents('primary.sqlite', 't')).toEqual(contents('reference.sqlite', 't'));
    // What the cluster writes next applies: txn 3 again, with `note` of another type than the lost one's.
    const next = txnRecord(3n, T0 + 900n, 1, {
      extra: [column('note', { type: 'long', values: BigInt64Array.from([7n]) }, true)],
    });
    primary.applyTxn('t', next);
    reference.applyTxn('t', next);
    expect(contents('primary.sqlite', 't')).toEqual(contents('reference.sqlite', 't'));
  });

  it('drops a table that only pending txns wrote (it was never uploaded) and leaves other tables alone', () => {
    const primary = open('primary.sqlite');
    commit(primary, 'kept', txnRecord(1n, T0, 2, { newTable: true }));
    uploaded(primary, 'kept', 1n);
    commit(primary, 'lost', txnRecord(1n, T0, 2, { newTable: true }));
    commit(primary, 'lost', txnRecord(2n, T0 + 10n, 2));
    const before = contents('primary.sqlite', 'kept');

    expect(primary.rollBackPending('lost')).toEqual({
      txns: 2,
      rows: 4,
      droppedColumns: ['timestamp', 'id'],
      droppedTable: true,
    });

    expect(primary.schema('lost')).toBeUndefined();
    expect(primary.schemas().map((s) => s.name)).toEqual(['kept']);
    expect(contents('primary.sqlite', 'lost')).toEqual({
      columns: [],
      rows: [],
      meta: [],
      marks: [],
      pending: { n: 0 },
    });
    expect(contents('primary.sqlite', 'kept')).toEqual(before);
    // The cluster may create the same table later: it applies from txn 1.
    primary.applyTxn('lost', txnRecord(1n, T0 + 50n, 1, { newTable: true }));
    expect(primary.lastTxn('lost')).toBe(1n);
  });

  it('refuses (ROLLBACK_UNSAFE) and changes nothing when the rows are not what the pending records say', () => {
    const primary = open('primary.sqlite');
    commit(primary, 't', txnRecord(1n, T0, 3, { newTable: true }));
    uploaded(primary, 't', 1n);
    commit(primary, 't', txnRecord(2n, T0 + 100n, 2));
    // Someone changed a pending row behind the store's back.
    const db = new Database(join(dir, 'primary.sqlite'));
    db.prepare('UPDATE t SET timestamp = timestamp + 1 WHERE rowid = (SELECT max(rowid) FROM t)').run();
    db.close();
    const before = contents('primary.sqlite', 't');

    expect(() => primary.rollBackPending('t')).toThrow(expect.objectContaining({ code: 'ROLLBACK_UNSAFE' }));
    expect(contents('primary.sqlite', 't')).toEqual(before);
    expect(primary.lastTxn('t')).toBe(2n);
  });

  it('refuses (ROLLBACK_UNSAFE) when the queue does not hold every txn after the uploaded watermark', () => {
    const primary = open('primary.sqlite');
    commit(primary, 't', txnRecord(1n, T0, 1, { newTable: true }));
    uploaded(primary, 't', 1n);
    // Txn 2 applied without being queued: the queue no longer says what happened after txn 1.
    primary.applyTxn('t', txnRecord(2n, T0 + 1n, 1));
    commit(primary, 't', txnRecord(3n, T0 + 2n, 1));

    expect(() => primary.rollBackPending('t')).toThrow(
      expect.objectContaining({
        code: 'ROLLBACK_UNSAFE',
        message: expect.stringContaining('txn 3 where txn 2'),
      }),
    );
    expect(primary.lastTxn('t')).toBe(3n);
  });
});
