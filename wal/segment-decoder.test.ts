import { deflateRawSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { CorruptSegmentError, isWalshipError } from '../core/index.js';
import {
  availableCodecs,
  type ColumnData,
  type ColumnValues,
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  type SegmentLimits,
  type TxnRecord,
} from './index.js';
import { HEADER } from './segment-layout.js';
import {
  concatBytes,
  resealHeaderChecksum,
  resealRecord,
  resealSegment,
  resealTrailer,
  segmentParts,
  splitRecords,
} from './testing/reseal.js';

/** Where a one-column record with a one-byte name has its first chunk byte: 28-byte record head + 4-byte descriptor. */
const CHUNK = 32;

function col(data: ColumnValues, nulls: Uint8Array | null = null, name = 'c'): ColumnData {
  return { name, addedInTxn: false, nulls, data };
}

function txn(number: bigint, columns: ColumnData[]): TxnRecord {
  return {
    txn: number,
    commitTimeUs: 0n,
    kind: 'data',
    rowCount: columns[0]?.data.values.length ?? 0,
    columns,
  };
}

async function segmentOf(txns: TxnRecord[], codec: 'none' | 'deflate' = 'none'): Promise<Uint8Array> {
  return encodeSegment({ tableName: 'tbl', epoch: 1n, writerNodeId: 'w', txns, codec });
}

const basic = () =>
  segmentOf([
    txn(5n, [col({ type: 'timestamp', values: BigInt64Array.of(10n, 20n) }, null, 'timestamp')]),
    txn(6n, [col({ type: 'long', values: BigInt64Array.of(1n) })]),
  ]);

async function decodeError(bytes: Uint8Array, limits?: Partial<SegmentLimits>): Promise<unknown> {
  return decodeSegment(bytes, limits).then(
    () => undefined,
    (error: unknown) => error,
  );
}

async function expectCorrupt(
  bytes: Uint8Array,
  message: RegExp,
  limits?: Partial<SegmentLimits>,
): Promise<void> {
  const error = await decodeError(bytes, limits);
  expect(error, 'decode should fail').toBeInstanceOf(CorruptSegmentError);
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message).toMatch(/at (object|body) offset \d+/);
}

/** Rewrites header bytes, then recomputes the header and trailer checksums (so the field check fires). */
function withHeader(segment: Uint8Array, edit: (view: DataView, header: Uint8Array) => void): Uint8Array {
  const copy = segment.slice();
  const headerBytes = new DataView(copy.buffer).getUint16(HEADER.headerBytes, true);
  edit(new DataView(copy.buffer), copy);
  resealHeaderChecksum(copy.subarray(0, headerBytes));
  return resealTrailer(copy);
}

/** Rewrites record `index` of a codec-none segment, then reseals record, header and trailer. */
function withRecord(
  segment: Uint8Array,
  index: number,
  edit: (record: Uint8Array, view: DataView) => Uint8Array | undefined,
  keepLength = false,
) {
  const { header, rawBody } = segmentParts(segment);
  const records = splitRecords(rawBody);
  const record = records[index]!.slice();
  const edited = edit(record, new DataView(record.buffer)) ?? record;
  records[index] = resealRecord(edited, keepLength);
  return resealSegment(header, concatBytes(records));
}

/** An edit that sets the byte at `at` (negative: from the end) to `value`. */
function poke(at: number, value: number) {
  return (record: Uint8Array): undefined => {
    record[at < 0 ? record.length + at : at] = value;
  };
}

/** Flips bits of the byte at `at` in place; returns `bytes`. */
function flip(bytes: Uint8Array, at: number, mask = 1): Uint8Array {
  bytes[at] = bytes[at]! ^ mask;
  return bytes;
}

/** Inserts `bytes` into a record at `at` (before its checksum). */
function insert(record: Uint8Array, at: number, bytes: number[]): Uint8Array {
  return concatBytes([record.subarray(0, at), Uint8Array.from(bytes), record.subarray(at)]);
}

describe('header failures', () => {
  test.each<[string, (view: DataView, header: Uint8Array) => void, RegExp]>([
    ['format version 2', (v) => v.setUint16(HEADER.formatVersion, 2, true), /unsupported format version 2/],
    ['unknown codec', (v) => v.setUint8(HEADER.codec, 9), /unknown codec id 9/],
    ['reserved flag bits', (v) => v.setUint8(HEADER.flags, 0x81), /reserved header flags/],
    ['reserved field', (v) => v.setUint16(HEADER.reserved, 1, true), /reserved header field/],
    ['epoch 0', (v) => v.setBigUint64(HEADER.epoch, 0n, true), /epoch 0 is outside/],
    ['epoch past int64', (v) => v.setBigUint64(HEADER.epoch, 2n ** 63n, true), /epoch .* is outside/],
    ['txn 0 first', (v) => v.setBigUint64(HEADER.txnFirst, 0n, true), /txn range 0\.\.6/],
    [
      'last txn not first + count - 1',
      (v) => v.setBigUint64(HEADER.txnLast, 9n, true),
      /does not hold 2 txns/,
    ],
    ['zero txns', (v) => v.setUint32(HEADER.txnCount, 0, true), /txn count 0/],
    [
      '2^31 rows claimed',
      (v) => v.setUint32(HEADER.rowCount, 2 ** 31, true),
      /row count 2147483648 is above maxCellsPerSegment/,
    ],
    [
      'min timestamp above max',
      (v) => v.setBigInt64(HEADER.tsMinUs, 99n, true),
      /timestamp range 99\.\.20 is inconsistent/,
    ],
    ['range values without the flag', (v) => v.setUint8(HEADER.flags, 0), /inconsistent with flags/],
    [
      'raw body above its limit',
      (v) => v.setUint32(HEADER.bodyBytesRaw, 2 ** 30, true),
      /raw body length 1073741824/,
    ],
    [
      'raw body too small for its txns',
      (v) => v.setUint32(HEADER.bodyBytesRaw, 10, true),
      /raw body length 10 is outside 64\.\./,
    ],
    [
      'stored and raw lengths differ for codec none',
      (v) => v.setUint32(HEADER.bodyBytesStored, 100, true),
      /inconsistent with codec none/,
    ],
    ['an empty table name', (v) => v.setUint8(HEADER.tableNameBytes, 0), /table name length 0/],
    [
      'a table name running into the writer id',
      (v) => v.setUint8(HEADER.tableNameBytes, 6),
      /needs .* bytes but only .* remain|writer node id length/,
    ],
    [
      'a table name of invalid UTF-8',
      (_v, h) => h.set([0xc3, 0x28], HEADER.tableName),
      /table name is not valid UTF-8/,
    ],
  ])('%s', async (_name, edit, message) => {
    await expectCorrupt(withHeader(await basic(), edit), message);
  });

  test('size, magic, header length and checksums are checked before the fields', async () => {
    const segment = await basic();
    await expectCorrupt(segment.subarray(0, 40), /segment is 40 bytes, shorter than the minimum 84/);
    await expectCorrupt(segment, /more than maxObjectBytes 100/, { maxObjectBytes: 100 });
    await expectCorrupt(concatBytes([Uint8Array.of(0x50), segment.subarray(1)]), /bad magic/);
    await expectCorrupt(
      withHeader(segment, (v) => v.setUint16(HEADER.headerBytes, 5, true)),
      /header length 5 is outside/,
    );
    await expectCorrupt(flip(segment.slice(), HEADER.epoch), /header checksum mismatch/);
  });

  test('truncation, trailing bytes and the trailer checksum', async () => {
    const segment = await basic();
    await expectCorrupt(
      segment.subarray(0, segment.length - 1),
      /segment truncated: \d+ bytes, header implies/,
    );
    await expectCorrupt(concatBytes([segment, Uint8Array.of(0)]), /segment has trailing bytes/);
    await expectCorrupt(flip(segment.slice(), segment.length - 10, 0x40), /object checksum mismatch/);
    expect(() => decodeSegmentHeader(segment.subarray(0, segment.length - 1))).toThrow(CorruptSegmentError);
  });

  test('decodeSegmentHeader checks only the header: it does not see a flipped body byte', async () => {
    const segment = await basic();
    const flipped = flip(segment.slice(), segment.length - 10, 0x40);
    expect(decodeSegmentHeader(flipped).txnCount).toBe(2);
    await expectCorrupt(flipped, /object checksum mismatch/);
  });

  test('arguments that are not bytes are programmer errors', async () => {
    expect(() => decodeSegmentHeader('abc' as never)).toThrow(/must be a Uint8Array/);
    const error = await decodeError(new Uint8Array(100), { maxObjectBytes: -1 });
    expect(isWalshipError(error, 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('codec failures', () => {
  test('a damaged deflate stream with a valid trailer', async () => {
    const deflated = await segmentOf(
      [txn(1n, [col({ type: 'long', values: BigInt64Array.from({ length: 50 }, (_, i) => BigInt(i)) })])],
      'deflate',
    );
    const headerBytes = new DataView(deflated.buffer).getUint16(HEADER.headerBytes, true);
    const damaged = deflated.slice();
    damaged[headerBytes] = 0xff; // an invalid block type
    await expectCorrupt(resealTrailer(damaged), /deflate body does not decompress/);
  });

  test('a raw length that does not match what the stream holds, in both directions', async () => {
    const deflated = await segmentOf(
      [txn(1n, [col({ type: 'long', values: BigInt64Array.of(1n, 2n, 3n) })])],
      'deflate',
    );
    await expectCorrupt(
      withHeader(deflated, (v) =>
        v.setUint32(HEADER.bodyBytesRaw, v.getUint32(HEADER.bodyBytesRaw, true) + 1, true),
      ),
      /decompressed to \d+ bytes, header declares/,
    );
    await expectCorrupt(
      withHeader(deflated, (v) =>
        v.setUint32(HEADER.bodyBytesRaw, v.getUint32(HEADER.bodyBytesRaw, true) - 1, true),
      ),
      /does not decompress to the declared/,
    );
  });

  test('a decompression bomb stops at the declared raw length', async () => {
    const { header } = segmentParts(await basic());
    header[HEADER.codec] = 1;
    const bomb = new Uint8Array(deflateRawSync(new Uint8Array(64 * 1024 * 1024)));
    const view = new DataView(header.buffer);
    view.setUint32(HEADER.bodyBytesStored, bomb.length, true);
    view.setUint32(HEADER.bodyBytesRaw, 1000, true);
    const segment = resealTrailer(concatBytes([resealHeaderChecksum(header), bomb, new Uint8Array(4)]));
    await expectCorrupt(segment, /does not decompress to the declared 1000 bytes/);
  });

  test('zstd named by a valid header: decodes, or CODEC_UNAVAILABLE where the runtime lacks it', async () => {
    const segment = withHeader(await basic(), (v) => v.setUint8(HEADER.codec, 2));
    expect(decodeSegmentHeader(segment).codec).toBe('zstd');
    const error = await decodeError(segment);
    if (availableCodecs().includes('zstd')) {
      expect(error).toBeInstanceOf(CorruptSegmentError); // the body is not zstd
    } else {
      expect(isWalshipError(error, 'CODEC_UNAVAILABLE')).toBe(true);
    }
  });
});

describe('record failures (checksums resealed, so the parser is what rejects)', () => {
  const longs = (values: bigint[], nulls: Uint8Array | null = null) =>
    segmentOf([txn(1n, [col({ type: 'long', values: BigInt64Array.from(values) }, nulls)])]);
  const typed = (data: ColumnValues, nulls: Uint8Array | null = null) =>
    segmentOf([txn(1n, [col(data, nulls)])]);

  test('a flipped record byte is caught by the record checksum', async () => {
    const { header, rawBody } = segmentParts(await basic());
    flip(rawBody, 40);
    await expectCorrupt(resealSegment(header, rawBody), /record checksum mismatch/);
  });

  test.each<[string, () => Promise<Uint8Array>, RegExp, Partial<SegmentLimits>?]>([
    [
      'a record length past the body',
      async () => withRecord(await basic(), 1, (_r, v) => void v.setUint32(0, 500, true), true),
      /record length 500 .* runs past the body/,
    ],
    [
      'a record length below the fixed fields',
      async () => withRecord(await basic(), 1, (_r, v) => void v.setUint32(0, 3, true), true),
      /record length 3 is below 24/,
    ],
    [
      'a wrong txn number',
      async () => withRecord(await basic(), 1, (_r, v) => void v.setBigUint64(4, 9n, true)),
      /txn number 9 where 6 was expected/,
    ],
    ['an unknown kind', async () => withRecord(await basic(), 0, poke(20, 7)), /unknown txn kind 7/],
    ['kind 0 (zeroed memory)', async () => withRecord(await basic(), 0, poke(20, 0)), /unknown txn kind 0/],
    ['reserved record flags', async () => withRecord(await basic(), 0, poke(21, 2)), /reserved record flags/],
    [
      'a fence with rows',
      async () => withRecord(await basic(), 0, poke(20, 2)),
      /a fence with 2 rows and 1 columns/,
    ],
    [
      'rows without columns',
      async () => withRecord(await basic(), 0, (_r, v) => void v.setUint16(22, 0, true)),
      /2 rows but no columns/,
    ],
    [
      'more columns than the record can hold',
      async () => withRecord(await basic(), 0, (_r, v) => void v.setUint16(22, 2000, true)),
      /2000 column descriptors cannot fit/,
    ],
    [
      'rows above maxRowsPerRecord',
      async () => withRecord(await basic(), 0, (_r, v) => void v.setUint32(24, 2 ** 31, true)),
      /2147483648 rows, above maxRowsPerRecord/,
    ],
    ['an empty column name', async () => withRecord(await basic(), 1, poke(28, 0)), /column 0 name length 0/],
    [
      'a column name of invalid UTF-8',
      async () => withRecord(await basic(), 1, poke(29, 0xff)),
      /column 0 name is not valid UTF-8/,
    ],
    ['an unknown type id', async () => withRecord(await basic(), 1, poke(30, 9)), /unknown type id 9/],
    ['type id 0', async () => withRecord(await basic(), 1, poke(30, 0)), /unknown type id 0/],
    ['reserved column flags', async () => withRecord(await basic(), 1, poke(31, 4)), /reserved flags set/],
    [
      'one row more than the chunk holds',
      async () => withRecord(await basic(), 1, (_r, v) => void v.setUint32(24, 2, true)),
      /values needs 16 bytes but only 8 remain/,
    ],
    [
      'trailing bytes in a record',
      async () => withRecord(await basic(), 1, (r) => insert(r, r.length - 4, [0])),
      /record has 1 trailing bytes/,
    ],
    [
      'null bitmap padding bits',
      async () => withRecord(await longs([1n, 2n], Uint8Array.of(1)), 0, poke(CHUNK, 0b101)),
      /null bitmap has bits set past row 1/,
    ],
    [
      'boolean padding bits',
      async () =>
        withRecord(await typed({ type: 'boolean', values: Uint8Array.of(1) }), 0, poke(CHUNK, 0x81)),
      /boolean values has bits set past row 0/,
    ],
    [
      'a string length above maxStringBytes',
      async () => typed({ type: 'string', values: ['abcdef'] }),
      /is 6 bytes, above maxStringBytes 5/,
      { maxStringBytes: 5 },
    ],
    [
      'a length for a null string',
      async () =>
        withRecord(
          await typed({ type: 'string', values: [null, 'x'] }, Uint8Array.of(1)),
          0,
          (_r, v) => void v.setUint32(CHUNK + 1, 1, true),
        ),
      /string 0 is null but has length 1/,
    ],
    [
      'string lengths past the record',
      async () =>
        withRecord(
          await typed({ type: 'string', values: ['ab'] }),
          0,
          (_r, v) => void v.setUint32(CHUNK, 99, true),
        ),
      /string lengths add up past the end/,
    ],
    [
      'a string of invalid UTF-8',
      async () => withRecord(await typed({ type: 'string', values: ['ab'] }), 0, poke(CHUNK + 4, 0xc0)),
      /string 0 is not valid UTF-8/,
    ],
    [
      'a lone surrogate encoded in UTF-8',
      async () =>
        withRecord(
          await typed({ type: 'string', values: ['abc'] }),
          0,
          (r) => void r.set([0xed, 0xa0, 0x80], CHUNK + 4),
        ),
      /not valid UTF-8/,
    ],
    [
      'a symbol dictionary larger than the rows',
      async () =>
        withRecord(
          await typed({ type: 'symbol', values: ['a'] }),
          0,
          (_r, v) => void v.setUint32(CHUNK, 2, true),
        ),
      /dictionary has 2 entries for 1 rows/,
    ],
    [
      'a symbol index width that is not minimal',
      async () => withRecord(await typed({ type: 'symbol', values: ['a'] }), 0, poke(CHUNK + 4, 2)),
      /index width 2 is not 1/,
    ],
    [
      'a symbol index outside the dictionary',
      async () => withRecord(await typed({ type: 'symbol', values: ['a'] }), 0, poke(-5, 1)),
      /symbol index 1 is outside the 1-entry dictionary/,
    ],
    [
      'an array of 0 dimensions',
      async () =>
        withRecord(
          await typed({ type: 'double_array', values: [{ shape: [1], values: Float64Array.of(1) }] }),
          0,
          poke(CHUNK, 0),
        ),
      /array has 0 dimensions/,
    ],
    [
      'an array of 33 dimensions',
      async () =>
        withRecord(
          await typed({ type: 'double_array', values: [{ shape: [1], values: Float64Array.of(1) }] }),
          0,
          poke(CHUNK, 33),
        ),
      /array has 33 dimensions, not 1\.\.32/,
    ],
    [
      'an array of 2^32-1 elements',
      async () =>
        withRecord(
          await typed({ type: 'double_array', values: [{ shape: [1], values: Float64Array.of(1) }] }),
          0,
          (_r, v) => void v.setUint32(CHUNK + 1, 2 ** 32 - 1, true),
        ),
      /more than maxArrayElements/,
    ],
    [
      'an array with more elements than bytes',
      async () =>
        withRecord(
          await typed({ type: 'double_array', values: [{ shape: [1], values: Float64Array.of(1) }] }),
          0,
          (_r, v) => void v.setUint32(CHUNK + 1, 2, true),
        ),
      /array values needs 16 bytes but only 8 remain/,
    ],
    [
      'a decimal scale of 77',
      async () =>
        withRecord(
          await typed({ type: 'decimal', values: [{ unscaled: 5n, scale: 1 }] }),
          0,
          poke(CHUNK, 77),
        ),
      /decimal scale 77 is above 76/,
    ],
    [
      'a decimal of 0 bytes',
      async () =>
        withRecord(
          await typed({ type: 'decimal', values: [{ unscaled: 5n, scale: 1 }] }),
          0,
          poke(CHUNK + 1, 0),
        ),
      /decimal length 0 is outside 1\.\.32/,
    ],
    [
      'a decimal of 33 bytes',
      async () =>
        withRecord(
          await typed({ type: 'decimal', values: [{ unscaled: 5n, scale: 1 }] }),
          0,
          poke(CHUNK + 1, 33),
        ),
      /decimal length 33/,
    ],
    [
      'too many boxed values',
      async () =>
        typed({
          type: 'decimal',
          values: [
            { unscaled: 5n, scale: 1 },
            { unscaled: 6n, scale: 1 },
          ],
        }),
      /maxBoxedValuesPerSegment 1/,
      { maxBoxedValuesPerSegment: 1 },
    ],
    ['too many cells', async () => basic(), /maxCellsPerSegment 2/, { maxCellsPerSegment: 2 }],
    ['too many column chunks', async () => basic(), /maxColumnsPerSegment 1/, { maxColumnsPerSegment: 1 }],
  ])('%s', async (_name, make, message, limits) => {
    await expectCorrupt(await make(), message, limits);
  });

  test('columns above maxColumnsPerRecord', async () => {
    const two = await segmentOf([
      txn(1n, [
        col({ type: 'long', values: BigInt64Array.of(1n) }, null, 'a'),
        col({ type: 'long', values: BigInt64Array.of(2n) }, null, 'b'),
      ]),
    ]);
    await expectCorrupt(two, /2 columns, above maxColumnsPerRecord 1/, { maxColumnsPerRecord: 1 });
  });

  test('a duplicate column name', async () => {
    const segment = await segmentOf([
      txn(1n, [
        col({ type: 'long', values: BigInt64Array.of(1n) }, null, 'a'),
        col({ type: 'long', values: BigInt64Array.of(2n) }, null, 'b'),
      ]),
    ]);
    await expectCorrupt(withRecord(segment, 0, poke(33, 0x61)), /duplicate column 'a'/);
  });

  test('a claimed 2^31 rows over a 100-byte body fails before allocating', async () => {
    const segment = await longs([1n]);
    const claimed = withRecord(segment, 0, (_r, v) => void v.setUint32(24, 2 ** 31, true));
    const huge = { maxRowsPerRecord: 2 ** 32 - 1, maxCellsPerSegment: 2 ** 32 - 1 };
    expect(claimed.length).toBeLessThan(200);
    await expectCorrupt(claimed, /values needs 17179869184 bytes but only 8 remain/, huge);
  });
});

describe('totals against the header', () => {
  test('bytes after the last record', async () => {
    const { header, rawBody } = segmentParts(await basic());
    await expectCorrupt(
      resealSegment(header, concatBytes([rawBody, new Uint8Array(40)])),
      /40 bytes follow the last of 2 records/,
    );
  });

  test('a missing record', async () => {
    const { header, rawBody } = segmentParts(await basic());
    await expectCorrupt(
      resealSegment(
        header,
        concatBytes([rawBody.subarray(0, splitRecords(rawBody)[0]!.length), new Uint8Array(32)]),
      ),
      /txn record|record length 0/,
    );
  });

  test('row count and timestamp range', async () => {
    await expectCorrupt(
      withHeader(await basic(), (v) => v.setUint32(HEADER.rowCount, 4, true)),
      /records hold 3 rows, header says 4/,
    );
    await expectCorrupt(
      withHeader(await basic(), (v) => v.setBigInt64(HEADER.tsMaxUs, 21n, true)),
      /timestamp range 10\.\.20 differs from the header's 10\.\.21/,
    );
  });
});
