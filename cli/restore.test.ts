/**
 * `walship restore` in-process on a real primary's filesystem store: arguments, the summary and
 * JSON, the progress lines, and every exit code. Restored content is checked in maintenance/restore.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../core/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import { startTestPrimary } from '../tests/helpers/test-primary.js';
import type { CommandIo } from './io.js';
import { parseRestorePoint, restoreCommand } from './restore.js';

let base = '';
let storeRoot = '';
let primary: PrimaryNode;
let store: ObjectStore;
const silent = pino({ level: 'silent' });

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-cli-restore-'));
  storeRoot = path.join(base, 'store');
  store = await FsStore.open({ root: storeRoot });
  // durable: each write returns once its segment is in the store.
  primary = await startTestPrimary(store, path.join(base, 'primary'), { ackMode: 'durable', windowMs: 10 });
  for (let i = 0; i < 3; i++) {
    const body = `trades,sym=S${i} price=${i}.5 ${1_700_000_000_000_000_000n + BigInt(i)}\n`;
    const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, { method: 'POST', body });
    expect(response.status).toBe(204);
  }
}, 30_000);
afterAll(async () => {
  await primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

function capture(): CommandIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} };
}

const run = (args: string[], io = capture(), progress?: (line: string) => void) =>
  restoreCommand(args, io, { log: silent, ...(progress === undefined ? {} : { progress }) }).then((code) => ({
    code,
    io,
  }));

describe('parseRestorePoint', () => {
  it('reads txns, per-table txns and ISO times; refuses anything else', () => {
    expect(parseRestorePoint('42')).toEqual({ txn: 42n });
    expect(parseRestorePoint('txn:7')).toEqual({ txn: 7n });
    expect(parseRestorePoint('trades=3,quotes=9')).toEqual({ txn: { trades: 3n, quotes: 9n } });
    expect(parseRestorePoint('2024-05-01T12:00:00Z')).toEqual({ atMs: Date.UTC(2024, 4, 1, 12) });
    expect(() => parseRestorePoint('yesterday')).toThrow(/neither a txn/);
    expect(() => parseRestorePoint('trades=x')).toThrow(/table=txn/);
  });
});

describe('walship restore', () => {
  it('restores to a txn: exit 0, a summary naming the table, its txn and rows, and progress lines', async () => {
    const dataDir = path.join(base, `dir-${randomUUID()}`);
    const lines: string[] = [];
    const { code, io } = await run(
      ['--store', `fs::root=${storeRoot};`, '--to', 'trades=2', '--data-dir', dataDir],
      capture(),
      (line) => lines.push(line),
    );
    expect(io.err).toEqual([]);
    expect(code).toBe(0);
    const summary = io.out.join('\n');
    expect(summary).toContain('snapshot: none usable; replayed every table from txn 1');
    expect(summary).toMatch(/^trades {2}0 {2}2 {2}2 {2}2/m);
    expect(summary).toContain(
      'walship replica --node.data.dir=… --replication.object.store=<the same store>',
    );
    expect(lines.at(-1)).toMatch(
      /^walship: restore \(replay segments\) {2}\[#+\] 100% {2}2\/2 txns; done · \d+ (ms|s)$/,
    );
    expect(await readdir(dataDir)).toEqual(['tables.sqlite']);
  });

  it('--json prints the result; a time restores every txn committed by then', async () => {
    const dataDir = path.join(base, `dir-${randomUUID()}`);
    const { code, io } = await run([
      '--store',
      `fs::root=${storeRoot};`,
      '--to',
      new Date(Date.now() + 1000).toISOString(),
      '--data-dir',
      dataDir,
      '--json',
    ]);
    expect(code).toBe(0);
    const result = JSON.parse(io.out.join('\n')) as {
      tables: { name: string; restoredTxn: string; rows: number }[];
    };
    expect(result.tables).toEqual([
      expect.objectContaining({ name: 'trades', restoredTxn: '3', rows: 3, endOfChain: true }),
    ]);
  });

  it('exit 1 when the point is past the end of the chain, with the reason', async () => {
    const { code, io } = await run([
      '--store',
      `fs::root=${storeRoot};`,
      '--to',
      '9',
      '--data-dir',
      path.join(base, `dir-${randomUUID()}`),
    ]);
    expect(code).toBe(1);
    expect(io.err.join('\n')).toMatch(/table "trades" ends at txn 3 .*before the target txn 9/);
  });

  it('exit 2 for bad arguments and for a data dir that is not empty', async () => {
    expect((await run(['--store', `fs::root=${storeRoot};`, '--data-dir', base])).code).toBe(2);
    expect((await run(['--store', `fs::root=${storeRoot};`, '--to', 'soon', '--data-dir', base])).code).toBe(
      2,
    );
    const dataDir = path.join(base, `dir-${randomUUID()}`);
    await mkdir(dataDir);
    await writeFile(path.join(dataDir, 'x'), '');
    const { code, io } = await run(['--store', `fs::root=${storeRoot};`, '--to', '1', '--data-dir', dataDir]);
    expect(code).toBe(2);
    expect(io.err.join('\n')).toContain('is not empty');
  });

  it('exit 3 when the store cannot be reached; the connection string is not echoed', async () => {
    const down = {
      description: 'a store that is down',
      get: () => Promise.reject(new StoreUnavailableError('connection refused')),
      list: () => Promise.reject(new StoreUnavailableError('connection refused')),
      close: () => Promise.resolve(),
    } as unknown as ObjectStore;
    const io = capture();
    const code = await restoreCommand(
      ['--store', 's3::bucket=b;secret_access_key=hunter2;', '--to', '1', '--data-dir', path.join(base, 'z')],
      io,
      { log: silent, open: async () => ({ store: down }) },
    );
    expect(code).toBe(3);
    expect(io.err.join('\n')).toContain('connection refused');
    expect(io.err.join('\n')).not.toContain('hunter2');
  });
});
