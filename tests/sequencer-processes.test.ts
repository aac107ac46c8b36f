/**
 * Several primaries as real processes on Ceph RGW (RFC-0003), driven through the command line:
 * `walship sequencer serve`, `walship sequencer init`, two `walship primary` writers and a
 * `walship replica` that reaches only the store. The walship ILP client lists both writers and the
 * replica with `spread=on`. Under that load the sequencer service is SIGKILLed and restarted on
 * the same file and port, then one writer is SIGKILLed for good: every acknowledged row must end on
 * every live node exactly once, in the same order, and writes must go on through the other writer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sender } from '../client/index.js';
import { freePorts } from './helpers/ceph-rgw.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { execText, tableChecksum } from './helpers/table-checksum.js';
import { getJson } from './helpers/test-primary.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const live = new Set<WalshipProcess>();
const ADMIN = 'seq-admin-token';
const WRITE = 'seq-write-token';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-seq-proc-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'seqproc');
});
afterAll(async () => {
  for (const child of live) child.kill('SIGKILL');
  await Promise.all([...live].map((child) => child.exited));
  await rm(base, { recursive: true, force: true });
});

function spawn(args: string[]): WalshipProcess {
  const child = spawnWalship(args);
  live.add(child);
  void child.exited.then(() => live.delete(child));
  return child;
}

async function kill(child: WalshipProcess): Promise<void> {
  child.kill('SIGKILL');
  await child.exited;
}

async function appliedOf(port: number): Promise<Map<string, bigint>> {
  const { body } = await getJson(port, '/status');
  const tables = (body as { tables?: { name: string; appliedTxn?: string }[] }).tables ?? [];
  return new Map(tables.map((t) => [t.name, BigInt(t.appliedTxn ?? '0')]));
}

// The S3 entry of the stores under test: this test is about processes on a real S3 server.
const [, s3Store] = storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'seqproc' });

describe('several primaries as processes on s3 (Ceph RGW)', () => {
  const [, skipReason, makeStore] = s3Store!;
  if (skipReason !== null) console.log(`several primaries as processes: skipped: ${skipReason}`);

  it.skipIf(skipReason !== null)(
    'the sequencer service killed and restarted under load, then a writer killed: every acknowledged row once on every live node',
    async () => {
      const store = makeStore();
      const [seqPort, p1Port, p2Port, rPort] = (await freePorts(4)) as [number, number, number, number];
      const seqDir = path.join(base, 'sequencer');
      const serve = () =>
        spawn([
          'sequencer',
          'serve',
          `--sequencer.data.dir=${seqDir}`,
          `--http.bind.to=127.0.0.1:${seqPort}`,
          `--sequencer.auth.admin.token=${ADMIN}`,
          `--sequencer.auth.write.token=${WRITE}`,
          '--log.level=warn',
        ]);
      let sequencer = serve();
      await sequencer.waitFor(/walship sequencer listening: http \d+/);
      const init = spawn([
        'sequencer',
        'init',
        `--replication.object.store=${store.connectionString}`,
        `--replication.sequencer=http::addr=127.0.0.1:${seqPort};token=${ADMIN};`,
      ]);
      expect((await init.exited).code, init.output()).toBe(0);
      expect(init.output()).toMatch(/initialised cluster/);
      expect(init.output()).not.toContain(ADMIN);

      const node = (role: 'primary' | 'replica', id: string, port: number) =>
        spawn([
          role,
          `--replication.object.store=${store.connectionString}`,
          ...(role === 'primary'
            ? [`--replication.sequencer=http::addr=127.0.0.1:${seqPort};token=${WRITE};`]
            : ['--replication.replica.poll.interval=50ms']),
          `--node.data.dir=${path.join(base, id)}`,
          `--node.id=${id}`,
          `--http.bind.to=127.0.0.1:${port}`,
          '--line.tcp.enabled=false',
          '--pg.enabled=false',
          '--replication.ack.mode=durable',
          '--replication.primary.throttle.window.duration=20ms',
          '--replication.sequencer.export.grace=500ms',
          '--query.workers=1',
          '--log.level=warn',
        ]);
      const p1 = node('primary', 'p1', p1Port);
      const p2 = node('primary', 'p2', p2Port);
      const replica = node('replica', 'r', rPort);
      for (const child of [p1, p2, replica]) await child.waitFor(/listening: http \d+/);

      // The client spreads batches over both writers and skips the replica (421).
      const sender = Sender.fromConfig(
        `http::addr=127.0.0.1:${p1Port};addr=127.0.0.1:${p2Port};addr=127.0.0.1:${rPort};` +
          'spread=on;auto_flush=off;retry_timeout=60000;',
      );
      const acked: number[] = [];
      let next = 0;
      const batch = async () => {
        const first = next;
        for (let i = 0; i < 20; i++, next++)
          await sender
            .table('ticks')
            .symbol('src', 'proc')
            .intColumn('id', next)
            .at(1_700_000_000_000_000 + next, 'us');
        await sender.flush();
        for (let id = first; id < next; id++) acked.push(id);
      };
      try {
        for (let i = 0; i < 10; i++) await batch();
        // The sequencer dies under load and comes back on the same file and port.
        const load = (async () => {
          for (let i = 0; i < 15; i++) await batch();
        })();
        await new Promise((resolve) => setTimeout(resolve, 150));
        await kill(sequencer);
        await new Promise((resolve) => setTimeout(resolve, 500));
        sequencer = serve();
        await sequencer.waitFor(/walship sequencer listening: http \d+/);
        await load;
        // A writer dies for good: the client moves on to the other one.
        await kill(p1);
        for (let i = 0; i < 10; i++) await batch();
      } finally {
        await sender.close();
      }
      expect(acked).toHaveLength(35 * 20);

      // The live nodes converge on every acknowledged row, once, in one order.
      const ports = [p2Port, rPort];
      const deadline = Date.now() + 60_000;
      for (;;) {
        const counts = await Promise.all(
          ports.map(async (port) => {
            const text = await execText(port, 'SELECT count(*) FROM ticks').catch(() => '');
            return text === '' ? -1 : (JSON.parse(text) as { dataset: number[][] }).dataset[0]![0]!;
          }),
        );
        if (counts.every((count) => count >= acked.length)) break;
        if (Date.now() > deadline)
          throw new Error(
            `not converged: counts ${counts}, p2 ${JSON.stringify((await getJson(p2Port, '/status')).body)}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const [a, b] = await Promise.all(ports.map((port) => tableChecksum(port, 'ticks')));
      expect(b).toEqual(a);
      const orders = await Promise.all(
        ports.map((port) => execText(port, 'SELECT id FROM ticks ORDER BY rowid')),
      );
      expect(orders[1]).toBe(orders[0]);
      const ids = (JSON.parse(orders[0]!) as { dataset: number[][] }).dataset.map((r) => r[0]!);
      expect(new Set(ids).size).toBe(ids.length);
      for (const id of acked) expect(ids).toContain(id);
      expect((await appliedOf(rPort)).get('ticks')).toEqual((await appliedOf(p2Port)).get('ticks'));
      await kill(sequencer);
      for (const child of [p2, replica]) await kill(child);
    },
    180_000,
  );
});
