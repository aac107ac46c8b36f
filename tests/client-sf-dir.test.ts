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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
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
