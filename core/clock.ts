/**
 * The time seam. Production code never calls `Date.now()`, `performance.now()` or `setTimeout`
 * for protocol decisions directly; it asks a Clock, so tests and the seeded simulation can drive
 * time (STYLE rule 8).
 */
export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. For records and logs only, never for timeouts. */
  wallMs(): number;
  /** Monotonic milliseconds from an arbitrary origin. Use for every duration, timeout and lease. */
  monotonicMs(): number;
  /** Resolves after `durationMs`; rejects with the signal's reason if it is aborted first. */
  sleep(durationMs: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  sleep(durationMs, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, durationMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};
