/**
 * Issue 13 item 6: a promotion that took epoch E but could not start its primary role (here its
 * ILP/TCP port is held by the test) must never leave the cluster without a primary. In-process
 * nodes on the filesystem store:
 *
 * - the promoted node retries starting its primary role, and takes writes at epoch E once the
 *   port frees;
 * - with automatic failover, the first candidate takes E and cannot start; it steps down, and the
 *   other candidate takes E+1 once E has gone a lease timeout without a renewal — before the fix,
 *   every later automatic promotion lost to E ("epoch E already replaced…") and nobody took writes;
 * - a holder of E that gets its port back after E+1 was claimed is refused and follows E+1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Random, systemClock } from '../core/index.js';
import { EPOCHS_PREFIX, readEpoch } from '../layout/index.js';
import { type PrimaryStartRetry, WalshipNode } from '../node/index.js';
import { FsStore, listAll, type ObjectStore } from '../objectstore/index.js';
import { PrimaryNode } from '../primary/index.js';
import { testNodeSettings } from './helpers/test-node.js';

/** A generous bound for waits (a failover, a catch-up): never a performance check. */
const WAIT_MS = 30_000;
/** Retry the primary start until the test frees the port (well past any wait here). */
const PATIENT: PrimaryStartRetry = { attemptsMax: 10_000, firstWaitMs: 20, maxWaitMs: 50 };

let dir = '';
let store: ObjectStore;
const nodes: WalshipNode[] = [];
const servers: Server[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-failed-promotion-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A listener on a free loopback port, standing for whatever holds the port the promoted node needs. */
async function holdPort(): Promise<{ port: number; free: () => Promise<void> }> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    free: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function start(
  role: 'primary' | 'replica',
  name: string,
  options: {
    leaseTimeoutMs?: number;
    tcpPort?: number;
    random?: Random;
    primaryStartRetry?: PrimaryStartRetry;
  } = {},
): Promise<WalshipNode> {
  const settings = testNodeSettings(store, path.join(dir, name), {
    ...(options.leaseTimeoutMs === undefined
      ? {}
      : { autoFailover: { enabled: true, leaseTimeoutMs: options.leaseTimeoutMs } }),
    primary: { tcp: { host: '127.0.0.1', port: options.tcpPort ?? 0, authKeys: undefined } },
  });
  const node = await WalshipNode.start(
    role,
    {
      ...settings,
      ...(options.primaryStartRetry === undefined ? {} : { primaryStartRetry: options.primaryStartRetry }),
    },
    {
      clock: systemClock,
      random: options.random ?? { next: () => 0.5 },
      log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    },
  );
  nodes.push(node);
  return node;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function write(node: WalshipNode, body: string): Promise<{ status: number; token: string | null }> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, { method: 'POST', body });
  await response.arrayBuffer();
  return { status: response.status, token: response.headers.get('x-walship-txn') };
}

async function ids(node: WalshipNode, token: string): Promise<number[]> {
  const response = await fetch(
    `http://127.0.0.1:${node.httpPort}/exec?${new URLSearchParams({ query: 'select id from t order by id' })}`,
    { headers: { 'x-walship-min-txn': token } },
  );
  return ((await response.json()) as { dataset: number[][] }).dataset.map((row) => row[0]!);
}

function applied(node: WalshipNode): string | undefined {
  const tables = (node.status() as { tables?: { name: string; appliedTxn?: string }[] }).tables ?? [];
  return tables.find((t) => t.name === 't')?.appliedTxn;
}

function events(node: WalshipNode): string[] {
  return ((node.status() as { events?: { message: string }[] }).events ?? []).map((e) => e.message);
}

async function epochs(): Promise<bigint[]> {
  const found: bigint[] = [];
  for await (const info of listAll(store, EPOCHS_PREFIX))
    found.push(BigInt(/(\d+)\.json$/.exec(info.key)![1]!));
  return found.sort((x, y) => (x < y ? -1 : 1));
}

/** A primary at epoch 1 with one txn of `t`, demoted (everything uploaded), and `replica` caught up. */
async function clusterWithoutPrimary(replica: WalshipNode): Promise<void> {
  const old = await start('primary', 'old');
  expect((await write(old, 't id=1i\n')).status).toBe(204);
  await old.demote();
  await until('the replica to apply txn 1', () => (applied(replica) === '1' ? true : undefined));
}

describe('a promotion whose primary role cannot start (issue 13 item 6)', () => {
  it('retries starting the primary role and takes writes at its epoch once the port frees', async () => {
    const held = await holdPort();
    const a = await start('replica', 'a', { tcpPort: held.port, primaryStartRetry: PATIENT });
    await clusterWithoutPrimary(a);
    const promoting = a.promote('test');
    await until('a failed start to be retried', () =>
      events(a).some((m) => m.includes('could not start') && m.includes('trying again')) ? true : undefined,
    );
    const busy = await write(a, 't id=2i\n');
    expect(busy.status).toBe(503); // becoming the primary: clients retry here
    await held.free();
    const promotion = await promoting;
    expect(promotion.epoch).toBe(2n);
    expect(a.role).toBe('primary');
    expect((a.current as PrimaryNode).tcpPort).toBe(held.port);
    const written = await write(a, 't id=2i\n');
    expect(written.status).toBe(204);
    expect(await ids(a, written.token!)).toEqual([1, 2]);
    expect(await epochs()).toEqual([1n, 2n]);
  });

  it('with automatic failover, another candidate takes the next epoch; the stuck node ends up a replica', async () => {
    const LEASE_MS = 500;
    const held = await holdPort();
    const p = await start('primary', 'p', { leaseTimeoutMs: LEASE_MS });
    expect((await write(p, 't id=1i\n')).status).toBe(204);
    // A's timer runs out first (no jitter, half B's timeout), so A takes epoch 2 and is stuck; B
    // re-arms on epoch 2 and promotes past it while A still retries (PRIMARY_START_RETRY_DEFAULT).
    const a = await start('replica', 'a', {
      leaseTimeoutMs: LEASE_MS,
      tcpPort: held.port,
      random: { next: () => 0 },
    });
    const b = await start('replica', 'b', { leaseTimeoutMs: 2 * LEASE_MS, random: { next: () => 0.99 } });
    await until('both candidates to apply txn 1', () =>
      applied(a) === '1' && applied(b) === '1' ? true : undefined,
    );
    nodes.splice(nodes.indexOf(p), 1);
    await p.close(); // its lease goes stale

    const primary = await until('a candidate to take writes', () =>
      [a, b].find((node) => node.current instanceof PrimaryNode && node.current.acceptingWrites),
    );
    expect((await readEpoch(store, 2n))?.nodeId).toBe(a.nodeId); // the failed promotion happened
    expect(primary).toBe(b);
    const newest = (await epochs()).at(-1);
    expect((b.current as PrimaryNode).epoch).toBe(newest);
    await until('the stuck node to follow as a replica', () => (a.role === 'replica' ? true : undefined));
    expect(events(a).some((m) => m.includes('epoch 2') && m.includes('could not start'))).toBe(true);

    const written = await write(b, 't id=2i\n');
    expect(written.status).toBe(204);
    expect(await ids(a, written.token!)).toEqual([1, 2]);
    expect((await write(a, 't id=3i\n')).status).toBe(421);
  }, 60_000);

  it('a holder of epoch E that gets its port back after E+1 was claimed is refused and follows E+1', async () => {
    const held = await holdPort();
    const a = await start('replica', 'a', { tcpPort: held.port, primaryStartRetry: PATIENT });
    const b = await start('replica', 'b');
    await clusterWithoutPrimary(a);
    await until('B to apply txn 1', () => (applied(b) === '1' ? true : undefined));
    const promoting = a.promote('test');
    promoting.catch(() => {});
    await until('A to retry its start', () =>
      events(a).some((m) => m.includes('trying again')) ? true : undefined,
    );
    expect((await b.promote('test')).epoch).toBe(3n);
    await held.free();
    await expect(promoting).rejects.toMatchObject({ code: 'PRIMARY_REFUSED' });
    expect(a.role).toBe('replica');
    expect(events(a).some((m) => m.includes('overtaken'))).toBe(true);
    const written = await write(b, 't id=2i\n');
    expect(written.status).toBe(204);
    expect(await ids(a, written.token!)).toEqual([1, 2]);
    expect(await epochs()).toEqual([1n, 2n, 3n]);
  });
});
