/**
 * `walship sequencer serve`'s HTTP API and its client: routes, auth scopes, body limit, long
 * polls, the error mapping both ways, timeouts, and the connection string. The backend is the
 * real SQLite store in a temporary directory; a stub store throws chosen errors for the mapping.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, InvalidArgumentError, WalshipError } from '../core/index.js';
import {
  parseSequencerConnectionString,
  redactSequencerConnectionString,
  sequencerOrigin,
} from './connection-string.js';
import { HttpSequencerClient, openHttpSequencer } from './http-client.js';
import {
  REQUEST_BODY_BYTES_MAX,
  type RunningSequencerServer,
  type SequencerAuthTokens,
  startSequencerServer,
} from './http-service.js';
import {
  type CommitRequest,
  FdbClientMissingError,
  SequencerBatchOrderError,
  SequencerClusterMismatchError,
  SequencerFencedError,
  SequencerNotInitializedError,
  type SequencerStore,
  SequencerUnavailableError,
} from './sequencer-store.js';
import { SqliteSequencerStore } from './sqlite-store.js';

const TOKENS = { read: 'read-Tok3n-r', write: 'write-Tok3n-w', admin: 'admin-Tok3n-a' };
const WRONG = 'wrong-Tok3n-x';

interface Service {
  store: SequencerStore;
  server: RunningSequencerServer;
  origin: string;
  logs: string[];
  client(token?: string, options?: { timeoutMs?: number; watchWaitMs?: number }): HttpSequencerClient;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startService(
  options: { auth?: SequencerAuthTokens; store?: SequencerStore; bodyMaxBytes?: number } = {},
): Promise<Service> {
  let store = options.store;
  if (store === undefined) {
    const dir = await mkdtemp(join(tmpdir(), 'walship-seq-http-'));
    const sqlite = SqliteSequencerStore.open({ path: join(dir, 'sequencer.sqlite') });
    store = sqlite;
    cleanups.push(async () => {
      await sqlite.close();
      await rm(dir, { recursive: true, force: true });
    });
  }
  const logs: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => logs.push(line) });
  const server = await startSequencerServer(store, {
    listen: { host: '127.0.0.1', port: 0, authFailuresPerMinute: 1000 },
    auth: options.auth ?? TOKENS,
    log,
    ...(options.bodyMaxBytes === undefined ? {} : { bodyMaxBytes: options.bodyMaxBytes }),
  });
  cleanups.push(() => server.close());
  const origin = `http://127.0.0.1:${server.port}`;
  return {
    store,
    server,
    origin,
    logs,
    client(token, clientOptions = {}) {
      const client = new HttpSequencerClient({ origin, token, ...clientOptions });
      cleanups.push(() => client.close());
      return client;
    },
  };
}

function request(
  writer: string,
  epoch: bigint,
  batchSeq: bigint,
  tables: string[],
  txnCount = 3,
): CommitRequest {
  return {
    writer,
    writerEpoch: epoch,
    batchSeq,
    segments: tables.map((table, i) => ({
      table,
      staged: `tables/${table}/staged/${writer}/${epoch}/${batchSeq}.seg`,
      txnCount: txnCount + i,
      bytes: 1000 + i,
      crc32: 0xdead_beef - i,
    })),
  };
}

async function raw(
  origin: string,
  path: string,
  options: { method?: string; token?: string; body?: string; signal?: AbortSignal } = {},
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${origin}${path}`, {
    method: options.method ?? 'GET',
    headers: options.token === undefined ? {} : { authorization: `Bearer ${options.token}` },
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  return { status: response.status, text: await response.text() };
}

describe('sequencer HTTP API', () => {
  it('answers every SequencerStore method over HTTP as the store itself does, bigints intact', async () => {
    const service = await startService();
    const client = service.client(TOKENS.admin);
    expect(await client.clusterId()).toBeNull();
    await client.initialize('cluster-a', new Map([['trades', 41n]]));
    expect(await client.clusterId()).toBe('cluster-a');
    const record = await client.registerWriter('p1');
    expect(record).toEqual({ writer: 'p1', epoch: 1n, lastBatchSeq: 0n, fenced: false, closed: [] });

    const first = await client.commit(request('p1', 1n, 1n, ['trades', 'quotes']));
    expect(first.replayed).toBe(false);
    expect(first.entries.map((e) => [e.table, e.txnFirst, e.txnLast])).toEqual([
      ['trades', 42n, 44n],
      ['quotes', 1n, 4n],
    ]);
    const replay = await client.commit(request('p1', 1n, 1n, ['trades', 'quotes']));
    expect(replay).toEqual({ entries: first.entries, replayed: true });

    expect(await client.readLog('trades', 43n, 10)).toEqual(await service.store.readLog('trades', 43n, 10));
    expect(await client.readLog('trades', 43n, 10)).toEqual([first.entries[0]]);
    expect(await client.heads()).toEqual(await service.store.heads());
    expect((await client.heads()).tables).toEqual(
      new Map([
        ['trades', 44n],
        ['quotes', 4n],
      ]),
    );
    expect(await client.writers()).toEqual(await service.store.writers());
    const fenced = await client.fence('p1', 1n);
    expect(fenced.record.fenced).toBe(true);
    expect(fenced.heads).toEqual(await service.store.heads());
    await expect(client.commit(request('p1', 1n, 2n, ['trades']))).rejects.toBeInstanceOf(
      SequencerFencedError,
    );
  });

  it('GET /ping answers 204 without a token; /status and /metrics need the read scope', async () => {
    const service = await startService();
    const admin = service.client(TOKENS.admin);
    await admin.initialize('cluster-s', new Map());
    await admin.registerWriter('p1');
    await admin.commit(request('p1', 1n, 1n, ['trades']));
    await admin.commit(request('p1', 1n, 1n, ['trades']));

    expect((await raw(service.origin, '/ping')).status).toBe(204);
    expect((await raw(service.origin, '/status')).status).toBe(401);
    const status = await raw(service.origin, '/status', { token: TOKENS.read });
    expect(status.status).toBe(200);
    const body = JSON.parse(status.text) as Record<string, unknown>;
    expect(body.clusterId).toBe('cluster-s');
    expect(body.version).toBe(String((await service.store.heads()).version));
    expect(body.heads).toEqual({ version: body.version, tables: { trades: '3' } });

    const metrics = await raw(service.origin, '/metrics', { token: TOKENS.read });
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/walship_sequencer_commits_total\{outcome="committed"\} 1\b/);
    expect(metrics.text).toMatch(/walship_sequencer_commits_total\{outcome="replayed"\} 1\b/);
    expect(metrics.text).toMatch(/walship_sequencer_commit_seconds_count 2\b/);
    expect(metrics.text).toMatch(/walship_sequencer_watchers 0\b/);
    expect(metrics.text).toMatch(/walship_sequencer_commit_group_size \d/);
  });

  it('grants each scope to its own token and the higher ones: 401 without a known token, 403 below the scope', async () => {
    const service = await startService();
    // Every route with the scope it needs; bodies are valid so an authorised call succeeds.
    await service.client(TOKENS.admin).initialize('cluster-z', new Map());
    const routes: { path: string; method: string; scope: 'read' | 'write' | 'admin'; body?: string }[] = [
      { path: '/status', method: 'GET', scope: 'read' },
      { path: '/metrics', method: 'GET', scope: 'read' },
      { path: '/v1/heads', method: 'GET', scope: 'read' },
      { path: '/v1/writers', method: 'GET', scope: 'read' },
      { path: '/v1/cluster', method: 'GET', scope: 'read' },
      { path: '/v1/log?table=trades&from=1&limit=10', method: 'GET', scope: 'read' },
      { path: '/v1/watch?after=0&waitMs=0', method: 'GET', scope: 'read' },
      { path: '/v1/writers/register', method: 'POST', scope: 'write', body: '{"writer":"p9"}' },
      {
        path: '/v1/commit',
        method: 'POST',
        scope: 'write',
        body: '{"writer":"nobody","writerEpoch":"1","batchSeq":"1","segments":[{"table":"t","staged":"s","txnCount":1,"bytes":1,"crc32":1}]}',
      },
      {
        path: '/v1/initialize',
        method: 'POST',
        scope: 'admin',
        body: '{"clusterId":"cluster-z","startAfter":{}}',
      },
      { path: '/v1/writers/fence', method: 'POST', scope: 'admin', body: '{"writer":"p9","epoch":"0"}' },
    ];
    const rank = { read: 0, write: 1, admin: 2 } as const;
    const answers: string[] = [];
    for (const route of routes) {
      for (const credential of [undefined, WRONG, TOKENS.read, TOKENS.write, TOKENS.admin]) {
        const answer = await raw(service.origin, route.path, {
          method: route.method,
          ...(credential === undefined ? {} : { token: credential }),
          ...(route.body === undefined ? {} : { body: route.body }),
        });
        answers.push(answer.text);
        const held = Object.entries(TOKENS).find(([, token]) => token === credential)?.[0] as
          | keyof typeof rank
          | undefined;
        const expected = held === undefined ? 401 : rank[held] >= rank[route.scope] ? 'ok' : 403;
        const label = `${route.method} ${route.path} as ${held ?? credential ?? 'nobody'}`;
        if (expected === 'ok') {
          // The commit of an unknown writer is refused by the store (409), past the auth check.
          expect([200, 409], label).toContain(answer.status);
        } else expect(answer.status, label).toBe(expected);
      }
    }
    const everything = [...answers, ...service.logs].join('\n');
    for (const secret of [...Object.values(TOKENS), WRONG]) expect(everything).not.toContain(secret);
  });

  it('refuses a client whose token lacks the scope with SEQUENCER_UNAUTHORIZED, and never echoes the token', async () => {
    const service = await startService();
    const reader = service.client(TOKENS.read);
    const error = await reader.registerWriter('p1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalshipError);
    expect((error as WalshipError).code).toBe('SEQUENCER_UNAUTHORIZED');
    expect((error as WalshipError).details.status).toBe(403);
    expect(String((error as Error).message)).not.toContain(TOKENS.read);
    const stranger = service.client(WRONG);
    const refused = await stranger.heads().catch((e: unknown) => e);
    expect((refused as WalshipError).details.status).toBe(401);
    expect(String((refused as Error).message)).not.toContain(WRONG);
  });

  it('with only an admin token, reading needs it; with no token at all every route is open and a warning is logged', async () => {
    const adminOnly = await startService({ auth: { admin: TOKENS.admin } });
    expect((await raw(adminOnly.origin, '/v1/heads')).status).toBe(401);
    expect((await raw(adminOnly.origin, '/v1/heads', { token: TOKENS.admin })).status).toBe(200);
    expect(adminOnly.logs.join('\n')).not.toMatch(/every route is open/);

    const open = await startService({ auth: {} });
    expect(open.logs.join('\n')).toMatch(/no token configured.*every route is open/);
    expect((await raw(open.origin, '/v1/heads')).status).toBe(200);
    const client = open.client();
    await client.initialize('cluster-open', new Map());
    expect((await client.registerWriter('p1')).epoch).toBe(1n);
  });

  it('answers 413 to a body over the limit, 400 to malformed JSON or bigints, 405 to the wrong method', async () => {
    const service = await startService();
    const big = 'x'.repeat(REQUEST_BODY_BYTES_MAX + 1);
    const tooLarge = await raw(service.origin, '/v1/commit', {
      method: 'POST',
      token: TOKENS.write,
      body: big,
    });
    expect(tooLarge.status).toBe(413);
    const justUnder = await raw(service.origin, '/v1/commit', {
      method: 'POST',
      token: TOKENS.write,
      body: `{"writer":"p1","pad":"${'y'.repeat(REQUEST_BODY_BYTES_MAX - 40)}"}`,
    });
    expect(justUnder.status).toBe(400); // read whole, then refused by the request checks
    const notJson = await raw(service.origin, '/v1/commit', {
      method: 'POST',
      token: TOKENS.write,
      body: '{',
    });
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.text)).toMatchObject({ code: 'INVALID_ARGUMENT', kind: 'invalid' });
    const badBigint = await raw(service.origin, '/v1/log?table=trades&from=1e3&limit=5', {
      token: TOKENS.read,
    });
    expect(badBigint.status).toBe(400);
    const badLimit = await raw(service.origin, '/v1/log?table=trades&from=1&limit=5000', {
      token: TOKENS.read,
    });
    expect(badLimit.status).toBe(400);
    expect((await raw(service.origin, '/v1/commit', { token: TOKENS.write })).status).toBe(405);
    expect((await raw(service.origin, '/v1/nothing', { token: TOKENS.read })).status).toBe(404);
    // A smaller configured limit applies too.
    const small = await startService({ bodyMaxBytes: 64 });
    const over = await raw(small.origin, '/v1/writers/register', {
      method: 'POST',
      token: TOKENS.write,
      body: JSON.stringify({ writer: 'p1', pad: 'z'.repeat(64) }),
    });
    expect(over.status).toBe(413);
  });
});

describe('sequencer long poll', () => {
  it('wakes a watch on a commit, also after several empty polls', async () => {
    const service = await startService();
    const admin = service.client(TOKENS.admin);
    await admin.initialize('cluster-w', new Map());
    await admin.registerWriter('p1');
    const before = (await admin.heads()).version;
    // Short polls, so the watch has come back empty and polled again before the commit lands.
    const watcher = service.client(TOKENS.read, { watchWaitMs: 50 });
    let settled = false;
    const woken = watcher.watch(before, new AbortController().signal).finally(() => {
      settled = true;
    });
    await vi.waitFor(async () => {
      const metrics = await raw(service.origin, '/metrics', { token: TOKENS.read });
      expect(metrics.text).toMatch(/walship_sequencer_watchers 1\b/);
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    await admin.commit(request('p1', 1n, 1n, ['trades']));
    const version = await woken;
    expect(version).toBeGreaterThan(before);
    expect(version).toBe((await admin.heads()).version);
  });

  it('resolves with after at once when the version already passed it', async () => {
    const service = await startService();
    const admin = service.client(TOKENS.admin);
    await admin.initialize('cluster-w', new Map());
    await admin.registerWriter('p1');
    await admin.commit(request('p1', 1n, 1n, ['trades']));
    const version = (await admin.heads()).version;
    expect(await admin.watch(version - 1n, new AbortController().signal)).toBe(version);
  });

  it('resolves with after when the caller aborts, and the service drops the watcher when the client goes away', async () => {
    const service = await startService();
    const admin = service.client(TOKENS.admin);
    await admin.initialize('cluster-w', new Map());
    const after = (await admin.heads()).version;
    const abort = new AbortController();
    const watching = admin.watch(after, abort.signal);
    const watchers = async () => (service.store as SqliteSequencerStore).status().watchers;
    await vi.waitFor(async () => expect(await watchers()).toBe(1));
    abort.abort();
    expect(await watching).toBe(after);
    // The long poll asked to wait 25 s; the disconnect ended it at the service at once.
    await vi.waitFor(async () => expect(await watchers()).toBe(0));
  });

  it('answers open long polls when the server closes, and pending client watches resolve when the client closes', async () => {
    const service = await startService();
    const admin = service.client(TOKENS.admin);
    await admin.initialize('cluster-w', new Map());
    const after = (await admin.heads()).version;
    const pending = raw(service.origin, `/v1/watch?after=${after}&waitMs=60000`, { token: TOKENS.read }).then(
      (answer) => answer,
      (error: unknown) => error,
    );
    await vi.waitFor(() => expect((service.store as SqliteSequencerStore).status().watchers).toBe(1));
    await service.server.close();
    const outcome = await pending;
    // Either the answer "nothing new" made it out before the socket closed, or the socket closed.
    if (!(outcome instanceof Error)) expect(outcome).toEqual({ status: 200, text: `{"version":"${after}"}` });
    expect((service.store as SqliteSequencerStore).status().watchers).toBe(0);

    const other = await startService();
    const client = other.client(TOKENS.admin);
    await client.initialize('cluster-w', new Map());
    const version = (await client.heads()).version;
    const watching = client.watch(version, new AbortController().signal);
    await vi.waitFor(() => expect((other.store as SqliteSequencerStore).status().watchers).toBe(1));
    await client.close();
    expect(await watching).toBe(version);
    await expect(client.heads()).rejects.toBeInstanceOf(ClosedError);
  });
});

describe('sequencer errors over HTTP', () => {
  /** A store whose every method throws `error.current`. */
  function throwingStore(error: { current: Error }): SequencerStore {
    const fail = async (): Promise<never> => {
      throw error.current;
    };
    return {
      initialize: fail,
      clusterId: fail,
      registerWriter: fail,
      fence: fail,
      commit: fail,
      readLog: fail,
      heads: fail,
      watch: fail,
      writers: fail,
      close: async () => {},
    };
  }

  it('maps every error code to its HTTP status and back to the same class, code and kind', async () => {
    const current = { current: new Error('unset') as Error };
    const service = await startService({ store: throwingStore(current) });
    const client = service.client(TOKENS.admin);
    const cases: { error: WalshipError; status: number; type: new (...args: never[]) => WalshipError }[] = [
      { error: new SequencerFencedError('stale epoch'), status: 409, type: SequencerFencedError },
      { error: new SequencerBatchOrderError('skipped'), status: 400, type: SequencerBatchOrderError },
      { error: new SequencerClusterMismatchError('other'), status: 400, type: SequencerClusterMismatchError },
      { error: new SequencerNotInitializedError('not yet'), status: 400, type: SequencerNotInitializedError },
      { error: new SequencerUnavailableError('disk busy'), status: 503, type: SequencerUnavailableError },
      { error: new FdbClientMissingError(), status: 400, type: FdbClientMissingError },
      { error: new InvalidArgumentError('bad writer'), status: 400, type: InvalidArgumentError },
      {
        error: new WalshipError('INVALID_TABLE_KEY', 'invalid', 'bad key'),
        status: 400,
        type: WalshipError,
      },
      { error: new WalshipError('PROMOTION_LOST', 'conflict', 'lost'), status: 409, type: WalshipError },
      { error: new WalshipError('TXN_INVALID', 'data', 'bad row'), status: 500, type: WalshipError },
      // The service's store closing is, for its clients, the service going away: retryable.
      { error: new ClosedError('store closed'), status: 503, type: SequencerUnavailableError },
    ];
    for (const { error, status, type } of cases) {
      current.current = error;
      const answer = await raw(service.origin, '/v1/heads', { token: TOKENS.read });
      expect(answer.status, error.code).toBe(status);
      expect(JSON.parse(answer.text)).toEqual({ code: error.code, kind: error.kind, message: error.message });
      const thrown = await client.heads().catch((e: unknown) => e);
      expect(thrown, error.code).toBeInstanceOf(type);
      const expectedCode = error.code === 'CLOSED' ? 'SEQUENCER_UNAVAILABLE' : error.code;
      expect((thrown as WalshipError).code).toBe(expectedCode);
      expect((thrown as WalshipError).kind).toBe(error.code === 'CLOSED' ? 'unavailable' : error.kind);
      expect((thrown as Error).message).toContain(
        error.code === 'FDB_CLIENT_MISSING' ? 'FoundationDB' : error.message,
      );
    }
    // A non-WalshipError is a bug: 500 through the listener's own handler, unavailable for the client.
    current.current = new TypeError('boom');
    expect((await raw(service.origin, '/v1/heads', { token: TOKENS.read })).status).toBe(500);
    expect(await client.heads().catch((e: unknown) => e)).toBeInstanceOf(SequencerUnavailableError);
  });

  it('checks a malformed request in the client before sending it (INVALID_ARGUMENT as every backend)', async () => {
    const client = new HttpSequencerClient({ origin: 'http://127.0.0.1:9' });
    cleanups.push(() => client.close());
    await expect(client.registerWriter('no spaces allowed')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(client.commit({ ...request('p1', 1n, 1n, ['t']), segments: [] })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(client.readLog('t', 1n, 0)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('is SEQUENCER_UNAVAILABLE (outcome unknown) on a timeout and on a refused connection, without retrying', async () => {
    let commits = 0;
    const hanging: SequencerStore = {
      ...throwingStore({ current: new Error('unused') }),
      commit: () => {
        commits++;
        return new Promise(() => {});
      },
    };
    const service = await startService({ store: hanging });
    const client = service.client(TOKENS.write, { timeoutMs: 200 });
    const timedOut = await client.commit(request('p1', 1n, 1n, ['t'])).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(SequencerUnavailableError);
    expect((timedOut as Error).message).toMatch(/no answer within 200 ms.*outcome is unknown/);
    expect(commits).toBe(1);

    const port = await closedPort();
    const refused = new HttpSequencerClient({ origin: `http://127.0.0.1:${port}`, timeoutMs: 2_000 });
    cleanups.push(() => refused.close());
    const error = await refused.heads().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SequencerUnavailableError);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
  });
});

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('sequencer connection string', () => {
  it('parses http and https forms with token, tls_ca and timeout', () => {
    expect(parseSequencerConnectionString('http::addr=seq:9100;token=abc;')).toEqual({
      scheme: 'http',
      host: 'seq',
      port: 9100,
      token: 'abc',
    });
    const https = parseSequencerConnectionString(
      'https::addr=[::1]:9443;token=t;tls_ca=/etc/ca.pem;timeout=5000',
    );
    expect(https).toEqual({
      scheme: 'https',
      host: '::1',
      port: 9443,
      token: 't',
      tlsCaPath: '/etc/ca.pem',
      timeoutMs: 5000,
    });
    expect(sequencerOrigin(https)).toBe('https://[::1]:9443');
    expect(parseSequencerConnectionString('http::addr=seq;').port).toBe(9100);
  });

  it('names the key of every mistake and never quotes the token', () => {
    const secret = 'S3cr3t-V4lue';
    const bad = [
      `ftp::addr=seq:1;token=${secret};`,
      `http::token=${secret};`,
      `http::addr=seq:1;token=${secret};token=${secret}`,
      `http::addr=seq:1;token=${secret};oops;`,
      `http::addr=seq:1;token=${secret};${secret}=x;`,
      `http::addr=seq:1;token=${secret};tls_ca=/x;`,
      `http::addr=seq:99999;token=${secret};`,
      `http::addr=seq:1;token=${secret};timeout=soon;`,
      `http::addr=seq:1;token=;`,
      `${secret}`,
    ];
    for (const text of bad) {
      const error = (() => {
        try {
          parseSequencerConnectionString(text);
        } catch (e) {
          return e as WalshipError;
        }
        throw new Error(`accepted ${text}`);
      })();
      expect(error.code, text).toBe('INVALID_CONFIG');
      expect(error.message, text).not.toContain(secret);
    }
    expect(redactSequencerConnectionString(`http::addr=seq:1;token=${secret};`)).toBe(
      'http::addr=seq:1;token=****;',
    );
  });

  it('opens a client from a connection string that talks to the service', async () => {
    const service = await startService();
    const client = await openHttpSequencer(
      `http::addr=127.0.0.1:${service.server.port};token=${TOKENS.read};`,
    );
    cleanups.push(() => client.close());
    expect((await client.heads()).version).toBe((await service.store.heads()).version);
  });
});
