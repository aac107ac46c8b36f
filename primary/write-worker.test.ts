/**
 * The write worker (RFC-0009 §4): a thread that makes every write to the table store of a primary,
 * with requests built on the main thread while earlier ones are applied, and the write gate shared
 * across the two threads.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { type IlpLineSource, parseIlp, parseIlpInSlices } from '../ilp/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { TableStore } from '../table/index.js';
import { decodeTxnRecord, encodeTxnRecord } from '../wal/index.js';
import { pendingSourceOf } from './pending-source.js';
import { testCommitter, testUploader } from './testing/test-parts.js';
import { buildTxns } from './txn-builder.js';
import type { Uploader } from './uploader.js';
import { WriteGate } from './write-gate.js';
import { WriteWindow, withLaterWatermarks } from './write-window.js';
import { WriteWorker } from './write-worker.js';

let dir = '';
let file = '';
let tables: TableStore;
let gate: WriteGate;
let worker: WriteWorker;
let uploader: Uploader;
let store: MemoryStore;
let window: WriteWindow;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-write-worker-'));
  file = path.join(dir, 'tables.sqlite');
  tables = TableStore.open(file);
  gate = new WriteGate();
  window = new WriteWindow();
  worker = await WriteWorker.start(tables, gate);
  store = new MemoryStore();
  const source = { ...pendingSourceOf(tables), pending: worker.pending.bind(worker) };
  uploader = testUploader(
    store,
    withLaterWatermarks(source, window.unsynced, (table, txn, forget) => {
      void worker.markUploaded(table, txn).finally(forget);
    }),
  );
});
afterEach(async () => {
  await uploader.stop();
  await worker.close();
  tables.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function committer() {
  return testCommitter(tables, uploader, { writeWindow: window, worker });
}

function sourceOf(text: string): IlpLineSource {
  return { forEachSlice: (sink) => parseIlpInSlices(Buffer.from(text), { precision: 'n' }, sink) };
}

function rows(table: string, first: number, count: number, extra = ''): string {
  let text = '';
  for (let id = first; id < first + count; id++) text += `${table},s=S${id % 5} id=${id}i${extra} ${id}\n`;
  return text;
}

/** What another connection sees: the rows of `table` and its last txn. */
function onDisk(table: string): { count: number; lastTxn: number; pending: number } {
  const db = new Database(file, { readonly: true });
  try {
    const count = (db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n;
    const lastTxn = (
      db.prepare('SELECT last_txn AS t FROM _walship_tables WHERE key = ?').get(table) as { t: number }
    ).t;
    const pending = (
      db.prepare('SELECT count(*) AS n FROM _walship_pending WHERE "table" = ?').get(table) as { n: number }
    ).n;
    return { count, lastTxn, pending };
  } finally {
    db.close();
  }
}

/** One request's txns for `worker.commit`, built against what `tables` holds now. */
function requestTxns(text: string, nextTxn = (table: string) => tables.lastTxn(table) + 1n) {
  const built = buildTxns(parseIlp(Buffer.from(text), { precision: 'n' }), {
    schemaOf: (t) => tables.schema(t),
    commitTimeUs: 1n,
    nextTxn,
  });
  return built.map(({ table, record, schemaAfter }) => ({
    table,
    txn: record.txn,
    bytes: encodeTxnRecord(record),
    schemaAfter,
  }));
}

describe('Committer with a write worker', () => {
  it('builds each request on the ones still with the worker: txns follow, new columns are known, all land', async () => {
    const c = committer();
    // Handed over back to back: each is built while the ones before it may not be applied yet.
    const results = await Promise.all([
      c.commitSlices(sourceOf(rows('a', 0, 300))),
      c.commitSlices(sourceOf(rows('a', 300, 200, ',added=1.5') + rows('b', 0, 10))),
      c.commitSlices(sourceOf(rows('a', 500, 100, ',added=2.5'))),
      c.commitSlices(sourceOf(rows('b', 10, 5, ',other="x"'))),
    ]);
    expect(results.map((r) => r.txnHeader)).toEqual(['a=1', 'a=2,b=1', 'a=3', 'b=2']);
    expect(onDisk('a')).toEqual({ count: 600, lastTxn: 3, pending: 3 });
    expect(onDisk('b')).toEqual({ count: 15, lastTxn: 2, pending: 2 });
    // The main thread's connection (which made none of these writes) reads them too.
    expect(tables.lastTxn('a')).toBe(3n);
    expect(tables.schema('a')?.columns.map((col) => col.name)).toContain('added');
    const third = tables.pending('a').find((p) => p.txn === 3n);
    expect(third === undefined ? 0 : decodeTxnRecord(third.bytes).rowCount).toBe(100);
  });

  it('a request the worker refuses makes the ones behind it retryable, and the next renumbers from the store', async () => {
    const c = committer();
    await c.commitSlices(sourceOf(rows('a', 0, 10)));
    // The worker's gate closes under requests the main thread still takes (a fence seen in between).
    gate.accepting = false;
    const refused = await Promise.allSettled([
      c.commitSlices(sourceOf(rows('a', 10, 10))),
      c.commitSlices(sourceOf(rows('a', 20, 10))),
    ]);
    const codes = refused.map((r) =>
      r.status === 'rejected' && isWalshipError(r.reason) ? r.reason.code : r.status,
    );
    expect(codes[0]).toBe('NOT_ACCEPTING_WRITES');
    expect(['NOT_ACCEPTING_WRITES', 'WRITE_ABORTED']).toContain(codes[1]);
    expect(onDisk('a')).toEqual({ count: 10, lastTxn: 1, pending: 1 });
    gate.accepting = true;
    // Built after the failures: txn 2, not 4.
    expect((await c.commitSlices(sourceOf(rows('a', 30, 10)))).txnHeader).toBe('a=2');
    expect(onDisk('a')).toEqual({ count: 20, lastTxn: 2, pending: 2 });
  });

  it('sends watermark writes to the worker; until one is made the uploader sees it as made', async () => {
    const c = committer();
    await c.commitSlices(sourceOf(rows('a', 0, 10)));
    await c.commitSlices(sourceOf(rows('a', 10, 10)));
    expect(await uploader.flush(5_000)).toBe(true);
    await worker.idle();
    expect(tables.uploadedTxn('a')).toBe(2n);
    expect(onDisk('a').pending).toBe(0);
    await c.idle();
  });
});

describe('WriteWorker', () => {
  it('refuses commits after a failed one until resumed', async () => {
    const gap = worker.commit(requestTxns(rows('a', 0, 3), () => 5n));
    const behind = worker.commit(requestTxns(rows('a', 3, 3)));
    await expect(gap).rejects.toMatchObject({ code: 'ASSERTION_FAILED' });
    await expect(behind).rejects.toMatchObject({ code: 'WRITE_ABORTED', kind: 'unavailable' });
    await worker.resume();
    await worker.commit(requestTxns(rows('a', 6, 3)));
    expect(onDisk('a')).toEqual({ count: 3, lastTxn: 1, pending: 1 });
  });

  it('reads pending records on its own connection, before the writes queued behind the job under way', async () => {
    const first = requestTxns(rows('a', 0, 3));
    const queued = first[0]!.bytes.slice();
    await worker.commit(first);
    const order: string[] = [];
    const big = worker.commit(requestTxns(rows('b', 0, 50_000))).then(() => order.push('big commit'));
    const small = worker.commit(requestTxns(rows('c', 0, 3))).then(() => order.push('small commit'));
    const read = worker.pending('a', { limitBytes: 1 << 20 }).then((records) => {
      order.push('read');
      return records;
    });
    const [records] = await Promise.all([read, big, small]);
    expect(order.indexOf('read')).toBeLessThan(order.indexOf('small commit'));
    expect(order.indexOf('big commit')).toBeLessThan(order.indexOf('small commit'));
    expect(records.map((r) => r.txn)).toEqual([1n]);
    expect(Buffer.from(records[0]!.bytes).equals(Buffer.from(queued))).toBe(true);
  });

  it('makes the uploaded marks that wait together in one transaction, and refuses a bad one alone', async () => {
    const names = Array.from({ length: 200 }, (_, i) => `t${i}`);
    await worker.commit(requestTxns(names.map((name) => rows(name, 0, 2)).join('')));
    /** WAL frames written by `work`, from an emptied WAL (4 KiB pages, 24-byte frame headers). */
    const framesOf = async (work: () => Promise<unknown>) => {
      const db = new Database(file);
      try {
        db.pragma('wal_checkpoint(TRUNCATE)');
        await work();
        return statSync(`${file}-wal`).size / (4096 + 24);
      } finally {
        db.close();
      }
    };
    // A large commit holds the worker while the marks queue up behind it.
    const alone = await framesOf(() => worker.commit(requestTxns(rows('big1', 0, 20_000))));
    const withMarks = await framesOf(() => {
      const big = worker.commit(requestTxns(rows('big2', 0, 20_000)));
      return Promise.all([big, ...names.map((name) => worker.markUploaded(name, 1n))]);
    });
    // One transaction per mark would write at least 200 frames more than the commit alone.
    expect(withMarks - alone).toBeLessThan(50);
    for (const name of names) {
      expect(tables.uploadedTxn(name)).toBe(1n);
      expect(onDisk(name).pending).toBe(0);
    }
    // A bad mark among good ones is refused; the good ones are made.
    await worker.commit(requestTxns(names.map((name) => rows(name, 2, 2)).join('')));
    const big = worker.commit(requestTxns(rows('big3', 0, 20_000)));
    const good = names.map((name) => worker.markUploaded(name, 2n));
    await expect(worker.markUploaded('t0', 7n)).rejects.toMatchObject({ code: 'WATERMARK_INVALID' });
    await Promise.all([big, ...good]);
    for (const name of names) expect(onDisk(name)).toEqual({ count: 4, lastTxn: 2, pending: 0 });
  });

  it('after close, every job fails with a closed error', async () => {
    await worker.close();
    await expect(worker.commit(requestTxns(rows('a', 0, 3)))).rejects.toMatchObject({
      code: 'STORAGE_FAILED',
      kind: 'closed',
    });
  });

  it('closing the gate is strict: after it returns, no commit lands', async () => {
    await worker.commit(requestTxns(rows('a', 0, 1)));
    // Large requests, so the gate often closes while one is being applied or committed.
    for (const size of [2_000, 20_000, 60_000]) {
      const before = onDisk('a').lastTxn;
      const job = worker.commit(requestTxns(rows('a', 0, size), () => BigInt(before) + 1n));
      await new Promise((resolve) => setTimeout(resolve, 5));
      gate.accepting = false;
      const atClose = onDisk('a').lastTxn;
      const outcome = await job.then(
        () => 'committed',
        (error: unknown) => (isWalshipError(error) ? error.code : 'other'),
      );
      expect(onDisk('a').lastTxn).toBe(atClose);
      expect(outcome === 'committed' ? atClose : before).toBe(atClose);
      if (outcome !== 'committed') expect(outcome).toBe('NOT_ACCEPTING_WRITES');
      gate.accepting = true;
      await worker.resume();
    }
  });
});
