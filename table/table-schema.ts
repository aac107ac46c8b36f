import type { ColumnType } from '../wal/index.js';
import type { TableKey } from './names.js';

/** One column of a table: its canonical spelling (the first one the table saw) and its type. */
export interface ColumnSchema {
  name: string;
  type: ColumnType;
}

/**
 * A table's schema. Tables and columns are case-insensitive (`toLowerCase()` folding); `name` and
 * each column's `name` are the canonical spellings, the ones used when they were created.
 * Schemas handed out by TableStore are frozen snapshots: a later schema change makes a new object.
 */
export interface TableSchema {
  /** The canonical spelling of the table name. */
  name: string;
  /** tableKey(name): the store-key and file-name-safe encoding of the folded name. */
  key: TableKey;
  /** In position order; the designated `timestamp` column (type timestamp) is always first. */
  columns: ColumnSchema[];
}

const columnIndexes = new WeakMap<TableSchema, ReadonlyMap<string, number>>();

/**
 * The position of each column of `schema` by its case-folded name. Computed once per schema
 * object (schemas are immutable snapshots), so lookups on the hot path cost one Map access.
 */
export function columnIndexOf(schema: TableSchema): ReadonlyMap<string, number> {
  let index = columnIndexes.get(schema);
  if (index === undefined) {
    index = new Map(schema.columns.map((column, position) => [column.name.toLowerCase(), position]));
    columnIndexes.set(schema, index);
  }
  return index;
}

/** `schema` frozen in place (its columns too), so cached snapshots cannot be changed by callers. */
export function freezeSchema(schema: TableSchema): TableSchema {
  for (const column of schema.columns) Object.freeze(column);
  Object.freeze(schema.columns);
  return Object.freeze(schema);
}

/**
 * A table dropped by a drop txn (RFC-0007 "Retention of rows"): it keeps its name, key and txn
 * numbers, since its chain goes on, but has no columns, not even the designated timestamp every
 * live table has. Its next data txn creates it anew.
 */
export function isDropped(schema: TableSchema): boolean {
  return schema.columns.length === 0;
}
