/**
 * What a node's status page shows beyond the current `/status` (issue 6): lag and backlog sampled
 * over the last minutes, overall and for the laggiest tables (issue 19), and the role changes,
 * fences, divergences and table suspensions that happened, with how long each took when known.
 * `WalshipNode` keeps one across role changes, so a promotion's history stays visible.
 *
 * Both histories are rings: memory is bounded whatever the node does (STYLE rule 7).
 */
import { assert, type Clock, type Timer } from '../core/index.js';

/** How far back samples are kept: the status page's chart window. */
export const ACTIVITY_HISTORY_MS = 10 * 60_000;
/** Samples held at most, whatever the interval: 10 minutes at 100 ms (~100 bytes each). */
export const ACTIVITY_SAMPLES_MAX = 6_000;
/** Events held (a ring): enough for an operator's page, bounded for a node that keeps flapping. */
export const ACTIVITY_EVENTS_MAX = 50;
/** Events in `/status`, newest first (`/status/history` has all of them). */
export const STATUS_EVENTS_MAX = 20;
/** An event message longer than this is cut (messages may carry a store's error text). */
export const EVENT_MESSAGE_MAX_CHARS = 1_000;
/**
 * Tables whose lag one sample keeps: the laggiest at that moment. Memory is samples × this (at most
 * 6 000 × 8 pairs), whatever the node's number of tables.
 */
export const ACTIVITY_TABLES_SAMPLED_MAX = 8;
/** Per-table lines in `/status/history`: the tables with the largest lag over the window. */
export const ACTIVITY_TABLE_LINES_MAX = 5;

/** One look at the node's `/status`. */
export interface ActivitySample {
  /** Wall-clock ms since the Unix epoch (for display only). */
  at: number;
  role: string;
  /** The primary's epoch; null for a replica or while switching. */
  epoch: string | null;
  /**
   * Replica: its staleness (`stalenessMs`); primary: the age of the oldest txn not yet in the
   * store, 0 when everything is uploaded; null when unknown (no poll yet, switching).
   */
  lagMs: number | null;
  /** Replica: txns known to be in the store and not applied yet, over all tables. */
  txnsBehind: number;
  /** Primary: committed txns not yet uploaded, over all tables. */
  pendingTxns: number;
}

export type ActivityEventKind =
  | 'started'
  | 'promoted'
  | 'demoted'
  | 'fenced'
  | 'divergence'
  | 'suspended'
  | 'resumed'
  | 'role'
  /** Started, but waiting for the cluster to choose its primary before joining (issue 13 item 4). */
  | 'waiting';

export interface ActivityEvent {
  /** Wall-clock ms since the Unix epoch. */
  at: number;
  kind: ActivityEventKind;
  message: string;
  /**
   * How long what this event ends took, when known: a promotion from its start to taking writes, a
   * demotion from refusing writes to following as a replica, a suspension until it was resumed, a
   * fence until the node followed the new primary. It began at `at - durationMs`.
   */
  durationMs?: number;
  /** The table a suspension or resumption is about. */
  table?: string;
}

/** Optional facts of an event (see ActivityEvent). */
export interface ActivityEventDetails {
  durationMs?: number;
  table?: string;
}

/** One table's lag over the samples of `/status/history`. */
export interface TableLagLine {
  name: string;
  /** Aligned with `samples`: null where this table was not among the laggiest sampled, or its lag unknown. */
  lagMs: (number | null)[];
}

/** `GET /status/history`. */
export interface ActivityHistory {
  /** How often the node samples its status. */
  intervalMs: number;
  /** How far back `samples` reach at most. */
  historyMs: number;
  /** The node's wall clock when answering (the chart's right edge). */
  nowMs: number;
  /** Oldest first. */
  samples: ActivitySample[];
  /**
   * The ACTIVITY_TABLE_LINES_MAX tables with the largest lag over `samples` (a replica's
   * `sinceCaughtUpMs`, a primary's `oldestPendingAgeMs`), largest first; tables that never lagged
   * are left out.
   */
  tableLines: TableLagLine[];
  /** Newest first. */
  events: ActivityEvent[];
}

/** A sample and the lag of the tables that lagged most when it was taken. */
interface StoredSample {
  sample: ActivitySample;
  tables: readonly TableLag[];
}

/** [table name, lag in ms]. */
type TableLag = readonly [string, number];

export interface NodeActivityOptions {
  clock: Clock;
  /** The node's current status (the `/status` JSON). May throw while a role closes: that sample is skipped. */
  status: () => Record<string, unknown>;
  /** `statusSampleMs`: how often to sample (default 1000 in WalshipNode). */
  sampleIntervalMs: number;
  /** Default ACTIVITY_HISTORY_MS. */
  historyMs?: number;
}

/** A fixed-capacity ring, oldest dropped first. */
class Ring<T> {
  readonly #items: (T | undefined)[];
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0, `ring capacity ${capacity}`);
    this.#items = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    this.#items[this.#next] = item;
    this.#next = (this.#next + 1) % this.#items.length;
    this.#size = Math.min(this.#size + 1, this.#items.length);
  }

  /** Oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    const capacity = this.#items.length;
    for (let i = 0; i < this.#size; i++) {
      const item = this.#items[(this.#next - this.#size + i + capacity) % capacity];
      if (item !== undefined) out.push(item);
    }
    return out;
  }
}

/**
 * Samples the node's status every `sampleIntervalMs` (a timer that does not keep the process
 * alive) and records events. Table suspensions are detected from the samples: a replica table's
 * `suspended` going from null to set records `suspended`, and back to null `resumed`.
 */
export class NodeActivity {
  readonly #options: NodeActivityOptions;
  readonly #historyMs: number;
  readonly #samples: Ring<StoredSample>;
  readonly #events = new Ring<ActivityEvent>(ACTIVITY_EVENTS_MAX);
  /** Suspended replica tables at the last sample: name → what `suspended` said and since when (wall ms). */
  #suspended = new Map<string, { reason: string; sinceMs: number }>();
  #timer: Timer | undefined;
  #stopped = false;

  constructor(options: NodeActivityOptions) {
    assert(
      Number.isFinite(options.sampleIntervalMs) && options.sampleIntervalMs > 0,
      `sampleIntervalMs ${options.sampleIntervalMs} must be > 0`,
    );
    this.#options = options;
    this.#historyMs = options.historyMs ?? ACTIVITY_HISTORY_MS;
    const capacity = Math.min(
      Math.ceil(this.#historyMs / options.sampleIntervalMs) + 1,
      ACTIVITY_SAMPLES_MAX,
    );
    this.#samples = new Ring(capacity);
  }

  get sampleIntervalMs(): number {
    return this.#options.sampleIntervalMs;
  }

  /** Sample every interval until stop(); the first sample comes one interval after the start. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#arm();
  }

  /** No more samples (events can still be recorded). Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** An interval as a timer re-armed each time it fires (before sampling, so a failing sample does not end it). */
  #arm(): void {
    this.#timer = this.#options.clock.setTimer(
      this.#options.sampleIntervalMs,
      () => {
        if (this.#stopped) return;
        this.#arm();
        this.sample();
      },
      { unref: true },
    );
  }

  /** Take one sample now; undefined when the status could not be read (a role closing). */
  sample(): ActivitySample | undefined {
    let status: Record<string, unknown>;
    try {
      status = this.#options.status();
    } catch {
      return undefined;
    }
    const sample = sampleOf(status, this.#options.clock.wallMs());
    this.#samples.push({ sample, tables: tableLagsOf(status, ACTIVITY_TABLES_SAMPLED_MAX) });
    this.#detectSuspensions(status);
    return sample;
  }

  record(kind: ActivityEventKind, message: string, details: ActivityEventDetails = {}): void {
    const text =
      message.length > EVENT_MESSAGE_MAX_CHARS
        ? `${message.slice(0, EVENT_MESSAGE_MAX_CHARS - 1)}…`
        : message;
    const event: ActivityEvent = { at: this.#options.clock.wallMs(), kind, message: text };
    if (details.durationMs !== undefined && Number.isFinite(details.durationMs))
      event.durationMs = Math.max(0, Math.round(details.durationMs));
    if (details.table !== undefined) event.table = details.table;
    this.#events.push(event);
  }

  /** Samples of the last `historyMs`, oldest first. */
  samples(): ActivitySample[] {
    return this.#window().map((s) => s.sample);
  }

  #window(): StoredSample[] {
    const since = this.#options.clock.wallMs() - this.#historyMs;
    return this.#samples.toArray().filter((s) => s.sample.at >= since);
  }

  /** The last `limit` events, newest first. */
  events(limit = ACTIVITY_EVENTS_MAX): ActivityEvent[] {
    return this.#events.toArray().reverse().slice(0, limit);
  }

  history(): ActivityHistory {
    const window = this.#window();
    return {
      intervalMs: this.#options.sampleIntervalMs,
      historyMs: this.#historyMs,
      nowMs: this.#options.clock.wallMs(),
      samples: window.map((s) => s.sample),
      tableLines: tableLines(window, ACTIVITY_TABLE_LINES_MAX),
      events: this.events(),
    };
  }

  #detectSuspensions(status: Record<string, unknown>): void {
    if (status.role !== 'replica') {
      // A new replica starts with nothing suspended; a primary has no suspensions.
      this.#suspended = new Map();
      return;
    }
    const nowMs = this.#options.clock.wallMs();
    const now = new Map<string, { reason: string; sinceMs: number }>();
    for (const table of tablesOf(status)) {
      const name = typeof table.name === 'string' ? table.name : undefined;
      const suspended = table.suspended;
      if (name === undefined || suspended === null || typeof suspended !== 'object') continue;
      const { code, message } = suspended as { code?: unknown; message?: unknown };
      const reason = `${String(code)}: ${String(message)}`;
      now.set(name, { reason, sinceMs: this.#suspended.get(name)?.sinceMs ?? nowMs });
    }
    for (const [name, { reason }] of now)
      if (!this.#suspended.has(name))
        this.record('suspended', `table ${name} suspended: ${reason}`, { table: name });
    for (const [name, { sinceMs }] of this.#suspended)
      if (!now.has(name))
        this.record('resumed', `table ${name} resumed`, { table: name, durationMs: nowMs - sinceMs });
    this.#suspended = now;
  }
}

/**
 * The `limit` laggiest tables of a `/status` JSON, largest lag first: a replica table's
 * `sinceCaughtUpMs` (unknown ones left out), a primary table's `oldestPendingAgeMs` (0 when nothing
 * is pending). Nothing while switching.
 */
export function tableLagsOf(status: Record<string, unknown>, limit: number): TableLag[] {
  const field =
    status.role === 'replica' ? 'sinceCaughtUpMs' : status.role === 'primary' ? 'oldestPendingAgeMs' : null;
  if (field === null) return [];
  const lags: TableLag[] = [];
  for (const table of tablesOf(status)) {
    if (typeof table.name !== 'string') continue;
    const lagMs = numberOrNull(table[field]) ?? (field === 'oldestPendingAgeMs' ? 0 : null);
    if (lagMs !== null) lags.push([table.name, lagMs]);
  }
  return lags.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, limit);
}

/** The `limit` tables with the largest lag over `window`, each as a line aligned with its samples. Pure. */
function tableLines(window: readonly StoredSample[], limit: number): TableLagLine[] {
  const maxLagMs = new Map<string, number>();
  for (const { tables } of window)
    for (const [name, lagMs] of tables) maxLagMs.set(name, Math.max(maxLagMs.get(name) ?? 0, lagMs));
  const names = [...maxLagMs]
    .filter(([, lagMs]) => lagMs > 0)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, limit)
    .map(([name]) => name);
  return names.map((name) => ({
    name,
    lagMs: window.map(({ tables }) => tables.find(([n]) => n === name)?.[1] ?? null),
  }));
}

/** A sample of a `/status` JSON (primary, replica or switching). */
export function sampleOf(status: Record<string, unknown>, at: number): ActivitySample {
  const role = typeof status.role === 'string' ? status.role : 'unknown';
  const epoch = typeof status.epoch === 'string' ? status.epoch : null;
  const tables = tablesOf(status);
  if (role === 'replica') {
    return {
      at,
      role,
      epoch,
      lagMs: numberOrNull(status.stalenessMs),
      txnsBehind: sumOf(tables, 'txnsBehind'),
      pendingTxns: 0,
    };
  }
  if (role === 'primary') {
    let lagMs = 0;
    for (const table of tables) lagMs = Math.max(lagMs, numberOrNull(table.oldestPendingAgeMs) ?? 0);
    return { at, role, epoch, lagMs, txnsBehind: 0, pendingTxns: sumOf(tables, 'pendingTxns') };
  }
  return { at, role, epoch, lagMs: null, txnsBehind: 0, pendingTxns: 0 };
}

function tablesOf(status: Record<string, unknown>): Record<string, unknown>[] {
  const tables = status.tables;
  if (!Array.isArray(tables)) return [];
  return tables.filter((t): t is Record<string, unknown> => t !== null && typeof t === 'object');
}

/** Σ of a count field that /status gives as a number or as a decimal string (a bigint). */
function sumOf(tables: Record<string, unknown>[], field: string): number {
  let sum = 0;
  for (const table of tables) {
    const value = table[field];
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n === 'number' && Number.isFinite(n)) sum += n;
  }
  return sum;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}
