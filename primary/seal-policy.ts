/**
 * When a writer seals its unsealed records into a segment: on rollover size, on the throttle
 * window, or for a waiting durable writer (DESIGN §5 step 4; RFC-0003 "Commit protocol" step 2).
 * The primary's Uploader seals per table, the SequencedWriter one batch over every table; both
 * ask this module, so the rule is written once. What gates the rule (an upload in flight, a
 * failed upload's backoff, flush()) stays with each caller: it is not about sealing.
 *
 * Pure: the caller passes the time (monotonic ms) and owns the timer.
 */

/** The rule's two bounds. */
export interface SealPolicy {
  /** Seal once the unsealed records reach this many encoded bytes (`cairo.wal.segment.rollover.size`). */
  rolloverSizeBytes: number;
  /** Seal once the oldest unsealed record is this many ms old (`replication.primary.throttle.window.duration`). */
  windowMs: number;
}

/** Why a seal is due: `size` reached, the `window` closed, or a durable writer is `waiting`. */
export type SealReason = 'size' | 'window' | 'waiting';

/** What is unsealed now. Callers ask only when something is (nothing unsealed: nothing to seal). */
export interface Unsealed {
  /** Encoded bytes of the unsealed records. */
  bytes: number;
  /** Monotonic ms at which the oldest unsealed record was committed; undefined when unknown (never due by window). */
  oldestAtMs: number | undefined;
  /** A durable-ack writer waits for one of the unsealed records: its answer waits for the seal. */
  writerWaiting: boolean;
}

/** Why the unsealed records should be sealed at `nowMs`, or null when they can wait. */
export function sealReason(policy: SealPolicy, unsealed: Unsealed, nowMs: number): SealReason | null {
  if (unsealed.bytes >= policy.rolloverSizeBytes) return 'size';
  if (unsealed.writerWaiting) return 'waiting';
  const { oldestAtMs } = unsealed;
  if (oldestAtMs !== undefined && nowMs - oldestAtMs >= policy.windowMs) return 'window';
  return null;
}

/**
 * Monotonic ms at which the window of a record committed at `oldestAtMs` closes: when to look
 * again if nothing else (more bytes, a durable writer) makes the seal due first.
 */
export function sealDueAtMs(policy: SealPolicy, oldestAtMs: number): number {
  return oldestAtMs + policy.windowMs;
}

/**
 * A commit time that makes a record's window closed at `nowMs`: given to the records an earlier
 * run left unsealed, so they are sealed at once rather than a window after the restart.
 */
export function overdueAtMs(policy: SealPolicy, nowMs: number): number {
  return nowMs - policy.windowMs;
}
