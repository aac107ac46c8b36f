import type { PlanMemo } from './apply-plan.js';
import type { TableSchema } from './table-schema.js';

/** One encoded txn record in the pending queue. */
export interface PendingTxn {
  txn: bigint;
  bytes: Uint8Array;
}

/**
 * What the store keeps in memory per table: the schema snapshot, the watermarks, and the plan of
 * the last record with rows applied (apply-plan.ts PlanMemo), which the next record of the same
 * columns reuses.
 */
export interface TableState {
  schema: TableSchema;
  lastTxn: bigint;
  uploadedTxn: bigint;
  lastPlan?: PlanMemo;
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
