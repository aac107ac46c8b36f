/**
 * Commit tokens: the primary's `X-Walship-Txn` header on a 204 (`trades=42,quotes=17`: per table,
 * by its store key, the txn the request committed), which a read passes back as
 * `X-Walship-Min-Txn` so a replica answers only once it has applied those txns (DESIGN §5, §6).
 */

/** A txn number is a positive signed 64-bit integer without leading zeros. */
const TOKEN_PART = /^([^=,\s]+)=([1-9][0-9]{0,18})$/;

/**
 * The entries of a token, or undefined when it is not well formed (a malformed header is ignored
 * rather than failing a write that was committed). Pure.
 */
export function parseCommitToken(text: string): Map<string, bigint> | undefined {
  const token = new Map<string, bigint>();
  for (const part of text.split(',')) {
    const match = TOKEN_PART.exec(part.trim());
    if (match === null) return undefined;
    const txn = BigInt(match[2]!);
    const previous = token.get(match[1]!);
    if (previous === undefined || txn > previous) token.set(match[1]!, txn);
  }
  return token;
}

/** Adds `next` into `into`, keeping the larger txn per table. */
export function mergeCommitToken(into: Map<string, bigint>, next: ReadonlyMap<string, bigint>): void {
  for (const [key, txn] of next) {
    const previous = into.get(key);
    if (previous === undefined || txn > previous) into.set(key, txn);
  }
}

/** `quotes=17,trades=42` (sorted by key), or undefined for an empty token. Pure. */
export function formatCommitToken(token: ReadonlyMap<string, bigint>): string | undefined {
  if (token.size === 0) return undefined;
  return [...token.keys()]
    .sort()
    .map((key) => `${key}=${token.get(key)}`)
    .join(',');
}
