/**
 * Retention of rows (issue 19 item 5, RFC-0007 "Retention of rows"), every node a real `walship`
 * child process on the filesystem store and on Ceph RGW: a TTL set with QuestDB's `ALTER TABLE …
 * SET TTL` and a `DROP TABLE`, both through the primary's admin route, are applied on every node,
 * survive a switchover (the promoted node goes on trimming by the TTL it applied) and show in the
 * store audit. Rows are written by the official QuestDB client.
 *
 * The waits are deadlines, never performance checks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { switchoverCommand } from '../cli/failover-commands.js';
import { LocalCluster } from '../cli/local-cluster.js';
import { execText, postAdmin, sleep, statusOf } from '../cli/node-http.js';
import { auditStore } from '../maintenance/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';

const TOKEN = 'retention-token';
const WAIT_MS = 60_000;
const DAY_US = 86_400_000_000n;
/** Rows are of days long past, so the newest row, not the wall clock, is the TTL's reference. */
const DAY0_US = 1_767_225_600_000_000n; // 2026-01-01T00:00:00Z

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-retention-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'retention');
});
afterAll(() => rm(base, { recursive: true, force: true }));

const STORES = storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'retention' });

/** Rows at noon of each of `days` (days after DAY0), `perDay` each, by QuestDB's own client. */
async function writeDays(url: string, table: string, days: number[], perDay: number, extra?: string) {
  const sender = await Sender.fromConfig(`http::addr=${new URL(url).host};protocol_version=1;`);
  for (const day of days)
    for (let i = 0; i < perDay; i++) {
      const row = sender
        .table(table)
        .symbol('host', `h${i % 3}`)
        .intColumn('day', day);
      if (extra !== undefined) row.stringColumn(extra, 'x');
      await row.at(DAY0_US + BigInt(day) * DAY_US + DAY_US / 2n + BigInt(i), 'us');
    }
  await sender.flush();
  await sender.close();
}

async function sql(url: string, text: string): Promise<unknown[][] | null> {
  const body = await execText(url, text);
  return body === null ? null : (JSON.parse(body) as { dataset: unknown[][] }).dataset;
}

async function admin(url: string, statement: string): Promise<Record<string, unknown>> {
  const answer = await postAdmin(url, `/admin/sql?${new URLSearchParams({ query: statement })}`, TOKEN);
  expect(answer.ok, `${statement}: ${JSON.stringify(answer.body)}`).toBe(true);
  return answer.body as Record<string, unknown>;
}

/** Polls `probe` on every node until it gives `expected` everywhere (or the deadline passes). */
async function onEveryNode(urls: string[], probe: (url: string) => Promise<unknown>, expected: unknown) {
  const deadline = performance.now() + WAIT_MS;
  let seen: unknown[] = [];
  while (performance.now() < deadline) {
    seen = await Promise.all(urls.map(probe));
    if (seen.every((value) => JSON.stringify(value) === JSON.stringify(expected))) return;
    await sleep(50);
  }
  expect(seen, `every node: ${urls.join(', ')}`).toEqual(urls.map(() => expected));
}

const days = (url: string) => sql(url, 'SELECT min(day), max(day), count(*) FROM metrics');

describe.each(STORES)('TTL and DROP TABLE on %s', (_storeName, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    'are applied on every node, survive a switchover and show in the store audit',
    async () => {
      const under = makeStore();
      const cluster = await LocalCluster.start({
        dir: await mkdtemp(path.join(base, 'cluster-')),
        store: under.connectionString,
        ack: 'durable',
        replicas: 1,
        adminToken: TOKEN,
        settings: ['--replication.primary.ttl.check.interval=200ms'],
      });
      try {
        const [first, second] = cluster.urls as [string, string];
        await writeDays(first, 'metrics', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5);
        await writeDays(first, 'scratch', [0], 4);
        await onEveryNode(cluster.urls, days, [[0, 9, 50]]);

        // Newest row: day 9 noon. 3 days before is day 6 noon: days 0..5 have ended before it.
        const set = await admin(first, 'ALTER TABLE metrics SET TTL 3 DAYS');
        expect(set).toMatchObject({ table: 'metrics', ttl: '3 DAYS' });
        expect(set.trimmed).toEqual([{ beforeUs: String(DAY0_US + 6n * DAY_US), txn: expect.any(String) }]);
        await onEveryNode(cluster.urls, days, [[6, 9, 20]]);

        expect(await admin(first, 'DROP TABLE scratch')).toMatchObject({ dropped: true });
        expect(await admin(first, 'DROP TABLE IF EXISTS scratch')).toEqual({
          table: 'scratch',
          dropped: false,
        });
        await onEveryNode(cluster.urls, (url) => sql(url, 'SELECT count(*) FROM scratch'), null);

        const out: string[] = [];
        const err: string[] = [];
        const code = await switchoverCommand(
          ['--from', first, '--to', second, '--timeout', '30s', `--admin.token=${TOKEN}`],
          { stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} },
        );
        expect(code, err.join('; ')).toBe(0);
        const promoted = await statusOf(second);
        const tables = (promoted as unknown as { tables: Record<string, unknown>[] }).tables;
        expect(tables.find((t) => t.name === 'metrics')).toMatchObject({ ttl: '3 DAYS' });
        expect(tables.find((t) => t.name === 'scratch')).toMatchObject({ dropped: true });

        // Two days more on the new primary: its own TTL check trims days 6 and 7, on both nodes.
        await writeDays(second, 'metrics', [10, 11], 5);
        await onEveryNode(cluster.urls, days, [[8, 11, 20]]);

        // The dropped table comes back new, with only its new columns.
        await writeDays(second, 'scratch', [20], 2, 'note');
        await onEveryNode(cluster.urls, (url) => sql(url, 'SELECT count(*), min(note) FROM scratch'), [
          [2, 'x'],
        ]);

        const store = await under.open();
        try {
          const audit = await auditStore(store);
          expect(audit.ok, JSON.stringify(audit.findings)).toBe(true);
          const byName = new Map(audit.tables.map((t) => [t.name, t]));
          expect(byName.get('metrics')?.changes).toEqual({
            ttl: '3 DAYS',
            trims: 2,
            trimmedBefore: '2026-01-09T00:00:00.000000Z',
            drops: [],
            upsertKeyChanges: 0,
          });
          expect(byName.get('scratch')?.changes.drops).toHaveLength(1);
        } finally {
          await store.close();
        }
      } finally {
        await cluster.stop({ keep: false });
      }
    },
    180_000,
  );
});
