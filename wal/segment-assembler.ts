import { Buffer } from 'node:buffer';
import { assert, InvalidArgumentError } from '../core/index.js';
import { checksum } from './checksum.js';
import { CODEC_IDS, type Codec, checkCompressionLevel, compressBody } from './codecs.js';
import type { SegmentLimits } from './limits.js';
import { encodeHeader, parseHeader } from './segment-header.js';
import { MAX_I64, TRAILER_BYTES } from './segment-layout.js';
import type { TimestampRange } from './timestamp-range.js';

/** Who wrote a segment and how to compress it: what encodeSegment and sealSegment share. */
export interface SegmentIdentity {
  /** UTF-8, 1..maxNameBytes bytes. */
  tableName: string;
  /** The writer's epoch, 1..2^63-1 (DESIGN §7). */
  epoch: bigint;
  /** UTF-8, 1..maxNameBytes bytes; with objectChecksum it lets a writer recognise its own segment. */
  writerNodeId: string;
  /** Default 'deflate'. */
  codec?: Codec;
  /** Default 1 (fastest); deflate 0..9, zstd 1..22; ignored for 'none'. */
  compressionLevel?: number;
  /**
   * Default false. True writes header flag bit 1 (RFC-0003): a writer's un-numbered segment for
   * `tables/<t>/staged/`, its txns numbered in the writer's own local sequence.
   */
  staged?: boolean;
}

/** What the body holds, for the header. */
export interface BodySummary {
  txnFirst: bigint;
  txnLast: bigint;
  txnCount: number;
  rowCount: number;
  tsRange: TimestampRange | null;
}

/**
 * Checks the identity fields and the codec; returns the codec and level to use. Throws
 * InvalidArgumentError for a bad field, WalshipError CODEC_UNAVAILABLE for a codec this runtime
 * lacks.
 */
export function checkIdentity(
  input: SegmentIdentity,
  limits: SegmentLimits,
): { codec: Codec; level: number } {
  const codec = input.codec ?? 'deflate';
  if (!Object.hasOwn(CODEC_IDS, codec)) throw new InvalidArgumentError(`unknown codec '${String(codec)}'`);
  const level = checkCompressionLevel(codec, input.compressionLevel);
  checkName('tableName', input.tableName, limits);
  checkName('writerNodeId', input.writerNodeId, limits);
  if (typeof input.epoch !== 'bigint' || input.epoch < 1n || input.epoch > MAX_I64) {
    throw new InvalidArgumentError(`epoch ${String(input.epoch)} must be a bigint in 1..2^63-1`);
  }
  if (input.staged !== undefined && typeof input.staged !== 'boolean') {
    throw new InvalidArgumentError(`staged ${String(input.staged)} must be a boolean`);
  }
  return { codec, level };
}

function checkName(field: string, value: unknown, limits: SegmentLimits): void {
  if (typeof value !== 'string' || !(value as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidArgumentError(`${field} must be a well-formed string`);
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > limits.maxNameBytes) {
    throw new InvalidArgumentError(
      `${field} '${value}' is ${bytes} UTF-8 bytes, not 1..${limits.maxNameBytes}`,
    );
  }
}

/**
 * Compresses a raw body and wraps it in header and trailer (RFC-0001 §2). The caller has checked
 * the identity (checkIdentity) and built the body within the limits. Throws InvalidArgumentError
 * when the object would pass maxObjectBytes. Returns a fresh Uint8Array.
 */
export async function assembleSegment(
  input: SegmentIdentity,
  compression: { codec: Codec; level: number },
  raw: Uint8Array,
  summary: BodySummary,
  limits: SegmentLimits,
): Promise<Uint8Array> {
  // Every record has >= 1 column per row, so the cell bound also bounds the header's u32 row count.
  assert(summary.rowCount <= limits.maxCellsPerSegment, 'row count within the cell limit');
  const stored = await compressBody(compression.codec, compression.level, raw);
  const header = encodeHeader({
    tableName: input.tableName,
    epoch: input.epoch,
    writerNodeId: input.writerNodeId,
    txnFirst: summary.txnFirst,
    txnLast: summary.txnLast,
    txnCount: summary.txnCount,
    rowCount: summary.rowCount,
    tsMinUs: summary.tsRange?.minUs ?? null,
    tsMaxUs: summary.tsRange?.maxUs ?? null,
    codec: compression.codec,
    bodyBytesStored: stored.length,
    bodyBytesRaw: raw.length,
    staged: input.staged ?? false,
  });
  const objectBytes = header.length + stored.length + TRAILER_BYTES;
  if (objectBytes > limits.maxObjectBytes) {
    throw new InvalidArgumentError(
      `segment would be ${objectBytes} bytes, above maxObjectBytes ${limits.maxObjectBytes}`,
    );
  }
  const object = new Uint8Array(objectBytes);
  object.set(header, 0);
  object.set(stored, header.length);
  const trailerAt = objectBytes - TRAILER_BYTES;
  new DataView(object.buffer).setUint32(trailerAt, checksum(object, 0, trailerAt), true);
  assertHeaderReadable(object, limits);
  return object;
}

/** Checks our own output at the boundary (STYLE rule 5): a bug here must not reach the store. */
function assertHeaderReadable(object: Uint8Array, limits: SegmentLimits): void {
  try {
    parseHeader(object, limits);
  } catch (error) {
    assert(false, `produced a segment with an unreadable header: ${(error as Error).message}`);
  }
}
