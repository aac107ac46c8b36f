import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  parseIntervalUs,
  parseTimestampUs,
  registerTimeFunctions,
  rewriteTimeLiterals,
} from './time-literals.js';

const TS = new Set(['timestamp', 'ts2']);
const US = (text: string) => String(parseTimestampUs(text));

describe('time literals', () => {
  it('turns strings compared with a timestamp column into µs, leaving the rest alone', () => {
    expect(rewriteTimeLiterals("SELECT * FROM t WHERE timestamp > '2026-01-02'", TS).sql).toBe(
      `SELECT * FROM t WHERE timestamp > ${US('2026-01-02')}`,
    );
    expect(
      rewriteTimeLiterals(
        "SELECT * FROM t WHERE t.timestamp BETWEEN '2026-01-02T00:00:00Z' AND '2026-01-03T00:00:00Z' AND sym = '2026-01-02'",
        TS,
      ).sql,
    ).toBe(
      `SELECT * FROM t WHERE t.timestamp BETWEEN ${US('2026-01-02')} AND ${US('2026-01-03')} AND sym = '2026-01-02'`,
    );
    expect(rewriteTimeLiterals(`SELECT 1 WHERE '2026-01-02' <= "TS2" OR x = 1`, TS).sql).toBe(
      `SELECT 1 WHERE ${US('2026-01-02')} <= "TS2" OR x = 1`,
    );
    expect(rewriteTimeLiterals("SELECT 1 WHERE timestamp NOT IN ('2026-01-02', '2026-01-03')", TS).sql).toBe(
      `SELECT 1 WHERE timestamp NOT IN (${US('2026-01-02')}, ${US('2026-01-03')})`,
    );
    expect(rewriteTimeLiterals("SELECT 1 WHERE '2026-01-02' <= t.ts2", TS).sql).toBe(
      `SELECT 1 WHERE ${US('2026-01-02')} <= t.ts2`,
    );
    // Not a timestamp string, or not a timestamp column: unchanged.
    expect(rewriteTimeLiterals("SELECT 1 WHERE timestamp > 'soon'", TS).sql).toBe(
      "SELECT 1 WHERE timestamp > 'soon'",
    );
    expect(rewriteTimeLiterals("SELECT 1 WHERE other > '2026-01-02'", TS).sql).toBe(
      "SELECT 1 WHERE other > '2026-01-02'",
    );
  });

  it('collects the parameters compared with a timestamp column', () => {
    expect([
      ...rewriteTimeLiterals('SELECT 1 WHERE timestamp >= $1 AND timestamp < $2 AND x = $3', TS)
        .timestampParams,
    ]).toEqual(['1', '2']);
  });

  it('reads QuestDB and PostgreSQL intervals', () => {
    expect(parseIntervalUs('15m')).toBe(900_000_000n);
    expect(parseIntervalUs('1 hour')).toBe(3_600_000_000n);
    expect(parseIntervalUs('2d')).toBe(172_800_000_000n);
    expect(parseIntervalUs('0s')).toBeUndefined();
    expect(parseIntervalUs('soon')).toBeUndefined();
  });

  it('time_bucket floors to the interval, before the epoch too', () => {
    const db = new Database(':memory:');
    db.defaultSafeIntegers(true);
    registerTimeFunctions(db);
    const bucket = (interval: string, ts: bigint) =>
      db.prepare('SELECT time_bucket(?, ?) AS b').pluck().get(interval, ts) as bigint;
    expect(bucket('1m', 1_767_312_119_999_999n)).toBe(1_767_312_060_000_000n);
    expect(bucket('1m', -1n)).toBe(-60_000_000n);
    expect(bucket('1m', -60_000_000n)).toBe(-60_000_000n);
    expect(() => bucket('often', 1n)).toThrow(/no interval/);
    db.close();
  });
});

describe('select list', () => {
  it('reads the outer select list and types aggregates from their text', async () => {
    const { selectListOf, expressionKind } = await import('./select-list.js');
    const list = selectListOf(
      "SELECT count(*) AS n, avg(price), max(\"timestamp\") last, time_bucket('1m', timestamp) AS time, sym, CAST(x AS INTEGER) FROM t WHERE a = 'x,y' GROUP BY 4",
    );
    expect(list).toEqual([
      'count(*) AS n',
      'avg(price)',
      'max("timestamp") last',
      "time_bucket('1m', timestamp) AS time",
      'sym',
      'CAST(x AS INTEGER)',
    ]);
    const kinds: Record<string, string> = { timestamp: 'timestamp', price: 'double', sym: 'symbol' };
    expect(list!.map((e) => expressionKind(e, (name) => kinds[name]))).toEqual([
      'long',
      'double',
      'timestamp',
      'timestamp',
      undefined,
      'long',
    ]);
    expect(selectListOf('SELECT * FROM t')).toBeUndefined();
    expect(selectListOf('SELECT 1 AS one')).toEqual(['1 AS one']);
  });
});

describe('parse_ident', () => {
  it('splits as PostgreSQL does: quoted parts as written, others in lower case', async () => {
    const { identParts } = await import('./pg-catalog.js');
    expect(identParts('Trades')).toEqual(['trades']);
    expect(identParts('public."My.Table"')).toEqual(['public', 'My.Table']);
    expect(identParts('"a""b" . c')).toEqual(['a"b', 'c']);
  });
});
