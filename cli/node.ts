import { pino } from 'pino';
import { systemClock, systemRandom } from '../core/index.js';
import { type NodeSettings, WalshipNode } from '../failover/index.js';
import { loadConfig, type NodeConfig } from './config.js';
import { type CommandIo, EXIT, runUntilSignal } from './io.js';
import { openNodeStore, primarySettings } from './primary.js';
import { replicaSettings } from './replica.js';

/**
 * `walship primary` and `walship replica`: one process that starts in that role and can change
 * role without a restart (`POST /admin/promote`, `POST /admin/demote`, or being fenced).
 */
export async function runNode(role: 'primary' | 'replica', argv: string[], io: CommandIo): Promise<number> {
  const config = await loadConfig({ argv, env: io.env, fixed: { 'replication.role': role } });
  const log = pino({ level: String(config.get('log.level')), base: { pid: process.pid } });
  const settings = await nodeSettings(config);
  const node = await WalshipNode.start(role, settings, { clock: systemClock, random: systemRandom, log });
  const primary = node.current;
  const tcp =
    primary !== undefined && 'tcpPort' in primary && primary.tcpPort ? `, tcp ${primary.tcpPort}` : '';
  io.stdout(`walship ${role} ${node.nodeId} listening: http ${node.httpPort}${tcp}`);
  await runUntilSignal(node, settings.primary.store, log);
  return EXIT.ok;
}

/** Both roles' settings over ONE opened store (a node changes role without reopening it). */
export async function nodeSettings(config: NodeConfig): Promise<NodeSettings> {
  const opened = await openNodeStore(config);
  const primary = await primarySettings(config, opened);
  const replica = await replicaSettings(config, opened);
  return {
    primary,
    replica,
    url:
      primary.nodeUrl ??
      `http://${primary.http.host === '0.0.0.0' ? '127.0.0.1' : primary.http.host}:${primary.http.port}`,
    demoteTimeoutMs: config.number('replication.ack.durable.timeout'),
    registerIntervalMs: config.number('replication.node.register.interval'),
    autoFailover: {
      enabled: config.bool('replication.failover.auto'),
      leaseTimeoutMs: Math.max(100, config.number('replication.failover.lease.timeout')),
    },
  };
}
