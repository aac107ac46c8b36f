/**
 * The realistic "trades" table the table and ingest benchmarks share, and the raw SQLite table
 * their same-run baselines insert into (declared exactly as TableStore declares it).
 */
import type Database from 'better-sqlite3';
import { randomInt, seededRandom } from '../core/index.js';
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

// --- the rows both the ingest and the replicate suites send ---

const START_US = 1_700_000_000_000_000;
const SIDES = ['buy', 'sell'];
const VENUES = ['binance', 'coinbase', 'kraken', 'okx', 'bybit', 'bitstamp', 'gemini'];

/** The rows, columnar (millions of rows as objects would dominate the heap); strings are made per row. */
export interface Trades {
  count: number;
  symbol: Uint8Array;
  side: Uint8Array;
  price: Float64Array;
  amount: Float64Array;
  bid: Float64Array;
  ask: Float64Array;
  fee: Float64Array;
}

export const round2 = (x: number) => Math.round(x * 100) / 100;
export const timestampUsOf = (row: number) => START_US + row * 1000;
export const noteOf = (row: number) => `order ${row + 1} via ${VENUES[row % VENUES.length]}`;

/** Seeded trades: a random walk of mid prices per symbol, quotes around it, a fee on the notional. */
export function generateTrades(count: number, seed = 42): Trades {
  const random = seededRandom(seed);
  const mids = TRADE_SYMBOLS.map((_, i) => 50 * (i + 1) ** 3);
  const t: Trades = {
    count,
    symbol: new Uint8Array(count),
    side: new Uint8Array(count),
    price: new Float64Array(count),
    amount: new Float64Array(count),
    bid: new Float64Array(count),
    ask: new Float64Array(count),
    fee: new Float64Array(count),
  };
  for (let row = 0; row < count; row++) {
    const s = randomInt(random, TRADE_SYMBOLS.length);
    const mid = mids[s]! * (1 + (random.next() - 0.5) * 0.002);
    mids[s] = mid;
    t.symbol[row] = s;
    t.side[row] = randomInt(random, 2);
    t.price[row] = round2(mid * (1 + (random.next() - 0.5) * 0.0002));
    t.amount[row] = Math.round(random.next() * 5e4) / 1e4;
    t.bid[row] = round2(mid * 0.9995);
    t.ask[row] = round2(mid * 1.0005);
    t.fee[row] = round2(t.price[row]! * t.amount[row]! * 0.0002);
  }
  return t;
}

/** What Sender and SenderBuffer share for building a row; each method returns the builder itself. */
export interface RowBuilder<B> {
  table(name: string): B;
  symbol(name: string, value: unknown): B;
  intColumn(name: string, value: number): B;
  floatColumn(name: string, value: number): B;
  stringColumn(name: string, value: string): B;
}

/** Row `row` of `t` up to its designated timestamp, which the caller adds with `at`. */
export function encodeTradeRow<B extends RowBuilder<B>>(
  builder: B,
  t: Trades,
  row: number,
  table: string,
  id = row + 1,
): B {
  return builder
    .table(table)
    .symbol('symbol', TRADE_SYMBOLS[t.symbol[row]!]!)
    .symbol('side', SIDES[t.side[row]!]!)
    .intColumn('trade_id', id)
    .floatColumn('price', t.price[row]!)
    .floatColumn('amount', t.amount[row]!)
    .floatColumn('bid', t.bid[row]!)
    .floatColumn('ask', t.ask[row]!)
    .floatColumn('fee', t.fee[row]!)
    .stringColumn('note', noteOf(row));
}

/** The values TableStore binds for row `row` (int64 as BigInt, see table/row-inserter.ts), in TRADE_COLUMNS order. */
export function fillTradeArgs(args: unknown[], t: Trades, row: number): void {
  args[0] = BigInt(timestampUsOf(row));
  args[1] = TRADE_SYMBOLS[t.symbol[row]!];
  args[2] = SIDES[t.side[row]!];
  args[3] = BigInt(row + 1);
  args[4] = t.price[row];
  args[5] = t.amount[row];
  args[6] = t.bid[row];
  args[7] = t.ask[row];
  args[8] = t.fee[row];
  args[9] = noteOf(row);
}
