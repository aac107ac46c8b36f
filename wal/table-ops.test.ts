import { describe, expect, test } from 'vitest';
import { CorruptSegmentError, InvalidArgumentError } from '../core/index.js';
import { decodeSegment, encodeSegment } from './index.js';
import { decodeTxnRecord } from './record-decoder.js';
import { encodeTxnRecord } from './record-encoder.js';
import { resealRecord } from './testing/reseal.js';
import type { TxnRecord } from './txn-record.js';

const base = { txn: 7n, commitTimeUs: 1_700_000_000_000_000n, rowCount: 0, columns: [] };
const ttl: TxnRecord = { ...base, kind: 'ttl', ttl: { count: 3, unit: 'DAY' } };
const trim: TxnRecord = { ...base, kind: 'trim', trimBeforeUs: 1_699_000_000_000_000n };
const drop: TxnRecord = { ...base, kind: 'drop' };

/** Offset of a table op's parameters in an encoded record: after the length, txn, time, kind, flags and counts. */
const PARAMS_AT = 28;

describe('table ops in txn records (RFC-0001 §2.4 kinds 4–6)', () => {
  test.each([ttl, trim, drop])('a $kind txn decodes to itself, alone and in a segment', async (record) => {
    expect(decodeTxnRecord(encodeTxnRecord(record))).toEqual(record);
    const data: TxnRecord = {
      ...base,
      txn: 8n,
      kind: 'data',
      rowCount: 1,
      columns: [
        {
          name: 'timestamp',
          addedInTxn: true,
          nulls: null,
          data: { type: 'timestamp', values: BigInt64Array.of(5n) },
        },
      ],
    };
    const segment = await encodeSegment({
      tableName: 't',
      writerNodeId: 'n1',
      epoch: 1n,
      txns: [record, data],
    });
    const { txns, header } = await decodeSegment(segment);
    expect(txns[0]).toEqual(record);
    // A table op adds no rows and no timestamps to the segment's header.
    expect(header.rowCount).toBe(1);
    expect([header.tsMinUs, header.tsMaxUs]).toEqual([5n, 5n]);
  });

  test('the record sizes: 5 bytes of TTL, 8 of trim bound, none for a drop', () => {
    const plain = encodeTxnRecord(drop).length;
    expect(encodeTxnRecord(ttl).length).toBe(plain + 5);
    expect(encodeTxnRecord(trim).length).toBe(plain + 8);
  });

  test.each<[string, TxnRecord]>([
    ['a ttl txn without its TTL', { ...base, kind: 'ttl' }],
    ['a ttl txn of an unknown unit', { ...base, kind: 'ttl', ttl: { count: 1, unit: 'SECOND' as 'DAY' } }],
    ['a negative TTL', { ...base, kind: 'ttl', ttl: { count: -1, unit: 'DAY' } }],
    ['a trim txn without its bound', { ...base, kind: 'trim' }],
    ['a drop carrying a trim bound', { ...drop, trimBeforeUs: 1n }],
    ['a data txn carrying a TTL', { ...base, kind: 'data', ttl: { count: 1, unit: 'DAY' } }],
    [
      'a ttl txn with a column',
      {
        ...ttl,
        columns: [
          { name: 'v', addedInTxn: false, nulls: null, data: { type: 'long', values: new BigInt64Array(0) } },
        ],
      },
    ],
  ])('the encoder refuses %s', (_, record) => {
    expect(() => encodeTxnRecord(record)).toThrow(InvalidArgumentError);
  });

  test('the decoder refuses an unknown TTL unit and a table op with rows, naming the txn', () => {
    const badUnit = encodeTxnRecord(ttl);
    badUnit[PARAMS_AT + 4] = 9;
    expect(() => decodeTxnRecord(resealRecord(badUnit))).toThrow(CorruptSegmentError);
    expect(() => decodeTxnRecord(resealRecord(badUnit))).toThrow(/txn 7: unknown TTL unit/);
    const withRows = encodeTxnRecord(drop);
    new DataView(withRows.buffer).setUint32(24, 1, true);
    expect(() => decodeTxnRecord(resealRecord(withRows))).toThrow(/a drop txn with 1 rows/);
    const minBound = encodeTxnRecord(trim);
    new DataView(minBound.buffer).setBigInt64(PARAMS_AT, -(1n << 63n), true);
    expect(() => decodeTxnRecord(resealRecord(minBound))).toThrow(/trim bound/);
  });
});
