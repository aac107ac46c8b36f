import { WalshipError } from '../core/index.js';
import type { IlpFieldValue } from '../ilp/index.js';
import type { ColumnData, ColumnType, ColumnValues, DecimalValue, DoubleArrayValue } from '../wal/index.js';

/**
 * One column of one txn under construction: a typed array (or a plain array for the boxed types)
 * that grows as rows arrive, filled row by row in increasing row order, and a null bitmap made only
 * when a row is null; `finish` cuts both to the txn's row count. Rows never written are null.
 *
 * Casts (the ones QuestDB's ILP applies that keep every value exact; any other type difference is
 * a conflict):
 * - long → double column, when the integer is exactly a double (|v| <= 2^53, or a multiple of a
 *   power of two that a double holds exactly); QuestDB casts any long and rounds, walship refuses
 *   the ones that would change;
 * - string → symbol column (QuestDB: "string values can be cast to symbol when the column exists
 *   as symbol").
 * Not cast, although QuestDB does: boolean → numbers, long → timestamp (the unit would be a guess),
 * long/double → symbol text, symbol (tag) → string.
 */

/** What a cell is set to: the values of IlpFieldValue plus symbols (strings). */
export type CellValue = IlpFieldValue['value'] | string;

/**
 * Value slots a column starts with; it doubles as rows arrive (a request's row count is not known
 * up front). Small, because a request spread over a thousand tables holds a few rows per table:
 * the doublings a big table goes through instead cost little beside its rows.
 */
export const INITIAL_ROWS = 16;

export class ColumnBuilder {
  readonly name: string;
  readonly type: ColumnType;
  /** True when this txn creates the column. */
  readonly isNew: boolean;
  /** Position in the existing schema, or schema length + order of creation for new columns. */
  readonly position: number;
  private data: ColumnValues;
  /** For long and timestamp columns: the values' Int32Array view, which setNumber writes (int64Halves). */
  private halves: Int32Array | null = null;
  /** Bit per row slot, made at the first null row; grows with the values. */
  private nulls: Uint8Array | null = null;
  /** Rows below this are set (value or null). Rows arrive in increasing order. */
  nextRow = 0;

  constructor(options: { name: string; type: ColumnType; isNew: boolean; position: number }) {
    this.name = options.name;
    this.type = options.type;
    this.isNew = options.isNew;
    this.position = options.position;
    this.data = emptyValues(options.type, INITIAL_ROWS);
    this.halves = int64Halves(this.data);
  }

  /**
   * Sets row `row` (>= nextRow) of a long, timestamp, double or boolean column to the number
   * `value` (an integer within ±2^53 for long and timestamp, 1 or 0 for boolean): no BigInt is made.
   */
  setNumber(row: number, value: number): void {
    if (row >= this.data.values.length) this.grow(row + 1);
    if (row > this.nextRow) this.markNull(this.nextRow, row);
    this.nextRow = row + 1;
    const halves = this.halves;
    if (halves !== null) setInt64(halves, row, value);
    else (this.data.values as Float64Array | Uint8Array)[row] = value;
  }

  /** Sets row `row` (>= nextRow) to `value`, already of this column's type (see castCell); null → a null row. */
  set(row: number, value: CellValue): void {
    if (row >= this.data.values.length) this.grow(row + 1);
    if (row > this.nextRow) this.markNull(this.nextRow, row);
    this.nextRow = row + 1;
    const data = this.data;
    switch (data.type) {
      case 'long':
      case 'timestamp':
        data.values[row] = value as bigint;
        return;
      case 'double':
        data.values[row] = value as number;
        return;
      case 'boolean':
        data.values[row] = value === true ? 1 : 0;
        return;
      case 'string':
      case 'symbol':
        data.values[row] = value as string;
        return;
      case 'double_array':
        if (value === null) this.markNull(row, row + 1);
        else data.values[row] = value as DoubleArrayValue;
        return;
      case 'decimal':
        if (value === null) this.markNull(row, row + 1);
        else data.values[row] = value as DecimalValue;
        return;
    }
  }

  /** The finished column of exactly `rowCount` rows: rows after the last set one are null. */
  finish(rowCount: number): ColumnData {
    if (rowCount > this.data.values.length) this.grow(rowCount);
    if (this.nextRow < rowCount) this.markNull(this.nextRow, rowCount);
    this.nextRow = rowCount;
    const nulls = this.nulls === null ? null : trimmed(this.nulls, (rowCount + 7) >>> 3);
    const data = { type: this.data.type, values: trimmed(this.data.values, rowCount) } as ColumnValues;
    return { name: this.name, addedInTxn: this.isNew, nulls, data };
  }

  /** Room for at least `rows` slots: doubles the capacity (amortised O(1) per row). */
  private grow(rows: number): void {
    const capacity = Math.max(rows, this.data.values.length * 2);
    this.data = { type: this.data.type, values: grown(this.data.values, capacity) } as ColumnValues;
    this.halves = int64Halves(this.data);
    if (this.nulls !== null) this.nulls = grown(this.nulls, (capacity + 7) >>> 3);
  }

  private markNull(from: number, to: number): void {
    this.nulls ??= typedArray(Uint8Array, (this.data.values.length + 7) >>> 3);
    const nulls = this.nulls;
    for (let row = from; row < to; row++) nulls[row >>> 3] = nulls[row >>> 3]! | (1 << (row & 7));
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const LOW_HALF = LITTLE_ENDIAN ? 0 : 1;
const HIGH_HALF = 1 - LOW_HALF;
const TWO_TO_32 = 4_294_967_296;

/** The Int32Array view of a long or timestamp column's values (two halves per slot); null for other types. */
function int64Halves(data: ColumnValues): Int32Array | null {
  if (data.type !== 'long' && data.type !== 'timestamp') return null;
  return int32View(data.values);
}

/** An Int32Array over the same bytes as `values`. */
export function int32View(values: BigInt64Array): Int32Array {
  return new Int32Array(values.buffer, values.byteOffset, values.length * 2);
}

/**
 * Writes the integer `value` (|value| ≤ 2^53) into slot `index` of the BigInt64Array whose
 * Int32Array view is `halves`, as two 32-bit halves: a parsed long or timestamp becomes a BigInt
 * only when it is bound to SQLite.
 */
export function setInt64(halves: Int32Array, index: number, value: number): void {
  halves[2 * index + LOW_HALF] = value; // ToInt32: the low 32 bits, two's complement
  halves[2 * index + HIGH_HALF] = Math.floor(value / TWO_TO_32);
}

type Slots = BigInt64Array | Float64Array | Uint8Array | unknown[];
type Typed = Exclude<Slots, unknown[]>;

/** The typed arrays a column is made of, by their constructor. */
interface TypedConstructor<T extends Typed> {
  new (length: number): T;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * Small typed arrays come out of a shared slab, as Node's Buffer pool does: a request spread over a
 * thousand tables makes four or five arrays of 16 slots per table, and a fresh ArrayBuffer costs
 * ~0.6 µs where a view of a slab costs ~0.05 µs (and leaves the collector no backing store to
 * free). A slab is only ever handed out from fresh (zeroed) bytes, never reused, so it lives as long
 * as one of its arrays does: a request's columns, until they are committed.
 */
const SLAB_BYTES = 64 * 1024;
const SLAB_MAX_ARRAY_BYTES = 1024;
let slab = new ArrayBuffer(SLAB_BYTES);
let slabOffset = 0;

/** A zeroed `T` of `length` slots: from the slab when small, else an array of its own. */
export function typedArray<T extends Typed>(type: TypedConstructor<T>, length: number): T {
  const bytes = length * type.BYTES_PER_ELEMENT;
  if (bytes > SLAB_MAX_ARRAY_BYTES) return new type(length);
  if (slabOffset + bytes > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    slabOffset = 0;
  }
  const array = new type(slab, slabOffset, length);
  slabOffset += (bytes + 7) & ~7; // the next array starts 8-byte aligned, as BigInt64Array needs
  return array;
}

/** `values` with at least `capacity` slots, the old ones copied; new plain-array slots are null. */
export function grown<T extends Slots>(values: T, capacity: number): T {
  const size = Math.max(capacity, values.length * 2);
  if (Array.isArray(values)) {
    for (let i = values.length; i < size; i++) values.push(null);
    return values;
  }
  const typed = values as Typed;
  const bigger = typedArray(typed.constructor as TypedConstructor<typeof typed>, size);
  bigger.set(typed as never);
  return bigger as T;
}

/**
 * `values` cut to `length` slots. Typed arrays are copied when much of the buffer would be wasted,
 * so a finished txn keeps no more than a quarter of slack, or INITIAL_ROWS slots (copying a few
 * bytes' worth costs an allocation per column of each of a thousand small tables); plain arrays
 * are cut in place.
 */
export function trimmed<T extends Slots>(values: T, length: number): T {
  if (values.length === length) return values;
  if (Array.isArray(values)) {
    values.length = length;
    return values;
  }
  const typed = values as Typed;
  const slack = typed.length - length;
  return (
    slack > length / 4 && slack > INITIAL_ROWS ? typed.slice(0, length) : typed.subarray(0, length)
  ) as T;
}

function emptyValues(type: ColumnType, rowCount: number): ColumnValues {
  switch (type) {
    case 'long':
    case 'timestamp':
      return { type, values: typedArray(BigInt64Array, rowCount) };
    case 'double':
      return { type, values: typedArray(Float64Array, rowCount) };
    case 'boolean':
      return { type, values: typedArray(Uint8Array, rowCount) };
    case 'string':
    case 'symbol':
    case 'double_array':
    case 'decimal':
      // Filled with null so a slot never set reads as null, not as a hole.
      return { type, values: new Array(rowCount).fill(null) } as ColumnValues;
  }
}

/**
 * Whether `value`, of type `sent`, may go into a column of another type `column`: undefined when it
 * may (convert it with castCell), '' when the two types are never cast, else why this value may not.
 */
export function castProblem(column: ColumnType, sent: ColumnType, value: CellValue): string | undefined {
  if (column === 'double' && sent === 'long') {
    const asDouble = Number(value as bigint);
    return BigInt(asDouble) === value ? undefined : `the long ${value} is not exactly a double`;
  }
  if (column === 'symbol' && sent === 'string') return undefined;
  return '';
}

/** `value` as a value of a `column`-typed column; only for values castProblem allows. */
export function castCell(column: ColumnType, value: CellValue): CellValue {
  return column === 'double' ? Number(value as bigint) : value;
}

/** The TYPE_CONFLICT error of a line: names table, column, the column's type and the sent type. */
export function typeConflict(
  line: number,
  table: string,
  column: string,
  columnType: ColumnType,
  sentType: ColumnType,
  problem: string,
): WalshipError {
  const designated = column === 'timestamp' ? ' (the designated timestamp)' : '';
  const why = problem === '' ? '' : `: ${problem}`;
  return new WalshipError(
    'TYPE_CONFLICT',
    'invalid',
    `line ${line}: table ${JSON.stringify(table)} column ${JSON.stringify(column)}${designated} is ${columnType}, the line sends ${sentType}${why}`,
    { details: { line, table, column, existingType: columnType, sentType } },
  );
}
