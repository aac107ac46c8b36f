import { describe, expect, it } from 'vitest';
import { isoTime, type Random, seededRandom } from '../core/index.js';
import {
  encodeSnapshotManifest,
  type SnapshotManifest,
  snapshotId,
  snapshotImageKey,
  snapshotManifestKey,
} from '../layout/index.js';
import { MemoryStore, type ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import {
  type AppliedTable,
  checkScheduledSnapshot,
  firstSnapshotCheckMs,
  nextSnapshotCheckMs,
  SNAPSHOT_FIRST_CHECK_FRACTION,
  SNAPSHOT_JITTER_FRACTION,
} from './snapshot-schedule.js';

const HOUR = 3_600_000;
const MS0 = 1_750_000_000_000;
const CLUSTER = 'cluster-1';

/** A manifest (its image is never read by the schedule) of `tables` at `[name, lastTxn]`, taken at `wallMs`. */
async function putManifest(
  store: ObjectStore,
  wallMs: number,
  tables: [string, bigint][],
  options: { nodeId?: string; clusterId?: string } = {},
): Promise<SnapshotManifest> {
  const nodeId = options.nodeId ?? 'replica-a';
  const id = snapshotId(wallMs, nodeId);
  const manifest: SnapshotManifest = {
    format: 1,
    id,
    clusterId: options.clusterId ?? CLUSTER,
    nodeId,
    createdAt: isoTime(wallMs),
    tables: tables
      .map(([name, lastTxn]) => ({ name, key: tableKey(name), lastTxn }))
      .sort((a, b) => (a.key < b.key ? -1 : 1)),
    image: {
      key: snapshotImageKey(id, 'gzip'),
      codec: 'gzip',
      bytes: 1,
      rawBytes: 1,
      sha256: '0'.repeat(64),
    },
  };
  await store.put(snapshotManifestKey(id), encodeSnapshotManifest(manifest));
  return manifest;
}

const applied = (...tables: [string, bigint][]): AppliedTable[] =>
  tables.map(([name, lastTxn]) => ({ key: tableKey(name), lastTxn }));

function check(store: ObjectStore, nowWallMs: number, tables: AppliedTable[]) {
  return checkScheduledSnapshot({ store, clusterId: CLUSTER, intervalMs: HOUR, nowWallMs, applied: tables });
}

describe('checkScheduledSnapshot', () => {
  it('publishes when the cluster has no snapshot (another cluster’s does not count)', async () => {
    const store = new MemoryStore();
    await putManifest(store, MS0, [['trades', 10n]], { clusterId: 'cluster-2' });
    expect(await check(store, MS0 + 1, applied(['trades', 5n]))).toEqual({ publish: true, newest: null });
  });

  it('skips while the newest snapshot, whoever took it, is younger than the interval: due when it is not', async () => {
    const store = new MemoryStore();
    const newest = await putManifest(store, MS0, [['trades', 1n]], { nodeId: 'replica-b' });
    const decision = await check(store, MS0 + HOUR / 4, applied(['trades', 50n]));
    expect(decision).toEqual({ publish: false, reason: 'recent', newest, dueInMs: (3 * HOUR) / 4 });
    // A publisher whose clock runs ahead looks recent for at most one more interval from now.
    const ahead = await check(store, MS0 - HOUR, applied(['trades', 50n]));
    expect(ahead).toMatchObject({ reason: 'recent', dueInMs: HOUR });
  });

  it('skips an old snapshot that holds every table at or past what this replica applied (an idle cluster)', async () => {
    const store = new MemoryStore();
    const newest = await putManifest(store, MS0, [
      ['trades', 7n],
      ['quotes', 3n],
    ]);
    const later = MS0 + 5 * HOUR;
    expect(await check(store, later, applied(['trades', 7n], ['quotes', 3n]))).toEqual({
      publish: false,
      reason: 'unchanged',
      newest,
    });
    // A replica behind the snapshot has nothing to add either.
    expect(await check(store, later, applied(['trades', 2n]))).toMatchObject({ reason: 'unchanged' });
  });

  it('publishes once the newest is an interval old and lacks a txn or a table this replica has', async () => {
    const store = new MemoryStore();
    const newest = await putManifest(store, MS0, [['trades', 7n]]);
    expect(await check(store, MS0 + HOUR, applied(['trades', 8n]))).toEqual({ publish: true, newest });
    expect(await check(store, MS0 + HOUR, applied(['trades', 7n], ['quotes', 1n]))).toEqual({
      publish: true,
      newest,
    });
  });

  it('reads only the newest snapshot: one LIST and one GET', async () => {
    const store = new MemoryStore();
    for (let i = 0; i < 5; i++) await putManifest(store, MS0 + i * HOUR, [['trades', BigInt(i)]]);
    const requests: string[] = [];
    const spy: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      get: (key: string, options?: Parameters<ObjectStore['get']>[1]) => {
        requests.push(`get ${key}`);
        return store.get(key, options);
      },
      list: (prefix: string, options?: Parameters<ObjectStore['list']>[1]) => {
        requests.push(`list ${prefix}`);
        return store.list(prefix, options);
      },
    });
    await check(spy, MS0 + 10 * HOUR, applied(['trades', 9n]));
    expect(requests).toEqual([
      'list snapshots/',
      `get ${snapshotManifestKey(snapshotId(MS0 + 4 * HOUR, 'replica-a'))}`,
    ]);
  });

  it('a replica that holds no table yet does not publish, nor read the store', async () => {
    const store = new MemoryStore();
    const spy: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      list: () => {
        throw new Error('no listing expected');
      },
    });
    expect(await check(spy, MS0, [])).toEqual({ publish: false, reason: 'empty', newest: null });
  });
});

describe('the waits between checks', () => {
  const fixed = (value: number): Random => ({ next: () => value });

  it('the first check comes 10% of the interval after start, plus up to 25% of jitter', () => {
    expect(SNAPSHOT_FIRST_CHECK_FRACTION).toBe(0.1);
    expect(SNAPSHOT_JITTER_FRACTION).toBe(0.25);
    expect(firstSnapshotCheckMs(HOUR, fixed(0))).toBe(HOUR / 10);
    expect(firstSnapshotCheckMs(HOUR, fixed(0.5))).toBe(HOUR / 10 + HOUR / 8);
  });

  it('after a recent snapshot: once it is an interval old; after anything else: an interval; both jittered', () => {
    const newest = {} as SnapshotManifest;
    const recent = { publish: false, reason: 'recent', newest, dueInMs: 1_000 } as const;
    expect(nextSnapshotCheckMs(HOUR, fixed(0), recent)).toBe(1_000);
    expect(nextSnapshotCheckMs(HOUR, fixed(0), { publish: true, newest: null })).toBe(HOUR);
    expect(nextSnapshotCheckMs(HOUR, fixed(0), { publish: false, reason: 'unchanged', newest })).toBe(HOUR);
    expect(nextSnapshotCheckMs(HOUR, fixed(0), undefined)).toBe(HOUR);
    // Jitter spreads replicas on the same interval over a quarter of it.
    const random = seededRandom(7);
    const waits = Array.from({ length: 200 }, () => nextSnapshotCheckMs(HOUR, random, undefined));
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(HOUR);
    expect(Math.max(...waits)).toBeLessThan(HOUR * 1.25);
    expect(new Set(waits).size).toBe(200);
  });
});
