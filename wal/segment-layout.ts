import { assert } from '../core/index.js';

/**
 * Byte offsets and constants of format version 1 (RFC-0001 §2). The encoder, the decoder and the
 * fuzz tests' resealing code all read them from here, so the layout lives in one place.
 */

// Raw typed-array copies (RFC-0001 §3) are only correct on a little-endian platform.
assert(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1, 'wal/ requires a little-endian platform');

/** `\x89WSG\r\n\x1a\n`: PNG's trick, so 7-bit transfers, newline conversion and `type` all break it visibly. */
export const SEGMENT_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x57, 0x53, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export const FORMAT_VERSION = 1;

/** Header field offsets (RFC-0001 §2.1). */
export const HEADER = Object.freeze({
  magic: 0,
  formatVersion: 8,
  headerBytes: 10,
  codec: 12,
  flags: 13,
  reserved: 14,
  epoch: 16,
  txnFirst: 24,
  txnLast: 32,
  txnCount: 40,
  rowCount: 44,
  tsMinUs: 48,
  tsMaxUs: 56,
  bodyBytesStored: 64,
  bodyBytesRaw: 68,
  tableNameBytes: 72,
  tableName: 73,
});

/** Header bytes besides the two names: fixed fields, two name lengths, the checksum. */
export const HEADER_FIXED_BYTES = 78;
/** Header flag bit 0: the timestamp range is present. */
export const HEADER_FLAG_TS_RANGE = 0x01;
export const CHECKSUM_BYTES = 4;
export const TRAILER_BYTES = CHECKSUM_BYTES;
/** Smallest possible object: a header with one-byte names, an empty body, a trailer. */
export const MIN_OBJECT_BYTES = HEADER_FIXED_BYTES + 2 + TRAILER_BYTES;

/** Txn record field offsets, relative to the record's start (RFC-0001 §2.4). */
export const RECORD = Object.freeze({
  payloadBytes: 0,
  txn: 4,
  commitTimeUs: 12,
  kind: 20,
  flags: 21,
  columnCount: 22,
  rowCount: 24,
  columns: 28,
});

/** Payload bytes of a record with no columns: txn, commit time, kind, flags, column and row counts. */
export const RECORD_FIXED_PAYLOAD_BYTES = RECORD.columns - 4;
/** Smallest record: length prefix, fixed payload, checksum. */
export const MIN_RECORD_BYTES = 4 + RECORD_FIXED_PAYLOAD_BYTES + CHECKSUM_BYTES;

/** Column descriptor flag bits (RFC-0001 §2.5). */
export const COLUMN_FLAG_ADDED_IN_TXN = 0x01;
export const COLUMN_FLAG_HAS_NULLS = 0x02;

/** Largest value of a u64 field that must also fit an i64 (txn numbers, epochs). */
export const MAX_I64 = (1n << 63n) - 1n;
export const MIN_I64 = -(1n << 63n);

/** Symbol index width for a dictionary of `entries` entries: the smallest of 1, 2, 4 bytes that fits. */
export function symbolIndexWidth(entries: number): 1 | 2 | 4 {
  if (entries <= 0x100) return 1;
  if (entries <= 0x10000) return 2;
  return 4;
}
