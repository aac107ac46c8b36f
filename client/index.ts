/**
 * walship's TypeScript client (DESIGN §2 `client/`): an ILP-over-HTTP Sender that fails over
 * between several addresses and keeps a batch until it is committed — under a batch identity the
 * server dedups by, and optionally in a store-and-forward directory — and a ReadRouter that sends
 * SQL reads to replicas or the primary by read preference, with commit tokens and staleness
 * bounds. It talks HTTP only and imports nothing of walship.
 */

export { type BatchAnswer, MAX_UNACKED_BATCHES_LIMIT, WRITER_ID_PATTERN } from './batch-identity.js';
export {
  type ClientClock,
  type ClientRandom,
  type ClientRandomBytes,
  ManualClientClock,
  systemClientClock,
  systemClientRandom,
  systemClientRandomBytes,
} from './clock.js';
export {
  type CommitTokenEntry,
  formatCommitToken,
  mergeCommitToken,
  parseCommitToken,
} from './commit-token.js';
export {
  CONFIG_DEFAULTS,
  parseConfigString,
  Secret,
  type SenderAddress,
  type SenderAuth,
  type SenderConfig,
} from './config-string.js';
export {
  type ClientErrorCode,
  type ClientErrorKind,
  type FlushAttempt,
  FlushGaveUpError,
  type IlpErrorBody,
  IlpRequestError,
  isClientError,
  WalshipClientError,
} from './errors.js';
export type { TimestampUnit } from './ilp-row-encoder.js';
export {
  type ExecResult,
  type NodeRole,
  type NodeState,
  type QueryOptions,
  type ReadAttempt,
  type ReadPreference,
  type ReadResult,
  ReadRouter,
  type ReadRouterOptions,
  type RouterNode,
} from './read-router.js';
export { type BatchStats, Sender, type SenderDeps } from './sender.js';
export type { CorruptBatchReport } from './sf-dir.js';
export {
  BACKOFF_INITIAL_MS,
  BACKOFF_MAX_MS,
  RETRY_SAME_ADDRESS_STATUSES,
  verdictOfStatus,
} from './write-policy.js';
