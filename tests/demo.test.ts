/**
 * `walship demo` end to end: the real command line (TS source, a child process) starts its own
 * cluster of three `walship` processes on the filesystem store, runs a switchover and a crash
 * failover under load, and reports. The report is checked against itself and against the final
 * primary's SQLite file read directly; a folder the demo did not make is refused untouched; Ctrl-C
 * stops every node it started. Figures (pauses, takeover times) are never checked here.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoReport, parseDemoArgs } from '../cli/demo.js';
import { assessDemo, caughtUp } from '../cli/demo-report.js';
import { LiveView } from '../cli/demo-view.js';
import { EXIT } from '../cli/io.js';
import { main } from '../cli/main.js';
import type { NodeStatus } from '../cli/node-http.js';
import { spawnWalship } from './helpers/walship-process.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'walship-demo-test-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function pidsStarted(dir: string): Promise<number[]> {
  const nodes = JSON.parse(await readFile(path.join(dir, 'nodes.json'), 'utf8')) as { pidsStarted: number[] };
  return nodes.pidsStarted;
}

/** Rows per table and distinct ids, read from a node's SQLite file directly (the node is stopped). */
function countOnDisk(dataDir: string, tables: string[]): { rows: number; distinctIds: number } {
  const db = new Database(path.join(dataDir, 'tables.sqlite'), { readonly: true, fileMustExist: true });
  try {
    let rows = 0;
    let distinctIds = 0;
    for (const table of tables) {
      const counted = db.prepare(`SELECT count(*) AS n, count(DISTINCT id) AS d FROM "${table}"`).get() as {
        n: number;
        d: number;
      };
      rows += counted.n;
      distinctIds += counted.d;
    }
    return { rows, distinctIds };
  } finally {
    db.close();
  }
}

describe('walship demo, the parts', () => {
  it('defaults to a minute at 2000 rows/s in ./walship-demo; a bare --duration is seconds', () => {
    expect(parseDemoArgs([], '/home/me')).toEqual({
      durationMs: 60_000,
      rateRowsPerS: 2_000,
      dataDir: '/home/me/walship-demo',
      json: false,
      keepRunning: false,
    });
    expect(
      parseDemoArgs(['--duration', '20', '--json', '--data-dir=d', '--rate', '500', '--keep-running'], '/x'),
    ).toEqual({ durationMs: 20_000, rateRowsPerS: 500, dataDir: '/x/d', json: true, keepRunning: true });
    expect(parseDemoArgs(['--duration', '2m'], '/x').durationMs).toBe(120_000);
  });

  const primary = (tables: [string, string, string][]): NodeStatus => ({
    role: 'primary',
    acceptingWrites: true,
    tables: tables.map(([name, committedTxn, uploadedTxn]) => ({ name, committedTxn, uploadedTxn })),
  });
  const replica = (tables: [string, string][]): NodeStatus => ({
    role: 'replica',
    tables: tables.map(([name, appliedTxn]) => ({ name, appliedTxn })),
  });

  it('calls the cluster caught up only when every replica applied every table the primary uploaded', () => {
    const urls = ['a', 'b', 'c'];
    const tables = ['t', 'u'];
    const p = primary([
      ['t', '9', '9'],
      ['u', '4', '4'],
    ]);
    const done = replica([
      ['t', '9'],
      ['u', '4'],
    ]);
    expect(caughtUp(urls, [done, p, done], 'b', tables)).toBe(true);
    expect(caughtUp(urls, [done, p, replica([['t', '9']])], 'b', tables)).toBe(false);
    const behind = replica([
      ['t', '8'],
      ['u', '4'],
    ]);
    expect(caughtUp(urls, [done, p, behind], 'b', tables)).toBe(false);
    expect(caughtUp(urls, [done, p, null], 'b', tables)).toBe(false);
    const pending = primary([
      ['t', '9', '8'],
      ['u', '4', '4'],
    ]);
    expect(caughtUp(urls, [done, pending, done], 'b', tables)).toBe(false);
    expect(caughtUp(urls, [done, p, done], 'b', [...tables, 'never-written'])).toBe(false);
  });

  it('a switchover may not duplicate; a crash may (at-least-once); neither may lose', () => {
    const clean = {
      switchover: { to: 'b', error: null, duplicates: 0, lost: 0 },
      crash: { promoted: 'c', error: null, rejoined: true, lost: 0 },
      converged: true,
      tables: [{ name: 't', checksumsEqual: true }],
      lost: 0,
      finalPrimary: 'c',
      accepting: ['c'],
    };
    expect(assessDemo(clean)).toEqual([]);
    expect(assessDemo({ ...clean, switchover: { ...clean.switchover, duplicates: 2 } })).toEqual([
      expect.stringContaining('the switchover duplicated 2 rows'),
    ]);
    expect(assessDemo({ ...clean, lost: 3 })).toEqual([
      expect.stringContaining('3 acknowledged rows are missing'),
    ]);
    // Doubled rows with every identity honoured break RFC-0011; with identities ignored they are at-least-once.
    expect(
      assessDemo({ ...clean, duplicates: 4, batches: { committed: 9, replayed: 1, ignored: 0 } }),
    ).toEqual([
      expect.stringContaining('4 rows are on the cluster twice though every batch carried an identity'),
    ]);
    expect(
      assessDemo({ ...clean, duplicates: 4, batches: { committed: 9, replayed: 0, ignored: 3 } }),
    ).toEqual([]);
    expect(assessDemo({ ...clean, tables: [{ name: 't', checksumsEqual: false }] })).toEqual([
      't is not the same on every node',
    ]);
    expect(assessDemo({ ...clean, converged: false })).toHaveLength(1);
    expect(assessDemo({ ...clean, crash: { ...clean.crash, rejoined: false } })).toEqual([
      'the killed node did not rejoin as a replica',
    ]);
    expect(assessDemo({ ...clean, accepting: ['b', 'c'] })).toEqual([expect.stringContaining('split brain')]);
  });

  it('redraws the live block in place on a terminal, with phase lines above it; appends elsewhere', () => {
    const written: string[] = [];
    const tty = new LiveView({ write: (t) => written.push(t), tty: true });
    tty.show(['a', 'b']);
    tty.show(['c', 'd']);
    tty.phase('step');
    expect(written).toEqual(['a\nb', '\u001b[2F\u001b[Jc\nd', '\u001b[2F\u001b[Jstep', 'c\nd']);
    const plain: string[] = [];
    const appended = new LiveView({ write: (t) => plain.push(t), tty: false });
    appended.show(['a']);
    appended.phase('step');
    appended.show(['b']);
    expect(plain).toEqual(['a', 'step', 'b']);
  });
});

describe('walship demo', () => {
  it('runs a cluster through a switchover and a crash: converged, identical tables, nothing acknowledged lost', async () => {
    const dir = path.join(root, 'run');
    // A folder an earlier demo left: wiped and reused.
    await mkdir(dir);
    await writeFile(path.join(dir, '.walship-demo'), 'earlier demo\n');
    await writeFile(path.join(dir, 'stale-from-earlier-run.txt'), 'x');
    const demo = spawnWalship(['demo', '--duration', '20', '--json', '--data-dir', dir]);
    let stdout = '';
    demo.child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    const exited = await demo.exited;
    expect(exited, demo.output()).toEqual({ code: EXIT.ok, signal: null });

    // stdout carries only the report, one JSON document; the same is in report.json.
    const report = JSON.parse(stdout) as DemoReport;
    expect(JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8'))).toEqual(report);
    expect(report.ok, report.failures.join('; ')).toBe(true);
    expect(report.failures).toEqual([]);
    expect(report.dataDir).toBe(dir);
    expect(await readdir(dir)).not.toContain('stale-from-earlier-run.txt');

    expect(report.converged).toBe(true);
    expect(report.tables.map((t) => t.name).sort()).toEqual(['sensors', 'trades']);
    for (const table of report.tables) {
      expect(table.checksumsEqual).toBe(true);
      const digests = Object.values(table.perNode);
      expect(digests).toHaveLength(3);
      // Checked here too, not only by the demo's own verdict.
      for (const digest of digests)
        expect(digest).toMatchObject({ rows: table.rows, sha256: digests[0]!.sha256 });
      expect(table.rows).toBeGreaterThan(0);
    }

    const [switchover, crash] = report.events;
    expect(switchover).toMatchObject({ kind: 'switchover', error: null, lost: 0, duplicates: 0 });
    expect(switchover.to).not.toBe(switchover.from);
    expect(switchover.acknowledged).toBeGreaterThan(0);
    expect(crash).toMatchObject({ kind: 'crash failover', error: null, lost: 0, rejoined: true });
    expect(crash.killed).toBe(switchover.to);
    expect(crash.promoted).not.toBeNull();
    expect(crash.promoted).not.toBe(crash.killed);
    expect(crash.acknowledged).toBeGreaterThan(0);

    const { rows } = report;
    expect(rows.acknowledged).toBeGreaterThan(0);
    expect(rows.lost).toBe(0);
    // Exactly once (RFC-0011): every batch carried an identity the nodes honoured, nothing doubled.
    expect(rows.duplicates).toBe(0);
    expect(rows.batches.ignored).toBe(0);
    expect(rows.batches.committed).toBeGreaterThan(0);
    expect(switchover.acknowledged + crash.acknowledged).toBe(rows.acknowledged);
    expect(switchover.duplicates + crash.duplicates).toBeLessThanOrEqual(rows.duplicates);

    // The final primary's own file: every acknowledged id is there, and the row count adds up.
    const finalPrimary = report.nodes.find((n) => n.url === report.finalPrimary);
    expect(finalPrimary?.finalRole).toBe('primary');
    const onDisk = countOnDisk(finalPrimary!.dataDir, ['trades', 'sensors']);
    expect(onDisk.rows).toBe(rows.acknowledged + rows.duplicates + rows.foundUnacknowledged);
    expect(onDisk.distinctIds).toBe(rows.acknowledged + rows.foundUnacknowledged);
    expect(onDisk.rows).toBe(report.tables.reduce((n, t) => n + (t.rows ?? 0), 0));

    // Nothing it started outlives it; the admin token is for this user only.
    const pids = await pidsStarted(dir);
    expect(pids.length).toBeGreaterThanOrEqual(4); // three nodes and the killed one's restart
    expect(pids.filter(isAlive)).toEqual([]);
    expect((await stat(path.join(dir, 'admin.token'))).mode & 0o777).toBe(0o600);
    expect(demo.output()).not.toContain((await readFile(path.join(dir, 'admin.token'), 'utf8')).trim());
  }, 150_000);

  it('refuses a non-empty folder it did not make: exit 2, the folder untouched', async () => {
    const dir = path.join(root, 'precious');
    await mkdir(dir);
    await writeFile(path.join(dir, 'thesis.tex'), 'years of work');
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env: {} };
    expect(await main(['demo', '--data-dir', dir, '--duration', '15s'], io)).toBe(EXIT.usage);
    expect(err.join('\n')).toMatch(/not empty and was not made by walship demo/);
    expect(await readdir(dir)).toEqual(['thesis.tex']);
    expect(await readFile(path.join(dir, 'thesis.tex'), 'utf8')).toBe('years of work');
  });

  it.each([
    [['--duration', '5s'], /--duration: expected 15s to 60m/],
    [['--rate', 'lots'], /--rate: expected rows per second/],
    [['--nodes', '3'], /unknown flag --nodes/],
  ])('%j exits 2 naming the problem', async (args, message) => {
    const err: string[] = [];
    const io = { stdout: () => {}, stderr: (t: string) => err.push(t), env: {} };
    expect(await main(['demo', ...args, '--data-dir', path.join(root, 'never-made')], io)).toBe(EXIT.usage);
    expect(err.join('\n')).toMatch(message);
    await expect(stat(path.join(root, 'never-made'))).rejects.toThrow(/ENOENT/);
  });

  it('Ctrl-C stops every node it started and exits 130, the data kept', async () => {
    const dir = path.join(root, 'interrupted');
    const demo = spawnWalship(['demo', '--duration', '60', '--data-dir', dir]);
    try {
      // Interrupted while rows are being written (its first live line showing acknowledged rows).
      await demo.waitFor(/^live t\+.*acknowledged: trades [1-9]/m, 60_000);
      const pids = await pidsStarted(dir);
      expect(pids).toHaveLength(3);
      expect(pids.filter(isAlive)).toEqual(pids);
      demo.kill('SIGINT');
      const exited = await demo.exited;
      expect(exited, demo.output()).toEqual({ code: 130, signal: null });
      expect(pids.filter(isAlive)).toEqual([]);
      expect(demo.output()).toContain(`the data stays in ${dir}`);
      expect(await readdir(dir)).toEqual(
        expect.arrayContaining(['store', 'node-0', 'node-0.log', '.walship-demo']),
      );
    } finally {
      demo.kill('SIGKILL');
    }
  }, 90_000);
});
