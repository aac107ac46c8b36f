/**
 * WAL retention and GC (RFC-0007) against real in-process nodes on the filesystem store and Ceph
 * RGW: a primary, a replica that takes snapshots, and a replica that lags (stopped, its
 * registration left behind). "Older than the retention window" comes from a GC clock set ahead of
 * the real one, never from sleeping; registrations expire the same way.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { SNAPSHOTS_PREFIX, segmentPrefix, txnFirstOfSegmentKey } from '../layout/index.js';
import { WalshipNode } from '../node/walship-node.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { gcFixtures, gcTestRoot, keysUnder } from '../tests/helpers/gc-fixtures.js';
import { tableChecksum } from '../tests/helpers/table-checksum.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import { type GcPolicy, planGc, runGc } from './gc.js';

const root = gcTestRoot('gc');
const HOUR = 3_600_000;
const TABLE = 'trades';
const KEY = tableKey(TABLE);
/** The GC clock runs 2 h ahead: every object is older than a 1 h window. */
const AHEAD = { wallMs: () => Date.now() + 2 * HOUR };
/** Every registration written in this test is live under a 10 h expiry, expired under a 1 h one. */
const LIVE: GcPolicy = { retentionMs: HOUR, keepSnapshots: 2, registrationExpiryMs: 10 * HOUR };
/** With one snapshot kept, its watermark bounds the chains. */
const EXPIRED: GcPolicy = { ...LIVE, keepSnapshots: 1, registrationExpiryMs: HOUR };

function startNode(role: 'primary' | 'replica', store: ObjectStore, dataDir: string): Promise<WalshipNode> {
  const settings = testNodeSettings(store, dataDir, { primary: { rolloverSizeBytes: 1024, windowMs: 20 } });
  return WalshipNode.start(
    role,
    { ...settings, registerIntervalMs: 100 },
    {
      clock: systemClock,
      random: seededRandom(3),
      log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    },
  );
}

const { write, writeRequests, tableStatus, waitApplied, waitRegistered, leaveBehind, snapshot } = gcFixtures({
  table: TABLE,
  rowsPerWrite: 30,
});

/** Until the store holds a segment starting after `txn` (the one holding `txn` is then not the newest). */
async function waitUploaded(store: ObjectStore, txn: bigint): Promise<void> {
  while (!(await segmentsOf(store)).some((segment) => segment.txnFirst > txn)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function segmentsOf(store: ObjectStore): Promise<{ key: string; txnFirst: bigint }[]> {
  const segments: { key: string; txnFirst: bigint }[] = [];
  for await (const o of listAll(store, segmentPrefix(KEY))) {
    const txnFirst = txnFirstOfSegmentKey(o.key);
    if (txnFirst !== undefined) segments.push({ key: o.key, txnFirst });
  }
  return segments;
}

/** The segments a GC may delete when `limit` bounds every rule: a prefix whose next segment starts at or before limit + 1. */
function prefixUpTo(segments: { key: string; txnFirst: bigint }[], limit: bigint): string[] {
  const keys: string[] = [];
  for (let i = 0; i + 1 < segments.length && segments[i + 1]!.txnFirst - 1n <= limit; i++)
    keys.push(segments[i]!.key);
  return keys;
}

describe.each(root.stores)('GC on %s', (_name, skipReason, makeStore) => {
  let store: ObjectStore;
  let primary: WalshipNode;
  let snapshotter: WalshipNode;
  let lagging: WalshipNode | undefined;
  // Set in beforeAll: `root.base()` is not known yet when the suite is collected.
  let laggingDir = '';

  beforeAll(async () => {
    if (skipReason !== null) return;
    laggingDir = path.join(root.base(), `lagging-${randomUUID()}`);
    store = await makeStore().open();
    primary = await startNode('primary', store, path.join(root.base(), `primary-${randomUUID()}`));
    snapshotter = await startNode('replica', store, path.join(root.base(), `snap-${randomUUID()}`));
    lagging = await startNode('replica', store, laggingDir);
  }, 30_000);

  afterAll(async () => {
    if (skipReason !== null) return;
    await lagging?.close();
    await snapshotter?.close();
    await primary?.close();
    await store?.close();
  });

  it.skipIf(skipReason !== null)(
    'under load with a lagging replica registered: deletes only what every rule allows; the replica then catches up',
    async () => {
      const laggedAt = await writeRequests(primary.httpPort, 6);
      const laggingId = lagging!.nodeId;
      await leaveBehind(store, lagging!, laggedAt); // its registration stays, saying laggedAt
      lagging = undefined;
      await waitApplied(snapshotter, await writeRequests(primary.httpPort, 6));
      const snap = await snapshot(snapshotter);
      expect(snap.lastTxn).toBeGreaterThan(laggedAt);
      // The other nodes' registrations must be past laggedAt too: while one still says laggedAt
      // (they are rewritten every interval), the plan may name it instead of the lagging node (a tie).
      for (const node of [primary, snapshotter]) await waitRegistered(store, node.nodeId!, snap.lastTxn);
      await writeRequests(primary.httpPort, 3);
      await waitUploaded(store, laggedAt + 1n);
      const before = await segmentsOf(store);

      // A writer runs while GC plans and deletes.
      let writing = true;
      const writer = (async () => {
        while (writing) await write(primary.httpPort, 10);
      })();
      const result = await runGc(store, LIVE, { clock: AHEAD });
      writing = false;
      await writer;

      const deletedSegments = result.deleted.filter((k) => k.startsWith('tables/'));
      expect(deletedSegments.length).toBeGreaterThan(0);
      expect(deletedSegments).toEqual(prefixUpTo(before, laggedAt));
      const kept = result.plan.keep.find((k) => k.table === TABLE)!;
      expect(kept.reason).toContain(`node ${laggingId} (registered`);
      expect(kept.reason).toContain(`has applied only txn ${laggedAt}`);
      const after = await segmentsOf(store);
      expect(after[0]!.txnFirst).toBeLessThanOrEqual(laggedAt + 1n);

      // The lagging replica returns and catches up from what is left.
      lagging = await startNode('replica', store, laggingDir);
      const last = await write(primary.httpPort);
      await waitApplied(lagging, last);
      expect(lagging.status().rebootstrap).toBeUndefined();
      expect(await tableChecksum(lagging.httpPort, TABLE)).toEqual(
        await tableChecksum(primary.httpPort, TABLE),
      );
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a dry run deletes nothing and lists exactly what the real run then deletes',
    async () => {
      const last = await write(primary.httpPort);
      await waitApplied(snapshotter, last);
      await waitApplied(lagging!, last);
      for (const node of [primary, snapshotter, lagging!]) await waitRegistered(store, node.nodeId!, last);
      await snapshot(snapshotter); // now older snapshots go with keepSnapshots 1
      const policy = { ...LIVE, keepSnapshots: 1 };
      const keysBefore = await keysUnder(store);
      const dry = await runGc(store, policy, { clock: AHEAD, dryRun: true });
      expect(dry.deleted).toEqual([]);
      expect(await keysUnder(store)).toEqual(keysBefore);
      expect(dry.plan.delete.some((d) => d.kind === 'snapshot-manifest')).toBe(true);
      const real = await runGc(store, policy, { clock: AHEAD });
      expect(real.deleted).toEqual(dry.plan.delete.map((d) => d.key));
      const deleted = new Set(real.deleted);
      expect(await keysUnder(store)).toEqual(keysBefore.filter((k) => !deleted.has(k)));
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'two GCs at once: no error, the same end state as one',
    async () => {
      for (let i = 0; i < 3; i++) await write(primary.httpPort);
      const last = await write(primary.httpPort);
      await waitApplied(snapshotter, last);
      await waitApplied(lagging!, last);
      // Registrations are rewritten every 100 ms: until all say `last`, a later plan may allow more.
      for (const node of [primary, snapshotter, lagging!]) await waitRegistered(store, node.nodeId!, last);
      await snapshot(snapshotter);
      await snapshot(snapshotter);
      const policy = { ...LIVE, keepSnapshots: 1 };
      const keysBefore = await keysUnder(store);
      const plan = await planGc(store, policy, AHEAD);
      expect(plan.delete.length).toBeGreaterThan(0);
      const [a, b] = await Promise.all([
        runGc(store, policy, { clock: AHEAD }),
        runGc(store, policy, { clock: AHEAD }),
      ]);
      const planned = plan.delete.map((d) => d.key);
      // Each run plans on its own: one that lists after the other deleted plans less. Together
      // they delete exactly the plan, and neither deletes anything outside it.
      for (const run of [a, b]) expect(planned).toEqual(expect.arrayContaining(run.deleted));
      expect(new Set([...a.deleted, ...b.deleted])).toEqual(new Set(planned));
      expect(await keysUnder(store)).toEqual(keysBefore.filter((k) => !planned.includes(k)));
      expect((await planGc(store, policy, AHEAD)).delete).toEqual([]);
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'snapshots older than the N newest are deleted, each manifest before its image',
    async () => {
      const ids = [
        (await snapshot(snapshotter)).id,
        (await snapshot(snapshotter)).id,
        (await snapshot(snapshotter)).id,
      ];
      const calls: string[][] = [];
      const recording: ObjectStore = {
        description: store.description,
        put: (key, body, options) => store.put(key, body, options),
        get: (key, options) => store.get(key, options),
        head: (key) => store.head(key),
        list: (prefix, options) => store.list(prefix, options),
        delete: (key) => store.delete(key),
        deleteMany: (keys) => {
          calls.push([...keys]);
          return store.deleteMany(keys);
        },
        close: async () => {},
      };
      const result = await runGc(recording, { ...LIVE, keepSnapshots: 2 }, { clock: AHEAD });
      const manifests: string[] = [];
      for await (const o of listAll(store, SNAPSHOTS_PREFIX))
        if (o.key.endsWith('/manifest.json')) manifests.push(o.key);
      expect(manifests).toEqual(ids.slice(1).map((id) => `${SNAPSHOTS_PREFIX}${id}/manifest.json`));
      const droppedId = ids[0]!;
      const callOf = (key: string) => calls.findIndex((c) => c.includes(key));
      const manifestCall = callOf(`${SNAPSHOTS_PREFIX}${droppedId}/manifest.json`);
      const imageCall = callOf(`${SNAPSHOTS_PREFIX}${droppedId}/db.sqlite.gzip`);
      expect(manifestCall).toBeGreaterThanOrEqual(0);
      expect(imageCall).toBeGreaterThan(manifestCall);
      expect(result.deleted).toContain(`${SNAPSHOTS_PREFIX}${droppedId}/db.sqlite.gzip`);
      for await (const o of listAll(store, `${SNAPSHOTS_PREFIX}${droppedId}/`)) expect.unreachable(o.key);
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a replica whose registration expired and whose segments were collected re-bootstraps from a snapshot',
    async () => {
      const laggedAt = await write(primary.httpPort);
      const laggingId = lagging!.nodeId!;
      await leaveBehind(store, lagging!, laggedAt);
      lagging = undefined;
      await waitApplied(snapshotter, await writeRequests(primary.httpPort, 6));
      const snap = await snapshot(snapshotter);
      await writeRequests(primary.httpPort, 3);
      await waitUploaded(store, snap.lastTxn + 1n);
      const result = await runGc(store, EXPIRED, { clock: AHEAD });
      expect(result.plan.expiredRegistrations.map((r) => r.nodeId)).toContain(laggingId);
      const chain = await segmentsOf(store);
      expect(chain[0]!.txnFirst).toBeGreaterThan(laggedAt + 1n);

      lagging = await startNode('replica', store, laggingDir);
      const last = await write(primary.httpPort);
      let rebootstrap: { message: string; snapshot: string; movedTo: string } | undefined;
      for (;;) {
        rebootstrap = lagging.status().rebootstrap as typeof rebootstrap;
        const t = await tableStatus(lagging);
        if (rebootstrap !== undefined && t?.appliedTxn !== undefined && BigInt(t.appliedTxn) >= last) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(rebootstrap.message).toBe(
        `segments after txn ${laggedAt} of ${TABLE} were garbage-collected (this replica's registration expired); re-bootstrapping from snapshot ${snap.id}`,
      );
      expect(rebootstrap.movedTo.startsWith(path.join(laggingDir, 'tables.sqlite.gc-'))).toBe(true);
      expect(await tableChecksum(lagging.httpPort, TABLE)).toEqual(
        await tableChecksum(primary.httpPort, TABLE),
      );
    },
    60_000,
  );
});
