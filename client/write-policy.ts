import type { ClientRandom } from './clock.js';

/**
 * The rules of a multi-address ILP-over-HTTP flush, as QuestDB's Java and .NET clients apply them
 * (shared/reference/ilp-http.md, "Client retry and failover behaviour"). Pure; the loop that
 * applies them is BatchPoster.
 */

/** What a flush does after one answer. */
export type WriteVerdict =
  /** 204: committed; drop the batch from the buffer. */
  | 'committed'
  /** This node cannot take writes (421 replica / demoted primary, 404 no such endpoint): try the next address. */
  | 'next_address'
  /** A temporary server-side failure: back off and retry the same address. */
  | 'same_address'
  /**
   * Retrying cannot help (400 parse error, 401/403 auth, 405, 409 batch identity refused, 413 too
   * large, anything unexpected).
   */
  | 'fail';

/** The statuses QuestDB's clients retry on the same host. */
export const RETRY_SAME_ADDRESS_STATUSES: ReadonlySet<number> = new Set([
  500, 503, 504, 507, 509, 523, 524, 529, 599,
]);

/** The statuses that mean "this node does not take writes: try another". */
export const NEXT_ADDRESS_STATUSES: ReadonlySet<number> = new Set([421, 404]);

/**
 * The verdict for an HTTP status. Only 204 commits: a 200 or any other 2xx is not what an ILP
 * server answers, so it fails rather than being taken for a commit that may not have happened.
 * A network error or a timeout (no status) is 'next_address' — see BatchPoster.
 */
export function verdictOfStatus(status: number): WriteVerdict {
  if (status === 204) return 'committed';
  if (NEXT_ADDRESS_STATUSES.has(status)) return 'next_address';
  if (RETRY_SAME_ADDRESS_STATUSES.has(status)) return 'same_address';
  return 'fail';
}

/** The first backoff wait, in ms (QuestDB's clients: 10 ms). */
export const BACKOFF_INITIAL_MS = 10;
/** The longest backoff wait, in ms, jitter included (QuestDB's clients: 1 s). */
export const BACKOFF_MAX_MS = 1_000;

/**
 * Exponential backoff with jitter: waits 10 ms, 20, 40, … doubling up to 1 s, each plus a random
 * jitter of up to half the step (so concurrent clients spread out), never more than 1 s in all.
 */
export class Backoff {
  readonly #random: ClientRandom;
  #stepMs = BACKOFF_INITIAL_MS;

  constructor(random: ClientRandom) {
    this.#random = random;
  }

  /** The next wait in ms; doubles the step for the one after. */
  nextMs(): number {
    const jitterMs = Math.floor(this.#random.next() * (this.#stepMs / 2));
    const waitMs = Math.min(BACKOFF_MAX_MS, this.#stepMs + jitterMs);
    this.#stepMs = Math.min(BACKOFF_MAX_MS, this.#stepMs * 2);
    return waitMs;
  }
}

/**
 * How long one request of `bodyBytes` may take, in ms, as QuestDB's clients compute it:
 * request_timeout + bodyBytes / request_min_throughput seconds (0 throughput: no extra time).
 */
export function requestTimeoutMsFor(
  bodyBytes: number,
  options: { requestTimeoutMs: number; requestMinThroughputBytesPerS: number },
): number {
  const extraMs =
    options.requestMinThroughputBytesPerS > 0
      ? Math.ceil((bodyBytes / options.requestMinThroughputBytesPerS) * 1_000)
      : 0;
  return options.requestTimeoutMs + extraMs;
}
