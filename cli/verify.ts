import { parseArgs } from 'node:util';
import { isWalshipError, systemClock } from '../core/index.js';
import { listNodeRegistrations } from '../layout/index.js';
import {
  type AuditFinding,
  type AuditProgress,
  auditStore,
  type StoreAuditReport,
  type TableAuditReport,
} from '../maintenance/index.js';
import { type ObjectStore, type OpenedStore, openStore } from '../objectstore/index.js';
import { loadConfig, parseDurationMs } from './config.js';
import { type CommandIo, EXIT, type ProgressOptions, progressLine, strayArgument } from './io.js';
import { type NodeStatus, STATUS_POLL_MS, sleep, statusOf } from './node-http.js';
import { type TableDigest, tableDigest } from './table-digest.js';

export const VERIFY_USAGE = `walship verify --store CONNSTRING [options]
walship verify --nodes URL,URL,… [options]

Audits. With --store: walks the cluster root — cluster.json, every epoch record, tables.json,
every table's segment chain (each segment decoded and its checksums checked, txns 1..N each
exactly once, epochs never going back, fences of claimed epochs), the snapshots (manifest, image,
watermarks), node registrations — and prints one line per table, then every finding. Objects
that are no part of the layout are orphans. Nothing is written.
A sequenced cluster (RFC-0003) is audited too: sequencer.json, and per table its txnlog/ chain
(entries contiguous from where sequencer.json starts it, each decoded and naming a staged object
that exists and matches it, fully decoded unless --shallow); staged objects no entry names are
warnings (uncommitted; orphans once their writer epoch is closed: walship gc --sequencer).

With --nodes: compares each table on every node at one watermark (appliedTxn on a replica,
committedTxn on a primary): row count, sum of ids and a SHA-256 over every row in one order,
read through each node's /exec. Nodes must reach the same watermark (wait for writes to stop);
a node whose table differs from the others' (the majority, else the primary's) is named.

Options:
  --store CONNSTRING    'fs::root=…;' or 's3::bucket=…;…'
                        (default: replication.object.store from --config, WALSHIP_REPLICATION_OBJECT_STORE)
  --nodes URL,URL,…     the nodes to compare (http://host:port; http:// may be left out)
  --table T             only this table (repeatable); default every table
  --shallow             with --store: read only each segment's header (checked), not its records
                        (a staged object: its header against its log entry)
  --wait 30s            with --nodes: how long to wait for the nodes to reach one watermark
  --json                print the report as JSON
  --config FILE         server.conf to read replication.object.store from

Exit codes: 0 no problem; 1 a finding of severity error (--store), or a table that differs or
whose watermarks never met (--nodes); 2 bad arguments; 3 the store or a node could not be reached.`;

// --- Bounds -------------------------------------------------------------------------------------

const WAIT_MS_DEFAULT = 30_000;
/** Nodes compared at most (a cluster has a handful). */
const NODES_MAX = 100;
/** Tables named with --table at most. */
const TABLES_MAX = 10_000;
/** Findings printed in the text report; --json has every one kept. */
const FINDINGS_PRINTED_MAX = 200;

export interface VerifyDeps {
  /** Opens the store of --store (default: openStore, with the connection string's retries). */
  storeOpen?: (connection: string) => Promise<Pick<OpenedStore, 'store'>>;
  /** Where and how progress is shown (default: cli/io.ts progressLine on this process's stderr). */
  progress?: ProgressOptions;
}

/** `walship verify`: see VERIFY_USAGE. */
export async function verifyCommand(argv: string[], io: CommandIo, deps: VerifyDeps = {}): Promise<number> {
  const { values, tokens } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      nodes: { type: 'string' },
      table: { type: 'string', multiple: true },
      shallow: { type: 'boolean', default: false },
      wait: { type: 'string' },
      json: { type: 'boolean', default: false },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: false,
    tokens: true,
  });
  if (values.help === true) {
    io.stdout(VERIFY_USAGE);
    return EXIT.ok;
  }
  const stray = strayArgument(tokens, KNOWN_OPTIONS);
  if (stray !== undefined) return usage(io, stray);
  const tables = (values.table ?? []).filter((t): t is string => typeof t === 'string');
  if (tables.length > TABLES_MAX) return usage(io, `--table: at most ${TABLES_MAX}`);
  const json = values.json === true;
  if (typeof values.nodes === 'string') {
    if (values.store !== undefined) return usage(io, 'give --nodes or --store, not both');
    if (values.shallow === true) return usage(io, '--shallow is for --store');
    const nodes = values.nodes
      .split(',')
      .map((url) => url.trim())
      .filter((url) => url !== '')
      .map(withScheme);
    if (nodes.length === 0) return usage(io, '--nodes needs at least one URL');
    if (nodes.length > NODES_MAX) return usage(io, `--nodes: at most ${NODES_MAX} nodes`);
    let waitMs = WAIT_MS_DEFAULT;
    if (typeof values.wait === 'string') {
      const parsed = parseDurationMs(values.wait);
      if (parsed === undefined)
        return usage(io, `--wait: ${JSON.stringify(values.wait)} is not a duration (30s, 500ms)`);
      waitMs = parsed;
    }
    return verifyNodesCommand(io, { nodes, tables, waitMs, json }, deps.progress ?? {});
  }
  if (values.wait !== undefined) return usage(io, '--wait is for --nodes');
  let connection = typeof values.store === 'string' ? values.store : undefined;
  if (connection === undefined) {
    const configArgv = typeof values.config === 'string' ? [`--config=${values.config}`] : [];
    connection = (await loadConfig({ argv: configArgv, env: io.env })).string('replication.object.store');
  }
  if (connection === undefined) return usage(io, 'give --store CONNSTRING or --nodes URL,…');
  return verifyStoreCommand(io, deps, connection, { tables, deep: values.shallow !== true, json });
}

const KNOWN_OPTIONS = new Set(['store', 'nodes', 'table', 'shallow', 'wait', 'json', 'config', 'help', 'h']);

function usage(io: CommandIo, problem: string): number {
  io.stderr(`walship verify: ${problem}\n\n${VERIFY_USAGE}`);
  return EXIT.usage;
}

// --- verify --store -----------------------------------------------------------------------------

async function verifyStoreCommand(
  io: CommandIo,
  deps: VerifyDeps,
  connection: string,
  options: { tables: string[]; deep: boolean; json: boolean },
): Promise<number> {
  let store: ObjectStore;
  try {
    store = (await (deps.storeOpen ?? openStore)(connection)).store;
  } catch (error) {
    io.stderr(`walship verify: ${(error as Error).message}`);
    return isWalshipError(error) && error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  }
  // A large store takes minutes: progress on stderr (cli/io.ts), the report alone on stdout.
  const progress = progressLine(io, 'walship verify', deps.progress ?? {});
  const onProgress = (done: AuditProgress) =>
    progress.update(
      `${done.tablesDone}/${done.tablesTotal} tables, ${done.segmentsDone} segments, ${formatBytes(done.bytesDone)}`,
    );
  try {
    const report = await auditStore(store, {
      deep: options.deep,
      onProgress,
      readRegistrations: (s) => listNodeRegistrations(s),
      ...(options.tables.length === 0 ? {} : { tables: options.tables }),
    });
    progress.finish(report.ok ? 'done' : 'done, with findings');
    io.stdout(options.json ? JSON.stringify(report, null, 2) : renderStoreAudit(report, store.description));
    return report.ok ? EXIT.ok : EXIT.failed;
  } catch (error) {
    progress.finish('failed');
    if (!isWalshipError(error) || (error.kind !== 'unavailable' && error.kind !== 'invalid')) throw error;
    io.stderr(`walship verify: ${error.message}`);
    return error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  } finally {
    await store.close();
  }
}

/** The text report: the cluster, one line per table, every finding, a summary line. */
export function renderStoreAudit(report: StoreAuditReport, description: string): string {
  const lines: string[] = [];
  const newest = report.epochs.at(-1);
  lines.push(
    `store ${description}: cluster ${report.cluster?.clusterId ?? '(none)'}, ` +
      `${report.epochs.length} epoch${report.epochs.length === 1 ? '' : 's'}` +
      (newest === undefined
        ? ''
        : ` (newest ${newest.epoch}: ${newest.nodeId ?? '?'} ${newest.url ?? ''})`.trimEnd()) +
      `, ${report.snapshots.length} snapshot${report.snapshots.length === 1 ? '' : 's'}` +
      (report.registrations === null ? '' : `, ${report.registrations.nodes} registered nodes`) +
      (report.sequencer === null ? '' : `, sequenced since epoch ${report.sequencer.epoch}`),
  );
  const width = Math.max(5, ...report.tables.map((t) => t.name.length));
  for (const table of report.tables) lines.push(tableLine(table, width));
  const shown = report.findings.slice(0, FINDINGS_PRINTED_MAX);
  if (shown.length > 0) {
    lines.push('', 'findings:');
    for (const finding of shown) lines.push(`  ${findingLine(finding)}`);
    const more = report.findings.length - shown.length + report.findingsDropped;
    if (more > 0) lines.push(`  … and ${more} more (--json lists up to the first ${report.findings.length})`);
  }
  const errors = report.findings.filter((f) => f.severity === 'error').length;
  const warnings = report.findings.length - errors;
  const segments = report.tables.reduce((sum, t) => sum + t.segments, 0);
  const entries = report.tables.reduce((sum, t) => sum + (t.txnLog?.entries ?? 0), 0);
  const bytes = report.tables.reduce((sum, t) => sum + t.bytes + (t.txnLog?.bytes ?? 0), 0);
  lines.push(
    '',
    `${report.ok ? 'OK' : 'FAILED'}: ${report.tables.length} tables, ${segments} segments, ` +
      `${entries > 0 ? `${entries} log entries, ` : ''}${formatBytes(bytes)} ` +
      `${report.deep ? 'fully decoded' : 'headers only (--shallow)'}; ${errors} error${errors === 1 ? '' : 's'}, ` +
      `${warnings} warning${warnings === 1 ? '' : 's'}${report.findingsDropped > 0 ? ` (+${report.findingsDropped} not kept)` : ''}`,
  );
  return lines.join('\n');
}

/** `<name>  <wal/ chain>[; <txnlog/ chain>], <bytes>  <verdict>`; a table with only a txn log shows only it. */
function tableLine(table: TableAuditReport, width: number): string {
  const parts: string[] = [];
  if (table.segments > 0 || table.txnLog === null) parts.push(walPart(table));
  if (table.txnLog !== null) parts.push(txnLogPart(table.txnLog));
  const bytes = table.bytes + (table.txnLog?.bytes ?? 0);
  const codes = [...new Set(table.findings.map((f) => f.code))];
  const verdict =
    table.findings.length === 0 ? 'OK' : `${table.findings.length} finding(s): ${codes.join(', ')}`;
  return `  ${table.name.padEnd(width)}  ${parts.join('; ')}, ${formatBytes(bytes)}  ${verdict}`;
}

function walPart(table: TableAuditReport): string {
  const txns = table.txns === null ? 'no txns' : `txns ${table.txns.first}..${table.txns.last}`;
  const epochs = table.epochs.length === 0 ? '' : `, epochs ${table.epochs.join(',')}`;
  const fences = table.fences === 0 ? '' : `, ${table.fences} fence${table.fences === 1 ? '' : 's'}`;
  return `${table.segments} segments, ${txns}${epochs}${fences}${changesPart(table.changes)}`;
}

/** What table-changing txns did: drops, the TTL, trims, upsert keys (RFC-0007, RFC-0011). */
function changesPart(changes: TableAuditReport['changes']): string {
  const parts: string[] = [];
  if (changes.drops.length > 0) parts.push(`dropped at txn ${changes.drops.join(',')}`);
  if (changes.ttl !== null) parts.push(`TTL ${changes.ttl}`);
  if (changes.trims > 0)
    parts.push(`${changes.trims} trim${changes.trims === 1 ? '' : 's'} (below ${changes.trimmedBefore})`);
  if (changes.upsertKeyChanges > 0) parts.push(`upsert keys set ${changes.upsertKeyChanges}×`);
  return parts.map((p) => `, ${p}`).join('');
}

function txnLogPart(log: NonNullable<TableAuditReport['txnLog']>): string {
  const txns = log.txns === null ? 'no txns' : `txns ${log.txns.first}..${log.txns.last}`;
  const writers = log.writers.length === 0 ? '' : `, writers ${log.writers.join(',')}`;
  const uncommitted = log.uncommitted === 0 ? '' : `, ${log.uncommitted} uncommitted staged`;
  return `txnlog ${log.entries} entr${log.entries === 1 ? 'y' : 'ies'}, ${txns}${writers}${uncommitted}`;
}

function findingLine(finding: AuditFinding): string {
  return `${finding.severity === 'error' ? 'ERROR  ' : 'warning'} ${finding.code}: ${finding.message}`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

// --- verify --nodes -----------------------------------------------------------------------------

/** One table compared across nodes. */
export interface TableComparison {
  table: string;
  /** `equal`, `diverges`, or `not-comparable` (the nodes' watermarks never met within --wait). */
  verdict: 'equal' | 'diverges' | 'not-comparable';
  /** The common watermark compared at (decimal); null when not comparable. */
  watermark: string | null;
  /** Each node's watermark (decimal; `0` when it does not have the table). */
  watermarks: Record<string, string>;
  /** Each node's digest at the watermark (null: the table does not exist there). */
  digests: Record<string, TableDigest | null>;
  /** The nodes whose digest differs from the reference (the majority's, else the primary's). */
  divergent: string[];
  message: string;
}

export interface NodesReport {
  ok: boolean;
  unreachable: string[];
  tables: TableComparison[];
}

async function verifyNodesCommand(
  io: CommandIo,
  options: { nodes: string[]; tables: string[]; waitMs: number; json: boolean },
  progressOptions: ProgressOptions,
): Promise<number> {
  // Each table may wait for the watermarks to meet: progress on stderr (cli/io.ts).
  const progress = progressLine(io, 'walship verify', progressOptions);
  const report = await compareNodes(options.nodes, options.tables, options.waitMs, (done, total, table) =>
    progress.update(`${done}/${total} tables compared${table === undefined ? '' : `, now ${table}`}`),
  );
  progress.finish(report.ok ? 'done' : 'done, with differences');
  io.stdout(options.json ? JSON.stringify(report, null, 2) : renderNodesReport(report));
  if (report.unreachable.length > 0) return EXIT.unavailable;
  return report.ok ? EXIT.ok : EXIT.failed;
}

/**
 * Compares every table (or `tables`) on `urls`: waits up to `waitMs` until each table's watermark
 * is the same on every node, digests it on each, and checks the watermarks did not move meanwhile
 * (else waits and digests again). A table has no per-row txn, so nodes are compared only at one
 * shared watermark: a cluster that keeps writing is "not comparable".
 */
export async function compareNodes(
  urls: string[],
  tables: string[],
  waitMs: number,
  onTable?: (done: number, total: number, next: string | undefined) => void,
): Promise<NodesReport> {
  const deadline = systemClock.monotonicMs() + waitMs;
  const first = await Promise.all(urls.map((url) => statusOf(url)));
  const unreachable = urls.filter((_, i) => first[i] === null);
  if (unreachable.length > 0) return { ok: false, unreachable, tables: [] };
  const names =
    tables.length > 0
      ? tables
      : [...new Set(first.flatMap((s) => (s?.tables ?? []).map((t) => t.name)))].sort();
  const primaryUrl = urls.find((_, i) => first[i]?.role === 'primary');
  const comparisons: TableComparison[] = [];
  for (const table of names) {
    onTable?.(comparisons.length, names.length, table);
    const compared = await compareTable(urls, table, deadline, primaryUrl);
    if (compared === 'unreachable')
      return { ok: false, unreachable: await unreachableOf(urls), tables: comparisons };
    comparisons.push(compared);
  }
  onTable?.(comparisons.length, names.length, undefined);
  return { ok: comparisons.every((c) => c.verdict === 'equal'), unreachable: [], tables: comparisons };
}

async function compareTable(
  urls: string[],
  table: string,
  deadline: number,
  primaryUrl: string | undefined,
): Promise<TableComparison | 'unreachable'> {
  for (;;) {
    const before = await watermarksOf(urls, table);
    if (before === null) return 'unreachable';
    const values = Object.values(before);
    if (values.every((w) => w === values[0])) {
      const digests: Record<string, TableDigest | null> = {};
      for (const url of urls) digests[url] = await tableDigest(url, table);
      const after = await watermarksOf(urls, table);
      if (after === null) return 'unreachable';
      if (urls.every((url) => after[url] === before[url]))
        return judge(table, values[0]!, before, digests, primaryUrl);
    }
    if (systemClock.monotonicMs() >= deadline) {
      const shown = urls.map((url) => `${url}: ${before[url]}`).join(', ');
      return {
        table,
        verdict: 'not-comparable',
        watermark: null,
        watermarks: before,
        digests: {},
        divergent: [],
        message: `not comparable: watermarks differ (${shown})`,
      };
    }
    await sleep(STATUS_POLL_MS * 5);
  }
}

/** Each node's watermark of `table` (decimal); null when a node does not answer. */
async function watermarksOf(urls: string[], table: string): Promise<Record<string, string> | null> {
  const statuses = await Promise.all(urls.map((url) => statusOf(url)));
  if (statuses.some((s) => s === null)) return null;
  const result: Record<string, string> = {};
  urls.forEach((url, i) => {
    result[url] = watermarkOf(statuses[i]!, table);
  });
  return result;
}

/** A primary's committed txn, a replica's applied txn; `0` without the table. */
export function watermarkOf(status: NodeStatus, table: string): string {
  const entry = status.tables?.find((t) => t.name === table);
  if (entry === undefined) return '0';
  return (status.role === 'primary' ? entry.committedTxn : entry.appliedTxn) ?? '0';
}

function judge(
  table: string,
  watermark: string,
  watermarks: Record<string, string>,
  digests: Record<string, TableDigest | null>,
  primaryUrl: string | undefined,
): TableComparison {
  const fingerprint = (d: TableDigest | null) => (d === null ? 'absent' : `${d.rows}/${d.idSum}/${d.sha256}`);
  const groups = new Map<string, string[]>();
  for (const [url, digest] of Object.entries(digests)) {
    const key = fingerprint(digest);
    groups.set(key, [...(groups.get(key) ?? []), url]);
  }
  const urls = Object.keys(digests);
  const sorted = [...groups.values()].sort((a, b) => b.length - a.length);
  const majority = sorted[0]!.length * 2 > urls.length ? sorted[0]! : undefined;
  const reference =
    majority ??
    (primaryUrl !== undefined && urls.includes(primaryUrl)
      ? groups.get(fingerprint(digests[primaryUrl]!))!
      : sorted[0]!);
  const divergent = urls.filter((url) => !reference.includes(url));
  const base = { table, watermark, watermarks, digests, divergent };
  if (divergent.length === 0) {
    const d = digests[urls[0]!] ?? null;
    return {
      ...base,
      verdict: 'equal',
      message: `equal at txn ${watermark} on ${urls.length} nodes (${describe(d)})`,
    };
  }
  const by =
    majority !== undefined ? 'the majority' : primaryUrl !== undefined ? 'the primary' : 'the first node';
  const parts = divergent.map((url) => `${url} (${describe(digests[url] ?? null)})`);
  return {
    ...base,
    verdict: 'diverges',
    message: `DIVERGES at txn ${watermark}: ${parts.join(', ')} differ${divergent.length === 1 ? 's' : ''} from ${by}: ${reference.join(', ')} (${describe(digests[reference[0]!] ?? null)})`,
  };
}

function describe(digest: TableDigest | null): string {
  if (digest === null) return 'no such table';
  const sum = digest.idSum === null ? '' : `, id sum ${digest.idSum}`;
  return `${digest.rows} rows${sum}, sha256 ${digest.sha256.slice(0, 12)}`;
}

async function unreachableOf(urls: string[]): Promise<string[]> {
  const statuses = await Promise.all(urls.map((url) => statusOf(url)));
  return urls.filter((_, i) => statuses[i] === null);
}

export function renderNodesReport(report: NodesReport): string {
  if (report.unreachable.length > 0) return `unreachable: ${report.unreachable.join(', ')}`;
  const width = Math.max(5, ...report.tables.map((t) => t.table.length));
  const lines = report.tables.map((t) => `  ${t.table.padEnd(width)}  ${t.message}`);
  const bad = report.tables.filter((t) => t.verdict !== 'equal').length;
  lines.push(
    '',
    report.ok
      ? `OK: ${report.tables.length} tables equal`
      : `FAILED: ${bad} of ${report.tables.length} tables differ or are not comparable`,
  );
  return lines.join('\n');
}

function withScheme(url: string): string {
  return /^[a-z]+:\/\//i.test(url) ? url : `http://${url}`;
}
