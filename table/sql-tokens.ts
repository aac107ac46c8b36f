/**
 * SQL as tokens, for the rewrites the query hosts and the PostgreSQL door make before SQLite sees
 * a statement (time-literals.ts, pg/sql-text.ts). Enough of SQLite's and PostgreSQL's lexical
 * rules to find names, literals, parameters and operators; not a parser.
 */
export interface SqlToken {
  start: number;
  end: number;
  /** i identifier (maybe dotted or quoted), s string, p parameter, o operator or punctuation, x space/comment, n number */
  kind: 'i' | 's' | 'p' | 'o' | 'x' | 'n';
}

export function tokenizeSql(sql: string): SqlToken[] {
  const tokens: SqlToken[] = [];
  let i = 0;
  while (i < sql.length) {
    const start = i;
    const c = sql[i]!;
    let kind: SqlToken['kind'];
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      do {
        const end = sql.indexOf(close, i + 1);
        i = end < 0 ? sql.length : end + 1;
      } while (sql[i] === close && close !== ']');
      kind = c === "'" ? 's' : 'i';
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
      kind = 'x';
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
      kind = 'x';
    } else if (/\s/.test(c)) {
      while (i < sql.length && /\s/.test(sql[i]!)) i++;
      kind = 'x';
    } else if (
      (c === '$' || c === '?' || c === '@' || (c === ':' && sql[i - 1] !== ':')) &&
      /\w/.test(sql[i + 1] ?? '')
    ) {
      // A parameter: $1, ?1, @name, :name (not the type of PostgreSQL's `x::int`).
      i++;
      while (i < sql.length && /\w/.test(sql[i]!)) i++;
      kind = 'p';
    } else if (c === '?') {
      i++;
      kind = 'p';
    } else if (/[0-9]/.test(c)) {
      while (i < sql.length && /[\w.]/.test(sql[i]!)) i++;
      kind = 'n';
    } else if (/[A-Za-z_]/.test(c)) {
      while (i < sql.length && /[\w$]/.test(sql[i]!)) i++;
      kind = 'i';
    } else if (/[<>=!]/.test(c)) {
      while (i < sql.length && /[<>=!]/.test(sql[i]!)) i++;
      kind = 'o';
    } else {
      i++;
      kind = 'o';
    }
    tokens.push({ start, end: i, kind });
  }
  return tokens;
}
