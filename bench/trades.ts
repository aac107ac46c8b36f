/**
 * The realistic "trades" table the table and ingest benchmarks share, and the raw SQLite table
 * their same-run baselines insert into (declared exactly as TableStore declares it).
 */
import type Database from 'better-sqlite3';
import { SQL_DECLARED_TYPES } from '../table/index.js';
import type { ColumnType } from '../wal/index.js';

export const TRADES_TABLE = 'trades';

/** Designated timestamp first, as TableStore lays tables out. */
export const TRADE_COLUMNS: readonly (readonly [string, ColumnType])[] = [
  ['timestamp', 'timestamp'],
  ['symbol', 'symbol'],
  ['side', 'symbol'],
  ['trade_id', 'long'],
  ['price', 'double'],
  ['amount', 'double'],
  ['bid', 'double'],
  ['ask', 'double'],
  ['fee', 'double'],
  ['note', 'string'],
];

export const TRADE_SYMBOLS = [
  'BTC-USD',
  'ETH-USD',
  'SOL-USD',
  'XRP-USD',
  'ADA-USD',
  'BTC-EUR',
  'ETH-EUR',
  'SOL-EUR',
];

/** Create the trades table in a raw connection and return its prepared INSERT (values in TRADE_COLUMNS order). */
export function createRawTradesTable(db: Database.Database): Database.Statement {
  const ddl = TRADE_COLUMNS.map(
    ([name, type]) => `"${name}" ${SQL_DECLARED_TYPES[type]}${name === 'timestamp' ? ' NOT NULL' : ''}`,
  );
  db.exec(`CREATE TABLE "${TRADES_TABLE}" (${ddl.join(', ')})`);
  const names = TRADE_COLUMNS.map(([n]) => `"${n}"`).join(', ');
  return db.prepare(
    `INSERT INTO "${TRADES_TABLE}" (${names}) VALUES (${TRADE_COLUMNS.map(() => '?').join(', ')})`,
  );
}
