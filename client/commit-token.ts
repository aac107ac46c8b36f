/**
 * Commit tokens: the primary's `X-Walship-Txn` header on a 204 (`trades=42@3,quotes=17@3`: per
 * table, by its store key, the txn the request committed and the epoch of the primary that committed
 * it), which a read passes back as `X-Walship-Min-Txn` so a replica answers only once it has applied
 * those txns (DESIGN §5, §6). The epoch makes a token unambiguous across failovers: after a failover
 * in `local` ack mode, txn 42 of the new epoch is another write than a lost txn 42 of the old one
 * (RFC-0005, "Commit tokens across epochs"). Tokens without `@epoch` (sequenced writers, older
 * primaries) are kept as they are.
 */

/** One table's part of a token. */
export interface CommitTokenEntry {
  txn: bigint;
  /** The committing primary's epoch; undefined when the token did not carry one. */
  epoch: bigint | undefined;
}

/** A txn number (and epoch) is a positive signed 64-bit integer without leading zeros. */
const TOKEN_PART = /^([^=,\s@]+)=([1-9][0-9]{0,18})(?:@([1-9][0-9]{0,18}))?$/;

/**
 * The entries of a token, or undefined when it is not well formed (a malformed header is ignored
 * rather than failing a write that was committed). A table named twice keeps its later entry
 * (laterEntry). Pure.
 */
export function parseCommitToken(text: string): Map<string, CommitTokenEntry> | undefined {
  const token = new Map<string, CommitTokenEntry>();
  for (const part of text.split(',')) {
    const match = TOKEN_PART.exec(part.trim());
    if (match === null) return undefined;
    const entry = { txn: BigInt(match[2]!), epoch: match[3] === undefined ? undefined : BigInt(match[3]) };
    token.set(match[1]!, laterEntry(token.get(match[1]!), entry));
  }
  return token;
}

/** Adds `next` into `into`, keeping the later entry per table. */
export function mergeCommitToken(
  into: Map<string, CommitTokenEntry>,
  next: ReadonlyMap<string, CommitTokenEntry>,
): void {
  for (const [key, entry] of next) into.set(key, laterEntry(into.get(key), entry));
}

/**
 * The later of two entries of one table: by epoch first when both carry one (every txn of a newer
 * epoch follows every txn of an older one that reached the cluster), else by txn.
 */
export function laterEntry(a: CommitTokenEntry | undefined, b: CommitTokenEntry): CommitTokenEntry {
  if (a === undefined) return b;
  if (a.epoch !== undefined && b.epoch !== undefined && a.epoch !== b.epoch) return a.epoch > b.epoch ? a : b;
  return b.txn > a.txn ? b : a;
}

/** `quotes=17@3,trades=42@3` (sorted by key), or undefined for an empty token. Pure. */
export function formatCommitToken(token: ReadonlyMap<string, CommitTokenEntry>): string | undefined {
  if (token.size === 0) return undefined;
  return [...token.keys()]
    .sort()
    .map((key) => {
      const { txn, epoch } = token.get(key)!;
      return epoch === undefined ? `${key}=${txn}` : `${key}=${txn}@${epoch}`;
    })
    .join(',');
}
