import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClientRandomBytes } from './clock.js';
import { isClientError } from './errors.js';
import { SfDir, type SfDirOptions } from './sf-dir.js';
import { batchName, type CorruptBatchReport } from './sf-dir-files.js';

/**
 * The sf_dir on its own: what survives a restart, what a crash at each step leaves and how the
 * next open reads it, corrupt and temporary files, the lock, writer.json, and sf_max_bytes.
 */

const dirs: string[] = [];
const opened: SfDir[] = [];

afterEach(async () => {
  for (const dir of opened.splice(0)) await dir.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function newDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'walship-sf-'));
  dirs.push(dir);
  return dir;
}

function open(dir: string, options: Partial<SfDirOptions> = {}): SfDir {
  const sf = SfDir.open({
    dir,
    writerId: undefined,
    maxBytes: 1 << 20,
    maxBatches: 1000,
    durability: 'fsync',
    randomBytes: systemClientRandomBytes,
    ...options,
  });
  opened.push(sf);
  return sf;
}

/** Closes `sf` as a process exit would leave it: the lock is released, nothing else happens. */
async function restart(sf: SfDir, dir: string, options: Partial<SfDirOptions> = {}): Promise<SfDir> {
  await sf.close();
  return open(dir, options);
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | undefined) =>
  data === undefined ? undefined : new TextDecoder().decode(data);
const names = (dir: string) => readdirSync(dir).sort();

function errorOf(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('SfDir across restarts', () => {
  it('holds unacknowledged batches with their seq, bytes and rows, under the same writer id', async () => {
    const dir = newDir();
    let sf = open(dir);
    const writerId = sf.writerId;
    expect(writerId).toMatch(/^w-[a-z2-7]{20}$/);
    const first = (await sf.seal(bytes('t n=1i\n'), 1))!;
    await sf.seal(bytes('t n=2i\nt n=3i\n'), 2);
    await sf.seal(bytes('t n=4i\n'), 1);
    await sf.release(first);
    sf = await restart(sf, dir);
    expect(sf.writerId).toBe(writerId);
    expect(sf.list()).toEqual([
      { seq: 2n, lengthBytes: 14, rows: 2 },
      { seq: 3n, lengthBytes: 7, rows: 1 },
    ]);
    expect(text(await sf.read(sf.front()!))).toBe('t n=2i\nt n=3i\n');
    expect(sf.lastSeq).toBe(3n);
    expect((await sf.seal(bytes('t n=5i\n'), 1))?.seq).toBe(4n);
  });

  it('never reuses a seq after every batch was acknowledged: the newest left as the mark', async () => {
    const dir = newDir();
    let sf = open(dir, { durability: 'none' });
    for (let i = 0; i < 3; i++) await sf.release((await sf.seal(bytes(`t n=${i}i\n`), 1))!);
    expect(names(dir)).toEqual([`${'3'.padStart(20, '0')}.acked`, 'lock', 'writer.json']);
    sf = await restart(sf, dir);
    expect([sf.count, sf.lastSeq]).toEqual([0, 3n]);
    expect((await sf.seal(bytes('t n=9i\n'), 1))?.seq).toBe(4n);
  });

  it('reset (clear) keeps the seqs used across a restart, and its files are gone', async () => {
    const dir = newDir();
    let sf = open(dir);
    for (let i = 0; i < 3; i++) await sf.seal(bytes(`t n=${i}i\n`), 1);
    sf.clear();
    expect(names(dir).filter((name) => name.endsWith('.batch'))).toEqual([]);
    sf = await restart(sf, dir);
    expect([sf.count, sf.lastSeq]).toEqual([0, 3n]);
  });

  it('a crash inside clear(), after the newest became the mark, leaves files the next open removes', async () => {
    const dir = newDir();
    let sf = open(dir);
    for (let i = 0; i < 3; i++) await sf.seal(bytes(`t n=${i}i\n`), 1);
    // clear()'s first step, then the process dies.
    renameSync(path.join(dir, batchName(3n)), path.join(dir, `${'3'.padStart(20, '0')}.acked`));
    sf = await restart(sf, dir);
    expect([sf.count, sf.lastSeq]).toEqual([0, 3n]);
    expect(names(dir).filter((name) => name.endsWith('.batch'))).toEqual([]);
  });

  it('a crash after the 204 and before the rename sends the batch again (the server answers replayed)', async () => {
    const dir = newDir();
    let sf = open(dir);
    await sf.seal(bytes('t n=1i\n'), 1);
    // The 204 arrived; the process died before release().
    sf = await restart(sf, dir);
    expect(sf.list().map((batch) => batch.seq)).toEqual([1n]);
    expect(text(await sf.read(sf.front()!))).toBe('t n=1i\n');
  });

  it('ignores and removes a temporary file: a crash while sealing gives that seq to the next batch', async () => {
    const dir = newDir();
    let sf = open(dir);
    await sf.seal(bytes('t n=1i\n'), 1);
    writeFileSync(path.join(dir, `${batchName(2n)}.tmp`), 'half a fra');
    writeFileSync(path.join(dir, 'writer.json.tmp'), '{"wri');
    sf = await restart(sf, dir);
    expect(names(dir).some((name) => name.endsWith('.tmp'))).toBe(false);
    expect([sf.count, sf.lastSeq]).toEqual([1, 1n]);
    expect((await sf.seal(bytes('t n=2i\n'), 1))?.seq).toBe(2n);
  });

  it('clear() while a seal is writing: the batch is dropped and its seq stays used', async () => {
    const dir = newDir();
    let sf = open(dir);
    const sealing = sf.seal(bytes('t n=1i\n'), 1);
    sf.clear();
    expect(await sealing).toBeUndefined();
    expect(sf.count).toBe(0);
    sf = await restart(sf, dir);
    expect([sf.count, sf.lastSeq]).toEqual([0, 1n]);
  });
});

describe('SfDir corrupt files', () => {
  it('moves a damaged, cut or mislabelled file to corrupt/, reports it, never holds it; its seq stays used', async () => {
    const dir = newDir();
    let sf = open(dir);
    for (let i = 1; i <= 5; i++) await sf.seal(bytes(`t n=${i}i\n`), 1);
    const file = (seq: bigint) => path.join(dir, batchName(seq));
    const flipped = readFileSync(file(2n));
    flipped[22]! ^= 0x40;
    writeFileSync(file(2n), flipped);
    writeFileSync(file(3n), readFileSync(file(3n)).subarray(0, 15));
    renameSync(file(5n), file(9n)); // a header that says 5 in a file named 9
    const reports: CorruptBatchReport[] = [];
    sf = await restart(sf, dir, { onCorruptBatch: (report) => reports.push(report) });
    expect(reports.map((r) => [r.seq, r.reason])).toEqual([
      [2n, expect.stringMatching(/CRC mismatch/)],
      [3n, expect.stringMatching(/shorter than a header/)],
      [9n, 'its header says seq 5'],
    ]);
    expect(reports[0]!.movedTo).toBe(path.join(dir, 'corrupt', batchName(2n)));
    expect(existsSync(reports[0]!.movedTo)).toBe(true);
    expect(sf.corruptBatches).toBe(3);
    expect(sf.list().map((batch) => batch.seq)).toEqual([1n, 4n]);
    // Seq 9 was never sealed here, but a file said so: it is never reused, even after another restart.
    expect(sf.lastSeq).toBe(9n);
    sf = await restart(sf, dir);
    expect([sf.count, sf.lastSeq, sf.corruptBatches]).toEqual([2, 9n, 0]);
  });

  it('a file damaged after it was sealed is dropped and reported when read', async () => {
    const dir = newDir();
    const reports: CorruptBatchReport[] = [];
    const sf = open(dir, { onCorruptBatch: (report) => reports.push(report) });
    const batch = (await sf.seal(bytes('t n=1i\n'), 1))!;
    const file = path.join(dir, batchName(1n));
    const damaged = readFileSync(file);
    damaged[damaged.length - 1]! ^= 1;
    writeFileSync(file, damaged);
    expect(await sf.read(batch)).toBeUndefined();
    expect([sf.count, sf.corruptBatches, reports.length]).toEqual([0, 1, 1]);
  });
});

describe('SfDir lock and writer id', () => {
  it('refuses a second opener while the first holds the lock, and lets it in after close', async () => {
    const dir = newDir();
    const first = open(dir);
    const error = errorOf(() => open(dir));
    expect(isClientError(error, 'SF_DIR_LOCKED')).toBe(true);
    expect(error.message).toMatch(/another Sender of this process/);
    await first.close();
    expect(open(dir).writerId).toBe(first.writerId);
  });

  it('takes over the lock of a process that is gone', async () => {
    const dir = newDir();
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid: dead, host: hostname(), token: 'old' }));
    const sf = open(dir);
    const lock = JSON.parse(readFileSync(path.join(dir, 'lock'), 'utf8')) as { pid: number; token: string };
    expect(lock.pid).toBe(process.pid);
    expect(lock.token).toMatch(/^[0-9a-f]{32}$/);
    expect(names(dir).filter((name) => name.startsWith('lock'))).toEqual(['lock']);
    await sf.close();
    expect(existsSync(path.join(dir, 'lock'))).toBe(false);
  });

  it('refuses a lock of a live process, of another host, or unreadable — and close() leaves a lock not its own', async () => {
    const dir = newDir();
    const lockFile = path.join(dir, 'lock');
    const cases: [object | string, RegExp][] = [
      [{ pid: process.ppid, host: hostname(), token: 't' }, /live process/],
      [{ pid: 1, host: 'elsewhere.example', token: 't' }, /on host "elsewhere.example"/],
      ['garbage', /not a lock this client wrote/],
    ];
    for (const [content, message] of cases) {
      writeFileSync(lockFile, typeof content === 'string' ? content : JSON.stringify(content));
      const error = errorOf(() => open(dir));
      expect(isClientError(error, 'SF_DIR_LOCKED'), String(error)).toBe(true);
      expect(error.message).toMatch(message);
    }
    rmSync(lockFile);
    const sf = open(dir);
    writeFileSync(lockFile, JSON.stringify({ pid: 1, host: hostname(), token: 'someone else' }));
    await sf.close();
    expect(existsSync(lockFile)).toBe(true);
  });

  it('keeps writer.json: a configured writer_id must match it', async () => {
    const dir = newDir();
    let sf = open(dir, { writerId: 'ingest-1' });
    expect(JSON.parse(readFileSync(path.join(dir, 'writer.json'), 'utf8'))).toEqual({ writerId: 'ingest-1' });
    sf = await restart(sf, dir, { writerId: 'ingest-1' });
    sf = await restart(sf, dir);
    expect(sf.writerId).toBe('ingest-1');
    await sf.close();
    const error = errorOf(() => open(dir, { writerId: 'ingest-2' }));
    expect(isClientError(error, 'INVALID_CONFIG')).toBe(true);
    expect(error.message).toMatch(/writer_id "ingest-2" differs from "ingest-1"/);
    // The failed open released the lock.
    expect(open(dir).writerId).toBe('ingest-1');
  });

  it('refuses batches without writer.json: they must not be sent under a new id', async () => {
    const dir = newDir();
    const sf = open(dir);
    await sf.seal(bytes('t n=1i\n'), 1);
    await sf.close();
    rmSync(path.join(dir, 'writer.json'));
    const error = errorOf(() => open(dir));
    expect(isClientError(error, 'SF_DIR_IO')).toBe(true);
    expect(error.message).toMatch(/holds batches but no writer.json/);
  });
});

describe('SfDir room', () => {
  it('bounds the files by sf_max_bytes, frames included', async () => {
    const dir = newDir();
    // A frame is 24 bytes + the payload: two 26-byte frames fit in 60, a third does not.
    const sf = open(dir, { maxBytes: 60 });
    expect(sf.hasRoomFor(2)).toBe(true);
    const a = (await sf.seal(bytes('a\n'), 1))!;
    await sf.seal(bytes('b\n'), 1);
    expect([sf.fileBytes, sf.hasRoomFor(2)]).toEqual([52, false]);
    expect(sf.hasRoomFor(0)).toBe(false);
    expect(sf.neverFits(36)).toBe(false);
    expect(sf.neverFits(37)).toBe(true);
    await sf.release(a);
    expect(sf.hasRoomFor(2)).toBe(true);
  });
});
