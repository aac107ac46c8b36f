/**
 * Failover as a client sees it (RFC-0002), measured by `walship drill` (cli/drill.ts) run in this
 * process: each run starts a local cluster (a primary and two replicas, `walship` child processes
 * on 127.0.0.1, fs store, 20 ms throttle window and replica poll, ack durable), writes rows with
 * unique ids through the multi-URL client (one writer per table, a flush every 20 ms), makes the
 * primary go away a third into the run, and reads every table back from the new primary.
 *
 * 1. planned switchover (`walship switchover`) with 10 tables under load: the client-observed
 *    write pause (the longest gap between acknowledged flushes spanning the event), p50 and max
 *    over RUNS runs, and the switchover command's own demote → promote time. Aim ≤ 2 s (QuestDB
 *    documents ~30 s for its own).
 * 2. SIGKILL of the primary with automatic failover (lease timeout 2 s): the pause, and the pause
 *    minus the lease timeout. Aim ≤ lease timeout + 1 s. The client backs off up to 1 s between
 *    rounds of refusals, so up to 1 s of the pause is the client's.
 * 3. zombie: SIGSTOP the primary, promote a replica, SIGCONT it while a stale client writes to it:
 *    the time from SIGCONT until its /status no longer shows an accepting primary (fenced). The
 *    multi-URL client's pause here is bounded by its request_timeout (a hung node never answers).
 *
 * Every run also checks every acknowledged row (missing, duplicated): the figures are only worth
 * reading when those are 0, and the table says so. Baseline in the same run: the fs store's
 * create-only PUT of 4 KiB (p50) on the same disk, the store round trip every step of a failover
 * is made of. `WALSHIP_BENCH_SCALE` is not used: the suite runs in about two minutes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { type DrillReport, parseDrillArgs, runDrill } from '../cli/drill.js';
import { FsStore } from '../objectstore/index.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';

/** Runs per scenario: p50 and max of three. */
const RUNS = 3;
const SWITCHOVER_TABLES = 10;
const TABLES = 4;
const RATE_ROWS_PER_S = 2_000;
const DURATION = '5s';
const LEASE_TIMEOUT_MS = 2_000;
const REQUEST_TIMEOUT_MS = 2_000;
const PUT_SAMPLES = 200;

function log(text: string): void {
  process.stderr.write(`bench failover: ${text}\n`);
}

async function drillRuns(args: string[]): Promise<DrillReport[]> {
  const reports: DrillReport[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const options = parseDrillArgs(
      [...args, '--duration', DURATION, '--request-timeout', `${REQUEST_TIMEOUT_MS}ms`],
      {},
    );
    const report = await runDrill(options);
    log(
      `${options.mode} run ${run}: pause ${report.rtoMs} ms, ${report.rows.acknowledged} rows acknowledged, ` +
        `${report.rows.missing} missing, ${report.rows.duplicates} duplicated${report.ok ? '' : `; FAILED: ${report.failures.join('; ')}`}`,
    );
    if (!report.ok) {
      const { event, cluster, rows, fencing } = report;
      log(`run ${run} in detail: ${JSON.stringify({ event, nodes: cluster.nodes, rows, fencing })}`);
    }
    reports.push(report);
  }
  return reports;
}

/** PUT 4 KiB create-only on a fresh fs store, p50 in ms. */
async function fsPutP50Ms(dir: string): Promise<number> {
  const store = await FsStore.open({ root: path.join(dir, 'put-baseline') });
  try {
    const body = randomBytes(4 * 1024);
    const samples: number[] = [];
    for (let i = 0; i < PUT_SAMPLES; i++) {
      const started = performance.now();
      await store.put(`baseline/${i}`, body, { condition: { type: 'absent' } });
      samples.push(performance.now() - started);
    }
    return percentile(samples, 50);
  } finally {
    await store.close();
  }
}

/** What every run of a scenario checked: printed beside its figures. */
function checked(reports: DrillReport[]): string {
  const missing = reports.reduce((n, r) => n + r.rows.missing, 0);
  const duplicates = reports.reduce((n, r) => n + r.rows.duplicates, 0);
  const acked = reports.reduce((n, r) => n + r.rows.acknowledged, 0);
  const failed = reports.filter((r) => !r.ok).length;
  return `${RUNS} runs, ${acked} rows acknowledged: ${missing} missing, ${duplicates} duplicated${failed > 0 ? `, ${failed} runs FAILED their checks` : ''}`;
}

function figures(values: (number | null)[]): { p50: number; max: number; never: number } {
  const measured = values.filter((v): v is number => v !== null);
  return {
    p50: percentile(measured, 50),
    max: measured.length === 0 ? Number.NaN : Math.max(...measured),
    never: values.length - measured.length,
  };
}

/** QuestDB's published failover figure (../shared/reference/questdb-replication.md). */
const QUESTDB_FAILOVER = 'about 30 s, writes paused on the client; promotion is manual';

export async function benchFailover(): Promise<BenchSuiteResult> {
  const loadAtStart = loadavg()[0]!;
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-failover-'));
  try {
    const putMs = await fsPutP50Ms(dir);
    const baseline = { baselineName: 'fs create-only PUT 4 KiB p50', baseline: putMs };
    const rows: BenchRow[] = [];
    const row = (name: string, value: number, note: string, reference?: string): BenchRow => ({
      name,
      value,
      unit: 'ms',
      better: 'lower',
      ...baseline,
      note,
      ...(reference === undefined ? {} : { reference }),
    });

    log(`switchover, ${SWITCHOVER_TABLES} tables at ${RATE_ROWS_PER_S} rows/s`);
    const switchovers = await drillRuns([
      '--mode=switchover',
      `--tables=${SWITCHOVER_TABLES}`,
      `--rate=${RATE_ROWS_PER_S}`,
    ]);
    const swPause = figures(switchovers.map((r) => r.rtoMs));
    const swCommand = figures(switchovers.map((r) => Number(r.event.detail.switchoverMs ?? Number.NaN)));
    const swNote = checked(switchovers);
    rows.push(
      row(
        `switchover write pause p50 (${SWITCHOVER_TABLES} tables)`,
        swPause.p50,
        `aim ≤ 2000 ms; ${swNote}`,
        QUESTDB_FAILOVER,
      ),
      row(`switchover write pause max`, swPause.max, `${swPause.never} runs never resumed`),
      row(
        'switchover demote → promote (command) p50',
        swCommand.p50,
        'the switchover command alone: demote, wait applied, promote',
      ),
    );

    log(`kill with automatic failover, lease timeout ${LEASE_TIMEOUT_MS} ms`);
    const kills = await drillRuns([
      '--mode=kill',
      '--ack=durable',
      `--lease-timeout=${LEASE_TIMEOUT_MS}ms`,
      `--tables=${TABLES}`,
      `--rate=${RATE_ROWS_PER_S}`,
    ]);
    const killPause = figures(kills.map((r) => r.rtoMs));
    const takeover = figures(kills.map((r) => Number(r.event.detail.takeoverMs ?? Number.NaN)));
    rows.push(
      row(
        `kill write pause p50 (lease ${LEASE_TIMEOUT_MS} ms)`,
        killPause.p50,
        checked(kills),
        QUESTDB_FAILOVER,
      ),
      row('kill write pause − lease timeout p50', killPause.p50 - LEASE_TIMEOUT_MS, 'aim ≤ 1000 ms'),
      row(
        'kill write pause − lease timeout max',
        killPause.max - LEASE_TIMEOUT_MS,
        `${killPause.never} runs never resumed`,
      ),
      row(
        'kill: SIGKILL → a new primary accepts (p50)',
        takeover.p50,
        'seen by the drill polling /status every 20 ms',
      ),
    );

    log('zombie: SIGSTOP, promote, SIGCONT');
    const zombies = await drillRuns([
      '--mode=zombie',
      '--ack=durable',
      `--tables=${TABLES}`,
      `--rate=${RATE_ROWS_PER_S}`,
    ]);
    const fenced = figures(zombies.map((r) => r.fencing.zombie?.fencedAfterResumeMs ?? null));
    const zombiePause = figures(zombies.map((r) => r.rtoMs));
    rows.push(
      row(
        'zombie fenced after SIGCONT p50',
        fenced.p50,
        `a stale client writes to it every 20 ms; ${checked(zombies)}`,
      ),
      row('zombie fenced after SIGCONT max', fenced.max, `${fenced.never} runs never fenced`),
      row(
        'zombie write pause p50',
        zombiePause.p50,
        `the multi-URL client waits out request_timeout=${REQUEST_TIMEOUT_MS} ms on the stopped node`,
      ),
    );
    const steady = figures([...switchovers, ...kills, ...zombies].map((r) => r.steadyGapMaxMs));
    return {
      suite: 'failover',
      context: {
        node: process.version,
        cores: availableParallelism(),
        store: 'fs (temporary dir)',
        cluster: 'walship primary + 2 replicas, child processes; 20 ms window and poll; ack durable',
        load: `${RATE_ROWS_PER_S} rows/s, one writer per table, a flush every 20 ms`,
        steadyGapMaxMs: `${steady.p50.toFixed(0)} p50 over runs (the load's own rhythm; a pause below it is noise)`,
        loadAverage1m: `${loadAtStart.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
      },
      rows,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
