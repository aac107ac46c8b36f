import { afterEach, describe, expect, it } from 'vitest';
import { type ClientRandom, ManualClientClock } from './clock.js';
import { FlushGaveUpError, IlpRequestError, isClientError } from './errors.js';
import { Sender } from './sender.js';
import {
  ilpError,
  refusedAddress,
  type Script,
  type ScriptedServer,
  startScriptedServer,
} from './testing/scripted-http-server.js';
import { Backoff, requestTimeoutMsFor, verdictOfStatus } from './write-policy.js';

/**
 * The sender's failover state machine against real loopback servers answering scripted statuses,
 * with a manual clock (backoff waits cost no real time) and a fixed random (no jitter).
 */

const noJitter: ClientRandom = { next: () => 0 };
const servers: ScriptedServer[] = [];
const senders: Sender[] = [];

afterEach(async () => {
  for (const sender of senders.splice(0)) await sender.close().catch(() => {});
  for (const server of servers.splice(0)) await server.close();
});

async function server(script: Script): Promise<ScriptedServer> {
  const started = await startScriptedServer(script);
  servers.push(started);
  return started;
}

const committed = (token?: string): { status: number; headers: Record<string, string> } => ({
  status: 204,
  headers: token === undefined ? {} : { 'x-walship-txn': token },
});

function sender(conf: string, clock = new ManualClientClock()): Sender {
  const created = Sender.fromConfig(`http::auto_flush=off;${conf}`, { clock, random: noJitter });
  senders.push(created);
  return created;
}

async function addRows(s: Sender, count: number, from = 0): Promise<string> {
  let expected = '';
  for (let i = from; i < from + count; i++) {
    await s
      .table('trades')
      .symbol('sym', 'ETH')
      .intColumn('n', i)
      .at(1_000_000 + i, 'us');
    expected += `trades,sym=ETH n=${i}i ${(1_000_000 + i) * 1000}\n`;
  }
  return expected;
}

describe('write policy', () => {
  it('classifies statuses as QuestDB clients do', () => {
    expect(verdictOfStatus(204)).toBe('committed');
    for (const status of [421, 404]) expect(verdictOfStatus(status)).toBe('next_address');
    for (const status of [500, 503, 504, 507, 509, 523, 524, 529, 599])
      expect(verdictOfStatus(status)).toBe('same_address');
    for (const status of [200, 400, 401, 403, 405, 409, 413, 415, 502])
      expect(verdictOfStatus(status)).toBe('fail');
  });

  it('backs off from 10 ms, doubling, to a 1 s cap, with up to half a step of jitter', () => {
    const none = new Backoff({ next: () => 0 });
    expect(Array.from({ length: 9 }, () => none.nextMs())).toEqual([
      10, 20, 40, 80, 160, 320, 640, 1000, 1000,
    ]);
    const most = new Backoff({ next: () => 0.999 });
    expect(Array.from({ length: 8 }, () => most.nextMs())).toEqual([14, 29, 59, 119, 239, 479, 959, 1000]);
  });

  it('gives a request request_timeout plus its size at request_min_throughput', () => {
    const options = { requestTimeoutMs: 10_000, requestMinThroughputBytesPerS: 102_400 };
    expect(requestTimeoutMsFor(0, options)).toBe(10_000);
    expect(requestTimeoutMsFor(1_024_000, options)).toBe(20_000);
    expect(requestTimeoutMsFor(1_024_000, { ...options, requestMinThroughputBytesPerS: 0 })).toBe(10_000);
  });
});

describe('Sender failover', () => {
  it('421 → the next address, which then stays current', async () => {
    const replica = await server(() => ilpError(421, 'not accepting writes', 'this node is a replica'));
    const primary = await server(() => committed('trades=1'));
    const s = sender(`addr=${replica.address};addr=${primary.address};`);
    const expected = await addRows(s, 3);
    expect(await s.flush()).toBe(true);
    expect(replica.requests.length).toBe(1);
    expect(primary.requests.map((r) => [r.method, r.url, r.body])).toEqual([['POST', '/write', expected]]);
    expect(s.bufferedRows).toBe(0);
    expect(s.currentAddress).toBe(primary.address);
    await addRows(s, 1, 3);
    await s.flush();
    expect(replica.requests.length).toBe(1);
    expect(primary.requests.length).toBe(2);
  });

  it('spread=on sends batches round-robin over the addresses that commit, skipping one that refuses', async () => {
    const a = await server(() => committed('trades=1'));
    const b = await server(() => committed('trades=2'));
    const replica = await server(() => ilpError(421, 'not accepting writes', 'this node is a replica'));
    const s = sender(`addr=${a.address};addr=${b.address};addr=${replica.address};spread=on;`);
    for (let batch = 0; batch < 4; batch++) {
      await addRows(s, 1, batch);
      expect(await s.flush()).toBe(true);
    }
    // a, b, (replica refuses) a, b: each primary took two batches.
    expect(a.requests.length).toBe(2);
    expect(b.requests.length).toBe(2);
    expect(replica.requests.length).toBe(1);
  });

  it('404 → the next address', async () => {
    const other = await server(() => ({ status: 404, body: 'not found' }));
    const primary = await server(() => committed());
    const s = sender(`addr=${other.address};addr=${primary.address};`);
    await addRows(s, 1);
    await s.flush();
    expect([other.requests.length, primary.requests.length]).toEqual([1, 1]);
  });

  it('503 → back off and retry the same address', async () => {
    const busy = await server((_, i) => (i < 2 ? ilpError(503, 'internal error', 'busy') : committed()));
    const standby = await server(() => committed());
    const clock = new ManualClientClock();
    const s = sender(`addr=${busy.address};addr=${standby.address};`, clock);
    const expected = await addRows(s, 2);
    await s.flush();
    expect(busy.requests.map((r) => r.body)).toEqual([expected, expected, expected]);
    expect(standby.requests.length).toBe(0);
    expect(clock.slept).toEqual([10, 20]);
  });

  it('every retryable 5xx retries the same address', async () => {
    for (const status of [500, 504, 507, 509, 523, 524, 529, 599]) {
      const flaky = await server((_, i) => (i === 0 ? { status } : committed()));
      const other = await server(() => committed());
      const s = sender(`addr=${flaky.address};addr=${other.address};`);
      await addRows(s, 1);
      await s.flush();
      expect([flaky.requests.length, other.requests.length], String(status)).toEqual([2, 0]);
    }
  });

  it('connection refused → the next address', async () => {
    const down = await refusedAddress();
    const primary = await server(() => committed());
    const s = sender(`addr=${down};addr=${primary.address};`);
    const expected = await addRows(s, 2);
    await s.flush();
    expect(primary.requests.map((r) => r.body)).toEqual([expected]);
    expect(s.currentAddress).toBe(primary.address);
  });

  it('a request that gets no answer in time → the next address', async () => {
    const silent = await server(() => 'hang');
    const primary = await server(() => committed());
    const s = sender(`addr=${silent.address};addr=${primary.address};request_timeout=1000;`);
    const expected = await addRows(s, 1);
    await s.flush();
    expect(silent.requests.length).toBe(1);
    expect(primary.requests.map((r) => r.body)).toEqual([expected]);
  });

  it('400 → fails at once with the server error, keeping the batch until a 204', async () => {
    let fixed = false;
    const primary = await server(() =>
      fixed ? committed() : ilpError(400, 'invalid', 'failed to parse line protocol: bad thing', 2),
    );
    const standby = await server(() => committed());
    const s = sender(`addr=${primary.address};addr=${standby.address};`);
    const expected = await addRows(s, 2);
    const error = await s.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IlpRequestError);
    const rejected = error as IlpRequestError;
    expect(rejected.code).toBe('WRITE_REJECTED');
    expect(rejected.status).toBe(400);
    expect(rejected.address).toBe(primary.address);
    expect(rejected.body).toEqual({
      code: 'invalid',
      message: 'failed to parse line protocol: bad thing',
      line: 2,
      errorId: 'abc-1',
    });
    expect(rejected.message).toMatch(/HTTP 400 \(invalid: failed to parse/);
    expect(standby.requests.length).toBe(0);
    expect(s.bufferedRows).toBe(2);
    fixed = true;
    await s.flush();
    expect(primary.requests.map((r) => r.body)).toEqual([expected, expected]);
    expect(s.bufferedRows).toBe(0);
  });

  it('401, 403, 405, 413 and an unexpected 200 fail at once', async () => {
    for (const status of [401, 403, 405, 413, 200]) {
      const node = await server(() => ({ status, body: 'nope' }));
      const other = await server(() => committed());
      const s = sender(`addr=${node.address};addr=${other.address};`);
      await addRows(s, 1);
      const error = await s.flush().catch((e: unknown) => e);
      expect(isClientError(error, 'WRITE_REJECTED'), String(status)).toBe(true);
      expect((error as IlpRequestError).text).toBe('nope');
      expect(other.requests.length).toBe(0);
      expect(s.bufferedRows).toBe(1);
    }
  });

  it('gives up after retry_timeout, naming every address and its answer, and keeps the batch', async () => {
    const busy = await server(() => ilpError(503, 'internal error', 'store unavailable'));
    const clock = new ManualClientClock();
    const s = sender(`addr=${busy.address};retry_timeout=100;`, clock);
    await addRows(s, 3);
    const error = await s.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FlushGaveUpError);
    const gaveUp = error as FlushGaveUpError;
    expect(gaveUp.code).toBe('WRITE_GAVE_UP');
    // Failures at t=0, 10, 30, 70 are retried; the one at t=150 is past retry_timeout.
    expect(clock.slept).toEqual([10, 20, 40, 80]);
    expect(busy.requests.length).toBe(5);
    expect(gaveUp.attempts.length).toBe(5);
    expect(gaveUp.message).toContain(`${busy.address} (last: 503 internal error, 5×)`);
    expect(gaveUp.message).toMatch(/retry_timeout=100/);
    expect(s.bufferedRows).toBe(3);
  });

  it('gives up listing each address when all refuse', async () => {
    const replica = await server(() => ilpError(421, 'not accepting writes', 'replica'));
    const down = await refusedAddress();
    const clock = new ManualClientClock();
    const s = sender(`addr=${replica.address};addr=${down};retry_timeout=50;`, clock);
    await addRows(s, 1);
    const error = (await s.flush().catch((e: unknown) => e)) as FlushGaveUpError;
    expect(error).toBeInstanceOf(FlushGaveUpError);
    expect(error.message).toContain(`${replica.address} (last: 421 not accepting writes`);
    expect(error.message).toMatch(new RegExp(`${down} \\(last: connection refused \\(ECONNREFUSED\\)`));
    // A round of both addresses, then a wait: the waits come between rounds, not between hops.
    expect(clock.slept).toEqual([10, 20, 40]);
    expect(error.attempts.map((a) => a.address)).toEqual([
      replica.address,
      down,
      replica.address,
      down,
      replica.address,
      down,
      replica.address,
    ]);
  });

  it('retry_timeout=0 gives up at the first failure', async () => {
    const busy = await server(() => ({ status: 503 }));
    const s = sender(`addr=${busy.address};retry_timeout=0;`);
    await addRows(s, 1);
    expect(await s.flush().catch((e: unknown) => isClientError(e, 'WRITE_GAVE_UP'))).toBe(true);
    expect(busy.requests.length).toBe(1);
  });

  it('keeps the batch buffered until the 204 arrives, and keeps rows added meanwhile', async () => {
    let release: () => void = () => {};
    const gate = new Promise<{ status: number }>((resolve) => {
      release = () => resolve({ status: 204 });
    });
    let arrived: () => void = () => {};
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const primary = await server((_, i) => {
      if (i > 0) return committed();
      arrived();
      return gate;
    });
    const s = sender(`addr=${primary.address};`);
    const first = await addRows(s, 2);
    const flushing = s.flush();
    await requestArrived;
    expect(s.bufferedRows).toBe(2);
    const second = await addRows(s, 1, 2);
    expect(s.bufferedRows).toBe(3);
    release();
    await flushing;
    expect(s.bufferedRows).toBe(1);
    await s.flush();
    expect(primary.requests.map((r) => r.body)).toEqual([first, second]);
  });

  it('runs concurrent flushes one at a time', async () => {
    let release: () => void = () => {};
    const gate = new Promise<{ status: number }>((resolve) => {
      release = () => resolve({ status: 204 });
    });
    let arrived: () => void = () => {};
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const primary = await server((_, i) => {
      if (i > 0) return committed();
      arrived();
      return gate;
    });
    const s = sender(`addr=${primary.address};`);
    await addRows(s, 1);
    const a = s.flush();
    await requestArrived;
    await addRows(s, 1, 1);
    const b = s.flush();
    release();
    expect(await Promise.all([a, b])).toEqual([true, true]);
    expect(primary.maxInFlight).toBe(1);
    expect(primary.requests.length).toBe(2);
  });
});

describe('Sender buffer, tokens, auth and auto-flush', () => {
  it('merges commit tokens, keeping the largest txn per table', async () => {
    const tokens = ['trades=1,quotes=5', 'trades=3', 'quotes=2', 'garbage'];
    const primary = await server((_, i) => committed(tokens[i]));
    const s = sender(`addr=${primary.address};`);
    expect(s.lastCommitToken).toBeUndefined();
    const seen: (string | undefined)[] = [];
    for (let i = 0; i < tokens.length; i++) {
      await addRows(s, 1, i);
      await s.flush();
      seen.push(s.lastCommitToken);
    }
    expect(seen).toEqual([
      'quotes=5,trades=1',
      'quotes=5,trades=3',
      'quotes=5,trades=3',
      'quotes=5,trades=3',
    ]);
  });

  it('keeps the txn of the newest epoch per table: a lost txn of an older epoch never wins by its number', async () => {
    const tokens = ['trades=45@1,quotes=5@1', 'trades=42@2', 'quotes=7@1', 'trades=43@2'];
    const primary = await server((_, i) => committed(tokens[i]));
    const s = sender(`addr=${primary.address};`);
    const seen: (string | undefined)[] = [];
    for (let i = 0; i < tokens.length; i++) {
      await addRows(s, 1, i);
      await s.flush();
      seen.push(s.lastCommitToken);
    }
    expect(seen).toEqual([
      'quotes=5@1,trades=45@1',
      'quotes=5@1,trades=42@2',
      'quotes=7@1,trades=42@2',
      'quotes=7@1,trades=43@2',
    ]);
  });

  it('refuses a row past max_buf_size and keeps the rows before it', async () => {
    const primary = await server(() => committed());
    const s = sender(`addr=${primary.address};init_buf_size=16;max_buf_size=100;`);
    await addRows(s, 2);
    const error = await s
      .table('trades')
      .stringColumn('big', 'x'.repeat(100))
      .at(1)
      .catch((e: unknown) => e);
    expect(isClientError(error, 'BUFFER_FULL')).toBe(true);
    expect((error as Error).message).toMatch(/max_buf_size is 100/);
    expect(s.bufferedRows).toBe(2);
    await s.flush();
    expect(primary.requests[0]?.body.split('\n').length).toBe(3);
  });

  it('sends Basic and Bearer credentials', async () => {
    const primary = await server(() => committed());
    const basic = sender(`addr=${primary.address};username=admin;password=p;;w;`);
    await addRows(basic, 1);
    await basic.flush();
    const bearer = sender(`addr=${primary.address};token=tok;`);
    await addRows(bearer, 1);
    await bearer.flush();
    expect(primary.requests.map((r) => r.headers.authorization)).toEqual([
      `Basic ${Buffer.from('admin:p;w').toString('base64')}`,
      'Bearer tok',
    ]);
  });

  it('auto-flushes by rows and by interval', async () => {
    const primary = await server(() => committed());
    const clock = new ManualClientClock();
    const s = Sender.fromConfig(`http::addr=${primary.address};auto_flush_rows=3;auto_flush_interval=1000;`, {
      clock,
      random: noJitter,
    });
    senders.push(s);
    await addRows(s, 2);
    expect(primary.requests.length).toBe(0);
    await addRows(s, 1, 2);
    expect(primary.requests.length).toBe(1);
    expect(primary.requests[0]?.body.split('\n').length).toBe(4);
    await addRows(s, 1, 3);
    clock.nowMs += 999;
    expect(primary.requests.length).toBe(1);
    clock.nowMs += 1;
    await addRows(s, 1, 4);
    expect(primary.requests.length).toBe(2);
    expect(s.bufferedRows).toBe(0);
  });

  it('close() flushes when auto_flush is on, and the sender refuses use afterwards', async () => {
    const primary = await server(() => committed());
    const s = Sender.fromConfig(`http::addr=${primary.address};`, { random: noJitter });
    await addRows(s, 2);
    await s.close();
    expect(primary.requests.length).toBe(1);
    expect(() => s.table('t')).toThrow(/closed/);
    expect(await s.flush().catch((e: unknown) => isClientError(e, 'CLOSED'))).toBe(true);
  });

  it('reports an unreadable tls_ca as a config error', () => {
    expect(() => Sender.fromConfig('https::addr=h;tls_ca=/nonexistent/ca.pem;')).toThrow(
      /cannot read tls_ca "\/nonexistent\/ca.pem"/,
    );
  });

  it('reset() drops buffered rows', async () => {
    const primary = await server(() => committed());
    const s = sender(`addr=${primary.address};`);
    await addRows(s, 2);
    s.reset();
    expect(s.bufferedRows).toBe(0);
    expect(await s.flush()).toBe(false);
    expect(primary.requests.length).toBe(0);
  });
});
