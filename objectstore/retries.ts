import { randomUUID } from 'node:crypto';
import { type Clock, type Random, systemClock, systemRandom, type WalshipError } from '../core/index.js';
import type {
  GetOptions,
  GetResult,
  ListOptions,
  ListPage,
  ObjectInfo,
  ObjectStore,
  PutOptions,
  PutResult,
} from './object-store.js';

export interface RetryPolicy {
  /** Tries in all, the first included. Default 4 (QuestDB's `replication.requests.retry.attempts` 3, plus the first). */
  attempts: number;
  /** Backoff before the first retry; it doubles each time, with full jitter. Default 200 ms (QuestDB's retry interval). */
  baseDelayMs: number;
  /** Longest backoff. Default 5 000 ms. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 4, baseDelayMs: 200, maxDelayMs: 5_000 };

export interface RetryEvent {
  operation: string;
  key: string;
  /** The try that failed, from 1. */
  attempt: number;
  delayMs: number;
  error: WalshipError;
}

export interface RetryOptions {
  policy?: Partial<RetryPolicy>;
  clock?: Clock;
  random?: Random;
  /** Called before each backoff; for logs and metrics. */
  onRetry?: (event: RetryEvent) => void;
}

/**
 * Wrap a store so that operations failing with a `kind: 'unavailable'` error are tried again,
 * a bounded number of times, with exponential backoff and full jitter. Other errors pass at once.
 *
 * Conditional puts are the subtle case: a try that timed out or lost its response may have
 * written. Every put therefore carries a write id (the caller's, or a fresh UUID), and when a
 * retry then finds its condition failed, the store reads the object back: if it carries our
 * write id — or, on a store that records no write ids, holds exactly our bytes — the earlier
 * try succeeded and the put reports `written`.
 */
export function withRetries(store: ObjectStore, options: RetryOptions = {}): ObjectStore {
  const policy = { ...DEFAULT_RETRY_POLICY, ...options.policy };
  const clock = options.clock ?? systemClock;
  const random = options.random ?? systemRandom;

  async function retrying<T>(operation: string, key: string, attempt: (n: number) => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt(n);
      } catch (error) {
        if (!isRetryable(error) || n >= policy.attempts) throw error;
        const ceilingMs = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1));
        const delayMs = Math.floor(random.next() * ceilingMs);
        options.onRetry?.({ operation, key, attempt: n, delayMs, error: error as WalshipError });
        await clock.sleep(delayMs);
      }
    }
  }

  return {
    description: store.description,
    async put(key: string, body: Uint8Array, putOptions: PutOptions = {}): Promise<PutResult> {
      const writeId = putOptions.writeId ?? randomUUID();
      const conditional = (putOptions.condition?.type ?? 'none') !== 'none';
      return retrying('put', key, async (n) => {
        const result = await store.put(key, body, { ...putOptions, writeId });
        if (result.status === 'precondition-failed' && conditional && n > 1) {
          return (await ownWrite(store, key, body, writeId)) ?? result;
        }
        return result;
      });
    },
    get: (key: string, getOptions?: GetOptions): Promise<GetResult | null> =>
      retrying('get', key, () => store.get(key, getOptions)),
    head: (key: string): Promise<ObjectInfo | null> => retrying('head', key, () => store.head(key)),
    list: (prefix: string, listOptions?: ListOptions): Promise<ListPage> =>
      retrying('list', prefix, () => store.list(prefix, listOptions)),
    delete: (key: string): Promise<void> => retrying('delete', key, () => store.delete(key)),
    deleteMany: (keys: readonly string[]): Promise<void> =>
      retrying('deleteMany', keys[0] ?? '', () => store.deleteMany(keys)),
    close: () => store.close(),
  };
}

function isRetryable(error: unknown): boolean {
  return (error as WalshipError | undefined)?.kind === 'unavailable';
}

/** The put result of an earlier try that did write, or undefined when the object is someone else's. */
async function ownWrite(
  store: ObjectStore,
  key: string,
  body: Uint8Array,
  writeId: string,
): Promise<PutResult | undefined> {
  const info = await store.head(key);
  if (info === null) return undefined;
  if (info.writeId !== undefined)
    return info.writeId === writeId ? { status: 'written', etag: info.etag } : undefined;
  const current = await store.get(key);
  if (current === null || current.status !== 'ok') return undefined;
  return bytesEqual(current.body, body) ? { status: 'written', etag: current.info.etag } : undefined;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  const view = (x: Uint8Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  return a.byteLength === b.byteLength && view(a).equals(view(b));
}
