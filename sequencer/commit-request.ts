/**
 * Checks every backend makes before it touches its state, so a malformed request fails the same
 * way (INVALID_ARGUMENT) on SQLite, over HTTP and on FoundationDB.
 */
import { InvalidArgumentError } from '../core/index.js';
import { asTableKey, type TableKey } from '../table/index.js';
import {
  type CommitRequest,
  type LogEntry,
  SEQUENCER_BATCH_MAX,
  SEQUENCER_READ_LIMIT_MAX,
  SEQUENCER_SEGMENT_TXNS_MAX,
  WRITER_ID_PATTERN,
} from './sequencer-store.js';

const U32_MAX = 0xffff_ffff;
/** Bytes of a staged key: a table key (≤ 255) plus the writer, epoch and batch parts. */
const STAGED_KEY_CHARS_MAX = 512;

export function validateWriter(writer: string): void {
  if (typeof writer !== 'string' || !WRITER_ID_PATTERN.test(writer))
    throw new InvalidArgumentError(`writer id ${JSON.stringify(writer)} must match ${WRITER_ID_PATTERN}`);
}

/** `table` as a TableKey; throws INVALID_TABLE_KEY (kind invalid) for anything tableKey cannot produce. */
export function validateTable(table: string): TableKey {
  return asTableKey(table);
}

export function validateReadLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > SEQUENCER_READ_LIMIT_MAX)
    throw new InvalidArgumentError(
      `readLog limit ${limit} must be an integer in 1..${SEQUENCER_READ_LIMIT_MAX}`,
    );
}

export function validateCommitRequest(request: CommitRequest): void {
  validateWriter(request.writer);
  if (typeof request.writerEpoch !== 'bigint' || request.writerEpoch < 1n)
    throw new InvalidArgumentError(`writerEpoch ${String(request.writerEpoch)} must be a bigint ≥ 1`);
  if (typeof request.batchSeq !== 'bigint' || request.batchSeq < 1n)
    throw new InvalidArgumentError(`batchSeq ${String(request.batchSeq)} must be a bigint ≥ 1`);
  const segments = request.segments;
  if (!Array.isArray(segments) || segments.length < 1 || segments.length > SEQUENCER_BATCH_MAX)
    throw new InvalidArgumentError(`a batch holds 1..${SEQUENCER_BATCH_MAX} segments`);
  const tables = new Set<string>();
  for (const segment of segments) {
    validateTable(segment.table);
    if (tables.has(segment.table))
      throw new InvalidArgumentError(`a batch holds one segment per table; ${segment.table} is twice`);
    tables.add(segment.table);
    if (
      typeof segment.staged !== 'string' ||
      segment.staged.length < 1 ||
      segment.staged.length > STAGED_KEY_CHARS_MAX
    )
      throw new InvalidArgumentError(
        `staged key of ${segment.table} must be 1..${STAGED_KEY_CHARS_MAX} characters`,
      );
    if (
      !Number.isInteger(segment.txnCount) ||
      segment.txnCount < 1 ||
      segment.txnCount > SEQUENCER_SEGMENT_TXNS_MAX
    )
      throw new InvalidArgumentError(
        `txnCount ${segment.txnCount} of ${segment.table} must be in 1..${SEQUENCER_SEGMENT_TXNS_MAX}`,
      );
    if (!Number.isSafeInteger(segment.bytes) || segment.bytes < 1)
      throw new InvalidArgumentError(`bytes ${segment.bytes} of ${segment.table} must be a positive integer`);
    if (!Number.isInteger(segment.crc32) || segment.crc32 < 0 || segment.crc32 > U32_MAX)
      throw new InvalidArgumentError(
        `crc32 ${segment.crc32} of ${segment.table} must be an unsigned 32-bit integer`,
      );
  }
}

/** The entries a commit of `request` makes when each table's head is `heads.get(table) ?? 0n`. */
export function numberBatch(
  request: CommitRequest,
  heads: (table: string) => bigint,
  committedAtMs: number,
): LogEntry[] {
  return request.segments.map((segment) => {
    const txnFirst = heads(segment.table) + 1n;
    return {
      // validateCommitRequest checked the key already: this brands it.
      table: asTableKey(segment.table),
      txnFirst,
      txnLast: txnFirst + BigInt(segment.txnCount) - 1n,
      staged: segment.staged,
      bytes: segment.bytes,
      crc32: segment.crc32,
      writer: request.writer,
      writerEpoch: request.writerEpoch,
      batchSeq: request.batchSeq,
      committedAtMs,
    };
  });
}
