/**
 * `walship sequencer serve` (the SQLite sequencer behind HTTP, RFC-0003) and `walship sequencer
 * status` (its /status at a glance). The listener keys are the nodes' own (`http.bind.to`,
 * `http.tls.*`, `http.auth.failures.max`, `http.net.connection.limit`, `log.level`, `--config`);
 * the `sequencer.*` keys are this command's, as flags or WALSHIP_SEQUENCER_* variables.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidConfigError, isWalshipError, renderMarkdownTable, systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/index.js';
import {
  openHttpSequencer,
  openSequencer,
  type SequencerAuthTokens,
  SQLITE_GROUP_MAX_DEFAULT,
  SqliteSequencerStore,
  startSequencerServer,
} from '../sequencer/index.js';
import { type ConfigKey, loadConfig } from './config.js';
import { type CommandIo, describeCommandWord, EXIT, runUntilSignal, strayArgument } from './io.js';
import { nodeLogger } from './node.js';
import { httpListener, openNodeStore } from './node-settings.js';

export const SEQUENCER_USAGE = `walship sequencer serve [--config server.conf] [--key=value …]
walship sequencer status --sequencer CONNSTRING [--json]
walship sequencer init --replication.object.store=STORE --replication.sequencer=CONNSTRING
walship sequencer fence --sequencer CONNSTRING --writer NODE_ID [--epoch N] [--json]

serve: the SQLite sequencer (<sequencer.data.dir>/sequencer.sqlite) behind HTTP on http.bind.to
(default 127.0.0.1:9100). Keys (flags, or WALSHIP_<KEY> variables):
  --sequencer.data.dir=DIR           where sequencer.sqlite lives (default ./walship-sequencer)
  --sequencer.auth.read.token=T      bearer token for log, heads, watch, writers, status, metrics
  --sequencer.auth.write.token=T     … for register and commit (also grants read)
  --sequencer.auth.admin.token=T     … for initialize and fence (also grants write and read)
  --sequencer.group.max=N            commits per group transaction (one fsync), default ${SQLITE_GROUP_MAX_DEFAULT}
  --http.bind.to=HOST:PORT           listener (default 127.0.0.1:9100)
  --http.tls.cert.path / --http.tls.key.path   HTTPS, as the nodes
  --http.auth.failures.max, --http.net.connection.limit, --log.level   as the nodes
With no token at all every route is open (a warning is logged): set tokens for a real cluster.
Stops on SIGINT or SIGTERM.

status: the service's /status (cluster id, version, heads, writers, throughput, group size, fsync
latency, size) as tables, or one JSON document with --json.
  --sequencer CONNSTRING   'http::addr=host:9100;token=…;' or 'https::addr=…;token=…;tls_ca=FILE;'
                           (default: WALSHIP_REPLICATION_SEQUENCER)

init: makes a new store root a cluster of several primaries ordered by that sequencer (RFC-0003):
cluster.json, an epoch record that refuses single primaries from then on, the sequencer bound to
the cluster, then sequencer.json. Run once before the first writer starts; running it again checks
and changes nothing. A root that a single primary already wrote to is refused (adoption is not
built yet). Keys as the nodes take them (flags, WALSHIP_* variables or --config).

fence: refuses every later commit of that writer at its current epoch (or at --epoch N and below):
its next commit fails, it answers 421 and its clients move on. Prints the heads every entry of the
fenced epoch is at or below. Needs the admin token. A fenced node takes writes again only after it
registers anew (a new data dir, or a promotion).

Exit codes: 0 ok; 2 bad arguments or configuration; 3 the sequencer could not be reached.`;

/** The keys `serve` takes: its own and its listener's; any other node key is a usage error. */
const SERVE_KEYS: ReadonlySet<string> = new Set([
  'config',
  'sequencer.data.dir',
  'sequencer.group.max',
  'sequencer.auth.read.token',
  'sequencer.auth.write.token',
  'sequencer.auth.admin.token',
  'http.bind.to',
  'http.tls.cert.path',
  'http.tls.key.path',
  'http.auth.failures.max',
  'http.net.connection.limit',
  'log.level',
]);
const BIND_DEFAULT = { host: '127.0.0.1', port: 9100 };

export interface SequencerCommandDeps {
  /** Stop when this resolves instead of on SIGINT/SIGTERM (in-process tests). */
  until?: Promise<unknown>;
}

/** `walship sequencer <serve|status> …`; resolves to the exit code. */
export async function runSequencerCommand(
  argv: string[],
  io: CommandIo,
  deps: SequencerCommandDeps = {},
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'serve' && !rest.includes('--help')) return serve(rest, io, deps);
  if (sub === 'status' && !rest.includes('--help')) return status(rest, io);
  if (sub === 'init' && !rest.includes('--help')) return init(rest, io);
  if (sub === 'fence' && !rest.includes('--help')) return fence(rest, io);
  if (sub === undefined || sub === 'help' || sub === '--help' || rest.includes('--help')) {
    io.stdout(SEQUENCER_USAGE);
    return EXIT.ok;
  }
  io.stderr(`walship: unknown sequencer command ${describeCommandWord(sub)}\n\n${SEQUENCER_USAGE}`);
  return EXIT.usage;
}

// --- serve --------------------------------------------------------------------------------------

async function serve(argv: string[], io: CommandIo, deps: SequencerCommandDeps): Promise<number> {
  for (const arg of argv) {
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0]! : undefined;
    if (name !== undefined && !SERVE_KEYS.has(name))
      throw new InvalidConfigError(
        `walship sequencer serve does not take --${name.slice(0, 64)}; keys: ${[...SERVE_KEYS].join(', ')}`,
      );
  }
  const config = await loadConfig({ argv, env: io.env });
  const token = (key: ConfigKey): string | undefined => {
    const value = config.get(key);
    return value === undefined ? undefined : String(value);
  };
  const auth: SequencerAuthTokens = {
    read: token('sequencer.auth.read.token'),
    write: token('sequencer.auth.write.token'),
    admin: token('sequencer.auth.admin.token'),
  };
  const listen = await httpListener(config);
  if (config.sourceOf('http.bind.to') === 'default') Object.assign(listen, BIND_DEFAULT);
  const log = nodeLogger(String(config.get('log.level')));
  const dataDir = String(config.get('sequencer.data.dir'));
  await mkdir(dataDir, { recursive: true });
  const store = SqliteSequencerStore.open({
    path: join(dataDir, 'sequencer.sqlite'),
    groupMax: config.number('sequencer.group.max'),
  });
  let server: Awaited<ReturnType<typeof startSequencerServer>>;
  try {
    server = await startSequencerServer(store, { listen, auth, log });
  } catch (error) {
    await store.close();
    throw error;
  }
  log.info({ dataDir, port: server.port, https: listen.tls !== undefined }, 'sequencer started');
  io.stdout(`walship sequencer listening: http ${server.port}`);
  if (deps.until === undefined) await runUntilSignal(server, store, log);
  else {
    await deps.until;
    await server.close();
    await store.close();
  }
  return EXIT.ok;
}

// --- init ---------------------------------------------------------------------------------------

async function init(argv: string[], io: CommandIo): Promise<number> {
  const config = await loadConfig({ argv, env: io.env });
  const connection = config.get('replication.sequencer');
  if (connection === undefined) {
    io.stderr(`walship: sequencer init needs --replication.sequencer CONNSTRING\n\n${SEQUENCER_USAGE}`);
    return EXIT.usage;
  }
  const { store } = await openNodeStore(config);
  try {
    return await withSequencer(
      () => openSequencer(String(connection)),
      io,
      async (sequencer) => {
        const { record, created } = await initSequencedCluster({ store, sequencer, clock: systemClock });
        io.stdout(
          `${created ? 'initialised' : 'already initialised:'} cluster ${record.clusterId} in ${store.description}, ` +
            'ordered by the sequencer; start writers with replication.sequencer set',
        );
        return EXIT.ok;
      },
    );
  } finally {
    await store.close();
  }
}

/** Opens a client, runs `use`, closes it; a WalshipError is printed and becomes the exit code. */
async function withSequencer<C extends { close(): Promise<void> }>(
  open: () => Promise<C>,
  io: CommandIo,
  use: (client: C) => Promise<number>,
): Promise<number> {
  try {
    const client = await open();
    try {
      return await use(client);
    } finally {
      await client.close();
    }
  } catch (error) {
    if (!isWalshipError(error)) throw error;
    io.stderr(`walship: ${error.message}`);
    return error.kind === 'unavailable' ? EXIT.unavailable : EXIT.usage;
  }
}

// --- fence --------------------------------------------------------------------------------------

const FENCE_OPTIONS = new Set(['sequencer', 'writer', 'epoch', 'json', 'help']);

async function fence(argv: string[], io: CommandIo): Promise<number> {
  const { values, tokens } = parseArgs({
    args: argv,
    options: {
      sequencer: { type: 'string' },
      writer: { type: 'string' },
      epoch: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: false,
    tokens: true,
  });
  const stray = strayArgument(tokens, FENCE_OPTIONS);
  const connection =
    typeof values.sequencer === 'string' ? values.sequencer : io.env.WALSHIP_REPLICATION_SEQUENCER;
  const writer = typeof values.writer === 'string' ? values.writer : undefined;
  const epochText = typeof values.epoch === 'string' ? values.epoch : undefined;
  const problem =
    stray ??
    (connection === undefined ? 'sequencer fence needs --sequencer CONNSTRING' : undefined) ??
    (writer === undefined ? 'sequencer fence needs --writer NODE_ID' : undefined) ??
    (epochText !== undefined && !/^[1-9]\d{0,18}$/.test(epochText)
      ? '--epoch must be a whole number ≥ 1'
      : undefined);
  if (problem !== undefined) {
    io.stderr(`walship: ${problem}\n\n${SEQUENCER_USAGE}`);
    return EXIT.usage;
  }
  return withSequencer(
    () => openSequencer(connection!),
    io,
    async (client) => {
      const current = (await client.writers()).find((w) => w.writer === writer);
      const epoch = epochText === undefined ? (current?.epoch ?? 0n) : BigInt(epochText);
      const { record, heads } = await client.fence(writer!, epoch);
      const tables = Object.fromEntries([...heads.tables].map(([table, txn]) => [table, txn.toString()]));
      if (values.json === true)
        io.stdout(
          JSON.stringify({
            writer,
            fencedEpoch: epoch.toString(),
            currentEpoch: record.epoch.toString(),
            heads: tables,
          }),
        );
      else
        io.stdout(
          `fenced writer ${writer} at epoch ${epoch}: no commit of it lands after these heads\n` +
            renderMarkdownTable(
              ['table', 'last txn'],
              Object.entries(tables).map(([table, txn]) => [table, txn]),
            ),
        );
      return EXIT.ok;
    },
  );
}

// --- status -------------------------------------------------------------------------------------

const STATUS_OPTIONS = new Set(['sequencer', 'json', 'help']);

async function status(argv: string[], io: CommandIo): Promise<number> {
  const { values, tokens } = parseArgs({
    args: argv,
    options: { sequencer: { type: 'string' }, json: { type: 'boolean', default: false } },
    strict: false,
    tokens: true,
  });
  const stray = strayArgument(tokens, STATUS_OPTIONS);
  const connection =
    typeof values.sequencer === 'string' ? values.sequencer : io.env.WALSHIP_REPLICATION_SEQUENCER;
  if (stray !== undefined || connection === undefined) {
    io.stderr(`walship: ${stray ?? 'sequencer status needs --sequencer CONNSTRING'}\n\n${SEQUENCER_USAGE}`);
    return EXIT.usage;
  }
  return withSequencer(
    () => openHttpSequencer(connection),
    io,
    async (client) => {
      const answer = await client.status();
      io.stdout(values.json === true ? JSON.stringify(answer) : renderSequencerStatus(client.origin, answer));
      return EXIT.ok;
    },
  );
}

/** /status JSON (bigints as strings) as a summary and two tables: heads and writers. */
export function renderSequencerStatus(origin: string, status: Record<string, unknown>): string {
  const shown = (value: unknown, unit = '') =>
    value === null || value === undefined
      ? '-'
      : `${typeof value === 'number' ? round(value) : String(value)}${unit}`;
  const summary: [string, string][] = [
    ['sequencer', origin],
    ['cluster id', shown(status.clusterId)],
    ['version', shown(status.version)],
    ['commits/s', shown(status.commitsPerSecond)],
    ['group size (mean)', shown(status.groupSizeMean)],
    [
      'fsync p50 / p99',
      `${shown(status.commitLatencyP50Ms, ' ms')} / ${shown(status.commitLatencyP99Ms, ' ms')}`,
    ],
    ['db size', shown(status.dbSizeBytes, ' bytes')],
    ['queued commits', shown(status.queuedCommits)],
    ['watchers', shown(status.watchers)],
  ];
  const heads = (status.heads ?? {}) as Record<string, unknown>;
  const headTables = (heads.tables ?? heads) as Record<string, unknown>;
  const tableRows = Object.entries(headTables)
    .filter(([name]) => name !== 'version')
    .map(([name, txn]) => [escapeCell(name), shown(txn)]);
  const activity = new Map(
    ((status.writerActivity ?? []) as { writer: string; lastCommitAgoMs: number | null }[]).map((a) => [
      a.writer,
      a.lastCommitAgoMs,
    ]),
  );
  const writerRows = ((status.writers ?? []) as Record<string, unknown>[]).map((w) => [
    escapeCell(String(w.writer)),
    shown(w.epoch),
    shown(w.lastBatchSeq),
    w.fenced === true ? 'yes' : 'no',
    String(Array.isArray(w.closed) ? w.closed.length : 0),
    shown(activity.get(String(w.writer)), ' ms ago'),
  ]);
  const width = Math.max(...summary.map(([k]) => k.length));
  return [
    ...summary.map(([k, v]) => `${k.padEnd(width)}  ${v}`),
    '',
    tableRows.length === 0 ? 'no tables' : renderMarkdownTable(['TABLE', 'LAST TXN'], tableRows),
    '',
    writerRows.length === 0
      ? 'no writers'
      : renderMarkdownTable(
          ['WRITER', 'EPOCH', 'LAST BATCH', 'FENCED', 'CLOSED EPOCHS', 'LAST COMMIT'],
          writerRows,
        ),
  ].join('\n');
}

function round(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|');
}
