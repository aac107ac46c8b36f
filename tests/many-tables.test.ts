/**
 * Issue 15 item 4: 10 000 tables work, on the filesystem store and on Ceph RGW (`npm run soak`, which
 * sets WALSHIP_SOAK=1: ~4 min on fs; the suite runs the same test at 1 000 tables). A primary creates
 * them (one ILP request of one row per table, then a second request to each), a replica on an
 * empty data dir follows them all, and once idle a poll costs one request whatever the number of
 * tables: every request the replica sends is counted, and its idle polls hold head.json's 304 alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEAD_KEY, parseHeadHint } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { FOLLOWER_LIMITS } from '../replica/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { startTestPrimary } from './helpers/test-primary.js';
import { startTestReplica } from './helpers/test-replica.js';

const TABLES = process.env.WALSHIP_SOAK === '1' ? 10_000 : 1_000;
const BASE_NS = 1_700_000_000_000_000_000n;
const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-many-tables-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'manytables');
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** Every request `store` is asked for. */
function counting(store: ObjectStore) {
  const seen: { operation: string; key: string }[] = [];
  const note = (operation: string, key: string) => seen.push({ operation, key });
  const wrapped: ObjectStore = {
    description: store.description,
    put(key, body, options) {
      note('put', key);
      return store.put(key, body, options);
    },
    get(key, options) {
      note('get', key);
      return store.get(key, options);
    },
    head(key) {
      note('head', key);
      return store.head(key);
    },
    list(prefix, options) {
      note('list', prefix);
      return store.list(prefix, options);
    },
    delete(key) {
      note('delete', key);
      return store.delete(key);
    },
    deleteMany(keys) {
      note('deleteMany', keys[0] ?? '');
      return store.deleteMany(keys);
    },
    close: () => store.close(),
  };
  return { wrapped, seen };
}

const name = (i: number) => `m${String(i).padStart(5, '0')}`;

function body(round: number): string {
  const lines: string[] = [];
  for (let i = 0; i < TABLES; i++)
    lines.push(
      `${name(i)},host=h${i % 7} v=${round * TABLES + i}i,x=${i}.5 ${BASE_NS + BigInt(round * TABLES + i)}`,
    );
  return `${lines.join('\n')}\n`;
}

async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each(storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'manytables' }))(
  `${TABLES} tables on %s`,
  (_, skipReason, make) => {
    it.skipIf(skipReason !== null)(
      'a primary creates them, a fresh replica follows them all, and its idle poll is one request',
      async () => {
        const under = make();
        const store = await under.open();
        const primary = await startTestPrimary(store, path.join(base, `primary-${Math.random()}`), {
          maxConcurrentUploads: 16,
          headIntervalMs: 100,
        });
        let replica: Awaited<ReturnType<typeof startTestReplica>> | undefined;
        try {
          for (const round of [0, 1]) {
            const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
              method: 'POST',
              body: body(round),
            });
            expect(response.status, await response.text()).toBe(204);
          }
          // Everything uploaded: head.json names every table at txn 2.
          await waitFor(
            'every table uploaded',
            async () => {
              const got = await store.get(HEAD_KEY);
              const hint = got?.status === 'ok' ? parseHeadHint(got.body) : undefined;
              return (
                hint !== undefined &&
                hint.tables.size === TABLES &&
                [...hint.tables.values()].every((t) => t.txn === 2n)
              );
            },
            300_000,
          );

          const { wrapped, seen } = counting(store);
          replica = await startTestReplica(wrapped, path.join(base, `replica-${Math.random()}`), {
            pollIntervalMs: 50,
            sweepIntervalMs: 3_600_000,
            bootstrapFromSnapshot: false,
            downloadConcurrency: 16,
          });
          const node = replica;
          const status = () =>
            node.status() as { polls: number; tables: { name: string; appliedTxn: bigint | string }[] };
          await waitFor(
            'the replica applied every table',
            () => {
              const tables = status().tables;
              return tables.length === TABLES && tables.every((t) => BigInt(t.appliedTxn) === 2n);
            },
            600_000,
          );
          // Past the hot-table span, a window of at least 20 polls: head.json's conditional GET alone.
          await new Promise((resolve) => setTimeout(resolve, FOLLOWER_LIMITS.hotTableMs + 500));
          const pollsBefore = status().polls;
          const requestsBefore = seen.length;
          await waitFor('20 idle polls', () => status().polls >= pollsBefore + 20, 60_000);
          const window = seen.slice(requestsBefore);
          const polls = status().polls - pollsBefore;
          expect(window.filter((r) => r.key !== HEAD_KEY && !r.key.startsWith('nodes/'))).toEqual([]);
          // The poll in progress at either end may or may not have sent its GET yet.
          const heads = window.filter((r) => r.key === HEAD_KEY).length;
          expect(heads).toBeGreaterThanOrEqual(polls - 1);
          expect(heads).toBeLessThanOrEqual(polls + 1);
          // Rows: the replica serves both rows of a table created in the middle.
          const query = encodeURIComponent(`SELECT count(*) AS n FROM ${name(Math.floor(TABLES * 0.4321))}`);
          const answer = await fetch(`http://127.0.0.1:${node.httpPort}/exec?query=${query}`);
          expect(((await answer.json()) as { dataset: number[][] }).dataset).toEqual([[2]]);
        } finally {
          await replica?.close();
          await primary.close();
          await store.close();
        }
      },
      900_000,
    );
  },
);
