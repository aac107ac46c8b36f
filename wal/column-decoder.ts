import { type ByteReader, corruptAt, decodeUtf8, type FieldContext } from './byte-reader.js';
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
import { inSlices } from './row-slices.js';
import { symbolIndexWidth } from './segment-layout.js';
import type { SegmentTally } from './segment-tally.js';
import type { ValueArena } from './value-arena.js';

/**
 * What a column chunk decoder needs besides the bytes. One context serves every column of a
 * record (the record decoder sets `column` before each chunk), so that decoding a column
 * allocates no context and formats no name unless it fails.
 */
export class ChunkDecodeContext implements FieldContext {
  readonly reader: ByteReader;
  readonly limits: SegmentLimits;
  readonly tally: SegmentTally;
  /** Where the decoded typed arrays live (aligned, shared, never the input). */
  readonly arena: ValueArena;
  rowCount = 0;
  txn = 0n;
  column = '';

  constructor(reader: ByteReader, limits: SegmentLimits, tally: SegmentTally, arena: ValueArena) {
    this.reader = reader;
    this.limits = limits;
    this.tally = tally;
    this.arena = arena;
  }

  /** "txn 7 column 'price'", prefixed to every message; formatted only for a message. */
  get where(): string {
    return `txn ${this.txn} column '${this.column}'`;
  }
}

/** A decoded column chunk: its null bitmap (null when no row is null) and its values. */
export interface ColumnChunk {
  nulls: Uint8Array | null;
  data: ColumnValues;
}

/**
 * Reads one column chunk (RFC-0001 §3): the null bitmap when `hasNulls`, then the values. Every
 * count and length is checked against the bytes left in the record before anything sized by it
 * is allocated. Decoded values never alias the input (typed arrays live in `ctx.arena`).
 * Throws CorruptSegmentError.
 */
export function decodeColumnChunk(ctx: ChunkDecodeContext, type: ColumnType, hasNulls: boolean): ColumnChunk {
  const nulls = hasNulls ? readBitmap(ctx, 'null bitmap') : null;
  return { nulls, data: decodeValues(ctx, type, nulls) };
}

/**
 * Rows between two pauses of decodeColumnChunkSteps. A row decodes in well under a microsecond,
 * so a slice holds the event loop for a few ms.
 */
export const DECODE_SLICE_ROWS = 8192;

/**
 * `decodeColumnChunk` as steps: it pauses (yields) every DECODE_SLICE_ROWS rows, so a caller can
 * free the event loop while a long column is decoded (sealing a large txn). The caller runs it to
 * the end before using `ctx.reader` again. It reads and checks exactly what decodeColumnChunk
 * does, in the same order: each type's plain decoder below has a `...Steps` twin that runs the
 * same row passes (the functions taking `from, to`) through `inSlices`. The twins exist because a
 * generator per column costs ~100 ns, which the many small chunks of a segment cannot afford.
 */
export function* decodeColumnChunkSteps(
  ctx: ChunkDecodeContext,
  type: ColumnType,
  hasNulls: boolean,
): Generator<void, ColumnChunk, void> {
  const nulls = hasNulls ? readBitmap(ctx, 'null bitmap') : null;
  return { nulls, data: yield* decodeValuesSteps(ctx, type, nulls) };
}

function decodeValues(ctx: ChunkDecodeContext, type: ColumnType, nulls: Uint8Array | null): ColumnValues {
  switch (type) {
    case 'boolean':
      return { type, values: decodeBooleans(ctx, nulls) };
    case 'long':
    case 'timestamp': {
      const values = ctx.arena.copyBigInt64s(fixed64Bytes(ctx));
      if (nulls !== null) zeroNullRows(values, nulls, 0n, 0, values.length);
      return { type, values };
    }
    case 'double': {
      const values = ctx.arena.copyFloat64s(fixed64Bytes(ctx));
      if (nulls !== null) zeroNullRows(values, nulls, 0, 0, values.length);
      return { type, values };
    }
    case 'string':
      return { type, values: readStrings(ctx, ctx.rowCount, 'string', nulls) };
    case 'symbol':
      return { type, values: decodeSymbols(ctx, nulls) };
    case 'double_array':
      return { type, values: decodeRows(ctx, nulls, MIN_ARRAY_BYTES, decodeDoubleArray) };
    case 'decimal':
      return { type, values: decodeRows(ctx, nulls, MIN_DECIMAL_BYTES, decodeDecimal) };
  }
}

function* decodeValuesSteps(
  ctx: ChunkDecodeContext,
  type: ColumnType,
  nulls: Uint8Array | null,
): Generator<void, ColumnValues, void> {
  switch (type) {
    case 'boolean':
      return { type, values: yield* decodeBooleansSteps(ctx, nulls) };
    case 'long':
    case 'timestamp': {
      const values = ctx.arena.copyBigInt64s(fixed64Bytes(ctx));
      if (nulls !== null)
        yield* inSlices(values.length, DECODE_SLICE_ROWS, (from, to) =>
          zeroNullRows(values, nulls, 0n, from, to),
        );
      return { type, values };
    }
    case 'double': {
      const values = ctx.arena.copyFloat64s(fixed64Bytes(ctx));
      if (nulls !== null)
        yield* inSlices(values.length, DECODE_SLICE_ROWS, (from, to) =>
          zeroNullRows(values, nulls, 0, from, to),
        );
      return { type, values };
    }
    case 'string':
      return { type, values: yield* readStringsSteps(ctx, ctx.rowCount, 'string', nulls) };
    case 'symbol':
      return { type, values: yield* decodeSymbolsSteps(ctx, nulls) };
    case 'double_array':
      return { type, values: yield* decodeRowsSteps(ctx, nulls, MIN_ARRAY_BYTES, decodeDoubleArray) };
    case 'decimal':
      return { type, values: yield* decodeRowsSteps(ctx, nulls, MIN_DECIMAL_BYTES, decodeDecimal) };
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
  const bitmap = ctx.arena.copyBytes(ctx.reader.view8(nullBitmapBytes(ctx.rowCount), what, ctx));
  if (paddingBitsSet(bitmap, ctx.rowCount)) {
    throw corruptField(ctx, at, `${what} has bits set past row ${ctx.rowCount - 1}`);
  }
  return bitmap;
}

function decodeBooleans(ctx: ChunkDecodeContext, nulls: Uint8Array | null): Uint8Array {
  const bits = readBooleanBits(ctx);
  const values = ctx.arena.bytes(ctx.rowCount);
  booleanRows(values, bits, nulls, 0, ctx.rowCount);
  return values;
}

function* decodeBooleansSteps(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
): Generator<void, Uint8Array, void> {
  const bits = readBooleanBits(ctx);
  const values = ctx.arena.bytes(ctx.rowCount);
  yield* inSlices(ctx.rowCount, DECODE_SLICE_ROWS, (from, to) => booleanRows(values, bits, nulls, from, to));
  return values;
}

/** The values' bitmap (a view of the input), whose padding bits must be zero. */
function readBooleanBits(ctx: ChunkDecodeContext): Uint8Array {
  const at = ctx.reader.offset;
  const bits = ctx.reader.view8(nullBitmapBytes(ctx.rowCount), 'boolean values', ctx);
  if (paddingBitsSet(bits, ctx.rowCount)) {
    throw corruptField(ctx, at, `boolean values has bits set past row ${ctx.rowCount - 1}`);
  }
  return bits;
}

function booleanRows(
  values: Uint8Array,
  bits: Uint8Array,
  nulls: Uint8Array | null,
  from: number,
  to: number,
): void {
  for (let row = from; row < to; row++) values[row] = !isNullRow(nulls, row) && isBitSet(bits, row) ? 1 : 0;
}

/** The bytes of the value slots (8 per row), to be copied into the arena. */
function fixed64Bytes(ctx: ChunkDecodeContext): Uint8Array {
  return ctx.reader.view8(ctx.rowCount * 8, 'values', ctx);
}

/** Null rows' slots carry nothing: whatever the bytes say, they decode as zero. */
function zeroNullRows<T extends BigInt64Array | Float64Array>(
  values: T,
  nulls: Uint8Array,
  zero: T[number],
  from: number,
  to: number,
): void {
  for (let row = from; row < to; row++) if (isBitSet(nulls, row)) values[row] = zero;
}

/**
 * Reads `count` u32 UTF-8 lengths and decodes the strings that follow them. Lengths are checked
 * one by one against maxStringBytes and the bytes left (the running sum never overflows), and
 * only then are the strings decoded. Entries whose bit is set in `absent` must have length 0 and
 * decode as null.
 */
function readStrings(
  ctx: ChunkDecodeContext,
  count: number,
  what: StringField,
  absent: Uint8Array | null,
): (string | null)[] {
  const lengthsAt = skipLengths(ctx, count, what);
  const totalBytes = checkLengths(ctx, lengthsAt, what, absent, 0, count, 0);
  const strings: (string | null)[] = new Array(count);
  decodeStrings(ctx, lengthsAt, what, absent, strings, 0, count, takeBytes(ctx.reader, totalBytes));
  return strings;
}

function* readStringsSteps(
  ctx: ChunkDecodeContext,
  count: number,
  what: StringField,
  absent: Uint8Array | null,
): Generator<void, (string | null)[], void> {
  const lengthsAt = skipLengths(ctx, count, what);
  let totalBytes = 0;
  yield* inSlices(count, DECODE_SLICE_ROWS, (from, to) => {
    totalBytes = checkLengths(ctx, lengthsAt, what, absent, from, to, totalBytes);
  });
  const strings: (string | null)[] = new Array(count);
  let at = takeBytes(ctx.reader, totalBytes);
  yield* inSlices(count, DECODE_SLICE_ROWS, (from, to) => {
    at = decodeStrings(ctx, lengthsAt, what, absent, strings, from, to, at);
  });
  return strings;
}

/** Moves past the `count` lengths; returns where they start. */
function skipLengths(ctx: ChunkDecodeContext, count: number, what: StringField): number {
  const lengthsAt = ctx.reader.offset;
  ctx.reader.skip(count * 4, LENGTHS_FIELD[what], ctx);
  return lengthsAt;
}

/** Moves past `bytes` bytes already checked to fit; returns where they start. */
function takeBytes(reader: ByteReader, bytes: number): number {
  const at = reader.offset;
  reader.offset += bytes;
  return at;
}

/** Checks lengths [from, to) (see readStrings); returns `totalBytes` plus their sum. */
function checkLengths(
  ctx: ChunkDecodeContext,
  lengthsAt: number,
  what: StringField,
  absent: Uint8Array | null,
  from: number,
  to: number,
  totalBytes: number,
): number {
  const { reader } = ctx;
  for (let i = from; i < to; i++) {
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
  return totalBytes;
}

/** Decodes strings [from, to), the first of them at `at`; returns where the next one starts. */
function decodeStrings(
  ctx: ChunkDecodeContext,
  lengthsAt: number,
  what: StringField,
  absent: Uint8Array | null,
  strings: (string | null)[],
  from: number,
  to: number,
  at: number,
): number {
  for (let i = from; i < to; i++) {
    const length = ctx.reader.view.getUint32(lengthsAt + i * 4, true);
    strings[i] = isNullRow(absent, i) ? null : decodeText(ctx, at, length, what, i);
    at += length;
  }
  return at;
}

/** The strings of a chunk are column values or symbol dictionary entries. */
type StringField = 'string' | 'symbol entry';
const LENGTHS_FIELD: Readonly<Record<StringField, string>> = {
  string: 'string lengths',
  'symbol entry': 'symbol entry lengths',
};

/**
 * Short ASCII strings are built directly (about 2x faster than a TextDecoder call); the rest go
 * through strict UTF-8. `what` and `index` name the string in an error message.
 */
function decodeText(
  ctx: ChunkDecodeContext,
  at: number,
  length: number,
  what: string,
  index: number,
): string {
  const bytes = ctx.reader.bytes;
  if (length <= SHORT_ASCII_BYTES) {
    let text = '';
    for (let i = at; i < at + length; i++) {
      const byte = bytes[i]!;
      if (byte >= 0x80) return decodeStrictUtf8(ctx, at, length, what, index);
      text += String.fromCharCode(byte);
    }
    return text;
  }
  return decodeStrictUtf8(ctx, at, length, what, index);
}

function decodeStrictUtf8(
  ctx: ChunkDecodeContext,
  at: number,
  length: number,
  what: string,
  index: number,
): string {
  const slice = ctx.reader.bytes.subarray(at, at + length);
  return decodeUtf8(slice, ctx.reader.region, at, `${what} ${index}`, ctx);
}

const SHORT_ASCII_BYTES = 16;

/** A CorruptSegmentError pointing at `offset` (a field read earlier), not at the reader's position. */
function corruptField(ctx: ChunkDecodeContext, offset: number, message: string) {
  return corruptAt(ctx.reader.region, offset, `${ctx.where}: ${message}`);
}

function decodeSymbols(ctx: ChunkDecodeContext, nulls: Uint8Array | null): (string | null)[] {
  const entries = readSymbolHeader(ctx);
  const dictionary = readStrings(ctx, entries, 'symbol entry', null) as string[];
  const indicesAt = skipSymbolIndices(ctx, entries);
  const values: (string | null)[] = new Array(ctx.rowCount);
  symbolRows(ctx, nulls, dictionary, indicesAt, values, 0, ctx.rowCount);
  return values;
}

function* decodeSymbolsSteps(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
): Generator<void, (string | null)[], void> {
  const entries = readSymbolHeader(ctx);
  const dictionary = (yield* readStringsSteps(ctx, entries, 'symbol entry', null)) as string[];
  const indicesAt = skipSymbolIndices(ctx, entries);
  const values: (string | null)[] = new Array(ctx.rowCount);
  yield* inSlices(ctx.rowCount, DECODE_SLICE_ROWS, (from, to) =>
    symbolRows(ctx, nulls, dictionary, indicesAt, values, from, to),
  );
  return values;
}

/** The dictionary size and index width, checked; returns the number of dictionary entries. */
function readSymbolHeader(ctx: ChunkDecodeContext): number {
  const { reader } = ctx;
  const entriesAt = reader.offset;
  const entries = reader.u32('symbol dictionary size', ctx);
  if (entries > ctx.rowCount) {
    throw corruptField(ctx, entriesAt, `symbol dictionary has ${entries} entries for ${ctx.rowCount} rows`);
  }
  const width = reader.u8('symbol index width', ctx);
  if (width !== symbolIndexWidth(entries)) {
    throw corruptField(
      ctx,
      entriesAt + 4,
      `symbol index width ${width} is not ${symbolIndexWidth(entries)} for ${entries} entries`,
    );
  }
  return entries;
}

/** Moves past the row indices into a dictionary of `entries` entries; returns where they start. */
function skipSymbolIndices(ctx: ChunkDecodeContext, entries: number): number {
  const indicesAt = ctx.reader.offset;
  ctx.reader.skip(ctx.rowCount * symbolIndexWidth(entries), 'symbol indices', ctx);
  return indicesAt;
}

/** Rows [from, to) of a symbol column: each non-null row's index must be inside the dictionary. */
function symbolRows(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  dictionary: string[],
  indicesAt: number,
  values: (string | null)[],
  from: number,
  to: number,
): void {
  const entries = dictionary.length;
  const width = symbolIndexWidth(entries);
  for (let row = from; row < to; row++) {
    if (isNullRow(nulls, row)) {
      values[row] = null;
      continue;
    }
    const index = readIndex(ctx.reader, indicesAt + row * width, width);
    if (index >= entries) {
      throw corruptField(
        ctx,
        indicesAt + row * width,
        `row ${row}: symbol index ${index} is outside the ${entries}-entry dictionary`,
      );
    }
    values[row] = dictionary[index]!;
  }
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
function decodeRows<T>(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  minBytesPerValue: number,
  decodeOne: DecodeOne<T>,
): (T | null)[] {
  const values = startRows<T>(ctx, nulls, minBytesPerValue);
  boxedRows(ctx, nulls, decodeOne, values, new RowContext(ctx), 0, ctx.rowCount);
  return values;
}

function* decodeRowsSteps<T>(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  minBytesPerValue: number,
  decodeOne: DecodeOne<T>,
): Generator<void, (T | null)[], void> {
  const values = startRows<T>(ctx, nulls, minBytesPerValue);
  const rowContext = new RowContext(ctx);
  yield* inSlices(ctx.rowCount, DECODE_SLICE_ROWS, (from, to) =>
    boxedRows(ctx, nulls, decodeOne, values, rowContext, from, to),
  );
  return values;
}

type DecodeOne<T> = (ctx: ChunkDecodeContext, row: RowContext) => T;

/** Checks that the non-null rows can fit in the bytes left; returns the (empty) row array. */
function startRows<T>(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  minBytesPerValue: number,
): (T | null)[] {
  let nonNullRows = ctx.rowCount;
  if (nulls !== null) for (let row = 0; row < ctx.rowCount; row++) if (isBitSet(nulls, row)) nonNullRows -= 1;
  if (nonNullRows * minBytesPerValue > ctx.reader.remaining) {
    ctx.reader.need(nonNullRows * minBytesPerValue, `${nonNullRows} non-null values`, ctx);
  }
  return new Array(ctx.rowCount);
}

function boxedRows<T>(
  ctx: ChunkDecodeContext,
  nulls: Uint8Array | null,
  decodeOne: DecodeOne<T>,
  values: (T | null)[],
  rowContext: RowContext,
  from: number,
  to: number,
): void {
  for (let row = from; row < to; row++) {
    if (isNullRow(nulls, row)) {
      values[row] = null;
      continue;
    }
    const overLimit = ctx.tally.addBoxedValue();
    if (overLimit !== undefined) throw corrupt(ctx, `row ${row}: ${overLimit}`);
    rowContext.row = row;
    values[row] = decodeOne(ctx, rowContext);
  }
}

/** "txn 7 column 'price' row 3", the context of a variable-width value's fields. */
class RowContext implements FieldContext {
  private readonly chunk: ChunkDecodeContext;
  row = 0;

  constructor(chunk: ChunkDecodeContext) {
    this.chunk = chunk;
  }

  get where(): string {
    return `${this.chunk.where} row ${this.row}`;
  }
}

function decodeDoubleArray(ctx: ChunkDecodeContext, rowContext: RowContext): DoubleArrayValue {
  const { reader } = ctx;
  const { row } = rowContext;
  const { maxArrayDims, maxArrayElements } = ctx.limits;
  const dimsAt = reader.offset;
  const ndims = reader.u8('array dimensions', rowContext);
  if (ndims < 1 || ndims > maxArrayDims) {
    throw corruptField(ctx, dimsAt, `row ${row}: array has ${ndims} dimensions, not 1..${maxArrayDims}`);
  }
  reader.need(ndims * 4, 'array shape', rowContext);
  const shape: number[] = [];
  let elements = 1;
  for (let d = 0; d < ndims; d++) {
    const dim = reader.u32('array shape', rowContext);
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
  const values = ctx.arena.copyFloat64s(reader.view8(elements * 8, 'array values', rowContext));
  return { shape, values };
}

function decodeDecimal(ctx: ChunkDecodeContext, rowContext: RowContext): DecimalValue {
  const { reader } = ctx;
  const { row } = rowContext;
  const at = reader.offset;
  const scale = reader.u8('decimal scale', rowContext);
  if (scale > MAX_DECIMAL_SCALE) {
    throw corruptField(ctx, at, `row ${row}: decimal scale ${scale} is above ${MAX_DECIMAL_SCALE}`);
  }
  const length = reader.u8('decimal length', rowContext);
  if (length < 1 || length > ctx.limits.maxDecimalBytes) {
    throw corruptField(
      ctx,
      at + 1,
      `row ${row}: decimal length ${length} is outside 1..${ctx.limits.maxDecimalBytes}`,
    );
  }
  const unscaled = decodeDecimalBytes(reader.view8(length, 'decimal value', rowContext));
  return { unscaled, scale };
}
