/**
 * A real primary (in this process) written to by the official QuestDB client, on the
 * filesystem store and on Ceph RGW: rows land in SQLite, are queryable, and reach the store as
 * segments that decode to the same txns.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Sender } from '@questdb/nodejs-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  FsStore,
  listAll,
  MemoryStore,
  type ObjectStore,
  S3Store,
  withFaults,
} from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { decodeSegment } from '../wal/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const running: PrimaryNode[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-primary-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'primary');
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((node) => node.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function start(
  store: ObjectStore,
  options: Parameters<typeof startTestPrimary>[2] = {},
  dataDir?: string,
) {
  const node = await startTestPrimary(store, dataDir ?? path.join(base, randomUUID()), options);
  running.push(node);
  return node;
}

async function exec(node: PrimaryNode, sql: string) {
  const { status, body } = await getJson(node.httpPort, `/exec?query=${encodeURIComponent(sql)}`);
  expect(status, JSON.stringify(body)).toBe(200);
  return body as { columns: { name: string; type: string }[]; dataset: unknown[][]; count: number };
}

async function post(node: PrimaryNode, body: string) {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, { method: 'POST', body });
  return { status: response.status, txn: response.headers.get('x-walship-txn'), text: await response.text() };
}

/** Every txn in the store for one table, decoded, in order. */
async function storedTxns(store: ObjectStore, tableKey: string) {
  const txns = [];
  for await (const info of listAll(store, `tables/${tableKey}/wal/`)) {
    const got = await store.get(info.key);
    if (got?.status === 'ok') txns.push(...(await decodeSegment(got.body)).txns);
  }
  return txns;
}

const fsStore = () => FsStore.open({ root: path.join(base, `store-${randomUUID()}`) });
const stores: [string, string | null, () => Promise<ObjectStore>][] = [
  ['fs', null, fsStore],
  [
    's3 (Ceph RGW)',
    s3.skipReason,
    async () => new S3Store({ bucket, root: `primary-${randomUUID()}`, ...s3.env! }),
  ],
];

describe.each(stores)('primary on %s', (_name, skipReason, openStore) => {
  it.skipIf(skipReason !== null)(
    'takes every type from the official client, serves it, and ships it',
    async () => {
      const store = await openStore();
      const node = await start(store);
      const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${node.httpPort};auto_flush=off;`);
      await sender
        .table('trades')
        .symbol('sym', 'ETH-USD')
        .symbol('side', 'sell x,y=z')
        .intColumn('qty', 42)
        .floatColumn('price', 2615.54)
        .stringColumn('note', 'he said "hi"\nbye ünï 🚀')
        .stringColumn('empty', '')
        .booleanColumn('ok', true)
        .timestampColumn('ts_col', 1700000000123456n, 'us')
        .at(1700000000123456789n, 'ns');
      await sender
        .table('trades')
        .symbol('sym', 'BTC-USD')
        .floatColumn('price', 37000.5)
        .at(1700000001000000n, 'us');
      await sender.flush();
      await sender.close();

      const result = await exec(node, 'SELECT * FROM trades ORDER BY timestamp');
      expect(result.columns.map((c) => `${c.name}:${c.type}`)).toEqual([
        'timestamp:TIMESTAMP',
        'sym:SYMBOL',
        'side:SYMBOL',
        'qty:LONG',
        'price:DOUBLE',
        'note:STRING',
        'empty:STRING',
        'ok:BOOLEAN',
        'ts_col:TIMESTAMP',
      ]);
      expect(result.dataset).toEqual([
        [
          '2023-11-14T22:13:20.123456Z',
          'ETH-USD',
          'sell x,y=z',
          42,
          2615.54,
          'he said "hi"\nbye ünï 🚀',
          '',
          true,
          '2023-11-14T22:13:20.123456Z',
        ],
        ['2023-11-14T22:13:21.000000Z', 'BTC-USD', null, null, 37000.5, null, null, false, null],
      ]);

      await expect.poll(async () => (await storedTxns(store, 'trades')).length, { timeout: 10_000 }).toBe(1);
      const [txn] = await storedTxns(store, 'trades');
      expect(txn).toMatchObject({ txn: 1n, kind: 'data', rowCount: 2 });
      const status = (await getJson(node.httpPort, '/status')).body as {
        tables: { name: string; uploadedTxn: string }[];
      };
      await expect
        .poll(
          async () =>
            ((await getJson(node.httpPort, '/status')).body as typeof status).tables[0]?.uploadedTxn,
        )
        .toBe('1');
      expect(status).toMatchObject({ role: 'primary', epoch: '1', acceptingWrites: true });
    },
  );

  it.skipIf(skipReason !== null)('durable mode answers only after the segment is in the store', async () => {
    const store = await openStore();
    const node = await start(store, { ackMode: 'durable', windowMs: 60_000 });
    for (let i = 1; i <= 5; i++) {
      const response = await post(node, `m,host=h${i} v=${i}i\n`);
      expect(response.status).toBe(204);
      expect(response.txn).toBe(`m=${i}@1`);
      // No waiting: the 204 itself promises the txn is in the store.
      expect((await storedTxns(store, 'm')).map((t) => t.txn)).toEqual(
        Array.from({ length: i }, (_, k) => BigInt(k + 1)),
      );
    }
  });
});

describe('primary write path', () => {
  it('a request is all or nothing across its tables', async () => {
    const node = await start(await fsStore());
    expect((await post(node, 'a v=1i\nb v=1i\n')).status).toBe(204);
    const refused = await post(node, 'a v=2i\nb v="text"\n');
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.text)).toMatchObject({ code: 'invalid', line: 2 });
    expect(JSON.parse(refused.text).message).toMatch(/b.*v/);
    expect((await exec(node, 'SELECT count(*) AS n FROM a')).dataset).toEqual([[1]]);
    expect((await exec(node, 'SELECT count(*) AS n FROM b')).dataset).toEqual([[1]]);
    const ok = await post(node, 'a v=3i\nB v=3i\n');
    expect(ok.txn).toBe('a=2@1,b=2@1');
  });

  it('keeps its identity, epoch and data across a restart, and numbers txns on', async () => {
    const store = await fsStore();
    const dataDir = path.join(base, randomUUID());
    const first = await start(store, {}, dataDir);
    await post(first, 't v=1i\n');
    const nodeId = first.nodeId;
    await first.close();
    const second = await start(store, {}, dataDir);
    expect(second.nodeId).toBe(nodeId);
    expect(second.epoch).toBe(1n);
    expect((await post(second, 't v=2i\n')).txn).toBe('t=2@1');
    await expect
      .poll(async () => (await storedTxns(store, 't')).map((t) => t.txn), { timeout: 10_000 })
      .toEqual([1n, 2n]);
  });

  it('refuses the primary role on a store that ignores conditional writes', async () => {
    const store = withFaults(new MemoryStore(), [{ fault: { type: 'ignore-conditions' } }]);
    await expect(start(store)).rejects.toMatchObject({ code: 'PRIMARY_REFUSED' });
    await expect(start(store)).rejects.toThrow(/UNSAFE|does not honour conditional writes/);
  });

  it('/settings lists only the transports the node listens on', async () => {
    const withTcp = await start(await fsStore());
    const withoutTcp = await start(await fsStore(), { tcp: undefined });
    const settings = async (node: PrimaryNode) =>
      ((await getJson(node.httpPort, '/settings')).body as { config: Record<string, unknown> }).config;
    expect((await settings(withTcp))['accepting.writes']).toEqual(['http', 'tcp']);
    expect((await settings(withoutTcp))['accepting.writes']).toEqual(['http']);
    expect((await settings(withoutTcp))['ilp.proto.transports']).toEqual(['http']);
  });

  it('a second node pointed at the same store root is refused', async () => {
    const store = await fsStore();
    await start(store);
    await expect(start(store)).rejects.toThrow(/is not the primary/);
  });
});
