/**
 * The ObjectStore contract (object-store.ts), one body run against every implementation:
 * memory, fs (a real directory, fsync and link()), and S3 on a real Ceph RGW booted by the
 * test run (tests/helpers/global-setup.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClosedError, InvalidArgumentError } from '../core/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { FsStore } from './fs.js';
import { MemoryStore } from './memory.js';
import { type ListPage, listAll, type ObjectStore } from './object-store.js';
import { S3Store } from './s3.js';

const s3 = s3TestEnvOrSkipReason();

interface Implementation {
  name: string;
  skipReason: string | null;
  recordsWriteIds: boolean;
  open(): Promise<ObjectStore>;
  setUp?(): Promise<void>;
  tearDown?(): Promise<void>;
}

let fsBase = '';
let bucket = '';
const implementations: Implementation[] = [
  { name: 'memory', skipReason: null, recordsWriteIds: true, open: async () => new MemoryStore() },
  {
    name: 'fs',
    skipReason: null,
    recordsWriteIds: false,
    setUp: async () => {
      fsBase = await mkdtemp(path.join(tmpdir(), 'walship-contract-'));
    },
    tearDown: () => rm(fsBase, { recursive: true, force: true }),
    open: () => FsStore.open({ root: path.join(fsBase, randomUUID()) }),
  },
  {
    name: 's3 (Ceph RGW)',
    skipReason: s3.skipReason,
    recordsWriteIds: true,
    setUp: async () => {
      bucket = await createTestBucket(s3.env!, 'contract');
    },
    open: async () =>
      new S3Store({
        bucket,
        root: `cluster-${randomUUID()}`,
        endpoint: s3.env!.endpoint,
        region: s3.env!.region,
        accessKeyId: s3.env!.accessKeyId,
        secretAccessKey: s3.env!.secretAccessKey,
      }),
  },
];

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (body: Uint8Array) => new TextDecoder().decode(body);

async function content(store: ObjectStore, key: string): Promise<string | null> {
  const result = await store.get(key);
  if (result === null) return null;
  if (result.status !== 'ok') throw new Error('unexpected not-modified');
  return text(result.body);
}

describe.each(implementations)('ObjectStore contract: $name', (impl) => {
  const run = impl.skipReason === null;
  let store: ObjectStore;

  beforeAll(async () => {
    if (run) await impl.setUp?.();
  });
  afterAll(async () => {
    if (run) await impl.tearDown?.();
  });

  /** A fresh store (a fresh root) per test, closed afterwards. */
  function test(name: string, body: () => Promise<void>) {
    it.skipIf(!run)(name, async () => {
      store = await impl.open();
      try {
        await body();
      } finally {
        await store.close();
      }
    });
  }

  test('a missing key reads as null', async () => {
    expect(await store.get('no/such/key')).toBeNull();
    expect(await store.head('no/such/key')).toBeNull();
    expect(await store.get('no/such/key', { ifNoneMatch: 'x' })).toBeNull();
    expect(await store.get('no/such/key', { range: { offset: 0, length: 1 } })).toBeNull();
  });

  test('put then get returns the same bytes and metadata', async () => {
    const body = Uint8Array.from({ length: 256 }, (_, i) => i);
    const put = await store.put('a/b/c.bin', body);
    expect(put.status).toBe('written');
    const got = await store.get('a/b/c.bin');
    expect(got?.status).toBe('ok');
    if (got?.status !== 'ok' || put.status !== 'written') return;
    expect(Buffer.from(got.body).equals(Buffer.from(body))).toBe(true);
    expect(got.info).toMatchObject({ key: 'a/b/c.bin', sizeBytes: 256, etag: put.etag });
    expect(await store.head('a/b/c.bin')).toMatchObject({ key: 'a/b/c.bin', sizeBytes: 256, etag: put.etag });
  });

  test('an empty object and a 3 MiB object round-trip', async () => {
    await store.put('empty', new Uint8Array(0));
    expect(await content(store, 'empty')).toBe('');
    expect((await store.head('empty'))?.sizeBytes).toBe(0);
    const big = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
    await store.put('big', big);
    const got = await store.get('big');
    expect(got?.status === 'ok' && Buffer.from(got.body).equals(Buffer.from(big))).toBe(true);
  });

  test('a plain put overwrites and changes the ETag', async () => {
    const first = await store.put('k', bytes('one'));
    const second = await store.put('k', bytes('two'));
    expect(await content(store, 'k')).toBe('two');
    expect(first.status === 'written' && second.status === 'written' && first.etag !== second.etag).toBe(
      true,
    );
  });

  test('create-only writes once and refuses the second write', async () => {
    expect((await store.put('once', bytes('first'), { condition: { type: 'absent' } })).status).toBe(
      'written',
    );
    expect((await store.put('once', bytes('second'), { condition: { type: 'absent' } })).status).toBe(
      'precondition-failed',
    );
    expect(await content(store, 'once')).toBe('first');
  });

  test('twenty concurrent create-only writers on one key: exactly one wins', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.put('race', bytes(`writer-${i}`), { condition: { type: 'absent' } }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === 'written' ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(await content(store, 'race')).toBe(`writer-${winners[0]}`);
  });

  test('compare-and-swap accepts the current ETag and refuses a stale or missing one', async () => {
    const v1 = await store.put('cas', bytes('v1'));
    if (v1.status !== 'written') throw new Error('setup failed');
    const v2 = await store.put('cas', bytes('v2'), { condition: { type: 'match', etag: v1.etag } });
    expect(v2.status).toBe('written');
    expect(
      (await store.put('cas', bytes('v3'), { condition: { type: 'match', etag: v1.etag } })).status,
    ).toBe('precondition-failed');
    expect(await content(store, 'cas')).toBe('v2');
    const onMissing = await store.put('cas-missing', bytes('x'), {
      condition: { type: 'match', etag: v1.etag },
    });
    expect(onMissing.status).toBe('precondition-failed');
    expect(await store.head('cas-missing')).toBeNull();
  });

  test('ten concurrent compare-and-swaps from one ETag: exactly one wins', async () => {
    const base = await store.put('cas-race', bytes('base'));
    if (base.status !== 'written') throw new Error('setup failed');
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        store.put('cas-race', bytes(`writer-${i}`), { condition: { type: 'match', etag: base.etag } }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === 'written' ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(await content(store, 'cas-race')).toBe(`writer-${winners[0]}`);
  });

  test('range reads return exact bytes, cut at the end', async () => {
    await store.put('r', bytes('0123456789'));
    const read = async (offset: number, length: number) => {
      const result = await store.get('r', { range: { offset, length } });
      if (result?.status !== 'ok') throw new Error('expected a body');
      expect(result.info.sizeBytes).toBe(10);
      return text(result.body);
    };
    expect(await read(0, 10)).toBe('0123456789');
    expect(await read(3, 4)).toBe('3456');
    expect(await read(8, 100)).toBe('89');
    expect(await read(10, 5)).toBe('');
    expect(await read(50, 5)).toBe('');
    expect(await read(2, 0)).toBe('');
    await expect(store.get('r', { range: { offset: -1, length: 2 } })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  test('If-None-Match answers not-modified for the current ETag only', async () => {
    const v1 = await store.put('poll', bytes('v1'));
    if (v1.status !== 'written') throw new Error('setup failed');
    expect(await store.get('poll', { ifNoneMatch: v1.etag })).toEqual({ status: 'not-modified' });
    await store.put('poll', bytes('v2'));
    const changed = await store.get('poll', { ifNoneMatch: v1.etag });
    expect(changed?.status === 'ok' && text(changed.body)).toBe('v2');
  });

  test('keys with characters URIs and XML reserve are read, listed and found after start-after', async () => {
    const keys = ['k/a b', 'k/a+b', 'k/100%', 'k/a&b', 'k/a=b?c#d', 'k/"q"<x>', "k/~(x)!*'", 'k/é;,$@:'];
    for (const key of keys) await store.put(key, bytes(`of ${key}`));
    for (const key of keys) {
      expect(await content(store, key), key).toBe(`of ${key}`);
      expect((await store.head(key))?.sizeBytes, key).toBe(bytes(`of ${key}`).byteLength);
    }
    const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect((await store.list('k/')).objects.map((o) => o.key)).toEqual(expected);
    expect((await store.list('k/a', { startAfter: 'k/a b' })).objects.map((o) => o.key)).toEqual(
      expected.filter((k) => k.startsWith('k/a') && Buffer.compare(Buffer.from(k), Buffer.from('k/a b')) > 0),
    );
    expect((await store.list('k/a&')).objects.map((o) => o.key)).toEqual(['k/a&b']);
  });

  test('list returns keys in UTF-8 byte order, paged, after start-after', async () => {
    const keys = [
      't/a-b',
      't/a.b',
      't/a/b',
      't/a0',
      't/aB',
      't/a_b',
      't/é',
      't/z',
      't/\u{1F600}',
      't/\uFF5E',
    ];
    for (const key of [...keys].reverse()) await store.put(key, bytes(key));
    await store.put('u/other', bytes('x'));
    const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

    const all = await store.list('t/');
    expect(all.objects.map((o) => o.key)).toEqual(expected);
    expect(all.nextToken).toBeUndefined();
    expect(all.objects.find((o) => o.key === 't/z')?.sizeBytes).toBe(3);

    const paged: string[] = [];
    let token: string | undefined;
    do {
      const page = await store.list('t/', { limit: 3, ...(token === undefined ? {} : { token }) });
      expect(page.objects.length).toBeLessThanOrEqual(3);
      paged.push(...page.objects.map((o) => o.key));
      token = page.nextToken;
    } while (token !== undefined);
    expect(paged).toEqual(expected);

    const after = await store.list('t/', { startAfter: expected[4]! });
    expect(after.objects.map((o) => o.key)).toEqual(expected.slice(5));
    const collected: string[] = [];
    for await (const info of listAll(store, 't/a')) collected.push(info.key);
    expect(collected).toEqual(expected.filter((k) => k.startsWith('t/a')));
    expect((await store.list('')).objects.map((o) => o.key)).toEqual([...expected, 'u/other']);
    expect((await store.list('nothing/')).objects).toEqual([]);
  });

  test('a prefix may end in the middle of a segment', async () => {
    for (const key of ['w/0001.seg', 'w/0002.seg', 'w/0010.seg', 'w/0100/x', 'w/1000.seg']) {
      await store.put(key, bytes(key));
    }
    expect((await store.list('w/000')).objects.map((o) => o.key)).toEqual(['w/0001.seg', 'w/0002.seg']);
    expect((await store.list('w/01')).objects.map((o) => o.key)).toEqual(['w/0100/x']);
  });

  /** A root laid out as a cluster's: tables with folders, files beside them, one level up and down. */
  const LEVELS = [
    'cluster.json',
    'head.json',
    'tables/a/meta',
    'tables/a/staged/w/1/00000000000000000001.seg',
    'tables/a/wal/00000000000000000001.seg',
    'tables/a/wal/00000000000000000002.seg',
    'tables/a-b/wal/00000000000000000001.seg',
    'tables/a.b/x',
    'tables/a0',
    'tables/b/wal/00000000000000000001.seg',
    'tables/top',
  ];
  /** What a delimiter listing of `tables/` holds, in order: `-` and `.` sort before `/`, `0` after. */
  const TABLES_LEVEL = ['tables/a-b/', 'tables/a.b/', 'tables/a/', 'tables/a0', 'tables/b/', 'tables/top'];

  /** A page's keys and prefixes as one sequence in UTF-8 byte order. */
  const entriesOf = (page: ListPage) =>
    [...page.objects.map((o) => o.key), ...(page.prefixes ?? [])].sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );

  /** Every entry of a delimiter listing, page by page. */
  async function levelPages(prefix: string, options: { limit?: number; startAfter?: string } = {}) {
    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page = await store.list(prefix, {
        ...options,
        delimiter: '/',
        ...(token === undefined ? {} : { token }),
      });
      expect(page.prefixes, 'a delimiter listing always has prefixes').toBeDefined();
      pages.push(entriesOf(page));
      token = page.nextToken;
      expect(pages.length, 'paging did not end').toBeLessThanOrEqual(LEVELS.length + 1);
    } while (token !== undefined);
    return pages;
  }

  test('a delimiter listing rolls keys up into common prefixes, at the root and below', async () => {
    for (const key of LEVELS) await store.put(key, bytes(key));
    const root = await store.list('', { delimiter: '/' });
    expect(root.objects.map((o) => o.key)).toEqual(['cluster.json', 'head.json']);
    expect(root.prefixes).toEqual(['tables/']);
    expect(root.nextToken).toBeUndefined();

    const tables = await store.list('tables/', { delimiter: '/' });
    expect(tables.objects.map((o) => o.key)).toEqual(['tables/a0', 'tables/top']);
    expect(tables.objects.map((o) => o.sizeBytes)).toEqual(['tables/a0'.length, 'tables/top'.length]);
    expect(tables.prefixes).toEqual(['tables/a-b/', 'tables/a.b/', 'tables/a/', 'tables/b/']);
    expect(entriesOf(tables)).toEqual(TABLES_LEVEL);

    // A prefix with files of its own beside its folders; a folder of files only; mid-segment prefixes.
    const a = await store.list('tables/a/', { delimiter: '/' });
    expect(a.objects.map((o) => o.key)).toEqual(['tables/a/meta']);
    expect(a.prefixes).toEqual(['tables/a/staged/', 'tables/a/wal/']);
    const wal = await store.list('tables/a/wal/', { delimiter: '/' });
    expect(wal.objects.map((o) => o.key)).toEqual([
      'tables/a/wal/00000000000000000001.seg',
      'tables/a/wal/00000000000000000002.seg',
    ]);
    expect(wal.prefixes).toEqual([]);
    expect(entriesOf(await store.list('tables/a', { delimiter: '/' }))).toEqual(TABLES_LEVEL.slice(0, 4));
    expect(entriesOf(await store.list('tables/a/s', { delimiter: '/' }))).toEqual(['tables/a/staged/']);
    expect(entriesOf(await store.list('ta', { delimiter: '/' }))).toEqual(['tables/']);
    expect(await store.list('nothing/', { delimiter: '/' })).toEqual({ objects: [], prefixes: [] });
    // Without a delimiter nothing is rolled up and there are no prefixes.
    const flat = await store.list('tables/a/');
    expect(flat.prefixes).toBeUndefined();
    expect(flat.objects).toHaveLength(4);
  });

  test('a delimiter listing pages keys and prefixes together', async () => {
    for (const key of LEVELS) await store.put(key, bytes(key));
    for (const limit of [1, 2, 4]) {
      const pages = await levelPages('tables/', { limit });
      expect(pages.flat(), `limit ${limit}`).toEqual(TABLES_LEVEL);
      for (const page of pages) expect(page.length, `limit ${limit}`).toBeLessThanOrEqual(limit);
    }
    expect((await levelPages('tables/', { limit: 3, startAfter: 'tables/a.b/x' })).flat()).toEqual(
      TABLES_LEVEL.slice(2),
    );
  });

  test('start-after before, at, inside and after a common prefix', async () => {
    for (const key of LEVELS) await store.put(key, bytes(key));
    const listedAfter = async (startAfter: string) =>
      entriesOf(await store.list('tables/', { delimiter: '/', startAfter }));
    // Before: `tables/a` sorts before every entry that starts with it.
    expect(await listedAfter('tables/a')).toEqual(TABLES_LEVEL);
    expect(await listedAfter('tables/a-')).toEqual(TABLES_LEVEL);
    // At a prefix: everything below it is skipped.
    expect(await listedAfter('tables/a/')).toEqual(['tables/a0', 'tables/b/', 'tables/top']);
    // Inside a prefix, even with keys below it still to come: the prefix sorts before start-after,
    // so it is not listed again (S3 and Ceph RGW), and `tables/a0` right after it is.
    expect(await listedAfter('tables/a/meta')).toEqual(['tables/a0', 'tables/b/', 'tables/top']);
    expect(await listedAfter('tables/a/wal/00000000000000000001.seg')).toEqual([
      'tables/a0',
      'tables/b/',
      'tables/top',
    ]);
    expect(await listedAfter('tables/a.b/x')).toEqual(TABLES_LEVEL.slice(2));
    // After: at a key, between entries, past the end.
    expect(await listedAfter('tables/a0')).toEqual(['tables/b/', 'tables/top']);
    expect(await listedAfter('tables/a00')).toEqual(['tables/b/', 'tables/top']);
    expect(await listedAfter('tables/u')).toEqual([]);
  });

  test('a common prefix whose keys are all deleted is no longer listed', async () => {
    for (const key of ['gone/x/1', 'gone/x/deep/2', 'gone/y/1', 'stay']) await store.put(key, bytes(key));
    await store.delete('gone/x/1');
    expect(entriesOf(await store.list('gone/', { delimiter: '/' }))).toEqual(['gone/x/', 'gone/y/']);
    await store.deleteMany(['gone/x/deep/2']);
    expect(entriesOf(await store.list('gone/', { delimiter: '/' }))).toEqual(['gone/y/']);
    await store.deleteMany(['gone/y/1', 'gone/y/never-existed']);
    expect(entriesOf(await store.list('', { delimiter: '/' }))).toEqual(['stay']);
    // And the folder comes back with a key.
    await store.put('gone/x/3', bytes('x'), { condition: { type: 'absent' } });
    expect(entriesOf(await store.list('', { delimiter: '/' }))).toEqual(['gone/', 'stay']);
  });

  test('a delimiter other than / is refused', async () => {
    for (const delimiter of ['|', '', '//', 'a']) {
      await expect(store.list('t/', { delimiter: delimiter as '/' }), delimiter).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
    }
  });

  test('delete and delete-many are idempotent', async () => {
    for (const key of ['d/1', 'd/2', 'd/3']) await store.put(key, bytes(key));
    await store.delete('d/1');
    await store.delete('d/1');
    await store.delete('d/never');
    await store.deleteMany(['d/2', 'd/3', 'd/missing']);
    await store.deleteMany([]);
    expect((await store.list('d/')).objects).toEqual([]);
    expect(await store.get('d/2')).toBeNull();
    await expect(store.deleteMany(Array.from({ length: 1001 }, (_, i) => `x/${i}`))).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  test('unsafe keys are refused before anything is written', async () => {
    const bad = [
      '',
      '/abs',
      '../up',
      'a/../../up',
      'a//b',
      'a/./b',
      'trailing/',
      '.walship/x',
      'nul\0',
      'back\\slash',
    ];
    for (const key of bad) {
      await expect(store.put(key, bytes('x')), key).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(store.get(key), key).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(store.put('x'.repeat(1025), bytes('x'))).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(store.list('../')).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await store.list('')).objects).toEqual([]);
  });

  test(`write ids are ${impl.recordsWriteIds ? '' : 'not '}recorded`, async () => {
    const writeId = `w-${randomUUID()}`;
    const put = await store.put('ided', bytes('x'), { condition: { type: 'absent' }, writeId });
    expect(put.status).toBe('written');
    const info = await store.head('ided');
    expect(info?.writeId).toBe(impl.recordsWriteIds ? writeId : undefined);
    await expect(store.put('ided2', bytes('x'), { writeId: 'has space' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  test('a closed store refuses calls', async () => {
    await store.close();
    await expect(store.get('k')).rejects.toBeInstanceOf(ClosedError);
    await expect(store.put('k', bytes('x'))).rejects.toBeInstanceOf(ClosedError);
  });
});

describe('fs store specifics', () => {
  let base = '';
  beforeAll(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'walship-fs-'));
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  it('keeps objects as plain files under the root and leaves no temp or lock files behind', async () => {
    const root = path.join(base, 'plain');
    const store = await FsStore.open({ root });
    await store.put('tables/t/wal/1.seg', bytes('seg'), { condition: { type: 'absent' } });
    const v = await store.put('head.json', bytes('{}'));
    if (v.status !== 'written') throw new Error('setup failed');
    await store.put('head.json', bytes('{"a":1}'), { condition: { type: 'match', etag: v.etag } });
    expect(await readdir(path.join(root, 'tables/t/wal'))).toEqual(['1.seg']);
    expect(await readdir(path.join(root, '.walship/tmp'))).toEqual([]);
    expect(await readdir(path.join(root, '.walship/locks'))).toEqual([]);
    expect((await store.list('')).objects.map((o) => o.key)).toEqual(['head.json', 'tables/t/wal/1.seg']);
  });

  it('removes the directories a delete leaves empty, and no others', async () => {
    const root = path.join(base, 'prune');
    const store = await FsStore.open({ root });
    for (const key of ['tables/t/wal/1.seg', 'tables/t/wal/2.seg', 'tables/t/meta', 'tables/u/wal/1.seg']) {
      await store.put(key, bytes(key));
    }
    await store.deleteMany(['tables/t/wal/1.seg']);
    expect(await readdir(path.join(root, 'tables/t/wal'))).toEqual(['2.seg']);
    await store.delete('tables/t/wal/2.seg');
    expect(await readdir(path.join(root, 'tables/t'))).toEqual(['meta']);
    await store.deleteMany(['tables/t/meta', 'tables/u/wal/1.seg']);
    expect(await readdir(root)).toEqual(['.walship']);
    // A delete of a missing key prunes too: a retry after a crash between unlink and rmdir heals.
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.join(root, 'tables/v/wal'), { recursive: true });
    expect((await store.list('tables/', { delimiter: '/' })).prefixes).toEqual(['tables/v/']);
    await store.delete('tables/v/wal/1.seg');
    expect(await readdir(root)).toEqual(['.walship']);
  });

  it('puts racing deletes that prune their directory all land (the directory is created again)', async () => {
    const store = await FsStore.open({ root: path.join(base, 'prune-race') });
    const WRITERS = 8;
    const ROUNDS = 40;
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        for (let round = 0; round < ROUNDS; round++) {
          const key = `tables/t/staged/w/${writer}-${round}.seg`;
          const condition = round % 2 === 0 ? { type: 'absent' as const } : { type: 'none' as const };
          expect((await store.put(key, bytes(key), { condition })).status).toBe('written');
          expect(await content(store, key)).toBe(key);
          await store.delete(key);
        }
      }),
    );
    expect(await store.list('', { delimiter: '/' })).toEqual({ objects: [], prefixes: [] });
  });

  it("puts land after another store's deletes pruned the directory this one remembers", async () => {
    // Two stores on one root, as two nodes on one NFS export: B's prunes are unknown to A, whose
    // memory of the directory (#ensureParentDir) is then stale; its publish finds ENOENT and
    // makes the directory anew.
    const root = path.join(base, 'prune-other');
    const [a, b] = [await FsStore.open({ root }), await FsStore.open({ root })];
    for (let round = 0; round < 20; round++) {
      const key = `tables/t/wal/${round}.seg`;
      const condition = round % 2 === 0 ? { type: 'absent' as const } : { type: 'none' as const };
      expect((await a.put(key, bytes(key), { condition })).status).toBe('written');
      expect(await content(b, key)).toBe(key);
      await b.delete(key);
      expect(await b.list('tables/', { delimiter: '/' })).toEqual({ objects: [], prefixes: [] });
    }
  });

  it('uses atomic_write_dir for temp files when given', async () => {
    const root = path.join(base, 'with-scratch/final');
    const scratch = path.join(base, 'with-scratch/scratch');
    const store = await FsStore.open({ root, atomicWriteDir: scratch });
    await store.put('k', bytes('v'), { condition: { type: 'absent' } });
    expect(await content(store, 'k')).toBe('v');
    expect(await readdir(scratch)).toEqual([]);
    expect(store.description).toContain('atomic_write_dir=');
  });

  it('refuses a key whose directory part is an existing object', async () => {
    const store = await FsStore.open({ root: path.join(base, 'conflict') });
    await store.put('a', bytes('file'));
    await expect(store.put('a/b', bytes('x'))).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('times out waiting for a fresh lock and breaks a stale one', async () => {
    const root = path.join(base, 'locks');
    const store = await FsStore.open({ root, lockWaitMs: 100, lockStaleMs: 60_000 });
    const lockFile = path.join(root, '.walship/locks', `${Buffer.from('k').toString('base64url')}.lock`);
    const { writeFile, utimes } = await import('node:fs/promises');
    await writeFile(lockFile, 'held by a writer that is still alive');
    await expect(store.put('k', bytes('v'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const longAgo = new Date(Date.now() - 120_000);
    await utimes(lockFile, longAgo, longAgo);
    expect((await store.put('k', bytes('v'))).status).toBe('written');
    expect(await content(store, 'k')).toBe('v');
  });

  it('breaks at once a fresh lock whose owner on this host is gone; waits for a live or unknown one', async () => {
    const root = path.join(base, 'owned-locks');
    const store = await FsStore.open({ root, lockWaitMs: 200, lockStaleMs: 60_000 });
    const lockFile = path.join(root, '.walship/locks', `${Buffer.from('k').toString('base64url')}.lock`);
    const { writeFile } = await import('node:fs/promises');
    const { hostname } = await import('node:os');
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', '']);
    const deadPid = await new Promise<number>((resolve) => child.once('exit', () => resolve(child.pid!)));
    for (const holder of [`${hostname()} ${process.pid}\n`, `another-host ${deadPid}\n`, '']) {
      await writeFile(lockFile, holder);
      await expect(store.put('k', bytes('x')), JSON.stringify(holder)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
    }
    await writeFile(lockFile, `${hostname()} ${deadPid}\n`);
    expect((await store.put('k', bytes('v'))).status).toBe('written');
    expect(await content(store, 'k')).toBe('v');
  });
});
