import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import type { IlpFieldValue, IlpLine } from './ilp-line.js';
import { IlpParseError } from './ilp-parse-error.js';
import type { IlpLimits } from './limits.js';
import { parseCompleteIlpLines, parseIlp, parseIlpInSlices } from './line-parser.js';
import { type Precision, parsePrecision } from './precision.js';
import { binaryArray, binaryDecimal, binaryDouble, binaryNullArray, bytes } from './testing/request-bytes.js';

function parse(body: string | Buffer, precision: Precision = 'n', limits?: Partial<IlpLimits>): IlpLine[] {
  return parseIlp(typeof body === 'string' ? Buffer.from(body) : body, { precision, limits });
}

/** The single field value of a one-line, one-field request. */
function fieldValue(text: string): IlpFieldValue {
  const lines = parse(`t v=${text}`);
  expect(lines).toHaveLength(1);
  expect(lines[0]!.fields).toHaveLength(1);
  return lines[0]!.fields[0]!.value;
}

function parseError(
  body: string | Buffer,
  limits?: Partial<IlpLimits>,
  precision: Precision = 'n',
): IlpParseError {
  try {
    parse(body, precision, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(IlpParseError);
    const parseError = error as IlpParseError;
    expect(parseError.code).toBe('ILP_PARSE');
    expect(parseError.kind).toBe('invalid');
    expect(parseError.details.line).toBe(parseError.line);
    expect(parseError.message).toBe(
      `failed to parse line protocol:errors encountered on line(s):\nerror in line ${parseError.line}: ${parseError.what}`,
    );
    return parseError;
  }
  throw new Error(`expected a parse error for ${JSON.stringify(body.toString())}`);
}

function expectError(
  body: string | Buffer,
  line: number,
  what: string | RegExp,
  limits?: Partial<IlpLimits>,
) {
  const error = parseError(body, limits);
  expect(error.line).toBe(line);
  if (typeof what === 'string') expect(error.what).toContain(what);
  else expect(error.what).toMatch(what);
  return error;
}

describe('parseIlp: the captured v1 line', () => {
  it('parses to exactly the expected values', () => {
    const captured =
      'trades,sym=ETH-USD,side=sell\\ x\\,y\\=z qty=42i,price=2615.54,note="he said \\"hi\\"\\\nbye",ok=t,' +
      'ts_col=1700000000123456t 1700000000123456789\n';
    expect(parse(captured)).toStrictEqual([
      {
        line: 1,
        table: 'trades',
        symbols: [
          { name: 'sym', value: 'ETH-USD' },
          { name: 'side', value: 'sell x,y=z' },
        ],
        fields: [
          { name: 'qty', value: { type: 'long', value: 42n } },
          { name: 'price', value: { type: 'double', value: 2615.54 } },
          { name: 'note', value: { type: 'string', value: 'he said "hi"\nbye' } },
          { name: 'ok', value: { type: 'boolean', value: true } },
          { name: 'ts_col', value: { type: 'timestamp', value: 1700000000123456n } },
        ],
        timestampUs: 1700000000123456n,
      },
    ]);
  });
});

describe('parseIlp: field types', () => {
  it('longs, with the int64 extremes exact', () => {
    expect(fieldValue('42i')).toEqual({ type: 'long', value: 42n });
    expect(fieldValue('-42i')).toEqual({ type: 'long', value: -42n });
    expect(fieldValue('0i')).toEqual({ type: 'long', value: 0n });
    expect(fieldValue('9223372036854775807i')).toEqual({ type: 'long', value: 9223372036854775807n });
    expect(fieldValue('-9223372036854775808i')).toEqual({ type: 'long', value: -9223372036854775808n });
    expect(fieldValue('9007199254740993i')).toEqual({ type: 'long', value: 9007199254740993n });
    expect(fieldValue('000000000000000000000000001i')).toEqual({ type: 'long', value: 1n });
  });

  it('refuses longs outside int64, saying why', () => {
    for (const text of ['9223372036854775808i', '-9223372036854775809i', '123456789012345678901234567890i']) {
      expectError(`t v=${text}`, 1, `Field: v; value: ${text} (out of the int64 range)`);
    }
  });

  it('doubles in every text form', () => {
    const cases: [string, number][] = [
      ['2615.54', 2615.54],
      ['2', 2],
      ['-0.5', -0.5],
      ['1e+21', 1e21],
      ['1E21', 1e21],
      ['1e-7', 1e-7],
      ['.5', 0.5],
      ['5.', 5],
      ['+3.25', 3.25],
      ['1.7976931348623157e+308', Number.MAX_VALUE],
      ['5e-324', Number.MIN_VALUE],
      ['0.1', 0.1],
      ['123456789012345678901234567890', 1.2345678901234568e29],
      ['3.141592653589793238462643383279', Math.PI],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['-Infinity', Number.NEGATIVE_INFINITY],
      ['+Infinity', Number.POSITIVE_INFINITY],
      ['1e400', Number.POSITIVE_INFINITY],
    ];
    for (const [text, expected] of cases)
      expect(fieldValue(text)).toEqual({ type: 'double', value: expected });
    expect(fieldValue('NaN')).toEqual({ type: 'double', value: Number.NaN });
    expect(Object.is((fieldValue('-0') as { value: number }).value, -0)).toBe(true);
  });

  it('booleans in every spelling', () => {
    for (const text of ['t', 'T', 'true', 'TRUE', 'True', 'tRuE'])
      expect(fieldValue(text)).toEqual({ type: 'boolean', value: true });
    for (const text of ['f', 'F', 'false', 'FALSE', 'False', 'fAlSe']) {
      expect(fieldValue(text)).toEqual({ type: 'boolean', value: false });
    }
  });

  it('strings with escapes, unicode, empty, and separators inside', () => {
    expect(fieldValue('""')).toEqual({ type: 'string', value: '' });
    expect(fieldValue('"a \\"b\\" \\\\ c"')).toEqual({ type: 'string', value: 'a "b" \\ c' });
    expect(fieldValue('"line1\\\nline2"')).toEqual({ type: 'string', value: 'line1\nline2' });
    expect(fieldValue('"cr\\\rcr"')).toEqual({ type: 'string', value: 'cr\rcr' });
    expect(fieldValue('"raw\rcr"')).toEqual({ type: 'string', value: 'raw\rcr' });
    expect(fieldValue('"a, b = c"')).toEqual({ type: 'string', value: 'a, b = c' });
    expect(fieldValue('"日本語 ünïcödé 🚀"')).toEqual({ type: 'string', value: '日本語 ünïcödé 🚀' });
    // A backslash escapes any byte, as in QuestDB: `\n` (backslash, letter n) is the letter n.
    expect(fieldValue('"a\\nb"')).toEqual({ type: 'string', value: 'anb' });
  });

  it('timestamp columns in µs, ns (floored) and ms', () => {
    expect(fieldValue('1700000000123456t')).toEqual({ type: 'timestamp', value: 1700000000123456n });
    expect(fieldValue('1700000000123456789n')).toEqual({ type: 'timestamp', value: 1700000000123456n });
    expect(fieldValue('-1n')).toEqual({ type: 'timestamp', value: -1n });
    expect(fieldValue('-1000n')).toEqual({ type: 'timestamp', value: -1n });
    expect(fieldValue('-1001n')).toEqual({ type: 'timestamp', value: -2n });
    expect(fieldValue('1700000000123m')).toEqual({ type: 'timestamp', value: 1700000000123000n });
    expect(fieldValue('-9223372036854775808t')).toEqual({ type: 'timestamp', value: -9223372036854775808n });
  });

  it('text decimals keep their scale', () => {
    expect(fieldValue('123.45d')).toEqual({ type: 'decimal', value: { unscaled: 12345n, scale: 2 } });
    expect(fieldValue('1.50d')).toEqual({ type: 'decimal', value: { unscaled: 150n, scale: 2 } });
    expect(fieldValue('-0.001d')).toEqual({ type: 'decimal', value: { unscaled: -1n, scale: 3 } });
    expect(fieldValue('42d')).toEqual({ type: 'decimal', value: { unscaled: 42n, scale: 0 } });
    expect(fieldValue('1.5e3d')).toEqual({ type: 'decimal', value: { unscaled: 1500n, scale: 0 } });
    expect(fieldValue('15e-3d')).toEqual({ type: 'decimal', value: { unscaled: 15n, scale: 3 } });
    expect(fieldValue('NaNd')).toEqual({ type: 'decimal', value: null });
    expect(fieldValue('-Infinityd')).toEqual({ type: 'decimal', value: null });
    expectError('t v=1e-77d', 1, 'decimal scale is out of range');
    expectError(`t v=${'9'.repeat(80)}d`, 1, 'does not fit in 256 bits');
  });

  it('an empty field value is a null field and is left out', () => {
    expect(parse('t a=,b=1')[0]!.fields).toEqual([{ name: 'b', value: { type: 'double', value: 1 } }]);
  });

  it('binary doubles, arrays and decimals', () => {
    const body = bytes(
      't d',
      binaryDouble(-2.5),
      ',n',
      binaryDouble(Number.NaN),
      ',a1',
      binaryArray([3], [1, 2, 3]),
      ',a2',
      binaryArray([2, 3], [1, 2, 3, 4, 5, 6]),
      ',a3',
      binaryArray([1, 2, 1], [10, 20]),
      ',empty',
      binaryArray([2, 0], []),
      ',nil',
      binaryNullArray(),
      ',nodims==',
      [14, 10, 0],
      ',dec',
      binaryDecimal(12345n, 2),
      ',neg',
      binaryDecimal(-1n, 0),
      ',big',
      binaryDecimal(2n ** 255n - 1n, 76),
      ',nul',
      binaryDecimal(null, 3),
      ' 1700000000123456789n\n',
    );
    const [line] = parse(body);
    const values = Object.fromEntries(line!.fields.map((f) => [f.name, f.value]));
    expect(values.d).toEqual({ type: 'double', value: -2.5 });
    expect(values.n).toEqual({ type: 'double', value: Number.NaN });
    expect(values.a1).toEqual({
      type: 'double_array',
      value: { shape: [3], values: new Float64Array([1, 2, 3]) },
    });
    expect(values.a2).toEqual({
      type: 'double_array',
      value: { shape: [2, 3], values: new Float64Array([1, 2, 3, 4, 5, 6]) },
    });
    expect(values.a3).toEqual({
      type: 'double_array',
      value: { shape: [1, 2, 1], values: new Float64Array([10, 20]) },
    });
    expect(values.empty).toEqual({
      type: 'double_array',
      value: { shape: [2, 0], values: new Float64Array(0) },
    });
    expect(values.nil).toEqual({ type: 'double_array', value: null });
    expect(values.nodims).toEqual({ type: 'double_array', value: null });
    expect(values.dec).toEqual({ type: 'decimal', value: { unscaled: 12345n, scale: 2 } });
    expect(values.neg).toEqual({ type: 'decimal', value: { unscaled: -1n, scale: 0 } });
    expect(values.big).toEqual({ type: 'decimal', value: { unscaled: 2n ** 255n - 1n, scale: 76 } });
    expect(values.nul).toEqual({ type: 'decimal', value: null });
    expect(line!.timestampUs).toBe(1700000000123456n);
  });

  it('binary values may hold LF, CR, space, comma and quote bytes', () => {
    const tricky = Buffer.from([10, 13, 32, 44, 34, 61, 92, 0]).readDoubleLE(0);
    const [line] = parse(bytes('t a', binaryDouble(tricky), ',b=1\nt c=2'));
    expect(line!.fields[0]!.value).toEqual({ type: 'double', value: tricky });
    expect(line!.fields[1]!.value).toEqual({ type: 'double', value: 1 });
  });

  it('binary array elements are copied, not views of the request', () => {
    const body = bytes('t a', binaryArray([1], [7]));
    const value = parse(body)[0]!.fields[0]!.value as { value: { values: Float64Array } };
    expect(value.value.values.buffer).not.toBe(body.buffer);
    expect(value.value.values.byteLength).toBe(8);
  });
});

describe('parseIlp: names and symbols', () => {
  it('unescapes space, comma, equals and backslash in names and symbol values', () => {
    const [line] = parse('my\\ table,tag\\ one=a\\ b\\,c\\=d\\\\e,t2=\\\nx field\\ f=1i');
    expect(line!.table).toBe('my table');
    expect(line!.symbols).toEqual([
      { name: 'tag one', value: 'a b,c=d\\e' },
      { name: 't2', value: '\nx' },
    ]);
    expect(line!.fields[0]!.name).toBe('field f');
  });

  it('keeps unicode names and symbol values, and empty symbol values', () => {
    const [line] = parse('m\u00e9t\u00e9o,ville=Z\u00fcrich,vide= temp\u00e9rature=21.5');
    expect(line!.table).toBe('météo');
    expect(line!.symbols).toEqual([
      { name: 'ville', value: 'Zürich' },
      { name: 'vide', value: '' },
    ]);
    expect(line!.fields[0]!.name).toBe('température');
  });

  it('accepts QuestDB-valid table names with single dots and dashes', () => {
    expect(parse('file_name.csv a=1')[0]!.table).toBe('file_name.csv');
    expect(parse('eth-usd a=1')[0]!.table).toBe('eth-usd');
    expect(parse(`${'x'.repeat(127)} a=1`)[0]!.table).toHaveLength(127);
  });

  it('refuses bad table names, naming them', () => {
    for (const name of [
      '.t',
      't.',
      'a..b',
      'a?b',
      "a'b",
      'a"b',
      'a/b',
      'a:b',
      'a)b',
      'a(b',
      'a+b',
      'a*b',
      'a%b',
      'a~b',
    ]) {
      expectError(`${name} a=1`, 1, `table: ${name}; invalid table name`);
    }
    expectError('\\ t a=1', 1, 'table:  t; invalid table name');
    expectError(`${'x'.repeat(128)} a=1`, 1, 'invalid table name');
    expectError(`${'é'.repeat(64)} a=1`, 1, 'invalid table name');
    expectError('t\\\u0001 a=1', 1, 'invalid table name');
    expectError('\ufefft a=1', 1, 'invalid table name');
  });

  it('refuses bad column names, naming them and the table', () => {
    for (const name of [
      'a.b',
      'a-b',
      'a?b',
      'a/b',
      'a+b',
      'a*b',
      'a%b',
      'a~b',
      'a(b',
      'a)b',
      'a:b',
      "a'b",
      'a"b',
    ]) {
      expectError(`t ${name}=1`, 1, `table: t; invalid column name: ${name}`);
      expectError(`t,${name}=x a=1`, 1, `table: t; invalid column name: ${name}`);
    }
    expectError(`t ${'c'.repeat(128)}=1`, 1, 'invalid column name');
    expectError('t a\\\\b=1', 1, 'invalid column name: a\\b');
  });

  it('honours a smaller maxNameBytes even for cached names', () => {
    expect(parse('longname a=1')[0]!.table).toBe('longname');
    expectError('longname a=1', 1, 'invalid table name', { maxNameBytes: 4 });
  });
});

describe('parseIlp: designated timestamps', () => {
  it('reads a bare timestamp in each precision', () => {
    const cases: [Precision, string, bigint][] = [
      ['n', '1700000000123456789', 1700000000123456n],
      ['ns', '1700000000123456789', 1700000000123456n],
      ['u', '1700000000123456', 1700000000123456n],
      ['us', '1700000000123456', 1700000000123456n],
      ['ms', '1700000000123', 1700000000123000n],
      ['s', '1700000000', 1700000000000000n],
      ['m', '28333333', 1699999980000000n],
      ['h', '472222', 1699999200000000n],
    ];
    for (const [precision, text, expected] of cases) {
      expect(parse(`t a=1 ${text}`, precision)[0]!.timestampUs).toBe(expected);
    }
  });

  it('reads the n, t and m suffixes whatever the precision', () => {
    expect(parse('t a=1 1700000000123456789n', 's')[0]!.timestampUs).toBe(1700000000123456n);
    expect(parse('t a=1 1700000000123456t', 's')[0]!.timestampUs).toBe(1700000000123456n);
    expect(parse('t a=1 1700000000123m', 's')[0]!.timestampUs).toBe(1700000000123000n);
  });

  it('floors nanoseconds, also below zero', () => {
    const cases: [string, bigint][] = [
      ['999', 0n],
      ['1999', 1n],
      ['-1', -1n],
      ['-999', -1n],
      ['-1000', -1n],
      ['-1001', -2n],
      ['0', 0n],
      ['9223372036854775807', 9223372036854775n],
      ['-9223372036854775808', -9223372036854776n],
      ['-1700000000123456789', -1700000000123457n],
    ];
    for (const [text, expected] of cases) expect(parse(`t a=1 ${text}`)[0]!.timestampUs).toBe(expected);
  });

  it('refuses timestamps outside int64, before or after conversion', () => {
    expectError('t a=1 9223372036854775808', 1, 'Could not parse timestamp: 9223372036854775808');
    const error = parseError('t a=1 9223372036854775', undefined, 's');
    expect(error.what).toContain('Could not parse timestamp');
    expectError('t a=1 12x', 1, 'Could not parse timestamp: 12x');
    expectError('t a=1 1.5', 1, 'Could not parse timestamp: 1.5');
    expectError('t a=1 123 456', 1, 'Could not parse timestamp: 123 456');
  });

  it('no timestamp is null; a trailing space is allowed', () => {
    expect(parse('t a=1')[0]!.timestampUs).toBeNull();
    expect(parse('t a=1 ')[0]!.timestampUs).toBeNull();
    expect(parse('t,s=x')[0]!.timestampUs).toBeNull();
    expect(parse('t,s=x -5t')[0]!.timestampUs).toBe(-5n);
  });
});

describe('parseIlp: lines', () => {
  it('accepts LF, CR LF and a last line without LF; skips empty, blank and comment lines', () => {
    const lines = parse('a x=1\r\n\n# a comment, with = signs\n   \nb x=2\r\nc x=3');
    expect(lines.map((l) => [l.line, l.table])).toEqual([
      [1, 'a'],
      [5, 'b'],
      [6, 'c'],
    ]);
  });

  it('a lone CR ends a line, as in QuestDB', () => {
    expect(parse('a x=1\rb x=2').map((l) => l.table)).toEqual(['a', 'b']);
  });

  it('an empty body has no lines', () => {
    expect(parse('')).toEqual([]);
    expect(parse('\n\n# nothing\n')).toEqual([]);
  });

  it('lines with symbols only are lines', () => {
    expect(parse('t,a=b')[0]).toEqual({
      line: 1,
      table: 't',
      symbols: [{ name: 'a', value: 'b' }],
      fields: [],
      timestampUs: null,
    });
  });

  it('parses bodies larger than one decoding window, numbering lines across windows', () => {
    const line = 'trades,sym=ETH-USD price=2615.54,qty=42i 1700000000123456789\n';
    const count = Math.ceil((17 * 1024 * 1024) / line.length);
    const lines = parse(line.repeat(count));
    expect(lines).toHaveLength(count);
    expect(lines[count - 1]!.line).toBe(count);
    expect(lines[count - 1]!.fields[1]!.value).toEqual({ type: 'long', value: 42n });
  });
});

describe('regressions', () => {
  it('a body over one window with more lines than maxLinesPerRequest is refused, not an endless loop', () => {
    const line = 'trades,sym=ETH-USD price=2615.54 1700000000123456789\n';
    const body = Buffer.from(line.repeat(Math.ceil((17 * 1024 * 1024) / line.length)));
    const error = parseError(body, { maxLinesPerRequest: 1000 });
    expect(error.line).toBe(1001);
    expect(error.tooLarge).toBe(true);
  });

  it('accepts a plain Uint8Array, not only a Buffer', () => {
    const bytes = new Uint8Array([0, ...Buffer.from('t a=1i\n')]).subarray(1);
    expect(parseIlp(bytes, { precision: 'n' })[0]!.fields[0]!.value).toEqual({ type: 'long', value: 1n });
  });
});

describe('parseIlp: errors name the line and say what is wrong', () => {
  it('type syntax', () => {
    expectError(
      't a=1\nt v=1.2.3',
      2,
      'Could not parse entire line, field value is invalid. Field: v; value: 1.2.3',
    );
    for (const text of [
      '12x',
      '1i2',
      'tru',
      '0x1fi',
      'i',
      'n',
      'm',
      'd',
      '1e',
      'nan',
      'inf',
      '--1',
      '1_000',
      '1.2.3d',
    ]) {
      expectError(`t v=${text}`, 1, `field value is invalid. Field: v; value: ${text}`);
    }
    expectError('t v=abc', 1, 'Field: v; value: abc');
    expectError('t v=é', 1, 'Field: v; value: é');
  });

  it('unterminated strings', () => {
    expectError('t a=1\nt s="abc', 2, 'unterminated string value. Field: s');
    expectError('t s="abc\ndef"', 1, 'unterminated string value. Field: s');
    expectError('t s="abc\\', 1, 'unterminated string value. Field: s');
    expectError('t s="abc"x', 1, "unexpected 'x' after field s");
  });

  it('duplicate columns, case-insensitive, symbols and fields alike', () => {
    expectError('t a=1,a=2', 1, 'table: t; duplicate column name: a');
    expectError('t a=1,A=2', 1, 'duplicate column name: A');
    expectError('t,a=x a=2', 1, 'duplicate column name: a');
    expectError('t,a=x,a=y b=2', 1, 'duplicate column name: a');
    const many = Array.from({ length: 100 }, (_, i) => `c${i}=1`).join(',');
    expectError(`t ${many},C99=2`, 1, 'duplicate column name: C99');
    expect(parse(`t ${many}`)[0]!.fields).toHaveLength(100);
  });

  it('invalid UTF-8 in each kind of text', () => {
    const bad = [0xc3, 0x28];
    expectError(bytes('t', bad, ' a=1'), 1, 'invalid UTF-8 in table name');
    expectError(bytes('t ', bad, '=1'), 1, 'invalid UTF-8 in column name');
    expectError(bytes('t,s=', bad, ' a=1'), 1, 'invalid UTF-8 in symbol value. Tag: s');
    expectError(bytes('t a=1\nt s="', bad, '"'), 2, 'invalid UTF-8 in string value. Field: s');
    expectError(bytes('# ', bad, '\nt a=1'), 1, 'invalid UTF-8 in a comment line');
    expectError(bytes('t s="', [0xed, 0xa0, 0x80], '"'), 1, 'invalid UTF-8'); // a UTF-8-encoded surrogate
    expectError(bytes('t s="', [0xf8, 0x88, 0x80, 0x80, 0x80], '"'), 1, 'invalid UTF-8');
  });

  it('lines too long, too many columns, too many lines', () => {
    const long = expectError(`t a=1\nt s="${'x'.repeat(100)}"`, 2, 'line too long: more than 64 bytes', {
      maxLineBytes: 64,
    });
    expect(long.tooLarge).toBe(true);
    expect(long.details.tooLarge).toBe(true);
    // 't s="' + 58 + '"' is exactly 64 bytes.
    expect(parse(`t s="${'x'.repeat(58)}"\r\n`, 'n', { maxLineBytes: 64 })).toHaveLength(1);
    expectError(`t s="${'x'.repeat(59)}"\n`, 1, 'line too long', { maxLineBytes: 64 });
    expectError(bytes('t a', binaryArray([100], new Array(100).fill(1))), 1, 'line too long', {
      maxLineBytes: 64,
    });
    expectError('t a=1,b=2,c=3', 1, 'too many columns: more than 2', { maxColumnsPerLine: 2 });
    const lines = expectError('t a=1\nt a=2\nt a=3', 3, 'too many lines in one request: more than 2', {
      maxLinesPerRequest: 2,
    });
    expect(lines.tooLarge).toBe(true);
  });

  it('missing values, names and fields', () => {
    expectError('t,s a=1', 1, 'Could not parse entire line. Symbol value is missing: s');
    expectError('t a=1,b', 1, 'Could not parse entire line. Field value is missing: b');
    expectError('t b', 1, 'Field value is missing: b');
    expectError('t', 1, 'No fields were provided');
    expectError('t ', 1, 'No fields were provided');
    expectError(' t a=1', 1, 'table name is missing');
    expectError(',s=1 a=1', 1, 'table name is missing');
    expectError('t =1', 1, 'column name is missing');
    expectError('t a=1,,b=2', 1, 'column name is missing');
    expectError('t,s=x  a=1', 1, 'column name is missing');
  });

  it('stray separators, NUL bytes and lone backslashes', () => {
    expectError('t,s=a=b x=1', 1, "tag value is invalid. Tag: s; unexpected '='");
    expectError('t a=1=2', 1, "unexpected '='");
    expectError('t=1 a=1', 1, "unexpected '=' after table name");
    expectError(bytes('t,s=a', [0], 'b x=1'), 1, 'unexpected NUL byte');
    expectError('t a=1\\', 1, 'lone backslash');
  });

  it('binary values: truncated, unsupported or out of limits', () => {
    const full = bytes('t a', binaryArray([2], [1, 2]));
    for (let cut = 't a=='.length; cut < full.length; cut++) {
      expectError(full.subarray(0, cut), 1, 'truncated binary value');
    }
    expectError(bytes('t a==', [99]), 1, 'unsupported binary format type 99. Field: a');
    expectError(bytes('t a==', [14, 11, 1, 1, 0, 0, 0]), 1, 'unsupported array element type 11. Field: a');
    expectError(bytes('t a==', [14, 10, 33]), 1, 'array has 33 dimensions, more than the limit of 32');
    expectError(bytes('t a==', [14, 10, 1, 0xff, 0xff, 0xff, 0xff]), 1, 'negative length -1');
    expectError(bytes('t a', binaryArray([3, 3], new Array(9).fill(0))), 1, 'more than 8 elements', {
      maxArrayElements: 8,
    });
    expectError(bytes('t a', binaryArray([65536, 65536, 65536], [])), 1, 'elements');
    expectError(bytes('t a==', [23, 77, 1, 1]), 1, 'decimal scale 77 is out of range 0..76. Field: a');
    expectError(
      bytes('t a==', [23, 0, 33, 0x7f, ...new Array(32).fill(0xff)]),
      1,
      'does not fit in 256 bits',
    );
    expectError(bytes('t a', binaryDouble(1), 'x'), 1, "unexpected 'x' after field a");
  });
});

describe('parseCompleteIlpLines', () => {
  it('leaves an incomplete last line, even one that would parse', () => {
    const result = parseCompleteIlpLines(Buffer.from('a x=1\nb x=2\nc x=12'), { precision: 'n' });
    expect(result.lines.map((l) => l.table)).toEqual(['a', 'b']);
    expect(result.consumedBytes).toBe(12);
    expect(result.nextLineNumber).toBe(3);
  });

  it('does not split a binary value at an LF byte inside it', () => {
    const lf = Buffer.from([10, 10, 10, 10, 10, 10, 10, 10]).readDoubleLE(0);
    const body = bytes('t a', binaryDouble(lf), '\n');
    for (let cut = 0; cut < body.length; cut++) {
      expect(parseCompleteIlpLines(body.subarray(0, cut), { precision: 'n' }).consumedBytes).toBe(0);
    }
    expect(parseCompleteIlpLines(body, { precision: 'n' }).lines[0]!.fields[0]!.value).toEqual({
      type: 'double',
      value: lf,
    });
  });

  it('waits for the LF after a CR at the end', () => {
    expect(parseCompleteIlpLines(Buffer.from('a x=1\r'), { precision: 'n' }).consumedBytes).toBe(0);
    const result = parseCompleteIlpLines(Buffer.from('a x=1\r\nb'), { precision: 'n', firstLineNumber: 7 });
    expect(result).toMatchObject({ consumedBytes: 7, nextLineNumber: 8 });
    expect(result.lines[0]!.line).toBe(7);
  });

  it('still reports bad and overlong lines', () => {
    expect(() => parseCompleteIlpLines(Buffer.from('a x=1\nb x=?\n'), { precision: 'n' })).toThrow(
      IlpParseError,
    );
    expect(() =>
      parseCompleteIlpLines(Buffer.from(`t s="${'x'.repeat(100)}`), {
        precision: 'n',
        limits: { maxLineBytes: 64 },
      }),
    ).toThrow(/line too long/);
  });
});

describe('parsePrecision', () => {
  it('accepts every unit; absent or empty means ns', () => {
    for (const text of ['n', 'ns', 'u', 'us', 'ms', 's', 'm', 'h']) expect(parsePrecision(text)).toBe(text);
    expect(parsePrecision(null)).toBe('n');
    expect(parsePrecision('')).toBe('n');
  });

  it('refuses anything else with ILP_PRECISION', () => {
    for (const text of ['x', 'NS', 'seconds', 'd']) {
      let caught: unknown;
      try {
        parsePrecision(text);
      } catch (error) {
        caught = error;
      }
      expect(isWalshipError(caught, 'ILP_PRECISION')).toBe(true);
      expect((caught as Error & { kind: string }).kind).toBe('invalid');
    }
    expect(() => parseIlp(Buffer.from('t a=1'), { precision: 'x' as Precision })).toThrow(
      /unsupported precision/,
    );
  });
});

describe('parseIlpInSlices', () => {
  /** The lines parseIlpInSlices hands over, slices flattened, with the number of slices. */
  async function sliced(
    body: string,
    options: { sliceLines?: number; sliceBytes?: number; limits?: Partial<IlpLimits> } = {},
  ) {
    const lines: IlpLine[] = [];
    let slices = 0;
    let pauses = 0;
    const count = await parseIlpInSlices(
      Buffer.from(body),
      {
        precision: 'n',
        ...options,
        pause: async () => {
          pauses++;
        },
      },
      (slice) => {
        slices++;
        lines.push(...slice.toLines());
      },
    );
    return { lines, count, slices, pauses };
  }

  const body = [
    '# a comment',
    't,a=b x=1i,y="two\\" words" 1700000000000000000',
    '',
    'u z=1.5,w=t',
    '  ',
    'T,a=c x=2i 1700000000000000001\r',
    'v,k=v\\ w s="\\\\" 5',
    'w n=',
  ]
    .join('\n')
    .concat('\nlast x=1i');

  it('hands over the lines of parseIlp, in order, a slice at a time, pausing between slices', async () => {
    const whole = parse(body);
    for (const sliceLines of [1, 2, 3, 100]) {
      const { lines, count, slices, pauses } = await sliced(body, { sliceLines });
      expect(lines).toStrictEqual(whole);
      expect(count).toBe(whole.length);
      expect(slices).toBe(Math.ceil(whole.length / sliceLines));
      expect(pauses).toBe(slices - 1);
    }
    expect((await sliced(body, { sliceBytes: 1 })).slices).toBe(whole.length);
  });

  it('throws the error parseIlp throws, naming the same line, after handing over the lines before it', async () => {
    const bad = `${body}\nt x=1i\nt x=oops\nt x=2i\n`;
    const expected = parseError(bad);
    const seen: IlpLine[] = [];
    const error = await parseIlpInSlices(Buffer.from(bad), { precision: 'n', sliceLines: 2 }, (slice) =>
      seen.push(...slice.toLines()),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IlpParseError);
    expect((error as IlpParseError).message).toBe(expected.message);
    expect(seen.every((l) => l.line < expected.line)).toBe(true);
  });

  it('gives the same lines across its 4 MiB windows, a line cut by a window edge included', async () => {
    const text = Array.from(
      { length: 200_000 },
      (_, i) => `tbl,s=x${i % 9} v=${i}i,d="${'.'.repeat(i % 13)}"`,
    ).join('\n');
    expect(text.length).toBeGreaterThan(4 * 1024 * 1024);
    // A digest per line: comparing 200 000 line objects deeply takes seconds.
    const digest = (lines: IlpLine[]) =>
      lines.map(
        (l) =>
          `${l.line}|${l.table}|${l.symbols[0]?.value}|${String(l.fields[0]?.value.value)}|${l.fields[1]?.value.value}`,
      );
    const { lines, count } = await sliced(text);
    expect(count).toBe(200_000);
    expect(digest(lines)).toEqual(digest(parse(text)));
  });

  it('counts maxLinesPerRequest over the whole request, not per slice', async () => {
    const text = 't x=1i\n'.repeat(7);
    const error = await sliced(text, { sliceLines: 2, limits: { maxLinesPerRequest: 6 } }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(IlpParseError);
    expect((error as IlpParseError).tooLarge).toBe(true);
    expect((await sliced(text, { sliceLines: 2, limits: { maxLinesPerRequest: 7 } })).count).toBe(7);
  });
});
