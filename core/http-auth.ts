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
