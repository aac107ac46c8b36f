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
import { initSequencedCluster, type NodeSettings, WalshipNode } from '../failover/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { startSequencerServer } from '../sequencer/http-service.js';
import { openHttpSequencer, type SequencerStore, SqliteSequencerStore } from '../sequencer/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { execText, tableChecksum } from './helpers/table-checksum.js';
import { testNodeSettings } from './helpers/test-node.js';
import { getJson } from './helpers/test-primary.js';

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
): NodeSettings {
  const settings = testNodeSettings(store, dataDir, {
    primary: { ackMode: 'durable', windowMs: 20, nodeId },
    replica: { pollIntervalMs: 30, nodeId },
  });
  return { ...settings, sequenced: { sequencer, exportGraceMs: 200 } };
}

const deps = () => ({ clock: systemClock, random: seededRandom(11), log });

/** One ILP request to `port`: ROWS_PER_TABLE rows per table, ids `<writer>-<request>-<row>`; its txn header. */
async function writeRequest(port: number, writer: string, request: number): Promise<string> {
  const lines: string[] = [];
  for (const table of TABLES)
    for (let row = 0; row < ROWS_PER_TABLE; row++) {
      const ts = 1_700_000_000_000_000_000n + BigInt(request * 1000 + row);
      lines.push(`${table},writer=${writer} id="${writer}-${request}-${row}",price=${row}.25 ${ts}`);
    }
  const response = await fetch(`http://127.0.0.1:${port}/write`, {
    method: 'POST',
    body: `${lines.join('\n')}\n`,
  });
  expect(response.status, await response.clone().text()).toBe(204);
  return response.headers.get('x-walship-txn') ?? '';
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
        const dir = await mkdtemp(path.join(base, `run-${writerCount}-`));
        const store = await makeStore().open();
        const sequencer = await startSequencer(dir);
        const nodes: WalshipNode[] = [];
        try {
          const admin = await sequencer.client();
          await initSequencedCluster({ store, sequencer: admin, clock: systemClock });
          for (let i = 0; i < writerCount; i++) {
            const settings = sequencedSettings(
              store,
              path.join(dir, `p${i}`),
              await sequencer.client(),
              `p${i}`,
            );
            nodes.push(await WalshipNode.start('primary', settings, deps()));
          }
          const replica = await WalshipNode.start(
            'replica',
            {
              ...testNodeSettings(store, path.join(dir, 'r'), {
                replica: { pollIntervalMs: 30, nodeId: 'r' },
              }),
            },
            deps(),
          );
          nodes.push(replica);
          expect(nodes.slice(0, writerCount).map((n) => n.role)).toEqual(Array(writerCount).fill('primary'));
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
        } finally {
          for (const node of nodes.reverse()) await node.close();
          await sequencer.close();
          await store.close();
        }
      },
      90_000,
    );
  },
);
