/**
 * Issue 18, deliverable 3: the Sender's store-and-forward directory against real crashes. A child
 * process (client/testing/sf-dir-writer.ts) writes numbered rows through a Sender with sf_dir to a
 * loopback server that dedups by X-Walship-Batch (client/testing/dedup-ilp-server.ts) and records
 * every row it writes. The test SIGKILLs the child at random moments, at least 12 times, restarting
 * it on the same directory each time; a last run ends cleanly. Then every row of every batch the
 * child sealed must have been written exactly once: none lost (every seq 1…last, every row number
 * 0…last·R−1), none duplicated, no identity refused (a seq reused for other bytes would be a 409).
 * The test also checks it exercised what it claims: restarts found held batches, and resends of
 * batches committed before a kill were answered `replayed`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../cli/local-cluster.js';
import { execText, statusOf, waitForPrimary } from '../cli/node-http.js';
import { type DedupIlpServer, startDedupIlpServer } from '../client/testing/dedup-ilp-server.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ROWS_PER_BATCH = 4;
const KILLS_MIN = 12;
/** Kills tried at most while waiting for both a replayed answer and a restart that found held batches. */
const KILLS_MAX = 30;
/** How long a run lives before its SIGKILL, after it opened its directory. */
const RUN_MS_MIN = 120;
const RUN_MS_MAX = 600;
/** The server holds each 204 this long after writing, so kills often fall between write and answer. */
const ANSWER_DELAY_MS_MAX = 12;

interface Writer {
  child: ChildProcess;
  lines(): Record<string, unknown>[];
  output(): string;
  /** The first JSON line whose event is `event`. */
  waitFor(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startWriter(addr: string, dir: string, batches: number | 'forever'): Writer {
  const child = spawn(
    process.execPath,
    [
      '--import',
      './table/query-host-ts-register.mjs',
      'client/testing/sf-dir-writer.ts',
      addr,
      dir,
      String(ROWS_PER_BATCH),
      String(batches),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    for (const listener of listeners) listener();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      for (const listener of listeners) listener();
      resolve({ code, signal });
    });
  });
  const lines = () =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    child,
    lines,
    output: () => `${stdout}${stderr}`,
    exited,
    waitFor(event, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no "${event}" line in ${timeoutMs} ms`)), timeoutMs);
        const check = () => {
          const line = lines().find((l) => l.event === event);
          if (line !== undefined) done(undefined, line);
          else if (child.exitCode !== null || child.signalCode !== null) {
            done(new Error(`the writer exited before "${event}":\n${stdout}${stderr}`));
          }
        };
        const done = (error: Error | undefined, line?: Record<string, unknown>) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error === undefined) resolve(line!);
          else reject(error);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

const randomBetween = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The row numbers of one written body, and the runs (pids) that made them. */
function rowsOf(body: string): { numbers: number[]; runs: Set<string> } {
  const numbers: number[] = [];
  const runs = new Set<string>();
  for (const line of body.split('\n').filter((l) => l !== '')) {
    const match = /^rows,run=(\d+) n=(\d+)i$/.exec(line);
    if (match === null) throw new Error(`unexpected line ${JSON.stringify(line)}`);
    runs.add(match[1]!);
    numbers.push(Number(match[2]));
  }
  return { numbers, runs };
}

describe('Sender with sf_dir under SIGKILL', () => {
  let server: DedupIlpServer | undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'walship-client-sf-'));
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes every sealed row exactly once across random kills and restarts', {
    timeout: 90_000,
  }, async () => {
    server = await startDedupIlpServer({ afterWrite: () => randomBetween(0, ANSWER_DELAY_MS_MAX) });
    const opens: Record<string, unknown>[] = [];
    let kills = 0;
    const replayed = () => server!.answers.filter((a) => a === 'replayed').length;
    const heldAtOpen = () => opens.reduce((sum, open) => sum + Number(open.held), 0);
    while (kills < KILLS_MIN || (kills < KILLS_MAX && (replayed() === 0 || heldAtOpen() === 0))) {
      const writer = startWriter(server.address, dir, 'forever');
      opens.push(await writer.waitFor('open'));
      await sleep(randomBetween(RUN_MS_MIN, RUN_MS_MAX));
      writer.child.kill('SIGKILL');
      const { signal } = await writer.exited;
      // A run that ended by itself (an error: a 409, a corrupt file) fails the test here.
      expect(signal, writer.output()).toBe('SIGKILL');
      kills++;
    }
    const last = startWriter(server.address, dir, 5);
    opens.push(await last.waitFor('open'));
    const done = await last.waitFor('done');
    expect((await last.exited).code, last.output()).toBe(0);

    const lastSeq = Number(done.lastSeq);
    const writerIds = new Set(opens.map((open) => open.writerId));
    expect(writerIds.size).toBe(1);
    expect(server.answers.filter((a) => a !== 'committed' && a !== 'replayed')).toEqual([]);
    expect(last.lines().some((line) => line.event === 'corrupt')).toBe(false);

    // Every seq 1…lastSeq written once, under the one writer id, holding its own row numbers.
    const seqs = server.writes.map((write) => Number(write.seq));
    expect(new Set(server.writes.map((write) => write.writerId))).toEqual(writerIds);
    expect(seqs).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1));
    const counts = new Map<number, number>();
    for (const write of server.writes) {
      const { numbers, runs } = rowsOf(write.body);
      const first = (Number(write.seq) - 1) * ROWS_PER_BATCH;
      expect(numbers).toEqual(Array.from({ length: ROWS_PER_BATCH }, (_, i) => first + i));
      expect(runs.size).toBe(1);
      for (const n of numbers) counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    const expectedRows = lastSeq * ROWS_PER_BATCH;
    const lost = Array.from({ length: expectedRows }, (_, n) => n).filter((n) => !counts.has(n));
    const duplicated = [...counts].filter(([, count]) => count > 1).map(([n]) => n);
    expect({ lost, duplicated }).toEqual({ lost: [], duplicated: [] });

    // What the test claims to exercise happened: kills mid-stream, held batches found at restart,
    // and batches the server committed before a kill sent again and answered `replayed`.
    expect(kills).toBeGreaterThanOrEqual(KILLS_MIN);
    expect(heldAtOpen()).toBeGreaterThan(0);
    expect(replayed()).toBeGreaterThan(0);
    expect(lastSeq).toBeGreaterThan(kills);
    console.log(
      `client sf_dir: ${kills} kills, ${lastSeq} batches (${expectedRows} rows) written once each; ` +
        `${heldAtOpen()} held batches found at restarts, ${replayed()} answered replayed`,
    );
  });
});

/** Every value of `column` in `table` on the node at `url` (paged), or [] when the table is missing. */
async function readColumn(url: string, table: string, column: string): Promise<number[]> {
  const values: number[] = [];
  for (let lo = 1; ; lo += 10_000) {
    const text = await execText(url, `SELECT ${column} FROM ${table} ORDER BY ${column}`, {
      limit: `${lo},${lo + 9_999}`,
    });
    if (text === null) return values;
    const page = (JSON.parse(text) as { dataset?: [number][] }).dataset ?? [];
    for (const [value] of page) values.push(value);
    if (page.length < 10_000) return values;
  }
}

/** Whether every node applied every table up to the primary's committed txn. */
async function caughtUp(urls: string[], primary: string): Promise<boolean> {
  const lead = await statusOf(primary);
  if (lead === null) return false;
  for (const url of urls) {
    const status = await statusOf(url);
    const applied = new Map((status?.tables ?? []).map((t) => [t.name, t.appliedTxn ?? t.committedTxn]));
    for (const t of lead.tables ?? []) if (applied.get(t.name) !== t.committedTxn) return false;
  }
  return true;
}

describe('Sender with sf_dir under SIGKILL, against a cluster that fails over meanwhile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'walship-client-sf-cluster-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('12 client kills and 4 primary kills: every sealed row on every node exactly once', {
    timeout: 240_000,
  }, async () => {
    mkdirSync(path.join(dir, 'cluster'));
    const cluster = await LocalCluster.start({
      dir: path.join(dir, 'cluster'),
      ack: 'durable',
      replicas: 2,
      autoFailover: { leaseTimeoutMs: 1_000 },
      adminToken: 'sf-cluster-token',
    });
    const sfDir = path.join(dir, 'sf');
    try {
      const addrs = cluster.urls.map((url) => new URL(url).host).join(',');
      const opens: Record<string, unknown>[] = [];
      let primaryKills = 0;
      let restarting: Promise<unknown> = Promise.resolve();
      for (let kill = 0; kill < KILLS_MIN; kill++) {
        const writer = startWriter(addrs, sfDir, 'forever');
        opens.push(await writer.waitFor('open', 60_000));
        await sleep(randomBetween(RUN_MS_MIN * 3, RUN_MS_MAX * 2));
        if (kill % 3 === 1) {
          // The primary goes too, while the client is mid-stream: a replica takes over by lease.
          await restarting;
          const primary = await waitForPrimary(cluster.urls, 30_000);
          expect(primary).toBeDefined();
          cluster.signal(primary!, 'SIGKILL');
          primaryKills++;
          restarting = cluster.restartAsReplica(primary!);
          await sleep(randomBetween(RUN_MS_MIN, RUN_MS_MAX));
        }
        writer.child.kill('SIGKILL');
        const { signal } = await writer.exited;
        expect(signal, writer.output()).toBe('SIGKILL');
      }
      await restarting;
      const last = startWriter(addrs, sfDir, 5);
      opens.push(await last.waitFor('open', 60_000));
      const done = await last.waitFor('done', 120_000);
      expect((await last.exited).code, last.output()).toBe(0);
      const stats = done.stats as { committed: number; replayed: number; ignored: number };
      expect(stats.ignored).toBe(0);

      const lastSeq = Number(done.lastSeq);
      const primary = (await waitForPrimary(cluster.urls, 30_000))!;
      const deadline = performance.now() + 60_000;
      while (!(await caughtUp(cluster.urls, primary)) && performance.now() < deadline) await sleep(50);
      const expected = Array.from({ length: lastSeq * ROWS_PER_BATCH }, (_, n) => n);
      for (const url of cluster.urls) {
        const numbers = await readColumn(url, 'rows', 'n');
        const doubled = numbers.filter((n, i) => i > 0 && numbers[i - 1] === n);
        const held = new Set(numbers);
        expect({ url, lost: expected.filter((n) => !held.has(n)), doubled }).toEqual({
          url,
          lost: [],
          doubled: [],
        });
        expect(numbers.length).toBe(expected.length);
      }
      expect(new Set(opens.map((open) => open.writerId)).size).toBe(1);
      expect(primaryKills).toBeGreaterThanOrEqual(4);
      // The kills hit mid-stream: restarts found batches sealed but not acknowledged, and sent them.
      expect(opens.reduce((n, o) => n + Number(o.held), 0)).toBeGreaterThan(0);
      console.log(
        `client sf_dir on a cluster: ${KILLS_MIN} client kills, ${primaryKills} primary kills, ${lastSeq} batches ` +
          `(${expected.length} rows) once on every node; ${opens.reduce((n, o) => n + Number(o.held), 0)} held batches found at restarts`,
      );
    } finally {
      await cluster.stop({ keep: false });
    }
  });
});
