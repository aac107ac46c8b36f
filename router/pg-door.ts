import { type Agent, request } from 'undici';
import { type ErrorCode, WalshipError } from '../core/index.js';
import { PgError, type PgQueryOptions, type PgServer, startPgServer } from '../pg/index.js';
import { encodePgParams, type PgPage } from '../table/index.js';

/**
 * The router's PostgreSQL door (issue 17 item 4): PostgreSQL clients connect to the router, and
 * each query goes through the router's own read path (`GET /exec?fmt=pg` on its HTTP listener:
 * read preference, candidates, fallback, read-your-writes tokens, served-by), so the door routes
 * exactly as HTTP reads are routed. Per session, with GreptimeDB's words or walship's:
 *
 *   SET READ_PREFERENCE = 'leader' | 'follower' | 'follower_preferred'
 *                       | 'primary' | 'replica' | 'replica_preferred';
 *
 * and `walship.min_txn`, `walship.wait_ms`, `walship.max_staleness_ms` as on a node. Every answer
 * comes with a NOTICE naming the node that served it (`served by b (replica), staleness 12 ms`),
 * which psql prints and drivers expose: that is how a client sees where its read went.
 */

/** GreptimeDB's READ_PREFERENCE words, and walship's own, as the router's read preferences. */
const PREFERENCES: Readonly<Record<string, string>> = {
  leader: 'primary',
  follower: 'replica',
  follower_preferred: 'replica_preferred',
  primary: 'primary',
  replica: 'replica',
  replica_preferred: 'replica_preferred',
};

export interface RouterPgDoorOptions {
  host: string;
  port: number;
  credentials: { user: string; password: string }[];
  maxMessageBytes: number;
  maxConnections: number;
  authMethod?: 'scram-sha-256' | 'md5';
  serverVersion: string;
  /** The router's own HTTP listener, e.g. `http://127.0.0.1:9000`. */
  routerUrl: string;
  agent: Agent;
}

export function startRouterPgDoor(options: RouterPgDoorOptions): Promise<PgServer> {
  return startPgServer({
    host: options.host,
    port: options.port,
    credentials: options.credentials,
    maxMessageBytes: options.maxMessageBytes,
    maxConnections: options.maxConnections,
    serverVersion: options.serverVersion,
    ...(options.authMethod === undefined ? {} : { authMethod: options.authMethod }),
    runQuery: (sql, query) => readThroughRouter(options, sql, query),
  });
}

async function readThroughRouter(
  options: RouterPgDoorOptions,
  sql: string,
  query: PgQueryOptions,
): Promise<PgPage> {
  const params = new URLSearchParams({ query: sql, fmt: 'pg' });
  if (query.describeOnly === true) params.set('describe', 'true');
  if (query.params !== undefined) params.set('pg_params', encodePgParams(query.params));
  for (const name of ['min_txn', 'wait_ms', 'max_staleness_ms']) {
    const value = query.session.get(`walship.${name}`);
    if (value !== undefined && value !== '') params.set(name, value);
  }
  const headers: Record<string, string> = {};
  const asked = query.session.get('read_preference');
  if (asked !== undefined) {
    const preference = PREFERENCES[asked.trim().toLowerCase()];
    if (preference === undefined) {
      throw new WalshipError(
        'INVALID_ARGUMENT',
        'invalid',
        `READ_PREFERENCE must be leader, follower or follower_preferred (or primary, replica, replica_preferred), not ${JSON.stringify(asked)}`,
      );
    }
    headers['x-walship-read-preference'] = preference;
  }
  const response = await request(`${options.routerUrl}/exec?${params}`, {
    dispatcher: options.agent,
    headers,
    signal: query.signal,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw errorOf(response.statusCode, text);
  const page = JSON.parse(text) as PgPage;
  const servedBy = response.headers['x-walship-served-by'];
  const staleness = response.headers['x-walship-staleness-ms'];
  if (typeof servedBy === 'string') {
    page.notice = `served by ${servedBy}${typeof staleness === 'string' ? `, staleness ${staleness} ms` : ''}`;
  }
  return page;
}

/** A refusal of the read path as the WalshipError the door turns into an ErrorResponse. */
function errorOf(status: number, text: string): Error {
  let body: { error?: unknown; code?: unknown; position?: unknown } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {}
  const message = typeof body.error === 'string' ? body.error : text.slice(0, 500);
  const position = typeof body.position === 'number' ? body.position : 0;
  if (status === 400) {
    const code: ErrorCode = /read-only/.test(message) ? 'QUERY_READ_ONLY' : 'QUERY_INVALID';
    return new WalshipError(code, 'invalid', message, { details: { position } });
  }
  if (status === 504) return new WalshipError('MIN_TXN_TIMEOUT', 'unavailable', message);
  // NO_REPLICA, NO_PRIMARY, NO_NODE: no node could take the read now (57P03, cannot connect now).
  const code = typeof body.code === 'string' ? `${body.code}: ` : '';
  return new PgError({
    severity: 'ERROR',
    sqlState: status === 401 ? '28000' : '57P03',
    message: `${code}${message}`,
  });
}
