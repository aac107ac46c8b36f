/**
 * The column types a txn record can carry (RFC-0001 §3) and the in-memory shape of their values.
 * int64 values and timestamps are `BigInt64Array`s, never JS numbers, so no value loses precision.
 */
export type ColumnType =
  | 'boolean'
  | 'long'
  | 'double'
  | 'string'
  | 'symbol'
  | 'timestamp'
  | 'double_array'
  | 'decimal';

/** Every column type, in type-id order. */
export const COLUMN_TYPES: readonly ColumnType[] = Object.freeze([
  'boolean',
  'long',
  'double',
  'string',
  'symbol',
  'timestamp',
  'double_array',
  'decimal',
]);

/** An n-dimensional array of doubles, row-major: `values.length === product(shape)`. */
export interface DoubleArrayValue {
  shape: number[];
  values: Float64Array;
}

/** An exact decimal: value = unscaled × 10^-scale, with 0 <= scale <= MAX_DECIMAL_SCALE. */
export interface DecimalValue {
  unscaled: bigint;
  scale: number;
}

/** DECIMAL(76) is QuestDB's widest decimal; its scale cannot exceed its precision. */
export const MAX_DECIMAL_SCALE = 76;

/**
 * One column's values, one slot per row (null rows included; their slot is ignored on encode and
 * decoded as 0 / 0n / null).
 *
 * Decoded typed arrays are views that may share one ArrayBuffer with other columns of the same
 * segment (never with the input bytes): use them through their own byteOffset/byteLength, or
 * `.slice()` them — never hand `values.buffer` on by itself.
 */
export type ColumnValues =
  | { type: 'boolean'; values: Uint8Array }
  | { type: 'long' | 'timestamp'; values: BigInt64Array }
  | { type: 'double'; values: Float64Array }
  | { type: 'string' | 'symbol'; values: (string | null)[] }
  | { type: 'double_array'; values: (DoubleArrayValue | null)[] }
  | { type: 'decimal'; values: (DecimalValue | null)[] };

/** The type id written in a column descriptor. 0 is never valid, so zeroed memory never parses. */
export const COLUMN_TYPE_IDS: Readonly<Record<ColumnType, number>> = Object.freeze({
  boolean: 1,
  long: 2,
  double: 3,
  string: 4,
  symbol: 5,
  timestamp: 6,
  double_array: 7,
  decimal: 8,
});

/** The column type for a type id, or undefined for an id this format version does not define. */
export function columnTypeOfId(typeId: number): ColumnType | undefined {
  return COLUMN_TYPES[typeId - 1];
}

/** True for the types whose values are fixed-width 8-byte slots copied as raw little-endian arrays. */
export function isFixedWidth64(type: ColumnType): type is 'long' | 'timestamp' | 'double' {
  return type === 'long' || type === 'timestamp' || type === 'double';
}
