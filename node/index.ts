/**
 * The node process: one walship node and its role changes (replica ⇄ primary, sequenced writer),
 * its registration in the store, its activity and metrics (DESIGN §7, RFC-0002).
 */

export {
  createMetricsHandler,
  FENCING_EVENT_KINDS,
  type FencingEventKind,
  NodeMetrics,
  type NodeMetricsOptions,
  type SegmentApplyEvent,
  type SegmentUploadEvent,
} from './node-metrics.js';
export { NodeRegistration, REGISTRATION_UNCHANGED_REWRITE_MS } from './node-registry.js';
export {
  PROMOTION_TRIGGERS,
  type PromotionEvent,
  type PromotionTrigger,
  promotionTriggerOf,
  queryOutcomeOfError,
} from './request-metrics.js';
export type { SequencedSettings } from './sequenced-roles.js';
export {
  type NodeDeps,
  type NodeRole,
  type NodeSettings,
  type PrimaryStartRetry,
  WalshipNode,
} from './walship-node.js';
