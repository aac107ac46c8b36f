/**
 * Issue 15 item 5: a node stops on SIGTERM within its bound (cli/io.ts STOP_BOUND_MS) whatever it
 * is doing. Here: a `walship replica` process in the middle of catching up on many tables (its
 * first sweep and its follows in flight) is sent SIGTERM; it must close by itself — exit code 0,
 * not the forced exit (code 1) the bound would take — with its database intact.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { CLUSTER_KEY, encodeClusterRecord, encodeHead, HEAD_KEY, segmentKey } from '../layout/index.js';
import { FsStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { encodeSegment, type TxnRecord } from '../wal/index.js';
import { spawnWalship } from './helpers/walship-process.js';

const T0 = 1_700_000_000_000_000n;
const TABLES = 150;
const SEGMENTS_PER_TABLE = 20;
const ROWS_PER_TXN = 50;

const base = await mkdtemp(path.join(tmpdir(), 'walship-shutdown-'));
afterAll(() => rm(base, { recursive: true, force: true }));

function txn(n: bigint): TxnRecord {
  const values = BigInt64Array.from({ length: ROWS_PER_TXN }, (_, i) => n * 1000n + BigInt(i));
  return {
    txn: n,
    commitTimeUs: T0 + n,
    kind: 'data',
    rowCount: ROWS_PER_TXN,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: n === 1n,
        nulls: null,
        data: { type: 'timestamp', values: values.map((v) => T0 + v) },
      },
      { name: 'v', addedInTxn: n === 1n, nulls: null, data: { type: 'long', values } },
    ],
  };
}

describe('a node stops on SIGTERM within its bound', () => {
  it('a replica catching up on many tables closes by itself, its database intact', async () => {
    const root = path.join(base, 'store');
    const store = await FsStore.open({ root });
    await store.put(
      CLUSTER_KEY,
      encodeClusterRecord({
        clusterId: 'c-shutdown',
        formatVersion: 1,
        createdAt: new Date().toISOString(),
        createdBy: 'test',
      }),
    );
    const names = Array.from({ length: TABLES }, (_, i) => `t${String(i).padStart(3, '0')}`);
    for (const name of names) {
      const puts = [];
      for (let s = 1n; s <= BigInt(SEGMENTS_PER_TABLE); s++) {
        const bytes = await encodeSegment({ tableName: name, epoch: 1n, writerNodeId: 'p', txns: [txn(s)] });
        puts.push(store.put(segmentKey(tableKey(name), s), bytes));
      }
      await Promise.all(puts);
    }
    const head = new Map(names.map((name) => [name, BigInt(SEGMENTS_PER_TABLE)]));
    await store.put(
      HEAD_KEY,
      encodeHead({ epoch: 1n, nodeId: 'p', tables: head, at: new Date().toISOString() }),
    );
    await store.close();

    const dataDir = path.join(base, 'replica');
    const child = spawnWalship([
      'replica',
      `--replication.object.store=fs::root=${root};`,
      `--node.data.dir=${dataDir}`,
      '--http.bind.to=127.0.0.1:0',
      '--replication.replica.bootstrap.snapshot=false',
      '--log.level=info',
    ]);
    const port = Number((await child.waitFor(/walship replica \S+ listening: http (\d+)/, 60_000))[1]);
    // Mid catch-up: some segments applied, far from all.
    for (;;) {
      const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as {
        tables?: { appliedTxn?: string }[];
      };
      const applied = (status.tables ?? []).reduce((sum, t) => sum + Number(t.appliedTxn ?? 0), 0);
      if (applied > 0) {
        expect(applied).toBeLessThan(TABLES * SEGMENTS_PER_TABLE);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    child.kill('SIGTERM');
    const exited = await child.exited;
    expect(exited, child.output().slice(-2_000)).toEqual({ code: 0, signal: null });
    expect(child.output()).toContain('"msg":"shutting down"');
    expect(child.output()).not.toContain('did not finish within its bound');
    // Every applied segment is whole: each table holds whole txns, counted by its watermark.
    const db = new Database(path.join(dataDir, 'tables.sqlite'), { readonly: true });
    try {
      let rows = 0;
      for (const name of names) {
        const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name);
        if (exists !== undefined)
          rows += (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n;
      }
      expect(rows % ROWS_PER_TXN).toBe(0);
    } finally {
      db.close();
    }
  }, 180_000);
});
