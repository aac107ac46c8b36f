import { createHash, timingSafeEqual } from 'node:crypto';

/** Credentials an HTTP surface (ILP, queries) accepts; a request needs one that matches. */
export interface HttpAuth {
  /** `Authorization: Basic base64(username:password)`. */
  basic?: { username: string; password: string }[];
  /** `Authorization: Bearer <token>`. */
  bearer?: string[];
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * A check of `Authorization` headers against `auth`. Secrets are compared as SHA-256 digests with
 * `timingSafeEqual`, and every configured secret is compared on every call, so neither the length
 * of a secret nor which one matched shows in the response time.
 */
export function createHttpAuthenticator(auth: HttpAuth): (authorization: string | undefined) => boolean {
  const basic = (auth.basic ?? []).map(({ username, password }) => digest(`${username}:${password}`));
  const bearer = (auth.bearer ?? []).map((token) => digest(token));
  return (authorization) => {
    if (authorization === undefined) return false;
    const space = authorization.indexOf(' ');
    if (space < 0) return false;
    const scheme = authorization.slice(0, space).toLowerCase();
    const credential = authorization.slice(space + 1).trim();
    if (scheme === 'basic')
      return matchesAny(basic, digest(Buffer.from(credential, 'base64').toString('utf8')));
    if (scheme === 'bearer') return matchesAny(bearer, digest(credential));
    return false;
  };
}

function matchesAny(expected: readonly Buffer[], actual: Buffer): boolean {
  let matched = false;
  for (const candidate of expected) {
    // No early exit: the time taken does not depend on which entry matched.
    if (timingSafeEqual(candidate, actual)) matched = true;
  }
  return matched;
}

/** Client addresses a limiter tracks at most; the oldest is forgotten first (a bound on memory). */
const MAX_TRACKED_CLIENTS = 10_000;
const MINUTE_MS = 60_000;

/**
 * A token bucket of failed authentications per client address: `failuresPerMinute` failures at
 * once, then one more every 60 000 / failuresPerMinute ms. An address with an empty bucket is
 * refused (429) before any route runs, so guessing a token costs at least that long per guess.
 */
export class AuthFailureLimiter {
  readonly #capacity: number;
  readonly #refillPerMs: number;
  readonly #nowMs: () => number;
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(options: { failuresPerMinute: number; nowMs?: () => number }) {
    if (!Number.isSafeInteger(options.failuresPerMinute) || options.failuresPerMinute < 1) {
      throw new RangeError(`failuresPerMinute must be a positive integer, got ${options.failuresPerMinute}`);
    }
    this.#capacity = options.failuresPerMinute;
    this.#refillPerMs = options.failuresPerMinute / MINUTE_MS;
    this.#nowMs = options.nowMs ?? (() => performance.now());
  }

  /** Whole seconds until `client` may try again; 0 when it is not blocked. */
  blockedForS(client: string): number {
    const tokens = this.#tokens(client);
    return tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - tokens) / this.#refillPerMs / 1000));
  }

  /** One failed authentication by `client`. */
  recordFailure(client: string): void {
    const tokens = this.#tokens(client);
    this.#buckets.delete(client); // re-inserted last: the map's order is oldest activity first
    if (this.#buckets.size >= MAX_TRACKED_CLIENTS) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    this.#buckets.set(client, { tokens: Math.max(0, tokens - 1), atMs: this.#nowMs() });
  }

  #tokens(client: string): number {
    const bucket = this.#buckets.get(client);
    if (bucket === undefined) return this.#capacity;
    const tokens = Math.min(
      this.#capacity,
      bucket.tokens + (this.#nowMs() - bucket.atMs) * this.#refillPerMs,
    );
    if (tokens >= this.#capacity) this.#buckets.delete(client);
    return tokens;
  }
}
