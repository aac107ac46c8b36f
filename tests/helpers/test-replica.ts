/**
 * Starting a real ReplicaNode in the test process: a loopback listener on port 0, a data dir of
 * the test's, a silent logger, a short poll, and the settings a test wants to change.
 */
import { pino } from 'pino';
import { systemClock } from '../../core/index.js';
import type { ObjectStore } from '../../objectstore/index.js';
import { ReplicaNode, type ReplicaSettings } from '../../replica/index.js';

export const TEST_ADMIN_TOKEN = 'test-admin-token';

export function testReplicaSettings(
  store: ObjectStore,
  dataDir: string,
  overrides: Partial<ReplicaSettings> = {},
): ReplicaSettings {
  return {
    dataDir,
    nodeId: undefined,
    store,
    pollIntervalMs: 20,
    sweepIntervalMs: 2_000,
    downloadConcurrency: 4,
    bootstrapFromSnapshot: true,
    snapshotIntervalMs: 0,
    readWaitMaxMs: 5_000,
    synchronous: 'FULL',
    http: { host: '127.0.0.1', port: 0 },
    httpAuth: undefined,
    adminToken: TEST_ADMIN_TOKEN,
    maxRequestBytes: 100 * 1024 * 1024,
    queryTimeoutMs: 10_000,
    queryWorkers: 1,
    version: 'test',
    ...overrides,
  };
}

export function startTestReplica(
  store: ObjectStore,
  dataDir: string,
  overrides: Partial<ReplicaSettings> = {},
): Promise<ReplicaNode> {
  return ReplicaNode.start(testReplicaSettings(store, dataDir, overrides), {
    clock: systemClock,
    log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
  });
}

/** POST an admin action to a node with the test token. */
export async function postAdmin(port: number, action: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}/admin/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
  });
  return { status: response.status, body: await response.json() };
}
