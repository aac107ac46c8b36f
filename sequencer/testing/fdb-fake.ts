/**
 * An in-memory FoundationDB that implements `fdb-api.ts` with the semantics the FoundationDB
 * backend relies on (RFC-0003 "The fake"), so `fdb-store.ts` runs and is tested where
 * `libfdb_c.so` is absent:
 *
 * - MVCC: every transaction reads at the committed version of its start (its read version),
 *   plus its own writes; non-snapshot reads (get, range) add read-conflict ranges.
 * - Commit: fails with 1020 (not_committed) when a key in its read-conflict ranges was written
 *   after its read version; otherwise its mutations are applied at a new version. Atomic `add`
 *   reads nothing, so it never conflicts. Read-only transactions always commit.
 * - A seeded injector of 1021 (commit_unknown_result) that, per injected failure, either applies
 *   the commit or not before throwing.
 * - 1007 (transaction_too_old) once a transaction has lived past 5 s of the injected clock;
 *   2101/2102/2103 past the size limits, checked at commit as the C client does.
 * - Watches that become active when their transaction commits and fire after a committed change
 *   of their key (at once when the key changed between the read version and the activation).
 * - `doTn` retries like the bindings: a fresh transaction on 1007, 1020 and 1021; any other error,
 *   and every non-FDB error, reaches the caller. Unlike the bindings it stops after
 *   `retryLimitMax` retries, so a test with a 100 % fault rate fails instead of hanging.
 *
 * Not modelled: versionstamps, key selectors, option codes, the network thread, real latency.
 */
import { type Clock, type Random, randomInt, seededRandom, systemClock } from '../../core/index.js';
import {
  FDB_ERROR_CODE,
  FDB_LIMITS,
  FDB_RETRYABLE_CODES,
  type FdbDatabase,
  type FdbModule,
  type FdbRangeOptions,
  type FdbTransaction,
  type FdbTransactionOptions,
  type FdbWatch,
} from '../fdb-api.js';

/** Retries the fake's doTn allows when no retry_limit is given (the bindings retry forever). */
export const FAKE_FDB_RETRY_LIMIT_MAX = 10_000;

/** The fake's FDBError: an Error with the numeric FoundationDB code, as the bindings throw. */
export class FakeFdbError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(`${message} (FDB error ${code})`);
    this.name = 'FDBError';
    this.code = code;
  }
}

export interface FakeFdbOptions {
  /** Simulated time: transaction age (1007) and the timeout option are measured on it. */
  clock?: Clock;
  /** Drives the 1021 injector; the same seed replays the same faults. */
  random?: Random;
  /** Probability in [0, 1] that a committing read-write transaction fails with 1021. */
  commitUnknownRate?: number;
  /**
   * Draws how many event-loop turns each read and each retry backoff takes (1..FAKE_FDB_TURNS_MAX),
   * as network latency varies: without it the interleaving is a fixed cycle in which a
   * transaction can lose every conflict forever. Seeded, so a schedule replays.
   */
  schedulingRandom?: Random;
}

/** Most microtask turns one simulated read or retry backoff takes. */
export const FAKE_FDB_TURNS_MAX = 4;

/** Counters a test reads to prove a path was taken (not only that the outcome looked right). */
export interface FakeFdbStats {
  attempts: number;
  commits: number;
  conflicts: number;
  tooOld: number;
  timedOut: number;
  tooLarge: number;
  unknownApplied: number;
  unknownNotApplied: number;
}

type Mutation = { kind: 'set'; value: Buffer } | { kind: 'clear' } | { kind: 'add'; operand: Buffer };

interface VersionedValue {
  version: number;
  value: Buffer | undefined;
}

interface PendingWrite {
  key: Buffer;
  mutations: Mutation[];
}

interface FakeWatch {
  keyHex: string;
  baseline: Buffer | undefined;
  settled: boolean;
  resolve(fired: boolean): void;
  reject(error: Error): void;
}

interface TxnState {
  readVersion: number;
  startMs: number;
  deadlineMs: number | null;
  /** [beginHex, endHex) ranges read without snapshot. */
  readRanges: [string, string][];
  writes: Map<string, PendingWrite>;
  writeBytes: number;
  watches: { keyHex: string; watch: FakeWatch }[];
  done: boolean;
}

/** Hex strings of bytes sort exactly as the bytes do, prefixes first: our ordered key space. */
function hexOf(key: Buffer): string {
  return key.toString('hex');
}

function lowerBound(sorted: string[], value: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] as string) < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** FDB's ADD mutation: little-endian, the result as long as the operand, carries past it dropped. */
export function addLittleEndian(current: Buffer | undefined, operand: Buffer): Buffer {
  const result = Buffer.alloc(operand.length);
  let carry = 0;
  for (let i = 0; i < operand.length; i++) {
    const sum =
      (current !== undefined && i < current.length ? (current[i] as number) : 0) +
      (operand[i] as number) +
      carry;
    result[i] = sum & 0xff;
    carry = sum >> 8;
  }
  return result;
}

function applyMutations(base: Buffer | undefined, mutations: Mutation[]): Buffer | undefined {
  let value = base;
  for (const mutation of mutations) {
    if (mutation.kind === 'set') value = mutation.value;
    else if (mutation.kind === 'clear') value = undefined;
    else value = addLittleEndian(value, mutation.operand);
  }
  return value;
}

function sameValue(a: Buffer | undefined, b: Buffer | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.equals(b);
}

export class FakeFdb implements FdbModule {
  readonly clock: Clock;
  readonly random: Random;
  readonly schedulingRandom: Random;
  /** Mutable so a test can turn faults on after setting up its state. */
  commitUnknownRate: number;
  readonly stats: FakeFdbStats = {
    attempts: 0,
    commits: 0,
    conflicts: 0,
    tooOld: 0,
    timedOut: 0,
    tooLarge: 0,
    unknownApplied: 0,
    unknownNotApplied: 0,
  };
  apiVersion: number | null = null;
  private committedVersion = 0;
  private readonly history = new Map<string, VersionedValue[]>();
  private readonly sortedKeys: string[] = [];
  private readonly activeWatches = new Set<FakeWatch>();
  private watchFailureCode: number | null = null;

  constructor(options: FakeFdbOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? seededRandom(1);
    this.schedulingRandom = options.schedulingRandom ?? seededRandom(2);
    this.commitUnknownRate = options.commitUnknownRate ?? 0;
  }

  setAPIVersion(version: number): void {
    if (this.apiVersion !== null && this.apiVersion !== version)
      throw new Error(`API version already set to ${this.apiVersion}`);
    this.apiVersion = version;
  }

  /** A new handle on the same data, as a second `fdb.open()` of one cluster is. */
  open(_clusterFile?: string): FakeFdbDatabase {
    return new FakeFdbDatabase(this);
  }

  /** The version of the last commit (0 before any). */
  get version(): number {
    return this.committedVersion;
  }

  /**
   * While `code` is set, every watch fails with it instead of firing (active ones at once):
   * how a test drives the store's fallback to polling. null restores normal watches.
   */
  setWatchFailure(code: number | null): void {
    this.watchFailureCode = code;
    if (code === null) return;
    for (const watch of [...this.activeWatches]) this.rejectWatch(watch, code);
  }

  /** The latest committed value of `key`, outside any transaction (for assertions). */
  peek(key: Buffer): Buffer | undefined {
    return this.valueAt(hexOf(key), this.committedVersion);
  }

  /** Number of keys holding a value now. */
  keyCount(): number {
    let count = 0;
    for (const hex of this.sortedKeys) if (this.valueAt(hex, this.committedVersion) !== undefined) count++;
    return count;
  }

  /** @internal A simulated latency: 1..FAKE_FDB_TURNS_MAX microtask turns. */
  async latency(): Promise<void> {
    const turns = 1 + randomInt(this.schedulingRandom, FAKE_FDB_TURNS_MAX);
    for (let turn = 0; turn < turns; turn++) await Promise.resolve();
  }

  /** @internal */
  beginTransaction(deadlineMs: number | null): TxnState {
    this.stats.attempts++;
    return {
      readVersion: this.committedVersion,
      startMs: this.clock.monotonicMs(),
      deadlineMs,
      readRanges: [],
      writes: new Map(),
      writeBytes: 0,
      watches: [],
      done: false,
    };
  }

  /** @internal Throws 1007 or 1031 when the transaction has lived too long. */
  checkAlive(state: TxnState): void {
    if (state.done) throw new Error('transaction used after it finished');
    const nowMs = this.clock.monotonicMs();
    if (state.deadlineMs !== null && nowMs > state.deadlineMs) {
      this.stats.timedOut++;
      throw new FakeFdbError(FDB_ERROR_CODE.transactionTimedOut, 'transaction_timed_out');
    }
    if (nowMs - state.startMs > FDB_LIMITS.transactionDurationMs) {
      this.stats.tooOld++;
      throw new FakeFdbError(FDB_ERROR_CODE.transactionTooOld, 'transaction_too_old');
    }
  }

  /** @internal The value a transaction sees: storage at its read version, then its own writes. */
  readOwn(state: TxnState, keyHex: string): Buffer | undefined {
    const base = this.valueAt(keyHex, state.readVersion);
    const pending = state.writes.get(keyHex);
    return pending === undefined ? base : applyMutations(base, pending.mutations);
  }

  /** @internal */
  rangeOwn(state: TxnState, beginHex: string, endHex: string, options: FdbRangeOptions): [Buffer, Buffer][] {
    const hexes = new Set<string>();
    for (let i = lowerBound(this.sortedKeys, beginHex); i < this.sortedKeys.length; i++) {
      const hex = this.sortedKeys[i] as string;
      if (hex >= endHex) break;
      hexes.add(hex);
    }
    for (const hex of state.writes.keys()) if (hex >= beginHex && hex < endHex) hexes.add(hex);
    const ordered = [...hexes].sort();
    if (options.reverse) ordered.reverse();
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Number.POSITIVE_INFINITY;
    const pairs: [Buffer, Buffer][] = [];
    for (const hex of ordered) {
      if (pairs.length >= limit) break;
      const value = this.readOwn(state, hex);
      if (value !== undefined) pairs.push([Buffer.from(hex, 'hex'), value]);
    }
    return pairs;
  }

  /** @internal Commit or throw; synchronous, so checks and apply are one atomic step. */
  commit(state: TxnState): void {
    this.checkAlive(state);
    this.checkSizes(state);
    if (state.writes.size > 0) {
      if (this.conflicts(state)) {
        this.stats.conflicts++;
        throw new FakeFdbError(FDB_ERROR_CODE.notCommitted, 'not_committed');
      }
      if (this.commitUnknownRate > 0 && this.random.next() < this.commitUnknownRate) {
        const applied = this.random.next() < 0.5;
        if (applied) {
          this.apply(state);
          this.stats.unknownApplied++;
        } else this.stats.unknownNotApplied++;
        throw new FakeFdbError(FDB_ERROR_CODE.commitUnknownResult, 'commit_unknown_result');
      }
    }
    const baselines = state.watches.map(({ keyHex }) => this.readOwn(state, keyHex));
    if (state.writes.size > 0) this.apply(state);
    this.stats.commits++;
    state.done = true;
    state.watches.forEach(({ watch }, index) => {
      watch.baseline = baselines[index];
      this.activate(watch);
    });
  }

  /** @internal A transaction that will not commit: its watches resolve false (cancelled). */
  abandon(state: TxnState): void {
    state.done = true;
    for (const { watch } of state.watches) settleWatch(watch, false);
  }

  /** @internal */
  newWatch(state: TxnState, keyHex: string): FdbWatch {
    let resolve!: (fired: boolean) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<boolean>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    // As the bindings do: an unobserved failure must not crash the process.
    promise.catch(() => {});
    const watch: FakeWatch = { keyHex, baseline: undefined, settled: false, resolve, reject };
    state.watches.push({ keyHex, watch });
    return {
      promise,
      cancel: () => {
        this.activeWatches.delete(watch);
        settleWatch(watch, false);
      },
    };
  }

  private activate(watch: FakeWatch): void {
    if (watch.settled) return;
    if (this.watchFailureCode !== null) {
      this.rejectWatch(watch, this.watchFailureCode);
      return;
    }
    if (!sameValue(this.valueAt(watch.keyHex, this.committedVersion), watch.baseline)) {
      settleWatch(watch, true);
      return;
    }
    this.activeWatches.add(watch);
  }

  private rejectWatch(watch: FakeWatch, code: number): void {
    this.activeWatches.delete(watch);
    if (watch.settled) return;
    watch.settled = true;
    watch.reject(new FakeFdbError(code, 'watch failed'));
  }

  private checkSizes(state: TxnState): void {
    for (const { key, mutations } of state.writes.values()) {
      if (key.length > FDB_LIMITS.keyBytesMax) {
        this.stats.tooLarge++;
        throw new FakeFdbError(FDB_ERROR_CODE.keyTooLarge, 'key_too_large');
      }
      for (const mutation of mutations) {
        const bytes =
          mutation.kind === 'set'
            ? mutation.value.length
            : mutation.kind === 'add'
              ? mutation.operand.length
              : 0;
        if (bytes > FDB_LIMITS.valueBytesMax) {
          this.stats.tooLarge++;
          throw new FakeFdbError(FDB_ERROR_CODE.valueTooLarge, 'value_too_large');
        }
      }
    }
    if (state.writeBytes > FDB_LIMITS.transactionBytesMax) {
      this.stats.tooLarge++;
      throw new FakeFdbError(FDB_ERROR_CODE.transactionTooLarge, 'transaction_too_large');
    }
  }

  private conflicts(state: TxnState): boolean {
    for (const [beginHex, endHex] of state.readRanges) {
      for (let i = lowerBound(this.sortedKeys, beginHex); i < this.sortedKeys.length; i++) {
        const hex = this.sortedKeys[i] as string;
        if (hex >= endHex) break;
        if (this.lastWriteVersion(hex) > state.readVersion) return true;
      }
    }
    return false;
  }

  private apply(state: TxnState): void {
    const version = ++this.committedVersion;
    for (const [hex, { mutations }] of state.writes) {
      const before = this.valueAt(hex, version - 1);
      const after = applyMutations(before, mutations);
      let versions = this.history.get(hex);
      if (versions === undefined) {
        versions = [];
        this.history.set(hex, versions);
        this.sortedKeys.splice(lowerBound(this.sortedKeys, hex), 0, hex);
      }
      versions.push({ version, value: after });
      if (!sameValue(before, after)) this.fireWatches(hex);
    }
  }

  private fireWatches(keyHex: string): void {
    for (const watch of [...this.activeWatches]) {
      if (watch.keyHex !== keyHex) continue;
      this.activeWatches.delete(watch);
      settleWatch(watch, true);
    }
  }

  private valueAt(keyHex: string, version: number): Buffer | undefined {
    const versions = this.history.get(keyHex);
    if (versions === undefined) return undefined;
    for (let i = versions.length - 1; i >= 0; i--) {
      const entry = versions[i] as VersionedValue;
      if (entry.version <= version) return entry.value;
    }
    return undefined;
  }

  private lastWriteVersion(keyHex: string): number {
    const versions = this.history.get(keyHex);
    return versions === undefined || versions.length === 0
      ? 0
      : (versions[versions.length - 1] as VersionedValue).version;
  }
}

function settleWatch(watch: FakeWatch, fired: boolean): void {
  if (watch.settled) return;
  watch.settled = true;
  watch.resolve(fired);
}

class FakeFdbTransaction implements FdbTransaction {
  constructor(
    private readonly fdb: FakeFdb,
    private readonly state: TxnState,
    private readonly isSnapshot: boolean,
    private readonly onWatch: (watch: FdbWatch) => void,
  ) {}

  async get(key: Buffer): Promise<Buffer | undefined> {
    this.fdb.checkAlive(this.state);
    const hex = hexOf(key);
    if (!this.isSnapshot) this.state.readRanges.push([hex, `${hex}00`]);
    // Concurrent transactions interleave here as they would on a network.
    await this.fdb.latency();
    return this.fdb.readOwn(this.state, hex);
  }

  set(key: Buffer, value: Buffer): void {
    this.mutate(key, { kind: 'set', value: Buffer.from(value) }, value.length);
  }

  clear(key: Buffer): void {
    this.mutate(key, { kind: 'clear' }, 0);
  }

  add(key: Buffer, operand: Buffer): void {
    this.mutate(key, { kind: 'add', operand: Buffer.from(operand) }, operand.length);
  }

  async getRangeAll(start: Buffer, end: Buffer, options: FdbRangeOptions = {}): Promise<[Buffer, Buffer][]> {
    this.fdb.checkAlive(this.state);
    const beginHex = hexOf(start);
    const endHex = hexOf(end);
    if (!this.isSnapshot) this.state.readRanges.push([beginHex, endHex]);
    await this.fdb.latency();
    return this.fdb.rangeOwn(this.state, beginHex, endHex, options);
  }

  watch(key: Buffer): FdbWatch {
    const watch = this.fdb.newWatch(this.state, hexOf(key));
    this.onWatch(watch);
    return watch;
  }

  snapshot(): FdbTransaction {
    return new FakeFdbTransaction(this.fdb, this.state, true, this.onWatch);
  }

  addReadConflictKey(key: Buffer): void {
    const hex = hexOf(key);
    this.state.readRanges.push([hex, `${hex}00`]);
  }

  private mutate(key: Buffer, mutation: Mutation, valueBytes: number): void {
    if (this.state.done) throw new Error('transaction used after it finished');
    const hex = hexOf(key);
    let pending = this.state.writes.get(hex);
    if (pending === undefined) {
      pending = { key: Buffer.from(key), mutations: [] };
      this.state.writes.set(hex, pending);
    }
    pending.mutations.push(mutation);
    this.state.writeBytes += key.length + valueBytes;
  }
}

export class FakeFdbDatabase implements FdbDatabase {
  private closed = false;
  private readonly watches = new Set<FdbWatch>();

  constructor(readonly fdb: FakeFdb) {}

  async doTn<T>(body: (tn: FdbTransaction) => Promise<T>, options: FdbTransactionOptions = {}): Promise<T> {
    const retryLimit = options.retry_limit ?? FAKE_FDB_RETRY_LIMIT_MAX;
    const deadlineMs = options.timeout === undefined ? null : this.fdb.clock.monotonicMs() + options.timeout;
    for (let retries = 0; ; retries++) {
      if (this.closed) throw new Error('FakeFdbDatabase is closed');
      const state = this.fdb.beginTransaction(deadlineMs);
      const tn = new FakeFdbTransaction(this.fdb, state, false, (watch) => this.track(watch));
      try {
        const result = await body(tn);
        this.fdb.commit(state);
        return result;
      } catch (error) {
        if (!state.done) this.fdb.abandon(state);
        const retryable = error instanceof FakeFdbError && FDB_RETRYABLE_CODES.has(error.code);
        if (!retryable || retries >= retryLimit) throw error;
      }
      // The bindings back off before a retry (on the network's time, not the simulated clock).
      await this.fdb.latency();
    }
  }

  /** Cancels this handle's watches; the data stays in the FakeFdb for the next open(). */
  close(): void {
    this.closed = true;
    for (const watch of this.watches) watch.cancel();
    this.watches.clear();
  }

  private track(watch: FdbWatch): void {
    this.watches.add(watch);
    void watch.promise.then(
      () => this.watches.delete(watch),
      () => this.watches.delete(watch),
    );
  }
}
