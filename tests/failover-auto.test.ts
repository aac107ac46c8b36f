/**
 * Automatic failover by lease (RFC-0002 W4, "Automatic failover"), every node a real `walship`
 * child process with `replication.failover.auto=true` and a 1 s lease timeout, on the filesystem
 * store and on Ceph RGW:
 *
 * 1. The primary is SIGKILLed: exactly one of two candidate replicas takes the next epoch (one
 *    epoch record more in the store, never two), accepts writes, and the other follows it.
 * 2. The primary is paused with SIGSTOP until a candidate replaced it, then resumed and written to at
 *    once: it is fenced (by its lease renewal or its next upload), turns into a replica on the same
 *    port, and whatever it acknowledged after SIGCONT is in its divergence file and on no node.
 *
 * How fast a candidate moves is measured in bench/, not here: the waits below are generous
 * deadlines, never performance checks.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EPOCHS_PREFIX } from '../layout/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { type StoreUnderTest, storesUnderTest } from './helpers/store-under-test.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const TOKEN = 'failover-auto-test-token';
/** Deadline for a candidate to replace a dead or paused primary (a wait, not a performance bound). */
const FAILOVER_WAIT_MS = 20_000;
/** Deadline for other waits (a replica catching up, a fenced node changing role). */
const WAIT_MS = 20_000;
const BASE_NS = 1_700_000_000_000_000_000n;
const AUTO = ['--replication.failover.auto=true', '--replication.failover.lease.timeout=1s'];

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const processes: WalshipProcess[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-failover-auto-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'failover-auto');
});
afterEach(async () => {
  for (const child of processes) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  await Promise.all(processes.splice(0).map((child) => child.exited));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

const STORES = storesUnderTest({
  s3,
  baseDir: () => base,
  bucket: () => bucket,
  rootPrefix: 'failover-auto',
});

async function openStore(under: StoreUnderTest): Promise<ObjectStore> {
  const store = await under.open();
  stores.push(store);
  return store;
}

/** `walship primary|replica` with automatic failover on, as a child process; resolves with its HTTP port. */
async function spawnNode(role: 'primary' | 'replica', under: StoreUnderTest, name: string) {
  const dir = path.join(base, `${name}-${randomUUID()}`);
  const child = spawnWalship([
    role,
    `--replication.object.store=${under.connectionString}`,
    `--node.data.dir=${dir}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    '--replication.primary.throttle.window.duration=20ms',
    '--replication.replica.poll.interval=20ms',
    `--admin.token=${TOKEN}`,
    '--log.level=warn',
    ...AUTO,
  ]);
  processes.push(child);
  const match = await child.waitFor(new RegExp(`walship ${role} \\S+ listening: http (\\d+)`), 60_000);
  return { child, port: Number(match[1]), dir };
}

// --- HTTP ---------------------------------------------------------------------------------------

function ilp(table: string, ids: number[], src: string): string {
  return ids
    .map((id) => `${table},src=${src} id=${id}i,v=${id}.5 ${BASE_NS + BigInt(id) * 1000n}\n`)
    .join('');
}

async function write(port: number, table: string, ids: number[], src: string) {
  const response = await fetch(`http://127.0.0.1:${port}/write`, {
    method: 'POST',
    body: ilp(table, ids, src),
  });
  return {
    status: response.status,
    token: response.headers.get('x-walship-txn'),
    body: await response.text(),
  };
}

async function writeOk(port: number, table: string, ids: number[], src: string): Promise<string> {
  const result = await write(port, table, ids, src);
  expect(result.status, result.body).toBe(204);
  return result.token!;
}

type Status = Record<string, unknown> & { role: string; epoch?: string };

async function status(port: number): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
}

async function statusOrUndefined(port: number): Promise<Status | undefined> {
  try {
    return await status(port);
  } catch {
    return undefined;
  }
}

interface TableStatus {
  name: string;
  key: string;
  committedTxn?: string;
  uploadedTxn?: string;
  appliedTxn?: string;
  epoch?: string;
}

const tablesOf = (s: Status) => (s.tables ?? []) as TableStatus[];

/** Ids of `table` read on the node, with `X-Walship-Min-Txn: minTxn` when given. */
async function idsOn(port: number, table: string, minTxn?: string): Promise<number[]> {
  if (minTxn === undefined && !tablesOf(await status(port)).some((t) => t.name === table)) return [];
  const query = new URLSearchParams({ query: `select id from ${table} order by id` });
  const response = await fetch(`http://127.0.0.1:${port}/exec?${query}`, {
    headers: minTxn === undefined ? {} : { 'x-walship-min-txn': minTxn },
  });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const ids = (JSON.parse(text) as { dataset: [number][] }).dataset.map((row) => row[0]);
  expect(new Set(ids).size, `${table} on port ${port} holds an id twice`).toBe(ids.length);
  return ids;
}

async function waitFor<T>(
  what: string | (() => Promise<string>),
  probe: () => Promise<T | undefined>,
  timeoutMs = WAIT_MS,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'string' ? what : await what()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function waitUploaded(port: number): Promise<void> {
  await waitFor(`the primary on port ${port} to upload everything`, async () =>
    tablesOf(await status(port)).every((t) => t.uploadedTxn === t.committedTxn) ? true : undefined,
  );
}

async function epochsInStore(store: ObjectStore): Promise<bigint[]> {
  const epochs: bigint[] = [];
  for await (const info of listAll(store, EPOCHS_PREFIX)) {
    epochs.push(BigInt(/(\d+)\.json$/.exec(info.key)![1]!));
  }
  return epochs;
}

const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);
const sorted = (ids: Iterable<number>) => [...ids].sort((a, b) => a - b);

// --- Tests --------------------------------------------------------------------------------------

describe.each(STORES)('automatic failover on %s', (storeName, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    'after SIGKILL of the primary exactly one candidate takes over, accepts writes, and the other follows it',
    async () => {
      const under = makeStore();
      const store = await openStore(under);
      const a = await spawnNode('primary', under, 'auto-a');
      const [b, c] = await Promise.all([
        spawnNode('replica', under, 'auto-b'),
        spawnNode('replica', under, 'auto-c'),
      ]);
      const before = range(0, 300);
      for (let i = 0; i < before.length; i += 50) await writeOk(a.port, 'auto', before.slice(i, i + 50), 'a');
      await waitUploaded(a.port);
      expect(await epochsInStore(store)).toEqual([1n]);

      a.child.kill('SIGKILL');
      await a.child.exited;
      // Settled: one candidate the primary, the other a replica (a generous deadline, not a bound).
      const roles = async () =>
        Promise.all([b, c].map(async (node) => (await statusOrUndefined(node.port))?.role));
      const { winner, loser } = await waitFor(
        async () => `one candidate to be the primary and the other a replica (roles now: ${await roles()})`,
        async () => {
          const [rb, rc] = await roles();
          if (rb === 'primary' && rc === 'replica') return { winner: b, loser: c };
          if (rc === 'primary' && rb === 'replica') return { winner: c, loser: b };
          return undefined;
        },
        FAILOVER_WAIT_MS,
      );
      expect((await status(winner.port)).acceptingWrites).toBe(true);

      // The new primary takes writes; the other candidate follows it (reads them back at its token).
      const token = await writeOk(winner.port, 'auto', range(1_000, 50), 'w');
      expect(await idsOn(loser.port, 'auto', token)).toEqual(sorted([...before, ...range(1_000, 50)]));
      expect((await status(loser.port)).role).toBe('replica');
      expect((await write(loser.port, 'auto', [2_000], 'l')).status).toBe(421);
      const token2 = await writeOk(winner.port, 'auto', range(3_000, 10), 'w');
      expect(await idsOn(loser.port, 'auto', token2)).toEqual(
        sorted([...before, ...range(1_000, 50), ...range(3_000, 10)]),
      );
      expect((await status(winner.port)).role).toBe('primary');

      // Exactly one promotion happened ("several candidates: P2 picks one"): one epoch more, not one per candidate.
      expect(
        await epochsInStore(store),
        `epoch records (candidate logs:\n${b.child.output()}\n${c.child.output()})`,
      ).toEqual([1n, 2n]);
      expect((await status(winner.port)).epoch).toBe('2');
      expect(tablesOf(await status(loser.port)).find((t) => t.name === 'auto')?.epoch).toBe('2');
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a primary paused past the lease timeout is replaced and, once resumed, fenced into a replica that keeps nothing of its later writes',
    async () => {
      const under = makeStore();
      const store = await openStore(under);
      const a = await spawnNode('primary', under, 'pause-a');
      const b = await spawnNode('replica', under, 'pause-b');
      const before = range(0, 200);
      for (let i = 0; i < before.length; i += 50)
        await writeOk(a.port, 'paused', before.slice(i, i + 50), 'a');
      await waitUploaded(a.port);

      a.child.kill('SIGSTOP');
      await waitFor(
        'the candidate to replace the paused primary',
        async () => ((await status(b.port)).role === 'primary' ? true : undefined),
        FAILOVER_WAIT_MS,
      );
      const onB = range(10_000, 50);
      await writeOk(b.port, 'paused', onB, 'b');

      // Resumed: it may still acknowledge a write or two before its lease renewal or upload is refused.
      a.child.kill('SIGCONT');
      const acked: number[] = [];
      let refused = 0;
      for (let id = 20_000; refused < 3; id += 5) {
        expect(id, 'the paused primary kept acknowledging writes').toBeLessThan(20_000 + 5 * 5_000);
        const result = await write(a.port, 'paused', range(id, 5), 'z');
        if (result.status === 204) acked.push(...range(id, 5));
        else {
          expect(result.status, result.body).toBe(421);
          refused++;
        }
      }
      const asReplica = await waitFor(`the old primary to become a replica`, async () => {
        const s = await statusOrUndefined(a.port);
        return s?.role === 'replica' ? s : undefined;
      });
      const divergence = asReplica.divergence as
        | { epoch: string; files: { table: string; file: string; rows: number }[] }
        | undefined;
      const diverged: number[] = [];
      for (const file of divergence?.files ?? []) {
        expect(file.table).toBe('paused');
        // `/status` names it relative to the data dir (issue 13 item 10).
        const lines = (await readFile(path.resolve(a.dir, file.file), 'utf8'))
          .split('\n')
          .filter((l) => l !== '' && !l.startsWith('#'));
        expect(lines.length).toBe(file.rows);
        diverged.push(...lines.map((line) => Number(/ id=(\d+)i,/.exec(line)![1])));
      }
      // Whatever it acknowledged after SIGCONT is in its divergence file (and only that).
      expect(sorted(diverged)).toEqual(sorted(acked));
      if (acked.length > 0) expect(divergence?.epoch).toBe('1');

      // On the new primary: the rows from before the pause and its own, none of the resumed primary's.
      const token = await writeOk(b.port, 'paused', range(30_000, 10), 'b');
      const expected = sorted([...before, ...onB, ...range(30_000, 10)]);
      expect(await idsOn(b.port, 'paused')).toEqual(expected);
      // The old primary, on the same port, follows the new one.
      expect(await idsOn(a.port, 'paused', token)).toEqual(expected);
      expect((await write(a.port, 'paused', [40_000], 'z')).status).toBe(421);
      expect(await epochsInStore(store)).toEqual([1n, 2n]);
      console.log(
        `[failover-auto] pause on ${storeName}: ${acked.length} rows acknowledged after SIGCONT (all in the divergence file)`,
      );
    },
    60_000,
  );
});
