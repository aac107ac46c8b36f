import {
  type Clock,
  InvalidConfigError,
  isoTime,
  isWalshipError,
  parseTimeMs,
  systemClock,
} from '../core/index.js';
import {
  CLUSTER_KEY,
  type ListedNodeRegistration,
  listNodeRegistrations,
  newestEpoch,
  parseClusterRecord,
} from '../layout/index.js';
import { type ObjectStore, type OpenedStore, openStore } from '../objectstore/index.js';
import { loadConfig, parseDurationMs } from './config.js';
import { type CommandIo, describeArgument, EXIT, processIo } from './io.js';

export const STATUS_USAGE = `walship status --nodes URL,URL,… | --store CONNSTRING [options]

The cluster at a glance: each node's role, epoch, whether it takes writes, its tables, its lag
(a primary: txns committed and not yet in the store, and the age of the oldest; a replica: txns
in the store not applied yet, and its staleness) and its last error, from every node's /status.
Under a node busy with a long operation (an empty replica restoring a snapshot, a replica
catching up) a progress bar. With --store, the nodes are the ones registered in the store
(nodes/<node id>.json, see replication.node.register.interval), with the cluster id and the
newest epoch's primary; a registered node that does not answer shows how old its registration is.

Options:
  --nodes URL,URL,…     the nodes to ask (http://host:port; http:// may be left out)
  --store CONNSTRING    find the nodes in the store instead: 'fs::root=…;' or 's3::bucket=…;…'
                        (default: replication.object.store from --config, WALSHIP_REPLICATION_OBJECT_STORE)
  --watch[=2s]          refresh every interval (default 2s) until Ctrl-C: redrawn in place on a
                        terminal, snapshots separated by a blank line otherwise
  --timeout 1s          how long each node has to answer /status
  --json                one JSON document per refresh (one line): the cluster and every node's view
  --config FILE         server.conf to read replication.object.store from

Exit codes: 0 every node answered and one primary takes writes; 1 a node did not answer, or no
primary (or more than one) takes writes, or no node is registered; 2 bad arguments; 3 the store
could not be reached. With --watch, the code of the last refresh.`;

// --- Bounds -------------------------------------------------------------------------------------

/** How long a node has to answer /status by default (a stopped node never answers). */
export const STATUS_TIMEOUT_MS_DEFAULT = 1_000;
/** Refresh interval of --watch by default, and the shortest accepted. */
const WATCH_INTERVAL_MS_DEFAULT = 2_000;
const WATCH_INTERVAL_MS_MIN = 10;
/** Nodes asked at most (the --nodes list, or registrations): a cluster has a handful. */
const NODES_MAX = 100;
/** The largest /status answer read, in characters (a node with very many tables). */
const STATUS_CHARS_MAX = 16 * 1024 * 1024;
/** Width of the table when it is not a terminal (a terminal gives its own). */
const WIDTH_DEFAULT = 160;
/** The LAST ERROR column never gets narrower than this (the line runs over the width instead). */
const LAST_ERROR_CHARS_MIN = 16;
/** Characters of a progress bar. */
const BAR_CHARS = 20;

// --- Views --------------------------------------------------------------------------------------

/** A long operation as a node's /status reports it (`operation`). */
export interface NodeOperationView {
  name: string;
  phase: string;
  done: number;
  total: number | null;
  unit: string;
  startedAgoMs: number | null;
}

/** One node as `walship status` shows it, computed from its /status answer. */
export interface NodeView {
  /** The URL asked (credentials removed). */
  url: string;
  /** True when /status answered 200 with a JSON object. */
  reachable: boolean;
  /** Why it is not reachable (no answer in time, connection refused, HTTP 500…); null when it is. */
  error: string | null;
  nodeId: string | null;
  /** `primary`, `replica`, `switching` (changing role or bootstrapping); null when unreachable. */
  role: string | null;
  /** A primary's epoch; a replica's newest table epoch (what it has applied up to); null when unknown. */
  epoch: string | null;
  acceptingWrites: boolean | null;
  tables: number;
  /**
   * `txns`: a primary's committed txns not yet uploaded, a replica's txns in the store not yet
   * applied (Σ over tables, a decimal string); null when unknown. `ms`: a primary's oldest
   * un-uploaded txn's age (0 when nothing is pending), a replica's staleness; null when unknown.
   */
  lag: { txns: string | null; ms: number | null };
  /** The most telling problem the node reports (or why it is unreachable); null when none. */
  lastError: string | null;
  operation: NodeOperationView | null;
  /** The raw /status answer; null when unreachable. */
  status: Record<string, unknown> | null;
  /** With --store: the node's registration (its age on this machine's wall clock). */
  registration?: { role: string; epoch: string | null; at: string; ageMs: number | null };
}

/**
 * GET `/status` of every node in parallel, each within `timeoutMs` (default 1 s); a node that does
 * not answer in time, refuses the connection, answers non-2xx or something that is not a JSON
 * object is a view with `reachable: false` and the reason in `error` and `lastError`. Never throws
 * for a node's sake. Views come in the order of `urls`.
 */
export async function fetchNodeViews(
  urls: string[],
  options: { timeoutMs?: number; fetch?: typeof fetch } = {},
): Promise<NodeView[]> {
  const timeoutMs = options.timeoutMs ?? STATUS_TIMEOUT_MS_DEFAULT;
  const fetchImpl = options.fetch ?? fetch;
  return Promise.all(urls.map((url) => fetchNodeView(url, timeoutMs, fetchImpl)));
}

async function fetchNodeView(url: string, timeoutMs: number, fetchImpl: typeof fetch): Promise<NodeView> {
  const shown = displayUrl(url);
  let target: URL;
  const headers: Record<string, string> = { accept: 'application/json' };
  try {
    target = new URL('/status', withScheme(url));
  } catch {
    return unreachableView(shown, 'not a URL (expected http://host:port)');
  }
  // fetch refuses URLs with credentials: they travel as Basic auth (a proxy in front may want them).
  if (target.username !== '' || target.password !== '') {
    const user = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers.authorization = `Basic ${Buffer.from(user).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  try {
    const response = await fetchImpl(target, { signal: AbortSignal.timeout(timeoutMs), headers });
    const text = await response.text();
    if (!response.ok) return unreachableView(shown, `/status answered HTTP ${response.status}`);
    if (text.length > STATUS_CHARS_MAX) return unreachableView(shown, '/status answered too much');
    let status: unknown;
    try {
      status = JSON.parse(text);
    } catch {
      return unreachableView(shown, '/status answered something that is not JSON');
    }
    if (!isObject(status)) return unreachableView(shown, '/status answered something that is not an object');
    return nodeViewOf(shown, status);
  } catch (error) {
    return unreachableView(shown, unreachableReason(error, timeoutMs));
  }
}

/** The view of a node whose /status answered `status`. */
export function nodeViewOf(url: string, status: Record<string, unknown>): NodeView {
  const role = typeof status.role === 'string' ? status.role : null;
  const tables = Array.isArray(status.tables) ? status.tables.filter(isObject) : [];
  return {
    url,
    reachable: true,
    error: null,
    nodeId: typeof status.nodeId === 'string' ? status.nodeId : null,
    role,
    epoch: epochOf(role, status, tables),
    acceptingWrites: typeof status.acceptingWrites === 'boolean' ? status.acceptingWrites : null,
    tables: tables.length,
    lag: lagOf(role, status, tables),
    lastError: lastErrorOf(status, tables),
    operation: operationOf(status.operation),
    status,
  };
}

function unreachableView(url: string, error: string): NodeView {
  return {
    url,
    reachable: false,
    error,
    nodeId: null,
    role: null,
    epoch: null,
    acceptingWrites: null,
    tables: 0,
    lag: { txns: null, ms: null },
    lastError: `unreachable: ${error}`,
    operation: null,
    status: null,
  };
}

function epochOf(role: string | null, status: Record<string, unknown>, tables: Record<string, unknown>[]) {
  if (role === 'primary') return decimal(status.epoch) ?? null;
  if (role !== 'replica') return null;
  let newest: bigint | null = null;
  for (const t of tables) {
    const epoch = decimal(t.epoch);
    if (epoch !== undefined && (newest === null || BigInt(epoch) > newest)) newest = BigInt(epoch);
  }
  return newest === null ? null : newest.toString();
}

/**
 * Primary: Σ pendingTxns; the age of the oldest pending txn (`oldestPendingAgeMs`, the largest over
 * tables), or — from a node that does not report it — the largest `lastUploadAgoMs` of a table with
 * pending txns; 0 ms when nothing is pending. Replica: Σ txnsBehind and `stalenessMs`.
 */
function lagOf(
  role: string | null,
  status: Record<string, unknown>,
  tables: Record<string, unknown>[],
): NodeView['lag'] {
  if (role === 'replica') {
    const behind = tables.reduce((sum, t) => sum + BigInt(decimal(t.txnsBehind) ?? '0'), 0n);
    return { txns: behind.toString(), ms: finite(status.stalenessMs) };
  }
  if (role !== 'primary') return { txns: null, ms: null };
  const pending = tables.filter((t) => (finite(t.pendingTxns) ?? 0) > 0);
  const txns = pending.reduce((sum, t) => sum + BigInt(finite(t.pendingTxns) ?? 0), 0n);
  if (pending.length === 0) return { txns: '0', ms: 0 };
  const ages = pending.map((t) => finite(t.oldestPendingAgeMs) ?? finite(t.lastUploadAgoMs));
  const known = ages.filter((age): age is number => age !== null);
  return { txns: txns.toString(), ms: known.length === 0 ? null : Math.max(...known) };
}

/**
 * The most telling problem, first found of: fenced (`fencedBy`), stopped following, a divergence,
 * a primary whose lease this replica saw unrenewed for half its timeout, suspended tables (`name (CODE)`), a table's upload error, the store's last error (with its age),
 * the last snapshot's error.
 */
export function lastErrorOf(
  status: Record<string, unknown>,
  tables: Record<string, unknown>[],
): string | null {
  if (typeof status.fencedBy === 'string') return `fenced by ${status.fencedBy}`;
  const following = status.following;
  if (isObject(following) && typeof following.stopped === 'string')
    return `stopped following: ${following.stopped}`;
  const divergence = status.divergence;
  if (isObject(divergence)) {
    const files = Array.isArray(divergence.files) ? divergence.files.length : 0;
    const moved = typeof divergence.movedTo === 'string' ? `; database moved to ${divergence.movedTo}` : '';
    return `diverged at epoch ${String(divergence.epoch)}: ${files} table(s) in divergence files${moved}`;
  }
  const lease = status.primaryLease;
  if (isObject(lease)) {
    const unrenewedMs = finite(lease.unrenewedMs);
    const timeoutMs = finite(lease.timeoutMs);
    if (unrenewedMs !== null && timeoutMs !== null && unrenewedMs > timeoutMs / 2)
      return `the primary has not renewed its lease for ${formatMs(unrenewedMs)} (failover after ${formatMs(timeoutMs)})`;
  }
  const suspended = tables.filter((t) => isObject(t.suspended));
  if (suspended.length > 0) {
    const list = suspended.map(
      (t) => `${String(t.name)} (${String((t.suspended as { code?: unknown }).code)})`,
    );
    return `suspended: ${list.join(', ')}`;
  }
  const uploadFailing = tables.find((t) => typeof t.lastError === 'string');
  if (uploadFailing !== undefined) return `upload ${String(uploadFailing.name)}: ${uploadFailing.lastError}`;
  const store = status.store;
  if (isObject(store) && isObject(store.lastError) && typeof store.lastError.message === 'string') {
    const agoMs = finite(store.lastError.agoMs);
    return `store: ${store.lastError.message}${agoMs === null ? '' : ` (${formatMs(agoMs)} ago)`}`;
  }
  const snapshot = status.snapshot;
  if (isObject(snapshot) && typeof snapshot.lastError === 'string') return `snapshot: ${snapshot.lastError}`;
  return null;
}

function operationOf(value: unknown): NodeOperationView | null {
  if (!isObject(value) || typeof value.name !== 'string') return null;
  return {
    name: value.name,
    phase: typeof value.phase === 'string' ? value.phase : '',
    done: finite(value.done) ?? 0,
    total: finite(value.total),
    unit: typeof value.unit === 'string' ? value.unit : '',
    startedAgoMs: finite(value.startedAgoMs),
  };
}

/** Cluster-wide problems of a set of views: nodes that did not answer, no primary taking writes, two. */
export function clusterProblems(views: readonly NodeView[]): string[] {
  const problems: string[] = [];
  const down = views.filter((v) => !v.reachable);
  if (down.length > 0) problems.push(`${down.length} of ${views.length} nodes did not answer`);
  const writers = views.filter((v) => v.reachable && v.role === 'primary' && v.acceptingWrites === true);
  if (writers.length === 0 && views.length > 0) {
    const switching = views.some((v) => v.role === 'switching');
    problems.push(`no primary is accepting writes${switching ? ' (a node is changing role)' : ''}`);
  }
  if (writers.length > 1) {
    const which = writers.map((v) => `${v.nodeId ?? v.url} (epoch ${v.epoch ?? '?'})`).join(', ');
    problems.push(
      `${writers.length} primaries accept writes: ${which}; the older epoch is fenced at its next upload`,
    );
  }
  return problems;
}

// --- Rendering ----------------------------------------------------------------------------------

const ANSI = {
  reset: '\x1b[0m',
  bold: '\x1b[1m',
  dim: '\x1b[2m',
  red: '\x1b[31m',
  green: '\x1b[32m',
} as const;
const ROLE_COLOUR: Record<string, string> = {
  primary: '\x1b[32m',
  replica: '\x1b[36m',
  switching: '\x1b[33m',
};

const HEADERS = ['NODE', 'ID', 'ROLE', 'EPOCH', 'WRITES', 'TABLES', 'LAG', 'LAST ERROR'] as const;

/**
 * The views as an aligned table: NODE (url), ID, ROLE, EPOCH, WRITES, TABLES, LAG (`0 txns / 35 ms`),
 * LAST ERROR (cut to fit `width`, default 160), and under a node with an operation a progress line.
 * ANSI colour only when `color` is true.
 */
export function renderNodeTable(
  views: readonly NodeView[],
  options: { color?: boolean; width?: number } = {},
): string {
  const color = options.color === true;
  const width = options.width ?? WIDTH_DEFAULT;
  const rows = views.map((v) => [
    plain(v.url),
    plain(v.nodeId ?? '-'),
    v.reachable ? plain(v.role ?? '?') : 'unreachable',
    plain(v.epoch ?? '-'),
    v.acceptingWrites === null ? '-' : v.acceptingWrites ? 'yes' : 'no',
    v.reachable ? String(v.tables) : '-',
    plain(lagText(v.lag)),
  ]);
  const widths = HEADERS.slice(0, -1).map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const used = widths.reduce((sum, w) => sum + w + 2, 0);
  const errorWidth = Math.max(LAST_ERROR_CHARS_MIN, width - used);
  const paint = (text: string, code: string | undefined) =>
    color && code !== undefined && text !== '' ? `${code}${text}${ANSI.reset}` : text;
  const line = (cells: string[], codes: (string | undefined)[]) =>
    cells
      .map((cell, i) => {
        const padded = i < widths.length ? cell.padEnd(widths[i]!) : cell;
        return paint(padded, codes[i]);
      })
      .join('  ')
      .trimEnd();
  const out = [
    line(
      [...HEADERS],
      HEADERS.map(() => (color ? ANSI.bold : undefined)),
    ),
  ];
  views.forEach((view, i) => {
    const error = view.lastError === null ? '' : cut(view.lastError, errorWidth);
    const roleCode = view.reachable ? ROLE_COLOUR[view.role ?? ''] : ANSI.red;
    out.push(
      line(
        [...rows[i]!, error],
        [undefined, undefined, roleCode, undefined, undefined, undefined, undefined, ANSI.red],
      ),
    );
    if (view.operation !== null) out.push(paint(cut(`  ${renderProgress(view.operation)}`, width), ANSI.dim));
  });
  return out.join('\n');
}

/** `bootstrap (download snapshot …)  [########------------]  41%  12.3/30.0 MiB  ETA 4 s`. */
export function renderProgress(operation: NodeOperationView): string {
  const { name, phase, done, total, unit, startedAgoMs } = operation;
  const title = phase === '' ? name : `${name} (${phase})`;
  const amount =
    unit === 'bytes' ? bytesText(done, total) : `${done}${total === null ? '' : `/${total}`} ${unit}`;
  if (total === null || total <= 0) return `${title}  ${amount}`;
  const fraction = Math.min(1, Math.max(0, done / total));
  const filled = Math.round(fraction * BAR_CHARS);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_CHARS - filled)}]`;
  const percent = `${String(Math.floor(fraction * 100)).padStart(3)}%`;
  const eta =
    startedAgoMs !== null && done > 0 && done < total
      ? `  ETA ${formatMs((startedAgoMs * (total - done)) / done, true)}`
      : '';
  return `${title}  ${bar} ${percent}  ${amount}${eta}`;
}

function lagText(lag: NodeView['lag']): string {
  if (lag.txns === null) return '-';
  return `${lag.txns} txns / ${lag.ms === null ? '-' : formatMs(lag.ms)}`;
}

/** `35 ms`, `4.2 s`, `3 min`, `2 h`; `seconds` rounds anything under a minute up to whole seconds. */
export function formatMs(ms: number, seconds = false): string {
  if (seconds && ms < 60_000) return `${Math.max(1, Math.ceil(ms / 1000))} s`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function bytesText(done: number, total: number | null): string {
  const scale = total ?? done;
  const [unit, size] =
    scale >= 1024 ** 3
      ? ['GiB', 1024 ** 3]
      : scale >= 1024 ** 2
        ? ['MiB', 1024 ** 2]
        : scale >= 1024
          ? ['KiB', 1024]
          : ['B', 1];
  const show = (n: number) => (size === 1 ? String(n) : (n / size).toFixed(1));
  return total === null ? `${show(done)} ${unit}` : `${show(done)}/${show(total)} ${unit}`;
}

/** `text` on one line, cut to `chars` with an ellipsis; control characters are made spaces. */
function cut(text: string, chars: number): string {
  const oneLine = plain(text);
  return oneLine.length <= chars ? oneLine : `${oneLine.slice(0, Math.max(0, chars - 1))}…`;
}

/**
 * Control characters (newlines, ANSI escapes) as spaces: what a node reports is shown, never
 * interpreted by the terminal.
 */
function plain(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is removed
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

// --- The command --------------------------------------------------------------------------------

export interface StatusDeps {
  /** HTTP for /status (default: global fetch). */
  fetch?: typeof fetch;
  /** Opens the store of --store (default: openStore, with the connection string's retries). */
  storeOpen?: (connection: string) => Promise<Pick<OpenedStore, 'store'>>;
  /** Ends --watch (default: the process's SIGINT or SIGTERM). */
  signal?: AbortSignal;
  /** Redraw in place and colour (default: io is the process's and stdout is a terminal). */
  tty?: boolean;
  /** Table width (default: the terminal's, else 160). */
  width?: number;
  /** Sleeps between refreshes and dates registrations (default: the system clock). */
  clock?: Clock;
}

interface StatusOptions {
  nodes: string[] | undefined;
  store: string | undefined;
  watchMs: number | undefined;
  timeoutMs: number;
  json: boolean;
}

/** One refresh: what was seen, and the exit code it means. */
interface Snapshot {
  cluster: {
    clusterId: string | null;
    newestEpoch: { epoch: string; nodeId: string; url: string } | null;
  } | null;
  nodes: NodeView[];
  /** Objects under nodes/ that are not readable registrations. */
  unreadable: { key: string; problem: string }[];
  problems: string[];
  exitCode: number;
}

/** `walship status`: see STATUS_USAGE. */
export async function statusCommand(argv: string[], io: CommandIo, deps: StatusDeps = {}): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(STATUS_USAGE);
    return EXIT.ok;
  }
  let options: StatusOptions;
  try {
    options = await parseStatusArgs(argv, io);
  } catch (error) {
    if (!isWalshipError(error) || error.kind !== 'invalid') throw error;
    io.stderr(`walship status: ${error.message}\n\n${STATUS_USAGE}`);
    return EXIT.usage;
  }
  let store: ObjectStore | undefined;
  if (options.store !== undefined) {
    try {
      store = (await (deps.storeOpen ?? openStore)(options.store)).store;
    } catch (error) {
      io.stderr(`walship status: ${(error as Error).message}`);
      return isWalshipError(error) && error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
    }
  }
  const tty = deps.tty ?? (io === processIo && process.stdout.isTTY === true);
  const render = {
    json: options.json,
    tty,
    color: tty && io.env.NO_COLOR === undefined,
    width: deps.width ?? (tty ? process.stdout.columns : undefined) ?? WIDTH_DEFAULT,
  };
  const clock = deps.clock ?? systemClock;
  const take = () => takeSnapshot(options, store, deps, clock);
  try {
    if (options.watchMs === undefined) {
      const snapshot = await take();
      print(io, snapshot, render, undefined);
      return snapshot.exitCode;
    }
    return await watch(io, take, render, options.watchMs, clock, deps.signal);
  } finally {
    await store?.close();
  }
}

async function parseStatusArgs(argv: string[], io: CommandIo): Promise<StatusOptions> {
  const own: Record<string, string> = {};
  const others: string[] = [];
  let watchMs: number | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--json') json = true;
    else if (arg === '--watch') watchMs = WATCH_INTERVAL_MS_DEFAULT;
    else if (arg.startsWith('--watch=')) watchMs = duration('--watch', arg.slice('--watch='.length));
    else {
      const match = /^--(nodes|store|timeout)(?:=(.*))?$/.exec(arg);
      if (match === null) {
        others.push(arg);
        continue;
      }
      const value = match[2] ?? argv[++i];
      if (value === undefined || value === '') throw usage(`--${match[1]} needs a value`);
      own[match[1]!] = value;
    }
  }
  if (watchMs !== undefined && watchMs < WATCH_INTERVAL_MS_MIN)
    throw usage(`--watch: the interval must be at least ${WATCH_INTERVAL_MS_MIN} ms`);
  const timeoutMs =
    own.timeout === undefined ? STATUS_TIMEOUT_MS_DEFAULT : duration('--timeout', own.timeout);
  if (timeoutMs <= 0) throw usage('--timeout must be more than 0');
  if (own.nodes !== undefined && own.store !== undefined) throw usage('give --nodes or --store, not both');
  if (own.nodes !== undefined) {
    if (others.length > 0) throw usage(`unexpected argument (${describeArgument(others[0]!)})`);
    const nodes = own.nodes
      .split(',')
      .map((url) => url.trim())
      .filter((url) => url !== '');
    if (nodes.length === 0) throw usage('--nodes needs at least one URL');
    if (nodes.length > NODES_MAX) throw usage(`--nodes: at most ${NODES_MAX} nodes`);
    return { nodes, store: undefined, watchMs, timeoutMs, json };
  }
  // The store: --store, else the node configuration surface (--config, WALSHIP_REPLICATION_OBJECT_STORE).
  const store =
    own.store ?? (await loadConfig({ argv: others, env: io.env })).string('replication.object.store');
  if (store === undefined) throw usage('give --nodes URL,… or --store CONNSTRING');
  return { nodes: undefined, store, watchMs, timeoutMs, json };
}

async function takeSnapshot(
  options: StatusOptions,
  store: ObjectStore | undefined,
  deps: StatusDeps,
  clock: Clock,
): Promise<Snapshot> {
  const fetchOptions = {
    timeoutMs: options.timeoutMs,
    ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
  };
  if (store === undefined) {
    const nodes = await fetchNodeViews(options.nodes ?? [], fetchOptions);
    const problems = clusterProblems(nodes);
    return {
      cluster: null,
      nodes,
      unreadable: [],
      problems,
      exitCode: problems.length > 0 ? EXIT.failed : EXIT.ok,
    };
  }
  let registered: Awaited<ReturnType<typeof readStore>>;
  try {
    registered = await readStore(store);
  } catch (error) {
    const problem = `cannot read ${store.description}: ${(error as Error).message}`;
    return { cluster: null, nodes: [], unreadable: [], problems: [problem], exitCode: EXIT.unavailable };
  }
  const listed = registered.listing.nodes.slice(0, NODES_MAX);
  const views = await fetchNodeViews(
    listed.map((n) => n.record.url),
    fetchOptions,
  );
  const nodes = views.map((view, i) => withRegistration(view, listed[i]!, clock.wallMs()));
  const problems = clusterProblems(nodes);
  if (nodes.length === 0)
    problems.push(
      'no node is registered in this store (replication.node.register.interval = 0 on every node?)',
    );
  if (registered.listing.truncated || registered.listing.nodes.length > NODES_MAX)
    problems.push(`more nodes are registered than the ${NODES_MAX} shown`);
  return {
    cluster: registered.cluster,
    nodes,
    unreadable: registered.listing.unreadable,
    problems,
    exitCode: problems.length > 0 ? EXIT.failed : EXIT.ok,
  };
}

async function readStore(store: ObjectStore) {
  const [cluster, epoch, listing] = await Promise.all([
    readClusterId(store),
    newestEpoch(store),
    listNodeRegistrations(store),
  ]);
  return {
    cluster: {
      clusterId: cluster,
      newestEpoch:
        epoch === null ? null : { epoch: epoch.epoch.toString(), nodeId: epoch.nodeId, url: epoch.url },
    },
    listing,
  };
}

/** The cluster id of cluster.json; null on a root without a cluster yet. */
async function readClusterId(store: ObjectStore): Promise<string | null> {
  const result = await store.get(CLUSTER_KEY);
  if (result === null || result.status !== 'ok') return null;
  return parseClusterRecord(result.body).clusterId;
}

/** A view with what the node's registration says; an unreachable node also gets its id and the registration's age. */
function withRegistration(view: NodeView, listed: ListedNodeRegistration, nowMs: number): NodeView {
  const { record } = listed;
  const atMs = parseTimeMs(record.at);
  const ageMs = Number.isFinite(atMs) ? Math.max(0, nowMs - atMs) : null;
  const registration = { role: record.role, epoch: record.epoch, at: record.at, ageMs };
  if (view.reachable) return { ...view, registration };
  const age = ageMs === null ? '' : ` ${formatMs(ageMs)} ago`;
  return {
    ...view,
    nodeId: record.nodeId,
    registration,
    lastError: `unreachable (registered${age} as ${record.role}): ${view.error}`,
  };
}

async function watch(
  io: CommandIo,
  take: () => Promise<Snapshot>,
  render: RenderOptions,
  intervalMs: number,
  clock: Clock,
  signal: AbortSignal | undefined,
): Promise<number> {
  const stop = signal === undefined ? stopOnSignals() : { signal, release: () => {} };
  let exitCode: number = EXIT.ok;
  try {
    for (let refresh = 0; !stop.signal.aborted; refresh++) {
      const snapshot = await take();
      exitCode = snapshot.exitCode;
      if (stop.signal.aborted) break;
      print(io, snapshot, render, { intervalMs, first: refresh === 0, atMs: clock.wallMs() });
      await clock.sleep(intervalMs, stop.signal).catch(() => {});
    }
  } finally {
    stop.release();
  }
  return exitCode;
}

/** An AbortSignal that SIGINT or SIGTERM aborts (Ctrl-C ends --watch), and a way to stop listening. */
function stopOnSignals(): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', abort);
      process.off('SIGTERM', abort);
    },
  };
}

interface RenderOptions {
  json: boolean;
  tty: boolean;
  color: boolean;
  width: number;
}

function print(
  io: CommandIo,
  snapshot: Snapshot,
  render: RenderOptions,
  watching: { intervalMs: number; first: boolean; atMs: number } | undefined,
): void {
  if (render.json) {
    const { cluster, nodes, unreadable, problems } = snapshot;
    io.stdout(JSON.stringify({ cluster, nodes, unreadable, problems }));
    return;
  }
  const lines: string[] = [];
  if (watching !== undefined) {
    const at = isoTime(watching.atMs).replace('T', ' ').slice(0, 19);
    lines.push(`walship status · every ${formatMs(watching.intervalMs)} · ${at} UTC · Ctrl-C to stop`, '');
  }
  const { cluster } = snapshot;
  if (cluster !== null) {
    const newest = cluster.newestEpoch;
    lines.push(
      `cluster ${cluster.clusterId ?? '(none yet)'}; newest epoch ${
        newest === null ? '(none)' : `${newest.epoch}: primary ${newest.nodeId} at ${newest.url}`
      }`,
    );
  }
  if (snapshot.nodes.length > 0) lines.push(renderNodeTable(snapshot.nodes, render));
  for (const u of snapshot.unreadable) lines.push(`unreadable registration ${u.key}: ${u.problem}`);
  for (const problem of snapshot.problems)
    lines.push(render.color ? `${ANSI.red}${problem}${ANSI.reset}` : problem);
  const text = lines.join('\n');
  if (watching === undefined) io.stdout(text);
  else if (render.tty) io.stdout(`\x1b[H\x1b[2J${text}`);
  else io.stdout(watching.first ? text : `\n${text}`);
}

// --- small helpers ------------------------------------------------------------------------------

function usage(message: string): InvalidConfigError {
  return new InvalidConfigError(message);
}

function duration(flag: string, text: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined) throw usage(`${flag}: expected a duration such as 2s or 500ms`);
  return ms;
}

function withScheme(url: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
}

/** The URL without credentials (a user:password@ part never reaches the output). */
function displayUrl(url: string): string {
  try {
    const parsed = new URL(withScheme(url));
    if (parsed.username === '' && parsed.password === '') return url.replace(/\/+$/, '');
    parsed.username = '';
    parsed.password = '';
    return parsed.href.replace(/\/+$/, '');
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

function unreachableReason(error: unknown, timeoutMs: number): string {
  const name = (error as Error).name;
  if (name === 'TimeoutError' || name === 'AbortError') return `no answer within ${formatMs(timeoutMs)}`;
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = cause?.code;
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    ENOTFOUND: 'host not found',
    EHOSTUNREACH: 'host unreachable',
    ETIMEDOUT: 'connection timed out',
  };
  if (typeof code === 'string') return reasons[code] ?? code;
  // fetch says only "fetch failed"; its cause says why (a port fetch refuses, a TLS problem…).
  const why = typeof cause?.message === 'string' ? `: ${cause.message}` : '';
  return `${(error as Error).message}${why}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function finite(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** A non-negative decimal integer as a string (from a string or a safe number), else undefined. */
function decimal(value: unknown): string | undefined {
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  return undefined;
}
