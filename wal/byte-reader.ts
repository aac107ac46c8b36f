import { CorruptSegmentError } from '../core/index.js';

/** Which bytes an offset in an error message counts from (RFC-0001 §7). */
export type SegmentRegion = 'object' | 'body';

/** A CorruptSegmentError that says what is wrong and where; `details` carries the offset. */
export function corruptAt(region: SegmentRegion, offset: number, message: string, cause?: unknown) {
  return new CorruptSegmentError(`${message} (at ${region} offset ${offset})`, {
    details: { region, offset },
    ...(cause === undefined ? {} : { cause }),
  });
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * What a field belongs to ("txn 7 column 'price'"), prefixed to its name in an error message.
 * Readers read `where` only when a read fails: decoding a segment of many small records must not
 * format a name (a bigint and a column name) for every field it reads without error.
 */
export interface FieldContext {
  readonly where: string;
}

/** The field's name in a message: `what`, after its context's `where` when there is one. */
function fieldName(what: string, context: FieldContext | undefined): string {
  return context === undefined ? what : `${context.where} ${what}`;
}

/**
 * A little-endian reader over `bytes[start, end)` that checks every read against the bytes left
 * and throws CorruptSegmentError naming the field and its offset. Callers check counts with
 * `need` before allocating anything sized by them. Every read takes the field's name as `what`
 * and an optional `context` that prefixes it (see FieldContext).
 */
export class ByteReader {
  readonly bytes: Uint8Array;
  readonly region: SegmentRegion;
  /** Offset of the next byte, in `region` coordinates. */
  offset: number;
  private end: number;
  /** The whole input as a DataView, for reading a field at a known offset without moving. */
  readonly view: DataView;

  constructor(bytes: Uint8Array, region: SegmentRegion, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.region = region;
    this.offset = start;
    this.end = end;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes left before the reader's end. */
  get remaining(): number {
    return this.end - this.offset;
  }

  /** Moves the end to `end` (a record's end); returns the previous end for `restoreEnd`. */
  limitTo(end: number): number {
    const previous = this.end;
    this.end = end;
    return previous;
  }

  restoreEnd(end: number): void {
    this.end = end;
  }

  /** A CorruptSegmentError at the current offset. */
  corrupt(message: string, cause?: unknown): CorruptSegmentError {
    return corruptAt(this.region, this.offset, message, cause);
  }

  /** Throws unless `bytes` more bytes remain; `what` (after `context`) names the field for the message. */
  need(bytes: number, what: string, context?: FieldContext): void {
    if (bytes > this.remaining) {
      throw this.corrupt(
        `${fieldName(what, context)} needs ${bytes} bytes but only ${this.remaining} remain`,
      );
    }
  }

  u8(what: string, context?: FieldContext): number {
    this.need(1, what, context);
    return this.bytes[this.offset++]!;
  }

  u16(what: string, context?: FieldContext): number {
    this.need(2, what, context);
    const value = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return value;
  }

  u32(what: string, context?: FieldContext): number {
    this.need(4, what, context);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64(what: string, context?: FieldContext): bigint {
    this.need(8, what, context);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    return value;
  }

  i64(what: string, context?: FieldContext): bigint {
    this.need(8, what, context);
    const value = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return value;
  }

  /** Whether the next bytes (before the reader's end) equal `expected`; reads nothing. */
  startsWith(expected: Uint8Array): boolean {
    if (expected.length > this.remaining) return false;
    const { bytes, offset } = this;
    for (let i = 0; i < expected.length; i++) if (bytes[offset + i] !== expected[i]) return false;
    return true;
  }

  /** Moves past the next `length` bytes (read later at known offsets through `view` or `bytes`). */
  skip(length: number, what: string, context?: FieldContext): void {
    this.need(length, what, context);
    this.offset += length;
  }

  /** A view (not a copy) of the next `length` bytes. */
  view8(length: number, what: string, context?: FieldContext): Uint8Array {
    this.need(length, what, context);
    const slice = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }

  /** Decodes the next `length` bytes as UTF-8; invalid UTF-8 is corruption, not U+FFFD. */
  utf8(length: number, what: string): string {
    const at = this.offset;
    const slice = this.view8(length, what);
    return decodeUtf8(slice, this.region, at, what);
  }
}

/** Strict UTF-8 decoding: invalid sequences throw CorruptSegmentError at `offset`. */
export function decodeUtf8(
  slice: Uint8Array,
  region: SegmentRegion,
  offset: number,
  what: string,
  context?: FieldContext,
): string {
  if (slice.length === 0) return '';
  try {
    return fatalUtf8.decode(slice);
  } catch (error) {
    throw corruptAt(region, offset, `${fieldName(what, context)} is not valid UTF-8`, error);
  }
}
