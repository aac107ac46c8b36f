import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  describeColumn,
  formatCsvHeader,
  formatCsvRow,
  formatDouble,
  formatDoubleArrayJson,
  formatExecError,
  formatExecJson,
  formatJsonRow,
  formatTimestampUs,
  type RenderKind,
} from './query-format.js';

const INT64_MAX = 9_223_372_036_854_775_807n;
const INT64_MIN = -9_223_372_036_854_775_808n;

describe('formatTimestampUs', () => {
  test('prints ISO-8601 with microseconds and Z, like QuestDB', () => {
    expect(formatTimestampUs(0n)).toBe('1970-01-01T00:00:00.000000Z');
    expect(formatTimestampUs(1_700_000_000_123_456n)).toBe('2023-11-14T22:13:20.123456Z');
    expect(formatTimestampUs(BigInt(Date.UTC(2024, 1, 29, 12)) * 1000n + 7n)).toBe(
      '2024-02-29T12:00:00.000007Z',
    );
  });

  test('floors before the epoch', () => {
    expect(formatTimestampUs(-1n)).toBe('1969-12-31T23:59:59.999999Z');
    expect(formatTimestampUs(-86_400_000_000n)).toBe('1969-12-31T00:00:00.000000Z');
  });

  test('is exact at the int64 extremes, beyond what Date can hold', () => {
    expect(formatTimestampUs(INT64_MAX)).toBe('294247-01-10T04:00:54.775807Z');
    expect(formatTimestampUs(INT64_MIN)).toBe('-290308-12-21T19:59:05.224192Z');
  });

  test('agrees with Date for every instant of years 0000..9999', () => {
    const first = BigInt(new Date('0000-01-01T00:00:00Z').getTime()) * 1000n;
    const last = BigInt(new Date('9999-12-31T23:59:59.999Z').getTime()) * 1000n + 999n;
    fc.assert(
      fc.property(fc.bigInt({ min: first, max: last }), (us) => {
        const ms = us >= 0n ? us / 1000n : -((-us + 999n) / 1000n);
        const micros = String(us - ms * 1000n).padStart(3, '0');
        const expected = `${new Date(Number(ms)).toISOString().slice(0, 23)}${micros}Z`;
        expect(formatTimestampUs(us)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('formatDouble', () => {
  test('integral doubles keep a fraction, non-finite ones are null', () => {
    expect(formatDouble(1)).toBe('1.0');
    expect(formatDouble(-0)).toBe('-0.0');
    expect(formatDouble(42.5)).toBe('42.5');
    expect(formatDouble(1e21)).toBe('1e+21');
    expect(formatDouble(5e-324)).toBe('5e-324');
    expect(formatDouble(Number.NaN)).toBeNull();
    expect(formatDouble(Number.POSITIVE_INFINITY)).toBeNull();
    expect(formatDouble(Number.NEGATIVE_INFINITY)).toBeNull();
  });

  test('round-trips through JSON.parse', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        expect(Object.is(JSON.parse(formatDouble(x) ?? 'null'), x)).toBe(true);
      }),
    );
  });
});

describe('formatJsonRow', () => {
  const kinds: RenderKind[] = [
    'timestamp',
    'symbol',
    'double',
    'long',
    'boolean',
    'string',
    'double_array',
    'decimal',
  ];

  test('renders each declared type as QuestDB does', () => {
    const row = [
      1_700_000_000_123_456n,
      'BTC',
      42.5,
      INT64_MAX,
      1n,
      'say "hi"\n',
      '[1,2.5,null]',
      '123.4500',
    ];
    expect(formatJsonRow(kinds, row)).toBe(
      '["2023-11-14T22:13:20.123456Z","BTC",42.5,9223372036854775807,true,"say \\"hi\\"\\n",[1.0,2.5,null],"123.4500"]',
    );
  });

  test('nulls are null, except booleans, which QuestDB never makes null', () => {
    expect(formatJsonRow(kinds, [null, null, null, null, null, null, null, null])).toBe(
      '[null,null,null,null,false,null,null,null]',
    );
  });

  test('int64 extremes are exact JSON numbers', () => {
    const text = formatJsonRow(['long', 'long', undefined], [INT64_MAX, INT64_MIN, -1n]);
    expect(text).toBe('[9223372036854775807,-9223372036854775808,-1]');
  });

  test('expression columns render by value; a stored value that does not fit its declared type too', () => {
    expect(
      formatJsonRow([undefined, undefined, undefined, undefined], [7n, 0.5, 'x', Buffer.from([1])]),
    ).toBe('[7,0.5,"x",[]]');
    expect(formatJsonRow(['timestamp', 'long', 'double'], ['not a time', 2.5, 3n])).toBe(
      '["not a time",2.5,3]',
    );
  });

  test('is valid JSON for any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(JSON.parse(formatJsonRow(['string'], [text]))).toEqual([text]);
      }),
    );
  });
});

describe('formatDoubleArrayJson', () => {
  test('re-renders nested arrays and reports their dimensions', () => {
    expect(formatDoubleArrayJson('[[1,2],[3.5,null]]')).toEqual({ json: '[[1.0,2.0],[3.5,null]]', dim: 2 });
    expect(formatDoubleArrayJson('[]')).toEqual({ json: '[]', dim: 1 });
  });

  test('never breaks the answer on a malformed cell', () => {
    expect(formatDoubleArrayJson('[1,')).toEqual({ json: '"[1,"', dim: undefined });
    expect(formatDoubleArrayJson('[1,"a"]')).toEqual({ json: '"[1,\\"a\\"]"', dim: undefined });
  });
});

describe('describeColumn', () => {
  test('declared types carry QuestDB names; arrays are ARRAY with dim and elemType', () => {
    expect(describeColumn('ts', 'timestamp', null, undefined)).toEqual({ name: 'ts', type: 'TIMESTAMP' });
    expect(describeColumn('s', 'symbol', null, undefined)).toEqual({ name: 's', type: 'SYMBOL' });
    expect(describeColumn('d', 'decimal', null, undefined)).toEqual({ name: 'd', type: 'DECIMAL' });
    expect(describeColumn('v', 'double_array', null, 2)).toEqual({
      name: 'v',
      type: 'ARRAY',
      dim: 2,
      elemType: 'DOUBLE',
    });
  });

  test('expressions are typed by their first non-null value; all-null is STRING', () => {
    expect(describeColumn('n', undefined, 3n, undefined).type).toBe('LONG');
    expect(describeColumn('n', undefined, 0.5, undefined).type).toBe('DOUBLE');
    expect(describeColumn('n', undefined, 'x', undefined).type).toBe('STRING');
    expect(describeColumn('n', undefined, null, undefined).type).toBe('STRING');
    expect(describeColumn('n', undefined, Buffer.alloc(1), undefined).type).toBe('BINARY');
  });
});

describe('CSV', () => {
  test('header names are always quoted and lines end in CRLF', () => {
    expect(formatCsvHeader(['a', 'say "b"'])).toBe('"a","say ""b"""\r\n');
    expect(formatCsvHeader(['a', 'b'], ';')).toBe('"a";"b"\r\n');
  });

  test('rows follow QuestDB /exp: text and timestamps quoted, nulls empty, arrays as quoted JSON', () => {
    const kinds: RenderKind[] = [
      'timestamp',
      'symbol',
      'double',
      'long',
      'boolean',
      'string',
      'double_array',
      'decimal',
    ];
    expect(formatCsvRow(kinds, [0n, 'A,B', 1, INT64_MIN, 0n, 'x\r\ny', '[1]', '-0.5'])).toBe(
      '"1970-01-01T00:00:00.000000Z","A,B",1.0,-9223372036854775808,false,"x\r\ny","[1.0]",-0.5\r\n',
    );
    expect(formatCsvRow(kinds, [null, null, Number.NaN, null, null, null, null, null])).toBe(
      ',,,,false,,,\r\n',
    );
  });

  test('a decimal is quoted only if it would break the line', () => {
    expect(formatCsvRow(['decimal'], ['1;5'], ';')).toBe('"1;5"\r\n');
  });
});

describe('formatExecJson / formatExecError', () => {
  const parts = {
    query: 'SELECT * FROM "t"',
    columns: [
      { name: 'timestamp', type: 'TIMESTAMP' },
      { name: 'v', type: 'ARRAY', dim: 1, elemType: 'DOUBLE' },
    ],
    timestampIndex: 0,
    datasetJson: '[["1970-01-01T00:00:00.000000Z",[1.0]]]',
    count: 1,
  };

  test('has QuestDB’s keys in QuestDB’s order', () => {
    expect(formatExecJson(parts)).toBe(
      '{"query":"SELECT * FROM \\"t\\"","columns":[{"name":"timestamp","type":"TIMESTAMP"},' +
        '{"name":"v","type":"ARRAY","dim":1,"elemType":"DOUBLE"}],"timestamp":0,' +
        '"dataset":[["1970-01-01T00:00:00.000000Z",[1.0]]],"count":1}',
    );
  });

  test('nm=true drops the metadata', () => {
    expect(formatExecJson(parts, { noMeta: true })).toBe(
      '{"dataset":[["1970-01-01T00:00:00.000000Z",[1.0]]],"count":1}',
    );
  });

  test('errors are {query, error, position}', () => {
    expect(JSON.parse(formatExecError('SELEC 1', 'near "SELEC": syntax error', 0))).toEqual({
      query: 'SELEC 1',
      error: 'near "SELEC": syntax error',
      position: 0,
    });
  });
});
