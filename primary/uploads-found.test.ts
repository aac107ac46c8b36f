/**
 * A crash between an upload and its being recorded (issue 13 item 3): the rejoin records the txns
 * it finds in the store as uploaded (recordUploadsFound) before it rolls back what is still pending
 * (TableStore.rollBackPending), so those txns — which the cluster holds, and which other nodes may
 * have applied — stay in the database; only the txns that never reached the store are undone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentKey } from '../layout/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { TableStore, tableKey } from '../table/index.js';
import { encodeTxnRecord, sealSegment, type TxnRecord } from '../wal/index.js';
import { recordUploadsFound } from './uploads-found.js';

const T0 = 1_700_000_000_000_000n;

let dir = '';
let tables: TableStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-uploads-found-'));
  tables = TableStore.open(join(dir, 'tables.sqlite'));
});
afterEach(() => {
  tables.close();
  rmSync(dir, { recursive: true, force: true });
});

function record(txn: bigint): TxnRecord {
  return {
    txn,
    commitTimeUs: T0,
    kind: 'data',
    rowCount: 2,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.from([T0 + txn * 10n, T0 + txn * 10n + 1n]) },
      },
    ],
  };
}

describe('rejoin after a crash between upload and record', () => {
  it('keeps the txns found in the store and undoes only those that never reached it', async () => {
    const store = new MemoryStore();
    for (let txn = 1n; txn <= 5n; txn++) {
      tables.transaction(() => {
        tables.applyTxn('t', record(txn));
        tables.enqueuePending('t', txn, encodeTxnRecord(record(txn)));
      });
    }
    tables.transaction(() => {
      tables.setUploadedTxn('t', 1n);
      tables.dropPendingThrough('t', 1n);
    });
    // Txns 2..3 reached the store; the crash came before the primary recorded it.
    const segment = await sealSegment({
      tableName: 't',
      epoch: 1n,
      writerNodeId: 'a',
      records: [encodeTxnRecord(record(2n)), encodeTxnRecord(record(3n))],
      codec: 'deflate',
      compressionLevel: 1,
    });
    await store.put(segmentKey(tableKey('t'), 2n), segment, { condition: { type: 'absent' } });

    expect(await recordUploadsFound({ store, tables, nodeId: 'a', epoch: 1n })).toEqual({
      found: 2,
      pending: 2,
    });
    expect(tables.rollBackPending('t')).toMatchObject({ txns: 2, rows: 4, droppedTable: false });

    expect(tables.lastTxn('t')).toBe(3n);
    expect(tables.uploadedTxn('t')).toBe(3n);
    expect(tables.pendingSummary()).toEqual([]);
  });
});
