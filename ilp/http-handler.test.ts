import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sender } from '@questdb/nodejs-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, StoreUnavailableError, WalshipError } from '../core/index.js';
import { COMMIT_TOKEN_HEADER_BYTES_MAX, createIlpHttpHandler, type IlpHttpOptions } from './http-handler.js';
import type { IlpBatchIdentity, IlpCommit, IlpCommitResult } from './ilp-commit.js';
import type { IlpLine } from './ilp-line.js';
import { linesOf } from './line-batch.js';

/** A real node:http server on port 0 around the handler, recording commits, headers and statuses. */
interface TestServer {
  port: number;
  commits: IlpLine[][];
  requests: { method: string; url: string; headers: IncomingHttpHeaders; status: number }[];
  errors: { errorId: string; status: number }[];
  accepting: boolean;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function startServer(options: Partial<IlpHttpOptions> = {}): Promise<TestServer> {
  const state: TestServer = {
    port: 0,
    commits: [],
    requests: [],
    errors: [],
    accepting: true,
    close: async () => {},
  };
  const commit: IlpCommit = async (batch) => {
    const lines = [...linesOf(batch)];
    state.commits.push(lines);
    return { txnHeader: `${lines[0]!.table}=${state.commits.length}` };
  };
  const handler = createIlpHttpHandler({
    commit,
    acceptingWrites: () => state.accepting,
    releaseVersion: '9.9.9-test',
    onError: (_error, context) => state.errors.push(context),
    ...options,
  });
  const server: Server = createServer((req, res) => {
    res.on('finish', () =>
      state.requests.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        status: res.statusCode,
      }),
    );
    void handler(req, res).then((handled) => {
      if (!handled) {
        res.writeHead(404);
        res.end('not an ILP route');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  servers.push(state);
  return state;
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request with node:http; `chunks` sends a chunked body, `body` a Content-Length one. */
function raw(
  port: number,
  options: {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    chunks?: Buffer[];
  },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // An explicit Content-Length: node:http frames a DELETE body with neither that nor chunking.
    const headers =
      options.body === undefined
        ? options.headers
        : { 'Content-Length': String(Buffer.byteLength(options.body)), ...options.headers };
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        path: options.path ?? '/write',
        headers,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString() }),
        );
        res.on('error', reject);
      },
    );
    // The server may close while we still write a body it refused: only the response matters.
    req.on('error', (error) => reject(error));
    if (options.chunks !== undefined) {
      for (const chunk of options.chunks) req.write(chunk);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

function expectJsonError(
  response: RawResponse,
  status: number,
  code: string,
  line = 0,
): Record<string, unknown> {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toBe('application/json');
  const body = JSON.parse(response.body) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['code', 'message', 'line', 'errorId']);
  expect(body.code).toBe(code);
  expect(body.line).toBe(line);
  expect(body.errorId).toMatch(/^[0-9a-f]{8}-\d+$/);
  expect(typeof body.message).toBe('string');
  return body;
}

const field = (lines: IlpLine[], row: number, name: string) =>
  lines[row]!.fields.find((f) => f.name === name)?.value;

describe('ILP over HTTP with the official client', () => {
  it('protocol v3 (negotiated via /settings): every column type arrives exactly', async () => {
    const server = await startServer();
    const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${server.port};auto_flush=off;`);
    await sender
      .table('trades')
      .symbol('sym', 'ETH-USD')
      .symbol('side', 'sell x,y=z\\w')
      .intColumn('qty', 42)
      .intColumn('max_safe', Number.MAX_SAFE_INTEGER)
      .intColumn('min_safe', Number.MIN_SAFE_INTEGER)
      .floatColumn('price', 2615.54)
      .floatColumn('nan', Number.NaN)
      .floatColumn('inf', Number.NEGATIVE_INFINITY)
      .stringColumn('note', 'he said "hi"\nbye\r\\ ünï 🚀, a=b')
      .stringColumn('empty', '')
      .booleanColumn('ok', true)
      .booleanColumn('no', false)
      .timestampColumn('ts_us', 1700000000123456n, 'us')
      .timestampColumn('ts_ns', 1700000000123456789n, 'ns')
      .timestampColumn('ts_ms', 1700000000123, 'ms')
      .arrayColumn('matrix', [
        [1.5, 2.5],
        [3.5, 4.5],
      ])
      .arrayColumn('vector', [-0.25])
      .arrayColumn('nothing', null as unknown as unknown[])
      .decimalColumnText('dec_text', '123.4500')
      .decimalColumn('dec_bin', 12345n, 2)
      .decimalColumn('dec_neg', -(2n ** 200n), 76)
      .at(1700000000123456789n, 'ns');
    await sender.table('trades').symbol('sym', 'BTC-USD').floatColumn('price', 1).at(1700000000123456n, 'us');
    await sender.table('trades').symbol('sym', 'SOL-USD').floatColumn('price', 2).at(1700000000123, 'ms');
    await sender.flush();
    await sender.close();

    expect(server.commits).toHaveLength(1);
    const [lines] = server.commits as [IlpLine[]];
    expect(lines[0]).toStrictEqual({
      line: 1,
      table: 'trades',
      symbols: [
        { name: 'sym', value: 'ETH-USD' },
        { name: 'side', value: 'sell x,y=z\\w' },
      ],
      fields: [
        { name: 'qty', value: { type: 'long', value: 42n } },
        { name: 'max_safe', value: { type: 'long', value: 9007199254740991n } },
        { name: 'min_safe', value: { type: 'long', value: -9007199254740991n } },
        { name: 'price', value: { type: 'double', value: 2615.54 } },
        { name: 'nan', value: { type: 'double', value: Number.NaN } },
        { name: 'inf', value: { type: 'double', value: Number.NEGATIVE_INFINITY } },
        { name: 'note', value: { type: 'string', value: 'he said "hi"\nbye\r\\ ünï 🚀, a=b' } },
        { name: 'empty', value: { type: 'string', value: '' } },
        { name: 'ok', value: { type: 'boolean', value: true } },
        { name: 'no', value: { type: 'boolean', value: false } },
        { name: 'ts_us', value: { type: 'timestamp', value: 1700000000123456n } },
        { name: 'ts_ns', value: { type: 'timestamp', value: 1700000000123456n } },
        { name: 'ts_ms', value: { type: 'timestamp', value: 1700000000123000n } },
        {
          name: 'matrix',
          value: {
            type: 'double_array',
            value: { shape: [2, 2], values: new Float64Array([1.5, 2.5, 3.5, 4.5]) },
          },
        },
        {
          name: 'vector',
          value: { type: 'double_array', value: { shape: [1], values: new Float64Array([-0.25]) } },
        },
        { name: 'nothing', value: { type: 'double_array', value: null } },
        { name: 'dec_text', value: { type: 'decimal', value: { unscaled: 1234500n, scale: 4 } } },
        { name: 'dec_bin', value: { type: 'decimal', value: { unscaled: 12345n, scale: 2 } } },
        { name: 'dec_neg', value: { type: 'decimal', value: { unscaled: -(2n ** 200n), scale: 76 } } },
      ],
      timestampUs: 1700000000123456n,
    });
    expect(lines.map((l) => [l.line, l.symbols[0]!.value, l.timestampUs])).toEqual([
      [1, 'ETH-USD', 1700000000123456n],
      [2, 'BTC-USD', 1700000000123456n],
      [3, 'SOL-USD', 1700000000123000n],
    ]);
    const write = server.requests.find((r) => r.url.startsWith('/write'))!;
    expect(write.status).toBe(204);
    expect(server.requests.map((r) => r.url)).toEqual(['/settings', '/write?precision=n']);
  });

  it('protocol v1 forced: text doubles, bare ns designated timestamps', async () => {
    const server = await startServer();
    const sender = await Sender.fromConfig(
      `http::addr=127.0.0.1:${server.port};protocol_version=1;auto_flush=off;`,
    );
    await sender
      .table('v1')
      .symbol('s', 'a b')
      .floatColumn('d', 2615.54)
      .floatColumn('big', 1e21)
      .floatColumn('nan', Number.NaN)
      .floatColumn('inf', Number.POSITIVE_INFINITY)
      .floatColumn('whole', 2)
      .intColumn('i', -7)
      .stringColumn('s2', 'x"y')
      .booleanColumn('b', false)
      .timestampColumn('tn', 1700000000123456789n, 'ns')
      .at(1700000000123456789n, 'ns');
    await sender.table('v1').floatColumn('d', -1).at(1700000000123, 'ms');
    await sender.table('v1').floatColumn('d', -2).atNow();
    await sender.flush();
    await sender.close();
    const [lines] = server.commits as [IlpLine[]];
    expect(lines[0]!.fields.map((f) => [f.name, f.value])).toEqual([
      ['d', { type: 'double', value: 2615.54 }],
      ['big', { type: 'double', value: 1e21 }],
      ['nan', { type: 'double', value: Number.NaN }],
      ['inf', { type: 'double', value: Number.POSITIVE_INFINITY }],
      ['whole', { type: 'double', value: 2 }],
      ['i', { type: 'long', value: -7n }],
      ['s2', { type: 'string', value: 'x"y' }],
      ['b', { type: 'boolean', value: false }],
      ['tn', { type: 'timestamp', value: 1700000000123456n }],
    ]);
    expect(lines[0]!.symbols).toEqual([{ name: 's', value: 'a b' }]);
    expect(lines.map((l) => l.timestampUs)).toEqual([1700000000123456n, 1700000000123000n, null]);
    // protocol_version=1 skips /settings.
    expect(server.requests.map((r) => r.url)).toEqual(['/write?precision=n']);
  });

  it('stdlib_http=on sends a chunked body, which works', async () => {
    const server = await startServer();
    const sender = await Sender.fromConfig(
      `http::addr=127.0.0.1:${server.port};stdlib_http=on;auto_flush=off;`,
    );
    for (let i = 0; i < 2000; i++) {
      await sender
        .table('chunked')
        .symbol('k', `v${i % 7}`)
        .intColumn('i', i)
        .floatColumn('d', i / 4)
        .at(BigInt(i), 'ns');
    }
    await sender.flush();
    await sender.close();
    const write = server.requests.find((r) => r.url.startsWith('/write'))!;
    expect(write.headers['transfer-encoding']).toBe('chunked');
    expect(write.headers['content-length']).toBeUndefined();
    const [lines] = server.commits as [IlpLine[]];
    expect(lines).toHaveLength(2000);
    expect(field(lines, 1999, 'i')).toEqual({ type: 'long', value: 1999n });
    expect(field(lines, 1999, 'd')).toEqual({ type: 'double', value: 499.75 });
  });

  it('several flushes on one keep-alive connection are several commits', async () => {
    const server = await startServer();
    const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${server.port};auto_flush=off;`);
    for (let i = 0; i < 3; i++) {
      await sender.table('t').intColumn('i', i).atNow();
      await sender.flush();
    }
    await sender.close();
    expect(server.commits.map((c) => c.length)).toEqual([1, 1, 1]);
  });

  it('Basic and Bearer auth: right credentials write, wrong ones get 401 and the client throws', async () => {
    const server = await startServer({
      auth: { basic: [{ username: 'admin', password: 'quest' }], bearer: ['s3cr3t-token'] },
    });
    const base = `http::addr=127.0.0.1:${server.port};auto_flush=off;`;
    const write = async (config: string) => {
      const sender = await Sender.fromConfig(config);
      try {
        await sender.table('auth').intColumn('i', 1).atNow();
        await sender.flush();
      } finally {
        await sender.close();
      }
    };
    await write(`${base}username=admin;password=quest;`);
    await write(`${base}token=s3cr3t-token;`);
    expect(server.commits).toHaveLength(2);
    await expect(write(`${base}username=admin;password=wrong;`)).rejects.toThrow(/401/);
    await expect(write(`${base}username=nobody;password=quest;`)).rejects.toThrow(/401/);
    await expect(write(`${base}token=wrong-token;`)).rejects.toThrow(/401/);
    expect(server.commits).toHaveLength(2);
    expectJsonError(await raw(server.port, { body: 'auth i=1i\n' }), 401, 'unauthorised');
    expectJsonError(
      await raw(server.port, { body: 'auth i=1i\n', headers: { Authorization: 'Digest abc' } }),
      401,
      'unauthorised',
    );
    expect(server.requests.filter((r) => r.url.startsWith('/write')).map((r) => r.status)).toEqual([
      204, 204, 401, 401, 401, 401, 401,
    ]);
  });

  it('421 when not accepting writes, without committing; /settings says []', async () => {
    const server = await startServer();
    server.accepting = false;
    const sender = await Sender.fromConfig(`http::addr=127.0.0.1:${server.port};auto_flush=off;`);
    await sender.table('t').intColumn('i', 1).atNow();
    await expect(sender.flush()).rejects.toThrow(/421/);
    await sender.close();
    expect(server.commits).toHaveLength(0);
    expectJsonError(await raw(server.port, { body: 't i=1i\n' }), 421, 'not accepting writes');
    const settings = await raw(server.port, { method: 'GET', path: '/settings' });
    expect(JSON.parse(settings.body).config['accepting.writes']).toEqual([]);
  });
});

describe('ILP over HTTP: the exact protocol', () => {
  it('success is exactly 204 with no body, and carries X-Walship-Txn', async () => {
    const server = await startServer();
    const response = await raw(server.port, { body: 'trades a=1i\n' });
    expect(response.status).toBe(204);
    expect(response.body).toBe('');
    expect(response.headers['content-type']).toBeUndefined();
    expect(response.headers['x-walship-txn']).toBe('trades=1');
  });

  it('a commit token past COMMIT_TOKEN_HEADER_BYTES_MAX is left out, its table count in X-Walship-Txn-Omitted (a client would fail on the headers)', async () => {
    const tables = Array.from({ length: 2_000 }, (_, i) => `metric_${i}`);
    const server = await startServer({
      commit: async () => ({ txnHeader: tables.map((t) => `${t}=1@1`).join(',') }),
    });
    // fetch (undici) refuses a response whose headers pass 16 KiB: the write must still read as done.
    const response = await fetch(`http://127.0.0.1:${server.port}/write`, {
      method: 'POST',
      body: 'x a=1i\n',
    });
    expect(response.status).toBe(204);
    expect(response.headers.get('x-walship-txn')).toBeNull();
    expect(response.headers.get('x-walship-txn-omitted')).toBe('2000');
    const small = await startServer({ commit: async () => ({ txnHeader: 'a=1@1,b=2@1' }) });
    const answer = await fetch(`http://127.0.0.1:${small.port}/write`, { method: 'POST', body: 'x a=1i\n' });
    expect(answer.headers.get('x-walship-txn')).toBe('a=1@1,b=2@1');
    expect(answer.headers.get('x-walship-txn-omitted')).toBeNull();
    expect(tables.join(',').length).toBeGreaterThan(COMMIT_TOKEN_HEADER_BYTES_MAX);
  });

  it('/api/v2/write with precision, and int64 extremes', async () => {
    const server = await startServer();
    const body = 't max=9223372036854775807i,min=-9223372036854775808i 1700000000\n';
    expect((await raw(server.port, { path: '/api/v2/write?precision=s', body })).status).toBe(204);
    expect((await raw(server.port, { path: '/write?org=x&precision=ms&bucket=y', body })).status).toBe(204);
    expect(server.commits.map((c) => c[0]!.timestampUs)).toEqual([1700000000000000n, 1700000000000n]);
    expect(server.commits[0]![0]!.fields).toEqual([
      { name: 'max', value: { type: 'long', value: 9223372036854775807n } },
      { name: 'min', value: { type: 'long', value: -9223372036854775808n } },
    ]);
  });

  it('an unsupported precision is 400 not supported', async () => {
    const server = await startServer();
    const body = expectJsonError(
      await raw(server.port, { path: '/write?precision=days', body: 't a=1\n' }),
      400,
      'not supported',
    );
    expect(body.message).toContain("unsupported precision 'days'");
    expect(server.commits).toHaveLength(0);
  });

  it('a parse error is 400 with the line number, and nothing is committed', async () => {
    const server = await startServer();
    const response = await raw(server.port, { body: 'ok a=1\nok b=2\nbad c=1.2.3\nok d=4\n' });
    const body = expectJsonError(response, 400, 'invalid', 3);
    expect(body.message).toBe(
      'failed to parse line protocol:errors encountered on line(s):\nerror in line 3: ' +
        'Could not parse entire line, field value is invalid. Field: c; value: 1.2.3',
    );
    expect(server.commits).toHaveLength(0);
  });

  it('an empty body is 204 and commits nothing', async () => {
    const server = await startServer();
    expect((await raw(server.port, { body: '' })).status).toBe(204);
    expect((await raw(server.port, { body: '# only a comment\n\n' })).status).toBe(204);
    expect(server.commits).toHaveLength(0);
  });

  it('other methods on the write routes are 405', async () => {
    const server = await startServer();
    for (const [method, path] of [
      ['GET', '/write'],
      ['PUT', '/api/v2/write'],
      ['DELETE', '/write?precision=n'],
      ['POST', '/ping'],
      ['POST', '/settings'],
    ] as const) {
      const response = await raw(server.port, {
        method,
        path,
        body: method === 'GET' ? undefined : 't a=1\n',
      });
      expectJsonError(response, 405, 'method not allowed');
      expect(response.headers.allow).toBeDefined();
    }
  });

  it('a body over maxRequestBytes is 413, declared or chunked, and reading stops', async () => {
    const server = await startServer({ maxRequestBytes: 1024 });
    const line = Buffer.from(`t s="${'x'.repeat(100)}"\n`);
    const declared = await raw(server.port, { body: Buffer.concat(Array(20).fill(line)) });
    expectJsonError(declared, 413, 'request too large');
    expect(declared.headers.connection).toBe('close');
    const chunked = await raw(server.port, { chunks: Array(20).fill(line) });
    expectJsonError(chunked, 413, 'request too large');
    expect((await raw(server.port, { chunks: Array(9).fill(line) })).status).toBe(204);
    expect(server.commits).toHaveLength(1);
  });

  it('bodies beyond maxInflightBytes wait unread, and get 503 (retryable) when no room comes in time', async () => {
    let letFirstGo!: () => void;
    const firstHeld = new Promise<void>((resolve) => {
      letFirstGo = resolve;
    });
    const committed: string[] = [];
    const logged: unknown[] = [];
    const server = await startServer({
      maxRequestBytes: 1000,
      maxInflightBytes: 1000,
      inflightWaitMs: 300,
      onError: (error) => logged.push(error),
      commit: async (lines) => {
        const table = linesOf(lines)[0]!.table;
        committed.push(table);
        if (table === 'first') await firstHeld;
        return { txnHeader: `${table}=1` };
      },
    });
    const body = (table: string) => `${table} s="${'x'.repeat(600)}"\n`;
    const first = raw(server.port, { body: body('first') });
    await until(() => committed.length === 1);
    // 600 + 600 bytes do not fit in 1000: the second waits unread, then is refused.
    const refused = await raw(server.port, { body: body('second') });
    const error = expectJsonError(refused, 503, 'internal error');
    expect(error.message).toContain('line.http.max.inflight.size');
    expect(refused.headers['retry-after']).toBe('1');
    expect(committed).toEqual(['first']);
    // A chunked body counts as maxRequestBytes until read: 12 bytes that would fit wait too.
    expectJsonError(
      await raw(server.port, { chunks: [Buffer.from('chunked a=1\n')] }),
      503,
      'internal error',
    );
    letFirstGo();
    expect((await first).status).toBe(204);
    expect((await raw(server.port, { chunks: [Buffer.from('third a=1\n')] })).status).toBe(204);
    expect(committed).toEqual(['first', 'third']);
    // The operator hears of each refusal with its code.
    expect(logged.map((error) => (error as WalshipError).code)).toEqual(['INFLIGHT_FULL', 'INFLIGHT_FULL']);
  });

  it('a request waiting for room is let in when room comes', async () => {
    let letFirstGo!: () => void;
    const firstHeld = new Promise<void>((resolve) => {
      letFirstGo = resolve;
    });
    const committed: string[] = [];
    const server = await startServer({
      maxRequestBytes: 1000,
      maxInflightBytes: 1000,
      inflightWaitMs: 60_000,
      commit: async (lines) => {
        const table = linesOf(lines)[0]!.table;
        committed.push(table);
        if (table === 'first') await firstHeld;
        return { txnHeader: `${table}=1` };
      },
    });
    const first = raw(server.port, { body: `first s="${'x'.repeat(600)}"\n` });
    await until(() => committed.length === 1);
    const second = raw(server.port, { body: `second s="${'x'.repeat(600)}"\n` });
    // Give the second request time to arrive and queue; it must not be read or committed.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(committed).toEqual(['first']);
    letFirstGo();
    expect((await first).status).toBe(204);
    expect((await second).status).toBe(204);
    expect(committed).toEqual(['first', 'second']);
  });

  it('reads every chunk of a body that something else listens to already, with room at once or after a wait', async () => {
    // As a diagnostics_channel subscriber that captures bodies would (bench/ingest.ts does): the
    // request flows from its 'request' event on, before the handler reads it.
    let letFirstGo!: () => void;
    const firstHeld = new Promise<void>((resolve) => {
      letFirstGo = resolve;
    });
    const committed: number[] = [];
    const handler = createIlpHttpHandler({
      commit: async (lines) => {
        const count = linesOf(lines).length;
        committed.push(count);
        if (committed.length === 1) await firstHeld;
        return {};
      },
      acceptingWrites: () => true,
      releaseVersion: 'x',
      maxRequestBytes: 600_000,
      maxInflightBytes: 1_000_000,
      inflightWaitMs: 60_000,
    });
    const seen: number[] = [];
    const server = createServer((req, res) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      req.on('end', () => seen.push(bytes));
      void handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const body = Buffer.from('t a=1i\n'.repeat(70_000)); // 490 000 bytes: many chunks
      const first = raw(port, { body });
      await until(() => committed.length === 1);
      // 490 000 + 490 000 do not fit in 1 000 000 bytes: the second waits for the first.
      const second = raw(port, { body });
      await new Promise((resolve) => setTimeout(resolve, 100));
      letFirstGo();
      expect((await first).status).toBe(204);
      expect((await second).status).toBe(204);
      expect(committed).toEqual([70_000, 70_000]);
      expect(seen).toEqual([body.length, body.length]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('maxInflightBytes below maxRequestBytes is refused', () => {
    expect(() =>
      createIlpHttpHandler({
        commit: async () => ({}),
        acceptingWrites: () => true,
        releaseVersion: 'x',
        maxRequestBytes: 2048,
        maxInflightBytes: 1024,
      }),
    ).toThrow(/maxInflightBytes/);
  });

  it('a line over maxLineBytes is 413 with its line number', async () => {
    const server = await startServer({ limits: { maxLineBytes: 64 } });
    const response = await raw(server.port, { body: `t a=1\nt s="${'x'.repeat(100)}"\n` });
    expectJsonError(response, 413, 'request too large', 2);
    expect(server.commits).toHaveLength(0);
  });

  it('Content-Encoding gzip is 415 not supported', async () => {
    const server = await startServer();
    const response = await raw(server.port, { body: 't a=1\n', headers: { 'Content-Encoding': 'gzip' } });
    expectJsonError(response, 415, 'not supported');
    expect(server.commits).toHaveLength(0);
    expect(
      (await raw(server.port, { body: 't a=1\n', headers: { 'Content-Encoding': 'identity' } })).status,
    ).toBe(204);
  });

  it('maps commit rejections by kind and never leaks internals', async () => {
    const failures: Record<string, () => never> = {
      invalid: () => {
        throw new WalshipError('TYPE_CONFLICT', 'invalid', 'table: invalid, column: a; cast error', {
          details: { line: 1 },
        });
      },
      fenced: () => {
        throw new WalshipError('FENCED', 'fenced', 'epoch 3 superseded by 4');
      },
      closed: () => {
        throw new ClosedError('primary closed');
      },
      unavailable: () => {
        throw new StoreUnavailableError('bucket secret-bucket unreachable');
      },
      boom: () => {
        throw new Error('secret internals at /srv/data');
      },
    };
    const server = await startServer({ commit: async (lines) => failures[linesOf(lines)[0]!.table]!() });
    const invalid = expectJsonError(await raw(server.port, { body: 'invalid a=1\n' }), 400, 'invalid', 1);
    expect(invalid.message).toBe('table: invalid, column: a; cast error');
    expectJsonError(await raw(server.port, { body: 'fenced a=1\n' }), 421, 'not accepting writes');
    expectJsonError(await raw(server.port, { body: 'closed a=1\n' }), 421, 'not accepting writes');
    const unavailable = await raw(server.port, { body: 'unavailable a=1\n' });
    expectJsonError(unavailable, 503, 'internal error');
    const boom = await raw(server.port, { body: 'boom a=1\n' });
    expectJsonError(boom, 500, 'internal error');
    expect(unavailable.body + boom.body).not.toMatch(/secret|srv|at \//);
    expect(server.errors.map((e) => e.status)).toEqual([503, 500]);
    expect(server.errors[1]!.errorId).toBe(JSON.parse(boom.body).errorId);
  });

  it('/ping answers 204 with the InfluxDB version, GET and HEAD', async () => {
    const server = await startServer({ auth: { bearer: ['x'] } });
    for (const method of ['GET', 'HEAD']) {
      const response = await raw(server.port, { method, path: '/ping' });
      expect(response.status).toBe(204);
      expect(response.headers['x-influxdb-version']).toBe('v2.7.4');
      expect(response.body).toBe('');
    }
  });

  it('/settings is the exact QuestDB body, open without auth', async () => {
    const server = await startServer({ auth: { bearer: ['x'] } });
    const response = await raw(server.port, { method: 'GET', path: '/settings' });
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe('application/json');
    expect(response.body).toBe(
      '{"config":{"release.type":"OSS","release.version":"9.9.9-test","accepting.writes":["http","tcp"],' +
        '"line.proto.support.versions":[1,2,3],"ilp.proto.transports":["tcp","http"],' +
        '"cairo.max.file.name.length":127},"preferences.version":0,"preferences":{}}',
    );
  });

  it('the handler is a route function and has the same function as .handle', () => {
    const handler = createIlpHttpHandler({
      commit: async () => ({}),
      acceptingWrites: () => true,
      releaseVersion: 'x',
    });
    expect(handler.handle).toBe(handler);
  });

  it('releaseType is configurable (the exact-body test shows the OSS default)', async () => {
    const server = await startServer({ releaseType: 'walship' });
    const response = await raw(server.port, { method: 'GET', path: '/settings' });
    expect(JSON.parse(response.body).config['release.type']).toBe('walship');
  });

  it('other paths are left to the caller', async () => {
    const server = await startServer();
    for (const path of ['/', '/exec?query=x', '/writes', '/api/v2/write/x', '/status']) {
      const response = await raw(server.port, { method: 'GET', path });
      expect(response.status).toBe(404);
      expect(response.body).toBe('not an ILP route');
    }
  });
});

describe('X-Walship-Batch (RFC-0011)', () => {
  const BODY = 'trades,s=a v=1i 1000\n';
  /** A write path that records the identity it was given and answers as a batching primary would. */
  async function batchingServer(answer: (batch: IlpBatchIdentity | undefined) => Promise<IlpCommitResult>) {
    const seen: (IlpBatchIdentity | undefined)[] = [];
    const server = await startServer({
      commit: async (_lines, request) => {
        seen.push(request.batch);
        return answer(request.batch);
      },
    });
    return { server, seen };
  }

  it('hands the identity and the SHA-256 prefix of the body to the write path, and answers its status', async () => {
    const { server, seen } = await batchingServer(async (batch) => ({
      txnHeader: 'trades=1@2',
      ...(batch === undefined ? {} : { batch: 'replayed' as const }),
    }));
    const response = await raw(server.port, { body: BODY, headers: { 'X-Walship-Batch': 'w-1.a_b:42' } });
    expect(response.status).toBe(204);
    expect(response.headers['x-walship-batch-status']).toBe('replayed');
    expect(response.headers['x-walship-txn']).toBe('trades=1@2');
    expect(seen[0]).toEqual({
      writer: 'w-1.a_b',
      seq: 42n,
      hash: new Uint8Array(createHash('sha256').update(BODY).digest().subarray(0, 16)),
    });
    // Without the header: no identity, no status.
    const plain = await raw(server.port, { body: BODY });
    expect(plain.headers['x-walship-batch-status']).toBeUndefined();
    expect(seen[1]).toBeUndefined();
  });

  it.each([
    'w-1',
    ':1',
    'w-1:0',
    'w-1:01',
    'w 1:1',
    `${'w'.repeat(65)}:1`,
    'w-1:9223372036854775808',
    'w-1:-1',
  ])('refuses %j with 400 BATCH_ID_INVALID, and commits nothing', async (header) => {
    const { server, seen } = await batchingServer(async () => ({}));
    const response = await raw(server.port, { body: BODY, headers: { 'X-Walship-Batch': header } });
    expect(response.status).toBe(400);
    expect(JSON.parse(response.body)).toMatchObject({ code: 'BATCH_ID_INVALID', line: 0 });
    expect(seen).toEqual([]);
  });

  it('accepts the largest seq, 2^63-1', async () => {
    const { server, seen } = await batchingServer(async () => ({ batch: 'committed' }));
    const response = await raw(server.port, {
      body: BODY,
      headers: { 'X-Walship-Batch': 'w:9223372036854775807' },
    });
    expect(response.status).toBe(204);
    expect(seen[0]?.seq).toBe((1n << 63n) - 1n);
  });

  it('answers a conflict (an identity reused for other content) 409 with the JSON error shape', async () => {
    const { server } = await batchingServer(async () => {
      throw new WalshipError('BATCH_CONFLICT', 'conflict', 'batch w:1 was committed with other content');
    });
    const response = await raw(server.port, { body: BODY, headers: { 'X-Walship-Batch': 'w:1' } });
    expect(response.status).toBe(409);
    expect(Object.keys(JSON.parse(response.body)).sort()).toEqual(['code', 'errorId', 'line', 'message']);
    expect(JSON.parse(response.body)).toMatchObject({ code: 'BATCH_CONFLICT', line: 0 });
  });
});
