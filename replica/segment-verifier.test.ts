import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalshipError, seededRandom, type WalshipError } from '../core/index.js';
import { segmentKey, stagedKey } from '../layout/index.js';
import type { LogEntry } from '../sequencer/sequencer-store.js';
import { tableKey } from '../table/index.js';
import { decodeSegmentHeader, encodeSegment, type TxnRecord } from '../wal/index.js';
import { randomTxns } from '../wal/testing/random-txns.js';
import {
  checkEpochOrder,
  type SegmentExpectation,
  type StagedEntry,
  verifySegment,
  verifyStagedSegment,
} from './segment-verifier.js';

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
    expect(error.details).toEqual({ key: segmentKey(tableKey('trades'), 1n), table: 'trades' });
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
      expect(error.details.key).toBe(segmentKey(tableKey('t'), slot));
    }
    await expect(verifySegment(bytes, expectation('t', 3n))).resolves.toBeDefined();
  });

  it('property: random byte flips of a valid segment verify to the same records or throw a WalshipError of kind data', async () => {
    const random = seededRandom(20_240_601);
    const samples: { bytes: Uint8Array; txns: TxnRecord[]; expect: SegmentExpectation }[] = [];
    for (let i = 0; i < 6; i++) {
      const txns = randomTxns(random, {
        txnFirst: BigInt(1 + i * 10),
        txnCount: 1 + (i % 3),
        tableOps: true,
      });
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

describe('verifySegment and staged segments (RFC-0003)', () => {
  it('SEGMENT_STAGED (kind data) for a staged segment in the numbered chain, even with matching numbers', async () => {
    const bytes = await encodeSegment({
      tableName: 't',
      epoch: 1n,
      writerNodeId: 'p2',
      txns: txnRange(1n, 2),
      staged: true,
    });
    const error = await verifyError(verifySegment(bytes, expectation('t', 1n)));
    expect([error.code, error.kind]).toEqual(['SEGMENT_STAGED', 'data']);
    expect(error.message).toContain(segmentKey(tableKey('t'), 1n));
    expect(error.message).toMatch(/staged segment .* sitting in the numbered chain/);
    expect(error.details).toEqual({ key: segmentKey(tableKey('t'), 1n), table: 't' });
  });
});

/** A writer's staged segment of local txns 4711..4713 and the entry that numbers it 1042..1044. */
async function stagedSample(
  overrides: { tableName?: string; writer?: string; epoch?: bigint; count?: number; staged?: boolean } = {},
): Promise<{ bytes: Uint8Array; entry: LogEntry; txns: TxnRecord[] }> {
  const txns = txnRange(4711n, overrides.count ?? 3);
  const bytes = await encodeSegment({
    tableName: overrides.tableName ?? 'Trades',
    epoch: overrides.epoch ?? 3n,
    writerNodeId: overrides.writer ?? 'p2',
    txns,
    codec: 'none',
    staged: overrides.staged ?? true,
  });
  const entry: LogEntry = {
    table: tableKey('trades'),
    txnFirst: 1042n,
    txnLast: 1042n + BigInt(txns.length) - 1n,
    staged: stagedKey(tableKey('trades'), 'p2', 3n, 317n),
    bytes: bytes.length,
    crc32: decodeSegmentHeader(bytes).objectChecksum,
    writer: 'p2',
    writerEpoch: 3n,
    batchSeq: 317n,
    committedAtMs: 1_767_225_600_123,
  };
  return { bytes, entry, txns };
}

function stagedExpect(entry: StagedEntry) {
  return { objectKey: entry.staged, entry };
}

describe('verifyStagedSegment', () => {
  it('renumbers record i to entry.txnFirst + i and keeps the values', async () => {
    const { bytes, entry, txns } = await stagedSample();
    const verified = await verifyStagedSegment(bytes, stagedExpect(entry));
    expect(verified.txns.map((t) => t.txn)).toEqual([1042n, 1043n, 1044n]);
    expect(verified.header).toMatchObject({ txnFirst: 1042n, txnLast: 1044n, txnCount: 3, staged: true });
    expect(verified.stagedTxnFirst).toBe(4711n);
    expect(verified.txns.map((t) => t.columns[1]!.data.values)).toEqual(
      txns.map((t) => t.columns[1]!.data.values),
    );
    expect(verified.txns.map((t) => t.commitTimeUs)).toEqual(txns.map((t) => t.commitTimeUs));
  });

  it('SEGMENT_ENTRY_MISMATCH (kind data) when size or checksum is not the entry’s', async () => {
    const { bytes, entry } = await stagedSample();
    const sized = await verifyError(
      verifyStagedSegment(bytes, stagedExpect({ ...entry, bytes: entry.bytes + 1 })),
    );
    expect([sized.code, sized.kind]).toEqual(['SEGMENT_ENTRY_MISMATCH', 'data']);
    expect(sized.message).toContain(`is ${bytes.length} bytes, its log entry says ${bytes.length + 1}`);
    expect(sized.details.key).toBe(entry.staged);
    // The entry recorded another object checksum: the object under the key is not the one it numbered.
    const crc32 = (entry.crc32 ^ 0x0100_0000) >>> 0;
    const swapped = await verifyError(verifyStagedSegment(bytes, stagedExpect({ ...entry, crc32 })));
    expect([swapped.code, swapped.kind]).toEqual(['SEGMENT_ENTRY_MISMATCH', 'data']);
    expect(swapped.message).toContain(`has object checksum ${entry.crc32}, its log entry says ${crc32}`);
  });

  it('CORRUPT_SEGMENT (kind data) for damaged bytes of the right size', async () => {
    const { bytes, entry } = await stagedSample();
    const error = await verifyError(verifyStagedSegment(flip(bytes, bytes.length >> 1), stagedExpect(entry)));
    expect([error.code, error.kind]).toEqual(['CORRUPT_SEGMENT', 'data']);
    expect(error.message).toContain(entry.staged);
  });

  it('SEGMENT_NOT_STAGED (kind data) when the entry points at a numbered segment', async () => {
    const { bytes, entry } = await stagedSample({ staged: false });
    const error = await verifyError(verifyStagedSegment(bytes, stagedExpect(entry)));
    expect([error.code, error.kind]).toEqual(['SEGMENT_NOT_STAGED', 'data']);
  });

  it('SEGMENT_WRONG_TABLE (kind data) for a segment of another table', async () => {
    const { bytes, entry } = await stagedSample({ tableName: 'quotes' });
    const error = await verifyError(verifyStagedSegment(bytes, stagedExpect(entry)));
    expect([error.code, error.kind]).toEqual(['SEGMENT_WRONG_TABLE', 'data']);
    expect(error.message).toContain('"quotes"');
  });

  it('SEGMENT_ENTRY_MISMATCH (kind data) for another writer or writer epoch', async () => {
    for (const overrides of [{ writer: 'p3' }, { epoch: 4n }]) {
      const { bytes, entry } = await stagedSample(overrides);
      const error = await verifyError(verifyStagedSegment(bytes, stagedExpect(entry)));
      expect([error.code, error.kind], JSON.stringify(String(Object.values(overrides)))).toEqual([
        'SEGMENT_ENTRY_MISMATCH',
        'data',
      ]);
      expect(error.message).toMatch(/its log entry says "p2" in epoch 3/);
    }
  });

  it('SEGMENT_MISPLACED (kind data) when the entry numbers another count of txns', async () => {
    const { bytes, entry } = await stagedSample();
    for (const txnLast of [1043n, 1045n, 1041n]) {
      const error = await verifyError(verifyStagedSegment(bytes, stagedExpect({ ...entry, txnLast })));
      expect([error.code, error.kind]).toEqual(['SEGMENT_MISPLACED', 'data']);
      expect(error.message).toContain('holds 3 txns');
    }
  });

  it('property: random byte flips verify to the same records or throw a WalshipError of kind data', async () => {
    const { bytes, entry } = await stagedSample();
    const reference = await verifyStagedSegment(bytes, stagedExpect(entry));
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 3,
        }),
        async (flips) => {
          const mangled = bytes.slice();
          for (const [at, mask] of flips) mangled[at] = mangled[at]! ^ mask;
          try {
            expect(await verifyStagedSegment(mangled, stagedExpect(entry))).toEqual(reference);
          } catch (error) {
            if (!isWalshipError(error) || error.kind !== 'data') throw error;
            rejected++;
          }
        },
      ),
      { numRuns: 200, seed: 13 },
    );
    expect(rejected).toBeGreaterThan(0);
  });
});

describe('checkEpochOrder', () => {
  it('accepts the same or a newer epoch', () => {
    expect(() => checkEpochOrder('k', 1n, 0n)).not.toThrow();
    expect(() => checkEpochOrder('k', 2n, 2n)).not.toThrow();
    expect(() => checkEpochOrder('k', 9n, 2n)).not.toThrow();
  });

  it('EPOCH_REGRESSION (kind data) for an older epoch than the one applied', () => {
    const key = segmentKey(tableKey('t'), 7n);
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
