import type { Statement } from 'better-sqlite3';
import type { ColumnType, TableTtl } from '../wal/index.js';
import type { ColumnSchema, TableSchema } from './table-schema.js';

/**
 * What applying one txn record does to its table's schema, decided before anything is written, so
 * that every check of TableStore.applyTxn fails before its first write.
 */
export interface ColumnPlan {
  /** The canonical name of each record column, in record order: the INSERT's column list. */
  names: string[];
  /** Columns the table lacks, in record order: added by ALTER TABLE, appended to the schema. */
  added: ColumnSchema[];
}

/**
 * The plan of the last record with rows applied to a table, kept on its TableState (`lastPlan`).
 * A record of the very same columns (names spelled the same, in the same order, of the same types)
 * against the same schema snapshot plans the same, so planColumns then skips folding, the
 * duplicate check and the lookups, and runs only the checks that depend on the record's values.
 * It serves only while the table's schema is the very snapshot it was made for: a schema change
 * makes a new snapshot (schemas are immutable), and a rollback that undoes one, or another
 * connection's commit, drops the cached TableState and its memo with it.
 */
export interface PlanMemo {
  /** The schema snapshot the memo holds for: the table's schema once the record was applied. */
  readonly schema: TableSchema;
  /** The record's column names as it spelled them, in record order. */
  readonly names: readonly string[];
  /** The record's column types, in record order. */
  readonly types: readonly ColumnType[];
  /** The plan against `schema`: its canonical names, nothing to add. Shared by every record it serves. */
  readonly plan: ColumnPlan;
  /** The position of the designated timestamp among the record's columns, -1 when it has none. */
  readonly timestampAt: number;
  /** What the store caches the plan's prepared INSERTs under, so no record builds the key again. */
  readonly insertKey: string;
  /** The plan's prepared INSERTs by rows per statement, once a record used them (table-store.ts). */
  inserts?: InsertsBySize;
}

/** Prepared INSERTs of one table and column list, by rows per statement (row-inserter.ts). */
export interface InsertsBySize {
  /** The INSERT of `rows` rows, prepared (or found in the store's cache) on first use. */
  of(rows: number): Statement;
}

/** One encoded txn record in the pending queue. */
export interface PendingTxn {
  txn: bigint;
  bytes: Uint8Array;
}

/**
 * What the store keeps in memory per table: the schema snapshot, the watermarks, and the plan of
 * the last record with rows applied (PlanMemo), which the next record of the same
 * columns reuses.
 */
export interface TableState {
  schema: TableSchema;
  lastTxn: bigint;
  uploadedTxn: bigint;
  lastPlan?: PlanMemo;
  /** The upsert keys of a deduplicated table (RFC-0011), canonical names; undefined otherwise. */
  dedupKeys?: readonly string[];
  /** The statements that deduplicate it after an insert, prepared on first use. */
  dedup?: { maxRowid: Statement; replaceOlder: Statement };
  /** The table's time to live, set by a ttl txn (RFC-0007 "Retention of rows"); undefined when none. */
  ttl?: TableTtl;
}

/** Unknown names remembered as unknown, at most; beyond it they are all forgotten (they are cheap to re-check). */
const MAX_MISSING_NAMES = 4096;

/**
 * The in-memory table states of a TableStore, by case-folded name and by table key. Holds one
 * entry per table of the database (bounded by the tables that exist) plus at most
 * MAX_MISSING_NAMES names known not to exist, so the hot path asks SQLite nothing.
 */
export class TableStateCache {
  private readonly byFolded = new Map<string, TableState>();
  private readonly byTableKey = new Map<string, TableState>();
  private readonly missing = new Set<string>();

  /** The state of the folded name, null when known not to exist, undefined when not cached. */
  get(folded: string): TableState | null | undefined {
    const state = this.byFolded.get(folded);
    if (state !== undefined) return state;
    return this.missing.has(folded) ? null : undefined;
  }

  byKey(key: string): TableState | undefined {
    return this.byTableKey.get(key);
  }

  /** Caches `state` under `folded` (the folded canonical name) and its key; returns it. */
  put(folded: string, state: TableState): TableState {
    this.missing.delete(folded);
    this.byFolded.set(folded, state);
    this.byTableKey.set(state.schema.key, state);
    return state;
  }

  putMissing(folded: string): void {
    if (this.missing.size >= MAX_MISSING_NAMES) this.missing.clear();
    this.missing.add(folded);
  }

  /** Swaps in a new schema snapshot (same table), dropping the plan made for the old one; returns the state. */
  replaceSchema(state: TableState, schema: TableSchema): TableState {
    state.schema = schema;
    state.lastPlan = undefined;
    return state;
  }

  evict(folded: string): void {
    const state = this.byFolded.get(folded);
    if (state !== undefined) this.byTableKey.delete(state.schema.key);
    this.byFolded.delete(folded);
    this.missing.delete(folded);
  }

  clear(): void {
    this.byFolded.clear();
    this.byTableKey.clear();
    this.missing.clear();
  }
}
