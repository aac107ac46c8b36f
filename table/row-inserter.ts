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
 * Why this shape: one argument array per call, filled in place for every row, and a plain indexed
 * read per cell (a record without double_array or decimal columns, the common case, never asks a
 * column its type per cell) keep the per-row cost close to a hand-written `stmt.run(a, b, …)` loop;
 * values are read from the record's typed arrays directly, with no per-row objects besides what
 * the binding itself needs, and a call builds no per-column arrays, since a replica's records may
 * hold only a few rows each.
 */

/** Whether `column`'s values need converting before they bind (the others bind as they are read). */
function isBoxed(column: ColumnData): boolean {
  return column.data.type === 'double_array' || column.data.type === 'decimal';
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
  const args: unknown[] = new Array(width);
  let boxed = false;
  for (let c = 0; c < width; c++) if (isBoxed(columns[c]!)) boxed = true;
  for (let row = fromRow; row < rowCount; row++) {
    const byte = row >>> 3;
    const bit = 1 << (row & 7);
    for (let c = 0; c < width; c++) {
      const column = columns[c]!;
      const bitmap = column.nulls;
      if (bitmap !== null && (bitmap[byte]! & bit) !== 0) args[c] = null;
      else if (!boxed) args[c] = column.data.values[row];
      else args[c] = boxedValue(column, row);
    }
    insert.run(args);
  }
}

/** The value of a non-null `row` of `column` as bound, for a record that has a boxed column. */
function boxedValue(column: ColumnData, row: number): unknown {
  const { data } = column;
  if (data.type === 'double_array') return doubleArrayJson(data.values[row]!);
  if (data.type === 'decimal') return decimalText(data.values[row]!);
  return data.values[row];
}
