import { type CommandIo, EXIT } from './io.js';
import { runNode } from './node.js';

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
