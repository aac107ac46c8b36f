import type { ColumnData } from './txn-record.js';

/** Bytes of a null bitmap (or a bit-packed boolean column) for `rows` rows: ceil(rows / 8). */
export function nullBitmapBytes(rows: number): number {
  return (rows + 7) >>> 3;
}

/** True when bit `row` of `bitmap` is set. `bitmap` must have at least nullBitmapBytes(row + 1) bytes. */
export function isBitSet(bitmap: Uint8Array, row: number): boolean {
  return ((bitmap[row >>> 3]! >>> (row & 7)) & 1) === 1;
}

/** Sets bit `row` of `bitmap` (marks the row null when used as a null bitmap). */
export function setBit(bitmap: Uint8Array, row: number): void {
  bitmap[row >>> 3] = bitmap[row >>> 3]! | (1 << (row & 7));
}

/** True when row `row` of `column` is null. Rows of a column without a bitmap are never null. */
export function isNull(column: Pick<ColumnData, 'nulls'>, row: number): boolean {
  return column.nulls !== null && isBitSet(column.nulls, row);
}

/** True when any of the first `rows` bits of `bitmap` is set. */
export function anyBitSet(bitmap: Uint8Array, rows: number): boolean {
  const fullBytes = rows >>> 3;
  for (let i = 0; i < fullBytes; i++) if (bitmap[i] !== 0) return true;
  const tailBits = rows & 7;
  return tailBits !== 0 && (bitmap[fullBytes]! & ((1 << tailBits) - 1)) !== 0;
}

/** True when a bit at or after position `rows` is set in the last byte (padding must be zero). */
export function paddingBitsSet(bitmap: Uint8Array, rows: number): boolean {
  const tailBits = rows & 7;
  if (tailBits === 0) return false;
  return (bitmap[rows >>> 3]! & ~((1 << tailBits) - 1) & 0xff) !== 0;
}
