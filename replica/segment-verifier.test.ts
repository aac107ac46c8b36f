import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalshipError, seededRandom, type WalshipError } from '../core/index.js';
import { tableKey } from '../table/index.js';
import { encodeSegment, segmentKey, type TxnRecord } from '../wal/index.js';
import { randomTxns } from '../wal/testing/random-txns.js';
import { checkEpochOrder, type SegmentExpectation, verifySegment } from './segment-verifier.js';

const T0 = 1_700_000_000_000_000n;

function record(txn: bigint, rows = 3): TxnRecord {
  return {
    txn,
    commitTimeUs: T0 + txn,
    kind: 'data',
    rowCount: rows,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.from({ length: rows }, (_, i) => T0 + BigInt(i)) },
      },
      {
        name: 'v',
        addedInTxn: txn === 1n,
        nulls: null,
        data: {
          type: 'long',
          values: BigInt64Array.from({ length: rows }, (_, i) => txn * 100n + BigInt(i)),
        },
      },
    ],
  };
}

function txnRange(first: bigint, count: number): TxnRecord[] {
  return Array.from({ length: count }, (_, i) => record(first + BigInt(i)));
}

async function segment(tableName: string, txns: TxnRecord[], epoch = 1n): Promise<Uint8Array> {
  return encodeSegment({ tableName, epoch, writerNodeId: 'primary-1', txns });
}

function expectation(table: string, txnFirst: bigint): SegmentExpectation {
  const key = tableKey(table);
  return { objectKey: segmentKey(key, txnFirst), tableKey: key, txnFirst };
}

async function verifyError(promise: Promise<unknown>): Promise<WalshipError> {
  try {
    await promise;
  } catch (error) {
    if (isWalshipError(error)) return error;
    throw error;
  }
  throw new Error('expected verifySegment to throw');
}

describe('verifySegment', () => {
  it('returns the decoded header and txns of a segment in its slot', async () => {
    const txns = txnRange(5n, 3);
    const decoded = await verifySegment(await segment('Trades', txns), expectation('trades', 5n));
    expect(decoded.header.tableName).toBe('Trades');
    expect([decoded.header.txnFirst, decoded.header.txnLast]).toEqual([5n, 7n]);
    expect(decoded.txns.map((t) => t.txn)).toEqual([5n, 6n, 7n]);
    expect(decoded.txns.map((t) => t.columns[1]!.data.values)).toEqual(
      txns.map((t) => t.columns[1]!.data.values),
    );
  });

  it('the table name is compared by key: case and escapes fold the same way', async () => {
    for (const name of ['TRADES', 'Trades', 'trades']) {
      await expect(
        verifySegment(await segment(name, [record(1n)]), expectation('trades', 1n)),
      ).resolves.toBeDefined();
    }
    const odd = 'Prix.€';
    await expect(
      verifySegment(await segment(odd, [record(1n)]), expectation(odd.toLowerCase(), 1n)),
    ).resolves.toBeDefined();
  });

  it('CORRUPT_SEGMENT (kind data) for damaged bytes, naming the object and keeping the cause', async () => {
    const good = await segment('t', txnRange(1n, 2));
    const expect1 = expectation('t', 1n);
    const cases: [string, Uint8Array][] = [
      ['a flipped body byte', flip(good, good.length >> 1)],
      ['a flipped header byte', flip(good, 8)],
      ['a flipped trailer byte', flip(good, good.length - 1)],
      ['truncated', good.subarray(0, good.length - 1)],
      ['empty', new Uint8Array(0)],
      ['not a segment', new TextEncoder().encode('{"hello":"world"}')],
      ['trailing bytes', Uint8Array.from([...good, 0])],
    ];
    for (const [what, bytes] of cases) {
      const error = await verifyError(verifySegment(bytes, expect1));
      expect([what, error.code, error.kind]).toEqual([what, 'CORRUPT_SEGMENT', 'data']);
      expect(error.message).toContain(expect1.objectKey);
      expect(error.details.key).toBe(expect1.objectKey);
      expect(isWalshipError(error.cause, 'CORRUPT_SEGMENT')).toBe(true);
    }
  });

  it('SEGMENT_WRONG_TABLE (kind data) for a segment of another table under this key', async () => {
    const error = await verifyError(
      verifySegment(await segment('quotes', [record(1n)]), expectation('trades', 1n)),
    );
    expect([error.code, error.kind]).toEqual(['SEGMENT_WRONG_TABLE', 'data']);
    expect(error.details).toEqual({ key: segmentKey('trades', 1n), table: 'trades' });
    expect(error.message).toContain('"quotes"');
    // A name whose key only looks alike is another table too.
    const lookalike = await verifyError(
      verifySegment(await segment('a.b', [record(1n)]), expectation('a-b', 1n)),
    );
    expect(lookalike.code).toBe('SEGMENT_WRONG_TABLE');
  });

  it('SEGMENT_MISPLACED (kind data) for a segment that does not start at applied + 1', async () => {
    const bytes = await segment('t', txnRange(3n, 2));
    for (const slot of [1n, 2n, 4n, 5n]) {
      const error = await verifyError(verifySegment(bytes, expectation('t', slot)));
      expect([error.code, error.kind]).toEqual(['SEGMENT_MISPLACED', 'data']);
      expect(error.message).toContain(`starts at txn 3 but sits in the slot of txn ${slot}`);
      expect(error.details.key).toBe(segmentKey('t', slot));
    }
    await expect(verifySegment(bytes, expectation('t', 3n))).resolves.toBeDefined();
  });

  it('property: random byte flips of a valid segment verify to the same records or throw a WalshipError of kind data', async () => {
    const random = seededRandom(20_240_601);
    const samples: { bytes: Uint8Array; txns: TxnRecord[]; expect: SegmentExpectation }[] = [];
    for (let i = 0; i < 6; i++) {
      const txns = randomTxns(random, { txnFirst: BigInt(1 + i * 10), txnCount: 1 + (i % 3) });
      const name = i % 2 === 0 ? 'fuzz' : 'Fuzz.Table';
      samples.push({
        bytes: await segment(name, txns, BigInt(1 + i)),
        txns,
        expect: expectation(name, txns[0]!.txn),
      });
    }
    const reference = await Promise.all(samples.map((s) => verifySegment(s.bytes, s.expect)));
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: samples.length - 1 }),
        fc.array(
          fc.tuple(
            fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
            fc.integer({ min: 1, max: 255 }),
          ),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        async (index, flips) => {
          const sample = samples[index]!;
          const bytes = sample.bytes.slice();
          for (const [where, mask] of flips) {
            const at = Math.floor(where * bytes.length);
            bytes[at] = bytes[at]! ^ mask;
          }
          try {
            const decoded = await verifySegment(bytes, sample.expect);
            // Flips that cancel out leave the same bytes: then the same records must come back.
            expect(decoded).toEqual(reference[index]);
          } catch (error) {
            if (!isWalshipError(error) || error.kind !== 'data') throw error;
            rejected++;
          }
        },
      ),
      { numRuns: 400, seed: 7 },
    );
    expect(rejected).toBeGreaterThan(0);
  });

  it('property: truncations and extensions are rejected as data errors', async () => {
    const bytes = await segment('t', txnRange(1n, 3));
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: bytes.length - 1 }),
        fc.uint8Array({ maxLength: 8 }),
        async (cut, tail) => {
          const mangled = Uint8Array.from([...bytes.subarray(0, cut), ...tail]);
          const error = await verifyError(verifySegment(mangled, expectation('t', 1n)));
          expect(error.kind).toBe('data');
        },
      ),
      { numRuns: 200, seed: 11 },
    );
  });
});

describe('checkEpochOrder', () => {
  it('accepts the same or a newer epoch', () => {
    expect(() => checkEpochOrder('k', 1n, 0n)).not.toThrow();
    expect(() => checkEpochOrder('k', 2n, 2n)).not.toThrow();
    expect(() => checkEpochOrder('k', 9n, 2n)).not.toThrow();
  });

  it('EPOCH_REGRESSION (kind data) for an older epoch than the one applied', () => {
    const key = segmentKey('t', 7n);
    let caught: unknown;
    try {
      checkEpochOrder(key, 1n, 2n);
    } catch (error) {
      caught = error;
    }
    expect(isWalshipError(caught, 'EPOCH_REGRESSION')).toBe(true);
    const error = caught as WalshipError;
    expect(error.kind).toBe('data');
    expect(error.details).toEqual({ key, epoch: 1n, appliedEpoch: 2n });
    expect(error.message).toContain(key);
  });
});

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}
