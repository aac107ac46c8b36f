/**
 * The same-run baselines the suites set their figures beside: raw better-sqlite3 INSERTs of the
 * trades rows (what applying rows costs with no walship around it) and create-only PUTs through a
 * store (what an upload costs with nothing around it).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import { assert } from '../core/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { createRawTradesTable, fillTradeArgs, TRADE_COLUMNS, type Trades } from './trades.js';

/** A raw SQLite file with the table store's pragmas: WAL, synchronous=FULL (an fsync per commit). */
export function openRawDb(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}

/** The rows of each transaction when `total` rows go `rowsPerTxn` at a time (the last one holds the rest). */
export function evenTxnRows(total: number, rowsPerTxn: number): number[] {
  const txnRows: number[] = [];
  for (let first = 0; first < total; first += rowsPerTxn) txnRows.push(Math.min(rowsPerTxn, total - first));
  return txnRows;
}

/**
 * `run` between two raw INSERT runs of the rows of `t` (rawInsertMs, into files under `dir`), so
 * the machine's drift hits the baseline as it hits `run`: the faster raw rate, rows/s, and what
 * `run` gave.
 */
export async function betweenRawInserts<T>(
  dir: string,
  t: Trades,
  txnRows: readonly number[],
  run: () => Promise<T>,
): Promise<{ raw: number; result: T }> {
  const rawMs = [rawInsertMs(path.join(dir, 'raw-1.sqlite'), t, txnRows)];
  const result = await run();
  rawMs.push(rawInsertMs(path.join(dir, 'raw-2.sqlite'), t, txnRows));
  const rows = txnRows.reduce((sum, n) => sum + n, 0);
  return { raw: (rows / Math.min(...rawMs)) * 1000, result };
}

/**
 * Raw prepared INSERTs of the rows of `t` from row 0 into a fresh file (openRawDb), one
 * transaction per entry of `txnRows` (its row count, in order): the time they took, ms.
 */
export function rawInsertMs(file: string, t: Trades, txnRows: readonly number[]): number {
  assert(txnRows.reduce((sum, rows) => sum + rows, 0) <= t.count, 'raw INSERT txnRows within the trades');
  const db = openRawDb(file);
  try {
    const insert = createRawTradesTable(db);
    const begin = db.prepare('BEGIN IMMEDIATE');
    const commit = db.prepare('COMMIT');
    const args: unknown[] = new Array(TRADE_COLUMNS.length).fill(null);
    const started = performance.now();
    let row = 0;
    for (const rows of txnRows) {
      const end = row + rows;
      begin.run();
      for (; row < end; row++) {
        fillTradeArgs(args, t, row);
        insert.run(args);
      }
      commit.run();
    }
    return performance.now() - started;
  } finally {
    db.close();
  }
}

/**
 * `samples` create-only PUTs (as the uploader does) of one random object of `bytes` through
 * `store`, sequential, under a prefix of their own: each one's latency, ms.
 */
export async function putLatencies(
  store: ObjectStore,
  options: { samples: number; bytes: number },
): Promise<number[]> {
  const body = randomBytes(options.bytes);
  const prefix = `bench/put-${randomBytes(4).toString('hex')}`;
  const samples: number[] = [];
  for (let i = 0; i < options.samples; i++) {
    const started = performance.now();
    await store.put(`${prefix}/${i}`, body, { condition: { type: 'absent' } });
    samples.push(performance.now() - started);
  }
  return samples;
}
