/**
 * Maintenance of a cluster's store: WAL garbage collection (staged and txnlog GC too), the store
 * audits behind `walship verify`, and point-in-time restore. Run by operators and by nodes' GC
 * timers; never on the write or apply path.
 */

export {
  checkGcPolicy,
  formatDuration,
  GC_POLICY_DEFAULT,
  GC_SEGMENTS_PER_TABLE_MAX,
  GC_TABLE_KINDS,
  type GcDeletion,
  type GcKept,
  type GcObjectKind,
  type GcPlan,
  type GcPolicy,
  type GcRegistration,
  type GcResult,
  type GcSequencer,
  planGc,
  runGc,
} from './gc.js';
export {
  RESTORED_DATABASE_FILE,
  type RestoredTable,
  type RestoreOptions,
  type RestoreProgress,
  type RestoreResult,
  type RestoreTarget,
  restoreToPoint,
} from './restore.js';
export { GC_ORPHAN_AGE_MS } from './staged-gc.js';
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
