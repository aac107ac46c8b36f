import { describe, expect, test } from 'vitest';
import { CorruptSegmentError, isWalshipError, seededRandom } from '../core/index.js';
import {
  availableCodecs,
  type Codec,
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeTxnRecord,
  sealSegment,
  type TxnRecord,
} from './index.js';
import { HEADER_FLAG_STAGED } from './segment-header.js';
import { HEADER, HEADER_FLAG_TS_RANGE } from './segment-layout.js';
import { randomTxns } from './testing/random-txns.js';
import { resealHeaderChecksum, resealTrailer } from './testing/reseal.js';
import { describeTxnDifference } from './testing/txn-equality.js';

/**
 * Header flag bit 1, `staged` (RFC-0003 amends RFC-0001): a writer's un-numbered segment whose
 * records keep the writer's local txn numbers. Everything without the flag stays byte-identical.
 */

const T0 = 1_700_000_000_000_000n;

/** Two txns a writer's pending queue numbered 4711 and 4712. */
function localTxns(): TxnRecord[] {
  return [4711n, 4712n].map((txn) => ({
    txn,
    commitTimeUs: T0 + txn,
    kind: 'data',
    rowCount: 2,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 4711n,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.of(T0 + txn, T0 + txn + 1n) },
      },
      {
        name: 'v',
        addedInTxn: txn === 4711n,
        nulls: null,
        data: { type: 'long', values: BigInt64Array.of(txn, -txn) },
      },
    ],
  }));
}

const identity = { tableName: 'trades', epoch: 3n, writerNodeId: 'p2' };

/**
 * `localTxns()` as codec none, encoded by the release before the staged flag existed (git HEAD
 * a09699b's wal/, run once): the format of an unstaged segment must never move.
 */
const GOLDEN_UNSTAGED_HEX =
  '895753470d0a1a0a0100560000010000030000000000000067120000000000006812000000000000020000000400000067521e18240a060069521e18240a0600a0000000a0000000067472616465730270320bf80c0348000000671200000000000067521e18240a060001000200020000000974696d657374616d7006010176020167521e18240a060068521e18240a0600671200000000000099edffffffffffff4f02910748000000681200000000000068521e18240a060001000200020000000974696d657374616d7006000176020068521e18240a060069521e18240a0600681200000000000098edffffffffffffaf2d4e1cc6b5c36e';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
}

describe('unstaged segments are unchanged', () => {
  test('byte-identical to the segment the previous release wrote, with staged omitted or false', async () => {
    const omitted = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none' });
    const explicit = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none', staged: false });
    expect(hex(omitted)).toBe(GOLDEN_UNSTAGED_HEX);
    expect(hex(explicit)).toBe(GOLDEN_UNSTAGED_HEX);
    expect(decodeSegmentHeader(omitted).staged).toBe(false);
  });

  test('staged false and omitted encode the same bytes for every codec', async () => {
    for (const codec of availableCodecs()) {
      const omitted = await encodeSegment({ ...identity, txns: localTxns(), codec });
      const explicit = await encodeSegment({ ...identity, txns: localTxns(), codec, staged: false });
      expect(Buffer.compare(omitted, explicit), codec).toBe(0);
    }
  });
});

describe('staged segments', () => {
  test.each(availableCodecs())(
    'round trip with codec %s: local txn numbers, flag bit 1 set',
    async (codec) => {
      const txns = localTxns();
      const bytes = await encodeSegment({ ...identity, txns, codec: codec as Codec, staged: true });
      expect(bytes[HEADER.flags]).toBe(HEADER_FLAG_TS_RANGE | HEADER_FLAG_STAGED);
      const decoded = await decodeSegment(bytes);
      expect(decoded.header.staged).toBe(true);
      expect([decoded.header.txnFirst, decoded.header.txnLast, decoded.header.txnCount]).toEqual([
        4711n,
        4712n,
        2,
      ]);
      expect(decoded.header.epoch).toBe(3n);
      expect(decoded.header.writerNodeId).toBe('p2');
      expect(describeTxnDifference(txns, decoded.txns)).toBeNull();
      expect(decodeSegmentHeader(bytes)).toEqual(decoded.header);
    },
  );

  test('differs from the unstaged segment only in the flags byte and the two checksums', async () => {
    const unstaged = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none' });
    const staged = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none', staged: true });
    expect(staged.length).toBe(unstaged.length);
    const headerBytes = new DataView(unstaged.buffer).getUint16(HEADER.headerBytes, true);
    const differing = [...staged.keys()].filter((i) => staged[i] !== unstaged[i]);
    const allowed = new Set([
      HEADER.flags,
      ...[0, 1, 2, 3].map((k) => headerBytes - 4 + k),
      ...[1, 2, 3, 4].map((k) => staged.length - k),
    ]);
    expect(differing).toContain(HEADER.flags);
    expect(differing.filter((i) => !allowed.has(i))).toEqual([]);
  });

  test('a fence-only staged segment (no timestamp range) sets bit 1 alone', async () => {
    const fence: TxnRecord = { txn: 9n, commitTimeUs: T0, kind: 'fence', rowCount: 0, columns: [] };
    const bytes = await encodeSegment({ ...identity, txns: [fence], codec: 'none', staged: true });
    expect(bytes[HEADER.flags]).toBe(HEADER_FLAG_STAGED);
    const { header } = await decodeSegment(bytes);
    expect([header.staged, header.tsMinUs, header.txnFirst]).toEqual([true, null, 9n]);
  });

  test('sealSegment seals queued records with their local numbers, byte-identical to encodeSegment', async () => {
    const txns = localTxns();
    for (const codec of availableCodecs()) {
      const records = txns.map((t) => encodeTxnRecord(t));
      const sealed = await sealSegment({ ...identity, codec, records, staged: true });
      const encoded = await encodeSegment({ ...identity, codec, txns, staged: true });
      expect(Buffer.compare(sealed, encoded), codec).toBe(0);
      expect(decodeSegmentHeader(sealed).staged).toBe(true);
    }
  });

  test('random txns round-trip staged and unstaged to the same records', async () => {
    const random = seededRandom(0x57a6ed);
    for (let i = 0; i < 40; i++) {
      const txns = randomTxns(random, { txnFirst: BigInt(1 + i * 1000), tableOps: true });
      const staged = await decodeSegment(await encodeSegment({ ...identity, txns, staged: true }));
      const plain = await decodeSegment(await encodeSegment({ ...identity, txns }));
      expect(describeTxnDifference(txns, staged.txns)).toBeNull();
      expect([staged.header.staged, plain.header.staged]).toEqual([true, false]);
      const { staged: _s, objectChecksum: _a, ...stagedRest } = staged.header;
      const { staged: _p, objectChecksum: _b, ...plainRest } = plain.header;
      expect(stagedRest).toEqual(plainRest);
    }
  });

  test('staged must be a boolean', async () => {
    const error = await encodeSegment({ ...identity, txns: localTxns(), staged: 1 as never }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isWalshipError(error, 'INVALID_ARGUMENT')).toBe(true);
    expect((error as Error).message).toMatch(/staged 1 must be a boolean/);
  });
});

describe('the decoder and the flags byte', () => {
  /** `segment` with its flags byte set to `flags`, both checksums recomputed. */
  function withFlags(segment: Uint8Array, flags: number): Uint8Array {
    const copy = segment.slice();
    copy[HEADER.flags] = flags;
    const headerBytes = new DataView(copy.buffer).getUint16(HEADER.headerBytes, true);
    resealHeaderChecksum(copy.subarray(0, headerBytes));
    return resealTrailer(copy);
  }

  test('bit 1 is a known flag now; every higher bit is still reserved', async () => {
    const plain = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none' });
    const staged = await decodeSegment(withFlags(plain, HEADER_FLAG_TS_RANGE | HEADER_FLAG_STAGED));
    expect(staged.header.staged).toBe(true);
    for (let bit = 2; bit < 8; bit++) {
      const flags = HEADER_FLAG_TS_RANGE | HEADER_FLAG_STAGED | (1 << bit);
      const error = await decodeSegment(withFlags(plain, flags)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `bit ${bit}`).toBeInstanceOf(CorruptSegmentError);
      expect((error as Error).message).toMatch(/reserved header flags set/);
    }
  });

  test('clearing bit 1 of a staged segment makes it an ordinary one (the flag is all that differs)', async () => {
    const staged = await encodeSegment({ ...identity, txns: localTxns(), codec: 'none', staged: true });
    const cleared = withFlags(staged, HEADER_FLAG_TS_RANGE);
    expect(hex(cleared)).toBe(GOLDEN_UNSTAGED_HEX);
  });
});
