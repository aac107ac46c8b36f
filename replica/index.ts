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
  READ_REFUSAL_REASONS,
  type ReadConsistencyHook,
  type ReadConsistencyOptions,
  type ReadRefusalReason,
  readRefusalReasonOf,
  TXN_MAX,
  WAITERS_MAX,
  type WaitOptions,
} from './consistency.js';
export { recordEpochStart, txnIsOfEpoch } from './epoch-history.js';
export {
  FOLLOWER_LIMITS,
  Follower,
  type FollowerOptions,
  TABLE_EPOCH_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
} from './follower.js';
export {
  commonTableStatus,
  FailureBackoff,
  type FollowedTableState,
  findTable,
  readVerified,
  resumeTable,
  sortedByKey,
  stalenessOf,
  suspendTable,
} from './follower-skeleton.js';
export {
  type AddedTable,
  type NodeWriter,
  type ReplicaDeps,
  ReplicaNode,
  type ReplicaSettings,
  type TablesChanged,
} from './replica-node.js';
export {
  checkEpochOrder,
  type VerifiedStagedSegment,
  verifySegment,
  verifyStagedSegment,
} from './segment-verifier.js';
export {
  type PublishSnapshotOptions,
  publishSnapshot,
  type RestoreSnapshotOptions,
  restoreSnapshot,
} from './snapshots.js';
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
export type {
  FollowedTableStatus,
  FollowerStatus,
  Suspension,
  TableFollower,
} from './table-follower.js';
