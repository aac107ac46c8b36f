import { type ErrorCode, isWalshipError, WalshipError } from '../core/index.js';
import type { LogEntry } from '../layout/index.js';
import { tableKey } from '../table/index.js';
import { type DecodedSegment, decodeSegment } from '../wal/index.js';

/** What the replica expects of the segment at `tables/<key>/wal/<applied+1>.seg` (DESIGN §6 "Verify"). */
export interface SegmentExpectation {
  /** The object's key, for messages. */
  objectKey: string;
  /** The store key of the table the object sits under. */
  tableKey: string;
  /** applied + 1: the segment must start exactly here. */
  txnFirst: bigint;
}

/**
 * Decodes `bytes` and checks everything the replica must know before it applies a byte (DESIGN §6):
 * every checksum (the decoder: CORRUPT_SEGMENT), that it is a numbered segment and not a staged one
 * (SEGMENT_STAGED, RFC-0003), the table name against the key the object sits under
 * (SEGMENT_WRONG_TABLE), `txnFirst == applied + 1` in the header and contiguous txn numbers inside
 * (SEGMENT_MISPLACED). All errors are kind `data`. Epoch order depends on what was applied before,
 * so the applier checks it (`checkEpochOrder`) just before applying.
 */
export async function verifySegment(bytes: Uint8Array, expect: SegmentExpectation): Promise<DecodedSegment> {
  const segment = await decodeOrCorrupt(bytes, expect.objectKey);
  const { header, txns } = segment;
  if (header.staged) {
    // Its txn numbers are a writer's local ones: applied here they would land in the wrong slots.
    throw verifyError(
      'SEGMENT_STAGED',
      expect,
      `is a staged segment (writer ${JSON.stringify(header.writerNodeId)}, writer epoch ${header.epoch}) ` +
        'sitting in the numbered chain: only a txn-log entry can place it (RFC-0003)',
    );
  }
  if (tableKey(header.tableName) !== expect.tableKey) {
    throw verifyError(
      'SEGMENT_WRONG_TABLE',
      expect,
      `holds table ${JSON.stringify(header.tableName)}, not the table stored under key ${expect.tableKey}`,
    );
  }
  if (header.txnFirst !== expect.txnFirst) {
    throw verifyError(
      'SEGMENT_MISPLACED',
      expect,
      `starts at txn ${header.txnFirst} but sits in the slot of txn ${expect.txnFirst}`,
    );
  }
  let next = expect.txnFirst;
  for (const txn of txns) {
    if (txn.txn !== next) {
      throw verifyError('SEGMENT_MISPLACED', expect, `holds txn ${txn.txn} where txn ${next} belongs`);
    }
    next++;
  }
  if (next - 1n !== header.txnLast) {
    throw verifyError(
      'SEGMENT_MISPLACED',
      expect,
      `ends at txn ${next - 1n}, its header says ${header.txnLast}`,
    );
  }
  return segment;
}

/**
 * The fields of a txnlog entry (layout/txn-log-entry.ts `LogEntry`, RFC-0003 "A log entry") a
 * staged segment is checked against.
 */
export type StagedEntry = Pick<
  LogEntry,
  'table' | 'txnFirst' | 'txnLast' | 'staged' | 'bytes' | 'crc32' | 'writer' | 'writerEpoch'
>;

export interface StagedSegmentExpectation {
  /** The object's key, for messages (normally `entry.staged`). */
  objectKey: string;
  entry: StagedEntry;
}

/** A verified staged segment, renumbered into the table's txn order. */
export interface VerifiedStagedSegment extends DecodedSegment {
  /** The writer's local number of the first record, as stored (the header's own txnFirst). */
  stagedTxnFirst: bigint;
}

/**
 * Decodes a staged segment and checks it is exactly the object `entry` numbered (RFC-0003
 * "Applying in sequencer order"): size and object checksum equal the entry's (else
 * SEGMENT_ENTRY_MISMATCH: not the object the sequencer numbered), every checksum (CORRUPT_SEGMENT),
 * the staged flag (SEGMENT_NOT_STAGED), the table (SEGMENT_WRONG_TABLE), writer and writer epoch
 * (SEGMENT_ENTRY_MISMATCH), the txn count against the entry's range and contiguous records
 * (SEGMENT_MISPLACED). All errors are kind `data`.
 *
 * Returns the txns renumbered: record i is txn `entry.txnFirst + i`. The header is a copy whose
 * txnFirst/txnLast are the entry's (so header and txns agree, as for a numbered segment); its
 * `staged` stays true and `stagedTxnFirst` keeps the writer's local first number.
 */
export async function verifyStagedSegment(
  bytes: Uint8Array,
  expect: StagedSegmentExpectation,
): Promise<VerifiedStagedSegment> {
  const { entry, objectKey } = expect;
  const fail = (code: ErrorCode, problem: string) =>
    new WalshipError(code, 'data', `${objectKey} ${problem}`, {
      details: { key: objectKey, table: entry.table, txnFirst: entry.txnFirst },
    });
  if (bytes.length !== entry.bytes) {
    throw fail(
      'SEGMENT_ENTRY_MISMATCH',
      `is ${bytes.length} bytes, its log entry says ${entry.bytes}: not the object the sequencer numbered`,
    );
  }
  const segment = await decodeOrCorrupt(bytes, objectKey);
  const { header } = segment;
  if (header.objectChecksum !== entry.crc32) {
    throw fail(
      'SEGMENT_ENTRY_MISMATCH',
      `has object checksum ${header.objectChecksum}, its log entry says ${entry.crc32}: not the object the sequencer numbered`,
    );
  }
  if (!header.staged) {
    throw fail('SEGMENT_NOT_STAGED', 'lacks the staged flag: a log entry points at a numbered segment');
  }
  if (tableKey(header.tableName) !== entry.table) {
    throw fail(
      'SEGMENT_WRONG_TABLE',
      `holds table ${JSON.stringify(header.tableName)}, not table ${entry.table} of its log entry`,
    );
  }
  if (header.writerNodeId !== entry.writer || header.epoch !== entry.writerEpoch) {
    throw fail(
      'SEGMENT_ENTRY_MISMATCH',
      `was written by ${JSON.stringify(header.writerNodeId)} in epoch ${header.epoch}, ` +
        `its log entry says ${JSON.stringify(entry.writer)} in epoch ${entry.writerEpoch}`,
    );
  }
  const entryCount = entry.txnLast - entry.txnFirst + 1n;
  if (BigInt(header.txnCount) !== entryCount) {
    throw fail(
      'SEGMENT_MISPLACED',
      `holds ${header.txnCount} txns, its log entry numbers ${entryCount} (${entry.txnFirst}..${entry.txnLast})`,
    );
  }
  return { ...renumber(segment, entry, fail), stagedTxnFirst: header.txnFirst };
}

/** The records, checked contiguous from the header's local txnFirst, moved to the entry's range. */
function renumber(
  segment: DecodedSegment,
  entry: StagedEntry,
  fail: (code: ErrorCode, problem: string) => WalshipError,
): DecodedSegment {
  const { header, txns } = segment;
  const renumbered = txns.map((txn, i) => {
    const local = header.txnFirst + BigInt(i);
    if (txn.txn !== local)
      throw fail('SEGMENT_MISPLACED', `holds local txn ${txn.txn} where ${local} belongs`);
    return { ...txn, txn: entry.txnFirst + BigInt(i) };
  });
  return { header: { ...header, txnFirst: entry.txnFirst, txnLast: entry.txnLast }, txns: renumbered };
}

/**
 * EPOCH_REGRESSION (kind data) when a segment of `epoch` would follow txns of the newer `appliedEpoch`:
 * a replaced primary's write after the fence must never be applied (DESIGN §6, §7).
 */
export function checkEpochOrder(objectKey: string, epoch: bigint, appliedEpoch: bigint): void {
  if (epoch >= appliedEpoch) return;
  throw new WalshipError(
    'EPOCH_REGRESSION',
    'data',
    `${objectKey} was written in epoch ${epoch}, but this table already applied epoch ${appliedEpoch}: ` +
      'a replaced primary wrote it after the fence',
    { details: { key: objectKey, epoch, appliedEpoch } },
  );
}

/** decodeSegment, its CORRUPT_SEGMENT rewrapped as kind data naming the object. */
async function decodeOrCorrupt(bytes: Uint8Array, objectKey: string): Promise<DecodedSegment> {
  try {
    return await decodeSegment(bytes);
  } catch (error) {
    if (isWalshipError(error, 'CORRUPT_SEGMENT')) {
      throw new WalshipError('CORRUPT_SEGMENT', 'data', `${objectKey} is corrupt: ${error.message}`, {
        cause: error,
        details: { key: objectKey },
      });
    }
    throw error;
  }
}

function verifyError(code: ErrorCode, expect: SegmentExpectation, problem: string): WalshipError {
  return new WalshipError(code, 'data', `${expect.objectKey} ${problem}`, {
    details: { key: expect.objectKey, table: expect.tableKey },
  });
}
