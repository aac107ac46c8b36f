import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type AdminAction, createAdminHttpHandler } from './admin-http.js';
import type { ErrorCode } from './error-codes.js';
import { type RunningHttpServer, sendJson, startHttpServer } from './http-server.js';
import { type ErrorKind, WalshipError } from './walship-error.js';

const TOKEN = 'tok-9f1c2e7a-do-not-leak';
const log = pino({ level: 'silent' });

const servers: RunningHttpServer[] = [];
/** Every response any test saw, headers and body, to check the token never comes back. */
const seen: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

async function serve(token: string | undefined, actions: Record<string, AdminAction>): Promise<string> {
  const server = await startHttpServer(
    [
      createAdminHttpHandler(token, actions),
      async (req, res) => {
        sendJson(res, 200, { fallthrough: req.url });
        return true;
      },
    ],
    { host: '127.0.0.1', port: 0 },
    log,
  );
  servers.push(server);
  return `http://127.0.0.1:${server.port}`;
}

async function call(
  url: string,
  options: { method?: string; authorization?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; allow: string | null }> {
  const response = await fetch(url, {
    method: options.method ?? 'POST',
    headers: options.authorization === undefined ? {} : { authorization: options.authorization },
  });
  const text = await response.text();
  seen.push(JSON.stringify([...response.headers]), text);
  return {
    status: response.status,
    body: JSON.parse(text) as Record<string, unknown>,
    allow: response.headers.get('allow'),
  };
}

const bearer = `Bearer ${TOKEN}`;

describe('admin HTTP routes', () => {
  it('403 for every admin route when no token is configured, whatever the request carries', async () => {
    let ran = 0;
    const base = await serve(undefined, {
      resume: async () => {
        ran++;
        return {};
      },
    });
    for (const [path, method, authorization] of [
      ['/admin/resume?table=t', 'POST', undefined],
      ['/admin/resume?table=t', 'POST', bearer],
      ['/admin/resume', 'GET', 'Bearer '],
      ['/admin/nope', 'POST', bearer],
    ] as const) {
      const answer = await call(`${base}${path}`, {
        method,
        ...(authorization === undefined ? {} : { authorization }),
      });
      expect([path, answer.status, answer.body.code]).toEqual([path, 403, 'admin disabled']);
    }
    expect(ran).toBe(0);
  });

  it('401 for a missing or wrong token, before anything reveals which actions exist', async () => {
    let ran = 0;
    const base = await serve(TOKEN, {
      resume: async () => {
        ran++;
        return {};
      },
    });
    const wrong = [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      `Token ${TOKEN}`,
      TOKEN,
    ];
    for (const authorization of wrong) {
      for (const path of ['/admin/resume?table=t', '/admin/unknown', `/admin/${TOKEN}`]) {
        for (const method of ['POST', 'GET']) {
          const answer = await call(`${base}${path}`, {
            method,
            ...(authorization === undefined ? {} : { authorization }),
          });
          expect([authorization, path, method, answer.status, answer.body.code]).toEqual([
            authorization,
            path,
            method,
            401,
            'unauthorized',
          ]);
        }
      }
    }
    expect(ran).toBe(0);
  });

  it('404 for an unknown action, inherited object keys included', async () => {
    const base = await serve(TOKEN, { resume: async () => ({}) });
    for (const name of [
      'nope',
      '',
      'constructor',
      '__proto__',
      'toString',
      'hasOwnProperty',
      'resume/x',
      'RESUME',
    ]) {
      const answer = await call(`${base}/admin/${name}`, { authorization: bearer });
      expect([name, answer.status, answer.body.code]).toEqual([name, 404, 'not found']);
    }
    const long = await call(`${base}/admin/${'x'.repeat(500)}`, { authorization: bearer });
    expect(long.status).toBe(404);
    expect(String(long.body.message).length).toBeLessThan(200);
  });

  it('405 with Allow: POST for another method on a known action, which then does not run', async () => {
    let ran = 0;
    const base = await serve(TOKEN, {
      snapshot: async () => {
        ran++;
        return {};
      },
    });
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const answer = await call(`${base}/admin/snapshot`, { method, authorization: bearer });
      expect([method, answer.status, answer.allow, answer.body.code]).toEqual([
        method,
        405,
        'POST',
        'method not allowed',
      ]);
    }
    expect(ran).toBe(0);
  });

  it("200 with the action's JSON; the action gets the query parameters", async () => {
    const got: string[] = [];
    const base = await serve(TOKEN, {
      resume: async (params) => {
        got.push(params.get('table') ?? '(none)');
        return { resumed: params.get('table'), appliedTxn: 12345678901234567890n };
      },
    });
    const answer = await call(`${base}/admin/resume?table=${encodeURIComponent('Prix €/x')}`, {
      authorization: bearer,
    });
    expect(answer).toMatchObject({
      status: 200,
      body: { resumed: 'Prix €/x', appliedTxn: '12345678901234567890' },
    });
    // The scheme is case-insensitive, as HTTP says.
    const lower = await call(`${base}/admin/resume?table=t`, { authorization: `bearer ${TOKEN}` });
    expect(lower.status).toBe(200);
    expect(got).toEqual(['Prix €/x', 't']);
  });

  it('other paths are left to the next handler', async () => {
    const base = await serve(TOKEN, { resume: async () => ({}) });
    for (const path of ['/status', '/adminx/resume', '/admin', '/x/admin/resume']) {
      const answer = await call(`${base}${path}`, { authorization: bearer });
      expect([path, answer.status, answer.body.fallthrough]).toEqual([path, 200, path]);
    }
  });

  it.each([
    ['invalid', 400, 'INVALID_ARGUMENT'],
    ['conflict', 409, 'WRONG_ROLE'],
    ['fenced', 409, 'FENCED'],
    ['unavailable', 503, 'STORE_UNAVAILABLE'],
    ['closed', 503, 'CLOSED'],
    ['data', 500, 'CORRUPT_SEGMENT'],
    ['internal', 500, 'ASSERTION_FAILED'],
  ] as [ErrorKind, number, ErrorCode][])(
    'a WalshipError of kind %s answers %i with its code and message',
    async (kind, status, code) => {
      const base = await serve(TOKEN, {
        resume: async () => {
          throw new WalshipError(code, kind, `the ${kind} thing happened`);
        },
      });
      const answer = await call(`${base}/admin/resume?table=t`, { authorization: bearer });
      expect(answer.status).toBe(status);
      expect(answer.body).toEqual({
        code,
        message: `the ${kind} thing happened`,
      });
    },
  );

  it('any other error is a generic 500 that does not carry its message', async () => {
    const base = await serve(TOKEN, {
      resume: async () => {
        throw new Error(`boom with ${TOKEN}`);
      },
    });
    const answer = await call(`${base}/admin/resume`, { authorization: bearer });
    expect(answer.status).toBe(500);
    expect(JSON.stringify(answer.body)).not.toContain('boom');
  });

  it('the token never appears in any response', () => {
    expect(seen.length).toBeGreaterThan(50);
    for (const text of seen) expect(text).not.toContain(TOKEN);
  });
});
