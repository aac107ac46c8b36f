import { Buffer } from 'node:buffer';
import { assert } from '../core/index.js';

const INITIAL_CAPACITY_BYTES = 64 * 1024;

/** Strings up to this many UTF-16 units are checked for ASCII and copied by hand (see utf8). */
const SHORT_ASCII_CHARS = 16;

/**
 * An append-only little-endian byte buffer that grows by doubling. The encoder's limits bound
 * how far it can grow; `maxBytes` makes the writer assert that bound instead of trusting it.
 */
export class ByteWriter {
  private buffer: Uint8Array;
  private view: DataView;
  private length = 0;
  private readonly maxBytes: number;

  constructor(maxBytes: number, initialCapacityBytes = INITIAL_CAPACITY_BYTES) {
    this.maxBytes = maxBytes;
    this.buffer = new Uint8Array(Math.max(16, Math.min(initialCapacityBytes, maxBytes)));
    this.view = new DataView(this.buffer.buffer);
  }

  /** Bytes written so far; also the offset of the next byte. */
  get offset(): number {
    return this.length;
  }

  /**
   * Makes room for `bytes` more bytes. Returns false (writing nothing) when that would pass
   * `maxBytes`, so the caller can report which limit the input broke.
   */
  reserve(bytes: number): boolean {
    const needed = this.length + bytes;
    if (needed > this.maxBytes) return false;
    if (needed <= this.buffer.length) return true;
    let capacity = this.buffer.length;
    while (capacity < needed) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, this.maxBytes));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
    return true;
  }

  private claim(bytes: number): number {
    // The message is made only for a failure: this runs for every field written.
    if (!this.reserve(bytes)) assert(false, `ByteWriter: ${bytes} more bytes would pass ${this.maxBytes}`);
    const at = this.length;
    this.length += bytes;
    return at;
  }

  u8(value: number): void {
    this.buffer[this.claim(1)] = value;
  }

  u16(value: number): void {
    this.view.setUint16(this.claim(2), value, true);
  }

  u32(value: number): void {
    this.view.setUint32(this.claim(4), value, true);
  }

  u64(value: bigint): void {
    this.view.setBigUint64(this.claim(8), value, true);
  }

  i64(value: bigint): void {
    this.view.setBigInt64(this.claim(8), value, true);
  }

  /** Overwrites a u32 written earlier at `at` (lengths known only after their content). */
  patchU32(at: number, value: number): void {
    assert(at + 4 <= this.length, 'ByteWriter.patchU32 past the end');
    this.view.setUint32(at, value, true);
  }

  bytes(source: Uint8Array): void {
    this.buffer.set(source, this.claim(source.length));
  }

  /** Appends `bytes` zero bytes and returns their offset, for the caller to fill in place. */
  zeros(bytes: number): number {
    const at = this.claim(bytes);
    this.buffer.fill(0, at, at + bytes);
    return at;
  }

  /**
   * Encodes `text` as UTF-8 in place and returns its byte length, or -1 (writing nothing) when it
   * would pass `maxBytes`. The caller has already checked that `text` is well-formed UTF-16, so
   * the encoding is exact.
   */
  utf8(text: string): number {
    // A UTF-16 code unit never takes more than 3 UTF-8 bytes; measure exactly only near the limit.
    if (!this.reserve(text.length * 3) && !this.reserve(Buffer.byteLength(text, 'utf8'))) return -1;
    if (text.length <= SHORT_ASCII_CHARS && this.asciiInPlace(text)) return text.length;
    const { written } = textEncoder.encodeInto(text, this.buffer.subarray(this.length));
    this.length += written;
    return written;
  }

  /**
   * Writes `text` byte per char when it is all ASCII (its UTF-8 encoding then) and returns true;
   * otherwise writes nothing and returns false. Room is reserved. For short strings (symbols, tags)
   * this is several times faster than a TextEncoder call.
   */
  private asciiInPlace(text: string): boolean {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
    const buffer = this.buffer;
    const at = this.length;
    for (let i = 0; i < text.length; i++) buffer[at + i] = text.charCodeAt(i);
    this.length += text.length;
    return true;
  }

  /** Direct access to the bytes written so far, for in-place fills (bit packing, zeroing slots). */
  get bytesView(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  /** The bytes the buffer holds before it has to grow. */
  get capacityBytes(): number {
    return this.buffer.length;
  }

  /** Forgets everything written, keeping the buffer: the next byte goes at offset 0. */
  reset(): void {
    this.length = 0;
  }

  /** A copy of the bytes written so far, in a buffer of exactly that length. */
  toBytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

const textEncoder = new TextEncoder();
