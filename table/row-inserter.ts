import type { ColumnData } from '../wal/index.js';
import { decimalText, doubleArrayJson } from './sql-values.js';
import type { InsertsBySize } from './table-state.js';

/**
 * The apply hot path: binds a txn record's columnar values to prepared INSERTs of several rows at
 * a time, `INSERT INTO t (…) VALUES (…), (…), …`.
 *
 * How values bind (sql-types.ts states the storage): long and timestamp as BigInt (exact int64),
 * double as a JS number (SQLite stores NaN as NULL and -0 as 0), boolean as 0/1, string and symbol
 * as text, double_array as JSON text (doubleArrayJson), decimal as exact text (decimalText), and
 * rows set in a column's null bitmap as NULL.
 *
 * Why this shape: a statement step costs about as much as binding a row, so blocks of
 * BLOCK_ROWS rows, then of TAIL_BLOCK_ROWS, then single rows cut the steps per row (measured
 * against a prepared single-row INSERT on the same rows: 64-row blocks 1.9×, 8-row 1.6×; docs/
 * benchmarks.md). One argument array per block size, filled in place, and a plain indexed read per
 * cell (a record without double_array or decimal columns, the common case, never asks a column its
 * type per cell); values are read from the record's typed arrays directly, and a call builds no
 * per-column arrays, since a replica's records may hold only a few rows each.
 */

/** Rows per INSERT for a record's bulk, at most. */
export const BLOCK_ROWS = 64;
/** Rows per INSERT for what is left of a record after its blocks, before single rows. */
export const TAIL_BLOCK_ROWS = 8;
/**
 * Parameters per multi-row INSERT, at most: a prepared statement holds ~0.1 KiB per parameter
 * besides its ~2 KiB of fixed cost (measured: 5 columns × 64 rows 33 KiB, 100 × 64 462 KiB), so a
 * block of a wide table has fewer rows, and a statement stays near 50 KiB however wide its table.
 */
export const BLOCK_PARAMETERS = 512;

const sizesByWidth = new Map<number, readonly number[]>();

/** The rows per INSERT statement for `width` inserted columns, largest first; 1 is always last. */
export function blockSizes(width: number): readonly number[] {
  let sizes = sizesByWidth.get(width);
  if (sizes === undefined) {
    const block = Math.min(BLOCK_ROWS, Math.floor(BLOCK_PARAMETERS / Math.max(1, width)));
    const found: number[] = [];
    for (const rows of [block, TAIL_BLOCK_ROWS]) {
      if (rows > 1 && rows <= block && !found.includes(rows)) found.push(rows);
    }
    found.push(1);
    sizes = found;
    sizesByWidth.set(width, sizes);
  }
  return sizes;
}

/** The VALUES list of an INSERT of `rows` rows of `width` parameters each: `(?, ?), (?, ?)`. */
export function valuesList(width: number, rows: number): string {
  const row = `(${Array.from({ length: width }, () => '?').join(', ')})`;
  return Array.from({ length: rows }, () => row).join(', ');
}

/** Whether `column`'s values need converting before they bind (the others bind as they are read). */
function isBoxed(column: ColumnData): boolean {
  return column.data.type === 'double_array' || column.data.type === 'decimal';
}

/** Argument arrays by size, reused by every call: a call fills them in place before each run. */
const argsBySize = new Map<number, unknown[]>();

function argsOf(size: number): unknown[] {
  let args = argsBySize.get(size);
  if (args === undefined) {
    args = new Array<unknown>(size);
    argsBySize.set(size, args);
  }
  return args;
}

/**
 * Inserts the record's rows from `fromRow` (default 0) up to `rowCount`, binding `columns[c]` to
 * the c-th parameter of each row: blocks of `sizes[0]` rows through `inserts.of(sizes[0])`, then of
 * the next size, down to single rows (`sizes` from blockSizes, for columns.length). The caller
 * checked that every column has at least `rowCount` value slots and a bitmap of at least
 * nullBitmapBytes(rowCount) bytes (or none), and runs this inside a transaction. The argument
 * arrays are cleared afterwards, so they never hold a record's strings past the call.
 */
export function insertRows(
  inserts: InsertsBySize,
  sizes: readonly number[],
  columns: readonly ColumnData[],
  rowCount: number,
  fromRow = 0,
): void {
  const width = columns.length;
  let boxed = false;
  for (let c = 0; c < width; c++) if (isBoxed(columns[c]!)) boxed = true;
  let row = fromRow;
  for (const size of sizes) {
    if (rowCount - row < size) continue;
    const insert = inserts.of(size);
    const args = argsOf(size * width);
    for (; rowCount - row >= size; row += size) {
      let at = 0;
      for (let r = row; r < row + size; r++) {
        const byte = r >>> 3;
        const bit = 1 << (r & 7);
        for (let c = 0; c < width; c++) {
          const column = columns[c]!;
          const bitmap = column.nulls;
          if (bitmap !== null && (bitmap[byte]! & bit) !== 0) args[at++] = null;
          else if (!boxed) args[at++] = column.data.values[r];
          else args[at++] = boxedValue(column, r);
        }
      }
      insert.run(args);
    }
    args.fill(undefined);
  }
}

/** The value of a non-null `row` of `column` as bound, for a record that has a boxed column. */
function boxedValue(column: ColumnData, row: number): unknown {
  const { data } = column;
  if (data.type === 'double_array') return doubleArrayJson(data.values[row]!);
  if (data.type === 'decimal') return decimalText(data.values[row]!);
  return data.values[row];
}
