/**
 * The end of `walship demo`: wait until every node applied everything, compare every table on
 * every node, read every id back from the final primary, and say what happened — the JSON report,
 * its human summary, and commands to look at the data afterwards.
 */
import path from 'node:path';
import { systemClock } from '../core/index.js';
import { type BatchTotals, batchTotals, type ClusterWriter, duplicateCause } from './cluster-writer.js';
import { epochOf } from './demo-view.js';
import { compareRows, writePause } from './drill.js';
import type { LocalNodeInfo } from './local-cluster.js';
import {
  isAcceptingPrimary,
  type NodeStatus,
  readIds,
  sleep,
  statusOf,
  waitForPrimary,
} from './node-http.js';
import { type TableDigest, tableDigest } from './table-digest.js';

/** `walship demo`'s options (parsed by demo.ts). */
export interface DemoOptions {
  durationMs: number;
  rateRowsPerS: number;
  /** Absolute. */
  dataDir: string;
  json: boolean;
  keepRunning: boolean;
}

export interface DemoReport {
  ok: boolean;
  /** Every broken promise, in words; empty when `ok`. */
  failures: string[];
  /** How long the writers ran. */
  durationMs: number;
  rateRowsPerS: number;
  /** The cluster runs on after the report (--keep-running). */
  keepRunning: boolean;
  dataDir: string;
  store: string;
  ackMode: 'durable';
  nodes: {
    name: string;
    url: string;
    /** Every URL it listened on (a restarted node gets a new port), the current last. */
    urls: string[];
    pid: number;
    dataDir: string;
    log: string;
    finalRole: string | null;
    epoch: string | null;
  }[];
  finalPrimary: string | null;
  /** Every node applied every table up to the final primary's committed txn. */
  converged: boolean;
  convergedAfterMs: number | null;
  tables: {
    name: string;
    /** On the final primary. */
    rows: number | null;
    /** Every node has the table with the same count, id sum and content hash. */
    checksumsEqual: boolean;
    perNode: Record<string, (TableDigest & { url: string }) | null>;
  }[];
  events: [SwitchoverEvent, CrashEvent];
  rows: {
    sent: number;
    acknowledged: number;
    /** Acknowledged, yet not on the final primary. */
    lost: number;
    /** Extra copies on the final primary. */
    duplicates: number;
    /** Why rows are doubled (null when none are). */
    duplicatesCause: string | null;
    /** What became of the writers' batches (RFC-0011): committed, replayed after a lost answer, ignored. */
    batches: BatchTotals;
    /** On the final primary though no writer saw them acknowledged (in flight when a node died). */
    foundUnacknowledged: number;
    /** Still buffered by a writer at the end (never acknowledged). */
    unacknowledged: number;
    /** Flushes that failed for good (the client retries across a failover on its own), first few per table. */
    writerErrors: string[];
  };
  notes: string[];
  /** Commands to look at the data afterwards. */
  next: string[];
}

/** Rows are counted to the event whose window holds their acknowledgement. */
interface EventRows {
  /** Acknowledgements from this ms (since the writers started)… */
  acksFromMs: number;
  /** …to this one (null: to the end). */
  acksToMs: number | null;
  acknowledged: number;
  lost: number;
  duplicates: number;
}

export interface SwitchoverEvent extends EventRows {
  kind: 'switchover';
  from: string;
  to: string | null;
  /** When the switchover started and ended (the new primary took writes), ms since the writers started. */
  atMs: number;
  endedAtMs: number | null;
  /** The client-observed write pause: the longest gap between acknowledged flushes spanning it. */
  writePauseMs: number | null;
  /** The switchover command's own demote → promote time. */
  switchoverMs: number | null;
  epoch: string | null;
  error: string | null;
}

export interface CrashEvent extends EventRows {
  kind: 'crash failover';
  killed: string | null;
  killedPid: number | null;
  promoted: string | null;
  /** When the kill happened, and when a replica answered as an accepting primary. */
  atMs: number;
  endedAtMs: number | null;
  leaseTimeoutMs: number;
  /** From the SIGKILL until a replica answered as an accepting primary. */
  takeoverMs: number | null;
  writePauseMs: number | null;
  rejoined: boolean;
  /** The killed node's URL once it runs again as a replica (its own port again). */
  rejoinedAs: string | null;
  /** Txns the killed node had committed but never uploaded (never acknowledged in durable mode). */
  divergence: { txns: number; rows: number; files: string[] } | null;
  error: string | null;
}

// --- Checks -------------------------------------------------------------------------------------

/** How long the nodes may take to apply everything once the writers stopped. */
const CONVERGE_WAIT_MS = 60_000;
const CONVERGE_POLL_MS = 100;

export interface ReportInput {
  options: DemoOptions;
  tables: readonly string[];
  /** The cluster's nodes now (a restarted node on its own port again). */
  nodes: LocalNodeInfo[];
  /** Every URL each node listened on, by name. */
  urlsByName: ReadonlyMap<string, string[]>;
  writers: ClusterWriter[];
  switchover: SwitchoverEvent;
  crash: CrashEvent;
  writingMs: number;
  leaseTimeoutMs: number;
  signal: AbortSignal;
  phase: (line: string) => void;
}

/** Checks the cluster after the writers stopped and builds the report. */
export async function checkAndReport(input: ReportInput): Promise<DemoReport> {
  const { nodes, tables, signal } = input;
  const urls = nodes.map((n) => n.url);
  const finalPrimary = (await waitForPrimary(urls, CONVERGE_WAIT_MS, signal)) ?? null;
  signal.throwIfAborted();
  const convergence =
    finalPrimary === null
      ? { converged: false, afterMs: null, statuses: await Promise.all(urls.map((u) => statusOf(u))) }
      : await waitConverged(urls, finalPrimary, tables, signal);
  signal.throwIfAborted();
  input.phase(
    convergence.converged
      ? `demo: every node applied every table in ${convergence.afterMs} ms; comparing the tables on every node`
      : `demo: the nodes did NOT converge within ${CONVERGE_WAIT_MS} ms; comparing what they have`,
  );
  const tableReports = [];
  for (const table of tables) tableReports.push(await compareTable(nodes, table, finalPrimary));
  const found = new Map<string, number[]>();
  if (finalPrimary !== null) for (const table of tables) found.set(table, await readIds(finalPrimary, table));
  signal.throwIfAborted();
  const acked = new Map(input.writers.map((w) => [w.table, w.acks.flatMap((a) => a.ids)]));
  const comparison = compareRows(acked, found);
  const counts = countIds(found);
  const switchover = withRows(input, input.switchover, counts, { endMs: input.crash.atMs });
  const crash = withRows(input, input.crash, counts, { endMs: null });
  const rows = {
    sent: input.writers.reduce((n, w) => n + w.sent, 0),
    acknowledged: comparison.acknowledged,
    lost: comparison.missingCount,
    duplicates: comparison.duplicateCount,
    duplicatesCause: duplicateCause(comparison.duplicateCount, batchTotals(input.writers)),
    batches: batchTotals(input.writers),
    foundUnacknowledged: comparison.foundUnacknowledged,
    unacknowledged: input.writers.reduce((n, w) => n + w.unacknowledged, 0),
    writerErrors: input.writers.flatMap((w) => w.errors.map((error) => `${w.table}: ${error}`)),
  };
  const statuses = convergence.statuses;
  const failures = assessDemo({
    switchover,
    crash,
    converged: convergence.converged,
    tables: tableReports,
    lost: rows.lost,
    duplicates: rows.duplicates,
    batches: rows.batches,
    finalPrimary,
    accepting: urls.filter((_, i) => isAcceptingPrimary(statuses[i])),
  });
  const storeRoot = path.join(input.options.dataDir, 'store');
  return {
    ok: failures.length === 0,
    failures,
    durationMs: Math.round(input.writingMs),
    rateRowsPerS: input.options.rateRowsPerS,
    keepRunning: input.options.keepRunning,
    dataDir: input.options.dataDir,
    store: `fs::root=${storeRoot};`,
    ackMode: 'durable',
    nodes: nodes.map((node, i) => ({
      name: node.name,
      url: node.url,
      urls: input.urlsByName.get(node.name) ?? [node.url],
      pid: node.pid,
      dataDir: node.dataDir,
      log: node.log,
      finalRole: statuses[i]?.role ?? null,
      epoch: epochOf(statuses[i] ?? null) ?? null,
    })),
    finalPrimary,
    converged: convergence.converged,
    convergedAfterMs: convergence.afterMs,
    tables: tableReports,
    events: [switchover, crash],
    rows,
    notes: notes(crash, rows),
    next: nextCommands(input.options, storeRoot, { primary: finalPrimary, urls }),
  };
}

/**
 * Polls every node until the primary has uploaded every table's last committed txn and every other
 * node is a replica that applied it: converged, with the time it took and the last statuses.
 */
async function waitConverged(
  urls: string[],
  primary: string,
  tables: readonly string[],
  signal: AbortSignal,
): Promise<{ converged: boolean; afterMs: number | null; statuses: (NodeStatus | null)[] }> {
  const startedAt = systemClock.monotonicMs();
  for (;;) {
    const statuses = await Promise.all(urls.map((url) => statusOf(url)));
    if (caughtUp(urls, statuses, primary, tables))
      return { converged: true, afterMs: Math.round(systemClock.monotonicMs() - startedAt), statuses };
    if (systemClock.monotonicMs() - startedAt > CONVERGE_WAIT_MS || signal.aborted)
      return { converged: false, afterMs: null, statuses };
    await sleep(CONVERGE_POLL_MS, signal);
  }
}

/** Pure: whether `statuses` show every table uploaded by `primary` and applied by every replica. */
export function caughtUp(
  urls: readonly string[],
  statuses: readonly (NodeStatus | null)[],
  primary: string,
  tables: readonly string[],
): boolean {
  const primaryStatus = statuses[urls.indexOf(primary)];
  if (!isAcceptingPrimary(primaryStatus)) return false;
  const committed = new Map<string, string>();
  for (const t of primaryStatus?.tables ?? []) {
    if (t.committedTxn === undefined || t.uploadedTxn !== t.committedTxn) return false;
    committed.set(t.name, t.committedTxn);
  }
  if (!tables.every((table) => committed.has(table))) return false;
  return urls.every((url, i) => {
    if (url === primary) return true;
    const status = statuses[i];
    if (status?.role !== 'replica') return false;
    const applied = new Map((status.tables ?? []).map((t) => [t.name, t.appliedTxn]));
    return [...committed].every(([table, txn]) => applied.get(table) === txn);
  });
}

async function compareTable(
  nodes: LocalNodeInfo[],
  table: string,
  finalPrimary: string | null,
): Promise<DemoReport['tables'][number]> {
  const perNode: Record<string, (TableDigest & { url: string }) | null> = {};
  for (const node of nodes) {
    const digest = await tableDigest(node.url, table).catch(() => null);
    perNode[node.name] = digest === null ? null : { url: node.url, ...digest };
  }
  const digests = Object.values(perNode);
  const first = digests[0];
  const checksumsEqual =
    first !== null &&
    first !== undefined &&
    digests.every(
      (d) => d !== null && d.rows === first.rows && d.idSum === first.idSum && d.sha256 === first.sha256,
    );
  const onPrimary = digests.find((d) => d?.url === finalPrimary);
  return { name: table, rows: onPrimary?.rows ?? null, checksumsEqual, perNode };
}

/** How often each id is on the final primary, per table. */
function countIds(found: Map<string, number[]>): Map<string, Map<number, number>> {
  const counts = new Map<string, Map<number, number>>();
  for (const [table, ids] of found) {
    const byId = new Map<number, number>();
    for (const id of ids) byId.set(id, (byId.get(id) ?? 0) + 1);
    counts.set(table, byId);
  }
  return counts;
}

/**
 * The event with its rows: those whose acknowledgement came in its window (from its `acksFromMs`
 * to `endMs`, the next event), lost (not found) or found more than once; and its write pause, the
 * longest gap between acknowledged flushes over the event.
 */
function withRows<E extends SwitchoverEvent | CrashEvent>(
  input: ReportInput,
  event: E,
  counts: Map<string, Map<number, number>>,
  window: { endMs: number | null },
): E {
  let acknowledged = 0;
  let lost = 0;
  let duplicates = 0;
  for (const writer of input.writers) {
    const byId = counts.get(writer.table) ?? new Map<number, number>();
    for (const ack of writer.acks) {
      if (ack.atMs < event.acksFromMs || (window.endMs !== null && ack.atMs >= window.endMs)) continue;
      for (const id of ack.ids) {
        const n = byId.get(id) ?? 0;
        acknowledged++;
        if (n === 0) lost++;
        else duplicates += n - 1;
      }
    }
  }
  const pause = writePause(
    input.writers.map((w) => ({ writer: w.table, startedAtMs: 0, ackTimesMs: w.acks.map((a) => a.atMs) })),
    { startMs: event.atMs, endMs: event.endedAtMs ?? Number.POSITIVE_INFINITY },
  ).pauseMs;
  return {
    ...event,
    acksToMs: window.endMs,
    acknowledged,
    lost,
    duplicates,
    writePauseMs: pause === null ? null : Math.round(pause),
  };
}

/** The demo's verdict: every promise the run broke, in words. Pure. */
export function assessDemo(run: {
  switchover: Pick<SwitchoverEvent, 'to' | 'error' | 'duplicates' | 'lost'>;
  crash: Pick<CrashEvent, 'promoted' | 'error' | 'rejoined' | 'lost'>;
  converged: boolean;
  tables: readonly { name: string; checksumsEqual: boolean }[];
  lost: number;
  /** Extra copies on the final primary, and the batches: with every identity honoured, none may be doubled. */
  duplicates?: number;
  batches?: BatchTotals;
  finalPrimary: string | null;
  accepting: readonly string[];
}): string[] {
  const failures: string[] = [];
  if (run.switchover.error !== null) failures.push(`the switchover failed: ${run.switchover.error}`);
  if (run.crash.error !== null) failures.push(`the crash failover failed: ${run.crash.error}`);
  else if (!run.crash.rejoined) failures.push('the killed node did not rejoin as a replica');
  if (run.finalPrimary === null) failures.push('no node takes writes at the end');
  if (run.accepting.length > 1)
    failures.push(`split brain: ${run.accepting.join(' and ')} all accept writes`);
  if (!run.converged) failures.push('the nodes did not all apply every table to the primary’s last txn');
  for (const table of run.tables)
    if (!table.checksumsEqual) failures.push(`${table.name} is not the same on every node`);
  if (run.lost > 0) failures.push(`${run.lost} acknowledged rows are missing (ack durable promises none)`);
  if (run.switchover.duplicates > 0)
    failures.push(
      `the switchover duplicated ${run.switchover.duplicates} rows (it answers 421 before any commit: it must not)`,
    );
  else if ((run.duplicates ?? 0) > 0 && run.batches !== undefined && run.batches.ignored === 0)
    failures.push(
      `${run.duplicates} rows are on the cluster twice though every batch carried an identity the nodes honoured (RFC-0011 promises none)`,
    );
  return failures;
}

function notes(
  crash: CrashEvent,
  { foundUnacknowledged, batches, duplicatesCause }: DemoReport['rows'],
): string[] {
  const notes: string[] = [];
  if (batches.replayed > 0)
    notes.push(
      `${batches.replayed} batches were sent twice because a node died before its answer; walship recognised ` +
        'their batch identity and wrote them once (RFC-0011: the killed primary had committed and uploaded them).',
    );
  if (duplicatesCause !== null)
    notes.push(`${crash.duplicates} rows are on the cluster twice: ${duplicatesCause}.`);
  if (foundUnacknowledged > 0)
    notes.push(
      `${foundUnacknowledged} rows are on the cluster though no writer saw them acknowledged (in flight when a node died).`,
    );
  if (crash.divergence !== null)
    notes.push(
      `the killed node had ${crash.divergence.txns} txns (${crash.divergence.rows} rows) committed but never uploaded, so never ` +
        `acknowledged in durable mode; it kept them in divergence files: ${crash.divergence.files.join(', ')}`,
    );
  return notes;
}

/**
 * Commands to look at the data: with --keep-running, against the running cluster; otherwise (the
 * nodes are gone, the store stays) through a new replica that replays the store.
 */
function nextCommands(
  options: DemoOptions,
  storeRoot: string,
  cluster: { primary: string | null; urls: string[] },
): string[] {
  const logs = `less ${path.join(options.dataDir, 'node-1.log')}`;
  const walship = walshipCommand();
  const queries = (base: string) => [
    `curl -sG ${base}/exec --data-urlencode "query=SELECT symbol, count(*) AS trades, round(avg(price), 2) AS avg_price FROM trades GROUP BY symbol"`,
    `curl -sG ${base}/exec --data-urlencode "query=SELECT device, round(min(temperature), 1) AS min_c, round(max(temperature), 1) AS max_c, min(battery) AS battery FROM sensors GROUP BY device"`,
  ];
  if (options.keepRunning && cluster.primary !== null) {
    const replica = cluster.urls.find((url) => url !== cluster.primary) ?? cluster.primary;
    return [
      `${walship} status --nodes ${cluster.urls.join(',')} --watch`,
      ...queries(replica),
      `WALSHIP_ADMIN_TOKEN=$(cat ${path.join(options.dataDir, 'admin.token')}) ${walship} switchover --from ${cluster.primary} --to ${replica}`,
      logs,
    ];
  }
  return [
    `${walship} replica --replication.object.store='fs::root=${storeRoot};' --node.data.dir=${path.join(options.dataDir, 'explore')} --http.bind.to=127.0.0.1:9000`,
    ...queries('http://127.0.0.1:9000'),
    `ls ${storeRoot}`,
    logs,
  ];
}

/**
 * How to run walship again from where the user stands: `walship` when it was started as an
 * installed command, else `node <path to bin.js>` (a checkout, `npm run demo`).
 */
function walshipCommand(): string {
  const entry = process.argv[1] ?? '';
  if (path.basename(entry) === 'walship' || !entry.endsWith('.js')) return 'walship';
  const relative = path.relative(process.cwd(), entry);
  return `node ${relative.startsWith('..') ? entry : relative}`;
}

// --- Summary ------------------------------------------------------------------------------------

/** The human summary of a report. */
export function renderDemoSummary(report: DemoReport): string {
  const [switchover, crash] = report.events;
  const name = (url: string | null) =>
    url === null ? 'nobody' : (report.nodes.find((n) => n.urls.includes(url))?.name ?? url);
  const killedName = name(crash.killed);
  const n = (value: number) => value.toLocaleString('en-US');
  const lines = [
    '',
    `walship demo: ${report.ok ? 'OK' : 'FAILED'} — 3 nodes, ${report.tables.length} tables, ${n(report.rows.acknowledged)} rows acknowledged in ${(report.durationMs / 1000).toFixed(1)} s (ack durable)`,
    `  switchover  ${name(switchover.from)} → ${name(switchover.to)}${switchover.error === null ? '' : ` FAILED: ${switchover.error}`}: writes paused ${ms(switchover.writePauseMs)} as the client saw it; ${switchover.lost} acknowledged rows lost, ${switchover.duplicates} duplicated`,
    `  crash       SIGKILL ${killedName} → ${name(crash.promoted)} promoted itself ${crash.takeoverMs === null ? 'never' : `${ms(crash.takeoverMs)} after the kill`} (lease ${ms(crash.leaseTimeoutMs)}); writes paused ${ms(crash.writePauseMs)}; ${crash.lost} lost, ${crash.duplicates} duplicated; ${crash.rejoined ? `${killedName} rejoined as a replica` : 'the killed node did NOT rejoin'}${crash.error === null ? '' : `; FAILED: ${crash.error}`}`,
    `  rows        ${n(report.rows.sent)} sent, ${n(report.rows.acknowledged)} acknowledged, ${report.rows.lost} lost, ${report.rows.duplicates} duplicated`,
    `  batches     ${n(report.rows.batches.committed)} committed, ${report.rows.batches.replayed} sent again after a lost answer and written once, ${report.rows.batches.ignored} without exactly-once`,
    ...report.tables.map(
      (t) =>
        `  ${t.name.padEnd(11)} ${t.rows === null ? '?' : n(t.rows)} rows on the primary; ${
          t.checksumsEqual
            ? `identical on all ${Object.keys(t.perNode).length} nodes (sha256 ${Object.values(t.perNode)[0]?.sha256.slice(0, 12)}…)`
            : `DIFFERS: ${Object.entries(t.perNode)
                .map(
                  ([node, d]) =>
                    `${node} ${d === null ? 'missing' : `${d.rows} rows ${d.sha256.slice(0, 8)}`}`,
                )
                .join(', ')}`
        }`,
    ),
    `  nodes       ${report.nodes.map((node) => `${node.name} ${node.finalRole ?? 'unreachable'} (epoch ${node.epoch ?? '?'})`).join(', ')}; ${report.converged ? `all caught up ${ms(report.convergedAfterMs)} after the writers stopped` : 'NOT converged'}`,
    ...report.notes.map((note) => `  note        ${note}`),
    ...report.failures.map((failure) => `  FAILED      ${failure}`),
    `  data        ${report.dataDir}: store/ (the object store: WAL segments), node-N/ (each node's SQLite), node-N.log, report.json`,
    `  next        ${report.keepRunning ? 'the cluster keeps running until Ctrl-C. Try:' : 'the nodes stop now; the store stays. To look at the data:'}`,
    ...report.next.map((command) => `    $ ${command}`),
  ];
  return lines.join('\n');
}

function ms(value: number | null): string {
  if (value === null) return '—';
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}
