import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FsStore } from './fs.js';

// Issue 15 item 1: table discovery lists `tables/` with a delimiter, and on the fs store that must
// read the one directory `tables/`, never the table folders below it (at 1 000 tables, reading them
// made a sweep outlast its interval). We run as root, for whom no mode bits make a directory
// unreadable, so every readdir() the store makes is recorded instead.

const readdirs = vi.hoisted(() => [] as string[]);
vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const readdir = ((dir: Parameters<typeof actual.readdir>[0], ...rest: unknown[]) => {
    readdirs.push(String(dir));
    return (actual.readdir as (...args: unknown[]) => Promise<unknown>)(dir, ...rest);
  }) as typeof actual.readdir;
  return { ...actual, readdir, default: { ...actual, readdir } };
});

const TABLES = 30;
const bytes = (text: string) => new TextEncoder().encode(text);

let root: string;
let store: FsStore;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'walship-fs-delimiter-'));
  store = await FsStore.open({ root });
  for (let t = 0; t < TABLES; t++) {
    await store.put(`tables/t${t}/wal/00000000000000000001.seg`, bytes('seg'));
    await store.put(`tables/t${t}/staged/w/1/00000000000000000001.seg`, bytes('staged'));
  }
  await store.put('tables/stray', bytes('file'));
  await store.put('cluster.json', bytes('{}'));
  readdirs.length = 0;
});

afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

describe('FsStore delimiter listing reads one directory', () => {
  it('lists tables/ with two reads of tables/ and none of the table folders', async () => {
    const page = await store.list('tables/', { delimiter: '/' });
    expect(page.prefixes).toHaveLength(TABLES);
    expect(page.objects.map((o) => o.key)).toEqual(['tables/stray']);
    // The settled read (#readDirSettled) reads a directory twice.
    expect(readdirs).toEqual([path.join(root, 'tables'), path.join(root, 'tables')]);
  });

  it('a prefix ending mid-name, the root, and paging read only the directory named', async () => {
    expect((await store.list('tables/t1', { delimiter: '/' })).prefixes).toEqual([
      'tables/t1/',
      ...Array.from({ length: 10 }, (_, i) => `tables/t1${i}/`),
    ]);
    expect((await store.list('', { delimiter: '/' })).prefixes).toEqual(['tables/']);
    let token: string | undefined;
    do {
      const page = await store.list('tables/', { delimiter: '/', limit: 7, ...(token ? { token } : {}) });
      token = page.nextToken;
    } while (token !== undefined);
    const read = new Set(readdirs);
    expect(read).toEqual(new Set([path.join(root, 'tables'), root]));
  });

  it('the recorder sees the store read: a listing without a delimiter reads every folder', async () => {
    await store.list('tables/');
    expect(readdirs).toContain(path.join(root, 'tables', 't7', 'wal'));
  });
});
