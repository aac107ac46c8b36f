import { type DestinationStream, type Logger, pino } from 'pino';
import { isWalshipError, systemClock, systemRandom } from '../core/index.js';
import { NodeMetrics, WalshipNode } from '../node/index.js';
import { loadConfig } from './config.js';
import { type CommandIo, EXIT, runUntilSignal } from './io.js';
import { nodeSettings } from './node-settings.js';

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
 * `walship primary` and `walship replica`: one process that starts in that role and can change
 * role without a restart (`POST /admin/promote`, `POST /admin/demote`, or being fenced).
 */
export async function runNode(role: 'primary' | 'replica', argv: string[], io: CommandIo): Promise<number> {
  const config = await loadConfig({ argv, env: io.env, fixed: { 'replication.role': role } });
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
  try {
    await node.started;
  } catch (error) {
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
  return EXIT.ok;
}
