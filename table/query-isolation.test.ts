import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { type ErrorCode, isWalshipError, type WalshipError } from '../core/index.js';
import { createQueryHttpHandler } from './query-http.js';
import { QueryPool } from './query-pool.js';
import {
  connectionSettings,
  isConnectionChangedError,
  openReadOnly,
  type QueryRequest,
  runIsolatedQuery,
} from './query-runner.js';

/**
 * Issue 13 item 7 (RFC-0004 §6–§8): a query cannot change what the next query sees, and what one
 * query can take is bounded: memory (SQLite's included), temporary space, and the time others wait
 * for a query host.
 */

/** One sqlite3_step that never returns (see query-pool.test.ts): only killing its host stops it. */
const ENDLESS_SINGLE_STEP =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';

/**
 * An endless count(DISTINCT …) of 300-character texts: SQLite keeps the distinct values in a temporary
 * b-tree, which used to spill to a temp file (the audit saw ~24 MB/s written until the time limit).
 */
const ENDLESS_DISTINCT =
  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(DISTINCT printf('%0300d', x)) FROM c";

/** The audit's query: 900 MB of SQLite values in one row. */
const THREE_BIG_BLOBS = 'SELECT randomblob(3e8) a, randomblob(3e8) b, randomblob(3e8) c';

/** The smallest memory limit a pool accepts; far below what the two queries above take. */
const MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;

/** A bound on waiting for replacement hosts to start, not a timing assertion. */
const UNTIL_HOSTS_STARTED = { timeout: 15_000, interval: 20 };

/** The pragmas the audit found sticking on the shared connection, each with a value that would show. */
const STICKY_PRAGMAS = [
  'PRAGMA full_column_names = ON',
  'PRAGMA reverse_unordered_selects = ON',
  'PRAGMA query_only = OFF',
  'PRAGMA mmap_size = 268435456',
  'PRAGMA busy_timeout = 1',
  'PRAGMA threads = 4',
  'PRAGMA hard_heap_limit = 1000000',
  'PRAGMA temp_store = FILE',
  'PRAGMA case_sensitive_like = ON',
];

let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-query-isolation-'));
  file = join(dir, 'node.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE t (k INTEGER, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');");
  db.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function expectCode(error: unknown, code: ErrorCode): WalshipError {
  expect(isWalshipError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as WalshipError;
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function requestOf(sql: string): QueryRequest {
  return {
    sql,
    format: 'json',
    skip: 0,
    stop: null,
    countAll: false,
    maxRows: 1_000,
    maxBytes: 1_000_000,
    csvHeader: true,
    csvDelimiter: ',',
  };
}

describe('a query cannot change what the next query sees', () => {
  test('the audit’s pragmas are refused before they run, and the next query on the same host is unchanged', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    try {
      const [pid] = pool.hostPids().idle;
      for (const sql of STICKY_PRAGMAS) {
        const error = expectCode(await failure(pool.query(sql)), 'QUERY_READ_ONLY');
        expect(error.message).toMatch(/is not served/);
      }
      const next = await pool.query('select k, v from t');
      expect(next.columns.map((c) => c.name)).toEqual(['k', 'v']);
      expect(next.datasetJson).toBe('[[1,"a"],[2,"b"],[3,"c"]]');
      const settings = await pool.query(
        'SELECT q.query_only, b.timeout, th.threads, h.hard_heap_limit, ts.temp_store, ' +
          "'a' LIKE 'A' AS like_ignores_case FROM pragma_query_only q, pragma_busy_timeout b, " +
          'pragma_threads th, pragma_hard_heap_limit h, pragma_temp_store ts',
      );
      expect(settings.datasetJson).toBe('[[1,5000,0,0,2,1]]');
      // Nothing ran, so nothing had to be cleaned up: the same host answered throughout.
      expect(pool.hostPids().idle).toEqual([pid]);
    } finally {
      await pool.close();
    }
  });

  test('the schema PRAGMAs and the pragma functions still answer', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    try {
      const info = await pool.query('PRAGMA table_info(t)');
      expect(info.datasetJson).toBe('[[0,"k","INTEGER",0,null,0],[1,"v","TEXT",0,null,0]]');
      const functions = await pool.query("SELECT name FROM pragma_table_info('t') ORDER BY cid");
      expect(functions.datasetJson).toBe('[["k"],["v"]]');
      expectCode(await failure(pool.query("SELECT load_extension('/tmp/x.so')")), 'QUERY_INVALID');
    } finally {
      await pool.close();
    }
  });

  test('a schema change by the writer is no settings change: the same host keeps answering', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    const writer = new Database(file);
    try {
      const [pid] = pool.hostPids().idle;
      expect((await pool.query('select k from t')).rowCount).toBe(3);
      writer.exec('ALTER TABLE t ADD COLUMN w REAL; CREATE TABLE u (a INTEGER)');
      const after = await pool.query('select * from t');
      expect(after.columns.map((c) => c.name)).toEqual(['k', 'v', 'w']);
      expect(pool.hostPids().idle).toEqual([pid]);
    } finally {
      writer.exec('DROP TABLE u; ALTER TABLE t DROP COLUMN w');
      writer.close();
      await pool.close();
    }
  });

  test('the connection settings check sees every sticky pragma of the audit', () => {
    for (const sql of STICKY_PRAGMAS) {
      const db = openReadOnly(file);
      try {
        const before = connectionSettings(db);
        expect(connectionSettings(db)).toBe(before);
        db.exec(sql);
        expect(connectionSettings(db), sql).not.toBe(before);
      } finally {
        db.close();
      }
    }
  });

  test('should a statement ever change a setting, its answer is withheld and its host replaced', () => {
    const db = openReadOnly(file);
    try {
      const atOpen = connectionSettings(db);
      expect(runIsolatedQuery(db, requestOf('select k from t'), atOpen).body).toBe('[[1],[2],[3]]');
      // What a statement slipping past judgeReadStatement would do, done behind the host's back.
      db.exec('PRAGMA reverse_unordered_selects = ON');
      let thrown: unknown;
      try {
        runIsolatedQuery(db, requestOf('select k from t'), atOpen);
      } catch (error) {
        thrown = error;
      }
      expect(isConnectionChangedError(thrown)).toBe(true);
      expect(expectCode(thrown, 'QUERY_READ_ONLY').message).toMatch(/host is replaced/);
      // A query that fails for its own reason on a changed connection is withheld the same way.
      let failed: unknown;
      try {
        runIsolatedQuery(db, requestOf('select nope from t'), atOpen);
      } catch (error) {
        failed = error;
      }
      expect(isConnectionChangedError(failed)).toBe(true);
    } finally {
      db.close();
    }
  });
});

describe('what one query can take is bounded', () => {
  test('900 MB of randomblob is a typed QUERY_TOO_LARGE naming the memory limit; the host is replaced', async () => {
    const pool = await QueryPool.start({
      databaseFile: file,
      workers: 1,
      memoryLimitBytes: MEMORY_LIMIT_BYTES,
      queryTimeoutMs: 600_000,
    });
    try {
      const [pid] = pool.hostPids().idle;
      const error = expectCode(await failure(pool.query(THREE_BIG_BLOBS)), 'QUERY_TOO_LARGE');
      expect(error.kind).toBe('invalid');
      expect(error.message).toMatch(/memory limit of 128 MiB \(query\.memory\.limit/);
      expect(error.details.memoryLimitBytes).toBe(MEMORY_LIMIT_BYTES);
      expect(pool.stats().timedOut).toBe(0);
      await vi.waitFor(() => expect(pid !== undefined && isGone(pid)).toBe(true), UNTIL_HOSTS_STARTED);
      expect((await pool.query('select count(*) from t')).datasetJson).toBe('[[3]]');
    } finally {
      await pool.close();
    }
  }, 120_000);

  test('a temp-heavy query stops at the memory limit instead of writing temp files until its time limit', async () => {
    const pool = await QueryPool.start({
      databaseFile: file,
      workers: 1,
      memoryLimitBytes: MEMORY_LIMIT_BYTES,
      queryTimeoutMs: 600_000,
    });
    try {
      const error = expectCode(await failure(pool.query(ENDLESS_DISTINCT)), 'QUERY_TOO_LARGE');
      expect(error.message).toMatch(/query\.memory\.limit/);
      expect(pool.stats().timedOut).toBe(0);
      expect((await pool.query('select 1')).datasetJson).toBe('[[1]]');
    } finally {
      await pool.close();
    }
  }, 120_000);

  test('with every host busy on an endless query, another query gets QUERY_BUSY at the queue wait limit; after the time limit the hosts serve again', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 2, maxQueueWaitMs: 300 });
    try {
      const endless = [1, 2].map(() => failure(pool.query(ENDLESS_SINGLE_STEP, { timeoutMs: 5_000 })));
      await vi.waitFor(() => expect(pool.stats().busy).toBe(2));
      const busy = expectCode(await failure(pool.query('select 1')), 'QUERY_BUSY');
      expect(busy.kind).toBe('unavailable');
      expect(busy.message).toMatch(/within 300 ms \(the queue wait limit, query\.queue\.wait\.max\)/);
      expect(busy.details.maxQueueWaitMs).toBe(300);
      // Refused while both endless queries still ran: it did not wait for their time limit.
      expect(pool.stats()).toMatchObject({ busy: 2, queued: 0, timedOut: 0 });

      for (const error of await Promise.all(endless)) expectCode(error, 'QUERY_TIMEOUT');
      await vi.waitFor(
        () => expect(pool.stats()).toMatchObject({ workers: 2, busy: 0 }),
        UNTIL_HOSTS_STARTED,
      );
      expect((await pool.query('select count(*) from t')).datasetJson).toBe('[[3]]');
    } finally {
      await pool.close();
    }
  });

  test('the new bounds are checked when the pool starts', async () => {
    for (const options of [{ memoryLimitBytes: 64 * 1024 * 1024 }, { maxQueueWaitMs: 0 }]) {
      const error = expectCode(
        await failure(QueryPool.start({ databaseFile: file, ...options })),
        'INVALID_CONFIG',
      );
      expect(error.message).toMatch(Object.keys(options)[0] as string);
    }
  });

  test('over HTTP the refusal is a quick 503 with Retry-After that names the limit', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1, maxQueueWaitMs: 200 });
    const handler = createQueryHttpHandler(pool);
    const server: Server = createServer((req, res) => void handler.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const endless = failure(pool.query(ENDLESS_SINGLE_STEP, { timeoutMs: 600_000 }));
      await vi.waitFor(() => expect(pool.stats().busy).toBe(1));
      const res = await fetch(`${base}/exec?${new URLSearchParams({ query: 'select 1' })}`);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      const body = (await res.json()) as { error: string };
      expect(body.error).toMatch(/query\.queue\.wait\.max/);
      expect(pool.stats()).toMatchObject({ busy: 1, timedOut: 0 });
      await pool.close();
      expectCode(await endless, 'CLOSED');
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await pool.close();
    }
  });
});
