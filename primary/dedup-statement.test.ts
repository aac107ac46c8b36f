import { describe, expect, it } from 'vitest';
import { parseDedupStatement } from './dedup-statement.js';

describe("QuestDB's DEDUP statements", () => {
  it.each([
    [
      'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, symbol)',
      { table: 'trades', keys: ['timestamp', 'symbol'] },
    ],
    [
      'alter table "my ""odd"" table" dedup enable upsert keys ( "timestamp" , sym ) ;',
      { table: 'my "odd" table', keys: ['timestamp', 'sym'] },
    ],
    ['ALTER TABLE trades DEDUP DISABLE', { table: 'trades', keys: [] }],
    ['ALTER TABLE trades /* why */ DEDUP DISABLE;', { table: 'trades', keys: [] }],
  ])('reads %j', (sql, expected) => {
    expect(parseDedupStatement(sql)).toEqual(expected);
  });

  it.each([
    'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS()',
    'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp,)',
    'ALTER TABLE trades DEDUP ENABLE KEYS(timestamp)',
    'ALTER TABLE trades ADD COLUMN x INT',
    'DROP TABLE trades',
    'ALTER TABLE trades DEDUP DISABLE; DROP TABLE trades',
    "ALTER TABLE 'trades' DEDUP DISABLE",
    '',
  ])('refuses %j, saying what it expects', (sql) => {
    expect(() => parseDedupStatement(sql)).toThrow(/expected ALTER TABLE <table> DEDUP ENABLE UPSERT KEYS/);
  });
});
