export {
  type ClusterRecord,
  claimPrimary,
  type EpochRecord,
  newestEpoch,
  readEpoch,
} from './cluster-bootstrap.js';
export { type AckMode, type CommitResult, Committer } from './committer.js';
export { type PrimaryDeps, PrimaryNode, type PrimarySettings } from './primary-node.js';
export { type BuiltTxn, buildTxns } from './txn-builder.js';
export { Uploader, type UploaderOptions } from './uploader.js';
