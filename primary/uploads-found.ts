import { segmentKey } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { TableStore } from '../table/index.js';
import { decodeSegment, encodeTxnRecord } from '../wal/index.js';
import { pendingSourceOf } from './pending-source.js';
import { segmentInChain } from './segment-in-chain.js';

/**
 * A primary that crashed, or lost an upload's answer, may hold as "pending" txns that are in the
 * store after all. Before its pending queue is written off as divergence (RFC-0002 "fenced"), each
 * segment past a table's uploaded watermark that is its own — same node, same epoch, byte-identical
 * records — is recorded as uploaded. Returns the txns found that way and the txns still pending.
 */
export async function recordUploadsFound(options: {
  store: ObjectStore;
  tables: TableStore;
  nodeId: string;
  epoch: bigint;
}): Promise<{ found: number; pending: number }> {
  const { store, tables, nodeId, epoch } = options;
  let found = 0;
  for (const { table } of tables.pendingSummary()) {
    const key = tables.schema(table)?.key;
    if (key === undefined) continue;
    for (;;) {
      const got = await store.get(segmentKey(key, tables.uploadedTxn(table) + 1n));
      if (got === null || got.status !== 'ok') break;
      const { header, txns } = await decodeSegment(got.body);
      if (header.writerNodeId !== nodeId || header.epoch !== epoch) break;
      const mine = new Map(
        tables.pending(table, { limitBytes: header.bodyBytesRaw }).map((r) => [r.txn, r.bytes]),
      );
      const same = txns.every((txn) => {
        const bytes = mine.get(txn.txn);
        return bytes !== undefined && Buffer.from(encodeTxnRecord(txn)).equals(bytes);
      });
      if (!same) break;
      // Ours, but in a slot GC reopened after a newer epoch's fence (RFC-0002 W5): in no node's future.
      const chain = await segmentInChain(store, {
        tableKey: key,
        txnFirst: header.txnFirst,
        txnLast: header.txnLast,
        epoch,
      });
      if (!chain.inChain) break;
      pendingSourceOf(tables).markUploaded(table, header.txnLast);
      found += txns.length;
    }
  }
  return { found, pending: tables.pendingSummary().reduce((sum, p) => sum + p.count, 0) };
}
