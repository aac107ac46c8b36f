/**
 * Grafana's PostgreSQL data source, as near as runs here: its backend's driver (pgx, v4 from
 * Debian's golang-github-jackc-pgx-v4-dev, built with Debian's Go and no module downloads) sending
 * the queries Grafana sends — ping, the version, the columns of a table, a `$__timeFilter` series
 * bucketed by time, a time parameter — to a real `walship primary` process. pgx prepares every
 * query with arguments over the extended protocol and reads results in binary.
 * `.ci/run` installs Go and pgx; without them the suite is skipped with a reason, except under CI.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const run = promisify(execFile);
const PROBE_SOURCE = fileURLToPath(new URL('./pgx/grafana_probe.go', import.meta.url));
const GOPATH = '/usr/share/gocode';

function haveGoAndPgx(): boolean {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    execFileSync('test', ['-d', path.join(GOPATH, 'src/github.com/jackc/pgx/v4')]);
    return true;
  } catch {
    return false;
  }
}

const available = haveGoAndPgx();
if (!available) {
  if (process.env.CI)
    throw new Error(
      'Go and pgx v4 are missing (apt golang-go golang-github-jackc-pgx-v4-dev): .ci/run installs them',
    );
  console.warn('[walship tests] skipping the pgx suite: no Go or no golang-github-jackc-pgx-v4-dev');
}

describe.runIf(available)('Grafana through pgx against a primary', () => {
  let dir = '';
  let probe = '';
  let node: WalshipProcess | undefined;
  let pgPort = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-pgx-'));
    probe = path.join(dir, 'grafana-probe');
    const env = {
      ...process.env,
      GO111MODULE: 'off',
      GOPATH,
      GOCACHE: path.join(tmpdir(), 'walship-go-cache'),
      GOFLAGS: '',
    };
    const build = run('go', ['build', '-o', probe, PROBE_SOURCE], { env, cwd: path.dirname(PROBE_SOURCE) });
    node = spawnWalship([
      'primary',
      `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
      `--node.data.dir=${path.join(dir, 'data')}`,
      '--http.bind.to=127.0.0.1:0',
      '--line.tcp.enabled=false',
      '--log.level=warn',
    ]);
    const match = await node.waitFor(/listening: http (\d+).*, pg (\d+)/, 60_000);
    pgPort = Number(match[2]);
    // A row every 20 s for 3 minutes from 2026-01-02T00:00:00Z, price = minute + second / 100.
    let body = '';
    for (let s = 0; s < 180; s += 20) {
      body += `trades,sym=S${s} price=${Math.floor(s / 60) + (s % 60) / 100} ${(1_767_312_000n + BigInt(s)) * 1_000_000_000n}\n`;
    }
    const response = await fetch(`http://127.0.0.1:${match[1]}/write`, { method: 'POST', body });
    expect(response.status).toBe(204);
    await build;
  }, 240_000);

  afterAll(async () => {
    node?.kill('SIGKILL');
    await node?.exited;
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('answers every step as PostgreSQL would', async () => {
    const { stdout } = await run(probe, [
      `postgres://admin:quest@127.0.0.1:${pgPort}/qdb`,
      'trades',
      '2026-01-02T00:00:00Z',
      '2026-01-02T00:01:59Z',
    ]);
    const steps = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { step: string; value: unknown; error?: string })
        .map((s) => [s.step, s]),
    );
    for (const step of Object.values(steps)) expect(step.error, step.step).toBeUndefined();
    expect(steps.version?.value).toBe(1500);
    expect(steps.schemas?.value).toEqual(['public']);
    expect(steps.timescaledb?.value).toEqual([]);
    expect(steps.tables?.value).toEqual(['trades']);
    expect(steps['schema of table']?.value).toEqual([
      'timestamp|timestamp without time zone',
      'sym|text',
      'price|double precision',
    ]);
    expect(steps.columns?.value).toEqual([
      ['timestamp', 'timestamp without time zone'],
      ['sym', 'text'],
      ['price', 'double precision'],
    ]);
    const series = steps.series?.value as [string, number][];
    expect(series.map(([at]) => at)).toEqual(['2026-01-02T00:00:00Z', '2026-01-02T00:01:00Z']);
    expect(series[0]![1]).toBeCloseTo(0.2, 12);
    expect(series[1]![1]).toBeCloseTo(1.2, 12);
    expect(steps['count since']?.value).toBe(6);
    expect(steps.last?.value).toEqual(['2026-01-02T00:02:40Z', 'S160']);
  });
});
