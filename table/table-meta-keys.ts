import type Database from 'better-sqlite3';
import { WalshipError } from '../core/index.js';
import type { TableKey } from './names.js';
import { quoteIdentifier } from './store-sql.js';

/**
 * Every `_walship_kv` key that belongs to one table, owned here so that a table dropped from a node
 * leaves none behind (`dropTable`). The roles read and write them; nothing else defines them.
 * `<tableKey>` is the table's store key (names.ts tableKey).
 */

/** `table.epoch.<tableKey>` = the epoch of the table's newest txn; history keys follow it with `@<epoch>` (replica/epoch-history.ts). */
export const TABLE_EPOCH_META_PREFIX = 'table.epoch.';
/**
 * `table.partial.<tableKey>` = the first txn of the segment a point-in-time restore (RFC-0006)
 * applied only in part; the follower finishes that segment before it looks for the next one. An
 * empty value means none.
 */
export const TABLE_PARTIAL_META_PREFIX = 'table.partial.';
/**
 * `table.dedup.<tableKey>` = the table's upsert keys as a JSON array of column names, set by a dedup
 * txn (RFC-0011 "Deduplicated tables"); absent when the table is not deduplicated.
 */
export const TABLE_DEDUP_META_PREFIX = 'table.dedup.';
/**
 * `table.ttl.<tableKey>` = the table's time to live as JSON `{"count":n,"unit":"DAY"}`, set by a ttl
 * txn (RFC-0007 "Retention of rows"); absent when it has none.
 */
export const TABLE_TTL_META_PREFIX = 'table.ttl.';
/** `sequencer.rejected.<tableKey>.<txn>` = why a txn was applied as an empty fence (TYPE_CONFLICT). */
export const REJECTED_META_PREFIX = 'sequencer.rejected.';
/** `sequencer.rejectedCount.<tableKey>` = how many txns of the table were rejected so far. */
export const REJECTED_COUNT_META_PREFIX = 'sequencer.rejectedCount.';
/**
 * `sequencer.partial.<tableKey>` = the txnFirst of a log entry the table holds only in part (a
 * restore cut inside it); the sequenced follower reads from that entry and applies the rest. ''
 * means none. The follower itself never leaves one: it applies whole entries.
 */
export const PARTIAL_ENTRY_META_PREFIX = 'sequencer.partial.';
/** `sequencer.exported.<tableKey>` = every txnlog object of txns up to this one is known present. */
export const EXPORTED_META_PREFIX = 'sequencer.exported.';

/** `<prefix><tableKey>` keys of one table. */
const EXACT_PREFIXES = [
  TABLE_EPOCH_META_PREFIX,
  TABLE_DEDUP_META_PREFIX,
  TABLE_TTL_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
  PARTIAL_ENTRY_META_PREFIX,
  EXPORTED_META_PREFIX,
  REJECTED_COUNT_META_PREFIX,
];

/**
 * Drops the table of store key `key` from the database `db` (a connection to a node's database,
 * inside the caller's transaction): its SQLite table, its rows in `_walship_tables` and
 * `_walship_columns`, and every meta key above. Returns false when there is no such table. Refuses
 * (TABLE_HAS_PENDING, invalid) a table with txns waiting for upload: those exist only here.
 */
export function dropTable(db: Database.Database, key: TableKey): boolean {
  const row = db.prepare('SELECT name FROM _walship_tables WHERE key = ?').get(key) as
    | { name: string }
    | undefined;
  if (row === undefined) return false;
  const pending = db.prepare('SELECT count(*) FROM _walship_pending WHERE "table" = ?').pluck().get(row.name);
  if ((pending as number) > 0)
    throw new WalshipError(
      'TABLE_HAS_PENDING',
      'invalid',
      `table ${JSON.stringify(row.name)} holds ${pending} txns that never reached the store: it is not dropped`,
    );
  db.exec(`DROP TABLE IF EXISTS ${quoteIdentifier(row.name)}`);
  db.prepare('DELETE FROM _walship_columns WHERE "table" = ?').run(row.name);
  db.prepare('DELETE FROM _walship_tables WHERE key = ?').run(key);
  const deleteKey = db.prepare('DELETE FROM _walship_kv WHERE key = ?');
  for (const prefix of EXACT_PREFIXES) deleteKey.run(`${prefix}${key}`);
  const deletePrefix = db.prepare('DELETE FROM _walship_kv WHERE substr(key, 1, ?) = ?');
  for (const prefix of [`${REJECTED_META_PREFIX}${key}.`, `${TABLE_EPOCH_META_PREFIX}${key}@`])
    deletePrefix.run(prefix.length, prefix);
  return true;
}
