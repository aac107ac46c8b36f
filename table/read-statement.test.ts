import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { judgeReadStatement } from './read-statement.js';

/** The code and position judgeReadStatement refuses `sql` with, or 'ok'. */
function verdict(sql: string): string {
  try {
    judgeReadStatement(sql);
    return 'ok';
  } catch (error) {
    if (!isWalshipError(error)) throw error;
    return `${error.code}@${String(error.details.position)}`;
  }
}

describe('judgeReadStatement', () => {
  it('lets queries through, with comments, EXPLAIN and a trailing semicolon', () => {
    for (const sql of [
      'select k, v from t',
      '  /* c */ -- line\n SELECT 1',
      'WITH x AS (SELECT 1) SELECT * FROM x',
      'values (1), (2)',
      'EXPLAIN SELECT 1',
      'explain query plan select 1',
      'select 1;',
      'select 1; ; -- done',
      "select ';pragma full_column_names=on' as s",
      'select "a;b" from t',
      'select [x;y] from t',
      "select * from pragma_table_info('t')",
      // SQLite's own error says it best when there is no statement at all.
      '-- only a comment',
    ]) {
      expect(verdict(sql), sql).toBe('ok');
    }
  });

  // Issue 13 item 7: these ran while being prepared, before `readonly` could refuse them.
  it('refuses every setting PRAGMA, before it is prepared, at the PRAGMA keyword', () => {
    for (const sql of [
      'PRAGMA full_column_names = ON',
      'PRAGMA reverse_unordered_selects = ON',
      'PRAGMA query_only = OFF',
      'PRAGMA mmap_size = 1000000',
      'PRAGMA busy_timeout = 1',
      'PRAGMA threads = 4',
      'PRAGMA hard_heap_limit = 1',
      'PRAGMA temp_store = FILE',
      'PRAGMA main.cache_size = 5',
      'PRAGMA "full_column_names" = 1',
      'PRAGMA query_only',
    ]) {
      expect(verdict(sql), sql).toBe('QUERY_READ_ONLY@0');
    }
    expect(verdict('/* x */ pragma case_sensitive_like = 1')).toBe('QUERY_READ_ONLY@8');
    expect(verdict('EXPLAIN PRAGMA cache_size = 5')).toBe('QUERY_READ_ONLY@8');
    expect(verdict('explain query plan pragma threads=2')).toBe('QUERY_READ_ONLY@19');
  });

  it('serves the schema PRAGMAs in every spelling', () => {
    for (const sql of [
      'PRAGMA table_info(t)',
      'pragma TABLE_XINFO = t',
      'PRAGMA main.index_list("t")',
      'PRAGMA [table_list]',
      'PRAGMA index_info(i)',
      'PRAGMA foreign_key_list(t)',
    ]) {
      expect(verdict(sql), sql).toBe('ok');
    }
    expect(verdict('PRAGMA database_list')).toBe('QUERY_READ_ONLY@0');
  });

  it('refuses statements that are not queries at their first keyword', () => {
    expect(verdict("ATTACH 'x.db' AS x")).toBe('QUERY_READ_ONLY@0');
    expect(verdict('DETACH x')).toBe('QUERY_READ_ONLY@0');
    expect(verdict('  BEGIN')).toBe('QUERY_READ_ONLY@2');
    expect(verdict('insert into t values (1)')).toBe('QUERY_READ_ONLY@0');
    expect(verdict('VACUUM')).toBe('QUERY_READ_ONLY@0');
  });

  it('answers a first word no statement starts with as SQLite would: a syntax error there', () => {
    expect(verdict('selec 1')).toBe('QUERY_INVALID@0');
    expect(verdict(' (select 1)')).toBe('QUERY_INVALID@1');
    let message = '';
    try {
      judgeReadStatement('selec 1');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe('near "selec": syntax error');
  });

  it('refuses a second statement, wherever the first one hides its semicolon', () => {
    expect(verdict('select 1; pragma full_column_names = on')).toBe('QUERY_INVALID@10');
    expect(verdict("select 'it''s;'; select 2")).toBe('QUERY_INVALID@17');
    expect(verdict('select 1 /* ; */ ; select 2')).toBe('QUERY_INVALID@19');
    expect(verdict('select 1 -- ;\n; select 2')).toBe('QUERY_INVALID@16');
  });

  it('refuses a NUL character, after which SQLite would read nothing', () => {
    expect(verdict('select 1\0; pragma full_column_names = on')).toBe('QUERY_INVALID@8');
  });

  it('reads a non-ASCII character as part of a word, as SQLite does', () => {
    // U+00A0 is not whitespace to SQLite: `\u00a0PRAGMA` is one unknown word, not a PRAGMA.
    expect(verdict('\u00a0PRAGMA full_column_names = on')).toBe('QUERY_INVALID@0');
    expect(verdict('select\u00a0 1')).toBe('QUERY_INVALID@0');
  });
});
