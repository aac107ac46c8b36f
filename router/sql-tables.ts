/**
 * Which tables a query reads, found without a SQL parser so the router can send a read only to a
 * replica that serves them all. The rule is deliberately simple and errs towards "all tables":
 *
 * 1. string literals ('…'), quoted identifiers ("…") and comments are recognised, so a FROM inside
 *    a string or a comment is not taken for a clause;
 * 2. every identifier right after `FROM` or `JOIN` (any kind: ASOF, LT, SPLICE, CROSS, LEFT …) is
 *    a table, and so is each further `, name` of a FROM list (`FROM a x, b y`); an opening
 *    parenthesis there is a subquery, whose own FROMs are found the same way;
 * 3. names a WITH clause defines (`WITH recent AS (…)`) are not tables;
 * 4. the answer is "all tables" — only a node serving every table qualifies — when the statement
 *    does not start with SELECT or WITH (SHOW, EXPLAIN, …), when a FROM/JOIN is followed by a
 *    function call (`FROM tables()`, `FROM read_parquet(…)`), by something that is not a name, or
 *    when the text cannot be tokenised (an unterminated quote).
 *
 * A query without FROM (`SELECT now()`) reads no table: any node can answer it. Table names compare
 * case-insensitively, as in QuestDB.
 */

export type QueryTables = { kind: 'tables'; names: string[] } | { kind: 'all'; reason: string };

/** Characters of SQL looked at: a longer query is routed as "all tables" (it is rare and costly). */
export const SQL_SCANNED_MAX_CHARS = 64 * 1024;
/** Distinct tables taken from one query; more is routed as "all tables". */
export const QUERY_TABLES_MAX = 64;

type Token = { kind: 'word' | 'quoted' | 'punct'; text: string };

const CLAUSE_WORDS = new Set([
  'where',
  'join',
  'on',
  'asof',
  'lt',
  'splice',
  'cross',
  'inner',
  'left',
  'right',
  'full',
  'outer',
  'sample',
  'latest',
  'order',
  'group',
  'limit',
  'union',
  'except',
  'intersect',
  'timestamp',
  'having',
  'window',
  'select',
  'from',
  'with',
  'as',
  'partition',
  'align',
  'fill',
]);

/** The tables `sql` reads, or "all tables" with the reason; see the file comment. Pure. */
export function tablesOfQuery(sql: string): QueryTables {
  if (sql.length > SQL_SCANNED_MAX_CHARS)
    return { kind: 'all', reason: `the query is longer than ${SQL_SCANNED_MAX_CHARS} characters` };
  const tokens = tokenize(sql);
  if (tokens === undefined) return { kind: 'all', reason: 'the query has an unterminated quote or comment' };
  const first = tokens.find((t) => !(t.kind === 'punct' && t.text === '('));
  if (first === undefined) return { kind: 'tables', names: [] };
  const verb = first.kind === 'word' ? first.text.toLowerCase() : '';
  if (verb !== 'select' && verb !== 'with')
    return { kind: 'all', reason: `the statement starts with ${JSON.stringify(first.text.slice(0, 20))}` };
  const defined = cteNames(tokens);
  const names = new Map<string, string>();
  for (let i = 0; i < tokens.length; i++) {
    const word = tokens[i]!.kind === 'word' ? tokens[i]!.text.toLowerCase() : '';
    if (word !== 'from' && word !== 'join') continue;
    const found = tablesAfter(tokens, i + 1, word === 'from');
    if ('reason' in found) return { kind: 'all', reason: found.reason };
    for (const name of found.names) {
      const lower = name.toLowerCase();
      if (!defined.has(lower) && !names.has(lower)) names.set(lower, name);
    }
    if (names.size > QUERY_TABLES_MAX)
      return { kind: 'all', reason: `the query names more than ${QUERY_TABLES_MAX} tables` };
  }
  return { kind: 'tables', names: [...names.values()] };
}

/** Names after FROM (a list when `list`) or JOIN starting at `start`, or why they are unclear. */
function tablesAfter(
  tokens: Token[],
  start: number,
  list: boolean,
): { names: string[] } | { reason: string } {
  const names: string[] = [];
  let i = start;
  for (;;) {
    const token = tokens[i];
    if (token === undefined) return { reason: 'a FROM or JOIN ends the query' };
    if (token.kind === 'punct' && token.text === '(') return { names }; // a subquery: scanned on its own
    const name = nameOf(token);
    if (name === undefined)
      return { reason: `${JSON.stringify(token.text.slice(0, 20))} follows FROM or JOIN` };
    const next = tokens[i + 1];
    if (next?.kind === 'punct' && next.text === '(') return { reason: `FROM ${name}(…) is a table function` };
    names.push(name);
    if (!list) return { names };
    i = skipAlias(tokens, i + 1);
    const comma = tokens[i];
    if (!(comma?.kind === 'punct' && comma.text === ',')) return { names };
    i++;
  }
}

/** The index after an optional `[AS] alias`. */
function skipAlias(tokens: Token[], i: number): number {
  const token = tokens[i];
  if (token?.kind === 'word' && token.text.toLowerCase() === 'as') return i + 2;
  if (token?.kind === 'quoted') return i + 1;
  if (token?.kind === 'word' && !CLAUSE_WORDS.has(token.text.toLowerCase())) return i + 1;
  return i;
}

function nameOf(token: Token): string | undefined {
  if (token.kind === 'quoted') return token.text;
  if (token.kind === 'word' && !CLAUSE_WORDS.has(token.text.toLowerCase())) return token.text;
  return undefined;
}

/** Names a WITH clause defines: `WITH a AS (`, `, b AS (`. */
function cteNames(tokens: Token[]): Set<string> {
  const names = new Set<string>();
  for (let i = 1; i + 2 < tokens.length; i++) {
    const before = tokens[i - 1]!;
    const isStart =
      (before.kind === 'word' && before.text.toLowerCase() === 'with') ||
      (before.kind === 'punct' && before.text === ',');
    const as = tokens[i + 1]!;
    const open = tokens[i + 2]!;
    const name = nameOf(tokens[i]!);
    if (isStart && name !== undefined && as.kind === 'word' && as.text.toLowerCase() === 'as') {
      if (open.kind === 'punct' && open.text === '(') names.add(name.toLowerCase());
    }
  }
  return names;
}

/** Words, quoted names and punctuation; string literals and comments dropped; undefined when unterminated. */
function tokenize(sql: string): Token[] | undefined {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) return undefined;
      i = end + 2;
    } else if (c === "'" || c === '"') {
      const end = closingQuote(sql, i);
      if (end < 0) return undefined;
      // QuestDB accepts 'trades' as a table name after FROM: a quoted string there is a name too.
      tokens.push({ kind: 'quoted', text: sql.slice(i + 1, end).replaceAll(c + c, c) });
      i = end + 1;
    } else if (/[\p{L}\p{N}_$]/u.test(c)) {
      const match = /^[\p{L}\p{N}_$.]+/u.exec(sql.slice(i, i + 256))!;
      tokens.push({ kind: 'word', text: match[0] });
      i += match[0].length;
    } else {
      tokens.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return tokens;
}

/** The index of the quote closing the one at `start` (a doubled quote is an escaped one), or -1. */
function closingQuote(sql: string, start: number): number {
  const quote = sql[start]!;
  let i = start + 1;
  for (;;) {
    const end = sql.indexOf(quote, i);
    if (end < 0) return -1;
    if (sql[end + 1] !== quote) return end;
    i = end + 2;
  }
}
