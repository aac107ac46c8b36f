/**
 * Txns that change a table rather than add rows (RFC-0007 "Retention of rows", RFC-0001 kinds 4–6):
 * a TTL, a trim of the rows below a timestamp, a drop; every node applying the same txns holds the
 * same rows and the same tables.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { type ColumnData, encodeTxnRecord, type TxnRecord } from '../wal/index.js';
import { TableStore } from './table-store.js';

let dir = '';
let stores: TableStore[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-table-ops-'));
});
afterEach(async () => {
  for (const store of stores) store.close();
  stores = [];
  await rm(dir, { recursive: true, force: true });
});

function open(name: string): TableStore {
  const store = TableStore.open(path.join(dir, `${name}.sqlite`));
  stores.push(store);
  return store;
}

/** A data txn of rows `[ts, v]`; `added` names the columns it creates. */
function rows(txn: bigint, list: [number, number][], added: { v?: boolean; w?: boolean } = {}): TxnRecord {
  const columns: ColumnData[] = [
    {
      name: 'timestamp',
      addedInTxn: false,
      nulls: null,
      data: { type: 'timestamp', values: BigInt64Array.from(list.map((r) => BigInt(r[0]))) },
    },
    {
      name: added.w === undefined ? 'v' : 'w',
      addedInTxn: added.v === true || added.w === true,
      nulls: null,
      data: { type: 'long', values: BigInt64Array.from(list.map((r) => BigInt(r[1]))) },
    },
  ];
  return { txn, commitTimeUs: 1n, kind: 'data', rowCount: list.length, columns };
}

const op = (txn: bigint, fields: Partial<TxnRecord> & Pick<TxnRecord, 'kind'>): TxnRecord => ({
  txn,
  commitTimeUs: 1n,
  rowCount: 0,
  columns: [],
  ...fields,
});

function query(store: TableStore, sql: string): unknown[][] {
  const db = new Database(store.file, { readonly: true });
  try {
    return db.prepare(sql).raw().all() as unknown[][];
  } finally {
    db.close();
  }
}

function refusal(fn: () => void): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

const HISTORY: TxnRecord[] = [
  rows(
    1n,
    [
      [10, 1],
      [20, 2],
      [30, 3],
    ],
    { v: true },
  ),
  op(2n, { kind: 'ttl', ttl: { count: 2, unit: 'DAY' } }),
  op(3n, { kind: 'trim', trimBeforeUs: 25n }),
  rows(4n, [
    [5, 4],
    [40, 5],
  ]),
  op(5n, { kind: 'trim', trimBeforeUs: 30n }),
];

describe('a TTL and its trims', () => {
  it('set the TTL with an index on the timestamp, and delete exactly the rows below each bound', () => {
    const store = open('a');
    store.applyTxns('t', HISTORY);
    expect(query(store, 'SELECT timestamp, v FROM t ORDER BY timestamp')).toEqual([
      [30, 3],
      [40, 5],
    ]);
    expect(store.ttl('t')).toEqual({ count: 2, unit: 'DAY' });
    expect(store.timestampBounds('t')).toEqual({ minUs: 30n, maxUs: 40n });
    expect(query(store, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 't'")).toEqual([
      [`_walship_ttl_${store.schema('t')!.key}`],
    ]);
    expect(store.lastTxn('t')).toBe(5n);
  });

  it('gives the same rows applied txn by txn, in one go and after reopening', () => {
    const whole = open('whole');
    whole.applyTxns('t', HISTORY);
    const single = open('single');
    for (const record of HISTORY) single.applyTxn('t', record);
    single.close();
    const reopened = TableStore.open(single.file);
    stores.push(reopened);
    expect(reopened.ttl('t')).toEqual({ count: 2, unit: 'DAY' });
    expect(query(reopened, 'SELECT * FROM t ORDER BY rowid')).toEqual(
      query(whole, 'SELECT * FROM t ORDER BY rowid'),
    );
  });

  it('a TTL of 0 removes it and its index', () => {
    const store = open('a');
    store.applyTxns('t', [...HISTORY, op(6n, { kind: 'ttl', ttl: { count: 0, unit: 'HOUR' } })]);
    expect(store.ttl('t')).toBeUndefined();
    expect(query(store, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 't'")).toEqual(
      [],
    );
  });
});

describe('a dropped table', () => {
  it('loses its rows, columns and TTL but keeps its txn numbers; its next data txn creates it anew', () => {
    const store = open('a');
    store.applyTxns('t', [...HISTORY, op(6n, { kind: 'drop' })]);
    expect(query(store, "SELECT name FROM sqlite_schema WHERE tbl_name = 't'")).toEqual([]);
    expect(store.schema('t')?.columns).toEqual([]);
    expect(store.ttl('t')).toBeUndefined();
    expect(store.lastTxn('t')).toBe(6n);
    // The new table has other columns: the old ones are gone with it.
    store.applyTxn('T', rows(7n, [[50, 7]], { w: true }));
    expect(query(store, 'SELECT * FROM T')).toEqual([[50, 7]]);
    expect(store.schema('t')).toMatchObject({
      name: 'T',
      columns: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'w', type: 'long' },
      ],
    });
    store.close();
    const reopened = TableStore.open(store.file);
    stores.push(reopened);
    expect(reopened.lastTxn('t')).toBe(7n);
    expect(reopened.schema('t')?.columns.map((c) => c.name)).toEqual(['timestamp', 'w']);
  });

  it('stays dropped after reopening, and takes no TTL, trim, upsert keys or second drop', () => {
    const store = open('a');
    store.applyTxns('t', [rows(1n, [[10, 1]], { v: true }), op(2n, { kind: 'drop' })]);
    store.close();
    const reopened = TableStore.open(store.file);
    stores.push(reopened);
    expect(reopened.schema('t')?.columns).toEqual([]);
    for (const record of [
      op(3n, { kind: 'ttl', ttl: { count: 1, unit: 'DAY' } }),
      op(3n, { kind: 'trim', trimBeforeUs: 1n }),
      op(3n, { kind: 'drop' }),
    ]) {
      const error = refusal(() => reopened.applyTxn('t', record));
      expect(isWalshipError(error, 'TXN_INVALID')).toBe(true);
      expect(String(error)).toMatch(/does not exist/);
    }
    expect(reopened.lastTxn('t')).toBe(2n);
  });

  it('a table op on a table that never existed is refused', () => {
    const store = open('a');
    const error = refusal(() => store.applyTxn('t', op(1n, { kind: 'drop' })));
    expect(isWalshipError(error, 'TXN_INVALID')).toBe(true);
    expect(store.schema('t')).toBeUndefined();
  });
});

describe('a pending table op', () => {
  it.each<[string, TxnRecord]>([
    ['a TTL', op(2n, { kind: 'ttl', ttl: { count: 1, unit: 'DAY' } })],
    ['a trim', op(2n, { kind: 'trim', trimBeforeUs: 15n })],
    ['a drop', op(2n, { kind: 'drop' })],
  ])('is never rolled back in place: %s', (_, record) => {
    const store = open('a');
    store.applyTxn(
      't',
      rows(
        1n,
        [
          [10, 1],
          [20, 2],
        ],
        { v: true },
      ),
    );
    store.setUploadedTxn('t', 1n);
    store.transaction(() => {
      store.applyTxn('t', record);
      store.enqueuePending('t', 2n, encodeTxnRecord(record));
    });
    const error = refusal(() => store.rollBackPending('t'));
    expect(isWalshipError(error, 'ROLLBACK_UNSAFE')).toBe(true);
    expect(store.lastTxn('t')).toBe(2n);
  });
});

describe('a fence on a dropped table', () => {
  it('leaves it dropped (a promotion fences every table)', () => {
    const store = open('a');
    store.applyTxns('t', [
      rows(1n, [[10, 1]], { v: true }),
      op(2n, { kind: 'drop' }),
      op(3n, { kind: 'fence' }),
    ]);
    expect(store.schema('t')?.columns).toEqual([]);
    expect(query(store, "SELECT name FROM sqlite_schema WHERE tbl_name = 't'")).toEqual([]);
    expect(store.lastTxn('t')).toBe(3n);
  });
});
