import { CorruptSegmentError, InvalidArgumentError } from '../core/index.js';
import { ByteReader, corruptAt } from './byte-reader.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import { checkTxnRecordFrame, readTxnRecordSteps, recordDecodeState } from './record-decoder.js';
import {
  assembleSegment,
  type BodySummary,
  checkIdentity,
  type SegmentIdentity,
} from './segment-assembler.js';
import { MAX_I64, RECORD } from './segment-layout.js';
import { mergeTimestampRanges, type TimestampRange } from './timestamp-range.js';

export interface SealSegmentInput extends SegmentIdentity {
  /** Encoded txn records (encodeTxnRecord's output), consecutive txn numbers, in order. */
  records: Uint8Array[];
  /** Overrides of DEFAULT_SEGMENT_LIMITS, as for encodeSegment. */
  limits?: Partial<SegmentLimits>;
  /**
   * What the writer knew of each record when it encoded it, one per record: given, a record's
   * frame, checksum and fixed fields are checked and its values are not decoded again.
   */
  known?: readonly RecordFacts[];
}

/** A record's row count and designated timestamp range, as its writer built them. */
export interface RecordFacts {
  rowCount: number;
  tsRange: TimestampRange | null;
}

/**
 * Builds a segment from txn records encoded earlier with encodeTxnRecord — e.g. kept in a pending
 * queue — without re-encoding their values. The body is the records back to back, so the result
 * is byte-identical to encodeSegment on the same txns. Every record is verified before its bytes
 * go out (STYLE rule 5): by a full decode, which also yields the row count and timestamp range for
 * the header; or, with `known` (records this process encoded from checked columns, kept since in
 * its pending queue), by its frame, checksum and fixed fields, the header taking its facts from
 * `known` (docs/write-path.md: what sealing checks). Throws InvalidArgumentError for bad input (no records,
 * non-consecutive txn numbers, limits), CorruptSegmentError when a record's bytes are damaged
 * (the message names the record's index), CODEC_UNAVAILABLE for a codec this runtime lacks.
 *
 * With `staged: true` (RFC-0003) the records keep the txn numbers the writer's pending queue gave
 * them (e.g. 4711..4718): a log entry places them later, so they are sealed without re-encoding.
 */
export async function sealSegment(input: SealSegmentInput): Promise<Uint8Array> {
  const limits = resolveLimits(input.limits);
  const compression = checkIdentity(input, limits);
  const raw = concatRecords(input.records, limits);
  const known = input.known;
  const summary =
    known !== undefined && known.length === input.records.length
      ? summariseKnown(raw, input.records, known, limits)
      : await summarise(raw, input.records, limits);
  return assembleSegment(input, compression, raw, summary, limits);
}

/**
 * Bytes of records verified between two pauses of the event loop (the verification decodes every
 * value, ~10 ms per 256 KiB): a segment of one huge txn never holds the loop for its whole decode.
 * Long column chunks pause inside as well (DECODE_SLICE_ROWS).
 */
const SEAL_SLICE_BYTES = 256 * 1024;

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function concatRecords(records: unknown, limits: SegmentLimits): Uint8Array {
  if (!Array.isArray(records) || records.length === 0)
    throw new InvalidArgumentError('a segment needs at least one record');
  if (records.length > limits.maxTxnsPerSegment) {
    throw new InvalidArgumentError(
      `${records.length} records, above maxTxnsPerSegment ${limits.maxTxnsPerSegment}`,
    );
  }
  let totalBytes = 0;
  for (const record of records) {
    if (!(record instanceof Uint8Array)) throw new InvalidArgumentError('every record must be a Uint8Array');
    totalBytes += record.length;
  }
  if (totalBytes > limits.maxRawBodyBytes) {
    throw new InvalidArgumentError(
      `records total ${totalBytes} bytes, above maxRawBodyBytes ${limits.maxRawBodyBytes}`,
    );
  }
  const raw = new Uint8Array(totalBytes);
  let at = 0;
  for (const record of records as Uint8Array[]) {
    raw.set(record, at);
    at += record.length;
  }
  checkTxnNumbers(records as Uint8Array[]);
  return raw;
}

/** Consecutive txn numbers are the caller's contract: check them before decoding, as an argument error. */
function checkTxnNumbers(records: Uint8Array[]): void {
  let previous: bigint | undefined;
  records.forEach((record, i) => {
    if (record.length < RECORD.txn + 8) return; // too short to hold a txn number: the decode reports it
    const txn = new DataView(record.buffer, record.byteOffset, record.length).getBigUint64(RECORD.txn, true);
    if (previous !== undefined && txn !== previous + 1n) {
      throw new InvalidArgumentError(
        `record ${i} holds txn ${txn} after txn ${previous}: txn numbers must be consecutive`,
      );
    }
    previous = txn;
  });
}

/**
 * What the header needs, from the writer's facts: each record's frame, checksum and fixed fields
 * are checked (a row count that differs from the writer's is corrupt), its values are not decoded.
 */
function summariseKnown(
  raw: Uint8Array,
  records: Uint8Array[],
  known: readonly RecordFacts[],
  limits: SegmentLimits,
): BodySummary {
  const reader = new ByteReader(raw, 'body');
  const state = recordDecodeState(limits);
  let rowCount = 0;
  let tsRange: TimestampRange | null = null;
  let txnFirst = 0n;
  let recordEnd = 0;
  for (let i = 0; i < records.length; i++) {
    recordEnd += records[i]!.length;
    const start = reader.offset;
    let frame: { txn: bigint; rowCount: number };
    try {
      frame = checkTxnRecordFrame(reader, state, i === 0 ? undefined : txnFirst + BigInt(i));
    } catch (error) {
      throw namingRecord(i, error);
    }
    checkRecordEnd(reader, i, records[i]!.length, recordEnd);
    const facts = known[i]!;
    if (frame.rowCount !== facts.rowCount) {
      throw corruptAt(
        'body',
        start,
        `record ${i} holds ${frame.rowCount} rows; its writer built ${facts.rowCount}`,
      );
    }
    if (i === 0) txnFirst = frame.txn;
    rowCount += frame.rowCount;
    tsRange = mergeTimestampRanges(tsRange, facts.tsRange);
  }
  const txnLast = txnFirst + BigInt(records.length - 1);
  if (txnLast > MAX_I64) throw new InvalidArgumentError(`txn numbers run past 2^63-1`);
  return { txnFirst, txnLast, txnCount: records.length, rowCount, tsRange };
}

/**
 * Decodes every record (verifying it) and returns what the header needs; frees the event loop
 * every SEAL_SLICE_BYTES of records and inside long column chunks.
 */
async function summarise(
  raw: Uint8Array,
  records: Uint8Array[],
  limits: SegmentLimits,
): Promise<BodySummary> {
  const reader = new ByteReader(raw, 'body');
  const state = recordDecodeState(limits);
  let rowCount = 0;
  let tsRange: TimestampRange | null = null;
  let txnFirst = 0n;
  let recordEnd = 0;
  let pausedAt = 0;
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    recordEnd += record.length;
    if (recordEnd - pausedAt > SEAL_SLICE_BYTES) {
      await nextTurn();
      pausedAt = recordEnd;
    }
    try {
      const steps = readTxnRecordSteps(reader, state, i === 0 ? undefined : txnFirst + BigInt(i));
      let step = steps.next();
      while (step.done !== true) {
        await nextTurn();
        step = steps.next();
      }
      const decoded = step.value;
      if (i === 0) txnFirst = decoded.txn.txn;
      rowCount += decoded.txn.rowCount;
      tsRange = mergeTimestampRanges(tsRange, decoded.tsRange);
    } catch (error) {
      throw namingRecord(i, error);
    }
    checkRecordEnd(reader, i, record.length, recordEnd);
  }
  const txnLast = txnFirst + BigInt(records.length - 1);
  if (txnLast > MAX_I64) throw new InvalidArgumentError(`txn numbers run past 2^63-1`);
  return { txnFirst, txnLast, txnCount: records.length, rowCount, tsRange };
}

/** `error` with the index of the record it is about, when it is a CorruptSegmentError. */
function namingRecord(i: number, error: unknown): unknown {
  if (!(error instanceof CorruptSegmentError)) return error;
  return new CorruptSegmentError(`record ${i}: ${error.message}`, { cause: error, details: error.details });
}

/** Record `i`, `length` bytes ending at `recordEnd`, must hold exactly one record: the reader stands at its end. */
function checkRecordEnd(reader: ByteReader, i: number, length: number, recordEnd: number): void {
  if (reader.offset === recordEnd) return;
  const start = recordEnd - length;
  throw corruptAt(
    'body',
    start,
    `record ${i} is ${length} bytes but holds a record of ${reader.offset - start}`,
  );
}
