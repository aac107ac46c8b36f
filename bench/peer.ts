/**
 * A real peer in the same run (issue 16 item 5): walship's server-side ingest beside InfluxDB 1.x
 * and beside raw SQLite, on the same bodies with the same load generator.
 * - The bodies: ROWS trades rows (bench/trades.ts, 10 columns) in 10 000-row ILP v1 text bodies the
 *   official client encoded before any clock starts. v1 is the text InfluxDB reads too; its client
 *   writes the designated timestamp in nanoseconds, so both servers get `precision=ns` (their
 *   default, said out loud) on byte-identical bodies.
 * - The load: bench/load.ts, CONNECTIONS keep-alive connections each in a closed loop; rows/s over
 *   the whole run, each request's latency p50/p99/max.
 * - walship: `walship primary` from dist/ as a child process on a fresh fs store and data dir with
 *   the product's defaults (10 s window, 2 MiB rollover, deflate 1, synchronous=FULL), once with
 *   local acks (the default) and once with `--replication.ack.mode=durable` (a request is answered
 *   once its segment is in the store).
 * - InfluxDB: `influxd` from PATH (Debian's package `influxdb`, 1.6), never installed by the bench,
 *   with a config of its own (influxConfig): loopback ports, meta/data/wal in a temp dir, the WAL
 *   fsynced on every write before the answer (wal-fsync-delay 0s), no other service. Without it the
 *   suite says so in one row and measures the rest.
 * - Raw SQLite: bench/baselines.ts's prepared single-row INSERT of the same rows into a fresh file
 *   (WAL, synchronous=FULL), a transaction per 10 000 rows, in this process.
 * Every server run starts on an empty data dir, and its rows are counted afterwards (walship /exec,
 * InfluxDB /query): a run that lost a row fails and is reported as failed, never as a rate. The CPU
 * of each server is read from /proc/<pid>/stat (all its threads) over the load; the generator's own
 * from process.cpuUsage. Runs alternate over ROUNDS rounds (round 1 raw, walship local, walship
 * durable, InfluxDB; round 2 the reverse), and each figure is the better round's, so a slow moment
 * of the machine does not land on one side only.
 *
 * `WALSHIP_BENCH_PEER_ROWS` sets the rows (rounded up to whole bodies) for a quick run.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createBuffer, SenderOptions } from '@questdb/nodejs-client';
import { assert } from '../core/index.js';
import { evenTxnRows, rawInsertMs } from './baselines.js';
import { loadFigures, postBodies } from './load.js';
import type { BenchRow, BenchSuiteResult } from './report.js';
import { encodeTradeRow, generateTrades, TRADES_TABLE, type Trades, timestampUsOf } from './trades.js';

const ROWS_PER_BODY = 10_000;
/** The issue asks for about 1–2 M rows: 100 bodies. */
const DEFAULT_ROWS = 1_000_000;
/** Bodies are held in memory (~175 bytes a row): 5 M rows is ~0.9 GB. */
const ROWS_MAX = 5_000_000;
/** The issue's load: 4 connections. */
const CONNECTIONS = 4;
/** Alternating rounds; the better one counts. */
const ROUNDS = 2;
/** A server must answer (walship: print its listening line; InfluxDB: /ping 204) within this. */
const START_TIMEOUT_MS = 60_000;
/** SIGTERM, then SIGKILL past this (walship uploads what its window still holds first). */
const STOP_TIMEOUT_MS = 120_000;
const START_POLL_MS = 50;
/** /proc/<pid>/stat counts CPU in clock ticks of USER_HZ, 100 on every Linux that Node runs on. */
const USER_HZ = 100;
const INFLUX_DB = 'bench';
const PRECISION = 'ns';
const PROGRESS_BODIES = 25;

export const INFLUXD_NOT_INSTALLED = 'influxd not installed (Debian package influxdb)';
const AIMS = {
  localVsRaw: 0.6,
  durableVsRaw: 0.45,
  localVsInflux: 1.5,
  durableVsInflux: 1,
  tailRatio: 4,
};

const log = (message: string) => process.stderr.write(`bench peer: ${message}\n`);

// --- pure pieces (bench/peer.test.ts) ---

/** The rows of `WALSHIP_BENCH_PEER_ROWS` (unset: 1 000 000), rounded up to whole 10 000-row bodies. */
export function rowsFromEnv(text: string | undefined): number {
  if (text === undefined || text.trim() === '') return DEFAULT_ROWS;
  const rows = Number(text);
  if (!Number.isInteger(rows) || rows < 1 || rows > ROWS_MAX)
    throw new Error(`WALSHIP_BENCH_PEER_ROWS: '${text}' is not a row count in 1..${ROWS_MAX}`);
  return Math.ceil(rows / ROWS_PER_BODY) * ROWS_PER_BODY;
}

export interface InfluxConfigOptions {
  /** A fresh directory for meta/, data/ and wal/. */
  dir: string;
  httpPort: number;
  /** The RPC (backup/restore) listener, `bind-address` at the top level; 8088 by default. */
  rpcPort: number;
}

/**
 * influxd's config for one run: both listeners on loopback, everything it stores under `dir`, the
 * WAL fsynced before every write is answered, quiet logs, and no service but HTTP (no reporting,
 * monitor store, continuous queries, subscriber, retention or precreation sweeps, graphite, collectd,
 * opentsdb, udp).
 */
export function influxConfig(options: InfluxConfigOptions): string {
  assert(!/["\\\n]/.test(options.dir), 'the temp dir needs no TOML escaping');
  const at = (sub: string) => `"${path.join(options.dir, sub)}"`;
  const off = (section: string) => [section, '  enabled = false'];
  return [
    '# walship bench peer: InfluxDB 1.x on loopback, data in a temp dir, an fsync per write.',
    '# Upstream 1.x reads reporting-disabled; Debian renamed it reporting-enabled. Both are set.',
    'reporting-disabled = true',
    'reporting-enabled = false',
    `bind-address = "127.0.0.1:${options.rpcPort}"`,
    '[meta]',
    `  dir = ${at('meta')}`,
    '  retention-autocreate = true',
    '  logging-enabled = false',
    '[data]',
    `  dir = ${at('data')}`,
    `  wal-dir = ${at('wal')}`,
    '  # The WAL is fsynced on every write before its answer.',
    '  wal-fsync-delay = "0s"',
    '  query-log-enabled = false',
    '[monitor]',
    '  store-enabled = false',
    '[continuous_queries]',
    '  enabled = false',
    '  log-enabled = false',
    ...off('[subscriber]'),
    ...off('[retention]'),
    ...off('[shard-precreation]'),
    '[http]',
    '  enabled = true',
    `  bind-address = "127.0.0.1:${options.httpPort}"`,
    '  log-enabled = false',
    '  suppress-write-log = true',
    '  pprof-enabled = false',
    '  unix-socket-enabled = false',
    ...off('[ifql]'),
    '[logging]',
    '  level = "warn"',
    '  suppress-logo = true',
    ...off('[[graphite]]'),
    ...off('[[collectd]]'),
    ...off('[[opentsdb]]'),
    ...off('[[udp]]'),
    '',
  ].join('\n');
}

/** The first executable file `name` in the directories of `pathEnv` (a PATH value), or undefined. */
export async function findOnPath(name: string, pathEnv: string | undefined): Promise<string | undefined> {
  for (const dir of (pathEnv ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    try {
      await access(file, constants.X_OK);
      if ((await stat(file)).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** "1.6.7~rc0" from `influxd version`'s "InfluxDB v1.6.7~rc0 (git: …)"; the whole line when it does not parse. */
export function influxVersionOf(output: string): string {
  const match = /InfluxDB v(\S+)/.exec(output);
  return match === null ? output.trim().slice(0, 80) : match[1]!;
}

/** utime + stime of a /proc/<pid>/stat line, in clock ticks (the name in parentheses may hold anything). */
export function cpuTicksOfStat(line: string): number {
  const fields = line.slice(line.lastIndexOf(')') + 2).split(' ');
  // Field 3 (state) is fields[0]: utime (14) and stime (15) are fields[11] and fields[12].
  const ticks = Number(fields[11]) + Number(fields[12]);
  assert(Number.isFinite(ticks), `/proc stat line with utime and stime: '${line.slice(0, 120)}'`);
  return ticks;
}

/** One server run: the load's wall time and latencies, and CPU over it. */
export interface ServerRun {
  ms: number;
  latencyMs: number[];
  /** The server process, all its threads, over the load. */
  serverCpuMs: number;
  /** This process (the load generator) over the load. */
  clientCpuMs: number;
}

/** A system's runs, or why it has none (a failed run fails the system: no rate is shown for it). */
export type Outcome = { runs: ServerRun[] } | { notMeasured: string };

export interface RawRun {
  ms: number;
  cpuMs: number;
}

export interface PeerMeasured {
  rows: number;
  raw: RawRun[];
  walshipLocal: Outcome;
  walshipDurable: Outcome;
  influxdb: Outcome;
}

const LOCAL = 'walship local ack';
const DURABLE = 'walship durable ack';
const INFLUX = 'InfluxDB (fsync per write)';
const RAW_NAME = `raw prepared single-row INSERT, synchronous=FULL, txn per ${ROWS_PER_BODY} rows`;
const INGEST = `ingest, ${CONNECTIONS} connections`;

const perSecond = (rows: number, ms: number) => (rows / ms) * 1000;

/** The run with the highest rate, or undefined when the system was not measured. */
function bestRun(outcome: Outcome): ServerRun | undefined {
  if ('notMeasured' in outcome || outcome.runs.length === 0) return undefined;
  return outcome.runs.reduce((best, run) => (run.ms < best.ms ? run : best));
}

/** "better of 2 rounds (rows/s: a / b)", the rounds in the order they ran. */
function roundsNote(rows: number, runs: readonly { ms: number }[]): string {
  const rates = runs.map((run) => perSecond(rows, run.ms).toFixed(0)).join(' / ');
  return `better of ${runs.length} rounds (rows/s: ${rates})`;
}

function notMeasuredRow(name: string, unit: string, outcome: Outcome): BenchRow {
  const why = 'notMeasured' in outcome ? outcome.notMeasured : 'no run';
  return { name, value: Number.NaN, unit, better: 'higher', note: `not measured: ${why}` };
}

function ingestRow(label: string, outcome: Outcome, m: PeerMeasured, raw: number, aim?: number): BenchRow {
  const run = bestRun(outcome);
  const name = `${label}: ${INGEST}`;
  if (run === undefined || 'notMeasured' in outcome) return notMeasuredRow(name, 'rows/s', outcome);
  const aimText = aim === undefined ? '' : `aim ≥ ${aim}× raw; `;
  const rounds = roundsNote(m.rows, outcome.runs);
  const rawRounds = roundsNote(m.rows, m.raw);
  return {
    name,
    value: perSecond(m.rows, run.ms),
    unit: 'rows/s',
    better: 'higher',
    baselineName: RAW_NAME,
    baseline: raw,
    note: `${aimText}${rounds}; raw ${rawRounds}`,
  };
}

function versusInfluxRow(label: string, outcome: Outcome, m: PeerMeasured, aim: number): BenchRow[] {
  const ours = bestRun(outcome);
  const influx = bestRun(m.influxdb);
  if (ours === undefined || influx === undefined) return [];
  return [
    {
      name: `${label}: ${INGEST}, beside InfluxDB`,
      value: perSecond(m.rows, ours.ms),
      unit: 'rows/s',
      better: 'higher',
      baselineName: `${INFLUX}: the same bodies, the same load, the same run`,
      baseline: perSecond(m.rows, influx.ms),
      note: `aim ≥ ${aim}×; each side its better round`,
    },
  ];
}

function latencyRow(label: string, outcome: Outcome, rows: number, aim: boolean): BenchRow[] {
  const run = bestRun(outcome);
  if (run === undefined) return [];
  const f = loadFigures(rows, { ms: run.ms, latencyMs: run.latencyMs });
  return [
    {
      name: `${label}: request p99, ${ROWS_PER_BODY}-row bodies, ${CONNECTIONS} connections`,
      value: f.p99Ms,
      unit: 'ms',
      better: 'lower',
      baselineName: 'p50 of the same run',
      baseline: f.p50Ms,
      note: `${aim ? `aim p99 ≤ ${AIMS.tailRatio}× p50; ` : ''}max ${f.maxMs.toFixed(1)} ms over ${run.latencyMs.length} requests, from the better round`,
    },
  ];
}

function cpuRow(label: string, run: ServerRun | undefined, rows: number): BenchRow[] {
  if (run === undefined) return [];
  const percent = (run.serverCpuMs / run.ms) * 100;
  const perCpuSecond = Number.isFinite(run.serverCpuMs) ? perSecond(rows, run.serverCpuMs).toFixed(0) : '?';
  return [
    {
      name: `${label}: server CPU during the load`,
      value: percent,
      unit: '% of a core',
      better: 'lower',
      note: `${run.serverCpuMs.toFixed(0)} ms CPU (/proc stat, all threads) over ${run.ms.toFixed(0)} ms: ${perCpuSecond} rows per CPU-second; load generator ${((run.clientCpuMs / run.ms) * 100).toFixed(0)} %; the better round`,
    },
  ];
}

function rawCpuRow(m: PeerMeasured): BenchRow {
  const run = m.raw.reduce((best, r) => (r.ms < best.ms ? r : best));
  return {
    name: 'raw SQLite: CPU',
    value: (run.cpuMs / run.ms) * 100,
    unit: '% of a core',
    better: 'lower',
    note: `in this process (process.cpuUsage): ${run.cpuMs.toFixed(0)} ms CPU over ${run.ms.toFixed(0)} ms; the better round`,
  };
}

/** The suite's rows from its measurements: rates beside raw SQLite and InfluxDB, tails, CPU. */
export function peerRows(m: PeerMeasured): BenchRow[] {
  assert(m.raw.length > 0, 'the raw baseline ran');
  const raw = perSecond(m.rows, Math.min(...m.raw.map((r) => r.ms)));
  return [
    ingestRow(LOCAL, m.walshipLocal, m, raw, AIMS.localVsRaw),
    ingestRow(DURABLE, m.walshipDurable, m, raw, AIMS.durableVsRaw),
    ingestRow(INFLUX, m.influxdb, m, raw),
    ...versusInfluxRow(LOCAL, m.walshipLocal, m, AIMS.localVsInflux),
    ...versusInfluxRow(DURABLE, m.walshipDurable, m, AIMS.durableVsInflux),
    ...latencyRow(LOCAL, m.walshipLocal, m.rows, true),
    ...latencyRow(DURABLE, m.walshipDurable, m.rows, true),
    ...latencyRow(INFLUX, m.influxdb, m.rows, false),
    ...cpuRow(LOCAL, bestRun(m.walshipLocal), m.rows),
    ...cpuRow(DURABLE, bestRun(m.walshipDurable), m.rows),
    ...cpuRow(INFLUX, bestRun(m.influxdb), m.rows),
    rawCpuRow(m),
  ];
}

export type Step = 'raw' | 'walship-local' | 'walship-durable' | 'influxdb';

/** Round 0 (and every even one) runs raw, walship local, walship durable, InfluxDB; odd rounds the reverse. */
export function roundOrder(round: number): Step[] {
  const order: Step[] = ['raw', 'walship-local', 'walship-durable', 'influxdb'];
  return round % 2 === 0 ? order : order.reverse();
}

// --- child processes ---

interface Child {
  pid: number;
  /** The last of what it printed (stdout and stderr). */
  output(): string;
  exitCode(): number | null | undefined;
  /** SIGTERM, then SIGKILL past STOP_TIMEOUT_MS; resolves once it has exited. */
  stop(): Promise<void>;
}

function startChild(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child: ChildProcess = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  child.once('error', (error) => {
    output += `\n${error.message}`;
    exitCode ??= null;
  });
  // A bench stopped half-way must not leave a server behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.off('exit', killOnExit));
  return {
    pid: child.pid ?? -1,
    output: () => (exitCode === undefined ? output : `${output}\n(exited with ${exitCode})`),
    exitCode: () => exitCode,
    async stop() {
      if (exitCode !== undefined) return;
      child.kill('SIGTERM');
      // Unreferenced: the child's own handle keeps this process alive while it runs, the timer must not.
      const timer = sleep(STOP_TIMEOUT_MS, 'timeout' as const, { ref: false });
      if ((await Promise.race([exited, timer])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Polls `check` until it yields a value; fails when the child exits or START_TIMEOUT_MS passes. */
async function waitFor<T>(what: string, child: Child, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode() !== undefined) throw new Error(`${what}: exited\n${child.output()}`);
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline)
      throw new Error(`${what}: not up in ${START_TIMEOUT_MS / 1000} s\n${child.output()}`);
    await sleep(START_POLL_MS);
  }
}

/** CPU time of process `pid` (all its threads) so far, ms; NaN without /proc. */
async function processCpuMs(pid: number): Promise<number> {
  try {
    return (cpuTicksOfStat(await readFile(`/proc/${pid}/stat`, 'utf8')) * 1000) / USER_HZ;
  } catch {
    return Number.NaN;
  }
}

/** `count` free loopback ports (held together while chosen, so they differ). */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => {
      const address = server.address();
      assert(address !== null && typeof address === 'object', 'a TCP address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

// --- the servers ---

interface RunningServer {
  child: Child;
  writeUrl: string;
  /** Rows the server holds in the trades table. */
  count(): Promise<number>;
}

async function startWalship(dir: string, ackMode: 'local' | 'durable'): Promise<RunningServer> {
  const bin = fileURLToPath(new URL('../cli/bin.js', import.meta.url));
  const args = [
    bin,
    'primary',
    `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
    `--node.data.dir=${path.join(dir, 'data')}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    '--log.level=warn',
    ...(ackMode === 'durable' ? ['--replication.ack.mode=durable'] : []),
  ];
  const child = startChild(process.execPath, args, {
    ...process.env,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  });
  try {
    const port = await waitFor(`walship primary (${ackMode} ack)`, child, async () => {
      const match = /listening: http (\d+)/.exec(child.output());
      return match === null ? undefined : Number(match[1]);
    });
    return {
      child,
      writeUrl: `http://127.0.0.1:${port}/write?precision=${PRECISION}`,
      count: () => walshipCount(port),
    };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

async function walshipCount(port: number): Promise<number> {
  const query = encodeURIComponent(`SELECT count(*) FROM "${TRADES_TABLE}"`);
  const response = await fetch(`http://127.0.0.1:${port}/exec?query=${query}`);
  const text = await response.text();
  if (response.status !== 200)
    throw new Error(`walship /exec count: ${response.status} ${text.slice(0, 500)}`);
  return Number((JSON.parse(text) as { dataset: [[number]] }).dataset[0][0]);
}

async function influxQuery(port: number, q: string, method: 'GET' | 'POST'): Promise<unknown> {
  const params = new URLSearchParams({ db: INFLUX_DB, q });
  const response =
    method === 'GET'
      ? await fetch(`http://127.0.0.1:${port}/query?${params}`)
      : await fetch(`http://127.0.0.1:${port}/query`, { method, body: params });
  const text = await response.text();
  if (response.status !== 200 || text.includes('"error"'))
    throw new Error(`InfluxDB /query '${q}': ${response.status} ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

async function influxCount(port: number): Promise<number> {
  const body = (await influxQuery(port, `SELECT count(price) FROM ${TRADES_TABLE}`, 'GET')) as {
    results: { series?: { values: [string, number][] }[] }[];
  };
  return body.results[0]?.series?.[0]?.values[0]?.[1] ?? 0;
}

/** influxd with its own config in `dir`, up (/ping 204) with the bench database created. */
async function startInflux(bin: string, dir: string): Promise<RunningServer> {
  const [httpPort, rpcPort] = (await freePorts(2)) as [number, number];
  const file = path.join(dir, 'influxdb.conf');
  await writeFile(file, influxConfig({ dir, httpPort, rpcPort }));
  // INFLUXDB_* variables would override the config file: the run is to be configured by the file alone.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('INFLUXDB_')));
  const child = startChild(bin, ['-config', file], env);
  try {
    await waitFor('influxd', child, async () => {
      const response = await fetch(`http://127.0.0.1:${httpPort}/ping`).catch(() => undefined);
      return response?.status === 204 ? true : undefined;
    });
    await influxQuery(httpPort, `CREATE DATABASE ${INFLUX_DB}`, 'POST');
    return {
      child,
      writeUrl: `http://127.0.0.1:${httpPort}/write?db=${INFLUX_DB}&precision=${PRECISION}`,
      count: () => influxCount(httpPort),
    };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

/** The load on a started server, CPU read around it, then its rows counted; the server is stopped after. */
async function loadServer(label: string, server: RunningServer, bodies: readonly Buffer[], rows: number) {
  try {
    const serverCpuBefore = await processCpuMs(server.child.pid);
    const clientCpuBefore = process.cpuUsage();
    const result = await postBodies({
      url: server.writeUrl,
      bodies,
      connections: CONNECTIONS,
      progressEvery: PROGRESS_BODIES,
      onProgress: (answered) => log(`${label}: ${answered} of ${bodies.length} bodies`),
    });
    const clientCpu = process.cpuUsage(clientCpuBefore);
    const serverCpuMs = (await processCpuMs(server.child.pid)) - serverCpuBefore;
    const counted = await server.count();
    if (counted !== rows) throw new Error(`${label}: ${counted} rows counted after the run, ${rows} sent`);
    const run: ServerRun = {
      ms: result.ms,
      latencyMs: result.latencyMs,
      serverCpuMs,
      clientCpuMs: (clientCpu.user + clientCpu.system) / 1000,
    };
    log(`${label}: ${perSecond(rows, run.ms).toFixed(0)} rows/s, ${rows} rows counted`);
    return run;
  } finally {
    await server.child.stop();
  }
}

// --- the suite ---

/** The run's bodies, ILP v1 text by the official client; the designated timestamp is checked to be ns. */
async function encodeBodies(t: Trades): Promise<Buffer[]> {
  const options = await SenderOptions.fromConfig('http::addr=127.0.0.1:1;protocol_version=1;');
  const buffer = createBuffer(options);
  const bodies: Buffer[] = [];
  for (let first = 0; first < t.count; first += ROWS_PER_BODY) {
    for (let row = first; row < Math.min(t.count, first + ROWS_PER_BODY); row++)
      encodeTradeRow(buffer, t, row, TRADES_TABLE).at(timestampUsOf(row), 'us');
    bodies.push(buffer.toBufferNew()!);
  }
  const firstLine = bodies[0]!.subarray(0, bodies[0]!.indexOf('\n')).toString('utf8');
  assert(
    firstLine.startsWith(`${TRADES_TABLE},`) && firstLine.endsWith(` ${timestampUsOf(0)}000`),
    `ILP v1 text with a nanosecond timestamp: '${firstLine}'`,
  );
  return bodies;
}

interface Plan {
  dir: string;
  t: Trades;
  bodies: Buffer[];
  influxd: string | undefined;
}

function rawRun(plan: Plan, round: number): RawRun {
  const cpuBefore = process.cpuUsage();
  const ms = rawInsertMs(
    path.join(plan.dir, `raw-${round}.sqlite`),
    plan.t,
    evenTxnRows(plan.t.count, ROWS_PER_BODY),
  );
  const cpu = process.cpuUsage(cpuBefore);
  log(`raw SQLite: ${perSecond(plan.t.count, ms).toFixed(0)} rows/s`);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function serverRun(plan: Plan, step: Exclude<Step, 'raw'>, round: number): Promise<ServerRun> {
  const dir = await mkdtemp(path.join(plan.dir, `${step}-${round}-`));
  try {
    const server =
      step === 'influxdb'
        ? await startInflux(plan.influxd!, dir)
        : await startWalship(dir, step === 'walship-local' ? 'local' : 'durable');
    return await loadServer(`${step} round ${round + 1}`, server, plan.bodies, plan.t.count);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function measure(plan: Plan): Promise<PeerMeasured> {
  const outcomes = new Map<Exclude<Step, 'raw'>, Outcome>([
    ['walship-local', { runs: [] }],
    ['walship-durable', { runs: [] }],
    ['influxdb', plan.influxd === undefined ? { notMeasured: INFLUXD_NOT_INSTALLED } : { runs: [] }],
  ]);
  const raw: RawRun[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const step of roundOrder(round)) {
      if (step === 'raw') {
        raw.push(rawRun(plan, round));
        await rm(path.join(plan.dir, `raw-${round}.sqlite`), { force: true });
        continue;
      }
      const outcome = outcomes.get(step)!;
      if ('notMeasured' in outcome) continue;
      try {
        outcome.runs.push(await serverRun(plan, step, round));
      } catch (error) {
        const message = (error as Error).message.split('\n')[0];
        log(`${step} round ${round + 1} failed: ${String((error as Error).stack ?? error)}`);
        outcomes.set(step, { notMeasured: `failed in round ${round + 1}: ${message}` });
      }
    }
  }
  return {
    rows: plan.t.count,
    raw,
    walshipLocal: outcomes.get('walship-local')!,
    walshipDurable: outcomes.get('walship-durable')!,
    influxdb: outcomes.get('influxdb')!,
  };
}

async function influxdVersion(bin: string): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(bin, ['version'], { timeout: 10_000 });
    return influxVersionOf(stdout);
  } catch (error) {
    return `unknown (${(error as Error).message.split('\n')[0]})`;
  }
}

export async function benchPeer(): Promise<BenchSuiteResult> {
  const rows = rowsFromEnv(process.env.WALSHIP_BENCH_PEER_ROWS);
  const influxd = await findOnPath('influxd', process.env.PATH);
  const loadAtStart = loadavg()[0]!;
  const context: BenchSuiteResult['context'] = {
    node: process.version,
    rows,
    rowsPerBody: ROWS_PER_BODY,
    connections: CONNECTIONS,
    rounds: `${ROUNDS}, alternating order (raw, walship local, walship durable, InfluxDB; then the reverse); each figure from the better round`,
    ilp: `v1 text by @questdb/nodejs-client, byte-identical bodies to every server, precision=${PRECISION}`,
    walship:
      'dist/cli/bin.js primary as a child, product defaults (synchronous=FULL); durable: --replication.ack.mode=durable',
    influxd:
      influxd === undefined
        ? 'not installed'
        : `${await influxdVersion(influxd)} (${influxd}), wal-fsync-delay 0s, loopback, temp dir`,
    cores: availableParallelism(),
    sharing: 'load generator in this process, each server in its own, one at a time; all share the cores',
  };
  if (influxd === undefined) log(`${INFLUXD_NOT_INSTALLED}: its rows are skipped`);
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-peer-'));
  try {
    log(`generating and encoding ${rows} rows`);
    const t = generateTrades(rows);
    const bodies = await encodeBodies(t);
    const bytes = bodies.reduce((sum, body) => sum + body.byteLength, 0);
    context.bodyMB = Number((bytes / bodies.length / 1e6).toFixed(2));
    const measured = await measure({ dir, t, bodies, influxd });
    context.loadAverage1m = `${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end (other work on the machine skews every figure)`;
    return { suite: 'peer', context, rows: peerRows(measured) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
