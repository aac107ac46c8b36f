import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { type ErrorCode, isWalshipError, type WalshipError } from '../core/index.js';
import { formatExecJson } from './query-format.js';
import { type QueryHostPids, QueryPool } from './query-pool.js';
import { openReadOnly } from './query-runner.js';

const INT64_MAX = 9_223_372_036_854_775_807n;
const INT64_MIN = -9_223_372_036_854_775_808n;

/** A query that runs for minutes and hands a row back to JavaScript every ~1000 SQLite steps. */
const SLOW_STREAMING =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) ' +
  'SELECT x FROM c WHERE x % 1000 = 0';

/**
 * One sqlite3_step that never returns: count(*) over an endless recursive CTE. No row ever comes back
 * to JavaScript, so only killing the process stops it.
 */
const ENDLESS_SINGLE_STEP =
  'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';

/**
 * How long to wait for replacement hosts: a bound on waiting, not a timing assertion. A host starts in
 * ~0.2 s from TypeScript source, more on a loaded machine.
 */
const UNTIL_HOSTS_STARTED = { timeout: 15_000, interval: 20 };

let dir: string;
let file: string;
let writer: Database.Database;

/** Creates the node's file the way walship declares tables (sql-types.ts), in WAL mode. */
function createDatabase(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE trades (
      timestamp TIMESTAMP_INT, sym SYMBOL_TEXT, price DOUBLE, qty LONG_INT, ok BOOLEAN_INT,
      note STRING_TEXT, vec DOUBLE_ARRAY_TEXT, amount DECIMAL_TEXT
    );
    CREATE TABLE _walship_watermarks (table_name TEXT, txn INTEGER);
    INSERT INTO _walship_watermarks VALUES ('trades', 3);
  `);
  const insert = db.prepare('INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  insert.run(1_700_000_000_123_456n, 'BTC', 42.5, INT64_MAX, 1, 'say "hi"\n', '[1,2.5,null]', '123.4500');
  insert.run(0n, 'ETH', 1, INT64_MIN, 0, null, '[[1,2],[3,4]]', '-0.001');
  insert.run(-1n, null, Number.POSITIVE_INFINITY, 0n, null, 'ü€😀', null, null);
  return db;
}

function expectCode(error: unknown, code: ErrorCode): WalshipError {
  expect(isWalshipError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as WalshipError;
}

/**
 * True when process `pid` no longer runs: kill(pid, 0) fails with ESRCH (reaped), or it is a zombie
 * that an init without reaping left behind (an orphan's death is all that matters then).
 */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw error;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? false;
  } catch {
    return false;
  }
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-query-pool-'));
  file = join(dir, 'node.db');
  writer = createDatabase(file);
});

afterAll(() => {
  writer.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('QueryPool answers', () => {
  let pool: QueryPool;
  beforeAll(async () => {
    pool = await QueryPool.start({ databaseFile: file, workers: 2, maxResultRows: 50 });
  });
  afterAll(() => pool.close());

  test('every walship type renders as QuestDB renders it', async () => {
    const result = await pool.query('SELECT * FROM trades ORDER BY rowid');
    expect(result.columns).toEqual([
      { name: 'timestamp', type: 'TIMESTAMP' },
      { name: 'sym', type: 'SYMBOL' },
      { name: 'price', type: 'DOUBLE' },
      { name: 'qty', type: 'LONG' },
      { name: 'ok', type: 'BOOLEAN' },
      { name: 'note', type: 'STRING' },
      { name: 'vec', type: 'ARRAY', dim: 1, elemType: 'DOUBLE' },
      { name: 'amount', type: 'DECIMAL' },
    ]);
    expect(result.timestampIndex).toBe(0);
    expect(result.datasetJson).toBe(
      '[' +
        '["2023-11-14T22:13:20.123456Z","BTC",42.5,9223372036854775807,true,"say \\"hi\\"\\n",[1.0,2.5,null],"123.4500"],' +
        '["1970-01-01T00:00:00.000000Z","ETH",1.0,-9223372036854775808,false,null,[[1.0,2.0],[3.0,4.0]],"-0.001"],' +
        '["1969-12-31T23:59:59.999999Z",null,null,0,false,"ü€😀",null,null]' +
        ']',
    );
    expect(result.count).toBe(3);
    const body = JSON.parse(formatExecJson(result));
    expect(Object.keys(body)).toEqual(['query', 'columns', 'timestamp', 'dataset', 'count']);
    expect(body.query).toBe('SELECT * FROM trades ORDER BY rowid');
  });

  test('int64 extremes survive as exact digits, expressions included', async () => {
    const result = await pool.query(
      'SELECT max(qty) AS hi, min(qty) AS lo, max(qty) - 1 AS below FROM trades',
    );
    expect(result.datasetJson).toBe('[[9223372036854775807,-9223372036854775808,9223372036854775806]]');
    expect(result.columns.map((c) => c.type)).toEqual(['LONG', 'LONG', 'LONG']);
  });

  test('expression columns are typed by their values', async () => {
    const result = await pool.query(
      "SELECT 1 AS i, 0.5 AS d, 'x' AS s, NULL AS n, x'00' AS b, 1.0 / 0 AS inf",
    );
    expect(result.columns.map((c) => c.type)).toEqual([
      'LONG',
      'DOUBLE',
      'STRING',
      'STRING',
      'BINARY',
      'STRING',
    ]);
    expect(result.datasetJson).toBe('[[1,0.5,"x",null,[],null]]');
    expect(result.timestampIndex).toBe(-1);
  });

  test('the designated timestamp is found wherever the query puts it, and only for a table column', async () => {
    expect((await pool.query('SELECT sym, timestamp FROM trades')).timestampIndex).toBe(1);
    expect((await pool.query('SELECT timestamp + 0 AS timestamp FROM trades')).timestampIndex).toBe(-1);
  });

  test('pages like QuestDB: rows [lo, hi), count up to the page end, or all rows with countAll', async () => {
    const sql = 'SELECT qty FROM trades ORDER BY rowid';
    const page = await pool.query(sql, { limit: [1, 2] });
    expect(page.datasetJson).toBe('[[-9223372036854775808]]');
    expect([page.rowCount, page.count]).toEqual([1, 2]);
    expect((await pool.query(sql, { limit: [1, 2], countAll: true })).count).toBe(3);
    expect((await pool.query(sql, { limit: [0, 10] })).count).toBe(3);
    const past = await pool.query(sql, { limit: [5, 10] });
    expect([past.datasetJson, past.count]).toEqual(['[]', 0]);
    expectCode(await failure(pool.query(sql, { limit: [2, 1] })), 'INVALID_ARGUMENT');
  });

  test('more rows than maxResultRows is QUERY_TOO_LARGE without a limit; with one the page is cut', async () => {
    const sql =
      'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) SELECT x FROM c';
    const error = expectCode(await failure(pool.query(sql)), 'QUERY_TOO_LARGE');
    expect(error.kind).toBe('invalid');
    expect(error.message).toMatch(/more than 50 rows/);
    const page = await pool.query(sql, { limit: [10, 1000] });
    expect([page.rowCount, page.count]).toEqual([50, 60]);
  });

  test('no statement can write, whatever the trick, and the refusal says why', async () => {
    const writes = [
      "INSERT INTO trades (sym) VALUES ('x')",
      'UPDATE trades SET qty = 0',
      'DELETE FROM trades',
      'CREATE TABLE t2 (a INTEGER)',
      'DROP TABLE trades',
      'CREATE TEMP TABLE t3 (a INTEGER)',
      `ATTACH DATABASE '${join(dir, 'other.db')}' AS other`,
      'PRAGMA writable_schema = ON',
      'PRAGMA query_only = OFF',
      'PRAGMA journal_mode = DELETE',
      `VACUUM INTO '${join(dir, 'copy.db')}'`,
      'BEGIN IMMEDIATE',
      "WITH x AS (SELECT 1) INSERT INTO trades (sym) SELECT 'y' FROM x",
      'REINDEX',
      'ANALYZE',
    ];
    for (const sql of writes) {
      const error = expectCode(await failure(pool.query(sql)), 'QUERY_READ_ONLY');
      expect(error.kind).toBe('invalid');
      expect(error.message).toMatch(/read-only/);
    }
    expect((await pool.query('SELECT count(*) FROM trades')).datasetJson).toBe('[[3]]');
    expect((await pool.query("SELECT name FROM sqlite_master WHERE name IN ('t2', 't3')")).rowCount).toBe(0);
  });

  test('behind the statement check, the host’s connection itself cannot write', () => {
    const db = openReadOnly(file);
    try {
      const attempts = [
        () => db.prepare("INSERT INTO trades (sym) VALUES ('x')").run(),
        () => db.exec('PRAGMA query_only = OFF; CREATE TABLE t4 (a INTEGER)'),
        () => db.exec(`ATTACH DATABASE '${join(dir, 'attached.db')}' AS other`),
        () => db.exec('PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = sql'),
      ];
      for (const attempt of attempts) expect(attempt).toThrow(/readonly|unable to open|may not be modified/);
    } finally {
      db.close();
    }
    expect(Number(writer.prepare('SELECT count(*) FROM trades').pluck().get())).toBe(3);
  });

  test('_walship_ internals are readable', async () => {
    expect((await pool.query('SELECT * FROM _walship_watermarks')).datasetJson).toBe('[["trades",3]]');
  });

  test('bad SQL is QUERY_INVALID with QuestDB’s error position', async () => {
    // SQLite reads `WHER` as an alias of trades and stumbles on `qty`, as its message says.
    const syntax = expectCode(
      await failure(pool.query('SELECT * FROM trades WHER qty > 1')),
      'QUERY_INVALID',
    );
    expect(syntax.kind).toBe('invalid');
    expect(syntax.message).toBe('near "qty": syntax error');
    expect(syntax.details.position).toBe('SELECT * FROM trades WHER '.length);
    const incomplete = expectCode(await failure(pool.query('SELECT * FROM trades WHERE')), 'QUERY_INVALID');
    expect(incomplete.details.position).toBe('SELECT * FROM trades WHERE'.length);
    const table = expectCode(await failure(pool.query('SELECT * FROM nope')), 'QUERY_INVALID');
    expect(table.message).toMatch(/no such table: nope/);
    expect(table.details.position).toBe(14);
    expectCode(await failure(pool.query('   ')), 'QUERY_INVALID');
    expectCode(await failure(pool.query('SELECT 1; SELECT 2')), 'QUERY_INVALID');
  });

  test('exportCsv writes QuestDB’s CSV', async () => {
    const csv = await pool.exportCsv('SELECT timestamp, sym, price, ok, note FROM trades ORDER BY rowid');
    expect(csv).toBe(
      '"timestamp","sym","price","ok","note"\r\n' +
        '"2023-11-14T22:13:20.123456Z","BTC",42.5,true,"say ""hi""\n"\r\n' +
        '"1970-01-01T00:00:00.000000Z","ETH",1.0,false,\r\n' +
        '"1969-12-31T23:59:59.999999Z",,,false,"ü€😀"\r\n',
    );
    expect(await pool.exportCsv('SELECT sym FROM trades WHERE 0', { delimiter: ';' })).toBe('"sym"\r\n');
    expect(await pool.exportCsv('SELECT 1 AS a, 2 AS b', { header: false, delimiter: ';' })).toBe('1;2\r\n');
  });
});

describe('QueryPool time limit', () => {
  test('a slow query stops at its limit while a fast one answers, the main thread writes and stays responsive', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 2 });
    try {
      let settledAt = Number.POSITIVE_INFINITY;
      const slow = failure(pool.query(SLOW_STREAMING, { timeoutMs: 1500 })).finally(() => {
        settledAt = performance.now();
      });

      // The event loop: a 10 ms timer that must keep firing while the slow query runs.
      let ticks = 0;
      let maxLatenessMs = 0;
      let expected = performance.now() + 10;
      const timer = setInterval(() => {
        maxLatenessMs = Math.max(maxLatenessMs, performance.now() - expected);
        expected = performance.now() + 10;
        ticks++;
      }, 10);

      // The main thread writes to the same file through its own connection meanwhile.
      const before = Number(writer.prepare('SELECT count(*) FROM trades').pluck().get());
      const insert = writer.prepare("INSERT INTO trades (timestamp, sym, qty) VALUES (?, 'W', ?)");
      for (let batch = 0; batch < 20; batch++) {
        writer.transaction(() => {
          for (let i = 0; i < 50; i++) insert.run(BigInt(batch * 50 + i), BigInt(i));
        })();
        await sleep(5);
      }
      const writesDoneAt = performance.now();
      const fast = await pool.query("SELECT count(*) FROM trades WHERE sym = 'W'");
      const fastDoneAt = performance.now();
      const ticksWhileSlowRan = ticks;

      const error = expectCode(await slow, 'QUERY_TIMEOUT');
      clearInterval(timer);
      expect(error.kind).toBe('unavailable');
      expect(error.message).toMatch(/1500 ms limit/);
      expect(error.message).toMatch(/queryTimeoutMs/);
      expect(fast.datasetJson).toBe('[[1000]]');
      expect(writesDoneAt).toBeLessThan(settledAt);
      expect(fastDoneAt).toBeLessThan(settledAt);
      expect(ticksWhileSlowRan).toBeGreaterThan(0);
      expect(Number.isFinite(maxLatenessMs)).toBe(true);

      // The pool recovers: a replacement host answers, the counters tell what happened.
      expect((await pool.query('SELECT 1 AS one')).datasetJson).toBe('[[1]]');
      await vi.waitFor(
        () => expect(pool.stats()).toMatchObject({ workers: 2, timedOut: 1, terminating: 0 }),
        UNTIL_HOSTS_STARTED,
      );
      writer.exec("DELETE FROM trades WHERE sym = 'W'");
      expect(Number(writer.prepare('SELECT count(*) FROM trades').pluck().get())).toBe(before);
    } finally {
      await pool.close();
    }
  });

  test('a query stuck in one SQLite step stops at its limit: its host is killed while the other host answers', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 2 });
    try {
      const pidsBefore = pool.hostPids();
      expect(pidsBefore.idle).toHaveLength(2);
      let settledAt = Number.POSITIVE_INFINITY;
      const runaway = failure(pool.query(ENDLESS_SINGLE_STEP, { timeoutMs: 1500 })).finally(() => {
        settledAt = performance.now();
      });
      await vi.waitFor(() => expect(pool.stats().busy).toBe(1));
      const [runawayPid] = pool.hostPids().busy;
      const [otherPid] = pool.hostPids().idle;
      if (runawayPid === undefined || otherPid === undefined)
        throw new Error('expected one busy, one idle host');

      // The other host answers while the runaway one is pinned in SQLite.
      const fast = await pool.query('SELECT count(*) FROM trades');
      const fastDoneAt = performance.now();
      expect(fast.datasetJson).toBe('[[3]]');
      expect(pool.hostPids().busy).toEqual([runawayPid]);

      const error = expectCode(await runaway, 'QUERY_TIMEOUT');
      expect(error.message).toMatch(/1500 ms limit/);
      expect(fastDoneAt).toBeLessThan(settledAt);

      // The runaway host is really gone (SIGKILL, reaped), the other one untouched, a replacement ready.
      await vi.waitFor(
        () => expect(pool.stats()).toMatchObject({ workers: 2, terminating: 0, timedOut: 1 }),
        UNTIL_HOSTS_STARTED,
      );
      expect(isGone(runawayPid)).toBe(true);
      expect(isGone(otherPid)).toBe(false);
      const pidsAfter = pool.hostPids();
      expect(pidsAfter.idle).not.toContain(runawayPid);
      expect(pidsAfter.idle).toContain(otherPid);
      expect(pidsAfter.idle).toHaveLength(2);

      // The pool answers normally right after, on both hosts at once.
      const answers = await Promise.all([pool.query('SELECT 1 AS one'), pool.query('SELECT 2 AS two')]);
      expect(answers.map((a) => a.datasetJson)).toEqual(['[[1]]', '[[2]]']);
    } finally {
      await pool.close();
    }
  });

  test('a killed host counts as `terminating` until it has exited', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    try {
      expectCode(await failure(pool.query(ENDLESS_SINGLE_STEP, { timeoutMs: 100 })), 'QUERY_TIMEOUT');
      // The rejection comes with the SIGKILL; the exit is seen on a later turn of the event loop.
      expect(pool.stats().terminating).toBe(1);
      const [killedPid] = pool.hostPids().terminating;
      if (killedPid === undefined) throw new Error('expected a terminating host');
      await vi.waitFor(
        () => expect(pool.stats()).toMatchObject({ terminating: 0, workers: 1 }),
        UNTIL_HOSTS_STARTED,
      );
      expect(isGone(killedPid)).toBe(true);
      expect((await pool.query('SELECT 2 AS two')).datasetJson).toBe('[[2]]');
    } finally {
      await pool.close();
    }
  });
});

describe('QueryPool hosts', () => {
  test('a host killed from outside fails only its running query and is replaced', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 2 });
    try {
      const doomed = failure(pool.query(SLOW_STREAMING));
      await vi.waitFor(() => expect(pool.stats().busy).toBe(1));
      const [victim] = pool.hostPids().busy;
      if (victim === undefined) throw new Error('expected a busy host');
      // A query of a few hundred ms on the other host, and one more waiting in the queue.
      const survivor = pool.query(
        'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) FROM c',
      );
      const queued = pool.query('SELECT 4 AS four');
      expect(pool.stats()).toMatchObject({ busy: 2, queued: 1 });

      process.kill(victim, 'SIGKILL');
      const error = expectCode(await doomed, 'QUERY_WORKER_FAILED');
      expect(error.kind).toBe('unavailable');
      expect(error.message).toMatch(/killed by SIGKILL/);
      expect((await survivor).datasetJson).toBe('[[2000000]]');
      expect((await queued).datasetJson).toBe('[[4]]');

      await vi.waitFor(
        () => expect(pool.stats()).toMatchObject({ workers: 2, terminating: 0 }),
        UNTIL_HOSTS_STARTED,
      );
      expect(isGone(victim)).toBe(true);
      expect(pool.hostPids().idle).not.toContain(victim);
      expect((await pool.query('SELECT 5 AS five')).datasetJson).toBe('[[5]]');
      expect(pool.stats().timedOut).toBe(0);
    } finally {
      await pool.close();
    }
  });

  test('a host that runs out of heap fails its query with QUERY_TOO_LARGE and is replaced', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1, workerHeapMb: 32 });
    try {
      // ~100 MB of rendered rows, under maxResultBytes (128 MiB) but far over a 32 MB heap.
      const huge =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT printf('%.*c', 1000, 'x') FROM c";
      const error = expectCode(await failure(pool.query(huge)), 'QUERY_TOO_LARGE');
      expect(error.message).toMatch(/32 MB heap/);
      expect((await pool.query('SELECT 6 AS six')).datasetJson).toBe('[[6]]');
    } finally {
      await pool.close();
    }
  });

  test('hosts die with their parent: an idle one at once, one stuck in SQLite through its watchdog', async () => {
    // A parent process that runs a pool from TypeScript source (the same hooks the hosts use), starts
    // a runaway query on one host and reports both hosts' pids.
    const poolUrl = new URL('./query-pool.ts', import.meta.url).href;
    const registerUrl = new URL('./query-host-ts-register.mjs', import.meta.url).href;
    const script = `
      import { QueryPool } from ${JSON.stringify(poolUrl)};
      const pool = await QueryPool.start({ databaseFile: ${JSON.stringify(file)}, workers: 2 });
      pool.query(${JSON.stringify(ENDLESS_SINGLE_STEP)}).catch(() => {});
      const report = setInterval(() => {
        if (pool.stats().busy === 1) {
          clearInterval(report);
          process.stdout.write(JSON.stringify(pool.hostPids()) + '\\n');
        }
      }, 10);
    `;
    const parent = spawn(process.execPath, ['--import', registerUrl, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const exitedEarly = once(parent, 'exit').then(([code]) => {
        throw new Error(`the parent exited with code ${code} before reporting its hosts`);
      });
      const [line] = (await Promise.race([
        once(createInterface({ input: parent.stdout }), 'line'),
        exitedEarly,
      ])) as [string];
      const pids = JSON.parse(line) as QueryHostPids;
      const hostPids = [...pids.busy, ...pids.idle];
      expect(hostPids).toHaveLength(2);
      for (const pid of hostPids) expect(isGone(pid)).toBe(false);
      parent.kill('SIGKILL');
      await vi.waitFor(() => expect(hostPids.filter((pid) => !isGone(pid))).toEqual([]), {
        timeout: 10_000,
        interval: 50,
      });
    } finally {
      parent.kill('SIGKILL');
    }
  });
});

describe('QueryPool bounds and lifecycle', () => {
  test('the queue is bounded: one query too many is QUERY_BUSY', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1, maxQueueLength: 1 });
    try {
      const running = failure(pool.query(SLOW_STREAMING));
      const queued = failure(pool.query('SELECT 1'));
      await vi.waitFor(() => expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 }));
      const busy = expectCode(await failure(pool.query('SELECT 2')), 'QUERY_BUSY');
      expect(busy.kind).toBe('unavailable');
      expect(busy.message).toMatch(/1 queries are waiting/);
      await pool.close();
      expectCode(await running, 'CLOSED');
      expectCode(await queued, 'CLOSED');
    } finally {
      await pool.close();
    }
  });

  test('aborting a queued query drops it; aborting a running one replaces its host', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    try {
      const runningAbort = new AbortController();
      const queuedAbort = new AbortController();
      const running = failure(pool.query(SLOW_STREAMING, { signal: runningAbort.signal }));
      const queued = failure(pool.query('SELECT 1', { signal: queuedAbort.signal }));
      queuedAbort.abort();
      expectCode(await queued, 'QUERY_ABORTED');
      expect(pool.stats().queued).toBe(0);
      const [abortedPid] = pool.hostPids().busy;
      runningAbort.abort();
      expectCode(await running, 'QUERY_ABORTED');
      expect((await pool.query('SELECT 3 AS three')).datasetJson).toBe('[[3]]');
      expect(pool.hostPids().idle).not.toContain(abortedPid);
      expect(pool.stats().timedOut).toBe(0);
      const aborted = new AbortController();
      aborted.abort();
      expectCode(await failure(pool.query('SELECT 1', { signal: aborted.signal })), 'QUERY_ABORTED');
    } finally {
      await pool.close();
    }
  });

  test('close() rejects pending queries and kills every host', async () => {
    const pool = await QueryPool.start({ databaseFile: file, workers: 2 });
    const running = failure(pool.query(SLOW_STREAMING));
    const other = failure(pool.query(SLOW_STREAMING));
    const queued = failure(pool.query('SELECT 1'));
    await vi.waitFor(() => expect(pool.stats()).toMatchObject({ busy: 2, queued: 1 }));
    const pids = pool.hostPids().busy;
    await pool.close();
    for (const pending of [running, other, queued])
      expect(expectCode(await pending, 'CLOSED').kind).toBe('closed');
    expect(pool.stats()).toMatchObject({ workers: 0, busy: 0, queued: 0, terminating: 0 });
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(isGone(pid)).toBe(true);
    expect(pool.hostPids()).toEqual({ idle: [], busy: [], terminating: [] });
    expectCode(await failure(pool.query('SELECT 1')), 'CLOSED');
    await pool.close();
  });

  test('close() returns while queries are stuck in one SQLite step, and no host outlives it', async () => {
    // A limit far past the test's timeout: close() must not wait for the queries to end.
    const pool = await QueryPool.start({ databaseFile: file, workers: 2, queryTimeoutMs: 600_000 });
    const stuck = [failure(pool.query(ENDLESS_SINGLE_STEP)), failure(pool.query(ENDLESS_SINGLE_STEP))];
    await vi.waitFor(() => expect(pool.stats().busy).toBe(2));
    const pids = pool.hostPids().busy;
    await pool.close();
    for (const pending of stuck) expectCode(await pending, 'CLOSED');
    for (const pid of pids) expect(isGone(pid)).toBe(true);
  });

  test('start fails clearly when the file is missing, and refuses bad options', async () => {
    const missing = join(dir, 'missing.db');
    const error = expectCode(
      await failure(QueryPool.start({ databaseFile: missing, workers: 1 })),
      'QUERY_WORKER_FAILED',
    );
    expect(error.message).toContain(missing);
    expectCode(await failure(QueryPool.start({ databaseFile: file, workers: 0 })), 'INVALID_CONFIG');
    expectCode(await failure(QueryPool.start({ databaseFile: file, queryTimeoutMs: -1 })), 'INVALID_CONFIG');
  });
});
