import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../objectstore/index.js';
import { loadConfig } from './config.js';
import { EXIT } from './io.js';
import { main } from './main.js';
import { replicaSettings } from './node-settings.js';
import { REPLICA_USAGE } from './replica.js';

let dir = '';
const stores: ObjectStore[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-cli-replica-'));
});
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env }, out, err };
}

async function settingsOf(argv: string[], env: Record<string, string | undefined> = {}) {
  const config = await loadConfig({ argv, env, fixed: { 'replication.role': 'replica' } });
  const settings = await replicaSettings(config);
  stores.push(settings.store);
  return settings;
}

async function packageJsonVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

describe('replicaSettings', () => {
  it('maps every key it uses', async () => {
    const root = path.join(dir, 'store-a');
    const settings = await settingsOf([
      `--replication.object.store=fs::root=${root};`,
      `--node.data.dir=${path.join(dir, 'data-a')}`,
      '--node.id=replica-7',
      '--replication.replica.poll.interval=20ms',
      '--replication.replica.sweep.interval=2s',
      '--replication.requests.max.concurrent=5',
      '--replication.replica.bootstrap.snapshot=false',
      '--replication.snapshot.interval=5m',
      '--replication.replica.read.wait.max=750',
      '--cairo.commit.mode=async',
      '--http.bind.to=127.0.0.1:9123',
      '--http.user=reader',
      '--http.password=pw',
      '--http.auth.token=bearer-tok',
      '--admin.token=admin-tok',
      '--line.http.max.request.size=1m',
      '--query.timeout=3s',
      '--query.workers=4',
    ]);
    const { store, ...rest } = settings;
    expect(rest).toEqual({
      dataDir: path.join(dir, 'data-a'),
      nodeId: 'replica-7',
      pollIntervalMs: 20,
      sweepIntervalMs: 2_000,
      downloadConcurrency: 5,
      bootstrapFromSnapshot: false,
      snapshotIntervalMs: 300_000,
      readWaitMaxMs: 750,
      synchronous: 'NORMAL',
      http: {
        host: '127.0.0.1',
        port: 9123,
        tls: undefined,
        authFailuresPerMinute: 30,
        trustedProxies: [],
        maxConnections: 1024,
      },
      httpAuth: { basic: [{ username: 'reader', password: 'pw' }], bearer: ['bearer-tok'] },
      ilpAuth: undefined,
      queryAuth: undefined,
      adminToken: 'admin-tok',
      maxRequestBytes: 1024 * 1024,
      queryTimeoutMs: 3_000,
      queryWorkers: 4,
      queryLimits: { maxQueueLength: 256, maxQueueWaitMs: 5_000, memoryLimitBytes: 1024 * 1024 * 1024 },
      version: await packageJsonVersion(),
    });
    // The store really is the configured root.
    await store.put('probe/x', new TextEncoder().encode('hello'));
    expect(existsSync(path.join(root, 'probe', 'x'))).toBe(true);
    expect(store.description).toContain(root);
  });

  it('fills the documented defaults', async () => {
    const settings = await settingsOf([`--replication.object.store=fs::root=${path.join(dir, 'store-b')};`]);
    const { store: _store, version: _version, ...rest } = settings;
    expect(rest).toEqual({
      dataDir: './walship-data',
      nodeId: undefined,
      pollIntervalMs: 1_000,
      sweepIntervalMs: 300_000,
      downloadConcurrency: 8,
      bootstrapFromSnapshot: true,
      snapshotIntervalMs: 3_600_000,
      readWaitMaxMs: 5_000,
      synchronous: 'FULL',
      http: {
        host: '0.0.0.0',
        port: 9000,
        tls: undefined,
        authFailuresPerMinute: 30,
        trustedProxies: [],
        maxConnections: 1024,
      },
      httpAuth: undefined,
      ilpAuth: undefined,
      queryAuth: undefined,
      adminToken: undefined,
      maxRequestBytes: 100 * 1024 * 1024,
      queryTimeoutMs: 60_000,
      queryWorkers: 2,
      queryLimits: { maxQueueLength: 256, maxQueueWaitMs: 5_000, memoryLimitBytes: 1024 * 1024 * 1024 },
    });
  });

  it('reads the environment, and keeps intervals and counts at least 1', async () => {
    const settings = await settingsOf(['--replication.replica.poll.interval=0', '--query.workers=0'], {
      WALSHIP_REPLICATION_OBJECT_STORE: `fs::root=${path.join(dir, 'store-c')};`,
      WALSHIP_REPLICATION_REPLICA_SWEEP_INTERVAL: '0',
      WALSHIP_REPLICATION_REQUESTS_MAX_CONCURRENT: '0',
      WALSHIP_ADMIN_TOKEN: 'from-env',
    });
    expect([
      settings.pollIntervalMs,
      settings.sweepIntervalMs,
      settings.downloadConcurrency,
      settings.queryWorkers,
    ]).toEqual([1, 1, 1, 1]);
    expect(settings.adminToken).toBe('from-env');
  });

  it('refuses a missing store and a user without a password', async () => {
    const missing = await loadConfig({ argv: [], env: {} });
    await expect(replicaSettings(missing)).rejects.toThrow(/replication\.object\.store/);
    const half = await loadConfig({
      argv: [`--replication.object.store=fs::root=${path.join(dir, 'store-d')};`, '--http.user=u'],
      env: {},
    });
    await expect(replicaSettings(half)).rejects.toThrow(/http\.user and http\.password/);
  });
});

describe('walship replica', () => {
  it('--help prints the usage and exits 0', async () => {
    const { io, out, err } = capture();
    expect(await main(['replica', '--help'], io)).toBe(EXIT.ok);
    expect(out).toEqual([REPLICA_USAGE]);
    expect(REPLICA_USAGE).toContain('walship replica');
    expect(err).toEqual([]);
  });

  it('bad configuration is a usage error (exit 2) naming the key, and starts nothing', async () => {
    const noStore = capture();
    expect(
      await main(['replica', `--node.data.dir=${path.join(dir, 'never')}`, '--log.level=silent'], noStore.io),
    ).toBe(EXIT.usage);
    expect(noStore.err.join('\n')).toContain('replication.object.store');
    expect(existsSync(path.join(dir, 'never'))).toBe(false);
    const bogus = capture();
    expect(await main(['replica', '--replication.replica.poll.intervall=20ms'], bogus.io)).toBe(EXIT.usage);
    expect(bogus.err.join('\n')).toContain('unknown flag --replication.replica.poll.intervall');
    const badValue = capture();
    expect(await main(['replica', '--replication.replica.poll.interval=soon'], badValue.io)).toBe(EXIT.usage);
    expect(badValue.err.join('\n')).toContain('replication.replica.poll.interval');
  });

  it('the top-level help lists the replica and admin commands', async () => {
    const { io, out } = capture();
    expect(await main(['help'], io)).toBe(EXIT.ok);
    expect(out.join('\n')).toMatch(/replica\s+run a replica node/);
    expect(out.join('\n')).toMatch(/admin\s+ask a running node to act/);
  });
});
