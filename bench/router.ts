/**
 * `walship router` (issue 9): what one address in front of the cluster costs, in one run, on the
 * fs store, with a primary and replicas as real WalshipNodes in this process:
 * 1. reads: a small `/exec` query (QUERY, 100 rows of the seeded trades table) from READ_CLIENTS
 *    concurrent clients in closed loops, queries/s and latency p50/p99:
 *    - one replica caught up: (a) direct to that replica (baseline) and (b) through a router with
 *      read preference `replica` whose nodes are the primary and that replica, alternating;
 *    - a second replica started and caught up: direct to the first replica, direct with the
 *      clients split over both replicas (baselines), and (c) through a router whose nodes are the
 *      primary and both replicas, alternating;
 * 2. writes: a small ILP `/write` (WRITE_ROWS_PER_REQUEST rows, local acks, the product default)
 *    from WRITE_CLIENTS clients, direct to the primary (baseline) and through the router,
 *    alternating: the latency the router adds per write, p50/p99, and writes/s.
 * Each setup runs ROUNDS times, alternating with the others of its phase (so drift in the machine
 * hits all alike), and its runs are pooled. Every answer is checked: reads are 200 with 100 rows,
 * and the router's reads name a replica in X-Walship-Served-By (never the primary); writes are 204;
 * the write table holds every acknowledged row at the end.
 * Clients, router, nodes and SQLite share this process and its event loop (the queries run in
 * each node's query host processes, `query.workers` = 2 as shipped): the router's cost shows as
 * the ratio to the direct baseline, on the same cores.
 */
import type { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { seededRandom, systemClock } from '../core/index.js';
import { type NodeSettings, WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import type { PrimarySettings } from '../primary/index.js';
import type { ReplicaSettings } from '../replica/index.js';
import { type RunningRouter, startRouter } from '../router/index.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import { PRIMARY_PRODUCT_DEFAULTS } from './product-defaults.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';
import { type ClosedLoopResult, closedLoop, ilpBodies, pooledLoops } from './sequencer.js';
import { generateTrades, TRADES_TABLE, type Trades } from './trades.js';

// --- Bounds (the whole suite stays under ~60 s on 2 cores) ---------------------------------------

/** Rows seeded into the read table before any replica starts: 20 requests of 1 000 rows. */
const SEED_ROWS = 20_000;
const SEED_ROWS_PER_REQUEST = 1_000;
/** The read every client repeats: a filter and 100 rows back (sql-tables.ts finds `trades`). */
const QUERY = `SELECT * FROM ${TRADES_TABLE} WHERE symbol = 'ETH-USD' LIMIT 100`;
const QUERY_ROWS = 100;
/** Concurrent read clients (closed loops) in every read run. */
const READ_CLIENTS = 8;
/** Concurrent write clients (closed loops) in every write run. */
const WRITE_CLIENTS = 4;
const WRITE_TABLE = 'router_writes';
/** A small write: 10 trades rows (~1.3 KiB of ILP) per request, from WRITE_BODIES distinct bodies. */
const WRITE_ROWS_PER_REQUEST = 10;
const WRITE_BODIES = 64;
/** Each run: unmeasured warm-up (connections, statements, query hosts), then the measured window. */
const WARMUP_MS = 500;
const RUN_MS = 2_000;
/** Runs of each setup, alternating with the other setups of its phase. */
const ROUNDS = 2;
/** How long a replica may take to catch up with the primary's uploads. */
const CATCH_UP_TIMEOUT_MS = 30_000;
const CATCH_UP_PROBE_MS = 50;
/** The product's `router.refresh.interval`. */
const ROUTER_REFRESH_INTERVAL_MS = 1_000;
/** The router's `line.http.max.request.size`; the product default (100 MiB) is far above any body here. */
const ROUTER_MAX_REQUEST_BYTES = 10 * 1024 * 1024;

/** The primary as it ships (local acks) but a 1 s throttle window, so the seed reaches replicas soon. */
const PRIMARY_SETTINGS: Partial<PrimarySettings> = { ...PRIMARY_PRODUCT_DEFAULTS, windowMs: 1_000 };
/** The replica's product defaults (cli/config.ts) where the test helpers use test values. */
const REPLICA_PRODUCT_DEFAULTS: Partial<ReplicaSettings> = {
  pollIntervalMs: 1_000,
  sweepIntervalMs: 30_000,
  queryWorkers: 2,
};

const silent = pino({ level: process.env.WALSHIP_BENCH_LOG ?? 'silent' });
const log = (message: string) => process.stderr.write(`bench router: ${message}\n`);
const perSecond = (count: number, ms: number) => (count / ms) * 1000;

// --- Pure helpers (bench/router.test.ts) ---------------------------------------------------------

/** The part of a node's GET /status the catch-up check reads (primary or replica). */
export interface TableStatusLike {
  tables?: { name: string; committedTxn?: string; uploadedTxn?: string; appliedTxn?: string }[];
}

/**
 * Whether every replica holds everything the primary committed in `table`: the primary has
 * committed at least one txn and uploaded all of them, and each replica applied exactly that txn.
 */
export function caughtUp(
  primary: TableStatusLike,
  replicas: readonly TableStatusLike[],
  table: string,
): boolean {
  const head = primary.tables?.find((t) => t.name === table);
  if (head?.committedTxn === undefined || head.committedTxn === '0') return false;
  if (head.uploadedTxn !== head.committedTxn) return false;
  return replicas.every(
    (replica) => replica.tables?.find((t) => t.name === table)?.appliedTxn === head.committedTxn,
  );
}

/** A setup's pooled runs: the closed loops, and who served its requests (X-Walship-Served-By). */
export interface SetupFigures {
  loop: ClosedLoopResult;
  servedBy: Map<string, number>;
}

/**
 * The rows of one routed setup beside its direct baseline: ops/s (higher is better), then latency
 * p50 and p99 (lower is better), each with the baseline's figure of the same kind.
 */
export function comparedRows(
  label: { measured: string; baseline: string; unit: string },
  measured: SetupFigures,
  baseline: SetupFigures,
  note: string,
): BenchRow[] {
  const rate = (f: SetupFigures) => perSecond(f.loop.ops, f.loop.elapsedMs);
  const rows: BenchRow[] = [
    {
      name: `${label.measured}: ${label.unit}`,
      value: rate(measured),
      unit: label.unit,
      better: 'higher',
      baselineName: label.baseline,
      baseline: rate(baseline),
      note: `${measured.loop.ops} vs ${baseline.loop.ops} requests; ${note}`,
    },
  ];
  for (const p of [50, 99]) {
    const value = percentile(measured.loop.latenciesMs, p);
    const base = percentile(baseline.loop.latenciesMs, p);
    rows.push({
      name: `${label.measured}: p${p}`,
      value,
      unit: 'ms',
      better: 'lower',
      baselineName: `${label.baseline} p${p}`,
      baseline: base,
      note: `${value - base >= 0 ? '+' : ''}${(value - base).toFixed(2)} ms`,
    });
  }
  return rows;
}

/** "r1 1234, r2 1180": who served a setup's requests, by name. */
export function servedByText(servedBy: ReadonlyMap<string, number>): string {
  return [...servedBy.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([who, count]) => `${who} ${count}`)
    .join(', ');
}

// --- Nodes ---------------------------------------------------------------------------------------

const nodeDeps = () => ({ clock: systemClock, random: seededRandom(7), log: silent });

function nodeSettings(store: ObjectStore, dataDir: string, nodeId: string): NodeSettings {
  return testNodeSettings(store, dataDir, {
    primary: { ...PRIMARY_SETTINGS, nodeId },
    replica: { ...REPLICA_PRODUCT_DEFAULTS, nodeId },
  });
}

const urlOf = (node: WalshipNode) => `http://127.0.0.1:${node.httpPort}`;

async function statusOf(agent: Agent, node: WalshipNode): Promise<TableStatusLike> {
  const { statusCode, body } = await request(`${urlOf(node)}/status`, { dispatcher: agent });
  if (statusCode !== 200)
    throw new Error(`GET /status on ${urlOf(node)}: ${statusCode} ${await body.text()}`);
  return (await body.json()) as TableStatusLike;
}

async function waitCaughtUp(agent: Agent, primary: WalshipNode, replicas: WalshipNode[]): Promise<number> {
  const startedMs = performance.now();
  while (performance.now() - startedMs < CATCH_UP_TIMEOUT_MS) {
    const statuses = await Promise.all(replicas.map((r) => statusOf(agent, r)));
    if (caughtUp(await statusOf(agent, primary), statuses, TRADES_TABLE))
      return performance.now() - startedMs;
    await sleep(CATCH_UP_PROBE_MS);
  }
  throw new Error(
    `replicas did not catch up with the primary's ${TRADES_TABLE} in ${CATCH_UP_TIMEOUT_MS} ms`,
  );
}

async function startBenchRouter(store: ObjectStore, nodes: WalshipNode[]): Promise<RunningRouter> {
  const router = await startRouter({
    nodes: nodes.map(urlOf),
    store,
    refreshIntervalMs: ROUTER_REFRESH_INTERVAL_MS,
    readPreference: 'replica',
    http: { host: '127.0.0.1', port: 0 },
    maxRequestBytes: ROUTER_MAX_REQUEST_BYTES,
    version: 'bench',
    log: silent,
  });
  await router.view.refresh();
  return router;
}

// --- Load ----------------------------------------------------------------------------------------

/** One setup: where client `client` sends its requests, and what X-Walship-Served-By must say. */
interface Setup {
  name: string;
  urlFor(client: number): string;
  /** Routed requests must carry a matching X-Walship-Served-By; direct ones carry none. */
  servedBy?: RegExp;
}

function checkServedBy(setup: Setup, header: string | string[] | undefined): string {
  const who = Array.isArray(header) ? header.join(',') : (header ?? 'direct');
  if (setup.servedBy !== undefined && !setup.servedBy.test(who))
    throw new Error(`${setup.name}: X-Walship-Served-By "${who}", expected ${setup.servedBy}`);
  return who;
}

/** One read: 200 with QUERY_ROWS rows; who served it. */
async function readOnce(agent: Agent, setup: Setup, client: number): Promise<string> {
  const url = `${setup.urlFor(client)}/exec?query=${encodeURIComponent(QUERY)}`;
  const { statusCode, headers, body } = await request(url, { dispatcher: agent });
  if (statusCode !== 200) throw new Error(`${setup.name}: GET /exec ${statusCode} ${await body.text()}`);
  const answer = (await body.json()) as { count?: number };
  if (answer.count !== QUERY_ROWS)
    throw new Error(`${setup.name}: the query answered ${answer.count} rows, not ${QUERY_ROWS}`);
  return checkServedBy(setup, headers['x-walship-served-by']);
}

/** One write: 204; who served it. */
async function writeOnce(agent: Agent, setup: Setup, client: number, body: Buffer): Promise<string> {
  const response = await request(`${setup.urlFor(client)}/write`, {
    method: 'POST',
    body,
    dispatcher: agent,
  });
  const text = await response.body.text();
  if (response.statusCode !== 204)
    throw new Error(`${setup.name}: POST /write ${response.statusCode} ${text}`);
  return checkServedBy(setup, response.headers['x-walship-served-by']);
}

/** Warm-up, then the measured closed loop of `clients` clients; who served the measured requests. */
async function runSetup(
  clients: number,
  op: (client: number) => Promise<string>,
): Promise<{ figures: SetupFigures; requests: number }> {
  const servedBy = new Map<string, number>();
  const warm = await closedLoop(clients, WARMUP_MS, async (client) => void (await op(client)));
  const loop = await closedLoop(clients, RUN_MS, async (client) => {
    const who = await op(client);
    servedBy.set(who, (servedBy.get(who) ?? 0) + 1);
  });
  return { figures: { loop, servedBy }, requests: warm.ops + loop.ops };
}

/** ROUNDS rounds of every setup in turn; each setup's runs pooled. */
async function alternate(
  setups: readonly Setup[],
  clients: number,
  op: (setup: Setup, client: number) => Promise<string>,
): Promise<{ figures: SetupFigures[]; requests: number }> {
  const runs: SetupFigures[][] = setups.map(() => []);
  let requests = 0;
  for (let round = 1; round <= ROUNDS; round++)
    for (const [i, setup] of setups.entries()) {
      const run = await runSetup(clients, (client) => op(setup, client));
      log(
        `round ${round}, ${setup.name}: ${perSecond(run.figures.loop.ops, run.figures.loop.elapsedMs).toFixed(0)}/s`,
      );
      runs[i]!.push(run.figures);
      requests += run.requests;
    }
  const figures = runs.map((list) => {
    const servedBy = new Map<string, number>();
    for (const run of list)
      for (const [who, count] of run.servedBy) servedBy.set(who, (servedBy.get(who) ?? 0) + count);
    return { loop: pooledLoops(list.map((run) => run.loop)), servedBy };
  });
  return { figures, requests };
}

// --- The run -------------------------------------------------------------------------------------

interface Measured {
  catchUpMs: number[];
  direct1: SetupFigures;
  routed1: SetupFigures;
  direct1Again: SetupFigures;
  direct2: SetupFigures;
  routed2: SetupFigures;
  writeDirect: SetupFigures;
  writeRouted: SetupFigures;
  /** Each replica's staleness as the 2-replica router saw it after its reads (it orders by it). */
  stalenessSeen: string;
}

/** The nodes and routers of the run, closed in reverse order at the end. */
class BenchCluster {
  readonly nodes: WalshipNode[] = [];
  readonly routers: RunningRouter[] = [];
  readonly catchUpMs: number[] = [];

  constructor(
    readonly dir: string,
    readonly store: ObjectStore,
    readonly agent: Agent,
  ) {}

  async start(role: 'primary' | 'replica', nodeId: string): Promise<WalshipNode> {
    const settings = nodeSettings(this.store, path.join(this.dir, nodeId), nodeId);
    this.nodes.push(await WalshipNode.start(role, settings, nodeDeps()));
    return this.nodes.at(-1)!;
  }

  /** A replica started and caught up with the primary (with the replicas already up). */
  async startReplica(nodeId: string, primary: WalshipNode, others: WalshipNode[]): Promise<WalshipNode> {
    const replica = await this.start('replica', nodeId);
    this.catchUpMs.push(await waitCaughtUp(this.agent, primary, [...others, replica]));
    log(`${nodeId} caught up in ${this.catchUpMs.at(-1)!.toFixed(0)} ms`);
    return replica;
  }

  async router(nodes: WalshipNode[]): Promise<RunningRouter> {
    this.routers.push(await startBenchRouter(this.store, nodes));
    return this.routers.at(-1)!;
  }

  async close(): Promise<void> {
    for (const router of this.routers.reverse()) await router.close();
    for (const node of this.nodes.reverse()) await node.close();
  }
}

const direct = (node: WalshipNode, name: string): Setup => ({
  name: `direct ${name}`,
  urlFor: () => urlOf(node),
});
const routed = (name: string, router: RunningRouter, servedBy: RegExp): Setup => ({
  name,
  urlFor: () => `http://127.0.0.1:${router.port}`,
  servedBy,
});
const ONLY_REPLICAS = /^r[12] \(replica\)$/;

async function countRows(agent: Agent, node: WalshipNode, table: string): Promise<number> {
  const query = encodeURIComponent(`SELECT count(*) FROM "${table}"`);
  const { statusCode, body } = await request(`${urlOf(node)}/exec?query=${query}`, { dispatcher: agent });
  if (statusCode !== 200) throw new Error(`count(*) on ${urlOf(node)}: ${statusCode} ${await body.text()}`);
  return Number(((await body.json()) as { dataset: [[number]] }).dataset[0][0]);
}

/** Writes direct and through the router, alternating; then every acknowledged row is on the primary. */
async function measureWrites(
  agent: Agent,
  primary: WalshipNode,
  router: RunningRouter,
  trades: Trades,
): Promise<SetupFigures[]> {
  log(`writes: ${WRITE_CLIENTS} clients, ${WRITE_ROWS_PER_REQUEST}-row bodies, local acks`);
  const bodies = await ilpBodies(trades, WRITE_TABLE, WRITE_ROWS_PER_REQUEST, WRITE_BODIES);
  let next = 0;
  const writes = await alternate(
    [direct(primary, 'p'), routed('router write', router, /^p \(primary\)$/)],
    WRITE_CLIENTS,
    (setup, client) => writeOnce(agent, setup, client, bodies[next++ % bodies.length]!),
  );
  const rows = await countRows(agent, primary, WRITE_TABLE);
  const acked = writes.requests * WRITE_ROWS_PER_REQUEST;
  if (rows !== acked) throw new Error(`${WRITE_TABLE} holds ${rows} rows, ${acked} were acked`);
  return writes.figures;
}

function stalenessSeen(router: RunningRouter): string {
  return router.view.snapshot.nodes
    .filter((node) => node.role === 'replica')
    .map(
      (node) =>
        `${node.nodeId} ${node.stalenessMs === null ? 'unknown' : `${node.stalenessMs.toFixed(0)} ms`}`,
    )
    .join(', ');
}

async function measure(cluster: BenchCluster): Promise<Measured> {
  const { agent } = cluster;
  const primary = await cluster.start('primary', 'p');
  const trades = generateTrades(Math.max(SEED_ROWS, WRITE_ROWS_PER_REQUEST * WRITE_BODIES));
  const seed = await ilpBodies(
    trades,
    TRADES_TABLE,
    SEED_ROWS_PER_REQUEST,
    SEED_ROWS / SEED_ROWS_PER_REQUEST,
  );
  for (const body of seed) await writeOnce(agent, direct(primary, 'p'), 0, body);
  log(`seeded ${SEED_ROWS} rows into ${TRADES_TABLE}`);
  const read = (setup: Setup, client: number) => readOnce(agent, setup, client);

  const r1 = await cluster.startReplica('r1', primary, []);
  const router1 = await cluster.router([primary, r1]);
  const phase1 = await alternate(
    [direct(r1, 'r1'), routed('router, 1 replica', router1, ONLY_REPLICAS)],
    READ_CLIENTS,
    read,
  );

  const r2 = await cluster.startReplica('r2', primary, [r1]);
  const router2 = await cluster.router([primary, r1, r2]);
  const split: Setup = { name: 'direct r1+r2', urlFor: (client) => urlOf(client % 2 === 0 ? r1 : r2) };
  const phase2 = await alternate(
    [direct(r1, 'r1'), split, routed('router, 2 replicas', router2, ONLY_REPLICAS)],
    READ_CLIENTS,
    read,
  );
  const seen = stalenessSeen(router2);

  const [writeDirect, writeRouted] = (await measureWrites(agent, primary, router2, trades)) as [
    SetupFigures,
    SetupFigures,
  ];
  const [direct1, routed1] = phase1.figures as [SetupFigures, SetupFigures];
  const [direct1Again, direct2, routed2] = phase2.figures as [SetupFigures, SetupFigures, SetupFigures];
  return {
    catchUpMs: cluster.catchUpMs,
    direct1,
    routed1,
    direct1Again,
    direct2,
    routed2,
    writeDirect,
    writeRouted,
    stalenessSeen: seen,
  };
}

function rowsOf(m: Measured): BenchRow[] {
  const reads = { unit: 'queries/s' };
  const writes = { unit: 'writes/s' };
  const rate = (f: SetupFigures) => perSecond(f.loop.ops, f.loop.elapsedMs);
  return [
    ...comparedRows(
      { ...reads, measured: 'read via router (replica), 1 replica', baseline: 'direct to the replica' },
      m.routed1,
      m.direct1,
      `${READ_CLIENTS} clients; served by ${servedByText(m.routed1.servedBy)}`,
    ),
    ...comparedRows(
      {
        ...reads,
        measured: 'read via router (replica), 2 replicas',
        baseline: 'direct, clients split over both',
      },
      m.routed2,
      m.direct2,
      `${READ_CLIENTS} clients; served by ${servedByText(m.routed2.servedBy)}`,
    ),
    {
      name: 'read via router, 2 replicas: queries/s vs 1 replica direct',
      value: rate(m.routed2),
      unit: 'queries/s',
      better: 'higher',
      baselineName: 'direct to one replica (same phase)',
      baseline: rate(m.direct1Again),
      note: `direct to one replica ran ${rate(m.direct1).toFixed(0)}/s with one replica up, ${rate(m.direct1Again).toFixed(0)}/s with two`,
    },
    {
      name: 'read scale-out: 2 replicas via router vs 1 replica via router',
      value: rate(m.routed2),
      unit: 'queries/s',
      better: 'higher',
      baselineName: 'router, 1 replica (earlier phase)',
      baseline: rate(m.routed1),
      note: `direct: ${rate(m.direct2).toFixed(0)}/s split over both vs ${rate(m.direct1Again).toFixed(0)}/s to one`,
    },
    ...comparedRows(
      {
        ...writes,
        measured: `ILP /write ${WRITE_ROWS_PER_REQUEST} rows via router`,
        baseline: 'direct to the primary',
      },
      m.writeRouted,
      m.writeDirect,
      `${WRITE_CLIENTS} clients, local acks`,
    ),
  ];
}

export async function benchRouter(): Promise<BenchSuiteResult> {
  const loadAtStart = loadavg()[0]!;
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-router-'));
  const store = await FsStore.open({ root: path.join(dir, 'store') });
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: READ_CLIENTS });
  try {
    const cluster = new BenchCluster(dir, store, agent);
    const measured = await measure(cluster).finally(() => cluster.close());
    return {
      suite: 'router',
      context: {
        node: process.version,
        cores: availableParallelism(),
        store: 'fs (temporary dir)',
        nodes: `primary p (product defaults, 1 s window, local acks), replicas r1, r2 (poll 1 s, query.workers 2), in-process WalshipNodes`,
        router: `startRouter in-process, router.read.preference=replica, refresh ${ROUTER_REFRESH_INTERVAL_MS} ms`,
        query: `${QUERY} (${SEED_ROWS} rows seeded)`,
        runs: `${ROUNDS} × ${RUN_MS} ms per setup after ${WARMUP_MS} ms warm-up each, alternating; closed loops over undici keep-alive`,
        catchUpMs: measured.catchUpMs.map((ms) => ms.toFixed(0)).join(' / '),
        replicaStalenessSeenByRouter: measured.stalenessSeen,
        sharing: 'clients, router, nodes and SQLite share this process (queries run in query host processes)',
        loadAverage1m: `${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
      },
      rows: rowsOf(measured),
    };
  } finally {
    await agent.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
