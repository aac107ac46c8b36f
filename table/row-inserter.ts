import type { Statement } from 'better-sqlite3';
import type { ColumnData } from '../wal/index.js';
import { decimalText, doubleArrayJson } from './sql-values.js';

/**
 * The apply hot path: binds a txn record's columnar values row by row to one prepared INSERT.
 *
 * How values bind (sql-types.ts states the storage): long and timestamp as BigInt (exact int64),
 * double as a JS number (SQLite stores NaN as NULL and -0 as 0), boolean as 0/1, string and symbol
 * as text, double_array as JSON text (doubleArrayJson), decimal as exact text (decimalText), and
 * rows set in a column's null bitmap as NULL.
 *
 * Why this shape: one reused argument array per txn and a small integer switch per cell keep the
 * per-row cost close to a hand-written `stmt.run(a, b, …)` loop; values are read from the record's
 * typed arrays directly, with no per-row objects besides what the binding itself needs.
 */

/** Values bound as they are read: BigInt64Array, Float64Array, Uint8Array and string arrays. */
const PLAIN = 0;
const DOUBLE_ARRAY = 1;
const DECIMAL = 2;

type Reader = typeof PLAIN | typeof DOUBLE_ARRAY | typeof DECIMAL;

function readerOf(column: ColumnData): Reader {
  if (column.data.type === 'double_array') return DOUBLE_ARRAY;
  if (column.data.type === 'decimal') return DECIMAL;
  return PLAIN;
}

/**
 * Runs `insert` once per row of the record from `fromRow` (default 0) up to `rowCount`, binding
 * `columns[c]` to the c-th parameter. The caller checked that every column has at least `rowCount`
 * value slots and a bitmap of at least nullBitmapBytes(rowCount) bytes (or none), and runs this
 * inside a transaction.
 */
export function insertRows(
  insert: Statement,
  columns: readonly ColumnData[],
  rowCount: number,
  fromRow = 0,
): void {
  const width = columns.length;
  const readers = columns.map(readerOf);
  const values = columns.map((column) => column.data.values as ArrayLike<unknown>);
  const nulls = columns.map((column) => column.nulls);
  const args: unknown[] = new Array(width).fill(null);
  for (let row = fromRow; row < rowCount; row++) {
    const byte = row >>> 3;
    const bit = 1 << (row & 7);
    for (let c = 0; c < width; c++) {
      const bitmap = nulls[c]!;
      if (bitmap !== null && (bitmap[byte]! & bit) !== 0) {
        args[c] = null;
        continue;
      }
      const value = values[c]![row];
      const reader = readers[c];
      if (reader === PLAIN) args[c] = value;
      else if (reader === DOUBLE_ARRAY)
        args[c] = doubleArrayJson(value as Parameters<typeof doubleArrayJson>[0]);
      else args[c] = decimalText(value as Parameters<typeof decimalText>[0]);
    }
    insert.run(args);
  }
}
