import { isWalshipError, WalshipError } from '../core/index.js';
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
 * every checksum (the decoder: CORRUPT_SEGMENT), the table name against the key the object sits
 * under (SEGMENT_WRONG_TABLE), `txnFirst == applied + 1` in the header and contiguous txn numbers
 * inside (SEGMENT_MISPLACED). All errors are kind `data`. Epoch order depends on what was applied
 * before, so the applier checks it (`checkEpochOrder`) just before applying.
 */
export async function verifySegment(bytes: Uint8Array, expect: SegmentExpectation): Promise<DecodedSegment> {
  let segment: DecodedSegment;
  try {
    segment = await decodeSegment(bytes);
  } catch (error) {
    if (isWalshipError(error, 'CORRUPT_SEGMENT')) {
      throw new WalshipError('CORRUPT_SEGMENT', 'data', `${expect.objectKey} is corrupt: ${error.message}`, {
        cause: error,
        details: { key: expect.objectKey },
      });
    }
    throw error;
  }
  const { header, txns } = segment;
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

function verifyError(code: string, expect: SegmentExpectation, problem: string): WalshipError {
  return new WalshipError(code, 'data', `${expect.objectKey} ${problem}`, {
    details: { key: expect.objectKey, table: expect.tableKey },
  });
}
