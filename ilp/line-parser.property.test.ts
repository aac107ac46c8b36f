import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { IlpField, IlpFieldValue, IlpLine } from './ilp-line.js';
import { parseCompleteIlpLines, parseIlp } from './line-parser.js';
import { binaryArray, binaryDecimal, binaryDouble, binaryNullArray } from './testing/request-bytes.js';

/**
 * Random valid lines, written by a small serializer independent of the parser (escaping as the
 * official clients do, plus the spellings they never use), must parse back to exactly what was
 * generated.
 */

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Characters names are built from: valid everywhere, including space and `=`, which need escaping. */
const NAME_CHARS = [...'abcXYZ_019 =éß日🚀'];
const TABLE_EXTRA_CHARS = [...'-.'];

function escapeName(text: string): string {
  return text.replace(/[ ,=\\]/g, (c) => `\\${c}`);
}

function escapeSymbolValue(text: string): string {
  return text.replace(/[ ,=\\\n\r]/g, (c) => `\\${c}`);
}

function escapeString(text: string): string {
  return text.replace(/["\\\n]/g, (c) => `\\${c}`);
}

const utf8Safe = (text: string) => Buffer.from(text, 'utf8').toString('utf8') === text;

const columnName = fc
  .array(fc.constantFrom(...NAME_CHARS), { minLength: 1, maxLength: 12 })
  .map((chars) => chars.join(''))
  .filter((name) => Buffer.byteLength(name) <= 127);

const tableName = fc
  .array(fc.constantFrom(...NAME_CHARS, ...TABLE_EXTRA_CHARS), { minLength: 1, maxLength: 12 })
  .map((chars) => chars.join(''))
  .filter((name) => !/^[. ]|[. ]$|\.\./.test(name) && Buffer.byteLength(name) <= 127);

const anyText = fc.string({ unit: 'binary', maxLength: 30 }).filter(utf8Safe);
const symbolValue = anyText.filter((text) => !text.includes('\0'));

/** A field value and one way of writing it; binary forms only when `binary` is on. */
type Written = { value: IlpFieldValue; text: string | Buffer };

function decimalText(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const point = digits.length - scale;
  const body = scale === 0 ? digits : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return `${negative ? '-' : ''}${body}`;
}

function doubleText(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

const writtenValue = (binary: boolean): fc.Arbitrary<Written> => {
  const text: fc.Arbitrary<Written>[] = [
    fc
      .bigInt({ min: INT64_MIN, max: INT64_MAX })
      .map((v) => ({ value: { type: 'long', value: v }, text: `${v}i` })),
    fc.double().map((v) => ({ value: { type: 'double', value: v }, text: doubleText(v) })),
    fc.integer().map((v) => ({ value: { type: 'double', value: v }, text: `${v}` })),
    fc
      .constantFrom('t', 'T', 'true', 'TRUE', 'True', 'f', 'F', 'false', 'FALSE', 'False')
      .map((spelling) => ({
        value: { type: 'boolean', value: spelling.toLowerCase().startsWith('t') },
        text: spelling,
      })),
    anyText.map((v) => ({ value: { type: 'string', value: v }, text: `"${escapeString(v)}"` })),
    fc
      .bigInt({ min: INT64_MIN, max: INT64_MAX })
      .map((v) => ({ value: { type: 'timestamp', value: v }, text: `${v}t` })),
    fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((v) => {
      const floor = v / 1000n - (v % 1000n < 0n ? 1n : 0n);
      return { value: { type: 'timestamp', value: floor }, text: `${v}n` };
    }),
    fc
      .tuple(fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }), fc.integer({ min: 0, max: 30 }))
      .map(([unscaled, scale]) => ({
        value: { type: 'decimal', value: { unscaled, scale } },
        text: `${decimalText(unscaled, scale)}d`,
      })),
  ];
  if (!binary) return fc.oneof(...text);
  const binaryForms: fc.Arbitrary<Written>[] = [
    fc.double().map((v) => ({ value: { type: 'double', value: v }, text: binaryDouble(v).subarray(1) })),
    fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 3 }).chain((shape) =>
      fc
        .array(fc.double(), {
          minLength: shape.reduce((a, b) => a * b, 1),
          maxLength: shape.reduce((a, b) => a * b, 1),
        })
        .map((values) => ({
          value: {
            type: 'double_array',
            value: { shape, values: new Float64Array(values) },
          } as IlpFieldValue,
          text: binaryArray(shape, values).subarray(1),
        })),
    ),
    fc.constant({
      value: { type: 'double_array', value: null },
      text: binaryNullArray().subarray(1),
    } as Written),
    fc
      .tuple(fc.bigInt({ min: -(2n ** 255n), max: 2n ** 255n - 1n }), fc.integer({ min: 0, max: 76 }))
      .map(([unscaled, scale]) => ({
        value: { type: 'decimal', value: { unscaled, scale } },
        text: binaryDecimal(unscaled, scale).subarray(1),
      })),
  ];
  return fc.oneof(...text, ...binaryForms);
};

interface GeneratedLine {
  line: Omit<IlpLine, 'line'>;
  bytes: Buffer;
}

const timestampForm = fc.oneof(
  fc.constant({ text: '', us: null as bigint | null }),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((v) => ({ text: ` ${v}t`, us: v })),
  fc.bigInt({ min: INT64_MIN, max: INT64_MAX }).map((v) => ({
    text: ` ${v}n`,
    us: v / 1000n - (v % 1000n < 0n ? 1n : 0n),
  })),
  fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }).map((v) => ({
    text: ` ${v}`,
    us: v / 1000n - (v % 1000n < 0n ? 1n : 0n),
  })),
);

const generatedLine = (binary: boolean): fc.Arbitrary<GeneratedLine> =>
  fc
    .record({
      table: tableName,
      symbols: fc.array(fc.tuple(columnName, symbolValue), { maxLength: 4 }),
      fields: fc.array(fc.tuple(columnName, writtenValue(binary)), { maxLength: 6 }),
      timestamp: timestampForm,
    })
    .filter(({ symbols, fields }) => {
      const names = [...symbols.map(([n]) => n), ...fields.map(([n]) => n)].map((n) => n.toLowerCase());
      // A line needs at least one column, and no column twice (case-insensitively).
      return names.length > 0 && new Set(names).size === names.length;
    })
    .map(({ table, symbols, fields, timestamp }) => {
      const parts: (string | Buffer)[] = [escapeName(table)];
      for (const [name, value] of symbols) parts.push(`,${escapeName(name)}=${escapeSymbolValue(value)}`);
      fields.forEach(([name, written], i) => {
        parts.push(`${i === 0 ? ' ' : ','}${escapeName(name)}=`, written.text);
      });
      parts.push(timestamp.text);
      const bytes = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
      const expectedFields: IlpField[] = fields.map(([name, written]) => ({ name, value: written.value }));
      return {
        line: {
          table,
          symbols: symbols.map(([name, value]) => ({ name, value })),
          fields: expectedFields,
          timestampUs: timestamp.us,
        },
        bytes,
      };
    });

const request = (binary: boolean) =>
  fc.tuple(
    fc.array(generatedLine(binary), { minLength: 1, maxLength: 5 }),
    fc.constantFrom('\n', '\r\n'),
    fc.boolean(),
  );

function assemble([lines, eol, finalEol]: [GeneratedLine[], string, boolean]): {
  body: Buffer;
  expected: IlpLine[];
} {
  const parts: Buffer[] = [];
  lines.forEach((l, i) => {
    parts.push(l.bytes);
    if (i < lines.length - 1 || finalEol) parts.push(Buffer.from(eol));
  });
  return {
    body: Buffer.concat(parts),
    expected: lines.map((l, i) => ({ line: i + 1, ...l.line })),
  };
}

describe('parseIlp property: what is written is what is read', () => {
  it('text v1 lines', () => {
    fc.assert(
      fc.property(request(false), (generated) => {
        const { body, expected } = assemble(generated);
        expect(parseIlp(body, { precision: 'n' })).toStrictEqual(expected);
      }),
      { numRuns: 1500 },
    );
  });

  it('v2/v3 lines with binary doubles, arrays and decimals', () => {
    fc.assert(
      fc.property(request(true), (generated) => {
        const { body, expected } = assemble(generated);
        expect(parseIlp(body, { precision: 'n' })).toStrictEqual(expected);
      }),
      { numRuns: 1500 },
    );
  });

  it('a stream cut anywhere yields a prefix of the lines, and the rest yields the others', () => {
    fc.assert(
      fc.property(request(true), fc.nat(), (generated, cutSeed) => {
        const { body, expected } = assemble([generated[0], '\n', true]);
        const cut = cutSeed % (body.length + 1);
        const first = parseCompleteIlpLines(body.subarray(0, cut), { precision: 'n' });
        const rest = parseCompleteIlpLines(body.subarray(first.consumedBytes), {
          precision: 'n',
          firstLineNumber: first.nextLineNumber,
        });
        expect(first.consumedBytes + rest.consumedBytes).toBe(body.length);
        expect([...first.lines, ...rest.lines]).toStrictEqual(expected);
      }),
      { numRuns: 500 },
    );
  });
});
