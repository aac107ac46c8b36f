import { WalshipError } from '../core/index.js';

/**
 * Judges a query's SQL text before SQLite sees it (RFC-0004 §6). Preparing a statement is not a safe
 * way to find out what it does: SQLite runs a PRAGMA that sets something while it *compiles* it, so
 * `PRAGMA full_column_names = ON` had changed the shared connection before `stmt.readonly` could
 * refuse it. So the text is read first, with SQLite's own rules for whitespace, comments, strings and
 * quoted names, and only these reach `prepare`:
 *
 * - one statement (a trailing `;` and comments are fine; a second statement is refused);
 * - starting with SELECT, WITH or VALUES, optionally after EXPLAIN or EXPLAIN QUERY PLAN;
 * - or a PRAGMA from READ_PRAGMAS, the schema introspection forms, which read and set nothing
 *   whatever their argument (`PRAGMA table_info(t)`). Every other PRAGMA is refused, reading forms
 *   included: SQLite decides read or write by the presence of a value, and an allow-list of names is
 *   simpler to trust than a parser of values. Settings can still be read through the pragma
 *   functions (`SELECT * FROM pragma_query_only`), which can only read: SQLite gives a pragma
 *   function an argument only for the introspection pragmas (and `optimize`, whose ANALYZE a
 *   read-only connection refuses).
 *
 * What passes is then prepared and must be a reader and read-only (query-runner.ts), and the host
 * checks after every query that the connection's settings are unchanged (query-host.ts).
 */

/**
 * PRAGMAs a query may run: they describe the schema and never change the connection, with or
 * without an argument. `database_list` is left out on purpose: it shows the server's file paths.
 */
export const READ_PRAGMAS: ReadonlySet<string> = new Set([
  'table_info',
  'table_xinfo',
  'table_list',
  'index_list',
  'index_info',
  'index_xinfo',
  'foreign_key_list',
]);

/** Statement keywords that start a query. */
const QUERY_KEYWORDS: ReadonlySet<string> = new Set(['SELECT', 'WITH', 'VALUES']);

/** The other words an SQLite statement can start with: each is refused as not read-only. */
const STATEMENT_KEYWORDS: ReadonlySet<string> = new Set([
  'ALTER',
  'ANALYZE',
  'ATTACH',
  'BEGIN',
  'COMMIT',
  'CREATE',
  'DELETE',
  'DETACH',
  'DROP',
  'END',
  'INSERT',
  'REINDEX',
  'RELEASE',
  'REPLACE',
  'ROLLBACK',
  'SAVEPOINT',
  'UPDATE',
  'VACUUM',
]);

/** One token of SQL text, as far as the judge needs to tell them apart. */
interface Token {
  kind: 'word' | 'quoted' | 'string' | 'semicolon' | 'other';
  /** The word as written, or a quoted name without its quotes. */
  text: string;
  /** Offset of the token in the SQL text (QuestDB's error `position`). */
  start: number;
}

/**
 * Throws QUERY_READ_ONLY (a statement that is not a query, or a PRAGMA outside READ_PRAGMAS) or
 * QUERY_INVALID (more than one statement, a NUL character, a first word no statement starts with)
 * before anything runs; returns when the text may be prepared. Text without any statement passes, so
 * that SQLite's own message reaches the user.
 */
export function judgeReadStatement(sql: string): void {
  const nul = sql.indexOf('\0');
  if (nul >= 0) {
    // SQLite stops reading at a NUL, so what follows it would be invisible to one of the two readers.
    throw invalid('the query text contains a NUL character', nul);
  }
  const statements = splitStatements(tokenize(sql));
  const second = statements[1];
  if (second !== undefined) {
    throw invalid(
      'only one statement per query is served; a second one starts here (remove it, or send it as its own query)',
      second[0]?.start ?? 0,
    );
  }
  const statement = statements[0];
  if (statement !== undefined) judgeStatement(statement);
}

function judgeStatement(tokens: readonly Token[]): void {
  let i = 0;
  if (isWord(tokens[i], 'EXPLAIN')) {
    i++;
    if (isWord(tokens[i], 'QUERY') && isWord(tokens[i + 1], 'PLAN')) i += 2;
  }
  const keyword = tokens[i];
  if (keyword === undefined) return; // `EXPLAIN` alone: SQLite's syntax error says it best.
  if (keyword.kind === 'word' && QUERY_KEYWORDS.has(keyword.text.toUpperCase())) return;
  if (isWord(keyword, 'PRAGMA')) {
    judgePragma(tokens, i + 1, keyword.start);
    return;
  }
  if (keyword.kind !== 'word' || !STATEMENT_KEYWORDS.has(keyword.text.toUpperCase())) {
    // No SQL statement starts so; SQLite would say the same without being asked.
    throw invalid(`near "${keyword.text}": syntax error`, keyword.start);
  }
  throw new WalshipError(
    'QUERY_READ_ONLY',
    'invalid',
    'only read-only queries (SELECT, WITH … SELECT, VALUES, EXPLAIN, PRAGMA table_info(…) and the other ' +
      'schema PRAGMAs) are served here; tables are written through ILP, not SQL',
    { details: { position: keyword.start } },
  );
}

/** `PRAGMA [schema.]name …`: allowed when `name` is in READ_PRAGMAS. */
function judgePragma(tokens: readonly Token[], at: number, position: number): void {
  const first = tokens[at];
  const qualified = tokens[at + 1]?.kind === 'other' && tokens[at + 1]?.text === '.';
  const name = qualified ? tokens[at + 2] : first;
  const isName = name !== undefined && (name.kind === 'word' || name.kind === 'quoted');
  if (isName && READ_PRAGMAS.has(name.text.toLowerCase())) return;
  const shown = isName ? `PRAGMA ${name.text.slice(0, 64)}` : 'this PRAGMA';
  throw new WalshipError(
    'QUERY_READ_ONLY',
    'invalid',
    `${shown} is not served: only read-only queries are, and a PRAGMA can change the connection that ` +
      'every query shares. Served: ' +
      `PRAGMA ${[...READ_PRAGMAS].join(', ')} (with a table or index name); a setting can be read with ` +
      `its pragma function, e.g. SELECT * FROM pragma_query_only`,
    { details: { position } },
  );
}

function isWord(token: Token | undefined, upper: string): boolean {
  return token !== undefined && token.kind === 'word' && token.text.toUpperCase() === upper;
}

/** Token lists between `;`, empty statements dropped (SQLite skips them too). */
function splitStatements(tokens: readonly Token[]): Token[][] {
  const statements: Token[][] = [];
  let current: Token[] = [];
  for (const token of tokens) {
    if (token.kind === 'semicolon') {
      if (current.length > 0) statements.push(current);
      current = [];
    } else {
      current.push(token);
    }
  }
  if (current.length > 0) statements.push(current);
  return statements;
}

/** SQLite's whitespace (tokenize.c CC_SPACE): nothing else separates tokens. */
function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\f' || c === '\r';
}

/** SQLite's identifier characters (sqlite3IsIdChar): ASCII letters, digits, `_`, `$`, and every non-ASCII character. */
function isIdChar(c: string): boolean {
  return /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) >= 0x80;
}

/**
 * Splits SQL into tokens the way SQLite's tokenizer does for what matters here: whitespace and both
 * comment forms are skipped (an unclosed block comment runs to the end, as in SQLite); '…' strings,
 * "…" and `…` names (a doubled quote inside) and […] names are one token each; runs of identifier
 * characters are words; any other character is a token of its own. Unclosed quotes run to the end;
 * SQLite then refuses the text itself.
 */
function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (isSpace(c)) {
      i++;
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i + 2);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      const end = closingQuote(sql, i, c);
      const body = sql.slice(i + 1, Math.min(end, sql.length)).replaceAll(c + c, c);
      tokens.push({ kind: c === "'" ? 'string' : 'quoted', text: body, start: i });
      i = end + 1;
    } else if (c === '[') {
      const close = sql.indexOf(']', i + 1);
      const end = close < 0 ? sql.length : close;
      tokens.push({ kind: 'quoted', text: sql.slice(i + 1, end), start: i });
      i = end + 1;
    } else if (isIdChar(c)) {
      let end = i + 1;
      while (end < sql.length && isIdChar(sql[end] as string)) end++;
      tokens.push({ kind: 'word', text: sql.slice(i, end), start: i });
      i = end;
    } else {
      tokens.push({ kind: c === ';' ? 'semicolon' : 'other', text: c, start: i });
      i++;
    }
  }
  return tokens;
}

/** Index of the quote that closes the one at `open` (a doubled quote is part of the text), or sql.length. */
function closingQuote(sql: string, open: number, quote: string): number {
  let i = open + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] !== quote) return i;
      i += 2;
    } else {
      i++;
    }
  }
  return sql.length;
}

function invalid(message: string, position: number): WalshipError {
  return new WalshipError('QUERY_INVALID', 'invalid', message, { details: { position } });
}
