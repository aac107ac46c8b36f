import type { Logger } from 'pino';
import { type Clock, isoTime, isWalshipError, type Random, type Timer } from '../core/index.js';
import { encodeLease, LEASE_KEY, type LeaseRecord, parseLease } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';

/** Renewals per lease timeout: a primary misses three in a row before a candidate moves. */
export const RENEWALS_PER_TIMEOUT = 4;

export interface LeaseKeeperOptions {
  store: ObjectStore;
  nodeId: string;
  epoch: bigint;
  timeoutMs: number;
  clock: Clock;
  log: Logger;
  /** The lease names a newer epoch, or was taken by another node: this primary was replaced. */
  onLost: (holder: LeaseRecord | undefined) => void;
}

/** The primary's side: renew `lease.json` every timeout / RENEWALS_PER_TIMEOUT by CAS. */
export class LeaseKeeper {
  readonly #options: LeaseKeeperOptions;
  #etag: string | undefined;
  #renewal = 0;
  #timer: Timer | undefined;
  #stopped = false;
  #handingOver = false;
  #running: Promise<void> = Promise.resolve();

  constructor(options: LeaseKeeperOptions) {
    this.#options = options;
  }

  start(): void {
    this.#tick();
  }

  /**
   * This primary was demoted: go on renewing until a newer primary takes the lease over, which is
   * then expected (logged as such, not as a replacement).
   */
  handOver(): void {
    this.#handingOver = true;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#running;
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#running = this.#renew()
      .catch((error: unknown) => {
        // A store error is retried at the next tick; candidates may take over meanwhile, and then
        // this node is fenced by its next renewal or upload.
        const level = isWalshipError(error) && error.kind === 'unavailable' ? 'warn' : 'error';
        this.#options.log[level]({ err: (error as Error).message }, 'lease renewal failed');
      })
      .then(() => {
        if (this.#stopped) return;
        this.#timer = this.#options.clock.setTimer(
          this.#options.timeoutMs / RENEWALS_PER_TIMEOUT,
          () => this.#tick(),
          { unref: true },
        );
      });
  }

  async #renew(): Promise<void> {
    const { store, nodeId, epoch } = this.#options;
    const record: LeaseRecord = {
      epoch,
      nodeId,
      renewal: ++this.#renewal,
      at: isoTime(this.#options.clock.wallMs()),
    };
    if (this.#etag === undefined) {
      const current = await store.get(LEASE_KEY);
      if (current !== null && current.status === 'ok') {
        const holder = parseLease(current.body);
        if (
          holder !== undefined &&
          (holder.epoch > epoch || (holder.epoch === epoch && holder.nodeId !== nodeId))
        ) {
          return this.#lost(holder);
        }
        this.#etag = current.info.etag;
      }
    }
    const result = await store.put(LEASE_KEY, encodeLease(record), {
      condition: this.#etag === undefined ? { type: 'absent' } : { type: 'match', etag: this.#etag },
    });
    if (result.status === 'written') {
      this.#etag = result.etag;
      return;
    }
    // Someone else wrote it (or our own earlier write whose answer was lost): look again next time.
    this.#etag = undefined;
    const current = await store.get(LEASE_KEY);
    const holder = current !== null && current.status === 'ok' ? parseLease(current.body) : undefined;
    if (
      holder !== undefined &&
      (holder.epoch > epoch || (holder.epoch === epoch && holder.nodeId !== nodeId))
    ) {
      this.#lost(holder);
    }
  }

  #lost(holder: LeaseRecord | undefined): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const detail = {
      holder: holder === undefined ? null : { nodeId: holder.nodeId, epoch: holder.epoch.toString() },
    };
    if (this.#handingOver) this.#options.log.info(detail, 'the new primary took the lease over');
    else this.#options.log.error(detail, 'the lease belongs to a newer primary: this node was replaced');
    this.#options.onLost(holder);
  }
}

export interface LeaseWatcherOptions {
  store: ObjectStore;
  timeoutMs: number;
  /** How often to look (the replica's poll interval, at most timeout / RENEWALS_PER_TIMEOUT). */
  pollIntervalMs: number;
  clock: Clock;
  random: Random;
  log: Logger;
  /**
   * The newest epoch in `epochs/` (null on a root without any); read only when the lease has
   * expired, to see whether a promotion claimed an epoch after the lease was last written.
   */
  newestEpoch: () => Promise<bigint | null>;
  /**
   * The lease has not changed for the timeout (plus this candidate's jitter): promote — only past
   * the epoch this watcher is armed with (the expired lease's, or a newer claimed epoch whose
   * holder never renewed the lease), so that of two candidates whose timers run out together, the
   * slower one does not replace the one just elected. `lastChangeMs`: when (monotonic, `clock`)
   * this watcher last saw the lease change (or started) — how long the cluster has been without a
   * primary that renews it (`walship_failover_seconds`).
   */
  onExpired: (afterEpoch: bigint | undefined, lastChangeMs: number) => Promise<void>;
}

/**
 * A candidate's side: conditional GETs of `lease.json`; when its ETag has not changed for
 * `timeoutMs` plus a random 0–25 % (so candidates rarely race; a race is settled by the epoch
 * claim anyway), call `onExpired`. A missing lease counts from when this watcher started: a
 * cluster whose primary never wrote one fails over too, after the same wait.
 *
 * A promotion that claimed epoch E but never started its primary (issue 13 item 6: its ILP/TCP
 * port was taken) leaves the lease at an older epoch, and every promotion past that older epoch
 * loses to E. So at expiry the watcher reads the newest epoch: when it is newer than the one it is
 * armed with, E's holder has not renewed the lease since this watcher last saw it change — the
 * watcher re-arms with E and waits one more whole timeout (a healthy new primary takes the lease
 * well within it), then promotes past E. A holder that starts after all is fenced by E+1 as any
 * old primary is (RFC-0002 P4, W4).
 */
export class LeaseWatcher {
  readonly #options: LeaseWatcherOptions;
  readonly #timeoutMs: number;
  #etag: string | undefined;
  #leaseEpoch: bigint | undefined;
  #changedAtMs: number;
  #timer: Timer | undefined;
  #stopped = false;
  #running: Promise<void> = Promise.resolve();

  constructor(options: LeaseWatcherOptions) {
    this.#options = options;
    this.#timeoutMs = options.timeoutMs * (1 + options.random.next() / 4);
    this.#changedAtMs = options.clock.monotonicMs();
  }

  start(): void {
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#running;
  }

  /**
   * What a replica's `/status` shows of its primary (issue 19): how long the lease has gone without
   * a renewal this watcher saw (since it started, before the first), against the timeout after which
   * it promotes.
   */
  status(): { unrenewedMs: number; timeoutMs: number } {
    return {
      unrenewedMs: Math.round(this.#options.clock.monotonicMs() - this.#changedAtMs),
      timeoutMs: Math.round(this.#timeoutMs),
    };
  }

  #schedule(): void {
    if (this.#stopped) return;
    const intervalMs = Math.min(this.#options.pollIntervalMs, this.#options.timeoutMs / RENEWALS_PER_TIMEOUT);
    this.#timer = this.#options.clock.setTimer(
      intervalMs,
      () => {
        this.#running = this.#look().finally(() => this.#schedule());
      },
      { unref: true },
    );
  }

  async #look(): Promise<void> {
    const startedAtMs = this.#options.clock.monotonicMs();
    try {
      const got = await this.#options.store.get(
        LEASE_KEY,
        this.#etag === undefined ? {} : { ifNoneMatch: this.#etag },
      );
      if (got !== null && got.status === 'ok' && got.info.etag !== this.#etag) {
        this.#etag = got.info.etag;
        this.#leaseEpoch = parseLease(got.body)?.epoch;
        this.#changedAtMs = startedAtMs;
        return;
      }
    } catch (error) {
      // The store is unreachable for us: that says nothing about the primary. Do not count it.
      this.#options.log.warn({ err: (error as Error).message }, 'cannot read the lease');
      this.#changedAtMs = Math.max(this.#changedAtMs, startedAtMs - this.#timeoutMs / 2);
      return;
    }
    if (this.#stopped || startedAtMs - this.#changedAtMs < this.#timeoutMs) return;
    let newest: bigint | null;
    try {
      newest = await this.#options.newestEpoch();
    } catch (error) {
      this.#options.log.warn({ err: (error as Error).message }, 'cannot read the epochs');
      this.#changedAtMs = Math.max(this.#changedAtMs, startedAtMs - this.#timeoutMs / 2);
      return;
    }
    if (this.#stopped) return;
    const lastChangeMs = this.#changedAtMs;
    const unchangedForMs = Math.round(startedAtMs - lastChangeMs);
    this.#changedAtMs = startedAtMs; // a re-armed, failed or lost promotion waits a whole timeout again
    if (newest !== null && this.#leaseEpoch !== undefined && newest > this.#leaseEpoch) {
      this.#options.log.warn(
        { unchangedForMs, leaseEpoch: this.#leaseEpoch.toString(), newestEpoch: newest.toString() },
        `epoch ${newest} was claimed, but its holder has not renewed the lease: promoting past it if it does not within the lease timeout`,
      );
      this.#leaseEpoch = newest;
      return;
    }
    // No lease was ever read (its primary runs without automatic failover): promote past the
    // newest epoch, so a candidate elected a moment ago is not replaced.
    const afterEpoch = this.#leaseEpoch ?? newest ?? undefined;
    this.#options.log.warn(
      { unchangedForMs },
      'the primary has not renewed its lease: promoting this replica',
    );
    await this.#options.onExpired(afterEpoch, lastChangeMs).catch((error: unknown) => {
      this.#options.log.warn({ err: (error as Error).message }, 'automatic promotion did not happen');
    });
  }
}
