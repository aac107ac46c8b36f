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
  return int64Range(column.data.values, column.nulls, txn.rowCount);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LOW = LITTLE_ENDIAN ? 0 : 1;
const HIGH = 1 - LOW;

/**
 * Min/max of the first `rowCount` values not null in `nulls`: compared as two 32-bit halves (high
 * signed, low unsigned), so only the two results become BigInts, not every value read.
 */
export function int64Range(
  values: BigInt64Array,
  nulls: Uint8Array | null,
  rowCount: number,
): TimestampRange | null {
  const halves = new Int32Array(values.buffer, values.byteOffset, values.length * 2);
  let min = -1;
  let max = -1;
  let minHigh = 0;
  let minLow = 0;
  let maxHigh = 0;
  let maxLow = 0;
  for (let row = 0; row < rowCount; row++) {
    if (nulls !== null && isBitSet(nulls, row)) continue;
    const high = halves[2 * row + HIGH]!;
    const low = halves[2 * row + LOW]! >>> 0;
    if (min < 0 || high < minHigh || (high === minHigh && low < minLow)) {
      min = row;
      minHigh = high;
      minLow = low;
    }
    if (max < 0 || high > maxHigh || (high === maxHigh && low > maxLow)) {
      max = row;
      maxHigh = high;
      maxLow = low;
    }
  }
  return min < 0 ? null : { minUs: values[min]!, maxUs: values[max]! };
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
