/**
 * What is SQLite-specific in SqliteSequencerStore (the shared behaviour is contract.test.ts): the
 * exclusive lock, group commit (groups really group, a fenced commit fails alone, the queue
 * bound), status(), backup(), close() flushing what it accepted, and a SIGKILLed writer process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clock, systemClock } from '../core/index.js';
import type { CommitRequest, CommitResult } from './sequencer-store.js';
import { SQLITE_QUEUE_COMMITS_MAX, SqliteSequencerStore } from './sqlite-store.js';
import { stagedSegment } from './testing/contract.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

let directory = '';
let files = 0;
beforeAll(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'walship-sqlite-sequencer-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

function freshPath(): string {
  files += 1;
  return path.join(directory, `sequencer-${files}.sqlite`);
}

function commitOf(
  writer: string,
  writerEpoch: bigint,
  batchSeq: bigint,
  table = 'trades',
  txnCount = 1,
): CommitRequest {
  return {
    writer,
    writerEpoch,
    batchSeq,
    segments: [stagedSegment(table, writer, writerEpoch, batchSeq, txnCount)],
  };
}

async function openInitialized(options: { path?: string; clock?: Clock; groupMax?: number } = {}) {
  const store = SqliteSequencerStore.open({ ...options, path: options.path ?? freshPath() });
  await store.initialize('cluster-sqlite', new Map());
  return store;
}

/** A clock the test moves by hand. */
function manualClock(): Clock & { wall: number; monotonic: number } {
  const clock = {
    wall: 1_767_225_600_000,
    monotonic: 50_000,
    wallMs: () => clock.wall,
    monotonicMs: () => clock.monotonic,
    sleep: async () => {},
    setTimer: (ms: number, callback: () => void, options?: { unref?: boolean }) =>
      systemClock.setTimer(ms, callback, options),
  };
  return clock;
}

describe('SqliteSequencerStore', () => {
  it('holds an exclusive lock: a second open of the file fails at once with SEQUENCER_LOCKED', async () => {
    const file = freshPath();
    const first = await openInitialized({ path: file });
    let error: unknown = null;
    try {
      SqliteSequencerStore.open({ path: file });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'SEQUENCER_LOCKED', kind: 'invalid' });
    expect((error as Error).message).toMatch(/another sequencer holds/);
    // Another process is refused the same way (the real case: a second `sequencer serve`).
    const child = await runChild(
      `const { SqliteSequencerStore } = await import('./sequencer/sqlite-store.ts');
       try { SqliteSequencerStore.open({ path: process.argv[1] }); console.log('opened'); }
       catch (error) { console.log(error.code); }`,
      [file],
    );
    expect(child.output.trim()).toBe('SEQUENCER_LOCKED');
    // The lock is released with the store; the file is intact.
    await first.close();
    const again = SqliteSequencerStore.open({ path: file });
    expect(await again.clusterId()).toBe('cluster-sqlite');
    await again.close();
  });

  it('groups concurrent commits into fewer transactions, never more than groupMax per group', async () => {
    const commits = 40;
    for (const groupMax of [256, 4]) {
      const store = await openInitialized({ groupMax });
      const epochs: bigint[] = [];
      for (let index = 0; index < commits; index += 1)
        epochs.push((await store.registerWriter(`w${index}`)).epoch);
      const groupsBefore = store.status().groups;
      const results = await Promise.all(
        epochs.map((epoch, index) =>
          store.commit(commitOf(`w${index}`, epoch, 1n, index % 2 === 0 ? 'a' : 'b')),
        ),
      );
      const groups = store.status().groups - groupsBefore;
      expect(groups).toBeGreaterThanOrEqual(Math.ceil(commits / groupMax));
      expect(groups).toBeLessThan(commits);
      expect(results.every((result) => !result.replayed)).toBe(true);
      const heads = await store.heads();
      expect(heads.tables).toEqual(
        new Map([
          ['a', BigInt(commits / 2)],
          ['b', BigInt(commits / 2)],
        ]),
      );
      await store.close();
    }
  });

  it('a fenced or out-of-order commit inside a group fails alone; the others commit', async () => {
    const store = await openInitialized();
    const a = await store.registerWriter('a');
    const b = await store.registerWriter('b');
    const c = await store.registerWriter('c');
    await store.fence('b', b.epoch);
    const groupsBefore = store.status().groups;
    const outcomes = await Promise.allSettled([
      store.commit(commitOf('a', a.epoch, 1n, 'trades', 2)),
      store.commit(commitOf('b', b.epoch, 1n, 'trades', 5)),
      store.commit(commitOf('c', c.epoch, 7n, 'trades', 3)),
      store.commit(commitOf('c', c.epoch, 1n, 'trades', 3)),
    ]);
    expect(store.status().groups - groupsBefore).toBe(1);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
      'fulfilled',
    ]);
    expect(outcomes[1]).toMatchObject({ reason: { code: 'SEQUENCER_FENCED' } });
    expect(outcomes[2]).toMatchObject({ reason: { code: 'SEQUENCER_BATCH_ORDER' } });
    const log = await store.readLog('trades', 1n, 10);
    expect(log.map((entry) => [entry.writer, entry.txnFirst, entry.txnLast])).toEqual([
      ['a', 1n, 2n],
      ['c', 3n, 5n],
    ]);
    await store.close();
  });

  it(`bounds the queue: commit ${SQLITE_QUEUE_COMMITS_MAX + 1} fails SEQUENCER_UNAVAILABLE "queue full"`, async () => {
    const store = await openInitialized();
    const { epoch } = await store.registerWriter('w');
    const commit = commitOf('w', epoch, 1n);
    // Queued in one synchronous loop: no group runs before the last one is offered.
    const accepted: Promise<CommitResult>[] = [];
    for (let index = 0; index < SQLITE_QUEUE_COMMITS_MAX; index += 1) accepted.push(store.commit(commit));
    await expect(store.commit(commit)).rejects.toMatchObject({
      code: 'SEQUENCER_UNAVAILABLE',
      kind: 'unavailable',
      message: expect.stringMatching(/queue is full/),
    });
    const results = await Promise.all(accepted);
    expect(results.filter((result) => !result.replayed)).toHaveLength(1);
    expect((await store.heads()).tables.get('trades')).toBe(1n);
    // Drained, it accepts again.
    expect((await store.commit(commitOf('w', epoch, 2n))).replayed).toBe(false);
    await store.close();
  });

  it('status() reports writers with last commit age, commits/s, group size and fsync latency', async () => {
    const clock = manualClock();
    const store = await openInitialized({ clock });
    const { epoch } = await store.registerWriter('w');
    await store.registerWriter('idle');
    for (let batch = 1n; batch <= 20n; batch += 1n) await store.commit(commitOf('w', epoch, batch));
    clock.wall += 5_000;
    const status = store.status();
    expect(status.clusterId).toBe('cluster-sqlite');
    expect(status.version).toBe((await store.heads()).version);
    expect(status.heads.tables.get('trades')).toBe(20n);
    expect(status.writerActivity).toEqual([
      { writer: 'idle', lastCommitAgoMs: null },
      { writer: 'w', lastCommitAgoMs: 5_000 },
    ]);
    expect(status.commitsPerSecond).toBe(20 / 10);
    expect(status.groups).toBe(20);
    expect(status.groupSizeMean).toBe(1);
    expect(status.commitLatencyP50Ms).not.toBeNull();
    expect(status.commitLatencyP99Ms).toBeGreaterThanOrEqual(status.commitLatencyP50Ms ?? 0);
    expect(status.dbSizeBytes).toBeGreaterThan(0);
    // Out of the 10 s window, the rate falls to 0.
    clock.monotonic += 11_000;
    expect(store.status().commitsPerSecond).toBe(0);
    await store.close();
  });

  it('backup() writes a file that opens as a sequencer holding the same log', async () => {
    const store = await openInitialized();
    const { epoch } = await store.registerWriter('w');
    for (let batch = 1n; batch <= 10n; batch += 1n)
      await store.commit(commitOf('w', epoch, batch, 'trades', 3));
    const backupPath = path.join(directory, 'backup.sqlite');
    await store.backup(backupPath);
    const heads = await store.heads();
    const log = await store.readLog('trades', 1n, 100);
    const writers = await store.writers();
    await store.commit(commitOf('w', epoch, 11n)); // after the backup: not in it
    await store.close();

    const restored = SqliteSequencerStore.open({ path: backupPath });
    expect(await restored.clusterId()).toBe('cluster-sqlite');
    expect(await restored.heads()).toEqual(heads);
    expect(await restored.readLog('trades', 1n, 100)).toEqual(log);
    expect(await restored.writers()).toEqual(writers);
    // The writer's retry of batch 11 commits again on the restored copy, after the backup's head.
    const retried = await restored.commit(commitOf('w', epoch, 11n));
    expect(retried.entries[0]?.txnFirst).toBe(31n);
    await restored.close();
  });

  it('close() applies the commits it had accepted before releasing the file', async () => {
    const file = freshPath();
    const store = await openInitialized({ path: file });
    const { epoch } = await store.registerWriter('w');
    const queued = store.commit(commitOf('w', epoch, 1n, 'trades', 4));
    await store.close();
    const result = await queued;
    const reopened = SqliteSequencerStore.open({ path: file });
    expect(await reopened.readLog('trades', 1n, 10)).toEqual(result.entries);
    await reopened.close();
  });

  it('refuses a file of another layout and a groupMax out of range', async () => {
    const file = freshPath();
    const foreign = new Database(file);
    foreign.pragma('user_version = 7');
    foreign.close();
    expect(() => SqliteSequencerStore.open({ path: file })).toThrow(
      expect.objectContaining({ code: 'SEQUENCER_FORMAT_UNSUPPORTED' }),
    );
    for (const groupMax of [0, 1.5, 100_000])
      expect(() => SqliteSequencerStore.open({ path: freshPath(), groupMax })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
  });

  it('a writer process SIGKILLed mid-stream: every acked batch survives, no gap, version kept', async () => {
    const file = freshPath();
    const child = spawnChild(
      `const { SqliteSequencerStore } = await import('./sequencer/sqlite-store.ts');
       const store = SqliteSequencerStore.open({ path: process.argv[1] });
       await store.initialize('crash', new Map());
       const { epoch } = await store.registerWriter('w');
       const segment = (table, batch, txnCount) => ({ table, staged: table + '/' + batch, txnCount, bytes: 1, crc32: 0 });
       for (let batch = 1n; ; batch += 1n) {
         const { entries } = await store.commit({ writer: 'w', writerEpoch: epoch, batchSeq: batch,
           segments: [segment('a', batch, 2), segment('b', batch, 1)] });
         const { version } = await store.heads();
         process.stdout.write('acked ' + batch + ' ' + entries[0].txnLast + ' ' + version + '\\n');
       }`,
      [file],
    );
    const ackedLines = await child.waitForLines(/^acked (\d+) (\d+) (\d+)$/gm, 30);
    child.kill();
    await child.exited;
    const acked = [...child.output().matchAll(/^acked (\d+) (\d+) (\d+)$/gm)];
    expect(acked.length).toBeGreaterThanOrEqual(ackedLines);
    const last = acked.at(-1) as RegExpMatchArray;
    const lastBatch = BigInt(last[1] as string);

    const store = SqliteSequencerStore.open({ path: file });
    const heads = await store.heads();
    expect(heads.version).toBeGreaterThanOrEqual(BigInt(last[3] as string));
    const [writer] = await store.writers();
    // The batch in flight at the kill may or may not have committed; nothing past it did.
    expect(writer?.lastBatchSeq).toBeGreaterThanOrEqual(lastBatch);
    expect(writer?.lastBatchSeq).toBeLessThanOrEqual(lastBatch + 1n);
    const log = await store.readLog('a', 1n, 1000);
    expect(log.map((entry) => entry.batchSeq)).toEqual(
      Array.from({ length: Number(writer?.lastBatchSeq) }, (_, index) => BigInt(index + 1)),
    );
    expect(log.map((entry) => entry.txnFirst)).toEqual(log.map((_, index) => BigInt(index * 2 + 1)));
    expect(heads.tables.get('a')).toBe((writer?.lastBatchSeq ?? 0n) * 2n);
    expect(heads.tables.get('b')).toBe(writer?.lastBatchSeq);
    // The writer's retry of its unanswered batch gets a definite answer with gap-free numbers.
    const retry = await store.commit({
      writer: 'w',
      writerEpoch: 1n,
      batchSeq: lastBatch + 1n,
      segments: [
        { table: 'a', staged: `a/${lastBatch + 1n}`, txnCount: 2, bytes: 1, crc32: 0 },
        { table: 'b', staged: `b/${lastBatch + 1n}`, txnCount: 1, bytes: 1, crc32: 0 },
      ],
    });
    expect(retry.entries[0]?.txnFirst).toBe(lastBatch * 2n + 1n);
    await store.close();
  }, 60_000);
});

interface Child {
  output(): string;
  /** Resolves once `pattern` has matched `count` times in stdout; rejects if the child exits first. */
  waitForLines(pattern: RegExp, count: number): Promise<number>;
  kill(): void;
  exited: Promise<void>;
}

/** `script` as an ES module in a child Node with the project's TypeScript hooks, cwd the repo root. */
function spawnChild(script: string, args: string[]): Child {
  const child = spawn(
    process.execPath,
    ['--import', './table/query-host-ts-register.mjs', '--input-type=module', '-e', script, ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  let errors = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    for (const listener of listeners) listener();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    errors += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      for (const listener of listeners) listener();
      resolve();
    });
  });
  return {
    output: () => output,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    waitForLines(pattern, count) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const seen = [...output.matchAll(pattern)].length;
          if (seen >= count) {
            listeners.delete(check);
            resolve(seen);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            listeners.delete(check);
            reject(new Error(`the child exited after ${seen} lines: ${errors}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
}

async function runChild(script: string, args: string[]): Promise<{ output: string }> {
  const child = spawnChild(script, args);
  await child.exited;
  return { output: child.output() };
}
