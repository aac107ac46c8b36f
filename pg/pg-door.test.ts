/**
 * The PostgreSQL door with real clients: psql (Debian's postgresql-client), node-postgres and
 * postgres.js, against a real QueryPool over a database declared the way walship declares tables.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { seededRandom } from '../core/index.js';
import { QueryPool } from '../table/index.js';
import { PG_SERVER_VERSION, type PgServer, startPgServer } from './server.js';

const run = promisify(execFile);
const USER = 'admin';
const PASSWORD = 'quest';

let dir: string;
let pool: QueryPool;
let server: PgServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'walship-pg-'));
  const file = join(dir, 'db.sqlite');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(
    `CREATE TABLE trades (timestamp TIMESTAMP_INT NOT NULL, sym SYMBOL_TEXT, price DOUBLE, qty LONG_INT, ok BOOLEAN_INT)`,
  );
  const insert = db.prepare('INSERT INTO trades VALUES (?, ?, ?, ?, ?)');
  insert.run(1_767_312_000_000_000n, 'BTC', 42.5, 9_223_372_036_854_775_807n, 1);
  insert.run(1_767_312_001_500_000n, 'ETH', 1, -7n, 0);
  insert.run(1_767_312_002_000_001n, null, null, null, null);
  db.close();
  pool = await QueryPool.start({ databaseFile: file, workers: 2 });
  server = await startPgServer({
    host: '127.0.0.1',
    port: 0,
    runQuery: (sql, options) => pool.queryPg(sql, options),
    credentials: [{ user: USER, password: PASSWORD }],
    maxMessageBytes: 64 * 1024,
    maxConnections: 64,
    serverVersion: PG_SERVER_VERSION,
  });
});

afterAll(async () => {
  await server?.close();
  await pool?.close();
  rmSync(dir, { recursive: true, force: true });
});

function pgClient(password = PASSWORD): pg.Client {
  return new pg.Client({ host: '127.0.0.1', port: server.port, user: USER, password, database: 'qdb' });
}

async function withPg<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = pgClient();
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe('node-postgres', () => {
  test('a simple query returns typed columns: timestamp, int8, float8, text, bool', async () => {
    const result = await withPg((c) =>
      c.query('SELECT timestamp, sym, price, qty, ok FROM trades ORDER BY timestamp'),
    );
    expect(result.fields.map((f) => [f.name, f.dataTypeID])).toEqual([
      ['timestamp', 1114],
      ['sym', 25],
      ['price', 701],
      ['qty', 20],
      ['ok', 16],
    ]);
    expect(result.rows[0]).toMatchObject({ sym: 'BTC', price: 42.5, qty: '9223372036854775807', ok: true });
    expect(result.rows[1]).toMatchObject({ sym: 'ETH', price: 1, qty: '-7', ok: false });
    expect(result.rows[2]).toMatchObject({ sym: null, price: null, qty: null, ok: null });
    expect(result.rowCount).toBe(3);
  });

  test('expressions are typed by their values; errors carry SQLSTATE and position', async () => {
    await withPg(async (c) => {
      const result = await c.query('SELECT count(*) AS n, avg(price) AS mean, max(sym) AS top FROM trades');
      expect(result.fields.map((f) => f.dataTypeID)).toEqual([20, 701, 25]);
      expect(result.rows[0]).toEqual({ n: '3', mean: 21.75, top: 'ETH' });
      await expect(c.query('SELECT * FROM nope')).rejects.toMatchObject({ code: '42P01' });
      await expect(c.query('SELEC 1')).rejects.toMatchObject({ code: '42601', position: '1' });
      await expect(c.query('DELETE FROM trades')).rejects.toMatchObject({ code: '25006' });
      // The connection is usable after each error.
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: '1' }]);
    });
  });

  test('parameters and named prepared statements go over the extended protocol', async () => {
    await withPg(async (c) => {
      const byQty = { name: 'by-qty', text: 'SELECT sym FROM trades WHERE qty > $1 ORDER BY sym' };
      expect((await c.query({ ...byQty, values: [-10] })).rows).toEqual([{ sym: 'BTC' }, { sym: 'ETH' }]);
      expect((await c.query({ ...byQty, values: [0] })).rows).toEqual([{ sym: 'BTC' }]);
      const two = await c.query('SELECT $1::text AS a, $2 AS b', ['x', 'y']);
      expect(two.rows).toEqual([{ a: 'x', b: 'y' }]);
    });
  });

  test('session commands and comment-only queries are answered, not refused', async () => {
    await withPg(async (c) => {
      await c.query("SET application_name = 'dash'");
      expect((await c.query('SHOW application_name')).rows).toEqual([{ application_name: 'dash' }]);
      await c.query('BEGIN');
      await c.query('COMMIT');
      const ping = await c.query('-- ping');
      expect(ping.rows).toEqual([]);
    });
  });

  test("the catalog a dashboard reads: version, settings, information_schema's tables and columns", async () => {
    await withPg(async (c) => {
      const version = await c.query({
        name: 'v',
        text: "SELECT current_setting('server_version_num')::int / 100 AS v",
      });
      expect(version.rows).toEqual([{ v: '1500' }]);
      expect((await c.query('SELECT version() AS v')).rows[0].v).toMatch(/^PostgreSQL 15/);
      const tables = await c.query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY 2",
      );
      expect(tables.rows).toEqual([{ table_schema: 'public', table_name: 'trades' }]);
      const columns = await c.query({
        name: 'cols',
        text: 'SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position',
        values: ['trades'],
      });
      expect(columns.rows).toEqual([
        {
          column_name: 'timestamp',
          data_type: 'timestamp without time zone',
          udt_name: 'timestamp',
          is_nullable: 'NO',
        },
        { column_name: 'sym', data_type: 'text', udt_name: 'text', is_nullable: 'YES' },
        { column_name: 'price', data_type: 'double precision', udt_name: 'float8', is_nullable: 'YES' },
        { column_name: 'qty', data_type: 'bigint', udt_name: 'int8', is_nullable: 'YES' },
        { column_name: 'ok', data_type: 'boolean', udt_name: 'bool', is_nullable: 'YES' },
      ]);
    });
  });

  test('time filters like time: ISO strings, a Date parameter, and time_bucket as a timestamp column', async () => {
    await withPg(async (c) => {
      // Grafana's $__timeFilter(timestamp) expands to this.
      const filtered = await c.query(
        "SELECT sym FROM trades WHERE timestamp BETWEEN '2026-01-02T00:00:00Z' AND '2026-01-02T00:00:01.9Z' ORDER BY timestamp",
      );
      expect(filtered.rows).toEqual([{ sym: 'BTC' }, { sym: 'ETH' }]);
      const after = await c.query('SELECT count(*) AS n FROM trades WHERE timestamp > $1', [
        new Date('2026-01-02T00:00:01Z'),
      ]);
      expect(after.rows).toEqual([{ n: '2' }]);
      const buckets = await c.query(
        "SELECT time_bucket('1s', timestamp) AS time, count(*) AS n FROM trades GROUP BY 1 ORDER BY 1",
      );
      expect(buckets.fields.map((f) => f.dataTypeID)).toEqual([1114, 20]);
      // Grafana's $__timeGroupAlias(timestamp, '1s'): epoch seconds, which Grafana reads as time.
      const grouped = await c.query(
        'SELECT floor(extract(epoch from "timestamp")/1)*1 AS "time", count(*) AS n FROM trades GROUP BY 1 ORDER BY 1',
      );
      expect(grouped.rows.map((r) => [r.time, r.n])).toEqual([
        [1_767_312_000, '1'],
        [1_767_312_001, '1'],
        [1_767_312_002, '1'],
      ]);
      expect(
        buckets.rows.map((r) => [
          (r.time as Date).getTime() - new Date('2026-01-02T00:00:00').getTime(),
          r.n,
        ]),
      ).toEqual([
        [0, '1'],
        [1000, '1'],
        [2000, '1'],
      ]);
    });
  });

  test('/exec filters the same way (the same query hosts)', async () => {
    const result = await pool.query(
      "SELECT sym FROM trades WHERE timestamp >= '2026-01-02 00:00:01.5' ORDER BY timestamp",
    );
    expect(JSON.parse(result.datasetJson)).toEqual([['ETH'], [null]]);
    const buckets = await pool.query(
      "SELECT time_bucket('1s', timestamp) AS time, count(*) FROM trades GROUP BY 1 LIMIT 1",
    );
    expect(buckets.columns[0]).toEqual({ name: 'time', type: 'TIMESTAMP' });
    expect(JSON.parse(buckets.datasetJson)).toEqual([['2026-01-02T00:00:00.000000Z', 1]]);
  });

  test('MD5 for old clients when pg.auth.method=md5, and a wrong password refused either way', async () => {
    const md5 = await startPgServer({
      host: '127.0.0.1',
      port: 0,
      runQuery: (sql, options) => pool.queryPg(sql, options),
      credentials: [{ user: USER, password: PASSWORD }],
      maxMessageBytes: 64 * 1024,
      maxConnections: 4,
      serverVersion: PG_SERVER_VERSION,
      authMethod: 'md5',
    });
    try {
      const client = new pg.Client({ host: '127.0.0.1', port: md5.port, user: USER, password: PASSWORD });
      await client.connect();
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: '1' }]);
      await client.end();
      const wrong = new pg.Client({ host: '127.0.0.1', port: md5.port, user: USER, password: 'nope' });
      await expect(wrong.connect()).rejects.toMatchObject({ code: '28P01' });
      await wrong.end().catch(() => {});
    } finally {
      await md5.close();
    }
  });

  test('a wrong password is refused with 28P01 (SCRAM-SHA-256, the default)', async () => {
    const client = pgClient('wrong');
    await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
    await client.end().catch(() => {});
  });
});

describe('postgres.js (extended protocol by default)', () => {
  test('queries with parameters, binary int8 and a cancelled query', async () => {
    const sql = postgres({
      host: '127.0.0.1',
      port: server.port,
      user: USER,
      password: PASSWORD,
      database: 'qdb',
      fetch_types: false,
      max: 1,
    });
    try {
      const rows = await sql`SELECT sym, qty FROM trades WHERE price >= ${1} ORDER BY sym`;
      expect(rows.map((r) => [r.sym, r.qty])).toEqual([
        ['BTC', '9223372036854775807'],
        ['ETH', '-7'],
      ]);
      const slow = sql`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c`;
      const cancelled = slow.then(
        () => 'finished',
        (error: { code?: string }) => error.code,
      );
      setTimeout(() => slow.cancel(), 300);
      expect(await cancelled).toBe('57014');
      // The connection serves the next query.
      expect((await sql`SELECT 2 AS two`)[0]).toEqual({ two: '2' });
    } finally {
      await sql.end();
    }
  });
});

describe('psql', () => {
  const psql = (...args: string[]) =>
    run('psql', ['-h', '127.0.0.1', '-p', String(server.port), '-U', USER, '-d', 'qdb', '-X', ...args], {
      env: { ...process.env, PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '5' },
    });

  test('connects, runs a query and prints timestamps as PostgreSQL does', async () => {
    const { stdout } = await psql(
      '-A',
      '-t',
      '-c',
      'SELECT timestamp, sym, price FROM trades ORDER BY timestamp',
    );
    expect(stdout.trim().split('\n')).toEqual([
      '2026-01-02 00:00:00|BTC|42.5',
      '2026-01-02 00:00:01.5|ETH|1',
      '2026-01-02 00:00:02.000001||',
    ]);
  });

  test('\\dt lists the tables and \\d describes one, with PostgreSQL types', async () => {
    const listed = await psql('-c', '\\dt');
    expect(listed.stdout).toMatch(/public \| trades \| table \| admin/);
    const described = await psql('-c', '\\d trades');
    expect(described.stdout).not.toMatch(/Typed table/);
    expect(described.stdout).toMatch(/Table "public\.trades"/);
    expect(described.stdout).toMatch(/timestamp +\| timestamp without time zone +\| +\| not null/);
    expect(described.stdout).toMatch(/sym +\| text/);
    expect(described.stdout).toMatch(/price +\| double precision/);
    expect(described.stdout).toMatch(/qty +\| bigint/);
    expect(described.stdout).toMatch(/ok +\| boolean/);
  });

  test('a time-range query and a bucketed one', async () => {
    const range = await psql(
      '-A',
      '-t',
      '-c',
      "SELECT sym FROM trades WHERE timestamp >= '2026-01-02 00:00:01' AND timestamp < '2026-01-02T00:00:02Z'",
    );
    expect(range.stdout.trim()).toBe('ETH');
    const buckets = await psql(
      '-A',
      '-t',
      '-c',
      "SELECT time_bucket('2s', timestamp) AS time, count(*) FROM trades GROUP BY 1 ORDER BY 1",
    );
    expect(buckets.stdout.trim().split('\n')).toEqual(['2026-01-02 00:00:00|2', '2026-01-02 00:00:02|1']);
  });

  test('an error is printed with its SQLSTATE', async () => {
    const failed = await psql(
      '-v',
      'VERBOSITY=verbose',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      'SELECT * FROM nope',
    ).then(
      () => '',
      (error: { stderr: string }) => error.stderr,
    );
    expect(failed).toMatch(/ERROR:\s+42P01: no such table: nope/);
  });
});

describe('bad bytes', () => {
  /** Sends `bytes` on a fresh connection and resolves with what the server answered before closing. */
  function exchange(chunks: Buffer[]): Promise<Buffer> {
    return new Promise((resolve) => {
      const socket = connect(server.port, '127.0.0.1');
      const answer: Buffer[] = [];
      socket.on('data', (d) => answer.push(d));
      socket.on('error', () => {});
      socket.on('close', () => resolve(Buffer.concat(answer)));
      socket.on('connect', () => {
        for (const chunk of chunks) socket.write(chunk);
        setTimeout(() => socket.end(), 100);
      });
    });
  }

  const startup = serialize.startup({ user: USER, database: 'qdb' });

  test('a message longer than the bound is refused with 54000 before it is read', async () => {
    const huge = Buffer.alloc(5);
    huge[0] = 'Q'.charCodeAt(0);
    huge.writeInt32BE(2 ** 31 - 1, 1);
    const answer = await exchange([startup, huge]);
    expect(answer.toString('latin1')).toMatch(/FATAL.*C54000.*pg\.recv\.buffer\.size/s);
    // Before the startup message too: its length word is read first.
    const direct = await exchange([Buffer.from([0x7f, 0xff, 0xff, 0xff])]);
    expect(direct.toString('latin1')).toContain('C54000');
  });

  test('fuzzed message streams never stop the server', async () => {
    const rng = seededRandom(17);
    const random = () => rng.next();
    const valid = [
      serialize.query('SELECT 1'),
      serialize.parse({ name: 's', text: 'SELECT $1', types: [25] }),
      serialize.bind({ statement: 's', values: ['x'] }),
      serialize.describe({ type: 'P', name: '' }),
      serialize.execute({ portal: '' }),
      serialize.sync(),
      serialize.flush(),
      serialize.close({ type: 'S', name: 's' }),
    ];
    for (let round = 0; round < 60; round++) {
      const parts: Buffer[] = [startup];
      for (let i = 0; i < 6; i++) {
        const message = Buffer.from(valid[Math.floor(random() * valid.length)]!);
        const flips = Math.floor(random() * 4);
        for (let f = 0; f < flips; f++)
          message[Math.floor(random() * message.length)] = Math.floor(random() * 256);
        parts.push(message);
      }
      if (round % 5 === 0)
        parts.push(Buffer.from(Array.from({ length: 64 }, () => Math.floor(random() * 256))));
      await exchange(parts);
    }
    // Still serving.
    expect((await withPg((c) => c.query('SELECT 7 AS seven'))).rows).toEqual([{ seven: '7' }]);
  });
});
