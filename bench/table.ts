/**
 * The ingest and apply hot path on a trades-like table (10 columns: 2 symbols, 1 long, 5 doubles,
 * 1 string, the designated timestamp), 200 000 rows in 10 000-row txns:
 * - `buildTxns` rows/s from pre-parsed IlpLines (no same-run baseline: nothing else does its job);
 * - `TableStore.applyTxn` rows/s into a fresh temp file, one SQLite transaction per txn, with
 *   synchronous=FULL and NORMAL, each beside the same-run baseline: a raw better-sqlite3
 *   prepared-statement loop inserting the same rows (same table DDL, same bound JS values,
 *   pre-built argument arrays) in one transaction per 10 000 rows with the same pragmas.
 * Each figure is the median of ROUNDS rounds; store and baseline alternate within a round so
 * drift in the machine hits both alike.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { seededRandom } from '../core/index.js';
import type { IlpLine } from '../ilp/index.js';
import { type BuiltTxn, buildTxns } from '../primary/txn-builder.js';
import { type TableSchema, TableStore } from '../table/index.js';
import type { BenchRow, BenchSuiteResult } from './report.js';
import { createRawTradesTable, TRADE_COLUMNS, TRADE_SYMBOLS, TRADES_TABLE } from './trades.js';

const ROWS = 200_000;
const ROWS_PER_TXN = 10_000;
const ROUNDS = 5;
const TABLE = TRADES_TABLE;
const COMMIT_TIME_US = 1_700_000_000_000_000n;

/** Pre-parsed lines, as the ILP parser hands them over. */
function tradeLines(): IlpLine[] {
  const random = seededRandom(42);
  const lines: IlpLine[] = [];
  let price = 30_000;
  for (let i = 0; i < ROWS; i++) {
    price *= 1 + (random.next() - 0.5) * 0.001;
    const mid = Math.round(price * 100) / 100;
    lines.push({
      line: (i % ROWS_PER_TXN) + 1,
      table: TABLE,
      symbols: [
        { name: 'symbol', value: TRADE_SYMBOLS[i % TRADE_SYMBOLS.length]! },
        { name: 'side', value: random.next() < 0.5 ? 'buy' : 'sell' },
      ],
      fields: [
        { name: 'trade_id', value: { type: 'long', value: BigInt(i + 1) } },
        { name: 'price', value: { type: 'double', value: mid } },
        { name: 'amount', value: { type: 'double', value: Math.round(random.next() * 5e4) / 1e4 } },
        { name: 'bid', value: { type: 'double', value: mid - 0.01 } },
        { name: 'ask', value: { type: 'double', value: mid + 0.01 } },
        { name: 'fee', value: { type: 'double', value: Math.round(mid * 0.0002 * 100) / 100 } },
        { name: 'note', value: { type: 'string', value: `venue ${i % 7} order ${i}` } },
      ],
      timestampUs: COMMIT_TIME_US + BigInt(i) * 1000n,
    });
  }
  return lines;
}

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let at = 0; at < items.length; at += size) out.push(items.slice(at, at + size));
  return out;
}

/** One build pass over every batch, as the commit path would: the schema exists after the first. */
function buildAll(requests: IlpLine[][]): BuiltTxn[] {
  let schema: TableSchema | undefined;
  let txn = 0n;
  const built: BuiltTxn[] = [];
  for (const lines of requests) {
    const [one] = buildTxns(lines, {
      schemaOf: () => schema,
      commitTimeUs: COMMIT_TIME_US,
      nextTxn: () => ++txn,
    });
    schema = one!.schemaAfter;
    built.push(one!);
  }
  return built;
}

function timeMs(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

function applyStore(dir: string, built: BuiltTxn[], synchronous: 'FULL' | 'NORMAL'): number {
  const file = join(dir, `store-${synchronous}-${Math.random().toString(36).slice(2)}.sqlite`);
  const store = TableStore.open(file, { synchronous });
  try {
    return timeMs(() => {
      for (const { table, record } of built) store.applyTxn(table, record);
    });
  } finally {
    store.close();
  }
}

/** Row-major argument arrays of the same values the store binds (int64 as BigInt). */
function rowArgs(lines: readonly IlpLine[]): unknown[][] {
  return lines.map((line) => [
    line.timestampUs,
    ...line.symbols.map((s) => s.value),
    ...line.fields.map((f) => f.value.value),
  ]);
}

function applyRaw(dir: string, rows: unknown[][][], synchronous: 'FULL' | 'NORMAL'): number {
  const file = join(dir, `raw-${synchronous}-${Math.random().toString(36).slice(2)}.sqlite`);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${synchronous}`);
    const insert = createRawTradesTable(db);
    const begin = db.prepare('BEGIN IMMEDIATE');
    const commit = db.prepare('COMMIT');
    return timeMs(() => {
      for (const batch of rows) {
        begin.run();
        for (const args of batch) insert.run(args);
        commit.run();
      }
    });
  } finally {
    db.close();
  }
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const rowsPerSecond = (ms: number) => (ROWS / ms) * 1000;

function sqliteVersion(): string {
  const db = new Database(':memory:');
  try {
    return db.prepare('SELECT sqlite_version()').pluck().get() as string;
  } finally {
    db.close();
  }
}

export async function benchTable(): Promise<BenchSuiteResult> {
  const lines = tradeLines();
  const requests = batches(lines, ROWS_PER_TXN);
  const rawRows = batches(rowArgs(lines), ROWS_PER_TXN);
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-table-'));
  const samples = { build: [] as number[], FULL: [] as number[], NORMAL: [] as number[] };
  const raw = { FULL: [] as number[], NORMAL: [] as number[] };
  try {
    applyStore(dir, buildAll(requests), 'NORMAL'); // warm-up: JIT and page cache
    applyRaw(dir, rawRows, 'NORMAL');
    for (let round = 0; round < ROUNDS; round++) {
      let built: BuiltTxn[] = [];
      samples.build.push(timeMs(() => (built = buildAll(requests))));
      for (const synchronous of ['FULL', 'NORMAL'] as const) {
        raw[synchronous].push(applyRaw(dir, rawRows, synchronous));
        samples[synchronous].push(applyStore(dir, built, synchronous));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const note = `${ROWS} rows, ${ROWS_PER_TXN} rows/txn, median of ${ROUNDS}`;
  const applyRow = (synchronous: 'FULL' | 'NORMAL'): BenchRow => ({
    name: `applyTxn synchronous=${synchronous}`,
    value: rowsPerSecond(median(samples[synchronous])),
    unit: 'rows/s',
    better: 'higher',
    baselineName: `raw prepared INSERT loop synchronous=${synchronous}`,
    baseline: rowsPerSecond(median(raw[synchronous])),
    note,
  });
  return {
    suite: 'table',
    context: {
      node: process.version,
      sqlite: sqliteVersion(),
      rows: ROWS,
      rowsPerTxn: ROWS_PER_TXN,
      columns: TRADE_COLUMNS.length,
    },
    rows: [
      {
        name: 'buildTxns from parsed lines',
        value: rowsPerSecond(median(samples.build)),
        unit: 'rows/s',
        better: 'higher',
        note,
      },
      applyRow('FULL'),
      applyRow('NORMAL'),
    ],
  };
}
