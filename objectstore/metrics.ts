import { type Clock, systemClock } from '../core/index.js';
import type { StoreOperation } from './faults.js';
import type { ObjectStore } from './object-store.js';

export type RequestOutcome = 'ok' | 'missing' | 'precondition-failed' | 'not-modified' | 'error';

export interface StoreRequestEvent {
  operation: StoreOperation;
  outcome: RequestOutcome;
  durationMs: number;
  /** Body bytes sent (put) or received (get); 0 otherwise. */
  bytes: number;
  /** The error's stable code when outcome is 'error'. */
  errorCode?: string;
}

/**
 * Wrap a store so that every operation reports its outcome, duration and bytes to `onRequest`
 * (the hook that `/metrics` and the benchmarks attach to). It changes no result.
 */
export function withMetrics(
  store: ObjectStore,
  onRequest: (event: StoreRequestEvent) => void,
  clock: Clock = systemClock,
): ObjectStore {
  async function measured<T>(
    operation: StoreOperation,
    perform: () => Promise<T>,
    describe: (result: T) => { outcome: RequestOutcome; bytes: number },
  ): Promise<T> {
    const startedMs = clock.monotonicMs();
    try {
      const result = await perform();
      onRequest({ operation, durationMs: clock.monotonicMs() - startedMs, ...describe(result) });
      return result;
    } catch (error) {
      const errorCode = (error as { code?: string } | undefined)?.code ?? 'UNKNOWN';
      onRequest({
        operation,
        outcome: 'error',
        durationMs: clock.monotonicMs() - startedMs,
        bytes: 0,
        errorCode,
      });
      throw error;
    }
  }
  const plain = () => ({ outcome: 'ok' as const, bytes: 0 });

  return {
    description: store.description,
    put: (key, body, options) =>
      measured(
        'put',
        () => store.put(key, body, options),
        (r) => ({ outcome: r.status === 'written' ? 'ok' : 'precondition-failed', bytes: body.byteLength }),
      ),
    get: (key, options) =>
      measured(
        'get',
        () => store.get(key, options),
        (r) => {
          if (r === null) return { outcome: 'missing', bytes: 0 };
          return r.status === 'ok'
            ? { outcome: 'ok', bytes: r.body.byteLength }
            : { outcome: 'not-modified', bytes: 0 };
        },
      ),
    head: (key) =>
      measured(
        'head',
        () => store.head(key),
        (r) => ({ outcome: r === null ? 'missing' : 'ok', bytes: 0 }),
      ),
    list: (prefix, options) => measured('list', () => store.list(prefix, options), plain),
    delete: (key) => measured('delete', () => store.delete(key), plain),
    deleteMany: (keys) => measured('deleteMany', () => store.deleteMany(keys), plain),
    close: () => store.close(),
  };
}
