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

async function startCluster(): Promise<Cluster> {
  const root = path.join(dir, 'store');
  const primaryStore = await FsStore.open({ root });
  const replicaStore = withFaults(await FsStore.open({ root }), []);
  closers.push(
    () => primaryStore.close(),
    () => replicaStore.close(),
  );
  const primary = await startTestNode('primary', primaryStore, path.join(dir, 'primary'));
  closers.push(() => primary.close());
  const replica = await startTestNode('replica', replicaStore, path.join(dir, 'replica'));
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
