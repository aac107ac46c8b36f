/**
 * Point-in-time recovery against a real primary and replica on the filesystem store and Ceph RGW.
 * The primary writes two tables in steps; after each step the test records the commit token, the
 * primary's table checksums (the reference: the primary's content right after that commit) and a
 * time between this step's commit and the next. A replica snapshots midway. Each restore is then
 * read through a replica on an empty store (it serves the data dir as restored and follows nothing)
 * and compared with the checksums of the step it targets.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { segmentPrefix } from '../layout/index.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore, listAll, MemoryStore, type ObjectStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import type { ReplicaNode } from '../replica/replica-node.js';
import { tableKey } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { storesUnderTest } from '../tests/helpers/store-under-test.js';
import { type TableChecksum, tableChecksum } from '../tests/helpers/table-checksum.js';
import { startTestNode } from '../tests/helpers/test-node.js';
import { getJson, startTestPrimary } from '../tests/helpers/test-primary.js';
import { postAdmin, startTestReplica } from '../tests/helpers/test-replica.js';
import { decodeSegmentHeader } from '../wal/index.js';
import { type RestoreOptions, type RestoreProgress, restoreToPoint } from './restore.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const log = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });
const TABLES = ['trades', 'quotes'] as const;
/** Write steps; the replica snapshots after SNAPSHOT_STEP, and every step up to it is sealed on its own. */
const STEPS = 8;
const SNAPSHOT_STEP = 3;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-restore-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'restore');
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** One write step: the commit token (by table key), each table's checksum after it (null: no table yet), and a time after its commit and before the next. */
interface Step {
  token: Map<string, bigint>;
  checksums: Map<string, TableChecksum | null>;
  afterMs: number;
}

async function write(port: number, body: string): Promise<Map<string, bigint>> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  expect(response.status, await response.clone().text()).toBe(204);
  const token = new Map<string, bigint>();
  for (const part of (response.headers.get('x-walship-txn') ?? '').split(',')) {
    const [key, txn] = part.split('@')[0]!.split('=');
    token.set(key!, BigInt(txn!));
  }
  return token;
}

async function checksumOrNull(port: number, table: string): Promise<TableChecksum | null> {
  const tables = ((await getJson(port, '/status')).body as { tables: { name: string }[] }).tables;
  return tables.some((t) => t.name === table) ? tableChecksum(port, table) : null;
}

async function appliedOn(port: number): Promise<Map<string, bigint>> {
  const { body } = await getJson(port, '/status');
  const tables = (body as { tables: { key: string; appliedTxn: string }[] }).tables;
  return new Map(tables.map((t) => [t.key, BigInt(t.appliedTxn)]));
}

/** Until the replica at `port` applied `token` (each table at least). */
async function waitApplied(port: number, token: Map<string, bigint>): Promise<void> {
  for (;;) {
    const applied = await appliedOn(port);
    if ([...token].every(([key, txn]) => (applied.get(key) ?? 0n) >= txn)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A Record target from a commit token (table names are their own keys here). */
function targetOf(token: Map<string, bigint>): Record<string, bigint> {
  return Object.fromEntries([...token].map(([key, txn]) => [key, txn]));
}

/** Cumulative token: the latest txn of each table after step `i`. */
function tokenAt(steps: Step[], i: number): Map<string, bigint> {
  const token = new Map<string, bigint>();
  for (const step of steps.slice(0, i + 1)) for (const [k, v] of step.token) token.set(k, v);
  return token;
}

/** The restored dir's tables, read through a replica on an empty store (it applies nothing). */
async function checksumsOfDir(dataDir: string): Promise<Map<string, TableChecksum | null>> {
  const reader: ReplicaNode = await startTestReplica(new MemoryStore(), dataDir, {
    bootstrapFromSnapshot: false,
  });
  try {
    const sums = new Map<string, TableChecksum | null>();
    for (const table of TABLES) sums.set(table, await checksumOrNull(reader.httpPort, table));
    return sums;
  } finally {
    await reader.close();
  }
}

describe.each(storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'restore' }))(
  'point-in-time recovery on %s',
  (_name, skipReason, makeStore) => {
    let store: ObjectStore;
    let primary: PrimaryNode;
    let follower: ReplicaNode;
    const steps: Step[] = [];
    let snapshotId = '';
    const restore = (options: Omit<RestoreOptions, 'store' | 'log' | 'dataDir'>, dataDir = newDir()) =>
      restoreToPoint({ store, log, dataDir, ...options });
    const newDir = () => path.join(base, `restored-${randomUUID()}`);

    beforeAll(async () => {
      if (skipReason !== null) return;
      store = await makeStore().open();
      // A long window: the steps after the snapshot land several to a segment (a target inside one).
      primary = await startTestPrimary(store, path.join(base, `primary-${randomUUID()}`), {
        windowMs: 400,
        headIntervalMs: 50,
      });
      follower = await startTestReplica(store, path.join(base, `replica-${randomUUID()}`));
      for (let i = 0; i < STEPS; i++) {
        const lines = [`trades,sym=S${i} price=${i}.5,n=${i}i ${1_700_000_000_000_000_000n + BigInt(i)}`];
        lines.push(`trades,sym=T${i} price=${-i}.25 ${1_700_000_000_000_000_000n + BigInt(i)}`);
        if (i % 2 === 0)
          lines.push(`quotes,sym=Q${i} bid=${i}.0,note="step ${i}" ${1_700_000_000_000_000_000n}`);
        const token = await write(primary.httpPort, `${lines.join('\n')}\n`);
        const checksums = new Map<string, TableChecksum | null>();
        for (const table of TABLES) checksums.set(table, await checksumOrNull(primary.httpPort, table));
        // A time strictly after this commit (µs, rounded up to the next ms) and before the next one.
        const afterMs = Date.now() + 1;
        await new Promise((resolve) => setTimeout(resolve, 5));
        steps.push({ token, checksums, afterMs });
        // Seal every step up to the snapshot on its own: its last txn ends a segment.
        if (i <= SNAPSHOT_STEP) await waitApplied(follower.httpPort, tokenAt(steps, i));
        if (i === SNAPSHOT_STEP) {
          const snapshot = await postAdmin(follower.httpPort, 'snapshot');
          expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(200);
          snapshotId = (snapshot.body as { id: string }).id;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
      await waitApplied(follower.httpPort, tokenAt(steps, STEPS - 1));
    }, 60_000);

    afterAll(async () => {
      if (skipReason !== null) return;
      await follower?.close();
      await primary?.close();
      await store?.close();
    });

    it.skipIf(skipReason !== null)(
      'to a txn before the snapshot: replayed from txn 1, equal to the primary right after that commit',
      async () => {
        const dataDir = newDir();
        const progress: RestoreProgress[] = [];
        const result = await restore(
          { to: { txn: targetOf(tokenAt(steps, 1)) }, onProgress: (p) => progress.push(p) },
          dataDir,
        );
        expect(result.snapshot).toBeNull();
        expect(result.tables.map((t) => [t.name, t.restoredTxn])).toEqual(
          [...tokenAt(steps, 1)].sort().map(([k, v]) => [k, v]),
        );
        expect(await checksumsOfDir(dataDir)).toEqual(steps[1]!.checksums);
        const replay = progress.filter((p) => p.phase === 'replay');
        expect(replay.at(-1)).toEqual({
          phase: 'replay',
          done: Number([...tokenAt(steps, 1).values()].reduce((a, b) => a + b)),
          total: Number([...tokenAt(steps, 1).values()].reduce((a, b) => a + b)),
          unit: 'txns',
        });
      },
    );

    it.skipIf(skipReason !== null)(
      'to a txn after the snapshot: restores the snapshot then replays; equal at that step',
      async () => {
        const dataDir = newDir();
        const progress: RestoreProgress[] = [];
        const target = tokenAt(steps, STEPS - 2);
        const result = await restore(
          { to: { txn: targetOf(target) }, onProgress: (p) => progress.push(p) },
          dataDir,
        );
        expect(result.snapshot?.id).toBe(snapshotId);
        const trades = result.tables.find((t) => t.name === 'trades')!;
        expect(trades.snapshotTxn).toBe(tokenAt(steps, SNAPSHOT_STEP).get('trades'));
        expect(trades.restoredTxn).toBe(target.get('trades'));
        expect(trades.txnsApplied).toBe(Number(target.get('trades')! - trades.snapshotTxn));
        expect(await checksumsOfDir(dataDir)).toEqual(steps[STEPS - 2]!.checksums);
        const bytes = progress.filter((p) => p.phase === 'snapshot');
        expect(bytes.at(-1)?.done).toBe(result.snapshot!.image.bytes);
        expect(bytes.at(-1)?.total).toBe(result.snapshot!.image.bytes);
      },
    );

    it.skipIf(skipReason !== null)(
      'to a txn inside a segment: applies only its txns up to the target',
      async () => {
        // A trades segment after the snapshot holding several txns; stop at its first.
        const headers = [];
        for await (const object of listAll(store, segmentPrefix(tableKey('trades')))) {
          const got = await store.get(object.key);
          if (got?.status === 'ok') headers.push({ key: object.key, header: decodeSegmentHeader(got.body) });
        }
        const inside = headers.find((h) => h.header.txnCount >= 2);
        expect(inside, 'a trades segment with several txns').toBeDefined();
        const txn = inside!.header.txnFirst;
        const stepIndex = steps.findIndex((s) => s.token.get('trades') === txn);
        const dataDir = newDir();
        const result = await restore({ to: { txn: { trades: txn } } }, dataDir);
        const trades = result.tables.find((t) => t.name === 'trades')!;
        expect(result.tables.map((t) => t.name)).toEqual(['trades']);
        expect(trades.restoredTxn).toBe(txn);
        expect(trades.partialSegment).toBe(inside!.key);
        const sums = await checksumsOfDir(dataDir);
        expect(sums.get('trades')).toEqual(steps[stepIndex]!.checksums.get('trades'));
        expect(sums.get('quotes')).toBeNull(); // only the named table is restored

        // Started as a replica, it finishes that segment, then follows on to the end of the store.
        const node: WalshipNode = await startTestNode('replica', store, dataDir);
        try {
          await waitApplied(node.httpPort, new Map([['trades', tokenAt(steps, STEPS - 1).get('trades')!]]));
          expect(await tableChecksum(node.httpPort, 'trades')).toEqual(
            steps[STEPS - 1]!.checksums.get('trades'),
          );
          const status = (await getJson(node.httpPort, '/status')).body as {
            tables: { suspended: unknown }[];
          };
          expect(status.tables.every((t) => t.suspended === null)).toBe(true);
        } finally {
          await node.close();
        }
      },
    );

    it.skipIf(skipReason !== null)(
      'to a time between two steps: equal at the step before it (with and without the snapshot)',
      async () => {
        for (const i of [0, STEPS - 3]) {
          const dataDir = newDir();
          const result = await restore({ to: { atMs: steps[i]!.afterMs } }, dataDir);
          expect(result.snapshot?.id ?? null).toBe(i > SNAPSHOT_STEP ? snapshotId : null);
          expect(new Map(result.tables.map((t) => [t.key, t.restoredTxn]))).toEqual(tokenAt(steps, i));
          expect(await checksumsOfDir(dataDir)).toEqual(steps[i]!.checksums);
        }
      },
    );

    it.skipIf(skipReason !== null)(
      'the restored dir starts as a replica and follows on to the end of the store',
      async () => {
        const dataDir = newDir();
        const result = await restore({ to: { txn: targetOf(tokenAt(steps, 1)) } }, dataDir);
        expect(result.tables.every((t) => t.partialSegment === null)).toBe(true);
        const node: WalshipNode = await startTestNode('replica', store, dataDir);
        try {
          await waitApplied(node.httpPort, tokenAt(steps, STEPS - 1));
          for (const table of TABLES) {
            expect(await tableChecksum(node.httpPort, table)).toEqual(steps[STEPS - 1]!.checksums.get(table));
          }
          const status = (await getJson(node.httpPort, '/status')).body as {
            clusterId: string;
            tables: { suspended: unknown }[];
          };
          expect(status.clusterId).toBe(result.clusterId);
          expect(status.tables.every((t) => t.suspended === null)).toBe(true);
        } finally {
          await node.close();
        }
      },
    );

    it.skipIf(skipReason !== null)(
      '--new-cluster: a primary on a new root founds a cluster with the restored rows and takes writes',
      async () => {
        const dataDir = newDir();
        const i = STEPS - 3;
        const result = await restore({ to: { atMs: steps[i]!.afterMs }, newCluster: true }, dataDir);
        const newRoot = await FsStore.open({ root: path.join(base, `new-root-${randomUUID()}`) });
        const node: WalshipNode = await startTestNode('primary', newRoot, dataDir, {
          primary: { ackMode: 'durable' },
        });
        try {
          const status = (await getJson(node.httpPort, '/status')).body as {
            clusterId: string;
            epoch: string;
          };
          expect(status.clusterId).not.toBe(result.clusterId);
          expect(status.epoch).toBe('1');
          const token = await write(node.httpPort, 'trades,sym=NEW price=1.0 1800000000000000000\n');
          expect(token.get('trades')).toBe(tokenAt(steps, i).get('trades')! + 1n);
          const count = await fetch(
            `http://127.0.0.1:${node.httpPort}/exec?query=${encodeURIComponent("SELECT count(*), sum(sym = 'NEW') FROM trades")}`,
          );
          const rowsBefore = steps[i]!.checksums.get('trades')!.rowCount;
          expect(((await count.json()) as { dataset: number[][] }).dataset).toEqual([[rowsBefore + 1, 1]]);
          // The new root holds the new txn under the new cluster, nothing of the old one.
          const keys = [];
          for await (const object of listAll(newRoot, segmentPrefix(tableKey('trades'))))
            keys.push(object.key);
          expect(keys).toHaveLength(1);
        } finally {
          await node.close();
          await newRoot.close();
        }
      },
    );

    it.skipIf(skipReason !== null)(
      'a non-empty data dir is refused; nothing is written into it',
      async () => {
        const dataDir = newDir();
        await mkdir(dataDir, { recursive: true });
        await writeFile(path.join(dataDir, 'keep.txt'), 'mine');
        const error = await restore({ to: { txn: 1n } }, dataDir).catch((e: unknown) => e);
        expect(isWalshipError(error, 'DATA_DIR_NOT_EMPTY')).toBe(true);
        const { readdir } = await import('node:fs/promises');
        expect(await readdir(dataDir)).toEqual(['keep.txt']);
      },
    );

    it.skipIf(skipReason !== null)(
      'a txn beyond the end of a chain is a clear error, and leaves no database',
      async () => {
        const dataDir = newDir();
        const last = tokenAt(steps, STEPS - 1).get('trades')!;
        const error = await restore({ to: { txn: { trades: last + 5n } } }, dataDir).catch((e: unknown) => e);
        expect(isWalshipError(error, 'RESTORE_BEYOND_END')).toBe(true);
        expect((error as Error).message).toContain(`ends at txn ${last}`);
        const { readdir } = await import('node:fs/promises');
        expect(await readdir(dataDir)).toEqual([]);
      },
    );

    // Last: it deletes a segment from the shared store.
    it.skipIf(skipReason !== null)(
      'a segment removed before the target: SEGMENT_MISSING naming its key; a point before the gap still restores',
      async () => {
        const keys = [];
        for await (const object of listAll(store, segmentPrefix(tableKey('trades')))) keys.push(object.key);
        expect(keys.length).toBeGreaterThanOrEqual(3);
        const removed = keys[1]!; // the second segment: before the snapshot, after txn 1's
        await store.delete(removed);
        const error = await restore({ to: { txn: targetOf(tokenAt(steps, 2)) } }).catch((e: unknown) => e);
        expect(isWalshipError(error, 'SEGMENT_MISSING')).toBe(true);
        expect((error as Error).message).toContain(removed);
        // Before the gap (txn 1 of each table) the chain is whole.
        const dataDir = newDir();
        await restore({ to: { txn: targetOf(steps[0]!.token) } }, dataDir);
        expect(await checksumsOfDir(dataDir)).toEqual(steps[0]!.checksums);
        // After the snapshot the gap does not matter: the snapshot covers it.
        const after = await restore({ to: { txn: targetOf(tokenAt(steps, STEPS - 1)) } });
        expect(after.snapshot?.id).toBe(snapshotId);
      },
    );
  },
);
