import { type DestinationStream, type Logger, pino } from 'pino';
import {
  type Clock,
  InvalidConfigError,
  isWalshipError,
  systemClock,
  systemRandom,
  type Timer,
} from '../core/index.js';
import { NodeMetrics, WalshipNode } from '../node/index.js';
import { createAdminTokenFile } from './admin-token.js';
import { loadConfig, type NodeConfig } from './config.js';
import { type CommandIo, EXIT, type ProgressLine, processIo, progressLine, runUntilSignal } from './io.js';
import { nodeSettings } from './node-settings.js';
import { type NodeOperationView, renderProgress } from './status.js';

/**
 * Field paths whose values pino replaces with `****` on every line, whatever logs them: HTTP
 * credentials, the `secret` configuration keys (cli/config.ts), the store's secret connection-string
 * keys, and the settings objects that hold them. Messages never quote secrets (connection strings
 * are logged as `store.description`, already redacted); these paths guard the structured fields.
 */
export const REDACTED_LOG_PATHS: readonly string[] = [
  ...['authorization', 'cookie', 'password', 'token', 'adminToken', 'httpAuth', 'bearer', 'basic'],
  ...['secretAccessKey', 'sessionToken', 'secret_access_key', 'session_token'],
  ...['ilpAuth', 'queryAuth', 'tls'],
  ...[
    '["admin.token"]',
    '["http.password"]',
    '["http.auth.token"]',
    '["ilp.auth.token"]',
    '["query.auth.token"]',
    '["replication.sequencer"]',
    '["sequencer.auth.read.token"]',
    '["sequencer.auth.write.token"]',
    '["sequencer.auth.admin.token"]',
  ],
]
  .flatMap((path) => [path, path.startsWith('[') ? `*${path}` : `*.${path}`])
  .concat(['*.headers.authorization', '*.headers.cookie']);

/** The node's root logger: JSON lines on stdout (or `destination`), secrets redacted. */
export function nodeLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    redact: { paths: [...REDACTED_LOG_PATHS], censor: '****' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * `walship primary`, `walship replica` and `walship --config server.conf` (the role then comes from
 * the file's `replication.role`): one process that starts in that role and can change role without
 * a restart (`POST /admin/promote`, `POST /admin/demote`, or being fenced).
 */
export async function runNode(
  command: 'primary' | 'replica' | undefined,
  argv: string[],
  io: CommandIo,
): Promise<number> {
  const config = await loadConfig({ argv, env: io.env });
  const role = startRole(config, command);
  const createdTokenFile = await createAdminTokenFile(config);
  if (createdTokenFile !== undefined)
    io.stdout(`walship: created a random admin token in ${createdTokenFile} (mode 0600; admin.token.file)`);
  const log = nodeLogger(String(config.get('log.level')));
  // One registry per process, made before the store is opened so its retry hook feeds it too.
  const metrics = new NodeMetrics({ processMetrics: true });
  const settings = await nodeSettings(config, metrics);
  // Listening before the role is known: the node answers 503 meanwhile, and a node that waits for
  // its cluster to choose a primary (issue 13 item 4) waits here — a signal ends the wait cleanly.
  const node = await WalshipNode.open(role, settings, {
    clock: systemClock,
    random: systemRandom,
    log,
    metrics,
  });
  io.stdout(`walship ${role} starting: http ${node.httpPort}`);
  const sequencer = settings.sequenced?.sequencer;
  const store = settings.primary.store;
  const closeStore = { close: async () => Promise.all([store.close(), sequencer?.close()]).then(() => {}) };
  const stopped = runUntilSignal(node, closeStore, node.log);
  const following = followStartOperations(node, `walship ${role}`, io);
  try {
    await node.started;
  } catch (error) {
    following.stop();
    if (isWalshipError(error, 'CLOSED')) {
      await stopped; // a signal ended the start (a wait for the cluster): a clean shutdown
      return EXIT.ok;
    }
    await node.close();
    throw error;
  }
  const current = node.current;
  const tcp =
    current !== undefined && 'tcpPort' in current && current.tcpPort ? `, tcp ${current.tcpPort}` : '';
  // The role it runs in: a primary replaced while it was down joined as a replica (issue 13 item 4).
  const running = node.role === 'switching' ? role : node.role;
  const pg = node.pgPort === undefined ? '' : `, pg ${node.pgPort}`;
  io.stdout(`walship ${running} ${node.nodeId} listening: http ${node.httpPort}${tcp}${pg}`);
  await stopped;
  following.stop();
  return EXIT.ok;
}

/** How often a starting node's `/status` is read for an operation in progress. */
const OPERATION_POLL_MS = 1_000;

/**
 * A replica's bootstrap (a snapshot download) and first catch-up can take minutes, while the
 * terminal shows only the JSON log's first lines: on a terminal, their progress goes to stderr
 * (cli/io.ts progressLine, a line every few seconds) until the node has started and no operation
 * is left. Elsewhere nothing: a service's record is its log, and `walship status` draws the same bar.
 */
export function followStartOperations(
  node: Pick<WalshipNode, 'started' | 'status'>,
  title: string,
  io: CommandIo,
  options: { terminal?: boolean; clock?: Clock } = {},
): { stop(): void } {
  const terminal = options.terminal ?? (io === processIo && process.stderr.isTTY === true);
  if (!terminal) return { stop: () => {} };
  const clock = options.clock ?? systemClock;
  let started = false;
  let stopped = false;
  let line: ProgressLine | undefined;
  let timer: Timer | undefined;
  void node.started.then(
    () => {
      started = true;
    },
    () => {},
  );
  const poll = () => {
    if (stopped) return;
    const operation = node.status().operation as NodeOperationView | null | undefined;
    if (operation !== null && operation !== undefined) {
      // Plain lines, not one redrawn: the node's log lines share the terminal.
      line ??= progressLine(io, title, { inPlace: false, clock });
      line.update(renderProgress(operation));
    } else if (line !== undefined || started) {
      line?.finish('done');
      if (started) return;
      line = undefined;
    }
    timer = clock.setTimer(OPERATION_POLL_MS, poll, { unref: true });
  };
  poll();
  return {
    stop: () => {
      stopped = true;
      timer?.cancel();
      line?.finish('stopped');
    },
  };
}

/**
 * The role a node starts in: the command's (`walship primary`), else `replication.role` (`walship
 * --config server.conf`, as QuestDB's server.conf). A command and a configured role that disagree
 * are refused: a file that says replica must not quietly start a primary, nor the other way round.
 */
export function startRole(
  config: NodeConfig,
  command: 'primary' | 'replica' | undefined,
): 'primary' | 'replica' {
  const configured = String(config.require('replication.role'));
  const source = config.sourceOf('replication.role');
  if (command === undefined) {
    if (configured === 'primary' || configured === 'replica') return configured;
    throw new InvalidConfigError(
      `replication.role is ${configured} (${source}): set replication.role=primary or replication.role=replica, or run walship primary or walship replica`,
    );
  }
  if (configured !== 'none' && configured !== command)
    throw new InvalidConfigError(
      `the command says ${command} but replication.role=${configured} (${source}): run walship --config FILE to start in the role the file names, or change the file`,
    );
  return command;
}
