import type { ColumnType } from '../wal/index.js';
import { civilFromDays } from './civil-date.js';
import { QUESTDB_TYPE_NAMES } from './sql-types.js';

/**
 * Rendering of query results the way QuestDB's HTTP endpoints render them (`/exec` JSON, `/exp`
 * CSV), from values as better-sqlite3 returns them with safe integers on: INTEGER → bigint,
 * REAL → number, TEXT → string, BLOB → Buffer, NULL → null. Pure functions, no I/O, so the
 * query hosts and the tests share them.
 *
 * QuestDB's shapes, checked against questdb/questdb `JsonQueryProcessorState` and
 * `ExportQueryProcessor`:
 * - timestamps: ISO-8601 with microseconds and `Z` (`2024-01-02T03:04:05.123456Z`), quoted;
 * - longs: exact JSON numbers (written from the bigint's digits, never through a double);
 * - doubles: JSON numbers, `1.0` for integral values; NaN and ±Infinity → `null` (empty in CSV);
 * - booleans: `true`/`false` (QuestDB booleans are never null: a null renders `false`);
 * - strings and symbols: JSON strings (always quoted in CSV);
 * - decimals: quoted strings in JSON (as QuestDB's `putDecimal*Value`), bare in CSV;
 * - double arrays: nested JSON arrays, null elements for NaN; in CSV the same JSON, quoted;
 *   the column is described as `{"type":"ARRAY","dim":N,"elemType":"DOUBLE"}`;
 * - BLOBs (only from expressions): QuestDB's BINARY, rendered `[]` in JSON and empty in CSV.
 */

/** A result column as `/exec` describes it in `columns[]`. */
export interface ResultColumn {
  name: string;
  /** QuestDB's type name: BOOLEAN, LONG, DOUBLE, STRING, SYMBOL, TIMESTAMP, DECIMAL, ARRAY, BINARY. */
  type: string;
  /** ARRAY columns only: the number of dimensions. */
  dim?: number;
  /** ARRAY columns only: the element type. */
  elemType?: string;
}

/** The declared walship type of a result column, or undefined for expressions (rendered by value). */
export type RenderKind = ColumnType | undefined;

/** The pieces of an `/exec` answer; the dataset is already JSON text so int64s stay exact. */
export interface ExecJsonParts {
  query: string;
  columns: readonly ResultColumn[];
  /** Index of the designated timestamp column in `columns`, or -1. */
  timestampIndex: number;
  /** `[[…],[…]]`: the rows as JSON text. */
  datasetJson: string;
  /** QuestDB's `count` (see QueryPool.query). */
  count: number;
}

const US_PER_DAY = 86_400_000_000n;
const CSV_EOL = '\r\n';

/**
 * A timestamp in µs since the epoch as QuestDB prints it: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, proleptic
 * Gregorian, UTC. Exact for the whole int64 range (JS Date covers only ±8.64e15 ms). Years outside
 * 0000..9999 print with as many digits as needed, negative years with a leading `-`.
 */
export function formatTimestampUs(us: bigint): string {
  const days = floorDiv(us, US_PER_DAY);
  const inDayUs = Number(us - days * US_PER_DAY);
  const { year, month, day } = civilFromDays(Number(days));
  const seconds = Math.floor(inDayUs / 1_000_000);
  const micros = inDayUs % 1_000_000;
  const hh = Math.floor(seconds / 3600);
  const mm = Math.floor((seconds % 3600) / 60);
  const ss = seconds % 60;
  return `${formatYear(year)}-${pad(month, 2)}-${pad(day, 2)}T${pad(hh, 2)}:${pad(mm, 2)}:${pad(ss, 2)}.${pad(micros, 6)}Z`;
}

/**
 * A finite double as a JSON number the way QuestDB writes it (`1.0`, not `1`, so typed clients keep
 * it a float); NaN and ±Infinity → null (QuestDB treats them as the null double).
 */
export function formatDouble(value: number): string | null {
  if (!Number.isFinite(value)) return null;
  if (Object.is(value, -0)) return '-0.0';
  const text = String(value);
  return Number.isInteger(value) && !text.includes('e') ? `${text}.0` : text;
}

/** One result row as a JSON array (`[1,"a",null]`), each value rendered for its column's kind. */
export function formatJsonRow(kinds: readonly RenderKind[], row: readonly unknown[]): string {
  let out = '[';
  for (let i = 0; i < row.length; i++) {
    if (i > 0) out += ',';
    out += formatJsonValue(kinds[i], row[i]);
  }
  return `${out}]`;
}

/** One value as JSON text: by the declared kind when the stored value fits it, else by its own type. */
export function formatJsonValue(kind: RenderKind, value: unknown): string {
  if (value === null || value === undefined) return kind === 'boolean' ? 'false' : 'null';
  if (kind === 'timestamp' && typeof value === 'bigint') return `"${formatTimestampUs(value)}"`;
  if (kind === 'boolean' && (typeof value === 'bigint' || typeof value === 'number')) {
    return Number(value) !== 0 ? 'true' : 'false';
  }
  if (kind === 'double_array' && typeof value === 'string') return formatDoubleArrayJson(value).json;
  return formatJsonByValue(value);
}

/** A value rendered by its SQLite storage class alone (expression columns, mismatched storage). */
function formatJsonByValue(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return formatDouble(value) ?? 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  // A BLOB: QuestDB's /exec renders BINARY columns as an empty array.
  return '[]';
}

/**
 * A stored double array (TEXT holding nested JSON arrays, see sql-types.ts) re-rendered with
 * QuestDB's double format, and its number of dimensions. Text that is not a well-formed nested
 * array of numbers and nulls is returned as a JSON string, so one bad cell never breaks the answer.
 */
export function formatDoubleArrayJson(text: string): { json: string; dim: number | undefined } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { json: JSON.stringify(text), dim: undefined };
  }
  const json = renderArray(parsed);
  if (json === undefined) return { json: JSON.stringify(text), dim: undefined };
  return { json, dim: arrayDepth(parsed) };
}

function renderArray(value: unknown): string | undefined {
  if (!Array.isArray(value)) return undefined;
  const parts: string[] = [];
  for (const element of value) {
    if (element === null) parts.push('null');
    else if (typeof element === 'number') parts.push(formatDouble(element) ?? 'null');
    else {
      const nested = renderArray(element);
      if (nested === undefined) return undefined;
      parts.push(nested);
    }
  }
  return `[${parts.join(',')}]`;
}

function arrayDepth(value: unknown): number {
  let depth = 0;
  let current = value;
  while (Array.isArray(current)) {
    depth++;
    current = current[0];
  }
  return depth;
}

/** The CSV header line (`"a","b"\r\n`): names always quoted, as QuestDB's `/exp` writes them. */
export function formatCsvHeader(names: readonly string[], delimiter = ','): string {
  return names.map(csvQuote).join(delimiter) + CSV_EOL;
}

/** One CSV line (RFC 4180, CRLF-terminated) rendered like QuestDB's `/exp`; nulls are empty fields. */
export function formatCsvRow(kinds: readonly RenderKind[], row: readonly unknown[], delimiter = ','): string {
  let out = '';
  for (let i = 0; i < row.length; i++) {
    if (i > 0) out += delimiter;
    out += formatCsvValue(kinds[i], row[i], delimiter);
  }
  return out + CSV_EOL;
}

/** One CSV field. Text is always quoted (QuestDB does); other values only when they would break the line. */
export function formatCsvValue(kind: RenderKind, value: unknown, delimiter = ','): string {
  if (value === null || value === undefined) return kind === 'boolean' ? 'false' : '';
  if (kind === 'timestamp' && typeof value === 'bigint') return `"${formatTimestampUs(value)}"`;
  if (kind === 'boolean' && (typeof value === 'bigint' || typeof value === 'number')) {
    return Number(value) !== 0 ? 'true' : 'false';
  }
  if (kind === 'double_array' && typeof value === 'string')
    return csvQuote(formatDoubleArrayJson(value).json);
  if (kind === 'decimal' && typeof value === 'string') return csvQuoteIfNeeded(value, delimiter);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return formatDouble(value) ?? '';
  if (typeof value === 'string') return csvQuote(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return '';
}

function csvQuote(text: string): string {
  return `"${text.replaceAll('"', '""')}"`;
}

function csvQuoteIfNeeded(text: string, delimiter: string): string {
  return /["\r\n]/.test(text) || text.includes(delimiter) ? csvQuote(text) : text;
}

/**
 * The QuestDB type name for a result column: from its declared walship type, else from the storage
 * class of its first non-null value (INTEGER → LONG, REAL → DOUBLE, TEXT → STRING, BLOB → BINARY),
 * else STRING (QuestDB reports its NULL type as STRING). `arrayDim` is the dimension count seen in
 * the data for ARRAY columns (1 when every value was null).
 */
export function describeColumn(
  name: string,
  kind: RenderKind,
  firstValue: unknown,
  arrayDim: number | undefined,
): ResultColumn {
  if (kind === 'double_array') return { name, type: 'ARRAY', dim: arrayDim ?? 1, elemType: 'DOUBLE' };
  if (kind !== undefined) return { name, type: QUESTDB_TYPE_NAMES[kind] };
  if (typeof firstValue === 'bigint') return { name, type: 'LONG' };
  if (typeof firstValue === 'number') return { name, type: 'DOUBLE' };
  if (firstValue === null || firstValue === undefined || typeof firstValue === 'string') {
    return { name, type: 'STRING' };
  }
  return { name, type: 'BINARY' };
}

/**
 * A whole `/exec` success body: `{"query","columns","timestamp","dataset","count"}` in QuestDB's
 * order, or `{"dataset","count"}` with `noMeta` (QuestDB's `nm=true`).
 */
export function formatExecJson(parts: ExecJsonParts, options: { noMeta?: boolean } = {}): string {
  const tail = `"dataset":${parts.datasetJson},"count":${parts.count}}`;
  if (options.noMeta) return `{${tail}`;
  const columns = parts.columns.map(formatColumnJson).join(',');
  return `{"query":${JSON.stringify(parts.query)},"columns":[${columns}],"timestamp":${parts.timestampIndex},${tail}`;
}

function formatColumnJson(column: ResultColumn): string {
  const head = `{"name":${JSON.stringify(column.name)},"type":${JSON.stringify(column.type)}`;
  if (column.dim === undefined) return `${head}}`;
  return `${head},"dim":${column.dim},"elemType":${JSON.stringify(column.elemType ?? 'DOUBLE')}}`;
}

/** QuestDB's error body for `/exec` and `/exp`: `{"query","error","position"}`. */
export function formatExecError(query: string, message: string, position: number): string {
  return `{"query":${JSON.stringify(query)},"error":${JSON.stringify(message)},"position":${position}}`;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

function formatYear(year: number): string {
  return year < 0 ? `-${pad(-year, 4)}` : pad(year, 4);
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}
