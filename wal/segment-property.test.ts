import fc from 'fast-check';
import { expect, test } from 'vitest';
import { CorruptSegmentError } from '../core/index.js';
import {
  availableCodecs,
  COLUMN_TYPES,
  type ColumnData,
  type ColumnType,
  type ColumnValues,
  decodeSegment,
  decodeSegmentHeader,
  decodeTxnRecord,
  decodeTxnRecords,
  encodeSegment,
  encodeTxnRecord,
  isNull,
  nullBitmapBytes,
  sealSegment,
  setNull,
  type TxnRecord,
} from './index.js';
import { describeTxnDifference } from './testing/txn-equality.js';

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;

const int64 = fc.bigInt({ min: MIN_I64, max: MAX_I64 });

/** Doubles including every NaN bit pattern, not only the canonical one. */
const double = fc.oneof(
  fc.double(),
  fc
    .bigInt({ min: 0n, max: 2n ** 64n - 1n })
    .map((bits) => new Float64Array(BigUint64Array.of(bits).buffer)[0]!),
);

const text = fc.string({ unit: 'binary', maxLength: 12 });

const name = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 16 })
  .filter((s) => Buffer.byteLength(s) <= 127 && s !== 'timestamp');

const doubleArray = fc.array(fc.nat(3), { minLength: 1, maxLength: 3 }).chain((shape) =>
  fc
    .array(double, {
      minLength: shape.reduce((a, b) => a * b, 1),
      maxLength: shape.reduce((a, b) => a * b, 1),
    })
    .map((values) => ({ shape, values: Float64Array.from(values) })),
);

const decimal = fc.record({
  unscaled: fc.oneof(
    fc.bigInt({ min: -(2n ** 255n), max: 2n ** 255n - 1n }),
    fc.bigInt({ min: -1000n, max: 1000n }),
  ),
  scale: fc.integer({ min: 0, max: 76 }),
});

function valuesOf(type: ColumnType, rows: number): fc.Arbitrary<ColumnValues> {
  const n = { minLength: rows, maxLength: rows };
  switch (type) {
    case 'boolean':
      return fc.array(fc.integer({ min: 0, max: 1 }), n).map((v) => ({ type, values: Uint8Array.from(v) }));
    case 'long':
    case 'timestamp':
      return fc.array(int64, n).map((v) => ({ type, values: BigInt64Array.from(v) }));
    case 'double':
      return fc.array(double, n).map((v) => ({ type, values: Float64Array.from(v) }));
    case 'string':
      return fc.array(text, n).map((v) => ({ type, values: v }));
    case 'symbol':
      return fc
        .array(fc.constantFrom('BTC-USD', 'ETH-USD', '', '\u{1F4B0}', 'sol'), n)
        .map((v) => ({ type, values: v }));
    case 'double_array':
      return fc.array(doubleArray, n).map((v) => ({ type, values: v }));
    case 'decimal':
      return fc.array(decimal, n).map((v) => ({ type, values: v }));
  }
}

function columnOf(spec: ColumnSpec, rows: number, addedInTxn: boolean): fc.Arbitrary<ColumnData> {
  const nulls = fc
    .option(fc.array(fc.boolean(), { minLength: rows, maxLength: rows }), { nil: null })
    .map((flags) => {
      if (flags === null) return null;
      const bitmap = new Uint8Array(nullBitmapBytes(rows));
      flags.forEach((isNullRow, row) => {
        if (isNullRow) setNull(bitmap, row);
      });
      return bitmap;
    });
  return fc
    .record({ nulls, data: valuesOf(spec.type, rows) })
    .map(({ nulls, data }) => ({ name: spec.name, addedInTxn, nulls, data }));
}

interface ColumnSpec {
  name: string;
  type: ColumnType;
  /** The txn index that adds the column (schema change); it may appear in later txns. */
  addedAt: number;
}

const columnSpec: fc.Arbitrary<ColumnSpec> = fc.record({
  name: fc.oneof(name, fc.constant('timestamp')),
  type: fc.constantFrom(...COLUMN_TYPES),
  addedAt: fc.nat(3),
});

function txnOf(schema: ColumnSpec[], index: number, txn: bigint): fc.Arbitrary<TxnRecord> {
  const known = schema.filter((c) => c.addedAt <= index);
  return fc
    .record({
      fence: fc.boolean().map((b) => b && known.every((c) => c.addedAt !== index)),
      rowCount: fc.nat(9),
      include: fc.array(fc.boolean(), { minLength: known.length, maxLength: known.length }),
      commitTimeUs: int64,
    })
    .chain(({ fence, rowCount, include, commitTimeUs }) => {
      if (fence) {
        return fc.constant<TxnRecord>({ txn, commitTimeUs, kind: 'fence', rowCount: 0, columns: [] });
      }
      const chosen = known.filter((c, i) => c.addedAt === index || include[i]);
      const rows = chosen.length === 0 ? 0 : rowCount;
      return fc
        .tuple(...chosen.map((c) => columnOf(c, rows, c.addedAt === index)))
        .map((columns) => ({ txn, commitTimeUs, kind: 'data' as const, rowCount: rows, columns }));
    });
}

const table = fc
  .record({
    schema: fc.uniqueArray(columnSpec, { minLength: 1, maxLength: 6, selector: (c) => c.name }),
    txnFirst: fc.bigInt({ min: 1n, max: MAX_I64 - 10n }),
    txnCount: fc.integer({ min: 1, max: 5 }),
  })
  .chain(({ schema, txnFirst, txnCount }) =>
    fc.tuple(...Array.from({ length: txnCount }, (_, i) => txnOf(schema, i, txnFirst + BigInt(i)))),
  );

/** The expected ts range, computed independently of the encoder. */
function expectedTsRange(txns: TxnRecord[]): [bigint | null, bigint | null] {
  const values: bigint[] = [];
  for (const txn of txns) {
    for (const column of txn.columns) {
      if (column.name !== 'timestamp' || column.data.type !== 'timestamp') continue;
      for (let row = 0; row < txn.rowCount; row++)
        if (!isNull(column, row)) values.push(column.data.values[row]!);
    }
  }
  if (values.length === 0) return [null, null];
  values.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return [values[0]!, values[values.length - 1]!];
}

test('random tables round-trip exactly through every codec, with a header that matches', async () => {
  await fc.assert(
    fc.asyncProperty(table, fc.constantFrom(...availableCodecs()), async (txns, codec) => {
      const bytes = await encodeSegment({ tableName: 'prop', epoch: 9n, writerNodeId: 'w', txns, codec });
      const { header, txns: decoded } = await decodeSegment(bytes);
      expect(describeTxnDifference(txns, decoded)).toBeNull();
      const [tsMinUs, tsMaxUs] = expectedTsRange(txns);
      expect(header).toMatchObject({
        txnFirst: txns[0]!.txn,
        txnLast: txns[txns.length - 1]!.txn,
        txnCount: txns.length,
        rowCount: txns.reduce((sum, t) => sum + t.rowCount, 0),
        tsMinUs,
        tsMaxUs,
        codec,
      });
      expect(decodeSegmentHeader(bytes)).toEqual(header);
    }),
    { numRuns: 300 },
  );
});

test('sealing encoded records gives the bytes encodeSegment gives', async () => {
  await fc.assert(
    fc.asyncProperty(table, fc.constantFrom(...availableCodecs()), async (txns, codec) => {
      const identity = { tableName: 'prop', epoch: 3n, writerNodeId: 'w', codec };
      const sealed = await sealSegment({ ...identity, records: txns.map((t) => encodeTxnRecord(t)) });
      expect(Buffer.compare(sealed, await encodeSegment({ ...identity, txns }))).toBe(0);
    }),
    { numRuns: 100 },
  );
});

test('a txn record round-trips on its own', () => {
  fc.assert(
    fc.property(table, (txns) => {
      for (const txn of txns)
        expect(describeTxnDifference([txn], [decodeTxnRecord(encodeTxnRecord(txn))])).toBeNull();
    }),
    { numRuns: 100 },
  );
});

test('records decoded together (sharing an arena and descriptors) equal each decoded alone', () => {
  fc.assert(
    fc.property(table, table, (a, b) => {
      // Two tables' records interleaved, as a request over many tables hands them to its worker.
      const txns = a.flatMap((txn, i) => (b[i] === undefined ? [txn] : [txn, b[i]!]));
      const decoded = decodeTxnRecords(txns.map((txn) => encodeTxnRecord(txn)));
      expect(describeTxnDifference(txns, decoded)).toBeNull();
      // Each is still checked whole: one cut short among good ones fails the lot.
      const bytes = encodeTxnRecord(txns[0]!);
      expect(() => decodeTxnRecords([bytes, bytes.subarray(0, bytes.length - 1)])).toThrow(
        CorruptSegmentError,
      );
    }),
    { numRuns: 100 },
  );
});

test('re-encoding a decoded segment gives the same bytes (the format is canonical for encoder output)', async () => {
  await fc.assert(
    fc.asyncProperty(table, async (txns) => {
      const input = { tableName: 'prop', epoch: 1n, writerNodeId: 'w', codec: 'none' as const };
      const bytes = await encodeSegment({ ...input, txns });
      const again = await encodeSegment({ ...input, txns: (await decodeSegment(bytes)).txns });
      expect(Buffer.compare(bytes, again)).toBe(0);
    }),
    { numRuns: 100 },
  );
});
