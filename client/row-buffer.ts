import { Buffer } from 'node:buffer';
import { WalshipClientError } from './errors.js';

/**
 * The sender's open buffer of complete ILP lines, not yet sealed into a batch: grows by doubling
 * from init_buf_size up to max_buf_size and refuses a row that would pass it (BUFFER_FULL, the row
 * is not added) — counting, besides its own bytes, the bytes of sealed batches kept in memory.
 * Sealed rows leave it from the front.
 */
export class RowBuffer {
  readonly #maxBytes: number;
  #bytes: Buffer;
  #length = 0;
  #rows = 0;

  constructor(initBytes: number, maxBytes: number) {
    if (!(Number.isInteger(initBytes) && initBytes >= 1 && initBytes <= maxBytes)) {
      throw new Error(`RowBuffer sizes: need 1 ≤ init (${initBytes}) ≤ max (${maxBytes})`);
    }
    this.#maxBytes = maxBytes;
    this.#bytes = Buffer.allocUnsafe(initBytes);
  }

  get lengthBytes(): number {
    return this.#length;
  }

  get rows(): number {
    return this.#rows;
  }

  /** Current capacity in bytes (for tests and metrics). */
  get capacityBytes(): number {
    return this.#bytes.length;
  }

  /**
   * Appends one complete line (LF included). `sealedBytes`: bytes of sealed batches held in memory
   * elsewhere, which count against max_buf_size too.
   */
  append(line: string, sealedBytes = 0): void {
    const bytes = Buffer.byteLength(line, 'utf8');
    const needed = this.#length + bytes;
    if (sealedBytes + needed > this.#maxBytes) {
      const held = sealedBytes > 0 ? ` (and ${sealedBytes} in sealed batches awaiting a 204)` : '';
      throw new WalshipClientError(
        'BUFFER_FULL',
        'unavailable',
        `the row (${bytes} bytes) does not fit: ${this.#length} bytes are buffered${held} and max_buf_size ` +
          `is ${this.#maxBytes}; flush (or raise max_buf_size) and add the row again`,
        {
          details: {
            rowBytes: bytes,
            bufferedBytes: this.#length,
            sealedBytes,
            maxBufSizeBytes: this.#maxBytes,
          },
        },
      );
    }
    if (needed > this.#bytes.length) this.#grow(needed);
    this.#bytes.write(line, this.#length, 'utf8');
    this.#length = needed;
    this.#rows++;
  }

  /** A copy of everything buffered (safe to send while rows keep being added), with its row count. */
  snapshot(): { bytes: Buffer; rows: number } {
    return { bytes: Buffer.from(this.#bytes.subarray(0, this.#length)), rows: this.#rows };
  }

  /** Drops the first `lengthBytes` bytes holding `rows` rows (sealed into a batch). */
  dropFront(lengthBytes: number, rows: number): void {
    if (lengthBytes > this.#length || rows > this.#rows) throw new Error('RowBuffer.dropFront past the end');
    this.#bytes.copy(this.#bytes, 0, lengthBytes, this.#length);
    this.#length -= lengthBytes;
    this.#rows -= rows;
  }

  /** Drops everything. */
  clear(): void {
    this.#length = 0;
    this.#rows = 0;
  }

  #grow(neededBytes: number): void {
    let size = this.#bytes.length;
    while (size < neededBytes) size *= 2;
    const grown = Buffer.allocUnsafe(Math.min(size, this.#maxBytes));
    this.#bytes.copy(grown, 0, 0, this.#length);
    this.#bytes = grown;
  }
}
