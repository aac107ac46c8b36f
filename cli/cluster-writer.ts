/**
 * One table's writer for the drill and the demo: rows with unique ids through the multi-URL
 * `Sender`, at a steady rate, each acknowledged flush recorded with its time and its ids — what a
 * failover's write pause (RTO) and its lost or duplicated rows (RPO) are computed from.
 */
import { type ClientClock, FlushGaveUpError, IlpRequestError, Sender } from '../client/index.js';
import { systemClock } from '../core/index.js';
import { sleep } from './node-http.js';

// --- Bounds -------------------------------------------------------------------------------------

/** How long one flush keeps retrying (every address, with backoff) before it gives up for now. */
export const RETRY_TIMEOUT_MS = 60_000;
/** Flush errors kept per writer (the count is not bounded by this, the messages are). */
const ERRORS_KEPT = 10;
/** At most 50 flushes a second; at least 5 (so a slow rate still sends every 200 ms). */
const TICK_MS_MIN = 20;
const TICK_MS_MAX = 200;

/** A multi-URL ILP-over-HTTP config string for `urls` (the first is tried first). */
export function senderConf(urls: string[], requestTimeoutMs: number): string {
  const addresses = urls.map((url) => `addr=${new URL(url).host};`).join('');
  // auto_flush off: the writer decides when a batch goes, and knows exactly which ids it held.
  return `http::${addresses}auto_flush=off;request_timeout=${requestTimeoutMs};retry_timeout=${RETRY_TIMEOUT_MS};`;
}

/**
 * Adds one row's symbols, then its other columns (the writer starts the row with `table()` and
 * ends it with the `id` column and the timestamp). Symbols must come first, as in ILP.
 */
export type RowColumns = (row: Sender, id: number) => void;

/** The drill's rows: one double beside the id. */
export const plainColumns: RowColumns = (row, id) => {
  row.floatColumn('v', id / 2);
};

export interface ClusterWriterOptions {
  table: string;
  conf: string;
  ratePerS: number;
  /** Shared by every writer of a run, so an id is unique over all tables. */
  ids: { next: number };
  /** Milliseconds on the run's clock (ack times are on it). */
  now: () => number;
  columns?: RowColumns;
  /** Once aborted, the writer stops at once: no more rows, no more retries, no last flush. */
  signal?: AbortSignal;
}

/**
 * Adds rows with fresh ids at its rate, flushes what it holds every tick through the multi-URL
 * Sender, and records the ids of each acknowledged (204) flush with the time it resolved. A
 * failed flush keeps its rows buffered, so they go with the next.
 */
export class ClusterWriter {
  readonly table: string;
  readonly acks: { atMs: number; ids: number[] }[] = [];
  readonly errors: string[] = [];
  sent = 0;
  refused = 0;
  unacknowledged = 0;
  readonly #sender: Sender;
  readonly #ratePerS: number;
  readonly #tickMs: number;
  readonly #ids: { next: number };
  readonly #now: () => number;
  readonly #columns: RowColumns;
  readonly #signal: AbortSignal | undefined;
  #pending: number[] = [];
  #stopping = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(options: ClusterWriterOptions) {
    this.table = options.table;
    this.#signal = options.signal;
    this.#sender = Sender.fromConfig(
      options.conf,
      options.signal === undefined ? {} : { clock: abortableClock(options.signal) },
    );
    this.#ratePerS = options.ratePerS;
    this.#tickMs = Math.min(TICK_MS_MAX, Math.max(TICK_MS_MIN, Math.ceil(1000 / options.ratePerS)));
    this.#ids = options.ids;
    this.#now = options.now;
    this.#columns = options.columns ?? plainColumns;
  }

  /** Ids acknowledged so far. */
  get acknowledged(): number {
    let count = 0;
    for (const ack of this.acks) count += ack.ids.length;
    return count;
  }

  start(): void {
    const startedAtMs = this.#now();
    this.#loop = (async () => {
      while (!this.#stopping && !this.#aborted) {
        const due = Math.floor((this.#ratePerS * (this.#now() - startedAtMs)) / 1000) - this.sent;
        for (let i = 0; i < due; i++) await this.#add();
        if (this.#pending.length > 0) await this.#flush();
        await sleep(this.#tickMs);
      }
    })();
  }

  /** Stops adding rows, tries once more to flush what is held (unless aborted), closes the sender. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#loop;
    if (this.#pending.length > 0 && !this.#aborted) await this.#flush();
    this.unacknowledged = this.#pending.length;
    await this.#sender.close();
  }

  /** What became of the writer's batches: committed, replayed after a lost answer, ignored. */
  get batches(): { committed: number; replayed: number; ignored: number } {
    const { committed, replayed, ignored } = this.#sender.batchStats;
    return { committed, replayed, ignored };
  }

  get #aborted(): boolean {
    return this.#signal?.aborted === true;
  }

  async #add(): Promise<void> {
    const id = this.#ids.next++;
    this.sent++;
    this.#pending.push(id);
    const row = this.#sender.table(this.table);
    this.#columns(row, id);
    await row.intColumn('id', id).at(BigInt(Math.floor(systemClock.wallMs())) * 1000n, 'us');
  }

  async #flush(): Promise<void> {
    const ids = this.#pending;
    try {
      await this.#sender.flush();
      this.acks.push({ atMs: this.#now(), ids });
      this.#pending = [];
    } catch (error) {
      if (this.#aborted) return;
      if (this.errors.length < ERRORS_KEPT) this.errors.push((error as Error).message);
      if (error instanceof IlpRequestError) {
        // Refused for what it is (4xx): sending it again cannot help.
        this.refused += ids.length;
        this.#pending = [];
        this.#sender.reset();
      } else if (!(error instanceof FlushGaveUpError)) throw error;
    }
  }
}

/** What became of a run's batches, over all its writers (RFC-0011). */
export interface BatchTotals {
  /** Written when first received. */
  committed: number;
  /** Sent again after a lost answer and recognised: nothing written twice. */
  replayed: number;
  /** Answered by a node that ignored the batch identity: at-least-once for those. */
  ignored: number;
}

export function batchTotals(writers: readonly ClusterWriter[]): BatchTotals {
  const totals = { committed: 0, replayed: 0, ignored: 0 };
  for (const { batches } of writers) {
    totals.committed += batches.committed;
    totals.replayed += batches.replayed;
    totals.ignored += batches.ignored;
  }
  return totals;
}

/**
 * Why rows are on the cluster twice, in words, or null when none are: batches a node wrote without
 * exactly-once (it ignored their identity), or — when every batch was honoured — a bug.
 */
export function duplicateCause(duplicates: number, batches: BatchTotals): string | null {
  if (duplicates === 0) return null;
  if (batches.ignored > 0)
    return (
      `${batches.ignored} batches were answered without X-Walship-Batch-Status: the node ignored their batch ` +
      'identity (a sequenced writer, or a server that is not walship), so a batch whose answer was lost and ' +
      'was sent again was written twice (at-least-once for those batches)'
    );
  return (
    `every batch carried an identity the nodes honoured (${batches.replayed} retries recognised), yet rows ` +
    'are doubled: that breaks RFC-0011; report it with this run’s data directory'
  );
}

/** The system clock, but a wait ends (rejecting) once `signal` is aborted: retries stop at once. */
function abortableClock(signal: AbortSignal): ClientClock {
  return {
    monotonicMs: () => systemClock.monotonicMs(),
    sleep: (durationMs) => systemClock.sleep(durationMs, signal),
  };
}
