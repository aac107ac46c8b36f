import { type ReplicaSettings, TableFilter } from '../replica/index.js';
import type { NodeConfig } from './config.js';
import { type CommandIo, EXIT } from './io.js';
import { runNode } from './node.js';
import { httpAuth, httpListener, openNodeStore, packageVersion, tokenAuth } from './primary.js';
import { queryLimitsOf } from './query-limits.js';

export const REPLICA_USAGE = `walship replica [--config server.conf] [--key=value …]

Runs a replica: follows replication.object.store (never the primary), applies every table's
segments to SQLite under node.data.dir (only those of replication.replica.tables, minus
replication.replica.tables.exclude, when set), and serves reads on http.bind.to (/exec, /exp, /status);
writes are answered 421 so multi-URL ILP clients move on. An empty data dir starts from the
newest snapshot. On the data dir of a crashed primary whose txns never reached the store it
waits (\`waiting\` in /status) until another node is promoted, then rejoins; it never exits for
it. Every key can also come from server.conf or WALSHIP_<KEY> variables.
Example:
  walship replica --replication.object.store='fs::root=/var/lib/walship/store;' \\
    --node.data.dir=./replica --http.bind.to=127.0.0.1:9100 --replication.replica.poll.interval=100ms`;

export async function replicaCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(REPLICA_USAGE);
    return EXIT.ok;
  }
  return runNode('replica', argv, io);
}

/** Turn the configuration surface into the replica's settings, opening the store. */
export async function replicaSettings(
  config: NodeConfig,
  opened?: Awaited<ReturnType<typeof openNodeStore>>,
): Promise<ReplicaSettings> {
  opened ??= await openNodeStore(config);
  return {
    dataDir: String(config.require('node.data.dir')),
    nodeId: config.string('node.id'),
    store: opened.store,
    pollIntervalMs: Math.max(1, config.number('replication.replica.poll.interval')),
    sweepIntervalMs: Math.max(1, config.number('replication.replica.sweep.interval')),
    downloadConcurrency: Math.max(1, config.number('replication.requests.max.concurrent')),
    bootstrapFromSnapshot: config.bool('replication.replica.bootstrap.snapshot'),
    tables: servedTables(config),
    snapshotIntervalMs: config.number('replication.snapshot.interval'),
    readWaitMaxMs: config.number('replication.replica.read.wait.max'),
    synchronous: config.get('cairo.commit.mode') === 'async' ? 'NORMAL' : 'FULL',
    http: await httpListener(config),
    httpAuth: httpAuth(config),
    ilpAuth: tokenAuth(config, 'ilp.auth.token'),
    queryAuth: tokenAuth(config, 'query.auth.token'),
    adminToken: config.string('admin.token'),
    maxRequestBytes: config.number('line.http.max.request.size'),
    queryTimeoutMs: config.number('query.timeout'),
    queryWorkers: Math.max(1, config.number('query.workers')),
    queryLimits: queryLimitsOf(config),
    version: await packageVersion(),
  };
}

/** `replication.replica.tables` / `.exclude` (INVALID_CONFIG naming the key); undefined when neither is set: every table. */
function servedTables(config: NodeConfig): TableFilter | undefined {
  const include = config.string('replication.replica.tables');
  const exclude = config.string('replication.replica.tables.exclude');
  return include === undefined && exclude === undefined ? undefined : TableFilter.parse(include, exclude);
}
