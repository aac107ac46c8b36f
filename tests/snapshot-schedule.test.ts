/**
 * Snapshots on a schedule (issue 15 item 3, RFC-0005 "Snapshots") with real in-process nodes on one
 * store: a replica on the schedule publishes; a second replica on the same store skips while that
 * snapshot is recent; nothing new, nothing published; new rows, a new snapshot. And close() during a
 * snapshot of a sizeable database ends it: the copy's process is killed, no manifest is written.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Random, systemClock } from '../core/index.js';
import {
  CLUSTER_KEY,
  listSnapshots,
  parseClusterRecord,
  SNAPSHOTS_PREFIX,
  type SnapshotManifest,
} from '../layout/index.js';
import { listAll, MemoryStore, type ObjectStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { ReplicaNode, type ReplicaSettings } from '../replica/index.js';
import { TableStore } from '../table/index.js';
import { childProcesses } from './helpers/child-processes.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { testReplicaSettings } from './helpers/test-replica.js';

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-snapshot-schedule-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

const running: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const node of running.splice(0).reverse()) await node.close();
});

const pause = () => new Promise((resolve) => setTimeout(resolve, 20));

/** Until `look` holds (bounded by the test's timeout, never by a sleep of its own). */
async function until(look: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await look())) await pause();
}

interface LogLine {
  msg: string;
  reason?: string;
}

/** A replica whose log lines are kept in `lines`; jitter from `random` (0: checks at the earliest). */
async function startReplica(
  store: ObjectStore,
  name: string,
  overrides: Partial<ReplicaSettings>,
  random: Random = { next: () => 0 },
): Promise<{ node: ReplicaNode; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const node = await ReplicaNode.start(
    testReplicaSettings(store, path.join(base, name), { nodeId: name, ...overrides }),
    { clock: systemClock, log, random },
  );
  running.push(node);
  return { node, lines };
}

let row = 0;
/** One ILP request of `rows` rows of `trades`; its committed txn. */
async function write(primary: PrimaryNode, rows = 5): Promise<bigint> {
  const lines = Array.from({ length: rows }, () => {
    row++;
    return `trades,sym=S${row % 5} price=${row}.25 ${1_700_000_000_000_000_000n + BigInt(row)}`;
  });
  const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
    method: 'POST',
    body: `${lines.join('\n')}\n`,
  });
  expect(response.status, await response.clone().text()).toBe(204);
  return BigInt(/trades=(\d+)/.exec(response.headers.get('x-walship-txn') ?? '')![1]!);
}

async function manifests(store: ObjectStore): Promise<SnapshotManifest[]> {
  return (await listSnapshots(store)).manifests;
}

const skips = (lines: readonly LogLine[], reason: string) =>
  lines.filter((l) => l.msg === 'scheduled snapshot skipped' && l.reason === reason).length;

describe('snapshots on a schedule', () => {
  it('one replica publishes; another on the same store skips while it is recent; idle: none; new rows: one more', async () => {
    const store = new MemoryStore();
    const primary = await startTestPrimary(store, path.join(base, 'primary-1'));
    running.push(primary);
    const first = await write(primary);

    // A short interval; the first check comes 10% of it after start (random 0).
    const a = await startReplica(store, 'replica-a', { snapshotIntervalMs: 400 });
    await until(async () => (await manifests(store)).length === 1);
    const [published] = await manifests(store);
    expect(published).toMatchObject({ nodeId: 'replica-a', tables: [{ key: 'trades', lastTxn: first }] });

    // Replica B on the same store, with a longer interval: its first check (after 1 s) finds A's
    // snapshot younger than 10 s and publishes nothing.
    const b = await startReplica(store, 'replica-b', { snapshotIntervalMs: 10_000 });
    await until(() => skips(b.lines, 'recent') >= 1);

    // Nothing written since: A checks again and again and finds its snapshot holds everything.
    await until(() => skips(a.lines, 'unchanged') >= 2);
    expect((await manifests(store)).map((m) => m.id)).toEqual([published!.id]);

    // New rows: A's next check publishes them.
    const second = await write(primary);
    await until(async () => (await manifests(store)).length === 2);
    const [newest] = await manifests(store);
    expect(newest).toMatchObject({ nodeId: 'replica-a', tables: [{ key: 'trades', lastTxn: second }] });
    expect((await manifests(store)).every((m) => m.nodeId === 'replica-a')).toBe(true);
    expect(b.lines.filter((l) => l.msg === 'snapshot uploaded')).toEqual([]);
  });

  // Linux: the copy's process is looked for in /proc.
  it.skipIf(process.platform !== 'linux')(
    'close() during a snapshot of a sizeable database kills its copy and writes no manifest',
    async () => {
      const store = new MemoryStore();
      const primary = await startTestPrimary(store, path.join(base, 'primary-2'));
      running.push(primary);
      await write(primary);
      const clusterId = await clusterIdOf(store);
      // The replica's data dir holds a 40 MB table beside what it follows: copying it takes long
      // enough (VACUUM INTO, ~0.5 GB/s) to be caught in the middle.
      const dataDir = path.join(base, 'replica-big');
      seedSizeableDataDir(dataDir, clusterId, 40);
      const { node } = await startReplica(store, 'replica-big', { dataDir, snapshotIntervalMs: 0 });
      await until(
        async () =>
          ((await getJson(node.httpPort, '/status')).body as { clusterId: unknown }).clusterId !== null,
      );

      const snapshot = node.snapshot();
      snapshot.catch(() => {});
      // Copying (in the image host) or compressing the copy: either way well before the upload.
      await until(() => copyInProgress(dataDir));
      await node.close();
      // close() waited for the snapshot to end: by the abort (CLOSED), not by its completion.
      await expect(snapshot).rejects.toMatchObject({ code: 'CLOSED' });
      expect(imageHosts()).toEqual([]);
      expect(readdirSync(dataDir).filter((name) => name.startsWith('snapshot-'))).toEqual([]);
      const keys: string[] = [];
      for await (const object of listAll(store, SNAPSHOTS_PREFIX)) keys.push(object.key);
      expect(keys.filter((key) => key.endsWith('manifest.json'))).toEqual([]);
    },
  );
});

async function clusterIdOf(store: ObjectStore): Promise<string> {
  const cluster = await store.get(CLUSTER_KEY);
  if (cluster?.status !== 'ok') throw new Error('no cluster.json');
  return parseClusterRecord(cluster.body).clusterId;
}

/** A replica data dir of cluster `clusterId` holding `megabytes` MB of incompressible text in table `blobs`. */
function seedSizeableDataDir(dataDir: string, clusterId: string, megabytes: number): void {
  mkdirSync(dataDir, { recursive: true });
  const tables = TableStore.open(path.join(dataDir, 'tables.sqlite'));
  try {
    const notes = Array.from({ length: megabytes }, () => randomBytes(768 * 1024).toString('base64'));
    const t0 = 1_700_000_000_000_000n;
    tables.applyTxn('blobs', {
      txn: 1n,
      commitTimeUs: t0,
      kind: 'data',
      rowCount: notes.length,
      columns: [
        {
          name: 'timestamp',
          addedInTxn: false,
          nulls: null,
          data: { type: 'timestamp', values: BigInt64Array.from(notes, (_, i) => t0 + BigInt(i)) },
        },
        { name: 'note', addedInTxn: false, nulls: null, data: { type: 'string', values: notes } },
      ],
    });
    tables.setMeta('cluster.id', clusterId);
  } finally {
    tables.close();
  }
}

/** The snapshot's copy has begun: its work dir in the data dir holds the image being written. */
function copyInProgress(dataDir: string): boolean {
  return readdirSync(dataDir).some(
    (name) => name.startsWith('snapshot-') && existsSync(path.join(dataDir, name, 'db.sqlite')),
  );
}

/** Pids of this process's children that run the snapshot image host (Linux /proc). */
const imageHosts = () => childProcesses('snapshot-image-host');
