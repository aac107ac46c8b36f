import { Buffer } from 'node:buffer';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../core/index.js';
import { type IlpFieldValue, type IlpLine, parseIlp } from '../ilp/index.js';
import { TableStore, tableKey } from '../table/index.js';
import {
  type ColumnData,
  type ColumnType,
  type ColumnValues,
  DESIGNATED_TIMESTAMP_COLUMN,
  decodeTxnRecord,
  encodeTxnRecord,
  isNull,
  nullBitmapBytes,
  setNull,
  type TxnRecord,
} from '../wal/index.js';
import { randomTxns } from '../wal/testing/random-txns.js';
import {
  type DivergenceSummary,
  recordedAckMode,
  renderTxnAsIlp,
  writeDivergenceFiles,
} from './divergence.js';
import { buildTxns } from './txn-builder.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const COMMIT_US = 1_700_000_000_000_000n;

function parse(text: string): IlpLine[] {
  return parseIlp(Buffer.from(text, 'utf8'), { precision: 'ns' });
}

/** A value as a string that tells apart what must stay apart: -0 and 0, 1 and 1n, types. */
function canonical(value: IlpFieldValue): string {
  switch (value.type) {
    case 'double':
      return `double:${Object.is(value.value, -0) ? '-0' : String(value.value)}`;
    case 'decimal':
      return value.value === null ? 'decimal:null' : `decimal:${value.value.unscaled}e-${value.value.scale}`;
    case 'double_array':
      return 'double_array';
    default:
      return `${value.type}:${String(value.value)}`;
  }
}

interface Row {
  table: string;
  symbols: [string, string][];
  fields: [string, string][];
  timestampUs: bigint | null;
}

function rowOfLine(line: IlpLine): Row {
  return {
    table: line.table,
    symbols: line.symbols.map((s) => [s.name, s.value]),
    fields: line.fields.map((f) => [f.name, canonical(f.value)]),
    timestampUs: line.timestampUs,
  };
}

function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The field a cell should come back as, or undefined when ILP text does not carry it. */
function expectedField(data: ColumnValues, row: number): IlpFieldValue | undefined {
  switch (data.type) {
    case 'boolean':
      return { type: 'boolean', value: data.values[row] !== 0 };
    case 'long':
    case 'timestamp':
      return { type: data.type, value: data.values[row]! };
    case 'double':
      return { type: 'double', value: data.values[row]! };
    case 'string': {
      const value = data.values[row]!;
      return isWellFormed(value) ? { type: 'string', value } : undefined;
    }
    case 'decimal':
      return { type: 'decimal', value: data.values[row]! };
    default:
      return undefined;
  }
}

/** The oracle: the lines a record's rows must parse back to (rows with nothing to carry have none). */
function expectedRows(table: string, record: TxnRecord): Row[] {
  if (record.kind !== 'data') return [];
  const rows: Row[] = [];
  for (let row = 0; row < record.rowCount; row++) {
    const expected: Row = { table, symbols: [], fields: [], timestampUs: null };
    for (const column of record.columns) {
      if (isNull(column, row)) continue;
      const data = column.data;
      if (column.name === DESIGNATED_TIMESTAMP_COLUMN && data.type === 'timestamp') {
        expected.timestampUs = data.values[row]!;
      } else if (data.type === 'symbol') {
        const value = data.values[row]!;
        if (isWellFormed(value)) expected.symbols.push([column.name, value]);
      } else {
        const field = expectedField(data, row);
        if (field !== undefined) expected.fields.push([column.name, canonical(field)]);
      }
    }
    if (expected.symbols.length + expected.fields.length > 0) rows.push(expected);
  }
  return rows;
}

function expectRoundTrip(table: string, record: TxnRecord): string {
  const text = renderTxnAsIlp(table, record);
  expect(text === '' || text.endsWith('\n')).toBe(true);
  expect(parse(text).map(rowOfLine)).toEqual(expectedRows(table, record));
  return text;
}

/** A column; `nullRows` are null (their slot keeps whatever `data` holds). */
function column(name: string, data: ColumnValues, nullRows: number[] = []): ColumnData {
  let nulls: Uint8Array | null = null;
  if (nullRows.length > 0) {
    nulls = new Uint8Array(nullBitmapBytes(data.values.length));
    for (const row of nullRows) setNull(nulls, row);
  }
  return { name, addedInTxn: false, nulls, data };
}

function dataRecord(columns: ColumnData[], txn = 7n): TxnRecord {
  return { txn, commitTimeUs: COMMIT_US, kind: 'data', rowCount: columns[0]!.data.values.length, columns };
}

const ts = (...values: bigint[]) =>
  column('timestamp', { type: 'timestamp', values: BigInt64Array.from(values) });
const longs = (name: string, ...values: bigint[]) =>
  column(name, { type: 'long', values: BigInt64Array.from(values) });
const doubles = (name: string, ...values: number[]) =>
  column(name, { type: 'double', values: Float64Array.from(values) });
const strings = (name: string, ...values: string[]) => column(name, { type: 'string', values });
const symbols = (name: string, ...values: string[]) => column(name, { type: 'symbol', values });

describe('renderTxnAsIlp', () => {
  it('writes tags, typed fields and the ns timestamp with the escapes ILP requires', () => {
    const record = dataRecord([
      ts(1_700_000_000_123_456n),
      symbols('sym', 'a b,c=d\\e\nf\r'),
      longs('qty', INT64_MAX),
      doubles('price', -0),
      strings('note', 'he said "hi"\\\nbye\r'),
      column('ok', { type: 'boolean', values: Uint8Array.of(1) }),
      column('ts_col', { type: 'timestamp', values: BigInt64Array.of(1_700_000_000_000_001n) }),
      strings('absent', 'ignored'),
    ]);
    record.columns[7] = column('absent', { type: 'string', values: [null] }, [0]);
    const text = expectRoundTrip('my trades', record);
    expect(text).toBe(
      '# txn 7: 1 rows, committed at 2023-11-14T22:13:20.000000Z\n' +
        'my\\ trades,sym=a\\ b\\,c\\=d\\\\e\\\nf\\\r qty=9223372036854775807i,price=-0,' +
        'note="he said \\"hi\\"\\\\\\\nbye\\\r",ok=t,ts_col=1700000000000001t 1700000000123456000\n',
    );
  });

  it('keeps int64 extremes, beyond-2^53 longs and every double exactly', () => {
    const special = [-0, 0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e21, 5e-324];
    const values = [...special, Number.MAX_VALUE, 0.1 + 0.2, -1.5e-300, 2 ** 53 + 2, 123456789.123];
    const longValues = [INT64_MIN, INT64_MAX, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 0n, -1n];
    for (let i = 0; i < values.length; i++) {
      const record = dataRecord([ts(BigInt(i)), doubles('d', values[i]!), longs('l', longValues[i % 6]!)]);
      const [line] = parse(expectRoundTrip('t', record));
      expect(Object.is(line!.fields[0]!.value.value, values[i])).toBe(true);
      expect(line!.fields[1]!.value).toEqual({ type: 'long', value: longValues[i % 6] });
    }
    const text = renderTxnAsIlp('t', dataRecord([ts(1n), doubles('a', Number.NaN), doubles('b', -Infinity)]));
    expect(text).toContain('a=NaN,b=-Infinity 1000\n');
  });

  it('writes decimals as exact `d` text', () => {
    const decimals = [
      { unscaled: 12345n, scale: 2 },
      { unscaled: -5n, scale: 2 },
      { unscaled: 0n, scale: 3 },
      { unscaled: 7n, scale: 0 },
      { unscaled: 2n ** 255n - 1n, scale: 76 },
      { unscaled: -(2n ** 255n), scale: 0 },
    ];
    const record = dataRecord([
      ts(...decimals.map((_, i) => BigInt(i))),
      column('dec', { type: 'decimal', values: decimals }),
    ]);
    const text = expectRoundTrip('t', record);
    expect(text).toContain('dec=123.45d ');
    expect(text).toContain('dec=-0.05d ');
    expect(text).toContain('dec=0.000d ');
    expect(text).toContain('dec=7d ');
  });

  it('puts double arrays in JSON comments and leaves them out of the line', () => {
    const record = dataRecord([
      ts(5n, 6n),
      longs('n', 1n, 2n),
      column('arr', {
        type: 'double_array',
        values: [
          { shape: [2, 2], values: Float64Array.of(1.5, -0, Number.NaN, Number.NEGATIVE_INFINITY) },
          null,
        ],
      }),
    ]);
    const text = expectRoundTrip('t', record);
    const comment = '# row 0 column "arr" (double_array): ';
    expect(text).toContain(
      `${comment}{"shape":[2,2],"values":[1.5,-0,"NaN","-Infinity"]}\nt n=1i 5000\nt n=2i 6000\n`,
    );
    const json = JSON.parse(text.split('\n')[1]!.slice(comment.length));
    expect(Object.is(json.values[1], -0)).toBe(true);
  });

  it('splits a long array over several comment lines', () => {
    const values = Float64Array.from({ length: 10_000 }, (_, i) => i / 3);
    const record = dataRecord([
      ts(1n),
      column('a', { type: 'double_array', values: [{ shape: [10_000], values }] }),
    ]);
    const text = expectRoundTrip('t', record);
    const parts = text
      .split('\n')
      .filter((l) => l.startsWith('# row 0 column "a"'))
      .map((l) => JSON.parse(l.slice(l.indexOf(': ') + 2)) as { first?: number; values: number[] });
    expect(parts.map((p) => p.first)).toEqual([0, 4096, 8192]);
    expect(parts.flatMap((p) => p.values)).toEqual(Array.from(values));
  });

  it('writes a comment, never an invalid line, for a row with nothing ILP text carries', () => {
    const record = dataRecord([
      ts(1n, 2n, 3n),
      strings('s', 'x', 'y', 'z'),
      column('arr', {
        type: 'double_array',
        values: [null, { shape: [1], values: Float64Array.of(1) }, null],
      }),
    ]);
    record.columns[1] = column('s', { type: 'string', values: ['x', null, null] }, [1, 2]);
    const text = expectRoundTrip('t', record);
    expect(parse(text)).toHaveLength(1);
    expect(text).toContain('# row 1 column "arr" (double_array): {"shape":[1],"values":[1]}\n');
    expect(text).toContain('# row 1: no value ILP text can carry (designated timestamp 2000), so no line\n');
    expect(text).toContain('# row 2: no value ILP text can carry (designated timestamp 3000), so no line\n');
  });

  it('writes a symbols-only row as a valid line, and empty symbols and strings', () => {
    const record = dataRecord([ts(1n), symbols('s', ''), symbols('u', 'Zürich 😀')]);
    expect(expectRoundTrip('t', record)).toContain('t,s=,u=Zürich\\ 😀 1000\n');
    expectRoundTrip('t', dataRecord([ts(1n), strings('e', '')]));
  });

  it('renders fences, dedup txns and empty txns as a comment only', () => {
    const fence: TxnRecord = { txn: 9n, commitTimeUs: COMMIT_US, kind: 'fence', rowCount: 0, columns: [] };
    expect(renderTxnAsIlp('t', fence)).toBe('# txn 9: fence (no rows)\n');
    const empty: TxnRecord = { ...fence, kind: 'data' };
    expect(renderTxnAsIlp('t', empty)).toBe('# txn 9: 0 rows, committed at 2023-11-14T22:13:20.000000Z\n');
    const keys = [ts(1n), strings('sym', 'a')].map((c) => ({
      ...c,
      data: { type: c.data.type, values: [] },
    }));
    const dedup = { ...fence, kind: 'dedup', columns: keys } as TxnRecord;
    expect(renderTxnAsIlp('t', dedup)).toBe('# txn 9: DEDUP ENABLE UPSERT KEYS(timestamp, sym) (no rows)\n');
    expect(renderTxnAsIlp('t', { ...fence, kind: 'dedup' })).toBe('# txn 9: DEDUP DISABLE (no rows)\n');
  });

  it('escapes names, and a table name starting with # so its lines are not comments', () => {
    const record = dataRecord([ts(1n), longs('a b=c', 1n), symbols('#tag', '#v')]);
    const text = expectRoundTrip('#hash=x y', record);
    expect(text).toContain('\\#hash\\=x\\ y,#tag=#v a\\ b\\=c=1i 1000\n');
  });

  it('writes timestamps beyond int64 nanoseconds in µs, and no timestamp when there is none', () => {
    const far = dataRecord([ts(INT64_MAX, INT64_MIN, -1n), longs('n', 1n, 2n, 3n)]);
    expect(expectRoundTrip('t', far)).toContain(`t n=1i ${INT64_MAX}t\nt n=2i ${INT64_MIN}t\nt n=3i -1000\n`);
    const none = dataRecord([longs('n', 1n)]);
    expect(parse(expectRoundTrip('t', none))[0]!.timestampUs).toBeNull();
  });

  it('puts a string with a lone surrogate in a comment rather than corrupt it', () => {
    const record = dataRecord([ts(1n), strings('s', 'a\uD800b'), longs('n', 1n)]);
    const text = expectRoundTrip('t', record);
    expect(text).toContain('# row 0 column "s" (string): "a\\ud800b"\n');
  });

  it('round-trips seeded random txns of every column type', () => {
    for (let seed = 1; seed <= 300; seed++) {
      for (const record of randomTxns(seededRandom(seed), { maxRows: 8, tableOps: true }))
        expectRoundTrip('trades', record);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property test

const TYPES: readonly ColumnType[] = [
  'boolean',
  'long',
  'double',
  'string',
  'symbol',
  'timestamp',
  'double_array',
  'decimal',
];
const TABLES = ['trades', 'my table', 'a=b', '#hash', 'météo', 'x.y-z', '日本'];
const NASTY = ['"', '\\', '\n', '\r', '\r\n', ' ', ',', '=', '#', '\0', 'a', 'é', '😀', '\t'];

const int64 = fc.bigInt({ min: INT64_MIN, max: INT64_MAX });
const text = fc
  .oneof(
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.string({ unit: fc.constantFrom(...NASTY), maxLength: 8 }),
  )
  .filter(isWellFormed);
const columnName = fc
  .string({
    unit: fc.constantFrom('a', 'Z', '_', ' ', '=', '#', 'é', '日', '😀', '0'),
    minLength: 1,
    maxLength: 6,
  })
  .filter((name) => name.toLowerCase() !== DESIGNATED_TIMESTAMP_COLUMN);

function cellValue(type: ColumnType): fc.Arbitrary<unknown> {
  switch (type) {
    case 'boolean':
      return fc.boolean();
    case 'long':
      return fc.oneof(int64, fc.constantFrom(INT64_MIN, INT64_MAX, 2n ** 53n + 1n));
    case 'double':
      return fc.oneof(
        fc.double(),
        fc.constantFrom(-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
      );
    case 'string':
    case 'symbol':
      return text;
    case 'timestamp':
      return int64;
    case 'decimal':
      return fc.record({
        unscaled: fc.bigInt({ min: -(2n ** 255n), max: 2n ** 255n - 1n }),
        scale: fc.nat(76),
      });
    case 'double_array':
      return fc
        .array(fc.double(), { maxLength: 4 })
        .map((v) => ({ shape: [v.length], values: Float64Array.from(v) }));
  }
}

/** A column of `type` from per-row values, null where the value is null. */
function columnOf(name: string, type: ColumnType, cells: unknown[]): ColumnData {
  const nullRows = cells.flatMap((cell, row) => (cell === null ? [row] : []));
  const filled = cells.map((cell) => cell ?? (type === 'boolean' || type === 'double' ? 0 : 0n));
  let data: ColumnValues;
  if (type === 'boolean') data = { type, values: Uint8Array.from(filled, (v) => (v === true ? 1 : 0)) };
  else if (type === 'long' || type === 'timestamp')
    data = { type, values: BigInt64Array.from(filled as bigint[]) };
  else if (type === 'double') data = { type, values: Float64Array.from(filled as number[]) };
  else data = { type, values: cells } as ColumnValues;
  return column(name, data, nullRows);
}

const recordArbitrary = fc
  .record({
    table: fc.constantFrom(...TABLES),
    names: fc.uniqueArray(columnName, { selector: (name) => name.toLowerCase(), maxLength: 6 }),
    rowCount: fc.integer({ min: 0, max: 5 }),
    designated: fc.boolean(),
  })
  .chain(({ table, names, rowCount, designated }) => {
    const cells = (type: ColumnType) =>
      fc.array(fc.option(cellValue(type), { nil: null, freq: 4 }), {
        minLength: rowCount,
        maxLength: rowCount,
      });
    const columns = names.map((name) =>
      fc.constantFrom(...TYPES).chain((type) => cells(type).map((values) => columnOf(name, type, values))),
    );
    if (designated)
      columns.unshift(cells('timestamp').map((values) => columnOf('timestamp', 'timestamp', values)));
    return fc
      .tuple(...columns)
      .map((cols): [string, TxnRecord] => [
        table,
        { txn: 1n, commitTimeUs: COMMIT_US, kind: 'data', rowCount, columns: cols },
      ]);
  });

describe('renderTxnAsIlp property', () => {
  it('every record parses back to its rows, value for value', () => {
    fc.assert(
      fc.property(recordArbitrary, ([table, record]) => {
        expectRoundTrip(table, record);
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Files

describe('recordedAckMode', () => {
  it('prefers the mode the primary ran with over the configuration the node restarted with', () => {
    expect(recordedAckMode('durable', 'local')).toBe('durable');
    expect(recordedAckMode('local', 'durable')).toBe('local');
    expect(recordedAckMode(undefined, 'durable')).toBe('durable');
    expect(recordedAckMode('garbage', 'local')).toBe('local');
  });
});

describe('writeDivergenceFiles', () => {
  let dir = '';
  let store: TableStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'walship-divergence-'));
    store = TableStore.open(join(dir, 'tables.sqlite'), { synchronous: 'NORMAL' });
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Commits one ILP request as the committer does: build, apply, queue the encoded records. */
  function commit(ilp: string): void {
    const built = buildTxns(parse(ilp), {
      schemaOf: (table) => store.schema(table),
      commitTimeUs: COMMIT_US,
      nextTxn: (table) => store.lastTxn(table) + 1n,
    });
    store.transaction(() => {
      for (const b of built) {
        store.applyTxn(b.table, b.record);
        store.enqueuePending(b.table, b.record.txn, encodeTxnRecord(b.record));
      }
    });
  }

  /** What the pending queue of `table` holds, as the rows its file must parse back to. */
  function pendingRows(table: string): Row[] {
    return store.pending(table).flatMap((p) => expectedRows(table, decodeTxnRecord(p.bytes)));
  }

  function commitTwoTables(): void {
    commit(
      'trades,sym=BTC\\ USD price=1.5,qty=1i,note="a \\"q\\"\\\nb" 1700000000000000001\n' +
        'Quotes\\ é,venue=x bid=1e+21,ask=NaN,ok=t 1700000000000000000\n',
    );
    commit(
      'trades,sym=ETH price=-0.0,qty=9007199254740993i 1700000000000001000\ntrades qty=-9223372036854775808i 5\n',
    );
    commit('Quotes\\ é,venue=y\\,z bid=-Infinity,when=1700000000000002t 1700000000000002000\n');
    commit('trades,sym=BTC price=2.25 1700000000000003000\n');
  }

  it('writes one file per table whose lines are the pending rows, with a header and right counts', async () => {
    commitTwoTables();
    store.setUploadedTxn('trades', 1n);
    store.dropPendingThrough('trades', 1n);
    const logged: DivergenceSummary[] = [];
    const out = join(dir, 'divergence');
    const expected = { trades: pendingRows('trades'), quotes: pendingRows('Quotes é') };
    const summaries = await writeDivergenceFiles({
      dir: out,
      epoch: 3n,
      tables: store,
      log: (s) => logged.push(s),
      chunkBytes: 64,
    });
    expect(summaries).toEqual([
      {
        table: 'Quotes é',
        key: 'quotes%20%C3%A9',
        file: join(out, '3-quotes%20%C3%A9.ilp'),
        txnFirst: 1n,
        txnLast: 2n,
        txns: 2,
        rows: 2,
        undecodableTxns: 0,
      },
      {
        table: 'trades',
        key: 'trades',
        file: join(out, '3-trades.ilp'),
        txnFirst: 2n,
        txnLast: 3n,
        txns: 2,
        rows: 3,
        undecodableTxns: 0,
      },
    ]);
    expect(logged).toEqual(summaries);
    expect(readdirSync(out).sort()).toEqual(['3-quotes%20%C3%A9.ilp', '3-trades.ilp']);
    const trades = readFileSync(join(out, '3-trades.ilp'), 'utf8');
    expect(parse(trades).map(rowOfLine)).toEqual(expected.trades);
    expect(parse(readFileSync(summaries[0]!.file, 'utf8')).map(rowOfLine)).toEqual(expected.quotes);
    expect(expected.trades).toHaveLength(3);
    expect(trades).toMatch(/^# walship divergence file: table "trades" \(store key trades\), epoch 3\.\n/);
    expect(trades).toContain('never reached the object store');
    expect(trades).toContain('the cluster does not have them');
    expect(trades).toMatch(/\n# txns 2\.\.3: 2 txns, 3 rows {2,}\n/);
    expect(trades).toContain('trades,sym=ETH price=-0,qty=9007199254740993i 1700000000000001000\n');
  });

  it('says in its header whether the rows were acknowledged: in durable mode they never were, and must not be replayed blindly', async () => {
    commit('trades,sym=BTC price=1.5 1\n');
    const [local] = await writeDivergenceFiles({
      dir: join(dir, 'l'),
      epoch: 2n,
      tables: store,
      ackMode: 'local',
    });
    const [durable] = await writeDivergenceFiles({
      dir: join(dir, 'd'),
      epoch: 2n,
      tables: store,
      ackMode: 'durable',
    });
    const header = (file: string) =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line.startsWith('# '))
        .join(' ');
    const localHeader = header(local!.file);
    expect(localHeader).toContain('replication.ack.mode=local');
    expect(localHeader).toContain('answered their writes (204)');
    expect(localHeader).toContain('the cluster does not have');
    const durableHeader = header(durable!.file);
    expect(durableHeader).toContain('replication.ack.mode=durable');
    expect(durableHeader).toContain('NEVER acknowledged');
    expect(durableHeader).toContain('the cluster probably holds most of them already');
    expect(durableHeader).toContain('Do NOT replay this file as it is');
    expect(durableHeader).not.toMatch(
      /answered their writes|the cluster does not have|committed and acknowledged/,
    );
    // Either way the rows are the same and the file still parses as ILP.
    expect(parse(readFileSync(durable!.file, 'utf8')).map(rowOfLine)).toEqual(
      parse(readFileSync(local!.file, 'utf8')).map(rowOfLine),
    );
  });

  it('never overwrites an existing file: the next name gets a suffix', async () => {
    commit('trades,sym=BTC price=1.5 1\n');
    const out = join(dir, 'divergence');
    const first = await writeDivergenceFiles({ dir: out, epoch: 4n, tables: store });
    expect(first[0]!.file).toBe(join(out, '4-trades.ilp'));
    writeFileSync(join(out, '4-trades-2.ilp'), 'keep me');
    const again = await writeDivergenceFiles({ dir: out, epoch: 4n, tables: store });
    expect(again[0]!.file).toBe(join(out, '4-trades-3.ilp'));
    expect(readFileSync(join(out, '4-trades-2.ilp'), 'utf8')).toBe('keep me');
    expect(readFileSync(join(out, '4-trades-3.ilp'), 'utf8')).toBe(readFileSync(first[0]!.file, 'utf8'));
    expect(readdirSync(out).sort()).toEqual(['4-trades-2.ilp', '4-trades-3.ilp', '4-trades.ilp']);
  });

  it('writes nothing, and no directory, when nothing is pending', async () => {
    commit('trades,sym=BTC price=1.5 1\n');
    store.setUploadedTxn('trades', 1n);
    store.dropPendingThrough('trades', 1n);
    const out = join(dir, 'divergence');
    expect(await writeDivergenceFiles({ dir: out, epoch: 1n, tables: store })).toEqual([]);
    expect(readdirSync(dir)).not.toContain('divergence');
  });

  it('marks an undecodable record with a comment and goes on', async () => {
    commit('trades x=1i 1\n');
    store.transaction(() => {
      const record = decodeTxnRecord(store.pending('trades')[0]!.bytes);
      store.applyTxn('trades', { ...record, txn: 2n });
      store.enqueuePending('trades', 2n, Uint8Array.of(1, 2, 3));
    });
    commit('trades x=3i 3\n');
    const [summary] = await writeDivergenceFiles({ dir: join(dir, 'd'), epoch: 1n, tables: store });
    expect(summary).toMatchObject({ txnFirst: 1n, txnLast: 3n, txns: 3, rows: 2, undecodableTxns: 1 });
    const content = readFileSync(summary!.file, 'utf8');
    expect(content).toMatch(/\n# txn 2: could not be decoded \(.+\); not written\n/);
    expect(content).toContain('# txns 1..3: 3 txns, 2 rows, 1 could not be decoded');
    expect(parse(content).map((l) => l.fields[0]!.value.value)).toEqual([1n, 3n]);
  });

  it('cuts a long table key so the file name fits in 255 bytes', async () => {
    const table = `${'日'.repeat(28)}x`;
    commit(`${table} v=1i 1\n`);
    const [summary] = await writeDivergenceFiles({ dir: join(dir, 'd'), epoch: 12n, tables: store });
    expect(summary!.key).toBe(tableKey(table));
    const name = summary!.file.slice(join(dir, 'd').length + 1);
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
    expect(name).toMatch(/^12-(%E6%97%A5)+\.ilp$/);
    expect(readFileSync(summary!.file, 'utf8')).toContain(`table ${JSON.stringify(table)}`);
  });
});
