import { type ByteReader, corruptAt, decodeUtf8 } from './byte-reader.js';
import {
  type ColumnType,
  type ColumnValues,
  type DecimalValue,
  type DoubleArrayValue,
  MAX_DECIMAL_SCALE,
} from './column-types.js';
import { decodeDecimalBytes } from './decimal-bytes.js';
import type { SegmentLimits } from './limits.js';
import { isBitSet, nullBitmapBytes, paddingBitsSet } from './null-bitmap.js';
import { symbolIndexWidth } from './segment-layout.js';
import type { SegmentTally } from './segment-tally.js';
import type { ValueArena } from './value-arena.js';

/** What a column chunk decoder needs besides the bytes. */
export interface ChunkDecodeContext {
  reader: ByteReader;
  limits: SegmentLimits;
  tally: SegmentTally;
  rowCount: number;
  /** "txn 7 column 'price'", prefixed to every message. */
  where: string;
  /** Where the decoded typed arrays live (aligned, shared, never the input). */
  arena: ValueArena;
}

/**
 * Reads one column chunk (RFC-0001 §3): the null bitmap when `hasNulls`, then the values. Every
 * count and length is checked against the bytes left in the record before anything sized by it
 * is allocated. Decoded values never alias the input (typed arrays live in `ctx.arena`).
 * Throws CorruptSegmentError.
 */
export function decodeColumnChunk(
  ctx: ChunkDecodeContext,
  type: ColumnType,
  hasNulls: boolean,
): { nulls: Uint8Array | null; data: ColumnValues } {
  const steps = decodeColumnChunkSteps(ctx, type, hasNulls);
  for (let step = steps.next(); ; step = steps.next()) if (step.done === true) return step.value;
}

/**
 * Rows between two pauses of decodeColumnChunkSteps (a power of two: the loops test a mask). A row
 * decodes in well under a microsecond, so a slice holds the event loop for a few ms.
 */
export const DECODE_SLICE_ROWS = 8192;
const SLICE_MASK = DECODE_SLICE_ROWS - 1;

/**
 * `decodeColumnChunk` as steps: it pauses (yields) every DECODE_SLICE_ROWS rows, so a caller can
 * free the event loop while a long column is decoded (sealing a large txn). The caller runs it to
 * the end before using `ctx.reader` again.
 */
export function* decodeColumnChunkSteps(
  ctx: ChunkDecodeContext,
  type: ColumnType,
  hasNulls: boolean,
): Generator<void, { nulls: Uint8Array | null; data: ColumnValues }, void> {
  const nulls = hasNulls ? readBitmap(ctx, 'null bitmap') : null;
  return { nulls, data: yield* decodeValues(ctx, type, nulls) };
}

function* decodeValues(
  ctx: ChunkDecodeContext,
  type: ColumnType,
  nulls: Uint8Array | null,
): Generator<void, ColumnValues, void> {
  switch (type) {
    case 'boolean':
      return { type, values: yield* decodeBooleans(ctx, nulls) };
    case 'long':
    case 'timestamp':
      return { type, values: yield* zeroNullSlots(new BigInt64Array(...copyFixed64(ctx)), nulls, 0n) };
    case 'double':
      return { type, values: yield* zeroNullSlots(new Float64Array(...copyFixed64(ctx)), nulls, 0) };
    case 'string':
      return { type, values: yield* readStrings(ctx, ctx.rowCount, 'string', nulls) };
    case 'symbol':
      return { type, values: yield* decodeSymbols(ctx, nulls) };
    case 'double_array':
      return { type, values: yield* decodeRows(ctx, nulls, MIN_ARRAY_BYTES, decodeDoubleArray) };
    case 'decimal':
      return { type, values: yield* decodeRows(ctx, nulls, MIN_DECIMAL_BYTES, decodeDecimal) };
  }
}

function corrupt(ctx: ChunkDecodeContext, message: string) {
  return ctx.reader.corrupt(`${ctx.where}: ${message}`);
}

function isNullRow(nulls: Uint8Array | null, row: number): boolean {
  return nulls !== null && isBitSet(nulls, row);
}

/** A copied bitmap of rowCount bits whose padding bits must be zero (so no byte is meaningless). */
function readBitmap(ctx: ChunkDecodeContext, what: string): Uint8Array {
  const at = ctx.reader.offset;
  const bytes = nullBitmapBytes(ctx.rowCount);
  const [buffer, byteOffset] = ctx.arena.copy(ctx.reader.view8(bytes, `${ctx.where} ${what}`));
  const bitmap = new Uint8Array(buffer, byteOffset, bytes);
  if (paddingBitsSet(bitmap, ctx.rowCount)) {
    throw corruptField(ctx, at, `${what} has bits set past row ${ctx.rowCount - 1}`);
  }
  return bitmap;
}

function* decodeBooleans(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
): Generator<void, Uint8Array, void> {
  const at = ctx.reader.offset;
  const bits = ctx.reader.view8(nullBitmapBytes(ctx.rowCount), `${ctx.where} boolean values`);
  if (paddingBitsSet(bits, ctx.rowCount)) {
    throw corruptField(ctx, at, `boolean values has bits set past row ${ctx.rowCount - 1}`);
  }
  const values = new Uint8Array(...ctx.arena.allocate(ctx.rowCount), ctx.rowCount);
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    values[row] = !isNullRow(nulls, row) && isBitSet(bits, row) ? 1 : 0;
  }
  return values;
}

/** The value slots copied into the arena: [buffer, byteOffset, length in slots]. */
function copyFixed64(ctx: ChunkDecodeContext): [ArrayBuffer, number, number] {
  const [buffer, byteOffset] = ctx.arena.copy(ctx.reader.view8(ctx.rowCount * 8, `${ctx.where} values`));
  return [buffer, byteOffset, ctx.rowCount];
}

/** Null rows' slots carry nothing: whatever the bytes say, they decode as zero. */
function* zeroNullSlots<T extends BigInt64Array | Float64Array>(
  values: T,
  nulls: Uint8Array | null,
  zero: T[number],
): Generator<void, T, void> {
  if (nulls === null) return values;
  for (let row = 0; row < values.length; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    if (isBitSet(nulls, row)) values[row] = zero;
  }
  return values;
}

/**
 * Reads `count` u32 UTF-8 lengths and decodes the strings that follow them. Lengths are checked
 * one by one against maxStringBytes and the bytes left (the running sum never overflows), and
 * only then are the strings decoded. Entries whose bit is set in `absent` must have length 0 and
 * decode as null.
 */
function* readStrings(
  ctx: ChunkDecodeContext,
  count: number,
  what: string,
  absent: Uint8Array | null,
): Generator<void, (string | null)[], void> {
  const { reader } = ctx;
  const lengthsAt = reader.offset;
  reader.need(count * 4, `${ctx.where} ${what} lengths`);
  reader.offset += count * 4;
  let totalBytes = 0;
  for (let i = 0; i < count; i++) {
    if ((i & SLICE_MASK) === SLICE_MASK) yield;
    const length = reader.view.getUint32(lengthsAt + i * 4, true);
    if (length > ctx.limits.maxStringBytes) {
      throw corruptField(
        ctx,
        lengthsAt + i * 4,
        `${what} ${i} is ${length} bytes, above maxStringBytes ${ctx.limits.maxStringBytes}`,
      );
    }
    if (length !== 0 && isNullRow(absent, i)) {
      throw corruptField(ctx, lengthsAt + i * 4, `${what} ${i} is null but has length ${length}`);
    }
    totalBytes += length;
    if (totalBytes > reader.remaining) {
      throw corruptField(ctx, lengthsAt + i * 4, `${what} lengths add up past the end of the record`);
    }
  }
  const strings: (string | null)[] = new Array(count);
  let at = reader.offset;
  reader.offset += totalBytes;
  for (let i = 0; i < count; i++) {
    if ((i & SLICE_MASK) === SLICE_MASK) yield;
    const length = reader.view.getUint32(lengthsAt + i * 4, true);
    strings[i] = isNullRow(absent, i) ? null : decodeText(ctx, at, length, `${what} ${i}`);
    at += length;
  }
  return strings;
}

/** Short ASCII strings are built directly (about 2x faster than a TextDecoder call); the rest go through strict UTF-8. */
function decodeText(ctx: ChunkDecodeContext, at: number, length: number, what: string): string {
  const bytes = ctx.reader.bytes;
  if (length <= SHORT_ASCII_BYTES) {
    let text = '';
    for (let i = at; i < at + length; i++) {
      const byte = bytes[i]!;
      if (byte >= 0x80) return decodeStrictUtf8(ctx, at, length, what);
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return decodeStrictUtf8(ctx, at, length, what);
}

function decodeStrictUtf8(ctx: ChunkDecodeContext, at: number, length: number, what: string): string {
  return decodeUtf8(
    ctx.reader.bytes.subarray(at, at + length),
    ctx.reader.region,
    at,
    `${ctx.where} ${what}`,
  );
}

const SHORT_ASCII_BYTES = 16;

/** A CorruptSegmentError pointing at `offset` (a field read earlier), not at the reader's position. */
function corruptField(ctx: ChunkDecodeContext, offset: number, message: string) {
  return corruptAt(ctx.reader.region, offset, `${ctx.where}: ${message}`);
}

function* decodeSymbols(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
): Generator<void, (string | null)[], void> {
  const { reader } = ctx;
  const entriesAt = reader.offset;
  const entries = reader.u32(`${ctx.where} symbol dictionary size`);
  if (entries > ctx.rowCount) {
    throw corruptField(ctx, entriesAt, `symbol dictionary has ${entries} entries for ${ctx.rowCount} rows`);
  }
  const width = reader.u8(`${ctx.where} symbol index width`);
  if (width !== symbolIndexWidth(entries)) {
    throw corruptField(
      ctx,
      entriesAt + 4,
      `symbol index width ${width} is not ${symbolIndexWidth(entries)} for ${entries} entries`,
    );
  }
  const dictionary = (yield* readStrings(ctx, entries, 'symbol entry', null)) as string[];
  const indicesAt = reader.offset;
  reader.view8(ctx.rowCount * width, `${ctx.where} symbol indices`);
  const values: (string | null)[] = new Array(ctx.rowCount);
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    if (isNullRow(nulls, row)) {
      values[row] = null;
      continue;
    }
    const index = readIndex(reader, indicesAt + row * width, width);
    if (index >= entries) {
      throw corruptField(
        ctx,
        indicesAt + row * width,
        `row ${row}: symbol index ${index} is outside the ${entries}-entry dictionary`,
      );
    }
    values[row] = dictionary[index]!;
  }
  return values;
}

function readIndex(reader: ByteReader, at: number, width: number): number {
  if (width === 1) return reader.bytes[at]!;
  return width === 2 ? reader.view.getUint16(at, true) : reader.view.getUint32(at, true);
}

/** The fewest bytes a non-null value takes: ndims + one dim; scale + length + one byte. */
const MIN_ARRAY_BYTES = 5;
const MIN_DECIMAL_BYTES = 3;

/**
 * Variable-width types: a value for each non-null row, each counted against the boxed-value limit
 * first. The non-null rows must fit in the bytes left before the row array is allocated.
 */
function* decodeRows<T>(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  minBytesPerValue: number,
  decodeOne: (ctx: ChunkDecodeContext, row: number) => T,
): Generator<void, (T | null)[], void> {
  let nonNullRows = ctx.rowCount;
  if (nulls !== null) for (let row = 0; row < ctx.rowCount; row++) if (isBitSet(nulls, row)) nonNullRows -= 1;
  ctx.reader.need(nonNullRows * minBytesPerValue, `${ctx.where} ${nonNullRows} non-null values`);
  const values: (T | null)[] = new Array(ctx.rowCount);
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    if (isNullRow(nulls, row)) {
      values[row] = null;
      continue;
    }
    const overLimit = ctx.tally.addBoxedValue();
    if (overLimit !== undefined) throw corrupt(ctx, `row ${row}: ${overLimit}`);
    values[row] = decodeOne(ctx, row);
  }
  return values;
}

function decodeDoubleArray(ctx: ChunkDecodeContext, row: number): DoubleArrayValue {
  const { reader } = ctx;
  const { maxArrayDims, maxArrayElements } = ctx.limits;
  const dimsAt = reader.offset;
  const ndims = reader.u8(`${ctx.where} row ${row} array dimensions`);
  if (ndims < 1 || ndims > maxArrayDims) {
    throw corruptField(ctx, dimsAt, `row ${row}: array has ${ndims} dimensions, not 1..${maxArrayDims}`);
  }
  reader.need(ndims * 4, `${ctx.where} row ${row} array shape`);
  const shape: number[] = [];
  let elements = 1;
  for (let d = 0; d < ndims; d++) {
    const dim = reader.u32(`${ctx.where} row ${row} array shape`);
    elements *= dim;
    if (dim > maxArrayElements || elements > maxArrayElements) {
      throw corruptField(
        ctx,
        reader.offset - 4,
        `row ${row}: array has more than maxArrayElements ${maxArrayElements} elements`,
      );
    }
    shape.push(dim);
  }
  const [buffer, byteOffset] = ctx.arena.copy(
    reader.view8(elements * 8, `${ctx.where} row ${row} array values`),
  );
  const values = new Float64Array(buffer, byteOffset, elements);
  return { shape, values };
}

function decodeDecimal(ctx: ChunkDecodeContext, row: number): DecimalValue {
  const { reader } = ctx;
  const at = reader.offset;
  const scale = reader.u8(`${ctx.where} row ${row} decimal scale`);
  if (scale > MAX_DECIMAL_SCALE) {
    throw corruptField(ctx, at, `row ${row}: decimal scale ${scale} is above ${MAX_DECIMAL_SCALE}`);
  }
  const length = reader.u8(`${ctx.where} row ${row} decimal length`);
  if (length < 1 || length > ctx.limits.maxDecimalBytes) {
    throw corruptField(
      ctx,
      at + 1,
      `row ${row}: decimal length ${length} is outside 1..${ctx.limits.maxDecimalBytes}`,
    );
  }
  const unscaled = decodeDecimalBytes(reader.view8(length, `${ctx.where} row ${row} decimal value`));
  return { unscaled, scale };
}
