/**
 * The replica: follows the object store, applies segments to SQLite and serves reads (DESIGN §6).
 */
export {
  APPLIED_HEADER_MAX_ENTRIES,
  AppliedWaiters,
  COMMIT_TOKEN_MAX_CHARS,
  COMMIT_TOKEN_MAX_ENTRIES,
  createReadConsistency,
  formatCommitToken,
  parseCommitToken,
  type ReadConsistencyHook,
  type ReadConsistencyOptions,
  TXN_MAX,
  WAITERS_MAX,
  type WaitOptions,
} from './consistency.js';
export { recordEpochStart, txnIsOfEpoch } from './epoch-history.js';
export {
  FOLLOWER_LIMITS,
  type FollowedTableStatus,
  Follower,
  type FollowerOptions,
  type Suspension,
  TABLE_EPOCH_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
} from './follower.js';
export {
  type AddedTable,
  type NodeWriter,
  type ReplicaDeps,
  ReplicaNode,
  type ReplicaSettings,
  type TableFollower,
  type TablesChanged,
} from './replica-node.js';
export {
  RESTORED_DATABASE_FILE,
  type RestoredTable,
  type RestoreOptions,
  type RestoreProgress,
  type RestoreResult,
  type RestoreTarget,
  restoreToPoint,
} from './restore.js';
export {
  encodeSnapshotManifest,
  listSnapshots,
  newestSnapshot,
  type PublishSnapshotOptions,
  parseSnapshotManifest,
  publishSnapshot,
  type RestoreSnapshotOptions,
  readSnapshotManifest,
  restoreSnapshot,
  SNAPSHOT_CODEC,
  SNAPSHOT_IMAGE_BYTES_MAX,
  SNAPSHOT_LIST_MAX,
  SNAPSHOT_MANIFEST_FORMAT,
  type SnapshotImageRef,
  type SnapshotListing,
  type SnapshotManifest,
  type UnreadableSnapshot,
} from './snapshots.js';
export {
  AUDIT_CONCURRENCY_DEFAULT,
  AUDIT_CONCURRENCY_MAX,
  AUDIT_FINDINGS_MAX,
  type AuditFinding,
  type AuditProgress,
  type AuditSeverity,
  auditStore,
  type EpochAuditRecord,
  type SnapshotAuditRecord,
  type StoreAuditOptions,
  type StoreAuditReport,
  type TableAuditReport,
} from './store-audit.js';
export {
  bootstrapTableFromSnapshot,
  dropLocalTable,
  SERVED_TABLES_META_KEY,
  servesAllTablesSpec,
  TABLE_FILTER_LIMITS,
  TABLES_EXCLUDE_KEY,
  TABLES_INCLUDE_KEY,
  type TableChanges,
  TableFilter,
  type TableFilterSpec,
  tableChangesOf,
} from './table-filter.js';
