export {
  type CommonStoreConfig,
  describeStoreConfig,
  type FsStoreConfig,
  parseConnectionString,
  redactConnectionString,
  type S3StoreConfig,
  type StoreConfig,
} from './connection-string.js';
export { type Fault, type FaultRule, type FaultyStore, type StoreOperation, withFaults } from './faults.js';
export { FsStore, type FsStoreOptions } from './fs.js';
export { assertValidKey, assertValidPrefix, compareKeys } from './keys.js';
export { MemoryStore } from './memory.js';
export { type RequestOutcome, type StoreRequestEvent, withMetrics } from './metrics.js';
export {
  DELETE_MANY_KEYS_MAX,
  type GetOptions,
  type GetResult,
  KEY_BYTES_MAX,
  LIST_PAGE_KEYS_MAX,
  type ListOptions,
  type ListPage,
  listAll,
  type ObjectInfo,
  type ObjectStore,
  type PutCondition,
  type PutOptions,
  type PutResult,
  WRITE_ID_CHARS_MAX,
} from './object-store.js';
export { type OpenedStore, type OpenStoreOptions, openStore } from './open-store.js';
export {
  type ProbeCheck,
  type ProbeOptions,
  type ProbeReport,
  renderProbeReport,
  runConformanceProbe,
} from './probe.js';
export {
  DEFAULT_RETRY_POLICY,
  type RetryEvent,
  type RetryOptions,
  type RetryPolicy,
  withRetries,
} from './retries.js';
export { S3Store, type S3StoreOptions } from './s3.js';
export { Semaphore } from './semaphore.js';
