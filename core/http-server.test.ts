/**
 * The HTTP listener's own rules: who the failed-authentication limit counts (issue 13 item 9) and
 * the start-up check of a TLS certificate against its key (issue 13 item 10).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpAuthenticator } from './http-auth.js';
import { loadTlsCredentials, type RunningHttpServer, sendJson, startHttpServer } from './http-server.js';
import { isWalshipError } from './walship-error.js';

const log = pino({ level: 'silent' });
const RIGHT = 'Bearer right';
const WRONG = 'Bearer wrong';

/** `/status` is open; every other path needs `Bearer right`. */
function guarded(failuresPerMinute: number, trustedProxies?: string[]): Promise<RunningHttpServer> {
  const authorized = createHttpAuthenticator({ bearer: ['right'] });
  return startHttpServer(
    [
      async (req, res) => {
        if (req.url === '/status' || authorized(req.headers.authorization)) sendJson(res, 200, { ok: true });
        else sendJson(res, 401, { code: 'unauthorised' });
        return true;
      },
    ],
    { host: '127.0.0.1', port: 0, authFailuresPerMinute: failuresPerMinute, trustedProxies },
    log,
  );
}

/** GET `target` from the local address `from` (Linux routes all of 127/8 to lo). */
function statusOf(
  server: RunningHttpServer,
  from: string,
  target: string,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: server.port, path: target, localAddress: from, headers },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function statusesOf(
  server: RunningHttpServer,
  from: string,
  headers: Record<string, string>,
  count: number,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(await statusOf(server, from, '/x', headers));
  return out;
}

describe('the failed-authentication limit', () => {
  it('never refuses a request without credentials: a probe of /status from a locked-out address is answered', async () => {
    const server = await guarded(3);
    try {
      expect(await statusesOf(server, '127.0.0.5', { authorization: WRONG }, 4)).toEqual([
        401, 401, 401, 429,
      ]);
      expect(await statusOf(server, '127.0.0.5', '/status', {})).toBe(200);
      // Still locked for anything that presents credentials, right or wrong: a lockout that let a
      // right guess through would tell the guesser which guess was right.
      expect(await statusOf(server, '127.0.0.5', '/status', { authorization: RIGHT })).toBe(429);
      // A request without credentials to a protected route is an ordinary 401, not a guess.
      expect(await statusOf(server, '127.0.0.5', '/x', {})).toBe(401);
    } finally {
      await server.close();
    }
  });

  it('behind a trusted proxy, counts per forwarded client: the proxy and its other clients are not locked out', async () => {
    const server = await guarded(3, ['127.0.0.6']);
    try {
      const viaProxy = (client: string, authorization: string) => ({
        authorization,
        'x-forwarded-for': client,
      });
      expect(await statusesOf(server, '127.0.0.6', viaProxy('198.51.100.1', WRONG), 4)).toEqual([
        401, 401, 401, 429,
      ]);
      expect(await statusOf(server, '127.0.0.6', '/x', viaProxy('198.51.100.2', RIGHT))).toBe(200);
      expect(await statusOf(server, '127.0.0.6', '/x', { authorization: RIGHT })).toBe(200);
      // The locked-out client stays locked out whatever it puts left of the proxy's entry.
      expect(await statusOf(server, '127.0.0.6', '/x', viaProxy('1.1.1.1, 198.51.100.1', RIGHT))).toBe(429);
    } finally {
      await server.close();
    }
  });

  it("ignores an untrusted peer's X-Forwarded-For: a new header per guess does not dodge the limit", async () => {
    const server = await guarded(3, ['127.0.0.6']);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push(
          await statusOf(server, '127.0.0.7', '/x', {
            authorization: WRONG,
            'x-forwarded-for': `10.0.0.${i}`,
          }),
        );
      expect(statuses).toEqual([401, 401, 401, 429]);
    } finally {
      await server.close();
    }
  });

  it('a malformed http.trusted.proxies stops the listener before it listens', async () => {
    await expect(guarded(3, ['proxy.example'])).rejects.toSatisfy(
      (error: unknown) =>
        isWalshipError(error, 'INVALID_CONFIG') && /http\.trusted\.proxies/.test((error as Error).message),
    );
  });
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl && process.env.CI !== undefined) throw new Error('the openssl binary is required under CI');

describe.runIf(hasOpenssl)('loadTlsCredentials', () => {
  const KEYS = { cert: 'http.tls.cert.path', key: 'http.tls.key.path' };
  let dir = '';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-tls-pair-'));
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'rsa.key',
      '-out',
      'rsa.pem',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    );
    run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec.key');
    run('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'other-rsa.key');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a certificate with its own key', async () => {
    const pair = await loadTlsCredentials(path.join(dir, 'rsa.pem'), path.join(dir, 'rsa.key'), KEYS);
    expect(pair.cert.length).toBeGreaterThan(0);
  });

  it('refuses an RSA certificate with an EC key (OpenSSL alone lets it through), naming both files', async () => {
    const error = await loadTlsCredentials(path.join(dir, 'rsa.pem'), path.join(dir, 'ec.key'), KEYS).catch(
      (caught: unknown) => caught,
    );
    expect(isWalshipError(error, 'INVALID_CONFIG')).toBe(true);
    expect((error as Error).message).toBe(
      `http.tls.key.path (${path.join(dir, 'ec.key')}) is not the private key of the certificate in ` +
        `http.tls.cert.path (${path.join(dir, 'rsa.pem')}): the key is ec prime256v1, the certificate's ` +
        'rsa 2048-bit; every TLS handshake would fail',
    );
  });

  it('refuses an RSA certificate with another RSA key', async () => {
    await expect(
      loadTlsCredentials(path.join(dir, 'rsa.pem'), path.join(dir, 'other-rsa.key'), KEYS),
    ).rejects.toThrow(/http\.tls\.cert\.path \/ http\.tls\.key\.path|is not the private key/);
  });
});
