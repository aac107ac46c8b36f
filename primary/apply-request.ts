import { assert } from '../core/index.js';
import type { TableStore } from '../table/index.js';
import type { TxnRecord } from '../wal/index.js';

/** One txn of a request: its table, its record, and the record encoded for the pending queue. */
export interface RequestTxn {
  table: string;
  record: TxnRecord;
  bytes: Uint8Array;
}

/**
 * The local commit of one request in ONE SQLite transaction (DESIGN §5 step 2): inserts the rows of
 * every txn, queues the encoded records for upload, commits (with SQLite's fsync deferred to the
 * caller's syncWal: TableStore.deferringSync) — all or nothing across the request's tables.
 * `aroundCommit` runs the COMMIT (the write worker's gate). Runs on the event loop for a small
 * request of a node without a write worker, and in the write worker for every request of a node.
 */
export function applyRequest(
  tables: TableStore,
  txns: readonly RequestTxn[],
  aroundCommit?: (commit: () => void) => void,
): void {
  tables.deferringSync(() =>
    tables.transaction(() => {
      assertNextTxns(tables, txns);
      for (const { table, record } of txns) tables.applyTxn(table, record);
      for (const { table, record, bytes } of txns) tables.enqueuePending(table, record.txn, bytes);
    }, aroundCommit),
  );
}

/**
 * What a commit relies on before it applies: one txn per table, each the table's next (its last
 * txn + 1: the committer numbered them under its write lock, from the store and the commits queued
 * before), and no data txn empty. A failure here is a bug (the lock, the builder), not bad input.
 */
export function assertNextTxns(tables: TableStore, txns: readonly RequestTxn[]): void {
  const seen = new Set<string>();
  for (const { table, record } of txns) {
    const lastTxn = tables.lastTxn(table);
    // Messages are made only for a failure: this runs for each of a request's thousand tables.
    if (!seen.has(table) && record.txn === lastTxn + 1n && (record.rowCount > 0 || record.kind !== 'data')) {
      seen.add(table);
      continue;
    }
    assert(!seen.has(table), `one request built two txns for table ${JSON.stringify(table)}`);
    assert(
      record.txn === lastTxn + 1n,
      `txn ${record.txn} of table ${JSON.stringify(table)} does not follow its last txn ${lastTxn}`,
    );
    assert(
      record.rowCount > 0 || record.kind !== 'data',
      `data txn ${record.txn} of table ${JSON.stringify(table)} has no rows`,
    );
  }
}
