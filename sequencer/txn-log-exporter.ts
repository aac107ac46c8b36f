/**
 * RFC-0003 step 6: a sequenced writer exports each committed entry to `txnlog/`, off the ack
 * path. Each entry is written create-only to its `txnLogKey`; a taken key must hold the identical
 * bytes, or exports stop for good (TXNLOG_CONFLICT: the sequencer's state was lost or forked).
 * Store errors are retried by the writer's own retry loop, so its backoff and stop apply here too.
 */
import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { isWalshipError, WalshipError } from '../core/index.js';
import { encodeTxnLogEntry, txnLogKey } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { LogEntry } from './sequencer-store.js';

/** Txn-log objects being written at once. */
const EXPORTS_IN_FLIGHT_MAX = 16;
/** Entries awaiting export at most (~300 B each); beyond it the export catch-up writes them. */
const EXPORTS_PENDING_MAX = 100_000;

/**
 * The writer's retry loop: `fn` until it returns, an `unavailable` error retried after a backoff
 * (`state.failures` counts the failures in a row), anything else thrown. Null once the writer stops.
 */
export type Retrying = <T>(
  what: string,
  state: { failures: number },
  fn: () => Promise<T>,
) => Promise<T | null>;

export interface TxnLogExporterOptions {
  store: ObjectStore;
  log: Logger;
  /** The writer's stop: no export starts once it is aborted. */
  signal: AbortSignal;
  retrying: Retrying;
  /** Told of the error that stopped exports (the writer's status keeps the last error). */
  onError: (error: unknown) => void;
}

export class TxnLogExporter {
  readonly #o: TxnLogExporterOptions;
  #pending: LogEntry[] = [];
  #running: Promise<void> | null = null;
  #error: string | null = null;
  #dropped = 0;

  constructor(options: TxnLogExporterOptions) {
    this.#o = options;
  }

  /** Entries awaiting export. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Why exports stopped (`CODE: message`), or null. */
  get error(): string | null {
    return this.#error;
  }

  /** The export loop in flight, or null: what the writer's stop() waits for. */
  get running(): Promise<void> | null {
    return this.#running;
  }

  /** Queues a committed batch's entries (bounded: EXPORTS_PENDING_MAX) and starts exporting. */
  add(entries: LogEntry[]): void {
    if (this.#error !== null) return;
    for (const entry of entries) {
      if (this.#pending.length >= EXPORTS_PENDING_MAX) {
        if (this.#dropped++ === 0)
          this.#o.log.warn(
            { limit: EXPORTS_PENDING_MAX },
            'export backlog full: the export catch-up writes the rest',
          );
        continue;
      }
      this.#pending.push(entry);
    }
    this.#run();
  }

  #run(): void {
    if (this.#running !== null || this.#error !== null || this.#pending.length === 0) return;
    if (this.#o.signal.aborted) return;
    this.#running = this.#loop()
      .catch((error: unknown) => {
        this.#error = isWalshipError(error) ? `${error.code}: ${error.message}` : String(error);
        this.#o.onError(error);
        this.#o.log.error({ err: this.#error }, 'txn-log export stopped');
      })
      .finally(() => {
        this.#running = null;
        this.#run();
      });
  }

  async #loop(): Promise<void> {
    const state = { failures: 0 };
    while (this.#pending.length > 0) {
      const chunk = this.#pending.slice(0, EXPORTS_IN_FLIGHT_MAX);
      const done = await this.#o.retrying('txn-log export', state, () =>
        Promise.all(chunk.map((entry) => this.#exportOne(entry))),
      );
      if (done === null) return;
      this.#pending.splice(0, chunk.length);
    }
  }

  /** Create-only; a taken key must hold the identical bytes (RFC-0003 "export 412"). */
  async #exportOne(entry: LogEntry): Promise<void> {
    const { store } = this.#o;
    const key = txnLogKey(entry.table, entry.txnFirst);
    const body = encodeTxnLogEntry(entry);
    const put = await store.put(key, body, { condition: { type: 'absent' } });
    if (put.status === 'written') return;
    const existing = await store.get(key);
    if (existing === null || existing.status !== 'ok') {
      throw new WalshipError(
        'STORE_INCONSISTENT',
        'unavailable',
        `${key} refused a create-only write but cannot be read`,
      );
    }
    if (Buffer.from(existing.body).equals(body)) return;
    throw new WalshipError(
      'TXNLOG_CONFLICT',
      'data',
      `${key} holds another entry than the sequencer's (its state was lost or forked): exports stop`,
    );
  }
}
