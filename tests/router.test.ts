/**
 * `walship router` in front of real nodes in this process (a primary and two replicas that can
 * change role, one filesystem store):
 *
 * 1. the official `@questdb/nodejs-client`, unmodified, with the router as its only address, keeps
 *    writing through a planned switchover (`walship switchover`, run in-process) in durable mode;
 *    every acknowledged row is on the new primary exactly once;
 * 2. reads by preference: spread over fresh replicas; with one replica stopped and the other
 *    lagging past `max_staleness_ms`, `replica` answers 503 NO_REPLICA naming both and why,
 *    `replica_preferred` answers from the primary, and the headers say who served it;
 * 3. `GET /cluster`: every node, its role, epoch, tables with txns and lag, and why the primary is;
 * 4. a replica of one table never gets a query on another. Built while the table filter
 *    (replica/table-filter.ts) is being written, so that replica is a scripted HTTP server whose
 *    `/status` lists one table (and `servedTables`), as a filtered replica's does; it records every
 *    query it is sent. It runs behind a second router beside the first (routers are stateless).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchoverCommand } from '../cli/failover-commands.js';
import { runRouterCommand } from '../cli/router.js';
import type { WalshipNode } from '../node/index.js';
import { type FaultyStore, FsStore, withFaults } from '../objectstore/index.js';
import { TableFilter } from '../replica/index.js';
import type { RunningRouter } from '../router/index.js';
import { startTestNode } from './helpers/test-node.js';
import { TEST_ADMIN_TOKEN } from './helpers/test-replica.js';
import { startTestRouter } from './helpers/test-router.js';

const WAIT_MS = 20_000;

let base = '';
let store: FsStore;
let laggingStore: FaultyStore;
const nodes: Record<'a' | 'b' | 'c', WalshipNode> = {} as never;
let router: RunningRouter;
let second: RunningRouter | undefined;
let scripted: Server | undefined;

const urlOf = (node: WalshipNode) => `http://127.0.0.1:${node.httpPort}`;
const routerUrl = (r: RunningRouter = router) => `http://127.0.0.1:${r.port}`;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-router-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  laggingStore = withFaults(store, []);
  const durable = { ackMode: 'durable' as const, windowMs: 20, headIntervalMs: 20 };
  nodes.a = await startTestNode('primary', store, path.join(base, 'a'), {
    primary: { ...durable, nodeId: 'a' },
  });
  nodes.b = await startTestNode('replica', store, path.join(base, 'b'), {
    primary: { ...durable, nodeId: 'b' },
    replica: { nodeId: 'b' },
  });
  nodes.c = await startTestNode('replica', laggingStore, path.join(base, 'c'), {
    primary: { ...durable, nodeId: 'c' },
    replica: { nodeId: 'c' },
  });
  router = await startTestRouter({
    nodes: [urlOf(nodes.a), urlOf(nodes.b), urlOf(nodes.c)],
    store,
  });
}, 60_000);

afterAll(async () => {
  await second?.close();
  await router?.close();
  await new Promise((resolve) => (scripted === undefined ? resolve(undefined) : scripted.close(resolve)));
  for (const node of Object.values(nodes)) await node?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(url, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? {} : JSON.parse(text) };
}

const exec = (sql: string, headers: Record<string, string> = {}, extra = '', r = router) =>
  get(`${routerUrl(r)}/exec?query=${encodeURIComponent(sql)}${extra}`, headers);

async function statusOf(node: WalshipNode): Promise<Record<string, unknown>> {
  return (await get(`${urlOf(node)}/status`)).body;
}

async function appliedOn(node: WalshipNode, table: string): Promise<bigint> {
  const tables = ((await statusOf(node)).tables ?? []) as {
    name: string;
    appliedTxn?: string;
    committedTxn?: string;
  }[];
  const t = tables.find((x) => x.name === table);
  return BigInt(t?.appliedTxn ?? t?.committedTxn ?? '0');
}

async function ids(node: WalshipNode, table: string): Promise<number[]> {
  const response = await get(
    `${urlOf(node)}/exec?query=${encodeURIComponent(`select id from ${table} order by id`)}`,
  );
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return (response.body.dataset as [number][]).map((row) => row[0]);
}

describe('walship router in front of a primary and two replicas', () => {
  it('the official single-address client keeps writing through a planned switchover; every acked row once', async () => {
    const sender = await Sender.fromConfig(
      `http::addr=127.0.0.1:${router.port};auto_flush=off;retry_timeout=60000;request_timeout=60000;`,
    );
    const acked: number[] = [];
    let next = 0;
    const writeBatch = async () => {
      const batch: number[] = [];
      for (let i = 0; i < 50; i++) {
        const id = next++;
        batch.push(id);
        await sender
          .table('through_router')
          .intColumn('id', id)
          .at(1_700_000_000_000_000n + BigInt(id), 'us');
      }
      await sender.flush();
      acked.push(...batch);
    };
    let switched = false;
    const writer = (async () => {
      while (!switched || acked.length < 1_000 + 500) await writeBatch();
    })();
    await expect.poll(() => acked.length, { timeout: WAIT_MS }).toBeGreaterThanOrEqual(500);
    const lines: string[] = [];
    const io = { stdout: (t: string) => lines.push(t), stderr: (t: string) => lines.push(t), env: {} };
    const exit = await switchoverCommand(
      ['--from', urlOf(nodes.a), '--to', urlOf(nodes.b), `--admin.token=${TEST_ADMIN_TOKEN}`],
      io,
    );
    expect(exit, lines.join('\n')).toBe(0);
    const ackedAtSwitch = acked.length;
    switched = true;
    await writer;
    await sender.close();
    expect(acked.length).toBeGreaterThan(ackedAtSwitch);
    expect(nodes.b.role).toBe('primary');
    // Every acknowledged row is on the new primary exactly once.
    expect(await ids(nodes.b, 'through_router')).toEqual([...acked].sort((x, y) => x - y));

    // A plain write through the router says who took it and carries the commit token.
    const response = await fetch(`${routerUrl()}/write`, { method: 'POST', body: 'through_router id=-1i\n' });
    expect(response.status).toBe(204);
    expect(response.headers.get('x-walship-served-by')).toBe('b (primary)');
    expect(response.headers.get('x-walship-txn')).toMatch(/^through_router=\d+(@\d+)?$/);
  }, 90_000);

  it('GET /cluster shows every node, its role, epoch, tables with txns and lag, and why the primary is', async () => {
    await expect
      .poll(
        async () =>
          (await appliedOn(nodes.c, 'through_router')) === (await appliedOn(nodes.b, 'through_router')),
        {
          timeout: WAIT_MS,
        },
      )
      .toBe(true);
    await expect
      .poll(
        async () =>
          (await appliedOn(nodes.a, 'through_router')) === (await appliedOn(nodes.b, 'through_router')),
        {
          timeout: WAIT_MS,
        },
      )
      .toBe(true);
    await router.view.refresh();
    const cluster = await get(`${routerUrl()}/cluster`);
    expect(cluster.status).toBe(200);
    const primary = cluster.body.primary as Record<string, unknown>;
    expect(primary).toMatchObject({
      nodeId: 'b',
      url: urlOf(nodes.b),
      epoch: '2',
      writers: [urlOf(nodes.b)],
    });
    expect(primary.why).toMatch(/the newest epoch record \(epoch 2, switchover .*\) names b/);
    expect(cluster.body.epochRecord).toMatchObject({ epoch: '2', nodeId: 'b' });
    const listed = cluster.body.nodes as {
      nodeId: string;
      role: string;
      primary: boolean;
      epoch: string | null;
      acceptingWrites: boolean;
      lastSeenAgoMs: number;
      tables: {
        name: string;
        committedTxn: string | null;
        appliedTxn: string | null;
        lagTxns: string | null;
      }[];
    }[];
    expect(listed.map((n) => [n.nodeId, n.role, n.primary, n.epoch, n.acceptingWrites])).toEqual([
      ['a', 'replica', false, null, false],
      ['b', 'primary', true, '2', true],
      ['c', 'replica', false, null, false],
    ]);
    const head = String(await appliedOn(nodes.b, 'through_router'));
    const tableOf = (id: string) =>
      listed.find((n) => n.nodeId === id)!.tables.find((t) => t.name === 'through_router');
    expect(tableOf('b')).toMatchObject({ committedTxn: head, appliedTxn: null });
    expect(tableOf('a')).toMatchObject({ appliedTxn: head, lagTxns: '0' });
    expect(tableOf('c')).toMatchObject({ appliedTxn: head, lagTxns: '0' });
    expect(listed.every((n) => typeof n.lastSeenAgoMs === 'number')).toBe(true);
  });

  it('spreads replica reads over fresh replicas and says who served them and how fresh', async () => {
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const read = await exec('select count(*) from through_router', {
        'x-walship-read-preference': 'replica',
      });
      expect(read.status, JSON.stringify(read.body)).toBe(200);
      expect((read.body.dataset as number[][])[0]![0]).toBeGreaterThan(1_000);
      served.add(read.headers.get('x-walship-served-by')!);
      expect(read.headers.get('x-walship-staleness-ms')).toMatch(/^(\d+|unknown)$/);
      expect(read.headers.get('x-walship-applied-txn')).toMatch(/through_router=\d+/);
    }
    expect([...served].sort()).toEqual(['a (replica)', 'c (replica)']);
    const fromPrimary = await exec('select count(*) from through_router', {}, '&read_preference=primary');
    expect(fromPrimary.headers.get('x-walship-served-by')).toBe('b (primary)');
    expect(fromPrimary.headers.get('x-walship-staleness-ms')).toBe('0');
    // A node's own answer passes through: bad SQL is the node's 400, from one node only.
    const bad = await exec('select nope from through_router', { 'x-walship-read-preference': 'replica' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('x-walship-served-by')).toMatch(/^[ac] \(replica\)$/);
  });

  it('one replica stopped, the other lagging past max_staleness_ms: replica → NO_REPLICA, replica_preferred → the primary', async () => {
    await nodes.a.close();
    // c cannot reach the store any more: it cannot confirm it is caught up.
    laggingStore.setRules([{ fault: { type: 'error', message: 'store unreachable (test)' } }]);
    await expect
      .poll(async () => ((await statusOf(nodes.c)).stalenessMs as number | null) ?? 0, { timeout: WAIT_MS })
      .toBeGreaterThan(300);
    await router.view.refresh();
    const sql = 'select count(*) from through_router';
    const refused = await exec(sql, { 'x-walship-read-preference': 'replica' }, '&max_staleness_ms=200');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({
      code: 'NO_REPLICA',
      tables: ['through_router'],
      maxStalenessMs: 200,
    });
    const message = refused.body.message as string;
    expect(message).toContain('tables: through_router; max_staleness_ms=200');
    expect(message).toMatch(/c \(http:\/\/127\.0\.0\.1:\d+\) \[replica\]: 503 STALE_REPLICA/);
    expect(message).toMatch(/not candidates: a \(http:\/\/127\.0\.0\.1:\d+\): \/status: .*refused/);
    expect(refused.headers.get('x-walship-served-by')).toBeNull();

    const fallback = await exec(
      sql,
      { 'x-walship-read-preference': 'replica_preferred' },
      '&max_staleness_ms=200',
    );
    expect(fallback.status).toBe(200);
    expect(fallback.headers.get('x-walship-served-by')).toBe('b (primary)');
    expect(fallback.headers.get('x-walship-staleness-ms')).toBe('0');
    expect((fallback.body.dataset as number[][])[0]![0]).toBe((await ids(nodes.b, 'through_router')).length);
    // The configured default (replica_preferred) applies without a header, and a bad preference is refused.
    expect((await exec(sql, {}, '&max_staleness_ms=200')).headers.get('x-walship-served-by')).toBe(
      'b (primary)',
    );
    expect((await exec(sql, { 'x-walship-read-preference': 'nearest' })).status).toBe(400);
    laggingStore.setRules([]);
  });

  it('never sends a replica of one table a query on another (scripted replica, a second router beside)', async () => {
    const received: string[] = [];
    scripted = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/status') {
        const body = JSON.stringify({
          role: 'replica',
          nodeId: 'only-t1',
          acceptingWrites: false,
          stalenessMs: 0,
          servedTables: { include: ['t1'], exclude: [] },
          tables: [{ name: 't1', key: 't1', appliedTxn: '3', txnsBehind: '0', suspended: null }],
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        return;
      }
      received.push(url.searchParams.get('query') ?? '');
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'x-walship-staleness-ms': '0',
          'x-walship-applied-txn': 't1=3',
        })
        .end(
          JSON.stringify({
            query: url.searchParams.get('query'),
            columns: [],
            dataset: [['scripted']],
            count: 1,
          }),
        );
    });
    await new Promise<void>((resolve) => scripted!.listen(0, '127.0.0.1', resolve));
    const scriptedUrl = `http://127.0.0.1:${(scripted.address() as AddressInfo).port}`;
    second = await startTestRouter({
      nodes: [urlOf(nodes.b), scriptedUrl],
      store,
      clusterAuth: { bearer: ['query-token'] },
    });
    const onT1 = await exec('select * from t1', {}, '&read_preference=replica', second);
    expect(onT1.status).toBe(200);
    expect(onT1.body.dataset).toEqual([['scripted']]);
    expect(onT1.headers.get('x-walship-served-by')).toBe('only-t1 (replica)');
    expect(onT1.headers.get('x-walship-applied-txn')).toBe('t1=3');
    for (const sql of [
      'select count(*) from through_router',
      'select * from t1 join through_router on (id)',
      'show tables',
    ]) {
      const read = await exec(sql, {}, '&read_preference=replica_preferred', second);
      expect(read.headers.get('x-walship-served-by'), sql).toBe('b (primary)');
      const strict = await exec(sql, {}, '&read_preference=replica', second);
      expect(strict.status).toBe(503);
      expect(strict.body.message).toContain('only-t1');
    }
    expect(received).toEqual(['select * from t1']);
    // GET /cluster needs the query credentials when they are configured.
    expect((await get(`${routerUrl(second)}/cluster`)).status).toBe(401);
    const cluster = await get(`${routerUrl(second)}/cluster`, { authorization: 'Bearer query-token' });
    expect(cluster.status).toBe(200);
    expect((cluster.body.nodes as { nodeId: string; tables: { name: string }[] }[])[1]).toMatchObject({
      nodeId: 'only-t1',
      tables: [{ name: 't1' }],
    });
    // Both routers see the same primary: no router state beyond its cache.
    expect((await get(`${routerUrl(second)}/status`)).body).toMatchObject({
      role: 'router',
      primary: { nodeId: 'b' },
    });
    expect((await get(`${routerUrl()}/status`)).body).toMatchObject({
      role: 'router',
      primary: { nodeId: 'b' },
    });
  });

  it('a real replica of one table (replication.replica.tables) gets only queries on that table', async () => {
    const primary = Object.values(nodes).find((n) => n.role === 'primary')!;
    const restricted = await startTestNode('replica', store, path.join(base, 'only-here'), {
      replica: { nodeId: 'only-here', tables: TableFilter.parse('only_here', undefined), pollIntervalMs: 20 },
    });
    let third: RunningRouter | undefined;
    try {
      for (const table of ['only_here', 'elsewhere']) {
        const written = await fetch(`${urlOf(primary)}/write`, {
          method: 'POST',
          body: `${table},k=a v=1i 1700000000000000000\n`,
        });
        expect(written.status).toBe(204);
      }
      const deadline = Date.now() + WAIT_MS;
      while ((await appliedOn(restricted, 'only_here')) < 1n) {
        if (Date.now() > deadline) throw new Error('the restricted replica did not apply only_here');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      third = await startTestRouter({
        nodes: [urlOf(primary), urlOf(restricted)],
        store,
      });
      const here = await exec('select count(*) from only_here', {}, '&read_preference=replica', third);
      expect(here.status, JSON.stringify(here.body)).toBe(200);
      expect(here.headers.get('x-walship-served-by')).toBe('only-here (replica)');
      for (let i = 0; i < 5; i++) {
        const other = await exec('select count(*) from elsewhere', {}, '', third);
        expect(other.status).toBe(200);
        expect(other.headers.get('x-walship-served-by')).toBe(`${primary.nodeId} (primary)`);
      }
      const strict = await exec('select count(*) from elsewhere', {}, '&read_preference=replica', third);
      expect(strict.status).toBe(503);
      expect(strict.body.code).toBe('NO_REPLICA');
      expect(String(strict.body.message)).toContain('only-here');
    } finally {
      await third?.close();
      await restricted.close();
    }
  });

  it('answers /ping and /settings as a QuestDB node, and refuses oversized writes with 413 before forwarding', async () => {
    const ping = await fetch(`${routerUrl()}/ping`);
    expect(ping.status).toBe(204);
    const settings = await get(`${routerUrl()}/settings`);
    expect((settings.body.config as Record<string, unknown>)['accepting.writes']).toEqual(['http']);
    const before = await appliedOn(nodes.b, 'big');
    const big = await fetch(`${routerUrl()}/write`, {
      method: 'POST',
      body: `big v=1i\n${'#'.repeat(1024 * 1024)}\n`,
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: 'request too large' });
    expect(await appliedOn(nodes.b, 'big')).toBe(before);
  });
});

describe('walship router command line', () => {
  const io = (lines: string[]) => ({
    stdout: (t: string) => lines.push(t),
    stderr: (t: string) => lines.push(t),
    env: {},
  });

  it('prints its usage with --help', async () => {
    const lines: string[] = [];
    expect(await runRouterCommand(['--help'], io(lines))).toBe(0);
    expect(lines.join('\n')).toContain('X-Walship-Read-Preference');
  });

  it('refuses to start without a store or nodes, and with a node that is not a base URL', async () => {
    await expect(runRouterCommand(['--http.bind.to=127.0.0.1:0'], io([]))).rejects.toThrow(
      /needs replication.object.store .* or router.nodes/,
    );
    await expect(
      runRouterCommand(['--router.nodes=http://a:9000,ftp://b', '--http.bind.to=127.0.0.1:0'], io([])),
    ).rejects.toThrow(/router.nodes: "ftp:\/\/b" is not a base URL/);
    await expect(runRouterCommand(['--router.read.preference=nearest'], io([]))).rejects.toThrow(
      /router.read.preference/,
    );
  });
});

/**
 * Issue 13 item 9: failed-login lockout behind the router. Every request reaches the node from the
 * router's address, so counting failures per TCP peer let one client's 31 bad tokens refuse every
 * client's valid writes (429), and the router's own /status probes too ("primary unreachable").
 * Clients here are told apart by their loopback source address (127.0.0.2, 127.0.0.3: Linux
 * routes all of 127/8 to lo); the router and the node talk over 127.0.0.1, which the node trusts.
 */
describe('failed-authentication lockout behind the router (issue 13 item 9)', () => {
  const ILP_TOKEN = 'router-lockout-ilp-token';
  const FAILURES_PER_MINUTE = 30;
  let lockoutBase = '';
  let lockoutStore: FsStore;
  let primary: WalshipNode;
  let front: RunningRouter;

  beforeAll(async () => {
    lockoutBase = await mkdtemp(path.join(tmpdir(), 'walship-router-lockout-'));
    lockoutStore = await FsStore.open({ root: path.join(lockoutBase, 'store') });
    primary = await startTestNode('primary', lockoutStore, path.join(lockoutBase, 'p'), {
      primary: {
        nodeId: 'p',
        http: {
          host: '127.0.0.1',
          port: 0,
          authFailuresPerMinute: FAILURES_PER_MINUTE,
          trustedProxies: ['127.0.0.1'],
        },
        ilpAuth: { bearer: [ILP_TOKEN] },
      },
    });
    front = await startTestRouter({
      nodes: [urlOf(primary)],
      http: { host: '127.0.0.1', port: 0, authFailuresPerMinute: FAILURES_PER_MINUTE },
    });
  }, 60_000);

  afterAll(async () => {
    await front?.close();
    await primary?.close();
    await lockoutStore?.close();
    await rm(lockoutBase, { recursive: true, force: true });
  });

  it('31+ bad-token writes from one client lock out that client only; others write, the router sees the primary', async () => {
    const attacker: number[] = [];
    for (let i = 0; i < FAILURES_PER_MINUTE + 5; i++)
      attacker.push(await writeFrom('127.0.0.2', front.port, 'Bearer wrong-token', `lock v=${i}i`));
    expect(attacker.slice(0, FAILURES_PER_MINUTE)).toEqual(Array(FAILURES_PER_MINUTE).fill(401));
    expect(attacker.slice(FAILURES_PER_MINUTE)).toEqual(Array(5).fill(429));

    const honest: number[] = [];
    for (let i = 0; i < 5; i++)
      honest.push(await writeFrom('127.0.0.3', front.port, `Bearer ${ILP_TOKEN}`, `lock v=${100 + i}i`));
    expect(honest).toEqual(Array(5).fill(204));

    await front.view.refresh();
    const seen = front.view.snapshot;
    expect(seen.primary.url).toBe(urlOf(primary));
    expect(seen.nodes.map((n) => [n.url, n.role, n.error])).toEqual([[urlOf(primary), 'primary', null]]);
  });

  it('the node does not believe X-Forwarded-For from a peer it does not trust', async () => {
    // A client talking to the node directly cannot pick a fresh address for each guess.
    const statuses: number[] = [];
    for (let i = 0; i < FAILURES_PER_MINUTE + 1; i++)
      statuses.push(
        await writeFrom('127.0.0.4', primary.httpPort, 'Bearer wrong-token', `lock v=${i}i`, {
          'x-forwarded-for': `10.9.0.${i}`,
        }),
      );
    expect(statuses.at(-1)).toBe(429);
  });
});

/** `POST /write` of `line` from the local address `localAddress`; resolves the status. */
function writeFrom(
  localAddress: string,
  port: number,
  authorization: string,
  line: string,
  headers: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/write',
        localAddress,
        headers: { authorization, 'content-type': 'text/plain', ...headers },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(`${line}\n`);
  });
}
