/**
 * GC of a sequenced cluster (RFC-0003 "GC of staged segments", RFC-0007) against real in-process
 * nodes on the filesystem store and Ceph RGW: a writer (sequenced primary, SQLite sequencer in
 * this process), a reader that takes snapshots and a reader that lags (stopped, its registration
 * left behind), all following `txnlog/` from the store. Orphans come from a SequencedWriter whose
 * `afterUpload` fault rejects (a crash between upload and commit). "Older than" comes from a GC
 * clock set ahead of the real one, never from sleeping.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/sequenced-cluster.js';
import { stagedPrefix, txnFirstOfTxnLogKey, txnLogKey, txnLogPrefix } from '../layout/index.js';
import { decodeTxnLogEntry } from '../layout/txn-log-entry.js';
import { WalshipNode } from '../node/walship-node.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { type LogEntry, SequencedWriter, SqliteSequencerStore, StagedQueue } from '../sequencer/index.js';
import { tableKey } from '../table/index.js';
import { gcFixtures, gcTestRoot, keysUnder } from '../tests/helpers/gc-fixtures.js';
import { tableChecksum } from '../tests/helpers/table-checksum.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import { longLines, testSequencedWriterOptions } from '../tests/helpers/test-sequenced-writer.js';
import { type GcPolicy, planGc, runGc } from './gc.js';
import { GC_ORPHAN_AGE_MS } from './staged-gc.js';

const root = gcTestRoot('stagedgc');
const HOUR = 3_600_000;
const TABLE = 'trades';
const KEY = tableKey(TABLE);
const log = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });
/** The GC clock runs 2 h ahead: every object is older than a 1 h window (and than GC_ORPHAN_AGE_MS). */
const AHEAD = { wallMs: () => Date.now() + 2 * HOUR };
/** Every registration written in this test is live under a 10 h expiry. */
const LIVE: GcPolicy = { retentionMs: HOUR, keepSnapshots: 1, registrationExpiryMs: 10 * HOUR };
/** Every registration is expired: only the snapshot bounds the chains. */
const EXPIRED: GcPolicy = { ...LIVE, registrationExpiryMs: HOUR };

const deps = () => ({ clock: systemClock, random: seededRandom(5), log });

const { write, writeRequests, waitApplied, waitRegistered, leaveBehind, snapshot } = gcFixtures({
  table: TABLE,
  rowsPerWrite: 20,
});

/** The table's exported log, read from the store, in txn order. */
async function txnLog(store: ObjectStore): Promise<{ key: string; entry: LogEntry }[]> {
  const out: { key: string; entry: LogEntry }[] = [];
  for await (const o of listAll(store, txnLogPrefix(KEY))) {
    const got = await store.get(o.key);
    if (got === null || got.status !== 'ok') continue;
    out.push({ key: o.key, entry: decodeTxnLogEntry(got.body, o.key) });
  }
  return out;
}

/** Until the exported log is contiguous from its first entry to one past `txn` (exports run in parallel). */
async function waitExportedPast(store: ObjectStore, txn: bigint): Promise<void> {
  for (;;) {
    const log = await txnLog(store);
    const contiguous = log.every((e, i) => i === 0 || e.entry.txnFirst === log[i - 1]!.entry.txnLast + 1n);
    if (contiguous && log.some(({ entry }) => entry.txnFirst > txn)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Each deleted txnlog key comes before the staged key its entry names. */
function expectEntriesBeforeStaged(deleted: string[], pairs: { key: string; entry: LogEntry }[]): void {
  for (const { key, entry } of pairs) {
    expect(deleted.indexOf(key), key).toBeGreaterThanOrEqual(0);
    expect(deleted.indexOf(entry.staged), entry.staged).toBeGreaterThan(deleted.indexOf(key));
  }
}

describe.each(root.stores)('GC of a sequenced cluster on %s', (_name, skipReason, makeStore) => {
  let dir = '';
  let store: ObjectStore;
  let sequencer: SqliteSequencerStore;
  let writer: WalshipNode;
  let snapshotter: WalshipNode;
  let lagging: WalshipNode | undefined;
  const readers: WalshipNode[] = [];

  function startNode(role: 'primary' | 'replica', name: string): Promise<WalshipNode> {
    const settings = testNodeSettings(store, path.join(dir, name), {
      primary: { ackMode: 'durable', windowMs: 20, nodeId: name },
      replica: { pollIntervalMs: 30, nodeId: name },
    });
    return WalshipNode.start(
      role,
      {
        ...settings,
        registerIntervalMs: 100,
        ...(role === 'primary' ? { sequenced: { sequencer, exportGraceMs: 100 } } : {}),
      },
      deps(),
    );
  }

  beforeAll(async () => {
    if (skipReason !== null) return;
    dir = await mkdtemp(path.join(root.base(), 'run-'));
    store = await makeStore().open();
    sequencer = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer.sqlite') });
    await initSequencedCluster({ store, sequencer, clock: systemClock });
    writer = await startNode('primary', 'p1');
    // Readers following txnlog/ find tables in tables.json, re-read every 10 s: one exists before they start.
    await write(writer.httpPort);
    snapshotter = await startNode('replica', 'snap');
    lagging = await startNode('replica', 'lag');
  }, 30_000);

  afterAll(async () => {
    if (skipReason !== null) return;
    for (const node of readers) await node.close();
    await lagging?.close();
    await snapshotter?.close();
    await writer?.close();
    await sequencer?.close();
    await store?.close();
  });

  it.skipIf(skipReason !== null)(
    'retention deletes a txnlog prefix and its staged objects, each entry first, and keeps what a lagging reader needs',
    async () => {
      const laggedAt = await writeRequests(writer.httpPort, 5);
      await leaveBehind(store, lagging!, laggedAt); // its registration stays, saying laggedAt
      lagging = undefined;
      await waitApplied(snapshotter, await writeRequests(writer.httpPort, 5));
      const snap = await snapshot(snapshotter);
      expect(snap.lastTxn).toBeGreaterThan(laggedAt);
      const written = await writeRequests(writer.httpPort, 3);
      await waitExportedPast(store, laggedAt);
      // Every txn written is exported before `before` is listed: an entry exported later would be
      // in `after` but not in `before` (a race in this test, seen on a loaded machine).
      while (!(await txnLog(store)).some(({ entry }) => entry.txnLast >= written))
        await new Promise((resolve) => setTimeout(resolve, 20));
      await waitRegistered(store, 'p1', laggedAt);
      await waitRegistered(store, 'snap', laggedAt);
      const before = await txnLog(store);
      // Exactly the entries every rule allows: those ending at or before what the lagging reader applied.
      const expected = before.filter(({ entry }) => entry.txnLast <= laggedAt);
      expect(expected.length).toBeGreaterThan(0);

      const dry = await runGc(store, LIVE, { clock: AHEAD, dryRun: true, sequencer });
      const result = await runGc(store, LIVE, { clock: AHEAD, sequencer });
      expect(dry.deleted).toEqual([]);
      expect(result.deleted).toEqual(dry.plan.delete.map((d) => d.key));
      expect(result.plan.delete.filter((d) => d.kind === 'txnlog').map((d) => d.key)).toEqual(
        expected.map((e) => e.key),
      );
      expect(
        result.plan.delete
          .filter((d) => d.kind === 'staged')
          .map((d) => d.key)
          .sort(),
      ).toEqual(expected.map((e) => e.entry.staged).sort());
      expectEntriesBeforeStaged(result.deleted, expected);
      const kept = result.plan.keep.find((k) => k.table === TABLE && k.key?.includes('/txnlog/'))!;
      expect(kept.reason).toContain('node lag (registered');
      expect(kept.reason).toContain(`has applied only txn ${laggedAt}`);

      const after = await txnLog(store);
      expect(after.map((e) => e.key)).toEqual(before.slice(expected.length).map((e) => e.key));
      expect(after[0]!.entry.txnFirst).toBe(laggedAt + 1n);
      for (const { entry } of expected) expect(await store.head(entry.staged)).toBeNull();
      for (const { entry } of after) expect(await store.head(entry.staged)).not.toBeNull();

      // The lagging reader returns and catches up from what is left.
      lagging = await startNode('replica', 'lag');
      const last = await write(writer.httpPort);
      await waitApplied(lagging, last);
      await waitApplied(writer, last);
      expect(await tableChecksum(lagging.httpPort, TABLE)).toEqual(
        await tableChecksum(writer.httpPort, TABLE),
      );
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a writer that crashed between upload and commit: its orphan stays while it is live, then after fence goes only once older than the orphan age',
    async () => {
      const orphanTable = `orphans_${randomUUID().slice(0, 8)}`;
      const queue = StagedQueue.open(path.join(dir, `crash-${orphanTable}.sqlite`));
      const crashed = await SequencedWriter.open(
        testSequencedWriterOptions(
          { store, sequencer, queue, nodeId: 'w-crash', random: seededRandom(9), log },
          { faults: { afterUpload: () => Promise.reject(new Error('crash between upload and commit')) } },
        ),
      );
      crashed.start();
      await crashed.commitLines(longLines([orphanTable], 1n), 'local');
      const prefix = stagedPrefix(tableKey(orphanTable));
      while ((await keysUnder(store, prefix)).length === 0)
        await new Promise((resolve) => setTimeout(resolve, 10));
      await crashed.stop();
      queue.close();
      const [orphan] = await keysUnder(store, prefix);
      const epoch = (await sequencer.writers()).find((w) => w.writer === 'w-crash')!.epoch;

      // Live (unfenced) writer: its current epoch is never listed, however old the object.
      const farAhead = { wallMs: () => Date.now() + 1000 * HOUR };
      const live = await runGc(store, LIVE, { clock: farAhead, sequencer });
      expect(live.deleted).not.toContain(orphan);
      expect(await store.head(orphan!)).not.toBeNull();

      await sequencer.fence('w-crash', epoch);
      // Without the sequencer GC cannot tell it from a batch in flight: left alone, and said so.
      const blind = await planGc(store, LIVE, farAhead);
      expect(blind.delete.map((d) => d.key)).not.toContain(orphan);
      expect(blind.keep.some((k) => k.key === null && k.reason.startsWith('no sequencer access'))).toBe(true);
      // Fenced, but younger than the orphan age by the GC clock: kept, with the reason.
      const young = await planGc(store, LIVE, systemClock, { sequencer });
      expect(young.delete.map((d) => d.key)).not.toContain(orphan);
      expect(young.keep.find((k) => k.key === orphan)?.reason).toContain('never committed, but only');
      // Older than the orphan age: a dry run lists it, the real run deletes exactly that.
      const old = { wallMs: () => Date.now() + GC_ORPHAN_AGE_MS + 60_000 };
      const dry = await runGc(store, LIVE, { clock: old, dryRun: true, sequencer });
      const orphans = dry.plan.delete.filter((d) => d.kind === 'staged-orphan');
      expect(orphans.map((d) => d.key)).toEqual([orphan]);
      expect(orphans[0]!.reason).toContain(`writer w-crash epoch ${epoch} (fenced`);
      expect(await store.head(orphan!)).not.toBeNull();
      const real = await runGc(store, LIVE, { clock: old, sequencer });
      expect(real.deleted).toEqual(dry.plan.delete.map((d) => d.key));
      expect(await keysUnder(store, prefix)).toEqual([]);
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    "a GC interrupted between entries and staged objects is finished by the next run; the live writer's current epoch stays; every staged object left is named by an entry left",
    async () => {
      const last = await write(writer.httpPort);
      await waitApplied(writer, last);
      await waitApplied(snapshotter, last);
      await snapshot(snapshotter);
      await waitExportedPast(store, last - 1n);
      // A GC interrupted between its txnlog and its staged deletions leaves staged objects no entry names.
      const interrupted = await planGc(store, EXPIRED, AHEAD, { sequencer });
      const leftBehind = interrupted.delete.filter((d) => d.kind === 'staged').map((d) => d.key);
      expect(leftBehind.length).toBeGreaterThan(0);
      await store.deleteMany(interrupted.delete.filter((d) => d.kind === 'txnlog').map((d) => d.key));
      // Registrations expired: the txnlog rules delete up to the snapshot; orphans only of closed or fenced epochs.
      const result = await runGc(store, EXPIRED, { clock: AHEAD, sequencer });
      const leftovers = result.plan.delete.filter((d) => d.reason.includes('txnlog entry already collected'));
      expect(leftovers.map((d) => d.key).sort()).toEqual([...leftBehind].sort());
      expect(result.plan.delete.filter((d) => d.kind === 'staged-orphan' && d.table === TABLE)).toEqual([]);
      expect(result.plan.sequenced).toEqual({
        sequencerAccess: true,
        writers: (await sequencer.writers()).length,
        foldersListed: expect.any(Number),
      });
      const left = await txnLog(store);
      expect(left.length).toBeGreaterThan(0);
      expect((await keysUnder(store, stagedPrefix(KEY))).sort()).toEqual(
        left.map(({ entry }) => entry.staged).sort(),
      );
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a store-only reader started after GC converges from the newest snapshot and the entries left',
    async () => {
      await waitApplied(snapshotter, await writeRequests(writer.httpPort, 4));
      const snap = await snapshot(snapshotter);
      await writeRequests(writer.httpPort, 3);
      await waitExportedPast(store, snap.lastTxn);
      const result = await runGc(store, EXPIRED, { clock: AHEAD, sequencer });
      expect(result.plan.snapshotsKept[0]).toBe(snap.id);
      // Everything the snapshot holds went (a whole prefix); the chain is kept from right after it.
      const keptFrom = result.plan.keep.find((k) => k.table === TABLE && k.key?.includes('/txnlog/'));
      expect(keptFrom?.key).toBe(txnLogKey(KEY, snap.lastTxn + 1n));
      const collected = result.deleted.filter((k) => k.includes('/txnlog/'));
      expect(collected.length).toBeGreaterThan(0);
      expect(collected.every((k) => txnFirstOfTxnLogKey(k)! <= snap.lastTxn)).toBe(true);
      // Not asserted: that the store's chain still starts there. This GC runs with a clock far
      // ahead, inside the writers' export grace of their newest commits, so a writer's export
      // catch-up that had not passed an entry yet can put a collected one back (create-only, the
      // same bytes); the next run collects it again. A retention shorter than the export grace
      // meets this outside a test too (RFC-0007, "Sequenced tables").
      const after = await txnLog(store);
      expect(after.at(-1)!.entry.txnLast).toBeGreaterThan(snap.lastTxn);

      const fresh = await startNode('replica', `fresh-${randomUUID().slice(0, 8)}`);
      readers.push(fresh);
      const last = await write(writer.httpPort);
      await waitApplied(fresh, last);
      await waitApplied(writer, last);
      expect(await tableChecksum(fresh.httpPort, TABLE)).toEqual(await tableChecksum(writer.httpPort, TABLE));
    },
    60_000,
  );
});
