/**
 * `walship gc` as a command, in-process on a filesystem store: arguments, the text and JSON
 * reports, and that --dry-run deletes nothing. The rules themselves are tested in failover/gc.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsStore, listAll } from '../objectstore/index.js';
import { CLUSTER_KEY, encodeClusterRecord, segmentKey } from '../wal/index.js';
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
  for (const txn of [1n, 5n, 9n]) await store.put(segmentKey('trades', txn), new Uint8Array([1, 2, 3]));
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
      `keep ${segmentKey('trades', 1n)} and the 2 after it: no snapshot of this cluster`,
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

  it('exits 3 when the store cannot be opened', async () => {
    const io = captureIo();
    const storeOpen = () => Promise.reject(new Error('unreachable'));
    expect(await gcCommand(['--store', connection], io, { storeOpen })).toBe(3);
  });
});
