/**
 * Every HTTP surface of a node, in both roles, against every kind of credential (issue 7 part 5):
 * each surface opens with its own token and with nothing else — not a missing, wrong or garbled
 * one, not another surface's token, not the shared `http.*` token once the surface has its own.
 * Then ILP/TCP's challenge, the defaults without surface tokens, read-only queries over HTTP, and
 * the listener's limits (414, 431, 429).
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  AuthFailureLimiter,
  createHttpAuthenticator,
  MAX_URL_CHARS,
  sendJson,
  startHttpServer,
} from '../core/index.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore } from '../objectstore/index.js';
import { startTestNode } from './helpers/test-node.js';
import { TEST_ADMIN_TOKEN } from './helpers/test-replica.js';

const SHARED = 'shared-http-token';
const ILP = 'ilp-only-token';
const QUERY = 'query-only-token';
const ADMIN = TEST_ADMIN_TOKEN;

const bearer = (token: string) => `Bearer ${token}`;
/** Credentials that are never right for anything. */
const GARBAGE: Record<string, string | undefined> = {
  missing: undefined,
  wrong: bearer('not-a-token'),
  'empty bearer': 'Bearer ',
  'unknown scheme': `Token ${ILP}`,
  'basic garbage': `Basic ${Buffer.from('user:pass').toString('base64')}`,
};

interface Surface {
  name: string;
  method: 'GET' | 'POST';
  path: string;
  body?: string;
  /** The one credential that opens it. */
  token: string;
  /** The status with that credential, per role. */
  ok: { primary: number; replica: number };
}

const SURFACES: Surface[] = [
  {
    name: 'ILP /write',
    method: 'POST',
    path: '/write',
    body: 'auth_t v=1i\n',
    token: ILP,
    ok: { primary: 204, replica: 421 },
  },
  {
    name: 'ILP /api/v2/write',
    method: 'POST',
    path: '/api/v2/write',
    body: 'auth_t v=2i\n',
    token: ILP,
    ok: { primary: 204, replica: 421 },
  },
  {
    name: '/exec',
    method: 'GET',
    path: '/exec?query=SELECT%201',
    token: QUERY,
    ok: { primary: 200, replica: 200 },
  },
  {
    name: '/exp',
    method: 'GET',
    path: '/exp?query=SELECT%201',
    token: QUERY,
    ok: { primary: 200, replica: 200 },
  },
  { name: '/metrics', method: 'GET', path: '/metrics', token: QUERY, ok: { primary: 200, replica: 200 } },
  // GET on an admin action: 405 proves the token was accepted, without promoting or demoting.
  {
    name: '/admin/*',
    method: 'GET',
    path: '/admin/demote',
    token: ADMIN,
    ok: { primary: 405, replica: 405 },
  },
];
/** Public on purpose (docs/SECURITY.md): failover tooling reads them without credentials. */
const PUBLIC = ['/status', '/status/history', '/', '/ping', '/settings'];

async function call(
  port: number,
  method: string,
  target: string,
  authorization: string | undefined,
  body?: string,
): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${target}`, {
    method,
    headers: authorization === undefined ? {} : { authorization },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, text: await response.text() };
}

let base: string;
const nodes: Partial<Record<'primary' | 'replica', WalshipNode>> = {};

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-auth-'));
  const store = await FsStore.open({ root: path.join(base, 'store') });
  const auth = {
    http: { host: '127.0.0.1', port: 0, authFailuresPerMinute: 100_000 },
    httpAuth: { bearer: [SHARED] },
    ilpAuth: { bearer: [ILP] },
    queryAuth: { bearer: [QUERY] },
  };
  const overrides = { primary: auth, replica: { ...auth, pollIntervalMs: 20 } };
  nodes.primary = await startTestNode('primary', store, path.join(base, 'p'), overrides);
  nodes.replica = await startTestNode('replica', store, path.join(base, 'r'), overrides);
}, 60_000);

afterAll(async () => {
  await nodes.primary?.close();
  await nodes.replica?.close();
  await rm(base, { recursive: true, force: true });
});

describe.each(['primary', 'replica'] as const)('every surface of a %s', (role) => {
  test.each(SURFACES)('$name opens with its own token only', async (surface) => {
    const port = nodes[role]!.httpPort;
    const others = [SHARED, ILP, QUERY, ADMIN].filter((t) => t !== surface.token);
    const refused: Record<string, string | undefined> = { ...GARBAGE };
    for (const token of others) refused[`token ${token}`] = bearer(token);
    const seen: Record<string, number> = {};
    for (const [name, authorization] of Object.entries(refused)) {
      seen[name] = (await call(port, surface.method, surface.path, authorization, surface.body)).status;
    }
    expect(seen).toEqual(Object.fromEntries(Object.keys(refused).map((name) => [name, 401])));
    const right = await call(port, surface.method, surface.path, bearer(surface.token), surface.body);
    expect(right.status).toBe(surface.ok[role]);
  });

  test('the status page, /status, /status/history, /ping and /settings are public', async () => {
    const port = nodes[role]!.httpPort;
    for (const target of PUBLIC)
      expect([target, (await call(port, 'GET', target, undefined)).status]).toEqual([
        target,
        target === '/ping' ? 204 : 200,
      ]);
  });

  test('no query writes, even with the right token; the data is intact', async () => {
    const port = nodes[role]!.httpPort;
    const writes = [
      'DELETE FROM auth_t',
      'INSERT INTO auth_t (v) VALUES (9)',
      'DROP TABLE auth_t',
      'PRAGMA writable_schema=1',
      `ATTACH DATABASE '${path.join(base, 'x.db')}' AS x`,
    ];
    for (const sql of writes) {
      const answer = await call(port, 'GET', `/exec?query=${encodeURIComponent(sql)}`, bearer(QUERY));
      expect([sql, answer.status, answer.text]).toEqual([sql, 400, expect.stringMatching(/read-only/)]);
    }
    const count = await waitForCount(port, 2);
    expect(count).toBe(2);
  });
});

/** The count of auth_t rows once it reaches `expected` (the replica applies asynchronously). */
async function waitForCount(port: number, expected: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  let count = -1;
  while (Date.now() < deadline) {
    const answer = await call(port, 'GET', '/exec?query=SELECT%20count(*)%20FROM%20auth_t', bearer(QUERY));
    if (answer.status === 200) count = (JSON.parse(answer.text) as { dataset: number[][] }).dataset[0]![0]!;
    if (count === expected) return count;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return count;
}

describe('without surface tokens', () => {
  test('the shared http.* credentials open ILP, queries and /metrics, never admin', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'walship-auth-shared-'));
    const store = await FsStore.open({ root: path.join(dir, 'store') });
    const node = await startTestNode('primary', store, path.join(dir, 'p'), {
      primary: {
        httpAuth: { bearer: [SHARED], basic: [{ username: 'alice', password: 's3cret' }] },
        tcp: undefined,
      },
    });
    try {
      const port = node.httpPort;
      const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
      for (const authorization of [bearer(SHARED), basic]) {
        expect((await call(port, 'POST', '/write', authorization, 'shared_t v=1i\n')).status).toBe(204);
        expect((await call(port, 'GET', '/exec?query=SELECT%201', authorization)).status).toBe(200);
        expect((await call(port, 'GET', '/metrics', authorization)).status).toBe(200);
        expect((await call(port, 'GET', '/admin/demote', authorization)).status).toBe(401);
      }
      expect((await call(port, 'POST', '/write', bearer('nope'), 'shared_t v=1i\n')).status).toBe(401);
      expect((await call(port, 'GET', '/exec?query=SELECT%201', undefined)).status).toBe(401);
    } finally {
      await node.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('ILP over TCP with an auth file', () => {
  test('a wrong signature closes the connection; the right key writes', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'walship-auth-tcp-'));
    const store = await FsStore.open({ root: path.join(dir, 'store') });
    const right = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const wrong = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const jwk = right.export({ format: 'jwk' });
    const node = await startTestNode('primary', store, path.join(dir, 'p'), {
      primary: {
        tcp: {
          host: '127.0.0.1',
          port: 0,
          authKeys: [{ keyId: 'writer', publicKeyX: jwk.x!, publicKeyY: jwk.y! }],
        },
      },
    });
    try {
      const tcpPort = (node.current as { tcpPort?: number }).tcpPort!;
      // Sends the key id, signs the challenge with `key`, sends one row; `end` = we close the
      // connection after the row (a refused one is closed by the server, and nothing ends it but that).
      const session = (key: typeof right, keyId: string, end: boolean) =>
        new Promise<void>((resolve, reject) => {
          const socket = connect(tcpPort, '127.0.0.1');
          let received = Buffer.alloc(0);
          socket.on('error', reject);
          socket.on('data', (chunk: Buffer) => {
            received = Buffer.concat([received, chunk]);
            const lf = received.indexOf(10);
            if (lf < 0 || received.length > lf + 1) return;
            const signature = sign('sha256', received.subarray(0, lf), key).toString('base64');
            socket.write(`${signature}\ntcp_t v=1i\n`);
            if (end) socket.end();
          });
          socket.on('close', () => resolve());
          socket.write(`${keyId}\n`);
        });
      await session(wrong, 'writer', false);
      // An unknown key id gets no challenge: the server closes at once.
      await session(right, 'unknown-key', false);
      await session(right, 'writer', true);
      // Only the right key's row: the refused sessions were over before it was sent.
      expect(await waitForTcpRow(node.httpPort)).toBe(1);
    } finally {
      await node.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

async function waitForTcpRow(port: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const answer = await call(port, 'GET', '/exec?query=SELECT%20count(*)%20FROM%20tcp_t', undefined);
    if (answer.status === 200) return (JSON.parse(answer.text) as { dataset: number[][] }).dataset[0]![0]!;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return 0;
}

describe('listener limits', () => {
  const log = pino({ level: 'silent' });

  async function guarded(failuresPerMinute: number) {
    const authorized = createHttpAuthenticator({ bearer: ['right'] });
    return startHttpServer(
      [
        async (req, res) => {
          if (authorized(req.headers.authorization)) sendJson(res, 200, { ok: true });
          else sendJson(res, 401, { code: 'unauthorised' });
          return true;
        },
      ],
      { host: '0.0.0.0', port: 0, authFailuresPerMinute: failuresPerMinute },
      log,
    );
  }

  test('a target longer than MAX_URL_CHARS gets 414, huge headers 431', async () => {
    const server = await guarded(100);
    try {
      const query = 'a'.repeat(MAX_URL_CHARS);
      expect((await call(server.port, 'GET', `/exec?query=${query}`, bearer('right'))).status).toBe(414);
      const withinLimit = 'a'.repeat(MAX_URL_CHARS - 100);
      expect((await call(server.port, 'GET', `/exec?query=${withinLimit}`, bearer('right'))).status).toBe(
        200,
      );
      const response = await fetch(`http://127.0.0.1:${server.port}/status`, {
        headers: { authorization: bearer('right'), 'x-padding': 'p'.repeat(100 * 1024) },
      });
      expect(response.status).toBe(431);
    } finally {
      await server.close();
    }
  });

  test('too many failed authentications from one address get 429, other addresses are not affected', async () => {
    const server = await guarded(3);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push((await call(server.port, 'GET', '/x', bearer('wrong'))).status);
      expect(statuses).toEqual([401, 401, 401, 429]);
      const blocked = await fetch(`http://127.0.0.1:${server.port}/x`, {
        headers: { authorization: bearer('right') },
      });
      expect([blocked.status, blocked.headers.get('retry-after')]).toEqual([429, '20']);
      // 127.0.0.2 is another client address on Linux's loopback.
      expect(await statusFrom('127.0.0.2', server.port, bearer('right'))).toBe(200);
    } finally {
      await server.close();
    }
  });

  test('the limiter refills: one more failure per 60 000 / N ms', () => {
    let nowMs = 0;
    const limiter = new AuthFailureLimiter({ failuresPerMinute: 6, nowMs: () => nowMs });
    for (let i = 0; i < 6; i++) limiter.recordFailure('a');
    expect([limiter.blockedForS('a'), limiter.blockedForS('b')]).toEqual([10, 0]);
    nowMs += 9_999;
    expect(limiter.blockedForS('a')).toBe(1);
    nowMs += 1;
    expect(limiter.blockedForS('a')).toBe(0);
    limiter.recordFailure('a');
    expect(limiter.blockedForS('a')).toBe(10);
  });
});

function statusFrom(localAddress: string, port: number, authorization: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path: '/x', localAddress, headers: { authorization } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
