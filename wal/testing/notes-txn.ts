import type { ColumnData, TxnRecord } from '../txn-record.js';

/**
 * A data txn of one row per note: a `timestamp` column (`timeUs + i`) and a string column `note`.
 * For tests that need a table of a given size (random notes) or of known text.
 */
export function notesTxn(txn: bigint, notes: readonly string[], timeUs: bigint): TxnRecord {
  const columns: ColumnData[] = [
    {
      name: 'timestamp',
      addedInTxn: false,
      nulls: null,
      data: { type: 'timestamp', values: BigInt64Array.from(notes, (_, i) => timeUs + BigInt(i)) },
    },
    { name: 'note', addedInTxn: false, nulls: null, data: { type: 'string', values: [...notes] } },
  ];
  return { txn, commitTimeUs: timeUs, kind: 'data', rowCount: notes.length, columns };
}
