/**
 * Applying in sequencer order, on every node (RFC-0003 "Applying in sequencer order"): per table,
 * read the txn log from `applied + 1` (from the sequencer or the store's `txnlog/`, a LogSource),
 * fetch each entry's staged segment (a writer's own from its queue, others by GET, downloads ahead
 * in parallel), verify it against the entry and apply it renumbered, ONE SQLite transaction per
 * entry, strictly in log order. Writers also run the export catch-up ("Export catch-up").
 */
import type { Logger } from 'pino';
import { type Clock, isWalshipError, WalshipError } from '../core/index.js';
import { encodeTxnLogEntry, txnLogKey, txnLogPrefix } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import {
  commonTableStatus,
  FailureBackoff,
  type FollowedTableState,
  type FollowedTableStatus,
  type FollowerStatus,
  findTable,
  readVerified,
  resumeTable,
  sortedByKey,
  stalenessOf,
  suspendTable,
  type TableFollower,
  type VerifiedStagedSegment,
  verifyStagedSegment,
} from '../replica/index.js';
import {
  decodeTableKey,
  EXPORTED_META_PREFIX,
  PARTIAL_ENTRY_META_PREFIX,
  REJECTED_COUNT_META_PREFIX,
  REJECTED_META_PREFIX,
  type TableKey,
  type TableStore,
} from '../table/index.js';
import type { TxnRecord } from '../wal/index.js';
import type { LogSource } from './log-source.js';
import type { LogEntry } from './sequencer-store.js';

/** Bounds of the follower, each with its reason (STYLE rule 7). */
export const SEQUENCED_FOLLOWER_LIMITS = {
  /** Entries one readLog asks for: one round trip covers many downloads when behind. */
  readPageEntries: 100,
  /** Pages one table may apply per round before the others get their turn (no table starves the rest). */
  pagesPerTablePerRound: 10,
  /** Staged segments downloaded ahead of the apply, by default (`downloadConcurrency`). */
  downloadConcurrencyDefault: 8,
  /** Fetches of an object that fails verification before the table is suspended (a torn read heals). */
  fetchAttemptsPerSegment: 2,
  /** Backoff after a source or store failure, doubling, so an outage costs few requests. */
  backoffMs: { base: 250, max: 10_000 },
  /** stop() waits this long for the round in progress (its apply finishes; none starts). */
  stopWaitMs: 10_000,
  /** With export catch-up on, the loop wakes at least this often (or every grace period if shorter). */
  exportWakeMsMax: 1_000,
  /** Entries one export check looks at per table (one readLog page, one LIST page). */
  exportCheckEntries: 1000,
  /** Apply-time marks kept per table for the export catch-up; beyond it the newest merge. */
  exportMarksMax: 64,
  /** Own exports remembered per table (noteExported) until a check passes them; beyond it they are forgotten. */
  exportNotesMax: 10_000,
  /**
   * Staged keys remembered as found absent once (#download), waiting for the read after a backoff
   * that confirms it; beyond it they are forgotten (each then waits one more backoff).
   */
  absentOnceKeysMax: 10_000,
} as const;

export interface SequencedFollowerOptions {
  /** The node's table store (table/): where entries are applied. */
  tables: TableStore;
  /** The object store the staged segments (and txnlog exports) live in. */
  store: ObjectStore;
  source: LogSource;
  clock: Clock;
  log: Logger;
  /** Staged segments downloaded ahead of the apply (default 8). */
  downloadConcurrency?: number;
  /** A writer's own staged segment by its key, when it still holds it (then no GET). */
  ownSegment?: (stagedKey: string) => Uint8Array | undefined;
  /** Called after the entry of an own segment was applied and committed: the writer may drop it. */
  dropOwnSegment?: (stagedKey: string, entry: LogEntry) => void;
  /** Called after each applied entry, with the table's new watermark. */
  onApplied?: (tableKey: string, appliedTxn: bigint) => void;
  /** Writers only: write missing txnlog objects of entries applied more than `graceMs` ago. */
  exportCatchUp?: { graceMs: number };
  /**
   * The tables this node serves (issue 9, replica/table-filter.ts), by store key; default all.
   * Consulted live: a table it does not admit is never read from the source nor downloaded, and no
   * apply of it starts. After a change, call tablesChanged().
   */
  admits?: (tableKey: string) => boolean;
}

/**
 * A followed table (FollowedTableStatus: `epoch` is always null, a sequenced table has none;
 * `headTxn` is the source's known head, null when it does not say; `sinceCaughtUpMs` is since the
 * log was last read to its end; `segmentsApplied` counts log entries, one staged segment each).
 */
export interface SequencedTableStatus extends FollowedTableStatus {
  /** Txns applied as empty fences because their schema conflicted (REJECTED_META_PREFIX). */
  rejected: number;
  /** The log starts after applied + 1 (the txns before come from the wal/ chain): the first txn it holds. */
  waitingBeforeTxn: bigint | null;
}

/** FollowerStatus (`polls` and `fatal` always null: it waits on its source, and never stops on its own), and more. */
export interface SequencedFollowerStatus extends FollowerStatus<SequencedTableStatus> {
  polls: null;
  fatal: null;
  source: 'sequencer' | 'store';
  /** null when export catch-up is off. */
  export: { exportsWritten: number; conflict: { code: string; message: string } | null } | null;
}

interface ExportState {
  /** Every txnlog object of txns ≤ this is known present. */
  through: bigint;
  /** When entries were applied (monotonic ms), coalesced: `txnLast` is the last txn applied by `atMs`. */
  marks: { txnLast: bigint; atMs: number }[];
  lastCheckAtMs: number;
  /** txnFirsts this node's writer exported itself (noteExported), not yet passed by a check. */
  noted: Set<bigint>;
}

/** A verified segment, and whether its bytes were the writer's own (then it may drop them once applied). */
interface FetchedSegment {
  segment: VerifiedStagedSegment;
  own: boolean;
}

/**
 * One followed table (the common fields: FollowedTableState; `segmentsApplied` counts entries).
 * Txn numbers are bigint; times are this node's monotonic ms.
 */
interface SequencedTable extends FollowedTableState {
  /** The txnFirst of an entry applied only in part (PARTIAL_ENTRY_META_PREFIX), or null. */
  partialFirst: bigint | null;
  rejected: number;
  waitingBeforeTxn: bigint | null;
  export: ExportState;
}

/**
 * Follows a LogSource and applies its entries in log order (RFC-0003). Each round: discover tables
 * (`source.tables()`), then per table read pages from `applied + 1` and apply them until the log
 * has nothing newer (skipping tables the source says are caught up), then `source.wait()` for the
 * next change. A table whose staged object stays corrupt, is gone (SEGMENT_MISSING) or cannot be
 * applied is suspended with a message naming the resume command; the others go on. A txn whose
 * schema conflicts with the table (TYPE_CONFLICT: two writers added one column with two types) is
 * applied as an empty fence under the same number on every node and recorded as rejected, so the
 * numbering stays identical everywhere. Source and store failures are retried with backoff.
 *
 * It is a replica node's TableFollower (replica/table-follower.ts) as it is: what it shares with the
 * store's Follower is in replica/follower-skeleton.ts; its status leaves out nothing and invents
 * nothing (no epoch, no polls: null).
 */
export class SequencedFollower implements TableFollower {
  readonly #options: SequencedFollowerOptions;
  readonly #downloadConcurrency: number;
  readonly #tables = new Map<string, SequencedTable>();
  readonly #stopController = new AbortController();
  #waitController: AbortController | undefined;
  /**
   * Aborts the downloads of the page being applied (stop()). One per page, not the long-lived stop
   * signal: a store may tie each request to the signal it gets (AbortSignal.any), which must not pile up.
   */
  #pageController: AbortController | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  /** Consecutive failed rounds and the last error (SEQUENCED_FOLLOWER_LIMITS.backoffMs). */
  readonly #backoff = new FailureBackoff(SEQUENCED_FOLLOWER_LIMITS.backoffMs);
  #exportsWritten = 0;
  #exportConflict: { code: string; message: string } | null = null;
  /** Staged keys a GET found absent once: a second absence, a backoff later, confirms SEGMENT_MISSING. */
  readonly #absentOnce = new Set<string>();

  constructor(options: SequencedFollowerOptions) {
    const concurrency = options.downloadConcurrency ?? SEQUENCED_FOLLOWER_LIMITS.downloadConcurrencyDefault;
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new WalshipError('INVALID_ARGUMENT', 'invalid', `downloadConcurrency ${concurrency} must be ≥ 1`);
    const graceMs = options.exportCatchUp?.graceMs;
    if (graceMs !== undefined && (!Number.isFinite(graceMs) || graceMs < 0))
      throw new WalshipError('INVALID_ARGUMENT', 'invalid', `export grace ${graceMs} ms must be ≥ 0`);
    this.#options = options;
    this.#downloadConcurrency = concurrency;
  }

  /** Start following. Idempotent. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Stop: the wait and downloads in flight are aborted, an apply in progress finishes, none starts.
   * Waits at most SEQUENCED_FOLLOWER_LIMITS.stopWaitMs for the loop to end. Idempotent.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopController.abort();
    this.#pageController?.abort();
    if (this.#loop === undefined) return;
    const timedOut = Symbol('timed out');
    const bound = new AbortController();
    const outcome = await Promise.race([
      this.#loop.then(() => undefined),
      this.#options.clock.sleep(SEQUENCED_FOLLOWER_LIMITS.stopWaitMs, bound.signal).then(
        () => timedOut,
        () => undefined,
      ),
    ]);
    bound.abort();
    if (outcome === timedOut)
      this.#options.log.warn(
        { waitedMs: SEQUENCED_FOLLOWER_LIMITS.stopWaitMs },
        'sequenced follower did not stop in time',
      );
  }

  /** The applied watermark of table `key`: what this follower applied, else the table store's (0n: unknown). */
  appliedTxn(key: string): bigint {
    const table = this.#tables.get(key);
    if (table !== undefined) return table.appliedTxn;
    return this.#options.tables.lastTxn(decodeTableKey(key));
  }

  /**
   * The writer exported the txnlog object of `table`'s entry starting at `txnFirst` itself (its PUT
   * succeeded): the export catch-up need not look for it.
   */
  noteExported(table: string, txnFirst: bigint): void {
    const t = this.#tables.get(table);
    if (t === undefined || txnFirst <= t.export.through) return;
    if (t.export.noted.size >= SEQUENCED_FOLLOWER_LIMITS.exportNotesMax) t.export.noted.clear();
    t.export.noted.add(txnFirst);
  }

  /**
   * Lift the suspension of table `nameOrKey` (after the object was repaired): it is retried at once.
   * Returns false for a table that is not suspended or not known.
   */
  resume(nameOrKey: string): boolean {
    const table = findTable(this.#tables, nameOrKey);
    if (table === undefined || !resumeTable(table, this.#options.log)) return false;
    this.#waitController?.abort();
    return true;
  }

  /** Every followed table's applied watermark, by store key. */
  appliedAll(): Map<string, bigint> {
    return new Map([...this.#tables.values()].map((t) => [t.key, t.appliedTxn]));
  }

  /**
   * Milliseconds since every followed table last read its log to the end (the oldest); null when
   * one never did, or when no table is followed yet. Whole ms.
   */
  stalenessMs(): number | null {
    const ms = stalenessOf(this.#tables.values(), this.#options.clock.monotonicMs(), null);
    return ms === null ? null : Math.round(ms);
  }

  /**
   * Nothing to do: the follower reads a table's log as soon as its source reports a change
   * (`source.wait()`), so a waiting reader has nothing to hurry.
   */
  probeNow(_keys: readonly string[]): void {}

  /**
   * Resolves at once: there is no sweep to run. New tables and entries are found by the next round,
   * which the source's change report starts.
   */
  refresh(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * The `admits` filter changed: tables it no longer admits are forgotten at once (no apply of
   * theirs starts after this returns, so their data may be dropped), and the wait for the source
   * is cut short so the next round discovers the tables it admits now.
   */
  tablesChanged(): void {
    this.#forgetUnadmitted();
    this.#waitController?.abort();
  }

  #admits(key: string): boolean {
    return this.#options.admits?.(key) ?? true;
  }

  #forgetUnadmitted(): void {
    for (const key of [...this.#tables.keys()]) if (!this.#admits(key)) this.#tables.delete(key);
  }

  /** Per-table state, the source, the last failure and the export catch-up, for /status. */
  status(): SequencedFollowerStatus {
    const now = this.#options.clock.monotonicMs();
    const tables = sortedByKey(this.#tables.values()).map((t): SequencedTableStatus => {
      const head = this.#options.source.knownHead?.(t.key) ?? null;
      return {
        ...commonTableStatus(t, now),
        epoch: null,
        headTxn: head,
        txnsBehind: head === null ? null : head > t.appliedTxn ? head - t.appliedTxn : 0n,
        rejected: t.rejected,
        waitingBeforeTxn: t.waitingBeforeTxn,
      };
    });
    return {
      source: this.#options.source.name,
      tables,
      stalenessMs: this.stalenessMs(),
      headUnchangedMs: null,
      polls: null,
      lastError: this.#backoff.lastError(now),
      fatal: null,
      export:
        this.#options.exportCatchUp === undefined
          ? null
          : { exportsWritten: this.#exportsWritten, conflict: this.#exportConflict },
    };
  }

  // --- the loop ---

  async #run(): Promise<void> {
    let version = 0n;
    while (!this.#stopped) {
      let backoffMs: number | null = null;
      let more = false;
      try {
        await this.#discover();
        more = await this.#followAll();
        this.#backoff.succeeded();
      } catch (error) {
        backoffMs = this.#onFailed(error);
      }
      if (this.#options.exportCatchUp !== undefined) await this.#exportAll();
      if (this.#stopped) break;
      if (backoffMs !== null) await this.#sleep(backoffMs);
      else if (!more) version = await this.#waitForChange(version);
    }
  }

  #onFailed(error: unknown): number {
    const message = error instanceof Error ? error.message : String(error);
    const delayMs = this.#backoff.failed(message, this.#options.clock.monotonicMs());
    if (!this.#stopped)
      this.#options.log.warn(
        { err: message, code: isWalshipError(error) ? error.code : undefined, retryInMs: delayMs },
        'sequenced follower round failed; retrying',
      );
    return delayMs;
  }

  async #sleep(ms: number): Promise<void> {
    try {
      await this.#options.clock.sleep(ms, this.#stopController.signal);
    } catch {
      // stopped
    }
  }

  /** source.wait(), cut short by stop(), resume() and (with export catch-up) a periodic wake. */
  async #waitForChange(version: bigint): Promise<bigint> {
    const controller = new AbortController();
    this.#waitController = controller;
    const onStop = () => controller.abort();
    this.#stopController.signal.addEventListener('abort', onStop, { once: true });
    const grace = this.#options.exportCatchUp?.graceMs;
    if (grace !== undefined) {
      const wakeMs = Math.min(grace, SEQUENCED_FOLLOWER_LIMITS.exportWakeMsMax);
      this.#options.clock.sleep(wakeMs, controller.signal).then(
        () => controller.abort(),
        () => undefined,
      );
    }
    try {
      if (this.#stopped) return version;
      return await this.#options.source.wait(version, controller.signal);
    } catch (error) {
      await this.#sleep(this.#onFailed(error));
      return version;
    } finally {
      controller.abort();
      this.#stopController.signal.removeEventListener('abort', onStop);
      this.#waitController = undefined;
    }
  }

  /** Adds the tables the source has a log for and this follower does not follow yet. */
  async #discover(): Promise<void> {
    const keys = await this.#options.source.tables();
    this.#forgetUnadmitted();
    for (const key of keys)
      if (!this.#tables.has(key) && this.#admits(key)) this.#tables.set(key, this.#loadTable(key));
  }

  #loadTable(key: TableKey): SequencedTable {
    const { tables } = this.#options;
    const folded = decodeTableKey(key);
    const name = tables.schema(folded)?.name ?? folded;
    const partial = tables.getMeta(`${PARTIAL_ENTRY_META_PREFIX}${key}`);
    const exported = tables.getMeta(`${EXPORTED_META_PREFIX}${key}`);
    const appliedTxn = tables.lastTxn(name);
    return {
      key,
      name,
      appliedTxn,
      partialFirst: partial === undefined || partial === '' ? null : BigInt(partial),
      suspended: null,
      rejected: Number(tables.getMeta(`${REJECTED_COUNT_META_PREFIX}${key}`) ?? '0'),
      segmentsApplied: 0,
      rowsApplied: 0,
      lastAppliedAtMs: null,
      confirmedAtMs: null,
      waitingBeforeTxn: null,
      export: {
        through: exported === undefined ? 0n : BigInt(exported),
        // What was applied before this process started is due one grace period from now.
        marks: appliedTxn > 0n ? [{ txnLast: appliedTxn, atMs: this.#options.clock.monotonicMs() }] : [],
        lastCheckAtMs: Number.NEGATIVE_INFINITY,
        noted: new Set(),
      },
    };
  }

  /** Follows every table once; true when some table still had more when its page budget ran out. */
  async #followAll(): Promise<boolean> {
    let more = false;
    const ordered = [...this.#tables.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const t of ordered) {
      if (this.#stopped) break;
      if (t.suspended !== null) continue;
      try {
        if (await this.#follow(t)) more = true;
      } catch (error) {
        if (!isWalshipError(error) || error.kind !== 'data') throw error;
        this.#suspend(t, error);
      }
    }
    return more;
  }

  /** Reads and applies pages of `t` until the log has nothing newer; true when the page budget ran out first. */
  async #follow(t: SequencedTable): Promise<boolean> {
    // Another applier (the wal/ chain follower before the log starts) may have moved the table.
    if (t.partialFirst === null) t.appliedTxn = this.#options.tables.lastTxn(t.name);
    const head = this.#options.source.knownHead?.(t.key);
    if (head !== undefined && head <= t.appliedTxn && t.partialFirst === null) {
      t.confirmedAtMs = this.#options.clock.monotonicMs();
      return false;
    }
    for (let page = 0; page < SEQUENCED_FOLLOWER_LIMITS.pagesPerTablePerRound; page++) {
      if (this.#stopped || t.suspended !== null || !this.#admits(t.key)) return false;
      const from = t.partialFirst ?? t.appliedTxn + 1n;
      const entries = await this.#options.source.readLog(
        t.key,
        from,
        SEQUENCED_FOLLOWER_LIMITS.readPageEntries,
      );
      if (!this.#admits(t.key)) return false;
      if (entries.length === 0) {
        t.confirmedAtMs = this.#options.clock.monotonicMs();
        return false;
      }
      checkPage(t, from, entries);
      if (entries[0]!.txnFirst > t.appliedTxn + 1n) {
        this.#waitBefore(t, entries[0]!.txnFirst);
        return false;
      }
      t.waitingBeforeTxn = null;
      await this.#applyPage(t, entries);
    }
    return true;
  }

  /** The log starts after this table's watermark: the txns before it are not ours to apply (yet). */
  #waitBefore(t: SequencedTable, txnFirst: bigint): void {
    if (t.waitingBeforeTxn === txnFirst) return;
    t.waitingBeforeTxn = txnFirst;
    this.#options.log.info(
      { table: t.name, appliedTxn: t.appliedTxn, logStartsAt: txnFirst },
      'the txn log of this table starts after its watermark: waiting for the txns before it (the wal/ chain)',
    );
  }

  /** Downloads run up to downloadConcurrency entries ahead; applies are strictly in order. */
  async #applyPage(t: SequencedTable, entries: LogEntry[]): Promise<void> {
    // A stale partial marker may point at an entry the table already holds whole.
    const todo = entries.filter((entry) => entry.txnLast > t.appliedTxn);
    if (todo.length < entries.length && t.partialFirst !== null) this.#clearPartial(t);
    const fetches: Promise<FetchedSegment>[] = [];
    const controller = new AbortController();
    this.#pageController = controller;
    const start = (i: number) => {
      const fetch = this.#fetch(todo[i]!, controller.signal);
      fetch.catch(() => undefined); // awaited in order below; one left behind by a stop must not go unhandled
      fetches[i] = fetch;
    };
    try {
      for (let i = 0; i < Math.min(this.#downloadConcurrency, todo.length); i++) start(i);
      for (let i = 0; i < todo.length; i++) {
        const fetched = await fetches[i]!;
        // Re-checked after the await: a table dropped meanwhile must never be applied again.
        if (this.#stopped || !this.#admits(t.key)) return;
        if (i + this.#downloadConcurrency < todo.length) start(i + this.#downloadConcurrency);
        this.#apply(t, todo[i]!, fetched.segment);
        if (fetched.own) this.#options.dropOwnSegment?.(todo[i]!.staged, todo[i]!);
      }
    } finally {
      controller.abort(); // downloads ahead of a failed apply are not needed any more
      this.#pageController = undefined;
    }
  }

  #clearPartial(t: SequencedTable): void {
    this.#options.tables.setMeta(`${PARTIAL_ENTRY_META_PREFIX}${t.key}`, '');
    t.partialFirst = null;
  }

  /**
   * The entry's staged segment (the writer's own bytes when it holds them, else a GET), verified
   * against the entry and renumbered. A verification failure is fetched once more from the store
   * before it counts; an object absent at two reads a backoff apart is SEGMENT_MISSING (data).
   */
  async #fetch(entry: LogEntry, signal: AbortSignal): Promise<FetchedSegment> {
    const own = this.#options.ownSegment?.(entry.staged);
    // The writer's own bytes are read first; a verification failure reads the store's.
    const fromOwn = (attempt: number) => attempt === 1 && own !== undefined;
    return readVerified({
      attempts: SEQUENCED_FOLLOWER_LIMITS.fetchAttemptsPerSegment,
      read: async (attempt) =>
        attempt === 1 && own !== undefined ? own : await this.#download(entry, signal),
      verify: async (bytes, attempt) => ({
        segment: await verifyStagedSegment(bytes, { objectKey: entry.staged, entry }),
        own: fromOwn(attempt),
      }),
      onRetry: (error) =>
        this.#options.log.warn(
          { key: entry.staged, err: error.message },
          'staged segment failed verification; fetching it again',
        ),
    });
  }

  /**
   * GET the entry's staged object. An absence is not final at first sight (issue 13: one look at a
   * store is not evidence that an object is gone; a store may lag behind its writes): the first
   * fails the round as unavailable, so the object is read again after a backoff, and only a
   * second absence is SEGMENT_MISSING (data), which suspends the table.
   */
  async #download(entry: LogEntry, signal: AbortSignal): Promise<Uint8Array> {
    const got = await this.#options.store.get(entry.staged, { signal });
    const numbered =
      `${entry.staged}, numbered txns ${entry.txnFirst}..${entry.txnLast} by the sequencer ` +
      `(writer ${entry.writer}, writer epoch ${entry.writerEpoch}, batch ${entry.batchSeq})`;
    const details = { key: entry.staged, table: entry.table, txnFirst: entry.txnFirst };
    if (got === null) {
      if (!this.#absentOnce.has(entry.staged)) {
        if (this.#absentOnce.size >= SEQUENCED_FOLLOWER_LIMITS.absentOnceKeysMax) this.#absentOnce.clear();
        this.#absentOnce.add(entry.staged);
        throw new WalshipError(
          'STORE_INCONSISTENT',
          'unavailable',
          `${numbered}, was not found; it is read again after a backoff before its table is suspended`,
          { details },
        );
      }
      this.#absentOnce.delete(entry.staged);
      throw new WalshipError(
        'SEGMENT_MISSING',
        'data',
        `${numbered}, is gone from the store (not found twice, a backoff apart): ` +
          'those txns cannot be applied here (if WAL retention removed it, bootstrap this node again from a snapshot)',
        { details },
      );
    }
    this.#absentOnce.delete(entry.staged);
    if (got.status !== 'ok')
      throw new WalshipError(
        'STORE_INCONSISTENT',
        'unavailable',
        `GET ${entry.staged} answered not-modified`,
      );
    return got.body;
  }

  /**
   * One entry, one SQLite transaction: its records (those after the watermark), rejected records
   * as fences with their reasons, the uploaded watermark, the partial marker cleared.
   */
  #apply(t: SequencedTable, entry: LogEntry, segment: VerifiedStagedSegment): void {
    const { tables, clock } = this.#options;
    const skip = t.appliedTxn + 1n - entry.txnFirst;
    if (skip < 0n || entry.txnLast <= t.appliedTxn)
      throw new WalshipError(
        'ASSERTION_FAILED',
        'internal',
        `entry ${entry.txnFirst}..${entry.txnLast} of ${t.key} does not hold txn ${t.appliedTxn + 1n}`,
      );
    const name = segment.header.tableName;
    const rejected: { txn: bigint; reason: string }[] = [];
    tables.transaction(() => {
      for (const record of segment.txns.slice(Number(skip))) {
        const reason = applyOrReject(tables, name, record);
        if (reason === null) continue;
        tables.setMeta(`${REJECTED_META_PREFIX}${t.key}.${record.txn}`, reason);
        rejected.push({ txn: record.txn, reason });
      }
      if (rejected.length > 0)
        tables.setMeta(`${REJECTED_COUNT_META_PREFIX}${t.key}`, String(t.rejected + rejected.length));
      // Everything applied from the log is in the store: uploaded = applied, ready for a promotion.
      if (entry.txnLast > tables.uploadedTxn(name)) tables.setUploadedTxn(name, entry.txnLast);
      if (t.partialFirst !== null) tables.setMeta(`${PARTIAL_ENTRY_META_PREFIX}${t.key}`, '');
    });
    const now = clock.monotonicMs();
    t.appliedTxn = entry.txnLast;
    t.partialFirst = null;
    t.name = tables.schema(name)?.name ?? name;
    t.rejected += rejected.length;
    t.segmentsApplied++;
    t.rowsApplied += segment.header.rowCount;
    t.lastAppliedAtMs = now;
    this.#markApplied(t, entry.txnLast, now);
    for (const { txn, reason } of rejected)
      this.#options.log.warn(
        { table: t.name, txn, writer: entry.writer },
        `txn ${txn} of table ${JSON.stringify(t.name)} was rejected (applied without rows on every node): ${reason}`,
      );
    this.#options.onApplied?.(t.key, t.appliedTxn);
  }

  #suspend(t: SequencedTable, error: WalshipError): void {
    suspendTable(t, error, { atMs: this.#options.clock.monotonicMs(), log: this.#options.log });
  }

  // --- export catch-up (writers) ---

  /** Records that txns up to `txnLast` were applied at `atMs`, coalescing marks close in time. */
  #markApplied(t: SequencedTable, txnLast: bigint, atMs: number): void {
    const grace = this.#options.exportCatchUp?.graceMs;
    if (grace === undefined) return;
    const marks = t.export.marks;
    const last = marks[marks.length - 1];
    if (last !== undefined && atMs - last.atMs <= grace / 8) {
      last.txnLast = txnLast; // due a little early: at worst an export that finds the object there
      return;
    }
    if (last !== undefined && marks.length >= SEQUENCED_FOLLOWER_LIMITS.exportMarksMax) {
      last.txnLast = txnLast;
      last.atMs = atMs; // due a little late: bounded memory wins over promptness
      return;
    }
    marks.push({ txnLast, atMs });
  }

  /** One export check per table whose oldest unknown entry is past the grace period; errors wait for the next. */
  async #exportAll(): Promise<void> {
    for (const t of this.#tables.values()) {
      if (this.#stopped || this.#exportConflict !== null) return;
      try {
        await this.#exportTable(t);
      } catch (error) {
        if (this.#stopped) return;
        const message = error instanceof Error ? error.message : String(error);
        this.#backoff.recordError(message, this.#options.clock.monotonicMs());
        this.#options.log.warn(
          { table: t.name, err: message },
          'txnlog export check failed; retrying after the grace period',
        );
      }
    }
  }

  /**
   * RFC-0003 "Export catch-up": at most once per grace period per table, the entries applied more
   * than `graceMs` ago and not known present are read from the source, one LIST of `txnlog/` after
   * the known-present point shows which exist, and the missing ones are PUT create-only with the
   * byte-identical encoding. An object of another size, or a lost create, is read back: other
   * bytes are TXNLOG_CONFLICT and stop all exports.
   */
  async #exportTable(t: SequencedTable): Promise<void> {
    const graceMs = this.#options.exportCatchUp!.graceMs;
    const e = t.export;
    const now = this.#options.clock.monotonicMs();
    if (now - e.lastCheckAtMs < graceMs) return;
    let due = e.through;
    for (const mark of e.marks) if (mark.atMs <= now - graceMs && mark.txnLast > due) due = mark.txnLast;
    if (due <= e.through) return;
    e.lastCheckAtMs = now;
    const read = await this.#options.source.readLog(
      t.key,
      e.through + 1n,
      SEQUENCED_FOLLOWER_LIMITS.exportCheckEntries,
    );
    const entries = read.filter((entry) => entry.txnFirst <= due);
    let i = 0;
    while (i < entries.length && e.noted.delete(entries[i]!.txnFirst)) e.through = entries[i++]!.txnLast;
    const rest = entries.slice(i);
    if (rest.length > 0) {
      const { store } = this.#options;
      const page = await store.list(txnLogPrefix(t.key), {
        startAfter: txnLogKey(t.key, rest[0]!.txnFirst - 1n),
        limit: rest.length,
      });
      const sizes = new Map(page.objects.map((o) => [o.key, o.sizeBytes]));
      for (const entry of rest) {
        if (!(await this.#exportEntry(entry, sizes.get(txnLogKey(t.key, entry.txnFirst))))) break;
        e.through = entry.txnLast;
      }
    }
    e.marks = e.marks.filter((mark) => mark.txnLast > e.through);
    for (const txnFirst of e.noted) if (txnFirst <= e.through) e.noted.delete(txnFirst);
    this.#options.tables.setMeta(`${EXPORTED_META_PREFIX}${t.key}`, e.through.toString());
  }

  /** True once `entry`'s txnlog object is known present with its bytes; false to stop this check. */
  async #exportEntry(entry: LogEntry, listedBytes: number | undefined): Promise<boolean> {
    const key = txnLogKey(entry.table, entry.txnFirst);
    const bytes = encodeTxnLogEntry(entry);
    // The encoding is a pure function of the entry: an object of its size is its export.
    if (listedBytes === bytes.length) return true;
    const { store, log } = this.#options;
    if (listedBytes === undefined) {
      const put = await store.put(key, bytes, { condition: { type: 'absent' } });
      if (put.status === 'written') {
        this.#exportsWritten++;
        log.info({ key, writer: entry.writer }, 'exported a missing txnlog entry');
        return true;
      }
    }
    const got = await store.get(key);
    if (got === null || got.status !== 'ok') return false; // gone meanwhile (GC): the next check decides
    if (equalBytes(got.body, bytes)) return true;
    const message =
      `${key} holds other bytes than the sequencer's entry ${entry.txnFirst}..${entry.txnLast} of ${entry.table}: ` +
      "the sequencer's state was lost or forked. Exports stop; compare the sequencer with the store before writing on";
    this.#exportConflict = { code: 'TXNLOG_CONFLICT', message };
    log.error({ key, code: 'TXNLOG_CONFLICT' }, message);
    return false;
  }
}

/**
 * Applies `record`, or when it conflicts with the table's schema (TYPE_CONFLICT, checked before
 * any write) an empty fence under the same txn number; returns the reason of a rejection or null.
 */
function applyOrReject(tables: TableStore, name: string, record: TxnRecord): string | null {
  try {
    tables.applyTxn(name, record);
    return null;
  } catch (error) {
    if (!isWalshipError(error, 'TYPE_CONFLICT')) throw error;
    tables.applyTxn(name, fenceOf(record));
    return error.message;
  }
}

function fenceOf(record: TxnRecord): TxnRecord {
  return { txn: record.txn, commitTimeUs: record.commitTimeUs, kind: 'fence', rowCount: 0, columns: [] };
}

/** The source's readLog contract, checked: the table's entries, contiguous, the first holding `from`. */
function checkPage(t: SequencedTable, from: bigint, entries: LogEntry[]): void {
  let expected = entries[0]!.txnFirst;
  const broken = (problem: string) =>
    new WalshipError('TXNLOG_BROKEN', 'data', `the txn log of ${t.key} from txn ${from}: ${problem}`, {
      details: { table: t.key },
    });
  if (entries[0]!.txnFirst < from && entries[0]!.txnLast < from)
    throw broken(`its first entry ${entries[0]!.txnFirst}..${entries[0]!.txnLast} ends before it`);
  for (const entry of entries) {
    if (entry.table !== t.key) throw broken(`holds an entry of table ${entry.table}`);
    if (entry.txnFirst !== expected || entry.txnLast < entry.txnFirst)
      throw broken(`entry ${entry.txnFirst}..${entry.txnLast} where txn ${expected} belongs`);
    expected = entry.txnLast + 1n;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
