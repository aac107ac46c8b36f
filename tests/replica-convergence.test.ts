/**
 * Replicas converge to the primary's content, exactly, on the filesystem store and on Ceph RGW:
 *
 * 1. One primary (a child process) and two replicas (one following from the start, one starting
 *    half way through from a backlog), 200 000 rows from the official client over four tables
 *    whose schemas change mid-stream (columns added late, a table that appears late), every column
 *    type the client sends, nulls, and int64s beyond 2^53 (some only a raw ILP line can carry).
 *    The primary runs in its own process so its commits run beside this process's client and
 *    replicas instead of between them (two cores). Once both replicas report every table at the
 *    primary's committed txn, each table's columns, row count and content hash
 *    (tests/helpers/table-checksum.ts) must equal the primary's. The hash is shown to catch a
 *    single changed value: one int64 in a stopped replica's SQLite file is moved by 1 (a change a
 *    JSON number cannot even represent), and the restarted replica's hash differs.
 * 2. A replica in a child process, SIGKILLed at seeded moments while it catches up with a primary
 *    that keeps taking writes, restarted on the same data dir each time: its watermarks never go
 *    back across a kill, and it ends with the primary's exact content (no row twice, none missing).
 * 3. A replica bootstrapped from another replica's snapshot while the primary keeps writing: it
 *    restores that snapshot, replays fewer segments than the replica that followed from the start,
 *    and ends with the primary's exact content.
 *
 * Checked by breaking the code on purpose (in a scratch copy): a replica decoder that reads int64s
 * through a JS number fails 1 (hash and RAW rows); applying a txn's rows and its watermark in two
 * SQLite transactions (with the gap widened by a 3 ms sleep) fails 2 (rows applied twice).
 *
 * The data and the kill moments come from one seed, printed at the start; replay them with
 * WALSHIP_CONVERGENCE_SEED=<seed> (timing still varies from run to run).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import type { ReplicaNode } from '../replica/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { type StoreUnderTest, storesUnderTest } from './helpers/store-under-test.js';
import {
  datasetText,
  execText,
  quoteSqlIdentifier,
  type TableChecksum,
  tableChecksum,
} from './helpers/table-checksum.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { postAdmin, startTestReplica } from './helpers/test-replica.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const SEED = Number(process.env.WALSHIP_CONVERGENCE_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`[replica-convergence] seed ${SEED} (replay with WALSHIP_CONVERGENCE_SEED=${SEED})`);

/** Small windows and segments, so every table's history spans many segments. */
const PRIMARY_SETTINGS = { windowMs: 30, rolloverSizeBytes: 64 * 1024, headIntervalMs: 50 };
/** How long replicas may take to reach the primary's committed txns once writes stop. */
const CONVERGE_MS = 60_000;
/** Rows in one client request, at most. */
const ROWS_PER_REQUEST = 1_000;
/** Concurrent client connections writing. */
const WRITERS = 2;
/** Designated timestamps start here (µs) and step about 1 ms per row, with jitter (out of order). */
const BASE_US = 1_700_000_000_000_000n;
/** Kills of the child replica per store in test 2. */
const KILLS = 2;
/** How long test 2 waits for a restarted replica to be behind and making progress, in ms. */
const KILL_WATCH_MS = 30_000;

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const primaries: PrimaryNode[] = [];
const replicas: ReplicaNode[] = [];
const processes: WalshipProcess[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-convergence-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'convergence');
});
afterEach(async () => {
  for (const child of processes) child.kill('SIGKILL');
  await Promise.all(processes.splice(0).map((child) => child.exited));
  await Promise.all(replicas.splice(0).map((node) => node.close()));
  await Promise.all(primaries.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

// --- The stores ---------------------------------------------------------------------------------

/** One store under test: how to open it in this process, and the CLI's connection string for it. */
const STORES = storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'convergence' });

// --- Nodes --------------------------------------------------------------------------------------

async function openStore(under: StoreUnderTest): Promise<ObjectStore> {
  const store = await under.open();
  stores.push(store);
  return store;
}

async function startPrimary(store: ObjectStore): Promise<PrimaryNode> {
  const node = await startTestPrimary(store, path.join(base, `primary-${randomUUID()}`), PRIMARY_SETTINGS);
  primaries.push(node);
  return node;
}

async function startReplica(store: ObjectStore, dataDir = path.join(base, `replica-${randomUUID()}`)) {
  const node = await startTestReplica(store, dataDir);
  replicas.push(node);
  return node;
}

async function stopReplica(node: ReplicaNode): Promise<void> {
  replicas.splice(replicas.indexOf(node), 1);
  await node.close();
}

/**
 * `walship primary` as a child process with PRIMARY_SETTINGS, so its ILP parsing and SQLite commits
 * run beside (not between) this process's client and in-process replicas. Resolves with its HTTP port.
 */
async function spawnPrimary(under: StoreUnderTest): Promise<number> {
  const child = spawnWalship([
    'primary',
    `--replication.object.store=${under.connectionString}`,
    `--node.data.dir=${path.join(base, `primary-${randomUUID()}`)}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    `--replication.primary.throttle.window.duration=${PRIMARY_SETTINGS.windowMs}ms`,
    `--cairo.wal.segment.rollover.size=${PRIMARY_SETTINGS.rolloverSizeBytes}`,
    `--replication.primary.head.update.interval=${PRIMARY_SETTINGS.headIntervalMs}ms`,
    '--log.level=warn',
  ]);
  processes.push(child);
  const match = await child.waitFor(/walship primary \S+ listening: http (\d+)/, 60_000);
  return Number(match[1]);
}

/** `walship replica` as a child process on `dataDir`; resolves with it and its HTTP port. */
async function spawnReplica(under: StoreUnderTest, dataDir: string) {
  const child = spawnWalship([
    'replica',
    `--replication.object.store=${under.connectionString}`,
    `--node.data.dir=${dataDir}`,
    '--http.bind.to=127.0.0.1:0',
    '--replication.replica.poll.interval=20ms',
    '--admin.token=convergence-test',
    '--log.level=warn',
  ]);
  processes.push(child);
  const match = await child.waitFor(/walship replica \S+ listening: http (\d+)/, 60_000);
  return { child, port: Number(match[1]) };
}

async function killProcess(child: WalshipProcess): Promise<void> {
  child.kill('SIGKILL');
  const exit = await child.exited;
  expect(exit.signal).toBe('SIGKILL');
  processes.splice(processes.indexOf(child), 1);
}

// --- /status ------------------------------------------------------------------------------------

interface ReplicaTableStatus {
  name: string;
  appliedTxn: string;
  segmentsApplied: number;
  suspended: { code: string; message: string; key: string | null } | null;
}

/** The primary's committed txn per table name. */
async function committedTxns(port: number): Promise<Map<string, bigint>> {
  const { status, body } = await getJson(port, '/status');
  expect(status).toBe(200);
  const tables = (body as { tables: { name: string; committedTxn: string }[] }).tables;
  return new Map(tables.map((t) => [t.name, BigInt(t.committedTxn)]));
}

async function replicaTables(port: number): Promise<Map<string, ReplicaTableStatus>> {
  const { status, body } = await getJson(port, '/status');
  expect(status).toBe(200);
  const tables = (body as { tables: ReplicaTableStatus[] }).tables;
  return new Map(tables.map((t) => [t.name, t]));
}

/** A child replica's tables; if it cannot answer, the error carries what the child printed. */
async function childTables(child: WalshipProcess, port: number): Promise<Map<string, ReplicaTableStatus>> {
  try {
    return await replicaTables(port);
  } catch (error) {
    throw new Error(`replica child on port ${port} did not answer /status: ${error}\n${child.output()}`);
  }
}

/** What keeps a replica from matching the primary's committed txns, one sentence each. */
async function lagOf(primaryPort: number, replicaPort: number): Promise<string[]> {
  const committed = await committedTxns(primaryPort);
  const applied = await replicaTables(replicaPort);
  const lag: string[] = [];
  for (const [name, txn] of committed) {
    const table = applied.get(name);
    if (table === undefined) lag.push(`${name}: not followed yet (primary at ${txn})`);
    else if (table.suspended !== null) lag.push(`${name}: suspended ${JSON.stringify(table.suspended)}`);
    else if (BigInt(table.appliedTxn) !== txn) lag.push(`${name}: applied ${table.appliedTxn} of ${txn}`);
  }
  for (const name of applied.keys()) if (!committed.has(name)) lag.push(`${name}: unknown to the primary`);
  return lag;
}

/** Waits until every replica holds every table at the primary's committed txn (writes must have stopped). */
async function waitConverged(primaryPort: number, replicaPorts: number[]): Promise<void> {
  for (const port of replicaPorts) {
    await expect.poll(() => lagOf(primaryPort, port), { timeout: CONVERGE_MS, interval: 50 }).toEqual([]);
  }
}

function segmentsAppliedOf(tables: Map<string, ReplicaTableStatus>): number {
  let sum = 0;
  for (const table of tables.values()) sum += table.segmentsApplied;
  return sum;
}

/** Every table of the primary, checksummed on the primary and on each replica: all must be equal. */
async function expectSameContent(primaryPort: number, replicaPorts: number[]): Promise<TableChecksum[]> {
  const names = [...(await committedTxns(primaryPort)).keys()].sort();
  // Nodes in parallel (each has its own query hosts), one table at a time on each.
  const checksumsOf = async (port: number) => {
    const sums: TableChecksum[] = [];
    for (const name of names) sums.push(await tableChecksum(port, name));
    return sums;
  };
  const [expected, ...actual] = await Promise.all([primaryPort, ...replicaPorts].map(checksumsOf));
  for (const [index, port] of replicaPorts.entries()) {
    expect(actual[index], `replica on port ${port}`).toEqual(expected);
  }
  return expected ?? [];
}

// --- The workload -------------------------------------------------------------------------------

const SYMBOLS = ['ETH-USD', 'BTC-USD', 'SOL-USD', 'ünï 🚀', 'a=b c,d', 'back\\slash', 'x y'];
const NOTES = ['', 'he said "hi"\nbye', 'ünï 🚀 𝄞 ✓', 'comma, equals= space', 'cr\r\nlf\ttab # no'];

/**
 * Rows for four tables whose schemas grow with the stream's progress (`id / plannedRows`):
 * `trades` gains `venue` and `fee` at 30 %, `quotes` gains `depth` at 20 % and `halted` at 50 %,
 * `events` gains `tag` at 70 %, and `metrics_late` first appears at 60 %. Every row has a unique
 * `id`; optional cells are left out now and then, so they read back null.
 */
class Workload {
  readonly #random: Random;
  readonly plannedRows: number;
  #nextId = 1;

  constructor(seed: number, plannedRows: number) {
    this.#random = seededRandom(seed);
    this.plannedRows = plannedRows;
  }

  get rowsIssued(): number {
    return this.#nextId - 1;
  }

  /** Takes the next id (for rows a test writes by hand). */
  takeId(): number {
    return this.#nextId++;
  }

  /** Adds `count` rows to the sender's buffer (not flushed). */
  async fill(sender: Sender, count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.#row(sender);
  }

  async #row(sender: Sender): Promise<void> {
    const id = this.takeId();
    const progress = id / this.plannedRows;
    const r = this.#random;
    const roll = r.next();
    const table =
      progress >= 0.6 && roll < 0.15
        ? 'metrics_late'
        : roll < 0.45
          ? 'trades'
          : roll < 0.75
            ? 'quotes'
            : 'events';
    const timestampUs = BASE_US + BigInt(id) * 1000n + BigInt(randomInt(r, 5_000));
    const maybe = () => r.next() >= 0.15;
    sender.table(table);
    switch (table) {
      case 'trades':
        sender.symbol('sym', this.#pick(SYMBOLS));
        if (maybe()) sender.symbol('side', r.next() < 0.5 ? 'buy' : 'sell');
        if (progress >= 0.3 && maybe()) sender.symbol('venue', `v${randomInt(r, 5)}`);
        sender.intColumn('id', id);
        sender.floatColumn('price', this.#double());
        if (maybe()) sender.intColumn('qty', randomInt(r, 1_000_000) - 500_000);
        if (maybe()) sender.intColumn('big', this.#bigLong());
        if (maybe()) sender.stringColumn('note', r.next() < 0.5 ? this.#pick(NOTES) : `n-${id}`);
        if (maybe()) sender.booleanColumn('ok', r.next() < 0.5);
        if (progress >= 0.3 && maybe()) sender.floatColumn('fee', r.next() / 1000);
        break;
      case 'quotes':
        sender.symbol('sym', this.#pick(SYMBOLS));
        sender.intColumn('id', id);
        if (maybe()) sender.floatColumn('bid', this.#double());
        if (maybe()) sender.floatColumn('ask', this.#double());
        if (progress >= 0.2 && maybe()) sender.intColumn('depth', this.#bigLong());
        if (progress >= 0.5 && maybe()) sender.booleanColumn('halted', r.next() < 0.1);
        break;
      case 'events':
        if (maybe()) sender.symbol('level', this.#pick(['info', 'warn', 'error']));
        sender.intColumn('id', id);
        sender.stringColumn('msg', `${this.#pick(NOTES)} #${id}`);
        if (maybe()) sender.intColumn('code', randomInt(r, 600) - 100);
        if (maybe()) sender.floatColumn('value', this.#double());
        if (progress >= 0.7 && maybe()) sender.stringColumn('tag', this.#pick(SYMBOLS));
        break;
      default:
        sender.symbol('host', `h${randomInt(r, 20)}`);
        sender.intColumn('id', id);
        sender.floatColumn('cpu', r.next() * 100);
        if (maybe()) sender.intColumn('mem', this.#bigLong());
        if (maybe()) sender.booleanColumn('up', r.next() < 0.9);
    }
    await sender.at(timestampUs, 'us');
  }

  #pick<T>(values: readonly T[]): T {
    return values[randomInt(this.#random, values.length)] as T;
  }

  /** Full-precision doubles of every magnitude, now and then an extreme one. */
  #double(): number {
    const r = this.#random;
    const roll = r.next();
    if (roll < 0.02) return this.#pick([0, 5e-324, -1.5e-300, 1e21, -Number.MAX_VALUE, 2]);
    return (r.next() - 0.5) * 10 ** randomInt(r, 12);
  }

  /** int64s beyond 2^53 that a JS number holds exactly (all the client can send), both signs. */
  #bigLong(): number {
    const r = this.#random;
    const sign = r.next() < 0.5 ? -1 : 1;
    // Doubles in [2^53, 2^54) step by 2, in [2^62, 2^63) by 1024.
    return r.next() < 0.5
      ? sign * (2 ** 53 + 2 * randomInt(r, 2 ** 30))
      : sign * (2 ** 62 + 1024 * randomInt(r, 2 ** 40));
  }
}

/**
 * Writes `rows` more rows of `workload` to the node over HTTP with the official client, in requests
 * of at most ROWS_PER_REQUEST rows, over WRITERS connections at once.
 */
async function writeRows(port: number, workload: Workload, rows: number): Promise<void> {
  const last = workload.rowsIssued + rows;
  const writer = async () => {
    const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${port};auto_flush=off;`);
    try {
      while (workload.rowsIssued < last) {
        await workload.fill(sender, Math.min(ROWS_PER_REQUEST, last - workload.rowsIssued));
        await sender.flush();
      }
    } finally {
      await sender.close();
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
}

/** Writes in the background until `stop()` is called; `stop()` resolves once the last request is answered. */
function writeInBackground(port: number, workload: Workload, rowsPerRequest: number, pauseMs: number) {
  let stopping = false;
  const done = (async () => {
    while (!stopping) {
      await writeRows(port, workload, rowsPerRequest);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** POST raw ILP (v1 text) to the primary's /write; expects 204. */
async function postIlp(port: number, body: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  expect(response.status, await response.text()).toBe(204);
}

async function segmentCount(store: ObjectStore): Promise<number> {
  let count = 0;
  for await (const info of listAll(store, 'tables/')) if (info.key.endsWith('.seg')) count++;
  return count;
}

/** A table's row count and its count of distinct ids, on one node. */
async function countsOf(port: number, table: string): Promise<{ rows: number; distinctIds: number }> {
  const body = await execText(port, `SELECT count(*), count(DISTINCT id) FROM ${quoteSqlIdentifier(table)}`);
  const [[rows, distinctIds]] = (JSON.parse(body) as { dataset: [[number, number]] }).dataset;
  return { rows, distinctIds };
}

// --- The tests ----------------------------------------------------------------------------------

describe.each(STORES)('replicas converge on %s', (storeName, skipReason, storeUnderTest) => {
  const storeSeed = SEED + (storeName === 'fs' ? 0 : 1);

  it.skipIf(skipReason !== null)(
    'two replicas end with the primary’s exact content after 200 000 rows and schema changes',
    async () => {
      const TOTAL_ROWS = 200_000;
      const under = storeUnderTest();
      const store = await openStore(under);
      const primaryPort = await spawnPrimary(under);
      const early = await startReplica(store);
      const workload = new Workload(storeSeed, TOTAL_ROWS);

      await writeRows(primaryPort, workload, TOTAL_ROWS / 2);
      // int64s no JS number holds, which only a raw line can send.
      const rawIds = [workload.takeId(), workload.takeId(), workload.takeId()];
      await postIlp(
        primaryPort,
        `trades,sym=RAW id=${rawIds[0]}i,price=0.5,big=9223372036854775807i 1700000000000000000\n` +
          `trades,sym=RAW id=${rawIds[1]}i,price=1.5,big=-9223372036854775807i 1700000000000001000\n` +
          `quotes,sym=RAW id=${rawIds[2]}i,depth=9007199254740993i 1700000000000002000\n`,
      );
      const lateDir = path.join(base, `late-${randomUUID()}`);
      const late = await startReplica(store, lateDir);
      await writeRows(primaryPort, workload, TOTAL_ROWS - workload.rowsIssued);

      await waitConverged(primaryPort, [early.httpPort, late.httpPort]);
      const checksums = await expectSameContent(primaryPort, [early.httpPort, late.httpPort]);

      // The run did what it set out to: every row, every late column and table, many segments.
      expect(checksums.reduce((sum, c) => sum + c.rowCount, 0)).toBe(TOTAL_ROWS);
      const columnsOf = (table: string) =>
        checksums.find((c) => c.table === table)?.columns.map((c) => c.name);
      expect(checksums.map((c) => c.table)).toEqual(['events', 'metrics_late', 'quotes', 'trades']);
      expect(columnsOf('trades')).toEqual(expect.arrayContaining(['venue', 'fee', 'big']));
      expect(columnsOf('quotes')).toEqual(expect.arrayContaining(['depth', 'halted']));
      expect(columnsOf('events')).toContain('tag');
      expect(await segmentCount(store)).toBeGreaterThan(50);
      expect(
        datasetText(await execText(late.httpPort, `SELECT big FROM trades WHERE sym = 'RAW' ORDER BY id`)),
      ).toBe('[[9223372036854775807],[-9223372036854775807]]');

      // The checksum tells one changed value: move one int64 beyond 2^53 by 1 in the late replica's
      // own SQLite file (JSON.parse would read both as the same number) and serve it again.
      await stopReplica(late);
      const db = new Database(path.join(lateDir, 'tables.sqlite'));
      try {
        const changed = db
          .prepare(
            'UPDATE trades SET big = big + 1 WHERE rowid = (SELECT rowid FROM trades WHERE big > 9007199254740992 AND big < 4611686018427387904 ORDER BY rowid LIMIT 1)',
          )
          .run();
        expect(changed.changes).toBe(1);
      } finally {
        db.close();
      }
      const tampered = await startReplica(store, lateDir);
      expect(await lagOf(primaryPort, tampered.httpPort)).toEqual([]);
      const primaryTrades = checksums.find((c) => c.table === 'trades')!;
      const tamperedTrades = await tableChecksum(tampered.httpPort, 'trades');
      expect({ ...tamperedTrades, sha256: '' }).toEqual({ ...primaryTrades, sha256: '' });
      expect(tamperedTrades.sha256).not.toBe(primaryTrades.sha256);
    },
    240_000,
  );

  it.skipIf(skipReason !== null)(
    'a replica SIGKILLed while it catches up, and restarted, ends with the primary’s exact content',
    async () => {
      const random = seededRandom(storeSeed * 7 + 3);
      const under = storeUnderTest();
      const store = await openStore(under);
      const primary = await startPrimary(store);
      const workload = new Workload(storeSeed + 100, 60_000);
      const dataDir = path.join(base, `killed-${randomUUID()}`);
      await writeRows(primary.httpPort, workload, 20_000);
      const background = writeInBackground(primary.httpPort, workload, 200, 20);

      /** The watermarks the killed replica reported last: a restart must never be behind them. */
      let reported = new Map<string, bigint>();
      const kills: string[] = [];
      for (let kill = 1; kill <= KILLS; kill++) {
        const { child, port } = await spawnReplica(under, dataDir);
        const first = await childTables(child, port);
        for (const [name, txn] of reported) {
          expect(
            BigInt(first.get(name)?.appliedTxn ?? '0'),
            `${name} after kill ${kill - 1}`,
          ).toBeGreaterThanOrEqual(txn);
        }
        // Kill once the replica has gone a seeded fraction of the way from where it restarted.
        const fraction = 0.1 + 0.6 * random.next();
        const startApplied = sumOf(reported);
        const deadline = performance.now() + KILL_WATCH_MS;
        for (;;) {
          const committed = await committedTxns(primary.httpPort);
          const tables = await childTables(child, port);
          const applied = new Map([...tables].map(([name, t]) => [name, BigInt(t.appliedTxn)]));
          const appliedSum = sumOf(applied);
          const target = startApplied + BigInt(Math.ceil(fraction * Number(sumOf(committed) - startApplied)));
          if (appliedSum > startApplied && appliedSum >= target && appliedSum < sumOf(committed)) {
            await killProcess(child);
            reported = applied;
            kills.push(
              `kill ${kill}: applied ${appliedSum} of ${sumOf(committed)} (fraction ${fraction.toFixed(2)})`,
            );
            break;
          }
          if (performance.now() > deadline) {
            throw new Error(
              `kill ${kill}: the replica was never seen behind and past ${target} (applied ${appliedSum} of ${sumOf(committed)})`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, randomInt(random, 10)));
        }
        // A backlog for the next run to catch up with.
        await writeRows(primary.httpPort, workload, 6_000);
      }
      await background.stop();
      console.log(`[replica-convergence] ${storeName}: ${kills.join('; ')}`);

      const { port } = await spawnReplica(under, dataDir);
      await waitConverged(primary.httpPort, [port]);
      const checksums = await expectSameContent(primary.httpPort, [port]);
      for (const { table } of checksums) {
        const counts = await countsOf(port, table);
        expect(counts.distinctIds, `${table}: every id once`).toBe(counts.rows);
        expect(counts).toEqual(await countsOf(primary.httpPort, table));
      }
      expect(checksums.reduce((sum, c) => sum + c.rowCount, 0)).toBe(workload.rowsIssued);
    },
    240_000,
  );

  it.skipIf(skipReason !== null)(
    'a replica bootstrapped from a snapshot while the primary writes ends with the primary’s exact content',
    async () => {
      const under = storeUnderTest();
      const store = await openStore(under);
      const primary = await startPrimary(store);
      const follower = await startReplica(store);
      const workload = new Workload(storeSeed + 200, 30_000);

      await writeRows(primary.httpPort, workload, 20_000);
      await waitConverged(primary.httpPort, [follower.httpPort]);
      const atSnapshot = await committedTxns(primary.httpPort);
      const snapshot = await postAdmin(follower.httpPort, 'snapshot');
      expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(200);
      const snapshotBody = snapshot.body as { id: string; tables: { name: string; lastTxn: string }[] };
      expect(snapshotBody.id).toEqual(expect.any(String));
      expect(new Map(snapshotBody.tables.map((t) => [t.name, BigInt(t.lastTxn)]))).toEqual(atSnapshot);

      // The primary keeps writing while the new replica restores and until it has replayed past the snapshot.
      const background = writeInBackground(primary.httpPort, workload, 500, 10);
      const bootstrapped = await startReplica(store);
      expect(bootstrapped.restoredSnapshot?.id).toBe(snapshotBody.id);
      await expect
        .poll(
          async () => {
            const applied = await replicaTables(bootstrapped.httpPort);
            return [...atSnapshot].some(([name, txn]) => BigInt(applied.get(name)?.appliedTxn ?? '0') > txn);
          },
          { timeout: CONVERGE_MS, interval: 20 },
        )
        .toBe(true);
      await writeRows(primary.httpPort, workload, 5_000);
      await background.stop();

      await waitConverged(primary.httpPort, [follower.httpPort, bootstrapped.httpPort]);
      await expectSameContent(primary.httpPort, [follower.httpPort, bootstrapped.httpPort]);
      const replayed = segmentsAppliedOf(await replicaTables(bootstrapped.httpPort));
      const followed = segmentsAppliedOf(await replicaTables(follower.httpPort));
      expect(replayed).toBeLessThan(followed);
    },
    240_000,
  );
});

function sumOf(txns: Map<string, bigint>): bigint {
  let sum = 0n;
  for (const txn of txns.values()) sum += txn;
  return sum;
}
