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

/**
 * Tries of recordUploadsFound when a fenced primary gives up its role (WalshipNode, RFC-0002
 * "Fenced means"), and the backoff before the first retry (doubling): ~8 s in all. A store error
 * there would write txns that are in the store into divergence files too, where an operator
 * replaying them would double them; the fence itself was a store answer, so the store is most
 * likely there, and a flaky request heals on a retry.
 */
export const UPLOADS_FOUND_ATTEMPTS = 6;
export const UPLOADS_FOUND_RETRY_BASE_MS = 250;

/**
 * recordUploadsFound, tried again after a store error up to UPLOADS_FOUND_ATTEMPTS times with a
 * doubling backoff (`sleep`); throws the last error. Each try picks up where the last left off.
 */
export async function recordUploadsFoundRetrying(
  options: Parameters<typeof recordUploadsFound>[0] & {
    sleep: (ms: number) => Promise<void>;
    onRetry?: (error: unknown, attempt: number) => void;
  },
): Promise<{ found: number; pending: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      // `found` counts the last try's finds only: an earlier try's stay recorded, uncounted.
      return await recordUploadsFound(options);
    } catch (error) {
      if (attempt >= UPLOADS_FOUND_ATTEMPTS) throw error;
      options.onRetry?.(error, attempt);
      await options.sleep(UPLOADS_FOUND_RETRY_BASE_MS * 2 ** (attempt - 1));
    }
  }
}
