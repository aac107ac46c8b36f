import { assert, parseTimeMs, type Random } from '../core/index.js';
import { newestSnapshot, type SnapshotManifest } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { TableKey } from '../table/index.js';

/**
 * When a replica publishes a snapshot on its schedule (RFC-0005 "Snapshots"). Every replica runs
 * the schedule (`replication.snapshot.interval`, 1h by default) and the store alone decides which
 * one publishes, with no link between nodes: when its timer fires, a replica reads the newest
 * snapshot of its cluster and publishes only when that one is at least an interval old and lacks
 * something this replica has applied. The timers are jittered so that replicas do not check at the
 * same moment; two that still do (both finding no recent snapshot) each publish once, which costs
 * one extra image, and retention (RFC-0007) keeps only the newest few.
 *
 * Cost of a check: one LIST of `snapshots/` (short while retention runs) and a GET of the newest
 * manifest (more only while the newest are another cluster's or unreadable).
 */

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/**
 * Each wait gets a random extra of up to this fraction of the interval (15 min at 1h). A snapshot of
 * a store of a few GB takes seconds to a minute; spread over a quarter of the interval, two replicas
 * on the same interval rarely check while the other is still publishing.
 */
export const SNAPSHOT_JITTER_FRACTION = 0.25;
/**
 * The first check comes this fraction of the interval after start (plus jitter: 6 to 21 min at 1h):
 * a node restarted more often than its interval still checks, and one that just started has a few
 * minutes to catch up before it might publish.
 */
export const SNAPSHOT_FIRST_CHECK_FRACTION = 0.1;

/** One table a replica holds and the last txn it applied. */
export interface AppliedTable {
  key: TableKey;
  lastTxn: bigint;
}

/**
 * What a check decided. `recent`: the newest snapshot is younger than the interval (`dueInMs`: when
 * it will not be). `unchanged`: it holds every table of this replica at or past this replica's
 * txn, so an image would add nothing (an idle cluster publishes nothing). `empty`: this replica
 * holds no table yet.
 */
export type SnapshotDecision =
  | { publish: true; newest: SnapshotManifest | null }
  | { publish: false; reason: 'recent'; newest: SnapshotManifest; dueInMs: number }
  | { publish: false; reason: 'unchanged'; newest: SnapshotManifest }
  | { publish: false; reason: 'empty'; newest: null };

export interface SnapshotCheckOptions {
  store: ObjectStore;
  clusterId: string;
  /** `replication.snapshot.interval`, ms; more than 0. */
  intervalMs: number;
  /** This node's wall clock now, ms: compared with the newest snapshot's `createdAt`. */
  nowWallMs: number;
  /** Every table this replica holds, with the last txn it applied. */
  applied: readonly AppliedTable[];
  signal?: AbortSignal;
}

/**
 * Whether a replica publishes now (see the header). The newest snapshot's age is its `createdAt`
 * (the publisher's wall clock) against this node's: a skew between them shifts the schedule by the
 * skew, and a publisher whose clock runs ahead looks recent for longer. Store errors are thrown.
 */
export async function checkScheduledSnapshot(options: SnapshotCheckOptions): Promise<SnapshotDecision> {
  const { intervalMs, applied } = options;
  assert(intervalMs > 0, `snapshot interval ${intervalMs} ms is not positive`);
  if (applied.length === 0) return { publish: false, reason: 'empty', newest: null };
  const newest = await newestSnapshot(
    options.store,
    options.clusterId,
    options.signal === undefined ? {} : { signal: options.signal },
  );
  if (newest === null) return { publish: true, newest };
  const ageMs = options.nowWallMs - parseTimeMs(newest.createdAt);
  if (ageMs < intervalMs) {
    return { publish: false, reason: 'recent', newest, dueInMs: Math.min(intervalMs - ageMs, intervalMs) };
  }
  if (holdsAll(newest, applied)) return { publish: false, reason: 'unchanged', newest };
  return { publish: true, newest };
}

/** Whether `manifest` holds every table of `applied`, each at or past its txn there. */
function holdsAll(manifest: SnapshotManifest, applied: readonly AppliedTable[]): boolean {
  const held = new Map(manifest.tables.map((table) => [table.key, table.lastTxn]));
  return applied.every((table) => (held.get(table.key) ?? -1n) >= table.lastTxn);
}

/** The wait before a replica's first check after start, ms. */
export function firstSnapshotCheckMs(intervalMs: number, random: Random): number {
  return Math.round(intervalMs * SNAPSHOT_FIRST_CHECK_FRACTION + jitterMs(intervalMs, random));
}

/**
 * The wait before the next check, ms: once the newest snapshot is an interval old when the last
 * check found it recent, else an interval (after a publish, a skip, or a failure); plus jitter.
 */
export function nextSnapshotCheckMs(
  intervalMs: number,
  random: Random,
  decision: SnapshotDecision | undefined,
): number {
  const baseMs = decision?.publish === false && decision.reason === 'recent' ? decision.dueInMs : intervalMs;
  return Math.round(baseMs + jitterMs(intervalMs, random));
}

function jitterMs(intervalMs: number, random: Random): number {
  return intervalMs * SNAPSHOT_JITTER_FRACTION * random.next();
}
