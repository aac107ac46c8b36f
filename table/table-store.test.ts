import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import {
  type ColumnData,
  type ColumnValues,
  nullBitmapBytes,
  setNull,
  type TxnRecord,
} from '../wal/index.js';
import { SQL_DECLARED_TYPES } from './sql-types.js';
import { decimalText, doubleArrayJson } from './sql-values.js';
import { TableStore } from './table-store.js';

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;
const T0 = 1_700_000_000_000_000n;

let dir: string;
let file: string;
const opened: TableStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-table-'));
  file = join(dir, 'tables.sqlite');
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(options: Parameters<typeof TableStore.open>[1] = {}): TableStore {
  const store = TableStore.open(file, options);
  opened.push(store);
  return store;
}

function column(name: string, data: ColumnValues, nullRows: number[] = []): ColumnData {
  let nulls: Uint8Array | null = null;
  if (nullRows.length > 0) {
    nulls = new Uint8Array(nullBitmapBytes(data.values.length));
    for (const row of nullRows) setNull(nulls, row);
  }
  return { name, addedInTxn: false, nulls, data };
}

function timestamps(...values: bigint[]): ColumnData {
  return column('timestamp', { type: 'timestamp', values: BigInt64Array.from(values) });
}

function record(txn: bigint, columns: ColumnData[]): TxnRecord {
  const rowCount = columns[0]?.data.values.length ?? 0;
  return { txn, commitTimeUs: T0, kind: 'data', rowCount, columns };
}

/** A small data record of `rows` rows: timestamp and a double `v`. */
function simple(txn: bigint, rows = 2, extra: ColumnData[] = []): TxnRecord {
  const ts = Array.from({ length: rows }, (_, i) => T0 + BigInt(i));
  const v = Float64Array.from({ length: rows }, (_, i) => i + 0.5);
  return record(txn, [timestamps(...ts), column('v', { type: 'double', values: v }), ...extra]);
}

/** Rows of a query on a separate raw connection, int64 as BigInt. */
function query(sql: string): Record<string, unknown>[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).safeIntegers(true).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

function declaredTypes(table: string): Record<string, string> {
  const rows = query(`SELECT name, type FROM pragma_table_info('${table}')`) as {
    name: string;
    type: string;
  }[];
  return Object.fromEntries(rows.map((row) => [row.name, row.type]));
}

function errorOf(fn: () => unknown): {
  code: string;
  kind: string;
  message: string;
  details: Record<string, unknown>;
} {
  try {
    fn();
  } catch (error) {
    if (isWalshipError(error)) return error;
    throw error;
  }
  throw new Error('expected a WalshipError, nothing was thrown');
}

describe('TableStore.open', () => {
  it('sets WAL mode, synchronous FULL by default, foreign keys off, and creates the metadata tables', () => {
    open().close();
    const db = new Database(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    const store = open();
    expect(store.readonly).toBe(false);
    const names = query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").map(
      (r) => r.name,
    );
    expect(names).toEqual([
      '_walship_batch_writers',
      '_walship_batches',
      '_walship_columns',
      '_walship_kv',
      '_walship_pending',
      '_walship_tables',
    ]);
  });

  it('applies the synchronous setting (FULL by default) to its connection', () => {
    expect(open().synchronous).toBe('FULL');
    expect(open({ synchronous: 'NORMAL' }).synchronous).toBe('NORMAL');
    expect(open({ synchronous: 'FULL' }).synchronous).toBe('FULL');
  });

  it('refuses a read-only open of a missing file and a file of another layout version', () => {
    expect(errorOf(() => TableStore.open(join(dir, 'missing.sqlite'), { readonly: true })).code).toBe(
      'STORAGE_FAILED',
    );
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    expect(errorOf(() => TableStore.open(file)).code).toBe('STORE_FORMAT_UNSUPPORTED');
  });

  it('throws CLOSED after close, and close is idempotent', () => {
    const store = open();
    store.close();
    store.close();
    expect(errorOf(() => store.lastTxn('t')).code).toBe('CLOSED');
    expect(errorOf(() => store.applyTxn('t', simple(1n))).code).toBe('CLOSED');
  });
});

describe('applyTxn: values', () => {
  it('round-trips every column type, int64 extremes, NaN, unicode and nulls', () => {
    const store = open();
    const rows = 5;
    const strings = ['', 'héllo', '日本語\u{1F600}', 'nul\u0000inside', 'x'.repeat(1000)];
    store.applyTxn(
      'Everything',
      record(1n, [
        timestamps(T0, T0 + 1n, MIN_I64 + 1n, MAX_I64, 0n),
        column('b', { type: 'boolean', values: Uint8Array.from([1, 0, 1, 0, 1]) }, [4]),
        column('l', {
          type: 'long',
          values: BigInt64Array.from([MIN_I64, MAX_I64, 0n, -1n, 2n ** 53n + 1n]),
        }),
        column('d', {
          type: 'double',
          values: Float64Array.from([Number.NaN, Number.POSITIVE_INFINITY, -0, 1e-300, Number.MAX_VALUE]),
        }),
        column('s', { type: 'string', values: strings }),
        column('sym', { type: 'symbol', values: ['BTC-USD', 'ETH-USD', 'BTC-USD', null, 'Ω'] }, [3]),
        column(
          'ts2',
          { type: 'timestamp', values: BigInt64Array.from([MIN_I64, MAX_I64, 0n, 0n, 1n]) },
          [2, 3],
        ),
        column(
          'arr',
          {
            type: 'double_array',
            values: [
              { shape: [3], values: Float64Array.from([1, 2.5, -3]) },
              { shape: [2, 2], values: Float64Array.from([1, 2, 3, 4]) },
              { shape: [2, 0], values: new Float64Array(0) },
              { shape: [1], values: Float64Array.from([Number.NaN]) },
              null,
            ],
          },
          [4],
        ),
        column('dec', {
          type: 'decimal',
          values: [
            { unscaled: 12345n, scale: 2 },
            { unscaled: -5n, scale: 3 },
            { unscaled: 150n, scale: 2 },
            { unscaled: -(2n ** 255n), scale: 0 },
            { unscaled: 7n, scale: 76 },
          ],
        }),
      ]),
    );
    expect(store.lastTxn('everything')).toBe(1n);
    const out = query('SELECT * FROM Everything ORDER BY rowid');
    expect(out).toHaveLength(rows);
    expect(out.map((r) => r.timestamp)).toEqual([T0, T0 + 1n, MIN_I64 + 1n, MAX_I64, 0n]);
    expect(out.map((r) => r.b)).toEqual([1n, 0n, 1n, 0n, null]);
    expect(out.map((r) => r.l)).toEqual([MIN_I64, MAX_I64, 0n, -1n, 2n ** 53n + 1n]);
    // SQLite stores NaN as NULL (QuestDB's NaN double is null too) and -0 as 0.
    expect(out.map((r) => r.d)).toEqual([null, Number.POSITIVE_INFINITY, 0, 1e-300, Number.MAX_VALUE]);
    expect(Object.is(out[2]!.d, -0)).toBe(false);
    expect(out.map((r) => r.s)).toEqual(strings);
    expect(out.map((r) => r.sym)).toEqual(['BTC-USD', 'ETH-USD', 'BTC-USD', null, 'Ω']);
    expect(out.map((r) => r.ts2)).toEqual([MIN_I64, MAX_I64, null, null, 1n]);
    expect(out.map((r) => r.arr)).toEqual(['[1,2.5,-3]', '[[1,2],[3,4]]', '[[],[]]', '[null]', null]);
    expect(out.map((r) => r.dec)).toEqual([
      '123.45',
      '-0.005',
      '1.50',
      (-(2n ** 255n)).toString(),
      `0.${'0'.repeat(75)}7`,
    ]);
  });

  it('declares column types from sql-types.ts, the designated timestamp first and NOT NULL', () => {
    const store = open();
    store.applyTxn(
      'trades',
      record(1n, [
        timestamps(T0),
        column('sym', { type: 'symbol', values: ['a'] }),
        column('qty', { type: 'long', values: BigInt64Array.from([1n]) }),
        column('ok', { type: 'boolean', values: Uint8Array.from([1]) }),
      ]),
    );
    expect(declaredTypes('trades')).toEqual({
      timestamp: SQL_DECLARED_TYPES.timestamp,
      sym: SQL_DECLARED_TYPES.symbol,
      qty: SQL_DECLARED_TYPES.long,
      ok: SQL_DECLARED_TYPES.boolean,
    });
    const notNull = query(
      "SELECT \"notnull\" AS n FROM pragma_table_info('trades') WHERE name = 'timestamp'",
    );
    expect(notNull[0]!.n).toBe(1n);
    // A symbol that looks like a number stays text (TEXT affinity).
    store.applyTxn(
      'trades',
      record(2n, [timestamps(T0), column('sym', { type: 'symbol', values: ['123'] })]),
    );
    expect(query("SELECT typeof(sym) AS t FROM trades WHERE sym = '123'")[0]!.t).toBe('text');
  });

  it('keeps the first spelling of a table and of a column, case-insensitively', () => {
    const store = open();
    store.applyTxn('Trades', simple(1n));
    store.applyTxn(
      'TRADES',
      record(2n, [timestamps(T0), column('V', { type: 'double', values: Float64Array.from([9]) })]),
    );
    expect(store.schema('trades')).toMatchObject({ name: 'Trades', key: 'trades' });
    // Schemas handed out are frozen snapshots: a caller cannot corrupt the cache.
    expect(Object.isFrozen(store.schema('trades'))).toBe(true);
    expect(Object.isFrozen(store.schema('trades')!.columns)).toBe(true);
    expect(store.schema('tRaDeS')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v']);
    expect(store.lastTxn('trades')).toBe(2n);
    expect(query('SELECT v FROM trades ORDER BY rowid').map((r) => r.v)).toEqual([0.5, 1.5, 9]);
  });

  it('treats non-ASCII case variants as one table (toLowerCase folding)', () => {
    const store = open();
    store.applyTxn('Äpfel', simple(1n));
    store.applyTxn('äPFEL', simple(2n));
    expect(store.schemas().map((s) => s.name)).toEqual(['Äpfel']);
    expect(store.lastTxn('ÄPFEL')).toBe(2n);
  });

  it('inserts only the columns a record carries; the others are NULL', () => {
    const store = open();
    store.applyTxn('t', simple(1n, 1, [column('s', { type: 'string', values: ['x'] })]));
    store.applyTxn('t', record(2n, [timestamps(T0 + 5n), column('s', { type: 'string', values: ['y'] })]));
    expect(query('SELECT v, s FROM t ORDER BY rowid')).toEqual([
      { v: 0.5, s: 'x' },
      { v: null, s: 'y' },
    ]);
  });
});

describe('stored text of arrays and decimals', () => {
  it.each([
    [[0], [], '[]'],
    [[3], [1, -2.5, 1e21], '[1,-2.5,1e+21]'],
    [[2, 1, 2], [1, 2, 3, 4], '[[[1,2]],[[3,4]]]'],
    [[0, 2], [], '[]'],
    [[2], [Number.POSITIVE_INFINITY, -0], '[null,0]'],
  ])('double array of shape %j', (shape, values, json) => {
    expect(doubleArrayJson({ shape, values: Float64Array.from(values) })).toBe(json);
  });

  it.each([
    [0n, 0, '0'],
    [0n, 2, '0.00'],
    [-1n, 1, '-0.1'],
    [-100n, 2, '-1.00'],
    [123456789012345678901234567890n, 10, '12345678901234567890.1234567890'],
    [-(2n ** 255n), 76, `-${(2n ** 255n).toString()[0]}.${(2n ** 255n).toString().slice(1)}`],
  ])('decimal %s scale %s', (unscaled, scale, text) => {
    expect(decimalText({ unscaled, scale })).toBe(text);
  });
});

describe('applyTxn: schema evolution and checks', () => {
  it('adds columns across txns, whether or not they are flagged addedInTxn', () => {
    const store = open();
    store.applyTxn('t', simple(1n));
    const added = {
      ...column('n', { type: 'long', values: BigInt64Array.from([7n, 8n]) }),
      addedInTxn: true,
    };
    const unflagged = column('s', { type: 'string', values: ['a', 'b'] });
    store.applyTxn('t', simple(2n, 2, [added, unflagged]));
    store.applyTxn(
      't',
      record(3n, [column('n', { type: 'long', values: BigInt64Array.from([9n]) }), timestamps(T0)]),
    );
    expect(store.schema('t')!.columns).toEqual([
      { name: 'timestamp', type: 'timestamp' },
      { name: 'v', type: 'double' },
      { name: 'n', type: 'long' },
      { name: 's', type: 'string' },
    ]);
    expect(Object.keys(declaredTypes('t'))).toEqual(['timestamp', 'v', 'n', 's']);
    expect(query('SELECT n, s FROM t ORDER BY rowid')).toEqual([
      { n: null, s: null },
      { n: null, s: null },
      { n: 7n, s: 'a' },
      { n: 8n, s: 'b' },
      { n: 9n, s: null },
    ]);
  });

  it('creates a new table with all its first columns at once, as if they had been added one by one', () => {
    // Issue 15: a table is created with every column of its first txn in one CREATE TABLE (an
    // ALTER TABLE re-reads the whole schema); the result must not differ from adding them later.
    const store = open();
    const extra = (rows: number): ColumnData[] => [
      column('S', { type: 'symbol', values: Array.from({ length: rows }, (_, i) => `s${i}`) }),
      column('n', { type: 'long', values: BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)) }),
      column('ok', { type: 'boolean', values: Uint8Array.from({ length: rows }, (_, i) => i % 2) }),
    ];
    store.applyTxn('at_once', simple(1n, 2, extra(2)));
    store.applyTxn('one_by_one', record(1n, [timestamps(T0)]));
    store.applyTxn('one_by_one', simple(2n, 2));
    const [symbol, long, boolean] = extra(2);
    store.applyTxn('one_by_one', simple(3n, 2, [symbol!]));
    store.applyTxn('one_by_one', simple(4n, 2, [symbol!, long!]));
    store.applyTxn('one_by_one', simple(5n, 2, [symbol!, long!, boolean!]));
    const expected = [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'v', type: 'double' },
      { name: 'S', type: 'symbol' },
      { name: 'n', type: 'long' },
      { name: 'ok', type: 'boolean' },
    ];
    expect(store.schema('at_once')!.columns).toEqual(expected);
    expect(store.schema('one_by_one')!.columns).toEqual(expected);
    const ddl = (table: string) =>
      (query(`SELECT sql FROM sqlite_master WHERE name = '${table}'`)[0]!.sql as string).replace(table, 'T');
    expect(ddl('at_once')).toBe(ddl('one_by_one'));
    const info = (table: string) => query(`SELECT * FROM pragma_table_xinfo('${table}')`);
    expect(info('at_once')).toEqual(info('one_by_one'));
    const metadata = (table: string) =>
      query(
        `SELECT "column", type, position FROM _walship_columns WHERE "table" = '${table}' ORDER BY position`,
      );
    expect(metadata('at_once')).toEqual(metadata('one_by_one'));
    expect(query('SELECT S, n, ok FROM at_once ORDER BY rowid')).toEqual([
      { S: 's0', n: 0n, ok: 0n },
      { S: 's1', n: 1n, ok: 1n },
    ]);
    // The same store, reopened, reads the same schema from its metadata.
    store.close();
    expect(open().schema('at_once')!.columns).toEqual(expected);
  });

  it('adds columns to a table a txn created with several, in a later txn', () => {
    const store = open();
    store.applyTxn('t', simple(1n, 1, [column('a', { type: 'string', values: ['x'] })]));
    store.applyTxn(
      't',
      simple(2n, 1, [
        column('b', { type: 'long', values: BigInt64Array.from([5n]) }),
        column('a', { type: 'string', values: ['y'] }),
      ]),
    );
    expect(store.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v', 'a', 'b']);
    expect(query('SELECT a, b FROM t ORDER BY rowid')).toEqual([
      { a: 'x', b: null },
      { a: 'y', b: 5n },
    ]);
  });

  it('refuses a column of another type with TYPE_CONFLICT (kind data) and writes nothing', () => {
    const store = open();
    store.applyTxn('t', simple(1n));
    const error = errorOf(() =>
      store.applyTxn(
        't',
        record(2n, [timestamps(T0), column('V', { type: 'long', values: BigInt64Array.from([1n]) })]),
      ),
    );
    expect(error).toMatchObject({ code: 'TYPE_CONFLICT', kind: 'data' });
    expect(error.message).toContain('"v" is double');
    expect(error.message).toContain('long');
    expect(store.lastTxn('t')).toBe(1n);
    const designated = errorOf(() =>
      store.applyTxn(
        't',
        record(2n, [column('timestamp', { type: 'long', values: BigInt64Array.from([1n]) })]),
      ),
    );
    expect(designated.code).toBe('TYPE_CONFLICT');
  });

  it('detects gaps and repeats with TXN_GAP naming both numbers', () => {
    const store = open();
    const first = errorOf(() => store.applyTxn('t', simple(2n)));
    expect(first).toMatchObject({ code: 'TXN_GAP', kind: 'data', details: { txn: 2n, lastTxn: 0n } });
    store.applyTxn('t', simple(1n));
    const repeat = errorOf(() => store.applyTxn('t', simple(1n)));
    expect(repeat.code).toBe('TXN_GAP');
    const gap = errorOf(() => store.applyTxn('t', simple(5n)));
    expect(gap.message).toContain('txn 5');
    expect(gap.message).toContain('last applied txn 1');
    expect(store.lastTxn('t')).toBe(1n);
  });

  it('refuses rows without a designated timestamp, or with null ones', () => {
    const store = open();
    const missing = errorOf(() =>
      store.applyTxn('t', record(1n, [column('v', { type: 'double', values: Float64Array.from([1]) })])),
    );
    expect(missing).toMatchObject({ code: 'TIMESTAMP_MISSING', kind: 'data' });
    const nullTs = column('timestamp', { type: 'timestamp', values: BigInt64Array.from([T0, 0n]) }, [1]);
    expect(errorOf(() => store.applyTxn('t', record(1n, [nullTs]))).code).toBe('TIMESTAMP_MISSING');
    expect(store.schema('t')).toBeUndefined();
  });

  it('refuses malformed records (TXN_INVALID) and bad names (INVALID_NAME, kind data)', () => {
    const store = open();
    const short = record(1n, [
      timestamps(T0, T0),
      column('v', { type: 'double', values: Float64Array.from([1]) }),
    ]);
    expect(errorOf(() => store.applyTxn('t', short)).code).toBe('TXN_INVALID');
    const twice = simple(1n, 2, [column('V', { type: 'double', values: Float64Array.from([1, 2]) })]);
    expect(errorOf(() => store.applyTxn('t', twice)).code).toBe('TXN_INVALID');
    const fenceWithRows: TxnRecord = { ...simple(1n), kind: 'fence' };
    expect(errorOf(() => store.applyTxn('t', fenceWithRows)).code).toBe('TXN_INVALID');
    expect(errorOf(() => store.applyTxn('a/b', simple(1n)))).toMatchObject({
      code: 'INVALID_NAME',
      kind: 'data',
    });
    const badColumn = simple(1n, 2, [column('a.b', { type: 'double', values: Float64Array.from([1, 2]) })]);
    expect(errorOf(() => store.applyTxn('t', badColumn))).toMatchObject({
      code: 'INVALID_NAME',
      kind: 'data',
    });
    expect(store.schemas()).toEqual([]);
  });

  it('applies a fence by advancing lastTxn only, creating an unknown table', () => {
    const store = open();
    store.applyTxn('t', simple(1n));
    store.applyTxn('t', { txn: 2n, commitTimeUs: T0, kind: 'fence', rowCount: 0, columns: [] });
    expect(store.lastTxn('t')).toBe(2n);
    expect(query('SELECT count(*) AS n FROM t')[0]!.n).toBe(2n);
    store.applyTxn('fresh', { txn: 1n, commitTimeUs: T0, kind: 'fence', rowCount: 0, columns: [] });
    expect(store.lastTxn('fresh')).toBe(1n);
    expect(store.schema('fresh')!.columns).toEqual([{ name: 'timestamp', type: 'timestamp' }]);
  });

  it('accepts a data record with no rows (schema change only)', () => {
    const store = open();
    store.applyTxn('t', record(1n, [column('x', { type: 'string', values: [] })]));
    expect(store.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'x']);
    expect(store.lastTxn('t')).toBe(1n);
  });
});

describe('deferringSync (group commit)', () => {
  /** The `synchronous` setting of the store's own connection (1 NORMAL, 2 FULL). */
  function synchronousOf(store: TableStore): number {
    return (store['db'] as Database.Database).pragma('synchronous', { simple: true }) as number;
  }

  it('turns the fsync at commit off for what runs inside, and back on after, whatever fn does', async () => {
    const store = open();
    expect(synchronousOf(store)).toBe(2);
    expect(store.deferringSync(() => synchronousOf(store))).toBe(1);
    expect(synchronousOf(store)).toBe(2);
    expect(() =>
      store.deferringSync(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(synchronousOf(store)).toBe(2);
    const inside = await store.deferringSync(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return synchronousOf(store);
    });
    expect(inside).toBe(1);
    expect(synchronousOf(store)).toBe(2);
    store.deferringSync(() => store.applyTxn('d', simple(1n)));
    await store.syncWal();
    expect(store.lastTxn('d')).toBe(1n);
  });

  it('leaves a store opened with synchronous=NORMAL as it is', () => {
    const store = open({ synchronous: 'NORMAL' });
    expect(store.deferringSync(() => synchronousOf(store))).toBe(1);
    expect(synchronousOf(store)).toBe(1);
  });
});

describe('transactions', () => {
  it('commits several tables at once and joins nested calls', () => {
    const store = open();
    store.transaction(() => {
      store.applyTxn('a', simple(1n));
      store.transaction(() => store.applyTxn('b', simple(1n)));
      store.enqueuePending('a', 1n, Uint8Array.from([1, 2, 3]));
    });
    expect([store.lastTxn('a'), store.lastTxn('b')]).toEqual([1n, 1n]);
    expect(store.pending('a')).toHaveLength(1);
  });

  it('rolls back leaving no trace: rows, columns, tables, watermarks, pending, schema cache', () => {
    const store = open();
    store.applyTxn('t', simple(1n));
    const schemaBefore = store.schema('t');
    const failing = () =>
      store.transaction(() => {
        store.applyTxn('t', simple(2n, 2, [column('phantom', { type: 'string', values: ['p', 'q'] })]));
        store.applyTxn(
          'new_table',
          simple(1n, 1, [column('n', { type: 'long', values: BigInt64Array.from([1n]) })]),
        );
        store.enqueuePending('t', 2n, Uint8Array.from([9]));
        store.setUploadedTxn('t', 2n);
        store.setMeta('epoch', '7');
        // Inside the transaction the changes are visible…
        expect(store.schema('t')!.columns.map((c) => c.name)).toContain('phantom');
        expect(store.lastTxn('new_table')).toBe(1n);
        store.applyTxn('t', simple(9n)); // …until a gap aborts it.
      });
    expect(errorOf(failing).code).toBe('TXN_GAP');
    expect(store.schema('t')).toEqual(schemaBefore);
    expect(store.schema('new_table')).toBeUndefined();
    expect(store.schemas().map((s) => s.name)).toEqual(['t']);
    expect([store.lastTxn('t'), store.uploadedTxn('t'), store.lastTxn('new_table')]).toEqual([1n, 0n, 0n]);
    expect(store.pending('t')).toEqual([]);
    expect(store.getMeta('epoch')).toBeUndefined();
    expect(query('SELECT count(*) AS n FROM t')[0]!.n).toBe(2n);
    expect(Object.keys(declaredTypes('t'))).toEqual(['timestamp', 'v']);
    expect(query("SELECT name FROM sqlite_master WHERE name = 'new_table'")).toEqual([]);
    // The same txns apply cleanly afterwards (no stale cached statement or schema).
    store.applyTxn('t', simple(2n, 2, [column('phantom', { type: 'string', values: ['p', 'q'] })]));
    store.applyTxn('new_table', simple(1n));
    expect(store.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v', 'phantom']);
  });

  it('rolls back when the function throws something else, and refuses async functions', () => {
    const store = open();
    expect(() =>
      store.transaction(() => {
        store.applyTxn('t', simple(1n));
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(store.lastTxn('t')).toBe(0n);
    expect(errorOf(() => store.transaction(async () => store.applyTxn('t', simple(1n)))).code).toBe(
      'ASYNC_TRANSACTION',
    );
    expect(store.lastTxn('t')).toBe(0n);
  });
});

describe('watermarks, pending queue, meta', () => {
  it('tracks the uploaded watermark within 0..lastTxn, never backwards', () => {
    const store = open();
    expect([store.lastTxn('t'), store.uploadedTxn('t')]).toEqual([0n, 0n]);
    expect(errorOf(() => store.setUploadedTxn('t', 1n)).code).toBe('TABLE_UNKNOWN');
    store.applyTxn('t', simple(1n));
    store.applyTxn('t', simple(2n));
    store.setUploadedTxn('t', 1n);
    expect(store.uploadedTxn('T')).toBe(1n);
    expect(errorOf(() => store.setUploadedTxn('t', 3n)).code).toBe('WATERMARK_INVALID');
    expect(errorOf(() => store.setUploadedTxn('t', 0n)).code).toBe('WATERMARK_INVALID');
    store.setUploadedTxn('t', 2n);
    expect(store.uploadedTxn('t')).toBe(2n);
  });

  it('queues records in txn order, pages by afterTxn and limitBytes, drops and summarises', () => {
    const store = open();
    for (let txn = 1n; txn <= 4n; txn++) {
      store.transaction(() => {
        store.applyTxn('Trades', simple(txn));
        store.enqueuePending('trades', txn, new Uint8Array(Number(txn) * 10).fill(Number(txn)));
      });
    }
    store.applyTxn('other', simple(1n));
    store.enqueuePending('other', 1n, Uint8Array.from([1]));
    const all = store.pending('TRADES');
    expect(all.map((p) => p.txn)).toEqual([1n, 2n, 3n, 4n]);
    expect(all.map((p) => p.bytes.length)).toEqual([10, 20, 30, 40]);
    expect(Array.from(all[2]!.bytes.subarray(0, 2))).toEqual([3, 3]);
    expect(store.pending('trades', { afterTxn: 2n }).map((p) => p.txn)).toEqual([3n, 4n]);
    expect(store.pending('trades', { limitBytes: 30 }).map((p) => p.txn)).toEqual([1n, 2n]);
    expect(store.pending('trades', { afterTxn: 3n, limitBytes: 5 }).map((p) => p.txn)).toEqual([4n]);
    expect(store.pending('unknown')).toEqual([]);
    expect(store.pendingSummary()).toEqual([
      { table: 'Trades', count: 4, bytes: 100, oldestTxn: 1n },
      { table: 'other', count: 1, bytes: 1, oldestTxn: 1n },
    ]);
    store.dropPendingThrough('trades', 2n);
    expect(store.pending('trades').map((p) => p.txn)).toEqual([3n, 4n]);
    expect(store.pendingSummary()[0]).toEqual({ table: 'Trades', count: 2, bytes: 70, oldestTxn: 3n });
  });

  it('refuses to queue an uncommitted txn, a txn twice, or for an unknown table', () => {
    const store = open();
    expect(errorOf(() => store.enqueuePending('t', 1n, new Uint8Array(1))).code).toBe('TABLE_UNKNOWN');
    store.applyTxn('t', simple(1n));
    expect(errorOf(() => store.enqueuePending('t', 2n, new Uint8Array(1))).code).toBe('WATERMARK_INVALID');
    store.enqueuePending('t', 1n, new Uint8Array(1));
    const twice = errorOf(() => store.enqueuePending('t', 1n, new Uint8Array(1)));
    expect(twice.code).toBe('STORAGE_FAILED');
    expect(twice.message).toContain('queue txn 1');
  });

  it('stores meta values', () => {
    const store = open();
    expect(store.getMeta('nodeId')).toBeUndefined();
    store.setMeta('nodeId', 'n1');
    store.setMeta('nodeId', 'n2');
    expect(store.getMeta('nodeId')).toBe('n2');
  });
});

describe('persistence and other connections', () => {
  it('keeps everything across close and reopen', () => {
    const store = open();
    store.transaction(() => {
      store.applyTxn('Trades', simple(1n, 3, [column('s', { type: 'symbol', values: ['a', 'b', 'c'] })]));
      store.enqueuePending('trades', 1n, Uint8Array.from([5, 6]));
      store.setMeta('epoch', '3');
    });
    store.applyTxn('trades', simple(2n));
    store.setUploadedTxn('trades', 1n);
    const schemas = store.schemas();
    store.close();
    const again = open();
    expect(again.schemas()).toEqual(schemas);
    expect([again.lastTxn('trades'), again.uploadedTxn('trades')]).toEqual([2n, 1n]);
    expect(again.pending('trades').map((p) => [p.txn, Array.from(p.bytes)])).toEqual([[1n, [5, 6]]]);
    expect(again.getMeta('epoch')).toBe('3');
    again.applyTxn('trades', simple(3n));
    expect(query('SELECT count(*) AS n FROM Trades')[0]!.n).toBe(7n);
  });

  it('a read-only store sees committed data, follows later commits and cannot write', () => {
    const writer = open();
    writer.applyTxn('t', simple(1n));
    writer.setMeta('k', 'v');
    const reader = open({ readonly: true });
    expect(reader.readonly).toBe(true);
    expect(reader.lastTxn('t')).toBe(1n);
    expect(reader.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v']);
    expect(reader.getMeta('k')).toBe('v');
    // A later commit by the writer (with a new column and a new table) is visible: the cache follows.
    writer.applyTxn('t', simple(2n, 1, [column('n', { type: 'long', values: BigInt64Array.from([1n]) })]));
    writer.applyTxn('u', simple(1n));
    expect(reader.lastTxn('t')).toBe(2n);
    expect(reader.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v', 'n']);
    expect(reader.schemas().map((s) => s.name)).toEqual(['t', 'u']);
    for (const write of [
      () => reader.applyTxn('t', simple(3n)),
      () => reader.setMeta('k', 'w'),
      () => reader.enqueuePending('t', 1n, new Uint8Array(1)),
      () => reader.transaction(() => 1),
    ]) {
      expect(errorOf(write)).toMatchObject({ code: 'READ_ONLY', kind: 'invalid' });
    }
    expect(writer.lastTxn('t')).toBe(2n);
  });

  it('batchReads checks for other connections’ commits once, at its start', () => {
    const writer = open();
    writer.applyTxn('t', simple(1n));
    const reader = open();
    expect(reader.lastTxn('t')).toBe(1n);
    const seen = reader.batchReads(() => {
      const before = reader.lastTxn('t');
      writer.applyTxn('t', simple(2n));
      // Inside the batch the cache is not checked again: the other connection's commit is unseen…
      return [before, reader.lastTxn('t'), reader.batchReads(() => reader.lastTxn('t'))];
    });
    expect(seen).toEqual([1n, 1n, 1n]);
    // …and seen again once it returns, as is a commit from before a batch starts.
    expect(reader.lastTxn('t')).toBe(2n);
    writer.applyTxn('t', simple(3n));
    expect(reader.batchReads(() => reader.lastTxn('t'))).toBe(3n);
    // A transaction inside a batch checks at its start, as always.
    reader.batchReads(() => {
      writer.applyTxn('t', simple(4n));
      reader.transaction(() => expect(reader.lastTxn('t')).toBe(4n));
    });
  });

  it('a second writable store sees the first one’s commits through its cache', () => {
    const a = open();
    const b = open();
    a.applyTxn('t', simple(1n));
    expect(b.lastTxn('t')).toBe(1n);
    b.applyTxn('t', simple(2n));
    expect(a.lastTxn('t')).toBe(2n);
    expect(errorOf(() => a.applyTxn('t', simple(2n))).code).toBe('TXN_GAP');
  });
});

describe('noteCommitted: the write worker tells the cache of its commits', () => {
  it('takes what it is told, only ever raising watermarks, and reads a grown schema or a new table again', () => {
    const worker = open();
    const main = open();
    worker.applyTxn('t', simple(1n));
    expect(main.lastTxn('t')).toBe(1n);
    expect(main.schema('u')).toBeUndefined();
    worker.applyTxn('t', simple(2n, 1, [column('n', { type: 'long', values: BigInt64Array.from([1n]) })]));
    worker.applyTxn('u', simple(1n));
    worker.setUploadedTxn('t', 1n);
    main.noteCommitted([
      { table: 'T', lastTxn: 2n, schema: worker.schema('t')! },
      { table: 'u', lastTxn: 1n, schema: worker.schema('u')! },
      { table: 't', uploadedTxn: 1n },
    ]);
    expect(main.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v', 'n']);
    expect([main.lastTxn('t'), main.uploadedTxn('t'), main.lastTxn('u')]).toEqual([2n, 1n, 1n]);
    // An answer that arrives late for an earlier commit does not take a value back.
    main.noteCommitted([{ table: 't', lastTxn: 1n, uploadedTxn: 0n }]);
    expect([main.lastTxn('t'), main.uploadedTxn('t')]).toEqual([2n, 1n]);
    // What it is not told it still finds through the data version.
    worker.applyTxn('t', simple(3n));
    expect(main.lastTxn('t')).toBe(3n);
  });
});

describe('applyTxns: a segment of one table', () => {
  /** Counts the store's writes of a last_txn, by a trigger another connection installs. */
  function countWatermarkWrites(): () => number {
    const db = new Database(file);
    db.exec(`CREATE TABLE watermark_writes (n INTEGER NOT NULL);
      INSERT INTO watermark_writes VALUES (0);
      CREATE TRIGGER count_watermark_writes AFTER UPDATE OF last_txn ON _walship_tables
      BEGIN UPDATE watermark_writes SET n = n + 1; END;`);
    db.close();
    return () => Number(query('SELECT n FROM watermark_writes')[0]!.n);
  }

  it('applies consecutive records, creating the table, and writes lastTxn once, after the last', () => {
    const store = open();
    store.applyTxn('other', simple(1n));
    const writes = countWatermarkWrites();
    const wide = (txn: bigint) => simple(txn, 2, [column('s', { type: 'symbol', values: ['a', 'b'] })]);
    store.applyTxns('T', [simple(1n), simple(2n, 3), wide(3n), wide(4n), simple(5n, 1)]);
    expect(store.lastTxn('t')).toBe(5n);
    expect(writes()).toBe(1);
    expect(store.schema('t')!.columns.map((c) => c.name)).toEqual(['timestamp', 'v', 's']);
    expect(query('SELECT count(*) AS n, count(s) AS s FROM T')[0]).toEqual({ n: 10n, s: 4n });
    // In an outer transaction too, with a fence among the records.
    const fence: TxnRecord = { txn: 7n, commitTimeUs: T0, kind: 'fence', rowCount: 0, columns: [] };
    store.transaction(() => store.applyTxns('t', [simple(6n), fence, simple(8n)]));
    expect([store.lastTxn('t'), BigInt(writes())]).toEqual([8n, 2n]);
    expect(query("SELECT last_txn FROM _walship_tables WHERE name = 'T'")[0]!.last_txn).toBe(8n);
    store.applyTxns('t', []);
    expect([store.lastTxn('t'), writes()]).toEqual([8n, 2]);
  });

  it('checks every record as applyTxn does, and a failing record undoes the whole batch', () => {
    const store = open();
    store.applyTxn('t', simple(1n));
    const schemaBefore = store.schema('t');
    const grown = simple(3n, 2, [column('w', { type: 'string', values: ['x', 'y'] })]);
    const failures: [string, TxnRecord][] = [
      ['TXN_GAP', simple(5n)],
      ['TXN_GAP', simple(3n)],
      [
        'TYPE_CONFLICT',
        record(4n, [timestamps(T0), column('v', { type: 'long', values: BigInt64Array.from([1n]) })]),
      ],
      ['TIMESTAMP_MISSING', record(4n, [column('v', { type: 'double', values: Float64Array.from([1]) })])],
    ];
    for (const [code, bad] of failures) {
      expect(errorOf(() => store.applyTxns('t', [simple(2n), grown, bad, simple(5n)])).code).toBe(code);
      expect(store.lastTxn('t')).toBe(1n);
      expect(store.schema('t')).toEqual(schemaBefore);
      expect(query('SELECT count(*) AS n FROM t')[0]!.n).toBe(2n);
      expect(Object.keys(declaredTypes('t'))).toEqual(['timestamp', 'v']);
    }
    expect(errorOf(() => store.applyTxns('new', [simple(1n), simple(3n)])).code).toBe('TXN_GAP');
    expect(store.schema('new')).toBeUndefined();
    // A batch inside an outer transaction that fails later is undone with it.
    const failing = () =>
      store.transaction(() => {
        store.applyTxns('t', [simple(2n), grown]);
        expect(store.lastTxn('t')).toBe(3n);
        throw new Error('later step failed');
      });
    expect(failing).toThrow('later step failed');
    expect([store.lastTxn('t'), store.schema('t')]).toEqual([1n, schemaBefore]);
    store.applyTxns('t', [simple(2n), grown, simple(4n)]);
    expect(store.lastTxn('t')).toBe(4n);
    expect(query('SELECT count(*) AS n, count(w) AS w FROM t')[0]).toEqual({ n: 8n, w: 2n });
  });
});

describe('the plan a table keeps for its next record', () => {
  it('still checks what depends on each record’s values', () => {
    const store = open();
    /** A table whose last two records carried timestamp and v: the next such record reuses their plan. */
    let tables = 0;
    const primed = () => {
      const name = `t${++tables}`;
      store.applyTxns(name, [simple(1n, 3), simple(2n, 3)]);
      return name;
    };
    const nullTs = record(3n, [
      column('timestamp', { type: 'timestamp', values: BigInt64Array.from([T0, 0n]) }, [1]),
      column('v', { type: 'double', values: Float64Array.from([1, 2]) }),
    ]);
    expect(errorOf(() => store.applyTxn(primed(), nullTs)).code).toBe('TIMESTAMP_MISSING');
    const short = record(3n, [
      timestamps(T0, T0),
      column('v', { type: 'double', values: Float64Array.from([1]) }),
    ]);
    expect(errorOf(() => store.applyTxn(primed(), short)).code).toBe('TXN_INVALID');
    const shortBitmap = simple(3n, 9);
    shortBitmap.columns[1] = { ...shortBitmap.columns[1]!, nulls: new Uint8Array(1) };
    expect(errorOf(() => store.applyTxn(primed(), shortBitmap)).message).toContain('null bitmap shorter');
    const fenceWithRows: TxnRecord = { ...simple(3n), kind: 'fence' };
    expect(errorOf(() => store.applyTxn(primed(), fenceWithRows)).code).toBe('TXN_INVALID');
    // Nor does a plan for other spellings or types of the same columns skip the checks of a new one.
    const twice = simple(3n, 2, [column('V', { type: 'double', values: Float64Array.from([1, 2]) })]);
    expect(errorOf(() => store.applyTxn(primed(), twice)).code).toBe('TXN_INVALID');
    const retyped = record(3n, [timestamps(T0), column('v', { type: 'string', values: ['x'] })]);
    expect(errorOf(() => store.applyTxn(primed(), retyped)).code).toBe('TYPE_CONFLICT');
    for (let t = 1; t <= tables; t++) expect(store.lastTxn(`t${t}`)).toBe(2n);
    // A plan made for a record without rows (and without a timestamp) lets no rows in without one.
    const vOnly = (txn: bigint, rows: number) =>
      record(txn, [column('v', { type: 'double', values: new Float64Array(rows) })]);
    store.applyTxns('u', [vOnly(1n, 0), vOnly(2n, 0)]);
    expect(errorOf(() => store.applyTxn('u', vOnly(3n, 2))).code).toBe('TIMESTAMP_MISSING');
    // The record after a refused one is planned as usual.
    store.applyTxn('t1', simple(3n));
    expect(query('SELECT count(*) AS n FROM t1')[0]!.n).toBe(8n);
  });

  it('is dropped when the schema changes: a new column, a rollback, another connection', () => {
    const store = open();
    const withW = (txn: bigint) => simple(txn, 2, [column('w', { type: 'string', values: ['x', 'y'] })]);
    store.applyTxns('t', [simple(1n), simple(2n)]);
    // A column added by a record makes a new schema: the plan for (timestamp, v) is remade for it.
    store.applyTxns('t', [withW(3n), simple(4n), withW(5n)]);
    expect(query('SELECT count(w) AS w FROM t')[0]!.w).toBe(4n);
    // A rolled-back transaction added column z and planned for it; the next record must add it again.
    const withZ = (txn: bigint) =>
      simple(txn, 2, [column('z', { type: 'long', values: BigInt64Array.from([1n, 2n]) })]);
    expect(() =>
      store.transaction(() => {
        store.applyTxns('t', [withZ(6n), withZ(7n)]);
        throw new Error('abort');
      }),
    ).toThrow('abort');
    expect(Object.keys(declaredTypes('t'))).toEqual(['timestamp', 'v', 'w']);
    store.applyTxn('t', withZ(6n));
    expect(Object.keys(declaredTypes('t'))).toEqual(['timestamp', 'v', 'w', 'z']);
    // Another connection drops the table and makes it again with v a long: a record with v a double
    // is then a type conflict, not an insert through the plan this store kept.
    const other = open();
    const db = new Database(file);
    db.exec(
      `DROP TABLE t; DELETE FROM _walship_columns WHERE "table" = 't'; DELETE FROM _walship_tables WHERE name = 't';`,
    );
    db.close();
    other.applyTxn(
      't',
      record(1n, [timestamps(T0), column('v', { type: 'long', values: BigInt64Array.from([1n]) })]),
    );
    expect(errorOf(() => store.applyTxn('t', simple(2n))).code).toBe('TYPE_CONFLICT');
    expect(store.schema('t')!.columns).toEqual([
      { name: 'timestamp', type: 'timestamp' },
      { name: 'v', type: 'long' },
    ]);
  });
});

describe('rows bound in blocks (row-inserter.ts)', () => {
  /** A record of `rows` rows of every scalar type, with nulls on and beside the block edges. */
  function mixed(txn: bigint, rows: number, first: number): { rec: TxnRecord; expected: unknown[] } {
    const at = Array.from({ length: rows }, (_, i) => first + i);
    const nullRows = at.flatMap((n, i) => (n % 8 === 7 || n % 64 === 0 || n % 13 === 5 ? [i] : []));
    const isNull = (i: number) => nullRows.includes(i);
    const rec = record(txn, [
      timestamps(...at.map((n) => T0 + BigInt(n))),
      column('l', { type: 'long', values: BigInt64Array.from(at, (n) => BigInt(n) * 3n - 7n) }, nullRows),
      column('d', { type: 'double', values: Float64Array.from(at, (n) => n / 4) }, nullRows),
      column('s', { type: 'string', values: at.map((n, i) => (isNull(i) ? null : `s${n}`)) }, nullRows),
      column('b', { type: 'boolean', values: Uint8Array.from(at, (n) => n & 1) }),
      column('dec', {
        type: 'decimal',
        values: at.map((n) => ({ unscaled: BigInt(n), scale: 1 })),
      }),
    ]);
    const expected = at.map((n, i) => ({
      timestamp: T0 + BigInt(n),
      l: isNull(i) ? null : BigInt(n) * 3n - 7n,
      d: isNull(i) ? null : n / 4,
      s: isNull(i) ? null : `s${n}`,
      b: BigInt(n & 1),
      dec: `${BigInt(n) / 10n}.${BigInt(n) % 10n}`,
    }));
    return { rec, expected };
  }

  it('writes every row once, in order, whatever the row count around the 64- and 8-row blocks', () => {
    const store = open();
    const expected: unknown[] = [];
    let first = 0;
    const counts = [1, 7, 8, 9, 63, 64, 65, 71, 72, 73, 128, 137, 200];
    counts.forEach((rows, i) => {
      const { rec, expected: rowsOut } = mixed(BigInt(i + 1), rows, first);
      store.applyTxn('blocks', rec);
      expected.push(...rowsOut);
      first += rows;
    });
    expect(query('SELECT timestamp, l, d, s, b, dec FROM blocks ORDER BY rowid')).toEqual(expected);
  });

  it('writes a sliced txn whole when its slices do not end on a block edge', async () => {
    const store = open();
    const { rec, expected } = mixed(1n, 300, 0);
    await store.transactionInSlices(() =>
      store.applyTxnInSlices('sliced', rec, { rowsPerSlice: 100, pause: async () => {} }),
    );
    expect(query('SELECT timestamp, l, d, s, b, dec FROM sliced ORDER BY rowid')).toEqual(expected);
  });

  it('binds a wide table in smaller blocks, and NULLs the columns a record lacks', () => {
    const store = open();
    const width = 200;
    const rows = 13;
    const wide = (txn: bigint, from: number) =>
      record(txn, [
        timestamps(...Array.from({ length: rows }, (_, i) => T0 + BigInt(from + i))),
        ...Array.from({ length: width }, (_, c) =>
          column(`c${c}`, {
            type: 'double',
            values: Float64Array.from({ length: rows }, (_, i) => (from + i) * 1000 + c),
          }),
        ),
      ]);
    store.applyTxn('wide', wide(1n, 0));
    store.applyTxn('wide', record(2n, [timestamps(T0 + 100n, T0 + 101n)]));
    store.applyTxn('wide', wide(3n, rows));
    const out = query('SELECT * FROM wide ORDER BY rowid');
    expect(out).toHaveLength(rows * 2 + 2);
    for (const [r, row] of out.entries()) {
      const n = r < rows ? r : r - 2;
      for (let c = 0; c < width; c += 37) {
        expect(row[`c${c}`]).toBe(r === rows || r === rows + 1 ? null : n * 1000 + c);
      }
    }
  });

  it('keeps inserting correctly once its cache of prepared INSERTs evicts some', () => {
    const store = open();
    // 10 columns: blocks of 51, 8 and 1 rows, 600 parameters a table; 600 tables pass the cache's bound.
    const tables = 600;
    const extra = (rows: number) =>
      Array.from({ length: 8 }, (_, c) =>
        column(`x${c}`, {
          type: 'double',
          values: Float64Array.from({ length: rows }, (_, i) => i * 10 + c),
        }),
      );
    for (let round = 1; round <= 2; round++) {
      store.transaction(() => {
        for (let t = 0; t < tables; t++) store.applyTxn(`t${t}`, simple(BigInt(round), 73, extra(73)));
      });
    }
    const once = Array.from({ length: 73 }, (_, i) => ({ v: i + 0.5, x7: i * 10 + 7 }));
    for (const t of [0, 1, 299, 599]) {
      expect(query(`SELECT v, x7 FROM t${t} ORDER BY rowid`)).toEqual([...once, ...once]);
    }
  });
});

describe('applyTxn: property', () => {
  const cell = {
    long: fc.bigInt({ min: MIN_I64, max: MAX_I64 }),
    double: fc.double({ noNaN: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
    string: fc.string({ unit: 'grapheme', maxLength: 20 }),
  };

  it('reads back what any sequence of txns wrote (long, double, string; nulls)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.array(
            fc.record({
              ts: fc.bigInt({ min: MIN_I64, max: MAX_I64 }),
              l: fc.option(cell.long),
              d: fc.option(cell.double),
              s: fc.option(cell.string),
            }),
            { maxLength: 20 },
          ),
          { minLength: 1, maxLength: 4 },
        ),
        (txns) => {
          rmSync(file, { force: true });
          rmSync(`${file}-wal`, { force: true });
          rmSync(`${file}-shm`, { force: true });
          const store = TableStore.open(file, { synchronous: 'NORMAL' });
          try {
            const expected: unknown[] = [];
            txns.forEach((rows, i) => {
              const nullsOf = (key: 'l' | 'd' | 's') =>
                rows.flatMap((r, row) => (r[key] === null ? [row] : []));
              store.applyTxn(
                'p',
                record(BigInt(i + 1), [
                  timestamps(...rows.map((r) => r.ts)),
                  column(
                    'l',
                    { type: 'long', values: BigInt64Array.from(rows, (r) => r.l ?? 0n) },
                    nullsOf('l'),
                  ),
                  column(
                    'd',
                    { type: 'double', values: Float64Array.from(rows, (r) => r.d ?? 0) },
                    nullsOf('d'),
                  ),
                  column('s', { type: 'string', values: rows.map((r) => r.s) }, nullsOf('s')),
                ]),
              );
              for (const r of rows) expected.push({ timestamp: r.ts, l: r.l, d: r.d, s: r.s });
            });
            expect(store.lastTxn('p')).toBe(BigInt(txns.length));
            expect(query('SELECT timestamp, l, d, s FROM p ORDER BY rowid')).toEqual(expected);
          } finally {
            store.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
