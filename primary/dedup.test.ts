import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { type IlpLineSource, parseIlpInSlices } from '../ilp/index.js';
import { TableStore } from '../table/index.js';
import { decodeTxnRecord } from '../wal/index.js';
import { testCommitter, useCommitterParts } from './testing/test-parts.js';

const parts = useCommitterParts('walship-dedup-primary-');

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
    const committer = testCommitter(parts.tables, parts.uploader, { epoch: () => 2n });
    await committer.commitSlices(source('m,sensor=a v=1i 1000\nm,sensor=b v=2i 1000\n'));
    expect((await committer.setDedupKeys('M', ['TIMESTAMP', 'Sensor'])).txnHeader).toBe('m=2@2');
    await committer.commitSlices(source('m,sensor=a v=3i 1000\nm,sensor=c v=4i 2000\n'));
    expect(parts.tables.dedupKeys('m')).toEqual(['timestamp', 'sensor']);
    const replica = TableStore.open(path.join(parts.dir, 'replica.sqlite'));
    try {
      replica.applyTxns(
        'm',
        parts.tables.pending('m').map((p) => decodeTxnRecord(p.bytes)),
      );
      expect(replica.dedupKeys('m')).toEqual(['timestamp', 'sensor']);
      const rows = (node: TableStore) => {
        const db = new Database(node.file, { readonly: true });
        try {
          return db.prepare('SELECT timestamp, sensor, v FROM m ORDER BY timestamp, sensor').raw().all();
        } finally {
          db.close();
        }
      };
      expect(rows(parts.tables)).toEqual([
        [1, 'a', 3],
        [1, 'b', 2],
        [2, 'c', 4],
      ]);
      expect(rows(replica)).toEqual(rows(parts.tables));
    } finally {
      replica.close();
    }
  });

  it.each([
    [['timestamp', 'nope'], /"nope" is not a column/],
    [['sensor'], /must include the designated timestamp/],
    [['timestamp', 'sensor', 'SENSOR'], /named twice/],
  ])('refuses keys %j (DEDUP_KEYS_INVALID) and writes nothing', async (keys, message) => {
    const committer = testCommitter(parts.tables, parts.uploader);
    await committer.commitSlices(source('m,sensor=a v=1i 1000\n'));
    const error = await rejection(committer.setDedupKeys('m', keys));
    expect(isWalshipError(error, 'DEDUP_KEYS_INVALID')).toBe(true);
    expect(String(error)).toMatch(message);
    expect(parts.tables.lastTxn('m')).toBe(1n);
  });

  it('refuses a table that does not exist (TABLE_UNKNOWN)', async () => {
    const error = await rejection(
      testCommitter(parts.tables, parts.uploader).setDedupKeys('ghost', ['timestamp']),
    );
    expect(isWalshipError(error, 'TABLE_UNKNOWN')).toBe(true);
  });
});
