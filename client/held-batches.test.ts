import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClientRandomBytes } from './clock.js';
import type { HeldBatches } from './held-batches.js';
import { MemoryHeldBatches } from './memory-held-batches.js';
import { SfDir } from './sf-dir.js';

/**
 * The HeldBatches contract (held-batches.ts), one body for every implementation (STYLE rule 12):
 * seqs one by one, the exact bytes back, release in seq order only, clear() dropping everything
 * while seqs stay used, and the max_unacked_batches bound.
 */

const dirs: string[] = [];
const opened: HeldBatches[] = [];

afterEach(async () => {
  for (const held of opened.splice(0)) await held.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const IMPLEMENTATIONS: { name: string; open: (maxBatches: number) => HeldBatches }[] = [
  {
    name: 'memory',
    open: (maxBatches) => new MemoryHeldBatches({ writerId: 'w-test', maxBatches }),
  },
  {
    name: 'sf_dir',
    open: (maxBatches) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'walship-held-'));
      dirs.push(dir);
      return SfDir.open({
        dir,
        writerId: 'w-test',
        maxBytes: 1 << 20,
        maxBatches,
        durability: 'fsync',
        randomBytes: systemClientRandomBytes,
      });
    },
  },
];

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | undefined) =>
  data === undefined ? undefined : new TextDecoder().decode(data);

describe.each(IMPLEMENTATIONS)('HeldBatches contract: $name', ({ open }) => {
  function held(maxBatches = 10): HeldBatches {
    const created = open(maxBatches);
    opened.push(created);
    return created;
  }

  it('gives seqs 1, 2, 3 and gives back the exact bytes of each', async () => {
    const queue = held();
    expect(queue.writerId).toBe('w-test');
    expect(queue.lastSeq).toBe(0n);
    const a = await queue.seal(bytes('t n=1i\n'), 1);
    const b = await queue.seal(bytes('t n=2i\nt n=3i\n'), 2);
    expect([a?.seq, b?.seq]).toEqual([1n, 2n]);
    expect(queue.lastSeq).toBe(2n);
    expect(queue.list().map((batch) => batch.seq)).toEqual([1n, 2n]);
    expect([queue.count, queue.rows, queue.payloadBytes]).toEqual([2, 3, 21]);
    expect(text(await queue.read(a!))).toBe('t n=1i\n');
    expect(text(await queue.read(b!))).toBe('t n=2i\nt n=3i\n');
  });

  it('releases the front batch only, in seq order', async () => {
    const queue = held();
    const a = (await queue.seal(bytes('a\n'), 1))!;
    const b = (await queue.seal(bytes('b\n'), 1))!;
    await expect(queue.release(b)).rejects.toThrow(/out of seq order/);
    await queue.release(a);
    expect(queue.front()).toBe(b);
    await queue.release(b);
    expect([queue.count, queue.rows, queue.payloadBytes]).toEqual([0, 0, 0]);
    expect(queue.front()).toBeUndefined();
  });

  it('clear() drops every batch, seqs stay used, and a release of a dropped batch is ignored', async () => {
    const queue = held();
    const a = (await queue.seal(bytes('a\n'), 1))!;
    await queue.seal(bytes('b\n'), 1);
    queue.clear();
    expect([queue.count, queue.rows, queue.payloadBytes, queue.memoryBytes]).toEqual([0, 0, 0, 0]);
    expect(await queue.read(a)).toBeUndefined();
    await queue.release(a);
    expect((await queue.seal(bytes('c\n'), 1))?.seq).toBe(3n);
  });

  it('has room for max_unacked_batches batches, and again once one left', async () => {
    const queue = held(2);
    expect(queue.hasRoomFor(10)).toBe(true);
    const a = (await queue.seal(bytes('a\n'), 1))!;
    await queue.seal(bytes('b\n'), 1);
    expect(queue.hasRoomFor(1)).toBe(false);
    await expect(queue.seal(bytes('c\n'), 1)).rejects.toThrow(/without room/);
    await queue.release(a);
    expect(queue.hasRoomFor(1)).toBe(true);
  });
});
