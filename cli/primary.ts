import { type CommandIo, EXIT } from './io.js';
import { runNode } from './node.js';

export const PRIMARY_USAGE = `walship primary [--config server.conf] [--key=value …]

Runs a primary: ILP over HTTP (http.bind.to, default 0.0.0.0:9000) and TCP (line.tcp.net.bind.to,
default port 9009 on http.bind.to's host), tables in SQLite under node.data.dir, WAL segments shipped to
replication.object.store. A data dir whose epoch a newer primary replaced while it was down joins
as a replica instead. Every key can also come from server.conf or WALSHIP_<KEY> variables.
Example:
  walship primary --replication.object.store='fs::root=/var/lib/walship/store;' --node.data.dir=./primary`;

export async function primaryCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(PRIMARY_USAGE);
    return EXIT.ok;
  }
  return runNode('primary', argv, io);
}
