/**
 * The replica (DESIGN §6), end to end through real nodes started in this process:
 * 1. apply rows/s: a primary (product defaults but a 1 s throttle window; segments are sealed on
 *    the 2 MiB rollover either way) takes ROWS trades rows from the official client over HTTP
 *    (10 000 rows a request) on the fs store, uploads everything and shuts down; then a replica
 *    with the product's defaults starts on an empty data dir and is timed from
 *    `ReplicaNode.start()` until its GET /status shows every table at the primary's committed txn
 *    (also as segments/s and store MB/s); its row count is checked through /exec. Baseline in the
 *    same run: raw better-sqlite3 prepared INSERTs of the same rows into the same-shaped table, one
 *    transaction per segment's rows (the replica applies a segment per transaction), same pragmas,
 *    run before and after the replica (the faster counts). Aim ≥ 0.8×.
 * 2. bootstrap: that replica publishes a snapshot (`node.snapshot()`); a fresh replica is timed
 *    from start to caught up (its `start()` resolves after the restore), beside the replay from
 *    the WAL of the same data (figure 1);
 * 3. requests/min of an idle replica: two fresh replicas over counting wrappers (`withMetrics`) of
 *    the same fs store, one at the default poll (1 s) and one at 100 ms, both with a 30 s sweep
 *    (the product's is 5 min: bench scale measures that), nothing written; counted over one sweep
 *    interval after catch-up (so the window holds the sweeps in their steady proportion), scaled
 *    to a minute, by request kind;
 * 4. commit-to-visible lag p50/p99 under a steady 20 000 rows/s (200-row requests every 10 ms,
 *    open loop, sent by fetch with bodies the official client encoded) to a `walship primary`
 *    child process (a primary and a replica are different nodes) with a 20 ms throttle window,
 *    followed by an in-process replica with a 20 ms poll, on fs and on a throwaway Ceph RGW. A
 *    sample is one request: from its 204 (where the writer reads the X-Walship-Txn commit token)
 *    until the replica's in-process `appliedTxn(table)` first reaches that txn, seen by a 1 ms
 *    interval probe (resolution ~1 ms; the probe never wakes the follower, unlike a read with
 *    X-Walship-Min-Txn would). The primary's share (until its GET /status shows the txn uploaded,
 *    read every ~10 ms) is shown beside it. Baseline in the same run: a create-only PUT then a GET
 *    of a segment-sized object (the run's mean segment size) through the same store, timed as one
 *    pair: the store round trips that any lag includes.
 * 5. the same lag under load (issue 16), on fs and RGW: a fresh primary (as in 4, on a store root of
 *    its own) with a replica following (as in 4), fed 10 000-row requests (32 bodies the official
 *    client encoded, cycled). First its maximum sustained rate: 4 closed loops, each a keep-alive
 *    connection of fetch's pool sending its next request when the previous one answered, 1.5 s
 *    unmeasured then 8 s measured, as rows/s beside figure 1's raw INSERT baseline (the lag at that
 *    rate, and how long the replica took to apply the rest after the last 204, in its note). Once
 *    the replica has applied all of it: requests open loop at 80 % of that rate (at most 8 in
 *    flight), 1 s unmeasured then 15 s measured, with the lag and its commit→uploaded share as in
 *    4, the rate achieved and the request latency; the store baseline is a PUT+GET of the mean
 *    size of this run's segments (its paced part only). Issue 16's aim: p99 ≤ 200 ms on fs.
 *
 * Client, nodes, SQLite and the store share this process (but the lag's primary) and the machine's
 * cores (with RGW's daemons, when booted). `WALSHIP_BENCH_SCALE=0.1` (a fraction in (0, 1])
 * scales rows and durations down for a quick run; the context shows the scale.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createBuffer, Sender, SenderOptions } from '@questdb/nodejs-client';
import { segmentPrefix, txnFirstOfSegmentKey } from '../layout/index.js';
import {
  FsStore,
  listAll,
  type ObjectStore,
  type StoreRequestEvent,
  withMetrics,
} from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import type { ReplicaNode, ReplicaSettings } from '../replica/index.js';
import { type TableKey, tableKey } from '../table/index.js';
import { startTestPrimary } from '../tests/helpers/test-primary.js';
import { startTestReplica } from '../tests/helpers/test-replica.js';
import { rawInsertMs } from './baselines.js';
import { PRIMARY_PRODUCT_DEFAULTS } from './product-defaults.js';
import { type BenchRow, type BenchSuiteResult, percentile, scaleFromEnv } from './report.js';
import { withBenchRgw } from './rgw.js';
import { closedLoop } from './sequencer.js';
import {
  encodeTradeRow,
  generateTrades,
  TRADE_COLUMNS,
  TRADES_TABLE,
  type Trades,
  timestampUsOf,
} from './trades.js';

const SCALE = scaleFromEnv();
const ROWS_PER_REQUEST = 10_000;
/** The bootstrap figure is asked for at 1 million rows; the apply figure replays the same data. Whole requests. */
const ROWS = Math.max(2, Math.round(100 * SCALE)) * ROWS_PER_REQUEST;
/** The lag load: 200 rows every 10 ms = 20 000 rows/s. */
const LAG_ROWS_PER_REQUEST = 200;
const LAG_REQUEST_EVERY_MS = 10;
/** Requests of the lag load in flight at most: enough to hold the rate while a commit takes longer than 10 ms. */
const LAG_IN_FLIGHT_MAX = 16;
/** Lag samples before this are dropped: the table is discovered (head.json, 1 s) and the loops warm up. */
const LAG_WARMUP_MS = 2_000;
const LAG_MEASURE_MS = Math.max(3_000, Math.round(15_000 * SCALE));
/** The pause between the lag run's GET /status reads of the primary (its uploaded watermark). */
const UPLOAD_STATUS_POLL_MS = 10;
/** How long the lag run waits for the last requests to become visible before it calls them lost. */
const LAG_DRAIN_MS = 10_000;
/** The fs and RGW settings the lag is asked for. */
const LAG_WINDOW_MS = 20;
const LAG_POLL_MS = 20;
/**
 * The loaded lag run (issue 16): requests of LOADED_ROWS_PER_REQUEST rows, first in
 * LOADED_CONNECTIONS closed loops (the maximum sustained rate), then open loop at
 * LOADED_RATE_FRACTION of that rate. Issue 16 asks p99 ≤ LOADED_AIM_P99_MS_FS on fs.
 */
const LOADED_ROWS_PER_REQUEST = 10_000;
/** Closed loops of the max-rate probe: each one request in flight, one keep-alive connection of fetch's pool. */
const LOADED_CONNECTIONS = 4;
/** Distinct pre-encoded bodies the loaded run cycles through: 320 000 rows, ~40 MB of ILP held at once. */
const LOADED_BODIES = 32;
/** The probe's unmeasured warm-up (connections, statements, the replica discovering the table), then its window. */
const MAX_RATE_WARMUP_MS = 1_500;
const MAX_RATE_MEASURE_MS = Math.max(2_000, Math.round(8_000 * SCALE));
const LOADED_RATE_FRACTION = 0.8;
/** The paced run's unmeasured start (the replica already follows the table), then its window. */
const LOADED_WARMUP_MS = 1_000;
const LOADED_MEASURE_MS = Math.max(3_000, Math.round(15_000 * SCALE));
/** Paced requests in flight at most: twice the probe's loops, so one slow commit does not close the loop. */
const LOADED_IN_FLIGHT_MAX = 2 * LOADED_CONNECTIONS;
/** How long the replica may take to apply what the probe committed before the paced run starts. */
const LOADED_CATCH_UP_MS = 30_000;
const LOADED_AIM_P99_MS_FS = 200;
/** PUT+GET pairs of the store baseline. */
const STORE_SAMPLES = 200;
/**
 * The idle window is one sweep long: a 30 s sweep, not the product's 5 min (cli/config.ts), which
 * would make this suite wait five minutes per poll interval. `bench scale` measures the product's.
 */
const IDLE_SWEEP_MS = 30_000;
const IDLE_WINDOW_MS = Math.max(5_000, Math.round(IDLE_SWEEP_MS * SCALE));
/** After catch-up the idle count starts this late: past the follower's hot-table span (2 s). */
const IDLE_SETTLE_MS = 2_500;
/** How often a caught-up wait reads GET /status. */
const STATUS_POLL_MS = 10;
const CATCH_UP_TIMEOUT_MS = 120_000;
/**
 * The throttle window of the primary that prepares the replayed data: segments are sealed on the
 * 2 MiB rollover during the ingest either way; 1 s (not the default 10 s) only bounds the wait for
 * the tail's upload.
 */
const PREPARE_WINDOW_MS = 1_000;

/** The replica's product defaults (cli/config.ts) where the test helpers use shorter test values. */
const REPLICA_DEFAULTS: Partial<ReplicaSettings> = {
  pollIntervalMs: 1_000,
  sweepIntervalMs: IDLE_SWEEP_MS,
  downloadConcurrency: 8,
  bootstrapFromSnapshot: true,
  readWaitMaxMs: 5_000,
  synchronous: 'FULL',
};

const TABLE_KEY = tableKey(TRADES_TABLE);

const log = (message: string) => process.stderr.write(`bench replicate: ${message}\n`);

// --- shared helpers ---

interface SegmentInfo {
  key: string;
  txnFirst: bigint;
  bytes: number;
}

/** The segments of table `key` in the store, in txn order. */
async function segmentsOf(store: ObjectStore, key: TableKey): Promise<SegmentInfo[]> {
  const out: SegmentInfo[] = [];
  for await (const info of listAll(store, segmentPrefix(key))) {
    const txnFirst = txnFirstOfSegmentKey(info.key);
    if (txnFirst !== undefined) out.push({ key: info.key, txnFirst, bytes: info.sizeBytes });
  }
  return out.sort((a, b) => (a.txnFirst < b.txnFirst ? -1 : 1));
}

/** Every table's committed txn on a primary, by name. */
function committedTxns(node: PrimaryNode): Map<string, bigint> {
  const { tables } = node.status() as { tables: { name: string; committedTxn: string }[] };
  return new Map(tables.map((t) => [t.name, BigInt(t.committedTxn)]));
}

/**
 * Waits until the primary's /status shows every table uploaded through its committed txn. Not
 * left to close(): its flush makes tables due once, and a table more than a segment behind then
 * waits out its window again for the rest (primary/uploader.ts `flush` / `#uploaded`).
 */
async function waitUploaded(node: PrimaryNode): Promise<void> {
  const deadline = performance.now() + CATCH_UP_TIMEOUT_MS;
  for (;;) {
    const { tables } = node.status() as { tables: { committedTxn: string; uploadedTxn: string }[] };
    if (tables.every((t) => t.uploadedTxn === t.committedTxn)) return;
    if (performance.now() > deadline) {
      throw new Error(`primary not uploaded after ${CATCH_UP_TIMEOUT_MS} ms: ${JSON.stringify(tables)}`);
    }
    await sleep(STATUS_POLL_MS);
  }
}

interface ReplicaTableStatus {
  name: string;
  appliedTxn: string;
  suspended: { code: string; message: string } | null;
}

/** Polls the replica's GET /status until every table of `targets` is applied through its txn; resolves then. */
async function waitCaughtUp(node: ReplicaNode, targets: Map<string, bigint>): Promise<void> {
  const deadline = performance.now() + CATCH_UP_TIMEOUT_MS;
  for (;;) {
    const response = await fetch(`http://127.0.0.1:${node.httpPort}/status`);
    const { tables } = (await response.json()) as { tables: ReplicaTableStatus[] };
    const applied = new Map(tables.map((t) => [t.name, t]));
    let caughtUp = true;
    for (const [name, txn] of targets) {
      const table = applied.get(name);
      if (table?.suspended) throw new Error(`replica suspended ${name}: ${table.suspended.message}`);
      if (table === undefined || BigInt(table.appliedTxn) < txn) caughtUp = false;
    }
    if (caughtUp) return;
    if (performance.now() > deadline) {
      throw new Error(`replica not caught up after ${CATCH_UP_TIMEOUT_MS} ms: ${JSON.stringify(tables)}`);
    }
    await sleep(STATUS_POLL_MS);
  }
}

/** A figure about rows is only worth its rows: the replica's own query API must count them all. */
async function expectRows(node: ReplicaNode, rows: number): Promise<void> {
  const query = encodeURIComponent(`SELECT count(*) FROM "${TRADES_TABLE}"`);
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/exec?query=${query}`);
  const body = (await response.json()) as { dataset?: [[number]] };
  const count = body.dataset?.[0]?.[0];
  if (response.status !== 200 || count !== rows) {
    throw new Error(`replica holds ${count} rows, not ${rows}: ${response.status} ${JSON.stringify(body)}`);
  }
}

const mb = (bytes: number) => bytes / 1e6;
const perSecond = (count: number, ms: number) => (count / ms) * 1000;

// --- 1 and 2: apply throughput, snapshot, bootstrap ---

interface ApplyMeasured {
  ingestMs: number;
  /** Until replica A's start() resolved (node set-up: database, query workers, HTTP; no snapshot to restore). */
  startMsA: number;
  segments: SegmentInfo[];
  txnRows: number[];
  rawMs: number[];
  applyMs: number;
  snapshotMs: number;
  snapshotBytes: number;
  snapshotRawBytes: number;
  restoreMs: number;
  bootstrapMs: number;
  bootstrapReplayedSegments: number;
}

/** The official client over HTTP, ROWS_PER_REQUEST rows a request; resolves at the last 204. */
async function ingest(port: number, t: Trades): Promise<number> {
  const sender = await Sender.fromConfig(
    `http::addr=127.0.0.1:${port};auto_flush_rows=${ROWS_PER_REQUEST};auto_flush_interval=0;`,
  );
  try {
    const started = performance.now();
    for (let row = 0; row < t.count; row++) {
      await encodeTradeRow(sender, t, row, TRADES_TABLE, row + 1).at(timestampUsOf(row), 'us');
    }
    await sender.flush();
    return performance.now() - started;
  } finally {
    await sender.close();
  }
}

/** The rows of each segment, in order: each request is one txn of ROWS_PER_REQUEST rows. */
function rowsPerSegment(segments: SegmentInfo[], committed: bigint): number[] {
  if (committed * BigInt(ROWS_PER_REQUEST) !== BigInt(ROWS)) {
    throw new Error(`expected one txn per request: ${committed} txns for ${ROWS} rows`);
  }
  return segments.map((s, i) => {
    const next = i + 1 < segments.length ? segments[i + 1]!.txnFirst : committed + 1n;
    return Number(next - s.txnFirst) * ROWS_PER_REQUEST;
  });
}

async function measureApply(dir: string, store: FsStore, t: Trades): Promise<ApplyMeasured> {
  log(`primary: ${ROWS} rows over ILP/HTTP`);
  const primary = await startTestPrimary(store, path.join(dir, 'primary'), {
    ...PRIMARY_PRODUCT_DEFAULTS,
    windowMs: PREPARE_WINDOW_MS,
  });
  let targets: Map<string, bigint>;
  let ingestMs: number;
  try {
    ingestMs = await ingest(primary.httpPort, t);
    targets = committedTxns(primary);
    await waitUploaded(primary);
  } finally {
    await primary.close();
  }
  const segments = await segmentsOf(store, TABLE_KEY);
  const txnRows = rowsPerSegment(segments, targets.get(TRADES_TABLE) ?? 0n);
  log(`${segments.length} segments; raw baseline`);
  const rawMs = [rawInsertMs(path.join(dir, 'raw-1.sqlite'), t, txnRows)];

  log('replica A: replay from the WAL');
  const startedA = performance.now();
  const replicaA = await startTestReplica(store, path.join(dir, 'replica-a'), REPLICA_DEFAULTS);
  const startMsA = performance.now() - startedA;
  try {
    await waitCaughtUp(replicaA, targets);
    const applyMs = performance.now() - startedA;
    await expectRows(replicaA, ROWS);
    log(`applied in ${applyMs.toFixed(0)} ms; raw baseline again`);
    rawMs.push(rawInsertMs(path.join(dir, 'raw-2.sqlite'), t, txnRows));

    log('replica A: snapshot');
    const snapshotStarted = performance.now();
    const manifest = await replicaA.snapshot();
    const snapshotMs = performance.now() - snapshotStarted;
    await replicaA.close(); // replica B has the machine to itself

    log('replica B: bootstrap from the snapshot');
    const startedB = performance.now();
    const replicaB = await startTestReplica(store, path.join(dir, 'replica-b'), REPLICA_DEFAULTS);
    try {
      const restoreMs = performance.now() - startedB;
      if (replicaB.restoredSnapshot?.id !== manifest.id) {
        throw new Error(
          `replica B restored ${replicaB.restoredSnapshot?.id ?? 'nothing'}, not ${manifest.id}`,
        );
      }
      await waitCaughtUp(replicaB, targets);
      const bootstrapMs = performance.now() - startedB;
      await expectRows(replicaB, ROWS);
      const { tables } = replicaB.status() as { tables: { segmentsApplied: number }[] };
      return {
        ingestMs,
        startMsA,
        segments,
        txnRows,
        rawMs,
        applyMs,
        snapshotMs,
        snapshotBytes: manifest.image.bytes,
        snapshotRawBytes: manifest.image.rawBytes,
        restoreMs,
        bootstrapMs,
        bootstrapReplayedSegments: tables.reduce((sum, table) => sum + table.segmentsApplied, 0),
      };
    } finally {
      await replicaB.close();
    }
  } finally {
    await replicaA.close();
  }
}

/** The suite's raw SQLite baseline (figure 1): the faster of its runs, as rows/s, with its name. */
interface RawBaseline {
  name: string;
  rowsPerSecond: number;
}

function rawBaselineOf(m: ApplyMeasured): RawBaseline {
  return {
    name: `raw prepared INSERT, synchronous=FULL, txn per segment's rows (mean ${Math.round(ROWS / m.segments.length)})`,
    rowsPerSecond: perSecond(ROWS, Math.min(...m.rawMs)),
  };
}

function applyRows(m: ApplyMeasured): BenchRow[] {
  const { name: rawName, rowsPerSecond: raw } = rawBaselineOf(m);
  const storeBytes = m.segments.reduce((sum, s) => sum + s.bytes, 0);
  const rawRuns = `raw runs ${m.rawMs.map((ms) => ms.toFixed(0)).join(' / ')} ms, the faster counts`;
  return [
    {
      name: 'replica apply from an empty data dir (fs, defaults)',
      value: perSecond(ROWS, m.applyMs),
      unit: 'rows/s',
      better: 'higher',
      baselineName: rawName,
      baseline: raw,
      note: `aim ≥ 0.8x; ${ROWS} rows in ${m.applyMs.toFixed(0)} ms, start() to /status caught up (start() itself ${m.startMsA.toFixed(0)} ms); ${rawRuns}`,
    },
    {
      name: 'replica apply, segments',
      value: perSecond(m.segments.length, m.applyMs),
      unit: 'segments/s',
      better: 'higher',
      note: `${m.segments.length} segments (2 MiB rollover, deflate 1)`,
    },
    {
      name: 'replica apply, store bytes',
      value: mb(storeBytes) / (m.applyMs / 1000),
      unit: 'MB/s',
      better: 'higher',
      note: `${mb(storeBytes).toFixed(1)} MB of segments`,
    },
    {
      name: 'primary ingest of the same rows (official client, for scale)',
      value: perSecond(ROWS, m.ingestMs),
      unit: 'rows/s',
      better: 'higher',
      baselineName: rawName,
      baseline: raw,
      note: `${ROWS / ROWS_PER_REQUEST} requests of ${ROWS_PER_REQUEST} rows`,
    },
    {
      name: `snapshot publish (replica A, ${ROWS} rows)`,
      value: m.snapshotMs,
      unit: 'ms',
      better: 'lower',
      note: `image ${mb(m.snapshotBytes).toFixed(1)} MB gzip of ${mb(m.snapshotRawBytes).toFixed(1)} MB SQLite`,
    },
    {
      name: `bootstrap replica B from the snapshot, start to caught up (${ROWS} rows)`,
      reference: 'restore from the object store: ~1.8 TiB in under 20 min (their hardware and data)',
      value: m.bootstrapMs,
      unit: 'ms',
      better: 'lower',
      baselineName: 'replay of the same data from the WAL (replica A)',
      baseline: m.applyMs,
      note: `restore (start() resolved) ${m.restoreMs.toFixed(0)} ms; ${m.bootstrapReplayedSegments} segments replayed after it`,
    },
  ];
}

// --- 3: requests of an idle replica ---

interface IdleCount {
  pollMs: number;
  byKind: Map<string, number>;
  windowMs: number;
}

function kindOf(event: StoreRequestEvent): string {
  const operation = event.operation === 'deleteMany' ? 'DELETE' : event.operation.toUpperCase();
  return event.outcome === 'ok' ? operation : `${operation} ${event.outcome}`;
}

async function measureIdle(dir: string, store: FsStore, targets: Map<string, bigint>): Promise<IdleCount[]> {
  const counters = [1_000, 100].map((pollMs) => ({
    pollMs,
    counting: false,
    byKind: new Map<string, number>(),
  }));
  const replicas: ReplicaNode[] = [];
  try {
    for (const counter of counters) {
      const counted = withMetrics(store, (event) => {
        if (!counter.counting) return;
        const kind = kindOf(event);
        counter.byKind.set(kind, (counter.byKind.get(kind) ?? 0) + 1);
      });
      const node = await startTestReplica(counted, path.join(dir, `replica-idle-${counter.pollMs}`), {
        ...REPLICA_DEFAULTS,
        pollIntervalMs: counter.pollMs,
      });
      replicas.push(node);
    }
    await Promise.all(replicas.map((node) => waitCaughtUp(node, targets)));
    await sleep(IDLE_SETTLE_MS);
    log(`idle replicas: counting requests for ${IDLE_WINDOW_MS} ms`);
    for (const counter of counters) counter.counting = true;
    const started = performance.now();
    await sleep(IDLE_WINDOW_MS);
    for (const counter of counters) counter.counting = false;
    const windowMs = performance.now() - started;
    return counters.map((c) => ({ pollMs: c.pollMs, byKind: c.byKind, windowMs }));
  } finally {
    for (const node of replicas) await node.close();
  }
}

function idleRows(counts: IdleCount[], tables: number): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const { pollMs, byKind, windowMs } of counts) {
    const perMinute = (n: number) => (n / windowMs) * 60_000;
    const total = [...byKind.values()].reduce((sum, n) => sum + n, 0);
    const label = `idle replica, poll ${pollMs} ms, sweep ${IDLE_SWEEP_MS / 1000} s`;
    const breakdown = [...byKind.entries()]
      .sort()
      .map(([kind, n]) => `${kind} ${perMinute(n).toFixed(1)}`)
      .join(', ');
    rows.push({
      name: `${label}: store requests`,
      reference: 'QuestDB polls the store every 1 s by default (replication.replica.poll.interval)',
      value: perMinute(total),
      unit: 'req/min',
      better: 'lower',
      note:
        `${total} requests in ${(windowMs / 1000).toFixed(1)} s (fs store, ${tables} table), per minute: ${breakdown}; ` +
        `expected ≈ ${Math.round(60_000 / pollMs)}/min of polls plus sweeps`,
    });
  }
  return rows;
}

// --- 4: commit-to-visible lag ---

interface LagMeasured {
  label: string;
  lagMs: number[];
  /** Requests already applied when their 204 was read (counted as 0 ms lag). */
  visibleBefore204: number;
  lost: number;
  /** From the 204 until the primary's /status showed the txn uploaded. */
  uploadMs: number[];
  sent: SteadySend;
  segmentBytes: number;
  segments: number;
  pairMs: number[];
  putMs: number[];
  getMs: number[];
}

/** The ILP bodies of a lag run, `rowsPerRequest` rows each, encoded by the official client (no encoding in the timed loop). */
async function lagBodies(port: number, count: number, rowsPerRequest: number): Promise<Buffer[]> {
  const options = await SenderOptions.fromConfig(`http::addr=127.0.0.1:${port};`);
  const buffer = createBuffer(options);
  const t = generateTrades(count * rowsPerRequest, 7);
  const bodies: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < rowsPerRequest; j++) {
      const row = i * rowsPerRequest + j;
      encodeTradeRow(buffer, t, row, TRADES_TABLE, row + 1).at(timestampUsOf(row), 'us');
    }
    bodies.push(buffer.toBufferNew()!);
  }
  return bodies;
}

/** The txn this request committed to the trades table, from its X-Walship-Txn (`key=txn,…`). */
function committedTxnOf(header: string | null): bigint {
  for (const part of (header ?? '').split(',')) {
    const [key, txn] = part.split('@')[0]!.split('=');
    if (key === TABLE_KEY && txn !== undefined) return BigInt(txn);
  }
  throw new Error(`the 204 names no txn of ${TABLE_KEY} (X-Walship-Txn: ${header})`);
}

/**
 * Lag of txns to a watermark: each registered txn (the 204 of its request read at `atMs`) resolves
 * at the first `advance` whose watermark reaches it. Answers of concurrent requests arrive in any
 * order, so every pending txn is checked.
 */
class WatermarkLag {
  readonly lagMs: number[] = [];
  /** Measured txns the watermark had already reached when their 204 was read (counted as 0 ms). */
  reachedBefore204 = 0;
  #pending: { txn: bigint; atMs: number; measured: boolean }[] = [];
  #mark = 0n;

  register(txn: bigint, atMs: number, measured: boolean): void {
    if (this.#mark >= txn) {
      if (measured) {
        this.lagMs.push(0);
        this.reachedBefore204++;
      }
      return;
    }
    this.#pending.push({ txn, atMs, measured });
  }

  advance(mark: bigint, nowMs: number): void {
    if (mark <= this.#mark) return;
    this.#mark = mark;
    let kept = 0;
    for (const sample of this.#pending) {
      if (sample.txn > mark) this.#pending[kept++] = sample;
      else if (sample.measured) this.lagMs.push(nowMs - sample.atMs);
    }
    this.#pending.length = kept;
  }

  get pending(): number {
    return this.#pending.length;
  }

  get lost(): number {
    return this.#pending.filter((p) => p.measured).length;
  }
}

/**
 * Watches, per request, two watermarks: the replica's applied txn, read in-process every ~1 ms
 * (no request, so the follower's own cadence is untouched), and the primary's uploaded txn, read
 * from its GET /status in a loop (each answer's arrival counts): the lag splits into the primary's
 * share (commit → segment in the store) and the rest (store → applied on the replica).
 */
function lagProbes(replica: ReplicaNode, primaryPort: number) {
  const visible = new WatermarkLag();
  const uploaded = new WatermarkLag();
  const timer = setInterval(() => visible.advance(replica.appliedTxn(TABLE_KEY), performance.now()), 1);
  let stopped = false;
  const statusLoop = (async () => {
    while (!stopped) {
      const response = await fetch(`http://127.0.0.1:${primaryPort}/status`);
      const { tables } = (await response.json()) as { tables: { name: string; uploadedTxn: string }[] };
      const txn = tables.find((t) => t.name === TRADES_TABLE)?.uploadedTxn;
      if (txn !== undefined) uploaded.advance(BigInt(txn), performance.now());
      await sleep(UPLOAD_STATUS_POLL_MS);
    }
  })();
  return {
    visible,
    uploaded,
    register(txn: bigint, atMs: number, measured: boolean) {
      uploaded.register(txn, atMs, measured);
      visible.register(txn, atMs, measured);
    },
    async stop() {
      clearInterval(timer);
      visible.advance(replica.appliedTxn(TABLE_KEY), performance.now());
      stopped = true;
      await statusLoop;
    },
  };
}

/** Called with each 204's txn, the time it was read, and whether its request is past the warm-up. */
type OnAnswer = (txn: bigint, atMs: number, measured: boolean) => void;

/** POSTs one ILP body; the txn its 204 names and when the 204 was read. */
async function postWrite(url: string, body: Buffer): Promise<{ txn: bigint; atMs: number }> {
  const response = await fetch(url, { method: 'POST', body });
  const atMs = performance.now();
  if (response.status !== 204) throw new Error(`POST /write: ${response.status} ${await response.text()}`);
  return { txn: committedTxnOf(response.headers.get('x-walship-txn')), atMs };
}

/** An open-loop schedule: a request every `everyMs`, at most `inFlightMax` unanswered. */
interface Pace {
  everyMs: number;
  inFlightMax: number;
  rowsPerRequest: number;
  /** Requests due before this are sent but not measured. */
  warmupMs: number;
}

/** The steady lag load (figure 4): 200 rows every 10 ms. */
const LAG_PACE: Pace = {
  everyMs: LAG_REQUEST_EVERY_MS,
  inFlightMax: LAG_IN_FLIGHT_MAX,
  rowsPerRequest: LAG_ROWS_PER_REQUEST,
  warmupMs: LAG_WARMUP_MS,
};

interface SteadySend {
  rowsPerSecond: number;
  maxInFlight: number;
  /** The furthest a request was sent after its slot (a busy loop, or the in-flight cap reached). */
  behindMaxMs: number;
  /** POST → 204 of each measured request. */
  requestMs: number[];
}

/**
 * Sends `bodies` open loop: request i at `i × pace.everyMs` from the start whatever the earlier
 * answers (a commit may take longer than the interval), at most `pace.inFlightMax` at once.
 */
async function sendSteady(
  url: string,
  bodies: readonly Buffer[],
  pace: Pace,
  onAnswer: OnAnswer,
): Promise<SteadySend> {
  const inFlight = new Set<Promise<void>>();
  const requestMs: number[] = [];
  let maxInFlight = 0;
  let behindMaxMs = 0;
  let failure: Error | undefined;
  const started = performance.now();
  for (const [i, body] of bodies.entries()) {
    const due = started + i * pace.everyMs;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    while (inFlight.size >= pace.inFlightMax) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
    const sentAt = performance.now();
    behindMaxMs = Math.max(behindMaxMs, sentAt - due);
    const measured = due - started >= pace.warmupMs;
    const request = (async () => {
      const { txn, atMs } = await postWrite(url, body);
      if (measured) requestMs.push(atMs - sentAt);
      onAnswer(txn, atMs, measured);
    })()
      .catch((error: unknown) => {
        failure ??= error as Error;
      })
      .finally(() => inFlight.delete(request));
    inFlight.add(request);
    maxInFlight = Math.max(maxInFlight, inFlight.size);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  const ms = performance.now() - started;
  return {
    rowsPerSecond: perSecond(bodies.length * pace.rowsPerRequest, ms),
    maxInFlight,
    behindMaxMs,
    requestMs,
  };
}

/** Waits (up to `timeoutMs`) until no registered txn is pending on `lag`; the ms it waited. */
async function waitDrained(lag: WatermarkLag, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (lag.pending > 0 && performance.now() - started < timeoutMs) await sleep(10);
  return performance.now() - started;
}

/** PUT (create-only, as the uploader does) then GET of an object of `bytes`, timed per op and per pair. */
async function storeRoundTrips(store: ObjectStore, bytes: number) {
  const body = new Uint8Array(bytes).map((_, i) => (i * 7919) & 0xff);
  const prefix = `bench/rt-${Date.now().toString(36)}`;
  const putMs: number[] = [];
  const getMs: number[] = [];
  const pairMs: number[] = [];
  for (let i = 0; i < STORE_SAMPLES; i++) {
    const started = performance.now();
    await store.put(`${prefix}/${i}`, body, { condition: { type: 'absent' } });
    const put = performance.now();
    await store.get(`${prefix}/${i}`);
    const done = performance.now();
    putMs.push(put - started);
    getMs.push(done - put);
    pairMs.push(done - started);
  }
  return { putMs, getMs, pairMs };
}

interface ChildPrimary {
  httpPort: number;
  /** SIGTERM (the node uploads what is pending and closes), then wait for the exit. */
  stop(): Promise<void>;
}

/**
 * `walship primary` from dist/ as a child process: a primary and a replica are different nodes,
 * and in one process the primary's synchronous commits would stall the replica's loop (and the
 * other way round). Its stdout is read for the listening line; the rest is kept for errors.
 */
async function spawnPrimary(args: string[]): Promise<ChildPrimary> {
  const bin = fileURLToPath(new URL('../cli/bin.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'primary', ...args], {
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('did not print its listening line in 60 s')), 60_000);
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`walship primary: ${error.message}\n${output}`));
    };
    const check = () => {
      const match = /listening: http (\d+)/.exec(output);
      if (match === null) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      resolve(Number(match[1]));
    };
    child.stdout.on('data', check);
    void exited.then((code) => fail(new Error(`exited with ${code}`)));
  });
  return {
    httpPort: port,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`walship primary exited with ${code}:\n${output}`);
    },
  };
}

/** The lag runs' primary: `walship primary` as a child, the lag's throttle window, on `storeArg`. */
function spawnLagPrimary(dataDir: string, storeArg: string): Promise<ChildPrimary> {
  return spawnPrimary([
    `--replication.object.store=${storeArg}`,
    `--node.data.dir=${dataDir}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    `--replication.primary.throttle.window.duration=${LAG_WINDOW_MS}ms`,
    '--log.level=warn',
  ]);
}

/** What the lag probes saw of the measured requests. */
type LagSeen = Pick<LagMeasured, 'lagMs' | 'visibleBefore204' | 'lost' | 'uploadMs'>;

function seenBy(probe: ReturnType<typeof lagProbes>): LagSeen {
  return {
    lagMs: probe.visible.lagMs,
    visibleBefore204: probe.visible.reachedBefore204,
    lost: probe.visible.lost,
    uploadMs: probe.uploaded.lagMs,
  };
}

/** Mean size of `segments` (bytes) and the store round trips of that size: the lag's baseline. */
async function segmentBaseline(label: string, store: ObjectStore, segments: SegmentInfo[]) {
  const segmentBytes = Math.round(segments.reduce((sum, s) => sum + s.bytes, 0) / segments.length);
  log(`${label}: store round trips of ${segmentBytes} bytes`);
  const trips = await storeRoundTrips(store, segmentBytes);
  return { segmentBytes, segments: segments.length, ...trips };
}

async function measureLag(
  dir: string,
  label: string,
  storeArg: string,
  openStore: () => Promise<ObjectStore>,
): Promise<LagMeasured> {
  const replicaStore = await openStore();
  try {
    const primary = await spawnLagPrimary(path.join(dir, `lag-${label}-primary`), storeArg);
    let sent: SteadySend;
    let seen: LagSeen;
    try {
      const requests = Math.ceil((LAG_WARMUP_MS + LAG_MEASURE_MS) / LAG_REQUEST_EVERY_MS);
      const bodies = await lagBodies(primary.httpPort, requests, LAG_ROWS_PER_REQUEST);
      const replica = await startTestReplica(replicaStore, path.join(dir, `lag-${label}-replica`), {
        ...REPLICA_DEFAULTS,
        pollIntervalMs: LAG_POLL_MS,
      });
      try {
        const probe = lagProbes(replica, primary.httpPort);
        log(
          `${label}: ${requests} requests of ${LAG_ROWS_PER_REQUEST} rows every ${LAG_REQUEST_EVERY_MS} ms`,
        );
        const url = `http://127.0.0.1:${primary.httpPort}/write`;
        sent = await sendSteady(url, bodies, LAG_PACE, (txn, atMs, measured) =>
          probe.register(txn, atMs, measured),
        );
        await waitDrained(probe.visible, LAG_DRAIN_MS);
        await probe.stop();
        seen = seenBy(probe);
      } finally {
        await replica.close();
      }
    } finally {
      await primary.stop();
    }
    const segments = await segmentsOf(replicaStore, TABLE_KEY);
    return { label, ...seen, sent, ...(await segmentBaseline(label, replicaStore, segments)) };
  } finally {
    await replicaStore.close();
  }
}

/** QuestDB's published lag (../shared/reference/questdb-replication.md). */
const LAG_REFERENCE =
  'under 200 ms only on NFS with 256 KiB segments, 50 ms window and 50 ms poll; under 500 ms at 100 ms; ~10 s with defaults';

function lagRows(m: LagMeasured, aimP99Ms: number): BenchRow[] {
  const kib = `${(m.segmentBytes / 1024).toFixed(1)} KiB`;
  const settings = `window ${LAG_WINDOW_MS} ms, poll ${LAG_POLL_MS} ms`;
  const load =
    `${m.lagMs.length} samples at ${m.sent.rowsPerSecond.toFixed(0)} rows/s sent (${LAG_ROWS_PER_REQUEST}-row requests every ${LAG_REQUEST_EVERY_MS} ms, ` +
    `open loop, ≤ ${m.sent.maxInFlight} in flight, at most ${m.sent.behindMaxMs.toFixed(0)} ms behind schedule)`;
  const rows: BenchRow[] = [50, 99].map((p) => ({
    name: `${m.label} commit→visible lag p${p} (${settings})`,
    value: percentile(m.lagMs, p),
    unit: 'ms',
    better: 'lower' as const,
    baselineName: `${m.label} create-only PUT + GET of ${kib} p${p}`,
    baseline: percentile(m.pairMs, p),
    reference: LAG_REFERENCE,
    note:
      p === 99
        ? `aim ≤ ${aimP99Ms} ms; PUT alone p99 ${percentile(m.putMs, 99).toFixed(2)} ms, GET alone p99 ${percentile(m.getMs, 99).toFixed(2)} ms`
        : `${load}; PUT alone p50 ${percentile(m.putMs, 50).toFixed(2)} ms, GET alone p50 ${percentile(m.getMs, 50).toFixed(2)} ms, ${STORE_SAMPLES} pairs`,
  }));
  rows.push({
    name: `${m.label} commit→visible lag max`,
    value: Math.max(...m.lagMs),
    unit: 'ms',
    better: 'lower',
    note:
      `${m.segments} segments of ${kib} mean; ${m.visibleBefore204} requests visible before their 204 was read (0 ms); ` +
      `${m.lost} not visible within ${LAG_DRAIN_MS} ms of the last request`,
  });
  rows.push(
    ...[50, 99].map((p) => ({
      name: `${m.label} of which commit→uploaded (primary /status) p${p}`,
      value: percentile(m.uploadMs, p),
      unit: 'ms',
      better: 'lower' as const,
      note: `${m.uploadMs.length} samples; the primary's share of the lag (window, seal, PUT), read over HTTP every ~${UPLOAD_STATUS_POLL_MS} ms`,
    })),
  );
  return rows;
}

// --- 5: commit-to-visible lag at 80 % of the maximum sustained rate ---

interface MaxRate {
  rowsPerSecond: number;
  requests: number;
  /** POST → 204 of each measured request. */
  requestMs: number[];
}

interface LoadedLagMeasured extends LagMeasured {
  maxRate: MaxRate;
  /** The lag (figure 4's probes) of the probe's measured requests: at the maximum rate. */
  atMax: LagSeen;
  /** From the probe's last 204 until the replica had applied every txn the probe committed. */
  catchUpMs: number;
  /** The paced run's schedule: LOADED_RATE_FRACTION of the maximum rate. */
  targetRowsPerSecond: number;
  everyMs: number;
}

/**
 * LOADED_CONNECTIONS closed loops POSTing `bodies` in turn, each its next request when the previous
 * one answered: unmeasured for MAX_RATE_WARMUP_MS, then measured for MAX_RATE_MEASURE_MS.
 */
async function probeMaxRate(url: string, bodies: readonly Buffer[], onAnswer: OnAnswer): Promise<MaxRate> {
  let next = 0;
  const loop = (measured: boolean) => async () => {
    const { txn, atMs } = await postWrite(url, bodies[next++ % bodies.length]!);
    onAnswer(txn, atMs, measured);
  };
  await closedLoop(LOADED_CONNECTIONS, MAX_RATE_WARMUP_MS, loop(false));
  const measured = await closedLoop(LOADED_CONNECTIONS, MAX_RATE_MEASURE_MS, loop(true));
  return {
    rowsPerSecond: perSecond(measured.ops * LOADED_ROWS_PER_REQUEST, measured.elapsedMs),
    requests: measured.ops,
    requestMs: measured.latenciesMs,
  };
}

/**
 * On one primary with one replica following: the max-rate probe, a wait until the replica has
 * applied all of it, then the paced run at LOADED_RATE_FRACTION of the probe's rate. The txn
 * the replica had applied before the paced run tells its segments from the probe's.
 */
async function loadedRuns(label: string, replica: ReplicaNode, primaryPort: number, bodies: Buffer[]) {
  const url = `http://127.0.0.1:${primaryPort}/write`;
  log(
    `${label}: max rate, ${LOADED_CONNECTIONS} closed loops of ${LOADED_ROWS_PER_REQUEST}-row requests, ${MAX_RATE_WARMUP_MS} + ${MAX_RATE_MEASURE_MS} ms`,
  );
  const atMax = lagProbes(replica, primaryPort);
  const maxRate = await probeMaxRate(url, bodies, (txn, atMs, measured) =>
    atMax.register(txn, atMs, measured),
  );
  const catchUpMs = await waitDrained(atMax.visible, LOADED_CATCH_UP_MS);
  await atMax.stop();
  if (atMax.visible.pending > 0)
    throw new Error(
      `${label}: the replica did not apply the max-rate probe's txns in ${LOADED_CATCH_UP_MS} ms`,
    );
  const txnBefore = replica.appliedTxn(TABLE_KEY);

  const targetRowsPerSecond = maxRate.rowsPerSecond * LOADED_RATE_FRACTION;
  const pace: Pace = {
    everyMs: (LOADED_ROWS_PER_REQUEST / targetRowsPerSecond) * 1000,
    inFlightMax: LOADED_IN_FLIGHT_MAX,
    rowsPerRequest: LOADED_ROWS_PER_REQUEST,
    warmupMs: LOADED_WARMUP_MS,
  };
  const requests = Math.ceil((LOADED_WARMUP_MS + LOADED_MEASURE_MS) / pace.everyMs);
  log(
    `${label}: max ${maxRate.rowsPerSecond.toFixed(0)} rows/s, caught up in ${catchUpMs.toFixed(0)} ms; ` +
      `${requests} requests every ${pace.everyMs.toFixed(1)} ms`,
  );
  const probe = lagProbes(replica, primaryPort);
  const scheduled = Array.from({ length: requests }, (_, i) => bodies[i % bodies.length]!);
  const sent = await sendSteady(url, scheduled, pace, (txn, atMs, measured) =>
    probe.register(txn, atMs, measured),
  );
  await waitDrained(probe.visible, LAG_DRAIN_MS);
  await probe.stop();
  return {
    maxRate,
    atMax: seenBy(atMax),
    catchUpMs,
    targetRowsPerSecond,
    everyMs: pace.everyMs,
    txnBefore,
    sent,
    seen: seenBy(probe),
  };
}

/** Figure 5 on a fresh primary and store root (figure 4's settings); its store baseline is of the paced run's segments. */
async function measureLoadedLag(
  dir: string,
  label: string,
  storeArg: string,
  openStore: () => Promise<ObjectStore>,
): Promise<LoadedLagMeasured> {
  const replicaStore = await openStore();
  try {
    const primary = await spawnLagPrimary(path.join(dir, `loaded-${label}-primary`), storeArg);
    let run: Awaited<ReturnType<typeof loadedRuns>>;
    try {
      const bodies = await lagBodies(primary.httpPort, LOADED_BODIES, LOADED_ROWS_PER_REQUEST);
      const replica = await startTestReplica(replicaStore, path.join(dir, `loaded-${label}-replica`), {
        ...REPLICA_DEFAULTS,
        pollIntervalMs: LAG_POLL_MS,
      });
      try {
        run = await loadedRuns(label, replica, primary.httpPort, bodies);
      } finally {
        await replica.close();
      }
    } finally {
      await primary.stop();
    }
    const { seen, txnBefore, ...figures } = run;
    const segments = (await segmentsOf(replicaStore, TABLE_KEY)).filter((s) => s.txnFirst > txnBefore);
    return { label, ...seen, ...figures, ...(await segmentBaseline(label, replicaStore, segments)) };
  } finally {
    await replicaStore.close();
  }
}

/** Percentile `p` of `samples` (ms) for a note, whole ms. */
const wholeMsAt = (samples: readonly number[], p: number) => percentile(samples, p).toFixed(0);

function loadedLagRows(m: LoadedLagMeasured, raw: RawBaseline, aimP99Ms: number | undefined): BenchRow[] {
  const kib = `${(m.segmentBytes / 1024).toFixed(1)} KiB`;
  const fraction = `${LOADED_RATE_FRACTION * 100} %`;
  const at = `at ${fraction} of max rate (${m.targetRowsPerSecond.toFixed(0)} rows/s)`;
  const max = `max rate ${m.maxRate.rowsPerSecond.toFixed(0)} rows/s`;
  const load =
    `${m.lagMs.length} samples; ${m.sent.rowsPerSecond.toFixed(0)} rows/s sent (${LOADED_ROWS_PER_REQUEST}-row requests every ${m.everyMs.toFixed(1)} ms, ` +
    `open loop, ≤ ${m.sent.maxInFlight} in flight, at most ${m.sent.behindMaxMs.toFixed(0)} ms behind schedule), ` +
    `request p50 ${wholeMsAt(m.sent.requestMs, 50)} ms, p99 ${wholeMsAt(m.sent.requestMs, 99)} ms; window ${LAG_WINDOW_MS} ms, poll ${LAG_POLL_MS} ms`;
  const rows: BenchRow[] = [
    {
      name: `${m.label} primary max sustained ingest (${LOADED_ROWS_PER_REQUEST}-row requests, ${LOADED_CONNECTIONS} connections, window ${LAG_WINDOW_MS} ms)`,
      value: m.maxRate.rowsPerSecond,
      unit: 'rows/s',
      better: 'higher',
      baselineName: raw.name,
      baseline: raw.rowsPerSecond,
      note:
        `${m.maxRate.requests} requests in ${MAX_RATE_MEASURE_MS} ms after ${MAX_RATE_WARMUP_MS} ms warm-up, closed loops, a replica following; ` +
        `request p50 ${wholeMsAt(m.maxRate.requestMs, 50)} ms, p99 ${wholeMsAt(m.maxRate.requestMs, 99)} ms; ` +
        `lag at this rate p50 ${wholeMsAt(m.atMax.lagMs, 50)} ms, p99 ${wholeMsAt(m.atMax.lagMs, 99)} ms, replica done ${m.catchUpMs.toFixed(0)} ms after the last 204`,
    },
  ];
  rows.push(
    ...[50, 99].map((p) => ({
      name: `${m.label} commit→visible lag p${p} ${at}`,
      value: percentile(m.lagMs, p),
      unit: 'ms',
      better: 'lower' as const,
      baselineName: `${m.label} create-only PUT + GET of ${kib} p${p}`,
      baseline: percentile(m.pairMs, p),
      note:
        p === 99
          ? `${aimP99Ms === undefined ? 'no aim set' : `aim ≤ ${aimP99Ms} ms (issue 16)`}; ${max}; PUT alone p99 ${percentile(m.putMs, 99).toFixed(2)} ms, GET alone p99 ${percentile(m.getMs, 99).toFixed(2)} ms`
          : `${max}; ${load}; PUT alone p50 ${percentile(m.putMs, 50).toFixed(2)} ms, GET alone p50 ${percentile(m.getMs, 50).toFixed(2)} ms, ${STORE_SAMPLES} pairs`,
    })),
  );
  rows.push(
    {
      name: `${m.label} commit→visible lag max ${at}`,
      value: Math.max(...m.lagMs),
      unit: 'ms',
      better: 'lower',
      note:
        `${max}; ${m.segments} segments of ${kib} mean; ${m.visibleBefore204} requests visible before their 204 was read (0 ms); ` +
        `${m.lost} not visible within ${LAG_DRAIN_MS} ms of the last request`,
    },
    {
      name: `${m.label} of which commit→uploaded (primary /status) p99 ${at}`,
      value: percentile(m.uploadMs, 99),
      unit: 'ms',
      better: 'lower',
      note: `${max}; p50 ${percentile(m.uploadMs, 50).toFixed(2)} ms; ${m.uploadMs.length} samples, read over HTTP every ~${UPLOAD_STATUS_POLL_MS} ms`,
    },
  );
  return rows;
}

/** Boots a throwaway Ceph RGW and measures the lags on it; [] with the reason in `context` when it cannot. */
async function rgwLagRows(
  dir: string,
  context: BenchSuiteResult['context'],
  raw: RawBaseline,
): Promise<BenchRow[]> {
  const rows = await withBenchRgw('bench-replicate', context, log, async (rgw) => [
    ...lagRows(
      await measureLag(dir, 'rgw', rgw.connectionString('bench'), async () => rgw.open('bench')),
      250,
    ),
    ...loadedLagRows(
      await measureLoadedLag(dir, 'rgw', rgw.connectionString('bench-loaded'), async () =>
        rgw.open('bench-loaded'),
      ),
      raw,
      undefined,
    ),
  ]);
  return rows ?? [];
}

export async function benchReplicate(): Promise<BenchSuiteResult> {
  if (Number.isNaN(SCALE)) {
    throw new Error(
      `WALSHIP_BENCH_SCALE must be a fraction in (0, 1], got ${process.env.WALSHIP_BENCH_SCALE}`,
    );
  }
  const loadAtStart = loadavg()[0]!;
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-replicate-'));
  const context: BenchSuiteResult['context'] = {
    node: process.version,
    rows: ROWS,
    rowsPerRequest: ROWS_PER_REQUEST,
    columns: TRADE_COLUMNS.length,
    cores: availableParallelism(),
    scale: SCALE,
    sharing:
      'client, nodes, SQLite and store share this process (the lag runs: primary in a child process); the raw baselines have none of them',
    lagProbe:
      '204 read by the writer → replica.appliedTxn(table) ≥ the X-Walship-Txn txn, checked every ~1 ms in-process',
  };
  try {
    const store = await FsStore.open({ root: path.join(dir, 'store') });
    const rows: BenchRow[] = [];
    let raw: RawBaseline;
    try {
      log(`generating ${ROWS} rows`);
      const t = generateTrades(ROWS, 7);
      const applied = await measureApply(dir, store, t);
      rows.push(...applyRows(applied));
      raw = rawBaselineOf(applied);
      const targets = new Map([[TRADES_TABLE, BigInt(ROWS / ROWS_PER_REQUEST)]]);
      const idle = await measureIdle(dir, store, targets);
      rows.push(...idleRows(idle, targets.size));
    } finally {
      await store.close();
    }
    const fsRoot = path.join(dir, 'store-lag');
    const fsLag = await measureLag(dir, 'fs', `fs::root=${fsRoot};`, () => FsStore.open({ root: fsRoot }));
    rows.push(...lagRows(fsLag, 100));
    const loadedRoot = path.join(dir, 'store-loaded');
    const fsLoaded = await measureLoadedLag(dir, 'fs', `fs::root=${loadedRoot};`, () =>
      FsStore.open({ root: loadedRoot }),
    );
    rows.push(...loadedLagRows(fsLoaded, raw, LOADED_AIM_P99_MS_FS));
    rows.push(...(await rgwLagRows(dir, context, raw)));
    context.loadAverage1m = `${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end (other work on the machine skews every figure)`;
    return { suite: 'replicate', context, rows };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
