import { WalshipError } from '../core/index.js';
import {
  type ColumnData,
  DESIGNATED_TIMESTAMP_COLUMN,
  TABLE_OP_KINDS,
  type TxnRecord,
} from '../wal/index.js';
import { validateColumnName } from './names.js';
import {
  type ColumnSchema,
  columnIndexOf,
  freezeSchema,
  isDropped,
  type TableSchema,
} from './table-schema.js';
import type { ColumnPlan, PlanMemo, TableState } from './table-state.js';

/** The schema a table that does not exist yet starts with (the store creates it that way). */
const NEW_TABLE_COLUMNS: readonly ColumnSchema[] = Object.freeze([
  Object.freeze({ name: DESIGNATED_TIMESTAMP_COLUMN, type: 'timestamp' as const }),
]);

function invalidTxn(table: string, record: TxnRecord, problem: string): WalshipError {
  return new WalshipError(
    'TXN_INVALID',
    'data',
    `table ${JSON.stringify(table)} txn ${record.txn}: ${problem}`,
    {
      details: { table, txn: record.txn },
    },
  );
}

/**
 * Checks `record` against the table's current schema (`state` undefined: a new table) and plans
 * the columns to add. Throws, kind `data`: `TXN_INVALID` (a fence with rows or columns, a column
 * whose slots or bitmap do not match rowCount, two columns of one folded name), `TYPE_CONFLICT` (a
 * column of another type than the table's), `INVALID_NAME` (a new column's name),
 * `TIMESTAMP_MISSING` (rows without a non-null designated timestamp).
 */
export function planColumns(table: string, state: TableState | undefined, record: TxnRecord): ColumnPlan {
  const name = state?.schema.name ?? table;
  if (record.kind === 'fence') {
    if (record.rowCount !== 0 || record.columns.length !== 0)
      throw invalidTxn(name, record, 'a fence carries rows');
    return { names: [], added: [] };
  }
  const live = state === undefined || isDropped(state.schema) ? undefined : state;
  if (record.kind === 'dedup') return planDedupKeys(name, live, record);
  if (TABLE_OP_KINDS.has(record.kind)) {
    // The record decoder checked the shape (no rows, no columns, its parameters).
    if (live === undefined)
      throw invalidTxn(name, record, `a ${record.kind} txn for a table that does not exist`);
    return { names: [], added: [] };
  }
  const memo = live?.lastPlan;
  if (memo !== undefined && memo.schema === live?.schema && sameColumns(memo, record.columns)) {
    return replan(name, record, memo);
  }
  // A dropped table is created anew, as if it had never been.
  const columns = live?.schema.columns ?? NEW_TABLE_COLUMNS;
  const index = live === undefined ? undefined : columnIndexOf(live.schema);
  const seen = new Set<string>();
  const plan: ColumnPlan = { names: [], added: [] };
  let hasTimestamp = false;
  for (const column of record.columns) {
    checkShape(name, record, column);
    const folded = column.name.toLowerCase();
    if (seen.has(folded))
      throw invalidTxn(name, record, `two columns named ${JSON.stringify(folded)} (case-insensitive)`);
    seen.add(folded);
    const position =
      index === undefined ? (folded === DESIGNATED_TIMESTAMP_COLUMN ? 0 : undefined) : index.get(folded);
    if (position === undefined) {
      plan.added.push(newColumn(column));
      plan.names.push(column.name);
    } else {
      const existing = columns[position]!;
      if (existing.type !== column.data.type) throw typeConflict(name, record, existing, column);
      plan.names.push(existing.name);
    }
    if (folded === DESIGNATED_TIMESTAMP_COLUMN) hasTimestamp = !hasNullRow(column, record.rowCount);
  }
  if (record.rowCount > 0 && !hasTimestamp) throw timestampMissing(name, record);
  return plan;
}

/**
 * The upsert keys a dedup txn sets, as the table spells them: columns it has, of the types it has,
 * each once, the designated timestamp among them (QuestDB's rule); none turns dedup off. Throws
 * TXN_INVALID (kind data) otherwise, or for a table that does not exist.
 */
function planDedupKeys(name: string, state: TableState | undefined, record: TxnRecord): ColumnPlan {
  if (state === undefined) throw invalidTxn(name, record, 'upsert keys for a table that does not exist');
  if (record.rowCount !== 0) throw invalidTxn(name, record, 'a dedup txn carries rows');
  const index = columnIndexOf(state.schema);
  const names: string[] = [];
  for (const column of record.columns) {
    const position = index.get(column.name.toLowerCase());
    const existing = position === undefined ? undefined : state.schema.columns[position];
    if (existing === undefined || column.addedInTxn)
      throw invalidTxn(
        name,
        record,
        `upsert key ${JSON.stringify(column.name)} is not a column of the table`,
      );
    if (existing.type !== column.data.type) throw typeConflict(name, record, existing, column);
    if (names.includes(existing.name))
      throw invalidTxn(name, record, `upsert key ${JSON.stringify(existing.name)} named twice`);
    names.push(existing.name);
  }
  if (names.length > 0 && !names.includes(DESIGNATED_TIMESTAMP_COLUMN))
    throw invalidTxn(name, record, 'the upsert keys must include the designated timestamp');
  return { names, added: [] };
}

/**
 * The memo of applying `record` with `plan` to the table `state` now holds (its schema with the
 * plan's columns added), for the next record to reuse; `insertKey` is the store's key of the
 * plan's INSERT. A data record only: a fence has no columns to plan.
 */
export function memoOf(state: TableState, record: TxnRecord, plan: ColumnPlan, insertKey: string): PlanMemo {
  const names = record.columns.map((column) => column.name);
  return {
    schema: state.schema,
    names,
    types: record.columns.map((column) => column.data.type),
    plan: plan.added.length === 0 ? plan : { names: plan.names, added: [] },
    timestampAt: names.findIndex((column) => column.toLowerCase() === DESIGNATED_TIMESTAMP_COLUMN),
    insertKey,
  };
}

function sameColumns(memo: PlanMemo, columns: readonly ColumnData[]): boolean {
  if (columns.length !== memo.names.length) return false;
  for (let c = 0; c < columns.length; c++) {
    const column = columns[c]!;
    if (column.name !== memo.names[c] || column.data.type !== memo.types[c]) return false;
  }
  return true;
}

/**
 * planColumns for a record of the memo's columns: the checks on the record's values, in the order
 * planColumns runs them (no other check can fail for these columns against this schema).
 */
function replan(table: string, record: TxnRecord, memo: PlanMemo): ColumnPlan {
  for (const column of record.columns) checkShape(table, record, column);
  if (record.rowCount > 0) {
    const timestamp = record.columns[memo.timestampAt];
    if (timestamp === undefined || hasNullRow(timestamp, record.rowCount))
      throw timestampMissing(table, record);
  }
  return memo.plan;
}

/** `schema` with the plan's new columns appended, frozen. */
export function applyPlan(schema: TableSchema, plan: ColumnPlan): TableSchema {
  return freezeSchema({ name: schema.name, key: schema.key, columns: [...schema.columns, ...plan.added] });
}

function checkShape(table: string, record: TxnRecord, column: ColumnData): void {
  const slots = column.data.values.length;
  if (slots !== record.rowCount) {
    throw invalidTxn(
      table,
      record,
      `column ${JSON.stringify(column.name)} has ${slots} values for ${record.rowCount} rows`,
    );
  }
  if (column.nulls !== null && column.nulls.length < (record.rowCount + 7) >>> 3) {
    throw invalidTxn(
      table,
      record,
      `column ${JSON.stringify(column.name)} has a null bitmap shorter than its rows`,
    );
  }
}

function timestampMissing(table: string, record: TxnRecord): WalshipError {
  return new WalshipError(
    'TIMESTAMP_MISSING',
    'data',
    `table ${JSON.stringify(table)} txn ${record.txn}: rows without a designated timestamp (column '${DESIGNATED_TIMESTAMP_COLUMN}' missing or null)`,
    { details: { table, txn: record.txn } },
  );
}

function newColumn(column: ColumnData): ColumnSchema {
  try {
    validateColumnName(column.name);
  } catch (error) {
    if (!(error instanceof WalshipError)) throw error;
    throw new WalshipError(error.code, 'data', error.message, { cause: error, details: error.details });
  }
  return { name: column.name, type: column.data.type };
}

function typeConflict(
  table: string,
  record: TxnRecord,
  existing: ColumnSchema,
  column: ColumnData,
): WalshipError {
  return new WalshipError(
    'TYPE_CONFLICT',
    'data',
    `table ${JSON.stringify(table)} txn ${record.txn}: column ${JSON.stringify(existing.name)} is ${existing.type}, the record carries ${column.data.type}`,
    {
      details: {
        table,
        txn: record.txn,
        column: existing.name,
        existingType: existing.type,
        sentType: column.data.type,
      },
    },
  );
}

function hasNullRow(column: ColumnData, rowCount: number): boolean {
  const nulls = column.nulls;
  if (nulls === null) return false;
  for (let row = 0; row < rowCount; row++) if ((nulls[row >>> 3]! >>> (row & 7)) & 1) return true;
  return false;
}
