import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { type IlpField, type IlpFieldValue, type IlpLine, parseIlpBatch } from '../ilp/index.js';
import { type TableSchema, TableStore, tableKey } from '../table/index.js';
import { decodeTxnRecord, encodeTxnRecord, isNull, type TxnRecord } from '../wal/index.js';
import {
  type BuildTxnsOptions,
  type BuiltTxn,
  buildTxns,
  MAX_TABLE_COLUMNS,
  TxnBuilder,
} from './txn-builder.js';

const COMMIT_US = 1_700_000_000_000_000n;

let lineNumber = 0;

/** A line: `fields` values as IlpFieldValue, `symbols` as name → value. */
function line(
  table: string,
  parts: { symbols?: Record<string, string>; fields?: [string, IlpFieldValue][]; ts?: bigint | null } = {},
): IlpLine {
  lineNumber += 1;
  return {
    line: lineNumber,
    table,
    symbols: Object.entries(parts.symbols ?? {}).map(([name, value]) => ({ name, value })),
    fields: (parts.fields ?? []).map(([name, value]): IlpField => ({ name, value })),
    timestampUs: parts.ts === undefined ? null : parts.ts,
  };
}

const long = (value: bigint): IlpFieldValue => ({ type: 'long', value });
const double = (value: number): IlpFieldValue => ({ type: 'double', value });
const str = (value: string): IlpFieldValue => ({ type: 'string', value });
const bool = (value: boolean): IlpFieldValue => ({ type: 'boolean', value });
const ts = (value: bigint): IlpFieldValue => ({ type: 'timestamp', value });

function options(schemas: TableSchema[] = [], txns: Record<string, bigint> = {}): BuildTxnsOptions {
  return {
    schemaOf: (table) => schemas.find((s) => s.name.toLowerCase() === table.toLowerCase()),
    commitTimeUs: COMMIT_US,
    nextTxn: (table) => txns[table] ?? 1n,
  };
}

function build(lines: IlpLine[], opts: BuildTxnsOptions = options()): BuiltTxn[] {
  lineNumber = 0;
  return buildTxns(lines, opts);
}

/** Column `name` of `record` as plain values, null for null rows. */
function values(record: TxnRecord, name: string): unknown[] {
  const column = record.columns.find((c) => c.name === name);
  if (column === undefined) throw new Error(`no column ${name}`);
  return Array.from({ length: record.rowCount }, (_, row) =>
    isNull(column, row) ? null : (column.data.values as ArrayLike<unknown>)[row],
  );
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
  throw new Error('expected a WalshipError');
}

const trades: TableSchema = {
  name: 'Trades',
  key: tableKey('Trades'),
  columns: [
    { name: 'timestamp', type: 'timestamp' },
    { name: 'Sym', type: 'symbol' },
    { name: 'price', type: 'double' },
    { name: 'qty', type: 'long' },
    { name: 'note', type: 'string' },
  ],
};

describe('buildTxns: grouping and schema', () => {
  it('groups lines per table case-insensitively, in first-seen order, with the first spelling', () => {
    lineNumber = 0;
    const built = build([
      line('Quotes', { fields: [['bid', double(1)]] }),
      line('cpu', { fields: [['load', double(0.5)]] }),
      line('QUOTES', { fields: [['bid', double(2)]] }),
    ]);
    expect(built.map((b) => [b.table, b.record.rowCount])).toEqual([
      ['Quotes', 2],
      ['cpu', 1],
    ]);
    expect(built[0]!.schemaAfter).toEqual({
      name: 'Quotes',
      key: 'quotes',
      columns: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'bid', type: 'double' },
      ],
    });
  });

  it('uses the existing spelling of tables and columns, existing columns first in schema order, then new ones', () => {
    const built = build(
      [
        line('trades', {
          symbols: { sym: 'BTC' },
          fields: [
            ['extra', str('x')],
            ['QTY', long(3n)],
            ['Price', double(1.5)],
          ],
        }),
        line('TRADES', {
          fields: [
            ['flag', bool(true)],
            ['qty', long(4n)],
          ],
        }),
      ],
      options([trades], { Trades: 8n }),
    );
    expect(built).toHaveLength(1);
    const { table, record, schemaAfter } = built[0]!;
    expect(table).toBe('Trades');
    expect(record.txn).toBe(8n);
    expect(record.kind).toBe('data');
    expect(record.commitTimeUs).toBe(COMMIT_US);
    expect(record.columns.map((c) => [c.name, c.data.type, c.addedInTxn])).toEqual([
      ['timestamp', 'timestamp', false],
      ['Sym', 'symbol', false],
      ['price', 'double', false],
      ['qty', 'long', false],
      ['extra', 'string', true],
      ['flag', 'boolean', true],
    ]);
    expect(schemaAfter.columns.map((c) => c.name)).toEqual([
      'timestamp',
      'Sym',
      'price',
      'qty',
      'note',
      'extra',
      'flag',
    ]);
    expect(values(record, 'Sym')).toEqual(['BTC', null]);
    expect(values(record, 'qty')).toEqual([3n, 4n]);
    expect(values(record, 'flag')).toEqual([null, 1]);
    expect(values(record, 'extra')).toEqual(['x', null]);
  });

  it('flags every column of a new table as added, the designated timestamp first', () => {
    const [built] = build([line('t', { symbols: { s: 'a' }, fields: [['v', long(1n)]] })]);
    expect(built!.record.columns.map((c) => [c.name, c.addedInTxn])).toEqual([
      ['timestamp', true],
      ['s', true],
      ['v', true],
    ]);
  });

  it('calls nextTxn once per table with the canonical name, after building', () => {
    const calls: string[] = [];
    lineNumber = 0;
    buildTxns(
      [line('A', { fields: [['v', long(1n)]] }), line('b', { fields: [['v', long(1n)]] }), line('a')],
      {
        ...options(),
        nextTxn: (table) => {
          calls.push(table);
          return 1n;
        },
      },
    );
    expect(calls).toEqual(['A', 'b']);
    const none: string[] = [];
    expect(() =>
      build([line('ok', { fields: [['v', long(1n)]] }), line('bad/name')], {
        ...options(),
        nextTxn: (table) => {
          none.push(table);
          return 1n;
        },
      }),
    ).toThrow();
    expect(none).toEqual([]);
  });

  it('returns nothing for no lines', () => {
    expect(build([])).toEqual([]);
  });
});

describe('buildTxns: values', () => {
  it('builds typed columns for every field type, with nulls where a line lacks a column', () => {
    const array = { shape: [2], values: Float64Array.from([1, 2]) };
    const decimal = { unscaled: 12345n, scale: 2 };
    const [built] = build([
      line('t', {
        fields: [
          ['l', long(-(2n ** 63n))],
          ['d', double(Number.NaN)],
          ['b', bool(false)],
          ['s', str('日本')],
          ['ts', ts(5n)],
          ['arr', { type: 'double_array', value: array }],
          ['dec', { type: 'decimal', value: decimal }],
        ],
        ts: 10n,
      }),
      line('t', {
        fields: [
          ['arr', { type: 'double_array', value: null }],
          ['dec', { type: 'decimal', value: null }],
        ],
      }),
    ]);
    const record = built!.record;
    expect(record.columns.map((c) => c.data.type)).toEqual([
      'timestamp',
      'long',
      'double',
      'boolean',
      'string',
      'timestamp',
      'double_array',
      'decimal',
    ]);
    expect(record.columns[1]!.data.values).toBeInstanceOf(BigInt64Array);
    expect(record.columns[2]!.data.values).toBeInstanceOf(Float64Array);
    expect(record.columns[3]!.data.values).toBeInstanceOf(Uint8Array);
    expect(values(record, 'timestamp')).toEqual([10n, COMMIT_US]);
    expect(values(record, 'l')).toEqual([-(2n ** 63n), null]);
    expect(Number.isNaN(values(record, 'd')[0])).toBe(true);
    expect(values(record, 'b')).toEqual([0, null]);
    expect(values(record, 's')).toEqual(['日本', null]);
    expect(values(record, 'ts')).toEqual([5n, null]);
    expect(values(record, 'arr')).toEqual([array, null]);
    expect(values(record, 'dec')).toEqual([decimal, null]);
    // The designated timestamp is never null, and a column without nulls has no bitmap.
    expect(record.columns[0]!.nulls).toBeNull();
  });

  it('produces records the segment format accepts and round-trips', () => {
    const built = build([
      line('t', {
        symbols: { s: 'a' },
        fields: [
          ['v', double(1)],
          ['n', long(7n)],
        ],
        ts: 1n,
      }),
      line('T', { symbols: { s: 'b' }, fields: [['w', str('x')]], ts: 2n }),
      line('t', { fields: [['v', double(3)]] }),
    ]);
    const record = built[0]!.record;
    expect(decodeTxnRecord(encodeTxnRecord(record))).toMatchObject({ txn: 1n, rowCount: 3 });
  });

  it('sets the designated timestamp from a `timestamp` field of type timestamp, which wins', () => {
    const [built] = build([
      line('t', {
        fields: [
          ['Timestamp', ts(42n)],
          ['v', long(1n)],
        ],
        ts: 7n,
      }),
      line('t', {
        fields: [
          ['timestamp', ts(43n)],
          ['timestamp', ts(99n)],
        ],
      }),
      line('t', { fields: [['v', long(3n)]] }),
    ]);
    expect(values(built!.record, 'timestamp')).toEqual([42n, 43n, COMMIT_US]);
    expect(built!.record.columns.map((c) => c.name)).toEqual(['timestamp', 'v']);
  });

  it('keeps the first value of a column named twice in a line, whatever the later type', () => {
    const [built] = build([
      line('t', {
        symbols: { a: 'tag' },
        fields: [
          ['A', long(1n)],
          ['b', long(2n)],
          ['B', str('x')],
        ],
      }),
    ]);
    expect(values(built!.record, 'a')).toEqual(['tag']);
    expect(values(built!.record, 'b')).toEqual([2n]);
    expect(built!.record.columns).toHaveLength(3);
  });
});

describe('buildTxns: casts and conflicts', () => {
  it('casts a long to a double column when exact, and a string to a symbol column', () => {
    const [built] = build(
      [
        line('trades', {
          fields: [
            ['price', long(2n ** 53n)],
            ['sym', str('ETH')],
          ],
        }),
        line('trades', { fields: [['price', long(-(2n ** 60n))]] }),
      ],
      options([trades]),
    );
    expect(values(built!.record, 'price')).toEqual([2 ** 53, -(2 ** 60)]);
    expect(values(built!.record, 'Sym')).toEqual(['ETH', null]);
  });

  it('casts within a request: a column made double by an earlier line takes exact longs', () => {
    const [built] = build([
      line('t', { fields: [['v', double(0.5)]] }),
      line('t', { fields: [['v', long(2n)]] }),
    ]);
    expect(values(built!.record, 'v')).toEqual([0.5, 2]);
    expect(built!.record.columns[1]!.data.type).toBe('double');
  });

  it.each([
    ['a long not exactly a double', [['price', long(2n ** 53n + 1n)]], 'long'],
    ['a double into a long column', [['qty', double(1)]], 'double'],
    ['a string into a double column', [['price', str('1')]], 'string'],
    ['a boolean into a long column', [['qty', bool(true)]], 'boolean'],
    ['a timestamp into a string column', [['note', ts(1n)]], 'timestamp'],
  ] as [string, [string, IlpFieldValue][], string][])('refuses %s', (_, fields, sentType) => {
    const error = errorOf(() =>
      build([line('trades', { fields: [['qty', long(1n)]] }), line('trades', { fields })], options([trades])),
    );
    expect(error).toMatchObject({
      code: 'TYPE_CONFLICT',
      kind: 'invalid',
      details: { line: 2, table: 'Trades', sentType },
    });
    expect(error.message).toContain('line 2');
    expect(error.message).toContain('"Trades"');
    expect(error.message).toContain(sentType);
    expect(error.message).toContain(String(error.details.existingType));
  });

  it('refuses a tag into a string column (QuestDB casts tags only to symbols)', () => {
    const error = errorOf(() => build([line('trades', { symbols: { note: 'x' } })], options([trades])));
    expect(error).toMatchObject({
      code: 'TYPE_CONFLICT',
      details: { line: 1, column: 'note', existingType: 'string' },
    });
  });

  it('refuses a type change within one request, naming the later line', () => {
    const error = errorOf(() =>
      build([line('t', { fields: [['v', long(1n)]] }), line('x'), line('T', { fields: [['V', double(1)]] })]),
    );
    expect(error).toMatchObject({
      code: 'TYPE_CONFLICT',
      details: { line: 3, table: 't', column: 'v', existingType: 'long', sentType: 'double' },
    });
  });

  it('refuses a `timestamp` tag or a `timestamp` field of another type', () => {
    expect(errorOf(() => build([line('t', { fields: [['timestamp', long(1n)]] })])).details).toMatchObject({
      line: 1,
      column: 'timestamp',
      sentType: 'long',
    });
    expect(errorOf(() => build([line('t', { symbols: { TIMESTAMP: '1' } })])).code).toBe('TYPE_CONFLICT');
  });

  it('reports the first bad line of the request', () => {
    const error = errorOf(() =>
      build([
        line('a', { fields: [['v', long(1n)]] }),
        line('b', { fields: [['v', long(1n)]] }),
        line('b', { fields: [['v', str('x')]] }),
        line('a', { fields: [['v', str('x')]] }),
      ]),
    );
    expect(error.details.line).toBe(3);
  });
});

describe('buildTxns: names', () => {
  it.each([
    ['bad/table', {}],
    ['_walship_x', {}],
    ['t', { fields: [['a.b', long(1n)]] }],
    ['t', { fields: [['a-b', long(1n)]] }],
    ['t', { symbols: { 'x?': 'v' } }],
  ] as [string, Parameters<typeof line>[1]][])(
    'refuses bad name case %# (table %j) with INVALID_NAME and the line',
    (table, parts) => {
      const error = errorOf(() => build([line('ok'), line(table, parts)]));
      expect(error).toMatchObject({ code: 'INVALID_NAME', kind: 'invalid', details: { line: 2 } });
      expect(error.message).toMatch(/^line 2: /);
    },
  );

  it(`refuses more than ${MAX_TABLE_COLUMNS} columns`, () => {
    const fields = Array.from({ length: MAX_TABLE_COLUMNS }, (_, i): [string, IlpFieldValue] => [
      `c${i}`,
      long(1n),
    ]);
    expect(errorOf(() => build([line('wide', { fields })]))).toMatchObject({
      code: 'TOO_MANY_COLUMNS',
      details: { line: 1 },
    });
    expect(build([line('wide', { fields: fields.slice(1) })])[0]!.schemaAfter.columns).toHaveLength(
      MAX_TABLE_COLUMNS,
    );
  });
});

describe('buildTxns + TableStore', () => {
  it('applies what it builds, request after request, with the store as schema source', () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-builder-'));
    const store = TableStore.open(join(dir, 'tables.sqlite'), { synchronous: 'NORMAL' });
    try {
      const commit = (lines: IlpLine[]) => {
        const built = build(lines, {
          schemaOf: (table) => store.schema(table),
          commitTimeUs: COMMIT_US,
          nextTxn: (table) => store.lastTxn(table) + 1n,
        });
        store.transaction(() => {
          for (const b of built) store.applyTxn(b.table, b.record);
        });
        for (const b of built) expect(store.schema(b.table)).toEqual(b.schemaAfter);
        return built;
      };
      commit([line('Trades', { symbols: { sym: 'BTC' }, fields: [['price', double(1.5)]], ts: 1n })]);
      commit([
        line('TRADES', {
          symbols: { SYM: 'ETH' },
          fields: [
            ['qty', long(2n)],
            ['PRICE', long(3n)],
          ],
          ts: 2n,
        }),
        line('quotes', { fields: [['bid', double(1)]] }),
      ]);
      expect(store.lastTxn('trades')).toBe(2n);
      expect(store.schema('trades')!.columns.map((c) => c.name)).toEqual([
        'timestamp',
        'sym',
        'price',
        'qty',
      ]);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('buildTxns: property', () => {
  const value: fc.Arbitrary<IlpFieldValue> = fc.oneof(
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(long),
    fc.double().map(double),
    fc.boolean().map(bool),
    fc.string({ maxLength: 8 }).map(str),
  );
  const name = fc.constantFrom('a', 'A', 'b', 'c', 'B');
  const ilpLine = fc.record({
    table: fc.constantFrom('t', 'T', 'u'),
    fields: fc.array(fc.tuple(name, value), { maxLength: 4 }),
    ts: fc.option(fc.bigInt({ min: 0n, max: 2n ** 62n })),
  });

  it('either refuses with a line number, or builds valid records holding every first value', () => {
    fc.assert(
      fc.property(fc.array(ilpLine, { minLength: 1, maxLength: 15 }), (specs) => {
        const lines = specs.map(
          (spec, i): IlpLine => ({
            line: i + 1,
            table: spec.table,
            symbols: [],
            fields: spec.fields.map(([n, v]) => ({ name: n, value: v })),
            timestampUs: spec.ts,
          }),
        );
        let built: BuiltTxn[];
        try {
          built = buildTxns(lines, options());
        } catch (error) {
          expect(isWalshipError(error, 'TYPE_CONFLICT')).toBe(true);
          expect((error as { details: { line: number } }).details.line).toBeGreaterThanOrEqual(1);
          return;
        }
        const rows = new Map<string, number>();
        for (const l of lines) {
          const folded = l.table.toLowerCase();
          const row = rows.get(folded) ?? 0;
          rows.set(folded, row + 1);
          const record = built.find((b) => b.table.toLowerCase() === folded)!.record;
          expect(values(record, 'timestamp')[row]).toBe(l.timestampUs ?? COMMIT_US);
          const seen = new Set<string>();
          for (const field of l.fields) {
            const key = field.name.toLowerCase();
            if (seen.has(key)) continue;
            seen.add(key);
            const column = record.columns.find((c) => c.name.toLowerCase() === key)!;
            const got = values(record, column.name)[row];
            const sent = field.value.value;
            if (column.data.type === 'double' && field.value.type === 'long') expect(got).toBe(Number(sent));
            else if (field.value.type === 'boolean') expect(got).toBe(sent ? 1 : 0);
            else expect(got).toEqual(sent);
          }
        }
        for (const b of built) expect(() => encodeTxnRecord(b.record)).not.toThrow();
      }),
      { numRuns: 500 },
    );
  });
});

describe('TxnBuilder, a slice of lines at a time', () => {
  /** Rows past the builder's initial capacity, a column that appears late, nulls, two tables. */
  function manyLines(count: number): IlpLine[] {
    const out: IlpLine[] = [];
    for (let i = 0; i < count; i++) {
      const fields: [string, IlpFieldValue][] = [['v', { type: 'long', value: BigInt(i) }]];
      if (i % 3 === 0) fields.push(['s', { type: 'string', value: `s${i}` }]);
      if (i > count / 2) fields.push(['late', { type: 'double', value: i / 2 }]);
      if (i % 5 === 0) fields.push(['b', { type: 'boolean', value: i % 2 === 0 }]);
      out.push(line(i % 4 === 0 ? 'other' : 'main', { symbols: { k: `k${i % 7}` }, fields, ts: BigInt(i) }));
    }
    return out;
  }

  it('builds what buildTxns builds from the same lines, whatever the slices', () => {
    const lines = manyLines(1000);
    const whole = buildTxns(lines, options());
    for (const size of [1, 7, 64, 65, 999]) {
      const builder = new TxnBuilder(options());
      for (let at = 0; at < lines.length; at += size) builder.addLines(lines.slice(at, at + size));
      expect(builder.rowCount).toBe(lines.length);
      const sliced = builder.finish(options().nextTxn);
      expect(sliced.map((b) => b.record)).toStrictEqual(whole.map((b) => b.record));
      expect(sliced.map((b) => encodeTxnRecord(b.record))).toStrictEqual(
        whole.map((b) => encodeTxnRecord(b.record)),
      );
    }
  });
});

describe('buildTxns from parsed text: integers kept as numbers until they are bound', () => {
  const EDGES = [
    0n,
    1n,
    -1n,
    2n ** 31n - 1n,
    -(2n ** 31n),
    2n ** 32n,
    -(2n ** 32n),
    2n ** 32n - 1n,
    2n ** 53n - 1n,
    -(2n ** 53n - 1n),
    2n ** 53n,
    -(2n ** 53n),
    2n ** 53n + 1n,
    2n ** 63n - 1n,
    -(2n ** 63n),
  ];
  const int64 = fc.oneof(
    fc.constantFrom(...EDGES),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.bigInt({ min: -(2n ** 54n), max: 2n ** 54n }),
  );
  /** A designated timestamp as sent (with its unit suffix) and the µs it means (floor for ns). */
  const stamp = fc.oneof(
    fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }).map((ns) => ({
      text: `${ns}n`,
      us: ns / 1000n - (ns % 1000n < 0n ? 1n : 0n),
    })),
    fc.bigInt({ min: -(2n ** 60n), max: 2n ** 60n }).map((us) => ({ text: `${us}t`, us })),
    fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }).map((ms) => ({ text: `${ms}m`, us: ms * 1000n })),
  );

  it('writes every long and timestamp exactly, whether it fits in 2^53 or not', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ l: int64, f: stamp, ts: stamp }), { minLength: 1, maxLength: 20 }),
        (rows) => {
          // The designated timestamp takes the same unit suffixes as a timestamp field.
          const text = rows.map((r) => `t l=${r.l}i,f=${r.f.text} ${r.ts.text}`).join('\n');
          const [built] = buildTxns(
            parseIlpBatch(new TextEncoder().encode(text), { precision: 'n' }),
            options(),
          );
          const record = built!.record;
          expect(values(record, 'l')).toEqual(rows.map((r) => r.l));
          expect(values(record, 'f')).toEqual(rows.map((r) => r.f.us));
          expect(values(record, 'timestamp')).toEqual(rows.map((r) => r.ts.us));
        },
      ),
      { numRuns: 200 },
    );
  });
});
