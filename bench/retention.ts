/**
 * `npm run bench -- retention` (issue 19 item 5): what row retention costs, each figure beside the
 * same run without it or beside raw SQLite doing the same work.
 *
 * - Ingest into a table with a TTL (its index on the designated timestamp is the whole cost while
 *   nothing expires) beside a plain table: the same 10 000-row trades bodies POSTed to a fresh
 *   primary (product defaults, fs store, local ack), alternating over ROUNDS rounds, the fastest
 *   of each counts.
 * - A trim: a table of TRIM_ROWS rows over TRIM_DAYS days gets `SET TTL` that expires half of
 *   them; the admin call's time (the ttl txn, the check, the trim txn committed: the DELETE on the
 *   write worker, and its fsync) beside raw better-sqlite3 deleting the same rows through the same
 *   index in one transaction.
 * - The TTL check: one TtlKeeper pass over TABLES_CHECKED tables with a TTL and nothing to trim
 *   (two index lookups each), per table, beside the same lookups on raw better-sqlite3.
 */
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { systemClock } from '../core/index.js';
import { TtlKeeper } from '../primary/index.js';
import { TableStore } from '../table/index.js';
import type { TxnRecord } from '../wal/index.js';
import { betweenRawInserts, evenTxnRows, openRawDb } from './baselines.js';
import { throughputRow } from './ingest.js';
import { adminSql, postBodies, postBody, tradesBodies, withBenchPrimary } from './primary-requests.js';
import type { BenchRow, BenchSuiteResult } from './report.js';
import { generateTrades, TRADE_COLUMNS } from './trades.js';

const ROWS = 500_000;
const ROWS_PER_REQUEST = 10_000;
const ROUNDS = 3;
const TRIM_ROWS = 200_000;
const TRIM_DAYS = 10;
const TABLES_CHECKED = 1_000;
const TABLE = 'trades';
const DAY_US = 86_400_000_000n;
/** 2026-01-01T00:00:00Z: the trim table's first day (long past, so its newest row is the reference). */
const DAY0_US = 1_767_225_600_000_000n;

const log = (message: string) => process.stderr.write(`bench retention: ${message}\n`);

/** TRIM_ROWS rows of `t,host=… v=…i` spread evenly over TRIM_DAYS days, ROWS_PER_REQUEST a body. */
function trimBodies(): Buffer[] {
  const bodies: Buffer[] = [];
  const stepUs = (BigInt(TRIM_DAYS) * DAY_US) / BigInt(TRIM_ROWS);
  for (let first = 0; first < TRIM_ROWS; first += ROWS_PER_REQUEST) {
    let text = '';
    for (let row = first; row < Math.min(TRIM_ROWS, first + ROWS_PER_REQUEST); row++)
      text += `t,host=h${row % 10} v=${row}i ${(DAY0_US + BigInt(row) * stepUs) * 1000n}\n`;
    bodies.push(Buffer.from(text));
  }
  return bodies;
}

async function ingest(
  dir: string,
  bodies: readonly Buffer[],
): Promise<{ plainMs: number[]; ttlMs: number[] }> {
  const result = { plainMs: [] as number[], ttlMs: [] as number[] };
  const firstLine = Buffer.from(`${bodies[0]!.toString('utf8').split('\n')[0]!}\n`);
  for (let round = 0; round < ROUNDS; round++) {
    log(`ingest, round ${round + 1}: a plain table`);
    result.plainMs.push(
      await withBenchPrimary(dir, `plain-${round}`, {}, (node) => postBodies(node.httpPort, bodies)),
    );
    log(`ingest, round ${round + 1}: a table with a TTL (nothing expires)`);
    result.ttlMs.push(
      await withBenchPrimary(dir, `ttl-${round}`, {}, async (node) => {
        // The table is made by its first row and given a TTL no row reaches, then filled.
        await postBody(node.httpPort, firstLine);
        await adminSql(node.httpPort, `ALTER TABLE ${TABLE} SET TTL 100 YEARS`);
        return postBodies(node.httpPort, bodies);
      }),
    );
  }
  return result;
}

/** The admin call that sets a TTL expiring half the rows, and raw SQLite deleting the same rows. */
async function trim(dir: string): Promise<{ walshipMs: number; rawMs: number; deleted: number }> {
  const bodies = trimBodies();
  // Half of TRIM_DAYS before the newest row's day: the days before it go.
  const ttlDays = TRIM_DAYS / 2;
  const walshipMs = await withBenchPrimary(dir, 'trim', {}, async (node) => {
    for (const body of bodies) await postBody(node.httpPort, body);
    const started = performance.now();
    await adminSql(node.httpPort, `ALTER TABLE t SET TTL ${ttlDays} DAYS`);
    return performance.now() - started;
  });
  const db = openRawDb(path.join(dir, 'raw-trim.sqlite'));
  try {
    db.exec('CREATE TABLE t (timestamp INTEGER NOT NULL, host TEXT, v INTEGER)');
    const insert = db.prepare('INSERT INTO t VALUES (?, ?, ?)');
    const stepUs = (BigInt(TRIM_DAYS) * DAY_US) / BigInt(TRIM_ROWS);
    db.transaction(() => {
      for (let row = 0; row < TRIM_ROWS; row++)
        insert.run(DAY0_US + BigInt(row) * stepUs, `h${row % 10}`, row);
    })();
    db.exec('CREATE INDEX t_ts ON t (timestamp)');
    // The newest row is in the last day: days before (last day − ttlDays) + 1 go, as the keeper computes.
    const bound = DAY0_US + BigInt(TRIM_DAYS - ttlDays) * DAY_US;
    const started = performance.now();
    const { changes } = db.transaction(() => db.prepare('DELETE FROM t WHERE timestamp < ?').run(bound))();
    return { walshipMs, rawMs: performance.now() - started, deleted: changes };
  } finally {
    db.close();
  }
}

/** One TtlKeeper pass over TABLES_CHECKED tables with nothing to trim, and the same lookups raw. */
async function checkCost(dir: string): Promise<{ keeperMs: number; rawMs: number }> {
  const tables = TableStore.open(path.join(dir, 'check.sqlite'));
  const db = openRawDb(path.join(dir, 'raw-check.sqlite'));
  try {
    const record = (txn: bigint, fields: Partial<TxnRecord> & Pick<TxnRecord, 'kind'>): TxnRecord => ({
      txn,
      commitTimeUs: 1n,
      rowCount: 0,
      columns: [],
      ...fields,
    });
    const rowsOf = (n: number): TxnRecord =>
      record(1n, {
        kind: 'data',
        rowCount: n,
        columns: [
          {
            name: 'timestamp',
            addedInTxn: false,
            nulls: null,
            data: {
              type: 'timestamp',
              values: BigInt64Array.from({ length: n }, (_, i) => DAY0_US + BigInt(i)),
            },
          },
        ],
      });
    tables.transaction(() => {
      for (let i = 0; i < TABLES_CHECKED; i++) {
        tables.applyTxn(`t${i}`, rowsOf(100));
        tables.applyTxn(`t${i}`, record(2n, { kind: 'ttl', ttl: { count: 1, unit: 'YEAR' } }));
      }
    });
    db.transaction(() => {
      for (let i = 0; i < TABLES_CHECKED; i++) {
        db.exec(`CREATE TABLE t${i} (timestamp INTEGER NOT NULL)`);
        const insert = db.prepare(`INSERT INTO t${i} VALUES (?)`);
        for (let r = 0; r < 100; r++) insert.run(DAY0_US + BigInt(r));
        db.exec(`CREATE INDEX t${i}_ts ON t${i} (timestamp)`);
      }
    })();
    const keeper = new TtlKeeper({
      tables,
      clock: systemClock,
      intervalMs: 60_000,
      log: pino({ level: 'silent' }),
      trim: () => {
        throw new Error('nothing expires in this bench');
      },
    });
    const runs = { keeper: [] as number[], raw: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      let started = performance.now();
      await keeper.check();
      runs.keeper.push(performance.now() - started);
      started = performance.now();
      for (let i = 0; i < TABLES_CHECKED; i++)
        db.prepare(`SELECT min(timestamp), max(timestamp) FROM t${i}`).safeIntegers(true).get();
      runs.raw.push(performance.now() - started);
    }
    return { keeperMs: Math.min(...runs.keeper), rawMs: Math.min(...runs.raw) };
  } finally {
    tables.close();
    db.close();
  }
}

export async function benchRetention(): Promise<BenchSuiteResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-retention-'));
  const context: BenchSuiteResult['context'] = {
    node: process.version,
    rows: ROWS,
    rowsPerRequest: ROWS_PER_REQUEST,
    columns: TRADE_COLUMNS.length,
    trimRows: TRIM_ROWS,
    tablesChecked: TABLES_CHECKED,
    cores: availableParallelism(),
  };
  try {
    log(`generating ${ROWS} rows`);
    const t = generateTrades(ROWS);
    const bodies = await tradesBodies(t, TABLE, ROWS_PER_REQUEST);
    const txnRows = evenTxnRows(t.count, ROWS_PER_REQUEST);
    const { raw, result: measured } = await betweenRawInserts(dir, t, txnRows, () => ingest(dir, bodies));
    log(`a trim of ${TRIM_ROWS / 2} of ${TRIM_ROWS} rows`);
    const trimmed = await trim(dir);
    log(`one TTL check over ${TABLES_CHECKED} tables`);
    const check = await checkCost(dir);
    const plainMs = Math.min(...measured.plainMs);
    const ttlMs = Math.min(...measured.ttlMs);
    const runs = (ms: number[]) => `runs ${ms.map((m) => m.toFixed(0)).join(' / ')} ms, the fastest counts`;
    const rows: BenchRow[] = [
      throughputRow('server side, a plain table', ROWS, plainMs, raw, runs(measured.plainMs)),
      throughputRow(
        'server side, a table with a TTL (nothing expires)',
        ROWS,
        ttlMs,
        raw,
        `${(plainMs / ttlMs).toFixed(2)}× of a plain table; ${runs(measured.ttlMs)}`,
      ),
      {
        name: `SET TTL expiring ${trimmed.deleted} of ${TRIM_ROWS} rows: the admin call, trim committed`,
        value: trimmed.walshipMs,
        unit: 'ms',
        better: 'lower',
        baselineName: 'raw DELETE of the same rows through a timestamp index, one txn',
        baseline: trimmed.rawMs,
        note: 'ttl txn, check, trim txn (DELETE on the write worker, fsync), answered',
      },
      {
        name: `TTL check of ${TABLES_CHECKED} tables, nothing to trim, per table`,
        value: (check.keeperMs * 1000) / TABLES_CHECKED,
        unit: 'µs',
        better: 'lower',
        baselineName: 'raw SELECT min(timestamp), max(timestamp) per table',
        baseline: (check.rawMs * 1000) / TABLES_CHECKED,
        note: `the fastest of ${ROUNDS} passes`,
      },
    ];
    return { suite: 'retention', context, rows };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
