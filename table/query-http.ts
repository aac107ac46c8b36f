import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Clock, isWalshipError, systemClock, WalshipError } from '../core/index.js';
import { formatExecError, formatExecJson } from './query-format.js';
import type { QueryPool } from './query-pool.js';

/**
 * QuestDB's read endpoints over a QueryPool (DESIGN §10 "Reads"):
 * - `GET /exec?query=…[&limit=lo,hi][&count=true][&nm=true]` → `/exec` JSON (`timings` is ignored);
 * - `GET /exp?query=…[&limit=lo,hi][&nm=true][&delimiter=;][&filename=name]` → CSV attachment.
 * Errors use QuestDB's `{"query","error","position"}` body: 400 for a query that cannot run as
 * written (bad SQL, a write, too many rows), 503 for a time limit, a full queue or a closed pool
 * (retry elsewhere or later), 401 when `auth` refuses, 405 for a method other than GET.
 * An optional `consistency` hook (a replica's read consistency, DESIGN §6) runs before the query:
 * it may wait, refuse the read, or add response headers.
 */

/**
 * How a read ended, a small fixed set (`/metrics`, node/node-metrics.ts):
 * - `ok`: answered with rows (2xx);
 * - `client_error`: the query cannot run as written (bad SQL, a write, too many rows, a bad
 *   parameter or commit token; 400, 405);
 * - `refused`: bad credentials (401), or the replica's read consistency refused it (stale, a commit
 *   token not applied in time, too many waiting reads, a token's write lost in a failover);
 * - `unavailable`: a time limit, a full queue, a closed pool or a node changing role (503);
 * - `server_error`: a bug (500);
 * - `cancelled`: the client went away before the answer.
 */
export const QUERY_OUTCOMES = [
  'ok',
  'client_error',
  'refused',
  'unavailable',
  'server_error',
  'cancelled',
] as const;
export type QueryOutcome = (typeof QUERY_OUTCOMES)[number];

export interface QueryHttpOptions {
  /** Decides whether a request may read; false → 401. Default: every request may. */
  auth?: (req: IncomingMessage) => boolean;
  /**
   * Wall clock for the default `/exp` file name (`questdb-query-<ms>.csv`, as QuestDB names it);
   * monotonic for `onQuery`. Default systemClock.
   */
  clock?: Clock;
  /** Called once per read of `/exec` or `/exp` once it is answered (`/metrics`). Default: nothing. */
  onQuery?: (outcome: QueryOutcome, seconds: number) => void;
  /**
   * Runs after `auth` and the empty-query check, before the query is dispatched, on `/exec` and
   * `/exp`; `signal` aborts when the client goes away. Resolves headers to add to the success
   * answer. A WalshipError it throws becomes QuestDB's error body: 400 for kind `invalid`, 504 for
   * `MIN_TXN_TIMEOUT`, 503 with `Retry-After: 1` for kinds `unavailable` and `closed`, 409 for
   * `conflict` (a commit token's txn lost in a failover, `TXN_NOT_IN_CLUSTER`); nothing is
   * answered when the client went away. Default: none (no wait, no extra headers).
   */
  consistency?: (
    req: IncomingMessage,
    params: URLSearchParams,
    signal: AbortSignal,
  ) => Promise<Record<string, string>>;
}

export interface QueryHttpHandler {
  /**
   * Answers `/exec` and `/exp` and resolves true; resolves false, without touching `res`, for any
   * other path so the caller can route it elsewhere. Never rejects: failures become HTTP answers.
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
}

type Endpoint = 'exec' | 'exp';

/** Creates the handler for QuestDB's read endpoints on `pool`. */
export function createQueryHttpHandler(pool: QueryPool, options: QueryHttpOptions = {}): QueryHttpHandler {
  const clock = options.clock ?? systemClock;
  return {
    async handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const endpoint = endpointOf(url.pathname);
      if (endpoint === undefined) return false;
      const query = url.searchParams.get('query') ?? '';
      const startedMs = options.onQuery === undefined ? 0 : clock.monotonicMs();
      const read: ReadRequest = {
        pool,
        endpoint,
        query,
        params: url.searchParams,
        req,
        res,
        auth: options.auth,
        consistency: options.consistency,
        clock,
        refusal: undefined,
      };
      try {
        await answer(read);
      } catch (error) {
        // A bug or a throwing `auth`: still one answer, never an unhandled rejection.
        if (!res.headersSent)
          sendJson(res, 500, formatExecError(query, `internal error: ${String(error)}`, 0));
        else res.destroy();
      }
      options.onQuery?.(outcomeOf(read), (clock.monotonicMs() - startedMs) / 1000);
      return true;
    },
  };
}

/** One request to a read endpoint. */
interface ReadRequest {
  pool: QueryPool;
  endpoint: Endpoint;
  query: string;
  params: URLSearchParams;
  req: IncomingMessage;
  res: ServerResponse;
  auth: QueryHttpOptions['auth'];
  consistency: QueryHttpOptions['consistency'];
  clock: Clock;
  /** Set when the consistency hook refused the read: its outcome. */
  refusal: QueryOutcome | undefined;
}

/** How `read` ended, once answered (QUERY_OUTCOMES). */
function outcomeOf(read: ReadRequest): QueryOutcome {
  if (read.refusal !== undefined) return read.refusal;
  const { res } = read;
  if (!res.headersSent) return 'cancelled';
  const status = res.statusCode;
  if (status < 300) return 'ok';
  if (status === 401) return 'refused';
  if (status < 500) return 'client_error';
  if (status === 503 || status === 504) return 'unavailable';
  return 'server_error';
}

async function answer(r: ReadRequest): Promise<void> {
  if (r.req.method !== 'GET') {
    sendJson(r.res, 405, formatExecError(r.query, `method ${r.req.method} not allowed; use GET`, 0), {
      allow: 'GET',
    });
  } else if (r.auth !== undefined && !r.auth(r.req)) {
    sendJson(r.res, 401, formatExecError(r.query, 'Unauthorized', 0));
  } else if (r.query.trim() === '') {
    sendJson(r.res, 400, formatExecError(r.query, 'No query text', 0));
  } else {
    await answerRead(r);
  }
}

/** Runs the consistency hook, if any, then the query; the hook's headers go on the success answer. */
async function answerRead(r: ReadRequest): Promise<void> {
  const signal = abortOnDisconnect(r.res);
  let headers: Record<string, string> = {};
  if (r.consistency !== undefined) {
    try {
      headers = await r.consistency(r.req, r.params, signal);
    } catch (error) {
      if (!isWalshipError(error)) throw error;
      r.refusal = signal.aborted ? 'cancelled' : error.kind === 'invalid' ? 'client_error' : 'refused';
      sendConsistencyError(r.res, r.query, error, signal);
      return;
    }
  }
  if (r.endpoint === 'exec') await answerExec(r, signal, headers);
  else await answerExp(r, signal, headers);
}

function endpointOf(pathname: string): Endpoint | undefined {
  if (pathname === '/exec') return 'exec';
  if (pathname === '/exp') return 'exp';
  return undefined;
}

async function answerExec(
  { pool, query, params, res }: ReadRequest,
  signal: AbortSignal,
  headers: Record<string, string>,
): Promise<void> {
  if (params.get('fmt') === 'pg') {
    await answerPg({ pool, query, params, res }, signal, headers);
    return;
  }
  try {
    const result = await pool.query(query, {
      limit: parseQuestDbLimit(params.get('limit'), 'exec'),
      countAll: isTrue(params.get('count')),
      signal,
    });
    sendJson(res, 200, formatExecJson(result, { noMeta: isTrue(params.get('nm')) }), headers);
  } catch (error) {
    sendError(res, query, error);
  }
}

/**
 * `/exec?fmt=pg`: the PostgreSQL door's page (`{names, oids, rows}`, query-pg.ts) for a door that
 * reaches the node over HTTP (the router's). `pg_params` binds `$1`… as a JSON object; an int8 is
 * `{"int8": "…"}` so it stays exact. `describe=true` prepares without running.
 */
async function answerPg(
  { pool, query, params, res }: Pick<ReadRequest, 'pool' | 'query' | 'params' | 'res'>,
  signal: AbortSignal,
  headers: Record<string, string>,
): Promise<void> {
  try {
    const text = params.get('pg_params');
    const bound = text === null ? undefined : decodePgParams(text);
    const page = await pool.queryPg(query, {
      signal,
      ...(bound === undefined ? {} : { params: bound }),
      ...(isTrue(params.get('describe')) ? { describeOnly: true } : {}),
    });
    send(res, 200, JSON.stringify(page), { ...headers, 'content-type': 'application/json; charset=utf-8' });
  } catch (error) {
    sendError(res, query, error);
  }
}

/** `pg_params`: a JSON object of parameter values; `{"int8": "…"}` is a bigint. */
export function decodePgParams(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new WalshipError('QUERY_INVALID', 'invalid', 'pg_params is not JSON', { details: { position: 0 } });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new WalshipError('QUERY_INVALID', 'invalid', 'pg_params must be a JSON object', {
      details: { position: 0 },
    });
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    const int8 = (value as { int8?: unknown } | null)?.int8;
    out[name] = typeof int8 === 'string' && /^-?\d{1,19}$/.test(int8) ? BigInt(int8) : value;
  }
  return out;
}

/** The JSON `pg_params` of decoded parameter values (decodePgParams reads it back). */
export function encodePgParams(params: Record<string, unknown>): string {
  return JSON.stringify(params, (_key, value) =>
    typeof value === 'bigint' ? { int8: value.toString() } : value,
  );
}

async function answerExp(
  { pool, query, params, res, clock }: ReadRequest,
  signal: AbortSignal,
  headers: Record<string, string>,
): Promise<void> {
  try {
    const csv = await pool.exportCsv(query, {
      limit: parseQuestDbLimit(params.get('limit'), 'exp'),
      header: !isTrue(params.get('nm')),
      delimiter: delimiterOf(params.get('delimiter')),
      signal,
    });
    const fileName = `${safeFileName(params.get('filename')) ?? `questdb-query-${Math.floor(clock.wallMs())}`}.csv`;
    send(res, 200, csv, {
      ...headers,
      'content-type': 'text/csv; charset=utf-8',
      'content-disposition': `attachment; filename="${fileName}"`,
    });
  } catch (error) {
    sendError(res, query, error);
  }
}

/**
 * QuestDB's `limit` parameter as a QueryPool page [lo, hi) (row indexes from 0, hi exclusive), or
 * undefined when absent. `/exec` reads `lo,hi` as 1-based and inclusive (`limit=10,20` → rows
 * 10..20, i.e. [9, 20)); `/exp` reads `lo` as rows to skip (`limit=10,20` → [10, 20)). `limit=n`
 * is the first n rows on both. Like QuestDB: unparsable parts keep their default (0, no end),
 * negatives count as 0, and an empty `hi` (`limit=10,`) means no end.
 */
export function parseQuestDbLimit(
  value: string | null,
  endpoint: Endpoint,
): readonly [number, number] | undefined {
  if (value === null) return undefined;
  const comma = value.indexOf(',');
  let skip = 0;
  let stop = Number.MAX_SAFE_INTEGER;
  if (comma > 0) {
    const lo = parseLong(value.slice(0, comma));
    const hi = comma + 1 < value.length ? parseLong(value.slice(comma + 1)) : undefined;
    if (lo !== undefined) skip = endpoint === 'exec' ? lo - 1 : lo;
    if (hi !== undefined) stop = hi;
  } else {
    stop = parseLong(value) ?? stop;
  }
  skip = Math.max(0, skip);
  stop = Math.max(0, stop);
  return [skip, Math.max(skip, stop)];
}

function parseLong(text: string): number | undefined {
  if (!/^-?\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

/** QuestDB's HttpKeywords.isTrue: the word `true`, any case. */
function isTrue(value: string | null): boolean {
  return value !== null && value.toLowerCase() === 'true';
}

/** QuestDB takes a one-character delimiter and ignores anything else. */
function delimiterOf(value: string | null): string {
  return value !== null && value.length === 1 && !'"\r\n'.includes(value) ? value : ',';
}

/** A file name safe inside a quoted header value: letters, digits, `.`, `_`, `-`; else undefined. */
function safeFileName(value: string | null): string | undefined {
  if (value === null) return undefined;
  const cleaned = value.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200);
  return cleaned === '' ? undefined : cleaned;
}

/** Aborts the query when the client goes away before its answer, freeing its query host. */
function abortOnDisconnect(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

function sendError(res: ServerResponse, query: string, error: unknown): void {
  if (isWalshipError(error, 'QUERY_ABORTED') || res.destroyed) return;
  const status = statusOf(error);
  const message = error instanceof Error ? error.message : String(error);
  const position =
    isWalshipError(error) && typeof error.details.position === 'number' ? error.details.position : 0;
  const extra: Record<string, string> = isWalshipError(error, 'QUERY_BUSY') ? { 'retry-after': '1' } : {};
  sendJson(res, status, formatExecError(query, message, position), extra);
}

/** A refusal by the consistency hook; nothing when the client already went away. */
function sendConsistencyError(
  res: ServerResponse,
  query: string,
  error: WalshipError,
  signal: AbortSignal,
): void {
  if (signal.aborted || res.destroyed) return;
  let status = 500;
  if (error.kind === 'invalid') status = 400;
  else if (error.code === 'MIN_TXN_TIMEOUT') status = 504;
  else if (error.kind === 'unavailable' || error.kind === 'closed') status = 503;
  else if (error.kind === 'conflict') status = 409;
  const extra: Record<string, string> = status === 503 ? { 'retry-after': '1' } : {};
  sendJson(res, status, formatExecError(query, error.message, 0), extra);
}

function statusOf(error: unknown): number {
  if (!isWalshipError(error)) return 500;
  if (error.kind === 'invalid') return 400;
  if (error.kind === 'unavailable' || error.kind === 'closed') return 503;
  return 500;
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  send(res, status, body, { 'content-type': 'application/json; charset=utf-8', ...headers });
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string>): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
