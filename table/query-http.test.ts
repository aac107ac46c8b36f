import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { systemClock, WalshipError } from '../core/index.js';
import { createQueryHttpHandler, parseQuestDbLimit } from './query-http.js';
import { QueryPool } from './query-pool.js';

const SLOW_STREAMING =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) ' +
  'SELECT x FROM c WHERE x % 1000 = 0';
const TOKEN = 'let-me-read';
const FIXED_WALL_MS = 1_700_000_000_000;

let dir: string;
let pool: QueryPool;
let server: Server;
let base: string;

/** A second server on the same pool whose reads go through `consistency`, which tests replace. */
type ConsistencyHook = (
  req: IncomingMessage,
  params: URLSearchParams,
  signal: AbortSignal,
) => Promise<Record<string, string>>;
let consistency: ConsistencyHook;
let consistencyServer: Server;
let consistencyBase: string;
/** Per request the consistency server handled: whether it answered anything. */
const consistencyAnswers: { headersSent: boolean }[] = [];

/** QuestDB's error body. */
interface ExecError {
  query: string;
  error: string;
  position: number;
}

async function errorOf(res: Response): Promise<ExecError> {
  return (await res.json()) as ExecError;
}

function get(path: string, params: Record<string, string>, headers: Record<string, string> = {}) {
  const url = `${base}${path}?${new URLSearchParams(params)}`;
  return fetch(url, { headers: { 'x-token': TOKEN, ...headers } });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-query-http-'));
  const file = join(dir, 'node.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE trades (timestamp TIMESTAMP_INT, sym SYMBOL_TEXT, qty LONG_INT)');
  const insert = db.prepare('INSERT INTO trades VALUES (?, ?, ?)');
  for (let i = 0; i < 5; i++)
    insert.run(BigInt(i) * 1_000_000n, `S${i}`, 9_223_372_036_854_775_800n + BigInt(i));
  db.close();

  // One host and no queue, so a slow query makes the next one find the pool busy.
  pool = await QueryPool.start({ databaseFile: file, workers: 1, maxQueueLength: 0, queryTimeoutMs: 700 });
  const handler = createQueryHttpHandler(pool, {
    auth: (req) => req.headers['x-token'] === TOKEN,
    clock: { ...systemClock, wallMs: () => FIXED_WALL_MS, monotonicMs: () => 0, sleep: async () => {} },
  });
  server = createServer((req, res) => {
    handler.handle(req, res).then((handled) => {
      if (handled) return;
      res.writeHead(404);
      res.end('not here');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const consistencyHandler = createQueryHttpHandler(pool, {
    auth: (req) => req.headers['x-token'] === TOKEN,
    consistency: (req, params, signal) => consistency(req, params, signal),
  });
  consistencyServer = createServer((req, res) => {
    void consistencyHandler.handle(req, res).then(() => {
      consistencyAnswers.push({ headersSent: res.headersSent });
    });
  });
  await new Promise<void>((resolve) => consistencyServer.listen(0, '127.0.0.1', resolve));
  consistencyBase = `http://127.0.0.1:${(consistencyServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => consistencyServer.close(resolve));
  await new Promise((resolve) => server.close(resolve));
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /exec', () => {
  test('answers QuestDB’s JSON with exact int64s', async () => {
    const res = await get('/exec', { query: 'SELECT * FROM trades LIMIT 2' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.text()).toBe(
      '{"query":"SELECT * FROM trades LIMIT 2","columns":[{"name":"timestamp","type":"TIMESTAMP"},' +
        '{"name":"sym","type":"SYMBOL"},{"name":"qty","type":"LONG"}],"timestamp":0,' +
        '"dataset":[["1970-01-01T00:00:00.000000Z","S0",9223372036854775800],' +
        '["1970-01-01T00:00:01.000000Z","S1",9223372036854775801]],"count":2}',
    );
  });

  test('limit=lo,hi is 1-based and inclusive; count=true counts every row; nm=true drops metadata', async () => {
    const res = await get('/exec', {
      query: 'SELECT sym FROM trades',
      limit: '2,3',
      count: 'true',
      nm: 'true',
    });
    expect(await res.text()).toBe('{"dataset":[["S1"],["S2"]],"count":5}');
    const first = await get('/exec', { query: 'SELECT sym FROM trades', limit: '1', timings: 'true' });
    expect(JSON.parse(await first.text())).toMatchObject({ dataset: [['S0']], count: 1 });
  });

  test('bad SQL is 400 with QuestDB’s error shape', async () => {
    const res = await get('/exec', { query: 'SELECT * FROM nope' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      query: 'SELECT * FROM nope',
      error: 'no such table: nope',
      position: 14,
    });
    const empty = await get('/exec', { query: '' });
    expect([empty.status, (await errorOf(empty)).error]).toEqual([400, 'No query text']);
  });

  test('a write is 400 and changes nothing', async () => {
    const res = await get('/exec', { query: 'DELETE FROM trades' });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).error).toMatch(/read-only/);
    const count = await get('/exec', { query: 'SELECT count(*) FROM trades', nm: 'true' });
    expect(await count.text()).toBe('{"dataset":[[5]],"count":1}');
  });

  test('a query past its time limit is 503, and so is a query that finds the pool busy', async () => {
    const slow = get('/exec', { query: SLOW_STREAMING });
    await waitUntilBusy();
    const busy = await get('/exec', { query: 'SELECT 1' });
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect((await errorOf(busy)).error).toMatch(/busy/);
    const timedOut = await slow;
    expect(timedOut.status).toBe(503);
    expect(await timedOut.json()).toMatchObject({ query: SLOW_STREAMING, position: 0 });
    await waitUntilReady();
    expect((await get('/exec', { query: 'SELECT 1 AS one', nm: 'true' })).status).toBe(200);
  });

  test('a client that hangs up frees its host', async () => {
    const timedOutBefore = pool.stats().timedOut;
    const controller = new AbortController();
    const url = `${base}/exec?${new URLSearchParams({ query: SLOW_STREAMING })}`;
    const request = fetch(url, { headers: { 'x-token': TOKEN }, signal: controller.signal }).catch(
      () => null,
    );
    await waitUntilBusy();
    const [hostPid] = pool.hostPids().busy;
    controller.abort();
    await request;
    await waitUntilReady();
    // Freed by the hang-up (its host killed and replaced), not by the time limit.
    expect(pool.stats().timedOut).toBe(timedOutBefore);
    expect(hostPid).toBeDefined();
    expect(pool.hostPids().idle).not.toContain(hostPid);
  });
});

describe('GET /exp', () => {
  test('answers a CSV attachment', async () => {
    const res = await get('/exp', { query: 'SELECT timestamp, sym FROM trades', limit: '1,3' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toBe(
      `attachment; filename="questdb-query-${FIXED_WALL_MS}.csv"`,
    );
    expect(await res.text()).toBe(
      '"timestamp","sym"\r\n"1970-01-01T00:00:01.000000Z","S1"\r\n"1970-01-01T00:00:02.000000Z","S2"\r\n',
    );
  });

  test('honours nm, delimiter and a file name made safe for the header', async () => {
    const res = await get('/exp', {
      query: 'SELECT sym, qty FROM trades LIMIT 1',
      nm: 'true',
      delimiter: ';',
      filename: 'my "file"',
    });
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="my__file_.csv"');
    expect(await res.text()).toBe('"S0";9223372036854775800\r\n');
  });

  test('errors are JSON, as QuestDB answers them', async () => {
    const res = await get('/exp', { query: 'DROP TABLE trades' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect((await errorOf(res)).query).toBe('DROP TABLE trades');
  });
});

describe('routing and access', () => {
  test('other paths are left to the caller', async () => {
    const res = await fetch(`${base}/write`);
    expect([res.status, await res.text()]).toEqual([404, 'not here']);
  });

  test('auth refusal is 401; other methods are 405', async () => {
    const refused = await get('/exec', { query: 'SELECT 1' }, { 'x-token': 'wrong' });
    expect(refused.status).toBe(401);
    const post = await fetch(`${base}/exec?query=SELECT%201`, {
      method: 'POST',
      headers: { 'x-token': TOKEN },
    });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET']);
  });
});

describe('the consistency hook', () => {
  const calls: { path: string; minTxn: string | null; header: string | undefined; aborted: boolean }[] = [];
  const consistentGet = (
    path: string,
    params: Record<string, string>,
    headers: Record<string, string> = {},
  ) =>
    fetch(`${consistencyBase}${path}?${new URLSearchParams(params)}`, {
      headers: { 'x-token': TOKEN, ...headers },
    });
  const refuseWith = (error: Error) => {
    consistency = async () => {
      throw error;
    };
  };

  beforeEach(() => {
    calls.length = 0;
    consistency = async (req, params, signal) => {
      calls.push({
        path: req.url?.split('?')[0] ?? '',
        minTxn: params.get('min_txn'),
        header: req.headers['x-walship-min-txn'] as string | undefined,
        aborted: signal.aborted,
      });
      return { 'x-walship-applied-txn': 'trades=7', 'x-walship-staleness-ms': '12' };
    };
  });

  test('runs before /exec and /exp, sees the request, and its headers go on the answer', async () => {
    const exec = await consistentGet(
      '/exec',
      { query: 'SELECT 1 AS one', nm: 'true', min_txn: 'trades=7' },
      { 'x-walship-min-txn': 'trades=6' },
    );
    expect([exec.status, await exec.text()]).toEqual([200, '{"dataset":[[1]],"count":1}']);
    expect(exec.headers.get('x-walship-applied-txn')).toBe('trades=7');
    expect(exec.headers.get('x-walship-staleness-ms')).toBe('12');
    expect(exec.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const exp = await consistentGet('/exp', { query: 'SELECT 1 AS one' });
    expect([exp.status, await exp.text()]).toEqual([200, '"one"\r\n1\r\n']);
    expect(exp.headers.get('x-walship-applied-txn')).toBe('trades=7');
    expect(exp.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(calls).toEqual([
      { path: '/exec', minTxn: 'trades=7', header: 'trades=6', aborted: false },
      { path: '/exp', minTxn: null, header: undefined, aborted: false },
    ]);
  });

  test('does not run for a refused, empty or non-GET request', async () => {
    expect((await consistentGet('/exec', { query: 'SELECT 1' }, { 'x-token': 'wrong' })).status).toBe(401);
    expect((await consistentGet('/exec', { query: ' ' })).status).toBe(400);
    const post = await fetch(`${consistencyBase}/exp?query=SELECT%201`, {
      method: 'POST',
      headers: { 'x-token': TOKEN },
    });
    expect(post.status).toBe(405);
    expect(calls).toEqual([]);
  });

  test.each([
    ['invalid', 'INVALID_COMMIT_TOKEN', 400, null],
    ['unavailable', 'STALE_REPLICA', 503, '1'],
    ['unavailable', 'MIN_TXN_TIMEOUT', 504, null],
    ['closed', 'CLOSED', 503, '1'],
    ['internal', 'ASSERTION_FAILED', 500, null],
  ] as const)('a %s %s refusal is %d with QuestDB’s error body', async (kind, code, status, retryAfter) => {
    refuseWith(new WalshipError(code, kind, `refused: ${code}`));
    for (const path of ['/exec', '/exp']) {
      const res = await consistentGet(path, { query: 'SELECT 1' });
      expect([res.status, res.headers.get('retry-after')]).toEqual([status, retryAfter]);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(res.headers.get('x-walship-applied-txn')).toBeNull();
      expect(await res.json()).toEqual({ query: 'SELECT 1', error: `refused: ${code}`, position: 0 });
    }
  });

  test('a hook that fails with something else is a 500', async () => {
    refuseWith(new TypeError('boom'));
    const res = await consistentGet('/exec', { query: 'SELECT 1' });
    expect([res.status, (await errorOf(res)).error]).toEqual([500, 'internal error: TypeError: boom']);
  });

  test('a client that goes away while the hook waits is answered nothing', async () => {
    let waiting = () => {};
    const hookWaits = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    let sawAbort = false;
    consistency = async (_req, _params, signal) => {
      waiting();
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      sawAbort = signal.aborted;
      // Even a refusal that is not an abort error is not sent to a client that left.
      throw new WalshipError('MIN_TXN_TIMEOUT', 'unavailable', 'too late');
    };
    const answered = consistencyAnswers.length;
    const { port } = consistencyServer.address() as AddressInfo;
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(`GET /exec?query=SELECT%201 HTTP/1.1\r\nhost: x\r\nx-token: ${TOKEN}\r\n\r\n`);
    await hookWaits;
    socket.destroy();
    while (consistencyAnswers.length === answered) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(sawAbort).toBe(true);
    expect(consistencyAnswers.at(-1)).toEqual({ headersSent: false });
  });
});

describe('parseQuestDbLimit', () => {
  test('reads QuestDB’s limit as each endpoint does', () => {
    expect(parseQuestDbLimit(null, 'exec')).toBeUndefined();
    expect(parseQuestDbLimit('10', 'exec')).toEqual([0, 10]);
    expect(parseQuestDbLimit('10,20', 'exec')).toEqual([9, 20]);
    expect(parseQuestDbLimit('10,20', 'exp')).toEqual([10, 20]);
    expect(parseQuestDbLimit('10,', 'exec')).toEqual([9, Number.MAX_SAFE_INTEGER]);
    expect(parseQuestDbLimit('-5', 'exec')).toEqual([0, 0]);
    expect(parseQuestDbLimit('x,y', 'exec')).toEqual([0, Number.MAX_SAFE_INTEGER]);
    expect(parseQuestDbLimit('20,10', 'exec')).toEqual([19, 19]);
  });
});

async function waitUntilBusy(): Promise<void> {
  while (pool.stats().busy === 0) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function waitUntilReady(): Promise<void> {
  while (pool.stats().workers === 0 || pool.stats().busy > 0)
    await new Promise((resolve) => setTimeout(resolve, 5));
}
