import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type IlpFieldValue, parseIlp } from '../ilp/index.js';
import { isValidColumnName, isValidTableName } from '../ilp/names.js';
import { isClientError } from './errors.js';
import {
  columnNameProblem,
  escapeToken,
  formatDouble,
  IlpRowEncoder,
  quoteString,
  tableNameProblem,
  toMicros,
} from './ilp-row-encoder.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function expectRowError(action: () => unknown, message: RegExp): void {
  try {
    action();
  } catch (error) {
    expect(isClientError(error, 'INVALID_ROW'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected an INVALID_ROW error');
}

describe('IlpRowEncoder: known-good lines', () => {
  it('writes the line the official client writes (shared/reference/ilp-http.md)', () => {
    const encoder = new IlpRowEncoder(127);
    encoder.table('trades');
    encoder.symbol('sym', 'ETH-USD');
    encoder.symbol('side', 'sell x,y=z');
    encoder.intColumn('qty', 42);
    encoder.floatColumn('price', 2615.54);
    encoder.stringColumn('note', 'he said "hi"\nbye');
    encoder.booleanColumn('ok', true);
    encoder.timestampColumn('ts_col', 1700000000123456n);
    expect(encoder.finish({ value: 1700000000123456789n, unit: 'ns' })).toBe(
      'trades,sym=ETH-USD,side=sell\\ x\\,y\\=z qty=42i,price=2615.54,note="he said \\"hi\\"\\\nbye",ok=t,' +
        'ts_col=1700000000123456t 1700000000123456789\n',
    );
  });

  it('writes each value type', () => {
    const cases: [(e: IlpRowEncoder) => void, string][] = [
      [(e) => e.floatColumn('d', 2), 'd=2'],
      [(e) => e.floatColumn('d', 1e21), 'd=1e+21'],
      [(e) => e.floatColumn('d', Number.NaN), 'd=NaN'],
      [(e) => e.floatColumn('d', Number.POSITIVE_INFINITY), 'd=Infinity'],
      [(e) => e.floatColumn('d', Number.NEGATIVE_INFINITY), 'd=-Infinity'],
      [(e) => e.floatColumn('d', -0), 'd=-0'],
      [(e) => e.floatColumn('d', 5e-324), 'd=5e-324'],
      [(e) => e.intColumn('l', INT64_MIN), 'l=-9223372036854775808i'],
      [(e) => e.intColumn('l', INT64_MAX), 'l=9223372036854775807i'],
      [(e) => e.intColumn('l', -7), 'l=-7i'],
      [(e) => e.booleanColumn('b', false), 'b=f'],
      [(e) => e.stringColumn('s', ''), 's=""'],
      [(e) => e.stringColumn('s', 'a\\b\r"'), 's="a\\\\b\\\r\\""'],
      [(e) => e.timestampColumn('t', 1_500n, 'ns'), 't=1t'],
      [(e) => e.timestampColumn('t', -1n, 'ns'), 't=-1t'],
      [(e) => e.timestampColumn('t', 2, 'ms'), 't=2000t'],
    ];
    for (const [write, expected] of cases) {
      const encoder = new IlpRowEncoder(127);
      encoder.table('t');
      write(encoder);
      expect(encoder.finish()).toBe(`t ${expected}\n`);
    }
  });

  it('escapes names and symbol values, and a leading # of a table name', () => {
    const encoder = new IlpRowEncoder(127);
    encoder.table('#my table=x');
    encoder.symbol('tag name', 'a b,c=d\ne\\f');
    expect(encoder.finish({ value: 5, unit: 'ms' })).toBe(
      '\\#my\\ table\\=x,tag\\ name=a\\ b\\,c\\=d\\\ne\\\\f 5000000\n',
    );
    expect(escapeToken('a,b')).toBe('a\\,b');
    expect(quoteString('"')).toBe('"\\""');
    expect(formatDouble(0)).toBe('0');
  });

  it('ends a row without a timestamp, and converts designated timestamps to ns', () => {
    const encoder = new IlpRowEncoder(127);
    encoder.table('t');
    encoder.symbol('s', 'v');
    expect(encoder.finish()).toBe('t,s=v\n');
    encoder.table('t');
    encoder.booleanColumn('b', true);
    expect(encoder.finish({ value: 7n, unit: 'us' })).toBe('t b=t 7000\n');
  });
});

describe('IlpRowEncoder: refusals drop the row', () => {
  it('refuses misuse and bad values', () => {
    const cases: [(e: IlpRowEncoder) => void, RegExp][] = [
      [(e) => e.symbol('s', 'v'), /needs table\(\) first/],
      [(e) => e.finish(), /needs table\(\) first/],
      [(e) => e.table('a/b'), /bad table name.*"\/"/],
      [(e) => e.table(' t'), /start or end with a space/],
      [(e) => e.table('a..b'), /single dots/],
      [(e) => e.table('x'.repeat(128)), /at most 127 UTF-8 bytes/],
      [
        (e) => {
          e.table('t');
          e.finish();
        },
        /at least one symbol or column/,
      ],
      [
        (e) => {
          e.table('t');
          e.table('u');
        },
        /table\(\) called again/,
      ],
      [
        (e) => {
          e.table('t');
          e.floatColumn('a', 1);
          e.symbol('s', 'v');
        },
        /symbols must come before columns/,
      ],
      [
        (e) => {
          e.table('t');
          e.floatColumn('a.b', 1);
        },
        /bad column name.*"\."/,
      ],
      [
        (e) => {
          e.table('t');
          e.floatColumn('A', 1);
          e.intColumn('a', 1);
        },
        /appears twice/,
      ],
      [
        (e) => {
          e.table('t');
          e.intColumn('l', 1.5);
        },
        /safe integer/,
      ],
      [
        (e) => {
          e.table('t');
          e.intColumn('l', 2n ** 63n);
        },
        /outside the signed 64-bit range/,
      ],
      [
        (e) => {
          e.table('t');
          e.intColumn('l', 2 ** 60);
        },
        /safe integer/,
      ],
      [
        (e) => {
          e.table('t');
          e.symbol('s', 'a\0b');
        },
        /NUL/,
      ],
      [
        (e) => {
          e.table('t');
          e.stringColumn('s', '\uD800x');
        },
        /unpaired surrogate/,
      ],
      [
        (e) => {
          e.table('t');
          e.floatColumn('d', '1' as unknown as number);
        },
        /must be a number/,
      ],
      [
        (e) => {
          e.table('t');
          e.booleanColumn('b', 1 as unknown as boolean);
        },
        /must be a boolean/,
      ],
      [
        (e) => {
          e.table('t');
          e.floatColumn('d', 1);
          e.finish({ value: 2n ** 62n, unit: 'us' });
        },
        /designated timestamp in ns .* outside the signed 64-bit range/,
      ],
      [
        (e) => {
          e.table('t');
          e.timestampColumn('ts', 1, 's' as never);
        },
        /timestamp unit/,
      ],
    ];
    for (const [misuse, message] of cases) {
      const encoder = new IlpRowEncoder(127);
      expectRowError(() => misuse(encoder), message);
      expect(encoder.inRow, String(message)).toBe(false);
      // The encoder is usable again at once.
      encoder.table('ok');
      encoder.booleanColumn('b', true);
      expect(encoder.finish()).toBe('ok b=t\n');
    }
  });
});

describe('IlpRowEncoder: round trip through walship parseIlp', () => {
  // Characters with a meaning in ILP come often; any other code point now and then.
  const char = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...' ,=\\\n\r"#.-\t\u0010é日🚀aZ0_') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  );
  const text = fc.string({ unit: char, maxLength: 20 });
  const tableName = fc
    .string({ unit: char, minLength: 1, maxLength: 16 })
    .filter((n) => tableNameProblem(n, 127) === undefined);
  const columnName = fc
    .string({ unit: char, minLength: 1, maxLength: 12 })
    .filter((n) => columnNameProblem(n, 127) === undefined);
  const value: fc.Arbitrary<IlpFieldValue> = fc.oneof(
    fc.double().map((v) => ({ type: 'double' as const, value: v })),
    fc.bigInt(INT64_MIN, INT64_MAX).map((v) => ({ type: 'long' as const, value: v })),
    fc.boolean().map((v) => ({ type: 'boolean' as const, value: v })),
    text.map((v) => ({ type: 'string' as const, value: v })),
    fc.bigInt(INT64_MIN / 1000n, INT64_MAX / 1000n).map((v) => ({ type: 'timestamp' as const, value: v })),
  );
  interface Row {
    table: string;
    symbols: [string, string][];
    fields: [string, IlpFieldValue][];
    timestampNs: bigint | undefined;
  }
  // Names unique per row, folded as the server folds them; the first `symbolCount` are symbols.
  const row: fc.Arbitrary<Row> = fc
    .record({
      table: tableName,
      names: fc.uniqueArray(columnName, { minLength: 1, maxLength: 8, selector: (n) => n.toLowerCase() }),
      symbolCount: fc.nat({ max: 8 }),
      symbolValues: fc.array(
        text.filter((v) => !v.includes('\0')),
        { minLength: 8, maxLength: 8 },
      ),
      values: fc.array(value, { minLength: 8, maxLength: 8 }),
      timestampNs: fc.option(fc.bigInt(INT64_MIN, INT64_MAX), { nil: undefined }),
    })
    .map(({ table, names, symbolCount, symbolValues, values, timestampNs }) => {
      const split = Math.min(symbolCount, names.length);
      return {
        table,
        symbols: names.slice(0, split).map((name, i) => [name, symbolValues[i]!] as [string, string]),
        fields: names.slice(split).map((name, i) => [name, values[i]!] as [string, IlpFieldValue]),
        timestampNs,
      };
    });

  function encode(r: Row): string {
    const encoder = new IlpRowEncoder(127);
    encoder.table(r.table);
    for (const [name, v] of r.symbols) encoder.symbol(name, v);
    for (const [name, field] of r.fields) {
      if (field.type === 'double') encoder.floatColumn(name, field.value);
      else if (field.type === 'long') encoder.intColumn(name, field.value);
      else if (field.type === 'boolean') encoder.booleanColumn(name, field.value);
      else if (field.type === 'string') encoder.stringColumn(name, field.value);
      else if (field.type === 'timestamp') encoder.timestampColumn(name, field.value);
    }
    return encoder.finish(r.timestampNs === undefined ? undefined : { value: r.timestampNs, unit: 'ns' });
  }

  it('parses back to exactly what was written', () => {
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 4 }), (rows) => {
        const body = rows.map(encode).join('');
        const lines = parseIlp(Buffer.from(body, 'utf8'), { precision: 'n' });
        expect(lines.length).toBe(rows.length);
        for (const [i, r] of rows.entries()) {
          const line = lines[i]!;
          expect(line.table).toBe(r.table);
          expect(line.symbols).toEqual(r.symbols.map(([name, v]) => ({ name, value: v })));
          expect(line.fields).toEqual(r.fields.map(([name, v]) => ({ name, value: v })));
          expect(line.timestampUs).toBe(r.timestampNs === undefined ? null : toMicros(r.timestampNs, 'ns'));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with walship on which names are valid', () => {
    fc.assert(
      fc.property(fc.string({ unit: char, maxLength: 8 }), (name) => {
        expect(tableNameProblem(name, 127) === undefined).toBe(isValidTableName(name, 127));
        expect(columnNameProblem(name, 127) === undefined).toBe(isValidColumnName(name, 127));
      }),
      { numRuns: 2000 },
    );
  });
});
