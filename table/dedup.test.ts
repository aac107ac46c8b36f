/**
 * Deduplicated tables (RFC-0011, QuestDB's `DEDUP UPSERT KEYS`): a dedup txn sets a table's upsert
 * keys; from then on a row equal on those keys to an older one replaces it, identically on every
 * node that applies the same txns.
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
  dir = await mkdtemp(path.join(tmpdir(), 'walship-dedup-'));
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

type Row = [ts: number, sym: string | null, v: number];

function rows(txn: bigint, list: Row[], first = false): TxnRecord {
  const nulls = new Uint8Array(Math.ceil(list.length / 8));
  list.forEach(([, sym], i) => {
    if (sym === null) nulls[i >> 3]! |= 1 << (i & 7);
  });
  const columns: ColumnData[] = [
    {
      name: 'timestamp',
      addedInTxn: false,
      nulls: null,
      data: { type: 'timestamp', values: BigInt64Array.from(list.map((r) => BigInt(r[0]))) },
    },
    {
      name: 'sym',
      addedInTxn: first,
      nulls: list.some((r) => r[1] === null) ? nulls : null,
      data: { type: 'symbol', values: list.map((r) => r[1]) },
    },
    {
      name: 'v',
      addedInTxn: first,
      nulls: null,
      data: { type: 'long', values: BigInt64Array.from(list.map((r) => BigInt(r[2]))) },
    },
  ];
  return { txn, commitTimeUs: 1n, kind: 'data', rowCount: list.length, columns };
}

function dedup(
  txn: bigint,
  keys: { name: string; type: 'timestamp' | 'symbol' | 'long' | 'double' }[],
): TxnRecord {
  const empty = (type: string): ColumnData['data'] =>
    type === 'symbol'
      ? { type: 'symbol', values: [] }
      : type === 'double'
        ? { type: 'double', values: new Float64Array(0) }
        : { type: type as 'long', values: new BigInt64Array(0) };
  return {
    txn,
    commitTimeUs: 1n,
    kind: 'dedup',
    rowCount: 0,
    columns: keys.map((k) => ({ name: k.name, addedInTxn: false, nulls: null, data: empty(k.type) })),
  };
}

function content(store: TableStore): Row[] {
  const db = new Database(store.file, { readonly: true });
  try {
    return db
      .prepare('SELECT timestamp, sym, v FROM t ORDER BY timestamp, sym, v')
      .raw()
      .all()
      .map((r) => r as Row);
  } finally {
    db.close();
  }
}

const KEYS = [
  { name: 'timestamp', type: 'timestamp' as const },
  { name: 'sym', type: 'symbol' as const },
];

describe('a deduplicated table', () => {
  it('keeps the newest row per upsert key: over older rows, within a txn, with NULL equal to NULL', () => {
    const store = open('a');
    store.applyTxn(
      't',
      rows(
        1n,
        [
          [1, 'a', 1],
          [1, 'a', 2],
          [2, 'b', 3],
        ],
        true,
      ),
    );
    store.applyTxn('t', dedup(2n, KEYS));
    expect(store.dedupKeys('t')).toEqual(['timestamp', 'sym']);
    // Rows from before dedup stay as they were (QuestDB does the same).
    expect(content(store)).toEqual([
      [1, 'a', 1],
      [1, 'a', 2],
      [2, 'b', 3],
    ]);
    store.applyTxn(
      't',
      rows(3n, [
        [1, 'a', 10],
        [2, 'b', 30],
        [2, 'b', 31],
        [3, null, 40],
        [3, 'c', 50],
      ]),
    );
    store.applyTxn(
      't',
      rows(4n, [
        [3, null, 41],
        [4, 'd', 60],
      ]),
    );
    expect(content(store)).toEqual([
      [1, 'a', 10],
      [2, 'b', 31],
      [3, null, 41],
      [3, 'c', 50],
      [4, 'd', 60],
    ]);
  });

  it('stops deduplicating once its keys are cleared', () => {
    const store = open('a');
    store.applyTxn('t', rows(1n, [[1, 'a', 1]], true));
    store.applyTxns('t', [dedup(2n, KEYS), rows(3n, [[1, 'a', 2]]), dedup(4n, []), rows(5n, [[1, 'a', 3]])]);
    expect(store.dedupKeys('t')).toBeUndefined();
    expect(content(store)).toEqual([
      [1, 'a', 2],
      [1, 'a', 3],
    ]);
  });

  it('ends the same on a node that applies segment by segment and one that applies txn by txn, and after reopening', () => {
    const records = [
      rows(
        1n,
        [
          [1, 'a', 1],
          [2, 'a', 2],
        ],
        true,
      ),
      dedup(2n, KEYS),
      rows(3n, [
        [1, 'a', 3],
        [1, 'a', 4],
        [2, null, 5],
      ]),
      rows(4n, [
        [2, null, 6],
        [2, 'a', 7],
        [1, 'a', 8],
      ]),
    ];
    const one = open('one');
    one.applyTxns('t', records);
    const two = open('two');
    for (const record of records) two.applyTxn('t', record);
    two.close();
    stores = stores.filter((s) => s !== two);
    const reopened = open('two');
    expect(reopened.dedupKeys('t')).toEqual(['timestamp', 'sym']);
    reopened.applyTxn('t', rows(5n, [[2, 'a', 9]]));
    one.applyTxn('t', rows(5n, [[2, 'a', 9]]));
    expect(content(reopened)).toEqual(content(one));
    expect(content(one)).toEqual([
      [1, 'a', 8],
      [2, null, 6],
      [2, 'a', 9],
    ]);
  });

  it.each([
    [
      'a key the table lacks',
      [
        { name: 'timestamp', type: 'timestamp' as const },
        { name: 'nope', type: 'long' as const },
      ],
      /not a column/,
    ],
    [
      'keys without the designated timestamp',
      [{ name: 'sym', type: 'symbol' as const }],
      /designated timestamp/,
    ],
    [
      'a key of another type',
      [
        { name: 'timestamp', type: 'timestamp' as const },
        { name: 'v', type: 'double' as const },
      ],
      /is long, the record carries double/,
    ],
  ])('refuses %s (TXN_INVALID, kind data) and changes nothing', (_name, keys, message) => {
    const store = open('a');
    store.applyTxn('t', rows(1n, [[1, 'a', 1]], true));
    let error: unknown;
    try {
      store.applyTxn('t', dedup(2n, keys));
    } catch (caught) {
      error = caught;
    }
    expect((error as { kind?: string }).kind).toBe('data');
    expect(String(error)).toMatch(message);
    expect(store.dedupKeys('t')).toBeUndefined();
    expect(store.lastTxn('t')).toBe(1n);
  });

  it('is never rolled back in place: rows it replaced cannot be put back', () => {
    const store = open('a');
    store.applyTxn('t', rows(1n, [[1, 'a', 1]], true));
    store.applyTxn('t', dedup(2n, KEYS));
    store.setUploadedTxn('t', 2n);
    const record = rows(3n, [[1, 'a', 2]]);
    store.transaction(() => {
      store.applyTxn('t', record);
      store.enqueuePending('t', 3n, encodeTxnRecord(record));
    });
    let error: unknown;
    try {
      store.rollBackPending('t');
    } catch (caught) {
      error = caught;
    }
    expect(isWalshipError(error, 'ROLLBACK_UNSAFE')).toBe(true);
    expect(content(store)).toEqual([[1, 'a', 2]]);
  });
});
