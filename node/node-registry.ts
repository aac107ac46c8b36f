import type { Logger } from 'pino';
import { assert, type Clock, isoTime, type Timer } from '../core/index.js';
import {
  encodeNodeRegistration,
  NODE_REGISTRATION_VERSION,
  type NodeFacts,
  type NodeRegistrationRecord,
  nodeRegistrationKey,
  REGISTRATION_TABLES_MAX,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';

/**
 * Keeps this node's `nodes/<nodeId>.json` current (the record and its codec: layout/node-registration.ts).
 */

/**
 * How long `stop()` waits for a write in flight. A write normally takes milliseconds; one that
 * waits longer is stuck behind a key lock a killed writer left on a filesystem store (broken only
 * after 30 s) or a slow store, and must not hold a node's shutdown: it is abandoned, and fails once
 * the store is closed.
 */
export const REGISTRATION_STOP_WAIT_MS = 2_000;

/**
 * An unchanged record is rewritten this often only (a changed one within `intervalMs`): an idle
 * node then costs one PUT per 5 minutes instead of one per interval, whatever its number of tables
 * (the record grows ~60 bytes a table). GC's registration expiry (default 1 h) must stay above it,
 * or an idle node looks gone; `walship gc` refuses a shorter expiry.
 */
export const REGISTRATION_UNCHANGED_REWRITE_MS = 5 * 60_000;

export interface NodeRegistrationOptions {
  store: ObjectStore;
  clock: Clock;
  log: Logger;
  /** Rewrite the record this often, in ms (`replication.node.register.interval`); > 0. */
  intervalMs: number;
  /** The node's facts now; null while it has none to give (changing role before its first one). */
  facts: () => NodeFacts | null;
}

/**
 * Keeps one node's registration current. `start()` writes it and schedules a rewrite every
 * `intervalMs` (an unref'ed timer: it never keeps a process alive); `writeNow()` asks for a write
 * after a role change. Writes run one at a time and requests made while one waits are folded
 * into it. Failures are logged (warn) and left to the next interval. `stop()` cancels the timer
 * and waits for the write in flight (at most REGISTRATION_STOP_WAIT_MS), so nothing is written
 * after it resolves unless that write was stuck.
 */
export class NodeRegistration {
  readonly #options: NodeRegistrationOptions;
  readonly #startedAt: string;
  #timer: Timer | undefined;
  #chain: Promise<void> = Promise.resolve();
  #queued = false;
  #stopped = false;
  #writes = 0;
  #lastError: string | null = null;
  /** What the last successful write said (its facts, without `at`) and when (monotonic ms). */
  #written: { fingerprint: string; atMs: number } | null = null;

  constructor(options: NodeRegistrationOptions) {
    assert(options.intervalMs > 0, 'a node registration needs an interval > 0 (0 means: do not create one)');
    this.#options = options;
    this.#startedAt = isoTime(options.clock.wallMs());
  }

  /** Records written so far. */
  get writes(): number {
    return this.#writes;
  }

  /** The last write's error, or null after a write succeeded. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** Write now and every `intervalMs` until `stop()`. */
  start(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.writeNow();
    this.#schedule();
  }

  /** Ask for a write of the current facts (after a role change); never throws, never waits. */
  writeNow(): void {
    if (this.#stopped || this.#queued) return;
    this.#queued = true;
    this.#chain = this.#chain.then(async () => {
      this.#queued = false;
      if (!this.#stopped) await this.#write();
    });
  }

  /** Resolves once every write asked for so far has ended (written or failed). */
  flush(): Promise<void> {
    return this.#chain;
  }

  /**
   * Stop rewriting; resolves after the write in flight (if any) has ended, or after
   * REGISTRATION_STOP_WAIT_MS when it is stuck. Idempotent.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    const waited = new AbortController();
    const ended = await Promise.race([
      this.#chain.then(() => true),
      this.#options.clock.sleep(REGISTRATION_STOP_WAIT_MS, waited.signal).then(
        () => false,
        () => true,
      ),
    ]);
    waited.abort();
    if (!ended) {
      this.#options.log.warn(
        { waitedMs: REGISTRATION_STOP_WAIT_MS },
        'a node registration write is stuck (a stale lock, a slow store); stopped without it',
      );
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimer(
      this.#options.intervalMs,
      () => {
        this.#writeIfChanged();
        this.#schedule();
      },
      { unref: true },
    );
  }

  /** The timer's write: skipped while the facts are what was written less than REGISTRATION_UNCHANGED_REWRITE_MS ago. */
  #writeIfChanged(): void {
    if (this.#stopped || this.#queued) return;
    this.#queued = true;
    this.#chain = this.#chain.then(async () => {
      this.#queued = false;
      if (!this.#stopped) await this.#write(true);
    });
  }

  async #write(onlyIfChanged = false): Promise<void> {
    const { store, clock, log } = this.#options;
    let facts: NodeFacts | null;
    try {
      facts = this.#options.facts();
    } catch (error) {
      // The node is changing role or closing: the next request writes.
      log.debug({ err: (error as Error).message }, 'node registration skipped: no facts now');
      return;
    }
    if (facts === null) return;
    const record = this.#record(facts, isoTime(clock.wallMs()));
    const fingerprint = JSON.stringify({ ...record, at: undefined });
    const sinceMs = clock.monotonicMs() - (this.#written?.atMs ?? Number.NEGATIVE_INFINITY);
    if (
      onlyIfChanged &&
      this.#written?.fingerprint === fingerprint &&
      sinceMs < REGISTRATION_UNCHANGED_REWRITE_MS
    )
      return;
    try {
      const startedAtMs = clock.monotonicMs();
      await store.put(nodeRegistrationKey(record.nodeId), encodeNodeRegistration(record));
      this.#writes++;
      this.#lastError = null;
      this.#written = { fingerprint, atMs: startedAtMs };
    } catch (error) {
      this.#lastError = (error as Error).message;
      if (this.#stopped) return; // abandoned by stop(): its store is closing
      log.warn(
        { err: this.#lastError, nextInMs: this.#options.intervalMs },
        'could not write this node registration to the store; will try again',
      );
    }
  }

  #record(facts: NodeFacts, at: string): NodeRegistrationRecord {
    const names = Object.keys(facts.tables).sort();
    const tables: Record<string, string> = {};
    for (const name of names.slice(0, REGISTRATION_TABLES_MAX)) tables[name] = facts.tables[name]!;
    return {
      version: NODE_REGISTRATION_VERSION,
      nodeId: facts.nodeId,
      url: facts.url,
      role: facts.role,
      epoch: facts.epoch,
      clusterId: facts.clusterId,
      tables,
      tableCount: names.length,
      startedAt: this.#startedAt,
      at,
    };
  }
}
