/**
 * Reads through `walship router` (issue 17 items 4 and 5), over HTTP and over its PostgreSQL door,
 * in front of a primary that answers writes at its local commit (ack mode `local`, the default) and
 * a replica that follows the store, so the replica is behind right after each write:
 * - read-your-writes by default: a read sent to the router after a write it forwarded still sees
 *   that write, 1 000 times out of 1 000, and says what it waited for; a read that asks for
 *   eventual consistency does not wait;
 * - GreptimeDB's `SET READ_PREFERENCE` per PostgreSQL session, a NOTICE naming the node that
 *   served each read, `information_schema.region_peers`, and a clear error when no follower can
 *   answer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore } from '../objectstore/index.js';
import type { RunningRouter } from '../router/index.js';
import { startTestNode } from './helpers/test-node.js';
import { TEST_ADMIN_TOKEN } from './helpers/test-replica.js';
import { startTestRouter } from './helpers/test-router.js';

let base = '';
let store: FsStore;
let primary: WalshipNode;
let replica: WalshipNode;
let router: RunningRouter;
/** A router that knows only the primary: no follower can answer through it. */
let primaryOnly: RunningRouter;

const pgOptions = {
  host: '127.0.0.1',
  port: 0,
  credentials: [{ user: 'admin', password: 'quest' }],
  maxMessageBytes: 1 << 20,
  maxConnections: 16,
};

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-router-ryw-'));
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
  router = await startTestRouter({ nodes: urls, store, pg: pgOptions });
  primaryOnly = await startTestRouter({ nodes: [urls[0]!], store, pg: pgOptions });
}, 60_000);

afterAll(async () => {
  await primaryOnly?.close();
  await router?.close();
  await replica?.close();
  await primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

const routerUrl = () => `http://127.0.0.1:${router.port}`;

async function maxId(headers: Record<string, string>): Promise<{ id: number; response: Response }> {
  const query = encodeURIComponent('SELECT max(id) FROM ryw');
  const response = await fetch(`${routerUrl()}/exec?query=${query}`, {
    headers: { 'x-walship-read-preference': 'replica', ...headers },
  });
  const body = (await response.json()) as { dataset?: number[][] };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return { id: body.dataset?.[0]?.[0] ?? 0, response };
}

describe('read-your-writes through the router', () => {
  it('a read after a write through the router sees it, 1 000 times out of 1 000, from the replica', async () => {
    let seen = 0;
    for (let i = 1; i <= 1_000; i++) {
      const write = await fetch(`${routerUrl()}/write`, { method: 'POST', body: `ryw id=${i}i\n` });
      expect(write.status).toBe(204);
      const { id, response } = await maxId({});
      expect(response.headers.get('x-walship-served-by')).toBe('r (replica)');
      expect(response.headers.get('x-walship-read-your-writes')).toMatch(/^ryw=\d+@\d+$/);
      if (id === i) seen++;
    }
    expect(seen).toBe(1_000);
  }, 120_000);

  it('a read that asks for eventual consistency, or names its own token, does not get the router’s', async () => {
    const write = await fetch(`${routerUrl()}/write`, { method: 'POST', body: 'ryw id=5000i\n' });
    expect(write.status).toBe(204);
    const eventual = await maxId({ 'x-walship-consistency': 'eventual' });
    expect(eventual.response.headers.get('x-walship-read-your-writes')).toBeNull();
    const own = await maxId({ 'x-walship-min-txn': write.headers.get('x-walship-txn')! });
    expect(own.response.headers.get('x-walship-read-your-writes')).toBeNull();
    expect(own.id).toBe(5000);
  });
});

/** Runs `statements` on one connection to `port`; the last result and the NOTICEs seen. */
async function session(port: number, statements: string[]): Promise<{ rows: unknown[]; notices: string[] }> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'admin', password: 'quest' });
  const notices: string[] = [];
  client.on('notice', (notice) => notices.push(notice.message ?? ''));
  await client.connect();
  try {
    let rows: unknown[] = [];
    for (const statement of statements) rows = (await client.query(statement)).rows;
    return { rows, notices };
  } finally {
    await client.end();
  }
}

describe("the router's PostgreSQL door", () => {
  it('SET READ_PREFERENCE sends reads to a follower or the leader, says which, and reads the writes it forwarded', async () => {
    for (let i = 1; i <= 20; i++) {
      const write = await fetch(`http://127.0.0.1:${router.port}/write`, {
        method: 'POST',
        body: `rpg id=${i}i\n`,
      });
      expect(write.status).toBe(204);
      const follower = await session(router.pgPort!, [
        "SET READ_PREFERENCE = 'follower'",
        'SELECT max(id) AS m FROM rpg',
      ]);
      expect(follower.rows).toEqual([{ m: String(i) }]);
      expect(follower.notices).toEqual([
        expect.stringMatching(/^served by r \(replica\), staleness \d+ ms$/),
      ]);
    }
    const leader = await session(router.pgPort!, [
      "SET READ_PREFERENCE = 'leader'",
      'SELECT count(*) AS n FROM rpg',
    ]);
    expect(leader.rows).toEqual([{ n: '20' }]);
    expect(leader.notices).toEqual(['served by p (primary), staleness 0 ms']);
    // EXPLAIN ANALYZE says where a read ran; over HTTP the same GreptimeDB words pick the node.
    const explained = await session(router.pgPort!, [
      "SET READ_PREFERENCE = 'follower'",
      'EXPLAIN ANALYZE SELECT count(*) FROM rpg',
    ]);
    expect(explained.rows[0]).toEqual({
      'QUERY PLAN': expect.stringMatching(/^served by r \(replica\), staleness \d+ ms$/),
    });
    expect(explained.rows[1]).toEqual({ 'QUERY PLAN': 'rows: 1' });
    const overHttp = await fetch(
      `http://127.0.0.1:${router.port}/exec?query=${encodeURIComponent('SELECT 1')}`,
      {
        headers: { 'x-walship-read-preference': 'follower' },
      },
    );
    expect(overHttp.headers.get('x-walship-served-by')).toBe('r (replica)');
    // Prepared statements with parameters take the same path.
    const client = new pg.Client({
      host: '127.0.0.1',
      port: router.pgPort!,
      user: 'admin',
      password: 'quest',
    });
    await client.connect();
    try {
      await client.query("SET READ_PREFERENCE = 'follower_preferred'");
      const result = await client.query({
        name: 'ids',
        text: 'SELECT id FROM rpg WHERE id > $1 ORDER BY id',
        values: [18],
      });
      expect(result.rows).toEqual([{ id: '19' }, { id: '20' }]);
    } finally {
      await client.end();
    }
  });

  it("information_schema.region_peers lists who holds each table, leader or follower (GreptimeDB's view)", async () => {
    const sql =
      "SELECT table_name, peer_id, is_leader, status FROM information_schema.region_peers WHERE table_name = 'rpg' ORDER BY peer_id";
    await expect
      .poll(async () => (await session(router.pgPort!, [sql])).rows, { timeout: 10_000, interval: 200 })
      .toEqual([
        { table_name: 'rpg', peer_id: 'p', is_leader: 'Yes', status: 'ALIVE' },
        { table_name: 'rpg', peer_id: 'r', is_leader: 'No', status: 'ALIVE' },
      ]);
    const counted = await session(router.pgPort!, [
      "SELECT count(*) AS n FROM information_schema.region_peers WHERE is_leader = 'No'",
    ]);
    expect(counted.rows).toEqual([{ n: expect.any(String) }]);
    expect(counted.notices).toEqual(['served by the router (its cluster view)']);
  });

  it('follower with no follower fails with a clear error; an unknown preference is refused', async () => {
    await expect(
      session(primaryOnly.pgPort!, ["SET READ_PREFERENCE = 'follower'", 'SELECT 1']),
    ).rejects.toMatchObject({
      code: '57P03',
      message: expect.stringMatching(/NO_REPLICA: no replica could answer this read/),
    });
    await expect(
      session(router.pgPort!, ["SET READ_PREFERENCE = 'nearest'", 'SELECT 1']),
    ).rejects.toMatchObject({
      code: '22023',
      message: expect.stringMatching(/READ_PREFERENCE must be leader, follower or follower_preferred/),
    });
  });

  it('ADMIN REMOVE_TABLE_FOLLOWER / ADD_TABLE_FOLLOWER drop and add a table on a named replica, with the admin token', async () => {
    await expect(session(router.pgPort!, ["ADMIN REMOVE_TABLE_FOLLOWER('rpg', 'r')"])).rejects.toMatchObject({
      code: '42501',
    });
    const admin = `SET walship.admin_token = '${TEST_ADMIN_TOKEN}'`;
    const removed = await session(router.pgPort!, [admin, "ADMIN REMOVE_TABLE_FOLLOWER('rpg', 'r')"]);
    expect(removed.rows).toEqual([
      { node: 'r', action: 'drop', status: '200', answer: expect.stringContaining('"dropped":["rpg"]') },
    ]);
    // r no longer serves rpg: a follower read of it has nowhere to go once the router sees that.
    await expect
      .poll(
        () =>
          session(router.pgPort!, ["SET READ_PREFERENCE = 'follower'", 'SELECT count(*) FROM rpg']).then(
            () => 'answered',
            (error: { code?: string }) => error.code,
          ),
        { timeout: 10_000, interval: 200 },
      )
      .toBe('57P03');
    const added = await session(router.pgPort!, [admin, "ADMIN ADD_TABLE_FOLLOWER('rpg', 'r,p')"]);
    expect(added.rows).toEqual([
      { node: 'r', action: 'add', status: '200', answer: expect.stringContaining('"table":"rpg"') },
      { node: 'p', action: 'add', status: null, answer: 'is a primary, not a replica' },
    ]);
    // r follows rpg again from txn 1 and catches up (it once crawled at a segment a second: the
    // read waiters still remembered the dropped copy's txns).
    await expect
      .poll(
        async () =>
          (
            await session(router.pgPort!, [
              "SET READ_PREFERENCE = 'follower'",
              'SELECT count(*) AS n FROM rpg',
            ])
          ).rows,
        { timeout: 10_000, interval: 100 },
      )
      .toEqual([{ n: '20' }]);
  });
});
