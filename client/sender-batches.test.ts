import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClientRandom, ManualClientClock } from './clock.js';
import { FlushGaveUpError, IlpRequestError, isClientError, type WalshipClientError } from './errors.js';
import { Sender, type SenderDeps } from './sender.js';
import { batchName, type CorruptBatchReport } from './sf-dir-files.js';
import {
  type DedupIlpServer,
  type DedupServerOptions,
  startDedupIlpServer,
} from './testing/dedup-ilp-server.js';
import { ilpError, type ScriptedServer, startScriptedServer } from './testing/scripted-http-server.js';

/**
 * Frozen batches and their identities (issue 18) through the whole Sender, against a loopback
 * server that dedups by X-Walship-Batch as the wire protocol says (testing/dedup-ilp-server.ts):
 * a batch keeps its seq and bytes across retries, restarts and new rows; each 204 answer is
 * counted; 409 is an error that keeps the batch; the sf_dir brings batches back after a restart.
 */

const noJitter: ClientRandom = { next: () => 0 };
const servers: ScriptedServer[] = [];
const senders: Sender[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const sender of senders.splice(0)) await sender.close().catch(() => {});
  for (const server of servers.splice(0)) await server.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function dedupServer(options: DedupServerOptions = {}): Promise<DedupIlpServer> {
  const server = await startDedupIlpServer(options);
  servers.push(server);
  return server;
}

function newDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'walship-sender-sf-'));
  dirs.push(dir);
  return dir;
}

function sender(conf: string, deps: SenderDeps = {}): Sender {
  const created = Sender.fromConfig(`http::auto_flush=off;${conf}`, {
    clock: new ManualClientClock(),
    random: noJitter,
    ...deps,
  });
  senders.push(created);
  return created;
}

async function addRows(s: Sender, count: number, from = 0): Promise<string> {
  let expected = '';
  for (let i = from; i < from + count; i++) {
    await s
      .table('t')
      .intColumn('n', i)
      .at(i + 1, 'us');
    expected += `t n=${i}i ${(i + 1) * 1000}\n`;
  }
  return expected;
}

const identities = (server: ScriptedServer) => server.requests.map((r) => r.headers['x-walship-batch']);
const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );

describe('Sender batch identities', () => {
  it('sends each batch under writerId:seq, the seq one more per batch', async () => {
    const server = await dedupServer();
    const s = sender(`addr=${server.address};`);
    expect(s.writerId).toMatch(/^w-[a-z2-7]{20}$/);
    for (let i = 0; i < 3; i++) {
      await addRows(s, 2, i * 2);
      await s.flush();
    }
    expect(identities(server)).toEqual([1, 2, 3].map((seq) => `${s.writerId}:${seq}`));
    expect(s.batchStats).toEqual({ committed: 3, replayed: 0, ignored: 0, corrupt: 0 });
    expect(s.lastBatchSeq).toBe(3n);
  });

  it('retries a batch after 503 with the same identity and bytes', async () => {
    const server = await dedupServer({
      before: (_, i) => (i < 2 ? ilpError(503, 'busy', 'busy') : undefined),
    });
    const s = sender(`addr=${server.address};`);
    const rows = await addRows(s, 3);
    await s.flush();
    expect(server.requests.map((r) => [r.headers['x-walship-batch'], r.body])).toEqual(
      Array(3).fill([`${s.writerId}:1`, rows]),
    );
    expect(server.writes.map((w) => w.body)).toEqual([rows]);
  });

  it('freezes a batch that failed: rows added after it go into the next batch, the old one keeps its bytes', async () => {
    let down = true;
    const server = await dedupServer({
      before: () => (down ? ilpError(503, 'busy', 'store down') : undefined),
    });
    const s = sender(`addr=${server.address};retry_timeout=0;`);
    const first = await addRows(s, 2);
    expect(await failure(s.flush())).toBeInstanceOf(FlushGaveUpError);
    const second = await addRows(s, 1, 2);
    expect([s.heldBatches, s.bufferedRows]).toEqual([1, 3]);
    down = false;
    await s.flush();
    expect(server.writes).toEqual([
      { writerId: s.writerId, seq: 1n, body: first },
      { writerId: s.writerId, seq: 2n, body: second },
    ]);
    expect([s.heldBatches, s.bufferedRows]).toEqual([0, 0]);
  });

  it('a lost answer after the write: the resend is replayed, counted, and keeps the original token', async () => {
    const server = await dedupServer({ afterWrite: (_, i) => (i === 0 ? 'hang' : 'answer') });
    const s = sender(`addr=${server.address};request_timeout=300;`);
    const rows = await addRows(s, 2);
    await s.flush();
    expect(server.answers).toEqual(['committed', 'replayed']);
    expect(identities(server)).toEqual([`${s.writerId}:1`, `${s.writerId}:1`]);
    expect(server.writes.map((w) => w.body)).toEqual([rows]);
    expect(s.batchStats).toMatchObject({ committed: 0, replayed: 1 });
    expect(s.lastCommitToken).toBe('trades=1');
  });

  it('counts a 204 without X-Walship-Batch-Status as ignored, and batch_ids=off sends no identity', async () => {
    const plain = await startScriptedServer(() => ({ status: 204 }));
    servers.push(plain);
    const s = sender(`addr=${plain.address};`);
    await addRows(s, 1);
    await s.flush();
    expect(plain.requests[0]?.headers['x-walship-batch']).toBe(`${s.writerId}:1`);
    expect(s.batchStats).toMatchObject({ committed: 0, ignored: 1 });
    const off = sender(`addr=${plain.address};batch_ids=off;`);
    expect(off.writerId).toBeUndefined();
    await addRows(off, 1);
    await off.flush();
    expect(plain.requests[1]?.headers['x-walship-batch']).toBeUndefined();
    expect(off.batchStats).toMatchObject({ ignored: 1 });
  });

  it('a 409 (identity reused with other bytes) is an IlpRequestError and the batch stays held until reset()', async () => {
    const server = await dedupServer();
    // Two directories under one configured writer id: a misconfiguration the server catches.
    const a = sender(`addr=${server.address};sf_dir=${newDir()};writer_id=shared;`);
    await addRows(a, 1, 0);
    await a.flush();
    const dirB = newDir();
    const b = sender(`addr=${server.address};sf_dir=${dirB};writer_id=shared;`);
    await addRows(b, 1, 100);
    const error = await failure(b.flush());
    expect(error).toBeInstanceOf(IlpRequestError);
    const refused = error as IlpRequestError;
    expect([refused.status, refused.batchId, refused.body?.code]).toEqual([
      409,
      'shared:1',
      'batch_conflict',
    ]);
    expect(refused.message).toMatch(/refused batch shared:1 with HTTP 409.*other content.*still held/);
    expect([b.heldBatches, b.bufferedRows]).toEqual([1, 1]);
    expect(await failure(b.flush())).toBeInstanceOf(IlpRequestError);
    b.reset();
    expect([b.heldBatches, b.bufferedRows]).toEqual([0, 0]);
    expect(readdirSync(dirB).filter((name) => name.endsWith('.batch'))).toEqual([]);
    expect(server.writes.length).toBe(1);
  });

  it('reset() during a flush drops what is held, and the 204 that arrives later drops nothing new', async () => {
    let release: () => void = () => {};
    const gate = new Promise<number>((resolve) => {
      release = () => resolve(0);
    });
    let arrived: () => void = () => {};
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const server = await dedupServer({
      afterWrite: (_, i) => {
        if (i > 0) return 'answer';
        arrived();
        return gate;
      },
    });
    const s = sender(`addr=${server.address};`);
    await addRows(s, 2);
    const flushing = s.flush();
    await requestArrived;
    s.reset();
    const kept = await addRows(s, 1, 10);
    release();
    await gate;
    await flushing;
    expect(s.bufferedRows).toBe(1);
    await s.flush();
    expect(server.writes.map((w) => [w.seq, w.body])).toEqual([
      [1n, expect.any(String)],
      [2n, kept],
    ]);
  });

  it('counts held batches against max_buf_size', async () => {
    const server = await dedupServer({ before: () => ilpError(503, 'busy', 'down') });
    const s = sender(`addr=${server.address};retry_timeout=0;max_buf_size=56;init_buf_size=16;`);
    await addRows(s, 2); // 2 × 12 bytes
    await failure(s.flush());
    await addRows(s, 2, 2);
    const error = (await failure(addRows(s, 1, 4))) as WalshipClientError;
    expect(isClientError(error, 'BUFFER_FULL')).toBe(true);
    expect(error.message).toMatch(/24 bytes are buffered \(and 24 in sealed batches awaiting a 204\)/);
  });
});

describe('Sender back-pressure', () => {
  it('max_unacked_batches: sealing waits while the oldest is retried, then SF_FULL after the deadline, rows still open', async () => {
    let down = true;
    const server = await dedupServer({ before: () => (down ? ilpError(503, 'busy', 'down') : undefined) });
    const clock = new ManualClientClock();
    const s = sender(
      `addr=${server.address};retry_timeout=0;max_unacked_batches=2;sf_append_deadline_millis=100;`,
      { clock },
    );
    for (let i = 0; i < 2; i++) {
      await addRows(s, 1, i);
      await failure(s.flush());
    }
    await addRows(s, 1, 2);
    const requestsBefore = server.requests.length;
    const error = (await failure(s.flush())) as WalshipClientError;
    expect(isClientError(error, 'SF_FULL')).toBe(true);
    expect(error.message).toMatch(/2 batches .* max_unacked_batches=2.*sf_append_deadline_millis=100/);
    expect(error.cause).toBeInstanceOf(FlushGaveUpError);
    // Retried the oldest batch after 10, 20, 40 ms and once more at the deadline, then gave up.
    expect(clock.slept).toEqual([10, 20, 40, 30]);
    expect(server.requests.slice(requestsBefore).map((r) => r.headers['x-walship-batch'])).toEqual(
      Array(5).fill(`${s.writerId}:1`),
    );
    expect([s.heldBatches, s.bufferedRows]).toEqual([2, 3]);
    down = false;
    await s.flush();
    expect(server.writes.map((w) => w.seq)).toEqual([1n, 2n, 3n]);
  });

  it('sf_append_deadline_millis=0 still sends the oldest batch once to make room', async () => {
    let down = true;
    const server = await dedupServer({ before: () => (down ? ilpError(503, 'busy', 'down') : undefined) });
    const s = sender(
      `addr=${server.address};retry_timeout=0;max_unacked_batches=1;sf_append_deadline_millis=0;`,
    );
    await addRows(s, 1, 0);
    await failure(s.flush());
    await addRows(s, 1, 1);
    expect(isClientError(await failure(s.flush()), 'SF_FULL')).toBe(true);
    down = false;
    await s.flush();
    expect(server.writes.map((w) => w.seq)).toEqual([1n, 2n]);
  });

  it('sf_max_bytes: sealing sends held batches first to make room, and a batch that can never fit fails at once', async () => {
    // Rows of 12 bytes, frames of 24 + 12: two fit in 80, three do not.
    const down = await startScriptedServer(() => ilpError(503, 'busy', 'down'));
    servers.push(down);
    const dir = newDir();
    const filling = sender(`addr=${down.address};sf_dir=${dir};sf_max_bytes=80;retry_timeout=0;`);
    for (let i = 0; i < 2; i++) {
      await addRows(filling, 1, i);
      await failure(filling.flush());
    }
    await addRows(filling, 1, 2);
    expect(isClientError(await failure(filling.flush()), 'SF_FULL')).toBe(true);
    expect([filling.heldBatches, filling.bufferedRows]).toEqual([2, 3]);
    await filling.close();
    const server = await dedupServer();
    const after = sender(`addr=${server.address};sf_dir=${dir};sf_max_bytes=80;`);
    expect(after.heldBatches).toBe(2);
    await addRows(after, 1, 2);
    await after.flush();
    expect(server.writes.map((w) => w.seq)).toEqual([1n, 2n, 3n]);
    await addRows(after, 5);
    const error = (await failure(after.flush())) as WalshipClientError;
    expect(isClientError(error, 'SF_FULL')).toBe(true);
    expect(error.message).toMatch(/a batch of 60 bytes can never fit/);
    expect(server.requests.length).toBe(3);
  });
});

describe('Sender with sf_dir', () => {
  it('sends the batches of a previous run first, with their original identity and bytes, without new rows', async () => {
    const dir = newDir();
    const down = await startScriptedServer(() => ilpError(503, 'busy', 'down'));
    servers.push(down);
    const before = sender(`addr=${down.address};sf_dir=${dir};retry_timeout=0;`);
    const rows = [await addRows(before, 2, 0)];
    await failure(before.flush());
    rows.push(await addRows(before, 1, 2));
    await failure(before.flush());
    const writerId = before.writerId;
    await before.close();
    const server = await dedupServer();
    const after = sender(`addr=${server.address};sf_dir=${dir};`);
    expect([after.writerId, after.heldBatches, after.bufferedRows]).toEqual([writerId, 2, 3]);
    expect(await after.flush()).toBe(true);
    expect(server.writes).toEqual([
      { writerId, seq: 1n, body: rows[0] },
      { writerId, seq: 2n, body: rows[1] },
    ]);
    expect(readdirSync(dir).filter((name) => name.endsWith('.batch'))).toEqual([]);
    expect(await after.flush()).toBe(false);
  });

  it('a batch the server committed before the crash is replayed, not written twice', async () => {
    const dir = newDir();
    const server = await dedupServer({ afterWrite: (_, i) => (i === 0 ? 'hang' : 'answer') });
    const crashed = Sender.fromConfig(
      `http::addr=${server.address};sf_dir=${dir};auto_flush=off;request_timeout=5000;retry_timeout=0;`,
    );
    await addRows(crashed, 2);
    const lost = crashed.flush().catch(() => {});
    while (server.writes.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    // The process "dies" with the request answered by nobody: its lock is left behind.
    const lock = JSON.parse(readFileSync(path.join(dir, 'lock'), 'utf8')) as object;
    writeFileSync(path.join(dir, 'lock'), JSON.stringify({ ...lock, pid: deadPid() }));
    const restarted = sender(`addr=${server.address};sf_dir=${dir};`);
    expect(restarted.heldBatches).toBe(1);
    await restarted.flush();
    expect(server.answers).toEqual(['committed', 'replayed']);
    expect(server.writes.length).toBe(1);
    expect(restarted.batchStats).toMatchObject({ committed: 0, replayed: 1 });
    expect(restarted.lastCommitToken).toBe('trades=1');
    await server.close();
    await lost;
    await crashed.close();
    // The old sender's close() did not remove the new one's lock.
    expect(existsSync(path.join(dir, 'lock'))).toBe(true);
  });

  it('continues the seq after a restart where every batch was acknowledged', async () => {
    const dir = newDir();
    const server = await dedupServer();
    const first = sender(`addr=${server.address};sf_dir=${dir};`);
    for (let i = 0; i < 2; i++) {
      await addRows(first, 1, i);
      await first.flush();
    }
    await first.close();
    const second = sender(`addr=${server.address};sf_dir=${dir};`);
    expect(second.lastBatchSeq).toBe(2n);
    await addRows(second, 1, 2);
    await second.flush();
    expect(server.writes.map((w) => w.seq)).toEqual([1n, 2n, 3n]);
    expect(server.answers).toEqual(['committed', 'committed', 'committed']);
  });

  it('reports a corrupt batch file at open, counts it, and never sends it', async () => {
    const dir = newDir();
    const down = await startScriptedServer(() => ilpError(503, 'busy', 'down'));
    servers.push(down);
    const before = sender(`addr=${down.address};sf_dir=${dir};retry_timeout=0;`);
    await addRows(before, 1, 0);
    await failure(before.flush());
    const good = await addRows(before, 1, 1);
    await failure(before.flush());
    await before.close();
    writeFileSync(path.join(dir, batchName(1n)), 'not a frame');
    const server = await dedupServer();
    const reports: CorruptBatchReport[] = [];
    const after = sender(`addr=${server.address};sf_dir=${dir};`, { onCorruptBatch: (r) => reports.push(r) });
    expect(reports.map((r) => r.seq)).toEqual([1n]);
    expect(after.batchStats.corrupt).toBe(1);
    await after.flush();
    expect(server.writes.map((w) => [w.seq, w.body])).toEqual([[2n, good]]);
  });

  it('refuses a second Sender on the same directory until the first is closed', async () => {
    const dir = newDir();
    const server = await dedupServer();
    const first = sender(`addr=${server.address};sf_dir=${dir};`);
    expect(() => sender(`addr=${server.address};sf_dir=${dir};`)).toThrow(/sf_dir is locked/);
    await first.close();
    expect(sender(`addr=${server.address};sf_dir=${dir};`).writerId).toBe(first.writerId);
  });
});

/** The pid of a process that has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid;
}
