import type Database from 'better-sqlite3';
import type { ColumnType } from '../wal/index.js';
import { daysFromCivil } from './civil-date.js';
import { type SqlToken, tokenizeSql } from './sql-tokens.js';
import { columnTypeOfDeclared } from './sql-types.js';

/**
 * Time that filters like time (issue 17 item 3). Timestamps are stored as integer µs since the
 * epoch, so `WHERE timestamp > '2026-01-01'` compared an integer with a string and matched
 * nothing, silently. The query hosts rewrite such comparisons before SQLite sees them: a string
 * literal compared with a timestamp column (`=`, `<>`, `<`, `<=`, `>`, `>=`, `BETWEEN … AND …`,
 * `IN (…)`) that reads as a timestamp becomes its µs; a parameter compared so is marked, and a
 * string bound to it is read the same way. `time_bucket('15m', timestamp)` buckets for
 * dashboards. The same rewrite serves `/exec`, `/exp` and the PostgreSQL door.
 */

const TIMESTAMP_TEXT =
  /^\s*(-?\d{4,})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*$/i;

/**
 * An ISO-8601 / RFC 3339 / PostgreSQL timestamp (`2026-01-02`, `2026-01-02T03:04:05.123456Z`,
 * `2026-01-02 03:04:05+02`) as µs since the Unix epoch, UTC (no offset reads as UTC, as walship
 * stores time); undefined when it is none. Digits past µs are dropped.
 */
export function parseTimestampUs(text: string): bigint | undefined {
  const m = TIMESTAMP_TEXT.exec(text);
  if (m === null) return undefined;
  const [, y, mo, d, hh = '0', mi = '0', ss = '0', frac = '', zone] = m;
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(hh);
  const minute = Number(mi);
  const second = Number(ss);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 24 || minute > 59 || second > 60)
    return undefined;
  let offsetMinutes = 0;
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    offsetMinutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
    if (zone.startsWith('-')) offsetMinutes = -offsetMinutes;
  }
  const days = BigInt(daysFromCivil(Number(y), month, day));
  const seconds = BigInt(hour * 3600 + (minute - offsetMinutes) * 60 + second);
  const micros = BigInt(frac.padEnd(6, '0').slice(0, 6));
  return (days * 86_400n + seconds) * 1_000_000n + micros;
}

const UNIT_US: Readonly<Record<string, bigint>> = {
  u: 1n,
  us: 1n,
  microsecond: 1n,
  microseconds: 1n,
  T: 1_000n,
  ms: 1_000n,
  millisecond: 1_000n,
  milliseconds: 1_000n,
  s: 1_000_000n,
  sec: 1_000_000n,
  second: 1_000_000n,
  seconds: 1_000_000n,
  m: 60_000_000n,
  min: 60_000_000n,
  minute: 60_000_000n,
  minutes: 60_000_000n,
  h: 3_600_000_000n,
  hour: 3_600_000_000n,
  hours: 3_600_000_000n,
  d: 86_400_000_000n,
  day: 86_400_000_000n,
  days: 86_400_000_000n,
  w: 604_800_000_000n,
  week: 604_800_000_000n,
  weeks: 604_800_000_000n,
};

/** `15m`, `1h`, `30 seconds`, `1 day` (QuestDB's and PostgreSQL's spellings) as µs; undefined when none. */
export function parseIntervalUs(text: string): bigint | undefined {
  const m = /^\s*(\d+)\s*([A-Za-z]+)\s*$/.exec(text);
  if (m === null) return undefined;
  const unit = UNIT_US[m[2]!] ?? UNIT_US[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const us = BigInt(m[1]!) * unit;
  return us > 0n ? us : undefined;
}

const COMPARISONS = new Set(['=', '==', '!=', '<>', '<', '<=', '>', '>=']);

/** What rewriteTimeLiterals did: the SQL to run, and the parameters compared with a timestamp column. */
export interface TimeRewrite {
  sql: string;
  /** Parameter names as better-sqlite3 binds them (`$1` → `1`, `?` positions not supported). */
  timestampParams: Set<string>;
}

/** Whether `sql` has a string literal or a parameter, which rewriteTimeLiterals could change. */
export function mayHoldTimeLiterals(sql: string): boolean {
  return /['$:@?]/.test(sql);
}

/**
 * `sql` with the string literals compared with a column named in `timestampColumns` (lower case)
 * replaced by their µs, and the parameters compared so collected (see the file comment).
 */

export function rewriteTimeLiterals(sql: string, timestampColumns: ReadonlySet<string>): TimeRewrite {
  const timestampParams = new Set<string>();
  if (timestampColumns.size === 0 || !mayHoldTimeLiterals(sql)) return { sql, timestampParams };
  const tokens = tokenizeSql(sql).filter((t) => t.kind !== 'x');
  const text = (t: SqlToken | undefined) => (t === undefined ? '' : sql.slice(t.start, t.end));
  const replacements: { start: number; end: number; text: string }[] = [];
  const isTimestampColumn = (index: number): boolean => {
    const t = tokens[index];
    if (t?.kind !== 'i') return false;
    return timestampColumns.has(unquote(text(t)).toLowerCase());
  };
  const operand = (index: number) => {
    const t = tokens[index];
    if (t === undefined) return;
    if (t.kind === 's') {
      const us = parseTimestampUs(text(t).slice(1, -1).replaceAll("''", "'"));
      if (us !== undefined) replacements.push({ start: t.start, end: t.end, text: String(us) });
    } else if (t.kind === 'p') {
      timestampParams.add(text(t).slice(1));
    }
  };
  /** The last token of the (maybe dotted) name starting at `index`. */
  const lastOfName = (index: number): number => {
    let j = index;
    while (tokens[j]?.kind === 'i' && text(tokens[j + 1]) === '.' && tokens[j + 2]?.kind === 'i') j += 2;
    return j;
  };
  for (let i = 0; i < tokens.length; i++) {
    const word = text(tokens[i]).toUpperCase();
    if (tokens[i]!.kind === 'o' && COMPARISONS.has(word)) {
      // `col op x` or `x op col`; a dotted name `t.col` ends with the column's token.
      if (isTimestampColumn(i - 1)) operand(i + 1);
      else if (isTimestampColumn(lastOfName(i + 1))) operand(i - 1);
    } else if (
      word === 'BETWEEN' &&
      (isTimestampColumn(i - 1) || (text(tokens[i - 1]).toUpperCase() === 'NOT' && isTimestampColumn(i - 2)))
    ) {
      operand(i + 1);
      if (text(tokens[i + 2]).toUpperCase() === 'AND') operand(i + 3);
    } else if (
      word === 'IN' &&
      text(tokens[i + 1]) === '(' &&
      (isTimestampColumn(i - 1) || (text(tokens[i - 1]).toUpperCase() === 'NOT' && isTimestampColumn(i - 2)))
    ) {
      for (let j = i + 2; j < tokens.length && text(tokens[j]) !== ')'; j += 2) {
        operand(j);
        if (text(tokens[j + 1]) !== ',') break;
      }
    }
  }
  if (replacements.length === 0) return { sql, timestampParams };
  let out = '';
  let at = 0;
  for (const r of replacements.sort((a, b) => a.start - b.start)) {
    out += sql.slice(at, r.start) + r.text;
    at = r.end;
  }
  return { sql: out + sql.slice(at), timestampParams };
}

function unquote(name: string): string {
  const c = name[0];
  if (c === '"' || c === '`') return name.slice(1, -1).replaceAll(c + c, c);
  if (c === '[') return name.slice(1, -1);
  return name;
}

/** Every column name (lower case) of the user tables and its walship type; null when tables disagree. */
export function columnKindsOf(db: Database.Database): ReadonlyMap<string, ColumnType | null> {
  return schemaFacts(db).kinds;
}

/** The names (lower case) of every column declared as a walship timestamp. */
export function timestampColumnsOf(db: Database.Database): ReadonlySet<string> {
  return schemaFacts(db).timestamps;
}

interface SchemaFacts {
  version: number;
  kinds: Map<string, ColumnType | null>;
  timestamps: Set<string>;
}

/** Read once per schema version (`PRAGMA schema_version`, a few µs). */
function schemaFacts(db: Database.Database): SchemaFacts {
  const version = Number(db.pragma('schema_version', { simple: true }) as number | bigint);
  const cached = schemaCache.get(db);
  if (cached !== undefined && cached.version === version) return cached;
  const rows = db
    .prepare(
      `SELECT lower(p.name) AS name, p.type AS type FROM sqlite_schema m JOIN pragma_table_info(m.name) p
       WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`,
    )
    .all() as { name: string; type: string }[];
  const kinds = new Map<string, ColumnType | null>();
  const timestamps = new Set<string>();
  for (const { name, type } of rows) {
    const kind = columnTypeOfDeclared(type) ?? null;
    if (kind === 'timestamp') timestamps.add(name);
    const seen = kinds.get(name);
    kinds.set(name, seen === undefined || seen === kind ? kind : null);
  }
  const facts = { version, kinds, timestamps };
  schemaCache.set(db, facts);
  return facts;
}

const schemaCache = new WeakMap<Database.Database, SchemaFacts>();

/**
 * Registers `time_bucket(interval, ts)` (µs, floored to the interval; TimescaleDB's argument
 * order) and `pg_extract_epoch(ts)`, PostgreSQL's `extract(epoch from ts)` as the PostgreSQL door
 * rewrites it: seconds since the epoch, fractional, from µs or from a timestamp string.
 */
export function registerTimeFunctions(db: Database.Database): void {
  db.function('pg_extract_epoch', { deterministic: true, safeIntegers: true }, (ts: unknown) => {
    if (ts === null) return null;
    const us =
      typeof ts === 'bigint'
        ? ts
        : typeof ts === 'number'
          ? BigInt(Math.trunc(ts))
          : parseTimestampUs(String(ts));
    if (us === undefined)
      throw new Error(`extract(epoch from …): ${JSON.stringify(String(ts))} is no timestamp`);
    return Number(us) / 1e6;
  });
  db.function(
    'time_bucket',
    { deterministic: true, safeIntegers: true },
    (interval: unknown, ts: unknown) => {
      if (ts === null || interval === null) return null;
      const step = typeof interval === 'bigint' ? interval : parseIntervalUs(String(interval));
      if (step === undefined || step <= 0n)
        throw new Error(`time_bucket: ${JSON.stringify(String(interval))} is no interval (15m, 1h, 1 day…)`);
      const value =
        typeof ts === 'bigint'
          ? ts
          : typeof ts === 'number'
            ? BigInt(Math.trunc(ts))
            : parseTimestampUs(String(ts));
      if (value === undefined) throw new Error(`time_bucket: ${JSON.stringify(String(ts))} is no timestamp`);
      const bucket = value / step;
      return (value < 0n && bucket * step !== value ? bucket - 1n : bucket) * step;
    },
  );
}
