import { Buffer } from 'node:buffer';
import { generateKeyPairSync, type JsonWebKey, sign } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Sender } from '@questdb/nodejs-client';
import { afterEach, describe, expect, it } from 'vitest';
import { WalshipError } from '../core/index.js';
import type { IlpCommit } from './ilp-commit.js';
import type { IlpLine } from './ilp-line.js';
import { lineCountOf, linesOf } from './line-batch.js';
import { type IlpTcpServer, type IlpTcpServerOptions, startIlpTcpServer } from './tcp-server.js';
import { binaryDouble } from './testing/request-bytes.js';

interface Harness {
  server: IlpTcpServer;
  commits: IlpLine[][];
  logs: string[];
  accepting: { value: boolean };
}

const harnesses: Harness[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(harnesses.splice(0).map((h) => h.server.close()));
});

async function start(options: Partial<IlpTcpServerOptions> = {}): Promise<Harness> {
  const commits: IlpLine[][] = [];
  const logs: string[] = [];
  const accepting = { value: true };
  const commit: IlpCommit = async (lines) => {
    commits.push([...linesOf(lines)]);
    return {};
  };
  const server = await startIlpTcpServer({
    host: '127.0.0.1',
    port: 0,
    commit,
    acceptingWrites: () => accepting.value,
    log: (message) => logs.push(message),
    ...options,
  });
  const harness = { server, commits, logs, accepting };
  harnesses.push(harness);
  return harness;
}

/** Resolves when `condition` holds, polling; fails after `timeoutMs`. */
async function eventually(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The client logs every connection to the console; the tests have nothing to learn from that. */
const QUIET = { log: () => {} };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw client socket; resolves once connected. */
async function rawClient(
  port: number,
): Promise<{ socket: Socket; closed: Promise<void>; received: Buffer[] }> {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed, received };
}

const allLines = (harness: Harness) => harness.commits.flat();

describe('ILP over TCP with the official client', () => {
  it('protocol v1 (the TCP default): rows arrive exactly', async () => {
    const harness = await start();
    const sender = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${harness.server.port};auto_flush=off;`,
      QUIET,
    );
    await sender.connect();
    await sender
      .table('trades')
      .symbol('sym', 'ETH-USD')
      .symbol('side', 'sell x,y=z')
      .intColumn('qty', 42)
      .floatColumn('price', 2615.54)
      .stringColumn('note', 'he said "hi"\nbye')
      .booleanColumn('ok', true)
      .timestampColumn('ts_col', 1700000000123456n, 'us')
      .at(1700000000123456789n, 'ns');
    await sender.table('trades').symbol('sym', 'BTC-USD').floatColumn('price', 1).atNow();
    await sender.flush();
    await eventually(() => allLines(harness).length === 2);
    await sender.close();
    expect(allLines(harness)).toStrictEqual([
      {
        line: 1,
        table: 'trades',
        symbols: [
          { name: 'sym', value: 'ETH-USD' },
          { name: 'side', value: 'sell x,y=z' },
        ],
        fields: [
          { name: 'qty', value: { type: 'long', value: 42n } },
          { name: 'price', value: { type: 'double', value: 2615.54 } },
          { name: 'note', value: { type: 'string', value: 'he said "hi"\nbye' } },
          { name: 'ok', value: { type: 'boolean', value: true } },
          { name: 'ts_col', value: { type: 'timestamp', value: 1700000000123456n } },
        ],
        timestampUs: 1700000000123456n,
      },
      {
        line: 2,
        table: 'trades',
        symbols: [{ name: 'sym', value: 'BTC-USD' }],
        fields: [{ name: 'price', value: { type: 'double', value: 1 } }],
        timestampUs: null,
      },
    ]);
  });

  it('protocol v2 forced: binary doubles and arrays, many rows in batches', async () => {
    const harness = await start();
    const sender = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${harness.server.port};protocol_version=2;auto_flush=off;`,
      QUIET,
    );
    await sender.connect();
    for (let i = 0; i < 5000; i++) {
      await sender
        .table('v2')
        .symbol('k', `s${i % 3}`)
        .floatColumn('d', i + 0.5)
        .arrayColumn('a', [i, -i])
        .at(BigInt(i) * 1000n, 'ns');
    }
    await sender.flush();
    await eventually(() => allLines(harness).length === 5000);
    await sender.close();
    const lines = allLines(harness);
    expect(lines[4999]!.fields).toEqual([
      { name: 'd', value: { type: 'double', value: 4999.5 } },
      {
        name: 'a',
        value: { type: 'double_array', value: { shape: [2], values: new Float64Array([4999, -4999]) } },
      },
    ]);
    expect(lines.map((l) => l.line)).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
    expect(lines.map((l) => l.timestampUs)).toEqual(Array.from({ length: 5000 }, (_, i) => BigInt(i)));
  });
});

describe('ILP over TCP: authentication', () => {
  const keyPair = () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const serverKey = (keyId: string, jwk: JsonWebKey) => ({ keyId, publicKeyX: jwk.x!, publicKeyY: jwk.y! });

  it('the official client passes the challenge with username=<keyId>;token=<d>', async () => {
    const jwk = keyPair();
    const harness = await start({
      auth: { keys: [serverKey('other', keyPair()), serverKey('testUser1', jwk)] },
    });
    const sender = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${harness.server.port};username=testUser1;token=${jwk.d};auto_flush=off;`,
      QUIET,
    );
    await sender.connect();
    await sender.table('secure').intColumn('i', 7).atNow();
    await sender.flush();
    await eventually(() => allLines(harness).length === 1);
    await sender.close();
    expect(allLines(harness)[0]!.fields).toEqual([{ name: 'i', value: { type: 'long', value: 7n } }]);
  });

  it('a wrong key closes the connection and commits nothing', async () => {
    const harness = await start({ auth: { keys: [serverKey('testUser1', keyPair())] } });
    const sender = await Sender.fromConfig(
      `tcp::addr=127.0.0.1:${harness.server.port};username=testUser1;token=${keyPair().d};auto_flush=off;`,
      QUIET,
    );
    // The client does not wait for a verdict: it sends its rows, which must go nowhere.
    await sender.connect();
    await sender.table('secure').intColumn('i', 7).atNow();
    await sender.flush().catch(() => {});
    await eventually(() => harness.logs.some((l) => l.includes('bad signature')));
    await sleep(100);
    await sender.close();
    expect(harness.commits).toHaveLength(0);
  });

  it('an unknown key id is closed before any challenge', async () => {
    const harness = await start({ auth: { keys: [serverKey('testUser1', keyPair())] } });
    const { socket, closed, received } = await rawClient(harness.server.port);
    socket.write('intruder\nt a=1\n');
    await closed;
    expect(Buffer.concat(received)).toHaveLength(0);
    expect(harness.logs.join('\n')).toContain('unknown key id');
    expect(harness.logs.join('\n')).not.toContain('intruder');
    expect(harness.commits).toHaveLength(0);
  });

  it('the challenge is 512 printable bytes; DER and P1363 signatures both pass', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = privateKey.export({ format: 'jwk' });
    const harness = await start({ auth: { keys: [serverKey('k', jwk)] } });
    for (const dsaEncoding of ['der', 'ieee-p1363'] as const) {
      const { socket, received } = await rawClient(harness.server.port);
      socket.write('k\n');
      await eventually(() => Buffer.concat(received).includes(10));
      const challenge = Buffer.concat(received);
      expect(challenge).toHaveLength(513);
      expect([...challenge.subarray(0, 512)].every((b) => b >= 0x21 && b <= 0x7e)).toBe(true);
      const signature = sign('sha256', challenge.subarray(0, 512), { key: privateKey, dsaEncoding });
      socket.write(`${signature.toString('base64')}\n${dsaEncoding} a=1i\n`);
      await eventually(() => allLines(harness).some((l) => l.table === dsaEncoding));
      socket.destroy();
    }
  });

  it('a client that never answers the challenge is closed after authTimeoutMs', async () => {
    const harness = await start({ auth: { keys: [serverKey('k', keyPair())] }, authTimeoutMs: 100 });
    const { closed } = await rawClient(harness.server.port);
    await closed;
    expect(harness.logs.join('\n')).toContain('authentication timed out');
  });
});

describe('ILP over TCP: batches, errors and backpressure', () => {
  it('a parse error closes the connection; earlier batches stay committed, the bad one commits nothing', async () => {
    const harness = await start();
    const { socket, closed } = await rawClient(harness.server.port);
    socket.write('good a=1i\n');
    await eventually(() => allLines(harness).length === 1);
    socket.write('good a=2i\nbad a=1.2.3\ngood a=3i\n');
    await closed;
    expect(allLines(harness).map((l) => l.fields[0]!.value)).toEqual([{ type: 'long', value: 1n }]);
    expect(harness.logs.join('\n')).toMatch(/parse error \(ILP_PARSE at line 3\)/);
  });

  it('a refused commit closes the connection', async () => {
    const harness = await start({
      commit: async () => {
        throw new WalshipError('FENCED', 'fenced', 'demoted');
      },
    });
    const { socket, closed } = await rawClient(harness.server.port);
    socket.write('t a=1\n');
    await closed;
    expect(harness.logs.join('\n')).toContain('commit refused (FENCED)');
  });

  it('closes new connections at once when not accepting writes', async () => {
    const harness = await start();
    harness.accepting.value = false;
    const { socket, closed } = await rawClient(harness.server.port);
    socket.write('t a=1\n');
    await closed;
    expect(harness.commits).toHaveLength(0);
  });

  it('lines split anywhere across packets, even inside a binary value holding LF bytes', async () => {
    const harness = await start();
    const lf = Buffer.alloc(8, 10).readDoubleLE(0);
    const body = Buffer.concat([Buffer.from('t a'), binaryDouble(lf), Buffer.from(',s="x"\r\nt b=2i\n')]);
    const { socket } = await rawClient(harness.server.port);
    for (const byte of body) {
      socket.write(Buffer.from([byte]));
      await sleep(0);
    }
    await eventually(() => allLines(harness).length === 2);
    expect(allLines(harness)[0]!.fields).toEqual([
      { name: 'a', value: { type: 'double', value: lf } },
      { name: 's', value: { type: 'string', value: 'x' } },
    ]);
    expect(allLines(harness)[1]!.line).toBe(2);
  });

  it('an incomplete last line at disconnect is dropped, never committed truncated', async () => {
    const harness = await start();
    const { socket, closed } = await rawClient(harness.server.port);
    socket.end('t a=1i\nt a=12');
    await closed;
    await sleep(50);
    expect(allLines(harness).map((l) => l.fields[0]!.value)).toEqual([{ type: 'long', value: 1n }]);
  });

  it('a line that never ends is refused at maxLineBytes instead of buffered', async () => {
    const harness = await start({ maxLineBytes: 1024 });
    const { socket, closed } = await rawClient(harness.server.port);
    socket.write(`t s="${'x'.repeat(4096)}`);
    await closed;
    expect(harness.logs.join('\n')).toContain('ILP_PARSE at line 1');
  });

  it('commits one batch at a time per connection, pausing the socket meanwhile', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const batches: number[] = [];
    const harness = await start({
      maxLineBytes: 1024,
      maxBatchBytes: 4096,
      commit: async (lines) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        batches.push(lineCountOf(lines));
        await sleep(5);
        inFlight--;
        return {};
      },
    });
    const { socket } = await rawClient(harness.server.port);
    const line = 'flow,k=v a=1i,b=2.5,c="some text" 1700000000123456789\n';
    socket.write(line.repeat(5000));
    await eventually(() => batches.reduce((a, b) => a + b, 0) === 5000, 10_000);
    expect(maxInFlight).toBe(1);
    // Every batch fits maxBatchBytes, so there are many, each with many lines.
    expect(Math.max(...batches)).toBeLessThanOrEqual(Math.floor(4096 / line.length));
    expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(5000 / Math.floor(4096 / line.length)));
  });

  it('close() closes open connections and waits for a batch being committed', async () => {
    let release: () => void = () => {};
    let committed = false;
    const harness = await start({
      commit: async () => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        committed = true;
        return {};
      },
    });
    const { socket, closed } = await rawClient(harness.server.port);
    socket.write('t a=1\n');
    await sleep(50);
    const closing = harness.server.close();
    harnesses.splice(harnesses.indexOf(harness), 1);
    await closed;
    expect(committed).toBe(false);
    release();
    await closing;
    expect(committed).toBe(true);
  });
});

describe('ILP over TCP, a connection sending many lines at once', () => {
  it('commits them in batches of at most 4096 lines, freeing the event loop between batches', async () => {
    const commits: number[] = [];
    /** Per batch after the first: did a callback queued (setImmediate) during the one before run? */
    const loopFreed: boolean[] = [];
    let queued: { ran: boolean } | null = null;
    const commit: IlpCommit = async (lines) => {
      if (queued !== null) loopFreed.push(queued.ran);
      const mark = { ran: false };
      setImmediate(() => {
        mark.ran = true;
      });
      queued = mark;
      commits.push(lineCountOf(lines));
      return {};
    };
    const harness = await start({ commit, maxBatchBytes: 16 * 1024 * 1024 });
    const { socket } = await rawClient(harness.server.port);
    const rows = 10_000;
    const body = Buffer.from(Array.from({ length: rows }, (_, i) => `t v=${i}i\n`).join(''));
    // One chunk: the server sees every line at once.
    socket.write(body);
    await eventually(() => commits.reduce((a, b) => a + b, 0) === rows);
    expect(Math.max(...commits)).toBeLessThanOrEqual(4096);
    expect(commits.length).toBeGreaterThanOrEqual(3);
    expect(loopFreed.every((freed) => freed)).toBe(true);
  });
});
