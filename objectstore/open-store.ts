import { type Clock, type Random, systemClock, systemRandom } from '../core/index.js';
import { parseConnectionString, type StoreConfig } from './connection-string.js';
import { FsStore } from './fs.js';
import type { ObjectStore } from './object-store.js';
import { type RetryEvent, withRetries } from './retries.js';
import { S3Store } from './s3.js';

export interface OpenStoreOptions {
  clock?: Clock;
  random?: Random;
  onRetry?: (event: RetryEvent) => void;
}

export interface OpenedStore {
  /** The store with retries: what nodes use. */
  store: ObjectStore;
  /** The implementation underneath, for probes and diagnostics. */
  raw: FsStore | S3Store;
  config: StoreConfig;
}

/** Open the store a connection string (or parsed config) names, wrapped with bounded retries. */
export async function openStore(
  connection: string | StoreConfig,
  options: OpenStoreOptions = {},
): Promise<OpenedStore> {
  const config = typeof connection === 'string' ? parseConnectionString(connection) : connection;
  const clock = options.clock ?? systemClock;
  const raw =
    config.scheme === 'fs'
      ? await FsStore.open({
          root: config.root,
          clock,
          ...(config.atomicWriteDir === undefined ? {} : { atomicWriteDir: config.atomicWriteDir }),
        })
      : new S3Store({
          bucket: config.bucket,
          root: config.root,
          region: config.region,
          forcePathStyle: config.forcePathStyle,
          ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
          ...(config.accessKeyId === undefined ? {} : { accessKeyId: config.accessKeyId }),
          ...(config.secretAccessKey === undefined ? {} : { secretAccessKey: config.secretAccessKey }),
          ...(config.sessionToken === undefined ? {} : { sessionToken: config.sessionToken }),
          ...(config.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: config.requestTimeoutMs }),
          ...(config.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: config.connectTimeoutMs }),
          ...(config.maxConcurrentRequests === undefined
            ? {}
            : { maxConcurrentRequests: config.maxConcurrentRequests }),
        });
  const store = withRetries(raw, {
    policy: {
      ...(config.retryAttempts === undefined ? {} : { attempts: config.retryAttempts }),
      ...(config.retryIntervalMs === undefined ? {} : { baseDelayMs: config.retryIntervalMs }),
    },
    clock,
    random: options.random ?? systemRandom,
    ...(options.onRetry === undefined ? {} : { onRetry: options.onRetry }),
  });
  return { store, raw, config };
}
