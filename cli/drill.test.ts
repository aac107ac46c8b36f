/**
 * `walship drill`: argument errors, the pure RTO/RPO/verdict computations on synthetic ack logs,
 * and real drills — a local cluster of three `walship` child processes on the filesystem store and
 * on Ceph RGW — whose JSON report must show every acknowledged row read back exactly once.
 * The figures a drill measures (pause, fence time) are never checked here: that is bench/failover.ts.
 */

import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseIlp } from '../ilp/index.js';
import { buildTxns, renderTxnAsIlp } from '../primary/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { duplicateCause } from './cluster-writer.js';
import {
  assessDrill,
  compareRows,
  type DrillReport,
  parseDivergenceIds,
  parseDrillArgs,
  writePause,
} from './drill.js';
import { EXIT } from './io.js';
import { main } from './main.js';

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env }, out, err };
}

const s3 = s3TestEnvOrSkipReason();

describe('walship drill arguments', () => {
  it.each([
    [[], /--mode switchover\|kill\|zombie is required/],
    [['--mode', 'crash'], /--mode: expected switchover or kill or zombie, got "crash"/],
    [['--mode', 'kill', '--tables', '0'], /--tables: expected a whole number from 1 to 100/],
    [['--mode', 'kill', '--rate=fast'], /--rate: expected a whole number/],
    [['--mode', 'kill', '--duration', '10 parsecs'], /--duration: expected a duration/],
    [['--mode', 'kill', '--ack', 'eventually'], /--ack: expected local or durable/],
    [['--mode', 'kill', '--colour', 'red'], /unknown flag --colour/],
    [['--mode', 'kill', 'now'], /unexpected argument \(not a --flag; values go in --key=value\)/],
    [['--mode', 'kill', '--mode', 'zombie'], /--mode is given twice/],
    [['--mode', 'switchover', '--nodes', 'http://127.0.0.1:9000'], /at least two different node URLs/],
    [['--mode', 'switchover', '--nodes', 'http://a:1,not a url'], /is not a URL/],
    [['--mode', 'switchover', '--nodes', 'http://a:1,http://b:1'], /admin.token is required/],
    [['--mode', 'kill', '--nodes', 'http://a:1,http://b:1', '--admin.token=t'], /needs --pid/],
    [['--mode', 'zombie', '--pid', '42'], /--pid is for a running cluster/],
    [['--mode', 'zombie', '--promote', 'manual'], /--promote is for --mode kill/],
    [['--mode', 'kill', '--store', 'ftp::root=/x;'], /--store: /],
    [['--mode', 'kill', '--rate', '1000000', '--duration', '1h'], /a drill sends at most/],
  ])('%j exits 2 naming the problem', async (args, message) => {
    const { io, out, err } = capture();
    expect(await main(['drill', ...args], io)).toBe(EXIT.usage);
    expect(out).toEqual([]);
    expect(err.join('\n')).toMatch(message);
  });

  it('--help prints the usage and exits 0', async () => {
    const { io, out } = capture();
    expect(await main(['drill', '--help'], io)).toBe(EXIT.ok);
    expect(out.join('\n')).toContain('walship drill --mode switchover|kill|zombie');
  });

  it('fills defaults, reads the token from WALSHIP_ADMIN_TOKEN, and leaves a running cluster its ack mode', () => {
    expect(parseDrillArgs(['--mode=kill'], {})).toMatchObject({
      mode: 'kill',
      ack: 'durable',
      durationMs: 10_000,
      tables: 4,
      rateRowsPerS: 1000,
      leaseTimeoutMs: 2_000,
      promote: 'auto',
      nodes: undefined,
      keep: false,
    });
    const running = parseDrillArgs(
      ['--mode', 'zombie', '--nodes', 'http://a:1/x,http://b:2', '--pid', '7', '--duration', '3s'],
      { WALSHIP_ADMIN_TOKEN: 'tok' },
    );
    expect(running).toMatchObject({
      nodes: ['http://a:1', 'http://b:2'],
      ack: undefined,
      pid: 7,
      adminToken: 'tok',
      durationMs: 3_000,
    });
  });
});

describe('RTO: the write pause from ack logs', () => {
  const event = { startMs: 350, endMs: 900 };

  it('is the longest gap between acknowledged flushes that overlaps the event, over all writers', () => {
    const result = writePause(
      [
        { writer: 'a', startedAtMs: 0, ackTimesMs: [100, 200, 300, 1300, 1400] },
        { writer: 'b', startedAtMs: 0, ackTimesMs: [150, 340, 1200, 1250] },
      ],
      event,
    );
    expect(result).toEqual({ pauseMs: 1000, writer: 'a', steadyGapMaxMs: 190 });
  });

  it('counts a gap inside the event window and one that starts inside and ends after it', () => {
    const inside = writePause(
      [{ writer: 'a', startedAtMs: 0, ackTimesMs: [300, 400, 700, 800, 2000] }],
      event,
    );
    expect(inside.pauseMs).toBe(1200);
    const before = writePause([{ writer: 'a', startedAtMs: 0, ackTimesMs: [100, 340, 360, 380] }], event);
    // 100→340 ends before the event: steady, not the pause.
    expect(before).toEqual({ pauseMs: 20, writer: 'a', steadyGapMaxMs: 240 });
  });

  it('is null when a writer never had a flush acknowledged after the event started', () => {
    const result = writePause(
      [
        { writer: 'a', startedAtMs: 0, ackTimesMs: [100, 2000] },
        { writer: 'b', startedAtMs: 0, ackTimesMs: [100, 200] },
      ],
      event,
    );
    expect(result.pauseMs).toBeNull();
  });

  it('leaves the warm-up gap (start → first ack) out of the steady-state rhythm', () => {
    const result = writePause([{ writer: 'a', startedAtMs: 0, ackTimesMs: [250, 300, 1000, 1010] }], event);
    expect(result).toEqual({ pauseMs: 700, writer: 'a', steadyGapMaxMs: 50 });
  });
});

describe('RPO: acknowledged ids against the ids read back', () => {
  it('finds missing ids, duplicated ids and rows never acknowledged, per table', () => {
    const result = compareRows(
      new Map([
        ['t1', [1, 2, 3, 4]],
        ['t2', [10, 11]],
        ['t3', [20]],
      ]),
      new Map([
        ['t1', [4, 2, 1, 2, 9, 2]],
        ['t2', [10, 11]],
      ]),
    );
    expect(result).toEqual({
      acknowledged: 7,
      found: 8,
      missing: new Map([
        ['t1', [3]],
        ['t3', [20]],
      ]),
      missingCount: 2,
      duplicated: new Map([['t1', [2]]]),
      duplicateCount: 2,
      foundUnacknowledged: 1,
    });
  });

  it('is clean when every acknowledged id is found once', () => {
    const ids = new Map([['t', [5, 6, 7]]]);
    expect(compareRows(ids, ids)).toMatchObject({
      missingCount: 0,
      duplicateCount: 0,
      foundUnacknowledged: 0,
    });
  });

  it('reads the ids of a divergence file as primary/divergence.ts renders it', () => {
    const lines = parseIlp(
      Buffer.from(
        'drill_x_0,w=a id=7i,v=3.5 1700000000000000000\ndrill_x_0 v=1.5,id=8i 1700000000000001000\n',
      ),
      { precision: 'ns' },
    );
    const [built] = buildTxns(lines, {
      schemaOf: () => undefined,
      commitTimeUs: 1_700_000_000_000_000n,
      nextTxn: () => 5n,
    });
    const text = `# divergence file header\n${renderTxnAsIlp(built!.table, built!.record)}`;
    expect(parseDivergenceIds(text)).toEqual(new Map([['drill_x_0', [7, 8]]]));
  });
});

describe('the verdict', () => {
  const clean = {
    mode: 'switchover' as const,
    ack: 'local' as const,
    rows: { missing: 0, duplicates: 0 },
    fencing: { missingNotInDivergence: 0, zombie: null },
    eventError: null,
    recovered: true,
    finalPrimary: 'http://b',
    acceptingAtEnd: ['http://b'],
  };

  it('a switchover promises no loss and no duplicates in either ack mode', () => {
    expect(assessDrill(clean)).toEqual([]);
    expect(assessDrill({ ...clean, rows: { missing: 1, duplicates: 0 } })).toEqual([
      '1 acknowledged rows are missing (switchover, ack local promises none)',
    ]);
    expect(assessDrill({ ...clean, rows: { missing: 0, duplicates: 3 } })).toHaveLength(1);
    const honoured = { committed: 10, replayed: 2, ignored: 0 };
    expect(
      assessDrill({ ...clean, mode: 'kill', rows: { missing: 0, duplicates: 3, batches: honoured } }),
    ).toEqual([expect.stringContaining('every batch carried an identity the nodes honoured')]);
    expect(
      assessDrill({
        ...clean,
        mode: 'kill',
        rows: { missing: 0, duplicates: 3, batches: { ...honoured, ignored: 1 } },
      }),
    ).toEqual([]);
  });

  it('kill in local mode may lose rows, but only rows in a divergence file', () => {
    const kill = { ...clean, mode: 'kill' as const, rows: { missing: 5, duplicates: 1 } };
    expect(assessDrill({ ...kill, fencing: { missingNotInDivergence: 0, zombie: null } })).toEqual([]);
    expect(assessDrill({ ...kill, fencing: { missingNotInDivergence: null, zombie: null } })).toEqual([]);
    expect(assessDrill({ ...kill, fencing: { missingNotInDivergence: 2, zombie: null } })).toEqual([
      expect.stringContaining('2 acknowledged rows are missing and in no divergence file'),
    ]);
    expect(assessDrill({ ...kill, ack: 'durable' })).toEqual([
      '5 acknowledged rows are missing (kill, ack durable promises none)',
    ]);
  });

  it('a zombie must be fenced and nothing it acknowledged after resuming may reach the cluster', () => {
    const zombie = {
      fencedAfterResumeMs: 12,
      ackedAfterResume: 2,
      refusedAfterResume: 0,
      ackedInDivergence: 2,
      ackedOnCluster: 0,
      roleAfter: 'replica',
    };
    const base = { ...clean, mode: 'zombie' as const };
    expect(assessDrill({ ...base, fencing: { missingNotInDivergence: 0, zombie } })).toEqual([]);
    expect(
      assessDrill({
        ...base,
        fencing: { missingNotInDivergence: 0, zombie: { ...zombie, ackedOnCluster: 1 } },
      }),
    ).toEqual([expect.stringContaining('1 rows the zombie acknowledged')]);
    expect(
      assessDrill({
        ...base,
        fencing: { missingNotInDivergence: 0, zombie: { ...zombie, fencedAfterResumeMs: null } },
      }),
    ).toEqual(['the zombie was never fenced after it resumed']);
  });

  it('an event that failed, writes that never resumed and no final primary are failures', () => {
    expect(assessDrill({ ...clean, eventError: 'refused' })).toEqual([
      'the switchover did not complete: refused',
    ]);
    expect(assessDrill({ ...clean, recovered: false })).toEqual(['writes did not resume after the event']);
    expect(assessDrill({ ...clean, finalPrimary: undefined, acceptingAtEnd: [] })).toHaveLength(1);
  });

  it('two nodes accepting writes at the end is a split brain, whatever the rows say', () => {
    expect(assessDrill({ ...clean, acceptingAtEnd: ['http://b', 'http://c'] })).toEqual([
      'split brain: http://b and http://c all accept writes at the end',
    ]);
  });
});

/** Runs `walship drill` in-process; returns the exit code, the parsed JSON report and stderr. */
async function drill(args: string[]) {
  const { io, out, err } = capture();
  const code = await main(['drill', ...args], io);
  expect(out, err.join('\n')).toHaveLength(1);
  return { code, report: JSON.parse(out[0]!) as DrillReport, stderr: err.join('\n') };
}

function expectEveryAckedRowOnce(report: DrillReport) {
  expect(report.rows.acknowledged).toBeGreaterThan(0);
  expect(report.rows.missing).toBe(0);
  expect(report.rows.duplicates).toBe(0);
  expect(report.rows.missingIds).toEqual({});
  expect(report.rows.found).toBe(report.rows.acknowledged + report.rows.foundUnacknowledged);
}

describe('walship drill on a local cluster', () => {
  it('switchover on the fs store: every acknowledged row read back once from the new primary, exit 0', async () => {
    const { code, report, stderr } = await drill([
      '--mode',
      'switchover',
      '--duration',
      '3s',
      '--tables',
      '2',
      '--rate',
      '400',
    ]);
    expect(code, stderr).toBe(EXIT.ok);
    expect(report).toMatchObject({ mode: 'switchover', ack: 'durable', ok: true, failures: [] });
    expectEveryAckedRowOnce(report);
    const { event } = report;
    expect(event.error).toBeNull();
    expect(event.to).not.toBe(event.from);
    expect(report.finalPrimary?.url).toBe(event.to);
    expect(report.cluster.nodes.find((n) => n.url === event.from)).toMatchObject({
      roleBefore: 'primary',
      roleAfter: 'replica',
    });
    expect(report.cluster.nodes.find((n) => n.url === event.to)).toMatchObject({
      roleBefore: 'replica',
      roleAfter: 'primary',
    });
    // A switchover uploads everything before the promotion: no node holds diverged txns.
    expect(report.fencing.events).toEqual([]);
    expect(report.rtoMs).not.toBeNull();
    expect(stderr).toMatch(/result: {3}OK/);
  }, 60_000);

  it('kill in local ack mode: whatever acknowledged row is lost is in the killed primary’s divergence files', async () => {
    const { code, report, stderr } = await drill([
      '--mode',
      'kill',
      '--ack',
      'local',
      '--lease-timeout',
      '1s',
      '--duration',
      '3s',
      '--tables',
      '2',
      '--rate',
      '400',
    ]);
    expect(code, stderr).toBe(EXIT.ok);
    expect(report.event.error).toBeNull();
    expect(report.finalPrimary?.url).toBe(report.event.to);
    expect(report.fencing.missingInDivergence).toBe(report.rows.missing);
    expect(report.fencing.missingNotInDivergence).toBe(0);
    // The killed primary came back as a replica on its own data dir, at its own address.
    const returned = report.cluster.nodes.find((n) => n.url === report.event.from);
    expect(returned?.roleBefore).toBe('primary');
    expect(returned?.roleAfter).toBe('replica');
    if (report.rows.missing > 0) expect(report.fencing.events.map((e) => e.url)).toContain(returned?.url);
  }, 60_000);

  it.skipIf(s3.env === null)(
    'switchover on Ceph RGW: every acknowledged row read back once, exit 0',
    async () => {
      const env = s3.env!;
      const bucket = await createTestBucket(env, 'drill');
      const store =
        `s3::bucket=${bucket};root=drill-${randomUUID()};region=${env.region};endpoint=${env.endpoint};` +
        `access_key_id=${env.accessKeyId};secret_access_key=${env.secretAccessKey};`;
      const { code, report, stderr } = await drill([
        '--mode',
        'switchover',
        '--store',
        store,
        '--duration',
        '3s',
        '--tables',
        '2',
        '--rate',
        '400',
      ]);
      expect(code, stderr).toBe(EXIT.ok);
      expect(report.cluster.store).toBe('s3');
      expectEveryAckedRowOnce(report);
      expect(report.finalPrimary?.url).toBe(report.event.to);
    },
    60_000,
  );
});

describe('duplicateCause', () => {
  it('says why rows are doubled: identities a node ignored, or a bug when all were honoured', () => {
    expect(duplicateCause(0, { committed: 5, replayed: 1, ignored: 0 })).toBeNull();
    expect(duplicateCause(2, { committed: 5, replayed: 0, ignored: 2 })).toMatch(
      /2 batches were answered without X-Walship-Batch-Status/,
    );
    expect(duplicateCause(2, { committed: 5, replayed: 1, ignored: 0 })).toMatch(/breaks RFC-0011/);
  });
});
