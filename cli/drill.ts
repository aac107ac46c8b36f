import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidConfigError, systemClock, WalshipError } from '../core/index.js';
import { parseConnectionString } from '../objectstore/index.js';
import {
  type BatchTotals,
  batchTotals,
  ClusterWriter,
  duplicateCause,
  senderConf,
} from './cluster-writer.js';
import { parseDurationMs } from './config.js';
import { switchoverCommand } from './failover-commands.js';
import { type CommandIo, describeArgument, EXIT } from './io.js';
import { type AckMode, LocalCluster } from './local-cluster.js';
import {
  type DivergenceInfo,
  describeRoles,
  isAcceptingPrimary,
  type NodeStatus,
  postAdmin,
  readIds,
  STATUS_POLL_MS,
  sleep,
  statusOf,
  waitFor,
  waitForPrimary,
  waitForStatus,
  writeOne,
} from './node-http.js';

export type { AckMode } from './local-cluster.js';
export type { DivergenceInfo } from './node-http.js';

export const DRILL_USAGE = `walship drill --mode switchover|kill|zombie [options]

A failover drill (RFC-0002): writers send rows with unique ids through the multi-URL client
while the drill makes the primary go away, then it reads every table back from the final
primary and reports RTO (the longest write pause a writer saw), RPO (acknowledged rows missing),
duplicates and fencing events — one JSON object on stdout, a summary on stderr.

Modes:
  switchover   walship switchover from the primary to a replica (planned; promises no loss and
               no duplicates in either ack mode)
  kill         SIGKILL the primary; a replica takes over by lease (automatic failover) or by
               'walship promote' (--promote manual). Promises no loss with --ack durable; with
               local, what is lost must be in the old primary's divergence files once it returns
  zombie       SIGSTOP the primary, promote a replica, write, SIGCONT the old one while a stale
               client writes to it, and time how long until it is fenced. Promises no loss with
               --ack durable; nothing the zombie acknowledges after it resumes may reach the cluster

Options:
  --ack local|durable       ack mode of the local cluster (default durable); with --nodes, the
                            cluster's own (given, it must match)
  --duration 10s            how long the writers run (longer if the cluster takes longer to recover)
  --tables N                tables written, one writer each (default 4)
  --rate rows/s             rows per second over all tables (default 1000)
  --request-timeout 2s      the client's request_timeout (a hung primary costs this much)
  --lease-timeout 2s        kill mode, local cluster: replication.failover.lease.timeout
  --promote auto|manual     kill mode: wait for automatic failover (default) or promote a replica
  --store CONNSTRING        local cluster store (default a temporary 'fs::root=…;'); s3::… for RGW/S3
  --keep                    keep the local cluster's data directory and node logs (printed)
  --nodes URL,URL,…         drill a running cluster instead of a local one (primary found by /status)
  --pid PID                 with --nodes, kill and zombie modes: the primary's process id (same host)
  --admin.token=…           admin token (or WALSHIP_ADMIN_TOKEN); a local cluster gets a random one

Exit codes: 0 the drill kept every promise of its mode; 1 it did not (rows lost or duplicated,
a zombie not fenced, writes that never resumed); 2 bad arguments; 3 the cluster could not be
started or reached.`;

// --- Bounds -------------------------------------------------------------------------------------

/** A drill sends at most this many rows: every acknowledged id is kept in memory and read back. */
const ROWS_MAX = 5_000_000;
const TABLES_MAX = 100;
/** How long a writer may go without an acknowledgement after the event before the drill gives up. */
const RECOVERY_WAIT_MS = 60_000;
/** The writers go on at least this long after the writes resumed (or the zombie was fenced). */
const POST_RECOVERY_MS = 1_000;
/** How long a zombie may keep accepting writes after it resumed before the drill calls it unfenced. */
const FENCE_WAIT_MS = 30_000;
/** Missing or duplicated ids listed in the report, per table (the counts are always complete). */
const IDS_LISTED_MAX = 20;

// --- Options ------------------------------------------------------------------------------------

export type DrillMode = 'switchover' | 'kill' | 'zombie';

export interface DrillOptions {
  mode: DrillMode;
  /** undefined with `nodes`: the cluster's own. */
  ack: AckMode | undefined;
  durationMs: number;
  tables: number;
  rateRowsPerS: number;
  requestTimeoutMs: number;
  leaseTimeoutMs: number;
  promote: 'auto' | 'manual';
  /** Connection string of a local cluster's store; undefined = a temporary fs store. */
  store: string | undefined;
  keep: boolean;
  /** A running cluster's node URLs (origins); undefined = start a local cluster. */
  nodes: string[] | undefined;
  pid: number | undefined;
  adminToken: string | undefined;
}

const OWN_FLAGS = [
  'mode',
  'ack',
  'duration',
  'tables',
  'rate',
  'request-timeout',
  'lease-timeout',
  'promote',
  'store',
  'keep',
  'nodes',
  'pid',
  'admin.token',
] as const;

/** Parses `walship drill` arguments; throws InvalidConfigError (exit 2) naming the bad one. */
export function parseDrillArgs(argv: string[], env: Record<string, string | undefined>): DrillOptions {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--([a-z.-]+)(?:=(.*))?$/s.exec(arg);
    if (match === null) throw new InvalidConfigError(`unexpected argument (${describeArgument(arg)})`);
    const name = match[1]!;
    if (!(OWN_FLAGS as readonly string[]).includes(name))
      throw new InvalidConfigError(`unknown flag --${name}; see 'walship drill --help'`);
    if (given.has(name)) throw new InvalidConfigError(`--${name} is given twice`);
    if (name === 'keep') {
      given.set(name, match[2] ?? 'true');
      continue;
    }
    const value = match[2] ?? argv[++i];
    if (value === undefined || value === '') throw new InvalidConfigError(`--${name} needs a value`);
    given.set(name, value);
  }
  const mode = oneOf(given.get('mode'), 'mode', ['switchover', 'kill', 'zombie'] as const);
  if (mode === undefined) throw new InvalidConfigError('--mode switchover|kill|zombie is required');
  const nodes = given.has('nodes') ? parseNodes(given.get('nodes')!) : undefined;
  const options: DrillOptions = {
    mode,
    ack: oneOf(given.get('ack'), 'ack', ['local', 'durable'] as const) ?? (nodes ? undefined : 'durable'),
    durationMs: duration(given.get('duration') ?? '10s', 'duration', 1_000, 3_600_000),
    tables: integer(given.get('tables') ?? '4', 'tables', 1, TABLES_MAX),
    rateRowsPerS: integer(given.get('rate') ?? '1000', 'rate', 1, 1_000_000),
    requestTimeoutMs: duration(given.get('request-timeout') ?? '2s', 'request-timeout', 100, 60_000),
    leaseTimeoutMs: duration(given.get('lease-timeout') ?? '2s', 'lease-timeout', 100, 600_000),
    promote: oneOf(given.get('promote'), 'promote', ['auto', 'manual'] as const) ?? 'auto',
    store: given.get('store'),
    keep: given.has('keep') && given.get('keep') !== 'false',
    nodes,
    pid: given.has('pid') ? integer(given.get('pid')!, 'pid', 1, 4_194_304) : undefined,
    adminToken: given.get('admin.token') ?? env.WALSHIP_ADMIN_TOKEN,
  };
  checkCombinations(options, given);
  return options;
}

function checkCombinations(options: DrillOptions, given: Map<string, string>): void {
  const rows = (options.rateRowsPerS * options.durationMs) / 1000;
  if (rows > ROWS_MAX)
    throw new InvalidConfigError(`--rate × --duration is ${rows} rows; a drill sends at most ${ROWS_MAX}`);
  if (options.store !== undefined) {
    if (options.nodes !== undefined)
      throw new InvalidConfigError('--store is for a local cluster; a running cluster (--nodes) has its own');
    try {
      parseConnectionString(options.store);
    } catch (error) {
      throw new InvalidConfigError(`--store: ${(error as Error).message}`, { cause: error });
    }
  }
  if (given.has('promote') && options.mode !== 'kill')
    throw new InvalidConfigError('--promote is for --mode kill');
  if (options.nodes === undefined) {
    if (options.pid !== undefined)
      throw new InvalidConfigError(
        '--pid is for a running cluster (--nodes); a local one is signalled directly',
      );
    return;
  }
  if (given.has('lease-timeout'))
    throw new InvalidConfigError('--lease-timeout sets up a local cluster; a running cluster has its own');
  if (options.mode !== 'switchover' && options.pid === undefined)
    throw new InvalidConfigError(
      `--mode ${options.mode} on a running cluster needs --pid, the primary's process id on this host`,
    );
  if (options.adminToken === undefined && (options.mode !== 'kill' || options.promote === 'manual'))
    throw new InvalidConfigError('admin.token is required (WALSHIP_ADMIN_TOKEN or --admin.token)');
}

function oneOf<T extends string>(
  value: string | undefined,
  name: string,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new InvalidConfigError(`--${name}: expected ${allowed.join(' or ')}, got ${JSON.stringify(value)}`);
}

function duration(text: string, name: string, minMs: number, maxMs: number): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms < minMs || ms > maxMs)
    throw new InvalidConfigError(
      `--${name}: expected a duration from ${minMs} ms to ${maxMs / 1000} s (like 10s or 500ms), got ${JSON.stringify(text)}`,
    );
  return ms;
}

function integer(text: string, name: string, min: number, max: number): number {
  const value = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min && value <= max))
    throw new InvalidConfigError(
      `--${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  return value;
}

function parseNodes(text: string): string[] {
  const urls = text.split(',').filter((part) => part !== '');
  const origins = urls.map((url) => {
    try {
      return new URL(url).origin;
    } catch {
      throw new InvalidConfigError(
        `--nodes: ${JSON.stringify(url)} is not a URL (expected http://host:port)`,
      );
    }
  });
  if (new Set(origins).size < 2)
    throw new InvalidConfigError('--nodes: expected at least two different node URLs, comma-separated');
  return [...new Set(origins)];
}

// --- The command --------------------------------------------------------------------------------

/** `walship drill`: runs the drill, prints the report (JSON on stdout, summary on stderr). */
export async function drillCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(DRILL_USAGE);
    return EXIT.ok;
  }
  const options = parseDrillArgs(argv, io.env);
  const report = await runDrill(options, { progress: (text) => io.stderr(`drill: ${text}`) });
  io.stdout(JSON.stringify(report));
  io.stderr(renderDrillSummary(report));
  return report.ok ? EXIT.ok : EXIT.failed;
}

// --- The report ---------------------------------------------------------------------------------

export interface DrillReport {
  mode: DrillMode;
  ack: AckMode;
  cluster: { kind: 'local' | 'running'; store: string; dataDir: string | null; nodes: NodeReport[] };
  load: { tables: string[]; rateRowsPerS: number; writingMs: number; requestTimeoutMs: number };
  event: EventReport;
  /** The client-observed write pause: the longest gap between acknowledged flushes spanning the event. */
  rtoMs: number | null;
  /** The longest gap between acknowledged flushes away from the event (the load's own rhythm). */
  steadyGapMaxMs: number;
  rows: RowsReport;
  fencing: FencingReport;
  finalPrimary: { url: string; epoch: string | null } | null;
  /** Whether the mode and ack mode promise that no acknowledged row is lost. */
  promisesNoLoss: boolean;
  /** Every broken promise, in words; empty when `ok`. */
  failures: string[];
  ok: boolean;
}

export interface NodeReport {
  url: string;
  nodeId: string | null;
  roleBefore: string | null;
  roleAfter: string | null;
  /** Whether its /status showed a primary accepting writes at the end. */
  acceptingAfter: boolean;
  epochAfter: string | null;
}

export interface EventReport {
  kind: DrillMode;
  /** The primary the event hit. */
  from: string;
  /** The node that became the primary (null if none did). */
  to: string | null;
  /** Since the writers started, in ms. */
  startedAtMs: number;
  /** When the new primary was known to take writes (null if it never was). */
  endedAtMs: number | null;
  detail: Record<string, unknown>;
  error: string | null;
}

export interface RowsReport {
  sent: number;
  acknowledged: number;
  /** Rows a server refused outright (4xx): never acknowledged, dropped. */
  refused: number;
  /** Acknowledged by nobody when the writers stopped (still buffered after the last flush). */
  unacknowledged: number;
  found: number;
  missing: number;
  duplicates: number;
  /** Why rows are doubled (null when none are): batches sent without exactly-once, or a bug. */
  duplicatesCause: string | null;
  /** What became of the writers' batches: committed, replayed after a lost answer, ignored. */
  batches: BatchTotals;
  /** Rows found that no writer saw acknowledged (in flight when the event hit). */
  foundUnacknowledged: number;
  missingIds: Record<string, number[]>;
  duplicateIds: Record<string, number[]>;
  writerErrors: string[];
}

export interface FencingReport {
  /** Every node's divergence at the end (a fenced or replaced primary's un-uploaded txns). */
  events: { url: string; nodeId: string | null; fencedBy: string | null; divergence: DivergenceInfo }[];
  /** Rows in those divergence files. */
  divergenceRows: number;
  /** Acknowledged rows missing from the final primary that a divergence file holds. */
  missingInDivergence: number | null;
  /** Acknowledged rows missing and in no divergence file (null when the old primary's files are unknown). */
  missingNotInDivergence: number | null;
  zombie: ZombieReport | null;
}

export interface ZombieReport {
  /** From SIGCONT until its /status no longer showed an accepting primary, in ms. */
  fencedAfterResumeMs: number | null;
  /** Rows a stale client (knowing only the zombie) wrote to it after it resumed, and it acknowledged. */
  ackedAfterResume: number;
  refusedAfterResume: number;
  /** Of those acknowledged rows: in its divergence files, and on the final primary (a fencing failure). */
  ackedInDivergence: number;
  ackedOnCluster: number;
  roleAfter: string | null;
}

// --- Running a drill ----------------------------------------------------------------------------

export interface DrillDeps {
  /** One line of progress at a time (the command prints them on stderr). */
  progress?: (text: string) => void;
}

interface DrillContext {
  options: DrillOptions;
  progress: (text: string) => void;
  /** Milliseconds since the writers started (negative before). */
  now: () => number;
  token: string;
  urls: string[];
  primary: string;
  replicas: string[];
  cluster: LocalCluster | undefined;
  writers: ClusterWriter[];
  ids: { next: number };
}

/** Runs one drill (local cluster or running one) and returns its report. Throws only when it cannot start. */
export async function runDrill(options: DrillOptions, deps: DrillDeps = {}): Promise<DrillReport> {
  const progress = deps.progress ?? (() => {});
  const token = options.adminToken ?? randomBytes(16).toString('hex');
  const cluster = options.nodes === undefined ? await startLocalCluster(options, token, progress) : undefined;
  try {
    const urls = cluster?.urls ?? options.nodes!;
    const before = await Promise.all(urls.map((url) => statusOf(url)));
    const primaries = urls.filter((_, i) => isAcceptingPrimary(before[i]));
    if (primaries.length !== 1)
      throw new WalshipError(
        'DRILL_NO_PRIMARY',
        'unavailable',
        `expected exactly one node answering /status as an accepting primary, found ${primaries.length}: ${describeRoles(urls, before)}`,
      );
    const primary = primaries[0]!;
    const replicas = urls.filter((url, i) => url !== primary && before[i]?.role === 'replica');
    if (replicas.length === 0)
      throw new WalshipError(
        'DRILL_NO_REPLICA',
        'unavailable',
        `no replica to fail over to: ${describeRoles(urls, before)}`,
      );
    const ack = clusterAck(options, before[urls.indexOf(primary)]);
    const runId = randomBytes(3).toString('hex');
    const tables = Array.from({ length: options.tables }, (_, i) => `drill_${runId}_${i}`);
    const ids = { next: 1 };
    const startedAt = systemClock.monotonicMs();
    const ctx: DrillContext = {
      options,
      progress,
      now: () => systemClock.monotonicMs() - startedAt,
      token,
      urls,
      primary,
      replicas,
      cluster,
      ids,
      writers: [],
    };
    ctx.writers = tables.map(
      (table) =>
        new ClusterWriter({
          table,
          conf: senderConf([primary, ...urls.filter((url) => url !== primary)], options.requestTimeoutMs),
          ratePerS: options.rateRowsPerS / tables.length,
          ids,
          now: ctx.now,
        }),
    );
    progress(
      `${options.mode} drill, ack ${ack}, ${tables.length} tables at ${options.rateRowsPerS} rows/s; primary ${primary}`,
    );
    for (const writer of ctx.writers) writer.start();
    const report = await drillAfterStart(ctx, { before, ack, tables });
    if (cluster !== undefined && options.keep) progress(`data kept in ${cluster.dir}`);
    return report;
  } finally {
    await cluster?.stop({ keep: options.keep });
  }
}

/**
 * A primary and two replicas over the given store (a temporary fs store unless --store); in kill
 * mode with automatic promotion, automatic failover is on everywhere.
 */
async function startLocalCluster(
  options: DrillOptions,
  token: string,
  progress: (text: string) => void,
): Promise<LocalCluster> {
  const cluster = await LocalCluster.start({
    tempPrefix: 'walship-drill-',
    ...(options.store === undefined ? {} : { store: options.store }),
    ack: options.ack ?? 'durable',
    replicas: 2,
    ...(options.mode === 'kill' && options.promote === 'auto'
      ? { autoFailover: { leaseTimeoutMs: options.leaseTimeoutMs } }
      : {}),
    adminToken: token,
  });
  progress(`local cluster on ${cluster.storeDescription}: ${cluster.urls.join(', ')}`);
  return cluster;
}

async function drillAfterStart(
  ctx: DrillContext,
  run: { before: (NodeStatus | null)[]; ack: AckMode; tables: string[] },
): Promise<DrillReport> {
  const { options } = ctx;
  let event: EventReport;
  let zombie: ZombieReport | null = null;
  let zombieAcked: Map<string, number[]> = new Map();
  let recovered = false;
  try {
    await waitUntil(
      () => ctx.writers.every((w) => w.acks.length > 0),
      RECOVERY_WAIT_MS,
      'every writer acknowledged once',
    );
    await sleep(Math.max(0, options.durationMs / 3 - ctx.now()));
    event = await runEvent(ctx);
    ctx.progress(
      `${event.kind}: ${event.from} → ${event.to ?? 'nobody'}${event.error === null ? '' : ` (${event.error})`}`,
    );
    if (event.endedAtMs !== null) {
      const endedAtMs = event.endedAtMs;
      recovered = await waitFor(
        () => ctx.writers.every((w) => (w.acks.at(-1)?.atMs ?? -1) > endedAtMs),
        RECOVERY_WAIT_MS + options.requestTimeoutMs,
      );
    }
    if (options.mode === 'zombie' && event.error === null) {
      const resumed = await resumeZombie(ctx, event.from, run.tables[0]!);
      zombie = resumed.report;
      zombieAcked = resumed.acked;
    }
    // Write on after the recovery too: the catch-up burst and later writes must land on the new primary.
    await sleep(Math.max(0, options.durationMs - ctx.now(), POST_RECOVERY_MS));
  } finally {
    await Promise.all(ctx.writers.map((w) => w.stop()));
  }
  const writingMs = ctx.now();
  ctx.progress(`writers stopped after ${Math.round(writingMs)} ms; reading every table back`);
  return checkDrill(ctx, { ...run, event, zombie, zombieAcked, recovered, writingMs });
}

/** The ack mode the drill runs under: the local cluster's, or the running primary's (checked against --ack). */
function clusterAck(options: DrillOptions, primaryStatus: NodeStatus | null | undefined): AckMode {
  const running = primaryStatus?.ackMode;
  if (options.nodes === undefined) return options.ack ?? 'durable';
  if (running !== 'local' && running !== 'durable')
    throw new WalshipError(
      'DRILL_NO_PRIMARY',
      'unavailable',
      'the primary does not report its ackMode in /status',
    );
  if (options.ack !== undefined && options.ack !== running)
    throw new InvalidConfigError(`--ack ${options.ack}: the running cluster acknowledges in ${running} mode`);
  return running;
}

// --- Events -------------------------------------------------------------------------------------

async function runEvent(ctx: DrillContext): Promise<EventReport> {
  const startedAtMs = ctx.now();
  const base = { kind: ctx.options.mode, from: ctx.primary, startedAtMs };
  try {
    if (ctx.options.mode === 'switchover') return { ...base, ...(await switchover(ctx)) };
    if (ctx.options.mode === 'kill') return { ...base, ...(await killPrimary(ctx)) };
    return { ...base, ...(await stopAndPromote(ctx)) };
  } catch (error) {
    return { ...base, to: null, endedAtMs: null, detail: {}, error: (error as Error).message };
  }
}

type EventOutcome = Pick<EventReport, 'to' | 'endedAtMs' | 'detail' | 'error'>;

/** `walship switchover --from primary --to replica`, run in-process. */
async function switchover(ctx: DrillContext): Promise<EventOutcome> {
  const to = ctx.replicas[0]!;
  const out: string[] = [];
  const err: string[] = [];
  const code = await switchoverCommand(
    ['--from', ctx.primary, '--to', to, '--timeout', '30s', `--admin.token=${ctx.token}`],
    { stdout: (text) => out.push(text), stderr: (text) => err.push(text), env: {} },
  );
  const endedAtMs = ctx.now();
  if (code !== EXIT.ok)
    return { to: null, endedAtMs: null, detail: { exitCode: code }, error: err.join('; ') || `exit ${code}` };
  const answer = JSON.parse(out.at(-1) ?? '{}') as Record<string, unknown>;
  return {
    to,
    endedAtMs,
    detail: {
      epoch: answer.epoch ?? null,
      lastTxns: answer.lastTxns ?? {},
      switchoverMs: answer.writePauseMs,
      phasesMs: answer.phasesMs ?? null,
    },
    error: null,
  };
}

/** SIGKILL the primary; wait for a replica to take over (by lease, or promoted by the drill). */
async function killPrimary(ctx: DrillContext): Promise<EventOutcome> {
  signalPrimary(ctx, 'SIGKILL');
  const killedAtMs = ctx.now();
  let promotion: unknown = null;
  if (ctx.options.promote === 'manual') {
    const answer = await postAdmin(ctx.replicas[0]!, '/admin/promote?reason=drill-kill', ctx.token);
    if (!answer.ok) throw new Error(`promoting ${ctx.replicas[0]} failed: ${JSON.stringify(answer.body)}`);
    promotion = answer.body;
  }
  const waitMs = RECOVERY_WAIT_MS + (ctx.cluster === undefined ? 0 : ctx.options.leaseTimeoutMs * 2);
  const to = await waitForPrimary(
    ctx.urls.filter((url) => url !== ctx.primary),
    waitMs,
  );
  if (to === undefined) throw new Error(`no node took writes within ${waitMs} ms of the kill`);
  const endedAtMs = ctx.now();
  return {
    to,
    endedAtMs,
    detail: {
      promote: ctx.options.promote,
      leaseTimeoutMs: ctx.cluster === undefined ? null : ctx.options.leaseTimeoutMs,
      takeoverMs: Math.round(endedAtMs - killedAtMs),
      promotion,
    },
    error: null,
  };
}

/** SIGSTOP the primary and promote a replica over it (the zombie is resumed later). */
async function stopAndPromote(ctx: DrillContext): Promise<EventOutcome> {
  signalPrimary(ctx, 'SIGSTOP');
  const to = ctx.replicas[0]!;
  const answer = await postAdmin(to, '/admin/promote?reason=drill-zombie', ctx.token);
  const endedAtMs = ctx.now();
  if (!answer.ok) throw new Error(`promoting ${to} failed: ${JSON.stringify(answer.body)}`);
  return { to, endedAtMs, detail: { promotion: answer.body }, error: null };
}

function signalPrimary(ctx: DrillContext, signal: NodeJS.Signals): void {
  if (ctx.cluster !== undefined) ctx.cluster.signal(ctx.primary, signal);
  else process.kill(ctx.options.pid!, signal);
}

/**
 * SIGCONT the zombie; a stale client that knows only it writes one row every STATUS_POLL_MS until
 * its /status stops showing an accepting primary. Then wait for it to follow as a replica.
 */
async function resumeZombie(
  ctx: DrillContext,
  zombieUrl: string,
  table: string,
): Promise<{ report: ZombieReport; acked: Map<string, number[]> }> {
  const acked: number[] = [];
  let refused = 0;
  const resumedAt = systemClock.monotonicMs();
  signalPrimary(ctx, 'SIGCONT');
  let fencedAfterResumeMs: number | null = null;
  while (systemClock.monotonicMs() - resumedAt < FENCE_WAIT_MS) {
    const status = await statusOf(zombieUrl);
    if (status !== null && !isAcceptingPrimary(status)) {
      fencedAfterResumeMs = systemClock.monotonicMs() - resumedAt;
      break;
    }
    const id = ctx.ids.next++;
    if (await writeOne(zombieUrl, table, id, ctx.options.requestTimeoutMs)) acked.push(id);
    else refused++;
    await sleep(STATUS_POLL_MS);
  }
  ctx.progress(
    fencedAfterResumeMs === null
      ? `the zombie ${zombieUrl} was not fenced within ${FENCE_WAIT_MS} ms of SIGCONT`
      : `the zombie was fenced ${Math.round(fencedAfterResumeMs)} ms after SIGCONT (${acked.length} stale rows acknowledged)`,
  );
  const status = await waitForStatus(zombieUrl, (s) => s.role === 'replica', FENCE_WAIT_MS);
  return {
    acked: new Map([[table, acked]]),
    report: {
      fencedAfterResumeMs: fencedAfterResumeMs === null ? null : round1(fencedAfterResumeMs),
      ackedAfterResume: acked.length,
      refusedAfterResume: refused,
      ackedInDivergence: 0,
      ackedOnCluster: 0,
      roleAfter: status?.role ?? null,
    },
  };
}

// --- Checks -------------------------------------------------------------------------------------

async function checkDrill(
  ctx: DrillContext,
  run: {
    before: (NodeStatus | null)[];
    ack: AckMode;
    tables: string[];
    event: EventReport;
    zombie: ZombieReport | null;
    zombieAcked: Map<string, number[]>;
    recovered: boolean;
    writingMs: number;
  },
): Promise<DrillReport> {
  const { options } = ctx;
  // The promoted node first: a zombie that was never fenced must not be the one read back.
  const to = run.event.to;
  const finalUrl = await waitForPrimary(
    to === null ? ctx.urls : [to, ...ctx.urls.filter((url) => url !== to)],
    RECOVERY_WAIT_MS,
  );
  const found = new Map<string, number[]>();
  if (finalUrl !== undefined)
    for (const table of run.tables) found.set(table, await readIds(finalUrl, table));
  const acked = new Map(ctx.writers.map((w) => [w.table, w.acks.flatMap((a) => a.ids)]));
  const comparison = compareRows(acked, found);
  // The old primary's divergence files appear once it runs again: a killed local one is restarted.
  if (options.mode === 'kill' && ctx.cluster !== undefined) {
    ctx.progress(`restarting the killed primary as a replica to collect its divergence files`);
    await ctx.cluster.restartAsReplica(ctx.primary).catch((error: unknown) => {
      ctx.progress(`the killed primary did not come back: ${(error as Error).message}`);
    });
  }
  const urls = ctx.cluster?.urls ?? ctx.urls;
  const after = await Promise.all(urls.map((url) => statusOf(url)));
  const events = urls.flatMap((url, i) => {
    const status = after[i];
    return status?.divergence === undefined
      ? []
      : [
          {
            url,
            nodeId: status.nodeId ?? null,
            fencedBy: status.fencedBy ?? null,
            divergence: status.divergence,
          },
        ];
  });
  // `/status` names divergence files relative to the node's data dir (issue 13 item 10).
  const dataDirOf = (url: string) => ctx.cluster?.nodes.find((node) => node.url === url)?.dataDir ?? '.';
  const diverged = await divergenceIds(events.map((e) => ({ ...e.divergence, dataDir: dataDirOf(e.url) })));
  const oldPrimaryKnown = ctx.cluster !== undefined || events.some((e) => e.url === ctx.primary);
  const missingDiverged = countIn(comparison.missing, diverged);
  const zombie = run.zombie === null ? null : zombieChecks(run.zombie, run.zombieAcked, found, diverged);
  const pause = writePause(
    ctx.writers.map((w) => ({ writer: w.table, startedAtMs: 0, ackTimesMs: w.acks.map((a) => a.atMs) })),
    { startMs: run.event.startedAtMs, endMs: run.event.endedAtMs ?? Number.POSITIVE_INFINITY },
  );
  const rows: RowsReport = {
    sent: sum(ctx.writers.map((w) => w.sent)),
    acknowledged: comparison.acknowledged,
    refused: sum(ctx.writers.map((w) => w.refused)),
    unacknowledged: sum(ctx.writers.map((w) => w.unacknowledged)),
    found: comparison.found,
    missing: comparison.missingCount,
    duplicates: comparison.duplicateCount,
    duplicatesCause: duplicateCause(comparison.duplicateCount, batchTotals(ctx.writers)),
    batches: batchTotals(ctx.writers),
    foundUnacknowledged: comparison.foundUnacknowledged,
    missingIds: listed(comparison.missing),
    duplicateIds: listed(comparison.duplicated),
    writerErrors: ctx.writers.flatMap((w) => w.errors.map((e) => `${w.table}: ${e}`)),
  };
  const fencing: FencingReport = {
    events,
    divergenceRows: sum([...diverged.values()].map((ids) => ids.length)),
    missingInDivergence: oldPrimaryKnown ? missingDiverged : null,
    missingNotInDivergence: oldPrimaryKnown ? comparison.missingCount - missingDiverged : null,
    zombie,
  };
  const promisesNoLoss = options.mode === 'switchover' || run.ack === 'durable';
  const failures = assessDrill({
    mode: options.mode,
    ack: run.ack,
    rows,
    fencing,
    eventError: run.event.error,
    recovered: run.recovered,
    finalPrimary: finalUrl,
    acceptingAtEnd: urls.filter((_, i) => isAcceptingPrimary(after[i])),
  });
  return {
    mode: options.mode,
    ack: run.ack,
    cluster: {
      kind: ctx.cluster === undefined ? 'running' : 'local',
      store: ctx.cluster?.storeDescription ?? 'the running cluster’s',
      dataDir: ctx.cluster !== undefined && options.keep ? ctx.cluster.dir : null,
      nodes: urls.map((url, i) => {
        const first = ctx.urls.indexOf(url);
        return {
          url,
          nodeId: after[i]?.nodeId ?? (first < 0 ? null : (run.before[first]?.nodeId ?? null)),
          roleBefore: first < 0 ? null : (run.before[first]?.role ?? null),
          roleAfter: after[i]?.role ?? null,
          acceptingAfter: isAcceptingPrimary(after[i]),
          epochAfter: after[i]?.epoch ?? null,
        };
      }),
    },
    load: {
      tables: run.tables,
      rateRowsPerS: options.rateRowsPerS,
      writingMs: Math.round(run.writingMs),
      requestTimeoutMs: options.requestTimeoutMs,
    },
    event: run.event,
    rtoMs: pause.pauseMs === null ? null : round1(pause.pauseMs),
    steadyGapMaxMs: round1(pause.steadyGapMaxMs),
    rows,
    fencing,
    finalPrimary:
      finalUrl === undefined ? null : { url: finalUrl, epoch: after[urls.indexOf(finalUrl)]?.epoch ?? null },
    promisesNoLoss,
    failures,
    ok: failures.length === 0,
  };
}

function zombieChecks(
  report: ZombieReport,
  zombieAcked: Map<string, number[]>,
  found: Map<string, number[]>,
  diverged: Map<string, number[]>,
): ZombieReport {
  return {
    ...report,
    ackedInDivergence: countIn(zombieAcked, diverged),
    ackedOnCluster: countIn(zombieAcked, found),
  };
}

/** The drill's verdict: every promise of the mode that the run broke, in words. Pure. */
export function assessDrill(run: {
  mode: DrillMode;
  ack: AckMode;
  rows: Pick<RowsReport, 'missing' | 'duplicates'> & { batches?: BatchTotals };
  fencing: Pick<FencingReport, 'missingNotInDivergence' | 'zombie'>;
  eventError: string | null;
  recovered: boolean;
  finalPrimary: string | undefined;
  /** Every node whose /status showed an accepting primary once the drill was over. */
  acceptingAtEnd: readonly string[];
}): string[] {
  const failures: string[] = [];
  const noLoss = run.mode === 'switchover' || run.ack === 'durable';
  if (run.eventError !== null) failures.push(`the ${run.mode} did not complete: ${run.eventError}`);
  else if (!run.recovered) failures.push('writes did not resume after the event');
  if (run.finalPrimary === undefined)
    failures.push('no node takes writes at the end: nothing could be checked');
  if (run.acceptingAtEnd.length > 1)
    failures.push(`split brain: ${run.acceptingAtEnd.join(' and ')} all accept writes at the end`);
  if (noLoss && run.rows.missing > 0)
    failures.push(
      `${run.rows.missing} acknowledged rows are missing (${run.mode}, ack ${run.ack} promises none)`,
    );
  // A request cut by SIGKILL or SIGSTOP after its commit but before its 204 is sent again by the
  // client. With batch identities the nodes honour (RFC-0011) that retry writes nothing; without
  // them it is at-least-once, as QuestDB's clients: a duplicate there is not a broken promise.
  const exactlyOnce = run.rows.batches !== undefined && run.rows.batches.ignored === 0;
  if (run.mode === 'switchover' && run.rows.duplicates > 0)
    failures.push(`${run.rows.duplicates} rows are duplicated (a switchover answers 421 before any commit)`);
  else if (exactlyOnce && run.rows.duplicates > 0)
    failures.push(
      `${run.rows.duplicates} rows are duplicated though every batch carried an identity the nodes honoured (RFC-0011 promises none)`,
    );
  if (!noLoss && (run.fencing.missingNotInDivergence ?? 0) > 0)
    failures.push(
      `${run.fencing.missingNotInDivergence} acknowledged rows are missing and in no divergence file (RFC-0002: local-mode loss is in the old primary's divergence files)`,
    );
  const zombie = run.fencing.zombie;
  if (zombie !== null) {
    if (zombie.fencedAfterResumeMs === null) failures.push('the zombie was never fenced after it resumed');
    if (zombie.ackedOnCluster > 0)
      failures.push(
        `${zombie.ackedOnCluster} rows the zombie acknowledged after it was replaced reached the cluster`,
      );
  }
  return failures;
}

// --- Pure analysis (exported for tests) ----------------------------------------------------------

export interface WriterAcks {
  writer: string;
  /** When the writer started (its first gap starts there). */
  startedAtMs: number;
  /** When each acknowledged flush resolved, ascending. */
  ackTimesMs: readonly number[];
}

/**
 * The client-observed write pause (RTO): per writer, the gaps between successive acknowledged
 * flushes (the first from its start); the gaps that overlap the event window [startMs, endMs] are
 * the event's, the longest over all writers is the pause. A writer with no acknowledgement after
 * the event started never resumed: the pause is null. The other gaps, but the first (tables being
 * created), give the load's own rhythm.
 */
export function writePause(
  writers: readonly WriterAcks[],
  event: { startMs: number; endMs: number },
): { pauseMs: number | null; writer: string | null; steadyGapMaxMs: number } {
  let pauseMs = 0;
  let writer: string | null = null;
  let steadyGapMaxMs = 0;
  let resumed = true;
  for (const log of writers) {
    const times = [log.startedAtMs, ...log.ackTimesMs];
    if (!log.ackTimesMs.some((t) => t >= event.startMs)) resumed = false;
    for (let i = 1; i < times.length; i++) {
      const fromMs = times[i - 1]!;
      const toMs = times[i]!;
      const gapMs = toMs - fromMs;
      if (toMs >= event.startMs && fromMs <= event.endMs) {
        if (gapMs > pauseMs) [pauseMs, writer] = [gapMs, log.writer];
      } else if (i > 1) steadyGapMaxMs = Math.max(steadyGapMaxMs, gapMs); // not the warm-up
    }
  }
  return resumed ? { pauseMs, writer, steadyGapMaxMs } : { pauseMs: null, writer: null, steadyGapMaxMs };
}

export interface RowComparison {
  acknowledged: number;
  found: number;
  /** Acknowledged ids not found, per table. */
  missing: Map<string, number[]>;
  missingCount: number;
  /** Ids found more than once, per table (each listed once). */
  duplicated: Map<string, number[]>;
  /** Extra copies: found rows minus distinct found ids. */
  duplicateCount: number;
  foundUnacknowledged: number;
}

/** Acknowledged ids against the ids read back (RPO and duplicates). Pure. */
export function compareRows(
  acked: ReadonlyMap<string, readonly number[]>,
  found: ReadonlyMap<string, readonly number[]>,
): RowComparison {
  const result: RowComparison = {
    acknowledged: 0,
    found: 0,
    missing: new Map(),
    missingCount: 0,
    duplicated: new Map(),
    duplicateCount: 0,
    foundUnacknowledged: 0,
  };
  for (const table of new Set([...acked.keys(), ...found.keys()])) {
    const counts = new Map<number, number>();
    for (const id of found.get(table) ?? []) counts.set(id, (counts.get(id) ?? 0) + 1);
    const ackedIds = new Set(acked.get(table) ?? []);
    const missing = [...ackedIds].filter((id) => !counts.has(id)).sort((a, b) => a - b);
    const duplicated = [...counts]
      .filter(([, n]) => n > 1)
      .map(([id]) => id)
      .sort((a, b) => a - b);
    result.acknowledged += ackedIds.size;
    result.found += found.get(table)?.length ?? 0;
    result.missingCount += missing.length;
    result.duplicateCount += sum([...counts.values()].map((n) => n - 1));
    result.foundUnacknowledged += [...counts.keys()].filter((id) => !ackedIds.has(id)).length;
    if (missing.length > 0) result.missing.set(table, missing);
    if (duplicated.length > 0) result.duplicated.set(table, duplicated);
  }
  return result;
}

/** The rows of a divergence file (primary/divergence.ts: ILP text, `#` comments) as ids per table. Pure. */
export function parseDivergenceIds(text: string): Map<string, number[]> {
  const ids = new Map<string, number[]>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const table = /^((?:[^,\s\\]|\\.)+)[,\s]/.exec(line)?.[1];
    const id = /[\s,]id=(\d+)i(?:[,\s]|$)/.exec(line)?.[1];
    if (table === undefined || id === undefined) continue;
    ids.set(table, [...(ids.get(table) ?? []), Number(id)]);
  }
  return ids;
}

function countIn(
  ids: ReadonlyMap<string, readonly number[]>,
  within: ReadonlyMap<string, readonly number[]>,
): number {
  let count = 0;
  for (const [table, list] of ids) {
    const set = new Set(within.get(table) ?? []);
    count += list.filter((id) => set.has(id)).length;
  }
  return count;
}

function listed(ids: Map<string, number[]>): Record<string, number[]> {
  return Object.fromEntries([...ids].map(([table, list]) => [table, list.slice(0, IDS_LISTED_MAX)]));
}

async function divergenceIds(
  divergences: (DivergenceInfo & { dataDir: string })[],
): Promise<Map<string, number[]>> {
  const all = new Map<string, number[]>();
  for (const divergence of divergences)
    for (const file of divergence.files) {
      const text = await readFile(path.resolve(divergence.dataDir, file.file), 'utf8').catch(() => '');
      for (const [table, ids] of parseDivergenceIds(text))
        all.set(table, [...(all.get(table) ?? []), ...ids]);
    }
  return all;
}

// --- Summary ------------------------------------------------------------------------------------

/** The human summary of a report (the command prints it on stderr). */
export function renderDrillSummary(report: DrillReport): string {
  const { event, rows, fencing } = report;
  const lines = [
    `walship drill: ${report.mode}, ack ${report.ack}, ${report.load.tables.length} tables at ${report.load.rateRowsPerS} rows/s for ${(report.load.writingMs / 1000).toFixed(1)} s on a ${report.cluster.kind} cluster (store: ${report.cluster.store})`,
    `  event:    ${event.kind} of ${event.from} → ${event.to ?? 'nobody'}${event.endedAtMs === null ? '' : ` in ${Math.round(event.endedAtMs - event.startedAtMs)} ms`}${event.error === null ? '' : `; failed: ${event.error}`}`,
    `  RTO:      ${report.rtoMs === null ? 'writes never resumed' : `${Math.round(report.rtoMs)} ms longest write pause a client saw`} (steady-state gap ≤ ${Math.round(report.steadyGapMaxMs)} ms)`,
    `  RPO:      ${rows.missing} of ${rows.acknowledged} acknowledged rows missing; ${rows.duplicates} duplicated; ${rows.foundUnacknowledged} found that were never acknowledged`,
    `  batches:  ${rows.batches.committed} committed, ${rows.batches.replayed} sent again after a lost answer and recognised (nothing doubled), ${rows.batches.ignored} without exactly-once`,
  ];
  if (rows.duplicatesCause !== null) lines.push(`  doubled:  ${rows.duplicatesCause}`);
  if (fencing.events.length === 0) lines.push('  fencing:  no divergence on any node');
  for (const e of fencing.events)
    lines.push(
      `  fencing:  ${e.url} (${e.nodeId ?? '?'}) epoch ${e.divergence.epoch}: ${e.divergence.files.map((f) => `${f.table} ${f.txns} txns/${f.rows} rows`).join(', ') || 'nothing pending'}${e.divergence.movedTo === null ? '' : `; database moved to ${e.divergence.movedTo}`}`,
    );
  if (fencing.missingInDivergence !== null && rows.missing > 0)
    lines.push(
      `            missing rows in divergence files: ${fencing.missingInDivergence}, in none: ${fencing.missingNotInDivergence}`,
    );
  const z = fencing.zombie;
  if (z !== null)
    lines.push(
      `  zombie:   ${z.fencedAfterResumeMs === null ? 'never fenced' : `fenced ${Math.round(z.fencedAfterResumeMs)} ms after SIGCONT`}; a stale client got ${z.ackedAfterResume} rows acknowledged (${z.ackedInDivergence} in its divergence files, ${z.ackedOnCluster} on the cluster) and ${z.refusedAfterResume} refused; now a ${z.roleAfter ?? 'silent node'}`,
    );
  if (rows.writerErrors.length > 0)
    lines.push(`  client:   ${rows.writerErrors.length} flush errors, first: ${rows.writerErrors[0]}`);
  lines.push(
    report.ok
      ? `  result:   OK — ${report.promisesNoLoss ? 'no acknowledged row lost, as the mode promises' : 'every promise of the mode kept (it allows local-mode loss)'}`
      : `  result:   FAILED — ${report.failures.join('; ')}`,
  );
  return lines.join('\n');
}

// --- Small helpers ------------------------------------------------------------------------------

async function waitUntil(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  if (!(await waitFor(done, timeoutMs)))
    throw new WalshipError(
      'DRILL_NO_WRITES',
      'unavailable',
      `gave up after ${timeoutMs} ms waiting until ${what}`,
    );
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
