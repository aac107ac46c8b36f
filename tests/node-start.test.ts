/**
 * How a node starts (node/walship-node.ts `open`/`start`), in-process on the filesystem store:
 *
 * - Issue 13 item 8: until a node knows its role, `/ping` and writes answer 503 with Retry-After
 *   (QuestDB's clients retry that on the same address) — never `/ping` 204 beside a write 421,
 *   which sends multi-URL clients away from the node about to be the primary. A node heading for
 *   a replica answers writes 421 at once. The start is held by a store whose requests wait.
 * - Issue 13 item 4: a replica started on the data dir of the newest epoch's primary, which holds
 *   a txn that never reached the store, waits — listening, `waiting` in `/status`, a status-page
 *   event — instead of exiting, and rejoins (divergence files) once another node is promoted; the
 *   same data dir started as primary after that promotion joins as a replica instead of refusing.
 *   The crashed data dir is a copy taken while the primary's upload of that txn is held.
 */
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { freePorts } from './helpers/ceph-rgw.js';
import { gatedStore } from './helpers/gated-store.js';
import { startTestNode, testNodeSettings } from './helpers/test-node.js';

/** A generous bound for waits (a role change, a catch-up): never a performance check. */
const WAIT_MS = 30_000;

let dir = '';
let store: ObjectStore;
const nodes: WalshipNode[] = [];
const pending: Promise<unknown>[] = [];
/** Held stores and gates, released after each test so that a failed test does not hang its nodes. */
const releases: (() => void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-node-start-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
});
afterEach(async () => {
  for (const release of releases.splice(0)) release();
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.allSettled(pending.splice(0));
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** `store` whose every request waits for `release()`; `reached` resolves at the first one. */
function heldStore(inner: ObjectStore) {
  let release: () => void = () => {};
  let arrive: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    arrive = resolve;
  });
  const held = async <T>(call: () => Promise<T>): Promise<T> => {
    arrive();
    await released;
    return call();
  };
  const wrapped: ObjectStore = {
    description: inner.description,
    put: (key, body, options) => held(() => inner.put(key, body, options)),
    get: (key, options) => held(() => inner.get(key, options)),
    head: (key) => held(() => inner.head(key)),
    list: (prefix, options) => held(() => inner.list(prefix, options)),
    delete: (key) => held(() => inner.delete(key)),
    deleteMany: (keys) => held(() => inner.deleteMany(keys)),
    close: async () => {},
  };
  releases.push(() => release());
  return { store: wrapped, reached, release: () => release() };
}

/** Starts a node on a port known before the start resolves (so the test can talk to it meanwhile). */
async function startOnPort(role: 'primary' | 'replica', nodeStore: ObjectStore, dataDir: string) {
  const [port] = (await freePorts(1)) as [number];
  const http = { host: '127.0.0.1', port };
  const started = WalshipNode.start(
    role,
    testNodeSettings(nodeStore, dataDir, { primary: { http }, replica: { http } }),
    {
      clock: systemClock,
      random: seededRandom(11),
      log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    },
  );
  pending.push(started.then((node) => nodes.push(node)));
  return { port, started };
}

async function request(port: number, route: string, method = 'GET', body?: string) {
  const response = await fetch(`http://127.0.0.1:${port}${route}`, {
    method,
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return { status: response.status, retryAfter: response.headers.get('retry-after'), text };
}

type Status = Record<string, unknown> & {
  role: string;
  waiting?: Record<string, unknown>;
  events?: { kind: string; message: string }[];
  tables?: { name: string; pendingTxns?: number; appliedTxn?: string }[];
};

async function statusOf(port: number): Promise<Status | undefined> {
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
  } catch {
    return undefined;
  }
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

describe('a starting node says so (issue 13 item 8)', () => {
  it('starting as primary: /ping, writes and /settings answer 503 with Retry-After until it is the primary, then 204', async () => {
    const held = heldStore(store);
    const { port, started } = await startOnPort('primary', held.store, path.join(dir, 'a'));
    await held.reached;
    for (const [route, method] of [
      ['/ping', 'GET'],
      ['/ping', 'HEAD'],
      ['/write', 'POST'],
      ['/api/v2/write', 'POST'],
      ['/settings', 'GET'],
    ] as const) {
      const answer = await request(port, route, method, method === 'POST' ? 't id=1i\n' : undefined);
      expect(answer.status, `${method} ${route}: ${answer.text}`).toBe(503);
      expect(answer.retryAfter, `${method} ${route}`).toBe('1');
    }
    expect((await statusOf(port))?.role).toBe('switching');
    held.release();
    const node = await started;
    expect(node.role).toBe('primary');
    expect((await request(port, '/ping')).status).toBe(204);
    expect((await request(port, '/write', 'POST', 't id=1i\n')).status).toBe(204);
  });

  it('starting as replica: /ping answers 503 with Retry-After, writes 421 (go to the primary) at once', async () => {
    const primary = await startTestNode('primary', store, path.join(dir, 'p'));
    nodes.push(primary);
    const held = heldStore(store);
    const { port, started } = await startOnPort('replica', held.store, path.join(dir, 'r'));
    await held.reached;
    const ping = await request(port, '/ping');
    expect(ping.status).toBe(503);
    expect(ping.retryAfter).toBe('1');
    expect((await request(port, '/write', 'POST', 't id=1i\n')).status).toBe(421);
    held.release();
    expect((await started).role).toBe('replica');
    expect((await request(port, '/ping')).status).toBe(204);
    expect((await request(port, '/write', 'POST', 't id=1i\n')).status).toBe(421);
  });

  it('being promoted: writes answer 503 with Retry-After (it takes them in a moment), then 204', async () => {
    const primary = await startTestNode('primary', store, path.join(dir, 'p'));
    nodes.push(primary);
    expect((await request(primary.httpPort, '/write', 'POST', 't id=1i\n')).status).toBe(204);
    await primary.demote();
    const claim = gatedStore(store, (key) => key.startsWith('epochs/'));
    releases.push(claim.release);
    const replica = await startTestNode('replica', claim.store, path.join(dir, 'r'));
    nodes.push(replica);
    const promoted = replica.promote('test');
    await claim.reached;
    const answer = await request(replica.httpPort, '/write', 'POST', 't id=2i\n');
    expect(answer.status, answer.text).toBe(503);
    expect(answer.retryAfter).toBe('1');
    claim.release();
    await promoted;
    expect((await request(replica.httpPort, '/write', 'POST', 't id=2i\n')).status).toBe(204);
  });
});

describe('a node restarted right after a crash waits for its cluster instead of exiting (issue 13 item 4)', () => {
  it('as replica on the newest primary’s data dir with a txn never uploaded: waits, then rejoins once another node is promoted; as primary after that: joins as a replica', async () => {
    let armed = false;
    const uploads = gatedStore(store, (key) => armed && key.includes('/wal/'));
    releases.push(uploads.release);
    const dirA = path.join(dir, 'a');
    const a = await startTestNode('primary', uploads.store, dirA);
    nodes.push(a);
    expect((await request(a.httpPort, '/write', 'POST', 't id=1i\n')).status).toBe(204);
    await until('txn 1 to be uploaded', async () =>
      (await statusOf(a.httpPort))?.tables?.find((t) => t.name === 't')?.pendingTxns === 0 ? true : undefined,
    );
    armed = true;
    expect((await request(a.httpPort, '/write', 'POST', 't id=2i\n')).status).toBe(204); // local ack
    await uploads.reached;
    // The data dir as a SIGKILL now would leave it: txn 2 committed, its upload never done.
    const crashed = path.join(dir, 'crashed');
    const crashedToo = path.join(dir, 'crashed-too');
    await cp(dirA, crashed, { recursive: true });
    await cp(dirA, crashedToo, { recursive: true });

    const b = await startOnPort('replica', store, crashed);
    let settled = false;
    void b.started.then(
      () => (settled = true),
      () => (settled = true),
    );
    const waiting = await until('B to say what it waits for', async () => {
      const s = await statusOf(b.port);
      return s?.waiting !== undefined && Number(s.waiting.waitedMs) > 2_500 ? s : undefined;
    });
    // Several polls later: still waiting, not exited.
    expect(settled).toBe(false);
    expect(waiting.role).toBe('switching');
    expect(waiting.waiting).toMatchObject({ epoch: '1', pendingTxns: 1, lastError: null });
    expect(String(waiting.waiting?.for)).toContain('1 txns of the primary of epoch 1');
    expect(String(waiting.waiting?.hint)).toMatch(/start this node as primary.*promote another node/);
    expect(waiting.events?.some((e) => e.kind === 'waiting')).toBe(true);
    const ping = await request(b.port, '/ping');
    expect([ping.status, ping.retryAfter]).toEqual([503, '1']);
    expect((await request(b.port, '/write', 'POST', 't id=9i\n')).status).toBe(421);

    // The cluster decides: C is promoted (epoch 2), fencing t at the slot of A's held upload.
    const c = await startTestNode('replica', store, path.join(dir, 'c'));
    nodes.push(c);
    await until('C to apply txn 1', async () =>
      (await statusOf(c.httpPort))?.tables?.find((t) => t.name === 't')?.appliedTxn === '1'
        ? true
        : undefined,
    );
    expect((await c.promote('test')).epoch).toBe(2n);

    const rejoined = await b.started;
    expect(rejoined.role).toBe('replica');
    const status = rejoined.status() as Status & {
      divergence?: { epoch: string; files: { table: string; file: string; txns: number; rows: number }[] };
    };
    expect(status.waiting).toBeUndefined();
    expect(status.divergence?.epoch).toBe('1');
    expect(status.divergence?.files.map((f) => [f.table, f.txns, f.rows])).toEqual([['t', 1, 1]]);
    expect(await readFile(status.divergence!.files[0]!.file, 'utf8')).toContain('id=2i');
    expect(status.events?.map((e) => e.message)).toContainEqual(expect.stringContaining('epoch 2 (node '));

    // It follows C: C's next write is readable on B at C's token.
    const written = await fetch(`http://127.0.0.1:${c.httpPort}/write`, {
      method: 'POST',
      body: 't id=3i\n',
    });
    expect(written.status).toBe(204);
    const token = written.headers.get('x-walship-txn')!;
    const read = await fetch(
      `http://127.0.0.1:${b.port}/exec?${new URLSearchParams({ query: 'select id from t order by id' })}`,
      { headers: { 'x-walship-min-txn': token } },
    );
    expect(((await read.json()) as { dataset: number[][] }).dataset).toEqual([[1], [3]]);

    // The same crashed data dir started as primary, now that epoch 2 replaced it: joins as a replica.
    const asPrimary = await startOnPort('primary', store, crashedToo);
    const joined = await asPrimary.started;
    expect(joined.role).toBe('replica');
    const joinedStatus = joined.status() as Status & {
      divergence?: { files: { table: string; rows: number }[] };
    };
    expect(joinedStatus.divergence?.files.map((f) => [f.table, f.rows])).toEqual([['t', 1]]);
    expect(joinedStatus.events?.map((e) => e.message)).toContainEqual(
      expect.stringMatching(
        /^started as primary, but epoch 2 .* replaced this data dir's epoch 1 while it was down/,
      ),
    );

    // A's held upload meets C's fence: A is fenced (and closes quickly).
    uploads.release();
    await until('A to be fenced', () => (a.role === 'replica' ? true : undefined));
  }, 60_000);
});
