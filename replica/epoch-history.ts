/**
 * Where each epoch begins in each table's chain, so a node can tell whether txn T of a table was
 * written by the primary of epoch E (RFC-0005, "Commit tokens across epochs"). In `local` ack mode a
 * replaced primary may have answered `trades=42@1` for a txn that never reached the store; the new
 * primary's txn 42 is another write (`trades=42@2`), and a read waiting for the first must not be
 * answered with the second.
 *
 * Each change of a table's epoch is recorded as it is applied (a fence, or the first segment of a
 * new epoch): meta `table.epoch.<tableKey>@<epoch>` = the first txn of that epoch. Epochs change only
 * at failovers, so a table holds a handful of these. They sit under `table.epoch.<tableKey>` so
 * everything that copies, scrubs or clears a table's epoch (snapshots, restores, dropped tables)
 * treats them alike.
 */
import type { TableStore } from '../table/index.js';
import { TABLE_EPOCH_META_PREFIX } from '../table/index.js';

export { TABLE_EPOCH_META_PREFIX } from '../table/index.js';

/**
 * Epochs looked at above a token's epoch before giving up as "unknown": a cluster has one epoch per
 * failover, so this is never reached in practice; it bounds what a hostile token costs.
 */
const EPOCHS_SCANNED_MAX = 1_000n;

/** Records that `key`'s chain enters `epoch` at `firstTxn` (call inside the apply's transaction). */
export function recordEpochStart(tables: TableStore, key: string, epoch: bigint, firstTxn: bigint): void {
  tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${key}@${epoch}`, firstTxn.toString());
}

/**
 * Whether txn `txn` of table `key`, already applied here, was written at `epoch`: true or false, or
 * undefined when this node cannot tell (no epoch recorded for the table, or its history begins after
 * the token's epoch, as in a data dir from before histories were kept).
 */
export function txnIsOfEpoch(
  tables: TableStore,
  key: string,
  txn: bigint,
  epoch: bigint,
): boolean | undefined {
  const currentText = tables.getMeta(`${TABLE_EPOCH_META_PREFIX}${key}`);
  if (currentText === undefined) return undefined;
  const current = BigInt(currentText);
  // The token's primary fenced this table before it committed `txn`; a chain applied past `txn`
  // that never reached that epoch does not hold it.
  if (current < epoch) return false;
  if (current === epoch) return true;
  // The first later epoch recorded: every txn from its start on is not `epoch`'s.
  const last = current - epoch > EPOCHS_SCANNED_MAX ? epoch + EPOCHS_SCANNED_MAX : current;
  for (let later = epoch + 1n; later <= last; later++) {
    const start = tables.getMeta(`${TABLE_EPOCH_META_PREFIX}${key}@${later}`);
    if (start !== undefined) return txn < BigInt(start);
  }
  return undefined;
}
