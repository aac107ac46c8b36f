/**
 * Several primaries (RFC-0003) on the filesystem store and Ceph RGW: two and three writers behind
 * one sequencer service (SQLite over HTTP, in this process) write the same tables at once, beside
 * a replica that reaches only the store (it follows `txnlog/`). Every node must end with the same
 * rows in the same apply order, every acknowledged row exactly once, and per table the txn
 * numbers the writers acknowledged must all be distinct.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/index.js';
import { type NodeSettings, WalshipNode } from '../node/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { startSequencerServer } from '../sequencer/http-service.js';
import type { SequencedWriterFaults } from '../sequencer/index.js';
import { openHttpSequencer, type SequencerStore, SqliteSequencerStore } from '../sequencer/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { execText, tableChecksum } from './helpers/table-checksum.js';
import { testNodeSettings } from './helpers/test-node.js';
import { getJson } from './helpers/test-primary.js';
import { postAdmin } from './helpers/test-replica.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const log = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });
const TABLES = ['trades', 'quotes'] as const;
const REQUESTS_PER_WRITER = 15;
const ROWS_PER_TABLE = 8;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-seq-cluster-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'seqcluster');
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** A sequencer service on a free port, its SQLite file under `dir`, and a client per caller. */
async function startSequencer(dir: string) {
  const sqlite = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer.sqlite') });
  const server = await startSequencerServer(sqlite, {
    listen: { host: '127.0.0.1', port: 0 },
    auth: {},
    log,
  });
  const clients: SequencerStore[] = [];
  return {
    client: async () => {
      const client = await openHttpSequencer(`http::addr=127.0.0.1:${server.port};`);
      clients.push(client);
      return client;
    },
    close: async () => {
      for (const client of clients) await client.close();
      await server.close();
      await sqlite.close();
    },
  };
}

function sequencedSettings(
  store: ObjectStore,
  dataDir: string,
  sequencer: SequencerStore | undefined,
  nodeId: string,
  writerFaults?: SequencedWriterFaults,
): NodeSettings {
  const settings = testNodeSettings(store, dataDir, {
    primary: { ackMode: 'durable', windowMs: 20, nodeId },
    replica: { pollIntervalMs: 30, nodeId },
  });
  return {
    ...settings,
    sequenced: { sequencer, exportGraceMs: 200, ...(writerFaults === undefined ? {} : { writerFaults }) },
  };
}

const deps = () => ({ clock: systemClock, random: seededRandom(11), log });

interface ClusterRun {
  dir: string;
  store: ObjectStore;
  /** The sequencer's admin client (it ran `initSequencedCluster`). */
  admin: SequencerStore;
  sequencer: Awaited<ReturnType<typeof startSequencer>>;
  /** WalshipNode.start, the node closed at the end of the run (closing twice is harmless). */
  startNode: (role: 'primary' | 'replica', settings: NodeSettings) => Promise<WalshipNode>;
}

/** A fresh store root bound to a fresh sequencer service; everything started is closed after `body`. */
async function withCluster(
  makeStore: () => { open(): Promise<ObjectStore> },
  name: string,
  body: (run: ClusterRun) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(path.join(base, `${name}-`));
  const store = await makeStore().open();
  const sequencer = await startSequencer(dir);
  const started: WalshipNode[] = [];
  try {
    const admin = await sequencer.client();
    await initSequencedCluster({ store, sequencer: admin, clock: systemClock });
    const startNode = async (role: 'primary' | 'replica', settings: NodeSettings) => {
      const node = await WalshipNode.start(role, settings, deps());
      started.push(node);
      return node;
    };
    await body({ dir, store, admin, sequencer, startNode });
  } finally {
    for (const node of started.reverse()) await node.close();
    await sequencer.close();
    await store.close();
  }
}

/** One ILP request to `port`: ROWS_PER_TABLE rows per table, ids `<writer>-<request>-<row>`; its txn header. */
async function writeRequest(port: number, writer: string, request: number): Promise<string> {
  const response = await postRequest(port, writer, request);
  expect(response.status, await response.clone().text()).toBe(204);
  return response.headers.get('x-walship-txn') ?? '';
}

async function postRequest(port: number, writer: string, request: number): Promise<Response> {
  const lines: string[] = [];
  for (const table of TABLES)
    for (let row = 0; row < ROWS_PER_TABLE; row++) {
      const ts = 1_700_000_000_000_000_000n + BigInt(request * 1000 + row);
      lines.push(`${table},writer=${writer} id="${writer}-${request}-${row}",price=${row}.25 ${ts}`);
    }
  return fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body: `${lines.join('\n')}\n` });
}

async function appliedOf(node: WalshipNode): Promise<Map<string, bigint>> {
  const { body } = await getJson(node.httpPort, '/status');
  const tables = (body as { tables?: { name: string; appliedTxn?: string }[] }).tables ?? [];
  return new Map(tables.map((t) => [t.name, BigInt(t.appliedTxn ?? '0')]));
}

async function waitCaughtUp(node: WalshipNode, heads: Map<string, bigint>): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const applied = await appliedOf(node);
    if ([...heads].every(([table, txn]) => (applied.get(table) ?? 0n) >= txn)) return;
    if (Date.now() > deadline) {
      const { body } = await getJson(node.httpPort, '/status');
      throw new Error(`node ${node.nodeId} did not catch up: ${JSON.stringify(body)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe.each(storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'seqcluster' }))(
  'several primaries on %s',
  (_name, skipReason, makeStore) => {
    it.skipIf(skipReason !== null).each([2, 3])(
      '%i primaries and a store-only replica writing the same tables end identical, in one txn order',
      async (writerCount) => {
        await withCluster(
          makeStore,
          `run-${writerCount}`,
          async ({ dir, store, admin, sequencer, startNode }) => {
            const nodes: WalshipNode[] = [];
            for (let i = 0; i < writerCount; i++) {
              const settings = sequencedSettings(
                store,
                path.join(dir, `p${i}`),
                await sequencer.client(),
                `p${i}`,
              );
              nodes.push(await startNode('primary', settings));
            }
            const replica = await startNode('replica', {
              ...testNodeSettings(store, path.join(dir, 'r'), {
                replica: { pollIntervalMs: 30, nodeId: 'r' },
              }),
            });
            nodes.push(replica);
            expect(nodes.slice(0, writerCount).map((n) => n.role)).toEqual(
              Array(writerCount).fill('primary'),
            );
            expect(replica.role).toBe('replica');

            // Every writer writes at once; each request waits for its sequencer numbers (durable).
            const tokens = await Promise.all(
              nodes.slice(0, writerCount).map(async (node, w) => {
                const headers: string[] = [];
                for (let request = 0; request < REQUESTS_PER_WRITER; request++)
                  headers.push(await writeRequest(node.httpPort, `p${w}`, request));
                return headers;
              }),
            );
            // Per table, the txns the writers were told are all distinct and within the heads.
            const heads = (await admin.heads()).tables;
            const told = new Map<string, bigint[]>();
            for (const header of tokens.flat())
              for (const part of header.split(',')) {
                const [key, txn] = part.split('=');
                told.set(key!, [...(told.get(key!) ?? []), BigInt(txn!)]);
              }
            for (const table of TABLES) {
              const txns = told.get(table) ?? [];
              expect(txns).toHaveLength(writerCount * REQUESTS_PER_WRITER);
              expect(new Set(txns).size).toBe(txns.length);
              expect(heads.get(table)).toBe(BigInt(writerCount * REQUESTS_PER_WRITER));
            }

            const expectedHeads = new Map(TABLES.map((t) => [t, heads.get(t)!]));
            for (const node of nodes) await waitCaughtUp(node, expectedHeads);
            for (const table of TABLES) {
              const sums = await Promise.all(nodes.map((node) => tableChecksum(node.httpPort, table)));
              for (const sum of sums.slice(1)) expect(sum).toEqual(sums[0]);
              expect(sums[0]!.rowCount).toBe(writerCount * REQUESTS_PER_WRITER * ROWS_PER_TABLE);
              // The same apply order everywhere: rows in insertion (rowid) order.
              const orders = await Promise.all(
                nodes.map((node) => execText(node.httpPort, `SELECT id FROM ${table} ORDER BY rowid`)),
              );
              for (const order of orders.slice(1)) expect(order).toBe(orders[0]);
              const ids = JSON.parse(orders[0]!) as { dataset: string[][] };
              expect(new Set(ids.dataset.map((r) => r[0])).size).toBe(ids.dataset.length);
            }
          },
        );
      },
      90_000,
    );

    it.skipIf(skipReason !== null)(
      'writers crashed between upload and commit and between commit and ack restart without a gap or a duplicate; the other writer never stops',
      async () => {
        await withCluster(makeStore, 'crash', async ({ dir, store, admin, sequencer, startNode }) => {
          const nodes = new Map<string, WalshipNode>();
          // p0 "dies" after its first upload (before the commit), p1 after its first commit (before the ack).
          const crash = (point: string) => {
            let crashed = false;
            return async () => {
              if (crashed) return;
              crashed = true;
              throw new Error(`simulated crash ${point}`);
            };
          };
          const start = async (id: string, faults?: SequencedWriterFaults) =>
            startNode(
              'primary',
              sequencedSettings(store, path.join(dir, id), await sequencer.client(), id, faults),
            );
          nodes.set('p0', await start('p0', { afterUpload: crash('after upload') }));
          nodes.set('p1', await start('p1', { afterCommit: crash('after commit') }));
          nodes.set('p2', await start('p2'));
          // The crashed requests are not acknowledged: the client sees an error, not a 204.
          expect((await postRequest(nodes.get('p0')!.httpPort, 'p0', 0)).status).not.toBe(204);
          expect((await postRequest(nodes.get('p1')!.httpPort, 'p1', 0)).status).not.toBe(204);
          // p2 goes on meanwhile.
          for (let request = 0; request < 5; request++)
            await writeRequest(nodes.get('p2')!.httpPort, 'p2', request);
          // Both crashed writers restart on their data dirs: the queued batch is sent again.
          for (const id of ['p0', 'p1']) {
            await nodes.get(id)!.close();
            nodes.set(id, await start(id));
          }
          for (const id of ['p0', 'p1'])
            for (let request = 1; request < 4; request++)
              await writeRequest(nodes.get(id)!.httpPort, id, request);
          nodes.set(
            'r',
            await startNode(
              'replica',
              testNodeSettings(store, path.join(dir, 'r'), { replica: { pollIntervalMs: 30, nodeId: 'r' } }),
            ),
          );
          const heads = (await admin.heads()).tables;
          // 4 requests each of p0 and p1 (the crashed one included: it was queued, so it lands once), 5 of p2.
          for (const table of TABLES) expect(heads.get(table)).toBe(13n);
          for (const table of TABLES) {
            const log = await admin.readLog(table, 1n, 1000);
            const batches = log.map((e) => `${e.writer}/${e.writerEpoch}/${e.batchSeq}`);
            expect(new Set(batches).size).toBe(batches.length);
            expect(log.map((e) => e.txnFirst)).toEqual(
              log.map((_e, i) => (i === 0 ? 1n : log[i - 1]!.txnLast + 1n)),
            );
          }
          for (const node of nodes.values()) await waitCaughtUp(node, new Map(TABLES.map((t) => [t, 13n])));
          for (const table of TABLES) {
            const sums = await Promise.all(
              [...nodes.values()].map((node) => tableChecksum(node.httpPort, table)),
            );
            for (const sum of sums.slice(1)) expect(sum).toEqual(sums[0]);
            const ids = JSON.parse(
              await execText(nodes.get('r')!.httpPort, `SELECT id FROM ${table} ORDER BY id`),
            ) as { dataset: string[][] };
            const expected: string[] = [];
            for (const [writer, requests] of [
              ['p0', 4],
              ['p1', 4],
              ['p2', 5],
            ] as const)
              for (let request = 0; request < requests; request++)
                for (let row = 0; row < ROWS_PER_TABLE; row++) expected.push(`${writer}-${request}-${row}`);
            expect(ids.dataset.map((r) => r[0])).toEqual(expected.sort());
          }
        });
      },
      90_000,
    );

    it.skipIf(skipReason !== null)(
      'a fenced writer: its next commit is rejected (421), nothing of its epoch follows the fence, the other writer goes on',
      async () => {
        await withCluster(makeStore, 'fence', async ({ dir, store, admin, sequencer, startNode }) => {
          const nodes: WalshipNode[] = [];
          for (const id of ['p0', 'p1'])
            nodes.push(
              await startNode(
                'primary',
                sequencedSettings(store, path.join(dir, id), await sequencer.client(), id),
              ),
            );
          const [p0, p1] = nodes as [WalshipNode, WalshipNode];
          await writeRequest(p0.httpPort, 'p0', 0);
          await writeRequest(p1.httpPort, 'p1', 0);
          const epoch = (await admin.writers()).find((w) => w.writer === 'p0')!.epoch;
          const { heads } = await admin.fence('p0', epoch);
          const refused = await postRequest(p0.httpPort, 'p0', 1);
          expect(refused.status, await refused.clone().text()).toBe(421);
          expect((await postRequest(p0.httpPort, 'p0', 2)).status).toBe(421);
          await writeRequest(p1.httpPort, 'p1', 1);
          for (const table of TABLES) {
            const log = await admin.readLog(table, 1n, 1000);
            const late = log.filter(
              (e) => e.writer === 'p0' && e.writerEpoch === epoch && e.txnFirst > heads.tables.get(table)!,
            );
            expect(late).toEqual([]);
            expect(log.map((e) => e.writer)).toEqual(['p0', 'p1', 'p1']);
          }
          await waitCaughtUp(p1, new Map(TABLES.map((t) => [t, 3n])));
          const ids = JSON.parse(
            await execText(p1.httpPort, `SELECT id FROM trades WHERE writer = 'p0' ORDER BY id`),
          ) as {
            dataset: string[][];
          };
          // Only the request acknowledged before the fence: the refused ones left no row anywhere.
          expect(ids.dataset.map((r) => r[0])).toEqual(
            Array.from({ length: ROWS_PER_TABLE }, (_v, row) => `p0-0-${row}`),
          );
        });
      },
      60_000,
    );

    it.skipIf(skipReason !== null)(
      'a replica promoted into a writer takes writes at once while the other writer goes on; every node converges',
      async () => {
        await withCluster(makeStore, 'promote', async ({ dir, store, admin, sequencer, startNode }) => {
          const nodes: WalshipNode[] = [];
          const p0 = await startNode(
            'primary',
            sequencedSettings(store, path.join(dir, 'p0'), await sequencer.client(), 'p0'),
          );
          nodes.push(p0);
          // A replica given the sequencer follows it (not txnlog/), and may become a writer.
          const r = await startNode(
            'replica',
            sequencedSettings(store, path.join(dir, 'r'), await sequencer.client(), 'r'),
          );
          nodes.push(r);
          for (let request = 0; request < 3; request++) await writeRequest(p0.httpPort, 'p0', request);
          expect((await postRequest(r.httpPort, 'r', 0)).status).toBe(421);
          const promoted = await postAdmin(r.httpPort, 'promote');
          expect(promoted.status, JSON.stringify(promoted.body)).toBe(200);
          expect(r.role).toBe('primary');
          expect((await admin.writers()).map((w) => w.writer).sort()).toEqual(['p0', 'r']);
          // Both write at once now.
          await Promise.all([
            (async () => {
              for (let request = 3; request < 6; request++) await writeRequest(p0.httpPort, 'p0', request);
            })(),
            (async () => {
              for (let request = 0; request < 3; request++) await writeRequest(r.httpPort, 'r', request);
            })(),
          ]);
          const heads = new Map(TABLES.map((t) => [t, 9n]));
          for (const table of TABLES) expect((await admin.heads()).tables.get(table)).toBe(9n);
          for (const node of nodes) await waitCaughtUp(node, heads);
          for (const table of TABLES) {
            const [a, b] = await Promise.all(nodes.map((node) => tableChecksum(node.httpPort, table)));
            expect(b).toEqual(a);
            expect(a!.rowCount).toBe(9 * ROWS_PER_TABLE);
          }
        });
      },
      60_000,
    );
  },
);
