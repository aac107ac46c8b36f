import { ByteReader, corruptAt } from './byte-reader.js';
import { checksum } from './checksum.js';
import { decompressBody } from './codecs.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import { readTxnRecord, recordDecodeState } from './record-decoder.js';
import { hex, parseHeader, type SegmentHeader } from './segment-header.js';
import { HEADER, TRAILER_BYTES } from './segment-layout.js';
import { mergeTimestampRanges, type TimestampRange } from './timestamp-range.js';
import type { TxnRecord } from './txn-record.js';

/** A decoded segment. */
export interface DecodedSegment {
  header: SegmentHeader;
  txns: TxnRecord[];
}

/**
 * Decodes and verifies a whole segment object (RFC-0001 §7): header, trailer checksum,
 * decompression bounded by the declared raw length, every record with its checksum, and the
 * totals against the header. Given any bytes it either returns the txns or throws
 * CorruptSegmentError saying what is wrong and at which offset — or WalshipError
 * CODEC_UNAVAILABLE when a valid header names a codec this runtime lacks. It allocates nothing
 * beyond `limits` (defaults: DEFAULT_SEGMENT_LIMITS); decoded values never alias `bytes`.
 * InvalidArgumentError only for a bad argument (not a Uint8Array, a bad limit override).
 */
export async function decodeSegment(
  bytes: Uint8Array,
  limits?: Partial<SegmentLimits>,
): Promise<DecodedSegment> {
  const resolved = resolveLimits(limits);
  const { header, headerBytes } = parseHeader(bytes, resolved);
  const trailerAt = bytes.length - TRAILER_BYTES;
  const computed = checksum(bytes, 0, trailerAt);
  if (computed !== header.objectChecksum) {
    throw corruptAt(
      'object',
      trailerAt,
      `object checksum mismatch: stored ${hex(header.objectChecksum)}, computed ${hex(computed)}`,
    );
  }
  const stored = bytes.subarray(headerBytes, trailerAt);
  const raw = await decompressBody(header.codec, stored, header.bodyBytesRaw, (message, cause) =>
    corruptAt('object', headerBytes, message, cause),
  );
  return { header, txns: readRecords(raw, header, resolved) };
}

function readRecords(raw: Uint8Array, header: SegmentHeader, limits: SegmentLimits): TxnRecord[] {
  const reader = new ByteReader(raw, 'body');
  const state = recordDecodeState(limits);
  const txns: TxnRecord[] = [];
  let rowCount = 0;
  let tsRange: TimestampRange | null = null;
  for (let i = 0; i < header.txnCount; i++) {
    const record = readTxnRecord(reader, state, header.txnFirst + BigInt(i));
    txns.push(record.txn);
    rowCount += record.txn.rowCount;
    tsRange = mergeTimestampRanges(tsRange, record.tsRange);
  }
  if (reader.remaining !== 0) {
    throw reader.corrupt(`${reader.remaining} bytes follow the last of ${header.txnCount} records`);
  }
  if (rowCount !== header.rowCount) {
    throw corruptAt(
      'object',
      HEADER.rowCount,
      `records hold ${rowCount} rows, header says ${header.rowCount}`,
    );
  }
  if (tsRange?.minUs !== (header.tsMinUs ?? undefined) || tsRange?.maxUs !== (header.tsMaxUs ?? undefined)) {
    const actual = tsRange === null ? 'none' : `${tsRange.minUs}..${tsRange.maxUs}`;
    const declared = header.tsMinUs === null ? 'none' : `${header.tsMinUs}..${header.tsMaxUs}`;
    throw corruptAt(
      'object',
      HEADER.tsMinUs,
      `records' timestamp range ${actual} differs from the header's ${declared}`,
    );
  }
  return txns;
}
