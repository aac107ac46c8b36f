import { type SqlToken, tokenizeSql } from '../table/index.js';

/**
 * What the PostgreSQL door reads of SQL text before SQLite sees it: where one statement of a
 * simple query ends, whether a query is only comments (Grafana pings with `-- ping`), how many
 * `$n` parameters a statement takes, and the session commands it answers itself.
 */

/**
 * The statements of a simple query, split at `;` outside quotes and comments, without the ones
 * that hold nothing but whitespace and comments.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  scan(sql, (index) => {
    statements.push(sql.slice(start, index));
    start = index + 1;
  });
  statements.push(sql.slice(start));
  return statements.filter((statement) => !isEmptyQuery(statement));
}

/** True when `sql` holds only whitespace, `;` and comments. */
export function isEmptyQuery(sql: string): boolean {
  let empty = true;
  scan(
    sql,
    () => {},
    () => {
      empty = false;
    },
  );
  return empty;
}

/** The highest `$n` outside quotes and comments (the statement's parameter count), 0 for none. */
export function parameterCount(sql: string): number {
  let count = 0;
  const pattern = /\$(\d+)/y;
  scan(
    sql,
    () => {},
    (index) => {
      if (sql[index] !== '$') return;
      pattern.lastIndex = index;
      const m = pattern.exec(sql);
      if (m !== null) count = Math.max(count, Number(m[1]));
    },
  );
  return count;
}

/**
 * Walks `sql`, calling `onSemicolon` at each `;` and `onCode` at each other character of code
 * (not whitespace, not inside a quote or a comment). Quotes: '…' (with '' inside), "…", $tag$…$tag$.
 * Comments: -- to the end of the line, /* … *\/ (nested, as PostgreSQL reads them).
 */
function scan(sql: string, onSemicolon: (index: number) => void, onCode?: (index: number) => void): void {
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      onCode?.(i);
      const end = sql.indexOf(c, i + 1);
      i = end < 0 ? sql.length : end + 1;
      continue;
    }
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (tag !== null) {
        onCode?.(i);
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? sql.length : end + tag[0].length;
        continue;
      }
    }
    if (c === ';') onSemicolon(i);
    else if (!/\s/.test(c)) onCode?.(i);
    i++;
  }
}

/** A statement the door answers itself, without the query hosts. */
export type SessionCommand =
  | { kind: 'set'; tag: string; name?: string; value?: string }
  | { kind: 'show'; name: string }
  | { kind: 'transaction'; tag: 'BEGIN' | 'COMMIT' | 'ROLLBACK' }
  | { kind: 'ignored'; tag: string };

/**
 * The session command `sql` is, or undefined for a query for the hosts. Settings are kept per
 * session and shown back; transactions are accepted and mean nothing more than SQLite's snapshot
 * per statement (reads only); DISCARD, DEALLOCATE, RESET and the like are accepted.
 */
export function sessionCommandOf(sql: string): SessionCommand | undefined {
  const text = stripComments(sql)
    .trim()
    .replace(/;+\s*$/, '');
  const word = /^[A-Za-z]+/.exec(text)?.[0]?.toUpperCase();
  switch (word) {
    case 'SET': {
      const m = /^SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+)\s*(.+)$/is.exec(text);
      if (m === null) return { kind: 'set', tag: 'SET' };
      return { kind: 'set', tag: 'SET', name: m[1]!.toLowerCase(), value: unquote(m[2]!.trim()) };
    }
    case 'SHOW': {
      const m = /^SHOW\s+([A-Za-z_][\w.]*)$/is.exec(text);
      return m === null ? undefined : { kind: 'show', name: m[1]!.toLowerCase() };
    }
    case 'BEGIN':
    case 'START':
      return { kind: 'transaction', tag: 'BEGIN' };
    case 'COMMIT':
    case 'END':
      return { kind: 'transaction', tag: 'COMMIT' };
    case 'ROLLBACK':
    case 'ABORT':
      return { kind: 'transaction', tag: 'ROLLBACK' };
    case 'DISCARD':
    case 'DEALLOCATE':
    case 'RESET':
    case 'CLOSE':
    case 'UNLISTEN':
      return {
        kind: 'ignored',
        tag: text
          .split(/\s+/)
          .slice(0, word === 'DISCARD' ? 2 : 1)
          .join(' ')
          .toUpperCase(),
      };
    default:
      return undefined;
  }
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*\n?/g, ' ').replace(/\/\*[\s\S]*?\*\//g, ' ');
}

function unquote(value: string): string {
  const m = /^'((?:[^']|'')*)'$/.exec(value);
  return m === null ? value : m[1]!.replaceAll("''", "'");
}

/** SQLite's type for each PostgreSQL type a `::` cast may name. */
const CAST_TYPES: Readonly<Record<string, string>> = Object.freeze({
  int2: 'INTEGER',
  int4: 'INTEGER',
  int8: 'INTEGER',
  int: 'INTEGER',
  integer: 'INTEGER',
  smallint: 'INTEGER',
  bigint: 'INTEGER',
  oid: 'TEXT',
  regclass: 'TEXT',
  regtype: 'TEXT',
  regproc: 'TEXT',
  float4: 'REAL',
  float8: 'REAL',
  real: 'REAL',
  'double precision': 'REAL',
  numeric: 'REAL',
  decimal: 'REAL',
  text: 'TEXT',
  varchar: 'TEXT',
  'character varying': 'TEXT',
  char: 'TEXT',
  character: 'TEXT',
  bpchar: 'TEXT',
  name: 'TEXT',
  unknown: 'TEXT',
});

/** A `::type` cast SQLite cannot be given: SQLSTATE 0A000. */
export class UnsupportedCastError extends Error {
  readonly sqlState = '0A000';
}

/**
 * PostgreSQL's `expr::type` casts as SQLite's `CAST(expr AS type)`, for the types in CAST_TYPES
 * (`$1::text`, `count(*)::int`, `current_setting('x')::int / 100`); the expression is the word,
 * literal, parameter, dotted name or parenthesised group (with its function name) before `::`.
 * Other types throw UnsupportedCastError. SQL without `::` comes back as it is.
 */
export function rewriteCasts(sql: string): string {
  if (!sql.includes('::')) return sql;
  let tokens = tokenizeSql(sql);
  let text = sql;
  for (;;) {
    const at = tokens.findIndex(
      (t, i) =>
        t.kind === 'o' &&
        text[t.start] === ':' &&
        text[tokens[i + 1]?.start ?? -1] === ':' &&
        tokens[i + 1]?.kind === 'o',
    );
    if (at < 0) return text;
    const first = operandStart(text, tokens, at - 1);
    if (first < 0) throw new UnsupportedCastError('a :: cast without an expression before it');
    let next = at + 2;
    while (tokens[next]?.kind === 'x') next++;
    const typeStart = tokens[next]?.start ?? text.length;
    const m =
      /^([A-Za-z_][A-Za-z0-9_]*(?:\s+(?:precision|varying))?)(\s*\(\s*\d+(?:\s*,\s*\d+)?\s*\))?(\[\])?/.exec(
        text.slice(typeStart),
      );
    if (m === null) throw new UnsupportedCastError('a :: cast without a type after it');
    const pgType = m[1]!.toLowerCase().replace(/\s+/g, ' ');
    const sqliteType =
      m[3] === undefined
        ? (CAST_TYPES[pgType] ?? (pgType.startsWith('reg') ? 'TEXT' : undefined))
        : undefined;
    if (sqliteType === undefined) throw new UnsupportedCastError(`casts to ${m[0]} are not supported`);
    const operand = text.slice(tokens[first]!.start, tokens[at]!.start).trimEnd();
    text = `${text.slice(0, tokens[first]!.start)}CAST(${operand} AS ${sqliteType})${text.slice(typeStart + m[0].length)}`;
    tokens = tokenizeSql(text);
  }
}

/** The index of the first token of the operand ending at token `last` (whitespace skipped), or -1. */
function operandStart(text: string, tokens: readonly SqlToken[], last: number): number {
  let i = last;
  while (i >= 0 && tokens[i]!.kind === 'x') i--;
  if (i < 0) return -1;
  const token = tokens[i]!;
  if (token.kind === 'o' && text[token.start] === ')') {
    let depth = 0;
    for (; i >= 0; i--) {
      const t = tokens[i]!;
      if (t.kind !== 'o') continue;
      if (text[t.start] === ')') depth++;
      else if (text[t.start] === '(' && --depth === 0) break;
    }
    if (i < 0) return -1;
    // A function call: its name belongs to the operand.
    if (i > 0 && tokens[i - 1]!.kind === 'i') i--;
    return i;
  }
  if (token.kind === 'o') return -1;
  // A dotted name: a.b.c
  while (
    i >= 2 &&
    text[tokens[i - 1]!.start] === '.' &&
    tokens[i - 1]!.kind === 'o' &&
    tokens[i - 2]!.kind === 'i'
  )
    i -= 2;
  return i;
}

/**
 * PostgreSQL's spelling of what SQLite (with the query hosts' catalog: table/pg-catalog.ts) can
 * run: `pg_catalog.` dropped and `information_schema.x` as `information_schema_x` (the catalog's
 * virtual tables and functions), `OPERATOR(~)`, `~` and `!~` as REGEXP, `COLLATE default` and
 * `E'…'` string prefixes dropped, and `::` casts (rewriteCasts). Quoted text and comments are
 * left as they are.
 */
export function rewriteForSqlite(sql: string): string {
  const code = mapCode(rewriteGrafanaSchemaQueries(sql), (part) =>
    part
      .replace(/\bpg_catalog\s*\.\s*/gi, '')
      .replace(/\binformation_schema\s*\.\s*([A-Za-z_]\w*)/gi, 'information_schema_$1')
      .replace(/\bOPERATOR\s*\(\s*(!?)~\*?\s*\)/gi, (_m, not: string) =>
        not === '!' ? ' NOT REGEXP ' : ' REGEXP ',
      )
      .replace(/!~\*?/g, ' NOT REGEXP ')
      .replace(/(?<=[\w)\]"'])(\s*)~\*?(?=\s*['(\w$])/g, ' REGEXP ')
      .replace(/\bCOLLATE\s+"?default"?/gi, '')
      // Grafana's $__timeGroup(col, '5m') is floor(extract(epoch from col)/300)*300.
      .replace(/\bextract\s*\(\s*epoch\s+from\s+/gi, 'pg_extract_epoch('),
  );
  return rewriteCasts(code);
}

/** `sql` with `fn` applied to each stretch of code between quoted text and comments. */
function mapCode(sql: string, fn: (code: string) => string): string {
  let out = '';
  let code = '';
  let i = 0;
  const flush = () => {
    out += fn(code);
    code = '';
  };
  while (i < sql.length) {
    const c = sql[i]!;
    let end = -1;
    if (c === "'" || c === '"') {
      end = i + 1;
      for (;;) {
        const close = sql.indexOf(c, end);
        if (close < 0) {
          end = sql.length;
          break;
        }
        end = close + 1;
        if (sql[end] !== c) break;
        end++;
      }
    } else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i);
      end = nl < 0 ? sql.length : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const close = sql.indexOf('*/', i + 2);
      end = close < 0 ? sql.length : close + 2;
    }
    if (end < 0) {
      code += c;
      i++;
      continue;
    }
    // An E'…' string: the E is code just before the quote; SQLite knows no such prefix.
    if (c === "'" && /(^|[^\w])[Ee]$/.test(code)) code = code.slice(0, -1);
    flush();
    out += sql.slice(i, end);
    i = end;
  }
  flush();
  return out;
}

/** Catalog tables that walship keeps empty: it has no policies, triggers, indexes, inheritance… */
const EMPTY_CATALOGS = new Set([
  'pg_policy',
  'pg_statistic_ext',
  'pg_publication',
  'pg_publication_rel',
  'pg_publication_namespace',
  'pg_trigger',
  'pg_inherits',
  'pg_index',
  'pg_constraint',
  'pg_rewrite',
  'pg_partitioned_table',
  'pg_foreign_table',
  'pg_attrdef',
  'pg_description',
]);

/**
 * True when the first table of `sql`'s outer FROM is one walship keeps empty (psql's `\d` asks
 * pg_policy with `array(select …)`, which SQLite cannot parse). Such a query selects no rows, so
 * the door answers it with none when SQLite refuses its syntax.
 */
export function readsEmptyCatalog(sql: string): boolean {
  let depth = 0;
  const words = sql.matchAll(/'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\/\*[\s\S]*?\*\/|[()]|[A-Za-z_][\w.]*/g);
  let afterFrom = false;
  for (const [token] of words) {
    if (token === '(') depth++;
    else if (token === ')') depth--;
    else if (depth === 0 && afterFrom) {
      return EMPTY_CATALOGS.has(token.toLowerCase().replace(/^pg_catalog\./, ''));
    } else if (depth === 0 && token.toUpperCase() === 'FROM') afterFrom = true;
  }
  return false;
}

/**
 * Grafana's query builder lists tables and columns "in the search path" with arrays SQLite has
 * not got (`string_to_array`, `s[i]`, `generate_series`, `parse_ident(…)[n]`,
 * grafana-postgresql-datasource/postgresMetaQuery.ts). Walship has one schema, `public`, so the
 * search-path subquery is `('public')`, and `parse_ident` of a literal becomes the catalog's
 * `pg_ident_length` / `pg_ident_part` (table/pg-catalog.ts).
 */
function rewriteGrafanaSchemaQueries(sql: string): string {
  if (!/search_path|parse_ident/i.test(sql)) return sql;
  return sql
    .replace(
      /IN\s*\(\s*SELECT\s+CASE\s+WHEN\s+trim\(\s*s\[i\]\s*\)\s*=\s*'"\$user"'\s+THEN\s+user\s+ELSE\s+trim\(\s*s\[i\]\s*\)\s+END\s+FROM\s+generate_series\([\s\S]*?\)\s+as\s+i\s*,\s*string_to_array\(\s*current_setting\(\s*'search_path'\s*\)\s*,\s*','\s*\)\s+s\s*\)/gi,
      "IN ('public')",
    )
    .replace(/array_length\(\s*parse_ident\(\s*('(?:[^']|'')*')\s*\)\s*,\s*1\s*\)/gi, 'pg_ident_length($1)')
    .replace(/\(\s*parse_ident\(\s*('(?:[^']|'')*')\s*\)\s*\)\s*\[\s*(\d+)\s*\]/gi, 'pg_ident_part($1, $2)');
}
