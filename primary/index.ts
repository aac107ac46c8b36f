export { claimPrimary, createCluster } from './cluster-bootstrap.js';
export { type AckMode, type CommitResult, Committer } from './committer.js';
export {
  ACK_MODE_META_KEY,
  type DivergenceSummary,
  recordedAckMode,
  renderTxnAsIlp,
  writeDivergenceFiles,
} from './divergence.js';
export { pendingSourceOf } from './pending-source.js';
export {
  type PgListenerOptions,
  type PrimaryDeps,
  PrimaryNode,
  type PrimarySettings,
} from './primary-node.js';
export {
  overdueAtMs,
  type SealPolicy,
  type SealReason,
  sealDueAtMs,
  sealReason,
  type Unsealed,
} from './seal-policy.js';
export { type ChainVerdict, type OwnSegment, segmentInChain } from './segment-in-chain.js';
export { TtlKeeper, ttlCutoffUs } from './ttl-keeper.js';
export { type BuiltTxn, buildTxns } from './txn-builder.js';
export type { PendingSource } from './uploader.js';
export { Uploader, type UploaderOptions } from './uploader.js';
export {
  recordUploadsFound,
  recordUploadsFoundRetrying,
  UPLOADS_FOUND_ATTEMPTS,
} from './uploads-found.js';
