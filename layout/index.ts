/**
 * The bucket: every key of the object store and every record codec except the segment format
 * itself (wal/), as DESIGN §3 describes them in one section. Everything that reads or writes the
 * store's records goes through here; nothing here knows about roles, nodes or failover.
 */
export {
  type ChainLayout,
  type ListedChainObject,
  listChain,
  SEGMENT_CHAIN,
  TXNLOG_CHAIN,
} from './chains.js';
export {
  type ClusterRecord,
  encodeClusterRecord,
  parseClusterRecord,
  readCluster,
} from './cluster-record.js';
export { type EpochRecord, encodeEpoch, newestEpoch, parseEpochRecord, readEpoch } from './epoch-record.js';
export { encodeHead, type HeadHint, type HeadRecord, parseHeadHint } from './head-record.js';
export {
  CLUSTER_KEY,
  EPOCHS_PREFIX,
  epochKey,
  epochOfKey,
  HEAD_KEY,
  isSnapshotId,
  LEASE_KEY,
  NODES_PREFIX,
  nodeIdOfRegistrationKey,
  nodeRegistrationKey,
  padNumber,
  parseStagedKey,
  parseTxnLogKey,
  SEQUENCER_RECORD_KEY,
  SNAPSHOT_ID_CHARS_MAX,
  SNAPSHOTS_PREFIX,
  type StagedKeyParts,
  segmentKey,
  segmentPrefix,
  snapshotId,
  snapshotIdOfManifestKey,
  snapshotImageKey,
  snapshotManifestKey,
  stagedKey,
  stagedPrefix,
  TABLES_PREFIX,
  TABLES_REGISTRY_KEY,
  txnFirstOfSegmentKey,
  txnFirstOfTxnLogKey,
  txnLogKey,
  txnLogPrefix,
} from './keys.js';
export { encodeLease, type LeaseRecord, parseLease } from './lease-record.js';
export {
  encodeNodeRegistration,
  type ListedNodeRegistration,
  listNodeRegistrations,
  NODE_REGISTRATION_VERSION,
  NODE_REGISTRATIONS_MAX,
  type NodeFacts,
  type NodeRegistrationListing,
  type NodeRegistrationRecord,
  parseNodeRegistration,
  REGISTRATION_TABLES_MAX,
  type RegisteredRole,
  type UnreadableNodeRegistration,
} from './node-registration.js';
export {
  decodeSequencerRecord,
  encodeSequencerRecord,
  readSequencerRecord,
  SEQUENCER_RECORD_BYTES_MAX,
  SEQUENCER_RECORD_TABLES_MAX,
  SEQUENCER_RECORD_VERSION,
  type SequencerRecord,
} from './sequencer-record.js';
export {
  encodeSnapshotManifest,
  listSnapshots,
  newestSnapshot,
  parseSnapshotManifest,
  readSnapshotManifest,
  recheckManifest,
  SNAPSHOT_CLUSTER_ID_CHARS_MAX,
  SNAPSHOT_CODEC,
  SNAPSHOT_IMAGE_BYTES_MAX,
  SNAPSHOT_LIST_MAX,
  SNAPSHOT_MANIFEST_FORMAT,
  type SnapshotImageRef,
  type SnapshotListing,
  type SnapshotManifest,
  type UnreadableSnapshot,
} from './snapshot-manifest.js';
export {
  DISCOVERED_TABLES_MAX,
  discoverTableKeys,
  segmentPageAfter,
  segmentsAfter,
} from './store-scan.js';
export {
  closeRegistration,
  parseRegistry,
  readRegistry,
  readRegistryIfChanged,
  registerTable,
  registerTables,
  type TableRegistry,
} from './tables-registry.js';
export {
  decodeTxnLogEntry,
  encodeTxnLogEntry,
  type LogEntry,
  SEQUENCER_SEGMENT_TXNS_MAX,
  TXN_LOG_ENTRY_BYTES_MAX,
  WRITER_ID_PATTERN,
} from './txn-log-entry.js';
