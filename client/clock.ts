import { randomBytes } from 'node:crypto';

/**
 * The client's time and randomness seams (STYLE rule 8). Backoff waits, retry deadlines, auto-flush
 * intervals and role-refresh intervals ask these, so tests drive them without real waiting. The
 * per-request timeouts are undici's own timers (they bound a socket, not a decision).
 */

export interface ClientClock {
  /** Monotonic milliseconds from an arbitrary origin; every duration is measured with it. */
  monotonicMs(): number;
  /** Resolves after `durationMs`. */
  sleep(durationMs: number): Promise<void>;
}

export interface ClientRandom {
  /** A number in [0, 1). */
  next(): number;
}

/**
 * `length` cryptographically random bytes: writer ids and lock tokens must not collide across
 * processes and hosts, which Math.random cannot promise.
 */
export type ClientRandomBytes = (length: number) => Uint8Array;

export const systemClientClock: ClientClock = {
  monotonicMs: () => performance.now(),
  sleep: (durationMs) => new Promise((resolve) => setTimeout(resolve, durationMs)),
};

export const systemClientRandom: ClientRandom = { next: () => Math.random() };

export const systemClientRandomBytes: ClientRandomBytes = (length) => randomBytes(length);

/**
 * A clock for tests: time stands still until someone sleeps, and sleeping advances it at once.
 * `slept` records every wait, in order.
 */
export class ManualClientClock implements ClientClock {
  nowMs: number;
  readonly slept: number[] = [];

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  monotonicMs(): number {
    return this.nowMs;
  }

  sleep(durationMs: number): Promise<void> {
    this.slept.push(durationMs);
    this.nowMs += durationMs;
    return Promise.resolve();
  }
}
