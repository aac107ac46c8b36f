import { rmSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { WalshipError } from '../core/index.js';
import { asTableKey, type TableKey } from './names.js';
import { STORE_FORMAT_VERSION, storageError } from './store-sql.js';
import type { TableStore } from './table-store.js';

/**
 * The image of a snapshot (DESIGN §8): one self-contained SQLite file holding a consistent copy of
 * a node's table store, scrubbed of everything that belongs to the node rather than to the data.
 *
 * Scrubbed from the copy:
 * - the pending queue (`_walship_pending`): those txns are the primary's upload backlog; a node
 *   restoring the image fetches them as segments;
 * - the uploaded watermark: set to `last_txn`, since a restored node has nothing of its own to upload;
 * - node facts in `_walship_kv` (`node.id`, `cluster.id`, `epoch`, `claim.id`, …): copying them
 *   would give the restoring node another node's identity. Only keys starting with `table.` (facts
 *   about a table, such as `table.epoch.<tableKey>`) survive.
 * The scrub runs with `secure_delete` on, so the deleted bytes do not linger in free pages either.
 * The image is in rollback (DELETE) journal mode: no `-wal` file belongs to it.
 */

/** One table of a snapshot: canonical name, store key, and the last txn the image holds. */
export interface SnapshotTable {
  name: string;
  key: TableKey;
  lastTxn: bigint;
}

/** What an image holds: its tables ordered by key, and its size in bytes. */
export interface SnapshotImageInfo {
  tables: SnapshotTable[];
  rawBytes: number;
}

/** Keys of `_walship_kv` that describe a table and travel with the data. */
const TABLE_FACT_PREFIX = 'table.';

const SCRUB_SQL = `
DELETE FROM _walship_pending;
UPDATE _walship_tables SET uploaded_txn = last_txn WHERE uploaded_txn <> last_txn;
DELETE FROM _walship_kv WHERE substr(key, 1, ${TABLE_FACT_PREFIX.length}) <> '${TABLE_FACT_PREFIX}';
`;

/**
 * Copies `tables` into the new file `destFile` (TableStore.vacuumInto) and scrubs the copy (see the
 * header). Must not be called inside a transaction of `tables`. On failure `destFile` is removed.
 * Throws `STORAGE_FAILED` when SQLite fails. No second VACUUM: it would rewrite the whole file to
 * drop free pages that secure_delete has already zeroed, and zeros cost next to nothing compressed.
 */
export function createSnapshotImage(tables: TableStore, destFile: string): SnapshotImageInfo {
  tables.vacuumInto(destFile);
  try {
    const info = scrub(destFile);
    return { tables: info, rawBytes: statSync(destFile).size };
  } catch (error) {
    rmSync(destFile, { force: true });
    throw storageError(error, `scrub the snapshot image ${JSON.stringify(destFile)}`);
  }
}

function scrub(file: string): SnapshotTable[] {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('secure_delete = ON');
    const mode = db.pragma('journal_mode = DELETE', { simple: true });
    if (mode !== 'delete') {
      throw new WalshipError('STORAGE_FAILED', 'internal', `the snapshot image kept journal mode '${mode}'`);
    }
    db.exec(`BEGIN IMMEDIATE; ${SCRUB_SQL} COMMIT;`);
    return readTables(db);
  } finally {
    db.close();
  }
}

function readTables(db: Database.Database): SnapshotTable[] {
  const rows = db
    .prepare('SELECT name, key, last_txn AS lastTxn FROM _walship_tables ORDER BY key')
    .safeIntegers(true)
    .all() as { name: string; key: string; lastTxn: bigint }[];
  return rows.map((row) => ({ name: row.name, key: asTableKey(row.key), lastTxn: row.lastTxn }));
}

/**
 * Checks that `imageFile` is a snapshot image fit to become a node's table store: SQLite's
 * `quick_check` passes, the layout version is STORE_FORMAT_VERSION, the journal mode is DELETE, its
 * tables and watermarks are exactly `expected` (each uploaded watermark equal to its last txn), and
 * nothing node-local is left (no pending txns, no kv keys outside `table.`). Opens the file
 * read-only and changes nothing. Throws `SNAPSHOT_CORRUPT` (kind data) naming the check that failed.
 */
export function restoreSnapshotImage(imageFile: string, expected: readonly SnapshotTable[]): void {
  let db: Database.Database | undefined;
  let check = 'open';
  try {
    db = new Database(imageFile, { readonly: true, fileMustExist: true });
    check = 'quick_check';
    const quick = db.pragma('quick_check', { simple: true });
    if (quick !== 'ok') fail(imageFile, check, `SQLite reports ${JSON.stringify(quick)}`);
    check = 'layout version';
    const version = db.pragma('user_version', { simple: true });
    if (version !== STORE_FORMAT_VERSION) {
      fail(imageFile, check, `it has layout version ${version}, expected ${STORE_FORMAT_VERSION}`);
    }
    check = 'journal mode';
    const mode = db.pragma('journal_mode', { simple: true });
    if (mode !== 'delete') fail(imageFile, check, `it is in journal mode '${mode}', expected 'delete'`);
    check = 'watermarks';
    checkWatermarks(imageFile, db, expected);
    check = 'node-local state';
    checkScrubbed(imageFile, db);
  } catch (error) {
    if (error instanceof WalshipError && error.code === 'SNAPSHOT_CORRUPT') throw error;
    if (!(error instanceof Database.SqliteError)) throw error;
    fail(imageFile, check, `SQLite failed: ${error.message}`, error);
  } finally {
    db?.close();
  }
}

function checkWatermarks(file: string, db: Database.Database, expected: readonly SnapshotTable[]): void {
  const rows = db
    .prepare('SELECT name, key, last_txn AS lastTxn, uploaded_txn AS uploadedTxn FROM _walship_tables')
    .safeIntegers(true)
    .all() as (SnapshotTable & { uploadedTxn: bigint })[];
  const found = new Map(rows.map((row) => [row.key, row]));
  for (const table of expected) {
    const row = found.get(table.key);
    if (row === undefined) fail(file, 'watermarks', `table ${JSON.stringify(table.name)} is missing`);
    if (row.name !== table.name || row.lastTxn !== table.lastTxn || row.uploadedTxn !== row.lastTxn) {
      fail(
        file,
        'watermarks',
        `table ${JSON.stringify(row.name)} is at txn ${row.lastTxn} (uploaded ${row.uploadedTxn}), the manifest says ${JSON.stringify(table.name)} at txn ${table.lastTxn}`,
      );
    }
    found.delete(table.key);
  }
  const extra = [...found.values()].map((row) => row.name);
  if (extra.length > 0) fail(file, 'watermarks', `it holds tables the manifest lacks: ${extra.join(', ')}`);
}

function checkScrubbed(file: string, db: Database.Database): void {
  const pending = db.prepare('SELECT count(*) FROM _walship_pending').pluck().get() as number;
  if (pending !== 0) fail(file, 'node-local state', `it holds ${pending} pending txns`);
  const keys = db
    .prepare('SELECT key FROM _walship_kv WHERE substr(key, 1, ?) <> ? ORDER BY key')
    .pluck()
    .all(TABLE_FACT_PREFIX.length, TABLE_FACT_PREFIX) as string[];
  if (keys.length > 0) fail(file, 'node-local state', `it holds node facts: ${keys.join(', ')}`);
}

function fail(file: string, check: string, problem: string, cause?: unknown): never {
  throw new WalshipError(
    'SNAPSHOT_CORRUPT',
    'data',
    `the snapshot image ${JSON.stringify(file)} failed the ${check} check: ${problem}; do not use it (restore another snapshot)`,
    { cause, details: { file, check } },
  );
}
