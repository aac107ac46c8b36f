import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import type { ReadPreference } from '../client/index.js';
import { type Clock, type HttpHandler, sendJson, systemClock } from '../core/index.js';
import type { ClusterView, Excluded, ReadCandidate } from './cluster-view.js';
import { describeError, readText } from './cluster-view.js';
import { clientGone, pathOf, queryOf, requestHeadersFor, responseHeadersFor } from './forwarding.js';
import type { RouterTokens } from './read-your-writes.js';
import { type RouterEvents, type RouterRequestOutcome, routerNodeLabel } from './router-metrics.js';
import { type QueryTables, tablesOfQuery } from './sql-tables.js';

/**
 * Reads through the router (`GET /exec`, `GET /exp`), routed by read preference as GreptimeDB's
 * READ_PREFERENCE, per request from the header `X-Walship-Read-Preference` or the query parameter
 * `read_preference` (the header wins), else `router.read.preference`:
 *
 * - `primary`: the primary only;
 * - `replica`: replicas only — 503 `NO_REPLICA` when none could answer;
 * - `replica_preferred`: replicas first, then the primary.
 *
 * The candidates are the replicas that serve every table the query reads (sql-tables.ts; "all
 * tables" when unsure), least stale first by their last `/status`, taking turns among equally
 * fresh ones (cluster-view.ts). The consistency controls go to replicas unchanged — the
 * `X-Walship-Min-Txn` header or `min_txn`, `max_staleness_ms`, `wait_ms` — and a replica that
 * refuses them (503 STALE_REPLICA, 504 MIN_TXN_TIMEOUT), answers 421 or 503, or cannot be reached
 * hands the read to the next candidate. The primary is sent the read without them: it holds every
 * committed txn and is never stale.
 *
 * Whatever a node answers otherwise (200, 400 bad SQL, 401, …) is passed through unchanged, with
 * `X-Walship-Served-By: <node id> (<role>)` and `X-Walship-Staleness-Ms` (the replica's own value;
 * `0` from the primary) added; `X-Walship-Applied-Txn` comes from the replica as it sent it.
 */

/** How long a node may take to start answering a read before the next candidate is tried (ms). */
export const READ_HEADERS_TIMEOUT_MS = 65_000;
/** Bytes of a refusal's body kept to say why a candidate refused. */
const REFUSAL_BODY_MAX_BYTES = 64 * 1024;
/** Characters of SQL an error message repeats. */
const SHOWN_SQL_MAX_CHARS = 200;

const READ_PATHS: ReadonlySet<string> = new Set(['/exec', '/exp']);
/** Walship's words, and GreptimeDB's READ_PREFERENCE words for the same (issue 17 item 4). */
const PREFERENCES: Readonly<Record<string, ReadPreference>> = {
  primary: 'primary',
  replica: 'replica',
  replica_preferred: 'replica_preferred',
  leader: 'primary',
  follower: 'replica',
  follower_preferred: 'replica_preferred',
};
/** Parameters and headers that only mean something to a replica. */
const REPLICA_PARAMS = ['min_txn', 'max_staleness_ms', 'wait_ms'];
const REPLICA_HEADERS: ReadonlySet<string> = new Set([
  'x-walship-min-txn',
  'x-walship-max-staleness-ms',
  'x-walship-wait-ms',
  'x-walship-read-preference',
]);
const ROUTER_HEADERS: ReadonlySet<string> = new Set(['x-walship-read-preference']);

export interface ReadRouterOptions {
  view: ClusterView;
  agent: Agent;
  /** `router.read.preference`. */
  preference: ReadPreference;
  log: Logger;
  /** The commit tokens of the writes the router forwarded: a read waits for them (read-your-writes.ts). */
  tokens?: RouterTokens;
  /** Each read and each attempt at a node (`/metrics`, router-metrics.ts). Default: nothing. */
  events?: RouterEvents;
  /** Times reads for `events`. Default systemClock. */
  clock?: Clock;
}

interface Attempt {
  node: string;
  role: 'primary' | 'replica';
  answer: string;
}

export function createReadRouter(options: ReadRouterOptions): HttpHandler {
  const clock = options.clock ?? systemClock;
  return async (req, res) => {
    const path = pathOf(req.url);
    if (!READ_PATHS.has(path)) return false;
    const startedMs = options.events === undefined ? 0 : clock.monotonicMs();
    const outcome = await answerRead(options, req, res, path);
    options.events?.onRequest('read', outcome, (clock.monotonicMs() - startedMs) / 1000);
    return true;
  };
}

async function answerRead(
  options: ReadRouterOptions,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<RouterRequestOutcome> {
  if (req.method !== 'GET') {
    res.setHeader('Allow', 'GET');
    sendJson(res, 405, { error: `method ${req.method} not allowed on ${path}` });
    return 'client_error';
  }
  const params = new URLSearchParams(queryOf(req.url));
  const preference = preferenceOf(req, params, options.preference);
  if (preference === undefined) {
    sendJson(res, 400, {
      error:
        'read preference must be primary, replica or replica_preferred (or leader, follower, follower_preferred) (X-Walship-Read-Preference or read_preference=)',
    });
    return 'client_error';
  }
  params.delete('read_preference');
  return route(options, req, res, { path, params, preference });
}

function preferenceOf(
  req: IncomingMessage,
  params: URLSearchParams,
  fallback: ReadPreference,
): ReadPreference | undefined {
  const header = req.headers['x-walship-read-preference'];
  const given = (Array.isArray(header) ? header[0] : header) ?? params.get('read_preference') ?? fallback;
  const text = given.trim().toLowerCase();
  return Object.hasOwn(PREFERENCES, text) ? PREFERENCES[text] : undefined;
}

async function route(
  options: ReadRouterOptions,
  req: IncomingMessage,
  res: ServerResponse,
  read: { path: string; params: URLSearchParams; preference: ReadPreference },
): Promise<RouterRequestOutcome> {
  const sql = read.params.get('query') ?? '';
  const tables = tablesOfQuery(sql);
  const ownToken = req.headers['x-walship-min-txn'] !== undefined || read.params.has('min_txn');
  const eventual = (req.headers['x-walship-consistency'] ?? read.params.get('consistency')) === 'eventual';
  read.params.delete('consistency');
  const routerToken = ownToken || eventual ? undefined : options.tokens?.forRead(tables);
  const { replicas, primary, excluded } = options.view.readCandidates(tables);
  const candidates: ReadCandidate[] =
    read.preference === 'primary'
      ? primary === null
        ? []
        : [primary]
      : read.preference === 'replica'
        ? replicas
        : [...replicas, ...(primary === null ? [] : [primary])];
  const gone = clientGone(res);
  const attempts: Attempt[] = [];
  for (const candidate of candidates) {
    if (gone.aborted) return 'cancelled';
    const answered = await tryCandidate(options, req, res, { ...read, candidate, gone, routerToken });
    if (typeof answered === 'number') return answered < 300 ? 'ok' : 'error';
    attempts.push({ node: shownNode(candidate), role: candidate.role, answer: answered });
  }
  if (gone.aborted) return 'cancelled';
  sendJson(
    res,
    503,
    noNodeBody(
      { ...read, minTxnHeader: req.headers['x-walship-min-txn'] },
      sql,
      tables,
      attempts,
      excluded,
      primary === null ? options.view.snapshot.primary.why : null,
    ),
  );
  return 'no_node';
}

/** Sends the read to one node: its status when its answer went to the client, else why it was refused. */
async function tryCandidate(
  options: ReadRouterOptions,
  req: IncomingMessage,
  res: ServerResponse,
  attempt: {
    path: string;
    params: URLSearchParams;
    candidate: ReadCandidate;
    gone: AbortSignal;
    /** The router's commit token for the read's tables (read-your-writes), when the client sent none. */
    routerToken: string | undefined;
  },
): Promise<number | string> {
  const { candidate, routerToken } = attempt;
  const node = routerNodeLabel(candidate);
  const params = new URLSearchParams(attempt.params);
  if (candidate.role === 'primary') for (const name of REPLICA_PARAMS) params.delete(name);
  const headers = requestHeadersFor(req, candidate.role === 'primary' ? REPLICA_HEADERS : ROUTER_HEADERS);
  delete headers['x-walship-consistency'];
  if (routerToken !== undefined && candidate.role === 'replica') headers['x-walship-min-txn'] = routerToken;
  let response: Awaited<ReturnType<typeof request>>;
  try {
    response = await request(`${candidate.url}${attempt.path}?${params}`, {
      method: 'GET',
      dispatcher: options.agent,
      headers,
      headersTimeout: READ_HEADERS_TIMEOUT_MS,
      bodyTimeout: READ_HEADERS_TIMEOUT_MS,
      signal: attempt.gone,
    });
  } catch (error) {
    options.view.markSuspect(candidate.url);
    if (!attempt.gone.aborted) options.events?.onAttempt('read', node, 'unreachable');
    return describeError(error);
  }
  const status = response.statusCode;
  const refused = status === 421 || (candidate.role === 'replica' && (status === 503 || status === 504));
  options.events?.onAttempt('read', node, refused ? 'refused' : status < 300 ? 'ok' : 'error');
  if (refused) {
    const text = await readText(response.body, REFUSAL_BODY_MAX_BYTES).catch(() => '');
    if (status === 421) options.view.markSuspect(candidate.url);
    return `${status}${refusalCode(status, text)}: ${errorText(text)}`;
  }
  const staleness = response.headers['x-walship-staleness-ms'];
  res.writeHead(status, {
    ...responseHeadersFor(response.headers),
    'x-walship-served-by': `${candidate.nodeId ?? candidate.url} (${candidate.role})`,
    'x-walship-staleness-ms': candidate.role === 'primary' ? '0' : (staleness ?? 'unknown'),
    // What the read reflects of the writes the router forwarded: the token it waited for.
    ...(routerToken === undefined ? {} : { 'x-walship-read-your-writes': routerToken }),
  });
  await pipeline(response.body, res).catch((error: unknown) => {
    options.log.debug({ err: describeError(error), node: candidate.url }, 'router: a read response was cut');
  });
  return status;
}

function refusalCode(status: number, body: string): string {
  if (status === 503 && body.includes('max_staleness_ms')) return ' STALE_REPLICA';
  if (status === 504) return ' MIN_TXN_TIMEOUT';
  if (status === 421) return ' not serving reads';
  return '';
}

function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === 'string') return parsed.error.slice(0, 500);
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 500);
  } catch {}
  return body.slice(0, 300);
}

function shownNode(candidate: ReadCandidate): string {
  return candidate.nodeId === null ? candidate.url : `${candidate.nodeId} (${candidate.url})`;
}

/** The 503 body when no node answered: which tables, which bounds, which nodes were tried and why. */
function noNodeBody(
  read: { params: URLSearchParams; preference: ReadPreference; minTxnHeader: string | string[] | undefined },
  sql: string,
  tables: QueryTables,
  attempts: Attempt[],
  excluded: Excluded[],
  noPrimaryWhy: string | null,
): Record<string, unknown> {
  const code =
    read.preference === 'replica' ? 'NO_REPLICA' : read.preference === 'primary' ? 'NO_PRIMARY' : 'NO_NODE';
  const tableText =
    tables.kind === 'tables'
      ? tables.names.length === 0
        ? 'no table'
        : tables.names.join(', ')
      : `all tables (${tables.reason})`;
  const bound = read.params.get('max_staleness_ms');
  const header = Array.isArray(read.minTxnHeader) ? read.minTxnHeader.join(',') : read.minTxnHeader;
  const token = read.params.get('min_txn') ?? header ?? null;
  const bounds = `max_staleness_ms=${bound ?? 'none'}${token === null ? '' : `, min_txn=${token.slice(0, 100)}`}`;
  const tried =
    attempts.length === 0
      ? 'no candidate'
      : attempts.map((a) => `${a.node} [${a.role}]: ${a.answer}`).join('; ');
  const notTried =
    excluded.length === 0 ? '' : `; not candidates: ${excluded.map((e) => `${e.node}: ${e.why}`).join('; ')}`;
  const primaryText =
    noPrimaryWhy === null || read.preference === 'replica' ? '' : `; no primary: ${noPrimaryWhy}`;
  const shownSql = sql.length <= SHOWN_SQL_MAX_CHARS ? sql : `${sql.slice(0, SHOWN_SQL_MAX_CHARS)}…`;
  const message =
    `no ${read.preference === 'replica' ? 'replica' : 'node'} could answer this read (read preference ${read.preference}; ` +
    `tables: ${tableText}; ${bounds}); tried: ${tried}${notTried}${primaryText}`;
  return {
    code,
    message,
    // QuestDB's /exec error body has `query` and `error`: clients that show `error` show the reason.
    query: shownSql,
    error: message,
    preference: read.preference,
    tables: tables.kind === 'tables' ? tables.names : 'all',
    maxStalenessMs: bound === null ? null : Number(bound),
    tried: attempts,
    notCandidates: excluded,
  };
}
