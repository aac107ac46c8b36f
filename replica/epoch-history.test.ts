import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TableStore } from '../table/index.js';
import { recordEpochStart, TABLE_EPOCH_META_PREFIX, txnIsOfEpoch } from './epoch-history.js';

let dir = '';
let tables: TableStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-epoch-history-'));
  tables = TableStore.open(join(dir, 'tables.sqlite'));
});
afterEach(() => {
  tables.close();
  rmSync(dir, { recursive: true, force: true });
});

/** What follower and promotion do when a table's chain enters `epoch` at `firstTxn`. */
function enter(key: string, epoch: bigint, firstTxn: bigint): void {
  tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${key}`, epoch.toString());
  recordEpochStart(tables, key, epoch, firstTxn);
}

describe('txnIsOfEpoch', () => {
  it('tells which epoch wrote a txn from where each later epoch began', () => {
    enter('t', 1n, 1n);
    expect(txnIsOfEpoch(tables, 't', 40n, 1n)).toBe(true);
    // Epoch 2 fenced at txn 41: epoch 1's txns 41.. (answered in local ack, never uploaded) are lost.
    enter('t', 2n, 41n);
    expect(txnIsOfEpoch(tables, 't', 40n, 1n)).toBe(true);
    expect(txnIsOfEpoch(tables, 't', 41n, 1n)).toBe(false);
    expect(txnIsOfEpoch(tables, 't', 45n, 1n)).toBe(false);
    expect(txnIsOfEpoch(tables, 't', 45n, 2n)).toBe(true);
    // Epoch 3 was claimed but never fenced this table (its promotion failed); epoch 4 did, at 60.
    enter('t', 4n, 60n);
    expect(txnIsOfEpoch(tables, 't', 59n, 2n)).toBe(true);
    expect(txnIsOfEpoch(tables, 't', 60n, 2n)).toBe(false);
    expect(txnIsOfEpoch(tables, 't', 61n, 4n)).toBe(true);
  });

  it('is false for an epoch newer than the table has applied, unknown without a history', () => {
    expect(txnIsOfEpoch(tables, 'u', 1n, 1n)).toBeUndefined();
    enter('u', 2n, 10n);
    expect(txnIsOfEpoch(tables, 'u', 12n, 3n)).toBe(false);
    // A data dir whose history begins at epoch 2 cannot tell for epoch 1 tokens older than it.
    tables.setMeta(`${TABLE_EPOCH_META_PREFIX}v`, '5');
    expect(txnIsOfEpoch(tables, 'v', 3n, 1n)).toBeUndefined();
  });
});
