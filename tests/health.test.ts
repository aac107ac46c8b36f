/**
 * `GET /health` (issue 19) on real nodes (WalshipNode, the process's own node, in this process) over
 * the filesystem store, and on the router: 200 while a node serves its role; with
 * `?max_staleness_ms=` a replica held past the bound (its store failing) answers 503 with the
 * reason, and 200 again once it has caught up; the router answers for the cluster it sees.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { type FaultyStore, FsStore, withFaults } from '../objectstore/index.js';
import type { RunningRouter } from '../router/index.js';
import { startTestNode } from './helpers/test-node.js';
import { startTestRouter } from './helpers/test-router.js';

let dir = '';
const closers: (() => Promise<void>)[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-health-'));
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

async function health(port: number, query = ''): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${port}/health${query}`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Cluster {
  primary: WalshipNode;
  replica: WalshipNode;
  replicaStore: FaultyStore;
}

async function startCluster(replicaOverrides: Parameters<typeof startTestNode>[3] = {}): Promise<Cluster> {
  const root = path.join(dir, 'store');
  const primaryStore = await FsStore.open({ root });
  const replicaStore = withFaults(await FsStore.open({ root }), []);
  closers.push(
    () => primaryStore.close(),
    () => replicaStore.close(),
  );
  const primary = await startTestNode('primary', primaryStore, path.join(dir, 'primary'));
  closers.push(() => primary.close());
  const replica = await startTestNode('replica', replicaStore, path.join(dir, 'replica'), replicaOverrides);
  closers.push(() => replica.close());
  const write = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
    method: 'POST',
    body: 'readings,sensor=a v=1i 1000\n',
  });
  expect(write.status).toBe(204);
  await until('the replica to apply the write', async () => {
    const status = (await (await fetch(`http://127.0.0.1:${replica.httpPort}/status`)).json()) as {
      tables?: { name: string; appliedTxn: string }[];
    };
    return status.tables?.some((t) => t.name === 'readings' && t.appliedTxn === '1') === true;
  });
  return { primary, replica, replicaStore };
}

/** How long the idle replica is held (the issue asks for 2 minutes). */
const IDLE_HOLD_MS = Number(process.env.WALSHIP_IDLE_HOLD_MS ?? 120_000);
const IDLE_POLL_MS = 250;
/**
 * "A few poll intervals": the staleness of a caught-up replica is the age of its last poll that
 * found nothing new. Before issue 19 it climbed to the sweep interval (30 s by default) and back.
 */
const IDLE_STALENESS_BOUND_MS = 8 * IDLE_POLL_MS;

describe('staleness of an idle, caught-up replica', () => {
  it(
    `held for ${IDLE_HOLD_MS / 1000} s, /status and /metrics never report it above a few poll intervals`,
    async () => {
      const { replica } = await startCluster({
        replica: { pollIntervalMs: IDLE_POLL_MS, sweepIntervalMs: 30_000 },
      });
      const samples: { statusMs: number; metricMs: number }[] = [];
      const deadline = performance.now() + IDLE_HOLD_MS;
      while (performance.now() < deadline) {
        const status = (await (await fetch(`http://127.0.0.1:${replica.httpPort}/status`)).json()) as {
          stalenessMs: number;
        };
        const metrics = await (await fetch(`http://127.0.0.1:${replica.httpPort}/metrics`)).text();
        const metric = /^walship_replica_staleness_seconds (\S+)$/m.exec(metrics);
        expect(metric, 'walship_replica_staleness_seconds is exported').not.toBeNull();
        samples.push({ statusMs: status.stalenessMs, metricMs: Number(metric![1]) * 1000 });
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect(samples.length).toBeGreaterThan(IDLE_HOLD_MS / 1000);
      const worst = Math.max(...samples.flatMap((s) => [s.statusMs, s.metricMs]));
      expect(worst, JSON.stringify(samples.slice(-5))).toBeLessThanOrEqual(IDLE_STALENESS_BOUND_MS);
    },
    IDLE_HOLD_MS + 60_000,
  );
});

describe('GET /health', () => {
  it('200 while each node serves its role; a replica held past max_staleness_ms is 503, then 200 again', async () => {
    const { primary, replica, replicaStore } = await startCluster();
    expect(await health(primary.httpPort)).toEqual({ status: 200, body: { status: 'ok', role: 'primary' } });
    const fresh = await health(replica.httpPort, '?max_staleness_ms=1000');
    expect(fresh.status).toBe(200);
    expect(fresh.body).toMatchObject({ status: 'ok', role: 'replica' });

    // The replica's store fails every request: it can no longer vouch for anything.
    replicaStore.setRules([{ fault: { type: 'error', message: 'held by the test' } }]);
    await until(
      'the bound to be passed',
      async () => (await health(replica.httpPort, '?max_staleness_ms=1000')).status === 503,
    );
    const held = await health(replica.httpPort, '?max_staleness_ms=1000');
    expect(held.body).toMatchObject({ status: 'unavailable', role: 'replica' });
    expect(String(held.body.reason)).toMatch(
      /last confirmed it was caught up \d+ ms ago \(max_staleness_ms=1000\)/,
    );
    // Without a bound it still serves its role (reads of any staleness).
    expect((await health(replica.httpPort)).status).toBe(200);

    replicaStore.setRules([]);
    await until(
      'the replica to catch up again',
      async () => (await health(replica.httpPort, '?max_staleness_ms=1000')).status === 200,
    );
  }, 60_000);

  it('HEAD answers the status without a body; a malformed bound is 400', async () => {
    const { replica } = await startCluster();
    const head = await fetch(`http://127.0.0.1:${replica.httpPort}/health`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await health(replica.httpPort, '?max_staleness_ms=soon')).status).toBe(400);
  }, 60_000);

  it('the router: 200 while it knows the primary; with a bound, 503 when no replica is within it', async () => {
    const { primary, replica, replicaStore } = await startCluster();
    const router: RunningRouter = await startTestRouter({
      nodes: [`http://127.0.0.1:${primary.httpPort}`, `http://127.0.0.1:${replica.httpPort}`],
    });
    closers.push(() => router.close());
    await until('the router to see the primary', async () => (await health(router.port)).status === 200);
    expect((await health(router.port)).body).toMatchObject({ status: 'ok', role: 'router' });
    await until(
      'a fresh replica',
      async () => (await health(router.port, '?max_staleness_ms=1000')).status === 200,
    );
    replicaStore.setRules([{ fault: { type: 'error', message: 'held by the test' } }]);
    await until(
      'the router to see the replica stale',
      async () => (await health(router.port, '?max_staleness_ms=1000')).status === 503,
    );
    expect(String((await health(router.port, '?max_staleness_ms=1000')).body.reason)).toBe(
      'no reachable replica within max_staleness_ms=1000',
    );
    expect((await health(router.port)).status).toBe(200);
  }, 60_000);
});
