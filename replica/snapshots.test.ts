import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Clock, isWalshipError, seededRandom, systemClock, type WalshipError } from '../core/index.js';
import {
  encodeSnapshotManifest,
  listSnapshots,
  newestSnapshot,
  readSnapshotManifest,
  type SnapshotManifest,
  snapshotId,
  snapshotIdOfManifestKey,
  snapshotImageKey,
  snapshotManifestKey,
  type UnreadableSnapshot,
} from '../layout/index.js';
import { FsStore, MemoryStore, type ObjectStore, S3Store, withFaults } from '../objectstore/index.js';
import { TableStore } from '../table/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { type ColumnData, DESIGNATED_TIMESTAMP_COLUMN, type TxnRecord } from '../wal/index.js';
import { notesTxn } from '../wal/testing/notes-txn.js';
import { randomTxns } from '../wal/testing/random-txns.js';
import { publishSnapshot, restoreSnapshot } from './snapshots.js';

const s3 = s3TestEnvOrSkipReason();
const T0 = 1_700_000_000_000_000n;
const MS0 = 1_750_000_000_000;
const CLUSTER = 'cluster-1';

let dir: string;
let tmp: string;
const opened: TableStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-snapshots-'));
  tmp = path.join(dir, 'tmp');
  await mkdir(tmp);
  await mkdir(path.join(dir, 'restored'));
});

afterEach(async () => {
  for (const store of opened.splice(0)) store.close();
  await rm(dir, { recursive: true, force: true });
});

function clockAt(wallMs: number): Clock {
  return { ...systemClock, wallMs: () => wallMs };
}

function openTables(file: string, options: Parameters<typeof TableStore.open>[1] = {}): TableStore {
  const tables = TableStore.open(file, options);
  opened.push(tables);
  return tables;
}

/** Seeded random txns of one table from txn 1, each data txn given a non-null designated timestamp. */
function fuzzTxns(seed: number, txnCount: number): TxnRecord[] {
  const txns = randomTxns(seededRandom(seed), { txnFirst: 1n, txnCount });
  return txns.map((txn) => {
    if (txn.rowCount === 0) return txn;
    const others = txn.columns.filter((c) => c.name !== DESIGNATED_TIMESTAMP_COLUMN);
    const timestamp: ColumnData = {
      name: DESIGNATED_TIMESTAMP_COLUMN,
      addedInTxn: false,
      nulls: null,
      data: {
        type: 'timestamp',
        values: BigInt64Array.from({ length: txn.rowCount }, (_, i) => T0 + BigInt(i)),
      },
    };
    return { ...txn, columns: [timestamp, ...others] };
  });
}

/**
 * A primary's table store: three tables of seeded random txns, the last two of each still in the
 * pending queue (uploaded watermark behind), node facts, and a table fact.
 */
function primaryTables(file = path.join(dir, 'primary.sqlite')): TableStore {
  const tables = openTables(file);
  for (const [name, seed] of [
    ['Trades', 1],
    ['quotes', 2],
    ['日本', 3],
  ] as const) {
    const txns = fuzzTxns(seed, 6);
    for (const txn of txns) {
      tables.applyTxn(name, txn);
      tables.enqueuePending(name, txn.txn, new TextEncoder().encode(`record ${txn.txn}`));
    }
    tables.setUploadedTxn(name, 4n);
    tables.dropPendingThrough(name, 4n);
  }
  tables.setMeta('node.id', 'node-a');
  tables.setMeta('cluster.id', CLUSTER);
  tables.setMeta('epoch', '3');
  tables.setMeta('claim.id', 'claim-1');
  tables.setMeta('table.epoch.trades', '3');
  return tables;
}

function publish(
  store: ObjectStore,
  tables: TableStore,
  options: { wallMs?: number; nodeId?: string; clusterId?: string } = {},
): Promise<SnapshotManifest> {
  return publishSnapshot({
    store,
    tables,
    clusterId: options.clusterId ?? CLUSTER,
    nodeId: options.nodeId ?? 'node-a',
    clock: clockAt(options.wallMs ?? MS0),
    tmpDir: tmp,
  });
}

const restoredFile = () => path.join(dir, 'restored', 'tables.sqlite');

function restore(store: ObjectStore, manifest: SnapshotManifest): Promise<void> {
  return restoreSnapshot({ store, manifest, destFile: restoredFile(), tmpDir: tmp });
}

function rowsOf(file: string, table: string): unknown[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).safeIntegers(true).all();
  } finally {
    db.close();
  }
}

/** The restored store holds the source's tables, schemas and rows, and none of its node-local state. */
function expectRestoredCopyOf(source: TableStore): void {
  const restored = openTables(restoredFile());
  expect(restored.schemas()).toEqual(source.schemas());
  expect(restored.schemas().length).toBe(3);
  for (const { name } of source.schemas()) {
    expect(restored.lastTxn(name)).toBe(source.lastTxn(name));
    expect(restored.uploadedTxn(name)).toBe(source.lastTxn(name));
    const rows = rowsOf(restoredFile(), name);
    expect(rows).toEqual(rowsOf(source.file, name));
    expect(rows.length).toBeGreaterThan(0);
  }
  expect(restored.pendingSummary()).toEqual([]);
  for (const key of ['node.id', 'cluster.id', 'epoch', 'claim.id'])
    expect(restored.getMeta(key)).toBeUndefined();
  expect(restored.getMeta('table.epoch.trades')).toBe('3');
}

async function objectBytes(store: ObjectStore, key: string): Promise<Uint8Array> {
  const result = await store.get(key);
  if (result?.status !== 'ok') throw new Error(`no object ${key}`);
  return result.body;
}

async function expectCorrupt(promise: Promise<unknown>, message: RegExp): Promise<WalshipError> {
  const error = await promise.then(
    () => {
      throw new Error('expected SNAPSHOT_CORRUPT, the call succeeded');
    },
    (e: unknown) => e,
  );
  expect(isWalshipError(error, 'SNAPSHOT_CORRUPT')).toBe(true);
  const walship = error as WalshipError;
  expect(walship.kind).toBe('data');
  expect(walship.message).toMatch(message);
  return walship;
}

/** Nothing of a failed restore is left: no target file, no temp files. */
function expectNothingRestored(): void {
  expect(existsSync(restoredFile())).toBe(false);
  expect(readdirSync(tmp)).toEqual([]);
}

// --- the round trip, on every store ---

interface Backend {
  name: string;
  skip: boolean;
  open(): Promise<ObjectStore>;
}

const backends: Backend[] = [
  { name: 'memory', skip: false, open: async () => new MemoryStore() },
  { name: 'fs', skip: false, open: () => FsStore.open({ root: path.join(dir, 'store') }) },
  {
    name: 's3 (Ceph RGW)',
    skip: s3.env === null,
    open: async () =>
      new S3Store({
        bucket: await createTestBucket(s3.env!, 'snapshots'),
        root: `cluster-${randomUUID()}`,
        endpoint: s3.env!.endpoint,
        region: s3.env!.region,
        accessKeyId: s3.env!.accessKeyId,
        secretAccessKey: s3.env!.secretAccessKey,
      }),
  },
];

for (const backend of backends) {
  describe.skipIf(backend.skip)(`snapshot round trip on ${backend.name}`, () => {
    it('publishes a manifest and a gzip image, and restores an equal store without node-local state', async () => {
      const store = await backend.open();
      try {
        const source = primaryTables();
        const manifest = await publish(store, source);

        expect(manifest).toMatchObject({ format: 1, clusterId: CLUSTER, nodeId: 'node-a' });
        expect(manifest.id).toBe(snapshotId(MS0, 'node-a'));
        expect(manifest.createdAt).toBe(new Date(MS0).toISOString());
        expect(manifest.tables).toEqual(
          source
            .schemas()
            .map((s) => ({ name: s.name, key: s.key, lastTxn: 6n }))
            .sort((a, b) => (a.key < b.key ? -1 : 1)),
        );
        const image = await objectBytes(store, snapshotImageKey(manifest.id, 'gzip'));
        expect(manifest.image.key).toBe(snapshotImageKey(manifest.id, 'gzip'));
        expect(image.byteLength).toBe(manifest.image.bytes);
        expect(createHash('sha256').update(image).digest('hex')).toBe(manifest.image.sha256);
        expect(gunzipSync(image).byteLength).toBe(manifest.image.rawBytes);
        const stored = JSON.parse(
          new TextDecoder().decode(await objectBytes(store, snapshotManifestKey(manifest.id))),
        );
        expect(stored.tables[0].lastTxn).toBe('6');
        expect(await readSnapshotManifest(store, snapshotManifestKey(manifest.id))).toEqual(manifest);
        expect(readdirSync(tmp)).toEqual([]);

        await restore(store, manifest);
        expectRestoredCopyOf(source);
        expect(readdirSync(tmp)).toEqual([]);
        // The source keeps what is its own.
        expect(source.getMeta('claim.id')).toBe('claim-1');
        expect(source.pendingSummary().length).toBe(3);
      } finally {
        await store.close();
      }
    });
  });
}

// --- damaged snapshots ---

describe('restoreSnapshot refuses damaged snapshots', () => {
  let store: MemoryStore;
  let manifest: SnapshotManifest;
  beforeEach(async () => {
    store = new MemoryStore();
    manifest = await publish(store, primaryTables());
  });

  async function rewrite(key: string, change: (bytes: Uint8Array) => Uint8Array): Promise<void> {
    await store.put(key, change(await objectBytes(store, key)));
  }

  it('an image with a flipped byte: SNAPSHOT_CORRUPT after a second download, nothing left behind', async () => {
    await rewrite(manifest.image.key, (bytes) => {
      const copy = Uint8Array.from(bytes);
      copy[copy.length >> 1]! ^= 0x01;
      return copy;
    });
    await expectCorrupt(restore(store, manifest), /SHA-256 .* \(after 2 downloads\)/);
    expectNothingRestored();
  });

  it('an image read corrupted once: the second download restores it', async () => {
    const faulty = withFaults(store, [
      { fault: { type: 'corrupt-read' }, operations: ['get'], keyPrefix: manifest.image.key, times: 1 },
    ]);
    await restore(faulty, manifest);
    expect(faulty.injected['corrupt-read']).toBe(1);
    expect(openTables(restoredFile()).lastTxn('trades')).toBe(6n);
  });

  it('an image of another size, and a manifest without its image', async () => {
    await rewrite(manifest.image.key, (bytes) => bytes.subarray(0, bytes.length - 1));
    await expectCorrupt(restore(store, manifest), /has \d+ bytes, the manifest says/);
    expectNothingRestored();
    await store.delete(manifest.image.key);
    await expectCorrupt(restore(store, manifest), /image .*db\.sqlite\.gzip is missing/);
    expectNothingRestored();
  });

  it('an image that unpacks to more bytes than the manifest says', async () => {
    const key = snapshotManifestKey(manifest.id);
    const lying = { ...manifest, image: { ...manifest.image, rawBytes: manifest.image.rawBytes - 1 } };
    await store.put(key, encodeSnapshotManifest(lying));
    await expectCorrupt(restore(store, lying), /unpacks to more than/);
    expectNothingRestored();
  });

  it('an image whose watermarks differ from the manifest', async () => {
    const [first, ...rest] = manifest.tables;
    const lying = { ...manifest, tables: [{ ...first!, lastTxn: 5n }, ...rest] };
    await expectCorrupt(restore(store, lying), new RegExp(`snapshot ${manifest.id} .*watermarks check`));
    expectNothingRestored();
  });

  it('a manifest whose image key points elsewhere is refused before anything is read', async () => {
    const gets: string[] = [];
    const spy: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      get: (key: string, options?: Parameters<ObjectStore['get']>[1]) => {
        gets.push(key);
        return store.get(key, options);
      },
    });
    const elsewhere = { ...manifest, image: { ...manifest.image, key: 'tables/trades/wal/x.seg' } };
    await expectCorrupt(restore(spy, elsewhere), /image key "tables\/trades\/wal\/x\.seg" is not/);
    expect(gets).toEqual([]);
  });

  it('an existing target (or a journal beside it) is refused before the download, and left alone', async () => {
    const gets: string[] = [];
    const spy: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      get: (key: string, options?: Parameters<ObjectStore['get']>[1]) => {
        gets.push(key);
        return store.get(key, options);
      },
    });
    for (const suffix of ['', '-wal', '-journal']) {
      const file = `${restoredFile()}${suffix}`;
      writeFileSync(file, 'keep me');
      const error = await restore(spy, manifest).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', kind: 'invalid' });
      expect((error as Error).message).toContain(JSON.stringify(file));
      await rm(file);
    }
    expect(gets).toEqual([]);
    expect(readdirSync(path.dirname(restoredFile()))).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe('a large image', () => {
  it('is downloaded in several ranges and restored', async () => {
    const tables = openTables(path.join(dir, 'primary.sqlite'));
    // 12 MB of base64 text compresses to ~9 MB: more than one 8 MiB range.
    const notes = Array.from({ length: 96 }, () => randomBytes(96 * 1024).toString('base64'));
    tables.applyTxn('blobs', notesTxn(1n, notes, T0));
    const store = new MemoryStore();
    const manifest = await publish(store, tables);
    expect(manifest.image.bytes).toBeGreaterThan(8 * 1024 * 1024);
    const ranges: number[] = [];
    const spy: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      get: (key: string, options?: Parameters<ObjectStore['get']>[1]) => {
        if (key === manifest.image.key) ranges.push(options?.range?.offset ?? -1);
        return store.get(key, options);
      },
    });
    await restore(spy, manifest);
    expect(ranges).toEqual([0, 8 * 1024 * 1024]);
    expect(rowsOf(restoredFile(), 'blobs')).toEqual(rowsOf(tables.file, 'blobs'));
  });
});

// --- manifests ---

describe('malformed manifests', () => {
  let store: MemoryStore;
  let valid: Record<string, unknown>;
  const id = snapshotId(MS0 + 1, 'node-x');
  const key = snapshotManifestKey(id);

  beforeEach(async () => {
    store = new MemoryStore();
    const manifest = await publish(store, primaryTables(), { wallMs: MS0 + 1, nodeId: 'node-x' });
    valid = JSON.parse(new TextDecoder().decode(encodeSnapshotManifest(manifest)));
  });

  const image = (patch: Record<string, unknown>) => (m: Record<string, unknown>) => ({
    ...m,
    image: { ...(m.image as object), ...patch },
  });
  const tables = (patch: Record<string, unknown>) => (m: Record<string, unknown>) => ({
    ...m,
    tables: [{ ...(m.tables as object[])[0], ...patch }, ...(m.tables as object[]).slice(1)],
  });
  const cases: [string, (m: Record<string, unknown>) => unknown, RegExp][] = [
    ['another format', (m) => ({ ...m, format: 2 }), /format 2 is not 1/],
    ['an id of another snapshot', (m) => ({ ...m, id: snapshotId(MS0, 'node-x') }), /does not match its key/],
    ['a node that is not the id', (m) => ({ ...m, nodeId: 'node-y' }), /nodeId "node-y"/],
    ['no cluster id', (m) => ({ ...m, clusterId: '' }), /clusterId/],
    ['no date', (m) => ({ ...m, createdAt: 'yesterday' }), /createdAt/],
    ['no image', (m) => ({ ...m, image: undefined }), /image is not an object/],
    ['an image key elsewhere', image({ key: 'cluster.json' }), /image key "cluster\.json"/],
    ['another codec', image({ codec: 'zstd' }), /codec "zstd"/],
    ['a bad checksum', image({ sha256: 'abc' }), /sha256 "abc"/],
    ['a size of zero', image({ bytes: 0 }), /image size 0/],
    ['a txn as a number', tables({ lastTxn: 6 }), /lastTxn 6/],
    ['a txn past int64', tables({ lastTxn: '9223372036854775808' }), /lastTxn "9223372036854775808"/],
    ['a key that is not the name', tables({ key: 'other' }), /do not go together/],
    [
      'a table twice',
      (m) => ({ ...m, tables: [...(m.tables as object[]), (m.tables as object[])[0]] }),
      /twice/,
    ],
    ['an array', () => [], /not a JSON object/],
  ];

  it.each(cases)('%s: SNAPSHOT_CORRUPT naming the key', async (_name, change, message) => {
    await store.put(key, new TextEncoder().encode(JSON.stringify(change(valid))));
    const error = await expectCorrupt(readSnapshotManifest(store, key), message);
    expect(error.message).toContain(key);
  });

  it('text that is not JSON, and bytes that are not UTF-8', async () => {
    await store.put(key, new TextEncoder().encode('{"format": 1,'));
    await expectCorrupt(readSnapshotManifest(store, key), /not UTF-8 JSON/);
    await store.put(key, Uint8Array.of(0x7b, 0xff, 0x7d));
    await expectCorrupt(readSnapshotManifest(store, key), /not UTF-8 JSON/);
  });

  it('the unchanged manifest reads back (the cases above change one thing each)', async () => {
    await store.put(key, new TextEncoder().encode(JSON.stringify(valid)));
    expect((await readSnapshotManifest(store, key))?.id).toBe(id);
  });
});

describe('listing', () => {
  it('lists newest first and reports unreadable manifests alongside', async () => {
    const store = new MemoryStore();
    const tables = primaryTables();
    const a = await publish(store, tables, { wallMs: MS0 + 1000, nodeId: 'node-a' });
    const c = await publish(store, tables, { wallMs: MS0 + 3000, nodeId: 'node-a' });
    const b = await publish(store, tables, { wallMs: MS0 + 2000, nodeId: 'node-b' });
    const broken = snapshotManifestKey(snapshotId(MS0 + 2500, 'node-z'));
    await store.put(broken, new TextEncoder().encode('not json'));
    // An image without a manifest (a publisher that died half way) is not a snapshot.
    await store.put(snapshotImageKey(snapshotId(MS0 + 4000, 'node-a'), 'gzip'), new Uint8Array(10));

    const listing = await listSnapshots(store);
    expect(listing.manifests.map((m) => m.id)).toEqual([c.id, b.id, a.id]);
    expect(listing.unreadable.map((u) => u.key)).toEqual([broken]);
    expect(listing.unreadable[0]!.error).toMatchObject({ code: 'SNAPSHOT_CORRUPT' });
    expect((await listSnapshots(store, { limit: 2 })).manifests.map((m) => m.id)).toEqual([c.id]);
    expect((await listSnapshots(new MemoryStore())).manifests).toEqual([]);
  });

  it('newestSnapshot picks the newest of the given cluster, skipping unreadable ones', async () => {
    const store = new MemoryStore();
    const tables = primaryTables();
    const mine = await publish(store, tables, { wallMs: MS0 + 1000 });
    await publish(store, tables, { wallMs: MS0 + 2000, clusterId: 'cluster-2' });
    const broken = snapshotManifestKey(snapshotId(MS0 + 3000, 'node-a'));
    await store.put(broken, new TextEncoder().encode('[]'));

    const skipped: UnreadableSnapshot[] = [];
    const newest = await newestSnapshot(store, CLUSTER, { onUnreadable: (u) => skipped.push(u) });
    expect(newest).toEqual(mine);
    expect(skipped.map((u) => u.key)).toEqual([broken]);
    expect((await newestSnapshot(store, 'cluster-2'))?.clusterId).toBe('cluster-2');
    expect(await newestSnapshot(store, 'cluster-3')).toBeNull();
  });
});

// --- publishing ---

describe('publishSnapshot', () => {
  it('refuses a snapshot id that is taken, and leaves the existing snapshot intact', async () => {
    const store = new MemoryStore();
    const tables = primaryTables();
    const first = await publish(store, tables);
    tables.applyTxn('trades', { txn: 7n, commitTimeUs: T0, kind: 'fence', rowCount: 0, columns: [] });
    const error = await publish(store, tables).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SNAPSHOT_EXISTS', kind: 'conflict' });
    expect(readdirSync(tmp)).toEqual([]);
    await restore(store, first);
    expect(openTables(restoredFile()).lastTxn('trades')).toBe(6n);
  });

  it('refuses an image above the size bound and uploads nothing', async () => {
    const store = new MemoryStore();
    const error = await publishSnapshot({
      store,
      tables: primaryTables(),
      clusterId: CLUSTER,
      nodeId: 'node-a',
      clock: clockAt(MS0),
      tmpDir: tmp,
      imageBytesMax: 1024,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SNAPSHOT_TOO_LARGE', kind: 'invalid' });
    expect((await store.list('')).objects).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('refuses node ids that cannot name a snapshot', async () => {
    const store = new MemoryStore();
    const tables = primaryTables();
    for (const nodeId of ['a/b', '..', 'node a', '']) {
      const error = await publish(store, tables, { nodeId }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect((await store.list('')).objects).toEqual([]);
  });
});

describe('snapshot keys (layout/keys.ts)', () => {
  it('ids sort by time, and only well-formed manifest keys name a snapshot', () => {
    const early = snapshotId(999, 'node-b');
    const late = snapshotId(1000, 'node-a');
    expect(early < late).toBe(true);
    expect(snapshotManifestKey(late)).toBe(`snapshots/${late}/manifest.json`);
    expect(snapshotImageKey(late, 'gzip')).toBe(`snapshots/${late}/db.sqlite.gzip`);
    expect(snapshotIdOfManifestKey(snapshotManifestKey(late))).toBe(late);
    for (const key of [
      snapshotImageKey(late, 'gzip'),
      'snapshots/1000-node-a/manifest.json',
      `snapshots/${late}/x/manifest.json`,
      'snapshots/00000000000000001000-a..b/manifest.json',
    ]) {
      expect(snapshotIdOfManifestKey(key)).toBeUndefined();
    }
    expect(() => snapshotManifestKey('00000000000000001000-a/b')).toThrow(/not a snapshot id/);
    expect(() => snapshotImageKey(late, '../x')).toThrow(/codec/);
    expect(() => snapshotId(-1, 'node-a')).toThrow(/non-negative/);
  });
});
