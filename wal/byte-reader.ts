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
 * A little-endian reader over `bytes[start, end)` that checks every read against the bytes left
 * and throws CorruptSegmentError naming the field and its offset. Callers check counts with
 * `need` before allocating anything sized by them.
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

  /** Throws unless `bytes` more bytes remain; `what` names the field for the message. */
  need(bytes: number, what: string): void {
    if (bytes > this.remaining) {
      throw this.corrupt(`${what} needs ${bytes} bytes but only ${this.remaining} remain`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.offset++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const value = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64(what: string): bigint {
    this.need(8, what);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    return value;
  }

  i64(what: string): bigint {
    this.need(8, what);
    const value = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return value;
  }

  /** A view (not a copy) of the next `length` bytes. */
  view8(length: number, what: string): Uint8Array {
    this.need(length, what);
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
export function decodeUtf8(slice: Uint8Array, region: SegmentRegion, offset: number, what: string): string {
  if (slice.length === 0) return '';
  try {
    return fatalUtf8.decode(slice);
  } catch (error) {
    throw corruptAt(region, offset, `${what} is not valid UTF-8`, error);
  }
}
