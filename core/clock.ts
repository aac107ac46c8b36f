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
  /**
   * Calls `callback` once after `durationMs`, unless cancelled first. `unref`: the timer does not
   * keep the process alive (background work: renewals, registrations, sweeps).
   */
  setTimer(durationMs: number, callback: () => void, options?: { unref?: boolean }): Timer;
}

/** A timer set by Clock.setTimer. `cancel` is idempotent and harmless after the timer fired. */
export interface Timer {
  cancel(): void;
}

export const systemClock: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimer(durationMs, callback, options) {
    const timer = setTimeout(callback, durationMs);
    if (options?.unref === true) timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
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

/** The largest distance from the Unix epoch, in ms either way, that `isoTime` can format (Date's range). */
export const WALL_MS_MAX = 8.64e15;

/**
 * Wall-clock ms as ISO 8601 in UTC (`2024-05-01T12:00:00.000Z`), for records and logs. The one
 * place product code formats a time, so `Date` stays inside core/. Throws a RangeError beyond
 * ±WALL_MS_MAX or for NaN.
 */
export function isoTime(wallMs: number): string {
  return new Date(wallMs).toISOString();
}

/** A date string (ISO 8601 or another form `Date.parse` reads) as wall-clock ms, or NaN when it is none. */
export function parseTimeMs(text: string): number {
  return Date.parse(text);
}
