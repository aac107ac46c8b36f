import type { Buffer } from 'node:buffer';
import type { DecimalValue, DoubleArrayValue } from '../wal/index.js';
import type { IlpLimits } from './limits.js';
import { CELL_DECIMAL, CELL_DOUBLE, CELL_DOUBLE_ARRAY, type IlpLineBatch } from './line-batch.js';
import type { NameEntry } from './names.js';
import { fitsInt256, MAX_DECIMAL_SCALE } from './text-numbers.js';

/**
 * The binary field values of ILP v2/v3, introduced by `name==` (QuestDB's LineTcpParser,
 * ArrayBinaryFormatParser, DecimalBinaryFormatParser):
 * - double: 16, then 8 bytes little-endian;
 * - array: 14, element type (10 = double; 33 = the null array), dims (u8; 0 = null, as QuestDB),
 *   each dim length (i32 LE; a 0 makes an empty array and no values follow), then row-major
 *   little-endian doubles;
 * - decimal: 23, scale (u8, at most 76), length (u8; 0 = null), big-endian two's complement.
 */
export const BINARY_DOUBLE = 16;
export const BINARY_ARRAY = 14;
export const BINARY_DECIMAL = 23;
export const ARRAY_ELEMENT_DOUBLE = 10;
export const ARRAY_ELEMENT_NULL = 33;

/** What the parser lends the binary decoder: the bytes, a position, and how to fail. */
export interface BinaryCursor {
  readonly buf: Buffer;
  readonly view: DataView;
  pos: number;
  /** Returns when `byteCount` bytes follow `pos` within the line; throws otherwise. */
  require(byteCount: number): void;
  /** Throws the parse error `what` for the current line. */
  fail(what: string): never;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Decodes the binary value at `cursor.pos` (just past `==`) of field `column` into a cell of
 * `batch` and leaves `pos` after it. Every count is checked against the limits and the bytes
 * present before anything is allocated.
 */
export function readBinaryValue(
  cursor: BinaryCursor,
  limits: IlpLimits,
  column: NameEntry,
  batch: IlpLineBatch,
): void {
  const name = column.name;
  cursor.require(1);
  const type = cursor.buf[cursor.pos++]!;
  switch (type) {
    case BINARY_DOUBLE:
      cursor.require(8);
      cursor.pos += 8;
      batch.addNumber(column, CELL_DOUBLE, cursor.view.getFloat64(cursor.pos - 8, true));
      return;
    case BINARY_ARRAY:
      batch.addRef(column, CELL_DOUBLE_ARRAY, readArray(cursor, limits, name));
      return;
    case BINARY_DECIMAL:
      batch.addRef(column, CELL_DECIMAL, readDecimal(cursor, name));
      return;
    default:
      cursor.fail(`unsupported binary format type ${type}. Field: ${name}`);
  }
}

function readArray(cursor: BinaryCursor, limits: IlpLimits, name: string): DoubleArrayValue | null {
  const fail = (what: string): never => cursor.fail(`${what}. Field: ${name}`);
  cursor.require(1);
  const elementType = cursor.buf[cursor.pos++]!;
  if (elementType === ARRAY_ELEMENT_NULL) return null;
  if (elementType !== ARRAY_ELEMENT_DOUBLE) return fail(`unsupported array element type ${elementType}`);
  cursor.require(1);
  const dims = cursor.buf[cursor.pos++]!;
  if (dims === 0) return null;
  if (dims > limits.maxArrayDims) {
    return fail(`array has ${dims} dimensions, more than the limit of ${limits.maxArrayDims}`);
  }
  cursor.require(4 * dims);
  const shape: number[] = [];
  let elements = 1;
  for (let i = 0; i < dims; i++) {
    const length = cursor.view.getInt32(cursor.pos, true);
    cursor.pos += 4;
    if (length < 0) return fail(`array dimension ${i} has a negative length ${length}`);
    shape.push(length);
    // Multiplied one by one against the bound, so the product never leaves the safe integers.
    elements *= length;
    if (elements > limits.maxArrayElements)
      return fail(`array has more than ${limits.maxArrayElements} elements`);
  }
  return { shape, values: readDoubles(cursor, elements) };
}

function readDoubles(cursor: BinaryCursor, count: number): Float64Array {
  // Checked before the allocation: an array never costs more than the bytes it arrived in.
  cursor.require(8 * count);
  const values = new Float64Array(count);
  const start = cursor.pos;
  if (LITTLE_ENDIAN_HOST) {
    // A copy, never a view: the parsed lines must not keep the request's buffer alive.
    new Uint8Array(values.buffer).set(cursor.buf.subarray(start, start + 8 * count));
  } else {
    for (let i = 0; i < count; i++) values[i] = cursor.view.getFloat64(start + 8 * i, true);
  }
  cursor.pos = start + 8 * count;
  return values;
}

function readDecimal(cursor: BinaryCursor, name: string): DecimalValue | null {
  cursor.require(2);
  const scale = cursor.buf[cursor.pos]!;
  const length = cursor.buf[cursor.pos + 1]!;
  cursor.pos += 2;
  if (scale > MAX_DECIMAL_SCALE) {
    return cursor.fail(`decimal scale ${scale} is out of range 0..${MAX_DECIMAL_SCALE}. Field: ${name}`);
  }
  if (length === 0) return null;
  cursor.require(length);
  const hex = cursor.buf.toString('hex', cursor.pos, cursor.pos + length);
  cursor.pos += length;
  const unscaled = BigInt.asIntN(length * 8, BigInt(`0x${hex}`));
  if (!fitsInt256(unscaled)) return cursor.fail(`decimal value does not fit in 256 bits. Field: ${name}`);
  return { unscaled, scale };
}
