/**
 * The WAL segment format (RFC-0001, docs/rfcs/0001-segment-format.md): encoding and decoding of
 * segments and txn records, checksums, codecs and limits. Imports nothing of walship but core.
 */

export {
  BATCH_HASH_BYTES,
  BATCH_WRITER_PATTERN,
  type BatchStamp,
  batchStampProblem,
} from './batch-stamp.js';
export { checksum } from './checksum.js';
export { availableCodecs, type Codec } from './codecs.js';
export {
  COLUMN_TYPES,
  type ColumnType,
  type ColumnValues,
  type DecimalValue,
  type DoubleArrayValue,
  MAX_DECIMAL_SCALE,
} from './column-types.js';
export { DEFAULT_SEGMENT_LIMITS, type SegmentLimits } from './limits.js';
export { isNull, nullBitmapBytes, setBit as setNull } from './null-bitmap.js';
export { decodeTxnRecord, decodeTxnRecords } from './record-decoder.js';
export { encodeTxnRecord, encodeTxnRecordInSlices, TxnRecordEncoder } from './record-encoder.js';
export { type RecordFacts, type SealSegmentInput, sealSegment } from './seal-segment.js';
export type { SegmentIdentity } from './segment-assembler.js';
export { type DecodedSegment, decodeSegment } from './segment-decoder.js';
export { type EncodeSegmentInput, encodeSegment } from './segment-encoder.js';
export { decodeSegmentHeader, type SegmentHeader } from './segment-header.js';
export { FORMAT_VERSION as SEGMENT_FORMAT_VERSION } from './segment-layout.js';
export { TABLE_OP_KINDS, ttlText } from './table-ops.js';
export { designatedTimestampRange, type TimestampRange } from './timestamp-range.js';
export {
  type ColumnData,
  DESIGNATED_TIMESTAMP_COLUMN,
  type TableTtl,
  TTL_UNITS,
  type TtlUnit,
  type TxnKind,
  type TxnRecord,
} from './txn-record.js';
