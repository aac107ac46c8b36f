import { InvalidArgumentError } from '../core/index.js';
import { ByteReader, corruptAt } from './byte-reader.js';
import { ByteWriter } from './byte-writer.js';
import { checksum } from './checksum.js';
import { CODEC_IDS, type Codec, codecOfId } from './codecs.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import {
  CHECKSUM_BYTES,
  FORMAT_VERSION,
  HEADER,
  HEADER_FIXED_BYTES,
  HEADER_FLAG_TS_RANGE,
  MAX_I64,
  MIN_OBJECT_BYTES,
  MIN_RECORD_BYTES,
  SEGMENT_MAGIC,
  TRAILER_BYTES,
} from './segment-layout.js';

/** What a segment says about itself, readable without touching the body (RFC-0001 §2.1). */
export interface SegmentHeader {
  formatVersion: number;
  tableName: string;
  epoch: bigint;
  writerNodeId: string;
  txnFirst: bigint;
  txnLast: bigint;
  txnCount: number;
  rowCount: number;
  /** Min/max over the non-null values of the designated timestamp column; null when there are none. */
  tsMinUs: bigint | null;
  tsMaxUs: bigint | null;
  codec: Codec;
  bodyBytesStored: number;
  bodyBytesRaw: number;
  /**
   * Header flag bit 1 (RFC-0003): a writer's un-numbered segment under `tables/<t>/staged/`. Its
   * txn numbers are the writer's own local sequence; a log entry gives them their place in the
   * table (record i is txn `entry.txnFirst + i`). Never part of a `wal/` chain.
   */
  staged: boolean;
  /** The trailer's CRC-32 over the whole object: same writer + same checksum = the same segment. */
  objectChecksum: number;
}

/** The header's fields as the encoder knows them: everything but what depends on the finished object. */
export type HeaderFields = Omit<SegmentHeader, 'formatVersion' | 'objectChecksum'>;

/**
 * Header flag bit 1: a staged segment (RFC-0003). Kept here rather than in segment-layout.ts so the
 * flag's whole meaning — encode, decode, the API field — sits in one file.
 */
export const HEADER_FLAG_STAGED = 0x02;
/** Every header flag this reader knows; any other bit set is corruption (RFC-0001 §9). */
const HEADER_FLAGS_KNOWN = HEADER_FLAG_TS_RANGE | HEADER_FLAG_STAGED;

const textEncoder = new TextEncoder();

/** Encodes a header, its checksum included. The caller has validated every field. */
export function encodeHeader(fields: HeaderFields): Uint8Array {
  const tableName = textEncoder.encode(fields.tableName);
  const writerNodeId = textEncoder.encode(fields.writerNodeId);
  const headerBytes = HEADER_FIXED_BYTES + tableName.length + writerNodeId.length;
  const writer = new ByteWriter(headerBytes, headerBytes);
  const hasTsRange = fields.tsMinUs !== null && fields.tsMaxUs !== null;
  writer.bytes(SEGMENT_MAGIC);
  writer.u16(FORMAT_VERSION);
  writer.u16(headerBytes);
  writer.u8(CODEC_IDS[fields.codec]);
  writer.u8((hasTsRange ? HEADER_FLAG_TS_RANGE : 0) | (fields.staged ? HEADER_FLAG_STAGED : 0));
  writer.u16(0);
  writer.u64(fields.epoch);
  writer.u64(fields.txnFirst);
  writer.u64(fields.txnLast);
  writer.u32(fields.txnCount);
  writer.u32(fields.rowCount);
  writer.i64(hasTsRange ? fields.tsMinUs! : 0n);
  writer.i64(hasTsRange ? fields.tsMaxUs! : 0n);
  writer.u32(fields.bodyBytesStored);
  writer.u32(fields.bodyBytesRaw);
  writer.u8(tableName.length);
  writer.bytes(tableName);
  writer.u8(writerNodeId.length);
  writer.bytes(writerNodeId);
  writer.u32(checksum(writer.bytesView));
  return writer.toBytes();
}

/** The parsed header plus its length, for the body decoder. */
export interface ParsedHeader {
  header: SegmentHeader;
  headerBytes: number;
}

/**
 * Reads and checks a segment's header (RFC-0001 §7 steps 1–7): size, magic, version, header
 * checksum, every field's range and the object's total length. Sync and cheap: it never touches
 * the body, and reads the trailer's objectChecksum without verifying it (decodeSegment does).
 * `bytes` must be the whole object. Throws CorruptSegmentError for any bytes that are not a
 * plausible segment, InvalidArgumentError for a bad argument or limit override.
 */
export function decodeSegmentHeader(bytes: Uint8Array, limits?: Partial<SegmentLimits>): SegmentHeader {
  return parseHeader(bytes, resolveLimits(limits)).header;
}

/** decodeSegmentHeader with resolved limits, also returning the header's length. */
export function parseHeader(bytes: Uint8Array, limits: SegmentLimits): ParsedHeader {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('segment bytes must be a Uint8Array');
  if (bytes.length < MIN_OBJECT_BYTES) {
    throw corruptAt(
      'object',
      0,
      `segment is ${bytes.length} bytes, shorter than the minimum ${MIN_OBJECT_BYTES}`,
    );
  }
  if (bytes.length > limits.maxObjectBytes) {
    throw corruptAt(
      'object',
      0,
      `segment is ${bytes.length} bytes, more than maxObjectBytes ${limits.maxObjectBytes}`,
    );
  }
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) {
    if (bytes[i] !== SEGMENT_MAGIC[i]) throw corruptAt('object', i, 'bad magic: not a walship segment');
  }
  const reader = new ByteReader(bytes, 'object', HEADER.formatVersion);
  const formatVersion = reader.u16('format version');
  if (formatVersion !== FORMAT_VERSION) {
    throw corruptAt(
      'object',
      HEADER.formatVersion,
      `unsupported format version ${formatVersion} (this reader knows ${FORMAT_VERSION})`,
    );
  }
  const headerBytes = reader.u16('header length');
  const maxHeaderBytes = HEADER_FIXED_BYTES + 2 * limits.maxNameBytes;
  if (
    headerBytes < HEADER_FIXED_BYTES + 2 ||
    headerBytes > maxHeaderBytes ||
    headerBytes + TRAILER_BYTES > bytes.length
  ) {
    throw corruptAt(
      'object',
      HEADER.headerBytes,
      `header length ${headerBytes} is outside ${HEADER_FIXED_BYTES + 2}..${maxHeaderBytes} or runs past the ${bytes.length}-byte object`,
    );
  }
  const checksumAt = headerBytes - CHECKSUM_BYTES;
  const storedChecksum = new DataView(bytes.buffer, bytes.byteOffset + checksumAt, 4).getUint32(0, true);
  const actualChecksum = checksum(bytes, 0, checksumAt);
  if (storedChecksum !== actualChecksum) {
    throw corruptAt(
      'object',
      checksumAt,
      `header checksum mismatch: stored ${hex(storedChecksum)}, computed ${hex(actualChecksum)}`,
    );
  }
  reader.limitTo(checksumAt);
  const header = readHeaderFields(reader, formatVersion, headerBytes, limits);
  const objectBytes = headerBytes + header.bodyBytesStored + TRAILER_BYTES;
  if (bytes.length !== objectBytes) {
    const problem = bytes.length < objectBytes ? 'truncated' : 'has trailing bytes';
    throw corruptAt(
      'object',
      Math.min(bytes.length, objectBytes),
      `segment ${problem}: ${bytes.length} bytes, header implies ${objectBytes}`,
    );
  }
  header.objectChecksum = new DataView(bytes.buffer, bytes.byteOffset + objectBytes - 4, 4).getUint32(
    0,
    true,
  );
  return { header, headerBytes };
}

function readHeaderFields(
  reader: ByteReader,
  formatVersion: number,
  headerBytes: number,
  limits: SegmentLimits,
): SegmentHeader {
  const codecId = reader.u8('codec');
  const codec = codecOfId(codecId);
  if (codec === undefined) throw corruptAt('object', HEADER.codec, `unknown codec id ${codecId}`);
  const flags = reader.u8('flags');
  if ((flags & ~HEADER_FLAGS_KNOWN) !== 0) {
    throw corruptAt('object', HEADER.flags, `reserved header flags set: ${hex(flags)}`);
  }
  if (reader.u16('reserved') !== 0) {
    throw corruptAt('object', HEADER.reserved, 'reserved header field is not zero');
  }
  const epoch = reader.u64('epoch');
  if (epoch < 1n || epoch > MAX_I64) {
    throw corruptAt('object', HEADER.epoch, `epoch ${epoch} is outside 1..2^63-1`);
  }
  const txnFirst = reader.u64('first txn');
  const txnLast = reader.u64('last txn');
  const txnCount = reader.u32('txn count');
  if (txnCount < 1 || txnCount > limits.maxTxnsPerSegment) {
    throw corruptAt(
      'object',
      HEADER.txnCount,
      `txn count ${txnCount} is outside 1..${limits.maxTxnsPerSegment}`,
    );
  }
  if (txnFirst < 1n || txnLast > MAX_I64 || txnLast !== txnFirst + BigInt(txnCount) - 1n) {
    throw corruptAt(
      'object',
      HEADER.txnFirst,
      `txn range ${txnFirst}..${txnLast} does not hold ${txnCount} txns within 1..2^63-1`,
    );
  }
  const rowCount = reader.u32('row count');
  if (rowCount > limits.maxCellsPerSegment) {
    throw corruptAt(
      'object',
      HEADER.rowCount,
      `row count ${rowCount} is above maxCellsPerSegment ${limits.maxCellsPerSegment}`,
    );
  }
  const tsMinUs = reader.i64('min timestamp');
  const tsMaxUs = reader.i64('max timestamp');
  const hasTsRange = (flags & HEADER_FLAG_TS_RANGE) !== 0;
  if (hasTsRange ? rowCount === 0 || tsMinUs > tsMaxUs : tsMinUs !== 0n || tsMaxUs !== 0n) {
    throw corruptAt(
      'object',
      HEADER.tsMinUs,
      `timestamp range ${tsMinUs}..${tsMaxUs} is inconsistent with flags ${hex(flags)} and ${rowCount} rows`,
    );
  }
  const bodyBytesStored = reader.u32('stored body length');
  const bodyBytesRaw = reader.u32('raw body length');
  checkBodyLengths(codec, txnCount, bodyBytesStored, bodyBytesRaw, limits);
  const tableName = readName(reader, 'table name', limits);
  const writerNodeId = readName(reader, 'writer node id', limits);
  if (reader.offset + CHECKSUM_BYTES !== headerBytes) {
    throw corruptAt(
      'object',
      reader.offset,
      `header fields end at ${reader.offset + CHECKSUM_BYTES}, header length says ${headerBytes}`,
    );
  }
  return {
    formatVersion,
    tableName,
    epoch,
    writerNodeId,
    txnFirst,
    txnLast,
    txnCount,
    rowCount,
    tsMinUs: hasTsRange ? tsMinUs : null,
    tsMaxUs: hasTsRange ? tsMaxUs : null,
    codec,
    bodyBytesStored,
    bodyBytesRaw,
    staged: (flags & HEADER_FLAG_STAGED) !== 0,
    objectChecksum: 0,
  };
}

function checkBodyLengths(
  codec: Codec,
  txnCount: number,
  stored: number,
  raw: number,
  limits: SegmentLimits,
): void {
  if (raw > limits.maxRawBodyBytes || raw < txnCount * MIN_RECORD_BYTES) {
    throw corruptAt(
      'object',
      HEADER.bodyBytesRaw,
      `raw body length ${raw} is outside ${txnCount * MIN_RECORD_BYTES}..${limits.maxRawBodyBytes} for ${txnCount} txns`,
    );
  }
  if (codec === 'none' ? stored !== raw : stored === 0) {
    throw corruptAt(
      'object',
      HEADER.bodyBytesStored,
      `stored body length ${stored} is inconsistent with codec ${codec} and raw length ${raw}`,
    );
  }
}

function readName(reader: ByteReader, what: string, limits: SegmentLimits): string {
  const at = reader.offset;
  const length = reader.u8(`${what} length`);
  if (length < 1 || length > limits.maxNameBytes) {
    throw corruptAt('object', at, `${what} length ${length} is outside 1..${limits.maxNameBytes}`);
  }
  return reader.utf8(length, what);
}

/** `0x` and 8 hex digits, for checksums and flags in messages. */
export function hex(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}
