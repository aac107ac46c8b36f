export {
  numberBatch,
  validateCommitRequest,
  validateReadLimit,
  validateTable,
  validateWriter,
} from './commit-request.js';
export {
  parseSequencerConnectionString,
  redactSequencerConnectionString,
  type SequencerConnectionConfig,
} from './connection-string.js';
export { createFdbSequencerOver, FdbSequencerStore, openFdbSequencer } from './fdb-store.js';
export {
  SequencedFollower,
  type SequencedFollowerOptions,
  type SequencedFollowerStatus,
} from './follower.js';
export { HttpSequencerClient, openHttpSequencer } from './http-client.js';
export { type SequencerAuthTokens, startSequencerServer } from './http-service.js';
export { type LogSource, sequencerLogSource } from './log-source.js';
export { openSequencer } from './open-sequencer.js';
export {
  type CommitRequest,
  type CommitResult,
  FdbClientMissingError,
  type Heads,
  type LogEntry,
  SEQUENCER_BATCH_MAX,
  SEQUENCER_READ_LIMIT_MAX,
  SequencerBatchOrderError,
  SequencerClusterMismatchError,
  SequencerFencedError,
  SequencerNotInitializedError,
  type SequencerStore,
  SequencerUnavailableError,
  type StagedSegmentRef,
  type WriterRecord,
} from './sequencer-store.js';
export { SQLITE_GROUP_MAX_DEFAULT, SqliteSequencerStore } from './sqlite-store.js';
export { StagedQueue } from './staged-queue.js';
export { storeLogSource } from './store-log-source.js';
export {
  SequencedWriter,
  type SequencedWriterFaults,
  type SequencedWriterOptions,
  type SequencedWriterStatus,
} from './writer.js';
