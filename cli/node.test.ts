/**
 * `walship primary` as a child process at debug level, given every kind of secret (admin token,
 * HTTP bearer token, Basic password, the S3 secret key) and requests that carry them: no secret
 * may appear anywhere in its output, and every log line names the node (nodeId, role, epoch).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { Clock } from '../core/index.js';
import { createTestBucket, deleteTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { spawnWalship, type WalshipProcess } from '../tests/helpers/walship-process.js';
import { followStartOperations, nodeLogger } from './node.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const processes: WalshipProcess[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-node-logs-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'node-logs');
});
afterEach(async () => {
  for (const child of processes) child.kill('SIGKILL');
  await Promise.all(processes.splice(0).map((child) => child.exited));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
  if (s3.env !== null) await deleteTestBucket(s3.env, bucket).catch(() => {});
});

const stores: [string, string | null, () => { connection: string; storeSecret: string | null }][] = [
  [
    'fs',
    null,
    () => ({ connection: `fs::root=${path.join(base, `store-${randomUUID()}`)};`, storeSecret: null }),
  ],
  [
    's3 (Ceph RGW)',
    s3.skipReason,
    () => {
      const env = s3.env!;
      return {
        connection:
          `s3::bucket=${bucket};root=logs-${randomUUID()};region=${env.region};endpoint=${env.endpoint};` +
          `access_key_id=${env.accessKeyId};secret_access_key=${env.secretAccessKey};`,
        storeSecret: env.secretAccessKey,
      };
    },
  ],
];

describe.each(stores)('walship primary on %s', (_name, skipReason, storeOf) => {
  test.skipIf(skipReason !== null)(
    'logs no secret at debug level and names the node on every line',
    async () => {
      const { connection, storeSecret } = storeOf();
      const adminToken = `admin-${randomUUID()}`;
      const bearer = `bearer-${randomUUID()}`;
      const password = `password-${randomUUID()}`;
      const child = spawnWalship([
        'primary',
        `--replication.object.store=${connection}`,
        `--node.data.dir=${path.join(base, `node-${randomUUID()}`)}`,
        '--http.bind.to=127.0.0.1:0',
        '--line.tcp.enabled=false',
        `--admin.token=${adminToken}`,
        `--http.auth.token=${bearer}`,
        '--http.user=ops',
        `--http.password=${password}`,
        '--log.level=debug',
      ]);
      processes.push(child);
      const port = Number((await child.waitFor(/walship primary \S+ listening: http (\d+)/, 60_000))[1]);
      const url = (route: string) => `http://127.0.0.1:${port}${route}`;
      const auth = { authorization: `Bearer ${bearer}` };
      const basic = { authorization: `Basic ${Buffer.from(`ops:${password}`).toString('base64')}` };

      expect(
        (await fetch(url('/write'), { method: 'POST', headers: auth, body: 'logs,s=a x=1i\n' })).status,
      ).toBe(204);
      expect(
        (await fetch(url('/write'), { method: 'POST', headers: basic, body: 'logs,s=b x=2i\n' })).status,
      ).toBe(204);
      expect((await fetch(url('/write'), { method: 'POST', body: 'logs,s=c x=3i\n' })).status).toBe(401);
      expect((await fetch(url('/exec?query=select%20count()%20from%20logs'), { headers: auth })).status).toBe(
        200,
      );
      const metrics = await fetch(url('/metrics'), { headers: basic });
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^walship_table_committed_txn\{table="logs"\} 2$/m);
      expect((await fetch(url('/metrics'))).status).toBe(401);
      // An admin action that fails (no such action) with the right token, and one with a wrong token.
      await fetch(url('/admin/no-such-action'), {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}` },
      });
      await fetch(url('/admin/demote'), { method: 'POST', headers: { authorization: 'Bearer wrong' } });

      child.kill('SIGTERM');
      expect((await child.exited).code).toBe(0);
      const output = child.output();
      for (const secret of [adminToken, bearer, password, storeSecret]) {
        if (secret !== null) expect(output.includes(secret), 'a secret in the output').toBe(false);
      }
      const lines = output.split('\n').filter((line) => line.startsWith('{'));
      expect(lines.length).toBeGreaterThan(2);
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        expect(entry, line).toHaveProperty('nodeId');
        expect(entry, line).toHaveProperty('role');
        expect(entry, line).toHaveProperty('epoch');
      }
      expect(lines.some((line) => line.includes('"msg":"shutting down"'))).toBe(true);
    },
  );
});

test('the node logger redacts secrets at every path they are known to sit under', () => {
  const lines: string[] = [];
  const log = nodeLogger('debug', { write: (line: string) => void lines.push(line) });
  const secrets = Array.from({ length: 12 }, (_, i) => `secret-${i}-${randomUUID()}`);
  log.info({
    authorization: secrets[0],
    req: { headers: { authorization: secrets[1], cookie: secrets[2] } },
    'admin.token': secrets[3],
    config: { 'http.password': secrets[4], 'http.auth.token': secrets[5] },
    settings: { adminToken: secrets[6], httpAuth: { bearer: [secrets[7]] } },
    s3: { secret_access_key: secrets[8], secretAccessKey: secrets[9], session_token: secrets[10] },
    password: secrets[11],
  });
  expect(lines).toHaveLength(1);
  for (const secret of secrets) expect(lines[0]).not.toContain(secret);
  expect(lines[0]).toContain('****');
  // What is not secret stays readable.
  log.info({ table: 'trades', key: 'tables/trades/wal/1.seg' });
  expect(lines[1]).toContain('tables/trades/wal/1.seg');
});

test("a starting replica's bootstrap shows its progress on a terminal's stderr until it has started", async () => {
  let nowMs = 0;
  const timers: { atMs: number; run: () => void; cancelled: boolean }[] = [];
  const clock: Clock = {
    wallMs: () => nowMs,
    monotonicMs: () => nowMs,
    sleep: () => Promise.reject(new Error('not used')),
    setTimer(durationMs, run) {
      const timer = { atMs: nowMs + durationMs, run, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
  };
  const advanceTo = async (endMs: number) => {
    for (;;) {
      const due = timers.filter((t) => !t.cancelled && t.atMs <= endMs).sort((a, b) => a.atMs - b.atMs)[0];
      if (due === undefined) break;
      due.cancelled = true;
      nowMs = due.atMs;
      due.run();
      await Promise.resolve();
    }
    nowMs = endMs;
  };
  // A snapshot of 100 MB downloads at 10 MB/s; the node has started once it is restored.
  let operation: Record<string, unknown> | null = null;
  let started = () => {};
  const node = {
    started: new Promise<void>((resolve) => {
      started = resolve;
    }),
    status: () => ({ operation }),
  };
  const err: string[] = [];
  const io = { stdout: () => {}, stderr: (t: string) => err.push(t), env: {} };
  const quiet = followStartOperations(node, 'walship replica', io, { terminal: false, clock });
  const following = followStartOperations(node, 'walship replica', io, { terminal: true, clock });
  for (let second = 0; second <= 10; second++) {
    operation = {
      name: 'bootstrap',
      phase: 'download snapshot s-1',
      done: second * 10_000_000,
      total: 100_000_000,
      unit: 'bytes',
      startedAgoMs: second * 1000,
    };
    await advanceTo(second * 1000);
  }
  operation = null;
  started();
  await advanceTo(12_000);
  const pending = timers.filter((t) => !t.cancelled).length;
  following.stop();
  quiet.stop();
  expect(err).toEqual([
    expect.stringMatching(
      /^walship replica: bootstrap \(download snapshot s-1\) {2}\[#+-+\] {2}50% {2}47\.7\/95\.4 MiB {2}ETA 5 s · 5 s$/,
    ),
    expect.stringMatching(/^walship replica: bootstrap \(download snapshot s-1\) {2}\[#+\] 100% .* · 10 s$/),
    expect.stringMatching(/^walship replica: bootstrap .* 100% .*; done · 10 s$/),
  ]);
  expect(pending).toBe(0);
});
