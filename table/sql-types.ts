import type { ColumnType } from '../wal/index.js';

/**
 * How each walship column type is declared in SQLite. The declared type names carry the walship
 * type (so a read-only query worker can name QuestDB types from `Statement.columns()` alone) and
 * contain the substring that gives SQLite the right affinity (INT → INTEGER, TEXT → TEXT,
 * DOUB → REAL; SQLite's rules in https://sqlite.org/datatype3.html §3.1). A bare `SYMBOL` would
 * get NUMERIC affinity and turn the symbol "123" into the number 123.
 *
 * Storage: long, timestamp (µs) and boolean (0/1) as INTEGER; double as REAL (SQLite stores NaN
 * as NULL, as QuestDB treats NaN doubles as null); string and symbol as TEXT; double arrays as
 * TEXT holding nested JSON arrays; decimals as TEXT holding the exact decimal string.
 */
export const SQL_DECLARED_TYPES: Readonly<Record<ColumnType, string>> = Object.freeze({
  boolean: 'BOOLEAN_INT',
  long: 'LONG_INT',
  double: 'DOUBLE',
  string: 'STRING_TEXT',
  symbol: 'SYMBOL_TEXT',
  timestamp: 'TIMESTAMP_INT',
  double_array: 'DOUBLE_ARRAY_TEXT',
  decimal: 'DECIMAL_TEXT',
});

/** QuestDB's type names, as `/exec` reports them in `columns[].type`. */
export const QUESTDB_TYPE_NAMES: Readonly<Record<ColumnType, string>> = Object.freeze({
  boolean: 'BOOLEAN',
  long: 'LONG',
  double: 'DOUBLE',
  string: 'STRING',
  symbol: 'SYMBOL',
  timestamp: 'TIMESTAMP',
  double_array: 'DOUBLE[]',
  decimal: 'DECIMAL',
});

/** The walship column type of a declared SQLite type, or undefined for anything else. */
export function columnTypeOfDeclared(declared: string | null | undefined): ColumnType | undefined {
  if (declared === null || declared === undefined) return undefined;
  const upper = declared.toUpperCase();
  for (const [type, name] of Object.entries(SQL_DECLARED_TYPES))
    if (name === upper) return type as ColumnType;
  return undefined;
}
