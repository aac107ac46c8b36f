import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadFigures } from './load.js';
import {
  cpuTicksOfStat,
  findOnPath,
  INFLUXD_NOT_INSTALLED,
  influxConfig,
  influxVersionOf,
  type PeerMeasured,
  peerRows,
  roundOrder,
  rowsFromEnv,
  type ServerRun,
} from './peer.js';

/** `[section, key, value]` of every `key = value` line of a TOML file written as influxConfig writes it. */
function settings(toml: string): [string, string, string][] {
  let section = '';
  const out: [string, string, string][] = [];
  for (const raw of toml.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      section = line;
      continue;
    }
    const [key, value] = line.split(/\s*=\s*/) as [string, string];
    out.push([section, key, value]);
  }
  return out;
}

describe('influxConfig', () => {
  const toml = influxConfig({ dir: '/tmp/peer-x', httpPort: 41_001, rpcPort: 41_002 });
  const all = settings(toml);

  it('fsyncs the WAL on every write', () => {
    expect(all.filter(([, key]) => key === 'wal-fsync-delay')).toEqual([
      ['[data]', 'wal-fsync-delay', '"0s"'],
    ]);
  });

  it('binds only on loopback, on the ports it was given', () => {
    const binds = all.filter(([, key]) => key === 'bind-address');
    expect(binds).toEqual([
      ['', 'bind-address', '"127.0.0.1:41002"'],
      ['[http]', 'bind-address', '"127.0.0.1:41001"'],
    ]);
  });

  it('keeps everything it stores in its directory', () => {
    const dirs = all.filter(([, key]) => key === 'dir' || key === 'wal-dir').map(([, , value]) => value);
    expect(dirs).toEqual(['"/tmp/peer-x/meta"', '"/tmp/peer-x/data"', '"/tmp/peer-x/wal"']);
  });

  it('runs no service but HTTP, and reports nothing', () => {
    const enabled = all.filter(([, key]) => key === 'enabled');
    expect(enabled.filter(([, , value]) => value !== 'false')).toEqual([['[http]', 'enabled', 'true']]);
    for (const section of ['[[graphite]]', '[[collectd]]', '[[opentsdb]]', '[[udp]]', '[continuous_queries]'])
      expect(enabled.some(([s]) => s === section)).toBe(true);
    expect(all).toContainEqual(['[monitor]', 'store-enabled', 'false']);
    expect(all).toContainEqual(['', 'reporting-disabled', 'true']);
  });

  it('refuses a directory TOML would need to escape', () => {
    expect(() => influxConfig({ dir: '/tmp/a"b', httpPort: 1, rpcPort: 2 })).toThrow(/escaping/);
  });
});

function run(ms: number, latencyMs: number[], serverCpuMs = ms / 2): ServerRun {
  return { ms, latencyMs, serverCpuMs, clientCpuMs: ms / 10 };
}

/** 1 000 000 rows: raw 2 s (500 000 rows/s), walship local 4 s, durable 5 s, InfluxDB 8 s (better rounds). */
function measured(influxdb: PeerMeasured['influxdb']): PeerMeasured {
  return {
    rows: 1_000_000,
    raw: [
      { ms: 2_500, cpuMs: 2_400 },
      { ms: 2_000, cpuMs: 1_900 },
    ],
    walshipLocal: { runs: [run(4_000, [10, 20, 30, 40]), run(4_400, [50])] },
    walshipDurable: { runs: [run(6_000, [100]), run(5_000, [50, 60, 70, 80])] },
    influxdb,
  };
}

const byName = (rows: ReturnType<typeof peerRows>, part: string) => rows.filter((r) => r.name.includes(part));

describe('peerRows', () => {
  const rows = peerRows(measured({ runs: [run(8_000, [100, 200]), run(10_000, [1])] }));

  it('sets each walship rate beside raw SQLite, from its better round', () => {
    const [local, durable, influx] = rows;
    expect(local!.name).toMatch(/^walship local ack: ingest/);
    expect(local!.value).toBe(250_000);
    expect(local!.baseline).toBe(500_000);
    expect(local!.note).toMatch(/aim ≥ 0.6× raw; better of 2 rounds \(rows\/s: 250000 \/ 227273\)/);
    expect(durable!.value / durable!.baseline!).toBe(0.4);
    expect(influx!.name).toMatch(/^InfluxDB/);
    expect(influx!.value / influx!.baseline!).toBe(0.25);
  });

  it('sets each walship rate beside InfluxDB of the same run', () => {
    const beside = byName(rows, 'beside InfluxDB');
    expect(beside.map((r) => r.value / r.baseline!)).toEqual([2, 1.6]);
    expect(beside[0]!.note).toMatch(/aim ≥ 1.5×/);
    expect(beside[1]!.note).toMatch(/aim ≥ 1×/);
  });

  it('reads each tail as p99 beside the p50 of the same (better) run', () => {
    const tails = byName(rows, 'request p99');
    expect(tails.map((r) => [r.value, r.baseline])).toEqual([
      [40, 20],
      [80, 60],
      [200, 100],
    ]);
    expect(tails[0]!.note).toMatch(/aim p99 ≤ 4× p50/);
    expect(tails[2]!.note).not.toMatch(/aim/);
  });

  it('shows CPU as % of a core for every system', () => {
    const cpu = byName(rows, 'CPU');
    expect(cpu.map((r) => r.value)).toEqual([50, 50, 50, 95]);
    expect(cpu[0]!.note).toMatch(/500000 rows per CPU-second; load generator 10 %/);
  });

  it('without influxd: one skip row saying why, no InfluxDB ratios, the rest measured', () => {
    const skipped = peerRows(measured({ notMeasured: INFLUXD_NOT_INSTALLED }));
    const influx = byName(skipped, 'InfluxDB');
    expect(influx).toHaveLength(1);
    expect(influx[0]!.value).toBeNaN();
    expect(influx[0]!.note).toBe('not measured: influxd not installed (Debian package influxdb)');
    expect(skipped[0]!.value).toBe(250_000);
    expect(skipped).toHaveLength(rows.length - 4);
  });

  it('shows a failed walship run as not measured, never as a rate', () => {
    const m = measured({ runs: [run(8_000, [100])] });
    m.walshipDurable = { notMeasured: 'failed in round 2: 999 rows counted after the run, 1000 sent' };
    const failed = peerRows(m);
    const durable = byName(failed, 'walship durable');
    expect(durable).toHaveLength(1);
    expect(durable[0]!.value).toBeNaN();
    expect(durable[0]!.note).toMatch(/^not measured: failed in round 2: 999 rows counted/);
  });
});

describe('findOnPath', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it('finds an executable on PATH, and not a file that cannot run or is not there', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'peer-path-'));
    const other = await mkdtemp(path.join(tmpdir(), 'peer-path-'));
    dirs.push(empty, other);
    expect(await findOnPath('influxd', `${empty}${path.delimiter}${other}`)).toBeUndefined();
    await writeFile(path.join(other, 'influxd'), '#!/bin/sh\n');
    expect(await findOnPath('influxd', `${empty}${path.delimiter}${other}`)).toBeUndefined();
    await chmod(path.join(other, 'influxd'), 0o755);
    expect(await findOnPath('influxd', `${empty}${path.delimiter}${other}`)).toBe(
      path.join(other, 'influxd'),
    );
    expect(await findOnPath('influxd', undefined)).toBeUndefined();
  });
});

describe('rowsFromEnv', () => {
  it('defaults to 1 000 000 and rounds up to whole 10 000-row bodies', () => {
    expect(rowsFromEnv(undefined)).toBe(1_000_000);
    expect(rowsFromEnv('')).toBe(1_000_000);
    expect(rowsFromEnv('1')).toBe(10_000);
    expect(rowsFromEnv('20000')).toBe(20_000);
    expect(rowsFromEnv('20001')).toBe(30_000);
  });

  it('refuses what is not a row count in range', () => {
    for (const text of ['0', '-5', '1.5', 'lots', '5000001'])
      expect(() => rowsFromEnv(text)).toThrow(/WALSHIP_BENCH_PEER_ROWS/);
  });
});

describe('roundOrder', () => {
  it('alternates, so every system runs as often early as late', () => {
    expect(roundOrder(0)).toEqual(['raw', 'walship-local', 'walship-durable', 'influxdb']);
    expect(roundOrder(1)).toEqual(['influxdb', 'walship-durable', 'walship-local', 'raw']);
    expect(roundOrder(2)).toEqual(roundOrder(0));
  });
});

describe('cpuTicksOfStat and influxVersionOf', () => {
  it('reads utime + stime after the process name, whatever the name holds', () => {
    const line = '4242 (in (flux) d) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 37 0 0 20 0 9 0 100 0 0\n';
    expect(cpuTicksOfStat(line)).toBe(187);
  });

  it('reads the version out of `influxd version`', () => {
    expect(influxVersionOf('InfluxDB v1.6.7~rc0 (git: unknown unknown)\n')).toBe('1.6.7~rc0');
    expect(influxVersionOf('something else\n')).toBe('something else');
  });
});

describe('loadFigures', () => {
  it('gives rows/s over the run and the tail beside the typical request', () => {
    const f = loadFigures(40_000, { ms: 2_000, latencyMs: [10, 30, 20, 100] });
    expect(f).toEqual({ rowsPerSecond: 20_000, p50Ms: 20, p99Ms: 100, maxMs: 100, tailRatio: 5 });
  });
});
