/**
 * `walship demo`: a whole replicating cluster on this machine in one command, for a newcomer. A
 * primary and two replicas (child processes, cli/local-cluster.ts) over a filesystem store in one
 * folder; realistic rows through the multi-URL client; a live view of every node's watermarks and
 * lag; a planned switchover, then a crash failover by lease with the killed node rejoining; and at
 * the end proof that every node holds the same data and that no acknowledged row was lost.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidConfigError, type Random, seededRandom, systemClock, WalshipError } from '../core/index.js';
import { ClusterWriter, type RowColumns, senderConf } from './cluster-writer.js';
import { parseDurationMs } from './config.js';
import { sensorColumns, tradeColumns } from './demo-data.js';
import type { DemoOptions } from './demo-report.js';
import {
  type CrashEvent,
  checkAndReport,
  type DemoReport,
  renderDemoSummary,
  type SwitchoverEvent,
} from './demo-report.js';
import { LiveView, type NodeLine, renderWatermarks } from './demo-view.js';

export type { DemoOptions } from './demo-report.js';

import { switchoverCommand } from './failover-commands.js';
import { type CommandIo, describeArgument, EXIT } from './io.js';
import { LocalCluster, type LocalNodeInfo } from './local-cluster.js';
import { type NodeStatus, sleep, waitFor, waitForPrimary, waitForStatus } from './node-http.js';
import { fetchNodeViews, renderNodeTable } from './status.js';

export type { CrashEvent, DemoReport, SwitchoverEvent } from './demo-report.js';

export const DEMO_USAGE = `walship demo [--duration 60s] [--rate 2000] [--data-dir ./walship-demo] [--json] [--keep-running]

A whole replicating cluster on this machine, nothing to install: a primary and two replicas (child
processes) over a filesystem object store in --data-dir, fed trades and sensor readings through the
multi-URL client. Once a second it shows each node's role, epoch, per-table watermarks and lag. A
quarter into the run it switches the primary over to a replica (planned); half-way it kills the
primary (SIGKILL), a replica takes over by lease, and the killed node rejoins as a replica. Then it
checks that every node holds the same rows and that no acknowledged row was lost.

Options:
  --duration 60s     how long the writers run (15s to 1h; a bare number is seconds)
  --rate 2000        rows per second over both tables (10 to 20000)
  --data-dir DIR     the store, each node's data and log, report.json (default ./walship-demo). A
                     folder from an earlier demo (it holds .walship-demo) is wiped and reused; any
                     other non-empty folder is refused
  --json             stdout carries only the JSON report; progress goes to stderr
  --keep-running     after the report, keep the cluster running (and the view) until Ctrl-C; the
                     admin token is in DIR/admin.token

Exit codes: 0 every node converged to the same data, no acknowledged row was lost and the
switchover duplicated none; 1 otherwise; 2 bad arguments or a refused --data-dir; 3 the cluster
could not start; 130 interrupted (Ctrl-C): every node is stopped, the data stays in DIR.`;

// --- Bounds -------------------------------------------------------------------------------------

const DURATION_MS_MIN = 15_000;
const DURATION_MS_MAX = 3_600_000;
const RATE_MIN = 10;
/** Every acknowledged id is kept in memory and read back: rate × duration is capped. */
const ROWS_MAX = 2_000_000;
const RATE_MAX = 20_000;
/** The failover lease: a replica promotes itself once the primary has not renewed it this long. */
const LEASE_TIMEOUT_MS = 2_000;
/** The client's request_timeout (a node that hangs costs this much per attempt). */
const REQUEST_TIMEOUT_MS = 2_000;
/** How long a step (first acks, a takeover, writes resuming, a rejoin) may take before it failed. */
const STEP_WAIT_MS = 60_000;
const LIVE_INTERVAL_MS = 1_000;
/** A node that does not answer /status within this shows as unreachable in the live view. */
const LIVE_STATUS_TIMEOUT_MS = 500;
/** SIGTERM first (a node closes its database cleanly), SIGKILL after this. */
const STOP_GRACE_MS = 3_000;
const INTERRUPT_GRACE_MS = 1_000;

const MARKER_FILE = '.walship-demo';
const TABLES = ['trades', 'sensors'] as const;

// --- Options ------------------------------------------------------------------------------------

const FLAGS = ['duration', 'rate', 'data-dir', 'json', 'keep-running'] as const;
const SWITCHES = new Set(['json', 'keep-running']);

/** Parses `walship demo` arguments; throws InvalidConfigError (exit 2) naming the bad one. */
export function parseDemoArgs(argv: string[], cwd: string): DemoOptions {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (match === null) throw new InvalidConfigError(`unexpected argument (${describeArgument(arg)})`);
    const name = match[1]!;
    if (!(FLAGS as readonly string[]).includes(name))
      throw new InvalidConfigError(`unknown flag --${name}; see 'walship demo --help'`);
    if (given.has(name)) throw new InvalidConfigError(`--${name} is given twice`);
    const value = SWITCHES.has(name) ? (match[2] ?? 'true') : (match[2] ?? argv[++i]);
    if (value === undefined || value === '') throw new InvalidConfigError(`--${name} needs a value`);
    given.set(name, value);
  }
  const durationText = given.get('duration') ?? '60s';
  // A bare number is seconds (`--duration 20`).
  const durationMs = /^\d{1,5}$/.test(durationText)
    ? Number(durationText) * 1000
    : parseDurationMs(durationText);
  if (durationMs === undefined || durationMs < DURATION_MS_MIN || durationMs > DURATION_MS_MAX)
    throw new InvalidConfigError(
      `--duration: expected ${DURATION_MS_MIN / 1000}s to ${DURATION_MS_MAX / 60_000}m (like 60s or 2m), got ${JSON.stringify(durationText)}`,
    );
  const rateText = given.get('rate') ?? '2000';
  const rateRowsPerS = /^\d{1,6}$/.test(rateText) ? Number(rateText) : Number.NaN;
  if (!(rateRowsPerS >= RATE_MIN && rateRowsPerS <= RATE_MAX))
    throw new InvalidConfigError(
      `--rate: expected rows per second from ${RATE_MIN} to ${RATE_MAX}, got ${JSON.stringify(rateText)}`,
    );
  if ((rateRowsPerS * durationMs) / 1000 > ROWS_MAX)
    throw new InvalidConfigError(`--rate × --duration is over ${ROWS_MAX} rows; lower one of them`);
  return {
    durationMs,
    rateRowsPerS,
    dataDir: path.resolve(cwd, given.get('data-dir') ?? 'walship-demo'),
    json: switchOn(given, 'json'),
    keepRunning: switchOn(given, 'keep-running'),
  };
}

function switchOn(given: Map<string, string>, name: string): boolean {
  const value = given.get(name);
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  throw new InvalidConfigError(`--${name}: expected true or false, got ${JSON.stringify(value)}`);
}

// --- The command --------------------------------------------------------------------------------

export interface DemoDeps {
  /** Whether stdout / stderr is a terminal (the live view then redraws in place). */
  tty?: { stdout: boolean; stderr: boolean; columns?: number };
  random?: Random;
  /** Called when a signal ended the demo, once every node is stopped (the process exits at 130). */
  onInterrupted?: (exitCode: number) => void;
}

/** Thrown into the run by SIGINT or SIGTERM. */
class DemoInterrupted extends WalshipError {
  constructor(signal: string) {
    super('INTERRUPTED', 'closed', `interrupted by ${signal}`);
  }
}

const EXIT_INTERRUPTED = 130;

/** `walship demo`: runs the demo, prints the report, exits 0/1 (2 usage, 3 no cluster, 130 signal). */
export async function demoCommand(argv: string[], io: CommandIo, deps: DemoDeps = {}): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(DEMO_USAGE);
    return EXIT.ok;
  }
  const options = parseDemoArgs(argv, process.cwd());
  const progress = options.json ? io.stderr : io.stdout;
  const tty = options.json ? deps.tty?.stderr : deps.tty?.stdout;
  const view = new LiveView({ write: progress, tty: tty ?? false, columns: deps.tty?.columns });
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) return;
    view.phase(`demo: ${signal}: stopping every node`);
    interrupt.abort(new DemoInterrupted(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await runDemo(options, {
      view,
      interrupt: interrupt.signal,
      random: deps.random ?? seededRandom(systemClock.wallMs()),
      onReport: (done) => {
        if (options.json) io.stdout(JSON.stringify(done));
        progress(renderDemoSummary(done));
      },
    });
    return report.ok ? EXIT.ok : EXIT.failed;
  } catch (error) {
    if (error instanceof DemoInterrupted) {
      progress(`demo: interrupted; every node is stopped; the data stays in ${options.dataDir}`);
      deps.onInterrupted?.(EXIT_INTERRUPTED);
      return EXIT_INTERRUPTED;
    }
    if (error instanceof WalshipError && error.code === 'CLUSTER_START_FAILED')
      progress(`demo: the cluster could not start; the node logs are in ${options.dataDir}`);
    else if (error instanceof WalshipError && error.kind === 'unavailable') {
      // The cluster ran, then a step never happened or a node could not be read: a failed demo.
      io.stderr(`walship: ${error.message}`);
      progress(`demo: FAILED; every node is stopped; the data and the node logs stay in ${options.dataDir}`);
      return EXIT.failed;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// --- Running the demo ---------------------------------------------------------------------------

interface DemoContext {
  view: LiveView;
  /** Aborted by SIGINT/SIGTERM. */
  interrupt: AbortSignal;
  random: Random;
  /** The report is ready (printed before the nodes stop, so --keep-running can show it). */
  onReport: (report: DemoReport) => void;
}

/** The state of one run, shared by its steps. */
interface DemoRun {
  options: DemoOptions;
  view: LiveView;
  cluster: LocalCluster;
  token: string;
  /** Aborted by a signal, or when the run ends for any reason: every wait ends. */
  signal: AbortSignal;
  /** Milliseconds since the writers started. */
  now: () => number;
  writers: ClusterWriter[];
  /** Every node that listened, by name (a restarted node replaces its entry). */
  nodes: Map<string, LocalNodeInfo>;
  /** Every URL each node listened on, by name. */
  urlsByName: Map<string, string[]>;
  /** Every pid the demo started, so a caller can check none outlives it. */
  pids: number[];
}

/** Runs the demo; resolves to its report once every node is stopped. Throws DemoInterrupted on a signal. */
export async function runDemo(options: DemoOptions, ctx: DemoContext): Promise<DemoReport> {
  await prepareDataDir(options.dataDir);
  const token = randomBytes(24).toString('hex');
  // For admin commands against a --keep-running cluster; readable by this user only.
  await writeFile(path.join(options.dataDir, 'admin.token'), `${token}\n`, { mode: 0o600 });
  const end = new AbortController();
  const signal = AbortSignal.any([ctx.interrupt, end.signal]);
  const nodes = new Map<string, LocalNodeInfo>();
  const urlsByName = new Map<string, string[]>();
  const pids: number[] = [];
  // nodes.json is rewritten as nodes start: one write at a time.
  let nodesFile = Promise.resolve();
  ctx.view.phase(
    `demo: starting a primary and 2 replicas over the store 'fs::root=${path.join(options.dataDir, 'store')};' (ack durable, automatic failover, lease ${LEASE_TIMEOUT_MS} ms)`,
  );
  // Not raced against a signal: a half-started cluster is stopped by start() itself, a started one below.
  const cluster = await LocalCluster.start({
    dir: options.dataDir,
    ack: 'durable',
    replicas: 2,
    autoFailover: { leaseTimeoutMs: LEASE_TIMEOUT_MS },
    adminToken: token,
    onNode: (node) => {
      nodes.set(node.name, node);
      urlsByName.set(node.name, [...(urlsByName.get(node.name) ?? []), node.url]);
      pids.push(node.pid);
      ctx.view.phase(
        `demo: ${node.name} ${node.startedAs} pid ${node.pid} listening on ${node.url} (log ${path.basename(node.log)})`,
      );
      nodesFile = nodesFile.then(() => writeNodesFile(options.dataDir, nodes, pids));
    },
  });
  const startedAt = systemClock.monotonicMs();
  const run: DemoRun = {
    options,
    view: ctx.view,
    cluster,
    token,
    signal,
    now: () => systemClock.monotonicMs() - startedAt,
    writers: [],
    nodes,
    urlsByName,
    pids,
  };
  const live = startLiveView(run);
  try {
    ctx.interrupt.throwIfAborted();
    const report = await untilInterrupted(demoTimeline(run, ctx.random), ctx.interrupt);
    await live.stop();
    await writeFile(path.join(options.dataDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    ctx.onReport(report);
    if (options.keepRunning) {
      ctx.view.phase(
        `demo: the cluster keeps running; Ctrl-C stops it (admin token in ${options.dataDir}/admin.token)`,
      );
      const again = startLiveView(run);
      await new Promise<void>((resolve) =>
        ctx.interrupt.addEventListener('abort', () => resolve(), { once: true }),
      );
      await again.stop();
    }
    return report;
  } finally {
    end.abort();
    await live.stop();
    await Promise.all(run.writers.map((w) => w.stop()));
    await cluster.stop({ keep: true, graceMs: ctx.interrupt.aborted ? INTERRUPT_GRACE_MS : STOP_GRACE_MS });
    await nodesFile;
    await writeNodesFile(options.dataDir, nodes, pids);
  }
}

/**
 * Makes `dir` an empty demo folder: a new or empty folder, or one an earlier demo left (it holds
 * the marker file) which is wiped. Anything else is refused: the demo never deletes a user's data.
 */
async function prepareDataDir(dir: string): Promise<void> {
  const info = await stat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (info !== null && !info.isDirectory())
    throw new InvalidConfigError(`--data-dir ${dir} is not a folder; choose another --data-dir`);
  const entries = info === null ? [] : await readdir(dir);
  if (entries.length > 0 && !entries.includes(MARKER_FILE))
    throw new InvalidConfigError(
      `--data-dir ${dir} is not empty and was not made by walship demo (no ${MARKER_FILE} in it); ` +
        'choose another --data-dir, or empty that folder yourself',
    );
  for (const entry of entries) await rm(path.join(dir, entry), { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, MARKER_FILE),
    'Made by walship demo: the next walship demo with this --data-dir wipes this folder and reuses it.\n',
  );
}

async function writeNodesFile(dir: string, nodes: Map<string, LocalNodeInfo>, pids: number[]): Promise<void> {
  const body = { demoPid: process.pid, nodes: [...nodes.values()], pidsStarted: pids };
  await writeFile(path.join(dir, 'nodes.json'), `${JSON.stringify(body, null, 2)}\n`).catch(() => {});
}

/** `work`, unless `interrupt` is aborted first: then its reason is thrown (work winds down alone). */
function untilInterrupted<T>(work: Promise<T>, interrupt: AbortSignal): Promise<T> {
  work.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(interrupt.reason);
    if (interrupt.aborted) onAbort();
    interrupt.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => interrupt.removeEventListener('abort', onAbort));
  });
}

// --- The live view ------------------------------------------------------------------------------

/**
 * Once a second: every node's /status, as `walship status` renders it (role, epoch, lag, last
 * error), and under it each table's watermark on each node; stop() ends the loop.
 */
function startLiveView(run: DemoRun): { stop: () => Promise<void> } {
  const stopped = new AbortController();
  const signal = AbortSignal.any([run.signal, stopped.signal]);
  const loop = (async () => {
    while (!signal.aborted) {
      const nodes = [...run.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
      const views = await fetchNodeViews(
        nodes.map((node) => node.url),
        { timeoutMs: LIVE_STATUS_TIMEOUT_MS },
      );
      if (signal.aborted) break;
      const lines: NodeLine[] = nodes.map((node, i) => ({
        name: node.name,
        url: node.url,
        status: (views[i]?.status ?? null) as NodeStatus | null,
      }));
      run.view.show([
        liveHeader(run),
        ...renderNodeTable(views, {
          color: run.view.tty,
          ...(run.view.columns === undefined ? {} : { width: run.view.columns - 2 }),
        }).split('\n'),
        ...renderWatermarks(lines, TABLES),
      ]);
      await sleep(LIVE_INTERVAL_MS, signal);
    }
    run.view.done();
  })();
  return {
    stop: async () => {
      stopped.abort();
      await loop;
    },
  };
}

function liveHeader(run: DemoRun): string {
  const acked = run.writers.map((w) => `${w.table} ${w.acknowledged.toLocaleString('en-US')}`);
  const seconds = (run.now() / 1000).toFixed(1);
  return `live t+${seconds}s  acknowledged: ${acked.join(', ') || 'none yet'}  (watermarks: txn numbers per table)`;
}

// --- The timeline -------------------------------------------------------------------------------

async function demoTimeline(run: DemoRun, random: Random): Promise<DemoReport> {
  const { options, cluster, view } = run;
  const [first, ...others] = cluster.urls;
  if ((await waitForPrimary([first!], STEP_WAIT_MS, run.signal)) === undefined)
    throw new WalshipError('CLUSTER_START_FAILED', 'unavailable', `${first} never answered as a primary`);
  const conf = senderConf([first!, ...others], REQUEST_TIMEOUT_MS);
  const columns: Record<(typeof TABLES)[number], RowColumns> = {
    trades: tradeColumns(random),
    sensors: sensorColumns(random, () => run.now()),
  };
  const ids = { next: 1 };
  run.writers = TABLES.map(
    (table, i) =>
      new ClusterWriter({
        table,
        conf,
        // The first table takes the odd row of an odd rate.
        ratePerS: i === 0 ? Math.ceil(options.rateRowsPerS / 2) : Math.floor(options.rateRowsPerS / 2),
        ids,
        now: run.now,
        columns: columns[table],
        signal: run.signal,
      }),
  );
  view.phase(
    `demo: writing ${TABLES.join(' and ')} at ${options.rateRowsPerS} rows/s through the multi-URL client (${cluster.urls.length} addresses, primary first) for ${options.durationMs / 1000} s`,
  );
  for (const writer of run.writers) writer.start();
  const { switchover, crash } = await (async () => {
    try {
      await step(
        run,
        () => run.writers.every((w) => w.acks.length > 0),
        'every table had a write acknowledged',
      );
      await pauseUntil(run, options.durationMs / 4);
      const switchover = await plannedSwitchover(run, first!, others[0]!);
      await pauseUntil(run, options.durationMs / 2);
      const crash = await crashFailover(run, switchover.to ?? (await currentPrimary(run)));
      await pauseUntil(run, options.durationMs);
      return { switchover, crash };
    } finally {
      await Promise.all(run.writers.map((w) => w.stop()));
    }
  })();
  run.signal.throwIfAborted();
  const writingMs = run.now();
  const acked = run.writers.reduce((n, w) => n + w.acknowledged, 0);
  view.phase(
    `demo: writers stopped after ${(writingMs / 1000).toFixed(1)} s, ${acked} rows acknowledged; waiting until every node applied everything`,
  );
  return checkAndReport({
    options,
    tables: TABLES,
    nodes: [...run.nodes.values()].sort((a, b) => a.name.localeCompare(b.name)),
    urlsByName: run.urlsByName,
    writers: run.writers,
    switchover,
    crash,
    writingMs,
    leaseTimeoutMs: LEASE_TIMEOUT_MS,
    signal: run.signal,
    phase: (line) => view.phase(line),
  });
}

/** Sleeps until `atMs` on the run's clock; throws once the run is aborted (nothing after it runs). */
async function pauseUntil(run: DemoRun, atMs: number): Promise<void> {
  await sleep(Math.max(0, atMs - run.now()), run.signal);
  run.signal.throwIfAborted();
}

/** Waits (bounded) until `done`; a step that does not happen is an error that ends the demo. */
async function step(run: DemoRun, done: () => boolean, what: string): Promise<void> {
  if (!(await waitFor(done, STEP_WAIT_MS, run.signal))) {
    run.signal.throwIfAborted();
    throw new WalshipError(
      'DEMO_STUCK',
      'unavailable',
      `gave up after ${STEP_WAIT_MS} ms waiting until ${what}`,
    );
  }
}

/** Every writer had a flush acknowledged after `afterMs` (writes resumed), within STEP_WAIT_MS. */
function writesResumed(run: DemoRun, afterMs: number): Promise<boolean> {
  return waitFor(
    () => run.writers.every((w) => (w.acks.at(-1)?.atMs ?? -1) > afterMs),
    STEP_WAIT_MS,
    run.signal,
  );
}

async function currentPrimary(run: DemoRun): Promise<string> {
  const url = await waitForPrimary(run.cluster.urls, STEP_WAIT_MS, run.signal);
  run.signal.throwIfAborted();
  if (url === undefined)
    throw new WalshipError('DEMO_STUCK', 'unavailable', `no node answers as an accepting primary`);
  return url;
}

function nameOf(run: DemoRun, url: string | null): string {
  if (url === null) return 'nobody';
  return [...run.nodes.values()].find((n) => n.url === url)?.name ?? url;
}

/** `walship switchover --from <primary> --to <replica>`, run in-process, as an operator would. */
async function plannedSwitchover(run: DemoRun, from: string, to: string): Promise<SwitchoverEvent> {
  run.view.phase(
    `demo: planned switchover ${nameOf(run, from)} → ${nameOf(run, to)}: the primary stops writes (421), uploads everything, the replica catches up and is promoted`,
  );
  const atMs = run.now();
  const out: string[] = [];
  const err: string[] = [];
  const code = await switchoverCommand(
    ['--from', from, '--to', to, '--timeout', '30s', `--admin.token=${run.token}`],
    { stdout: (text) => out.push(text), stderr: (text) => err.push(text), env: {} },
  );
  run.signal.throwIfAborted();
  const base = {
    kind: 'switchover' as const,
    from,
    atMs,
    acksFromMs: 0,
    acksToMs: null,
    acknowledged: 0,
    lost: 0,
    duplicates: 0,
  };
  if (code !== EXIT.ok) {
    const error = err.join('; ') || `exit ${code}`;
    run.view.phase(`demo: the switchover failed: ${error}`);
    return { ...base, to: null, endedAtMs: null, writePauseMs: null, switchoverMs: null, epoch: null, error };
  }
  const answer = JSON.parse(out.at(-1) ?? '{}') as { epoch?: string; writePauseMs?: number };
  const endedAtMs = run.now();
  const resumed = await writesResumed(run, endedAtMs);
  run.signal.throwIfAborted();
  run.view.phase(
    `demo: switchover done in ${answer.writePauseMs ?? '?'} ms: ${nameOf(run, to)} is the primary at epoch ${answer.epoch ?? '?'}; ${resumed ? 'writes resumed' : 'writes did NOT resume'}`,
  );
  return {
    ...base,
    to,
    endedAtMs,
    writePauseMs: null,
    switchoverMs: answer.writePauseMs ?? null,
    epoch: answer.epoch ?? null,
    error: resumed ? null : `writes did not resume within ${STEP_WAIT_MS} ms`,
  };
}

/** SIGKILL the primary; a replica promotes itself by lease; the killed node restarts as a replica. */
async function crashFailover(run: DemoRun, primary: string): Promise<CrashEvent> {
  const killed = [...run.nodes.values()].find((n) => n.url === primary);
  run.view.phase(
    `demo: crash: SIGKILL ${nameOf(run, primary)} (pid ${killed?.pid ?? '?'}), the primary; a replica promotes itself once the lease (${LEASE_TIMEOUT_MS} ms) runs out`,
  );
  const atMs = run.now();
  run.cluster.signal(primary, 'SIGKILL');
  const promoted = await waitForPrimary(
    run.cluster.urls.filter((url) => url !== primary),
    STEP_WAIT_MS + 2 * LEASE_TIMEOUT_MS,
    run.signal,
  );
  run.signal.throwIfAborted();
  const takeoverMs = promoted === undefined ? null : Math.round(run.now() - atMs);
  const base = {
    kind: 'crash failover' as const,
    killed: primary,
    killedPid: killed?.pid ?? null,
    atMs,
    endedAtMs: promoted === undefined ? null : atMs + (takeoverMs ?? 0),
    leaseTimeoutMs: LEASE_TIMEOUT_MS,
    takeoverMs,
    writePauseMs: null,
    acksFromMs: atMs,
    acksToMs: null,
    acknowledged: 0,
    lost: 0,
    duplicates: 0,
  };
  if (promoted === undefined) {
    const error = `no replica took over within ${STEP_WAIT_MS + 2 * LEASE_TIMEOUT_MS} ms of the kill`;
    run.view.phase(`demo: ${error}`);
    return { ...base, promoted: null, rejoined: false, rejoinedAs: null, divergence: null, error };
  }
  run.view.phase(
    `demo: ${nameOf(run, promoted)} took over ${takeoverMs} ms after the kill; restarting ${nameOf(run, primary)} as a replica on its own data dir`,
  );
  const resumed = await writesResumed(run, atMs + (takeoverMs ?? 0));
  run.signal.throwIfAborted();
  const error = resumed ? null : `writes did not resume within ${STEP_WAIT_MS} ms`;
  const rejoinedAs = await run.cluster.restartAsReplica(primary).catch((failure: unknown) => {
    run.signal.throwIfAborted();
    run.view.phase(`demo: ${nameOf(run, primary)} did NOT start again: ${(failure as Error).message}`);
    return null;
  });
  if (rejoinedAs === null) return { ...base, promoted, rejoined: false, rejoinedAs, divergence: null, error };
  const status = await waitForStatus(rejoinedAs, (s) => s.role === 'replica', STEP_WAIT_MS, run.signal);
  run.signal.throwIfAborted();
  const rejoined = status?.role === 'replica';
  const divergence = divergenceOf(status);
  run.view.phase(
    `demo: ${nameOf(run, rejoinedAs)} ${rejoined ? 'rejoined as a replica' : 'did NOT rejoin'} at ${rejoinedAs}${divergence === null ? '' : `; ${divergence.txns} txns it had committed but never uploaded (never acknowledged) are in divergence files`}`,
  );
  return { ...base, promoted, rejoined, rejoinedAs, divergence, error };
}

function divergenceOf(status: NodeStatus | null): CrashEvent['divergence'] {
  const divergence = status?.divergence;
  if (divergence === undefined || divergence.files.length === 0) return null;
  return {
    txns: divergence.files.reduce((n, f) => n + f.txns, 0),
    rows: divergence.files.reduce((n, f) => n + f.rows, 0),
    files: divergence.files.map((f) => f.file),
  };
}
