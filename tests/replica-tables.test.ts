/**
 * Replicas of chosen tables (issue 9 part 1) on the filesystem store and Ceph RGW: a replica
 * restricted to `trades` beside a primary writing `trades` and `quotes` applies `trades` only and
 * never sends a request under `tables/quotes/` (a counting store sees every request); `/status`
 * and `/settings` say what it serves; `POST /admin/tables` adds `quotes` (also after WAL retention
 * removed its first segments: bootstrapped from a snapshot) and drops `trades`, and the lists
 * survive a restart. A replica of a sequenced cluster with a filter applies only its table.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom, systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/index.js';
import { segmentPrefix, txnFirstOfSegmentKey } from '../layout/index.js';
import { type NodeSettings, WalshipNode } from '../node/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { type ReplicaNode, type ReplicaSettings, TableFilter } from '../replica/index.js';
import { startSequencerServer } from '../sequencer/http-service.js';
import { openHttpSequencer, type SequencerStore, SqliteSequencerStore } from '../sequencer/index.js';
import { tableKey } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { tableChecksum } from './helpers/table-checksum.js';
import { testNodeSettings } from './helpers/test-node.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { startTestReplica, TEST_ADMIN_TOKEN } from './helpers/test-replica.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const log = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-replica-tables-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'replicatables');
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** One store request as the counting store saw it: the key, or a LIST's prefix and start-after. */
interface SeenRequest {
  operation: string;
  key: string;
  startAfter?: string;
}

/** `store` with every request recorded in `seen` (results unchanged). */
function counting(store: ObjectStore, seen: SeenRequest[]): ObjectStore {
  return {
    description: store.description,
    put: (key, body, options) => {
      seen.push({ operation: 'put', key });
      return store.put(key, body, options);
    },
    get: (key, options) => {
      seen.push({ operation: 'get', key });
      return store.get(key, options);
    },
    head: (key) => {
      seen.push({ operation: 'head', key });
      return store.head(key);
    },
    list: (prefix, options) => {
      seen.push({
        operation: 'list',
        key: prefix,
        ...(options?.startAfter === undefined ? {} : { startAfter: options.startAfter }),
      });
      return store.list(prefix, options);
    },
    delete: (key) => {
      seen.push({ operation: 'delete', key });
      return store.delete(key);
    },
    deleteMany: (keys) => {
      for (const key of keys) seen.push({ operation: 'delete', key });
      return store.deleteMany(keys);
    },
    close: () => store.close(),
  };
}

/** The requests that name a key under `tables/<table>/` (as key, prefix or start-after). */
function requestsUnder(seen: readonly SeenRequest[], table: string): SeenRequest[] {
  const prefix = `tables/${table}/`;
  return seen.filter((r) => r.key.startsWith(prefix) || (r.startAfter ?? '').startsWith(prefix));
}

let row = 0;
/** One ILP request with `rows` rows of each of `tables`; the txn of each table it committed. */
async function write(port: number, tables: readonly string[], rows = 5): Promise<Map<string, bigint>> {
  const lines: string[] = [];
  for (const table of tables)
    for (let i = 0; i < rows; i++, row++)
      lines.push(
        `${table},sym=S${row % 5} price=${row}.25,n=${row}i ${1_700_000_000_000_000_000n + BigInt(row)}`,
      );
  const response = await fetch(`http://127.0.0.1:${port}/write`, {
    method: 'POST',
    body: `${lines.join('\n')}\n`,
  });
  expect(response.status, await response.clone().text()).toBe(204);
  const txns = new Map<string, bigint>();
  for (const part of (response.headers.get('x-walship-txn') ?? '').split(',')) {
    const [key, txn] = part.split('@')[0]!.split('=');
    if (key !== undefined && txn !== undefined) txns.set(key, BigInt(txn));
  }
  return txns;
}

interface StatusTable {
  name: string;
  appliedTxn: string;
}
interface ReplicaStatus {
  tables: StatusTable[];
  servedTables: { include: string[]; exclude: string[] };
}

async function statusOf(port: number): Promise<ReplicaStatus> {
  return (await getJson(port, '/status')).body as ReplicaStatus;
}

/** Until the node on `port` applied each table up to its txn (bounded by the test's timeout). */
async function waitApplied(port: number, txns: Map<string, bigint>): Promise<void> {
  for (;;) {
    const { tables } = await statusOf(port);
    const applied = new Map(tables.map((t) => [t.name, BigInt(t.appliedTxn)]));
    if ([...txns].every(([table, txn]) => (applied.get(table) ?? 0n) >= txn)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function postTables(port: number, query: string, body?: string) {
  const response = await fetch(`http://127.0.0.1:${port}/admin/tables${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function queryStatus(port: number, sql: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}/exec?${new URLSearchParams({ query: sql })}`);
  return { status: response.status, text: await response.text() };
}

function onlyTrades(overrides: Partial<ReplicaSettings> = {}): Partial<ReplicaSettings> {
  return { tables: TableFilter.parse('trades', undefined), sweepIntervalMs: 100, ...overrides };
}

describe.each(
  storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'replicatables' }),
)('a replica of chosen tables on %s', (name, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    'applies only trades, never asks for quotes, says so, adds quotes and drops trades at runtime',
    async () => {
      const dir = await mkdtemp(path.join(base, `runtime-${name.split(' ')[0]}-`));
      const store = await makeStore().open();
      const seen: SeenRequest[] = [];
      let primary: PrimaryNode | undefined;
      let replica: ReplicaNode | undefined;
      try {
        primary = await startTestPrimary(store, path.join(dir, 'p'));
        let heads = new Map<string, bigint>();
        for (let i = 0; i < 4; i++) heads = await write(primary.httpPort, ['trades', 'quotes']);
        replica = await startTestReplica(counting(store, seen), path.join(dir, 'r'), onlyTrades());
        await waitApplied(replica.httpPort, new Map([['trades', heads.get('trades')!]]));
        // More writes while it follows, and a few sweeps (sweepIntervalMs 100) with head.json naming quotes.
        for (let i = 0; i < 3; i++) heads = await write(primary.httpPort, ['trades', 'quotes']);
        await waitApplied(replica.httpPort, new Map([['trades', heads.get('trades')!]]));
        const sweeps = () => seen.filter((r) => r.operation === 'list' && r.key === 'tables/').length;
        const sweepsBefore = sweeps();
        while (sweeps() < sweepsBefore + 6) await new Promise((resolve) => setTimeout(resolve, 20));

        // It applied trades (every row), and never sent one request under tables/quotes/.
        expect(await tableChecksum(replica.httpPort, 'trades')).toEqual(
          await tableChecksum(primary.httpPort, 'trades'),
        );
        expect(requestsUnder(seen, 'trades').length).toBeGreaterThan(0);
        expect(requestsUnder(seen, 'quotes')).toEqual([]);
        expect(seen.some((r) => r.key === 'head.json')).toBe(true);
        const quotesRead = await queryStatus(replica.httpPort, 'SELECT count(*) FROM quotes');
        expect(quotesRead.status).toBe(400);
        expect(quotesRead.text).toMatch(/no such table: quotes/);

        // /status and /settings say what it serves; QuestDB's /settings fields are still there.
        let status = await statusOf(replica.httpPort);
        expect(status.tables.map((t) => t.name)).toEqual(['trades']);
        expect(status.servedTables).toEqual({ include: ['trades'], exclude: [] });
        const settings = (await getJson(replica.httpPort, '/settings')).body as {
          config: Record<string, unknown>;
        };
        expect(settings.config['replication.replica.tables']).toEqual({ include: ['trades'], exclude: [] });
        expect(settings.config['accepting.writes']).toEqual([]);
        expect(settings.config['line.proto.support.versions']).toEqual([1, 2, 3]);

        // The admin endpoint needs the token.
        const anonymous = await fetch(`http://127.0.0.1:${replica.httpPort}/admin/tables?add=quotes`, {
          method: 'POST',
        });
        expect(anonymous.status).toBe(401);
        expect((await statusOf(replica.httpPort)).servedTables.include).toEqual(['trades']);

        // add=quotes: it catches up quotes from txn 1.
        const added = await postTables(replica.httpPort, '?add=quotes');
        expect(added).toEqual({
          status: 200,
          body: {
            added: [{ table: 'quotes', snapshot: null }],
            dropped: [],
            servedTables: { include: ['trades', 'quotes'], exclude: [] },
          },
        });
        heads = await write(primary.httpPort, ['trades', 'quotes']);
        await waitApplied(replica.httpPort, heads);
        expect(await tableChecksum(replica.httpPort, 'quotes')).toEqual(
          await tableChecksum(primary.httpPort, 'quotes'),
        );
        expect(requestsUnder(seen, 'quotes').length).toBeGreaterThan(0);

        // drop=trades (named in the body this time): gone from /status and from the database.
        const dropped = await postTables(replica.httpPort, '', 'drop=trades');
        expect(dropped.status).toBe(200);
        expect(dropped.body.dropped).toEqual(['trades']);
        expect(dropped.body.servedTables).toEqual({ include: ['quotes'], exclude: [] });
        status = await statusOf(replica.httpPort);
        expect(status.tables.map((t) => t.name)).toEqual(['quotes']);
        const tradesRead = await queryStatus(replica.httpPort, 'SELECT count(*) FROM trades');
        expect(tradesRead.status).toBe(400);
        expect(tradesRead.text).toMatch(/no such table: trades/);

        // A restart with the same configuration keeps the lists changed at runtime.
        await replica.close();
        const seenAfterRestart = seen.length;
        replica = await startTestReplica(counting(store, seen), path.join(dir, 'r'), onlyTrades());
        heads = await write(primary.httpPort, ['trades', 'quotes']);
        await waitApplied(replica.httpPort, new Map([['quotes', heads.get('quotes')!]]));
        status = await statusOf(replica.httpPort);
        expect(status.servedTables).toEqual({ include: ['quotes'], exclude: [] });
        expect(status.tables.map((t) => t.name)).toEqual(['quotes']);
        expect(requestsUnder(seen.slice(seenAfterRestart), 'trades')).toEqual([]);
        expect(await tableChecksum(replica.httpPort, 'quotes')).toEqual(
          await tableChecksum(primary.httpPort, 'quotes'),
        );
      } finally {
        await replica?.close();
        await primary?.close();
        await store.close();
      }
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'add=quotes after WAL retention removed its first segments bootstraps it from the snapshot',
    async () => {
      const dir = await mkdtemp(path.join(base, `gc-${name.split(' ')[0]}-`));
      const store = await makeStore().open();
      const seen: SeenRequest[] = [];
      let primary: PrimaryNode | undefined;
      let full: ReplicaNode | undefined;
      let replica: ReplicaNode | undefined;
      try {
        primary = await startTestPrimary(store, path.join(dir, 'p'));
        let heads = new Map<string, bigint>();
        for (let i = 0; i < 4; i++) heads = await write(primary.httpPort, ['trades', 'quotes']);
        full = await startTestReplica(store, path.join(dir, 'full'));
        await waitApplied(full.httpPort, heads);
        const snapshot = await full.snapshot();
        const snapshotQuotes = snapshot.tables.find((t) => t.name === 'quotes')!.lastTxn;
        await full.close();
        for (let i = 0; i < 3; i++) heads = await write(primary.httpPort, ['trades', 'quotes']);
        // WAL retention: the quotes segments the snapshot covers are deleted (the chain now starts later).
        const collected: string[] = [];
        for await (const object of listAll(store, segmentPrefix(tableKey('quotes')))) {
          const txnFirst = txnFirstOfSegmentKey(object.key);
          if (txnFirst !== undefined && txnFirst <= snapshotQuotes) collected.push(object.key);
        }
        expect(collected.length).toBeGreaterThan(0);
        await store.deleteMany(collected);

        // A new replica of trades: bootstrapped from the same snapshot, it drops quotes at start.
        replica = await startTestReplica(counting(store, seen), path.join(dir, 'r'), onlyTrades());
        expect(replica.restoredSnapshot?.id).toBe(snapshot.id);
        expect((await statusOf(replica.httpPort)).tables.map((t) => t.name)).toEqual(['trades']);
        expect((await queryStatus(replica.httpPort, 'SELECT 1 FROM quotes')).status).toBe(400);
        await waitApplied(replica.httpPort, new Map([['trades', heads.get('trades')!]]));
        expect(requestsUnder(seen, 'quotes')).toEqual([]);

        const added = await postTables(replica.httpPort, '?add=quotes');
        expect(added.status, JSON.stringify(added.body)).toBe(200);
        expect(added.body.added).toEqual([
          { table: 'quotes', snapshot: { id: snapshot.id, lastTxn: snapshotQuotes.toString() } },
        ]);
        heads = await write(primary.httpPort, ['quotes']);
        await waitApplied(replica.httpPort, heads);
        expect(await tableChecksum(replica.httpPort, 'quotes')).toEqual(
          await tableChecksum(primary.httpPort, 'quotes'),
        );
        // It read quotes' segments only after the snapshot's watermark.
        const segmentGets = requestsUnder(seen, 'quotes')
          .filter((r) => r.operation === 'get')
          .map((r) => txnFirstOfSegmentKey(r.key))
          .filter((txn) => txn !== undefined);
        expect(segmentGets.length).toBeGreaterThan(0);
        expect(segmentGets.every((txn) => txn > snapshotQuotes)).toBe(true);
        const snapshotRefused = await fetch(`http://127.0.0.1:${replica.httpPort}/admin/snapshot`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
        });
        expect(snapshotRefused.status).toBe(400);
        expect(((await snapshotRefused.json()) as { code: string }).code).toBe('SNAPSHOT_REFUSED');
      } finally {
        await replica?.close();
        await full?.close();
        await primary?.close();
        await store.close();
      }
    },
    60_000,
  );

  it.skipIf(skipReason !== null)(
    'a replica of a sequenced cluster restricted to trades applies only trades, then adds quotes',
    async () => {
      const dir = await mkdtemp(path.join(base, `seq-${name.split(' ')[0]}-`));
      const store = await makeStore().open();
      const sqlite = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer.sqlite') });
      const server = await startSequencerServer(sqlite, {
        listen: { host: '127.0.0.1', port: 0 },
        auth: {},
        log,
      });
      const clients: SequencerStore[] = [];
      const client = async () => {
        const opened = await openHttpSequencer(`http::addr=127.0.0.1:${server.port};`);
        clients.push(opened);
        return opened;
      };
      const seen: SeenRequest[] = [];
      let writer: WalshipNode | undefined;
      let replica: WalshipNode | undefined;
      try {
        const admin = await client();
        await initSequencedCluster({ store, sequencer: admin, clock: systemClock });
        const settings: NodeSettings = {
          ...testNodeSettings(store, path.join(dir, 'w'), {
            primary: { ackMode: 'durable', windowMs: 20, nodeId: 'w' },
            replica: { pollIntervalMs: 30, nodeId: 'w' },
          }),
          sequenced: { sequencer: await client(), exportGraceMs: 200 },
        };
        writer = await WalshipNode.start('primary', settings, {
          clock: systemClock,
          random: seededRandom(5),
          log,
        });
        for (let i = 0; i < 3; i++) await write(writer.httpPort, ['trades', 'quotes']);
        // A store-only reader (no sequencer given): WalshipNode finds sequencer.json and follows txnlog/.
        replica = await WalshipNode.start(
          'replica',
          testNodeSettings(counting(store, seen), path.join(dir, 'r'), {
            replica: onlyTrades({ bootstrapFromSnapshot: false, pollIntervalMs: 30, nodeId: 'r' }),
          }),
          { clock: systemClock, random: seededRandom(6), log },
        );
        let heads = (await admin.heads()).tables;
        await waitApplied(replica.httpPort, new Map([['trades', heads.get('trades')!]]));
        await write(writer.httpPort, ['trades', 'quotes']);
        heads = (await admin.heads()).tables;
        await waitApplied(replica.httpPort, new Map([['trades', heads.get('trades')!]]));

        expect(await tableChecksum(replica.httpPort, 'trades')).toEqual(
          await tableChecksum(writer.httpPort, 'trades'),
        );
        expect(requestsUnder(seen, 'trades').length).toBeGreaterThan(0);
        expect(requestsUnder(seen, 'quotes')).toEqual([]);
        const status = await statusOf(replica.httpPort);
        expect(status.tables.map((t) => t.name)).toEqual(['trades']);
        expect(status.servedTables).toEqual({ include: ['trades'], exclude: [] });
        expect((await queryStatus(replica.httpPort, 'SELECT 1 FROM quotes')).status).toBe(400);
        // It holds only some tables: it may not become a writer (it would drop the others' writes).
        const promoted = await fetch(`http://127.0.0.1:${replica.httpPort}/admin/promote`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
        });
        expect(promoted.status).toBe(400);
        expect(await promoted.text()).toContain('PROMOTION_REFUSED');
        expect(replica.role).toBe('replica');

        const added = await postTables(replica.httpPort, '?add=quotes');
        expect(added.status, JSON.stringify(added.body)).toBe(200);
        await waitApplied(replica.httpPort, heads);
        expect(await tableChecksum(replica.httpPort, 'quotes')).toEqual(
          await tableChecksum(writer.httpPort, 'quotes'),
        );
      } finally {
        await replica?.close();
        await writer?.close();
        for (const opened of clients) await opened.close();
        await server.close();
        await sqlite.close();
        await store.close();
      }
    },
    60_000,
  );
});
