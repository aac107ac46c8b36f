/**
 * The FoundationDB sequencer (RFC-0003 "The FoundationDB backend"): every method is one short
 * FDB transaction over `fdb-api.ts`, so the same code runs over the real bindings and over
 * `fdb-fake.ts`. FoundationDB gives the ordering (serialisable transactions, conflicts on the
 * counters we read); this file gives the idempotency that makes `doTn`'s retries (including
 * after commit_unknown_result) exactly-once.
 *
 * Keys are `fdb-tuple` encoded. Under `(root, clusterId)` (root defaults to "walship"):
 *
 *   ('seq', t)               last txn of t
 *   ('log', t, txnFirst)     an entry: (txnLast, staged, bytes, crc32, writer, writerEpoch, batchSeq, committedAtMs)
 *   ('writer', w)            (epoch, lastBatchSeq, fenced, ((t, txnFirst)…))
 *   ('writerEpoch', w, e)    (lastBatchSeq) of a closed epoch
 *   ('startAfter', t)        (txn) as initialize was given it
 *   ('changed')              8-byte little-endian counter, `add`ed at every commit: Heads.version
 *
 * and `(root, 'cluster')` holds the bound cluster id, so a store opened for another cluster (or
 * an initialize with another id) is refused instead of writing beside it.
 */
import { pack, range, type TupleItem, unpack } from 'fdb-tuple';
import {
  assert,
  type Clock,
  ClosedError,
  InvalidArgumentError,
  isWalshipError,
  systemClock,
} from '../core/index.js';
import { asTableKey } from '../table/index.js';
import {
  numberBatch,
  validateCommitRequest,
  validateReadLimit,
  validateTable,
  validateWriter,
} from './commit-request.js';
import {
  FDB_API_VERSION,
  type FdbDatabase,
  type FdbModule,
  type FdbTransaction,
  type FdbWatch,
  fdbErrorCode,
} from './fdb-api.js';
import {
  type CommitRequest,
  type CommitResult,
  FdbClientMissingError,
  type Heads,
  type LogEntry,
  SequencerBatchOrderError,
  SequencerClusterMismatchError,
  SequencerFencedError,
  SequencerNotInitializedError,
  type SequencerStore,
  SequencerUnavailableError,
  type WriterRecord,
} from './sequencer-store.js';

/** The default first tuple item of every key. */
export const FDB_KEYSPACE_ROOT_DEFAULT = 'walship';
/** Each doTn (with its retries) fails SEQUENCER_UNAVAILABLE after this long (FDB option `timeout`). */
export const FDB_TRANSACTION_TIMEOUT_MS_DEFAULT = 10_000;
/** The fallback poll of heads() while FDB watches fail (RFC-0003: 1 s). */
export const FDB_WATCH_POLL_INTERVAL_MS_DEFAULT = 1_000;
/** Concurrent watch() calls at most: FDB allows 10 000 watches per connection. */
export const FDB_WATCHERS_MAX = 10_000;
/** cluster id characters at most (as the SQLite backend). */
const CLUSTER_ID_CHARS_MAX = 128;

export interface FdbSequencerOptions {
  /** The cluster this store serves; absent: whatever cluster initialize binds. */
  clusterId?: string;
  /** First tuple item of every key; tests use their own to share one FDB cluster. */
  keyspaceRoot?: string;
  /** Wall clock for committedAtMs; sleeps of the fallback poll. Default: the system clock. */
  clock?: Clock;
  transactionTimeoutMs?: number;
  pollIntervalMs?: number;
}

/** The keys of one cluster (see the file comment). Exported for the layout tests. */
export class FdbKeyspace {
  readonly changed: Buffer;
  constructor(
    readonly root: string,
    readonly clusterId: string,
  ) {
    this.changed = this.key('changed');
  }
  static clusterKey(root: string): Buffer {
    return pack([root, 'cluster']);
  }
  seq(table: string): Buffer {
    return this.key('seq', table);
  }
  log(table: string, txnFirst: bigint): Buffer {
    return this.key('log', table, txnFirst);
  }
  writer(writer: string): Buffer {
    return this.key('writer', writer);
  }
  writerEpoch(writer: string, epoch: bigint): Buffer {
    return this.key('writerEpoch', writer, epoch);
  }
  startAfter(table: string): Buffer {
    return this.key('startAfter', table);
  }
  /** Every key starting with (root, clusterId, ...items). */
  range(...items: TupleItem[]): { begin: Buffer; end: Buffer } {
    return range([this.root, this.clusterId, ...items]);
  }
  /** The tuple items after (root, clusterId) of a key of this keyspace. */
  itemsOf(key: Buffer): TupleItem[] {
    const items = unpack(key);
    assert(items[0] === this.root && items[1] === this.clusterId, 'key outside the keyspace');
    return items.slice(2);
  }
  private key(...items: TupleItem[]): Buffer {
    return pack([this.root, this.clusterId, ...items]);
  }
}

interface StoredWriter {
  epoch: bigint;
  lastBatchSeq: bigint;
  fenced: boolean;
  lastBatch: [string, bigint][];
}

type WatchStep = { version: bigint } | { watch: FdbWatch };

export class FdbSequencerStore implements SequencerStore {
  private readonly db: FdbDatabase;
  /** The first tuple item of every key of this store. */
  readonly keyspaceRoot: string;
  private readonly expectedClusterId: string | null;
  private readonly clock: Clock;
  private readonly transactionTimeoutMs: number;
  private readonly pollIntervalMs: number;
  /** Set once the cluster key was read and matched: a binding never changes afterwards. */
  private keyspace: FdbKeyspace | null = null;
  private readonly closing = new AbortController();
  private watchers = 0;
  private closed = false;

  constructor(db: FdbDatabase, options: FdbSequencerOptions = {}) {
    this.db = db;
    this.keyspaceRoot = options.keyspaceRoot ?? FDB_KEYSPACE_ROOT_DEFAULT;
    if (options.clusterId !== undefined) validateClusterId(options.clusterId);
    this.expectedClusterId = options.clusterId ?? null;
    this.clock = options.clock ?? systemClock;
    this.transactionTimeoutMs = options.transactionTimeoutMs ?? FDB_TRANSACTION_TIMEOUT_MS_DEFAULT;
    this.pollIntervalMs = options.pollIntervalMs ?? FDB_WATCH_POLL_INTERVAL_MS_DEFAULT;
  }

  async initialize(clusterId: string, startAfter: Map<string, bigint>): Promise<void> {
    this.assertOpen();
    validateInitialize(clusterId, startAfter);
    if (this.expectedClusterId !== null && clusterId !== this.expectedClusterId)
      throw mismatch(this.expectedClusterId, clusterId);
    const keyspace = new FdbKeyspace(this.keyspaceRoot, clusterId);
    await this.run('initialize', async (tn) => {
      const boundValue = await tn.get(FdbKeyspace.clusterKey(this.keyspaceRoot));
      if (boundValue !== undefined) {
        const bound = decodeClusterId(boundValue);
        if (bound !== clusterId) throw mismatch(bound, clusterId);
        const stored = await tn.snapshot().getRangeAll(...rangeArgs(keyspace.range('startAfter')));
        if (!sameStartAfter(keyspace, stored, startAfter))
          throw new SequencerClusterMismatchError(
            `cluster ${JSON.stringify(clusterId)} was initialised with other startAfter values`,
          );
        return;
      }
      tn.set(FdbKeyspace.clusterKey(this.keyspaceRoot), pack([clusterId]));
      for (const [table, txn] of startAfter) {
        tn.set(keyspace.startAfter(table), pack([txn]));
        tn.set(keyspace.seq(table), pack([txn]));
      }
      tn.add(keyspace.changed, counterOperand(1n));
    });
    this.keyspace = keyspace;
  }

  async clusterId(): Promise<string | null> {
    this.assertOpen();
    return this.run('read the cluster id', async (tn) => {
      const value = await tn.snapshot().get(FdbKeyspace.clusterKey(this.keyspaceRoot));
      return value === undefined ? null : decodeClusterId(value);
    });
  }

  async registerWriter(writer: string): Promise<WriterRecord> {
    this.assertOpen();
    validateWriter(writer);
    return this.run('register a writer', async (tn) => {
      const keyspace = await this.requireKeyspace(tn);
      const stored = await readWriter(tn, keyspace, writer);
      const previous = stored?.epoch ?? 0n;
      // Epoch 0 is the placeholder fence() leaves for an unknown writer: never a real epoch.
      if (stored !== undefined && previous >= 1n)
        tn.set(keyspace.writerEpoch(writer, previous), pack([stored.lastBatchSeq]));
      const next: StoredWriter = { epoch: previous + 1n, lastBatchSeq: 0n, fenced: false, lastBatch: [] };
      tn.set(keyspace.writer(writer), encodeWriter(next));
      return writerRecordOf(writer, next, await readClosed(tn, keyspace, writer));
    });
  }

  async fence(writer: string, epoch: bigint): Promise<{ record: WriterRecord; heads: Heads }> {
    this.assertOpen();
    validateWriter(writer);
    if (typeof epoch !== 'bigint' || epoch < 0n)
      throw new InvalidArgumentError(`fence epoch ${String(epoch)} must be a bigint ≥ 0`);
    // Two transactions. The first reads ('writer', w) without snapshot and writes it: an
    // in-flight commit of w read the same key, so it is either ordered before this fence or
    // conflicts, retries and sees fenced. It reads nothing else, so its conflict window is one
    // read: a writer committing in a tight loop cannot starve it for long. The second reads the
    // heads after the fence committed, so they are at or above every entry of the fenced epochs
    // (snapshot reads: other writers' commits never conflict with a fence).
    const record = await this.run('fence a writer', async (tn) => {
      const keyspace = await this.requireKeyspace(tn);
      const [stored, closed] = await Promise.all([
        readWriter(tn, keyspace, writer),
        readClosed(tn, keyspace, writer),
      ]);
      let next = stored ?? { epoch: 0n, lastBatchSeq: 0n, fenced: true, lastBatch: [] };
      if (stored === undefined || stored.epoch <= epoch) {
        next = { ...next, fenced: true };
        tn.set(keyspace.writer(writer), encodeWriter(next));
      }
      return writerRecordOf(writer, next, closed);
    });
    return { record, heads: await this.heads() };
  }

  async commit(request: CommitRequest): Promise<CommitResult> {
    this.assertOpen();
    validateCommitRequest(request);
    return this.run('commit', (tn) => this.commitIn(tn, request));
  }

  async readLog(table: string, fromTxn: bigint, limit: number): Promise<LogEntry[]> {
    this.assertOpen();
    validateTable(table);
    validateReadLimit(limit);
    if (typeof fromTxn !== 'bigint' || fromTxn < 1n)
      throw new InvalidArgumentError(`readLog fromTxn ${String(fromTxn)} must be a bigint ≥ 1`);
    // One short transaction per page; snapshot reads (read-only, nothing to conflict with).
    return this.run('read the log', async (tn) => {
      const keyspace = await this.boundKeyspace(tn);
      if (keyspace === null) return [];
      const reader = tn.snapshot();
      const tableRange = keyspace.range('log', table);
      const fromKey = keyspace.log(table, fromTxn);
      const [holding] = await reader.getRangeAll(tableRange.begin, keyAfter(fromKey), {
        limit: 1,
        reverse: true,
      });
      const holdingEntry = holding === undefined ? undefined : decodeLogEntry(keyspace, holding);
      // The entry holding fromTxn starts the page; none (before the first entry) starts at fromTxn.
      const start =
        holding !== undefined && holdingEntry !== undefined && holdingEntry.txnLast >= fromTxn
          ? holding[0]
          : fromKey;
      const pairs = await reader.getRangeAll(start, tableRange.end, { limit });
      const entries = pairs.map((pair) => decodeLogEntry(keyspace, pair));
      for (let i = 1; i < entries.length; i++)
        assert(
          (entries[i] as LogEntry).txnFirst === (entries[i - 1] as LogEntry).txnLast + 1n,
          `log of ${table} is contiguous`,
        );
      return entries;
    });
  }

  async heads(): Promise<Heads> {
    this.assertOpen();
    return this.run('read the heads', async (tn) => {
      const keyspace = await this.boundKeyspace(tn);
      if (keyspace === null) return { version: 0n, tables: new Map() };
      return readHeads(tn.snapshot(), keyspace);
    });
  }

  async watch(after: bigint, signal: AbortSignal): Promise<bigint> {
    this.assertOpen();
    if (typeof after !== 'bigint' || after < 0n)
      throw new InvalidArgumentError(`watch after ${String(after)} must be a bigint ≥ 0`);
    if (this.watchers >= FDB_WATCHERS_MAX)
      throw new SequencerUnavailableError(`too many watchers (${FDB_WATCHERS_MAX}): retry later`);
    const stop = AbortSignal.any([signal, this.closing.signal]);
    this.watchers++;
    try {
      while (!stop.aborted) {
        const step = await this.watchStep(after).catch(() => null);
        if (step !== null && 'version' in step) return step.version;
        if (step !== null && (await awaitWatch(step.watch, stop)) === 'fired') continue;
        // The watch could not be set or failed: the RFC's fallback, one heads() poll per interval.
        const version = await this.pollOnce(stop);
        if (version !== null && version > after) return version;
      }
      return after;
    } finally {
      this.watchers--;
    }
  }

  async writers(): Promise<WriterRecord[]> {
    this.assertOpen();
    return this.run('read the writers', async (tn) => {
      const keyspace = await this.boundKeyspace(tn);
      if (keyspace === null) return [];
      const reader = tn.snapshot();
      const [writerPairs, epochPairs] = await Promise.all([
        reader.getRangeAll(...rangeArgs(keyspace.range('writer'))),
        reader.getRangeAll(...rangeArgs(keyspace.range('writerEpoch'))),
      ]);
      const closed = new Map<string, WriterRecord['closed']>();
      for (const [key, value] of epochPairs) {
        const [, writer, epoch] = keyspace.itemsOf(key);
        const list = closed.get(asString(writer)) ?? [];
        list.push({ epoch: asBigint(epoch), lastBatchSeq: asBigint(unpack(value)[0]) });
        closed.set(asString(writer), list);
      }
      return writerPairs.map(([key, value]) => {
        const writer = asString(keyspace.itemsOf(key)[1]);
        return writerRecordOf(writer, decodeWriter(value), closed.get(writer) ?? []);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    this.db.close();
  }

  /** RFC-0003 commit steps (1)–(5), one FDB transaction; doTn may run it again after 1020/1021. */
  private async commitIn(tn: FdbTransaction, request: CommitRequest): Promise<CommitResult> {
    const keyspace = await this.requireKeyspace(tn);
    // 2 + one read per table, in parallel; the ('seq', t) reads are what serialise two writers.
    const [stored, ...headValues] = await Promise.all([
      readWriter(tn, keyspace, request.writer),
      ...request.segments.map((segment) => tn.get(keyspace.seq(segment.table))),
    ]);
    if (stored === undefined)
      throw new SequencerFencedError(`writer ${request.writer} is not registered: register it first`);
    if (stored.fenced || stored.epoch !== request.writerEpoch)
      throw new SequencerFencedError(
        `writer ${request.writer} epoch ${request.writerEpoch} is fenced (current epoch ${stored.epoch}${stored.fenced ? ', fenced' : ''})`,
        { details: { writer: request.writer, writerEpoch: request.writerEpoch, currentEpoch: stored.epoch } },
      );
    if (request.batchSeq === stored.lastBatchSeq)
      return { entries: await readLastBatch(tn.snapshot(), keyspace, stored), replayed: true };
    if (request.batchSeq !== stored.lastBatchSeq + 1n)
      throw new SequencerBatchOrderError(
        `writer ${request.writer} epoch ${request.writerEpoch} sent batch ${request.batchSeq} after batch ${stored.lastBatchSeq}: expected ${stored.lastBatchSeq} (a retry) or ${stored.lastBatchSeq + 1n}`,
      );
    const heads = new Map<string, bigint>();
    request.segments.forEach((segment, index) => {
      const value = headValues[index];
      heads.set(segment.table, value === undefined ? 0n : asBigint(unpack(value)[0]));
    });
    const entries = numberBatch(request, (table) => heads.get(table) ?? 0n, this.clock.wallMs());
    for (const entry of entries) {
      tn.set(keyspace.seq(entry.table), pack([entry.txnLast]));
      tn.set(keyspace.log(entry.table, entry.txnFirst), encodeLogValue(entry));
    }
    const next: StoredWriter = {
      epoch: stored.epoch,
      lastBatchSeq: request.batchSeq,
      fenced: false,
      lastBatch: entries.map((entry) => [entry.table, entry.txnFirst]),
    };
    tn.set(keyspace.writer(request.writer), encodeWriter(next));
    tn.add(keyspace.changed, counterOperand(1n));
    return { entries, replayed: false };
  }

  /** Reads ('changed') and returns it when past `after`, else a watch on it (awaited outside). */
  private watchStep(after: bigint): Promise<WatchStep> {
    return this.run('watch', async (tn): Promise<WatchStep> => {
      const keyspace = await this.boundKeyspace(tn);
      // Before initialize, watch the cluster key: initialize writes it (and bumps the counter).
      const key = keyspace === null ? FdbKeyspace.clusterKey(this.keyspaceRoot) : keyspace.changed;
      const value = keyspace === null ? undefined : await tn.get(keyspace.changed);
      const version = value === undefined ? 0n : decodeCounter(value);
      if (version > after) return { version };
      return { watch: tn.watch(key) };
    });
  }

  /** Sleeps one poll interval, then reads the heads version; null when stopped or it failed. */
  private async pollOnce(stop: AbortSignal): Promise<bigint | null> {
    try {
      await this.clock.sleep(this.pollIntervalMs, stop);
    } catch {
      return null;
    }
    try {
      return (await this.heads()).version;
    } catch {
      return null;
    }
  }

  private async run<T>(what: string, body: (tn: FdbTransaction) => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await this.db.doTn(body, { timeout: this.transactionTimeoutMs });
    } catch (error) {
      if (isWalshipError(error)) throw error;
      if (this.closed) throw new ClosedError(`the FoundationDB sequencer was closed during ${what}`);
      const code = fdbErrorCode(error);
      if (code !== undefined)
        throw new SequencerUnavailableError(
          `FoundationDB failed to ${what} (FDB error ${code}); for a commit the outcome is unknown: send the same request again`,
          { cause: error, details: { fdbErrorCode: code } },
        );
      throw error;
    }
  }

  /** The bound keyspace, or null before initialize; a binding to another cluster is refused. */
  private async boundKeyspace(tn: FdbTransaction): Promise<FdbKeyspace | null> {
    if (this.keyspace !== null) return this.keyspace;
    // Snapshot: the binding is written once and never changes, so nothing to conflict with.
    const value = await tn.snapshot().get(FdbKeyspace.clusterKey(this.keyspaceRoot));
    if (value === undefined) return null;
    const bound = decodeClusterId(value);
    if (this.expectedClusterId !== null && bound !== this.expectedClusterId)
      throw mismatch(bound, this.expectedClusterId);
    this.keyspace = new FdbKeyspace(this.keyspaceRoot, bound);
    return this.keyspace;
  }

  private async requireKeyspace(tn: FdbTransaction): Promise<FdbKeyspace> {
    const keyspace = await this.boundKeyspace(tn);
    if (keyspace === null)
      throw new SequencerNotInitializedError(
        'the sequencer is not initialised: run `walship sequencer init` first',
      );
    return keyspace;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('the FoundationDB sequencer is closed');
  }
}

/** A store over an open database handle (the real bindings' or a FakeFdb's); close() closes it. */
export function createFdbSequencerOver(
  db: FdbDatabase,
  options: FdbSequencerOptions = {},
): FdbSequencerStore {
  return new FdbSequencerStore(db, options);
}

let fdbModule: Promise<FdbModule> | null = null;

/**
 * `import('foundationdb')` once per process, with `setAPIVersion(720)` once; a failure (no
 * bindings, no libfdb_c.so, an older client library) is FDB_CLIENT_MISSING with the cause.
 */
export function loadFdbModule(): Promise<FdbModule> {
  fdbModule ??= importFdbModule().catch((error: unknown) => {
    fdbModule = null;
    throw error;
  });
  return fdbModule;
}

async function importFdbModule(): Promise<FdbModule> {
  // A variable specifier: tsc must not look for the optional package's types.
  const specifier = 'foundationdb';
  let loaded: unknown;
  try {
    loaded = await import(specifier);
  } catch (cause) {
    throw new FdbClientMissingError({ cause });
  }
  const module = ((loaded as { default?: unknown }).default ?? loaded) as FdbModule;
  try {
    module.setAPIVersion(FDB_API_VERSION);
  } catch (cause) {
    throw new FdbClientMissingError({ cause });
  }
  return module;
}

/**
 * Opens the FoundationDB sequencer (FDB_CLIENT_MISSING where the client is absent): of `clusterId`
 * when given, else of whatever cluster the database was initialised for (`walship sequencer init`).
 */
export async function openFdbSequencer(
  options: { clusterFile?: string; clusterId?: string; keyspaceRoot?: string; clock?: Clock } = {},
): Promise<FdbSequencerStore> {
  if (options.clusterId !== undefined) validateClusterId(options.clusterId);
  const fdb = await loadFdbModule();
  const db = fdb.open(options.clusterFile);
  const storeOptions: FdbSequencerOptions = {};
  if (options.clusterId !== undefined) storeOptions.clusterId = options.clusterId;
  if (options.keyspaceRoot !== undefined) storeOptions.keyspaceRoot = options.keyspaceRoot;
  if (options.clock !== undefined) storeOptions.clock = options.clock;
  return createFdbSequencerOver(db, storeOptions);
}

/** Resolves 'fired' when the watch fired, 'failed' when it failed or was cancelled, 'stopped' on stop. */
async function awaitWatch(watch: FdbWatch, stop: AbortSignal): Promise<'fired' | 'failed' | 'stopped'> {
  let onStop: (() => void) | undefined;
  const stopped = new Promise<'stopped'>((resolve) => {
    onStop = () => resolve('stopped');
    if (stop.aborted) onStop();
    else stop.addEventListener('abort', onStop, { once: true });
  });
  const outcome = await Promise.race([
    watch.promise.then(
      (fired): 'fired' | 'failed' => (fired ? 'fired' : 'failed'),
      (): 'failed' => 'failed',
    ),
    stopped,
  ]);
  if (onStop !== undefined) stop.removeEventListener('abort', onStop);
  if (outcome !== 'fired') watch.cancel();
  return outcome;
}

function validateClusterId(clusterId: string): void {
  if (typeof clusterId !== 'string' || clusterId.length < 1 || clusterId.length > CLUSTER_ID_CHARS_MAX)
    throw new InvalidArgumentError(`cluster id must be 1..${CLUSTER_ID_CHARS_MAX} characters`);
}

function validateInitialize(clusterId: string, startAfter: Map<string, bigint>): void {
  validateClusterId(clusterId);
  if (!(startAfter instanceof Map))
    throw new InvalidArgumentError('startAfter must be a Map of table key to txn');
  for (const [table, txn] of startAfter) {
    validateTable(table);
    if (typeof txn !== 'bigint' || txn < 0n)
      throw new InvalidArgumentError(`startAfter of ${table} must be a bigint ≥ 0, got ${String(txn)}`);
  }
}

function mismatch(bound: string, asked: string): SequencerClusterMismatchError {
  return new SequencerClusterMismatchError(
    `this sequencer is bound to cluster ${JSON.stringify(bound)}, not ${JSON.stringify(asked)}`,
  );
}

function rangeArgs(keys: { begin: Buffer; end: Buffer }): [Buffer, Buffer] {
  return [keys.begin, keys.end];
}

/** The first key after `key`: an end bound that includes `key` itself. */
function keyAfter(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

function sameStartAfter(
  keyspace: FdbKeyspace,
  stored: [Buffer, Buffer][],
  wanted: Map<string, bigint>,
): boolean {
  if (stored.length !== wanted.size) return false;
  return stored.every(
    ([key, value]) => wanted.get(asString(keyspace.itemsOf(key)[1])) === asBigint(unpack(value)[0]),
  );
}

async function readHeads(reader: FdbTransaction, keyspace: FdbKeyspace): Promise<Heads> {
  const [pairs, changed] = await Promise.all([
    reader.getRangeAll(...rangeArgs(keyspace.range('seq'))),
    reader.get(keyspace.changed),
  ]);
  const tables = new Map<string, bigint>();
  for (const [key, value] of pairs)
    tables.set(asString(keyspace.itemsOf(key)[1]), asBigint(unpack(value)[0]));
  return { version: changed === undefined ? 0n : decodeCounter(changed), tables };
}

async function readWriter(
  tn: FdbTransaction,
  keyspace: FdbKeyspace,
  writer: string,
): Promise<StoredWriter | undefined> {
  const value = await tn.get(keyspace.writer(writer));
  return value === undefined ? undefined : decodeWriter(value);
}

async function readClosed(
  tn: FdbTransaction,
  keyspace: FdbKeyspace,
  writer: string,
): Promise<WriterRecord['closed']> {
  const pairs = await tn.snapshot().getRangeAll(...rangeArgs(keyspace.range('writerEpoch', writer)));
  return pairs.map(([key, value]) => ({
    epoch: asBigint(keyspace.itemsOf(key)[2]),
    lastBatchSeq: asBigint(unpack(value)[0]),
  }));
}

async function readLastBatch(
  reader: FdbTransaction,
  keyspace: FdbKeyspace,
  stored: StoredWriter,
): Promise<LogEntry[]> {
  const values = await Promise.all(
    stored.lastBatch.map(([table, txnFirst]) => reader.get(keyspace.log(table, txnFirst))),
  );
  return values.map((value, index) => {
    const [table, txnFirst] = stored.lastBatch[index] as [string, bigint];
    assert(value !== undefined, `the last batch's entry ${table}/${txnFirst} is in the log`);
    return decodeLogEntry(keyspace, [keyspace.log(table, txnFirst), value]);
  });
}

function writerRecordOf(writer: string, stored: StoredWriter, closed: WriterRecord['closed']): WriterRecord {
  return { writer, epoch: stored.epoch, lastBatchSeq: stored.lastBatchSeq, fenced: stored.fenced, closed };
}

function encodeWriter(stored: StoredWriter): Buffer {
  return pack([
    stored.epoch,
    stored.lastBatchSeq,
    stored.fenced,
    stored.lastBatch.map(([table, txn]) => [table, txn]),
  ]);
}

function decodeWriter(value: Buffer): StoredWriter {
  const [epoch, lastBatchSeq, fenced, pairs] = unpack(value);
  assert(
    Array.isArray(pairs) && typeof fenced === 'boolean',
    'a writer record is (epoch, lastBatchSeq, fenced, pairs)',
  );
  return {
    epoch: asBigint(epoch),
    lastBatchSeq: asBigint(lastBatchSeq),
    fenced,
    lastBatch: pairs.map((pair) => {
      assert(Array.isArray(pair), 'a last-batch pair is (table, txnFirst)');
      return [asString(pair[0]), asBigint(pair[1])];
    }),
  };
}

function encodeLogValue(entry: LogEntry): Buffer {
  return pack([
    entry.txnLast,
    entry.staged,
    entry.bytes,
    entry.crc32,
    entry.writer,
    entry.writerEpoch,
    entry.batchSeq,
    entry.committedAtMs,
  ]);
}

function decodeLogEntry(keyspace: FdbKeyspace, [key, value]: [Buffer, Buffer]): LogEntry {
  const [, table, txnFirst] = keyspace.itemsOf(key);
  const [txnLast, staged, bytes, crc32, writer, writerEpoch, batchSeq, committedAtMs] = unpack(value);
  return {
    table: asTableKey(asString(table)),
    txnFirst: asBigint(txnFirst),
    txnLast: asBigint(txnLast),
    staged: asString(staged),
    bytes: asNumber(bytes),
    crc32: asNumber(crc32),
    writer: asString(writer),
    writerEpoch: asBigint(writerEpoch),
    batchSeq: asBigint(batchSeq),
    committedAtMs: asNumber(committedAtMs),
  };
}

function decodeClusterId(value: Buffer): string {
  return asString(unpack(value)[0]);
}

/** ('changed') is an 8-byte little-endian counter (FDB's atomic add works on little-endian). */
function counterOperand(increment: bigint): Buffer {
  const operand = Buffer.alloc(8);
  operand.writeBigUInt64LE(increment);
  return operand;
}

function decodeCounter(value: Buffer): bigint {
  assert(value.length === 8, 'the changed counter is 8 bytes');
  return value.readBigUInt64LE();
}

/** fdb-tuple decodes small integers as numbers and large ones as bigints: one type for both. */
function asBigint(item: TupleItem | undefined): bigint {
  assert(
    typeof item === 'bigint' || (typeof item === 'number' && Number.isSafeInteger(item)),
    'an integer item',
  );
  return BigInt(item as bigint | number);
}

function asNumber(item: TupleItem | undefined): number {
  const value = asBigint(item);
  assert(
    value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER),
    'a safe integer',
  );
  return Number(value);
}

function asString(item: TupleItem | undefined): string {
  assert(typeof item === 'string', 'a string item');
  return item;
}
