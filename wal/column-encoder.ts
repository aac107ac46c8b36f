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
const SLICE_MASK = ENCODE_SLICE_ROWS - 1;

/**
 * Appends one column chunk's values (RFC-0001 §3) after its null bitmap, validating them: one
 * slot per row, the right JS types, non-null rows non-null, every per-value limit. Throws
 * InvalidArgumentError naming the txn, column and row of the first problem.
 */
export function encodeColumnChunk(ctx: ChunkContext, data: ColumnValues): void {
  const steps = encodeColumnChunkSteps(ctx, data);
  while (steps.next().done !== true);
}

/**
 * `encodeColumnChunk` as steps: it pauses (yields) every ENCODE_SLICE_ROWS rows so a caller can
 * free the event loop while a long column is encoded. The caller runs it to the end before using
 * `ctx.writer` again.
 */
export function* encodeColumnChunkSteps(ctx: ChunkContext, data: ColumnValues): Generator<void, void, void> {
  if (ctx.nulls !== null) writeBytes(ctx, ctx.nulls);
  switch (data.type) {
    case 'boolean':
      return yield* encodeBooleans(ctx, expectTyped(ctx, data.values, Uint8Array, 'Uint8Array'));
    case 'long':
    case 'timestamp':
      return yield* encodeFixed64(ctx, expectTyped(ctx, data.values, BigInt64Array, 'BigInt64Array'));
    case 'double':
      return yield* encodeFixed64(ctx, expectTyped(ctx, data.values, Float64Array, 'Float64Array'));
    case 'string':
      return yield* encodeStrings(ctx, expectArray(ctx, data.values));
    case 'symbol':
      return yield* encodeSymbols(ctx, expectArray(ctx, data.values));
    case 'double_array':
      return yield* encodeRows(ctx, expectArray(ctx, data.values), encodeDoubleArray);
    case 'decimal':
      return yield* encodeRows(ctx, expectArray(ctx, data.values), encodeDecimal);
    default:
      throw invalid(ctx, `unknown column type '${(data as { type: unknown }).type}'`);
  }
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

function* encodeBooleans(ctx: ChunkContext, values: Uint8Array): Generator<void, void, void> {
  const bytes = nullBitmapBytes(ctx.rowCount);
  reserve(ctx, bytes);
  const at = ctx.writer.zeros(bytes);
  const out = ctx.writer.bytesView;
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    const value = values[row]!;
    if (isNullRow(ctx, row)) continue;
    if (value > 1) throw invalid(ctx, `row ${row}: boolean value ${value} is not 0 or 1`);
    if (value === 1) out[at + (row >>> 3)] = out[at + (row >>> 3)]! | (1 << (row & 7));
  }
}

/** One copy of the raw little-endian slots; null slots are zeroed so they carry nothing. */
function* encodeFixed64(
  ctx: ChunkContext,
  values: BigInt64Array | Float64Array,
): Generator<void, void, void> {
  const source = new Uint8Array(values.buffer, values.byteOffset, ctx.rowCount * 8);
  writeBytes(ctx, source);
  if (ctx.nulls === null) return;
  const out = ctx.writer.bytesView;
  const at = out.length - source.length;
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    if (isNullRow(ctx, row)) out.fill(0, at + row * 8, at + row * 8 + 8);
  }
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

function* encodeStrings(ctx: ChunkContext, values: readonly (string | null)[]): Generator<void, void, void> {
  reserve(ctx, ctx.rowCount * 4);
  const lengthsAt = ctx.writer.zeros(ctx.rowCount * 4);
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    if (isNullRow(ctx, row)) continue;
    const written = writeUtf8(ctx, row, checkString(ctx, row, values[row]));
    ctx.writer.patchU32(lengthsAt + row * 4, written);
  }
}

/** A per-record dictionary in first-appearance order, then one index per row of the minimal width. */
/**
 * Scratch for symbol indices, reused across columns: a fresh typed array per column costs about
 * a microsecond (an ArrayBuffer allocation), which dominated encoding. Safe because a chunk of at
 * most ENCODE_SLICE_ROWS rows is encoded without a pause; a longer one, which may pause while
 * another encoding runs, gets its own array (its allocation is small beside its rows).
 */
const symbolScratch = new Uint32Array(ENCODE_SLICE_ROWS);

function* encodeSymbols(ctx: ChunkContext, values: readonly (string | null)[]): Generator<void, void, void> {
  const { rowCount } = ctx;
  const indices = rowCount < symbolScratch.length ? symbolScratch : new Uint32Array(rowCount);
  // A null-prototype object looks up string keys ~1.6x faster than a Map here; `entries` keeps the order.
  const dictionary: Record<string, number> = Object.create(null);
  const entries: string[] = [];
  for (let row = 0; row < rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
    indices[row] = 0;
    if (isNullRow(ctx, row)) continue;
    const value = values[row];
    let index = typeof value === 'string' ? dictionary[value] : undefined;
    if (index === undefined) {
      index = entries.length;
      const entry = checkString(ctx, row, value);
      dictionary[entry] = index;
      entries.push(entry);
    }
    indices[row] = index;
  }
  const width = symbolIndexWidth(entries.length);
  reserve(ctx, 5 + entries.length * 4);
  ctx.writer.u32(entries.length);
  ctx.writer.u8(width);
  const lengthsAt = ctx.writer.zeros(entries.length * 4);
  for (let index = 0; index < entries.length; index++) {
    if ((index & SLICE_MASK) === SLICE_MASK) yield;
    ctx.writer.patchU32(lengthsAt + index * 4, writeUtf8(ctx, index, entries[index]!));
  }
  reserve(ctx, rowCount * width);
  const at = ctx.writer.zeros(rowCount * width);
  for (let from = 0; from < rowCount; from += ENCODE_SLICE_ROWS) {
    if (from > 0) yield;
    writeIndices(
      ctx.writer.bytesView,
      at,
      indices,
      from,
      Math.min(rowCount, from + ENCODE_SLICE_ROWS),
      width,
    );
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
function* encodeRows<T>(
  ctx: ChunkContext,
  values: readonly (T | null)[],
  encodeOne: (ctx: ChunkContext, row: number, value: T) => void,
): Generator<void, void, void> {
  for (let row = 0; row < ctx.rowCount; row++) {
    if ((row & SLICE_MASK) === SLICE_MASK) yield;
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
