import { afterEach, describe, expect, it } from 'vitest';
import { ManualClientClock } from './clock.js';
import { isClientError, type WalshipClientError } from './errors.js';
import { ReadRouter, type ReadRouterOptions } from './read-router.js';
import {
  type RecordedRequest,
  refusedAddress,
  type ScriptedServer,
  startScriptedServer,
} from './testing/scripted-http-server.js';

/** The read router against loopback servers that play primaries and replicas. */

const servers: ScriptedServer[] = [];
const routers: ReadRouter[] = [];

afterEach(async () => {
  for (const router of routers.splice(0)) await router.close();
  for (const server of servers.splice(0)) await server.close();
});

type ExecAnswer = { status: number; headers?: Record<string, string>; body?: string };

/** A node: `/status` says `role`; `/exec` answers `exec` (default: 200 with its name in the dataset). */
async function node(
  name: string,
  role: 'primary' | 'replica',
  exec?: (request: RecordedRequest) => ExecAnswer,
  status: Record<string, unknown> = {},
): Promise<ScriptedServer> {
  const started = await startScriptedServer((request) => {
    if (request.url === '/status') {
      return { status: 200, body: JSON.stringify({ role, acceptingWrites: role === 'primary', ...status }) };
    }
    return exec?.(request) ?? ok(name);
  });
  servers.push(started);
  return started;
}

function ok(name: string, headers: Record<string, string> = {}): ExecAnswer {
  return {
    status: 200,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({
      query: 'q',
      columns: [{ name: 'who', type: 'STRING' }],
      dataset: [[name]],
      count: 1,
    }),
  };
}

function execError(status: number, error: string): ExecAnswer {
  return { status, body: JSON.stringify({ query: 'q', error, position: 0 }) };
}

function router(options: ReadRouterOptions): ReadRouter {
  const created = new ReadRouter(options);
  routers.push(created);
  return created;
}

const execs = (server: ScriptedServer) => server.requests.filter((r) => r.url.startsWith('/exec'));
const statuses = (server: ScriptedServer) => server.requests.filter((r) => r.url === '/status');

async function refusal(promise: Promise<unknown>): Promise<WalshipClientError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isClientError(error), String(error)).toBe(true);
  return error as WalshipClientError;
}

describe('ReadRouter', () => {
  it('learns roles from /status and routes by preference', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica', () =>
      ok('r', { 'x-walship-applied-txn': 'trades=7', 'x-walship-staleness-ms': '12' }),
    );
    const r = router({ nodes: [primary.url, replica.url] });
    const fromReplica = await r.query('select 1', { preference: 'replica' });
    expect(fromReplica).toMatchObject({
      node: replica.url,
      role: 'replica',
      appliedTxn: 'trades=7',
      stalenessMs: 12,
      skipped: [],
    });
    expect(fromReplica.body.dataset).toEqual([['r']]);
    const fromPrimary = await r.query('select 1', { preference: 'primary' });
    expect(fromPrimary).toMatchObject({ node: primary.url, role: 'primary', appliedTxn: undefined });
    expect((await r.query('select 1')).node).toBe(replica.url);
    expect(r.nodes.map((n) => n.role)).toEqual(['primary', 'replica']);
    expect(new URLSearchParams(execs(replica)[0]!.url.split('?')[1]).get('query')).toBe('select 1');
  });

  it('sends the commit token and staleness bound to replicas only', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica', () => execError(503, 'stale: max_staleness_ms=50'));
    const r = router({ nodes: [replica.url, primary.url], maxStalenessMs: 50 });
    await r.query('select 1', { minTxn: 'trades=3', waitMs: 200 });
    const toReplica = execs(replica)[0]!;
    const params = new URLSearchParams(toReplica.url.split('?')[1]);
    expect(toReplica.headers['x-walship-min-txn']).toBe('trades=3');
    expect(params.get('max_staleness_ms')).toBe('50');
    expect(params.get('wait_ms')).toBe('200');
    const toPrimary = execs(primary)[0]!;
    expect(toPrimary.headers['x-walship-min-txn']).toBeUndefined();
    expect(new URLSearchParams(toPrimary.url.split('?')[1]).has('max_staleness_ms')).toBe(false);
  });

  it('replica_preferred: a stale replica (503) falls back to the primary', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica', () =>
      execError(503, 'this replica last confirmed it was caught up 900 ms ago (max_staleness_ms=100)'),
    );
    const r = router({ nodes: [primary.url, replica.url], maxStalenessMs: 100 });
    const result = await r.query('select 1');
    expect(result.node).toBe(primary.url);
    expect(result.skipped).toEqual([
      { node: replica.url, answer: expect.stringMatching(/^503 STALE_REPLICA: this replica last confirmed/) },
    ]);
  });

  it('replica: 504 on one replica tries the next replica; none left is an error naming each answer', async () => {
    const primary = await node('p', 'primary');
    let secondOk = true;
    const behind = await node('r1', 'replica', () => execError(504, 'waited 100 ms for trades txn 9'));
    const fresh = await node('r2', 'replica', () => (secondOk ? ok('r2') : execError(504, 'waited too')));
    const r = router({ nodes: [primary.url, behind.url, fresh.url] });
    // Whichever replica the rotation starts with, the answer comes from the one that has txn 9.
    for (let i = 0; i < 2; i++) {
      expect((await r.query('select 1', { preference: 'replica', minTxn: 'trades=9' })).node).toBe(fresh.url);
    }
    secondOk = false;
    const error = await refusal(r.query('select 1', { preference: 'replica', minTxn: 'trades=9' }));
    expect(error.code).toBe('NO_NODE_FOR_READ');
    expect(error.message).toContain(`${behind.url} (504 MIN_TXN_TIMEOUT: waited 100 ms for trades txn 9)`);
    expect(error.message).toContain(`${fresh.url} (504 MIN_TXN_TIMEOUT`);
    expect(execs(primary).length).toBe(0);
    // replica_preferred ends at the primary instead.
    expect((await r.query('select 1', { minTxn: 'trades=9' })).node).toBe(primary.url);
  });

  it('replica: no replica known is an error; primary: no primary known is an error', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica');
    const onlyPrimary = router({ nodes: [primary.url] });
    const error = await refusal(onlyPrimary.query('select 1', { preference: 'replica' }));
    expect(error.code).toBe('NO_NODE_FOR_READ');
    expect(error.message).toMatch(/read preference replica: no node is known as a replica/);
    const onlyReplica = router({ nodes: [replica.url] });
    expect((await refusal(onlyReplica.query('select 1', { preference: 'primary' }))).message).toMatch(
      /no node is known as a writable primary/,
    );
  });

  it('a demoted primary takes no reads', async () => {
    const demoted = await node('old', 'primary', undefined, { acceptingWrites: false });
    const replica = await node('r', 'replica');
    const r = router({ nodes: [demoted.url, replica.url] });
    expect((await r.query('select 1')).node).toBe(replica.url);
    expect(r.nodes[0]).toMatchObject({
      role: 'unknown',
      note: expect.stringMatching(/not accepting writes/),
    });
    expect(execs(demoted).length).toBe(0);
  });

  it('a bad query (400) fails at once with the server error', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica', () => ({
      status: 400,
      body: JSON.stringify({ query: 'selec', error: 'syntax error near selec', position: 3 }),
    }));
    const r = router({ nodes: [replica.url, primary.url] });
    const error = await refusal(r.query('selec'));
    expect(error.code).toBe('READ_REJECTED');
    expect(error.message).toMatch(/refused "selec" with HTTP 400: syntax error near selec/);
    expect(error.details).toMatchObject({ status: 400, position: 3 });
    expect(execs(primary).length).toBe(0);
  });

  it('a node that refuses connections is skipped and the roles are asked again', async () => {
    const primary = await node('p', 'primary');
    const replica = await node('r', 'replica');
    const clock = new ManualClientClock();
    const r = router({ nodes: [replica.url, primary.url], roleRefreshIntervalMs: 60_000, clock });
    expect((await r.query('select 1')).node).toBe(replica.url);
    expect(statuses(primary).length).toBe(1);
    await replica.close();
    const result = await r.query('select 1');
    expect(result.node).toBe(primary.url);
    expect(result.skipped).toEqual([
      { node: replica.url, answer: expect.stringMatching(/ECONNREFUSED|connection/) },
    ]);
    expect(r.nodes[0]?.note).toMatch(/^suspect after/);
    // The failure made the roles suspect: the next read asks again at once, not after 60 s.
    expect(statuses(primary).length).toBe(1);
    const next = await r.query('select 1');
    expect(statuses(primary).length).toBe(2);
    expect(r.nodes[0]?.role).toBe('unknown');
    expect(next).toMatchObject({ node: primary.url, skipped: [] });
  });

  it('asks /status again only after roleRefreshIntervalMs', async () => {
    const primary = await node('p', 'primary');
    const clock = new ManualClientClock();
    const r = router({ nodes: [primary.url], roleRefreshIntervalMs: 1_000, clock });
    await r.query('select 1');
    await r.query('select 1');
    clock.nowMs += 999;
    await r.query('select 1');
    expect(statuses(primary).length).toBe(1);
    clock.nowMs += 1;
    await r.query('select 1');
    expect(statuses(primary).length).toBe(2);
  });

  it('takes turns between replicas', async () => {
    const a = await node('a', 'replica');
    const b = await node('b', 'replica');
    const r = router({ nodes: [a.url, b.url] });
    const answered = [];
    for (let i = 0; i < 4; i++) answered.push((await r.query('select 1')).node);
    expect(answered.filter((url) => url === a.url).length).toBe(2);
    expect(answered.filter((url) => url === b.url).length).toBe(2);
  });

  it('uses given roles without asking /status when discovery is off', async () => {
    const primary = await node('p', 'primary');
    const down = `http://${await refusedAddress()}`;
    const r = router({
      nodes: [
        { url: down, role: 'replica' },
        { url: primary.url, role: 'primary' },
      ],
      discoverRoles: false,
    });
    const result = await r.query('select 1');
    expect(result.node).toBe(primary.url);
    expect(result.skipped.map((s) => s.node)).toEqual([down]);
    expect(statuses(primary).length).toBe(0);
  });

  it('sends credentials and refuses bad options', async () => {
    const primary = await node('p', 'primary');
    const r = router({ nodes: [primary.url], auth: { token: 'tok' } });
    await r.query('select 1');
    expect(primary.requests.every((q) => q.headers.authorization === 'Bearer tok')).toBe(true);
    expect(() => new ReadRouter({ nodes: [] })).toThrow(/1..256 nodes/);
    expect(() => new ReadRouter({ nodes: ['ftp://x'] })).toThrow(/http:\/\/ or https:\/\//);
    expect(() => new ReadRouter({ nodes: [primary.url], preference: 'leader' as never })).toThrow(
      /read preference/,
    );
  });
});
