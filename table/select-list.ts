/**
 * The outer SELECT list of a statement, one expression per result column, read without running
 * it: what a prepared-only statement's expression columns are typed from (query-pg.ts). Undefined
 * when it cannot be read simply (a `*`, a compound SELECT, no FROM-less shape it knows).
 */
export function selectListOf(sql: string): string[] | undefined {
  const text = sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ');
  const start = /^\s*(?:WITH\b[\s\S]*?\)\s*)?SELECT\s+(?:DISTINCT\s+|ALL\s+)?/i.exec(text);
  if (start === null) return undefined;
  const expressions: string[] = [];
  let depth = 0;
  let from = start[0].length;
  let quote = '';
  for (let i = from; i <= text.length; i++) {
    const c = text[i] ?? '';
    if (quote !== '') {
      if (c === quote) quote = '';
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (
      depth === 0 &&
      (c === ',' ||
        c === '' ||
        /^\s(FROM|WHERE|GROUP|ORDER|LIMIT|UNION|EXCEPT|INTERSECT|HAVING|WINDOW)\b/i.test(
          text.slice(i, i + 12),
        ))
    ) {
      expressions.push(text.slice(from, i).trim());
      if (c !== ',') break;
      from = i + 1;
    }
  }
  return expressions.some((e) => e === '' || e.endsWith('*')) ? undefined : expressions;
}

/**
 * The walship type an expression yields, read from its text: `count(…)` long, `avg(…)` double,
 * `sum|min|max|total(col)` the column's, `time_bucket(…)` timestamp, a cast its type; undefined
 * when it cannot tell. `columnKind` types a bare column name.
 */
export function expressionKind(
  expression: string,
  columnKind: (name: string) => string | undefined,
): string | undefined {
  const body = expression
    .replace(/\s+AS\s+("[^"]*"|\w+)\s*$/i, '')
    .replace(/\s+("[^"]*"|\w+)\s*$/, (m, alias: string) => (/^(AND|OR|END)$/i.test(alias) ? m : ''))
    .trim();
  const cast = /^CAST\s*\([\s\S]*\s+AS\s+(\w+)\s*\)$/i.exec(body);
  if (cast !== null) {
    const type = cast[1]!.toUpperCase();
    if (type.includes('INT')) return 'long';
    if (type.includes('REAL') || type.includes('FLOA') || type.includes('DOUB')) return 'double';
    if (type.includes('TEXT') || type.includes('CHAR')) return 'string';
    return undefined;
  }
  const call = /^(\w+)\s*\(\s*(?:DISTINCT\s+)?([\s\S]*)\)$/i.exec(body);
  if (call !== null) {
    const fn = call[1]!.toLowerCase();
    const arg = call[2]!.trim();
    if (fn === 'count') return 'long';
    if (fn === 'avg' || fn === 'stddev' || fn === 'variance') return 'double';
    if (fn === 'time_bucket') return 'timestamp';
    if (['sum', 'min', 'max', 'total', 'first', 'last'].includes(fn)) {
      const kind = columnKind(arg.replace(/^.*\./, '').replace(/^"|"$/g, ''));
      if (fn === 'total') return 'double';
      return kind === 'timestamp' && fn === 'sum' ? 'long' : kind;
    }
    return undefined;
  }
  return undefined;
}
