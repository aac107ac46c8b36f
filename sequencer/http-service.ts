/**
 * `walship sequencer serve`'s HTTP API over any SequencerStore (RFC-0003 "The SQLite backend and
 * walship sequencer serve"), as a handler for core/http-server.ts:
 *
 *   POST /v1/initialize          admin  {clusterId, startAfter: {table: "txn"}} → {}
 *   POST /v1/writers/register    write  {writer} → WriterRecord
 *   POST /v1/writers/fence       admin  {writer, epoch} → {record, heads}
 *   POST /v1/commit              write  CommitRequest → {entries, replayed}
 *   GET  /v1/log?table=&from=&limit=   read  → {entries}
 *   GET  /v1/heads | /v1/writers | /v1/cluster   read
 *   GET  /v1/watch?after=V&waitMs=25000          read  long poll → {version} (after when nothing new)
 *   GET  /ping (204, no auth)   GET /status (read)   GET /metrics (read)
 *
 * Bigints travel as decimal strings (http-client.ts holds the codec). A thrown WalshipError is
 * answered `{code, kind, message}` with 400 (invalid), 409 (fenced, conflict), 503 (unavailable,
 * closed) or 500; the client turns it back into the same class. Auth: one bearer token per scope;
 * admin's token also grants write and read, write's grants read. With no token at all every route
 * is open (a warning at start); with any token, a scope without its own token needs a higher one.
 * A missing or unknown token is 401 (counted by the listener's AuthFailureLimiter), a known token
 * of a lower scope 403. Tokens are never logged nor quoted in answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  type Clock,
  createHttpAuthenticator,
  type HttpHandler,
  type HttpListenerOptions,
  InvalidArgumentError,
  isWalshipError,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
  systemClock,
} from '../core/index.js';
import {
  bigintFromWire,
  commitRequestFromWire,
  httpStatusOfKind,
  startAfterFromWire,
  toWire,
  WATCH_WAIT_MS_DEFAULT,
} from './http-client.js';
import { type SequencerStore, SequencerUnavailableError } from './sequencer-store.js';

// --- Bounds -------------------------------------------------------------------------------------

/** Bytes of a request body at most: a 100-segment commit is ~60 kB; more is 413. */
export const REQUEST_BODY_BYTES_MAX = 1024 * 1024;
/** The longest a long poll may ask to wait (a client asking more is clamped to this). */
export const WATCH_WAIT_MS_MAX = 60_000;
/** Long polls open at once at most; more are answered 503 (a node holds one). */
const WATCHERS_MAX = 10_000;
/** Commit latency buckets in seconds: one group fsync is ~1–10 ms on a disk, more under load. */
const COMMIT_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export type SequencerScope = 'read' | 'write' | 'admin';

/** One bearer token per scope; all absent = open (for a laptop, never for a cluster). */
export interface SequencerAuthTokens {
  read?: string | undefined;
  write?: string | undefined;
  admin?: string | undefined;
}

/** The backend's own figures for /status and /metrics (SqliteSequencerStore.status()). */
export interface StatusSource {
  status(): object | Promise<object>;
}

export interface SequencerHttpOptions {
  auth: SequencerAuthTokens;
  log: Logger;
  /** Request body limit in bytes (default REQUEST_BODY_BYTES_MAX). */
  bodyMaxBytes?: number;
  /** Times long polls and commit latency. Default systemClock. */
  clock?: Clock;
}

export interface SequencerHttpService {
  handler: HttpHandler;
  /** This service's own Prometheus registry (GET /metrics). */
  registry: Registry;
  /** Answers every open long poll now (with its `after`); later ones too. */
  close(): void;
}

/** The routes over `store`; the caller owns the store and the listener. */
export function createSequencerHttpHandler(
  store: SequencerStore & Partial<StatusSource>,
  options: SequencerHttpOptions,
): SequencerHttpService {
  const authorize = createScopeCheck(options.auth);
  if (options.auth.read === undefined && options.auth.write === undefined && options.auth.admin === undefined)
    options.log.warn(
      'sequencer: no token configured (sequencer.auth.{read,write,admin}.token): every route is open',
    );
  const metrics = createMetrics(store);
  const closing = new AbortController();
  const bodyMaxBytes = options.bodyMaxBytes ?? REQUEST_BODY_BYTES_MAX;
  const clock = options.clock ?? systemClock;
  const context: RouteContext = { store, metrics, closing: closing.signal, bodyMaxBytes, clock };

  const handler: HttpHandler = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = ROUTES[url.pathname];
    if (route === undefined) return false;
    if (req.method !== route.method) {
      res.setHeader('allow', route.method);
      sendJson(res, 405, { code: 'method not allowed', message: `${url.pathname} takes ${route.method}` });
      return true;
    }
    if (route.scope !== 'none') {
      const refusal = authorize(req.headers.authorization, route.scope);
      if (refusal !== undefined) {
        sendJson(res, refusal.status, { code: refusal.code, message: refusal.message });
        return true;
      }
    }
    try {
      await route.run(req, res, url.searchParams, context);
    } catch (error) {
      if (!isWalshipError(error)) throw error;
      const status = httpStatusOfKind(error.kind);
      if (status >= 500)
        options.log.warn({ code: error.code, route: url.pathname }, `sequencer: ${error.message}`);
      if (!res.headersSent)
        sendJson(res, status, { code: error.code, kind: error.kind, message: error.message });
    }
    return true;
  };
  return { handler, registry: metrics.registry, close: () => closing.abort() };
}

export interface SequencerServerOptions extends SequencerHttpOptions {
  listen: HttpListenerOptions;
}

export interface RunningSequencerServer {
  port: number;
  service: SequencerHttpService;
  http: RunningHttpServer;
  /** Answers the long polls, stops listening, drops the connections. The store stays open. */
  close(): Promise<void>;
}

/** The service listening on `options.listen` (port 0 = any free port). */
export async function startSequencerServer(
  store: SequencerStore & Partial<StatusSource>,
  options: SequencerServerOptions,
): Promise<RunningSequencerServer> {
  const service = createSequencerHttpHandler(store, options);
  const http = await startHttpServer([service.handler], options.listen, options.log);
  return {
    port: http.port,
    service,
    http,
    close: async () => {
      service.close();
      await http.close();
    },
  };
}

// --- Auth ---------------------------------------------------------------------------------------

interface Refusal {
  status: 401 | 403;
  code: string;
  message: string;
}

/** Scopes each configured token grants. */
const GRANTS: Record<SequencerScope, readonly SequencerScope[]> = {
  read: ['read'],
  write: ['write', 'read'],
  admin: ['admin', 'write', 'read'],
};

function createScopeCheck(
  tokens: SequencerAuthTokens,
): (authorization: string | undefined, scope: SequencerScope) => Refusal | undefined {
  const scopes = (['read', 'write', 'admin'] as const).filter((scope) => tokens[scope] !== undefined);
  if (scopes.length === 0) return () => undefined;
  const checks = scopes.map((scope) => ({
    scope,
    matches: createHttpAuthenticator({ bearer: [tokens[scope]!] }),
  }));
  return (authorization, needed) => {
    // Every check runs (timing-safe each), so the time taken does not say which token matched.
    const matched = checks.filter((check) => check.matches(authorization)).map((check) => check.scope);
    if (matched.some((scope) => GRANTS[scope].includes(needed))) return undefined;
    if (matched.length > 0)
      return { status: 403, code: 'forbidden', message: `this token does not grant the ${needed} scope` };
    return {
      status: 401,
      code: 'unauthorized',
      message: `this route needs Authorization: Bearer <token> of the ${needed} scope or above`,
    };
  };
}

// --- Routes -------------------------------------------------------------------------------------

interface RouteContext {
  store: SequencerStore & Partial<StatusSource>;
  metrics: ServiceMetrics;
  closing: AbortSignal;
  bodyMaxBytes: number;
  clock: Clock;
}

interface Route {
  method: 'GET' | 'POST';
  scope: SequencerScope | 'none';
  run(
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    context: RouteContext,
  ): Promise<void>;
}

function answer(res: ServerResponse, value: unknown): void {
  sendJson(res, 200, toWire(value));
}

const ROUTES: Record<string, Route> = {
  '/ping': {
    method: 'GET',
    scope: 'none',
    run: async (_req, res) => {
      res.writeHead(204).end();
    },
  },
  '/status': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, _query, { store }) => answer(res, await statusOf(store)),
  },
  '/metrics': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, _query, { metrics }) => {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
    },
  },
  '/v1/cluster': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, _query, { store }) => answer(res, { clusterId: await store.clusterId() }),
  },
  '/v1/heads': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, _query, { store }) => answer(res, await store.heads()),
  },
  '/v1/writers': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, _query, { store }) => answer(res, { writers: await store.writers() }),
  },
  '/v1/log': {
    method: 'GET',
    scope: 'read',
    run: async (_req, res, query, { store }) => {
      const table = query.get('table') ?? '';
      const from = bigintFromWire(query.get('from'), 'from');
      const limit = Number(query.get('limit') ?? 'NaN');
      answer(res, { entries: await store.readLog(table, from, limit) });
    },
  },
  '/v1/watch': {
    method: 'GET',
    scope: 'read',
    run: watchRoute,
  },
  '/v1/initialize': {
    method: 'POST',
    scope: 'admin',
    run: async (req, res, _query, { store, bodyMaxBytes }) => {
      const body = (await readJsonBody(req, res, bodyMaxBytes)) as Record<string, unknown> | undefined;
      if (body === undefined) return;
      if (typeof body.clusterId !== 'string' || body.clusterId === '')
        throw new InvalidArgumentError('clusterId must be a non-empty string');
      await store.initialize(body.clusterId, startAfterFromWire(body.startAfter ?? {}));
      answer(res, {});
    },
  },
  '/v1/writers/register': {
    method: 'POST',
    scope: 'write',
    run: async (req, res, _query, { store, bodyMaxBytes }) => {
      const body = (await readJsonBody(req, res, bodyMaxBytes)) as Record<string, unknown> | undefined;
      if (body === undefined) return;
      answer(res, await store.registerWriter(body.writer as string));
    },
  },
  '/v1/writers/fence': {
    method: 'POST',
    scope: 'admin',
    run: async (req, res, _query, { store, bodyMaxBytes }) => {
      const body = (await readJsonBody(req, res, bodyMaxBytes)) as Record<string, unknown> | undefined;
      if (body === undefined) return;
      answer(res, await store.fence(body.writer as string, bigintFromWire(body.epoch, 'epoch')));
    },
  },
  '/v1/commit': {
    method: 'POST',
    scope: 'write',
    run: async (req, res, _query, { store, metrics, bodyMaxBytes, clock }) => {
      const body = await readJsonBody(req, res, bodyMaxBytes);
      if (body === undefined) return;
      const request = commitRequestFromWire(body);
      const started = clock.monotonicMs();
      try {
        const result = await store.commit(request);
        metrics.commits.inc({ outcome: result.replayed ? 'replayed' : 'committed' });
        metrics.commitSeconds.observe((clock.monotonicMs() - started) / 1000);
        answer(res, result);
      } catch (error) {
        metrics.commits.inc({ outcome: isWalshipError(error) ? error.code : 'error' });
        throw error;
      }
    },
  },
};

/** The long poll: answers once the version passes `after`, or `after` at waitMs, disconnect or close. */
async function watchRoute(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  { store, metrics, closing, clock }: RouteContext,
): Promise<void> {
  const after = bigintFromWire(query.get('after'), 'after');
  const waitText = query.get('waitMs');
  const waitMs = waitText === null ? WATCH_WAIT_MS_DEFAULT : Number(waitText);
  if (!Number.isSafeInteger(waitMs) || waitMs < 0)
    throw new InvalidArgumentError('waitMs must be a whole number of milliseconds');
  if (metrics.watching >= WATCHERS_MAX)
    throw new SequencerUnavailableError(
      `${WATCHERS_MAX} long polls are open already; poll /v1/heads instead`,
    );
  const stop = new AbortController();
  const timer = clock.setTimer(Math.min(waitMs, WATCH_WAIT_MS_MAX), () => stop.abort());
  const onGone = () => stop.abort();
  // The response's `close` fires when the client goes away before the answer (or the server drops it).
  res.once('close', onGone);
  closing.addEventListener('abort', onGone, { once: true });
  if (closing.aborted) stop.abort();
  metrics.watching++;
  try {
    const version = await store.watch(after, stop.signal);
    if (!res.destroyed) answer(res, { version });
  } finally {
    metrics.watching--;
    timer.cancel();
    res.off('close', onGone);
    closing.removeEventListener('abort', onGone);
    req.resume();
  }
}

/**
 * The JSON body, or undefined after answering 413 (over `maxBytes`; the connection is closed once
 * the rest is drained). Malformed JSON is INVALID_ARGUMENT.
 */
async function readJsonBody(req: IncomingMessage, res: ServerResponse, maxBytes: number): Promise<unknown> {
  const tooLarge = () => {
    res.setHeader('connection', 'close');
    sendJson(res, 413, {
      code: 'payload too large',
      message: `a request body holds at most ${maxBytes} bytes`,
    });
    req.resume(); // the rest is read and dropped, never buffered
    return undefined;
  };
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) return tooLarge();
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.byteLength;
    if (bytes > maxBytes) return tooLarge();
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new InvalidArgumentError('the request body is not JSON');
  }
}

/** The backend's own status when it has one, else what every SequencerStore can say. */
async function statusOf(store: SequencerStore & Partial<StatusSource>): Promise<object> {
  if (store.status !== undefined) return await store.status();
  const [clusterId, heads, writers] = await Promise.all([store.clusterId(), store.heads(), store.writers()]);
  return { clusterId, version: heads.version, heads: heads.tables, writers };
}

// --- Metrics ------------------------------------------------------------------------------------

interface ServiceMetrics {
  registry: Registry;
  commits: Counter<'outcome'>;
  commitSeconds: Histogram;
  /** Long polls open now. */
  watching: number;
}

function createMetrics(store: SequencerStore & Partial<StatusSource>): ServiceMetrics {
  const registry = new Registry();
  const metrics: ServiceMetrics = {
    registry,
    commits: new Counter({
      name: 'walship_sequencer_commits_total',
      help: 'Commit requests answered, by outcome (committed, replayed, or the error code)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    commitSeconds: new Histogram({
      name: 'walship_sequencer_commit_seconds',
      help: 'Time from a commit request to its durable answer (group commit included)',
      buckets: COMMIT_BUCKETS_SECONDS,
      registers: [registry],
    }),
    watching: 0,
  };
  new Gauge({
    name: 'walship_sequencer_watchers',
    help: 'Long polls (GET /v1/watch) open now',
    registers: [registry],
    collect() {
      this.set(metrics.watching);
    },
  });
  new Gauge({
    name: 'walship_sequencer_commit_group_size',
    help: 'Mean commits per group transaction (one fsync per group) over the recent groups',
    registers: [registry],
    async collect() {
      this.set(groupSizeOf(store.status === undefined ? {} : await store.status()));
    },
  });
  new Gauge({
    name: 'walship_sequencer_heads_version',
    help: 'The heads version: grows at every commit',
    registers: [registry],
    async collect() {
      this.set(Number((await store.heads()).version));
    },
  });
  return metrics;
}

/** The mean group size a backend's status reports (SqliteSequencerStatus.groupSizeMean), else 0. */
function groupSizeOf(status: object): number {
  const value = (status as { groupSizeMean?: unknown }).groupSizeMean;
  return typeof value === 'number' ? value : 0;
}
