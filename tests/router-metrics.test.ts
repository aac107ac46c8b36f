/**
 * `GET /metrics` of `walship router` (issue 19 item 3), in front of a real primary and replica on
 * an fs store: every request through it — writes, reads by each preference, a replica's refusal and
 * the fallback to the primary, a read no node could answer, a PostgreSQL read — moves the series by
 * exactly what was sent, per node; the gauges say what the router believes (a primary known, nodes
 * up), also of a cluster it cannot reach; `/metrics` takes the query credentials when they are set.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore } from '../objectstore/index.js';
import type { RunningRouter } from '../router/index.js';
import { type Exposition, scrapeMetrics, sum, typeOf, value, values } from './helpers/exposition.js';
import { startTestNode } from './helpers/test-node.js';
import { startTestRouter } from './helpers/test-router.js';

const PG = {
  host: '127.0.0.1',
  port: 0,
  credentials: [{ user: 'admin', password: 'quest' }],
  maxMessageBytes: 1 << 20,
  maxConnections: 8,
};

let base = '';
let store: FsStore;
let primary: WalshipNode;
let replica: WalshipNode;
let router: RunningRouter;
const routers: RunningRouter[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-router-metrics-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  const local = { ackMode: 'local' as const, windowMs: 10, headIntervalMs: 10 };
  primary = await startTestNode('primary', store, path.join(base, 'p'), {
    primary: { ...local, nodeId: 'p' },
  });
  replica = await startTestNode('replica', store, path.join(base, 'r'), {
    primary: { ...local, nodeId: 'r' },
    replica: { nodeId: 'r', pollIntervalMs: 10 },
  });
  const urls = [`http://127.0.0.1:${primary.httpPort}`, `http://127.0.0.1:${replica.httpPort}`];
  router = await startTestRouter({ nodes: urls, store, pg: PG });
  routers.push(router);
}, 60_000);

afterAll(async () => {
  await Promise.all(routers.map((r) => r.close()));
  await replica?.close();
  await primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

const routerUrl = (r: RunningRouter = router) => `http://127.0.0.1:${r.port}`;

function grew(before: Exposition, after: Exposition, name: string, where: Record<string, string>): number {
  return sum(after, name, where) - sum(before, name, where);
}

async function write(body: string, r: RunningRouter = router): Promise<number> {
  const response = await fetch(`${routerUrl(r)}/write`, { method: 'POST', body });
  await response.arrayBuffer();
  return response.status;
}

async function read(
  sql: string,
  options: { preference?: string; params?: string; headers?: Record<string, string>; r?: RunningRouter } = {},
): Promise<{ status: number; servedBy: string | null }> {
  const preference = options.preference === undefined ? '' : `&read_preference=${options.preference}`;
  const response = await fetch(
    `${routerUrl(options.r)}/exec?query=${encodeURIComponent(sql)}${preference}${options.params ?? ''}`,
    { headers: options.headers ?? {} },
  );
  await response.arrayBuffer();
  return { status: response.status, servedBy: response.headers.get('x-walship-served-by') };
}

describe('the router’s GET /metrics', () => {
  it('counts requests by how the router ended them and attempts per node, by what was sent', async () => {
    const m0 = await scrapeMetrics(routerUrl());
    expect(value(m0, 'walship_router_primary_known')).toBe(1);
    expect(value(m0, 'walship_router_node_up', { node: 'p', role: 'primary' })).toBe(1);
    expect(value(m0, 'walship_router_node_up', { node: 'r', role: 'replica' })).toBe(1);
    expect(value(m0, 'walship_router_view_age_seconds')).toBeGreaterThanOrEqual(0);
    // Known label values start at 0: every outcome of each kind, every outcome at each node.
    for (const outcome of ['ok', 'error', 'no_node', 'client_error', 'cancelled'])
      expect(value(m0, 'walship_router_requests_total', { kind: 'read', outcome })).toBe(0);
    for (const outcome of ['ok', 'error', 'no_primary', 'unknown', 'client_error', 'cancelled'])
      expect(value(m0, 'walship_router_requests_total', { kind: 'write', outcome })).toBe(0);
    for (const node of ['p', 'r']) {
      for (const outcome of ['ok', 'error', 'refused', 'unreachable'])
        expect(value(m0, 'walship_router_reads_total', { node, outcome })).toBe(0);
      for (const outcome of ['ok', 'error', 'refused', 'unreachable', 'cut'])
        expect(value(m0, 'walship_router_writes_total', { node, outcome })).toBe(0);
    }

    // Writes: three good, one the primary refuses as malformed.
    for (let i = 1; i <= 3; i++) expect(await write(`rm,sym=A x=${i}i\n`)).toBe(204);
    expect(await write('rm,sym=B x=1.2.3\n')).toBe(400);
    const token = await fetch(`${routerUrl()}/write`, { method: 'POST', body: 'rm,sym=C x=4i\n' });
    expect(token.status).toBe(204);
    const txn = token.headers.get('x-walship-txn')!;
    // A txn of this table nobody wrote: a replica asked for it refuses once it waited 1 ms.
    const unwritten = txn.replace(/=(\d+)@/, (_, n: string) => `=${BigInt(n) + 1000n}@`);
    const refusing = { headers: { 'x-walship-min-txn': unwritten }, params: '&wait_ms=1' };

    const sql = 'select count(*) from rm';
    expect(await read(sql, { preference: 'replica' })).toEqual({ status: 200, servedBy: 'r (replica)' });
    expect(await read(sql, { preference: 'replica' })).toEqual({ status: 200, servedBy: 'r (replica)' });
    expect(await read(sql, { preference: 'primary' })).toEqual({ status: 200, servedBy: 'p (primary)' });
    expect((await read('select nope from rm', { preference: 'primary' })).status).toBe(400);
    // The replica refuses (504), the read falls back to the primary.
    expect(await read(sql, { preference: 'replica_preferred', ...refusing })).toEqual({
      status: 200,
      servedBy: 'p (primary)',
    });
    // Replicas only: the replica refuses, no node is left (503 NO_REPLICA).
    expect((await read(sql, { preference: 'replica', ...refusing })).status).toBe(503);
    expect((await read(sql, { preference: 'nearest' })).status).toBe(400);
    // The PostgreSQL door reads through the router's own /exec: counted as a read.
    const client = new pg.Client({
      host: '127.0.0.1',
      port: router.pgPort!,
      user: 'admin',
      password: 'quest',
    });
    await client.connect();
    try {
      await client.query("SET READ_PREFERENCE = 'follower'");
      expect((await client.query(sql)).rows).toHaveLength(1);
    } finally {
      await client.end();
    }

    const m1 = await scrapeMetrics(routerUrl());
    const requests = (kind: string, outcome: string) =>
      grew(m0, m1, 'walship_router_requests_total', { kind, outcome });
    expect([requests('write', 'ok'), requests('write', 'error')]).toEqual([4, 1]);
    for (const outcome of ['no_primary', 'unknown', 'client_error', 'cancelled'])
      expect(requests('write', outcome)).toBe(0);
    expect([requests('read', 'ok'), requests('read', 'error')]).toEqual([5, 1]);
    expect([requests('read', 'no_node'), requests('read', 'client_error')]).toEqual([1, 1]);
    expect(grew(m0, m1, 'walship_router_writes_total', { node: 'p', outcome: 'ok' })).toBe(4);
    expect(grew(m0, m1, 'walship_router_writes_total', { node: 'p', outcome: 'error' })).toBe(1);
    expect(grew(m0, m1, 'walship_router_writes_total', { node: 'r' })).toBe(0);
    const reads = (node: string, outcome: string) =>
      grew(m0, m1, 'walship_router_reads_total', { node, outcome });
    expect({ ok: reads('r', 'ok'), refused: reads('r', 'refused'), error: reads('r', 'error') }).toEqual({
      ok: 3,
      refused: 2,
      error: 0,
    });
    expect({ ok: reads('p', 'ok'), refused: reads('p', 'refused'), error: reads('p', 'error') }).toEqual({
      ok: 2,
      refused: 0,
      error: 1,
    });
    // One duration per request, in a histogram per kind and outcome.
    expect(typeOf(m1, 'walship_router_request_seconds_bucket')).toBe('histogram');
    expect(grew(m0, m1, 'walship_router_request_seconds_count', { kind: 'read' })).toBe(8);
    expect(grew(m0, m1, 'walship_router_request_seconds_count', { kind: 'write' })).toBe(5);
    const buckets = values(m1, 'walship_router_request_seconds_bucket', { kind: 'read', outcome: 'ok' });
    expect(buckets.at(-1)).toMatchObject({ labels: { le: '+Inf' }, value: 5 });
  });

  it('a router that reaches no node: no primary known, the node down, writes end without a primary', async () => {
    // A port nobody listens on.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const dead = await startTestRouter({ nodes: [`http://127.0.0.1:${port}`], writeRetryTimeoutMs: 100 });
    routers.push(dead);
    const m0 = await scrapeMetrics(routerUrl(dead));
    expect(value(m0, 'walship_router_primary_known')).toBe(0);
    expect(values(m0, 'walship_router_node_up').map((s) => [s.labels.node, s.value])).toEqual([
      [`http://127.0.0.1:${port}`, 0],
    ]);
    expect(await write('rm x=1i\n', dead)).toBe(503);
    expect((await read('select 1', { preference: 'primary', r: dead })).status).toBe(503);
    const m1 = await scrapeMetrics(routerUrl(dead));
    expect(grew(m0, m1, 'walship_router_requests_total', { kind: 'write', outcome: 'no_primary' })).toBe(1);
    expect(grew(m0, m1, 'walship_router_requests_total', { kind: 'read', outcome: 'no_node' })).toBe(1);
    expect(sum(m1, 'walship_router_writes_total') + sum(m1, 'walship_router_reads_total')).toBe(0);
  });

  it('with query credentials configured, /metrics needs them as /cluster does', async () => {
    const urls = [`http://127.0.0.1:${primary.httpPort}`];
    const guarded = await startTestRouter({ nodes: urls, clusterAuth: { bearer: ['metrics-token'] } });
    routers.push(guarded);
    expect((await fetch(`${routerUrl(guarded)}/metrics`)).status).toBe(401);
    expect(
      (await fetch(`${routerUrl(guarded)}/metrics`, { headers: { authorization: 'Bearer no' } })).status,
    ).toBe(401);
    const ok = await scrapeMetrics(routerUrl(guarded), { authorization: 'Bearer metrics-token' });
    expect(value(ok, 'walship_router_primary_known')).toBe(1);
  });
});
