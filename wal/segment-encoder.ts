import { InvalidArgumentError } from '../core/index.js';
import { ByteWriter } from './byte-writer.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import { appendTxnRecord, recordEncodeState } from './record-encoder.js';
import {
  assembleSegment,
  type BodySummary,
  checkIdentity,
  type SegmentIdentity,
} from './segment-assembler.js';
import { designatedTimestampRange, mergeTimestampRanges, type TimestampRange } from './timestamp-range.js';
import type { TxnRecord } from './txn-record.js';

export interface EncodeSegmentInput extends SegmentIdentity {
  /** One or more txns with consecutive numbers, in order. */
  txns: TxnRecord[];
  /**
   * Overrides of DEFAULT_SEGMENT_LIMITS, for tests and tools. Lowering is always safe; raising
   * writes segments that readers with the default limits reject.
   */
  limits?: Partial<SegmentLimits>;
}

/**
 * Encodes txns into one segment object (RFC-0001 §2): header, body compressed as a whole, trailer.
 * Validates everything first-problem-first and throws InvalidArgumentError naming it (empty or
 * non-consecutive txns, row counts, names, values, limits); throws WalshipError CODEC_UNAVAILABLE
 * for a codec this runtime lacks. Deterministic for a given zlib build. The result is a fresh
 * Uint8Array the caller owns.
 */
export async function encodeSegment(input: EncodeSegmentInput): Promise<Uint8Array> {
  const limits = resolveLimits(input.limits);
  const compression = checkIdentity(input, limits);
  const txns = checkTxnSequence(input.txns, limits);
  const { raw, summary } = encodeBody(txns, limits);
  return assembleSegment(input, compression, raw, summary, limits);
}

function checkTxnSequence(txns: unknown, limits: SegmentLimits): TxnRecord[] {
  if (!Array.isArray(txns) || txns.length === 0)
    throw new InvalidArgumentError('a segment needs at least one txn');
  if (txns.length > limits.maxTxnsPerSegment) {
    throw new InvalidArgumentError(
      `${txns.length} txns, above maxTxnsPerSegment ${limits.maxTxnsPerSegment}`,
    );
  }
  const first = (txns[0] as TxnRecord | undefined)?.txn;
  txns.forEach((txn: TxnRecord, i) => {
    if (typeof first !== 'bigint' || txn?.txn !== first + BigInt(i)) {
      throw new InvalidArgumentError(
        `txn at index ${i} is ${String(txn?.txn)}, expected ${String(first)} + ${i}: txn numbers must be consecutive`,
      );
    }
  });
  return txns as TxnRecord[];
}

function encodeBody(txns: TxnRecord[], limits: SegmentLimits): { raw: Uint8Array; summary: BodySummary } {
  const writer = new ByteWriter(limits.maxRawBodyBytes);
  const state = recordEncodeState(limits);
  let rowCount = 0;
  let tsRange: TimestampRange | null = null;
  for (const txn of txns) {
    appendTxnRecord(writer, txn, state);
    tsRange = mergeTimestampRanges(tsRange, designatedTimestampRange(txn));
    rowCount += txn.rowCount;
  }
  const txnFirst = txns[0]!.txn;
  const summary = {
    txnFirst,
    txnLast: txnFirst + BigInt(txns.length - 1),
    txnCount: txns.length,
    rowCount,
    tsRange,
  };
  return { raw: writer.bytesView, summary };
}
