import { InvalidArgumentError } from '../core/index.js';
import type { ByteWriter } from './byte-writer.js';
import {
  type ColumnValues,
  type DecimalValue,
  type DoubleArrayValue,
  MAX_DECIMAL_SCALE,
} from './column-types.js';
import { decimalByteLength, encodeDecimalBytes } from './decimal-bytes.js';
import type { SegmentLimits } from './limits.js';
import { isBitSet, nullBitmapBytes } from './null-bitmap.js';
import { inSlices, type RowPass } from './row-slices.js';
import { symbolIndexWidth } from './segment-layout.js';
import type { SegmentTally } from './segment-tally.js';

/** What a column chunk encoder needs besides the values: where it is (for messages) and the budget. */
export interface ChunkContext {
  writer: ByteWriter;
  limits: SegmentLimits;
  tally: SegmentTally;
  rowCount: number;
  /** The effective null bitmap: null when no row is null. */
  nulls: Uint8Array | null;
  /** Makes "txn 7", which starts every message: called only when one is made. */
  where: () => string;
  /** The column's name, in every message after the txn. */
  column: string;
}

/**
 * Rows between two pauses of encodeColumnChunkSteps (a power of two: the loops test a mask). A
 * row costs well under a microsecond to encode, so a slice holds the event loop for a few ms.
 */
export const ENCODE_SLICE_ROWS = 8192;

/**
 * Appends one column chunk's values (RFC-0001 §3) after its null bitmap, validating them: one
 * slot per row, the right JS types, non-null rows non-null, every per-value limit. Throws
 * InvalidArgumentError naming the txn, column and row of the first problem.
 */
export function encodeColumnChunk(ctx: ChunkContext, data: ColumnValues): void {
  if (ctx.nulls !== null) writeBytes(ctx, ctx.nulls);
  switch (data.type) {
    case 'boolean':
      encodeBooleans(ctx, expectTyped(ctx, data.values, Uint8Array, 'Uint8Array'));
      return;
    case 'long':
    case 'timestamp':
      encodeFixed64(ctx, expectTyped(ctx, data.values, BigInt64Array, 'BigInt64Array'));
      return;
    case 'double':
      encodeFixed64(ctx, expectTyped(ctx, data.values, Float64Array, 'Float64Array'));
      return;
    case 'string':
      encodeStrings(ctx, expectArray(ctx, data.values));
      return;
    case 'symbol':
      encodeSymbols(ctx, expectArray(ctx, data.values));
      return;
    case 'double_array':
      encodeRows(ctx, expectArray(ctx, data.values), encodeDoubleArray);
      return;
    case 'decimal':
      encodeRows(ctx, expectArray(ctx, data.values), encodeDecimal);
      return;
    default:
      throw unknownType(ctx, data);
  }
}

/**
 * `encodeColumnChunk` as steps: it pauses (yields) every ENCODE_SLICE_ROWS rows so a caller can
 * free the event loop while a long column is encoded. The caller runs it to the end before using
 * `ctx.writer` again. It writes and checks exactly what encodeColumnChunk does, in the same order:
 * each type's plain encoder below has a `...Steps` twin that runs the same row passes (the
 * functions taking `from, to`) through `inSlices`. The twins exist because a generator per column
 * costs more than encoding a small chunk does.
 */
export function* encodeColumnChunkSteps(ctx: ChunkContext, data: ColumnValues): Generator<void, void, void> {
  if (ctx.nulls !== null) writeBytes(ctx, ctx.nulls);
  switch (data.type) {
    case 'boolean':
      return yield* encodeBooleansSteps(ctx, expectTyped(ctx, data.values, Uint8Array, 'Uint8Array'));
    case 'long':
    case 'timestamp':
      return yield* encodeFixed64Steps(ctx, expectTyped(ctx, data.values, BigInt64Array, 'BigInt64Array'));
    case 'double':
      return yield* encodeFixed64Steps(ctx, expectTyped(ctx, data.values, Float64Array, 'Float64Array'));
    case 'string':
      return yield* encodeStringsSteps(ctx, expectArray(ctx, data.values));
    case 'symbol':
      return yield* encodeSymbolsSteps(ctx, expectArray(ctx, data.values));
    case 'double_array':
      return yield* encodeRowsSteps(ctx, expectArray(ctx, data.values), encodeDoubleArray);
    case 'decimal':
      return yield* encodeRowsSteps(ctx, expectArray(ctx, data.values), encodeDecimal);
    default:
      throw unknownType(ctx, data);
  }
}

function unknownType(ctx: ChunkContext, data: never): InvalidArgumentError {
  return invalid(ctx, `unknown column type '${(data as { type: unknown }).type}'`);
}

function invalid(ctx: ChunkContext, message: string): InvalidArgumentError {
  return new InvalidArgumentError(`${ctx.where()} column '${ctx.column}': ${message}`);
}

function reserve(ctx: ChunkContext, bytes: number): void {
  if (!ctx.writer.reserve(bytes)) {
    throw invalid(ctx, `segment body would exceed maxRawBodyBytes ${ctx.limits.maxRawBodyBytes}`);
  }
}

function writeBytes(ctx: ChunkContext, bytes: Uint8Array): void {
  reserve(ctx, bytes.length);
  ctx.writer.bytes(bytes);
}

function isNullRow(ctx: ChunkContext, row: number): boolean {
  return ctx.nulls !== null && isBitSet(ctx.nulls, row);
}

function expectTyped<T extends ArrayBufferView & { length: number }>(
  ctx: ChunkContext,
  values: unknown,
  type: abstract new (...args: never[]) => T,
  typeName: string,
): T {
  if (!(values instanceof type)) throw invalid(ctx, `values must be a ${typeName}`);
  if (values.length !== ctx.rowCount) {
    throw invalid(ctx, `has ${values.length} values for ${ctx.rowCount} rows`);
  }
  return values;
}

function expectArray<T>(ctx: ChunkContext, values: readonly T[]): readonly T[] {
  if (!Array.isArray(values)) throw invalid(ctx, 'values must be an array');
  if (values.length !== ctx.rowCount) {
    throw invalid(ctx, `has ${values.length} values for ${ctx.rowCount} rows`);
  }
  return values;
}

function encodeBooleans(ctx: ChunkContext, values: Uint8Array): void {
  booleanPass(ctx, values)(0, ctx.rowCount);
}

function* encodeBooleansSteps(ctx: ChunkContext, values: Uint8Array): Generator<void, void, void> {
  yield* inSlices(ctx.rowCount, ENCODE_SLICE_ROWS, booleanPass(ctx, values));
}

/** Writes the values' zeroed bitmap; returns the pass that sets the bits of non-null 1 rows. */
function booleanPass(ctx: ChunkContext, values: Uint8Array): RowPass {
  const bytes = nullBitmapBytes(ctx.rowCount);
  reserve(ctx, bytes);
  const at = ctx.writer.zeros(bytes);
  const out = ctx.writer.bytesView;
  return (from, to) => {
    for (let row = from; row < to; row++) {
      const value = values[row]!;
      if (isNullRow(ctx, row)) continue;
      if (value > 1) throw invalid(ctx, `row ${row}: boolean value ${value} is not 0 or 1`);
      if (value === 1) out[at + (row >>> 3)] = out[at + (row >>> 3)]! | (1 << (row & 7));
    }
  };
}

/** One copy of the raw little-endian slots; null slots are zeroed so they carry nothing. */
function encodeFixed64(ctx: ChunkContext, values: BigInt64Array | Float64Array): void {
  const at = writeFixed64(ctx, values);
  if (ctx.nulls !== null) zeroNullSlots(ctx.writer.bytesView, at, ctx.nulls, 0, ctx.rowCount);
}

function* encodeFixed64Steps(
  ctx: ChunkContext,
  values: BigInt64Array | Float64Array,
): Generator<void, void, void> {
  const at = writeFixed64(ctx, values);
  const { nulls } = ctx;
  if (nulls === null) return;
  const out = ctx.writer.bytesView;
  yield* inSlices(ctx.rowCount, ENCODE_SLICE_ROWS, (from, to) => zeroNullSlots(out, at, nulls, from, to));
}

/** Copies the slots; returns where they start. */
function writeFixed64(ctx: ChunkContext, values: BigInt64Array | Float64Array): number {
  const source = new Uint8Array(values.buffer, values.byteOffset, ctx.rowCount * 8);
  writeBytes(ctx, source);
  return ctx.writer.offset - source.length;
}

function zeroNullSlots(out: Uint8Array, at: number, nulls: Uint8Array, from: number, to: number): void {
  for (let row = from; row < to; row++) if (isBitSet(nulls, row)) out.fill(0, at + row * 8, at + row * 8 + 8);
}

function checkString(ctx: ChunkContext, row: number, value: unknown): string {
  if (typeof value !== 'string') {
    throw invalid(
      ctx,
      `row ${row}: expected a string for a non-null row, got ${value === null ? 'null' : typeof value}`,
    );
  }
  if (value.length > ctx.limits.maxStringBytes) {
    throw invalid(ctx, `row ${row}: string is longer than maxStringBytes ${ctx.limits.maxStringBytes}`);
  }
  if (!(value as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw invalid(ctx, `row ${row}: string has a lone surrogate, which UTF-8 cannot carry`);
  }
  return value;
}

/** Writes `text` as UTF-8, returns its byte length; enforces maxStringBytes on the exact length. */
function writeUtf8(ctx: ChunkContext, row: number, text: string): number {
  const written = ctx.writer.utf8(text);
  if (written < 0) {
    throw invalid(ctx, `segment body would exceed maxRawBodyBytes ${ctx.limits.maxRawBodyBytes}`);
  }
  if (written > ctx.limits.maxStringBytes) {
    throw invalid(
      ctx,
      `row ${row}: string is ${written} UTF-8 bytes, above maxStringBytes ${ctx.limits.maxStringBytes}`,
    );
  }
  return written;
}

function encodeStrings(ctx: ChunkContext, values: readonly (string | null)[]): void {
  stringPass(ctx, values)(0, ctx.rowCount);
}

function* encodeStringsSteps(
  ctx: ChunkContext,
  values: readonly (string | null)[],
): Generator<void, void, void> {
  yield* inSlices(ctx.rowCount, ENCODE_SLICE_ROWS, stringPass(ctx, values));
}

/** Writes zeroed lengths; returns the pass that writes non-null rows' text and patches their lengths. */
function stringPass(ctx: ChunkContext, values: readonly (string | null)[]): RowPass {
  reserve(ctx, ctx.rowCount * 4);
  const lengthsAt = ctx.writer.zeros(ctx.rowCount * 4);
  return (from, to) => {
    for (let row = from; row < to; row++) {
      if (isNullRow(ctx, row)) continue;
      const written = writeUtf8(ctx, row, checkString(ctx, row, values[row]));
      ctx.writer.patchU32(lengthsAt + row * 4, written);
    }
  };
}

/**
 * Scratch for symbol indices, reused across columns: a fresh typed array per column costs about
 * a microsecond (an ArrayBuffer allocation), which dominated encoding. Safe because a chunk of at
 * most ENCODE_SLICE_ROWS rows is encoded without a pause; a longer one, which may pause while
 * another encoding runs, gets its own array (its allocation is small beside its rows).
 */
const symbolScratch = new Uint32Array(ENCODE_SLICE_ROWS);

/** A per-record dictionary in first-appearance order, then one index per row of the minimal width. */
function encodeSymbols(ctx: ChunkContext, values: readonly (string | null)[]): void {
  const symbols = new SymbolChunk(ctx, values);
  symbols.indexRows(0, ctx.rowCount);
  symbols.writeHeader();
  symbols.writeEntries(0, symbols.entries.length);
  symbols.startIndices();
  symbols.writeIndices(0, ctx.rowCount);
}

function* encodeSymbolsSteps(
  ctx: ChunkContext,
  values: readonly (string | null)[],
): Generator<void, void, void> {
  const symbols = new SymbolChunk(ctx, values);
  yield* inSlices(ctx.rowCount, ENCODE_SLICE_ROWS, (from, to) => symbols.indexRows(from, to));
  symbols.writeHeader();
  yield* inSlices(symbols.entries.length, ENCODE_SLICE_ROWS, (from, to) => symbols.writeEntries(from, to));
  symbols.startIndices();
  // The index pass has always paused on slice boundaries (rows 8192, 16384, ...), not a row before.
  yield* inSlices(
    ctx.rowCount,
    ENCODE_SLICE_ROWS,
    (from, to) => symbols.writeIndices(from, to),
    ENCODE_SLICE_ROWS,
  );
}

/**
 * A symbol chunk being encoded, in three passes: rows to dictionary indices, the dictionary's
 * entries, then the indices at the dictionary's width.
 */
class SymbolChunk {
  readonly #ctx: ChunkContext;
  readonly #values: readonly (string | null)[];
  readonly #indices: Uint32Array;
  // A null-prototype object looks up string keys ~1.6x faster than a Map here; `entries` keeps the order.
  readonly #dictionary: Record<string, number> = Object.create(null);
  readonly entries: string[] = [];
  #width: 1 | 2 | 4 = 1;
  #lengthsAt = 0;
  #indicesAt = 0;

  constructor(ctx: ChunkContext, values: readonly (string | null)[]) {
    this.#ctx = ctx;
    this.#values = values;
    this.#indices = ctx.rowCount < symbolScratch.length ? symbolScratch : new Uint32Array(ctx.rowCount);
  }

  /** Rows [from, to): each non-null row's index, adding new values to the dictionary. */
  indexRows(from: number, to: number): void {
    const ctx = this.#ctx;
    const indices = this.#indices;
    const dictionary = this.#dictionary;
    const { entries } = this;
    for (let row = from; row < to; row++) {
      indices[row] = 0;
      if (isNullRow(ctx, row)) continue;
      const value = this.#values[row];
      let index = typeof value === 'string' ? dictionary[value] : undefined;
      if (index === undefined) {
        index = entries.length;
        const entry = checkString(ctx, row, value);
        dictionary[entry] = index;
        entries.push(entry);
      }
      indices[row] = index;
    }
  }

  /** The dictionary size and index width, then zeroed entry lengths. */
  writeHeader(): void {
    const { writer } = this.#ctx;
    const count = this.entries.length;
    this.#width = symbolIndexWidth(count);
    reserve(this.#ctx, 5 + count * 4);
    writer.u32(count);
    writer.u8(this.#width);
    this.#lengthsAt = writer.zeros(count * 4);
  }

  /** Entries [from, to): their text, patching their lengths. */
  writeEntries(from: number, to: number): void {
    for (let index = from; index < to; index++) {
      const written = writeUtf8(this.#ctx, index, this.entries[index]!);
      this.#ctx.writer.patchU32(this.#lengthsAt + index * 4, written);
    }
  }

  /** Zeroed room for every row's index. */
  startIndices(): void {
    const { rowCount } = this.#ctx;
    reserve(this.#ctx, rowCount * this.#width);
    this.#indicesAt = this.#ctx.writer.zeros(rowCount * this.#width);
  }

  /** Rows [from, to) of the indices. */
  writeIndices(from: number, to: number): void {
    writeIndices(this.#ctx.writer.bytesView, this.#indicesAt, this.#indices, from, to, this.#width);
  }
}

/** Little-endian indices of rows [fromRow, toRow) of `width` bytes into `out` at `at`. */
function writeIndices(
  out: Uint8Array,
  at: number,
  indices: Uint32Array,
  fromRow: number,
  toRow: number,
  width: 1 | 2 | 4,
): void {
  for (let row = fromRow; row < toRow; row++) {
    const index = indices[row]!;
    const to = at + row * width;
    out[to] = index & 0xff;
    if (width === 1) continue;
    out[to + 1] = (index >>> 8) & 0xff;
    if (width === 2) continue;
    out[to + 2] = (index >>> 16) & 0xff;
    out[to + 3] = index >>> 24;
  }
}

/** Variable-width types: non-null rows only, each validated and counted as a boxed value. */
function encodeRows<T>(ctx: ChunkContext, values: readonly (T | null)[], encodeOne: EncodeOne<T>): void {
  boxedRows(ctx, values, encodeOne, 0, ctx.rowCount);
}

function* encodeRowsSteps<T>(
  ctx: ChunkContext,
  values: readonly (T | null)[],
  encodeOne: EncodeOne<T>,
): Generator<void, void, void> {
  yield* inSlices(ctx.rowCount, ENCODE_SLICE_ROWS, (from, to) => boxedRows(ctx, values, encodeOne, from, to));
}

type EncodeOne<T> = (ctx: ChunkContext, row: number, value: T) => void;

function boxedRows<T>(
  ctx: ChunkContext,
  values: readonly (T | null)[],
  encodeOne: EncodeOne<T>,
  from: number,
  to: number,
): void {
  for (let row = from; row < to; row++) {
    if (isNullRow(ctx, row)) continue;
    const value = values[row];
    if (value === null || typeof value !== 'object') {
      throw invalid(
        ctx,
        `row ${row}: expected a value for a non-null row, got ${value === null ? 'null' : typeof value}`,
      );
    }
    const overLimit = ctx.tally.addBoxedValue();
    if (overLimit !== undefined) throw invalid(ctx, overLimit);
    encodeOne(ctx, row, value);
  }
}

function encodeDoubleArray(ctx: ChunkContext, row: number, value: DoubleArrayValue): void {
  const { shape, values } = value;
  const { maxArrayDims, maxArrayElements } = ctx.limits;
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > maxArrayDims) {
    throw invalid(ctx, `row ${row}: array shape must have 1..${maxArrayDims} dimensions`);
  }
  let elements = 1;
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 0 || dim > maxArrayElements) {
      throw invalid(ctx, `row ${row}: array dimension ${dim} is not an integer in 0..${maxArrayElements}`);
    }
    elements *= dim;
    if (elements > maxArrayElements) {
      throw invalid(ctx, `row ${row}: array has more than maxArrayElements ${maxArrayElements} elements`);
    }
  }
  if (!(values instanceof Float64Array) || values.length !== elements) {
    throw invalid(
      ctx,
      `row ${row}: array values must be a Float64Array of ${elements} elements (the shape's product)`,
    );
  }
  reserve(ctx, 1 + shape.length * 4 + elements * 8);
  ctx.writer.u8(shape.length);
  for (const dim of shape) ctx.writer.u32(dim);
  ctx.writer.bytes(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
}

function encodeDecimal(ctx: ChunkContext, row: number, value: DecimalValue): void {
  const { unscaled, scale } = value;
  if (!Number.isInteger(scale) || scale < 0 || scale > MAX_DECIMAL_SCALE) {
    throw invalid(ctx, `row ${row}: decimal scale ${scale} is not an integer in 0..${MAX_DECIMAL_SCALE}`);
  }
  if (typeof unscaled !== 'bigint') throw invalid(ctx, `row ${row}: decimal unscaled value must be a bigint`);
  const byteLength = decimalByteLength(unscaled);
  if (byteLength > ctx.limits.maxDecimalBytes) {
    throw invalid(
      ctx,
      `row ${row}: decimal needs ${byteLength} bytes, above maxDecimalBytes ${ctx.limits.maxDecimalBytes}`,
    );
  }
  reserve(ctx, 2 + byteLength);
  ctx.writer.u8(scale);
  ctx.writer.u8(byteLength);
  ctx.writer.bytes(encodeDecimalBytes(unscaled, byteLength));
}
