/**
 * A real replica (in this process) following a real primary through a store whose objects go bad:
 * a segment corrupted (a flipped byte, a truncation) or missing — on the filesystem store and on Ceph
 * RGW — and a store that lies on reads or fails for a while. The replica never applies wrong data,
 * suspends only the damaged table with a message that says how to resume, keeps the other tables
 * following, and converges once the object is repaired and the table resumed.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Random, seededRandom, systemClock } from '../core/index.js';
import { CLUSTER_KEY, segmentKey } from '../layout/index.js';
import {
  type FaultRule,
  FsStore,
  listAll,
  type ObjectStore,
  S3Store,
  withFaults,
} from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { ReplicaNode } from '../replica/index.js';
import { asTableKey, tableKey } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { postAdmin, startTestReplica, testReplicaSettings } from './helpers/test-replica.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const running: (PrimaryNode | ReplicaNode)[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-replica-faults-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'replica-faults');
});
afterEach(async () => {
  for (const node of running.splice(0).reverse()) await node.close();
});
afterAll(() => rm(base, { recursive: true, force: true }));

const fsStore = () => FsStore.open({ root: path.join(base, `store-${randomUUID()}`) });

/**
 * A primary whose 204 comes only once the request's segments are in the store (durable acks), so
 * sequential requests make one segment per table each: request k is txn k, at `wal/<k>.seg`.
 */
async function primaryOn(store: ObjectStore, overrides: Parameters<typeof startTestPrimary>[2] = {}) {
  const node = await startTestPrimary(store, path.join(base, `primary-${randomUUID()}`), {
    ackMode: 'durable',
    windowMs: 20,
    rolloverSizeBytes: 4 * 1024,
    headIntervalMs: 20,
    ...overrides,
  });
  running.push(node);
  return node;
}

async function replicaOn(store: ObjectStore, dataDir = path.join(base, `replica-${randomUUID()}`)) {
  const node = await startTestReplica(store, dataDir);
  running.push(node);
  return node;
}

const ROWS_PER_BATCH = 10;

/** Request `k`: ten rows of table A (ids k*100 … k*100+9, symbol batch=b<k>), one row each of B and C. */
function batch(k: number): string {
  let lines = '';
  for (let j = 0; j < ROWS_PER_BATCH; j++)
    lines += `A,batch=b${k} id=${k * 100 + j}i,v=${(k * 100 + j) / 4}\n`;
  return `${lines}B n=${k}i\nC n=${k}i,s="c${k}"\n`;
}

async function write(primary: PrimaryNode, k: number): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
    method: 'POST',
    body: batch(k),
  });
  expect(response.status, await response.text()).toBe(204);
  expect(response.headers.get('x-walship-txn')).toBe(`a=${k}@1,b=${k}@1,c=${k}@1`);
}

async function query(port: number, sql: string): Promise<unknown[][]> {
  const { status, body } = await getJson(port, `/exec?query=${encodeURIComponent(sql)}`);
  expect(status, JSON.stringify(body)).toBe(200);
  return (body as { dataset: unknown[][] }).dataset;
}

const CONTENT_SQL: Record<string, string> = {
  a: 'SELECT timestamp, batch, id, v FROM A ORDER BY id',
  b: 'SELECT timestamp, n FROM B ORDER BY n',
  c: 'SELECT timestamp, n, s FROM C ORDER BY n',
};

interface TableStatus {
  name: string;
  key: string;
  appliedTxn: string;
  suspended: { code: string; message: string; key: string | null } | null;
}

async function tableStatus(replica: ReplicaNode, key: string): Promise<TableStatus | undefined> {
  const { body } = await getJson(replica.httpPort, '/status');
  return (body as { tables: TableStatus[] }).tables.find((t) => t.key === key);
}

async function applied(replica: ReplicaNode, key: string): Promise<bigint> {
  return BigInt((await tableStatus(replica, key))?.appliedTxn ?? '0');
}

/** Waits until the replica applied txn `txn` of every table in `keys`, then compares their content. */
async function expectConverged(primary: PrimaryNode, replica: ReplicaNode, keys: string[], txn: number) {
  for (const key of keys) {
    await expect.poll(() => applied(replica, key), { timeout: 20_000 }).toBe(BigInt(txn));
    expect((await tableStatus(replica, key))?.suspended).toBeNull();
    expect(await query(replica.httpPort, CONTENT_SQL[key]!), `table ${key}`).toEqual(
      await query(primary.httpPort, CONTENT_SQL[key]!),
    );
  }
}

/** The segment keys of a table in the store, in order. */
async function segmentKeys(store: ObjectStore, key: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of listAll(store, `tables/${key}/wal/`)) keys.push(info.key);
  return keys;
}

async function bytesOf(store: ObjectStore, key: string): Promise<Uint8Array> {
  const got = await store.get(key);
  if (got === null || got.status !== 'ok') throw new Error(`${key} is not in the store`);
  return got.body;
}

type Damage = {
  name: string;
  code: string;
  apply: (store: ObjectStore, key: string, good: Uint8Array) => Promise<void>;
};

const damages: Damage[] = [
  {
    name: 'one byte flipped in the middle',
    code: 'CORRUPT_SEGMENT',
    apply: async (store, key, good) => {
      const bad = Uint8Array.from(good);
      const middle = Math.floor(bad.length / 2);
      bad[middle] = bad[middle]! ^ 0x20;
      await store.put(key, bad);
    },
  },
  {
    name: 'truncated',
    code: 'CORRUPT_SEGMENT',
    apply: async (store, key, good) => {
      await store.put(key, good.slice(0, Math.floor((good.length * 2) / 3)));
    },
  },
  {
    name: 'missing (later segments exist)',
    code: 'SEGMENT_MISSING',
    apply: async (store, key) => {
      await store.delete(key);
    },
  },
];

const stores: [string, string | null, () => Promise<ObjectStore>][] = [
  ['fs', null, fsStore],
  [
    's3 (Ceph RGW)',
    s3.skipReason,
    async () => new S3Store({ bucket, root: `replica-faults-${randomUUID()}`, ...s3.env! }),
  ],
];

describe.each(stores)('a damaged segment on %s', (_name, skipReason, openStore) => {
  it.skipIf(skipReason !== null).each(damages)(
    '$name: table A is suspended before the bad txn, B and C follow, repair + resume converges',
    async ({ code, apply }) => {
      const store = await openStore();
      const primary = await primaryOn(store);
      for (let k = 1; k <= 6; k++) await write(primary, k);
      // One segment per request: txn k of A sits at wal/<k>.seg.
      expect(await segmentKeys(store, 'a')).toEqual(
        [1n, 2n, 3n, 4n, 5n, 6n].map((t) => segmentKey(tableKey('a'), t)),
      );

      // Damage txn 4 of A before any replica has seen it; keep the good bytes for the repair.
      const badKey = segmentKey(tableKey('a'), 4n);
      const good = await bytesOf(store, badKey);
      await apply(store, badKey, good);

      const replica = await replicaOn(store);
      await expect
        .poll(async () => (await tableStatus(replica, 'a'))?.suspended?.code, { timeout: 20_000 })
        .toBe(code);
      const suspended = (await tableStatus(replica, 'a'))!;
      expect(suspended.appliedTxn).toBe('3');
      expect(suspended.suspended!.key).toBe(badKey);
      expect(suspended.suspended!.message).toContain(badKey);
      expect(suspended.suspended!.message).toMatch(/walship admin resume --table A/);
      expect(suspended.suspended!.message).toMatch(/POST \/admin\/resume\?table=A/);
      // Exactly the txns before the bad segment: batches 1..3, as the primary holds them.
      const beforeBad = 'SELECT timestamp, batch, id, v FROM A WHERE id < 400 ORDER BY id';
      const expectedBefore = await query(primary.httpPort, beforeBad);
      expect(expectedBefore).toHaveLength(3 * ROWS_PER_BATCH);
      expect(await query(replica.httpPort, CONTENT_SQL.a!)).toEqual(expectedBefore);

      // Meanwhile every table keeps receiving writes: B and C follow, A stays where it stopped.
      for (let k = 7; k <= 9; k++) await write(primary, k);
      await expectConverged(primary, replica, ['b', 'c'], 9);
      const still = (await tableStatus(replica, 'a'))!;
      expect(still.appliedTxn).toBe('3');
      expect(still.suspended?.code).toBe(code);
      expect(await query(replica.httpPort, CONTENT_SQL.a!)).toEqual(expectedBefore);

      // Resuming before the repair only suspends it again, at the same place.
      expect(await postAdmin(replica.httpPort, 'resume?table=A')).toMatchObject({
        status: 200,
        body: { resumed: true },
      });
      await expect
        .poll(async () => (await tableStatus(replica, 'a'))?.suspended?.code, { timeout: 20_000 })
        .toBe(code);
      expect((await tableStatus(replica, 'a'))!.appliedTxn).toBe('3');

      // Repair the object and resume: A converges to the primary's content.
      await store.put(badKey, good);
      const resumed = await postAdmin(replica.httpPort, 'resume?table=A');
      expect(resumed).toMatchObject({ status: 200, body: { resumed: true } });
      await expectConverged(primary, replica, ['a', 'b', 'c'], 9);
      expect(await query(replica.httpPort, 'SELECT count(*) FROM A')).toEqual([[9 * ROWS_PER_BATCH]]);
      // A table that is not suspended has nothing to resume.
      expect(await postAdmin(replica.httpPort, 'resume?table=A')).toMatchObject({
        status: 200,
        body: { resumed: false },
      });
    },
  );
});

/** A pino logger that keeps the messages of warnings and errors in `lines`. */
function capturingLog(lines: string[]) {
  return pino(
    { level: 'warn' },
    {
      write(line: string) {
        lines.push((JSON.parse(line) as { msg: string }).msg);
      },
    },
  );
}

/** Random numbers from a script, then from `then`: steers which call a fault hits and where. */
function scriptedRandom(script: number[], then: Random): Random {
  return { next: () => script.shift() ?? then.next() };
}

describe('a store that lies or fails (fs)', () => {
  it('corrupt reads are fetched again and transient errors back off: the replica converges, never applying a bad byte', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    for (let k = 1; k <= 5; k++) await write(primary, k);

    // Every segment's first GET returns a body with one bit flipped; a LIST, a head.json GET and
    // segment GETs of B fail or time out; some requests are slow.
    const corruptFirstGets = (txns: bigint[]): FaultRule[] =>
      ['a', 'b', 'c'].flatMap((key) =>
        txns.map((txn) => ({
          fault: { type: 'corrupt-read' as const },
          operations: ['get' as const],
          keyPrefix: segmentKey(asTableKey(key), txn),
          times: 1,
        })),
      );
    const faulty = withFaults(
      store,
      [
        ...corruptFirstGets([1n, 2n, 3n, 4n, 5n]),
        { fault: { type: 'error' }, operations: ['get'], keyPrefix: 'head.json', times: 1 },
        { fault: { type: 'error' }, operations: ['list'], times: 1 },
        { fault: { type: 'timeout', ms: 30 }, operations: ['get'], keyPrefix: 'tables/b/', times: 1 },
        { fault: { type: 'latency', ms: 5 }, probability: 0.2 },
      ],
      { random: seededRandom(11) },
    );
    const warnings: string[] = [];
    // No snapshot bootstrap: every request of this replica is the follower's, where faults must heal.
    const replica = await ReplicaNode.start(
      testReplicaSettings(faulty, path.join(base, `replica-${randomUUID()}`), {
        bootstrapFromSnapshot: false,
      }),
      { clock: systemClock, log: capturingLog(warnings) },
    );
    running.push(replica);
    await expectConverged(primary, replica, ['a', 'b', 'c'], 5);
    expect(faulty.injected.error).toBe(2);
    expect(faulty.injected.timeout).toBe(1);
    expect(warnings).toContain('segment failed verification; fetching it again');
    expect(warnings).toContain('poll failed; will retry');

    // More writes while the replica follows: their segments' first GETs lie too (a GET that probes
    // a segment before it exists uses up its rule harmlessly), and segment GETs of C fail twice.
    faulty.setRules([
      ...corruptFirstGets([6n, 7n, 8n, 9n, 10n, 11n, 12n]),
      { fault: { type: 'error' }, operations: ['get'], keyPrefix: 'tables/c/', times: 2 },
      { fault: { type: 'latency', ms: 5 }, probability: 0.2 },
    ]);
    for (let k = 6; k <= 12; k++) await write(primary, k);
    await expectConverged(primary, replica, ['a', 'b', 'c'], 12);
    expect(faulty.injected.error).toBe(4);
    // No table was ever suspended: a corrupt read heals on the second fetch.
    expect(warnings.filter((m) => /suspended/.test(m))).toEqual([]);
  });

  it('a corrupt read of cluster.json does not tie the replica to a cluster that does not exist', async () => {
    const store = await fsStore();
    const primary = await primaryOn(store);
    await write(primary, 1);
    const cluster = new TextDecoder().decode(await bytesOf(store, CLUSTER_KEY));
    const { clusterId } = JSON.parse(cluster) as { clusterId: string };
    // Flip the lowest bit of the id's last character: the JSON still parses, and names another cluster.
    const at = cluster.indexOf(clusterId) + clusterId.length - 1;
    const script = [0, (at + 0.5) / cluster.length, 0];
    const faulty = withFaults(
      store,
      [{ fault: { type: 'corrupt-read' }, operations: ['get'], keyPrefix: CLUSTER_KEY, times: 1 }],
      { random: scriptedRandom(script, { next: () => 0.5 }) },
    );
    const dataDir = path.join(base, `replica-${randomUUID()}`);
    const first = await ReplicaNode.start(
      testReplicaSettings(faulty, dataDir, { bootstrapFromSnapshot: false }),
      { clock: systemClock, log: capturingLog([]) },
    );
    running.push(first);
    await expectConverged(primary, first, ['a', 'b', 'c'], 1);
    expect(faulty.injected['corrupt-read']).toBe(1);
    const status = (await getJson(first.httpPort, '/status')).body as { clusterId: string | null };
    expect.soft(status.clusterId, 'the cluster id the replica recorded').toBe(clusterId);
    await first.close();

    // After a restart (healthy store) it still follows the one cluster there is.
    const second = await replicaOn(store, dataDir);
    await write(primary, 2);
    const statusOf = async () =>
      (await getJson(second.httpPort, '/status')).body as { following: unknown; polls: number };
    // Two polls started: the first one, which checks the cluster, has finished (or stopped the follower).
    await expect
      .poll(async () => {
        const now = await statusOf();
        return now.following !== true || now.polls >= 2;
      })
      .toBe(true);
    // (JSON, so a failure shows why the follower stopped.)
    expect(JSON.stringify((await statusOf()).following)).toBe('true');
    await expectConverged(primary, second, ['a', 'b', 'c'], 2);
  });
});
