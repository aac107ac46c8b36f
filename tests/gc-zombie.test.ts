/**
 * Issue 13 item 11: GC never reopens a slot a zombie can write into (RFC-0002 W5, RFC-0007
 * "Zombies and reopened slots"). A durable primary is frozen mid-upload (its segment PUTs held by
 * a gate, standing in for a suspended VM); a replica is promoted and fences the table at the
 * zombie's next slot; the new primary writes on, a snapshot covers the fence, and GC — with a clock
 * 2 h ahead, so every object is past the 1 h retention window and every registration, the
 * zombie's included, past the 1 h expiry — collects the fence. Then the zombie wakes: its
 * create-only PUT into the fence's old slot succeeds, yet its durable writer must not be answered
 * 204, no node may apply its rows, and the new primary's data stays intact. On the fs store and Ceph RGW.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { EPOCHS_PREFIX, segmentKey, segmentPrefix } from '../layout/index.js';
import { auditStore, type GcPolicy, runGc } from '../maintenance/index.js';
import { WalshipNode } from '../node/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { withPutHook } from './helpers/gated-store.js';
import { gcFixtures, gcTestRoot, keysUnder } from './helpers/gc-fixtures.js';
import { tableChecksum } from './helpers/table-checksum.js';
import { testNodeSettings } from './helpers/test-node.js';
import { postAdmin } from './helpers/test-replica.js';

const root = gcTestRoot('gczombie');
const HOUR = 3_600_000;
const TABLE = 'ledger';
const KEY = tableKey(TABLE);
const ROWS_PER_WRITE = 20;
/** The GC clock runs 2 h ahead: every object is older than the window, every registration expired. */
const AHEAD = { wallMs: () => Date.now() + 2 * HOUR };
const POLICY: GcPolicy = { retentionMs: HOUR, keepSnapshots: 1, registrationExpiryMs: HOUR };

function startNode(role: 'primary' | 'replica', store: ObjectStore, dataDir: string): Promise<WalshipNode> {
  const settings = testNodeSettings(store, dataDir, {
    // The durable wait outlasts the whole test, so the zombie's answer comes from its upload alone.
    primary: { ackMode: 'durable', durableTimeoutMs: 600_000, rolloverSizeBytes: 1024, windowMs: 20 },
  });
  return WalshipNode.start(
    role,
    { ...settings, registerIntervalMs: 100 },
    {
      clock: systemClock,
      random: seededRandom(11),
      log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    },
  );
}

const { write, writeRequests, waitApplied, snapshot } = gcFixtures({
  table: TABLE,
  rowsPerWrite: ROWS_PER_WRITE,
});

describe.each(root.stores)('a zombie primary after GC on %s', (_name, skipReason, makeStore) => {
  let store: ObjectStore;
  const nodes: WalshipNode[] = [];

  beforeAll(async () => {
    if (skipReason !== null) return;
    store = await makeStore().open();
  });

  afterAll(async () => {
    if (skipReason !== null) return;
    for (const node of nodes.reverse()) await node.close().catch(() => {});
    await store?.close();
  });

  it.skipIf(skipReason !== null)(
    'its write into the collected fence slot is not acknowledged and no node applies it',
    async () => {
      const dir = (name: string) => path.join(root.base(), `${name}-${randomUUID()}`);
      // The zombie's segment uploads pass through a gate: closed, they wait (the process is frozen).
      let frozen = false;
      let thaw: () => void = () => {};
      const thawed = new Promise<void>((resolve) => {
        thaw = resolve;
      });
      let reachedGate: () => void = () => {};
      const atGate = new Promise<void>((resolve) => {
        reachedGate = resolve;
      });
      const zombieStore = withPutHook(store, async (key) => {
        if (!frozen || !key.startsWith(segmentPrefix(KEY))) return;
        reachedGate();
        await thawed;
      });
      const zombie = await startNode('primary', zombieStore, dir('zombie'));
      nodes.push(zombie);
      const successor = await startNode('replica', store, dir('successor'));
      nodes.push(successor);
      const snapshotter = await startNode('replica', store, dir('snapshotter'));
      nodes.push(snapshotter);

      const before = await writeRequests(zombie.httpPort, 3);
      await waitApplied(successor, before);

      // Frozen mid-upload: the durable write is committed locally, its segment PUT waits.
      frozen = true;
      const zombieWrite = fetch(`http://127.0.0.1:${zombie.httpPort}/write`, {
        method: 'POST',
        body: `${TABLE},sym=Z price=0.5,n=-1i 1600000000000000000\n`,
      });
      await atGate;

      const promoted = await postAdmin(successor.httpPort, 'promote');
      expect(promoted.status, JSON.stringify(promoted.body)).toBe(200);
      const fenceKey = segmentKey(KEY, before + 1n);
      expect(await keysUnder(store, segmentPrefix(KEY))).toContain(fenceKey);
      const last = await writeRequests(successor.httpPort, 4);
      await waitApplied(snapshotter, last);
      const snap = await snapshot(snapshotter);
      expect(snap.lastTxn).toBeGreaterThan(before + 1n);

      const epochsBefore = await keysUnder(store, EPOCHS_PREFIX);
      const gc = await runGc(store, POLICY, { clock: AHEAD });
      // GC never collects the epoch evidence the zombie's uploader checks (RFC-0002 W5).
      expect(await keysUnder(store, EPOCHS_PREFIX)).toEqual(epochsBefore);
      expect(epochsBefore).toHaveLength(2);
      expect(gc.deleted.filter((k) => !k.startsWith('tables/') && !k.startsWith('snapshots/'))).toEqual([]);
      expect(gc.plan.expiredRegistrations.map((r) => r.nodeId)).toContain(zombie.nodeId);
      expect(gc.deleted).toContain(fenceKey);

      // The zombie wakes: its PUT lands in the fence's old slot, which GC reopened.
      thaw();
      const answer = await zombieWrite;
      const answerText = await answer.text();
      expect(answer.status, answerText).not.toBe(204);
      expect(answer.status, answerText).toBe(421); // FENCED: this node was replaced
      expect(await keysUnder(store, segmentPrefix(KEY))).toContain(fenceKey); // the PUT did land
      // `walship verify` flags the stray: a hole between it and the rest of the chain (or, were
      // the rest to start right after it, a new epoch's data without a fence).
      const audit = await auditStore(store);
      const codes = audit.tables.find((t) => t.key === KEY)!.findings.map((f) => f.code);
      expect(
        codes.filter((c) => c === 'SEGMENT_MISSING' || c === 'EPOCH_UNFENCED'),
        codes.join(),
      ).not.toEqual([]);

      // No node applies it; the new primary's data is intact and agrees with every replica's.
      const check = await write(successor.httpPort);
      await waitApplied(snapshotter, check);
      const expected = await tableChecksum(successor.httpPort, TABLE);
      expect(expected.rowCount).toBe(Number(before + 4n + 1n) * ROWS_PER_WRITE);
      expect(await tableChecksum(snapshotter.httpPort, TABLE)).toEqual(expected);
      // A replica bootstrapped now (from the snapshot, above the zombie's slot) agrees too.
      const fresh = await startNode('replica', store, dir('fresh'));
      nodes.push(fresh);
      await waitApplied(fresh, check);
      expect(await tableChecksum(fresh.httpPort, TABLE)).toEqual(expected);

      // The zombie knows it was fenced and keeps its unacknowledged txn as divergence.
      for (;;) {
        const divergence = (zombie.status() as { divergence?: { files: { table: string; txns: number }[] } })
          .divergence;
        if (divergence !== undefined) {
          expect(divergence.files.map((f) => [f.table, f.txns])).toEqual([[TABLE, 1]]);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    90_000,
  );
});
