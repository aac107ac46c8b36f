/**
 * Starting a real WalshipNode (a process that can change role) in the test process: the test
 * primary's and replica's settings over one store and data dir, a silent logger.
 */
import { pino } from 'pino';
import { seededRandom, systemClock } from '../../core/index.js';
import { type NodeSettings, WalshipNode } from '../../node/index.js';
import type { ObjectStore } from '../../objectstore/index.js';
import type { PrimarySettings } from '../../primary/index.js';
import type { ReplicaSettings } from '../../replica/index.js';
import { testPrimarySettings } from './test-primary.js';
import { TEST_ADMIN_TOKEN, testReplicaSettings } from './test-replica.js';

export function testNodeSettings(
  store: ObjectStore,
  dataDir: string,
  overrides: {
    primary?: Partial<PrimarySettings>;
    replica?: Partial<ReplicaSettings>;
    demoteTimeoutMs?: number;
    autoFailover?: { enabled: boolean; leaseTimeoutMs: number };
    statusSampleMs?: number;
  } = {},
): NodeSettings {
  return {
    primary: testPrimarySettings(store, dataDir, { adminToken: TEST_ADMIN_TOKEN, ...overrides.primary }),
    replica: testReplicaSettings(store, dataDir, overrides.replica),
    url: 'http://127.0.0.1:0',
    demoteTimeoutMs: overrides.demoteTimeoutMs ?? 10_000,
    autoFailover: overrides.autoFailover ?? { enabled: false, leaseTimeoutMs: 10_000 },
    ...(overrides.statusSampleMs === undefined ? {} : { statusSampleMs: overrides.statusSampleMs }),
  };
}

export function startTestNode(
  role: 'primary' | 'replica',
  store: ObjectStore,
  dataDir: string,
  overrides: Parameters<typeof testNodeSettings>[2] = {},
): Promise<WalshipNode> {
  return WalshipNode.start(role, testNodeSettings(store, dataDir, overrides), {
    clock: systemClock,
    random: seededRandom(7),
    log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
  });
}
