import type { Logger } from 'pino';
import { type Clock, isWalshipError, type Timer } from '../core/index.js';
import { civilFromDays, daysFromCivil, daysInMonth, isDropped, type TableStore } from '../table/index.js';
import type { TableTtl } from '../wal/index.js';

/**
 * Row retention on the primary (RFC-0007 "Retention of rows"): every `intervalMs`, each table with
 * a TTL whose oldest row has expired gets a trim txn, committed like a write, so every replica
 * deletes exactly the rows the primary deletes and a promoted replica, which applied the ttl txn,
 * goes on trimming. As QuestDB: the reference time is the newest timestamp in the table, but never
 * later than the wall clock (one row from the future must not empty the table), and rows go a whole
 * day at a time, when the day they fall in ends before reference − TTL.
 */

const US_PER_HOUR = 3_600_000_000n;
const US_PER_DAY = 24n * US_PER_HOUR;

/** What a trim of one table commits: the bound, and the txn that carries it. */
export interface TtlTrim {
  table: string;
  beforeUs: bigint;
  txn: string;
}

export interface TtlKeeperOptions {
  tables: TableStore;
  /** Commits a trim txn (Committer.trim); rejects when the node does not take writes. */
  trim: (table: string, beforeUs: bigint) => Promise<{ txnHeader: string }>;
  clock: Clock;
  /** How often every table is checked (`replication.primary.ttl.check.interval`); > 0. */
  intervalMs: number;
  log: Logger;
}

export class TtlKeeper {
  readonly #options: TtlKeeperOptions;
  #timer: Timer | undefined;
  /** The check running now: checks never overlap, and stop() waits for it. */
  #running: Promise<TtlTrim[]> = Promise.resolve([]);
  #stopped = false;
  /** Each table's last trim and when it was committed (monotonic ms): trimsSince(). */
  readonly #lastTrims = new Map<string, { trim: TtlTrim; atMs: number }>();

  constructor(options: TtlKeeperOptions) {
    this.#options = options;
  }

  /** Checks now, then every intervalMs until stop(). */
  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      void this.check().finally(() => {
        if (!this.#stopped)
          this.#timer = this.#options.clock.setTimer(this.#options.intervalMs, tick, { unref: true });
      });
    };
    tick();
  }

  /**
   * Trims every table with a TTL (or only `table`) that has expired rows; resolves with the trims
   * committed. Never rejects: a failure is logged, and the next check tries again.
   */
  check(table?: string): Promise<TtlTrim[]> {
    const run = this.#running.then(() => this.#check(table));
    this.#running = run;
    return run;
  }

  /**
   * `table`'s trims committed at or after `sinceMs` (monotonic) by any check, the last one only:
   * the answer to `SET TTL` names the trim it led to, whichever check made it.
   */
  trimsSince(table: string, sinceMs: number): TtlTrim[] {
    const last = this.#lastTrims.get(table.toLowerCase());
    return last !== undefined && last.atMs >= sinceMs ? [last.trim] : [];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#running;
  }

  async #check(only: string | undefined): Promise<TtlTrim[]> {
    const { tables, clock, log } = this.#options;
    const trims: TtlTrim[] = [];
    try {
      const names =
        only === undefined
          ? tables
              .schemas()
              .filter((s) => !isDropped(s))
              .map((s) => s.name)
          : [only];
      for (const name of names) {
        if (this.#stopped) break;
        const ttl = tables.ttl(name);
        const bounds = ttl === undefined ? undefined : tables.timestampBounds(name);
        if (ttl === undefined || bounds === undefined) continue;
        const nowUs = BigInt(Math.floor(clock.wallMs())) * 1000n;
        const beforeUs = ttlCutoffUs(bounds.maxUs < nowUs ? bounds.maxUs : nowUs, ttl);
        if (bounds.minUs >= beforeUs) continue;
        const { txnHeader } = await this.#options.trim(name, beforeUs);
        const trim = { table: name, beforeUs, txn: txnHeader };
        trims.push(trim);
        this.#lastTrims.set(name.toLowerCase(), { trim, atMs: clock.monotonicMs() });
        log.info(
          { table: name, beforeUs: beforeUs.toString(), txn: txnHeader },
          'TTL: rows expired, trimmed',
        );
      }
    } catch (error) {
      // A demoted or fenced primary stops trimming; its successor trims from the same ttl txn.
      if (isWalshipError(error) && (error.kind === 'fenced' || error.kind === 'closed'))
        log.debug({ err: error.message }, 'TTL check stopped: not taking writes');
      else log.warn({ err: (error as Error).message }, 'TTL check failed; the next one tries again');
    }
    return trims;
  }
}

/**
 * The bound below which a table's rows have expired at `referenceUs`: the start of the day in which
 * reference − TTL falls, less a µs, floored to the day. A day's rows go once the whole day (its
 * partition, in QuestDB) ends before reference − TTL. Months and years are calendar ones, the day
 * of the month kept (clamped to the month's last: 31 March − 1 month is 28 or 29 February).
 */
export function ttlCutoffUs(referenceUs: bigint, ttl: TableTtl): bigint {
  const limit = minusTtl(referenceUs, ttl) - 1n;
  return floorDiv(limit, US_PER_DAY) * US_PER_DAY;
}

function minusTtl(us: bigint, { count, unit }: TableTtl): bigint {
  const n = BigInt(count);
  if (unit === 'HOUR') return us - n * US_PER_HOUR;
  if (unit === 'DAY') return us - n * US_PER_DAY;
  if (unit === 'WEEK') return us - 7n * n * US_PER_DAY;
  const months = unit === 'MONTH' ? count : 12 * count;
  const days = floorDiv(us, US_PER_DAY);
  const { year, month, day } = civilFromDays(Number(days));
  const total = year * 12 + (month - 1) - months;
  const toYear = Math.floor(total / 12);
  const toMonth = total - toYear * 12 + 1;
  const toDay = Math.min(day, daysInMonth(toYear, toMonth));
  return BigInt(daysFromCivil(toYear, toMonth, toDay)) * US_PER_DAY + (us - days * US_PER_DAY);
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}
