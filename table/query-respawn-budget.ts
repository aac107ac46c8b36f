import { InvalidArgumentError } from '../core/index.js';

/**
 * A token bucket for starting replacement query hosts (RFC-0004): `burst` starts at once, then one
 * per `intervalMs`. Every replacement costs a process start (tens of ms of CPU), and replacements
 * follow events that can repeat without end (a host that crashes on every query, clients that abort
 * their queries, queries that all hit their time limit), so without a bound a crash loop would spin
 * a core. Pure: the caller passes the monotonic time, so tests need no clock.
 */
export class RespawnBudget {
  private tokens: number;
  private lastMs: number | null = null;

  /** `burst` ≥ 1 starts may happen at once; the bucket refills one start per `intervalMs` (> 0). */
  constructor(
    private readonly burst: number,
    private readonly intervalMs: number,
  ) {
    if (!Number.isSafeInteger(burst) || burst < 1 || !(intervalMs > 0)) {
      throw new InvalidArgumentError(`burst must be ≥ 1 and intervalMs > 0, got ${burst}, ${intervalMs}`);
    }
    this.tokens = burst;
  }

  /**
   * Takes one start at monotonic time `nowMs` and returns 0, or returns how long to wait, in ms,
   * before asking again (nothing is taken then). `nowMs` must not go backwards.
   */
  take(nowMs: number): number {
    if (this.lastMs !== null) {
      if (nowMs < this.lastMs) throw new InvalidArgumentError('nowMs went backwards');
      this.tokens = Math.min(this.burst, this.tokens + (nowMs - this.lastMs) / this.intervalMs);
    }
    this.lastMs = nowMs;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.tokens) * this.intervalMs);
  }
}
