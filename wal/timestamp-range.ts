import { isBitSet } from './null-bitmap.js';
import { DESIGNATED_TIMESTAMP_COLUMN, type TxnRecord } from './txn-record.js';

/** The designated timestamp range of records: absent (null) when they have no non-null designated timestamp. */
export interface TimestampRange {
  minUs: bigint;
  maxUs: bigint;
}

/** Min/max over the non-null values of the column named 'timestamp' of type timestamp, if any. */
export function designatedTimestampRange(txn: TxnRecord): TimestampRange | null {
  const column = txn.columns.find(
    (c) => c.name === DESIGNATED_TIMESTAMP_COLUMN && c.data.type === 'timestamp',
  );
  if (column === undefined || column.data.type !== 'timestamp') return null;
  const values = column.data.values;
  let range: TimestampRange | null = null;
  for (let row = 0; row < txn.rowCount; row++) {
    if (column.nulls !== null && isBitSet(column.nulls, row)) continue;
    const value = values[row]!;
    if (range === null) range = { minUs: value, maxUs: value };
    else if (value < range.minUs) range.minUs = value;
    else if (value > range.maxUs) range.maxUs = value;
  }
  return range;
}

/** The union of two ranges (either may be null). */
export function mergeTimestampRanges(
  a: TimestampRange | null,
  b: TimestampRange | null,
): TimestampRange | null {
  if (a === null) return b;
  if (b === null) return a;
  // Bigints: Math.min/max do not apply.
  let { minUs, maxUs } = a;
  if (b.minUs < minUs) minUs = b.minUs;
  if (b.maxUs > maxUs) maxUs = b.maxUs;
  return { minUs, maxUs };
}
