import { isWalshipError, systemClock } from '../core/index.js';
import { adminCommand } from './admin.js';
import { renderConfigReference } from './config.js';
import type { DemoDeps } from './demo.js';
import { promoteCommand, switchoverCommand } from './failover-commands.js';
import {
  type CommandIo,
  describeArgument,
  describeCommandWord,
  EXIT,
  parseArgsMessage,
  processIo,
  redactArgvValues,
} from './io.js';
import { runNode } from './node.js';
import { PRIMARY_USAGE, primaryCommand } from './primary.js';
import { REPLICA_USAGE, replicaCommand } from './replica.js';
import { type StoreCheckDeps, storeCheck } from './store-check.js';

const USAGE = `walship — QuestDB-style replication for time-series data

Usage: walship <command> [options]
       walship --config server.conf [--key=value …]   (or -c) run a node in the role the file's
                                                      replication.role names (primary or replica)

Commands:
  primary       run a primary node (ILP in, segments out)
  replica       run a replica node (segments in, reads out)
  admin         ask a running node to act: 'admin resume --table T', 'admin snapshot'
  promote       promote a replica: 'promote --node URL' (unplanned failover)
  switchover    planned, lossless: 'switchover --from URL --to URL'
  status        the cluster at a glance: 'status --nodes URL,URL' or 'status --store CONNSTRING'
  drill         a failover drill with RTO/RPO report: 'drill --mode switchover|kill|zombie'
  demo          a local primary and two replicas, live, through a switchover and a crash: 'demo'
  verify        audit a store ('verify --store CONNSTRING') or compare nodes ('verify --nodes URL,URL')
  sequencer     the ordering service of several primaries: 'sequencer serve', 'sequencer init', 'sequencer status --sequencer CONNSTRING'
  router        one HTTP address for a cluster: writes to the primary, reads by preference ('router --replication.object.store=…')
  gc            WAL retention: delete old segments and snapshots ('gc --store CONNSTRING [--dry-run]')
  restore       point-in-time recovery into a new data dir: 'restore --store CONNSTRING --to TIME|TXN --data-dir DIR'
  store check   check that an object store honours what replication and fencing need
  version       print the version
  help          print this text; 'help config' lists every configuration key

Run 'walship <command> --help' for a command's options.`;

export interface MainDeps {
  storeCheck?: StoreCheckDeps;
  /** HTTP for `walship admin` (default: global fetch). */
  fetch?: typeof fetch;
}

/** Run the walship command line; resolves to the process exit code. */
export async function main(argv: string[], io: CommandIo, deps: MainDeps = {}): Promise<number> {
  // Every error main prints goes through this: no secret typed on the command line is echoed back.
  const fail = (message: string) => io.stderr(redactArgvValues(message, argv));
  const [command, sub, ...rest] = argv;
  try {
    if (command === 'store' && sub === 'check') return await storeCheck(rest, io, deps.storeCheck);
    if (command === '--config' || command === '-c' || command?.startsWith('--config=') === true)
      return await configuredNodeCommand(argv, io);
    if (command === 'primary') return await primaryCommand(argv.slice(1), io);
    if (command === 'replica') return await replicaCommand(argv.slice(1), io);
    if (command === 'admin') return await adminCommand(argv.slice(1), io, deps.fetch);
    if (command === 'promote') return await promoteCommand(argv.slice(1), io, deps.fetch);
    if (command === 'switchover') return await switchoverCommand(argv.slice(1), io, deps.fetch);
    if (command === 'status')
      return await (await import('./status.js')).statusCommand(argv.slice(1), io, { fetch: deps.fetch });
    if (command === 'drill') return await (await import('./drill.js')).drillCommand(argv.slice(1), io);
    if (command === 'verify') return await (await import('./verify.js')).verifyCommand(argv.slice(1), io);
    if (command === 'sequencer')
      return await (await import('./sequencer.js')).runSequencerCommand(argv.slice(1), io);
    if (command === 'router') return await (await import('./router.js')).runRouterCommand(argv.slice(1), io);
    if (command === 'gc') return await (await import('./gc.js')).gcCommand(argv.slice(1), io);
    if (command === 'restore') return await (await import('./restore.js')).restoreCommand(argv.slice(1), io);
    if (command === 'demo')
      return await (await import('./demo.js')).demoCommand(argv.slice(1), io, demoDeps(io));
    if (command === 'version' || command === '--version') {
      io.stdout(await version());
      return EXIT.ok;
    }
    if (command === 'help' && sub === 'config') {
      io.stdout(renderConfigReference());
      return EXIT.ok;
    }
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      io.stdout(USAGE);
      return EXIT.ok;
    }
    fail(`walship: ${unknownCommand(command)}\n\n${USAGE}`);
    return EXIT.usage;
  } catch (error) {
    if (isWalshipError(error) && (error.kind === 'invalid' || error.code === 'PRIMARY_REFUSED')) {
      fail(`walship: ${error.message}`);
      return EXIT.usage;
    }
    if (isWalshipError(error) && error.kind === 'unavailable') {
      fail(`walship: ${error.message}`);
      return EXIT.unavailable;
    }
    // Corrupt store data, a lost race, a fence: operating errors, said in one line (a stack trace
    // is for bugs: kind internal, and errors that are not WalshipErrors, still crash).
    if (isWalshipError(error) && error.kind !== 'internal') {
      fail(`walship: ${error.message}`);
      return EXIT.failed;
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const { address, port } = error as { address?: string; port?: number };
      fail(
        `walship: cannot listen on ${address ?? '?'}:${port ?? '?'} (${code}); check http.bind.to and line.tcp.net.bind.to`,
      );
      return EXIT.usage;
    }
    // parseArgs reports unknown or malformed options with a TypeError carrying a code.
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      fail(`walship: ${parseArgsMessage(error as Error & { code: string })}`);
      return EXIT.usage;
    }
    throw error;
  }
}

/**
 * The unknown-command error names the command word only, and only when it looks like one: argv may
 * carry a secret (`walship --admin.token=…`), which must not be echoed (issue 13 item 10).
 */
function unknownCommand(command: string): string {
  if (command.startsWith('-')) return `expected a command before ${describeArgument(command)}`;
  return `unknown command ${describeCommandWord(command)}`;
}

/** `walship --config server.conf`: a node in the role `replication.role` gives (QuestDB's way). */
async function configuredNodeCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(`${CONFIGURED_NODE_USAGE}\n\n${PRIMARY_USAGE}\n\n${REPLICA_USAGE}`);
    return EXIT.ok;
  }
  return runNode(undefined, argv, io);
}

const CONFIGURED_NODE_USAGE = `walship --config server.conf [--key=value …]

Runs a node in the role server.conf's replication.role names (primary or replica), as QuestDB's
server.conf does; every other key as for walship primary and walship replica below. With
walship primary or walship replica the command names the role, and a file naming the other one is
refused.`;

/** Terminal facts and the exit on Ctrl-C, only when the command line runs as this process. */
function demoDeps(io: CommandIo): DemoDeps {
  if (io !== processIo) return {};
  return {
    tty: {
      stdout: process.stdout.isTTY === true,
      stderr: process.stderr.isTTY === true,
      ...(process.stdout.columns === undefined && process.stderr.columns === undefined
        ? {}
        : { columns: process.stdout.columns ?? process.stderr.columns }),
    },
    // Every node is stopped by then; an in-process wait still pending must not hold the exit up.
    onInterrupted: (exitCode) => {
      systemClock.setTimer(INTERRUPTED_EXIT_MS, () => process.exit(exitCode), { unref: true });
    },
  };
}

/** After Ctrl-C, the demo's process ends at most this long after its nodes are stopped. */
const INTERRUPTED_EXIT_MS = 1_000;

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const url = new URL('../../package.json', import.meta.url);
  const pkg = JSON.parse(await readFile(url, 'utf8').catch(() => '{"version":"dev"}')) as { version: string };
  return `walship ${pkg.version}`;
}
