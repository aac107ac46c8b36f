/**
 * The metrics operators alert on (issue 19 item 3), on real nodes in this process over an fs store:
 * every series is scraped from `GET /metrics` before and after real traffic — ILP over HTTP and
 * TCP, durable acks, reads over HTTP and PostgreSQL, reads a replica refuses, promotions by hand,
 * by switchover and by the lease — and must have moved by exactly what was sent, never by a
 * constant the test made up.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore, withFaults } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { type Exposition, scrapeMetrics, sum, typeOf, value, values } from './helpers/exposition.js';
import { startTestNode } from './helpers/test-node.js';
import { TEST_ADMIN_TOKEN } from './helpers/test-replica.js';

/** A deadline for waits on background work (uploads, applies, a lease); never a performance bound. */
const WAIT_MS = 20_000;

const PG = {
  host: '127.0.0.1',
  port: 0,
  credentials: [{ user: 'admin', password: 'quest' }],
  maxMessageBytes: 1 << 20,
  maxConnections: 8,
};

let base = '';
let cases = 0;
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-metrics-'));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function freshStore(): Promise<{ store: FsStore; dir: (name: string) => string }> {
  const root = path.join(base, `case-${++cases}`);
  const store = await FsStore.open({ root: path.join(root, 'store') });
  stores.push(store);
  return { store, dir: (name) => path.join(root, name) };
}

async function startNode(
  role: 'primary' | 'replica',
  store: ObjectStore,
  dataDir: string,
  overrides: Parameters<typeof startTestNode>[3] = {},
): Promise<WalshipNode> {
  const node = await startTestNode(role, store, dataDir, overrides);
  nodes.push(node);
  return node;
}

const urlOf = (node: WalshipNode) => `http://127.0.0.1:${node.httpPort}`;
const metricsOf = (node: WalshipNode) => scrapeMetrics(urlOf(node));

/** How much `name{where}` (summed over the other labels) grew from `before` to `after`. */
function grew(
  before: Exposition,
  after: Exposition,
  name: string,
  where: Record<string, string> = {},
): number {
  return sum(after, name, where) - sum(before, name, where);
}

/** A histogram's series `where`: cumulative buckets ending in +Inf, which equals its count. */
function expectHistogram(exposition: Exposition, name: string, where: Record<string, string>): void {
  expect(typeOf(exposition, name)).toBe('histogram');
  const buckets = values(exposition, `${name}_bucket`, where);
  expect(buckets.length, `${name} ${JSON.stringify(where)}`).toBeGreaterThan(1);
  for (let i = 1; i < buckets.length; i++)
    expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
  expect(buckets.at(-1)!.labels.le).toBe('+Inf');
  expect(buckets.at(-1)!.value).toBe(value(exposition, `${name}_count`, where));
}

/** `n` ILP lines of table `table`, each a row. */
function lines(table: string, n: number, tag: string): string {
  return Array.from({ length: n }, (_, i) => `${table},sym=${tag} x=${i}i\n`).join('');
}

async function write(
  node: WalshipNode,
  body: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  const response = await fetch(`${urlOf(node)}/write`, { method: 'POST', body, headers });
  await response.arrayBuffer();
  return response;
}

/** One POST over node:http, which sends it exactly once whatever the answer; resolves with the status. */
function postOnce(node: WalshipNode, target: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: node.httpPort, path: target, method: 'POST' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function exec(node: WalshipNode, sql: string, params = '', headers: Record<string, string> = {}) {
  const response = await fetch(`${urlOf(node)}/exec?query=${encodeURIComponent(sql)}${params}`, { headers });
  await response.arrayBuffer();
  return response.status;
}

/** Runs `statements` on one PostgreSQL connection; resolves with each one's error or null. */
async function pgSession(port: number, statements: string[]): Promise<(Error | null)[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'admin', password: 'quest' });
  await client.connect();
  try {
    const outcomes: (Error | null)[] = [];
    for (const statement of statements) {
      outcomes.push(
        await client.query(statement).then(
          () => null,
          (error: Error) => error,
        ),
      );
    }
    return outcomes;
  } finally {
    await client.end();
  }
}

/** Sends `body` over ILP/TCP and closes the connection. */
async function sendTcp(port: number, body: string): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.end(body, () => resolve());
  });
}

async function statusOf(node: WalshipNode): Promise<Record<string, unknown>> {
  return (await (await fetch(`${urlOf(node)}/status`)).json()) as Record<string, unknown>;
}

/** The TCP port of a node's primary role. */
function tcpPortOf(node: WalshipNode): number {
  const port = (node.current as PrimaryNode | undefined)?.tcpPort;
  expect(port).toBeTypeOf('number');
  return port!;
}

describe('GET /metrics under load', () => {
  it('ILP over HTTP and TCP, durable acks, and reads over HTTP and PostgreSQL move by what was sent', async () => {
    const { store, dir } = await freshStore();
    const primary = await startNode('primary', store, dir('p'), {
      primary: { nodeId: 'p', ackMode: 'durable', windowMs: 10, headIntervalMs: 10, pg: PG },
    });
    const p0 = await metricsOf(primary);
    // Every known label value is there from the start, at 0.
    for (const transport of ['http', 'tcp'])
      for (const outcome of ['ok', 'replayed', 'client_error', 'refused', 'unavailable', 'server_error'])
        expect(value(p0, 'walship_ilp_requests_total', { transport, outcome })).toBe(0);
    for (const protocol of ['http', 'pg'])
      for (const outcome of ['ok', 'client_error', 'refused', 'unavailable', 'server_error', 'cancelled'])
        expect(value(p0, 'walship_queries_total', { protocol, outcome })).toBe(0);

    // ILP over HTTP: 3 + 5 rows, a bad line, a batch of 2 rows sent twice (the second a replay).
    const bodies = { three: lines('m', 3, 'A'), five: lines('m', 5, 'B'), batch: lines('m', 2, 'C') };
    const bad = 'm,sym=D x=1.2.3\n';
    expect((await write(primary, bodies.three)).status).toBe(204);
    expect((await write(primary, bodies.five)).status).toBe(204);
    expect((await write(primary, bad)).status).toBe(400);
    const batch = { 'x-walship-batch': 'metrics-test:1' };
    expect((await write(primary, bodies.batch, batch)).headers.get('x-walship-batch-status')).toBe(
      'committed',
    );
    expect((await write(primary, bodies.batch, batch)).headers.get('x-walship-batch-status')).toBe(
      'replayed',
    );
    // ILP over TCP: 4 rows, in however many batches the server cut them.
    const tcpBody = lines('m', 4, 'T');
    await sendTcp(tcpPortOf(primary), tcpBody);
    await expect
      .poll(async () => grew(p0, await metricsOf(primary), 'walship_ilp_rows_total', { transport: 'tcp' }), {
        timeout: WAIT_MS,
      })
      .toBe(4);

    // Reads: two good and one bad over HTTP, one good and one bad over PostgreSQL.
    expect(await exec(primary, 'select count(*) from m')).toBe(200);
    expect(await exec(primary, 'select sym from m limit 1')).toBe(200);
    expect(await exec(primary, 'select nope from m')).toBe(400);
    const pgOutcomes = await pgSession(primary.pgPort!, ['select count(*) from m', 'select nope from m']);
    expect(pgOutcomes.map((e) => e === null)).toEqual([true, false]);

    const p1 = await metricsOf(primary);
    const ilp = (transport: string, outcome: string) =>
      grew(p0, p1, 'walship_ilp_requests_total', { transport, outcome });
    expect(ilp('http', 'ok')).toBe(3);
    expect(ilp('http', 'replayed')).toBe(1);
    expect(ilp('http', 'client_error')).toBe(1);
    for (const outcome of ['refused', 'unavailable', 'server_error']) expect(ilp('http', outcome)).toBe(0);
    expect(grew(p0, p1, 'walship_ilp_rows_total', { transport: 'http' })).toBe(3 + 5 + 2);
    const httpBytes = [bodies.three, bodies.five, bad, bodies.batch, bodies.batch];
    expect(grew(p0, p1, 'walship_ilp_received_bytes_total', { transport: 'http' })).toBe(
      httpBytes.reduce((total, body) => total + Buffer.byteLength(body), 0),
    );
    expect(grew(p0, p1, 'walship_ilp_received_bytes_total', { transport: 'tcp' })).toBe(
      Buffer.byteLength(tcpBody),
    );
    const tcpBatches = ilp('tcp', 'ok');
    expect(tcpBatches).toBeGreaterThanOrEqual(1);
    expect(tcpBatches).toBeLessThanOrEqual(4);
    for (const outcome of ['replayed', 'client_error', 'refused', 'unavailable', 'server_error'])
      expect(ilp('tcp', outcome)).toBe(0);
    expectHistogram(p1, 'walship_ilp_request_seconds', { transport: 'http', outcome: 'ok' });
    expect(grew(p0, p1, 'walship_ilp_request_seconds_count', { transport: 'http', outcome: 'ok' })).toBe(3);
    expect(grew(p0, p1, 'walship_ilp_request_seconds_count', { transport: 'tcp', outcome: 'ok' })).toBe(
      tcpBatches,
    );
    // One durable wait per request that committed rows: not the replay, which wrote nothing.
    expectHistogram(p1, 'walship_durable_ack_seconds', { outcome: 'ok' });
    expect(value(p1, 'walship_durable_ack_seconds_count', { outcome: 'ok' })).toBe(3 + tcpBatches);
    expect(sum(p1, 'walship_durable_ack_seconds_count', { outcome: 'timeout' })).toBe(0);

    const queries = (protocol: string, outcome: string) =>
      grew(p0, p1, 'walship_queries_total', { protocol, outcome });
    expect([queries('http', 'ok'), queries('http', 'client_error')]).toEqual([2, 1]);
    expect([queries('pg', 'ok'), queries('pg', 'client_error')]).toEqual([1, 1]);
    expectHistogram(p1, 'walship_query_seconds', { protocol: 'pg', outcome: 'ok' });
    expect(grew(p0, p1, 'walship_query_seconds_count', { protocol: 'http' })).toBe(3);
    expect(grew(p0, p1, 'walship_query_seconds_count', { protocol: 'pg' })).toBe(2);
  });

  it('a replica counts the writes it refuses and the reads it refuses, by reason', async () => {
    const { store, dir } = await freshStore();
    // The replica's store can be cut off, so that it can no longer vouch for its freshness.
    const replicaStore = withFaults(store, []);
    const primary = await startNode('primary', store, dir('p'), {
      primary: { nodeId: 'p', windowMs: 10, headIntervalMs: 10 },
    });
    const replica = await startNode('replica', replicaStore, dir('r'), {
      primary: { nodeId: 'r', pg: PG },
      replica: { nodeId: 'r', pollIntervalMs: 10 },
    });
    const written = await write(primary, lines('m', 2, 'A'));
    const token = written.headers.get('x-walship-txn')!;
    expect(token).toMatch(/^m=\d+@\d+$/);
    // A txn of this table that nobody wrote: a read waiting for it times out.
    const unwritten = token.replace(/=(\d+)@/, (_, txn: string) => `=${BigInt(txn) + 1000n}@`);
    expect(await exec(replica, 'select count(*) from m', '', { 'x-walship-min-txn': token })).toBe(200);
    const r0 = await metricsOf(replica);
    for (const reason of ['stale', 'token_timeout', 'busy', 'txn_not_in_cluster'])
      expect(value(r0, 'walship_reads_refused_total', { reason })).toBe(0);

    // Not with fetch: undici sends a request answered 421 (Misdirected) once more by itself.
    expect(await postOnce(replica, '/write', lines('m', 1, 'B'))).toBe(421);
    expect(
      await exec(replica, 'select count(*) from m', '&wait_ms=1', { 'x-walship-min-txn': unwritten }),
    ).toBe(504);
    const pgOutcomes = await pgSession(replica.pgPort!, [
      `SET walship.min_txn = '${unwritten}'`,
      "SET walship.wait_ms = '1'",
      'select count(*) from m',
    ]);
    expect(pgOutcomes.map((e) => e === null)).toEqual([true, true, false]);
    // Cut off from the store, its staleness grows past the read's bound: refused, without waiting.
    replicaStore.setRules([{ fault: { type: 'error', message: 'store unreachable (test)' } }]);
    await expect
      .poll(async () => ((await statusOf(replica)).stalenessMs as number | null) ?? 0, { timeout: WAIT_MS })
      .toBeGreaterThan(100);
    expect(await exec(replica, 'select count(*) from m', '&max_staleness_ms=50&wait_ms=0')).toBe(503);

    const r1 = await metricsOf(replica);
    expect(grew(r0, r1, 'walship_ilp_requests_total', { transport: 'http', outcome: 'refused' })).toBe(1);
    expect(grew(r0, r1, 'walship_ilp_received_bytes_total')).toBe(0);
    expect(grew(r0, r1, 'walship_reads_refused_total', { reason: 'token_timeout' })).toBe(2);
    expect(grew(r0, r1, 'walship_reads_refused_total', { reason: 'stale' })).toBe(1);
    expect(grew(r0, r1, 'walship_reads_refused_total', { reason: 'busy' })).toBe(0);
    expect(grew(r0, r1, 'walship_queries_total', { protocol: 'http', outcome: 'refused' })).toBe(2);
    expect(grew(r0, r1, 'walship_queries_total', { protocol: 'pg', outcome: 'refused' })).toBe(1);
    expect(grew(r0, r1, 'walship_queries_total', { outcome: 'ok' })).toBe(0);
  });
});

describe('promotions', () => {
  it('count by trigger and outcome: a switchover, a promotion by hand, one refused', async () => {
    const { store, dir } = await freshStore();
    const a = await startNode('primary', store, dir('a'), { primary: { nodeId: 'a', windowMs: 10 } });
    const b = await startNode('replica', store, dir('b'), {
      primary: { nodeId: 'b' },
      replica: { nodeId: 'b', pollIntervalMs: 10 },
    });
    expect((await write(a, lines('m', 3, 'A'))).status).toBe(204);
    const before = { a: await metricsOf(a), b: await metricsOf(b) };
    for (const trigger of ['admin', 'automatic', 'switchover'])
      for (const outcome of ['ok', 'failed'])
        expect(value(before.b, 'walship_promotions_total', { trigger, outcome })).toBe(0);

    // A switchover: A demoted, B promoted with the reason `walship switchover` gives.
    const { epoch } = await a.demote();
    const promoted = await admin(b, `promote?reason=switchover&only_after_epoch=${epoch}`);
    expect(promoted.status).toBe(200);
    // A promotion only past an epoch that is no longer the newest is refused; A stays a replica.
    await expect.poll(() => a.role, { timeout: WAIT_MS }).toBe('replica');
    expect((await admin(a, `promote?only_after_epoch=${epoch}`)).status).toBe(409);
    // B demoted, A promoted by hand.
    await b.demote();
    expect((await admin(a, 'promote')).status).toBe(200);

    const after = { a: await metricsOf(a), b: await metricsOf(b) };
    const promotions = (node: 'a' | 'b', trigger: string, outcome: string) =>
      grew(before[node], after[node], 'walship_promotions_total', { trigger, outcome });
    expect(promotions('b', 'switchover', 'ok')).toBe(1);
    expect(promotions('a', 'admin', 'failed')).toBe(1);
    expect(promotions('a', 'admin', 'ok')).toBe(1);
    expect(sum(after.a, 'walship_promotions_total') + sum(after.b, 'walship_promotions_total')).toBe(3);
    // Seconds only for promotions that took writes; they agree with the fencing events.
    expectHistogram(after.b, 'walship_promotion_seconds', { trigger: 'switchover' });
    expect(value(after.b, 'walship_promotion_seconds_count', { trigger: 'switchover' })).toBe(1);
    expect(value(after.a, 'walship_promotion_seconds_count', { trigger: 'admin' })).toBe(1);
    for (const node of ['a', 'b'] as const)
      expect(sum(after[node], 'walship_promotion_seconds_count')).toBe(
        value(after[node], 'walship_fencing_events_total', { kind: 'promoted' }),
      );
    expect(values(after.b, 'walship_failover_seconds_count')).toEqual([
      expect.objectContaining({ value: 0 }),
    ]);
  });

  it('automatic failover: counted once, its duration from the last lease renewal seen to taking writes', async () => {
    const { store, dir } = await freshStore();
    const leaseTimeoutMs = 300;
    const auto = { autoFailover: { enabled: true, leaseTimeoutMs } };
    const a = await startNode('primary', store, dir('a'), {
      primary: { nodeId: 'a', windowMs: 10 },
      ...auto,
    });
    const b = await startNode('replica', store, dir('b'), {
      primary: { nodeId: 'b' },
      replica: { nodeId: 'b', pollIntervalMs: 10 },
      ...auto,
    });
    expect((await write(a, lines('m', 3, 'A'))).status).toBe(204);
    await a.close();
    await expect.poll(() => b.role, { timeout: WAIT_MS }).toBe('primary');
    const metrics = await metricsOf(b);
    expect(value(metrics, 'walship_promotions_total', { trigger: 'automatic', outcome: 'ok' })).toBe(1);
    expect(sum(metrics, 'walship_promotions_total')).toBe(1);
    expectHistogram(metrics, 'walship_failover_seconds', {});
    expect(value(metrics, 'walship_failover_seconds_count')).toBe(1);
    expect(value(metrics, 'walship_promotion_seconds_count', { trigger: 'automatic' })).toBe(1);
    // The failover includes the lease timeout the replica waited out, then the promotion itself.
    const failoverSeconds = value(metrics, 'walship_failover_seconds_sum');
    expect(failoverSeconds).toBeGreaterThanOrEqual(leaseTimeoutMs / 1000);
    expect(failoverSeconds).toBeGreaterThan(
      value(metrics, 'walship_promotion_seconds_sum', { trigger: 'automatic' }),
    );
  });
});

async function admin(node: WalshipNode, action: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${urlOf(node)}/admin/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
  });
  return { status: response.status, body: await response.json() };
}
