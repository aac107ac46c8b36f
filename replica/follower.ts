import type { Logger } from 'pino';
import { type Clock, isWalshipError, WalshipError } from '../core/index.js';
import {
  CLUSTER_KEY,
  discoverTableKeys,
  HEAD_KEY,
  parseClusterRecord,
  parseHeadHint,
  segmentKey,
  segmentPageAfter,
  segmentPrefix,
  segmentsAfter,
  txnFirstOfSegmentKey,
} from '../layout/index.js';
import { type ObjectStore, Semaphore } from '../objectstore/index.js';
import {
  decodeTableKey,
  isTableKey,
  TABLE_PARTIAL_META_PREFIX,
  type TableKey,
  type TableStore,
} from '../table/index.js';
import type { DecodedSegment } from '../wal/index.js';
import { recordEpochStart, TABLE_EPOCH_META_PREFIX } from './epoch-history.js';
import {
  commonTableStatus,
  FailureBackoff,
  type FollowedTableState,
  findTable,
  readVerified,
  resumeTable,
  sortedByKey,
  stalenessOf,
  suspendTable,
} from './follower-skeleton.js';
import { checkEpochOrder, verifySegment } from './segment-verifier.js';
import type { FollowedTableStatus, FollowerStatus, TableFollower } from './table-follower.js';

/** Bounds of the follower, each with its reason (STYLE rule 7). */
export const FOLLOWER_LIMITS = {
  /**
   * Segment keys one LIST asks for when far behind: one request covers many downloads, and a table
   * of 100 000 segments is listed in 100 pages (S3's page maximum), not 1 000. On a filesystem store
   * each LIST reads the table's directory whole (readdir has no start-after), so the page size is
   * what keeps a long catch-up's listing linear in practice (issue 15).
   */
  listBatchKeys: 1_000,
  /**
   * Tables a sweep probes at once: enough that a sweep of 1 000 idle tables at ~5 ms a request
   * takes under a second, few enough that a sweep of 10 000 never floods the store, the download
   * semaphore or the event loop (the poll's applies go on beside it).
   */
  sweepConcurrency: 8,
  /** A table that applied a segment this recently is probed every poll even if head.json is silent. */
  hotTableMs: 2_000,
  /**
   * While a read waits for a commit token on a table, that table is probed this often (a GET of its
   * next key), whatever the poll interval: the wait is bounded by replication.replica.read.wait.max.
   */
  awaitedProbeIntervalMs: 10,
  /** Fetches of an object that fails verification before the table is suspended (a torn read heals). */
  fetchAttemptsPerSegment: 2,
  /** Backoff after a store failure, doubling, so an outage costs few requests. */
  storeBackoffMs: { base: 250, max: 10_000 },
  /**
   * catchUp() follows a table again at most this often while its listings show a gap or overlap
   * that a GET/HEAD then contradicts (a torn or stale listing); beyond it the catch-up fails as
   * unavailable (the promotion is retried) rather than stop short of what the store holds.
   */
  catchUpListingAttempts: 5,
} as const;

export { TABLE_PARTIAL_META_PREFIX } from '../table/index.js';
/** The key/value prefix of the newest epoch applied per table (replica/epoch-history.ts): kept with the data, so snapshots carry it. */
export { TABLE_EPOCH_META_PREFIX } from './epoch-history.js';

export interface FollowerOptions {
  store: ObjectStore;
  tables: TableStore;
  clock: Clock;
  log: Logger;
  /** `replication.replica.poll.interval`. */
  pollIntervalMs: number;
  /**
   * Sweep at least this often: discover tables (a delimiter LIST of `tables/`, one request per 1 000
   * tables) and probe each table not confirmed since the sweep began (one request each), in the
   * background. The bound on trusting head.json (docs/configuration.md says when that matters).
   */
  sweepIntervalMs: number;
  /** Segment downloads in flight at once (over all tables). */
  downloadConcurrency: number;
  /** The cluster this data dir follows (undefined: adopt the store's at first sight). */
  clusterId: string | undefined;
  /**
   * Table keys reads are waiting on now (the read path's AppliedWaiters): probed every
   * awaitedProbeIntervalMs until applied; a key not followed yet is probed at txn 1 and adopted
   * only once a segment exists there (client-supplied keys never create phantom tables).
   */
  awaitedTables?: () => Iterable<string>;
  /** Called after each applied segment (the read path's waiters). */
  onApplied?: (tableKey: string, appliedTxn: bigint) => void;
  /**
   * The tables this follower serves (issue 9, replica/table-filter.ts), by store key; default all.
   * Consulted live: a table it does not admit is never probed, listed or downloaded (the skip-scan
   * discovery LIST of `tables/` is the one request that sees its objects), and no apply of it starts.
   * After a change, call tablesChanged().
   */
  admits?: (tableKey: string) => boolean;
  /** Called once when the store's cluster is first seen (the node records it). */
  onCluster?: (clusterId: string) => void;
  /** Called after each applied segment, with its size and the apply's duration (for `/metrics`). */
  onApply?: (event: SegmentApplyEvent) => void;
  /**
   * Called when a table is suspended with SEGMENTS_COLLECTED: WAL retention deleted the segments after
   * its watermark (RFC-0007). The process around the replica may re-bootstrap it from a snapshot.
   */
  onSegmentsCollected?: (event: SegmentsCollectedEvent) => void;
}

/** A table whose next segments were garbage-collected: the store's chain now starts after `appliedTxn + 1`. */
export interface SegmentsCollectedEvent {
  table: string;
  key: string;
  appliedTxn: bigint;
  /** The first txn of the oldest segment left in the store. */
  chainStartTxn: bigint;
  message: string;
}

/** One segment applied, as `onApply` reports it. */
export interface SegmentApplyEvent {
  /** The table's name. */
  table: string;
  /** The object's size as downloaded. */
  bytes: number;
  rows: number;
  /** The SQLite transaction that applied it (the download is not included). */
  seconds: number;
}

/** A verified segment with the size of the object it came from. */
type FetchedSegment = DecodedSegment & { objectBytes: number };

/** One LIST of a table's segment keys after a txn, with the time it was sent (monotonic ms). */
interface Listing {
  requestAtMs: number;
  listed: { key: string; txnFirst: bigint }[];
  /** The store gave no next page: `listed` is every segment the store held then. */
  complete: boolean;
}

/** What the confirmation of a gap after a txn found (#checkGap). */
type GapCheck =
  /** The next segment is there after all: the listing had skipped it. */
  | { found: 'next'; segment: FetchedSegment }
  /** A fresh listing does not show the gap either: look again at the next poll. */
  | { found: 'no-gap' }
  /** Confirmed: nothing at the next key, and the store's next segment after it starts at `txnFirst`. */
  | { found: 'gap'; txnFirst: bigint };

/** One followed table (the common fields: FollowedTableState). Txn numbers are bigint; times are this node's monotonic ms. */
interface FollowedTable extends FollowedTableState {
  epoch: bigint;
  /** head.json's claim for this table (a hint; 0n when it said nothing). */
  headTxn: bigint;
  /** The head.json read last (its ETag) listed this table: a poll that finds it unchanged vouches for it. */
  inHead?: boolean;
  /** A reader waits on this table: probe it at the next poll and wake the loop. */
  wanted: boolean;
  /** Probed for a waiting read before the table was known: kept only once a segment was applied. */
  transient?: boolean;
  /** The first txn of a segment applied only in part (a restore cut inside it): finish it first. */
  partialFirst?: bigint;
  /** No longer admitted (tablesChanged): an apply in flight for it is abandoned. */
  dropped?: boolean;
  /** A listing showed a gap that did not hold up (#confirmGap): probe the table again at the next poll. */
  recheck?: boolean;
  /** The follow of this table in progress (by the poll or by the sweep): one at a time per table. */
  busy?: Promise<void>;
  /** When the last follow of it began: a sweep leaves a table alone that a poll looked at since it began. */
  followedAtMs?: number;
}

/**
 * Follows the store (DESIGN §6): polls, downloads, verifies and applies each table's segments in
 * txn order, one SQLite transaction per segment together with the applied watermark.
 *
 * Each poll: a conditional GET of head.json (304 when nothing changed: the only request of an idle
 * poll, whatever the number of tables); then each table that head.json says is ahead, that applied
 * something in the last `hotTableMs`, or that a reader waits on, GETs its next key
 * `wal/<applied+1>.seg`; a hit switches that table to LIST batches with parallel downloads applied
 * strictly in order. A sweep runs beside the polls, never holding them up: at start, every
 * `sweepIntervalMs`, when head.json names a new epoch (a promotion) and when a reader asks for
 * freshness, it discovers tables (a delimiter LIST of `tables/`) and probes each table no poll
 * looked at since the sweep began, `sweepConcurrency` at a time, so a stale or missing head.json
 * delays a replica by at most a sweep. One follow per table at a time: a poll skips a table the
 * sweep is following, the sweep waits for the poll's. A gap or overlap that one listing shows is
 * confirmed before anything is suspended (a GET of the next key, then a fresh LIST: #confirmGap),
 * since a listing can be torn or stale on any store. A table whose object stays corrupt, sits in
 * the wrong slot, goes back an epoch or cannot be applied is suspended with a message naming the
 * resume command; the other tables go on. Store failures are retried with backoff, never suspend.
 * stop() aborts the store requests in flight, so it returns within one segment's apply.
 */
export class Follower implements TableFollower {
  readonly #options: FollowerOptions;
  readonly #tables = new Map<string, FollowedTable>();
  #headEtag: string | undefined;
  #clusterId: string | undefined;
  #fatal: WalshipError | null = null;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #sweepRequested = false;
  #sweepWaiters: (() => void)[] = [];
  #lastSweepAtMs = Number.NEGATIVE_INFINITY;
  /** The sweep in progress (#startSweep); undefined between sweeps. */
  #sweep: Promise<void> | undefined;
  /** Consecutive failed sweeps: the next one waits out this backoff (polls go on meanwhile). */
  readonly #sweepBackoff = new FailureBackoff(FOLLOWER_LIMITS.storeBackoffMs);
  #sweepRetryAtMs = Number.NEGATIVE_INFINITY;
  /** cluster.json was read and matched: it is not read again. */
  #clusterChecked = false;
  /** When head.json was last read with new content (this node's monotonic clock). */
  #headChangedAtMs: number | null = null;
  /** head.json's epoch when last read: a new one (a promotion) asks for a sweep. */
  #headEpoch: bigint | null | undefined;
  /** Tables a reader waits on that this replica does not follow yet, probed at txn 1 (#probeUnknown). */
  readonly #transients = new Map<string, FollowedTable>();
  /** Aborted by stop(): the store requests in flight end at once. */
  readonly #stopController = new AbortController();
  /** Start of the last sweep that found no tables at all: an empty store is caught up too. */
  #emptyConfirmedAtMs: number | null = null;
  /** Consecutive failed polls and the last error (FOLLOWER_LIMITS.storeBackoffMs). */
  readonly #backoff = new FailureBackoff(FOLLOWER_LIMITS.storeBackoffMs);
  /** Segment downloads in flight, at most `downloadConcurrency`; the others wait their turn in order. */
  readonly #downloads: Semaphore;
  #polls = 0;
  /** Listings that showed a gap (or overlap) the follower's confirmation then found not to be there. */
  #listingAnomaliesUnconfirmed = 0;

  constructor(options: FollowerOptions) {
    this.#options = options;
    this.#downloads = new Semaphore(options.downloadConcurrency);
    this.#clusterId = options.clusterId;
    for (const schema of options.tables.schemas()) {
      if (this.#admits(schema.key)) this.#tables.set(schema.key, this.#load(schema.key, schema.name));
    }
  }

  /** A table as this node's database holds it (watermark, epoch, partial segment); fresh when it holds none. */
  #load(key: TableKey, name: string): FollowedTable {
    const { tables } = this.#options;
    const schema = tables.schema(name);
    if (schema === undefined) return freshTable(key, name);
    const epochText = tables.getMeta(`${TABLE_EPOCH_META_PREFIX}${key}`);
    const partialText = tables.getMeta(`${TABLE_PARTIAL_META_PREFIX}${key}`);
    return {
      ...freshTable(key, schema.name),
      appliedTxn: tables.lastTxn(schema.name),
      epoch: epochText === undefined ? 0n : BigInt(epochText),
      ...(partialText === undefined || partialText === '' ? {} : { partialFirst: BigInt(partialText) }),
    };
  }

  #admits(key: string): boolean {
    return this.#options.admits?.(key) ?? true;
  }

  /** True once `t` is no longer followed: whatever was fetched for it is not applied. */
  #gone(t: FollowedTable): boolean {
    return t.dropped === true || !this.#admits(t.key);
  }

  /**
   * The `admits` filter changed: tables it no longer admits are forgotten at once (no apply of
   * theirs starts after this returns, so their data may be dropped), and a sweep looks for the
   * ones it admits now (adopted at the watermark this node's database holds for them).
   */
  tablesChanged(): void {
    for (const t of [...this.#tables.values()]) {
      if (this.#admits(t.key)) continue;
      t.dropped = true;
      this.#tables.delete(t.key);
      this.#options.log.info({ table: t.name }, 'table no longer followed');
    }
    if (this.#stopped || this.#fatal !== null) return;
    this.#sweepRequested = true;
    this.#wake?.();
  }

  /** Start polling. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stop polling and wait for the poll in progress (its apply finishes; none starts). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopController.abort();
    this.#wake?.();
    await this.#loop;
    await this.#sweep;
    for (const resolve of this.#sweepWaiters.splice(0)) resolve();
  }

  /** The applied watermark of table `key` (0n when unknown). */
  appliedTxn(key: string): bigint {
    return this.#tables.get(key)?.appliedTxn ?? 0n;
  }

  /** Every table's applied watermark, by table key. */
  appliedAll(): Map<string, bigint> {
    return new Map([...this.#tables.values()].map((t) => [t.key, t.appliedTxn]));
  }

  /**
   * Milliseconds since this replica last confirmed it held everything the store held, over all
   * tables (a suspended table stops confirming); null when it never has. This node's monotonic clock.
   */
  stalenessMs(): number | null {
    return stalenessOf(this.#tables.values(), this.#options.clock.monotonicMs(), this.#emptyConfirmedAtMs);
  }

  /** Probe these tables (by key) at once: a reader waits for them. */
  probeNow(keys: readonly string[]): void {
    for (const key of keys) {
      const table = this.#tables.get(key);
      // An unknown key is probed at txn 1 through awaitedTables; a suspended table waits for resume().
      if (table !== undefined && table.suspended === null) table.wanted = true;
    }
    this.#wake?.();
  }

  /** Run a sweep now; resolves when it finished (or the follower stopped, or stopped following on a fatal error). */
  refresh(): Promise<void> {
    if (this.#stopped || this.#fatal !== null) return Promise.resolve();
    this.#sweepRequested = true;
    const done = new Promise<void>((resolve) => this.#sweepWaiters.push(resolve));
    this.#wake?.();
    return done;
  }

  /**
   * Apply everything the store holds now, outside the poll loop (RFC-0002 P1, P4): discover every
   * table and follow each until a LIST after its watermark comes back empty. Throws on a store
   * error, and CATCH_UP_INCOMPLETE (data) when a table is suspended: promoting a replica that
   * cannot apply a table would drop that table's later txns. Only on a follower never started.
   */
  async catchUp(): Promise<void> {
    if (this.#loop !== undefined) {
      throw new WalshipError(
        'INVALID_STATE',
        'internal',
        'catchUp() is for a follower whose poll loop never ran',
      );
    }
    if (!(await this.#checkCluster())) return;
    await this.#discover();
    for (const t of this.#tables.values()) await this.#catchUpTable(t);
    const suspended = [...this.#tables.values()].filter((t) => t.suspended !== null);
    if (suspended.length > 0) {
      throw new WalshipError(
        'CATCH_UP_INCOMPLETE',
        'data',
        `cannot catch up: ${suspended.map((t) => t.suspended!.message).join('; ')}`,
      );
    }
  }

  /**
   * Follows `t` until a listing after its watermark holds up. A listing anomaly that did not (a torn
   * or stale listing, #confirmGap) is looked at again, at most FOLLOWER_LIMITS.catchUpListingAttempts
   * times: a promotion must not take "the listing disagreed" for "caught up".
   */
  async #catchUpTable(t: FollowedTable): Promise<void> {
    for (let attempt = 1; t.suspended === null; attempt++) {
      t.recheck = false;
      await this.#follow(t, true);
      if (!this.#rechecking(t)) return;
      if (attempt >= FOLLOWER_LIMITS.catchUpListingAttempts) {
        throw new WalshipError(
          'STORE_INCONSISTENT',
          'unavailable',
          `cannot catch up table ${JSON.stringify(t.name)}: ${attempt} listings after txn ${t.appliedTxn} ` +
            'disagreed with the objects they named; try again',
          { details: { table: t.key, appliedTxn: t.appliedTxn.toString() } },
        );
      }
    }
  }

  /** Read through a method: after `t.recheck = false` and an await, TypeScript would narrow it to false. */
  #rechecking(t: FollowedTable): boolean {
    return t.recheck === true;
  }

  /**
   * Listings (of any table) that showed a gap or overlap the follower's confirmation then did not
   * find: a torn or stale listing, retried at the next poll and never suspended. For logs and tests.
   */
  listingAnomaliesUnconfirmed(): number {
    return this.#listingAnomaliesUnconfirmed;
  }

  /** The followed tables' keys and applied txns (after catchUp: the last txn of each in the store). */
  tableWatermarks(): { key: TableKey; name: string; appliedTxn: bigint }[] {
    return [...this.#tables.values()].map((t) => ({ key: t.key, name: t.name, appliedTxn: t.appliedTxn }));
  }

  /**
   * Lift the suspension of table `nameOrKey` (after the object was repaired): it is retried at the
   * next poll. Returns false for a table that is not suspended or not known.
   */
  resume(nameOrKey: string): boolean {
    const table = findTable(this.#tables, nameOrKey);
    if (table === undefined || !resumeTable(table, this.#options.log)) return false;
    table.wanted = true;
    this.#wake?.();
    return true;
  }

  /** Per-table and store state for /status: every field applies, `polls` is never null. */
  status(): FollowerStatus & { polls: number } {
    const now = this.#options.clock.monotonicMs();
    const tables = sortedByKey(this.#tables.values()).map(
      (t): FollowedTableStatus => ({
        ...commonTableStatus(t, now),
        epoch: t.epoch,
        headTxn: t.headTxn,
        txnsBehind: t.headTxn > t.appliedTxn ? t.headTxn - t.appliedTxn : 0n,
      }),
    );
    return {
      tables,
      stalenessMs: this.stalenessMs(),
      headUnchangedMs: this.headUnchangedMs(),
      polls: this.#polls,
      lastError: this.#backoff.lastError(now),
      fatal: this.#fatal?.message ?? null,
    };
  }

  // --- the loop ---

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const startedAtMs = this.#options.clock.monotonicMs();
      let delayMs = this.#options.pollIntervalMs;
      let failed = false;
      try {
        await this.#poll(startedAtMs);
        this.#backoff.succeeded();
      } catch (error) {
        failed = true;
        delayMs = this.#onPollFailed(error);
        // "successfully or not": a refresh waiting on this poll learns now (it re-checks staleness).
        for (const resolve of this.#sweepWaiters.splice(0)) resolve();
      }
      if (this.#fatal !== null) break;
      if (!failed && this.#awaitedKeys().length > 0) {
        delayMs = Math.min(delayMs, FOLLOWER_LIMITS.awaitedProbeIntervalMs);
      }
      const elapsedMs = this.#options.clock.monotonicMs() - startedAtMs;
      await this.#sleep(Math.max(0, delayMs - elapsedMs), failed);
    }
    for (const resolve of this.#sweepWaiters.splice(0)) resolve();
  }

  /** Sleeps `ms`; a wake-up (probeNow, refresh) cuts it short — except after a failed poll: the backoff holds. */
  async #sleep(ms: number, backingOff: boolean): Promise<void> {
    // A wanted table the sweep is following wakes the loop when that follow ends (#followExclusive).
    const wanted = [...this.#tables.values()].some(
      (t) => t.wanted && t.suspended === null && t.busy === undefined,
    );
    const sweepDue = this.#sweepRequested && this.#sweep === undefined;
    if (this.#stopped || (!backingOff && (sweepDue || wanted))) return;
    await new Promise<void>((resolve) => {
      const timer = this.#options.clock.setTimer(ms, done);
      function done() {
        timer.cancel();
        resolve();
      }
      this.#wake = backingOff ? () => this.#stopped && done() : done;
    });
    this.#wake = undefined;
  }

  #onPollFailed(error: unknown): number {
    if (this.#stopped) return 0; // the requests stop() aborted
    const message = (error as Error).message ?? String(error);
    if (isWalshipError(error) && error.code === 'CLUSTER_MISMATCH') {
      this.#fatal = error;
      this.#options.log.error({ err: message }, 'replica stopped following');
      return 0;
    }
    const backoffMs = this.#backoff.failed(message, this.#options.clock.monotonicMs());
    this.#options.log.warn({ err: message, failures: this.#backoff.failures }, 'poll failed; will retry');
    return Math.max(this.#options.pollIntervalMs, backoffMs);
  }

  async #poll(startedAtMs: number): Promise<void> {
    this.#polls++;
    if (!(await this.#checkCluster())) {
      this.#emptyConfirmedAtMs = startedAtMs;
      this.#finishSweep(startedAtMs);
      return;
    }
    const headAtMs = this.#options.clock.monotonicMs();
    if (await this.#readHead()) this.#confirmByHead(headAtMs);
    this.#startSweepIfDue(startedAtMs);
    const awaited = new Set(this.#awaitedKeys());
    const due = [...this.#tables.values()].filter(
      (t) =>
        t.suspended === null && t.busy === undefined && (awaited.has(t.key) || this.#isDue(t, startedAtMs)),
    );
    for (const key of awaited) if (!this.#tables.has(key)) due.push(...this.#probeUnknown(key));
    const failures: unknown[] = [];
    await Promise.all(
      due.map((t) => {
        t.wanted = false;
        t.recheck = false;
        return this.#followExclusive(t, false).catch((error: unknown) => {
          failures.push(error);
        });
      }),
    );
    if (failures.length > 0) throw failures[0];
  }

  /**
   * Starts a sweep in the background when one is due (the interval passed, or one was asked for)
   * and none runs; a failed sweep is tried again after its backoff. The waiters of refresh()
   * registered by now learn when this sweep ended; later ones, when the next did.
   */
  #startSweepIfDue(nowMs: number): void {
    if (this.#sweep !== undefined || this.#stopped || nowMs < this.#sweepRetryAtMs) return;
    if (!this.#sweepRequested && nowMs - this.#lastSweepAtMs < this.#options.sweepIntervalMs) return;
    this.#sweepRequested = false;
    const waiters = this.#sweepWaiters.splice(0);
    this.#sweep = this.#runSweep(nowMs)
      .then(
        () => {
          this.#lastSweepAtMs = nowMs;
          this.#sweepRetryAtMs = Number.NEGATIVE_INFINITY;
          this.#sweepBackoff.succeeded();
        },
        (error: unknown) => {
          if (this.#stopped) return;
          const message = (error as Error).message ?? String(error);
          const atMs = this.#options.clock.monotonicMs();
          this.#sweepRetryAtMs = atMs + this.#sweepBackoff.failed(message, atMs);
          this.#backoff.recordError(message, atMs);
          this.#options.log.warn(
            { err: message, failures: this.#sweepBackoff.failures },
            'sweep failed; will retry',
          );
        },
      )
      .finally(() => {
        this.#sweep = undefined;
        for (const resolve of waiters) resolve();
        // A refresh() that arrived during this sweep waits for the next: start it now.
        if (this.#sweepRequested) this.#wake?.();
      });
  }

  /**
   * One sweep (started at `startedAtMs`): discovery, then every table no poll looked at since the
   * sweep began (a poll's failure is the poll's to retry, with its backoff), `sweepConcurrency` at a time. Throws the first store error after every table
   * was tried.
   */
  async #runSweep(startedAtMs: number): Promise<void> {
    await this.#discover();
    if (this.#tables.size === 0) this.#emptyConfirmedAtMs = startedAtMs;
    const queue = [...this.#tables.values()];
    const failures: unknown[] = [];
    const worker = async () => {
      for (let t = queue.shift(); t !== undefined && !this.#stopped; t = queue.shift()) {
        await t.busy; // the poll's follow of it; it never rejects (#followExclusive)
        if (t.suspended !== null || this.#gone(t) || (t.followedAtMs ?? -1) >= startedAtMs) continue;
        await this.#followExclusive(t, false).catch((error: unknown) => {
          failures.push(error);
        });
      }
    };
    await Promise.all(Array.from({ length: FOLLOWER_LIMITS.sweepConcurrency }, worker));
    if (failures.length > 0) throw failures[0];
  }

  /**
   * Follows `t` unless a follow of it is in progress (then resolves at once: that follow goes on
   * until it finds nothing newer). `t.busy` never rejects; the returned promise does.
   */
  #followExclusive(t: FollowedTable, sweep: boolean): Promise<void> {
    if (t.busy !== undefined) return Promise.resolve();
    t.followedAtMs = this.#options.clock.monotonicMs();
    const run = this.#follow(t, sweep);
    t.busy = run.then(
      () => undefined,
      () => undefined,
    );
    void t.busy.then(() => {
      t.busy = undefined;
      if (t.transient === true) this.#transients.delete(t.key);
      if (t.wanted) this.#wake?.(); // a reader asked for it while this follow ran
    });
    return run;
  }

  /** Keys reads wait on that are not suspended (the suspended ones wait for resume()). */
  #awaitedKeys(): string[] {
    const keys: string[] = [];
    for (const key of this.#options.awaitedTables?.() ?? []) {
      if (this.#tables.get(key)?.suspended == null && this.#admits(key)) keys.push(key);
    }
    return keys;
  }

  /**
   * A table a read waits on that this replica has not seen: a transient entry probes its txn 1 and
   * is adopted once something was applied (the applier inserts it into #tables).
   */
  #probeUnknown(key: string): FollowedTable[] {
    if (!isTableKey(key) || this.#transients.has(key)) return [];
    const table = freshTable(key, decodeTableKey(key));
    table.transient = true;
    this.#transients.set(key, table);
    return [table];
  }

  #finishSweep(startedAtMs: number): void {
    this.#sweepRequested = false;
    this.#lastSweepAtMs = startedAtMs;
    for (const resolve of this.#sweepWaiters.splice(0)) resolve();
  }

  #isDue(t: FollowedTable, nowMs: number): boolean {
    if (t.wanted || t.recheck === true || t.headTxn > t.appliedTxn) return true;
    return t.lastAppliedAtMs !== null && nowMs - t.lastAppliedAtMs < FOLLOWER_LIMITS.hotTableMs;
  }

  /** False while the store holds no cluster yet (nothing to follow); CLUSTER_MISMATCH for another cluster's root. */
  async #checkCluster(): Promise<boolean> {
    if (this.#clusterChecked) return true;
    const got = await this.#options.store.get(CLUSTER_KEY, { signal: this.#stopController.signal });
    if (got === null || got.status !== 'ok') return false;
    // A corrupt read throws STORE_CORRUPT (unavailable): the poll backs off and reads it again.
    const { clusterId } = parseClusterRecord(got.body);
    if (this.#clusterId !== undefined && this.#clusterId !== clusterId) {
      throw new WalshipError(
        'CLUSTER_MISMATCH',
        'invalid',
        `the store root holds cluster ${clusterId}, but this replica's data dir follows cluster ${this.#clusterId}: ` +
          'point replication.object.store at the right root, or start the replica with an empty node.data.dir',
      );
    }
    if (this.#clusterId === undefined) {
      this.#clusterId = clusterId;
      this.#options.onCluster?.(clusterId);
    }
    this.#clusterChecked = true;
    return true;
  }

  /**
   * Conditional GET of head.json: one request, 304 when nothing changed. A bad hint is ignored.
   * Returns whether the store's head.json is one this follower has read whole (unchanged, or just
   * read): then it says what the primary has announced as uploaded.
   */
  async #readHead(): Promise<boolean> {
    const got = await this.#options.store.get(HEAD_KEY, {
      signal: this.#stopController.signal,
      ...(this.#headEtag === undefined ? {} : { ifNoneMatch: this.#headEtag }),
    });
    if (got === null) {
      this.#headEtag = undefined;
      return false;
    }
    if (got.status === 'not-modified') return true;
    this.#headEtag = got.info.etag;
    this.#headChangedAtMs = this.#options.clock.monotonicMs();
    const hint = parseHeadHint(got.body);
    if (hint === undefined) {
      this.#options.log.warn('head.json is not in the expected shape; ignoring the hint');
      for (const table of this.#tables.values()) table.inHead = false;
      return false;
    }
    // A new epoch: a promotion. The old primary may have uploaded after its last head.json: sweep.
    if (this.#headEpoch !== undefined && hint.epoch !== this.#headEpoch) this.#sweepRequested = true;
    this.#headEpoch = hint.epoch;
    for (const table of this.#tables.values()) table.inHead = false;
    for (const [key, { name, txn }] of hint.tables) {
      if (!this.#admits(key)) continue;
      const table = this.#tables.get(key) ?? this.#adopt(key, name);
      if (table === undefined) continue;
      table.inHead = true;
      if (txn > table.headTxn) table.headTxn = txn;
    }
    return true;
  }

  /**
   * A poll whose head.json read (sent at `atMs`) announces nothing beyond what this node applied
   * vouches for every table it lists: they are caught up with what the primary had announced then.
   * So an idle, caught-up replica's staleness stays within a poll interval instead of growing until
   * the next sweep (issue 19). A table head.json does not list, or lists ahead, is confirmed only by
   * reading its own next key (#follow), as before. What head.json cannot vouch for: a segment a
   * primary uploaded and died before announcing (head.json is rewritten at most every
   * `replication.primary.head.update.interval` after an upload); the next sweep or the next
   * promotion finds it, and `headUnchangedMs` shows how long the primary has announced nothing.
   */
  #confirmByHead(atMs: number): void {
    for (const t of this.#tables.values()) {
      if (t.inHead !== true || t.suspended !== null || t.partialFirst !== undefined || t.recheck === true)
        continue;
      if (t.headTxn > t.appliedTxn || t.busy !== undefined) continue;
      if (t.confirmedAtMs === null || t.confirmedAtMs < atMs) t.confirmedAtMs = atMs;
    }
  }

  /** Milliseconds since head.json last changed (the primary last announced an upload); null before one was read. */
  headUnchangedMs(): number | null {
    return this.#headChangedAtMs === null ? null : this.#options.clock.monotonicMs() - this.#headChangedAtMs;
  }

  async #discover(): Promise<void> {
    const { keys, ignored } = await discoverTableKeys(this.#options.store, this.#stopController.signal);
    for (const key of keys) if (!this.#tables.has(key) && this.#admits(key)) this.#adopt(key, undefined);
    if (ignored.length > 0) {
      this.#options.log.warn(
        { keys: ignored.slice(0, 10) },
        'objects under tables/ that no table name maps to; ignored',
      );
    }
  }

  /** Start following table `key` (found in the store or head.json). */
  #adopt(key: TableKey, name: string | undefined): FollowedTable | undefined {
    let folded: string;
    try {
      folded = decodeTableKey(key);
    } catch {
      return undefined;
    }
    // A table a reader probed meanwhile is that one: one object per table, so one follow at a time.
    const probed = this.#transients.get(key);
    if (probed !== undefined) {
      probed.transient = false;
      this.#transients.delete(key);
      this.#tables.set(key, probed);
      return probed;
    }
    // A table added at runtime may be in the database already (bootstrapped from a snapshot).
    const table = this.#load(key, name ?? folded);
    this.#tables.set(key, table);
    return table;
  }

  // --- one table ---

  /**
   * Bring table `t` up to what the store holds. Near the head one GET of the next key (a sweep
   * LISTs instead, which also reveals a missing segment); after a hit, LIST batches. Data errors
   * suspend the table; store errors propagate (the poll backs off).
   */
  async #follow(t: FollowedTable, sweep: boolean): Promise<void> {
    try {
      if (t.partialFirst !== undefined) await this.#finishPartial(t, t.partialFirst);
      if (sweep || t.headTxn > t.appliedTxn + 1n) {
        await this.#followListed(t);
        return;
      }
      const requestAtMs = this.#options.clock.monotonicMs();
      const key = segmentKey(t.key, t.appliedTxn + 1n);
      const segment = await this.#fetch(t, key, t.appliedTxn + 1n);
      if (this.#gone(t)) return;
      if (segment === null) {
        if (t.headTxn > t.appliedTxn) await this.#followListed(t);
        else t.confirmedAtMs = requestAtMs;
        return;
      }
      // The LIST the batches start with, sent before the apply instead of after it (no extra
      // request): it shows whether a hole follows this segment (#checkHoleAfter).
      const listing = await this.#listAfter(t, segment.header.txnLast);
      if (this.#gone(t)) return;
      const hole = await this.#checkHoleAfter(t, segment, listing.listed[0]?.txnFirst);
      if (hole === 'unconfirmed' || this.#stopped || this.#gone(t)) return;
      this.#apply(t, key, segment);
      await this.#followListed(t, hole === 'none' ? listing : undefined);
    } catch (error) {
      if (!isWalshipError(error) || error.kind !== 'data') throw error;
      this.#suspend(t, error);
    }
  }

  /**
   * LIST after the watermark and apply what is there, batch by batch, until a LIST comes back empty.
   * `first`: a LIST after the watermark already sent (#follow's probe), used instead of a new one.
   */
  async #followListed(t: FollowedTable, first?: Listing): Promise<void> {
    let prefetched = first;
    while (!this.#stopped && t.suspended === null && !this.#gone(t)) {
      const { requestAtMs, listed, complete } = prefetched ?? (await this.#listAfter(t, t.appliedTxn));
      prefetched = undefined;
      if (this.#gone(t)) return;
      const caughtUp = () => {
        t.confirmedAtMs = requestAtMs;
        if (t.headTxn > t.appliedTxn) t.headTxn = t.appliedTxn; // the hint was ahead of the store
      };
      if (listed.length === 0) {
        caughtUp();
        return;
      }
      let appliedAll = true;
      // Downloads run at most `downloadConcurrency` segments ahead of the apply, which is strictly in order.
      const ahead = Math.max(1, this.#options.downloadConcurrency);
      const downloads: Promise<FetchedSegment | null>[] = [];
      const startUpTo = (index: number) => {
        while (downloads.length < Math.min(listed.length, index + ahead)) {
          const { key, txnFirst } = listed[downloads.length]!;
          const download = this.#fetch(t, key, txnFirst);
          download.catch(() => {}); // awaited below in order; an abandoned one must not go unhandled
          downloads.push(download);
        }
      };
      for (const [index, { key, txnFirst }] of listed.entries()) {
        if (this.#stopped) return;
        // A listing that skips or overlaps the next slot is a claim, not evidence: confirm it first.
        if (txnFirst < t.appliedTxn + 1n) {
          await this.#confirmOverlap(t, key, txnFirst);
          return;
        }
        if (txnFirst > t.appliedTxn + 1n) {
          appliedAll = false;
          if (!(await this.#bridgeGap(t, txnFirst, txnFirst))) return;
          break; // the next segment was there: list again from the new watermark
        }
        startUpTo(index);
        const decoded = await downloads[index]!;
        if (this.#stopped || this.#gone(t)) return;
        const nextListed = listed[index + 1]?.txnFirst;
        if (decoded === null) {
          appliedAll = false;
          // Listed, yet the GET found nothing: retention deleted it meanwhile, or the listing was stale.
          if (!(await this.#bridgeGap(t, txnFirst, nextListed))) return;
          break;
        }
        const hole = await this.#checkHoleAfter(t, decoded, nextListed);
        if (hole === 'unconfirmed' || this.#stopped || this.#gone(t)) return;
        this.#apply(t, key, decoded);
        if (hole === 'torn') {
          appliedAll = false;
          break; // the listing was torn: list again from the new watermark
        }
      }
      // Every segment of a last page applied: the store held nothing newer when it was listed, as
      // an empty LIST would say (one request fewer per catch-up and per streamed segment).
      if (appliedAll && complete) {
        caughtUp();
        return;
      }
    }
  }

  /** One LIST of a batch of `t`'s segment keys after txn `afterTxn`. */
  async #listAfter(t: FollowedTable, afterTxn: bigint): Promise<Listing> {
    const requestAtMs = this.#options.clock.monotonicMs();
    const { segments, complete } = await segmentPageAfter(
      this.#options.store,
      t.key,
      afterTxn,
      FOLLOWER_LIMITS.listBatchKeys,
      this.#stopController.signal,
    );
    return { requestAtMs, listed: segments, complete };
  }

  /**
   * Issue 13 item 11: `segment` (at the watermark's next slot) must not be applied when a hole
   * follows it, since it may be a replaced primary's upload into a slot WAL retention had collected
   * (RFC-0002 W5), beyond which the store's chain starts later. `nextListedTxn` is the first txn of
   * the segment the listing in hand shows after it (undefined: none, the segment is the newest).
   * 'none': no hole listed, no request made; 'torn': the next key is there (the listing was torn);
   * 'unconfirmed': a fresh listing does not show the hole either, so nothing is applied and the
   * next poll looks again. A confirmed hole after a segment with nothing before it in the store
   * that does not start at txn 1 (retention collected the txns before it, so its slot too: where a
   * zombie's upload can land) throws SEGMENTS_COLLECTED, the chain starting after the hole; any
   * other segment followed by a hole is no stray ('none': applied, and the gap after it is then
   * confirmed and suspends as before). Three requests, only when a listing shows such a hole.
   */
  async #checkHoleAfter(
    t: FollowedTable,
    segment: FetchedSegment,
    nextListedTxn: bigint | undefined,
  ): Promise<'none' | 'torn' | 'unconfirmed'> {
    const { txnFirst, txnLast } = segment.header;
    if (nextListedTxn === undefined || nextListedTxn <= txnLast + 1n) return 'none';
    const check = await this.#checkGap(t, txnLast, nextListedTxn);
    if (check === null || check.found === 'no-gap') return 'unconfirmed';
    if (check.found === 'next') return 'torn';
    // Nothing before it in the store, yet txns before it: retention collected them, and its slot.
    if (txnFirst > 1n && (await this.#chainStartsAt(t, txnFirst))) throw segmentsCollected(t, check.txnFirst);
    // Older segments are left (or it starts at txn 1): no slot before it was collected, so it is
    // no stray; apply it, and the gap after it is found and confirmed next, as before.
    return 'none';
  }

  /**
   * Applies the segment a listing did not show at the watermark (#confirmGap), if it is there and
   * no hole follows it (#checkHoleAfter; `nextListedTxn`: the first txn the listing shows after it).
   * True when it was applied; false when there is nothing to apply now (the next poll looks again).
   * Throws when the gap, or a hole after the segment, is confirmed.
   */
  async #bridgeGap(t: FollowedTable, seenTxn: bigint, nextListedTxn: bigint | undefined): Promise<boolean> {
    const next = await this.#confirmGap(t, seenTxn);
    if (next === null || this.#stopped || this.#gone(t)) return false;
    const hole = await this.#checkHoleAfter(t, next, nextListedTxn);
    if (hole === 'unconfirmed' || this.#stopped || this.#gone(t)) return false;
    this.#apply(t, segmentKey(t.key, t.appliedTxn + 1n), next);
    return true;
  }

  /**
   * A listing of `t` showed a segment from `seenTxn` but not the next one, `applied + 1` (or listed
   * that one and its GET found nothing). One listing is not evidence of a gap: a listing can be torn
   * (one readdir() of a directory being written: issue 13) or stale, whatever the store. So the
   * next key is read first: when it is there it is returned, to be applied. When the GET finds
   * nothing, a fresh LIST decides: a later segment still comes first → the gap is confirmed
   * (SEGMENTS_COLLECTED where the store's chain now starts, else SEGMENT_MISSING); otherwise there
   * was no gap (null) and the next poll looks again. A GET that finds nothing after a listing
   * showed a later segment is conclusive on its own on a store that reads its writes, since a
   * primary uploads a table's segments one at a time, in order; the fresh LIST guards against a
   * listing that showed a segment that is not there, and names where the chain goes on.
   */
  async #confirmGap(t: FollowedTable, seenTxn: bigint): Promise<FetchedSegment | null> {
    const check = await this.#checkGap(t, t.appliedTxn, seenTxn);
    if (check === null || check.found === 'no-gap') return null;
    if (check.found === 'next') return check.segment;
    if (await this.#chainStartsAt(t, check.txnFirst)) throw segmentsCollected(t, check.txnFirst);
    throw missingSegment(t, check.txnFirst);
  }

  /**
   * The two requests that confirm a gap a listing of `t` showed after txn `afterTxn` (the next
   * listed segment starting at `seenTxn`): a GET of the next key, then, when it finds nothing, a
   * LIST of one key after `afterTxn` (#confirmGap). null when `t` stopped being followed meanwhile.
   */
  async #checkGap(t: FollowedTable, afterTxn: bigint, seenTxn: bigint): Promise<GapCheck | null> {
    const expected = afterTxn + 1n;
    const segment = await this.#fetch(t, segmentKey(t.key, expected), expected);
    if (this.#gone(t)) return null;
    if (segment !== null) {
      // Used by the caller, which lists again at once: nothing is left for the next poll.
      this.#unconfirmed(t, afterTxn, seenTxn, 'the next segment is there: the listing had skipped it', false);
      return { found: 'next', segment };
    }
    const [first] = await segmentsAfter(this.#options.store, t.key, afterTxn, 1, this.#stopController.signal);
    if (this.#gone(t)) return null;
    if (first === undefined || first.txnFirst <= expected) {
      this.#unconfirmed(t, afterTxn, seenTxn, 'a fresh listing does not show the gap', true);
      return { found: 'no-gap' };
    }
    return { found: 'gap', txnFirst: first.txnFirst };
  }

  /**
   * A listing showed `key` (from `txnFirst`) inside the txns `t` already applied: an overlap, real
   * only when the object exists (a stale listing can show an object that is gone). One HEAD.
   */
  async #confirmOverlap(t: FollowedTable, key: string, txnFirst: bigint): Promise<void> {
    const info = await this.#options.store.head(key);
    if (this.#gone(t)) return;
    if (info !== null) throw missingSegment(t, txnFirst);
    this.#unconfirmed(t, t.appliedTxn, txnFirst, `a listing showed ${key}, which is not there`, true);
  }

  /**
   * Counts and logs a listing anomaly (after txn `afterTxn`) that did not hold up; with `recheck`
   * (nothing was applied in its place) the table is probed again at the next poll.
   */
  #unconfirmed(t: FollowedTable, afterTxn: bigint, seenTxn: bigint, why: string, recheck: boolean): void {
    this.#listingAnomaliesUnconfirmed++;
    if (recheck) t.recheck = true;
    this.#options.log.info(
      { table: t.name, appliedTxn: t.appliedTxn, listedTxn: seenTxn },
      `a listing of ${t.name} did not match the chain after txn ${afterTxn}, but ${why}; not suspended`,
    );
  }

  /**
   * True when `txnFirst` is the oldest segment of `t` in the store: nothing at or before the
   * watermark is left, so the gap is WAL retention's (the chain lost its oldest segments), not a
   * hole in the middle of it (RFC-0007). One LIST of one key.
   */
  async #chainStartsAt(t: FollowedTable, txnFirst: bigint): Promise<boolean> {
    const page = await this.#options.store.list(segmentPrefix(t.key), {
      limit: 1,
      signal: this.#stopController.signal,
    });
    const first = page.objects[0];
    return first !== undefined && txnFirstOfSegmentKey(first.key) === txnFirst;
  }

  /**
   * The rest of the segment a restore applied only up to its point: fetched and verified whole,
   * its txns after the watermark applied in one transaction that also clears the marker.
   */
  async #finishPartial(t: FollowedTable, txnFirst: bigint): Promise<void> {
    const key = segmentKey(t.key, txnFirst);
    const segment = await this.#fetch(t, key, txnFirst);
    if (this.#gone(t)) return;
    if (segment === null)
      throw new WalshipError(
        'SEGMENT_MISSING',
        'data',
        `${key}, restored in part up to txn ${t.appliedTxn}, is gone from the store: the rest of it cannot be applied`,
        { details: { key, table: t.key } },
      );
    const rest = segment.txns.filter((txn) => txn.txn > t.appliedTxn);
    const clear = () => this.#options.tables.setMeta(`${TABLE_PARTIAL_META_PREFIX}${t.key}`, '');
    if (rest.length === 0) {
      clear();
    } else {
      const header = {
        ...segment.header,
        txnFirst: t.appliedTxn + 1n,
        rowCount: rest.reduce((rows, txn) => rows + txn.rowCount, 0),
      };
      this.#apply(t, key, { ...segment, header, txns: rest }, clear);
    }
    delete t.partialFirst;
  }

  /** GET and verify `key`; a verification failure is fetched once more before it counts. null = absent. */
  #fetch(t: FollowedTable, key: string, txnFirst: bigint): Promise<FetchedSegment | null> {
    return this.#downloads.run(() =>
      readVerified({
        attempts: FOLLOWER_LIMITS.fetchAttemptsPerSegment,
        read: async () => {
          const got = await this.#options.store.get(key, { signal: this.#stopController.signal });
          if (got === null) return null;
          if (got.status !== 'ok')
            throw new WalshipError('STORE_INCONSISTENT', 'unavailable', `GET ${key} answered not-modified`);
          return got.body;
        },
        verify: async (body): Promise<FetchedSegment | null> => {
          if (body === null) return null;
          const verified = await verifySegment(body, { objectKey: key, tableKey: t.key, txnFirst });
          return { ...verified, objectBytes: body.byteLength };
        },
        onRetry: (error) =>
          this.#options.log.warn(
            { key, err: error.message },
            'segment failed verification; fetching it again',
          ),
      }),
    );
  }

  /** One segment, one SQLite transaction: its txns, the table's epoch and (by applyTxns) the watermark. */
  #apply(t: FollowedTable, key: string, segment: FetchedSegment, alsoInTransaction?: () => void): void {
    const { header, txns } = segment;
    // Every caller re-checks after its await: a table dropped meanwhile must never be applied again.
    if (this.#gone(t))
      throw new WalshipError(
        'ASSERTION_FAILED',
        'internal',
        `apply of ${t.key}, which is no longer followed`,
      );
    if (header.txnFirst !== t.appliedTxn + 1n) throw missingSegment(t, header.txnFirst);
    checkEpochOrder(key, header.epoch, t.epoch);
    const { tables, clock } = this.#options;
    const startedMs = clock.monotonicMs();
    tables.transaction(() => {
      tables.applyTxns(header.tableName, txns);
      // Everything a replica holds came from the store: uploaded = applied, ready for a promotion.
      tables.setUploadedTxn(header.tableName, header.txnLast);
      if (header.epoch !== t.epoch) {
        tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${t.key}`, header.epoch.toString());
        recordEpochStart(tables, t.key, header.epoch, header.txnFirst);
      }
      alsoInTransaction?.();
    });
    if (t.transient === true) {
      t.transient = false;
      this.#transients.delete(t.key);
      if (!this.#tables.has(t.key)) this.#tables.set(t.key, t);
    }
    t.appliedTxn = header.txnLast;
    t.epoch = header.epoch;
    t.name = tables.schema(header.tableName)?.name ?? header.tableName;
    t.lastAppliedAtMs = this.#options.clock.monotonicMs();
    t.segmentsApplied++;
    t.rowsApplied += header.rowCount;
    this.#options.onApply?.({
      table: t.name,
      bytes: segment.objectBytes,
      rows: header.rowCount,
      seconds: (t.lastAppliedAtMs - startedMs) / 1000,
    });
    this.#options.onApplied?.(t.key, t.appliedTxn);
  }

  /** A data error: `t` stops being applied until resumed (SEGMENTS_COLLECTED: until re-bootstrapped). */
  #suspend(t: FollowedTable, error: WalshipError): void {
    const deps = { atMs: this.#options.clock.monotonicMs(), log: this.#options.log };
    if (error.code === 'SEGMENTS_COLLECTED') {
      // Not resumable: the segments are gone, so the message names no resume command.
      const message = `table ${JSON.stringify(t.name)} is suspended at txn ${t.appliedTxn}: ${error.message}`;
      suspendTable(t, error, deps, message);
      this.#options.onSegmentsCollected?.({
        table: t.name,
        key: t.key,
        appliedTxn: t.appliedTxn,
        chainStartTxn: BigInt(error.details.chainStartTxn as string),
        message,
      });
      return;
    }
    suspendTable(t, error, deps);
  }
}

function freshTable(key: TableKey, name: string): FollowedTable {
  return {
    key,
    name,
    appliedTxn: 0n,
    epoch: 0n,
    headTxn: 0n,
    lastAppliedAtMs: null,
    confirmedAtMs: null,
    suspended: null,
    segmentsApplied: 0,
    rowsApplied: 0,
    wanted: false,
  };
}

/** The segments after the watermark of `t` were garbage-collected: the chain now starts at `chainStartTxn`. */
function segmentsCollected(t: FollowedTable, chainStartTxn: bigint): WalshipError {
  const key = segmentKey(t.key, t.appliedTxn + 1n);
  return new WalshipError(
    'SEGMENTS_COLLECTED',
    'data',
    `segments after txn ${t.appliedTxn} of ${t.name} were garbage-collected: the store's chain now starts at txn ${chainStartTxn} ` +
      `(WAL retention; this replica's registration expired, or it does not register). ` +
      'It must bootstrap again from a snapshot: a walship node does so by itself; otherwise stop it, move its data dir aside and start it again',
    { details: { key, table: t.key, chainStartTxn: chainStartTxn.toString() } },
  );
}

function missingSegment(t: FollowedTable, foundTxn: bigint): WalshipError {
  const key = segmentKey(t.key, t.appliedTxn + 1n);
  const problem =
    foundTxn > t.appliedTxn + 1n
      ? `is missing, yet the store holds later segments (from txn ${foundTxn}); it was deleted or lost ` +
        '(if WAL retention removed it, bootstrap this replica again from a snapshot)'
      : `is followed by a segment that overlaps it (from txn ${foundTxn})`;
  return new WalshipError(
    foundTxn > t.appliedTxn + 1n ? 'SEGMENT_MISSING' : 'SEGMENT_OVERLAP',
    'data',
    `${key} ${problem}`,
    {
      details: { key, table: t.key },
    },
  );
}
