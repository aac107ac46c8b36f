/**
 * `npm run bench -- pg`: the PostgreSQL door beside `/exec` for the same queries in the same run
 * (issue 17). Both go through one QueryPool (2 query hosts, the product default) on one database
 * of walship-declared tables, so the figures differ only by protocol: HTTP + QuestDB JSON against
 * PostgreSQL v3 (node-postgres, simple protocol and named prepared statements). Four clients per
 * protocol, each in a closed loop; each parses what it gets (JSON.parse for /exec, node-postgres's
 * row objects for PG). Reported: queries/s and p99 latency, with `/exec` as the
 * same-run baseline.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Agent, request } from 'undici';
import { startPgServer } from '../pg/index.js';
import { createQueryHttpHandler, QueryPool } from '../table/index.js';
import { type BenchRow, type BenchSuiteResult, percentile, scaleFromEnv } from './report.js';

const CLIENTS = 4;
const BASE_US = 1_767_312_000_000_000n;

interface Shape {
  name: string;
  sql: string;
  /** Queries per client. */
  count: number;
}

export async function benchPg(): Promise<BenchSuiteResult> {
  const scale = scaleFromEnv();
  if (Number.isNaN(scale)) throw new Error('WALSHIP_BENCH_SCALE must be in (0, 1]');
  const rows = Math.round(200_000 * scale);
  const dir = mkdtempSync(join(tmpdir(), 'walship-bench-pg-'));
  const file = join(dir, 'tables.sqlite');
  fill(file, rows);
  const pool = await QueryPool.start({ databaseFile: file, workers: 2 });
  const handler = createQueryHttpHandler(pool);
  const http = createServer((req, res) => {
    void handler.handle(req, res).then((handled) => {
      if (!handled) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const httpPort = (http.address() as { port: number }).port;
  const door = await startPgServer({
    host: '127.0.0.1',
    port: 0,
    runQuery: (sql, options) => pool.queryPg(sql, options),
    credentials: [{ user: 'admin', password: 'quest' }],
    maxMessageBytes: 1 << 20,
    maxConnections: 64,
    serverVersion: '15.0',
  });
  const agent = new Agent({ connections: CLIENTS });
  const shapes: Shape[] = [
    {
      name: 'one row',
      sql: "SELECT * FROM trades WHERE timestamp = '2026-01-02T00:00:01Z'",
      count: Math.max(20, Math.round(400 * scale)),
    },
    {
      name: 'series of 60 buckets',
      sql: "SELECT time_bucket('1m', timestamp) AS time, avg(price) AS value FROM trades WHERE timestamp BETWEEN '2026-01-02T00:00:00Z' AND '2026-01-02T00:59:59Z' GROUP BY 1 ORDER BY 1",
      count: Math.max(10, Math.round(100 * scale)),
    },
    {
      name: '10 000 rows',
      sql: 'SELECT * FROM trades LIMIT 10000',
      count: Math.max(5, Math.round(40 * scale)),
    },
  ];
  const out: BenchRow[] = [];
  try {
    for (const shape of shapes) {
      const exec = await closedLoop(shape.count, async () => {
        const url = `http://127.0.0.1:${httpPort}/exec?query=${encodeURIComponent(shape.sql)}`;
        const response = await request(url, { dispatcher: agent });
        if (response.statusCode !== 200)
          throw new Error(`/exec ${response.statusCode}: ${await response.body.text()}`);
        // Parsed, as node-postgres parses its rows: a client reads what it asked for.
        JSON.parse(await response.body.text());
      });
      for (const prepared of [false, true]) {
        const clients = await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            const client = new pg.Client({
              host: '127.0.0.1',
              port: door.port,
              user: 'admin',
              password: 'quest',
            });
            await client.connect();
            return client;
          }),
        );
        const viaPg = await closedLoop(shape.count, async (worker) => {
          const client = clients[worker]!;
          await client.query(prepared ? { name: 'q', text: shape.sql } : shape.sql);
        });
        await Promise.all(clients.map((c) => c.end()));
        const how = prepared ? 'PG prepared' : 'PG simple';
        out.push({
          name: `${shape.name}: ${how} queries/s`,
          value: round(viaPg.perSecond),
          unit: 'queries/s',
          better: 'higher',
          baselineName: '/exec queries/s',
          baseline: round(exec.perSecond),
          note: `${CLIENTS} clients × ${shape.count} queries; ${rows} rows in the table`,
        });
        out.push({
          name: `${shape.name}: ${how} p99`,
          value: round(viaPg.p99Ms),
          unit: 'ms',
          better: 'lower',
          baselineName: '/exec p99',
          baseline: round(exec.p99Ms),
        });
      }
    }
  } finally {
    await agent.close();
    await door.close();
    await new Promise<void>((resolve) => http.close(() => resolve()));
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    suite: 'pg',
    context: { node: process.version, rows, clients: CLIENTS, queryHosts: 2 },
    rows: out,
  };
}

/** Runs `count` queries on each of CLIENTS workers at once; queries/s over all, and p99 latency. */
async function closedLoop(count: number, query: (worker: number) => Promise<void>) {
  const latencies: number[] = [];
  // Warm-up: one query per worker, not timed.
  await Promise.all(Array.from({ length: CLIENTS }, (_, w) => query(w)));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, w) => {
      for (let i = 0; i < count; i++) {
        const at = performance.now();
        await query(w);
        latencies.push(performance.now() - at);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: latencies.length / seconds, p99Ms: percentile(latencies, 99) };
}

/** One table of `rows` trades, a row a second from 2026-01-02, declared as walship declares it. */
function fill(file: string, rows: number): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(
    'CREATE TABLE trades (timestamp TIMESTAMP_INT NOT NULL, sym SYMBOL_TEXT, price DOUBLE, qty LONG_INT)',
  );
  const insert = db.prepare('INSERT INTO trades VALUES (?, ?, ?, ?)');
  const syms = ['BTC-USD', 'ETH-USD', 'SOL-USD', 'ADA-USD'];
  db.transaction(() => {
    for (let i = 0; i < rows; i++)
      insert.run(BASE_US + BigInt(i) * 1_000_000n, syms[i % 4], 100 + (i % 997) / 10, BigInt(i));
  })();
  db.close();
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
