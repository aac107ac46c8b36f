/**
 * Tables: names and their store keys, schemas, and the SQLite table store where a node keeps every
 * table, its watermarks and its pending queue (DESIGN §2, §5, §6).
 */

export {
  BATCH_WINDOW_SEQS,
  BATCH_WRITER_TTL_US,
  type BatchLookup,
  type BatchPart,
} from './batch-ledger.js';
export { civilFromDays, daysFromCivil, daysInMonth } from './civil-date.js';
export { moveDatabaseFiles } from './database-files.js';
export {
  asTableKey,
  decodeTableKey,
  isTableKey,
  MAX_NAME_BYTES,
  MAX_TABLE_KEY_CHARS,
  type TableKey,
  tableKey,
  validateColumnName,
  validateTableName,
} from './names.js';
export { resolveNodeId } from './node-identity.js';
export { formatTimestampUs } from './query-format.js';
export {
  createQueryHttpHandler,
  encodePgParams,
  parseQuestDbLimit,
  QUERY_OUTCOMES,
  type QueryHttpOptions,
  type QueryOutcome,
} from './query-http.js';
export { floatText, PG_OID, type PgPage } from './query-pg.js';
export {
  QUERY_POOL_DEFAULTS,
  QueryPool,
  type QueryPoolLimits,
  type QueryPoolOptions,
} from './query-pool.js';
export {
  createSnapshotImage,
  restoreSnapshotImage,
  type SnapshotImageInfo,
  type SnapshotTable,
} from './snapshot-image.js';
export { type SqlToken, tokenizeSql } from './sql-tokens.js';
export { columnTypeOfDeclared, QUESTDB_TYPE_NAMES, SQL_DECLARED_TYPES } from './sql-types.js';
export { quoteIdentifier } from './store-sql.js';
export {
  dropTable,
  EXPORTED_META_PREFIX,
  PARTIAL_ENTRY_META_PREFIX,
  REJECTED_COUNT_META_PREFIX,
  REJECTED_META_PREFIX,
  TABLE_DEDUP_META_PREFIX,
  TABLE_EPOCH_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
  TABLE_TTL_META_PREFIX,
} from './table-meta-keys.js';
export {
  type ColumnSchema,
  columnIndexOf,
  freezeSchema,
  isDropped,
  type TableSchema,
} from './table-schema.js';
export {
  type CommittedElsewhere,
  type PendingSummary,
  type PendingTxn,
  TableStore,
  type TableStoreOptions,
} from './table-store.js';
export { parseIntervalUs, parseTimestampUs } from './time-literals.js';
