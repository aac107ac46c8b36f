/**
 * Crash safety: a primary in a child process is killed with SIGKILL at seeded-random moments
 * while several writers post ILP over HTTP, then restarted on the same data dir, several times.
 * Every row that got a 204 must be in SQLite exactly once and, once the node has caught up, in
 * the store exactly once, inside contiguous txns 1..N; a row whose request died with the node may
 * or may not be there, but never twice. With `durable` acks every 204 is checked at once against
 * the store itself: the rows must already be in a segment.
 *
 * What this catches (the first three were checked by breaking the code on purpose): the uploaded
 * watermark advanced before the segment is in the store (a gap in the store), a restart that fails
 * to recognise its own segment left by the crash (it fences itself and answers 421), a durable
 * 204 before the upload; and, when a kill lands in their window, a 204 before the commit, rows
 * and their pending record in different SQLite transactions, or a restart that re-numbers txns.
 * Separately, the first claim of a new cluster cut short by a crash must be finished on restart.
 *
 * The kill schedule comes from one seed, printed at the start; replay it with
 * WALSHIP_CRASH_SEED=<seed> (timing still varies from run to run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Random, randomInt, seededRandom, systemClock } from '../core/index.js';
import { FsStore, MemoryStore, withFaults } from '../objectstore/index.js';
import { claimPrimary } from '../primary/index.js';
import { freePorts } from './helpers/ceph-rgw.js';
import { auditTable, duplicates, missingFromStore, type StoredSegment } from './helpers/store-audit.js';
import { startTestPrimary } from './helpers/test-primary.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const SEED = Number(process.env.WALSHIP_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`[crash-safety] seed ${SEED} (replay the kill schedule with WALSHIP_CRASH_SEED=${SEED})`);

const TABLES = ['crash_a', 'crash_b', 'crash_c'] as const;
const WRITERS = 4;
/** Rows per request, at most; each request spreads them over the tables. */
const ROWS_PER_REQUEST_MAX = 40;
/** Small segments and a short window, so uploads (and crashes during them) happen all the time. */
const ROLLOVER = '64k';
const WINDOW = '50ms';
/** How long a node runs under load before the kill, in ms: sometimes at once (while it re-uploads). */
const RUN_BEFORE_KILL_MS = { soonMax: 50, min: 150, max: 1_200 };
/**
 * How long the uploads of the final run may take to catch up: a deadline, not a speed check. Past
 * the fs store's lock staleness (30 s), the longest stall a crash can cause by design.
 */
const CATCH_UP_MS = 45_000;
/** How long a clean stop (SIGTERM) may take. */
const STOP_MS = 15_000;

let base = '';
const live = new Set<WalshipProcess>();

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-crash-'));
});
afterAll(async () => {
  for (const node of live) node.kill('SIGKILL');
  await Promise.all([...live].map((node) => node.exited));
  await rm(base, { recursive: true, force: true });
});

describe('a primary killed with SIGKILL under load and restarted', () => {
  it('local acks: every acknowledged row is in SQLite and then in the store exactly once', async () => {
    const run = await crashRun({ name: 'local', ackMode: 'local', kills: 5, random: seededRandom(SEED) });
    await verifyFinalState(run);
  }, 90_000);

  it('durable acks: every acknowledged row is in the store before its 204', async () => {
    const run = await crashRun({
      name: 'durable',
      ackMode: 'durable',
      kills: 3,
      random: seededRandom(SEED ^ 0x5bd1e995),
    });
    expect(run.ledger.durableChecks, `seed ${SEED}`).toBeGreaterThan(0);
    await verifyFinalState(run);
  }, 90_000);
});

describe('a first primary cut short between writing epochs/1.json and remembering it', () => {
  // Regression: the node used to find "its" epoch 1 in the store but nothing in its data dir and
  // refuse the role for good, leaving the new cluster without a primary.
  it('starts again on the same data dir and takes writes', async () => {
    const dir = path.join(base, 'bootstrap');
    const store = withFaults(await FsStore.open({ root: path.join(dir, 'store') }), [
      // epochs/1.json is written but the node never learns it: what a crash right after leaves.
      { fault: { type: 'lost-response' }, operations: ['put'], keyPrefix: 'epochs/', times: 1 },
    ]);
    const dataDir = path.join(dir, 'data');
    await expect(startTestPrimary(store, dataDir, { tcp: undefined })).rejects.toMatchObject({
      code: 'STORE_UNAVAILABLE',
    });
    const node = await startTestPrimary(store, dataDir, { tcp: undefined });
    try {
      expect(node.epoch).toBe(1n);
      const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, {
        method: 'POST',
        body: 't id=1i\n',
      });
      expect(response.status).toBe(204);
    } finally {
      await node.close();
    }
  });

  it('finishes the claim when only the cluster id was remembered', async () => {
    const store = new MemoryStore();
    const values: Record<string, string> = {};
    let crashed = false;
    const meta = {
      get: (key: 'cluster.id' | 'epoch') => values[key],
      set: (key: 'cluster.id' | 'epoch', value: string) => {
        if (key === 'epoch' && !crashed) {
          crashed = true;
          throw new Error('crashed before remembering the epoch');
        }
        values[key] = value;
      },
    };
    const claim = () => claimPrimary({ store, meta, nodeId: 'a', url: 'http://a:9000', clock: systemClock });
    await expect(claim()).rejects.toThrow(/crashed/);
    expect(await claim()).toMatchObject({ epoch: 1n, clusterId: values['cluster.id'] });
    expect(values.epoch).toBe('1');
  });
});

/** What the writers sent and what they were told, by row id. */
interface Ledger {
  /** Rows whose request was sent (answered or not). */
  sent: Set<number>;
  /** Rows whose request got a 204. */
  acked: Set<number>;
  /** Rows whose request died without an answer: may or may not be committed. */
  inDoubt: Set<number>;
  /** Answers other than 204 (none is expected: a killed node answers nothing). */
  unexpected: string[];
  /** Durable mode: 204s whose rows were not in the store when the 204 arrived. */
  durableViolations: string[];
  durableChecks: number;
}

interface CrashRun {
  name: string;
  ledger: Ledger;
  node: WalshipProcess;
  port: number;
  store: FsStore;
  /** Kill moments and acks per round, for failure messages. */
  trace: string[];
}

interface CrashRunOptions {
  name: string;
  ackMode: 'local' | 'durable';
  kills: number;
  random: Random;
}

/**
 * Start the node, put it under load, kill and restart it `kills` times, then let it run on with
 * the writers stopped. Returns with the node of the last start still running.
 */
async function crashRun(options: CrashRunOptions): Promise<CrashRun> {
  const dir = path.join(base, options.name);
  const storeRoot = path.join(dir, 'store');
  const ledger: Ledger = {
    sent: new Set(),
    acked: new Set(),
    inDoubt: new Set(),
    unexpected: [],
    durableViolations: [],
    durableChecks: 0,
  };
  const target = { port: 0 };
  const args = (port: number) => [
    'primary',
    `--replication.object.store=fs::root=${storeRoot};`,
    `--node.data.dir=${path.join(dir, 'data')}`,
    `--http.bind.to=127.0.0.1:${port}`,
    '--line.tcp.enabled=false',
    '--pg.enabled=false',
    `--replication.ack.mode=${options.ackMode}`,
    `--replication.primary.throttle.window.duration=${WINDOW}`,
    `--cairo.wal.segment.rollover.size=${ROLLOVER}`,
    '--replication.primary.head.update.interval=200ms',
    '--query.workers=1',
    '--log.level=warn',
  ];
  const start = async () => {
    // A fresh port per start: a port left in use by anything else cannot stall the run.
    const [port] = await freePorts(1);
    const node = spawnWalship(args(port!));
    live.add(node);
    await node.waitFor(/listening: http \d+/);
    target.port = port!;
    return { node, port: port! };
  };

  // The store is read directly by the durable checks and the audit, as a replica would.
  const store = await FsStore.open({ root: storeRoot });
  const trace: string[] = [];
  let current = await start();
  const load = startLoad({ ledger, target, ackMode: options.ackMode, store, seed: options.random });
  try {
    for (let round = 1; round <= options.kills; round++) {
      const ackedBefore = ledger.acked.size;
      const runMs = killDelayMs(options.random);
      await sleep(runMs);
      current.node.kill('SIGKILL');
      const exit = await current.node.exited;
      live.delete(current.node);
      expect(exit.signal, `the node died on its own before kill ${round}:\n${current.node.output()}`).toBe(
        'SIGKILL',
      );
      trace.push(`round ${round}: killed after ${runMs} ms, ${ledger.acked.size - ackedBefore} rows acked`);
      const startedAtMs = performance.now();
      current = await start();
      trace.push(`restarted in ${Math.round(performance.now() - startedAtMs)} ms`);
    }
    // The last start runs under load for a while too, then the writers stop.
    await sleep(300);
  } finally {
    await load.stop();
  }
  console.log(`[crash-safety] ${options.name}: ${trace.join('; ')}`);
  return { name: options.name, ledger, node: current.node, port: current.port, store, trace };
}

function killDelayMs(random: Random): number {
  const { soonMax, min, max } = RUN_BEFORE_KILL_MS;
  if (random.next() < 0.2) return randomInt(random, soonMax);
  return min + randomInt(random, max - min);
}

/**
 * WRITERS concurrent writers, each posting one request at a time to whatever port the node has
 * now. Every row carries a fresh id; a request that failed is never resent (a resend could
 * legitimately duplicate rows, which would hide the duplicates this test looks for).
 */
function startLoad(options: {
  ledger: Ledger;
  target: { port: number };
  ackMode: 'local' | 'durable';
  store: FsStore;
  seed: Random;
}): { stop(): Promise<void> } {
  let stopped = false;
  let nextId = 1;
  const cache = new Map<string, StoredSegment>();
  const writer = async (random: Random) => {
    while (!stopped) {
      const byTable = new Map<string, number[]>();
      for (let rows = 1 + randomInt(random, ROWS_PER_REQUEST_MAX); rows > 0; rows--) {
        const table = TABLES[randomInt(random, TABLES.length)]!;
        byTable.set(table, [...(byTable.get(table) ?? []), nextId++]);
      }
      const answer = await post(options.target.port, byTable, options.ledger);
      if (answer.kind === 'failed') await sleep(10);
      if (answer.kind === 'acked' && options.ackMode === 'durable') {
        // Durable mode's promise, checked before this writer sends again.
        options.ledger.durableChecks++;
        const problems = await missingFromStore(options.store, answer.txnHeader, byTable, cache);
        options.ledger.durableViolations.push(...problems);
      }
    }
  };
  const writers = Array.from({ length: WRITERS }, () =>
    writer(seededRandom(randomInt(options.seed, 2 ** 31))),
  );
  return {
    async stop() {
      stopped = true;
      await Promise.all(writers);
    },
  };
}

type PostAnswer = { kind: 'failed' } | { kind: 'refused' } | { kind: 'acked'; txnHeader: string };

/** POST the rows as ILP and book the answer in the ledger. */
async function post(port: number, byTable: Map<string, number[]>, ledger: Ledger): Promise<PostAnswer> {
  const ids = [...byTable.values()].flat();
  for (const id of ids) ledger.sent.add(id);
  let response: Response;
  let text: string;
  try {
    response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body: ilpBody(byTable) });
    text = await response.text();
  } catch {
    // Refused (the node is down) or reset (it died with the request in flight): no answer.
    for (const id of ids) ledger.inDoubt.add(id);
    return { kind: 'failed' };
  }
  if (response.status !== 204) {
    ledger.unexpected.push(`${response.status} ${text}`);
    for (const id of ids) ledger.inDoubt.add(id);
    return { kind: 'refused' };
  }
  for (const id of ids) ledger.acked.add(id);
  return { kind: 'acked', txnHeader: response.headers.get('x-walship-txn') ?? '' };
}

/** Lines with a long `id` (the row's identity) and a padding string of varying length. */
function ilpBody(byTable: Map<string, number[]>): string {
  let body = '';
  for (const [table, ids] of byTable) {
    for (const id of ids) body += `${table},w=x id=${id}i,pad="${'p'.repeat(20 + (id % 180))}"\n`;
  }
  return body;
}

interface TableStatus {
  name: string;
  key: string;
  committedTxn: string;
  uploadedTxn: string;
}

/**
 * After the last restart, with the writers stopped: the node catches up with the store; SQLite
 * holds every acknowledged row exactly once and no row nobody sent; the store holds txns 1..N of
 * each table exactly once, with exactly SQLite's rows; and the node stops cleanly.
 */
async function verifyFinalState(run: CrashRun): Promise<void> {
  const { ledger, port, store } = run;
  const context = `seed ${SEED}; ${run.trace.join('; ')}`;
  expect(ledger.unexpected, context).toEqual([]);
  expect(ledger.durableViolations, context).toEqual([]);
  expect(ledger.acked.size, `no request was acknowledged; ${context}`).toBeGreaterThan(0);

  let tables: TableStatus[] = [];
  let status: unknown;
  const caughtUp = async () => {
    status = await getJson(port, '/status');
    tables = (status as { tables: TableStatus[] }).tables;
    return tables.length === TABLES.length && tables.every((t) => t.uploadedTxn === t.committedTxn);
  };
  const deadline = Date.now() + CATCH_UP_MS;
  while (!(await caughtUp()) && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 100));
  expect(
    await caughtUp(),
    `uploads did not catch up in ${CATCH_UP_MS} ms: ${JSON.stringify(status)}; ${context}\n${run.node.output().slice(-4000)}`,
  ).toBe(true);

  const present: number[] = [];
  for (const table of tables) {
    expect(table.key, 'table keys are the lower-case names this test writes').toBe(table.name);
    const counts = await exec(port, `SELECT count(*), count(DISTINCT id) FROM ${table.name}`);
    const [total, distinct] = counts[0] as [number, number];
    expect(distinct, `${table.name}: rows with the same id; ${context}`).toBe(total);
    const ids = (await exec(port, `SELECT id FROM ${table.name}`)).map((row) => row[0] as number);
    expect(ids.length).toBe(total);
    present.push(...ids);

    const audit = await auditTable(store, table.key);
    expect(audit.problems, `${table.name} in the store; ${context}`).toEqual([]);
    expect(audit.txnLast.toString(), `${table.name}: last txn in the store; ${context}`).toBe(
      table.committedTxn,
    );
    expect(sorted(audit.ids), `${table.name}: rows in the store and in SQLite; ${context}`).toEqual(
      sorted(ids),
    );
  }
  expect([...duplicates(present)], `ids present more than once; ${context}`).toEqual([]);
  const presentSet = new Set(present);
  const lost = [...ledger.acked].filter((id) => !presentSet.has(id));
  expect(lost, `acknowledged ids missing from SQLite; ${context}`).toEqual([]);
  const invented = present.filter((id) => !ledger.sent.has(id));
  expect(invented, `ids nobody sent; ${context}`).toEqual([]);
  console.log(
    `[crash-safety] ${run.name}: ${ledger.sent.size} rows sent, ${ledger.acked.size} acknowledged, ` +
      `${ledger.inDoubt.size} unanswered, ` +
      `${present.length} present, ${tables.map((t) => `${t.name} ${t.committedTxn} txns`).join(', ')}`,
  );

  // Not at once, always: the node may still be finishing an upload or a head.json write.
  run.node.kill('SIGTERM');
  const exit = await within(run.node.exited, STOP_MS, 'still running');
  if (exit === 'still running') run.node.kill('SIGKILL');
  live.delete(run.node);
  await store.close();
  expect(exit, `a clean stop after the crashes:\n${run.node.output()}`).toEqual({ code: 0, signal: null });
}

async function getJson(port: number, urlPath: string): Promise<unknown> {
  const response = await fetch(`http://127.0.0.1:${port}${urlPath}`);
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body;
}

async function exec(port: number, sql: string): Promise<unknown[][]> {
  const body = (await getJson(port, `/exec?query=${encodeURIComponent(sql)}`)) as { dataset: unknown[][] };
  return body.dataset;
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** `promise`, or `fallback` if it has not settled after `ms`. */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
