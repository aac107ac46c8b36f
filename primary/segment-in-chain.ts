import { segmentKey, segmentPrefix, txnFirstOfSegmentKey } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { TableKey } from '../table/index.js';
import { decodeSegment, decodeSegmentHeader } from '../wal/index.js';

/** A segment this node wrote (or found of its own) at `tables/<tableKey>/wal/<txnFirst>.seg`. */
export interface OwnSegment {
  tableKey: TableKey;
  txnFirst: bigint;
  txnLast: bigint;
  /** The epoch the segment was written in. */
  epoch: bigint;
}

/** The verdict, with a sentence for the log saying why. */
export interface ChainVerdict {
  inChain: boolean;
  reason: string;
}

/**
 * Whether the cluster holds `own`, once a newer epoch than its own exists (RFC-0002 W5): the
 * segment is part of the table's chain, and the promotion's fence lies above it, only if the chain
 * continues from it — nothing after it yet (it is the table's newest segment: the promotion's catch-up
 * applies it and fences at the next slot), or the next segment starts at exactly `txnLast + 1` and is
 * a newer epoch's fence. Anything else — a gap after it, a segment overlapping it, a newer epoch's
 * data right after it — means its slot lay below the chain's start: GC had collected the slot (a
 * fence included) and the create-only write found it free. Readers past that slot never look at it
 * and a replica bootstraps from a snapshot above it, so its rows are in no node's future: they must
 * not be acknowledged (RFC-0007 "Zombies and reopened slots").
 *
 * Why the newest segment is safe: GC never deletes a table's newest segment, and a fence is placed
 * after the store's last txn, so a slot GC reopened always has a later segment after it. Cost: one
 * LIST (one key), one HEAD when the key listed is not the next slot, and one GET of the next
 * segment (a fence is tiny) when there is one.
 */
export async function segmentInChain(store: ObjectStore, own: OwnSegment): Promise<ChainVerdict> {
  const next = await store.list(segmentPrefix(own.tableKey), {
    startAfter: segmentKey(own.tableKey, own.txnFirst),
    limit: 1,
  });
  const listedKey = next.objects[0]?.key;
  if (listedKey === undefined)
    return { inChain: true, reason: 'it is the newest segment of the table: a promotion fences above it' };
  const nextKey = segmentKey(own.tableKey, own.txnLast + 1n);
  const listedTxn = txnFirstOfSegmentKey(listedKey);
  if (listedTxn !== undefined && listedTxn <= own.txnLast)
    return {
      inChain: false,
      reason: `${listedKey} overlaps it: its slot lay below the chain (garbage-collected after a newer epoch's fence)`,
    };
  // A listing may miss a key a later one follows (issue 13 item 1): a gap is confirmed by a HEAD.
  if (listedKey !== nextKey && (await store.head(nextKey)) === null) {
    return {
      inChain: false,
      reason:
        `the next segment starts at txn ${listedTxn ?? listedKey}, not ${own.txnLast + 1n}: ` +
        `its slot lay below the chain (garbage-collected after a newer epoch's fence)`,
    };
  }
  const got = await store.get(nextKey);
  if (got === null || got.status !== 'ok')
    return { inChain: false, reason: `the next segment ${nextKey} vanished while it was read` };
  const header = decodeSegmentHeader(got.body);
  if (header.epoch === own.epoch)
    return { inChain: true, reason: `the chain continues in epoch ${own.epoch} at ${nextKey}` };
  // A fence holds one txn and no row (RFC-0002 P4): only then is the full body worth decoding.
  const isFence =
    header.epoch > own.epoch &&
    header.txnCount === 1 &&
    header.rowCount === 0 &&
    (await decodeSegment(got.body)).txns[0]?.kind === 'fence';
  return isFence
    ? { inChain: true, reason: `epoch ${header.epoch} fenced right after it, at ${nextKey}` }
    : {
        inChain: false,
        reason:
          `the next segment ${nextKey} holds epoch ${header.epoch} without a fence: ` +
          'its slot lay below the chain (garbage-collected after a newer epoch’s fence)',
      };
}
