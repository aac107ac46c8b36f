import type { ClientRandomBytes } from './clock.js';

/**
 * Batch identities (issue 18, "exactly once"): every `/write` request of a Sender carries
 * `X-Walship-Batch: <writerId>:<seq>`, so a server that remembers the identities it committed can
 * answer a resend with `replayed` instead of writing the rows twice.
 *
 * - writerId: 1–64 characters of `[A-Za-z0-9._-]`, one per Sender (or per sf_dir, across restarts);
 * - seq: 1 … 2^63−1 in decimal without leading zeros, one more for every batch the writer seals.
 *   A seq is never used for two different bodies: that is the whole contract, and the server
 *   refuses such a reuse with 409.
 */

/** The request header carrying the identity. */
export const BATCH_ID_HEADER = 'x-walship-batch';
/** The 204's header saying what the server did with the identity: `committed` or `replayed`. */
export const BATCH_STATUS_HEADER = 'x-walship-batch-status';

export const WRITER_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** The largest seq: a signed 64-bit integer, as the server stores it. */
export const SEQ_MAX = 2n ** 63n - 1n;
/** The server remembers this many sequences per writer, so no writer holds more unacknowledged. */
export const MAX_UNACKED_BATCHES_LIMIT = 1_000;

/** Random characters of a generated writer id: 20 × 5 bits = 100 bits, no collision in practice. */
const GENERATED_ID_CHARS = 20;
const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/** What the server did with a batch it answered 204 for. */
export type BatchAnswer =
  /** Written now under this identity. */
  | 'committed'
  /** Committed before under this identity with these exact bytes; nothing was written now. */
  | 'replayed'
  /** The server does not track identities (QuestDB, a sequenced writer): at-least-once. */
  | 'ignored';

/** `w-` and 20 random base32 characters, e.g. `w-k3v9q2…`. */
export function generateWriterId(randomBytes: ClientRandomBytes): string {
  const bytes = randomBytes(GENERATED_ID_CHARS);
  let id = 'w-';
  // 256 is a multiple of 32, so the low five bits of a uniform byte are uniform.
  for (const byte of bytes) id += BASE32_ALPHABET[byte & 31];
  return id;
}

/** The header value `writerId:seq`; asserts both are in range. */
export function formatBatchId(writerId: string, seq: bigint): string {
  if (!WRITER_ID_PATTERN.test(writerId)) throw new Error(`bad writer id ${JSON.stringify(writerId)}`);
  if (!(seq >= 1n && seq <= SEQ_MAX)) throw new Error(`batch seq ${seq} is out of 1..2^63-1`);
  return `${writerId}:${seq}`;
}

/** The answer a 204 carried in X-Walship-Batch-Status; anything else is a server that ignored it. */
export function batchAnswerOf(statusHeader: string | undefined): BatchAnswer {
  if (statusHeader === 'committed' || statusHeader === 'replayed') return statusHeader;
  return 'ignored';
}
