import { describe, expect, it } from 'vitest';
import { parseTableStatement } from './table-statement.js';

describe("QuestDB's table statements", () => {
  it.each([
    [
      'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, symbol)',
      { kind: 'dedup', table: 'trades', keys: ['timestamp', 'symbol'] },
    ],
    [
      'alter table "my ""odd"" table" dedup enable upsert keys ( "timestamp" , sym ) ;',
      { kind: 'dedup', table: 'my "odd" table', keys: ['timestamp', 'sym'] },
    ],
    ['ALTER TABLE trades DEDUP DISABLE', { kind: 'dedup', table: 'trades', keys: [] }],
    ['ALTER TABLE trades /* why */ DEDUP DISABLE;', { kind: 'dedup', table: 'trades', keys: [] }],
    ['ALTER TABLE trades SET TTL 2 WEEKS', { kind: 'ttl', table: 'trades', ttl: { count: 2, unit: 'WEEK' } }],
    ['alter table trades set ttl 1 day;', { kind: 'ttl', table: 'trades', ttl: { count: 1, unit: 'DAY' } }],
    ['ALTER TABLE trades SET TTL 2w', { kind: 'ttl', table: 'trades', ttl: { count: 2, unit: 'WEEK' } }],
    ['ALTER TABLE trades SET TTL 3M', { kind: 'ttl', table: 'trades', ttl: { count: 3, unit: 'MONTH' } }],
    [
      'ALTER TABLE trades SET TTL 48 HOURS',
      { kind: 'ttl', table: 'trades', ttl: { count: 48, unit: 'HOUR' } },
    ],
    ['ALTER TABLE trades SET TTL 0', { kind: 'ttl', table: 'trades', ttl: { count: 0, unit: 'HOUR' } }],
    ['DROP TABLE trades', { kind: 'drop', table: 'trades', ifExists: false }],
    ['drop table if exists "Trades";', { kind: 'drop', table: 'Trades', ifExists: true }],
  ])('reads %j', (sql, expected) => {
    expect(parseTableStatement(sql)).toEqual(expected);
  });

  it.each([
    'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS()',
    'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp,)',
    'ALTER TABLE trades DEDUP ENABLE KEYS(timestamp)',
    'ALTER TABLE trades ADD COLUMN x INT',
    'ALTER TABLE trades SET TTL 2',
    'ALTER TABLE trades SET TTL 2 SECONDS',
    'ALTER TABLE trades SET TTL 5m',
    'ALTER TABLE trades SET TTL -1 DAYS',
    'ALTER TABLE trades SET TTL 99999999999 DAYS',
    'ALTER TABLE trades SET TTL DAYS',
    'DROP TABLE',
    'DROP TABLE trades, quotes',
    'DROP TABLE IF trades',
    'ALTER TABLE trades DEDUP DISABLE; DROP TABLE trades',
    "ALTER TABLE 'trades' DEDUP DISABLE",
    '',
  ])('refuses %j, saying what it expects', (sql) => {
    expect(() => parseTableStatement(sql)).toThrow(
      /expected ALTER TABLE <table> DEDUP ENABLE UPSERT KEYS.*DROP TABLE/,
    );
  });
});
