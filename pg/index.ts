/**
 * The PostgreSQL door (issue 17): the wire protocol v3 on every node, served by the node's query
 * hosts with the same limits and read consistency as `/exec`.
 */
export { PG_SERVER_VERSION, type PgServer, type PgServerOptions, startPgServer } from './server.js';
export { PgError, type PgQueryOptions, type PgQueryRunner } from './session.js';
export { rewriteForSqlite } from './sql-text.js';

/** The session settings that ask a replica for a read consistency, as `/exec`'s parameters. */
const CONSISTENCY_SETTINGS = ['min_txn', 'wait_ms', 'max_staleness_ms'] as const;

/** `SET walship.min_txn = '…'` and the like, as the URL parameters a replica's read consistency reads. */
export function consistencyParams(session: ReadonlyMap<string, string>): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of CONSISTENCY_SETTINGS) {
    const value = session.get(`walship.${name}`);
    if (value !== undefined && value !== '') params.set(name, value);
  }
  return params;
}
