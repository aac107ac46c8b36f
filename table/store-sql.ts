import Database from 'better-sqlite3';
import { type ErrorKind, WalshipError } from '../core/index.js';
import { DESIGNATED_TIMESTAMP_COLUMN } from '../wal/index.js';
import { SQL_DECLARED_TYPES } from './sql-types.js';
import type { ColumnSchema } from './table-schema.js';

/**
 * The SQL text of the table store: its metadata tables, identifier quoting, and how SQLite errors
 * become WalshipErrors.
 *
 * Metadata tables (created by TableStore.open on a writable store):
 * - `_walship_tables`: one row per table — `name` (canonical spelling, COLLATE NOCASE primary
 *   key), `key` (tableKey(name), unique: the identity, since SQLite's NOCASE folds ASCII only),
 *   `last_txn` (committed / applied watermark), `uploaded_txn` (primary's uploaded watermark),
 *   `created_at` (wall-clock ms).
 * - `_walship_columns`: `("table", "column", type, position)` — canonical table name, canonical
 *   column name, walship ColumnType, 0-based position (`timestamp` is 0).
 * - `_walship_kv`: `(key, value)` text pairs for node facts (node id, epoch, …).
 * - `_walship_pending`: `("table", txn, bytes)` — encoded txn records awaiting upload.
 * - `_walship_batches`, `_walship_batch_writers`: the client batches known committed
 *   (batch-ledger.ts, RFC-0011).
 * `PRAGMA user_version` holds STORE_FORMAT_VERSION.
 */

/** The layout version of the metadata tables; a store of another version is refused. */
export const STORE_FORMAT_VERSION = 1;

export const METADATA_DDL = `
CREATE TABLE IF NOT EXISTS _walship_tables (
  name TEXT NOT NULL COLLATE NOCASE PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  last_txn INTEGER NOT NULL,
  uploaded_txn INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _walship_columns (
  "table" TEXT NOT NULL,
  "column" TEXT NOT NULL,
  type TEXT NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY ("table", position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _walship_kv (
  key TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _walship_pending (
  "table" TEXT NOT NULL,
  txn INTEGER NOT NULL,
  bytes BLOB NOT NULL,
  PRIMARY KEY ("table", txn)
);
`;

/** `name` as an SQLite quoted identifier. Valid names hold no `"`, but quoting stays total. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The DDL of a nullable column: quoted name and declared type (sql-types.ts). */
export function columnDefinition(column: ColumnSchema): string {
  return `${quoteIdentifier(column.name)} ${SQL_DECLARED_TYPES[column.type]}`;
}

/**
 * The DDL creating a user table: a rowid table named as the user spelled it (so `SELECT * FROM
 * trades` works) with the designated timestamp column first, then `columns` (nullable), in one
 * statement. Columns a later txn brings are added by ALTER TABLE ADD COLUMN, which stores the very
 * DDL text this function writes for the same columns (SQLite splices the definition in before the
 * closing parenthesis), so a table reads the same however its columns came.
 */
export function createTableSql(name: string, columns: readonly ColumnSchema[] = []): string {
  const timestamp = `${quoteIdentifier(DESIGNATED_TIMESTAMP_COLUMN)} ${SQL_DECLARED_TYPES.timestamp} NOT NULL`;
  const definitions = [timestamp, ...columns.map(columnDefinition)];
  return `CREATE TABLE ${quoteIdentifier(name)} (${definitions.join(', ')})`;
}

/** What a caller should do about an SQLite result code (SQLite's codes: https://sqlite.org/rescode.html). */
function kindOfSqliteCode(code: string): ErrorKind {
  if (/^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|NOMEM|INTERRUPT|PROTOCOL)/.test(code)) return 'unavailable';
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return 'data';
  if (/^SQLITE_READONLY/.test(code)) return 'invalid';
  return 'internal';
}

/**
 * `error` as a WalshipError: SQLite errors become code `STORAGE_FAILED` with a kind from their
 * result code, the SQLite message, what was being done, and the error as `cause`. WalshipErrors
 * pass through; anything else (a programmer error) is returned unchanged.
 */
export function storageError(error: unknown, doing: string): unknown {
  if (!(error instanceof Database.SqliteError)) return error;
  return new WalshipError(
    'STORAGE_FAILED',
    kindOfSqliteCode(error.code),
    `could not ${doing}: ${error.message}`,
    {
      cause: error,
      details: { sqliteCode: error.code },
    },
  );
}
