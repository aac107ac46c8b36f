import { describe, expect, it } from 'vitest';
import { tablesOfQuery } from './sql-tables.js';

const names = (sql: string) => {
  const found = tablesOfQuery(sql);
  return found.kind === 'tables' ? found.names : `all: ${found.reason}`;
};

describe('tablesOfQuery', () => {
  it('takes the names after FROM and every kind of JOIN', () => {
    expect(names('select * from trades')).toEqual(['trades']);
    expect(names('SELECT t.price FROM trades t ASOF JOIN quotes q ON (sym) WHERE t.price > 1')).toEqual([
      'trades',
      'quotes',
    ]);
    expect(names('select * from a LT JOIN b SPLICE JOIN c cross join d')).toEqual(['a', 'b', 'c', 'd']);
    expect(names('select count(*) from a x, b as y, "My Table" where x.id = y.id')).toEqual([
      'a',
      'b',
      'My Table',
    ]);
    expect(names("select * from 'quoted'")).toEqual(['quoted']);
  });

  it('finds tables inside subqueries and leaves out names a WITH clause defines', () => {
    expect(names('select * from (select * from inner_t) sub join other o on (id)')).toEqual([
      'inner_t',
      'other',
    ]);
    expect(
      names(
        'with recent as (select * from trades where ts > 0), top as (select 1 from recent) select * from top',
      ),
    ).toEqual(['trades']);
  });

  it('ignores FROM inside strings and comments, and compares names case-insensitively', () => {
    expect(names("select 'from nowhere' as s from real_t -- from fake\n /* join fake2 */")).toEqual([
      'real_t',
    ]);
    expect(names('select * from Trades join TRADES t2 on (id)')).toEqual(['Trades']);
  });

  it('reads no table without FROM', () => {
    expect(names('select now()')).toEqual([]);
    expect(names('  (select 1)')).toEqual([]);
  });

  it('answers "all tables" when unsure', () => {
    expect(names('show tables')).toMatch(/^all: the statement starts with "show"/);
    expect(names('select * from tables()')).toMatch(/^all: FROM tables\(…\) is a table function/);
    expect(names("select * from t where s = 'unterminated")).toMatch(
      /^all: the query has an unterminated quote/,
    );
    expect(names('select * from')).toMatch(/^all: a FROM or JOIN ends the query/);
    expect(names('select * from where')).toMatch(/^all: "where" follows FROM or JOIN/);
    expect(names(`select * from t where x = '${'y'.repeat(70_000)}'`)).toMatch(
      /^all: the query is longer than/,
    );
  });
});
