import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../core/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { TableStore, tableKey } from '../table/index.js';
import type { ColumnData, TxnRecord } from '../wal/index.js';
import { TABLE_EPOCH_META_PREFIX } from './follower.js';
import { publishSnapshot } from './snapshots.js';
import {
  bootstrapTableFromSnapshot,
  dropLocalTable,
  resolveServedTables,
  SERVED_TABLES_META_KEY,
  servedTablesMeta,
  TableFilter,
  tableChangesOf,
} from './table-filter.js';

describe('TableFilter', () => {
  it('serves every table when neither key is set (or the include key is blank)', () => {
    for (const filter of [TableFilter.parse(undefined, undefined), TableFilter.parse('  ', '')]) {
      expect(filter.toJSON()).toEqual({ include: ['*'], exclude: [] });
      expect(filter.servesAll()).toBe(true);
      expect(filter.admits('trades')).toBe(true);
      expect(filter.admits('Ünïcode tåble')).toBe(true);
    }
  });

  it('matches names and patterns case-insensitively, exclude after include', () => {
    const filter = TableFilter.parse(' Trades , fx_*, metric_?? ', 'fx_test*,METRIC_x9');
    expect(filter.servesAll()).toBe(false);
    expect(filter.admits('trades')).toBe(true);
    expect(filter.admits('TRADES')).toBe(true);
    expect(filter.admits('trades2')).toBe(false);
    expect(filter.admits('fx_eurusd')).toBe(true);
    expect(filter.admits('FX_')).toBe(true);
    expect(filter.admits('fx_TestRun')).toBe(false);
    expect(filter.admits('metric_ab')).toBe(true);
    expect(filter.admits('metric_x9')).toBe(false);
    expect(filter.admits('metric_abc')).toBe(false);
    expect(filter.admits('quotes')).toBe(false);
  });

  it('decodes store keys to names (a key no name maps to is not admitted)', () => {
    const filter = TableFilter.parse('my table*', undefined);
    expect(filter.admitsKey(tableKey('My Table 1'))).toBe(true);
    expect(filter.admitsKey(tableKey('other'))).toBe(false);
    expect(filter.admitsKey('my%2')).toBe(false);
    expect(filter.admitsKey('MY TABLE')).toBe(false);
  });

  it('answers a pattern that would make a backtracking RegExp explode', () => {
    const filter = TableFilter.parse(`${'*a'.repeat(30)}*b`, undefined);
    expect(filter.admits('a'.repeat(127))).toBe(false);
    expect(filter.admits(`${'a'.repeat(40)}b`)).toBe(true);
  });

  it('refuses entries that are neither names nor patterns, naming the key', () => {
    const cases: [string | undefined, string | undefined, RegExp][] = [
      ['trades,a/b', undefined, /^replication\.replica\.tables: "a\/b" is neither/],
      ['trades,,quotes', undefined, /^replication\.replica\.tables: an entry is empty/],
      [undefined, 'ok,_walship*', /^replication\.replica\.tables\.exclude: "_walship\*" .*reserved/],
      [undefined, 'x,', /^replication\.replica\.tables\.exclude: an entry is empty/],
      ['.hidden*', undefined, /^replication\.replica\.tables: ".hidden\*"/],
    ];
    for (const [include, exclude, message] of cases) {
      let thrown: unknown;
      try {
        TableFilter.parse(include, exclude);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, `${include} / ${exclude}`).toMatchObject({ code: 'INVALID_CONFIG', kind: 'invalid' });
      expect((thrown as Error).message).toMatch(message);
    }
  });

  it('adding: appends a name no entry matches, removes an exact exclude, refuses a pattern exclude', () => {
    const filter = TableFilter.parse('trades,fx_*', 'quotes,fx_test*');
    expect(filter.adding('orders').toJSON()).toEqual({
      include: ['trades', 'fx_*', 'orders'],
      exclude: ['quotes', 'fx_test*'],
    });
    expect(filter.adding('fx_eur').equals(filter)).toBe(true);
    const quotes = filter.adding('Quotes');
    expect(quotes.toJSON()).toEqual({ include: ['trades', 'fx_*', 'Quotes'], exclude: ['fx_test*'] });
    expect(quotes.admits('quotes')).toBe(true);
    expect(() => filter.adding('fx_test1')).toThrow(
      expect.objectContaining({ code: 'TABLE_EXCLUDED', message: expect.stringMatching(/"fx_test\*"/) }),
    );
    expect(() => filter.adding('a/b')).toThrow(expect.objectContaining({ code: 'INVALID_NAME' }));
  });

  it('dropping: removes an exact include, excludes a name a pattern still matches', () => {
    const filter = TableFilter.parse('trades,fx_*', undefined);
    const noTrades = filter.dropping('TRADES');
    expect(noTrades.toJSON()).toEqual({ include: ['fx_*'], exclude: [] });
    expect(noTrades.admits('trades')).toBe(false);
    const noEur = filter.dropping('fx_eur');
    expect(noEur.toJSON()).toEqual({ include: ['trades', 'fx_*'], exclude: ['fx_eur'] });
    expect(noEur.admits('fx_eur')).toBe(false);
    expect(noEur.admits('fx_usd')).toBe(true);
    // The last include entry dropped: nothing is served (not "everything").
    const none = TableFilter.parse('trades', undefined).dropping('trades');
    expect(none.toJSON()).toEqual({ include: [], exclude: [] });
    expect(none.admits('trades')).toBe(false);
    expect(none.admits('quotes')).toBe(false);
    expect(TableFilter.ALL.dropping('quotes').toJSON()).toEqual({ include: ['*'], exclude: ['quotes'] });
    expect(filter.dropping('orders').equals(filter)).toBe(true);
  });
});

describe('tableChangesOf', () => {
  it('takes add and drop from the query, a form body and a JSON body', () => {
    expect(tableChangesOf(new URLSearchParams('add=a&add=b&drop=c'), '')).toEqual({
      add: ['a', 'b'],
      drop: ['c'],
    });
    expect(tableChangesOf(new URLSearchParams('add=a'), 'drop=c&add=d')).toEqual({
      add: ['a', 'd'],
      drop: ['c'],
    });
    expect(tableChangesOf(new URLSearchParams(), '{"add": "a", "drop": ["b", "c"]}')).toEqual({
      add: ['a'],
      drop: ['b', 'c'],
    });
  });

  it('refuses a malformed body and a request that names nothing', () => {
    for (const [query, body] of [
      ['', '{"add": 3}'],
      ['', '{nope'],
      ['', ''],
      ['other=1', 'x=y'],
    ] as const) {
      expect(() => tableChangesOf(new URLSearchParams(query), body), `${query} ${body}`).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', kind: 'invalid' }),
      );
    }
  });
});

describe('on a database', () => {
  let dir: string;
  const opened: TableStore[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'walship-table-filter-'));
  });
  afterEach(() => {
    for (const store of opened.splice(0)) store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (name: string) => {
    const store = TableStore.open(join(dir, name));
    opened.push(store);
    return store;
  };

  it('recorded lists survive a restart with the same configuration; a new configuration replaces them', () => {
    const tables = open('a.sqlite');
    const configured = TableFilter.parse('trades', undefined);
    expect(resolveServedTables(tables, configured).toJSON()).toEqual(configured.toJSON());
    const changed = configured.adding('quotes');
    tables.setMeta(...servedTablesMeta(changed, configured));
    expect(resolveServedTables(tables, TableFilter.parse('TRADES', undefined)).toJSON()).toEqual({
      include: ['trades', 'quotes'],
      exclude: [],
    });
    const other = TableFilter.parse('orders', undefined);
    expect(resolveServedTables(tables, other).toJSON()).toEqual(other.toJSON());
    // …and the new configuration is what a later restart compares with.
    expect(resolveServedTables(tables, configured).toJSON()).toEqual(configured.toJSON());
    tables.setMeta(SERVED_TABLES_META_KEY, '{not json');
    expect(resolveServedTables(tables, other).toJSON()).toEqual(other.toJSON());
  });

  it('drops one table with its metadata in one transaction, leaving the others', () => {
    const tables = open('b.sqlite');
    fill(tables, 'trades', 3);
    fill(tables, 'trades_2', 2);
    tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${tableKey('trades')}`, '4');
    tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${tableKey('trades_2')}`, '5');
    tables.setMeta('sequencer.rejected.trades.2', 'why');
    tables.setMeta('sequencer.rejected.trades_2.1', 'why');
    const meta = servedTablesMeta(TableFilter.parse('trades_2', undefined), TableFilter.ALL);
    const options = { databaseFile: tables.file, synchronous: 'FULL' as const, meta };
    expect(dropLocalTable(tableKey('trades'), options)).toBe(true);
    // The TableStore sees the other connection's commit.
    expect(tables.schema('trades')).toBeUndefined();
    expect(tables.lastTxn('trades')).toBe(0n);
    expect(tables.schemas().map((s) => s.name)).toEqual(['trades_2']);
    expect(tables.lastTxn('trades_2')).toBe(2n);
    expect(tables.getMeta(`${TABLE_EPOCH_META_PREFIX}trades`)).toBeUndefined();
    expect(tables.getMeta('sequencer.rejected.trades.2')).toBeUndefined();
    expect(tables.getMeta(`${TABLE_EPOCH_META_PREFIX}trades_2`)).toBe('5');
    expect(tables.getMeta('sequencer.rejected.trades_2.1')).toBe('why');
    expect(tables.getMeta(SERVED_TABLES_META_KEY)).toBe(meta[1]);
    // Dropped means gone: applying it again starts a new table at txn 1.
    expect(dropLocalTable(tableKey('trades'), options)).toBe(false);
    fill(tables, 'trades', 1);
    expect(tables.lastTxn('trades')).toBe(1n);
  });

  it('copies one table out of a snapshot image with its rows, schema and epoch', async () => {
    const source = open('source.sqlite');
    fill(source, 'trades', 4);
    fill(source, 'quotes', 2);
    source.setMeta(`${TABLE_EPOCH_META_PREFIX}${tableKey('quotes')}`, '3');
    const store = new MemoryStore();
    const manifest = await publishSnapshot({
      store,
      tables: source,
      clusterId: 'c1',
      nodeId: 'n1',
      clock: systemClock,
      tmpDir: dir,
    });
    const target = open('target.sqlite');
    fill(target, 'trades', 1);
    const meta = servedTablesMeta(TableFilter.parse('trades,quotes', undefined), TableFilter.ALL);
    const lastTxn = await bootstrapTableFromSnapshot({
      store,
      manifest,
      key: tableKey('quotes'),
      tmpDir: dir,
      databaseFile: target.file,
      synchronous: 'FULL',
      meta,
    });
    expect(lastTxn).toBe(2n);
    expect(target.lastTxn('quotes')).toBe(2n);
    expect(target.uploadedTxn('quotes')).toBe(2n);
    expect(target.schema('quotes')).toEqual(source.schema('quotes'));
    expect(target.getMeta(`${TABLE_EPOCH_META_PREFIX}quotes`)).toBe('3');
    expect(target.getMeta(SERVED_TABLES_META_KEY)).toBe(meta[1]);
    expect(target.lastTxn('trades')).toBe(1n); // untouched
    // The rows themselves, and the follower can go on from the snapshot's watermark.
    target.applyTxn('quotes', record(3n, 30n));
    expect(quoteRows(source.file)).toEqual(['1700000000000010/10', '1700000000000020/20']);
    expect(quoteRows(target.file)).toEqual([...quoteRows(source.file), '1700000000000030/30']);
    await expect(
      bootstrapTableFromSnapshot({
        store,
        manifest,
        key: tableKey('quotes'),
        tmpDir: dir,
        databaseFile: target.file,
        synchronous: 'FULL',
        meta,
      }),
    ).rejects.toMatchObject({ code: 'TABLE_EXISTS' });
    await store.close();
  });
});

/** Every row of `quotes` in `file` as `timestamp/v`, read on a connection of its own. */
function quoteRows(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db.prepare('SELECT timestamp, v FROM quotes ORDER BY timestamp').raw().all() as unknown[][];
    return rows.map((r) => r.join('/'));
  } finally {
    db.close();
  }
}

/** Txns 1..`count` of `table` (more when it has some), one row each: timestamp T0 + 10·txn, v = 10·txn. */
function fill(tables: TableStore, table: string, count: number): void {
  const from = tables.lastTxn(table) + 1n;
  for (let txn = from; txn < from + BigInt(count); txn++) tables.applyTxn(table, record(txn, txn * 10n));
}

function record(txn: bigint, value: bigint): TxnRecord {
  const columns: ColumnData[] = [
    {
      name: 'timestamp',
      addedInTxn: false,
      nulls: null,
      data: { type: 'timestamp', values: BigInt64Array.from([1_700_000_000_000_000n + value]) },
    },
    {
      name: 'v',
      addedInTxn: txn === 1n,
      nulls: null,
      data: { type: 'long', values: BigInt64Array.from([value]) },
    },
  ];
  return { txn, commitTimeUs: 1_700_000_000_000_000n, kind: 'data', rowCount: 1, columns };
}
