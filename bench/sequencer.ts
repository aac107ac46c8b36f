/**
 * Several primaries (RFC-0003 "Cost per commit"), in one run, everything in this process:
 * 1. baselines: raw better-sqlite3 prepared INSERTs of trades rows (WAL, synchronous=FULL, one
 *    transaction per request's worth, as bench/ingest.ts measures it), raw 1-row transactions
 *    (synchronous=FULL: one fsync each, what an ungrouped commit would cost) and the fs store's
 *    create-only PUT of 4 KiB, p50/p99;
 * 2. sequencer commits/s of SqliteSequencerStore through `startSequencerServer` (HTTP on port 0,
 *    one HTTP client per writer, as each node holds one) and in-process (no HTTP): 1 and 8
 *    writers each committing 1-segment batches back to back (one batch in flight per writer,
 *    the protocol's rule), and 8 writers with 3-table batches; commit latency p50/p99 and the
 *    mean group size (commits per group transaction, from status().groups over the run);
 * 3. aggregate ILP/HTTP ingest with durable acks on the fs store: one single primary, and two
 *    sequenced writers behind the SQLite sequencer over HTTP, fed by the same total number of
 *    concurrent HTTP clients (split evenly) POSTing the same pre-encoded bodies of the same rows
 *    per request to the same table; rows/s and ack latency p50/p99 of each. The two setups
 *    alternate (A B A B, fresh store and nodes each time) and each one's runs are pooled, so
 *    drift in the machine hits both alike.
 * Every load is a closed loop: each worker sends its next request when the previous one answered.
 * Clients, servers, SQLite and uploads share this process and one event loop: the two writers do
 * not get a core each here, and each of them applies every row (its follower applies the other's
 * segments too), so the ingest ratio shows the protocol's cost, not scale-out.
 */
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createBuffer, SenderOptions } from '@questdb/nodejs-client';
import { pino } from 'pino';
import { seededRandom, systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/index.js';
import { stagedKey } from '../layout/index.js';
import { type NodeSettings, WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import type { PrimarySettings } from '../primary/index.js';
import { startSequencerServer } from '../sequencer/http-service.js';
import {
  type CommitRequest,
  openHttpSequencer,
  type SequencerStore,
  SqliteSequencerStore,
} from '../sequencer/index.js';
import { tableKey } from '../table/index.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import { evenTxnRows, openRawDb, putLatencies, rawInsertMs } from './baselines.js';
import { PRIMARY_PRODUCT_DEFAULTS } from './product-defaults.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';
import { encodeTradeRow, generateTrades, TRADES_TABLE, type Trades, timestampUsOf } from './trades.js';

// --- Bounds (the whole suite stays under ~90 s on 2 cores) ---------------------------------------

/** Rows of the raw INSERT baseline: enough for a steady rate in well under a second or two. */
const RAW_ROWS = 200_000;
/** 1-row fsync'd transactions of the raw commit baseline. */
const RAW_TXNS = 300;
/** Create-only 4 KiB PUTs of the store baseline. */
const PUT_SAMPLES = 300;
const PUT_BYTES = 4 * 1024;
/** Each commit run: unmeasured warm-up (connections, statements), then the measured window. */
const COMMIT_WARMUP_MS = 300;
const COMMIT_RUN_MS = 2_000;
/** Tables the commit runs spread 1-segment batches over; a 3-table batch holds all of them. */
const COMMIT_TABLES = ['bench_a', 'bench_b', 'bench_c'] as const;
/** Each ingest run: warm-up (tables created, uploads started), then the measured window. */
const INGEST_WARMUP_MS = 1_500;
const INGEST_RUN_MS = 3_000;
/** Runs of each ingest setup, alternating with the other's. */
const INGEST_ROUNDS = 2;
/** HTTP clients in flight at once per ingest run, split evenly over the nodes. */
const INGEST_CLIENTS = 8;
const ROWS_PER_REQUEST = 1_000;
/** Distinct pre-encoded bodies the clients cycle through (64 000 rows). */
const INGEST_BODIES = 64;
const INGEST_TABLE = TRADES_TABLE;
const SEQUENCED_WRITERS = 2;
/** The product's default `replication.sequencer.export.grace`. */
const EXPORT_GRACE_MS = 5_000;

/** The product's defaults (cli/config.ts), with durable acks: the same for both ingest setups. */
const INGEST_SETTINGS: Partial<PrimarySettings> = { ...PRIMARY_PRODUCT_DEFAULTS, ackMode: 'durable' };

const silent = pino({ level: process.env.WALSHIP_BENCH_LOG ?? 'silent' });
const log = (message: string) => process.stderr.write(`bench sequencer: ${message}\n`);

// --- Pure helpers (bench/sequencer.test.ts) ------------------------------------------------------

export interface ClosedLoopResult {
  /** Operations completed (every one of them inside `latenciesMs`). */
  ops: number;
  /** From the start until the last worker's last operation answered. */
  elapsedMs: number;
  latenciesMs: number[];
}

/**
 * `workers` loops, each calling `op(worker)` again as soon as its previous call resolved, until
 * `durationMs` has passed; the calls in flight then finish and count. A rejection ends the run.
 */
export async function closedLoop(
  workers: number,
  durationMs: number,
  op: (worker: number) => Promise<void>,
  nowMs: () => number = () => performance.now(),
): Promise<ClosedLoopResult> {
  const latenciesMs: number[] = [];
  const startedMs = nowMs();
  const deadlineMs = startedMs + durationMs;
  const worker = async (index: number) => {
    for (let at = nowMs(); at < deadlineMs; at = nowMs()) {
      await op(index);
      latenciesMs.push(nowMs() - at);
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, index) => worker(index)));
  return { ops: latenciesMs.length, elapsedMs: nowMs() - startedMs, latenciesMs };
}

/** `count` ILP bodies of `rowsPerRequest` consecutive rows of `t` each (ILP text, protocol 1). */
export async function ilpBodies(
  t: Trades,
  table: string,
  rowsPerRequest: number,
  count: number,
): Promise<Buffer[]> {
  if (t.count < rowsPerRequest * count)
    throw new Error(`${t.count} rows cannot fill ${count} bodies of ${rowsPerRequest}`);
  const options = await SenderOptions.fromConfig('http::addr=127.0.0.1:1;protocol_version=1;');
  const buffer = createBuffer(options);
  const bodies: Buffer[] = [];
  for (let body = 0; body < count; body++) {
    for (let row = body * rowsPerRequest; row < (body + 1) * rowsPerRequest; row++)
      encodeTradeRow(buffer, t, row, table).at(timestampUsOf(row), 'us');
    bodies.push(Buffer.from(buffer.toBufferNew()!));
  }
  return bodies;
}

/** A batch of `tables` 1-txn segments for writer `writer`, with real staged keys. */
export function commitRequest(
  writer: string,
  writerEpoch: bigint,
  batchSeq: bigint,
  tables: readonly string[],
): CommitRequest {
  return {
    writer,
    writerEpoch,
    batchSeq,
    segments: tables.map((name) => {
      const table = tableKey(name);
      return {
        table,
        staged: stagedKey(table, writer, writerEpoch, batchSeq),
        txnCount: 1,
        bytes: 4096,
        crc32: 0,
      };
    }),
  };
}

/** Several runs as one: operations and time add up, latencies pool. */
export function pooledLoops(loops: readonly ClosedLoopResult[]): ClosedLoopResult {
  return {
    ops: loops.reduce((sum, loop) => sum + loop.ops, 0),
    elapsedMs: loops.reduce((sum, loop) => sum + loop.elapsedMs, 0),
    latenciesMs: loops.flatMap((loop) => loop.latenciesMs),
  };
}

const perSecond = (count: number, ms: number) => (count / ms) * 1000;

// --- Baselines ----------------------------------------------------------------------------------

/** Raw prepared INSERTs of the trades rows, one transaction per ROWS_PER_REQUEST rows: rows/s. */
function rawInsertRowsPerSecond(file: string, t: Trades): number {
  return perSecond(t.count, rawInsertMs(file, t, evenTxnRows(t.count, ROWS_PER_REQUEST)));
}

/** Raw 1-row transactions, each its own fsync (synchronous=FULL): txns/s. */
function rawTxnsPerSecond(file: string): number {
  const db = openRawDb(file);
  try {
    db.exec('CREATE TABLE log (id INTEGER PRIMARY KEY, staged TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO log (staged) VALUES (?)');
    const started = performance.now();
    for (let i = 0; i < RAW_TXNS; i++) insert.run(`tables/bench/staged/${i}.seg`);
    return perSecond(RAW_TXNS, performance.now() - started);
  } finally {
    db.close();
  }
}

/** Create-only PUTs of 4 KiB into a fresh fs store, sequential: their latencies in ms. */
async function fsPutLatencies(root: string): Promise<number[]> {
  const store = await FsStore.open({ root });
  try {
    return await putLatencies(store, { samples: PUT_SAMPLES, bytes: PUT_BYTES });
  } finally {
    await store.close();
  }
}

// --- Sequencer commits ----------------------------------------------------------------------------

interface CommitRun {
  transport: 'http' | 'in-process';
  writers: number;
  tablesPerBatch: 1 | 3;
}

interface CommitFigures extends CommitRun {
  loop: ClosedLoopResult;
  groups: number;
}

/** The tables of writer `writer`'s batch `batchSeq`: 1-segment batches take turns over the tables. */
function batchTables(run: CommitRun, writer: number, batchSeq: bigint): readonly string[] {
  if (run.tablesPerBatch === 3) return COMMIT_TABLES;
  return [COMMIT_TABLES[(writer + Number(batchSeq % 3n)) % 3]!];
}

/** One closed-loop run on a fresh sequencer file; checks the heads add up to what was acked. */
async function commitRun(dir: string, run: CommitRun): Promise<CommitFigures> {
  const name = `${run.transport}-${run.writers}w-${run.tablesPerBatch}t`;
  const sqlite = SqliteSequencerStore.open({ path: path.join(dir, `sequencer-${name}.sqlite`) });
  const server =
    run.transport === 'http'
      ? await startSequencerServer(sqlite, { listen: { host: '127.0.0.1', port: 0 }, auth: {}, log: silent })
      : undefined;
  const clients: SequencerStore[] = [];
  try {
    await sqlite.initialize(`bench-${name}`, new Map());
    for (let w = 0; w < run.writers; w++)
      clients.push(
        server === undefined ? sqlite : await openHttpSequencer(`http::addr=127.0.0.1:${server.port};`),
      );
    const epochs = await Promise.all(clients.map((client, w) => client.registerWriter(`w${w}`)));
    const batchSeqs = clients.map(() => 0n);
    const op = async (w: number) => {
      const batchSeq = batchSeqs[w]! + 1n;
      batchSeqs[w] = batchSeq;
      await clients[w]!.commit(
        commitRequest(`w${w}`, epochs[w]!.epoch, batchSeq, batchTables(run, w, batchSeq)),
      );
    };
    await closedLoop(run.writers, COMMIT_WARMUP_MS, op);
    const groupsBefore = sqlite.status().groups;
    const loop = await closedLoop(run.writers, COMMIT_RUN_MS, op);
    const groups = sqlite.status().groups - groupsBefore;
    const committed = batchSeqs.reduce((sum, seq) => sum + seq, 0n) * BigInt(run.tablesPerBatch);
    const numbered = [...(await sqlite.heads()).tables.values()].reduce((sum, txn) => sum + txn, 0n);
    if (numbered !== committed)
      throw new Error(`${name}: the heads add up to ${numbered} txns, the writers were acked ${committed}`);
    return { ...run, loop, groups };
  } finally {
    if (server !== undefined) for (const client of clients) await client.close();
    await server?.close();
    await sqlite.close();
  }
}

// --- ILP ingest: one primary, then two sequenced writers -------------------------------------------

interface IngestFigures {
  nodes: number;
  loop: ClosedLoopResult;
}

const nodeDeps = () => ({ clock: systemClock, random: seededRandom(7), log: silent });

function nodeSettings(store: ObjectStore, dataDir: string, nodeId: string): NodeSettings {
  return testNodeSettings(store, dataDir, {
    primary: { ...INGEST_SETTINGS, nodeId },
    replica: { pollIntervalMs: 30, nodeId },
  });
}

async function postBody(port: number, body: Buffer): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  if (response.status !== 204)
    throw new Error(`POST /write on ${port}: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}

/** The closed loop of INGEST_CLIENTS clients over `ports` (client i → node i mod n); requests acked. */
async function ingestLoad(
  ports: number[],
  bodies: Buffer[],
): Promise<{ loop: ClosedLoopResult; requests: number }> {
  let next = 0;
  const op = (client: number) => postBody(ports[client % ports.length]!, bodies[next++ % bodies.length]!);
  const warm = await closedLoop(INGEST_CLIENTS, INGEST_WARMUP_MS, op);
  const loop = await closedLoop(INGEST_CLIENTS, INGEST_RUN_MS, op);
  return { loop, requests: warm.ops + loop.ops };
}

async function singlePrimaryIngest(dir: string, bodies: Buffer[]): Promise<IngestFigures> {
  const store = await FsStore.open({ root: path.join(dir, 'store-single') });
  try {
    const node = await WalshipNode.start(
      'primary',
      nodeSettings(store, path.join(dir, 'single'), 'p0'),
      nodeDeps(),
    );
    try {
      const { loop, requests } = await ingestLoad([node.httpPort], bodies);
      const rows = await countRows(node.httpPort, INGEST_TABLE);
      if (rows !== requests * ROWS_PER_REQUEST)
        throw new Error(`single primary holds ${rows} rows, ${requests * ROWS_PER_REQUEST} were acked`);
      return { nodes: 1, loop };
    } finally {
      await node.close();
    }
  } finally {
    await store.close();
  }
}

async function sequencedIngest(dir: string, bodies: Buffer[]): Promise<IngestFigures> {
  const store = await FsStore.open({ root: path.join(dir, 'store-sequenced') });
  const sqlite = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer-ingest.sqlite') });
  const server = await startSequencerServer(sqlite, {
    listen: { host: '127.0.0.1', port: 0 },
    auth: {},
    log: silent,
  });
  const clients: SequencerStore[] = [];
  const nodes: WalshipNode[] = [];
  const client = async () => {
    clients.push(await openHttpSequencer(`http::addr=127.0.0.1:${server.port};`));
    return clients.at(-1)!;
  };
  try {
    await initSequencedCluster({ store, sequencer: await client(), clock: systemClock });
    for (let i = 0; i < SEQUENCED_WRITERS; i++) {
      const settings = nodeSettings(store, path.join(dir, `writer-${i}`), `w${i}`);
      const sequenced = { sequencer: await client(), exportGraceMs: EXPORT_GRACE_MS };
      nodes.push(await WalshipNode.start('primary', { ...settings, sequenced }, nodeDeps()));
    }
    const { loop, requests } = await ingestLoad(
      nodes.map((node) => node.httpPort),
      bodies,
    );
    // Every acked request is one txn of the table, numbered once by the sequencer.
    const head = (await sqlite.heads()).tables.get(tableKey(INGEST_TABLE)) ?? 0n;
    if (head !== BigInt(requests))
      throw new Error(
        `the sequencer numbered ${head} txns of ${INGEST_TABLE}, ${requests} requests were acked`,
      );
    return { nodes: nodes.length, loop };
  } finally {
    for (const node of nodes.reverse()) await node.close();
    for (const c of clients) await c.close();
    await server.close();
    await sqlite.close();
    await store.close();
  }
}

/** Rows a node holds in `table`, through its own query API. */
async function countRows(port: number, table: string): Promise<number> {
  const query = encodeURIComponent(`SELECT count(*) FROM "${table}"`);
  const response = await fetch(`http://127.0.0.1:${port}/exec?query=${query}`);
  if (response.status !== 200)
    throw new Error(`count(*) on ${port}: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { dataset: [[number]] };
  return Number(body.dataset[0][0]);
}

// --- Rows -------------------------------------------------------------------------------------------

interface Measured {
  rawRowsPerSecond: number[];
  /** Before and after the runs; the faster counts. */
  rawTxnsPerSecond: number[];
  /** PUTs before and after the runs, pooled. */
  putMs: number[];
  commits: CommitFigures[];
  single: IngestFigures;
  sequenced: IngestFigures;
}

/** HTTP and in-process alternate, so drift in the machine hits a pair alike. */
const COMMIT_RUNS: CommitRun[] = [
  { transport: 'http', writers: 1, tablesPerBatch: 1 },
  { transport: 'in-process', writers: 1, tablesPerBatch: 1 },
  { transport: 'http', writers: 8, tablesPerBatch: 1 },
  { transport: 'in-process', writers: 8, tablesPerBatch: 1 },
  { transport: 'http', writers: 8, tablesPerBatch: 3 },
  { transport: 'in-process', writers: 8, tablesPerBatch: 3 },
];

async function measure(dir: string): Promise<Measured> {
  log(`baselines: raw INSERT of ${RAW_ROWS} rows, ${RAW_TXNS} fsync'd txns, ${PUT_SAMPLES} fs PUTs`);
  const t = generateTrades(RAW_ROWS);
  const rawRowsPerSecond = [rawInsertRowsPerSecond(path.join(dir, 'raw-1.sqlite'), t)];
  const rawTxns = [rawTxnsPerSecond(path.join(dir, 'raw-txns-1.sqlite'))];
  const putMs = await fsPutLatencies(path.join(dir, 'put-baseline'));
  const commits: CommitFigures[] = [];
  for (const run of COMMIT_RUNS) {
    const figures = await commitRun(dir, run);
    log(
      `commits ${run.transport}, ${run.writers} writers, ${run.tablesPerBatch}-table batches: ` +
        `${perSecond(figures.loop.ops, figures.loop.elapsedMs).toFixed(0)}/s`,
    );
    commits.push(figures);
  }
  const bodies = await ilpBodies(t, INGEST_TABLE, ROWS_PER_REQUEST, INGEST_BODIES);
  const singles: IngestFigures[] = [];
  const sequenceds: IngestFigures[] = [];
  for (let round = 1; round <= INGEST_ROUNDS; round++) {
    log(`ingest round ${round}: one primary, ${INGEST_CLIENTS} clients, durable`);
    singles.push(await singlePrimaryIngest(await mkdtemp(path.join(dir, 'single-')), bodies));
    log(
      `ingest round ${round}: ${SEQUENCED_WRITERS} sequenced writers, ${INGEST_CLIENTS / SEQUENCED_WRITERS} clients each`,
    );
    sequenceds.push(await sequencedIngest(await mkdtemp(path.join(dir, 'sequenced-')), bodies));
  }
  const pooled = (runs: IngestFigures[]) => ({
    nodes: runs[0]!.nodes,
    loop: pooledLoops(runs.map((r) => r.loop)),
  });
  const single = pooled(singles);
  const sequenced = pooled(sequenceds);
  // Again after the load, so drift in the machine hits both; the faster counts.
  rawRowsPerSecond.push(rawInsertRowsPerSecond(path.join(dir, 'raw-2.sqlite'), t));
  rawTxns.push(rawTxnsPerSecond(path.join(dir, 'raw-txns-2.sqlite')));
  putMs.push(...(await fsPutLatencies(path.join(dir, 'put-baseline-2'))));
  return { rawRowsPerSecond, rawTxnsPerSecond: rawTxns, putMs, commits, single, sequenced };
}

function commitRows(m: Measured): BenchRow[] {
  const rows: BenchRow[] = [];
  const inProcess = (run: CommitRun) =>
    m.commits.find(
      (c) =>
        c.transport === 'in-process' && c.writers === run.writers && c.tablesPerBatch === run.tablesPerBatch,
    )!;
  for (const c of m.commits) {
    const label = `sequencer ${c.transport === 'http' ? 'HTTP' : 'in-process'}, ${c.writers} writer${c.writers > 1 ? 's' : ''}, ${c.tablesPerBatch}-table batches`;
    const rate = perSecond(c.loop.ops, c.loop.elapsedMs);
    const vsInProcess =
      c.transport === 'http'
        ? `; ${(rate / perSecond(inProcess(c).loop.ops, inProcess(c).loop.elapsedMs)).toFixed(2)}x in-process`
        : '';
    rows.push({
      name: `${label}: commits/s`,
      value: rate,
      unit: 'commits/s',
      better: 'higher',
      baselineName: 'raw SQLite 1-row txn, synchronous=FULL (faster of 2 runs)',
      baseline: Math.max(...m.rawTxnsPerSecond),
      note: `${c.loop.ops} commits in ${(c.loop.elapsedMs / 1000).toFixed(1)} s, closed loop${vsInProcess}`,
    });
    for (const p of [50, 99])
      rows.push({
        name: `${label}: commit p${p}`,
        value: percentile(c.loop.latenciesMs, p),
        unit: 'ms',
        better: 'lower',
        baselineName: `fs create-only PUT 4 KiB p${p}`,
        baseline: percentile(m.putMs, p),
      });
    rows.push({
      name: `${label}: mean group size`,
      value: c.groups === 0 ? 0 : c.loop.ops / c.groups,
      unit: 'commits/group',
      better: 'higher',
      note: `${c.groups} groups (one fsync each), status().groups over the run`,
    });
  }
  return rows;
}

function ingestRows(m: Measured): BenchRow[] {
  const raw = Math.max(...m.rawRowsPerSecond);
  const rawName = `raw prepared INSERT, synchronous=FULL, txn per ${ROWS_PER_REQUEST} rows`;
  const rate = (f: IngestFigures) => perSecond(f.loop.ops * ROWS_PER_REQUEST, f.loop.elapsedMs);
  const setups: [string, IngestFigures][] = [
    ['1 primary', m.single],
    [`${SEQUENCED_WRITERS} sequenced writers`, m.sequenced],
  ];
  const rows: BenchRow[] = [];
  for (const [label, f] of setups) {
    rows.push({
      name: `ILP/HTTP ${label} (fs, durable): aggregate rows/s`,
      value: rate(f),
      unit: 'rows/s',
      better: 'higher',
      baselineName: rawName,
      baseline: raw,
      note:
        `${INGEST_CLIENTS} clients over ${f.nodes} node${f.nodes > 1 ? 's' : ''}, ${f.loop.ops} requests of ${ROWS_PER_REQUEST} rows; ` +
        `raw runs ${m.rawRowsPerSecond.map((r) => r.toFixed(0)).join(' / ')} rows/s, the faster counts`,
    });
    for (const p of [50, 99])
      rows.push({
        name: `ILP/HTTP ${label}: durable ack p${p}`,
        value: percentile(f.loop.latenciesMs, p),
        unit: 'ms',
        better: 'lower',
        baselineName: `fs create-only PUT 4 KiB p${p}`,
        baseline: percentile(m.putMs, p),
        note: `${ROWS_PER_REQUEST}-row request, ${INGEST_CLIENTS} in flight`,
      });
  }
  rows.push({
    name: `ILP/HTTP ${SEQUENCED_WRITERS} sequenced writers ÷ 1 primary`,
    value: rate(m.sequenced),
    unit: 'rows/s',
    better: 'higher',
    baselineName: '1 primary, same clients and bodies',
    baseline: rate(m.single),
    note: 'one process, one event loop: every writer also applies every row',
  });
  return rows;
}

export async function benchSequencer(): Promise<BenchSuiteResult> {
  const loadAtStart = loadavg()[0]!;
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-sequencer-'));
  try {
    const measured = await measure(dir);
    return {
      suite: 'sequencer',
      context: {
        node: process.version,
        cores: availableParallelism(),
        store: 'fs (temporary dir)',
        sequencer: 'SqliteSequencerStore (synchronous=FULL, group max 256), HTTP on 127.0.0.1',
        commitRuns: `${COMMIT_RUN_MS} ms each after ${COMMIT_WARMUP_MS} ms warm-up, fresh file each`,
        ingestRuns: `${INGEST_ROUNDS} × ${INGEST_RUN_MS} ms per setup, alternating, each after ${INGEST_WARMUP_MS} ms warm-up; ${INGEST_CLIENTS} fetch clients POSTing pre-encoded ILP`,
        sharing: 'clients, sequencer, nodes, SQLite and uploads share this process',
        loadAverage1m: `${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
      },
      rows: [...commitRows(measured), ...ingestRows(measured)],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
