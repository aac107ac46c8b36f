/**
 * Starting a real PrimaryNode in the test process: loopback listeners on port 0, a data dir of
 * the test's, a silent logger, and the settings a test wants to change.
 */
import { pino } from 'pino';
import { seededRandom, systemClock } from '../../core/index.js';
import type { ObjectStore } from '../../objectstore/index.js';
import { PrimaryNode, type PrimarySettings } from '../../primary/index.js';

export function testPrimarySettings(
  store: ObjectStore,
  dataDir: string,
  overrides: Partial<PrimarySettings> = {},
): PrimarySettings {
  return {
    dataDir,
    nodeId: undefined,
    nodeUrl: undefined,
    store,
    skipStoreCheck: false,
    ackMode: 'local',
    durableTimeoutMs: 10_000,
    pendingMaxBytes: 1024 * 1024 * 1024,
    rolloverSizeBytes: 2 * 1024 * 1024,
    windowMs: 50,
    headIntervalMs: 100,
    maxConcurrentUploads: 4,
    codec: 'deflate',
    compressionLevel: 1,
    synchronous: 'FULL',
    http: { host: '127.0.0.1', port: 0 },
    tcp: { host: '127.0.0.1', port: 0, authKeys: undefined },
    httpAuth: undefined,
    maxRequestBytes: 100 * 1024 * 1024,
    queryTimeoutMs: 10_000,
    queryWorkers: 1,
    version: 'test',
    ...overrides,
  };
}

export function startTestPrimary(
  store: ObjectStore,
  dataDir: string,
  overrides: Partial<PrimarySettings> = {},
): Promise<PrimaryNode> {
  return PrimaryNode.start(testPrimarySettings(store, dataDir, overrides), {
    clock: systemClock,
    random: seededRandom(42),
    log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
  });
}

/** GET a JSON endpoint of a node. */
export async function getJson(port: number, path: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.json() };
}
