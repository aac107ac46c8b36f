/**
 * Reads on a real replica (in this process) following a real primary through the filesystem store
 * (read-your-writes also on Ceph RGW): commit-token waits, their bound, bounded staleness, a slow
 * query beside apply, and writes refused with 421.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsStore, type ObjectStore, S3Store, withFaults } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { FOLLOWER_LIMITS, type ReplicaNode } from '../replica/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { startTestReplica } from './helpers/test-replica.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const running: (PrimaryNode | ReplicaNode)[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-replica-reads-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'replica-reads');
});
afterEach(async () => {
  // Replicas first: a primary's close waits for nothing of theirs, but a replica may be mid-GET.
  const nodes = running.splice(0).reverse();
  for (const node of nodes) await node.close();
});
afterAll(() => rm(base, { recursive: true, force: true }));

const fsStore = () => FsStore.open({ root: path.join(base, `store-${randomUUID()}`) });

async function primaryOn(store: ObjectStore, overrides: Parameters<typeof startTestPrimary>[2] = {}) {
  const node = await startTestPrimary(store, path.join(base, `primary-${randomUUID()}`), {
    windowMs: 20,
    headIntervalMs: 20,
    ...overrides,
  });
  running.push(node);
  return node;
}

async function replicaOn(store: ObjectStore, overrides: Parameters<typeof startTestReplica>[2] = {}) {
  const node = await startTestReplica(store, path.join(base, `replica-${randomUUID()}`), overrides);
  running.push(node);
  return node;
}

/** POST ILP to a node's /write; the commit token of a 204. */
async function write(port: number, body: string) {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  return {
    status: response.status,
    token: response.headers.get('x-walship-txn'),
    text: await response.text(),
  };
}

interface ExecAnswer {
  status: number;
  headers: Headers;
  body: { dataset?: unknown[][]; error?: string; query?: string; position?: number };
}

/** GET /exec on a node, with optional request headers and extra query parameters. */
async function exec(
  port: number,
  sql: string,
  options: { headers?: Record<string, string>; params?: string; signal?: AbortSignal } = {},
): Promise<ExecAnswer> {
  const url = `http://127.0.0.1:${port}/exec?query=${encodeURIComponent(sql)}${options.params ?? ''}`;
  const response = await fetch(url, {
    headers: options.headers ?? {},
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as ExecAnswer['body'],
  };
}

/**
 * `a=1@2,b=22@2` or `a=1,b=22` → Map{a→1n, b→22n}: the shapes of X-Walship-Txn (txn@epoch) and
 * X-Walship-Applied-Txn (txn).
 */
function parseToken(value: string): Map<string, bigint> {
  const token = new Map<string, bigint>();
  for (const part of value.split(',')) {
    const [key, txn] = part.replace(/@[1-9][0-9]*$/, '').split('=');
    expect(key, `token part ${JSON.stringify(part)}`).toMatch(/^[a-z0-9_%.-]+$/);
    expect(txn, `token part ${JSON.stringify(part)}`).toMatch(/^[1-9][0-9]*$/);
    token.set(key!, BigInt(txn!));
  }
  return token;
}

interface ReplicaStatus {
  polls: number;
  stalenessMs: number | null;
  store: { lastError: { message: string } | null };
  queries: { busy: number };
  tables: { name: string; key: string; appliedTxn: string; suspended: unknown }[];
}

async function replicaStatus(replica: ReplicaNode): Promise<ReplicaStatus> {
  const { status, body } = await getJson(replica.httpPort, '/status');
  expect(status).toBe(200);
  return body as ReplicaStatus;
}

async function appliedOnReplica(replica: ReplicaNode, key: string): Promise<bigint> {
  const table = (await replicaStatus(replica)).tables.find((t) => t.key === key);
  return table === undefined ? 0n : BigInt(table.appliedTxn);
}

const stores: [string, string | null, () => Promise<ObjectStore>, number][] = [
  ['fs', null, fsStore, 1_000],
  [
    's3 (Ceph RGW)',
    s3.skipReason,
    async () => new S3Store({ bucket, root: `replica-reads-${randomUUID()}`, ...s3.env! }),
    100,
  ],
];

describe.each(stores)('read-your-writes on %s', (_name, skipReason, openStore, rounds) => {
  it.skipIf(skipReason !== null)(
    `${rounds} rounds: a read with the write's commit token sees the write, every time`,
    async () => {
      const store = await openStore();
      const primary = await primaryOn(store);
      // The poll interval is far above the read's wait bound (5 s): a read can only succeed because
      // its commit-token wait makes the replica look for the txn at once, never thanks to a poll.
      const replica = await replicaOn(store, { pollIntervalMs: 60_000, readWaitMaxMs: 5_000 });
      const startedAtMs = performance.now();
      for (let round = 1; round <= rounds; round++) {
        const written = await write(primary.httpPort, `rw,round=r${round} id=${round}i,v=${round * 2}i\n`);
        expect(written.status, written.text).toBe(204);
        expect(written.token).toBe(`rw=${round}@1`);
        const read = await exec(replica.httpPort, `SELECT id, v, round FROM rw WHERE id = ${round}`, {
          headers: { 'X-Walship-Min-Txn': written.token! },
        });
        expect(read.status, `round ${round}: ${JSON.stringify(read.body)}`).toBe(200);
        expect(read.body.dataset, `round ${round}`).toEqual([[round, round * 2, `r${round}`]]);

        const applied = parseToken(read.headers.get('x-walship-applied-txn') ?? '');
        for (const [key, txn] of parseToken(written.token!)) {
          expect(applied.get(key), `round ${round}: applied ${key}`).toBeGreaterThanOrEqual(txn);
        }
        const staleness = read.headers.get('x-walship-staleness-ms');
        // Round 1 may answer before the new table was ever confirmed caught up: `unknown` then.
        expect(staleness, `round ${round}`).toMatch(round === 1 ? /^(\d+|unknown)$/ : /^\d+$/);
        if (staleness !== 'unknown') {
          expect(Number(staleness)).toBeLessThanOrEqual(performance.now() - startedAtMs);
        }
      }
      const count = await exec(replica.httpPort, 'SELECT count(*) AS n, sum(id) AS s FROM rw');
      expect(count.body.dataset).toEqual([[rounds, (rounds * (rounds + 1)) / 2]]);
    },
    240_000,
  );
});

describe('replica reads (fs)', () => {
  it('a token for a txn that never comes is refused with 504 after the wait bound', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    const replica = await replicaOn(store, { readWaitMaxMs: 300 });
    const written = await write(primary.httpPort, 'late v=1i\n');
    expect(written.token).toBe('late=1@1');
    const ok = await exec(replica.httpPort, 'SELECT v FROM late', {
      headers: { 'X-Walship-Min-Txn': 'late=1' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.dataset).toEqual([[1]]);

    const sql = 'SELECT v FROM late';
    for (const token of ['late=1000', 'late=1,never=5']) {
      const refused = await exec(replica.httpPort, sql, { headers: { 'X-Walship-Min-Txn': token } });
      expect(refused.status, token).toBe(504);
      expect(refused.headers.get('content-type')).toMatch(/^application\/json/);
      // QuestDB's error body: {query, error, position}.
      expect(Object.keys(refused.body).sort()).toEqual(['error', 'position', 'query']);
      expect(refused.body.query).toBe(sql);
      expect(refused.body.position).toBe(0);
      const [table, txn] = token === 'late=1000' ? ['late', 1000] : ['never', 5];
      expect(refused.body.error).toMatch(new RegExp(`^waited \\d+ ms for ${table} txn ${txn} `));
      expect(refused.body.error).toMatch(/retry, or read from the primary/);
    }
    // The same token as a query parameter, and a read asking for no wait at all.
    const asParam = await exec(replica.httpPort, sql, { params: '&min_txn=late%3D2&wait_ms=0' });
    expect(asParam.status).toBe(504);
    expect(asParam.body.error).toMatch(/^waited \d+ ms for late txn 2 but this replica has applied txn 1/);
  });

  it('max_staleness_ms=0 is met by an idle, reachable replica: it confirms after the read arrived', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    const replica = await replicaOn(store);
    const written = await write(primary.httpPort, 'idle v=1i\n');
    await expect.poll(() => appliedOnReplica(replica, 'idle'), { timeout: 10_000 }).toBe(1n);
    // Nothing is written any more. A bound of 0 asks for data at least as fresh as the read: the
    // replica cannot know it from memory, but its check asks the store (after the read arrived)
    // and finds nothing newer — so it can vouch for the read, and must serve it.
    for (const bound of [600_000, 0]) {
      const read = await exec(replica.httpPort, 'SELECT v FROM idle', {
        params: `&max_staleness_ms=${bound}`,
      });
      expect(read.status, `max_staleness_ms=${bound}: ${JSON.stringify(read.body)}`).toBe(200);
      expect(read.body.dataset).toEqual([[1]]);
      // What the answer reflects names txns only (`idle=1`); the write's token also its epoch (`idle=1@1`).
      expect(`${read.headers.get('x-walship-applied-txn')}@1`).toBe(written.token);
    }
  });

  it('max_staleness_ms: a bound the replica cannot vouch for without the store is refused with 503', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    const replicaStore = withFaults(store, []);
    const replica = await replicaOn(replicaStore, { readWaitMaxMs: 1_000 });
    const written = await write(primary.httpPort, 'idle v=1i\n');
    await expect.poll(() => appliedOnReplica(replica, 'idle'), { timeout: 10_000 }).toBe(1n);
    const sql = 'SELECT v FROM idle';
    const served = await exec(replica.httpPort, sql, { params: '&max_staleness_ms=600000' });
    expect(served.status).toBe(200);
    expect(Number(served.headers.get('x-walship-staleness-ms'))).toBeLessThanOrEqual(600_000);
    expect(`${served.headers.get('x-walship-applied-txn')}@1`).toBe(written.token);

    // The store goes away: the follower notices, and staleness grows from the last confirmation.
    // Each failing request takes a timer tick (latency), as a real unreachable store would.
    replicaStore.setRules([
      { fault: { type: 'latency', ms: 2 } },
      { fault: { type: 'error', message: 'injected: store unreachable' } },
    ]);
    await expect
      .poll(async () => (await replicaStatus(replica)).store.lastError?.message ?? '')
      .toMatch(/unreachable/);
    const outageStatus = await replicaStatus(replica);
    const outageStartedAtMs = performance.now();
    const stalenessMs = outageStatus.stalenessMs;
    expect(stalenessMs).not.toBeNull();
    // A bound below what staleness already is cannot be met without the store.
    const tight = Math.max(0, stalenessMs! - 1);
    const refused = await exec(replica.httpPort, sql, { params: `&max_staleness_ms=${tight}` });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(Object.keys(refused.body).sort()).toEqual(['error', 'position', 'query']);
    expect(refused.body.query).toBe(sql);
    expect(refused.body.error).toMatch(
      new RegExp(
        `last confirmed it was caught up with the object store \\d+ ms before this read arrived \\(max_staleness_ms=${tight}\\)`,
      ),
    );
    expect(refused.body.error).toMatch(/checking again (failed|did not finish|could not confirm it)/);
    // The same bound as a header.
    const byHeader = await exec(replica.httpPort, sql, {
      headers: { 'X-Walship-Max-Staleness-Ms': String(tight) },
    });
    expect(byHeader.status).toBe(503);
    // A generous bound, or none, is still served from what the replica holds.
    const generous = await exec(replica.httpPort, sql, { params: '&max_staleness_ms=600000' });
    expect(generous.status).toBe(200);
    expect(generous.body.dataset).toEqual([[1]]);
    expect((await exec(replica.httpPort, sql)).status).toBe(200);
    // While the store fails, polls back off (each at least storeBackoffMs.base after the last; a
    // read's freshness check may add one immediate attempt): the reads above asked for freshness,
    // which must not turn the outage into a storm of requests.
    const pollsDuringOutage = (await replicaStatus(replica)).polls - outageStatus.polls;
    const outageMs = performance.now() - outageStartedAtMs;
    expect
      .soft(pollsDuringOutage, `polls in ${Math.round(outageMs)} ms of outage`)
      .toBeLessThanOrEqual(Math.ceil(outageMs / FOLLOWER_LIMITS.storeBackoffMs.base) + 4);

    // The store comes back: a bound below the outage's staleness is met again (the read's check asks the store).
    const before = (await replicaStatus(replica)).stalenessMs!;
    replicaStore.setRules([]);
    const bound = Math.max(1, before - 1);
    await expect
      .poll(
        async () => (await exec(replica.httpPort, sql, { params: `&max_staleness_ms=${bound}` })).status,
        {
          timeout: 15_000,
        },
      )
      .toBe(200);
  });

  it('a slow query on the replica does not delay apply', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    const replica = await replicaOn(store, { queryWorkers: 1, queryTimeoutMs: 600_000 });
    const first = await write(primary.httpPort, 'ticks n=0i\n');
    expect(first.token).toBe('ticks=1@1');
    await expect.poll(() => appliedOnReplica(replica, 'ticks'), { timeout: 10_000 }).toBe(1n);

    // Counts to 10^10 in one SQLite statement: far longer than this test; it is aborted at the end.
    const slowSql =
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) SELECT count(*) FROM c';
    const abort = new AbortController();
    let slowSettled = false;
    const slow = exec(replica.httpPort, slowSql, { signal: abort.signal }).finally(() => {
      slowSettled = true;
    });
    slow.catch(() => {});
    // The query host has it: the one worker is busy.
    await expect.poll(async () => (await replicaStatus(replica)).queries.busy).toBe(1);

    let token = '';
    for (let n = 1; n <= 5; n++) {
      const written = await write(primary.httpPort, `ticks n=${n}i\n`);
      expect(written.status).toBe(204);
      token = written.token!;
    }
    expect(token).toBe('ticks=6@1');
    await expect.poll(() => appliedOnReplica(replica, 'ticks'), { timeout: 20_000 }).toBe(6n);
    expect(slowSettled, 'the slow query was still running when the txns were applied').toBe(false);
    expect((await replicaStatus(replica)).queries.busy).toBe(1);

    abort.abort();
    await expect(slow).rejects.toThrow();
    // The host is replaced: the next read runs and sees every applied txn.
    const after = await exec(replica.httpPort, 'SELECT count(*) AS c, sum(n) AS s FROM ticks', {
      headers: { 'X-Walship-Min-Txn': token },
    });
    expect(after.status).toBe(200);
    expect(after.body.dataset).toEqual([[6, 15]]);
  });

  it('refuses writes with 421 and says so in /settings; the official client is told the same', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    const replica = await replicaOn(store);
    for (const writePath of ['/write', '/api/v2/write']) {
      const response = await fetch(`http://127.0.0.1:${replica.httpPort}${writePath}`, {
        method: 'POST',
        body: 'w v=1i\n',
      });
      expect(response.status, writePath).toBe(421);
      const body = (await response.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ code: 'not accepting writes' });
      expect(body.message).toMatch(/not accepting writes/);
    }
    const settings = await getJson(replica.httpPort, '/settings');
    expect(settings.status).toBe(200);
    expect((settings.body as { config: Record<string, unknown> }).config['accepting.writes']).toEqual([]);
    expect(
      ((await getJson(primary.httpPort, '/settings')).body as { config: Record<string, unknown> }).config[
        'accepting.writes'
      ],
    ).toEqual(['http', 'tcp']);

    // @questdb/nodejs-client 4.2 takes one `addr` (a second one replaces the first), so it cannot be
    // given the replica and the primary together: it is refused by the replica, and writes to the primary.
    const toReplica = await Sender.fromConfig(
      `http::addr=127.0.0.1:${replica.httpPort};auto_flush=off;protocol_version=1`,
    );
    try {
      await toReplica.table('w').intColumn('v', 1).atNow();
      await expect(toReplica.flush()).rejects.toThrow(/421/);
    } finally {
      await toReplica.close().catch(() => {});
    }
    const toPrimary = await Sender.fromConfig(`http::addr=127.0.0.1:${primary.httpPort};auto_flush=off;`);
    await toPrimary.table('w').intColumn('v', 2).atNow();
    await toPrimary.flush();
    await toPrimary.close();
    // The write reaches the replica through the store; none of the refused one ever does.
    await expect.poll(() => appliedOnReplica(replica, 'w'), { timeout: 10_000 }).toBe(1n);
    expect((await exec(replica.httpPort, 'SELECT v FROM w')).body.dataset).toEqual([[2]]);
    expect((await exec(primary.httpPort, 'SELECT v FROM w')).body.dataset).toEqual([[2]]);
  });
});
