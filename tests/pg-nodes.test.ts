/**
 * The PostgreSQL door on real nodes: `walship primary` and `walship replica` as processes on the
 * filesystem store, written to over ILP/HTTP and read with node-postgres. A replica read with the
 * write's commit token (`SET walship.min_txn`) sees the write.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

let dir = '';
const processes: WalshipProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-pg-nodes-'));
});

afterAll(async () => {
  for (const p of processes) p.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exited));
  await rm(dir, { recursive: true, force: true });
});

async function spawnNode(role: 'primary' | 'replica', extra: string[] = []) {
  const child = spawnWalship([
    role,
    `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
    `--node.data.dir=${path.join(dir, role)}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    '--replication.primary.throttle.window.duration=20ms',
    '--replication.replica.poll.interval=20ms',
    '--pg.password=s3cret',
    '--log.level=warn',
    ...extra,
  ]);
  processes.push(child);
  const match = await child.waitFor(
    new RegExp(`walship ${role} \\S+ listening: http (\\d+).*, pg (\\d+)`),
    60_000,
  );
  return { child, http: Number(match[1]), pg: Number(match[2]) };
}

async function query(port: number, statements: string[]): Promise<pg.QueryResult[]> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'admin',
    password: 's3cret',
    database: 'qdb',
  });
  await client.connect();
  try {
    const results: pg.QueryResult[] = [];
    for (const statement of statements) results.push(await client.query(statement));
    return results;
  } finally {
    await client.end();
  }
}

describe('the PostgreSQL door on a primary and a replica', () => {
  it('serves what ILP wrote, and a replica read with the commit token sees the write', async () => {
    const primary = await spawnNode('primary');
    const replica = await spawnNode('replica');
    const write = async (body: string) => {
      const response = await fetch(`http://127.0.0.1:${primary.http}/write`, { method: 'POST', body });
      expect(response.status).toBe(204);
      return response.headers.get('x-walship-txn') ?? '';
    };
    await write('trades,sym=BTC price=42.5,qty=3i 1767312000000000000\n');
    const [onPrimary] = await query(primary.pg, ['SELECT sym, price, qty, timestamp FROM trades']);
    expect(onPrimary!.rows).toEqual([{ sym: 'BTC', price: 42.5, qty: '3', timestamp: expect.any(Date) }]);
    expect((onPrimary!.rows[0] as { timestamp: Date }).timestamp.getTime()).toBe(
      new Date('2026-01-02T00:00:00').getTime(),
    );

    for (let i = 1; i <= 20; i++) {
      const token = await write(
        `trades,sym=ETH price=${i}.5,qty=${i}i ${1767312000000000000n + BigInt(i) * 1_000_000_000n}\n`,
      );
      const [, counted] = await query(replica.pg, [
        `SET walship.min_txn = '${token}'`,
        "SELECT count(*) AS n FROM trades WHERE sym = 'ETH'",
      ]);
      expect(counted!.rows).toEqual([{ n: String(i) }]);
    }
    // The token is honoured, not ignored: one for a txn nobody wrote waits its bound, then fails.
    const [key, txnAt] = (await write('trades,sym=SOL price=1.0 1767312100000000000\n')).split('=');
    const txn = BigInt(txnAt!.split('@')[0]!);
    const waited = query(replica.pg, [
      `SET walship.min_txn = '${key}=${txn + 1000n}'`,
      "SET walship.wait_ms = '300'",
      'SELECT count(*) FROM trades',
    ]);
    await expect(waited).rejects.toMatchObject({ code: '57014' });
  });
});
