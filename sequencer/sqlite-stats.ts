/**
 * The statistics the SQLite sequencer's status() shows (`walship sequencer serve` /status): a
 * commits/s window, group sizes and COMMIT (fsync) latencies of the last groups, and each writer's
 * last-commit age. Memory only, derived, bounded: lost at restart, nothing durable depends on it.
 */
import type { WriterRecord } from './sequencer-store.js';

/** Groups whose size and COMMIT latency status() summarises. */
const STATS_GROUPS_MAX = 1000;
/** The window of commitsPerSecond, in whole seconds of the monotonic clock. */
const STATS_RATE_WINDOW_S = 10;

/** The group statistics of SqliteSequencerStatus. */
export interface SqliteGroupStatsSummary {
  /** Groups (transactions, one fsync each) run since open. */
  groups: number;
  /** Commits (replays excluded) per second over the last STATS_RATE_WINDOW_S seconds. */
  commitsPerSecond: number;
  /** Mean commits per group (replays and failures included) over the last STATS_GROUPS_MAX groups; 0 before the first. */
  groupSizeMean: number;
  /** COMMIT (the fsync) latency over the last STATS_GROUPS_MAX groups; null before the first. */
  commitLatencyP50Ms: number | null;
  commitLatencyP99Ms: number | null;
}

export interface SqliteWriterActivity {
  writer: string;
  /** Milliseconds since this writer's last committed batch (sequencer wall clock); null: none. */
  lastCommitAgoMs: number | null;
}

/** Group sizes and COMMIT latencies of the last STATS_GROUPS_MAX groups, and a commits/s window. */
export class GroupStats {
  private readonly sizes: number[] = [];
  private readonly commitMs: number[] = [];
  private next = 0;
  private groups = 0;
  /** Commits per whole second of the monotonic clock, the last STATS_RATE_WINDOW_S + 1 seconds. */
  private readonly perSecond = new Map<number, number>();

  /** One group ran at `nowMs` (monotonic): `groupSize` commits, `changed` of them new, COMMIT took `commitMs`. */
  record(group: { nowMs: number; groupSize: number; changed: number; commitMs: number }): void {
    const { nowMs, groupSize, changed, commitMs } = group;
    this.groups += 1;
    if (this.sizes.length < STATS_GROUPS_MAX) {
      this.sizes.push(groupSize);
      this.commitMs.push(commitMs);
    } else {
      this.sizes[this.next] = groupSize;
      this.commitMs[this.next] = commitMs;
      this.next = (this.next + 1) % STATS_GROUPS_MAX;
    }
    const second = Math.floor(nowMs / 1000);
    this.perSecond.set(second, (this.perSecond.get(second) ?? 0) + changed);
    for (const key of this.perSecond.keys())
      if (key < second - STATS_RATE_WINDOW_S) this.perSecond.delete(key);
  }

  summary(nowMs: number): SqliteGroupStatsSummary {
    const since = Math.floor(nowMs / 1000) - STATS_RATE_WINDOW_S;
    let recent = 0;
    for (const [second, commits] of this.perSecond) if (second >= since) recent += commits;
    const sorted = [...this.commitMs].sort((a, b) => a - b);
    const quantile = (q: number) =>
      sorted.length === 0
        ? null
        : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null);
    const total = this.sizes.reduce((sum, size) => sum + size, 0);
    return {
      groups: this.groups,
      commitsPerSecond: recent / STATS_RATE_WINDOW_S,
      groupSizeMean: this.sizes.length === 0 ? 0 : total / this.sizes.length,
      commitLatencyP50Ms: quantile(0.5),
      commitLatencyP99Ms: quantile(0.99),
    };
  }
}

/** Each writer's last-commit age at wall time `nowMs`, never negative (a clock step back reads 0). */
export function writerActivity(
  writers: WriterRecord[],
  lastCommitAtMs: (record: WriterRecord) => number | null,
  nowMs: number,
): SqliteWriterActivity[] {
  return writers.map((record) => {
    const at = lastCommitAtMs(record);
    return { writer: record.writer, lastCommitAgoMs: at === null ? null : Math.max(0, nowMs - at) };
  });
}
