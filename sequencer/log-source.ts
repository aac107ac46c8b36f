/**
 * Where a sequenced follower reads each table's txn log (RFC-0003 "Applying in sequencer order"):
 * the sequencer itself (writers, and replicas given `replication.sequencer`) or the store's
 * exported `txnlog/` objects (`store-log-source.ts`, nodes without sequencer access). One
 * interface, two siblings; the follower does not know which it holds beyond `name`.
 */
import { type Clock, ClosedError, systemClock } from '../core/index.js';
import { isTableKey, type TableKey } from '../table/index.js';
import type { LogEntry, SequencerStore } from './sequencer-store.js';

/** How often a source whose watch failed polls `heads()` instead (RFC-0003: the 1 s fallback poll). */
export const LOG_SOURCE_FALLBACK_POLL_MS = 1_000;

export interface LogSource {
  /** 'sequencer' or 'store': shown on `/status`, so an operator sees which path a node follows. */
  readonly name: 'sequencer' | 'store';
  /**
   * The keys (table/names.ts tableKey) of every table this source has a log for, in no set order.
   * A key tableKey cannot produce is left out: it names no table, and one bad entry must not stop
   * the others (walship verify --store reports it).
   */
  tables(): Promise<TableKey[]>;
  /**
   * The entries of `table` from the one holding `fromTxn`, in txn order, contiguous, at most `limit`
   * (1..SEQUENCER_READ_LIMIT_MAX); [] when none holds `fromTxn` yet. The sequencer's readLog
   * contract: the first entry's txnFirst may be below `fromTxn`.
   */
  readLog(table: string, fromTxn: bigint, limit: number): Promise<LogEntry[]>;
  /**
   * Resolves when something may have changed after `after` (a version this source returned
   * before, or 0n at first), with the version to pass next time; with `after` when `signal`
   * aborts. May resolve at once (the first call, or a change already happened): never loses a
   * change that happened after `after` was returned.
   */
  wait(after: bigint, signal: AbortSignal): Promise<bigint>;
  /**
   * The last txn of `table` as this source last saw it (from `tables()`), when it knows one:
   * lets the follower skip tables that are caught up and show how far behind it is.
   */
  knownHead?(table: string): bigint | undefined;
}

export interface SequencerLogSourceOptions {
  /** Sleeps of the fallback poll. Default: the system clock. */
  clock?: Clock;
  /** Called when watch fails and the 1 s heads() poll stands in for it (for a log line). */
  onWatchFailed?: (error: unknown) => void;
}

/**
 * The sequencer as a log source: tables are the keys of `heads()`, reads are `readLog`, and
 * waiting is one `watch` (one long poll or FDB watch per node, however many tables). When watch
 * throws (other than after close), `heads()` is polled every LOG_SOURCE_FALLBACK_POLL_MS until the
 * version moves or `signal` aborts.
 */
export function sequencerLogSource(seq: SequencerStore, options: SequencerLogSourceOptions = {}): LogSource {
  const clock = options.clock ?? systemClock;
  let heads = new Map<string, bigint>();
  return {
    name: 'sequencer',
    async tables() {
      const current = await seq.heads();
      heads = current.tables;
      // The sequencer's answer becomes store keys (txnlog/, staged/): checked here; a key tableKey
      // cannot produce names no table and is left out.
      return [...current.tables.keys()].filter(isTableKey);
    },
    readLog: (table, fromTxn, limit) => seq.readLog(table, fromTxn, limit),
    knownHead: (table) => heads.get(table),
    async wait(after, signal) {
      try {
        return await seq.watch(after, signal);
      } catch (error) {
        if (signal.aborted) return after;
        if (error instanceof ClosedError) throw error;
        options.onWatchFailed?.(error);
        return pollHeads(seq, clock, after, signal);
      }
    },
  };
}

/**
 * Polls `heads()` every LOG_SOURCE_FALLBACK_POLL_MS until its version exceeds `after`. A failed
 * heads() ends the wait (with `after`): the follower's next read meets the same failure and backs off.
 */
async function pollHeads(
  seq: SequencerStore,
  clock: Clock,
  after: bigint,
  signal: AbortSignal,
): Promise<bigint> {
  while (!signal.aborted) {
    try {
      await clock.sleep(LOG_SOURCE_FALLBACK_POLL_MS, signal);
    } catch {
      return after; // aborted
    }
    let version: bigint;
    try {
      version = (await seq.heads()).version;
    } catch {
      return after;
    }
    if (version > after) return version;
  }
  return after;
}
