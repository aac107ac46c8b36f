/**
 * Epochs, fencing, promotion, demotion and role changes (DESIGN §7, RFC-0002).
 */

export {
  checkGcPolicy,
  formatDuration,
  GC_POLICY_DEFAULT,
  GC_SEGMENTS_PER_TABLE_MAX,
  type GcDeletion,
  type GcKept,
  type GcObjectKind,
  type GcPlan,
  type GcPolicy,
  type GcRegistration,
  type GcResult,
  planGc,
  runGc,
} from './gc.js';
export {
  createMetricsHandler,
  FENCING_EVENT_KINDS,
  type FencingEventKind,
  NodeMetrics,
  type NodeMetricsOptions,
  type SegmentApplyEvent,
  type SegmentUploadEvent,
} from './node-metrics.js';
export {
  type ListedNodeRegistration,
  listNodeRegistrations,
  type NodeFacts,
  NodeRegistration,
  type NodeRegistrationRecord,
} from './node-registry.js';
export { type PromoteOptions, type Promotion, promote } from './promote.js';
export {
  initSequencedCluster,
  readSequencerRecord,
  SEQUENCER_EPOCH_HOLDER,
  sequencedCluster,
} from './sequenced-cluster.js';
export type { SequencedSettings } from './sequenced-roles.js';
export { recordUploadsFound } from './uploads-found.js';
export {
  type NodeDeps,
  type NodeRole,
  type NodeSettings,
  type PrimaryStartRetry,
  WalshipNode,
} from './walship-node.js';
