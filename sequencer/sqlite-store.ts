/**
 * The embedded SQLite sequencer (RFC-0003 "The SQLite backend"): one file, one process, one
 * connection holding the file's lock for its whole life. `walship sequencer serve` puts HTTP in
 * front of it; tests use it in-process.
 *
 * Commits are grouped: they queue, and each tick (setImmediate) one BEGIN IMMEDIATE transaction
 * applies up to `groupMax` of them, each in its own SAVEPOINT so a fenced or out-of-order one
 * rolls back alone; the group pays one fsync (synchronous=FULL) and every commit of it is
 * answered only after COMMIT returned. Everything durable lives in the file (SQLite recovers its
 * WAL at open); the only memory state is derived (the version cache, waiters, statistics: those
 * are sqlite-stats.ts's).
 */
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import {
  type Clock,
  ClosedError,
  InvalidArgumentError,
  isWalshipError,
  systemClock,
  WalshipError,
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
  type CommitRequest,
  type CommitResult,
  type Heads,
  type LogEntry,
  SequencerBatchOrderError,
  SequencerClusterMismatchError,
  SequencerFencedError,
  SequencerNotInitializedError,
  type SequencerStatus,
  type SequencerStore,
  SequencerUnavailableError,
  type WriterRecord,
} from './sequencer-store.js';
import {
  GroupStats,
  type SqliteGroupStatsSummary,
  type SqliteWriterActivity,
  writerActivity,
} from './sqlite-stats.js';

export type { SqliteWriterActivity } from './sqlite-stats.js';

/** Commits per group transaction by default (RFC-0003): bounds one transaction's work and latency. */
export const SQLITE_GROUP_MAX_DEFAULT = 256;
/** Largest groupMax accepted: a group is one synchronous transaction that blocks the event loop. */
export const SQLITE_GROUP_MAX_LIMIT = 4096;
/** Commits waiting for a group at most; beyond it commit fails SEQUENCER_UNAVAILABLE "queue full". */
export const SQLITE_QUEUE_COMMITS_MAX = 10_000;
/** Pending watch() calls at most; beyond it watch fails SEQUENCER_UNAVAILABLE (each holds a waiter). */
export const SQLITE_WATCHERS_MAX = 10_000;
/** cluster id characters at most: it is echoed in status and keys elsewhere. */
const CLUSTER_ID_CHARS_MAX = 128;
/** The layout of this file (PRAGMA user_version); another value is refused at open. */
const SEQUENCER_FORMAT_VERSION = 1;

const SCHEMA_DDL = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (table_key TEXT PRIMARY KEY, last_txn INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
  table_key TEXT NOT NULL, txn_first INTEGER NOT NULL, txn_last INTEGER NOT NULL,
  staged TEXT NOT NULL, bytes INTEGER NOT NULL, crc32 INTEGER NOT NULL,
  writer TEXT NOT NULL, writer_epoch INTEGER NOT NULL, batch_seq INTEGER NOT NULL,
  committed_at_ms INTEGER NOT NULL,
  PRIMARY KEY (table_key, txn_first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writers (
  writer TEXT PRIMARY KEY, epoch INTEGER NOT NULL, last_batch_seq INTEGER NOT NULL,
  last_batch TEXT NOT NULL, fenced INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writer_epochs (
  writer TEXT NOT NULL, epoch INTEGER NOT NULL, last_batch_seq INTEGER NOT NULL,
  closed_at_ms INTEGER NOT NULL, PRIMARY KEY (writer, epoch)
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0);
`;

/** Another process (or connection) holds the sequencer file: RFC-0003 allows one server per file. */
export class SequencerLockedError extends WalshipError {
  constructor(path: string, cause: unknown) {
    super(
      'SEQUENCER_LOCKED',
      'invalid',
      `another sequencer holds ${JSON.stringify(path)} (SQLite exclusive lock): stop it first, or use another file`,
      { cause, details: { path } },
    );
    this.name = 'SequencerLockedError';
  }
}

export interface SqliteSequencerOptions {
  /** The database file (`<data dir>/sequencer.sqlite`); created when absent, its directory must exist. */
  path: string;
  /** Wall clock for committedAtMs and ages; monotonic clock for statistics. Default: the system clock. */
  clock?: Clock;
  /** Commits per group transaction, 1..SQLITE_GROUP_MAX_LIMIT; default SQLITE_GROUP_MAX_DEFAULT. */
  groupMax?: number;
}

/** What `walship sequencer serve` shows on /status; the statistics are sqlite-stats.ts's. */
export interface SqliteSequencerStatus extends SequencerStatus, SqliteGroupStatsSummary {
  version: bigint;
  writerActivity: SqliteWriterActivity[];
  /** The database file plus its WAL file. */
  dbSizeBytes: number;
  queuedCommits: number;
  watchers: number;
}

interface QueuedCommit {
  request: CommitRequest;
  resolve(result: CommitResult): void;
  reject(error: unknown): void;
}

interface Waiter {
  after: bigint;
  resolve(version: bigint): void;
}

type Outcome = { ok: true; result: CommitResult } | { ok: false; error: unknown };

interface WriterRow {
  writer: string;
  epoch: bigint;
  last_batch_seq: bigint;
  last_batch: string;
  fenced: bigint;
}

interface LogRow {
  table_key: string;
  txn_first: bigint;
  txn_last: bigint;
  staged: string;
  bytes: bigint;
  crc32: bigint;
  writer: string;
  writer_epoch: bigint;
  batch_seq: bigint;
  committed_at_ms: bigint;
}

type Statements = ReturnType<typeof prepare>;

function prepare(db: Database.Database) {
  const statements = {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    savepoint: db.prepare('SAVEPOINT one_commit'),
    release: db.prepare('RELEASE one_commit'),
    rollbackTo: db.prepare('ROLLBACK TO one_commit'),
    metaGet: db.prepare('SELECT value FROM meta WHERE key = ?'),
    metaSet: db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    headGet: db.prepare('SELECT last_txn FROM heads WHERE table_key = ?'),
    headSet: db.prepare(
      'INSERT INTO heads (table_key, last_txn) VALUES (?, ?) ON CONFLICT (table_key) DO UPDATE SET last_txn = excluded.last_txn',
    ),
    headsAll: db.prepare('SELECT table_key, last_txn FROM heads ORDER BY table_key'),
    logInsert: db.prepare(
      `INSERT INTO log (table_key, txn_first, txn_last, staged, bytes, crc32, writer, writer_epoch, batch_seq, committed_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    logGet: db.prepare('SELECT * FROM log WHERE table_key = ? AND txn_first = ?'),
    logHolding: db.prepare(
      'SELECT txn_first, txn_last FROM log WHERE table_key = ? AND txn_first <= ? ORDER BY txn_first DESC LIMIT 1',
    ),
    logFrom: db.prepare(
      'SELECT * FROM log WHERE table_key = ? AND txn_first >= ? ORDER BY txn_first LIMIT ?',
    ),
    writerGet: db.prepare('SELECT * FROM writers WHERE writer = ?'),
    writerPut: db.prepare(
      `INSERT INTO writers (writer, epoch, last_batch_seq, last_batch, fenced) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (writer) DO UPDATE SET epoch = excluded.epoch, last_batch_seq = excluded.last_batch_seq,
       last_batch = excluded.last_batch, fenced = excluded.fenced`,
    ),
    writerBatch: db.prepare('UPDATE writers SET last_batch_seq = ?, last_batch = ? WHERE writer = ?'),
    writerFence: db.prepare('UPDATE writers SET fenced = 1 WHERE writer = ?'),
    writersAll: db.prepare('SELECT * FROM writers ORDER BY writer'),
    epochClose: db.prepare(
      'INSERT INTO writer_epochs (writer, epoch, last_batch_seq, closed_at_ms) VALUES (?, ?, ?, ?)',
    ),
    epochsOf: db.prepare('SELECT epoch, last_batch_seq FROM writer_epochs WHERE writer = ? ORDER BY epoch'),
    epochsAll: db.prepare('SELECT writer, epoch, last_batch_seq FROM writer_epochs ORDER BY writer, epoch'),
    vacuumInto: db.prepare('VACUUM INTO ?'),
  };
  for (const statement of Object.values(statements)) if (statement.reader) statement.safeIntegers(true);
  return statements;
}

export class SqliteSequencerStore implements SequencerStore {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly sql: Statements;
  private readonly clock: Clock;
  private readonly groupMax: number;
  private readonly queue: QueuedCommit[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly stats = new GroupStats();
  private tick: NodeJS.Immediate | null = null;
  /** The persisted meta.version; only this connection writes it (exclusive lock). */
  private version: bigint;
  private closed = false;

  private constructor(db: Database.Database, options: SqliteSequencerOptions, groupMax: number) {
    this.db = db;
    this.path = options.path;
    this.clock = options.clock ?? systemClock;
    this.groupMax = groupMax;
    this.sql = prepare(db);
    this.version = this.metaBigint('version') ?? 0n;
  }

  /**
   * Opens (creating when absent) the sequencer file and takes its exclusive lock for the life of
   * the store. A file another store holds fails at once with SEQUENCER_LOCKED (no busy wait).
   */
  static open(options: SqliteSequencerOptions): SqliteSequencerStore {
    const groupMax = options.groupMax ?? SQLITE_GROUP_MAX_DEFAULT;
    if (!Number.isInteger(groupMax) || groupMax < 1 || groupMax > SQLITE_GROUP_MAX_LIMIT)
      throw new InvalidArgumentError(
        `groupMax ${groupMax} must be an integer in 1..${SQLITE_GROUP_MAX_LIMIT}`,
      );
    if (typeof options.path !== 'string' || options.path.length === 0)
      throw new InvalidArgumentError('the sequencer needs a database file path');
    let db: Database.Database;
    try {
      // timeout 0: never wait for a lock; only another holder of the file can cause one.
      db = new Database(options.path, { timeout: 0 });
    } catch (error) {
      throw unavailable(`open the sequencer file ${JSON.stringify(options.path)}`, error);
    }
    try {
      configure(db, options.path);
      return new SqliteSequencerStore(db, options, groupMax);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  async initialize(clusterId: string, startAfter: Map<string, bigint>): Promise<void> {
    this.assertOpen();
    validateInitialize(clusterId, startAfter);
    const wanted = startAfterJson(startAfter);
    this.transaction('initialize the sequencer', () => {
      const bound = this.metaText('cluster_id');
      if (bound !== null) {
        if (bound !== clusterId)
          throw new SequencerClusterMismatchError(
            `this sequencer is bound to cluster ${JSON.stringify(bound)}, not ${JSON.stringify(clusterId)}`,
          );
        if (this.metaText('start_after') !== wanted)
          throw new SequencerClusterMismatchError(
            `cluster ${JSON.stringify(clusterId)} was initialised with other startAfter values`,
          );
        return;
      }
      this.sql.metaSet.run('cluster_id', clusterId);
      this.sql.metaSet.run('start_after', wanted);
      for (const [table, txn] of startAfter) this.sql.headSet.run(table, txn);
      this.sql.metaSet.run('version', this.version + 1n);
    });
    // The heads changed only when initialize wrote; re-read rather than guess.
    this.publishVersion(this.metaBigint('version') ?? 0n);
  }

  async clusterId(): Promise<string | null> {
    this.assertOpen();
    return this.metaText('cluster_id');
  }

  async registerWriter(writer: string): Promise<WriterRecord> {
    this.assertOpen();
    validateWriter(writer);
    this.transaction('register a writer', () => {
      this.assertInitialized();
      const row = this.writerRow(writer);
      const previous = row?.epoch ?? 0n;
      // Epoch 0 is the placeholder fence() leaves for an unknown writer: never a real epoch.
      if (row !== undefined && previous >= 1n)
        this.sql.epochClose.run(writer, previous, row.last_batch_seq, this.clock.wallMs());
      this.sql.writerPut.run(writer, previous + 1n, 0n, '[]', 0);
    });
    return this.writerRecord(writer);
  }

  async fence(writer: string, epoch: bigint): Promise<{ record: WriterRecord; heads: Heads }> {
    this.assertOpen();
    validateWriter(writer);
    if (typeof epoch !== 'bigint' || epoch < 0n)
      throw new InvalidArgumentError(`fence epoch ${String(epoch)} must be a bigint ≥ 0`);
    this.transaction('fence a writer', () => {
      this.assertInitialized();
      const row = this.writerRow(writer);
      if (row === undefined) this.sql.writerPut.run(writer, 0n, 0n, '[]', 1);
      else if (row.epoch <= epoch) this.sql.writerFence.run(writer);
    });
    // Same event-loop turn as the fence: no group can run in between, so every entry of a
    // fenced epoch is at or below these heads.
    return { record: this.writerRecord(writer), heads: this.readHeads() };
  }

  commit(request: CommitRequest): Promise<CommitResult> {
    try {
      this.assertOpen();
      validateCommitRequest(request);
      if (this.queue.length >= SQLITE_QUEUE_COMMITS_MAX)
        throw new SequencerUnavailableError(
          `the sequencer queue is full (${SQLITE_QUEUE_COMMITS_MAX} commits waiting): retry the same request later`,
        );
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.scheduleTick();
    });
  }

  async readLog(table: string, fromTxn: bigint, limit: number): Promise<LogEntry[]> {
    this.assertOpen();
    validateTable(table);
    validateReadLimit(limit);
    if (typeof fromTxn !== 'bigint' || fromTxn < 1n)
      throw new InvalidArgumentError(`readLog fromTxn ${String(fromTxn)} must be a bigint ≥ 1`);
    const holding = this.sql.logHolding.get(table, fromTxn) as
      | { txn_first: bigint; txn_last: bigint }
      | undefined;
    // The entry holding fromTxn starts the page; none (before the first entry) starts at fromTxn.
    const start = holding !== undefined && holding.txn_last >= fromTxn ? holding.txn_first : fromTxn;
    const rows = this.sql.logFrom.all(table, start, limit) as LogRow[];
    return rows.map(logEntryOf);
  }

  async heads(): Promise<Heads> {
    this.assertOpen();
    return this.readHeads();
  }

  watch(after: bigint, signal: AbortSignal): Promise<bigint> {
    try {
      this.assertOpen();
      if (typeof after !== 'bigint' || after < 0n)
        throw new InvalidArgumentError(`watch after ${String(after)} must be a bigint ≥ 0`);
      if (this.version > after) return Promise.resolve(this.version);
      if (signal.aborted) return Promise.resolve(after);
      if (this.waiters.size >= SQLITE_WATCHERS_MAX)
        throw new SequencerUnavailableError(`too many watchers (${SQLITE_WATCHERS_MAX}): retry later`);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        after,
        resolve: (version) => {
          signal.removeEventListener('abort', onAbort);
          this.waiters.delete(waiter);
          resolve(version);
        },
      };
      const onAbort = () => waiter.resolve(after);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  async writers(): Promise<WriterRecord[]> {
    this.assertOpen();
    const closed = new Map<string, WriterRecord['closed']>();
    for (const row of this.sql.epochsAll.all() as {
      writer: string;
      epoch: bigint;
      last_batch_seq: bigint;
    }[]) {
      const list = closed.get(row.writer) ?? [];
      list.push({ epoch: row.epoch, lastBatchSeq: row.last_batch_seq });
      closed.set(row.writer, list);
    }
    return (this.sql.writersAll.all() as WriterRow[]).map((row) =>
      writerRecordOf(row, closed.get(row.writer) ?? []),
    );
  }

  /**
   * Applies what is queued (it was accepted), resolves pending watches with their `after`, and
   * closes the file, releasing its lock. Idempotent; every later call throws ClosedError.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.tick !== null) clearImmediate(this.tick);
    this.tick = null;
    while (this.queue.length > 0) this.runGroup();
    this.closed = true;
    for (const waiter of [...this.waiters]) waiter.resolve(waiter.after);
    this.db.close();
  }

  /** What /status shows: heads, writers and their last commit age, throughput, group size, fsync latency, size. */
  status(): SqliteSequencerStatus {
    this.assertOpen();
    const writers = this.writersSync();
    const nowMs = this.clock.wallMs();
    return {
      clusterId: this.metaText('cluster_id'),
      version: this.version,
      heads: this.readHeads(),
      writers,
      writerActivity: writerActivity(writers, (record) => this.lastCommitAtMs(record), nowMs),
      ...this.stats.summary(this.clock.monotonicMs()),
      dbSizeBytes: fileBytes(this.path) + fileBytes(`${this.path}-wal`),
      queuedCommits: this.queue.length,
      watchers: this.waiters.size,
    };
  }

  /**
   * A consistent copy of the whole sequencer in `toPath` (VACUUM INTO: a fresh, compact file).
   * `toPath` must not exist yet. Runs between groups, so it holds whole groups only.
   */
  async backup(toPath: string): Promise<void> {
    this.assertOpen();
    if (typeof toPath !== 'string' || toPath.length === 0)
      throw new InvalidArgumentError('backup needs a target file path');
    try {
      this.sql.vacuumInto.run(toPath);
    } catch (error) {
      throw unavailable(`back up the sequencer into ${JSON.stringify(toPath)}`, error);
    }
  }

  private scheduleTick(): void {
    if (this.tick !== null) return;
    this.tick = setImmediate(() => {
      this.tick = null;
      this.runGroup();
      if (this.queue.length > 0) this.scheduleTick();
    });
  }

  /** One group: up to groupMax queued commits in one transaction, one COMMIT, then the answers. */
  private runGroup(): void {
    const group = this.queue.splice(0, this.groupMax);
    if (group.length === 0) return;
    const outcomes = this.applyGroup(group);
    group.forEach((queued, index) => {
      const outcome = outcomes[index];
      if (outcome?.ok === true) queued.resolve(outcome.result);
      else queued.reject(outcome?.error);
    });
  }

  private applyGroup(group: QueuedCommit[]): Outcome[] {
    const committedAtMs = this.clock.wallMs();
    let changed = 0n;
    const outcomes: Outcome[] = [];
    try {
      this.sql.begin.run();
    } catch (error) {
      const failure = unavailable('begin a commit group', error);
      return group.map(() => ({ ok: false, error: failure }));
    }
    try {
      for (const queued of group) {
        const outcome = this.applyOne(queued.request, committedAtMs);
        if (outcome.ok && !outcome.result.replayed) changed += 1n;
        outcomes.push(outcome);
      }
      // Each commit that changed the log gets its own version step: two commits never share one.
      if (changed > 0n) this.sql.metaSet.run('version', this.version + changed);
      const commitStartMs = this.clock.monotonicMs();
      this.sql.commit.run();
      const commitMs = this.clock.monotonicMs() - commitStartMs;
      this.stats.record({
        nowMs: this.clock.monotonicMs(),
        groupSize: group.length,
        changed: Number(changed),
        commitMs,
      });
    } catch (error) {
      this.rollbackQuietly();
      const failure = unavailable('commit a group of commits', error);
      return group.map(() => ({ ok: false, error: failure }));
    }
    if (changed > 0n) this.publishVersion(this.version + changed);
    return outcomes;
  }

  /** One commit inside the group transaction, in its own savepoint: a failure rolls back alone. */
  private applyOne(request: CommitRequest, committedAtMs: number): Outcome {
    this.sql.savepoint.run();
    try {
      const result = this.applyCommit(request, committedAtMs);
      this.sql.release.run();
      return { ok: true, result };
    } catch (error) {
      this.sql.rollbackTo.run();
      this.sql.release.run();
      if (isWalshipError(error)) return { ok: false, error };
      // An SQLite failure inside one commit (disk full…): rethrown, it fails the whole group.
      throw error;
    }
  }

  /** RFC-0003 commit steps, as FDB does them: writer check, idempotency, number, record. */
  private applyCommit(request: CommitRequest, committedAtMs: number): CommitResult {
    this.assertInitialized();
    const row = this.writerRow(request.writer);
    if (row === undefined)
      throw new SequencerFencedError(`writer ${request.writer} is not registered: register it first`);
    if (row.fenced !== 0n || row.epoch !== request.writerEpoch)
      throw new SequencerFencedError(
        `writer ${request.writer} epoch ${request.writerEpoch} is fenced (current epoch ${row.epoch}${row.fenced !== 0n ? ', fenced' : ''})`,
        { details: { writer: request.writer, writerEpoch: request.writerEpoch, currentEpoch: row.epoch } },
      );
    if (request.batchSeq === row.last_batch_seq)
      return { entries: this.lastBatchEntries(row), replayed: true };
    if (request.batchSeq !== row.last_batch_seq + 1n)
      throw new SequencerBatchOrderError(
        `writer ${request.writer} epoch ${request.writerEpoch} sent batch ${request.batchSeq} after batch ${row.last_batch_seq}: expected ${row.last_batch_seq} (a retry) or ${row.last_batch_seq + 1n}`,
      );
    const entries = numberBatch(request, (table) => this.head(table), committedAtMs);
    for (const entry of entries) {
      this.sql.headSet.run(entry.table, entry.txnLast);
      this.sql.logInsert.run(
        entry.table,
        entry.txnFirst,
        entry.txnLast,
        entry.staged,
        entry.bytes,
        entry.crc32,
        entry.writer,
        entry.writerEpoch,
        entry.batchSeq,
        entry.committedAtMs,
      );
    }
    const lastBatch = JSON.stringify(entries.map((entry) => [entry.table, entry.txnFirst.toString()]));
    this.sql.writerBatch.run(request.batchSeq, lastBatch, request.writer);
    return { entries, replayed: false };
  }

  /** The stored entries of a writer's last batch, in request order (the replay answer). */
  private lastBatchEntries(row: WriterRow): LogEntry[] {
    return parseLastBatch(row.last_batch).map(([table, txnFirst]) => {
      const stored = this.sql.logGet.get(table, txnFirst) as LogRow | undefined;
      if (stored === undefined)
        throw new WalshipError(
          'ASSERTION_FAILED',
          'internal',
          `assertion failed: writer ${row.writer}'s last batch names ${table} txn ${txnFirst}, absent from the log`,
        );
      return logEntryOf(stored);
    });
  }

  private head(table: string): bigint {
    const row = this.sql.headGet.get(table) as { last_txn: bigint } | undefined;
    return row?.last_txn ?? 0n;
  }

  private readHeads(): Heads {
    const tables = new Map<string, bigint>();
    for (const row of this.sql.headsAll.all() as { table_key: string; last_txn: bigint }[])
      tables.set(row.table_key, row.last_txn);
    return { version: this.version, tables };
  }

  private writerRow(writer: string): WriterRow | undefined {
    return this.sql.writerGet.get(writer) as WriterRow | undefined;
  }

  private writerRecord(writer: string): WriterRecord {
    const row = this.writerRow(writer);
    if (row === undefined)
      throw new WalshipError('ASSERTION_FAILED', 'internal', `assertion failed: writer ${writer} vanished`);
    const closed = (this.sql.epochsOf.all(writer) as { epoch: bigint; last_batch_seq: bigint }[]).map(
      (epoch) => ({
        epoch: epoch.epoch,
        lastBatchSeq: epoch.last_batch_seq,
      }),
    );
    return writerRecordOf(row, closed);
  }

  private writersSync(): WriterRecord[] {
    return (this.sql.writersAll.all() as WriterRow[]).map((row) => this.writerRecord(row.writer));
  }

  /** committedAtMs of the writer's last batch of its current epoch, or null. */
  private lastCommitAtMs(record: WriterRecord): number | null {
    const row = this.writerRow(record.writer);
    const first = row === undefined ? undefined : parseLastBatch(row.last_batch)[0];
    if (first === undefined) return null;
    const stored = this.sql.logGet.get(first[0], first[1]) as LogRow | undefined;
    return stored === undefined ? null : Number(stored.committed_at_ms);
  }

  private publishVersion(version: bigint): void {
    if (version <= this.version) return;
    this.version = version;
    for (const waiter of [...this.waiters]) if (version > waiter.after) waiter.resolve(version);
  }

  private transaction(doing: string, fn: () => void): void {
    try {
      this.sql.begin.run();
    } catch (error) {
      throw unavailable(doing, error);
    }
    try {
      fn();
      this.sql.commit.run();
    } catch (error) {
      this.rollbackQuietly();
      throw isWalshipError(error) ? error : unavailable(doing, error);
    }
  }

  /** After a failed statement SQLite may have rolled back already; a second failure adds nothing. */
  private rollbackQuietly(): void {
    try {
      if (this.db.inTransaction) this.sql.rollback.run();
    } catch {
      // The original error is what the caller reports.
    }
  }

  private assertInitialized(): void {
    if (this.metaText('cluster_id') === null)
      throw new SequencerNotInitializedError(
        'the sequencer is not initialised: run `walship sequencer init` first',
      );
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('the SQLite sequencer is closed');
  }

  private metaText(key: string): string | null {
    const row = this.sql.metaGet.get(key) as { value: unknown } | undefined;
    return typeof row?.value === 'string' ? row.value : null;
  }

  private metaBigint(key: string): bigint | null {
    const row = this.sql.metaGet.get(key) as { value: unknown } | undefined;
    return typeof row?.value === 'bigint' ? row.value : null;
  }
}

/** Pragmas, lock and schema. The first write takes the exclusive lock, held until close. */
function configure(db: Database.Database, path: string): void {
  try {
    // Before the first WAL access: no shared-memory wal-index, and the lock is never released.
    db.pragma('locking_mode = EXCLUSIVE');
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal')
      throw new WalshipError(
        'STORAGE_FAILED',
        'unavailable',
        `SQLite refused WAL journal mode for the sequencer (got '${String(mode)}')`,
      );
    db.pragma('synchronous = FULL');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== 0 && version !== SEQUENCER_FORMAT_VERSION)
      throw new WalshipError(
        'SEQUENCER_FORMAT_UNSUPPORTED',
        'invalid',
        `${JSON.stringify(path)} has sequencer layout ${version}; this walship reads layout ${SEQUENCER_FORMAT_VERSION} (a foreign file?)`,
      );
    db.exec(`BEGIN IMMEDIATE; ${SCHEMA_DDL} PRAGMA user_version = ${SEQUENCER_FORMAT_VERSION}; COMMIT;`);
  } catch (error) {
    if (isWalshipError(error)) throw error;
    if (isBusy(error)) throw new SequencerLockedError(path, error);
    throw unavailable(`set up the sequencer file ${JSON.stringify(path)}`, error);
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

function unavailable(doing: string, cause: unknown): WalshipError {
  if (isWalshipError(cause)) return cause;
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new SequencerUnavailableError(`could not ${doing}: ${reason}`, { cause });
}

function validateInitialize(clusterId: string, startAfter: Map<string, bigint>): void {
  if (typeof clusterId !== 'string' || clusterId.length < 1 || clusterId.length > CLUSTER_ID_CHARS_MAX)
    throw new InvalidArgumentError(`cluster id must be 1..${CLUSTER_ID_CHARS_MAX} characters`);
  if (!(startAfter instanceof Map))
    throw new InvalidArgumentError('startAfter must be a Map of table key to txn');
  for (const [table, txn] of startAfter) {
    validateTable(table);
    if (typeof txn !== 'bigint' || txn < 0n)
      throw new InvalidArgumentError(`startAfter of ${table} must be a bigint ≥ 0, got ${String(txn)}`);
  }
}

/** Canonical JSON of startAfter (sorted by table), so equal maps compare equal as text. */
function startAfterJson(startAfter: Map<string, bigint>): string {
  const pairs = [...startAfter].map(([table, txn]) => [table, txn.toString()]);
  pairs.sort((a, b) => ((a[0] ?? '') < (b[0] ?? '') ? -1 : 1));
  return JSON.stringify(pairs);
}

function parseLastBatch(text: string): [string, bigint][] {
  return (JSON.parse(text) as [string, string][]).map(([table, txnFirst]) => [table, BigInt(txnFirst)]);
}

function logEntryOf(row: LogRow): LogEntry {
  return {
    table: asTableKey(row.table_key),
    txnFirst: row.txn_first,
    txnLast: row.txn_last,
    staged: row.staged,
    bytes: Number(row.bytes),
    crc32: Number(row.crc32),
    writer: row.writer,
    writerEpoch: row.writer_epoch,
    batchSeq: row.batch_seq,
    committedAtMs: Number(row.committed_at_ms),
  };
}

function writerRecordOf(row: WriterRow, closed: WriterRecord['closed']): WriterRecord {
  return {
    writer: row.writer,
    epoch: row.epoch,
    lastBatchSeq: row.last_batch_seq,
    fenced: row.fenced !== 0n,
    closed,
  };
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
