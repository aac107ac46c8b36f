import { InvalidArgumentError } from '../core/index.js';

/**
 * Every bound of the segment format, in one place (RFC-0001 §6). The encoder refuses input that
 * breaks one (`InvalidArgumentError`); the decoder refuses bytes that do (`CorruptSegmentError`)
 * and checks each count against the bytes that remain before it allocates anything.
 */
export interface SegmentLimits {
  /** Bytes of a whole stored object (header + stored body + trailer). */
  maxObjectBytes: number;
  /** Bytes of the uncompressed body: the one large allocation of a decode. */
  maxRawBodyBytes: number;
  /** Txn records in one segment. */
  maxTxnsPerSegment: number;
  /** Columns in one txn record. */
  maxColumnsPerRecord: number;
  /** Column chunks in one segment (sum of the records' column counts). */
  maxColumnsPerSegment: number;
  /** Rows in one txn record. */
  maxRowsPerRecord: number;
  /** Value slots in one segment: rows × columns summed over the records. */
  maxCellsPerSegment: number;
  /** Non-null double_array and decimal values in one segment (each decodes to its own objects). */
  maxBoxedValuesPerSegment: number;
  /** UTF-8 bytes of a table, column or writer name. */
  maxNameBytes: number;
  /** UTF-8 bytes of one string or symbol value. */
  maxStringBytes: number;
  /** Dimensions of one double array. */
  maxArrayDims: number;
  /** Elements (doubles) of one double array. */
  maxArrayElements: number;
  /** Bytes of one decimal's unscaled two's-complement value. */
  maxDecimalBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULT_SEGMENT_LIMITS: Readonly<SegmentLimits> = Object.freeze({
  // The raw-body limit plus headroom for codec expansion of incompressible data (deflate adds at
  // most 5 bytes per 64 KiB stored block) and the header and trailer.
  maxObjectBytes: 257 * MiB,
  // Rollover is 2 MiB, but a single big txn is never split across segments. This caps the one
  // allocation the decoder makes for the decompressed body.
  maxRawBodyBytes: 256 * MiB,
  // Bounds the decoded records array; a 2 MiB segment of one-row txns holds about 40 k.
  maxTxnsPerSegment: 1 * MiB,
  // QuestDB's default limit of columns per table.
  maxColumnsPerRecord: 2048,
  // Each column chunk decodes to a few objects (~200 B); without this bound, zero-row records of
  // 2048 columns would decode to ~50x their wire size.
  maxColumnsPerSegment: 1 * MiB,
  // Bounds one column's allocation (16 Mi rows x 8 B = 128 MiB) before anything else is read.
  maxRowsPerRecord: 16 * MiB,
  // Bounds the decoded value slots (8 B each: 256 MiB) whatever the wire size: a null-only array
  // column costs 1 bit per row on the wire and 8 B per row decoded.
  maxCellsPerSegment: 32 * MiB,
  // A non-null array or decimal costs >= 3 wire bytes but 100-300 B decoded: caps them at ~300 MiB.
  maxBoxedValuesPerSegment: 1 * MiB,
  // QuestDB's cairo.max.file.name.length.
  maxNameBytes: 127,
  // Bounds one TextDecoder call; larger values belong in blob storage, not in a time series.
  maxStringBytes: 16 * MiB,
  // QuestDB's limit for ILP arrays.
  maxArrayDims: 32,
  // Bounds one Float64Array (128 MiB); dims are multiplied one by one against this so the
  // product never overflows.
  maxArrayElements: 16 * MiB,
  // 256-bit unscaled values: DECIMAL(76), QuestDB's widest decimal.
  maxDecimalBytes: 32,
});

/**
 * Bodies whose raw length is above this go through zlib's async API (libuv threadpool) so the
 * event loop stays free; below it the threadpool round trip costs more than compressing inline.
 * A tuning constant, not a bound: it changes no output.
 */
export const ASYNC_CODEC_THRESHOLD_BYTES = 64 * KiB;

/**
 * Hard ceilings of the format itself, independent of configuration: a field's width caps it.
 * Overrides above these are refused, because the bytes could not express them.
 */
const FORMAT_CEILINGS: Readonly<Partial<SegmentLimits>> = Object.freeze({
  maxObjectBytes: 0xffff_ffff, // keeps the u32 stored body length in range whatever the header's size
  maxRawBodyBytes: 0xffff_ffff, // u32 bodyBytesRaw
  maxTxnsPerSegment: 0xffff_ffff, // u32 txnCount
  maxColumnsPerRecord: 0xffff, // u16 columnCount
  maxRowsPerRecord: 0xffff_ffff, // u32 rowCount
  maxCellsPerSegment: 0xffff_ffff, // the header's u32 rowCount is bounded by this
  maxNameBytes: 255, // u8 name lengths
  maxStringBytes: 0xffff_ffff, // u32 lengths
  maxArrayDims: 255, // u8 ndims
  maxArrayElements: 0xffff_ffff, // u32 dims
  maxDecimalBytes: 255, // u8 length
});

/**
 * The limits in force: the defaults with `overrides` applied. Throws `InvalidArgumentError` when
 * an override is not a positive safe integer or exceeds what the format's field widths can
 * express, so a typo never silently disables a bound.
 */
export function resolveLimits(overrides: Partial<SegmentLimits> = {}): SegmentLimits {
  if (overrides === null || typeof overrides !== 'object') {
    throw new InvalidArgumentError('segment limit overrides must be an object');
  }
  const limits: SegmentLimits = { ...DEFAULT_SEGMENT_LIMITS };
  for (const [key, value] of Object.entries(overrides) as [keyof SegmentLimits, unknown][]) {
    if (!(key in DEFAULT_SEGMENT_LIMITS)) throw new InvalidArgumentError(`unknown segment limit '${key}'`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new InvalidArgumentError(`segment limit ${key} must be a positive integer, got ${String(value)}`);
    }
    const ceiling = FORMAT_CEILINGS[key];
    if (ceiling !== undefined && value > ceiling) {
      throw new InvalidArgumentError(
        `segment limit ${key} = ${value} exceeds the format's ceiling ${ceiling}`,
      );
    }
    limits[key] = value;
  }
  return limits;
}
