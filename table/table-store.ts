import Database from 'better-sqlite3';
import { type Clock, ClosedError, systemClock, WalshipError } from '../core/index.js';
import {
  type BatchStamp,
  DESIGNATED_TIMESTAMP_COLUMN,
  TABLE_OP_KINDS,
  type TableTtl,
  type TxnRecord,
} from '../wal/index.js';
import { applyPlan, memoOf, planColumns } from './apply-plan.js';
import { BATCH_LEDGER_DDL, BatchLedger, type BatchLookup } from './batch-ledger.js';
import { asTableKey, type TableKey, tableKey, validateTableName } from './names.js';
import {
  designatedTimestamps,
  pendingRecords,
  planRollback,
  ROLLBACK_CHUNK_BYTES,
  unsafe as rollbackUnsafe,
} from './pending-rollback.js';
import { blockSizes, insertRows, valuesList } from './row-inserter.js';
import {
  columnDefinition,
  createTableSql,
  METADATA_DDL,
  quoteIdentifier,
  STORE_FORMAT_VERSION,
  storageError,
} from './store-sql.js';
import { TABLE_DEDUP_META_PREFIX, TABLE_TTL_META_PREFIX } from './table-meta-keys.js';
import { type ColumnSchema, freezeSchema, isDropped, type TableSchema } from './table-schema.js';
import {
  type ColumnPlan,
  type InsertsBySize,
  type PendingTxn,
  type TableState,
  TableStateCache,
} from './table-state.js';
import { WalSync } from './wal-sync.js';

export type { PendingTxn } from './table-state.js';

/**
 * All of a node's tables in ONE SQLite database file (better-sqlite3, synchronous), so one SQLite
 * transaction commits a request that touches several tables: all or nothing (DESIGN §5 step 2).
 * Holds the user tables (named as users spell them, so `SELECT * FROM trades` works), their
 * schemas and watermarks, the pending queue of encoded txn records awaiting upload, and a small
 * key/value table of node facts. The metadata layout is in store-sql.ts.
 *
 * Durability: WAL journal mode with `synchronous=FULL` unless told otherwise, so a commit that
 * returned survives power loss. Schemas, watermarks and each table's last apply plan are cached in
 * memory; the cache drops whatever a rolled-back transaction touched, and everything when another
 * connection committed (`PRAGMA data_version`), so it never shows what the database does not hold.
 *
 * One writer per file: a node opens one writable store; read-only stores (query workers) may
 * sit beside it. Not safe to share across threads (better-sqlite3 connections are not).
 */

/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5_000;

/**
 * WAL pages (4 KiB) past which a commit checkpoints them into the database file (SQLite's
 * `wal_autocheckpoint`; its default is 1 000, ~4 MiB). Each table a commit writes to dirties at
 * least a page of its own, so with SQLite's default a request over a thousand tables checkpointed
 * at every commit, writing and syncing every page twice (issue 15: the COMMIT took 2–3× as long).
 * 8 192 (~32 MiB) checkpoints such writes every few requests, a page written by several of them
 * once. What a commit makes durable is unchanged: the WAL is synced at every commit
 * (`synchronous=FULL`); the WAL file grows to about this size plus one commit and is reused.
 */
const WAL_AUTOCHECKPOINT_PAGES = 8_192;

/**
 * Prepared INSERTs kept per store (up to three per table and column set, by rows per statement:
 * row-inserter.ts), the least recently used going beyond either bound. Preparing one costs several
 * µs and each holds ~2 KiB plus ~0.1 KiB per parameter, so 4096 statements and 262 144 parameters
 * (~35 MiB at most) keep a request that writes a few columns to each of a thousand tables from
 * preparing anything.
 */
const MAX_CACHED_INSERTS = 4096;
const MAX_CACHED_INSERT_PARAMETERS = 262_144;

/** A prepared INSERT in the store's cache, and the plan's statements by rows that hold it too. */
interface CachedInsert {
  statement: Database.Statement;
  parameters: number;
  rows: number;
  holder: Map<number, Database.Statement>;
}

export interface TableStoreOptions {
  /** Open an existing store without write access (default false). */
  readonly?: boolean;
  /** SQLite `synchronous` (default 'FULL': a returned commit survives power loss; 'NORMAL' may lose the last ones). */
  synchronous?: 'FULL' | 'NORMAL';
  /** Wall clock for `created_at` (default the system clock). */
  clock?: Clock;
}

/** What another connection committed to one table (TableStore.noteCommitted). */
export interface CommittedElsewhere {
  table: string;
  lastTxn?: bigint;
  uploadedTxn?: bigint;
  /** The table's schema after the commit. */
  schema?: TableSchema;
  /** The commit changed more than rows and columns (upsert keys, TTL, a drop): read the table again. */
  reload?: boolean;
}

/** The pending queue of one table, summed. */
export interface PendingSummary {
  table: string;
  count: number;
  bytes: number;
  oldestTxn: bigint;
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  const prepare = (sql: string) => db.prepare(sql);
  const safe = (sql: string) => db.prepare(sql).safeIntegers(true);
  return {
    begin: prepare('BEGIN IMMEDIATE'),
    commit: prepare('COMMIT'),
    rollback: prepare('ROLLBACK'),
    dataVersion: prepare('PRAGMA data_version').pluck(),
    table: safe('SELECT name, key, last_txn, uploaded_txn FROM _walship_tables WHERE key = ?'),
    tableKeys: prepare('SELECT key FROM _walship_tables ORDER BY name'),
    columns: prepare(
      'SELECT "column" AS name, type FROM _walship_columns WHERE "table" = ? ORDER BY position',
    ),
    insertTable: prepare(
      'INSERT INTO _walship_tables (name, key, last_txn, uploaded_txn, created_at) VALUES (?, ?, 0, 0, ?)',
    ),
    insertColumn: prepare(
      'INSERT INTO _walship_columns ("table", "column", type, position) VALUES (?, ?, ?, ?)',
    ),
    setLastTxn: prepare('UPDATE _walship_tables SET last_txn = ? WHERE key = ?'),
    setUploadedTxn: prepare('UPDATE _walship_tables SET uploaded_txn = ? WHERE key = ?'),
    enqueue: prepare('INSERT INTO _walship_pending ("table", txn, bytes) VALUES (?, ?, ?)'),
    pending: safe('SELECT txn, bytes FROM _walship_pending WHERE "table" = ? AND txn > ? ORDER BY txn'),
    dropPending: prepare('DELETE FROM _walship_pending WHERE "table" = ? AND txn <= ?'),
    pendingSummary: safe(
      `SELECT "table", count(*) AS count, sum(length(bytes)) AS bytes, min(txn) AS oldestTxn
       FROM _walship_pending GROUP BY "table" ORDER BY "table"`,
    ),
    getMeta: prepare('SELECT value FROM _walship_kv WHERE key = ?').pluck(),
    setMeta: prepare(
      'INSERT INTO _walship_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
  };
}

export class TableStore {
  private readonly db: Database.Database;
  private readonly sql: Statements;
  private readonly clock: Clock;
  readonly file: string;
  readonly readonly: boolean;
  /** The `synchronous` setting in force, as SQLite reports it after open. */
  readonly synchronous: 'FULL' | 'NORMAL';
  /** fsyncs the WAL for commits made by deferringSync (group commit off the event loop). */
  private readonly walSync: WalSync;
  /** Inside deferringSync: commits skip SQLite's own fsync. */
  private syncDeferred = false;
  private readonly cache = new TableStateCache();
  private readonly inserts = new Map<string, CachedInsert>();
  /** The batches known committed (RFC-0011), prepared on first use. */
  private ledgerOf: BatchLedger | undefined;
  /** The parameters of the statements in `inserts`, summed. */
  private insertParameters = 0;
  /** Folded names of the tables the current transaction changed: evicted if it rolls back. */
  private readonly dirty = new Set<string>();
  private inTransaction = false;
  /** Inside `batchReads`: the cache was checked against other connections at its start. */
  private inReadBatch = false;
  private dataVersion = -1;
  private closed = false;

  private constructor(db: Database.Database, file: string, options: TableStoreOptions) {
    this.db = db;
    this.file = file;
    this.readonly = options.readonly === true;
    this.clock = options.clock ?? systemClock;
    this.synchronous = db.pragma('synchronous', { simple: true }) === 2 ? 'FULL' : 'NORMAL';
    this.sql = prepareStatements(db);
    this.walSync = new WalSync(`${file}-wal`);
  }

  /**
   * Opens (and, unless `readonly`, creates) the store in `file`. Writable: WAL journal mode,
   * `synchronous` as given (FULL by default), busy timeout BUSY_TIMEOUT_MS, foreign keys off, the
   * metadata tables. Read-only: the file must exist and hold a store. Throws `STORAGE_FAILED`
   * when SQLite cannot open or set it up, `STORE_FORMAT_UNSUPPORTED` for another layout version.
   */
  static open(file: string, options: TableStoreOptions = {}): TableStore {
    const readonly = options.readonly === true;
    let db: Database.Database;
    try {
      db = new Database(file, { readonly, fileMustExist: readonly, timeout: BUSY_TIMEOUT_MS });
    } catch (error) {
      throw storageError(error, `open the table store ${JSON.stringify(file)}`);
    }
    try {
      configure(db, readonly, options.synchronous ?? 'FULL');
      return new TableStore(db, file, options);
    } catch (error) {
      db.close();
      throw storageError(error, `set up the table store ${JSON.stringify(file)}`);
    }
  }

  /** Closes the database. Idempotent; every later call throws ClosedError. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.walSync.close();
    this.clearInserts();
    this.db.close();
  }

  /**
   * Runs `fn` — the caller's commits through this store, synchronous or not — with SQLite's fsync
   * at commit off (`synchronous=NORMAL`) when the store syncs every commit (`synchronous=FULL`);
   * the caller then makes them durable with `syncWal()` before it reports any of them. A commit
   * stays atomic and consistent across a crash either way (WAL mode; checkpoints still fsync);
   * what waits for syncWal is only the power-loss durability of the last commits, and that wait
   * runs in the thread pool, shared by every commit made meanwhile (group commit). A store opened
   * with `synchronous=NORMAL` runs `fn` as it is.
   */
  deferringSync<T>(fn: () => T): T {
    if (this.synchronous !== 'FULL' || this.syncDeferred || this.inTransaction) return fn();
    this.setSynchronous('NORMAL');
    let result: T;
    try {
      result = fn();
    } catch (error) {
      this.setSynchronous('FULL');
      throw error;
    }
    if (!(result instanceof Promise)) {
      this.setSynchronous('FULL');
      return result;
    }
    return result.finally(() => this.setSynchronous('FULL')) as T;
  }

  /**
   * Resolves once every commit made so far is on disk (one fsync of the WAL in the thread pool,
   * shared with the other callers waiting then). At once for a store opened with
   * `synchronous=NORMAL`, which promises no more. Rejects with STORAGE_FAILED when the fsync fails.
   */
  async syncWal(): Promise<void> {
    if (this.synchronous !== 'FULL') return;
    try {
      await this.walSync.sync();
    } catch (error) {
      throw storageError(error, "sync the table store's WAL");
    }
  }

  /** fsync rounds of syncWal so far. */
  get walSyncs(): number {
    return this.walSync.rounds;
  }

  private setSynchronous(mode: 'FULL' | 'NORMAL'): void {
    this.syncDeferred = mode === 'NORMAL';
    if (this.closed) return;
    // Not a prepared statement: SQLite applies `PRAGMA synchronous = …` when it compiles it, so a
    // prepared one run again changes nothing (checked: it stays at FULL).
    this.db.pragma(`synchronous = ${mode}`);
  }

  /**
   * Runs `fn` in one SQLite transaction (BEGIN IMMEDIATE: the write lock is taken up front, so the
   * commit cannot fail on a lock upgrade) and commits; if `fn` throws, rolls back, drops what the
   * transaction changed from the caches, and rethrows. A nested call joins the outer transaction
   * (no savepoint): its error aborts the whole outer transaction unless the caller catches it, and
   * a caller that catches must not commit, since the failed step may be half done. `fn` must be
   * synchronous. Throws `READ_ONLY` on a read-only store. `aroundCommit`, if given, runs the COMMIT
   * (the write worker passes it through its write gate: write-gate.ts); ignored when joining.
   */
  transaction<T>(fn: () => T, aroundCommit?: (commit: () => void) => void): T {
    this.checkWritable('start a transaction');
    if (this.inTransaction) return fn();
    this.guard('begin a transaction', () => this.sql.begin.run());
    this.inTransaction = true;
    try {
      this.refreshCacheIfChanged(true);
      const result = fn();
      if (result instanceof Promise) {
        throw new WalshipError('ASYNC_TRANSACTION', 'internal', 'a transaction function must be synchronous');
      }
      const commit = () => this.guard('commit', () => this.sql.commit.run());
      if (aroundCommit === undefined) commit();
      else aroundCommit(commit);
      this.dirty.clear();
      return result;
    } catch (error) {
      this.rollback();
      throw error;
    } finally {
      this.inTransaction = false;
    }
  }

  /**
   * `transaction` for a write too large for one synchronous step: `fn` may await between its steps
   * (applyTxnInSlices), so the event loop keeps serving while ONE SQLite transaction stays open;
   * commits when `fn` resolves, rolls back (as `transaction`) when it rejects. The caller makes sure
   * nothing else writes through this store until it settles (the primary's committer holds its
   * write lock and defers the uploader's watermark writes): a `transaction` call meanwhile would
   * join this one. Reads on this connection meanwhile see the uncommitted changes. Throws
   * `NESTED_TRANSACTION` (internal) inside another transaction, `READ_ONLY` on a read-only store.
   */
  async transactionInSlices<T>(fn: () => Promise<T>): Promise<T> {
    this.checkWritable('start a transaction');
    if (this.inTransaction) {
      throw new WalshipError('NESTED_TRANSACTION', 'internal', 'a sliced transaction cannot be nested');
    }
    this.guard('begin a transaction', () => this.sql.begin.run());
    this.inTransaction = true;
    try {
      this.refreshCacheIfChanged(true);
      const result = await fn();
      this.checkOpen();
      this.guard('commit', () => this.sql.commit.run());
      this.dirty.clear();
      return result;
    } catch (error) {
      if (!this.closed) this.rollback();
      throw error;
    } finally {
      this.inTransaction = false;
    }
  }

  /**
   * `applyTxn` inside `transactionInSlices`: the same checks and effects, but the rows go in
   * `rowsPerSlice` at a time with `pause()` awaited between slices. lastTxn advances after the last
   * row, so until then the table's watermark does not show the txn.
   */
  async applyTxnInSlices(
    table: string,
    record: TxnRecord,
    options: { rowsPerSlice: number; pause: () => Promise<void> },
  ): Promise<void> {
    if (!this.inTransaction || !this.db.inTransaction) {
      throw new WalshipError('NOT_IN_TRANSACTION', 'internal', 'applyTxnInSlices needs transactionInSlices');
    }
    // A txn without rows has nothing to slice; it joins the open transaction.
    if (record.kind !== 'data') return this.applyTxns(table, [record]);
    const state = this.state(table);
    checkTxnFollows(table, state, state?.lastTxn ?? 0n, record);
    const plan = planColumns(table, state, record);
    const ready = this.ensureColumns(table, state, plan);
    this.markDirty(ready);
    const name = ready.schema.name;
    if (record.rowCount > 0) {
      const before = this.rowidBeforeInsert(ready);
      const insertOf = this.insertStatements(ready, plan, record);
      const sizes = blockSizes(record.columns.length);
      const step = Math.max(1, options.rowsPerSlice);
      for (let from = 0; from < record.rowCount; from += step) {
        const to = Math.min(record.rowCount, from + step);
        this.checkOpen();
        this.guard(
          () => `insert rows ${from}..${to - 1} of txn ${record.txn} into table ${JSON.stringify(name)}`,
          () => insertRows(insertOf, sizes, record.columns, to, from),
        );
        if (to < record.rowCount) await options.pause();
      }
      if (before !== undefined) this.replaceOlderRows(ready, before);
    }
    if (record.batch !== undefined) this.recordBatch(ready, record, record.batch);
    this.checkOpen();
    this.guard(
      () => `advance table ${JSON.stringify(name)} to txn ${record.txn}`,
      () => this.sql.setLastTxn.run(record.txn, ready.schema.key),
    );
    ready.lastTxn = record.txn;
  }

  /**
   * Rolls back after a failure; never throws, so the caller rethrows the error that matters. If
   * ROLLBACK itself fails, SQLite has usually rolled back already; the cache is then emptied whole.
   */
  private rollback(): void {
    let rolledBack = true;
    try {
      if (this.db.inTransaction) this.sql.rollback.run();
    } catch {
      rolledBack = false;
    }
    if (!rolledBack || this.db.inTransaction) this.cache.clear();
    for (const folded of this.dirty) this.cache.evict(folded);
    if (this.dirty.size > 0) this.clearInserts();
    this.dirty.clear();
  }

  /**
   * Runs the synchronous `fn`, whose reads of schemas and watermarks (`schema`, `lastTxn`,
   * `uploadedTxn`, …) use the cache as checked against other connections' commits once, when it
   * starts, rather than at every read: a caller that reads a thousand tables' schemas in one step
   * (the committer building a request) checks once, not a thousand times (each check is a
   * `PRAGMA data_version`, a few µs). A commit by another connection while `fn` runs may then go
   * unseen until `fn` returns; a transaction inside `fn` still checks at its start. Nested calls
   * join the outer one.
   */
  batchReads<T>(fn: () => T): T {
    if (this.inReadBatch) return fn();
    this.checkOpen();
    this.refreshCacheIfChanged();
    this.inReadBatch = true;
    try {
      return fn();
    } finally {
      this.inReadBatch = false;
    }
  }

  /** The schema of `table` (case-insensitive), or undefined for an unknown table. */
  schema(table: string): TableSchema | undefined {
    return this.state(table)?.schema;
  }

  /** Every table's schema, ordered by name (ASCII case-insensitively: the column is COLLATE NOCASE). */
  schemas(): TableSchema[] {
    this.checkOpen();
    this.refreshCacheIfChanged();
    // Keys come from this node's own database; one tableKey did not produce fails here (INVALID_TABLE_KEY).
    const keys = this.guard('list tables', () => this.sql.tableKeys.pluck().all() as string[]).map(
      asTableKey,
    );
    const schemas: TableSchema[] = [];
    for (const key of keys) {
      const state = this.cache.byKey(key) ?? this.loadByKey(key);
      if (state !== undefined) schemas.push(state.schema);
    }
    return schemas;
  }

  /** The last committed (primary) / applied (replica) txn of `table`; 0n for an unknown table. */
  lastTxn(table: string): bigint {
    return this.state(table)?.lastTxn ?? 0n;
  }

  /** The last txn of `table` known to be in the object store; 0n for an unknown table. */
  uploadedTxn(table: string): bigint {
    return this.state(table)?.uploadedTxn ?? 0n;
  }

  /**
   * Advances the uploaded watermark of `table` to `txn`. Throws `WATERMARK_INVALID` (internal: a
   * caller bug) when `txn` is below the current one or above lastTxn, `TABLE_UNKNOWN` for an
   * unknown table.
   */
  setUploadedTxn(table: string, txn: bigint): void {
    this.transaction(() => {
      const state = this.knownState(table, 'set the uploaded txn');
      if (txn < state.uploadedTxn || txn > state.lastTxn) {
        throw new WalshipError(
          'WATERMARK_INVALID',
          'internal',
          `table ${JSON.stringify(state.schema.name)}: uploaded txn ${txn} is outside ${state.uploadedTxn}..${state.lastTxn}`,
          {
            details: {
              table: state.schema.name,
              txn,
              uploadedTxn: state.uploadedTxn,
              lastTxn: state.lastTxn,
            },
          },
        );
      }
      this.guard('set the uploaded txn', () => this.sql.setUploadedTxn.run(txn, state.schema.key));
      this.markDirty(state);
      state.uploadedTxn = txn;
    });
  }

  /**
   * Applies one txn record of `table` (DESIGN §5 step 2, §6 apply), in the current transaction or
   * a new one. Requires `record.txn === lastTxn(table) + 1` (else `TXN_GAP`, kind data). Creates an
   * unknown table (name validated: `INVALID_NAME`), adds every column the record carries that the
   * table lacks, checks the types of the others (`TYPE_CONFLICT`, kind data), inserts the rows and
   * advances lastTxn. A data record with rows must carry the designated `timestamp` column without
   * nulls (`TIMESTAMP_MISSING`, kind data). A fence only advances lastTxn. Every check runs before
   * the first write; after one, only a storage failure (`STORAGE_FAILED`) can stop it half way.
   */
  applyTxn(table: string, record: TxnRecord): void {
    this.applyTxns(table, [record]);
  }

  /**
   * Applies `records`, consecutive txns of `table`, each as `applyTxn` does (the same checks, per
   * record, before that record's first write), in the current transaction or a new one, but writes
   * the table's lastTxn once, after the last record: a replica applies a segment this way. When a
   * record fails, what the records before it wrote is still in the transaction: in a new one it is
   * rolled back with them, and a caller whose transaction this joined must not commit (see
   * `transaction`). lastTxn(table) shows the last record only once they all went in.
   */
  applyTxns(table: string, records: readonly TxnRecord[]): void {
    this.transaction(() => {
      let state = this.state(table);
      let lastTxn = state?.lastTxn ?? 0n;
      for (const record of records) {
        checkTxnFollows(table, state, lastTxn, record);
        const plan = planColumns(table, state, record);
        if (record.kind === 'dedup') {
          // planColumns refused a dedup txn for a table that does not exist.
          this.setDedupKeys(state!, plan.names);
        } else if (TABLE_OP_KINDS.has(record.kind)) {
          // planColumns refused these too for a table that does not exist.
          this.applyTableOp(state!, record);
        } else {
          state = this.ensureColumns(table, state, plan);
          this.insertRecord(state, plan, record);
        }
        if (record.batch !== undefined) this.recordBatch(state!, record, record.batch);
        lastTxn = record.txn;
      }
      if (state === undefined || lastTxn === state.lastTxn) return;
      const ready = state;
      this.guard(
        () => `advance table ${JSON.stringify(ready.schema.name)} to txn ${lastTxn}`,
        () => this.sql.setLastTxn.run(lastTxn, ready.schema.key),
      );
      this.markDirty(ready);
      ready.lastTxn = lastTxn;
    });
  }

  /**
   * Creates the table if needed and adds the plan's new columns, keeping cache and metadata in step.
   * A new table gets all of them in its CREATE TABLE: each ALTER TABLE makes SQLite re-read the
   * whole database schema, so adding a new table's columns one by one cost time in proportion to
   * every table's columns (issue 15: 54 % of the primary's time while 1 000 tables were created).
   */
  private ensureColumns(table: string, state: TableState | undefined, plan: ColumnPlan): TableState {
    if (state === undefined) return this.createTable(table, plan.added);
    // A txn without columns (a fence) leaves a dropped table dropped; one with columns creates it anew.
    if (isDropped(state.schema))
      return plan.names.length === 0 ? state : this.recreateTable(table, state, plan.added);
    if (plan.added.length === 0) return state;
    const name = state.schema.name;
    this.guard(`add columns to table ${JSON.stringify(name)}`, () => {
      let position = state.schema.columns.length;
      for (const column of plan.added) {
        this.db.exec(`ALTER TABLE ${quoteIdentifier(name)} ADD COLUMN ${columnDefinition(column)}`);
        this.sql.insertColumn.run(name, column.name, column.type, position++);
      }
    });
    this.markDirty(state);
    return this.cache.replaceSchema(state, applyPlan(state.schema, plan));
  }

  /** Creates `table` with the designated timestamp, then `added` (a plan's new columns, in order). */
  private createTable(table: string, added: readonly ColumnSchema[]): TableState {
    try {
      validateTableName(table);
    } catch (error) {
      throw asDataError(error);
    }
    const key = tableKey(table);
    const designated: ColumnSchema = { name: DESIGNATED_TIMESTAMP_COLUMN, type: 'timestamp' };
    const columns = [designated, ...added];
    this.guard(`create table ${JSON.stringify(table)}`, () => {
      this.db.exec(createTableSql(table, added));
      this.sql.insertTable.run(table, key, Math.floor(this.clock.wallMs()));
      for (let position = 0; position < columns.length; position++) {
        const column = columns[position]!;
        this.sql.insertColumn.run(table, column.name, column.type, position);
      }
    });
    const state = this.cache.put(table.toLowerCase(), {
      schema: freezeSchema({ name: table, key, columns }),
      lastTxn: 0n,
      uploadedTxn: 0n,
    });
    this.markDirty(state);
    return state;
  }

  /**
   * Creates a dropped table anew (a data txn after its drop txn), as createTable would, under the
   * spelling `table` now has; its txn numbers and watermarks go on from the drop.
   */
  private recreateTable(table: string, state: TableState, added: readonly ColumnSchema[]): TableState {
    const { key } = state.schema;
    const designated: ColumnSchema = { name: DESIGNATED_TIMESTAMP_COLUMN, type: 'timestamp' };
    const columns = [designated, ...added];
    this.guard(`create table ${JSON.stringify(table)} again`, () => {
      this.db.exec(createTableSql(table, added));
      this.db.prepare('UPDATE _walship_tables SET name = ? WHERE key = ?').run(table, key);
      for (let position = 0; position < columns.length; position++) {
        const column = columns[position]!;
        this.sql.insertColumn.run(table, column.name, column.type, position);
      }
    });
    this.markDirty(state);
    return this.cache.replaceSchema(state, freezeSchema({ name: table, key, columns }));
  }

  /**
   * What this store knows of client batch `writer:seq` (RFC-0011): unknown, outside the writer's
   * window, or the parts (tables) of it that are committed here, with their txns and epochs.
   */
  batch(writer: string, seq: bigint): BatchLookup {
    this.checkOpen();
    return this.guard('read the batch ledger', () => this.ledger.lookup(writer, seq));
  }

  private get ledger(): BatchLedger {
    this.ledgerOf ??= new BatchLedger(this.db);
    return this.ledgerOf;
  }

  private recordBatch(state: TableState, record: TxnRecord, stamp: BatchStamp): void {
    this.guard(
      () =>
        `record batch ${stamp.writer}:${stamp.seq} for txn ${record.txn} of ${JSON.stringify(state.schema.name)}`,
      () => this.ledger.record(state.schema.key, record.txn, record.commitTimeUs, stamp),
    );
  }

  private insertRecord(state: TableState, plan: ColumnPlan, record: TxnRecord): void {
    if (record.rowCount === 0) return;
    const doing = () =>
      `insert ${record.rowCount} rows of txn ${record.txn} into table ${JSON.stringify(state.schema.name)}`;
    const insertOf = this.insertStatements(state, plan, record);
    const before = this.rowidBeforeInsert(state);
    this.guard(doing, () =>
      insertRows(insertOf, blockSizes(record.columns.length), record.columns, record.rowCount),
    );
    if (before !== undefined) this.replaceOlderRows(state, before);
  }

  /**
   * Applies a ttl, trim or drop txn (RFC-0007 "Retention of rows") to a table that exists:
   * - ttl: the table's TTL, kept in its meta key, with an index on the designated timestamp that
   *   makes finding and deleting old rows a range scan (a count of 0 removes both);
   * - trim: deletes the rows whose designated timestamp is below the txn's bound;
   * - drop: drops the SQLite table, its columns, upsert keys and TTL; the table keeps its key and
   *   txn numbers (isDropped), so its chain goes on and a later data txn creates it anew.
   */
  private applyTableOp(state: TableState, record: TxnRecord): void {
    const { name, key } = state.schema;
    const quoted = quoteIdentifier(name);
    const ttlIndex = quoteIdentifier(`_walship_ttl_${key}`);
    this.markDirty(state);
    if (record.kind === 'ttl') {
      const ttl = record.ttl!;
      this.guard(`set the TTL of table ${JSON.stringify(name)}`, () => {
        if (ttl.count === 0) {
          this.db.exec(`DROP INDEX IF EXISTS ${ttlIndex}`);
          this.db.prepare('DELETE FROM _walship_kv WHERE key = ?').run(`${TABLE_TTL_META_PREFIX}${key}`);
        } else {
          this.db.exec(
            `CREATE INDEX IF NOT EXISTS ${ttlIndex} ON ${quoted} (${quoteIdentifier(DESIGNATED_TIMESTAMP_COLUMN)})`,
          );
          this.sql.setMeta.run(`${TABLE_TTL_META_PREFIX}${key}`, JSON.stringify(ttl));
        }
      });
      state.ttl = ttl.count === 0 ? undefined : { count: ttl.count, unit: ttl.unit };
    } else if (record.kind === 'trim') {
      this.guard(`delete the rows of table ${JSON.stringify(name)} below ${record.trimBeforeUs}`, () =>
        this.db
          .prepare(`DELETE FROM ${quoted} WHERE ${quoteIdentifier(DESIGNATED_TIMESTAMP_COLUMN)} < ?`)
          .run(record.trimBeforeUs!),
      );
    } else {
      this.guard(`drop table ${JSON.stringify(name)}`, () => {
        this.db.exec(`DROP TABLE ${quoted}`);
        this.db.prepare('DELETE FROM _walship_columns WHERE "table" = ?').run(name);
        const deleteMeta = this.db.prepare('DELETE FROM _walship_kv WHERE key = ?');
        for (const prefix of [TABLE_DEDUP_META_PREFIX, TABLE_TTL_META_PREFIX])
          deleteMeta.run(`${prefix}${key}`);
      });
      this.cache.replaceSchema(state, freezeSchema({ name, key, columns: [] }));
      state.dedupKeys = undefined;
      state.dedup = undefined;
      state.ttl = undefined;
      this.clearInserts();
    }
  }

  /** The time to live of `table` (RFC-0007 "Retention of rows"), or undefined when it has none. */
  ttl(table: string): TableTtl | undefined {
    this.checkOpen();
    return this.state(table)?.ttl;
  }

  /**
   * The oldest and newest designated timestamps of a table with a TTL (its index makes both a
   * lookup), or undefined for an empty, dropped or unknown table.
   */
  timestampBounds(table: string): { minUs: bigint; maxUs: bigint } | undefined {
    const state = this.state(table);
    if (state === undefined || isDropped(state.schema)) return undefined;
    const ts = quoteIdentifier(DESIGNATED_TIMESTAMP_COLUMN);
    const row = this.guard(`read the timestamps of table ${JSON.stringify(state.schema.name)}`, () =>
      this.db
        .prepare(`SELECT min(${ts}) AS minUs, max(${ts}) AS maxUs FROM ${quoteIdentifier(state.schema.name)}`)
        .safeIntegers(true)
        .get(),
    ) as { minUs: bigint | null; maxUs: bigint | null };
    return row.minUs === null || row.maxUs === null ? undefined : { minUs: row.minUs, maxUs: row.maxUs };
  }

  /** The upsert keys of `table` when it is deduplicated (RFC-0011), else undefined. */
  dedupKeys(table: string): readonly string[] | undefined {
    this.checkOpen();
    return this.state(table)?.dedupKeys;
  }

  /**
   * Sets (or, with none, clears) the upsert keys of the table: its meta key, and an index on the
   * keys that makes replacing a row a lookup. Rows already in the table stay as they are, as in
   * QuestDB: deduplication applies to the rows written from this txn on.
   */
  private setDedupKeys(state: TableState, keys: readonly string[]): void {
    const { name, key } = state.schema;
    const index = quoteIdentifier(`_walship_dedup_${key}`);
    this.guard(`set the upsert keys of table ${JSON.stringify(name)}`, () => {
      this.db.exec(`DROP INDEX IF EXISTS ${index}`);
      if (keys.length === 0) {
        this.db.prepare('DELETE FROM _walship_kv WHERE key = ?').run(`${TABLE_DEDUP_META_PREFIX}${key}`);
      } else {
        this.db.exec(
          `CREATE INDEX ${index} ON ${quoteIdentifier(name)} (${keys.map(quoteIdentifier).join(', ')})`,
        );
        this.sql.setMeta.run(`${TABLE_DEDUP_META_PREFIX}${key}`, JSON.stringify(keys));
      }
    });
    this.markDirty(state);
    state.dedupKeys = keys.length === 0 ? undefined : keys;
    state.dedup = undefined;
  }

  /** For a deduplicated table, the largest rowid before an insert (0 when empty); else undefined. */
  private rowidBeforeInsert(state: TableState): bigint | undefined {
    if (state.dedupKeys === undefined) return undefined;
    return this.guard(`read the last row of ${JSON.stringify(state.schema.name)}`, () =>
      BigInt((this.dedupStatements(state).maxRowid.get() as bigint | null) ?? 0n),
    );
  }

  /**
   * Deduplicates after the rows above rowid `before` went in: every row that equals a newer one of
   * those on the upsert keys (NULL equal to NULL, as QuestDB) is deleted — older rows of the table,
   * and earlier rows of the same txn. The result depends only on the order rows were applied in,
   * the same on every node.
   */
  private replaceOlderRows(state: TableState, before: bigint): void {
    this.guard(`deduplicate table ${JSON.stringify(state.schema.name)}`, () =>
      this.dedupStatements(state).replaceOlder.run(before),
    );
  }

  private dedupStatements(state: TableState): NonNullable<TableState['dedup']> {
    if (state.dedup !== undefined) return state.dedup;
    const table = quoteIdentifier(state.schema.name);
    const same = state
      .dedupKeys!.map(
        (k) =>
          `o.${quoteIdentifier(k)} ${k === DESIGNATED_TIMESTAMP_COLUMN ? '=' : 'IS'} n.${quoteIdentifier(k)}`,
      )
      .join(' AND ');
    state.dedup = {
      maxRowid: this.db.prepare(`SELECT max(rowid) FROM ${table}`).pluck().safeIntegers(true),
      replaceOlder: this.db.prepare(
        `DELETE FROM ${table} WHERE rowid IN (SELECT o.rowid FROM ${table} AS n JOIN ${table} AS o ON ${same} WHERE n.rowid > ? AND o.rowid < n.rowid)`,
      ),
    };
    return state.dedup;
  }

  /**
   * The prepared INSERTs of `plan` (planned for `record`) into the table of `state`, which already
   * has the plan's columns, by rows per statement (row-inserter.ts). Remembers the plan on `state`
   * (unless it came from there), so the next record of the same columns reuses it, its cache key
   * and the statements it found (for as long as the cache keeps them: see insertStatement).
   */
  private insertStatements(state: TableState, plan: ColumnPlan, record: TxnRecord): InsertsBySize {
    let memo = state.lastPlan;
    if (memo?.plan !== plan || memo.schema !== state.schema) {
      memo = memoOf(state, record, plan, `${state.schema.key}\u0000${plan.names.join('\u0000')}`);
      state.lastPlan = memo;
    }
    if (memo.inserts === undefined) {
      const { insertKey, plan: memoPlan } = memo;
      const table = state.schema.name;
      const found = new Map<number, Database.Statement>();
      memo.inserts = {
        of: (rows) => found.get(rows) ?? this.insertStatement(insertKey, table, memoPlan.names, rows, found),
      };
    }
    return memo.inserts;
  }

  /** Forgets every prepared INSERT (a schema changed, or a rollback may have undone one). */
  private clearInserts(): void {
    for (const cached of this.inserts.values()) cached.holder.delete(cached.rows);
    this.inserts.clear();
    this.insertParameters = 0;
  }

  /**
   * The prepared INSERT of `rows` rows of columns `names` into `table`, cached under `insertKey`
   * and `rows`; `holder` (a plan's statements by rows) keeps it too until the cache drops it, so
   * the plan's next record finds it without a lookup, and nothing keeps a statement past the cache.
   */
  private insertStatement(
    insertKey: string,
    table: string,
    names: readonly string[],
    rows: number,
    holder: Map<number, Database.Statement>,
  ): Database.Statement {
    const cacheKey = rows === 1 ? insertKey : `${insertKey}\u0000${rows}`;
    let cached = this.inserts.get(cacheKey);
    if (cached !== undefined) {
      // Moved to the end of the Map's order: the eviction below takes the least recently looked up.
      this.inserts.delete(cacheKey);
    } else {
      const columns = names.map(quoteIdentifier).join(', ');
      const statement = this.db.prepare(
        `INSERT INTO ${quoteIdentifier(table)} (${columns}) VALUES ${valuesList(names.length, rows)}`,
      );
      const parameters = names.length * rows;
      while (
        this.inserts.size > 0 &&
        (this.inserts.size >= MAX_CACHED_INSERTS ||
          this.insertParameters + parameters > MAX_CACHED_INSERT_PARAMETERS)
      ) {
        const [oldest, evicted] = this.inserts.entries().next().value!;
        this.inserts.delete(oldest);
        this.insertParameters -= evicted.parameters;
        if (evicted.holder.get(evicted.rows) === evicted.statement) evicted.holder.delete(evicted.rows);
      }
      this.insertParameters += parameters;
      cached = { statement, parameters, rows, holder };
    }
    if (cached.holder !== holder && cached.holder.get(rows) === cached.statement) cached.holder.delete(rows);
    cached.holder = holder;
    holder.set(rows, cached.statement);
    this.inserts.set(cacheKey, cached);
    return cached.statement;
  }

  /**
   * Queues the encoded record `bytes` of txn `txn` of `table` for upload, in the current transaction
   * or a new one. `txn` must be committed (1..lastTxn; else `WATERMARK_INVALID`, internal) and not
   * yet queued (else `STORAGE_FAILED`).
   */
  enqueuePending(table: string, txn: bigint, bytes: Uint8Array): void {
    this.transaction(() => {
      const state = this.knownState(table, 'queue a txn');
      if (txn < 1n || txn > state.lastTxn) {
        throw new WalshipError(
          'WATERMARK_INVALID',
          'internal',
          `table ${JSON.stringify(state.schema.name)}: cannot queue txn ${txn}, the last committed is ${state.lastTxn}`,
          { details: { table: state.schema.name, txn, lastTxn: state.lastTxn } },
        );
      }
      this.guard(
        () => `queue txn ${txn} of table ${JSON.stringify(state.schema.name)}`,
        () => this.sql.enqueue.run(state.schema.name, txn, bytes),
      );
    });
  }

  /**
   * The queued records of `table` with txn > `afterTxn` (default 0n), in txn order, stopping before
   * the record that would take the sum of their sizes above `limitBytes` (default unlimited) — but
   * always at least one when any is queued, so a record larger than the limit still moves. Empty
   * for an unknown table. The bytes are copies owned by the caller.
   */
  pending(table: string, options: { afterTxn?: bigint; limitBytes?: number } = {}): PendingTxn[] {
    const state = this.state(table);
    if (state === undefined) return [];
    const limitBytes = options.limitBytes ?? Number.POSITIVE_INFINITY;
    return this.guard(`read the pending queue of table ${JSON.stringify(state.schema.name)}`, () => {
      const result: PendingTxn[] = [];
      let totalBytes = 0;
      const rows = this.sql.pending.iterate(
        state.schema.name,
        options.afterTxn ?? 0n,
      ) as Iterable<PendingTxn>;
      for (const row of rows) {
        if (result.length > 0 && totalBytes + row.bytes.length > limitBytes) break;
        totalBytes += row.bytes.length;
        result.push({ txn: row.txn, bytes: row.bytes });
      }
      return result;
    });
  }

  /** Removes the queued records of `table` with txn <= `txn` (after their upload). */
  dropPendingThrough(table: string, txn: bigint): void {
    this.transaction(() => {
      const state = this.state(table);
      if (state === undefined) return;
      this.guard(`drop pending txns of table ${JSON.stringify(state.schema.name)}`, () =>
        this.sql.dropPending.run(state.schema.name, txn),
      );
    });
  }

  /**
   * Undoes the txns of `table` that never reached the object store — its pending queue, txns
   * uploadedTxn+1..lastTxn — so the table holds exactly its history up to its uploaded watermark,
   * which is what the cluster holds: a replaced primary then follows the new one from there instead
   * of replaying the whole WAL (RFC-0002 "Fenced means"). Deletes those txns' rows (the rows with
   * the largest rowids, pending-rollback.ts), drops the columns they created, or the whole table
   * when they created it (nothing of it was uploaded), sets lastTxn to uploadedTxn and empties the
   * queue; all in one transaction (or the caller's). Each record is checked against the rows first
   * (count and designated timestamps, in order). Throws ROLLBACK_UNSAFE (kind data) when the queue
   * or the rows do not match what the records say, TABLE_UNKNOWN for an unknown table; the table
   * is then unchanged. Whoever calls it has written the pending rows elsewhere first (divergence).
   */
  rollBackPending(table: string): {
    txns: number;
    rows: number;
    droppedColumns: string[];
    droppedTable: boolean;
  } {
    return this.transaction(() => {
      const state = this.knownState(table, 'roll back pending txns');
      const { name } = state.schema;
      const read = (afterTxn: bigint) => this.pending(name, { afterTxn, limitBytes: ROLLBACK_CHUNK_BYTES });
      const plan = planRollback(name, state, read);
      if (state.dedupKeys !== undefined || plan.irreversible)
        throw rollbackUnsafe(
          name,
          state.dedupKeys !== undefined
            ? 'it is deduplicated: rows its pending txns replaced cannot be put back (the database is moved aside instead)'
            : 'a pending txn set its upsert keys or TTL, deleted rows or dropped it, which cannot be undone in place (the database is moved aside instead)',
        );
      const quoted = quoteIdentifier(name);
      const firstRowid = this.guard(`check the pending rows of table ${JSON.stringify(name)}`, () =>
        this.checkPendingRows(name, state.uploadedTxn + 1n, plan.rows, read),
      );
      const droppedTable = state.uploadedTxn === 0n;
      if (droppedTable && this.hasRowBelow(name, firstRowid))
        throw rollbackUnsafe(
          name,
          `no txn of it was uploaded, yet it holds more rows than its ${plan.rows} pending ones`,
        );
      const kept = droppedTable ? [] : keptColumns(name, state.schema.columns, plan.addedColumns);
      this.guard(`roll back table ${JSON.stringify(name)} to txn ${state.uploadedTxn}`, () => {
        if (droppedTable) {
          this.db.exec(`DROP TABLE ${quoted}`);
          this.db.prepare('DELETE FROM _walship_columns WHERE "table" = ?').run(name);
          this.db.prepare('DELETE FROM _walship_tables WHERE key = ?').run(state.schema.key);
        } else {
          if (firstRowid !== undefined)
            this.db.prepare(`DELETE FROM ${quoted} WHERE rowid >= ?`).run(firstRowid);
          for (const column of state.schema.columns.slice(kept.length).reverse())
            this.db.exec(`ALTER TABLE ${quoted} DROP COLUMN ${quoteIdentifier(column.name)}`);
          this.db
            .prepare('DELETE FROM _walship_columns WHERE "table" = ? AND position >= ?')
            .run(name, kept.length);
          this.sql.setLastTxn.run(state.uploadedTxn, state.schema.key);
        }
        this.db.prepare('DELETE FROM _walship_pending WHERE "table" = ?').run(name);
        // The batches of those txns never reached the cluster: a retry of one must be written again.
        this.ledger.forgetTxnsAfter(state.schema.key, state.uploadedTxn);
      });
      // Reloaded from the database at the next use (and evicted again should the transaction roll back).
      this.markDirty(state);
      this.cache.evict(name.toLowerCase());
      this.clearInserts();
      const droppedColumns = state.schema.columns.slice(kept.length).map((c) => c.name);
      return { txns: plan.txns, rows: plan.rows, droppedColumns, droppedTable };
    });
  }

  /**
   * Checks that the last `rows` rows of `table` (by rowid) are the rows of the pending records from
   * txn `firstTxn` on, in order, by designated timestamp; returns the first of those rows' rowid
   * (undefined when there are none). Reads one record's rows at a time.
   */
  private checkPendingRows(
    table: string,
    firstTxn: bigint,
    rows: number,
    read: (afterTxn: bigint) => PendingTxn[],
  ): bigint | undefined {
    if (rows === 0) return undefined;
    const quoted = quoteIdentifier(table);
    const firstRowid = this.db
      .prepare(`SELECT rowid FROM ${quoted} ORDER BY rowid DESC LIMIT 1 OFFSET ?`)
      .pluck()
      .safeIntegers(true)
      .get(rows - 1) as bigint | undefined;
    if (firstRowid === undefined)
      throw rollbackUnsafe(table, `its pending txns hold ${rows} rows, the table fewer`);
    const page = this.db
      .prepare(
        `SELECT rowid AS id, ${quoteIdentifier(DESIGNATED_TIMESTAMP_COLUMN)} AS ts FROM ${quoted} WHERE rowid >= ? ORDER BY rowid LIMIT ?`,
      )
      .safeIntegers(true);
    let next = firstRowid;
    for (const record of pendingRecords(table, firstTxn, read)) {
      if (record.kind !== 'data' || record.rowCount === 0) continue;
      const expected = designatedTimestamps(table, record);
      const got = page.all(next, record.rowCount) as { id: bigint; ts: bigint | null }[];
      for (let row = 0; row < record.rowCount; row++) {
        if (got[row]?.ts !== expected[row])
          throw rollbackUnsafe(
            table,
            `row ${row} of pending txn ${record.txn} is not the table's row ${got[row]?.id ?? 'none'} (designated timestamp ${expected[row]} vs ${got[row]?.ts ?? 'none'})`,
          );
      }
      next = got[record.rowCount - 1]!.id + 1n;
    }
    return firstRowid;
  }

  /** Whether `table` has a row below rowid `rowid` (any row when `rowid` is undefined). */
  private hasRowBelow(table: string, rowid: bigint | undefined): boolean {
    const quoted = quoteIdentifier(table);
    return this.guard(`read table ${JSON.stringify(table)}`, () =>
      rowid === undefined
        ? this.db.prepare(`SELECT 1 FROM ${quoted} LIMIT 1`).get() !== undefined
        : this.db.prepare(`SELECT 1 FROM ${quoted} WHERE rowid < ? LIMIT 1`).get(rowid) !== undefined,
    );
  }

  /** Per table with queued records: how many, their bytes, and the oldest txn; ordered by table. */
  pendingSummary(): PendingSummary[] {
    this.checkOpen();
    const rows = this.guard('summarise the pending queue', () => this.sql.pendingSummary.all()) as {
      table: string;
      count: bigint;
      bytes: bigint;
      oldestTxn: bigint;
    }[];
    return rows.map((row) => ({
      table: row.table,
      count: Number(row.count),
      bytes: Number(row.bytes),
      oldestTxn: row.oldestTxn,
    }));
  }

  /** The value stored under `key` in the node's key/value table, or undefined. */
  getMeta(key: string): string | undefined {
    this.checkOpen();
    return this.guard(
      `read meta ${JSON.stringify(key)}`,
      () => this.sql.getMeta.get(key) as string | undefined,
    );
  }

  /** Stores `value` under `key` (overwriting), in the current transaction or a new one. */
  setMeta(key: string, value: string): void {
    this.transaction(() =>
      this.guard(`write meta ${JSON.stringify(key)}`, () => this.sql.setMeta.run(key, value)),
    );
  }

  /**
   * Tells the cache what another connection of this node committed (the primary's write worker,
   * RFC-0009 §4), so it is kept instead of dropped whole at the next read: each table's lastTxn and
   * uploadedTxn rise to the values given, and a table whose schema grew is read again. Correct only
   * while every commit of any other connection is told here, in order (the worker's, when its
   * answers arrive): the data version it then records covers commits told or about to be told.
   */
  noteCommitted(changes: readonly CommittedElsewhere[]): void {
    this.checkOpen();
    for (const { table, lastTxn, uploadedTxn, schema, reload } of changes) {
      const folded = table.toLowerCase();
      const state = this.cache.get(folded);
      if (state === undefined) continue;
      if (
        state === null ||
        reload === true ||
        (schema !== undefined && schema.columns.length !== state.schema.columns.length)
      ) {
        this.cache.evict(folded);
        continue;
      }
      if (lastTxn !== undefined && lastTxn > state.lastTxn) state.lastTxn = lastTxn;
      if (uploadedTxn !== undefined && uploadedTxn > state.uploadedTxn) state.uploadedTxn = uploadedTxn;
    }
    if (!this.inTransaction && !this.inReadBatch) {
      this.dataVersion = this.guard('read the data version', () => this.sql.dataVersion.get() as number);
    }
  }

  // --- cache ---

  private state(table: string): TableState | undefined {
    this.checkOpen();
    this.refreshCacheIfChanged();
    const folded = table.toLowerCase();
    const cached = this.cache.get(folded);
    if (cached !== undefined) return cached ?? undefined;
    return this.loadByKey(tableKey(table), folded);
  }

  private knownState(table: string, doing: string): TableState {
    const state = this.state(table);
    if (state !== undefined) return state;
    throw new WalshipError(
      'TABLE_UNKNOWN',
      'invalid',
      `cannot ${doing}: table ${JSON.stringify(table)} does not exist`,
      {
        details: { table },
      },
    );
  }

  private loadByKey(key: TableKey, folded?: string): TableState | undefined {
    return this.guard(`read the schema of table key ${key}`, () => {
      const row = this.sql.table.get(key) as
        | { name: string; last_txn: bigint; uploaded_txn: bigint }
        | undefined;
      if (row === undefined) {
        if (folded !== undefined) this.cache.putMissing(folded);
        return undefined;
      }
      const columns = this.sql.columns.all(row.name) as ColumnSchema[];
      const dedup = this.sql.getMeta.get(`${TABLE_DEDUP_META_PREFIX}${key}`) as string | undefined;
      const ttl = this.sql.getMeta.get(`${TABLE_TTL_META_PREFIX}${key}`) as string | undefined;
      return this.cache.put(row.name.toLowerCase(), {
        schema: freezeSchema({ name: row.name, key, columns }),
        lastTxn: row.last_txn,
        uploadedTxn: row.uploaded_txn,
        ...(dedup === undefined ? {} : { dedupKeys: JSON.parse(dedup) as string[] }),
        ...(ttl === undefined ? {} : { ttl: JSON.parse(ttl) as TableTtl }),
      });
    });
  }

  /**
   * Another connection may have committed since we last looked: then forget everything. Inside our
   * own transaction nobody else can (BEGIN IMMEDIATE holds the write lock), so only its start
   * checks; inside `batchReads` only its start checks, as its caller asked.
   */
  private refreshCacheIfChanged(atBegin = false): void {
    if ((this.inTransaction || this.inReadBatch) && !atBegin) return;
    const version = this.guard('read the data version', () => this.sql.dataVersion.get() as number);
    if (version !== this.dataVersion) {
      this.cache.clear();
      this.clearInserts();
      this.dataVersion = version;
    }
  }

  private markDirty(state: TableState): void {
    this.dirty.add(state.schema.name.toLowerCase());
  }

  // --- guards ---

  private checkOpen(): void {
    if (this.closed) throw new ClosedError(`the table store ${JSON.stringify(this.file)} is closed`);
  }

  private checkWritable(doing: string): void {
    this.checkOpen();
    if (this.readonly) {
      throw new WalshipError('READ_ONLY', 'invalid', `cannot ${doing}: the table store was opened read-only`);
    }
  }

  /**
   * Runs `fn`, turning an SQLite error into a WalshipError that says what was being done. `doing`
   * may be a function, called only on failure: the per-txn steps of a request over a thousand
   * tables would otherwise format thousands of messages that are never read.
   */
  private guard<T>(doing: string | (() => string), fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw storageError(error, typeof doing === 'string' ? doing : doing());
    }
  }
}

function configure(db: Database.Database, readonly: boolean, synchronous: 'FULL' | 'NORMAL'): void {
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('foreign_keys = OFF');
  db.pragma(`synchronous = ${synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
  const version = db.pragma('user_version', { simple: true }) as number;
  if (readonly) {
    if (version !== STORE_FORMAT_VERSION) throw unsupportedFormat(version);
    return;
  }
  const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
  if (mode !== 'wal' && mode !== 'memory') {
    throw new WalshipError(
      'STORAGE_FAILED',
      'unavailable',
      `SQLite refused WAL journal mode (got '${mode}')`,
    );
  }
  if (version !== 0 && version !== STORE_FORMAT_VERSION) throw unsupportedFormat(version);
  db.exec(
    `BEGIN IMMEDIATE; ${METADATA_DDL} ${BATCH_LEDGER_DDL} PRAGMA user_version = ${STORE_FORMAT_VERSION}; COMMIT;`,
  );
}

function unsupportedFormat(version: number): WalshipError {
  return new WalshipError(
    'STORE_FORMAT_UNSUPPORTED',
    'invalid',
    `the table store has layout version ${version}; this walship reads version ${STORE_FORMAT_VERSION} (an empty or foreign file?)`,
    { details: { version } },
  );
}

/** `record` must be the txn after `lastTxn`, the last one applied to `table` (whose state is `state`). */
function checkTxnFollows(
  table: string,
  state: TableState | undefined,
  lastTxn: bigint,
  record: TxnRecord,
): void {
  if (record.txn === lastTxn + 1n) return;
  const name = state?.schema.name ?? table;
  throw new WalshipError(
    'TXN_GAP',
    'data',
    `table ${JSON.stringify(name)}: txn ${record.txn} does not follow the last applied txn ${lastTxn} (expected ${lastTxn + 1n})`,
    { details: { table: name, txn: record.txn, lastTxn } },
  );
}

/**
 * The columns that stay when the pending txns' own columns go: those txns created the last columns
 * (a new column is appended), so the ones they created must be exactly the schema's tail, and never
 * the designated timestamp; otherwise ROLLBACK_UNSAFE.
 */
function keptColumns(table: string, columns: readonly ColumnSchema[], added: Set<string>): ColumnSchema[] {
  const kept = columns.slice(0, columns.length - added.size);
  const tail = columns.slice(kept.length).map((c) => c.name.toLowerCase());
  if (kept.length === 0 || !tail.every((name) => added.has(name)))
    throw rollbackUnsafe(
      table,
      `its pending txns created columns ${[...added].join(', ')}, which are not its last ${added.size} columns`,
    );
  return kept;
}

function asDataError(error: unknown): unknown {
  if (!(error instanceof WalshipError)) return error;
  return new WalshipError(error.code, 'data', error.message, { cause: error, details: error.details });
}
