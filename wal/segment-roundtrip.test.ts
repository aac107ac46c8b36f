import { crc32 } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { decimalByteLength, decodeDecimalBytes, encodeDecimalBytes } from './decimal-bytes.js';
import {
  availableCodecs,
  type Codec,
  type ColumnData,
  type ColumnValues,
  decodeSegment,
  decodeSegmentHeader,
  decodeTxnRecord,
  encodeSegment,
  encodeTxnRecord,
  isNull,
  nullBitmapBytes,
  SEGMENT_FORMAT_VERSION,
  setNull,
  type TxnRecord,
} from './index.js';
import { ASYNC_CODEC_THRESHOLD_BYTES } from './limits.js';
import { describeTxnDifference } from './testing/txn-equality.js';

const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;

function column(name: string, data: ColumnValues, nullRows: number[] = [], addedInTxn = false): ColumnData {
  let nulls: Uint8Array | null = null;
  if (nullRows.length > 0) {
    nulls = new Uint8Array(nullBitmapBytes(data.values.length));
    for (const row of nullRows) setNull(nulls, row);
  }
  return { name, addedInTxn, nulls, data };
}

function dataTxn(txn: bigint, columns: ColumnData[]): TxnRecord {
  const rowCount = columns[0]?.data.values.length ?? 0;
  return { txn, commitTimeUs: 1_700_000_000_000_000n + txn, kind: 'data', rowCount, columns };
}

async function roundTrip(txns: TxnRecord[], codec: Codec = 'deflate') {
  const bytes = await encodeSegment({ tableName: 'trades', epoch: 3n, writerNodeId: 'node-a', txns, codec });
  const decoded = await decodeSegment(bytes);
  expect(describeTxnDifference(txns, decoded.txns)).toBeNull();
  return { bytes, ...decoded };
}

function doubleFromBits(bits: bigint): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, bits, true);
  return view.getFloat64(0, true);
}

function bitsOf(values: Float64Array): bigint[] {
  return Array.from(new BigUint64Array(values.slice().buffer));
}

describe.each(availableCodecs())('round trip with codec %s', (codec) => {
  test('every column type, with nulls in every type', async () => {
    const nullRows = [1, 3];
    const txn = dataTxn(1n, [
      column('timestamp', { type: 'timestamp', values: BigInt64Array.of(10n, 20n, 30n, 40n, 50n) }),
      column('flag', { type: 'boolean', values: Uint8Array.of(1, 0, 0, 0, 1) }, nullRows),
      column('qty', { type: 'long', values: BigInt64Array.of(MIN_I64, 0n, MAX_I64, 0n, -1n) }, nullRows),
      column('price', { type: 'double', values: Float64Array.of(1.5, 0, -0, 0, Number.NaN) }, nullRows),
      column('note', { type: 'string', values: ['', null, '\u{1F600} astral', null, 'é'] }, nullRows),
      column('sym', { type: 'symbol', values: ['BTC', null, 'ETH', null, 'BTC'] }, nullRows),
      column('ts2', { type: 'timestamp', values: BigInt64Array.of(-1n, 0n, MIN_I64, 0n, MAX_I64) }, nullRows),
      column(
        'book',
        {
          type: 'double_array',
          values: [
            { shape: [2, 2], values: Float64Array.of(1, 2, 3, 4) },
            null,
            { shape: [0], values: new Float64Array(0) },
            null,
            { shape: [1], values: Float64Array.of(-0) },
          ],
        },
        nullRows,
      ),
      column(
        'amount',
        {
          type: 'decimal',
          values: [
            { unscaled: 12345n, scale: 2 },
            null,
            { unscaled: -(2n ** 255n), scale: 76 },
            null,
            { unscaled: 0n, scale: 0 },
          ],
        },
        nullRows,
      ),
    ]);
    const { header, txns } = await roundTrip([txn], codec);
    for (const col of txns[0]!.columns.slice(1)) {
      expect(isNull(col, 1) && isNull(col, 3) && !isNull(col, 0), col.name).toBe(true);
    }
    expect(header.tsMinUs).toBe(10n);
    expect(header.tsMaxUs).toBe(50n);
    expect(header.codec).toBe(codec);
  });

  test('int64 extremes and bit-exact doubles: NaN payloads, ±Infinity, -0', async () => {
    const doubles = Float64Array.of(
      Number.NaN,
      doubleFromBits(0x7ff8_0000_0000_1234n),
      doubleFromBits(0xfff0_0000_0000_0001n),
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      -0,
      Number.MIN_VALUE,
      -Number.MAX_VALUE,
    );
    const longs = BigInt64Array.of(
      MIN_I64,
      MAX_I64,
      MIN_I64 + 1n,
      MAX_I64 - 1n,
      0n,
      -1n,
      2n ** 53n + 1n,
      -(2n ** 53n) - 1n,
    );
    const { txns } = await roundTrip(
      [
        dataTxn(1n, [
          column('d', { type: 'double', values: doubles }),
          column('l', { type: 'long', values: longs }),
        ]),
      ],
      codec,
    );
    const decoded = txns[0]!.columns;
    expect(bitsOf(decoded[0]!.data.values as Float64Array)).toEqual(bitsOf(doubles));
    expect(Array.from(decoded[1]!.data.values as BigInt64Array)).toEqual(Array.from(longs));
  });

  test('strings: empty, astral, BOM, NUL, combining, long', async () => {
    const values = [
      '',
      '\u{10FFFF}\u{1F680}',
      '\uFEFFbom kept',
      'nul\u0000inside',
      'e\u0301',
      'x'.repeat(70_000),
    ];
    const { txns } = await roundTrip([dataTxn(1n, [column('s', { type: 'string', values })])], codec);
    expect(txns[0]!.columns[0]!.data.values).toEqual(values);
  });

  test('fences, zero-row fences only, and a zero-row schema change', async () => {
    const fenceOnly = await roundTrip(
      [{ txn: 7n, commitTimeUs: 1n, kind: 'fence', rowCount: 0, columns: [] }],
      codec,
    );
    expect(fenceOnly.header).toMatchObject({
      txnFirst: 7n,
      txnLast: 7n,
      txnCount: 1,
      rowCount: 0,
      tsMinUs: null,
      tsMaxUs: null,
    });
    const schemaOnly = dataTxn(8n, [
      column('newcol', { type: 'long', values: new BigInt64Array(0) }, [], true),
    ]);
    const rows = dataTxn(9n, [
      column('timestamp', { type: 'timestamp', values: BigInt64Array.of(5n) }),
      column('newcol', { type: 'long', values: BigInt64Array.of(42n) }),
      column('added', { type: 'symbol', values: ['x'] }, [], true),
    ]);
    const fence: TxnRecord = { txn: 10n, commitTimeUs: 2n, kind: 'fence', rowCount: 0, columns: [] };
    const { header, txns } = await roundTrip([schemaOnly, rows, fence], codec);
    expect(txns.map((t) => t.kind)).toEqual(['data', 'data', 'fence']);
    expect(txns[0]!.columns[0]!.addedInTxn).toBe(true);
    expect(txns[1]!.columns.map((c) => c.addedInTxn)).toEqual([false, false, true]);
    expect(header).toMatchObject({
      txnFirst: 8n,
      txnLast: 10n,
      txnCount: 3,
      rowCount: 1,
      tsMinUs: 5n,
      tsMaxUs: 5n,
    });
  });

  test('a body above the async threshold takes the threadpool path', async () => {
    const rows = ASYNC_CODEC_THRESHOLD_BYTES / 8 + 1000;
    const values = BigInt64Array.from({ length: rows }, (_, i) => BigInt(i) * 1_000n);
    const { header } = await roundTrip(
      [dataTxn(1n, [column('timestamp', { type: 'timestamp', values })])],
      codec,
    );
    expect(header.bodyBytesRaw).toBeGreaterThan(ASYNC_CODEC_THRESHOLD_BYTES);
    expect(header.tsMaxUs).toBe(BigInt(rows - 1) * 1_000n);
  });
});

describe('symbols', () => {
  test.each([
    [1, 1],
    [256, 1],
    [257, 2],
    [65_536, 2],
    [65_537, 4],
  ])('%i distinct values use %i-byte indices and round-trip', async (distinct, width) => {
    const values = Array.from({ length: distinct + 3 }, (_, i) => `s${i % distinct}`);
    const txn = dataTxn(1n, [column('sym', { type: 'symbol', values })]);
    const record = encodeTxnRecord(txn);
    // Record header (28) + descriptor (1 + 3 + 2), then the dictionary size (u32) and the width (u8).
    expect(record[28 + 6 + 4]).toBe(width);
    await roundTrip([txn], 'none');
  });

  test('symbol values that are also Object.prototype keys', async () => {
    const values = [
      '__proto__',
      'constructor',
      'toString',
      '__proto__',
      'hasOwnProperty',
      '0',
      '1',
      'constructor',
    ];
    const { txns } = await roundTrip([dataTxn(1n, [column('sym', { type: 'symbol', values })])], 'none');
    expect(txns[0]!.columns[0]!.data.values).toEqual(values);
  });
});

describe('double arrays and decimals', () => {
  test('arrays of 1 and 32 dimensions, empty dims and NaN payloads', async () => {
    const shape32 = Array.from({ length: 32 }, (_, i) => (i === 31 ? 2 : 1));
    const values = [
      { shape: [3], values: Float64Array.of(1, Number.NaN, doubleFromBits(0x7ff0_0000_0000_0abcn)) },
      { shape: shape32, values: Float64Array.of(-0, Number.POSITIVE_INFINITY) },
      { shape: [4, 0, 7], values: new Float64Array(0) },
    ];
    const { txns } = await roundTrip([dataTxn(1n, [column('a', { type: 'double_array', values })])]);
    const decoded = txns[0]!.columns[0]!.data.values as { shape: number[]; values: Float64Array }[];
    expect(decoded.map((v) => v.shape)).toEqual(values.map((v) => v.shape));
    expect(bitsOf(decoded[0]!.values)).toEqual(bitsOf(values[0]!.values));
  });

  test('decimals at the 256-bit extremes and every scale boundary', async () => {
    const unscaled = [0n, 1n, -1n, 127n, 128n, -128n, -129n, 2n ** 255n - 1n, -(2n ** 255n), 10n ** 76n - 1n];
    const values = unscaled.map((u, i) => ({ unscaled: u, scale: i % 2 === 0 ? 0 : 76 }));
    await roundTrip([dataTxn(1n, [column('d', { type: 'decimal', values })])]);
  });

  test('decimal bytes are the shortest big-endian two’s complement', () => {
    const cases: [bigint, number[]][] = [
      [0n, [0x00]],
      [-1n, [0xff]],
      [127n, [0x7f]],
      [128n, [0x00, 0x80]],
      [-128n, [0x80]],
      [-129n, [0xff, 0x7f]],
      [65_535n, [0x00, 0xff, 0xff]],
    ];
    for (const [value, bytes] of cases) {
      expect(decimalByteLength(value), String(value)).toBe(bytes.length);
      expect(Array.from(encodeDecimalBytes(value, bytes.length))).toEqual(bytes);
      expect(decodeDecimalBytes(Uint8Array.from(bytes))).toBe(value);
    }
    expect(decimalByteLength(2n ** 255n - 1n)).toBe(32);
    expect(decimalByteLength(-(2n ** 255n))).toBe(32);
    expect(decimalByteLength(2n ** 255n)).toBe(33);
  });
});

describe('the segment as an object', () => {
  const txns = [
    dataTxn(41n, [
      column('timestamp', { type: 'timestamp', values: BigInt64Array.of(300n, 100n) }),
      column('v', { type: 'double', values: Float64Array.of(1, 2) }),
    ]),
    dataTxn(42n, [column('timestamp', { type: 'timestamp', values: BigInt64Array.of(200n, 999n) }, [1])]),
  ];

  test('the header describes the body and the trailer checksums the object', async () => {
    const bytes = await encodeSegment({
      tableName: 'tâble',
      epoch: 2n ** 62n,
      writerNodeId: 'writer-\u{1F600}',
      txns,
    });
    const header = decodeSegmentHeader(bytes);
    expect(header).toMatchObject({
      formatVersion: SEGMENT_FORMAT_VERSION,
      tableName: 'tâble',
      epoch: 2n ** 62n,
      writerNodeId: 'writer-\u{1F600}',
      txnFirst: 41n,
      txnLast: 42n,
      txnCount: 2,
      rowCount: 4,
      tsMinUs: 100n,
      tsMaxUs: 300n,
      codec: 'deflate',
    });
    expect(header.objectChecksum).toBe(crc32(bytes.subarray(0, bytes.length - 4)) >>> 0);
    expect((await decodeSegment(bytes)).header).toEqual(header);
  });

  test('encoding is deterministic, so a writer can recognise its own segment by checksum', async () => {
    for (const codec of availableCodecs()) {
      const a = await encodeSegment({ tableName: 't', epoch: 1n, writerNodeId: 'n', txns, codec });
      const b = await encodeSegment({ tableName: 't', epoch: 1n, writerNodeId: 'n', txns, codec });
      expect(Buffer.compare(a, b), codec).toBe(0);
    }
  });

  test('decoded values are aligned copies that never alias the input', async () => {
    const bytes = await encodeSegment({ tableName: 't', epoch: 1n, writerNodeId: 'n', txns, codec: 'none' });
    const { txns: decoded } = await decodeSegment(bytes);
    const values = decoded[0]!.columns[1]!.data.values as Float64Array;
    expect(values.byteOffset % 8).toBe(0);
    expect(values.buffer).not.toBe(bytes.buffer);
    bytes.fill(0xee);
    expect(Array.from(values)).toEqual([1, 2]);
  });

  test('a bitmap with no bit set decodes as no bitmap, and null slots decode as zero', async () => {
    const noNulls = {
      ...column('a', { type: 'long', values: BigInt64Array.of(1n, 2n) }),
      nulls: new Uint8Array(1),
    };
    const slots = column('b', { type: 'long', values: BigInt64Array.of(7n, 8n) }, [0]);
    const flags = column('c', { type: 'boolean', values: Uint8Array.of(1, 1) }, [1]);
    const { txns: decoded } = await roundTrip([dataTxn(1n, [noNulls, slots, flags])], 'none');
    const [a, b, c] = decoded[0]!.columns;
    expect(a!.nulls).toBeNull();
    expect(Array.from(b!.data.values as BigInt64Array)).toEqual([0n, 8n]);
    expect(Array.from(c!.data.values as Uint8Array)).toEqual([1, 0]);
  });

  test('input bytes at a non-zero offset of a larger buffer (a pooled Buffer)', async () => {
    for (const codec of availableCodecs()) {
      const bytes = await encodeSegment({ tableName: 't', epoch: 1n, writerNodeId: 'n', txns, codec });
      const padded = new Uint8Array(bytes.length + 11);
      padded.set(bytes, 3);
      const { txns: decoded } = await decodeSegment(padded.subarray(3, 3 + bytes.length));
      expect(describeTxnDifference(txns, decoded)).toBeNull();
    }
  });

  test('many columns decoded into shared buffers keep their own values', async () => {
    const wide = Array.from({ length: 300 }, (_, c) =>
      column(`c${c}`, {
        type: c % 2 === 0 ? 'long' : 'double',
        values: c % 2 === 0 ? BigInt64Array.of(BigInt(c), BigInt(-c)) : Float64Array.of(c, -c),
      } as ColumnValues),
    );
    const { txns: decoded } = await roundTrip([dataTxn(1n, wide)], 'none');
    const first = decoded[0]!.columns[0]!.data.values as BigInt64Array;
    first[0] = 99n;
    expect(
      describeTxnDifference(
        [dataTxn(1n, wide.slice(1))],
        [{ ...decoded[0]!, columns: decoded[0]!.columns.slice(1) }],
      ),
    ).toBeNull();
  });

  test('a txn record encodes and decodes on its own', () => {
    const record = encodeTxnRecord(txns[1]!);
    expect(describeTxnDifference([txns[1]!], [decodeTxnRecord(record)])).toBeNull();
  });
});
