import Database from 'better-sqlite3';
import { type Agent, request } from 'undici';
import { type ErrorCode, WalshipError } from '../core/index.js';
import {
  consistencyParams,
  PgError,
  type PgQueryOptions,
  type PgServer,
  rewriteForSqlite,
  startPgServer,
} from '../pg/index.js';
import { encodePgParams, type PgPage } from '../table/index.js';
import type { ClusterSnapshot } from './cluster-view.js';

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

/** Where the router's PostgreSQL door listens and whom it lets in (`pg.*`, as a node's). */
export interface RouterPgOptions {
  host: string;
  port: number;
  credentials: { user: string; password: string }[];
  maxMessageBytes: number;
  maxConnections: number;
  authMethod?: 'scram-sha-256' | 'md5';
}

export interface RouterPgDoorOptions extends RouterPgOptions {
  serverVersion: string;
  /** The router's own HTTP listener, e.g. `http://127.0.0.1:9000`. */
  routerUrl: string;
  agent: Agent;
  /** The cluster as the router sees it now, for `information_schema.region_peers`. */
  view: () => ClusterSnapshot;
  /** Monotonic ms (the router's clock), for how long a node has not answered. */
  monotonicMs: () => number;
  /** The router's agent for the nodes (ADMIN … TABLE_FOLLOWER calls their /admin/tables). */
  nodeAgent: Agent;
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
  if (REGION_PEERS.test(sql)) return regionPeers(options, sql, query);
  const admin = ADMIN_FOLLOWER.exec(sql);
  if (admin !== null) return tableFollower(options, admin, query);
  const explained = /^\s*EXPLAIN\s+ANALYZE\s+/i.exec(sql);
  if (explained !== null) return explainAnalyze(options, sql.slice(explained[0].length), query);
  const params = new URLSearchParams({ query: sql, fmt: 'pg' });
  if (query.describeOnly === true) params.set('describe', 'true');
  if (query.params !== undefined) params.set('pg_params', encodePgParams(query.params));
  for (const [name, value] of consistencyParams(query.session)) params.set(name, value);
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

/** The door has rewritten `information_schema.region_peers` to `information_schema_region_peers`. */
const REGION_PEERS = /region_peers\b/i;

/** GreptimeDB's `information_schema.region_peers`' columns, and walship's own beside them. */
const PEER_COLUMNS = [
  'table_catalog',
  'table_schema',
  'table_name',
  'region_id',
  'peer_id',
  'peer_addr',
  'is_leader',
  'status',
  'down_seconds',
  'role',
  'txn',
  'txns_behind',
  'staleness_ms',
];

/**
 * `information_schema.region_peers` (GreptimeDB's view of which node holds which table, leader or
 * follower), from the router's cluster view: a row per node and table it serves. walship has one
 * region per table, so `region_id` is the table's store key. The query runs on an in-memory
 * SQLite database holding that one table, so its WHERE, ORDER BY and aggregates work as written.
 */
function regionPeers(options: RouterPgDoorOptions, sql: string, query: PgQueryOptions): PgPage {
  const db = new Database(':memory:');
  try {
    db.exec(`CREATE TABLE region_peers (${PEER_COLUMNS.map((c) => `"${c}"`).join(', ')})`);
    const insert = db.prepare(`INSERT INTO region_peers VALUES (${PEER_COLUMNS.map(() => '?').join(', ')})`);
    const now = options.monotonicMs();
    for (const node of options.view().nodes) {
      const down =
        node.error === null || node.seenAtMs === null
          ? 0
          : Math.max(0, Math.floor((now - node.seenAtMs) / 1000));
      for (const table of node.tables) {
        const alive = table.suspended ? 'SUSPENDED' : node.error === null ? 'ALIVE' : 'DOWNGRADED';
        const txn = node.role === 'primary' ? table.committedTxn : table.appliedTxn;
        insert.run(
          ...[
            'qdb',
            'public',
            table.name,
            table.key ?? table.name.toLowerCase(),
            node.nodeId ?? node.url,
            node.url,
          ],
          ...[
            node.role === 'primary' ? 'Yes' : 'No',
            alive,
            down,
            node.role,
            txn,
            table.txnsBehind,
            node.stalenessMs,
          ],
        );
      }
    }
    const rewritten = rewriteForSqlite(sql).replace(/\binformation_schema_region_peers\b/gi, 'region_peers');
    const statement = db.prepare(rewritten);
    if (!statement.reader) throw new WalshipError('QUERY_READ_ONLY', 'invalid', 'region_peers is read-only');
    const names = statement.columns().map((c) => c.name);
    const raw = statement.raw(true);
    const rows = (query.params === undefined ? raw.all() : raw.all(query.params)) as unknown[][];
    const numeric = names.map((_, i) => rows.every((r) => r[i] === null || typeof r[i] === 'number'));
    return {
      names,
      oids: numeric.map((n) => (n ? 20 : 25)),
      rows: rows.map((r) =>
        r.map((v, i) => (v === null ? null : numeric[i] ? String(Math.trunc(Number(v))) : String(v))),
      ),
      notice: 'served by the router (its cluster view)',
    };
  } catch (error) {
    if (error instanceof WalshipError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new WalshipError('QUERY_INVALID', 'invalid', message, { details: { position: 0 } });
  } finally {
    db.close();
  }
}

/**
 * `EXPLAIN ANALYZE <query>`: runs the query through the router as any read and answers, instead
 * of its rows, where it ran (GreptimeDB shows a follower's read in its plan): the node and role,
 * its staleness, the rows and the time. SQLite's own plan is `EXPLAIN QUERY PLAN` on a node.
 */
async function explainAnalyze(
  options: RouterPgDoorOptions,
  sql: string,
  query: PgQueryOptions,
): Promise<PgPage> {
  const startedMs = options.monotonicMs();
  const page = await readThroughRouter(options, sql, query);
  const elapsedMs = options.monotonicMs() - startedMs;
  return {
    names: ['QUERY PLAN'],
    oids: [25],
    rows: [
      [page.notice ?? 'served by an unknown node'],
      [`rows: ${page.rows.length}`],
      [`time: ${elapsedMs.toFixed(1)} ms`],
    ],
  };
}

/** GreptimeDB's `ADMIN ADD_TABLE_FOLLOWER('t', 'a,b')` and `ADMIN REMOVE_TABLE_FOLLOWER('t', 'a')`. */
const ADMIN_FOLLOWER =
  /^\s*ADMIN\s+(ADD|REMOVE)_TABLE_FOLLOWER\s*\(\s*'((?:[^']|'')*)'\s*,\s*'((?:[^']|'')*)'\s*\)\s*;?\s*$/i;

/**
 * `ADMIN ADD_TABLE_FOLLOWER` / `REMOVE_TABLE_FOLLOWER` as replicas of chosen tables (RFC-0008): a
 * `POST /admin/tables?add=t` (or `drop=t`, which also drops the replica's copy) on each named
 * replica, by node id or URL. Admin actions need the nodes' admin token, given by the session
 * (`SET walship.admin_token = '…'`): the router holds none, so PostgreSQL credentials alone never
 * change a node. One row per node: what it answered.
 */
async function tableFollower(
  options: RouterPgDoorOptions,
  admin: RegExpExecArray,
  query: PgQueryOptions,
): Promise<PgPage> {
  const token = query.session.get('walship.admin_token');
  if (token === undefined || token === '') {
    throw new PgError({
      severity: 'ERROR',
      sqlState: '42501',
      message: "ADMIN needs the nodes' admin token: SET walship.admin_token = '…' first",
    });
  }
  const action = admin[1]!.toUpperCase() === 'ADD' ? 'add' : 'drop';
  const table = admin[2]!.replaceAll("''", "'");
  const named = admin[3]!
    .replaceAll("''", "'")
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  const nodes = options.view().nodes;
  const rows: (string | null)[][] = [];
  for (const name of named) {
    const node = nodes.find((n) => n.nodeId === name || n.url === name);
    if (node === undefined || node.role !== 'replica') {
      rows.push([
        name,
        action,
        null,
        node === undefined ? 'no such node in the cluster view' : `is a ${node.role}, not a replica`,
      ]);
      continue;
    }
    const response = await request(`${node.url}/admin/tables?${new URLSearchParams({ [action]: table })}`, {
      method: 'POST',
      dispatcher: options.nodeAgent,
      headers: { authorization: `Bearer ${token}` },
      signal: query.signal,
    });
    const text = (await response.body.text()).slice(0, 2000);
    rows.push([node.nodeId ?? node.url, action, String(response.statusCode), text]);
  }
  return { names: ['node', 'action', 'status', 'answer'], oids: [25, 25, 20, 25], rows };
}
