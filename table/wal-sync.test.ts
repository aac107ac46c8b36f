import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WalSync } from './wal-sync.js';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'walship-walsync-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('WalSync', () => {
  it('joins callers to the next round: one fsync in flight, one queued, however many wait', async () => {
    const file = path.join(dir, 'x-wal');
    writeFileSync(file, 'frames');
    const sync = new WalSync(file);
    const first = sync.sync(); // starts round 1 at once
    const waiting = Array.from({ length: 10 }, () => sync.sync()); // all share round 2
    await Promise.all([first, ...waiting]);
    expect(sync.rounds).toBe(2);
    await sync.sync();
    expect(sync.rounds).toBe(3);
    sync.close();
  });

  it('treats a missing WAL (checkpointed and removed at close) as synced, and fails on other errors', async () => {
    await new WalSync(path.join(dir, 'gone-wal')).sync();
    const notAFile = new WalSync(path.join(dir, 'no-such-dir', 'x-wal'));
    await expect(notAFile.sync()).resolves.toBeUndefined();
    writeFileSync(path.join(dir, 'plain'), '');
    const underAFile = new WalSync(path.join(dir, 'plain', 'x-wal'));
    await expect(underAFile.sync()).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('lets the rounds asked for before close finish', async () => {
    const file = path.join(dir, 'y-wal');
    writeFileSync(file, 'frames');
    const sync = new WalSync(file);
    const a = sync.sync();
    const b = sync.sync();
    sync.close();
    await expect(Promise.all([a, b])).resolves.toEqual([undefined, undefined]);
  });
});
