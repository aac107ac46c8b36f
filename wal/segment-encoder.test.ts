import { describe, expect, test } from 'vitest';
import { CorruptSegmentError, isWalshipError } from '../core/index.js';
import {
  availableCodecs,
  type ColumnData,
  decodeSegment,
  type EncodeSegmentInput,
  encodeSegment,
  encodeTxnRecord,
  encodeTxnRecordInSlices,
  type SegmentLimits,
  sealSegment,
  type TxnRecord,
  TxnRecordEncoder,
} from './index.js';
import { resolveLimits } from './limits.js';
import { designatedTimestampRange } from './timestamp-range.js';

function longColumn(name: string, values: bigint[], nulls: Uint8Array | null = null): ColumnData {
  return { name, addedInTxn: false, nulls, data: { type: 'long', values: BigInt64Array.from(values) } };
}

function txn(
  number: bigint,
  columns: ColumnData[],
  rowCount = columns[0]?.data.values.length ?? 0,
): TxnRecord {
  return { txn: number, commitTimeUs: 0n, kind: 'data', rowCount, columns };
}

function input(overrides: Partial<EncodeSegmentInput> = {}): EncodeSegmentInput {
  return {
    tableName: 't',
    epoch: 1n,
    writerNodeId: 'n',
    txns: [txn(1n, [longColumn('a', [1n, 2n])])],
    ...overrides,
  };
}

function withColumn(column: ColumnData, rowCount = column.data.values.length): EncodeSegmentInput {
  return input({ txns: [txn(1n, [column], rowCount)] });
}

async function expectInvalid(segment: EncodeSegmentInput, message: RegExp): Promise<void> {
  const error = await encodeSegment(segment).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isWalshipError(error, 'INVALID_ARGUMENT'), String(error)).toBe(true);
  expect((error as Error).message).toMatch(message);
}

describe('encodeSegment rejects bad input with InvalidArgumentError', () => {
  const cases: [string, EncodeSegmentInput, RegExp][] = [
    ['no txns', input({ txns: [] }), /at least one txn/],
    ['a gap in txn numbers', input({ txns: [txn(1n, []), txn(3n, [])] }), /index 1 is 3, expected 1 \+ 1/],
    ['txn numbers out of order', input({ txns: [txn(2n, []), txn(1n, [])] }), /must be consecutive/],
    ['txn 0', input({ txns: [txn(0n, [])] }), /txn number 0 must be a bigint in 1\.\.2\^63-1/],
    ['a txn number past int64', input({ txns: [txn(2n ** 63n, [])] }), /1\.\.2\^63-1/],
    [
      'a number, not a bigint, txn',
      input({ txns: [{ ...txn(1n, []), txn: 1 as unknown as bigint }] }),
      /consecutive|bigint/,
    ],
    ['epoch 0', input({ epoch: 0n }), /epoch 0/],
    ['an empty table name', input({ tableName: '' }), /tableName '' is 0 UTF-8 bytes/],
    ['a 128-byte table name', input({ tableName: 'é'.repeat(64) }), /is 128 UTF-8 bytes, not 1\.\.127/],
    [
      'a writer id with a lone surrogate',
      input({ writerNodeId: 'a\ud800' }),
      /writerNodeId must be a well-formed string/,
    ],
    ['more rows than values', withColumn(longColumn('a', [1n]), 2), /has 1 values for 2 rows/],
    ['fewer rows than values', withColumn(longColumn('a', [1n, 2n, 3n]), 2), /has 3 values for 2 rows/],
    ['rows without columns', input({ txns: [txn(1n, [], 3)] }), /3 rows but no columns/],
    ['a negative row count', input({ txns: [txn(1n, [], -1)] }), /rowCount -1/],
    [
      'a fence with rows',
      input({
        txns: [{ txn: 1n, commitTimeUs: 0n, kind: 'fence', rowCount: 1, columns: [longColumn('a', [1n])] }],
      }),
      /a fence has no rows and no columns/,
    ],
    [
      'an unknown kind',
      input({ txns: [{ ...txn(1n, []), kind: 'other' as 'data' }] }),
      /unknown kind 'other'/,
    ],
    [
      'duplicate column names',
      input({ txns: [txn(1n, [longColumn('a', [1n]), longColumn('a', [2n])])] }),
      /duplicate column 'a'/,
    ],
    ['an empty column name', withColumn(longColumn('', [1n])), /name is 0 UTF-8 bytes/],
    ['a 128-byte column name', withColumn(longColumn('x'.repeat(128), [1n])), /name is 128 UTF-8 bytes/],
    [
      'a null bitmap of the wrong length',
      withColumn(longColumn('a', [1n, 2n], new Uint8Array(2))),
      /Uint8Array of 1 bytes/,
    ],
    [
      'null bits past the last row',
      withColumn(longColumn('a', [1n, 2n], Uint8Array.of(0b100))),
      /bits set past row 1/,
    ],
    [
      'a Float64Array for a long',
      withColumn({ ...longColumn('a', []), data: { type: 'long', values: new Float64Array(1) as never } }, 1),
      /must be a BigInt64Array/,
    ],
    [
      'an unknown type',
      withColumn({ ...longColumn('a', [1n]), data: { type: 'int', values: [] } as never }),
      /unknown type/,
    ],
    [
      'a boolean of 2',
      withColumn({
        name: 'b',
        addedInTxn: false,
        nulls: null,
        data: { type: 'boolean', values: Uint8Array.of(0, 2) },
      }),
      /row 1: boolean value 2/,
    ],
    [
      'a null string in a non-null row',
      withColumn({
        name: 's',
        addedInTxn: false,
        nulls: null,
        data: { type: 'string', values: ['a', null] },
      }),
      /row 1: expected a string/,
    ],
    [
      'a number in a symbol column',
      withColumn({
        name: 's',
        addedInTxn: false,
        nulls: null,
        data: { type: 'symbol', values: [5 as never] },
      }),
      /row 0: expected a string/,
    ],
    [
      'a lone surrogate in a string',
      withColumn({ name: 's', addedInTxn: false, nulls: null, data: { type: 'string', values: ['\udc00'] } }),
      /lone surrogate/,
    ],
    [
      'a null array in a non-null row',
      withColumn({
        name: 'a',
        addedInTxn: false,
        nulls: null,
        data: { type: 'double_array', values: [null] },
      }),
      /row 0: expected a value/,
    ],
    [
      'an array whose values do not match its shape',
      withColumn({
        name: 'a',
        addedInTxn: false,
        nulls: null,
        data: { type: 'double_array', values: [{ shape: [2, 2], values: new Float64Array(3) }] },
      }),
      /Float64Array of 4 elements/,
    ],
    [
      'an array with no dimensions',
      withColumn({
        name: 'a',
        addedInTxn: false,
        nulls: null,
        data: { type: 'double_array', values: [{ shape: [], values: new Float64Array(1) }] },
      }),
      /1\.\.32 dimensions/,
    ],
    [
      'an array with a fractional dimension',
      withColumn({
        name: 'a',
        addedInTxn: false,
        nulls: null,
        data: { type: 'double_array', values: [{ shape: [1.5], values: new Float64Array(1) }] },
      }),
      /dimension 1.5/,
    ],
    [
      'a decimal scale of 77',
      withColumn({
        name: 'd',
        addedInTxn: false,
        nulls: null,
        data: { type: 'decimal', values: [{ unscaled: 1n, scale: 77 }] },
      }),
      /decimal scale 77/,
    ],
    [
      'a decimal wider than 256 bits',
      withColumn({
        name: 'd',
        addedInTxn: false,
        nulls: null,
        data: { type: 'decimal', values: [{ unscaled: 2n ** 255n, scale: 0 }] },
      }),
      /needs 33 bytes, above maxDecimalBytes 32/,
    ],
    ['an unknown codec', input({ codec: 'lz4' as never }), /unknown codec 'lz4'/],
    ['a deflate level of 10', input({ codec: 'deflate', compressionLevel: 10 }), /0\.\.9, got 10/],
    [
      'a commit time past int64',
      input({ txns: [{ ...txn(1n, []), commitTimeUs: 2n ** 63n }] }),
      /commitTimeUs must be a bigint within int64/,
    ],
  ];
  test.each(cases)('%s', async (_name, segment, message) => {
    await expectInvalid(segment, message);
  });
});

describe('encodeSegment enforces every limit', () => {
  const strings = (values: string[]): ColumnData => ({
    name: 's',
    addedInTxn: false,
    nulls: null,
    data: { type: 'string', values },
  });
  const arrays = (shape: number[]): ColumnData => ({
    name: 'a',
    addedInTxn: false,
    nulls: null,
    data: {
      type: 'double_array',
      values: [{ shape, values: new Float64Array(shape.reduce((a, b) => a * b, 1)) }],
    },
  });
  const cases: [string, Partial<SegmentLimits>, EncodeSegmentInput, RegExp][] = [
    [
      'maxTxnsPerSegment',
      { maxTxnsPerSegment: 2 },
      input({ txns: [txn(1n, []), txn(2n, []), txn(3n, [])] }),
      /3 txns, above maxTxnsPerSegment 2/,
    ],
    [
      'maxColumnsPerRecord',
      { maxColumnsPerRecord: 1 },
      input({ txns: [txn(1n, [longColumn('a', [1n]), longColumn('b', [1n])])] }),
      /at most 1/,
    ],
    ['maxRowsPerRecord', { maxRowsPerRecord: 1 }, input(), /rowCount 2 is not an integer in 0\.\.1/],
    [
      'maxCellsPerSegment',
      { maxCellsPerSegment: 3 },
      input({ txns: [txn(1n, [longColumn('a', [1n, 2n])]), txn(2n, [longColumn('a', [1n, 2n])])] }),
      /maxCellsPerSegment 3/,
    ],
    [
      'maxColumnsPerSegment',
      { maxColumnsPerSegment: 1 },
      input({ txns: [txn(1n, [longColumn('a', [])]), txn(2n, [longColumn('a', [])])] }),
      /maxColumnsPerSegment 1/,
    ],
    [
      'maxBoxedValuesPerSegment',
      { maxBoxedValuesPerSegment: 1 },
      withColumn({
        name: 'd',
        addedInTxn: false,
        nulls: null,
        data: {
          type: 'decimal',
          values: [
            { unscaled: 1n, scale: 0 },
            { unscaled: 2n, scale: 0 },
          ],
        },
      }),
      /maxBoxedValuesPerSegment 1/,
    ],
    [
      'maxStringBytes',
      { maxStringBytes: 3 },
      withColumn(strings(['abc', 'ééé'])),
      /row 1: string is 6 UTF-8 bytes, above maxStringBytes 3/,
    ],
    [
      'maxStringBytes before encoding',
      { maxStringBytes: 3 },
      withColumn(strings(['abcd'])),
      /row 0: string is longer than maxStringBytes 3/,
    ],
    ['maxArrayDims', { maxArrayDims: 2 }, withColumn(arrays([1, 1, 1])), /1\.\.2 dimensions/],
    ['maxArrayElements', { maxArrayElements: 5 }, withColumn(arrays([2, 3])), /more than maxArrayElements 5/],
    ['maxNameBytes', { maxNameBytes: 3 }, input({ tableName: 'abcd' }), /4 UTF-8 bytes, not 1\.\.3/],
    ['maxRawBodyBytes', { maxRawBodyBytes: 40 }, input(), /exceed maxRawBodyBytes 40/],
    ['maxObjectBytes', { maxObjectBytes: 100 }, input({ codec: 'none' }), /above maxObjectBytes 100/],
  ];
  test.each(cases)('%s', async (_name, limits, segment, message) => {
    await expectInvalid({ ...segment, limits }, message);
  });

  test('the same segment encodes under the default limits', async () => {
    const bytes = await encodeSegment(input());
    expect((await decodeSegment(bytes)).txns[0]!.rowCount).toBe(2);
  });

  test('limit overrides must be positive integers within the format', () => {
    expect(() => resolveLimits({ maxNameBytes: 0 })).toThrow(/positive integer/);
    expect(() => resolveLimits({ maxNameBytes: 1.5 })).toThrow(/positive integer/);
    expect(() => resolveLimits({ maxNameBytes: 256 })).toThrow(/ceiling 255/);
    expect(() => resolveLimits({ maxColumnsPerRecord: 70_000 })).toThrow(/ceiling 65535/);
    expect(() => resolveLimits({ maxTypo: 1 } as never)).toThrow(/unknown segment limit 'maxTypo'/);
    expect(() => resolveLimits(null as never)).toThrow(/must be an object/);
    expect(resolveLimits({ maxNameBytes: 255 }).maxNameBytes).toBe(255);
  });
});

test('zstd either round-trips or fails with CODEC_UNAVAILABLE, as availableCodecs() says', async () => {
  const outcome = await encodeSegment(input({ codec: 'zstd' })).then(
    async (bytes) => (await decodeSegment(bytes)).header.codec,
    (e: unknown) => e,
  );
  if (availableCodecs().includes('zstd')) {
    expect(outcome).toBe('zstd');
  } else {
    expect(isWalshipError(outcome, 'CODEC_UNAVAILABLE')).toBe(true);
    expect((outcome as { kind: string }).kind).toBe('unavailable');
  }
});

describe('sealSegment builds a segment from encoded records', () => {
  const txns = [txn(4n, [longColumn('a', [1n, 2n])]), txn(5n, []), txn(6n, [longColumn('a', [3n])])];
  const identity = { tableName: 't', epoch: 2n, writerNodeId: 'n' };

  test('byte-identical to encodeSegment on the same txns, for every codec', async () => {
    for (const codec of availableCodecs()) {
      const sealed = await sealSegment({ ...identity, codec, records: txns.map((t) => encodeTxnRecord(t)) });
      const encoded = await encodeSegment({ ...identity, codec, txns });
      expect(Buffer.compare(sealed, encoded), codec).toBe(0);
    }
  });

  test('rejects bad input as InvalidArgumentError', async () => {
    const records = txns.map((t) => encodeTxnRecord(t));
    const invalid = async (input: Parameters<typeof sealSegment>[0], message: RegExp) => {
      const error = await sealSegment(input).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isWalshipError(error, 'INVALID_ARGUMENT'), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    await invalid({ ...identity, records: [] }, /at least one record/);
    await invalid({ ...identity, records: [records[0]!, records[2]!] }, /record 1 holds txn 6 after txn 4/);
    await invalid({ ...identity, records: ['x' as never] }, /must be a Uint8Array/);
    await invalid({ ...identity, records, limits: { maxRawBodyBytes: 50 } }, /above maxRawBodyBytes 50/);
    await invalid({ ...identity, epoch: 0n, records }, /epoch 0/);
  });

  test('rejects damaged records as CorruptSegmentError naming the record', async () => {
    const records = txns.map((t) => encodeTxnRecord(t));
    const corrupt = async (bad: Uint8Array[], message: RegExp) => {
      const error = await sealSegment({ ...identity, records: bad }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(CorruptSegmentError);
      expect((error as Error).message).toMatch(message);
    };
    const flipped = records[1]!.slice();
    flipped[25] = flipped[25]! ^ 1;
    await corrupt([records[0]!, flipped, records[2]!], /^record 1: record checksum mismatch/);
    await corrupt([concat(records[0]!, records[1]!)], /record 0 is \d+ bytes but holds a record of \d+/);
    await corrupt([records[0]!, records[1]!.subarray(0, 20), records[2]!], /record 1: /);
  });

  describe("with the writer's facts (`known`): no decode", () => {
    /** Records whose designated timestamp spans the int64 range, so the header's range is exact. */
    const stamped = [
      txn(7n, [longColumn('timestamp', [5n, -(2n ** 63n), 2n ** 53n + 1n])]),
      txn(8n, []),
      txn(9n, [longColumn('timestamp', [2n ** 63n - 1n, 0n])]),
    ].map((t) => ({
      ...t,
      columns: t.columns.map((c) => ({
        ...c,
        data: { type: 'timestamp' as const, values: c.data.values as BigInt64Array },
      })),
    }));
    const known = stamped.map((t) => ({ rowCount: t.rowCount, tsRange: designatedTimestampRange(t) }));

    test('byte-identical to the decoding seal and to encodeSegment', async () => {
      const records = stamped.map((t) => encodeTxnRecord(t));
      const withKnown = await sealSegment({ ...identity, records, known });
      expect(Buffer.compare(withKnown, await sealSegment({ ...identity, records }))).toBe(0);
      expect(Buffer.compare(withKnown, await encodeSegment({ ...identity, txns: stamped }))).toBe(0);
      expect(known[0]!.tsRange).toEqual({ minUs: -(2n ** 63n), maxUs: 2n ** 53n + 1n });
    });

    test('still refuses damaged records, gaps and a row count its writer did not build', async () => {
      const records = stamped.map((t) => encodeTxnRecord(t));
      const refused = async (bad: Uint8Array[], facts: typeof known, message: RegExp) => {
        const error = await sealSegment({ ...identity, records: bad, known: facts }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, String(error)).toBeInstanceOf(Error);
        expect((error as Error).message).toMatch(message);
      };
      const flipped = records[2]!.slice();
      flipped[records[2]!.length - 9] = flipped[records[2]!.length - 9]! ^ 1;
      await refused([records[0]!, records[1]!, flipped], known, /^record 2: record checksum mismatch/);
      await refused([records[0]!, records[2]!], [known[0]!, known[2]!], /record 1 holds txn 9 after txn 7/);
      const lying = [known[0]!, { ...known[1]!, rowCount: 1 }, known[2]!];
      await refused(records, lying, /record 1 holds 0 rows; its writer built 1/);
      await refused(
        [concat(records[0]!, records[1]!)],
        [known[0]!],
        /record 0 is \d+ bytes but holds a record of \d+/,
      );
    });
  });
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

describe('TxnRecordEncoder', () => {
  test('writes the bytes encodeTxnRecord writes, record after record, in bytes of their own', () => {
    const big = 200_000; // 1.6 MiB of longs: grows the scratch buffer past what it keeps
    const records = [
      txn(1n, [longColumn('timestamp', [1n, 2n]), longColumn('a', [3n, 4n])]),
      txn(2n, [longColumn('timestamp', [5n]), longColumn('é', [6n]), longColumn('a', [7n])]),
      txn(3n, [
        longColumn(
          'timestamp',
          Array.from({ length: big }, (_, i) => BigInt(i)),
        ),
      ]),
      txn(4n, [longColumn('timestamp', [8n, 9n, 10n])]),
      { txn: 5n, commitTimeUs: 0n, kind: 'fence' as const, rowCount: 0, columns: [] },
    ];
    const encoder = new TxnRecordEncoder();
    const encoded = records.map((record) => encoder.encode(record));
    expect(encoded).toEqual(records.map((record) => encodeTxnRecord(record)));
    // Later records did not overwrite earlier ones: no two share a byte (small ones may share a
    // pooled ArrayBuffer, never a range of it).
    expect(encoded[0]).toEqual(encodeTxnRecord(records[0]!));
    const ranges = encoded.map((bytes) => ({
      buffer: bytes.buffer,
      from: bytes.byteOffset,
      to: bytes.byteOffset + bytes.length,
    }));
    for (const [i, a] of ranges.entries())
      for (const b of ranges.slice(i + 1))
        expect(a.buffer !== b.buffer || a.to <= b.from || b.to <= a.from).toBe(true);
  });

  test('applies the limits to each record on its own and goes on after a refused one', () => {
    const limits = { maxRowsPerRecord: 2 };
    const encoder = new TxnRecordEncoder(limits);
    const ok = txn(1n, [longColumn('timestamp', [1n, 2n])]);
    const encode = (record: TxnRecord) => () => encoder.encode(record);
    // Two records of two rows each: within a per-record limit of 2 rows, whatever came before.
    expect(encoder.encode(ok)).toEqual(encodeTxnRecord(ok, limits));
    expect(encode(txn(2n, [longColumn('timestamp', [1n, 2n, 3n])]))).toThrow(
      /rowCount 3 is not an integer in 0\.\.2/,
    );
    expect(encoder.encode(ok)).toEqual(encodeTxnRecord(ok, limits));
  });
});

describe('encodeTxnRecordInSlices', () => {
  test('writes the bytes encodeTxnRecord writes, pausing inside long columns', async () => {
    const rows = 3 * 8192 + 5;
    const nulls = new Uint8Array(Math.ceil(rows / 8));
    for (let row = 0; row < rows; row += 3) nulls[row >>> 3]! |= 1 << (row & 7);
    const record = txn(1n, [
      longColumn(
        'timestamp',
        Array.from({ length: rows }, (_, i) => BigInt(i)),
      ),
      longColumn(
        'n',
        Array.from({ length: rows }, (_, i) => BigInt(i * 7)),
        nulls,
      ),
      {
        name: 's',
        addedInTxn: true,
        nulls,
        data: {
          type: 'string',
          values: Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? null : `v${i}`)),
        },
      },
      {
        name: 'sym',
        addedInTxn: true,
        nulls: null,
        data: { type: 'symbol', values: Array.from({ length: rows }, (_, i) => `k${i % 300}`) },
      },
    ]);
    expect(record.rowCount).toBe(rows);
    let pauses = 0;
    const sliced = await encodeTxnRecordInSlices(record, {
      pause: async () => {
        pauses++;
      },
    });
    expect(sliced).toStrictEqual(encodeTxnRecord(record));
    // At least one pause per column and more inside the long ones.
    expect(pauses).toBeGreaterThan(record.columns.length);
    // Sealing verifies it in slices too, and writes what encodeSegment writes.
    const identity = { tableName: 't', epoch: 1n, writerNodeId: 'n' };
    expect(await sealSegment({ ...identity, records: [sliced] })).toStrictEqual(
      await encodeSegment({ ...identity, txns: [record] }),
    );
  });
});
