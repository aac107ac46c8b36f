/**
 * `walship gc` as a command, in-process on a filesystem store: arguments, the text and JSON
 * reports, and that --dry-run deletes nothing. The rules themselves are tested in failover/gc.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../core/index.js';
import { initSequencedCluster } from '../failover/sequenced-cluster.js';
import { CLUSTER_KEY, encodeClusterRecord, segmentKey, stagedKey, txnLogKey } from '../layout/index.js';
import { encodeTxnLogEntry } from '../layout/txn-log-entry.js';
import { FsStore, listAll } from '../objectstore/index.js';
import { SqliteSequencerStore } from '../sequencer/sqlite-store.js';
import { tableKey } from '../table/index.js';
import { gcCommand } from './gc.js';
import type { CommandIo } from './io.js';

let base = '';
let connection = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-gc-cli-'));
  const root = path.join(base, 'store');
  connection = `fs::root=${root};`;
  const store = await FsStore.open({ root });
  await store.put(
    CLUSTER_KEY,
    encodeClusterRecord({
      clusterId: 'c-test',
      formatVersion: 1,
      createdAt: new Date().toISOString(),
      createdBy: 'test',
    }),
  );
  // GC judges segments by their keys and object times, never their bodies.
  for (const txn of [1n, 5n, 9n])
    await store.put(segmentKey(tableKey('trades'), txn), new Uint8Array([1, 2, 3]));
  await store.close();
});
afterAll(() => rm(base, { recursive: true, force: true }));

function captureIo(): CommandIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} };
}

async function keys(): Promise<string[]> {
  const store = await FsStore.open({ root: path.join(base, 'store') });
  try {
    const found: string[] = [];
    for await (const o of listAll(store, '')) found.push(o.key);
    return found;
  } finally {
    await store.close();
  }
}

describe('walship gc', () => {
  it('refuses bad arguments with exit 2', async () => {
    for (const argv of [
      ['--store', connection, '--keep-snapshots', '0'],
      ['--store', connection, '--retention', 'soon'],
      ['--store', connection, '--registration-expiry', '0'],
      ['--store', connection, '--bogus'],
      [],
    ]) {
      const io = captureIo();
      expect(await gcCommand(argv, io), argv.join(' ')).toBe(2);
      expect(io.err.join('\n')).toContain('walship gc:');
    }
  });

  it('--dry-run explains what stays and deletes nothing', async () => {
    const before = await keys();
    const io = captureIo();
    const clock = { wallMs: () => Date.now() + 30 * 86_400_000 };
    expect(await gcCommand(['--store', connection, '--dry-run', '--retention', '7d'], io, { clock })).toBe(0);
    const text = io.out.join('\n');
    expect(text).toContain('DRY RUN');
    expect(text).toContain(
      `keep ${segmentKey(tableKey('trades'), 1n)} and the 2 after it: no snapshot of this cluster`,
    );
    expect(text).toContain('would delete 0 objects');
    expect(await keys()).toEqual(before);
  });

  it('--json gives the plan: a segment newer than the window stays for that reason', async () => {
    const io = captureIo();
    expect(await gcCommand(['--store', connection, '--json', '--retention', '7d'], io)).toBe(0);
    const result = JSON.parse(io.out.join('\n')) as {
      dryRun: boolean;
      plan: { keep: { table: string | null; reason: string }[] };
    };
    expect(result.dryRun).toBe(false);
    expect(result.plan.keep.find((k) => k.table === 'trades')?.reason).toMatch(
      /^newer than the retention window/,
    );
  });

  it('shows its progress as the requests it made, and ends the line with what it deleted', async () => {
    const lines: string[] = [];
    const io = captureIo();
    const progress = { inPlace: true, draw: (line: string) => void lines.push(line) };
    expect(await gcCommand(['--store', connection, '--dry-run'], io, { progress })).toBe(0);
    expect(lines[0]).toMatch(/^walship gc: 1 (LIST|GET|HEAD) requests · \d+ ms$/);
    expect(lines.at(-1)).toMatch(
      /^walship gc: (\d+ (LIST|GET|HEAD)(, )?)+ requests; done: 0 objects deleted · /,
    );
    expect(lines.at(-1)).toContain('LIST');
    expect(io.err).toEqual([]);
  });

  it('exits 3 when the store cannot be opened', async () => {
    const io = captureIo();
    const storeOpen = () => Promise.reject(new Error('unreachable'));
    expect(await gcCommand(['--store', connection], io, { storeOpen })).toBe(3);
  });
});

describe('walship gc on a sequenced cluster', () => {
  let root = '';
  let sequencerFile = '';
  let orphan = '';
  let connectionOf = '';
  const staged: string[] = [];

  /** A store bound to a sequencer: two committed batches of writer p1 (exported), one orphan of fenced w2. */
  beforeAll(async () => {
    root = path.join(base, 'sequenced');
    connectionOf = `fs::root=${root};`;
    sequencerFile = path.join(base, 'sequencer.sqlite');
    const store = await FsStore.open({ root });
    const sequencer = SqliteSequencerStore.open({ path: sequencerFile });
    try {
      await initSequencedCluster({ store, sequencer, clock: systemClock });
      const { epoch } = await sequencer.registerWriter('p1');
      for (const batchSeq of [1n, 2n]) {
        const key = stagedKey(tableKey('trades'), 'p1', epoch, batchSeq);
        staged.push(key);
        // GC judges staged objects by keys, entries and times, never their bodies.
        await store.put(key, new Uint8Array([1, 2, 3]));
        const { entries } = await sequencer.commit({
          writer: 'p1',
          writerEpoch: epoch,
          batchSeq,
          segments: [{ table: 'trades', staged: key, txnCount: 2, bytes: 3, crc32: 7 }],
        });
        for (const entry of entries)
          await store.put(txnLogKey(entry.table, entry.txnFirst), encodeTxnLogEntry(entry));
      }
      const w2 = await sequencer.registerWriter('w2');
      orphan = stagedKey(tableKey('trades'), 'w2', w2.epoch, 1n);
      await store.put(orphan, new Uint8Array([4, 5]));
      await sequencer.fence('w2', w2.epoch);
    } finally {
      await sequencer.close();
      await store.close();
    }
  });

  const sequencerOpen = async (connection: string) => {
    expect(connection).toBe('http::addr=seq.test:9100;token=t0k3n;');
    return SqliteSequencerStore.open({ path: sequencerFile });
  };
  const later = { wallMs: () => Date.now() + 30 * 86_400_000 };

  it('without a sequencer: entries judged by the rules, orphans left alone and said so', async () => {
    const io = captureIo();
    expect(await gcCommand(['--store', connectionOf, '--dry-run'], io, { clock: later })).toBe(0);
    const text = io.out.join('\n');
    expect(text).toContain('sequenced cluster, no sequencer given');
    expect(text).toContain(
      `keep ${txnLogKey(tableKey('trades'), 1n)} and the 1 after it: no snapshot of this cluster: the txn log is the only copy`,
    );
    expect(text).toContain('note: no sequencer access');
    expect(text).toContain('would delete 0 objects');
  });

  it('--sequencer (or replication.sequencer) collects the fenced writer’s orphan, and only it', async () => {
    const dry = captureIo();
    const args = [
      '--store',
      connectionOf,
      '--json',
      '--dry-run',
      '--sequencer',
      'http::addr=seq.test:9100;token=t0k3n;',
    ];
    expect(await gcCommand(args, dry, { clock: later, sequencerOpen })).toBe(0);
    const plan = (JSON.parse(dry.out.join('\n')) as { plan: { delete: { key: string; kind: string }[] } })
      .plan;
    expect(plan.delete).toEqual([expect.objectContaining({ key: orphan, kind: 'staged-orphan' })]);
    const check = await FsStore.open({ root });
    expect(await check.head(orphan)).not.toBeNull(); // a dry run deletes nothing
    await check.close();

    const io = {
      ...captureIo(),
      env: { WALSHIP_REPLICATION_SEQUENCER: 'http::addr=seq.test:9100;token=t0k3n;' },
    };
    expect(await gcCommand(['--store', connectionOf], io, { clock: later, sequencerOpen })).toBe(0);
    const text = io.out.join('\n');
    expect(text).toContain('sequenced cluster: 2 writers at the sequencer');
    expect(text).toContain(`delete ${orphan}: batch 1 of writer w2 epoch 1 (fenced`);
    expect(text).toContain('deleted 1 objects (0 segments, 1 orphan, 0 snapshot objects)');
    expect(text).not.toContain('t0k3n');
    const store = await FsStore.open({ root });
    try {
      expect(await store.head(orphan)).toBeNull();
      for (const key of staged) expect(await store.head(key)).not.toBeNull();
    } finally {
      await store.close();
    }
  });

  it('refuses a sequencer bound to another cluster (exit 2), and never prints its token', async () => {
    const otherFile = path.join(base, 'other.sqlite');
    const other = SqliteSequencerStore.open({ path: otherFile });
    await other.initialize('another-cluster', new Map());
    await other.close();
    const io = captureIo();
    const open = async () => SqliteSequencerStore.open({ path: otherFile });
    expect(
      await gcCommand(['--store', connectionOf, '--sequencer', 'http::addr=x:1;token=t0k3n;'], io, {
        clock: later,
        sequencerOpen: open,
      }),
    ).toBe(2);
    expect(io.err.join('\n')).toContain('bound to another-cluster');
    const bad = captureIo();
    expect(await gcCommand(['--store', connectionOf, '--sequencer', 'ftp::addr=x;token=t0k3n;'], bad)).toBe(
      2,
    );
    expect(bad.err.join('\n')).toContain('walship gc: --sequencer:');
    expect(bad.err.join('\n')).not.toContain('t0k3n');
  });
});
