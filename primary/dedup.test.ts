/**
 * Upsert keys set through the primary (RFC-0011, `ALTER TABLE … DEDUP ENABLE UPSERT KEYS`): a dedup
 * txn committed like any other, queued for upload, and applied by a node that follows the records.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { type IlpLineSource, parseIlpInSlices } from '../ilp/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { TableStore } from '../table/index.js';
import { decodeTxnRecord } from '../wal/index.js';
import { pendingSourceOf } from './pending-source.js';
import { testCommitter, testUploader } from './testing/test-parts.js';
import type { Uploader } from './uploader.js';

let dir = '';
let tables: TableStore;
let store: MemoryStore;
let uploader: Uploader;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-dedup-primary-'));
  tables = TableStore.open(path.join(dir, 'primary.sqlite'));
  store = new MemoryStore();
  uploader = testUploader(store, pendingSourceOf(tables));
});
afterEach(async () => {
  await uploader.stop();
  tables.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const source = (text: string): IlpLineSource => ({
  forEachSlice: (sink) => parseIlpInSlices(Buffer.from(text), { precision: 'n' }, sink),
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('Committer.setDedupKeys', () => {
  it('commits a dedup txn that a replica applying the records follows: the same rows on both', async () => {
    const committer = testCommitter(tables, uploader, { epoch: () => 2n });
    await committer.commitSlices(source('m,sensor=a v=1i 1000\nm,sensor=b v=2i 1000\n'));
    expect((await committer.setDedupKeys('M', ['TIMESTAMP', 'Sensor'])).txnHeader).toBe('m=2@2');
    await committer.commitSlices(source('m,sensor=a v=3i 1000\nm,sensor=c v=4i 2000\n'));
    expect(tables.dedupKeys('m')).toEqual(['timestamp', 'sensor']);
    const replica = TableStore.open(path.join(dir, 'replica.sqlite'));
    try {
      replica.applyTxns(
        'm',
        tables.pending('m').map((p) => decodeTxnRecord(p.bytes)),
      );
      expect(replica.dedupKeys('m')).toEqual(['timestamp', 'sensor']);
      const rows = (store: TableStore) => {
        const db = new Database(store.file, { readonly: true });
        try {
          return db.prepare('SELECT timestamp, sensor, v FROM m ORDER BY timestamp, sensor').raw().all();
        } finally {
          db.close();
        }
      };
      expect(rows(tables)).toEqual([
        [1, 'a', 3],
        [1, 'b', 2],
        [2, 'c', 4],
      ]);
      expect(rows(replica)).toEqual(rows(tables));
    } finally {
      replica.close();
    }
  });

  it.each([
    [['timestamp', 'nope'], /"nope" is not a column/],
    [['sensor'], /must include the designated timestamp/],
    [['timestamp', 'sensor', 'SENSOR'], /named twice/],
  ])('refuses keys %j (DEDUP_KEYS_INVALID) and writes nothing', async (keys, message) => {
    const committer = testCommitter(tables, uploader);
    await committer.commitSlices(source('m,sensor=a v=1i 1000\n'));
    const error = await rejection(committer.setDedupKeys('m', keys));
    expect(isWalshipError(error, 'DEDUP_KEYS_INVALID')).toBe(true);
    expect(String(error)).toMatch(message);
    expect(tables.lastTxn('m')).toBe(1n);
  });

  it('refuses a table that does not exist (TABLE_UNKNOWN)', async () => {
    const error = await rejection(testCommitter(tables, uploader).setDedupKeys('ghost', ['timestamp']));
    expect(isWalshipError(error, 'TABLE_UNKNOWN')).toBe(true);
  });
});
