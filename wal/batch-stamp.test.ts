import { describe, expect, test } from 'vitest';
import { CorruptSegmentError, InvalidArgumentError } from '../core/index.js';
import { BATCH_HASH_BYTES, type BatchStamp } from './batch-stamp.js';
import { decodeSegment, encodeSegment } from './index.js';
import { decodeTxnRecord } from './record-decoder.js';
import { encodeTxnRecord } from './record-encoder.js';
import { resealRecord } from './testing/reseal.js';
import type { TxnRecord } from './txn-record.js';

const stamp = (over: Partial<BatchStamp> = {}): BatchStamp => ({
  writer: 'w-sensor.7',
  seq: 42n,
  parts: 3,
  epoch: 5n,
  hash: Uint8Array.from({ length: BATCH_HASH_BYTES }, (_, i) => i * 7),
  ...over,
});

const record = (batch?: BatchStamp): TxnRecord => ({
  txn: 9n,
  commitTimeUs: 1_700_000_000_000_000n,
  kind: 'data',
  rowCount: 2,
  columns: [
    { name: 'v', addedInTxn: true, nulls: null, data: { type: 'long', values: BigInt64Array.of(1n, 2n) } },
  ],
  ...(batch === undefined ? {} : { batch }),
});

/** Offset of the stamp in an encoded record: after the length, txn, time, kind, flags and counts. */
const STAMP_AT = 28;

describe('batch stamps in txn records (RFC-0011, RFC-0001 §2.4 flag bit 0)', () => {
  test('a stamped record decodes to the same stamp, alone and in a segment', async () => {
    const decoded = decodeTxnRecord(encodeTxnRecord(record(stamp())));
    expect(decoded.batch).toEqual(stamp());
    const segment = await encodeSegment({
      tableName: 't',
      writerNodeId: 'n1',
      epoch: 5n,
      txns: [record(stamp()), { ...record(), txn: 10n }],
    });
    const { txns } = await decodeSegment(segment);
    expect(txns[0]!.batch).toEqual(stamp());
    expect(txns[1]!.batch).toBeUndefined();
  });

  test('a record without a stamp keeps flags 0: the bytes of format 1 before RFC-0011', () => {
    expect(encodeTxnRecord(record())[21]).toBe(0);
    expect(encodeTxnRecord(record(stamp()))[21]).toBe(1);
  });

  test.each<[string, Partial<BatchStamp>]>([
    ['a writer id with a space', { writer: 'w 1' }],
    ['a writer id of 65 characters', { writer: 'w'.repeat(65) }],
    ['an empty writer id', { writer: '' }],
    ['seq 0', { seq: 0n }],
    ['seq past 2^63-1', { seq: 1n << 63n }],
    ['epoch 0', { epoch: 0n }],
    ['parts 0', { parts: 0 }],
    ['a short hash', { hash: new Uint8Array(8) }],
  ])('the encoder refuses %s', (_name, over) => {
    expect(() => encodeTxnRecord(record(stamp(over)))).toThrow(InvalidArgumentError);
  });

  test('the encoder refuses a stamped fence', () => {
    const fence: TxnRecord = {
      txn: 1n,
      commitTimeUs: 0n,
      kind: 'fence',
      rowCount: 0,
      columns: [],
      batch: stamp(),
    };
    expect(() => encodeTxnRecord(fence)).toThrow(/only a data txn carries a batch stamp/);
  });

  const poked = (at: number, value: number) => {
    const bytes = encodeTxnRecord(record(stamp())).slice();
    bytes[at] = value;
    return resealRecord(bytes);
  };

  test.each<[string, () => Uint8Array, RegExp]>([
    ['a writer id byte outside the pattern', () => poked(STAMP_AT + 1, 0x20), /batch writer id is not/],
    ['a writer id length of 0', () => poked(STAMP_AT, 0), /batch writer id is not/],
    ['a writer id length past the record', () => poked(STAMP_AT, 250), /batch stamp|truncated|past/],
    [
      'parts 0',
      () => {
        const bytes = encodeTxnRecord(record(stamp())).slice();
        new DataView(bytes.buffer).setUint32(STAMP_AT + 1 + 10 + 16, 0, true);
        return resealRecord(bytes);
      },
      /batch parts/,
    ],
    ['a stamp on a fence', () => poked(20, 2), /a fence txn with a batch stamp/],
  ])('the decoder refuses %s', (_name, bytes, message) => {
    let error: unknown;
    try {
      decodeTxnRecord(bytes());
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(CorruptSegmentError);
    expect(String(error)).toMatch(message);
  });
});
