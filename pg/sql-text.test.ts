import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/index.js';
import { parseTimestampUs } from '../table/index.js';
import {
  isEmptyQuery,
  parameterCount,
  readsEmptyCatalog,
  rewriteCasts,
  rewriteForSqlite,
  sessionCommandOf,
  splitStatements,
  UnsupportedCastError,
} from './sql-text.js';
import { decodeParam, timestampText } from './values.js';
import { FrontendReader, PgProtocolError } from './wire.js';

describe('SQL text', () => {
  it('splits a simple query at semicolons outside quotes and comments, dropping empty ones', () => {
    expect(splitStatements('SELECT \'a;b\'; SELECT "x;y" FROM t; -- c;d\n;/* e;f */ SELECT 3;')).toEqual([
      "SELECT 'a;b'",
      ' SELECT "x;y" FROM t',
      '/* e;f */ SELECT 3',
    ]);
    expect(splitStatements("SELECT 'it''s; fine'")).toEqual(["SELECT 'it''s; fine'"]);
  });

  it('knows a comment-only query (Grafana pings with one)', () => {
    expect(isEmptyQuery('-- ping')).toBe(true);
    expect(isEmptyQuery(' /* a /* nested */ b */ ; ')).toBe(true);
    expect(isEmptyQuery("SELECT '--'")).toBe(false);
  });

  it('counts $n parameters outside quotes', () => {
    expect(parameterCount('SELECT $1, $3')).toBe(3);
    expect(parameterCount("SELECT '$9', $2 -- $7")).toBe(2);
    expect(parameterCount('SELECT 1')).toBe(0);
  });

  it('rewrites :: casts into CAST for the types SQLite has', () => {
    expect(rewriteCasts('SELECT $1::text')).toBe('SELECT CAST($1 AS TEXT)');
    expect(rewriteCasts("SELECT current_setting('server_version_num')::int / 100")).toBe(
      "SELECT CAST(current_setting('server_version_num') AS INTEGER) / 100",
    );
    expect(rewriteCasts('SELECT count(*)::float8, t.qty::bigint, 1.5::double precision FROM t')).toBe(
      'SELECT CAST(count(*) AS REAL), CAST(t.qty AS INTEGER), CAST(1.5 AS REAL) FROM t',
    );
    expect(rewriteCasts("SELECT 'a::b', x FROM t")).toBe("SELECT 'a::b', x FROM t");
    expect(rewriteCasts("SELECT 'trades'::regclass")).toBe("SELECT CAST('trades' AS TEXT)");
    expect(() => rewriteCasts("SELECT '1 day'::interval")).toThrow(UnsupportedCastError);
  });

  it("rewrites PostgreSQL's catalog names and operators for SQLite, leaving quoted text alone", () => {
    expect(
      rewriteForSqlite(
        "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND n.nspname !~ '^pg_toast'",
      ),
    ).toBe(
      "SELECT c.relname FROM pg_class c WHERE c.relname  REGEXP  '^(t)$'  AND n.nspname  NOT REGEXP  '^pg_toast'",
    );
    expect(
      rewriteForSqlite(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'pg_catalog.x'",
      ),
    ).toBe("SELECT column_name FROM information_schema_columns WHERE table_name = 'pg_catalog.x'");
    expect(rewriteForSqlite("SELECT E'a\\nb'")).toBe("SELECT 'a\\nb'");
  });

  it("reads Grafana's search-path and parse_ident metadata queries as walship's one schema", () => {
    const sql = `SELECT quote_ident(column_name) FROM information_schema.columns WHERE
      CASE WHEN array_length(parse_ident('t'),1) = 2 THEN quote_ident(table_schema) = (parse_ident('t'))[1]
      ELSE quote_ident(table_name) = 't' AND quote_ident(table_schema) IN (
          SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
            string_to_array(current_setting('search_path'),',') s
          ) END`;
    const rewritten = rewriteForSqlite(sql);
    expect(rewritten).toContain("quote_ident(table_schema) IN ('public') END");
    expect(rewritten).toContain("pg_ident_length('t') = 2");
    expect(rewritten).toContain("pg_ident_part('t', 1)");
    expect(rewritten).not.toMatch(/s\[i\]|parse_ident/);
  });

  it('knows a query whose outer FROM is a catalog walship keeps empty', () => {
    expect(readsEmptyCatalog('SELECT pol.polname FROM pg_catalog.pg_policy pol WHERE pol.polrelid = 1')).toBe(
      true,
    );
    expect(readsEmptyCatalog('SELECT array(SELECT rolname FROM pg_roles) FROM pg_policy')).toBe(true);
    expect(readsEmptyCatalog('SELECT * FROM pg_class c JOIN pg_index i ON true')).toBe(false);
    expect(readsEmptyCatalog('SELECT (SELECT 1 FROM pg_index) FROM trades')).toBe(false);
  });

  it('recognises the session commands it answers itself', () => {
    expect(sessionCommandOf("SET application_name = 'a''b'")).toEqual({
      kind: 'set',
      tag: 'SET',
      name: 'application_name',
      value: "a'b",
    });
    expect(sessionCommandOf('set extra_float_digits to 3')).toMatchObject({
      name: 'extra_float_digits',
      value: '3',
    });
    expect(sessionCommandOf('SHOW TimeZone')).toEqual({ kind: 'show', name: 'timezone' });
    expect(sessionCommandOf('begin')).toEqual({ kind: 'transaction', tag: 'BEGIN' });
    expect(sessionCommandOf('DISCARD ALL')).toEqual({ kind: 'ignored', tag: 'DISCARD ALL' });
    expect(sessionCommandOf('SELECT 1')).toBeUndefined();
  });
});

describe('values', () => {
  it('reads ISO-8601, RFC 3339 and PostgreSQL timestamps as µs, UTC unless an offset says otherwise', () => {
    expect(parseTimestampUs('2026-01-02')).toBe(1_767_312_000_000_000n);
    expect(parseTimestampUs('2026-01-02T00:00:01.5Z')).toBe(1_767_312_001_500_000n);
    expect(parseTimestampUs('2026-01-02 02:00:00+02')).toBe(1_767_312_000_000_000n);
    expect(parseTimestampUs('2026-01-01 23:30:00-00:30')).toBe(1_767_312_000_000_000n);
    expect(parseTimestampUs('1969-12-31T23:59:59.999999Z')).toBe(-1n);
    expect(parseTimestampUs('yesterday')).toBeUndefined();
    expect(parseTimestampUs('2026-13-01')).toBeUndefined();
  });

  it('prints timestamps as PostgreSQL does and reads them back', () => {
    for (const us of [0n, 1_767_312_001_500_000n, 1_767_312_002_000_001n, -1n]) {
      expect(parseTimestampUs(timestampText(us))).toBe(us);
    }
    expect(timestampText(1_767_312_001_500_000n)).toBe('2026-01-02 00:00:01.5');
    expect(timestampText(1_767_312_000_000_000n)).toBe('2026-01-02 00:00:00');
  });

  it('decodes parameters by the type and format the client names', () => {
    expect(decodeParam(20, 0, Buffer.from('-42'))).toBe(-42n);
    expect(decodeParam(701, 0, Buffer.from('1.25'))).toBe(1.25);
    expect(decodeParam(16, 0, Buffer.from('true'))).toBe(1n);
    expect(decodeParam(1184, 0, Buffer.from('2026-01-02T00:00:00Z'))).toBe(1_767_312_000_000_000n);
    expect(decodeParam(0, 0, Buffer.from('anything'))).toBe('anything');
    const int8 = Buffer.alloc(8);
    int8.writeBigInt64BE(7n);
    expect(decodeParam(20, 1, int8)).toBe(7n);
    const ts = Buffer.alloc(8);
    ts.writeBigInt64BE(0n);
    expect(decodeParam(1114, 1, ts)).toBe(946_684_800_000_000n);
    expect(() => decodeParam(20, 0, Buffer.from('12x'))).toThrow(/invalid input syntax for type integer/);
    expect(() => decodeParam(20, 1, Buffer.alloc(3))).toThrow(PgProtocolError);
    expect(decodeParam(20, 0, null)).toBeNull();
  });
});

describe('FrontendReader', () => {
  const messages = [
    serialize.query('SELECT 1'),
    serialize.parse({ name: 'a', text: 'SELECT $1', types: [23] }),
    serialize.bind({ statement: 'a', values: ['1'] }),
    serialize.execute({ portal: '' }),
    serialize.sync(),
  ];
  const stream = Buffer.concat([serialize.startup({ user: 'u' }), ...messages]);

  it('gives the same messages however the stream is cut', () => {
    const rng = seededRandom(3);
    for (let round = 0; round < 200; round++) {
      const reader = new FrontendReader(1 << 16);
      const out: { type: number; payload: Buffer }[] = [];
      let at = 0;
      while (at < stream.length) {
        const size = 1 + Math.floor(rng.next() * 40);
        out.push(...reader.push(stream.subarray(at, at + size)));
        at += size;
      }
      expect(out.map((m) => m.type)).toEqual([0, ...messages.map((m) => m[0]!)]);
      expect(Buffer.concat(out.slice(1).map((m) => m.payload)).length).toBe(
        messages.reduce((n, m) => n + m.length - 5, 0),
      );
      expect(reader.buffered).toBe(0);
    }
  });

  it('throws only PgProtocolError on random bytes, and never buffers past its bound', () => {
    const rng = seededRandom(11);
    for (let round = 0; round < 500; round++) {
      const reader = new FrontendReader(4096);
      // Half the time past the startup message, where messages are typed.
      if (rng.next() < 0.5) expect(reader.push(serialize.startup({ user: 'u' }))).toHaveLength(1);
      try {
        for (let chunk = 0; chunk < 20; chunk++) {
          const bytes = Buffer.from(
            Array.from({ length: 1 + Math.floor(rng.next() * 64) }, () => Math.floor(rng.next() * 256)),
          );
          reader.push(bytes);
          expect(reader.buffered).toBeLessThanOrEqual(4096 + 64);
        }
      } catch (error) {
        expect(error).toBeInstanceOf(PgProtocolError);
      }
    }
  });
});
