/**
 * Exactly once across failovers (issue 18, RFC-0011), every node a real `walship` child process on
 * the filesystem store and on Ceph RGW: writers send rows with unique ids through walship's Sender
 * (a batch identity on every request) to a three-node cluster in durable mode with automatic
 * failover, and the primary is SIGKILLed KILLS times under that load. A batch the dead primary
 * committed and uploaded but never answered is sent again by the client to the next primary, which
 * knows it from the segments it applied: at the end every acknowledged id is on every node exactly
 * once, and the nodes hold the same rows.
 *
 * The waits are deadlines, never performance checks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender as QuestDbSender } from '@questdb/nodejs-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterWriter, senderConf } from '../cli/cluster-writer.js';
import { switchoverCommand } from '../cli/failover-commands.js';
import { LocalCluster } from '../cli/local-cluster.js';
import { execText, postAdmin, readIds, sleep, statusOf, waitFor, waitForPrimary } from '../cli/node-http.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';

/** SIGKILLs of the primary per store (the issue asks for at least 20). */
const KILLS = Number(process.env.WALSHIP_EXACTLY_ONCE_KILLS ?? 20);
const TABLES = ['eo_a', 'eo_b'];
/** Rows a second over both tables: a flush every tick, so batches are in flight at every kill. */
const RATE_PER_S = 400;
const FAILOVER_WAIT_MS = 30_000;
const CATCH_UP_WAIT_MS = 60_000;

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-exactly-once-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'exactly-once');
});
afterAll(() => rm(base, { recursive: true, force: true }));

const STORES = storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'exactly-once' });

/** Whether every replica has applied every table up to the primary's committed txn. */
async function caughtUp(urls: string[], primary: string): Promise<boolean> {
  const lead = await statusOf(primary);
  if (lead === null) return false;
  const committed = new Map((lead.tables ?? []).map((t) => [t.name, t.committedTxn]));
  for (const url of urls) {
    if (url === primary) continue;
    const status = await statusOf(url);
    const applied = new Map((status?.tables ?? []).map((t) => [t.name, t.appliedTxn]));
    for (const [name, txn] of committed) if (applied.get(name) !== txn) return false;
  }
  return true;
}

describe.each(STORES)('exactly once across failovers on %s', (_storeName, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    `${KILLS} SIGKILLs of the primary under load, durable acks, batch identities: 0 lost, 0 duplicated, every node identical`,
    async () => {
      const under = makeStore();
      const cluster = await LocalCluster.start({
        dir: await mkdtemp(path.join(base, 'cluster-')),
        store: under.connectionString,
        ack: 'durable',
        replicas: 2,
        autoFailover: { leaseTimeoutMs: 1_000 },
        adminToken: 'exactly-once-token',
      });
      const started = performance.now();
      const now = () => performance.now() - started;
      const ids = { next: 1 };
      const conf = senderConf(cluster.urls, 2_000);
      const writers = TABLES.map(
        (table) => new ClusterWriter({ table, conf, ratePerS: RATE_PER_S / TABLES.length, ids, now }),
      );
      try {
        for (const writer of writers) writer.start();
        // A killed node rejoins in the background while writes resume; it is back (a candidate for
        // the next failover) before the next kill.
        const restarts: Promise<unknown>[] = [];
        for (let kill = 0; kill < KILLS; kill++) {
          await restarts[kill - 1];
          const primary = await waitForPrimary(cluster.urls, FAILOVER_WAIT_MS);
          expect(primary, `no primary before kill ${kill + 1}`).toBeDefined();
          // Let writes flow before the next kill.
          const acked = writers.reduce((n, w) => n + w.acknowledged, 0);
          await waitFor(() => writers.reduce((n, w) => n + w.acknowledged, 0) > acked, FAILOVER_WAIT_MS);
          await sleep(100 + ((kill * 137) % 400));
          cluster.signal(primary!, 'SIGKILL');
          const next = await waitForPrimary(
            cluster.urls.filter((url) => url !== primary),
            FAILOVER_WAIT_MS,
          );
          expect(next, `no primary after kill ${kill + 1}`).toBeDefined();
          restarts.push(cluster.restartAsReplica(primary!));
        }
        await Promise.all(restarts);
        // Writes resumed after the last failover; then the writers send what they hold and stop.
        const acked = writers.reduce((n, w) => n + w.acknowledged, 0);
        await waitFor(() => writers.reduce((n, w) => n + w.acknowledged, 0) > acked, FAILOVER_WAIT_MS);
        for (const writer of writers) await writer.stop();
        for (const writer of writers) {
          expect(writer.unacknowledged, `${writer.table}: ${writer.errors.join('; ')}`).toBe(0);
          expect(writer.refused, `${writer.table}: ${writer.errors.join('; ')}`).toBe(0);
        }
        const primary = (await waitForPrimary(cluster.urls, FAILOVER_WAIT_MS))!;
        expect(await waitFor2(() => caughtUp(cluster.urls, primary), CATCH_UP_WAIT_MS)).toBe(true);

        for (const writer of writers) {
          const acknowledged = writer.acks.flatMap((ack) => ack.ids).sort((a, b) => a - b);
          const onPrimary = (await readIds(primary, writer.table)).sort((a, b) => a - b);
          const doubled = onPrimary.filter((id, i) => i > 0 && onPrimary[i - 1] === id);
          expect(doubled, `${writer.table}: ids on the cluster twice`).toEqual([]);
          const held = new Set(onPrimary);
          expect(
            acknowledged.filter((id) => !held.has(id)),
            `${writer.table}: acknowledged ids lost`,
          ).toEqual([]);
          for (const url of cluster.urls) {
            const onNode = (await readIds(url, writer.table)).sort((a, b) => a - b);
            expect(onNode, `${writer.table} on ${url} differs from the primary`).toEqual(onPrimary);
          }
        }
        const sent = writers.reduce((n, w) => n + w.sent, 0);
        const batches = writers.map((w) => w.batches);
        console.log(
          `exactly once on ${_storeName}: ${KILLS} kills, ${sent} rows sent, batches ${JSON.stringify(batches)}`,
        );
        // Every batch went through the identity path: none was ignored by a node.
        for (const b of batches) expect(b.ignored).toBe(0);
      } finally {
        await Promise.all(writers.map((w) => w.stop().catch(() => {})));
        await cluster.stop({ keep: false });
      }
    },
    KILLS * 30_000 + 120_000,
  );
});

describe.each(STORES)('a deduplicated table on %s', (_storeName, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    'written twice with the same rows by the official client, across a switchover: one copy on every node',
    async () => {
      const token = 'dedup-token';
      const cluster = await LocalCluster.start({
        dir: await mkdtemp(path.join(base, 'dedup-')),
        store: makeStore().connectionString,
        ack: 'durable',
        replicas: 1,
        adminToken: token,
      });
      try {
        const [first, second] = cluster.urls as [string, string];
        /** The same 200 rows (event-time timestamps, a symbol key), by QuestDB's own client. */
        const writeRows = async (url: string, value: number) => {
          const sender = await QuestDbSender.fromConfig(
            `http::addr=${new URL(url).host};protocol_version=1;`,
          );
          for (let i = 0; i < 200; i++)
            await sender
              .table('readings')
              .symbol('sensor', `s${i % 4}`)
              .floatColumn('v', value)
              .at(1_700_000_000_000_000n + BigInt(Math.floor(i / 4)) * 1_000n, 'us');
          await sender.flush();
          await sender.close();
        };
        await writeRows(first, 1);
        const enable = await postAdmin(
          first,
          `/admin/sql?${new URLSearchParams({ query: 'ALTER TABLE readings DEDUP ENABLE UPSERT KEYS(timestamp, sensor)' })}`,
          token,
        );
        expect(enable.ok, JSON.stringify(enable.body)).toBe(true);
        // Rows from before DEDUP stay; the same rows again replace them one for one.
        await writeRows(first, 2);
        const out: string[] = [];
        const err: string[] = [];
        const code = await switchoverCommand(
          ['--from', first, '--to', second, '--timeout', '30s', `--admin.token=${token}`],
          { stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} },
        );
        expect(code, err.join('; ')).toBe(0);
        await writeRows(second, 3);
        expect(await waitFor2(() => caughtUp(cluster.urls, second), CATCH_UP_WAIT_MS)).toBe(true);
        for (const url of cluster.urls) {
          const text = await execText(
            url,
            'SELECT count(*), count(DISTINCT timestamp || sensor), min(v), max(v) FROM readings',
          );
          expect(JSON.parse(text!).dataset, `on ${url}`).toEqual([[200, 200, 3, 3]]);
        }
      } finally {
        await cluster.stop({ keep: false });
      }
    },
    180_000,
  );
});

/** waitFor with an async probe. */
async function waitFor2(done: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await done()) return true;
    await sleep(50);
  }
  return false;
}
