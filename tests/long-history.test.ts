/**
 * Issue 15 deliver 3: a table with ≥ 100 000 segments is followed, listed (start-after paging) and
 * restored without listing it whole on every round. One table's WAL history is N single-txn
 * segments, on the filesystem store (real files, as a primary leaves them) and on the memory store.
 * Asserted, with every request counted by a wrapper around the store:
 * 1. a fresh Follower applies all N txns in order with the right rows, GETs each segment once, and
 *    LISTs the table's `wal/` in pages that start after its watermark: at most ⌈N/1000⌉ + 2 LISTs;
 * 2. once caught up, a round that applies one more segment makes at most 2 LISTs of that table, each
 *    starting after the applied watermark;
 * 3. restoreToPoint to txn N/2 gives the table as it was there, with at most ⌈(N/2)/1000⌉ + 2 LISTs.
 *
 * The 100 000-segment history takes minutes: it runs with WALSHIP_SOAK=1 (`npm run soak`).
 * Always on: the same tests with 5 000 segments (five pages).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../core/index.js';
import {
  CLUSTER_KEY,
  encodeClusterRecord,
  encodeHead,
  HEAD_KEY,
  segmentKey,
  segmentPrefix,
} from '../layout/index.js';
import { RESTORED_DATABASE_FILE, restoreToPoint } from '../maintenance/index.js';
import {
  FsStore,
  type GetOptions,
  type ListOptions,
  MemoryStore,
  type ObjectStore,
} from '../objectstore/index.js';
import { FOLLOWER_LIMITS, Follower } from '../replica/index.js';
import { TableStore, tableKey } from '../table/index.js';
import { encodeSegment, type TxnRecord } from '../wal/index.js';

const SOAK = process.env.WALSHIP_SOAK === '1';
if (!SOAK)
  console.log('[long-history] the 100 000-segment history runs with WALSHIP_SOAK=1; running 5 000 segments');

/** Segments (one txn, one row each) in the table's history: the "≥ 100 000", or the always-on variant. */
const SEGMENTS = SOAK ? 100_000 : 5_000;
/** The txn the restore targets: the middle of the history, a segment boundary. */
const RESTORE_TXN = SEGMENTS / 2;
/** Segment keys of one LIST page (the follower's batch; the restore uses the same, S3's page maximum). */
const PAGE_KEYS = FOLLOWER_LIMITS.listBatchKeys;
/** Segments encoded and written at once while the history is built. */
const WRITE_BATCH = 64;
/** The test's own bound (not an assertion on speed): building, following and restoring N segments on a loaded machine. */
const TEST_TIMEOUT_MS = SOAK ? 3_600_000 : 120_000;
const TABLE = 'history';
const KEY = tableKey(TABLE);
const WAL_PREFIX = segmentPrefix(KEY);
const T0_US = 1_700_000_000_000_000n;
const log = pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' });

// --- the history, as a primary would have written it ---

/** The one value txn `txn` writes in column `v`. */
function vOfTxn(txn: bigint): bigint {
  return txn * 7n + 3n;
}

/** Txn `txn`: one row, the designated timestamp and `v`. */
function txnRecord(txn: bigint): TxnRecord {
  return {
    txn,
    commitTimeUs: T0_US + txn,
    kind: 'data',
    rowCount: 1,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.of(T0_US + txn * 1000n) },
      },
      {
        name: 'v',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'long', values: BigInt64Array.of(vOfTxn(txn)) },
      },
    ],
  };
}

/** Writes the single-txn segments of txns first..last, WRITE_BATCH at a time, create-only as the uploader does. */
async function putSegments(store: ObjectStore, first: number, last: number): Promise<void> {
  for (let batchFirst = first; batchFirst <= last; batchFirst += WRITE_BATCH) {
    const batchLast = Math.min(last, batchFirst + WRITE_BATCH - 1);
    const writes: Promise<void>[] = [];
    for (let n = batchFirst; n <= batchLast; n++) {
      const txn = BigInt(n);
      writes.push(
        (async () => {
          const bytes = await encodeSegment({
            tableName: TABLE,
            epoch: 1n,
            writerNodeId: 'primary-1',
            txns: [txnRecord(txn)],
          });
          const put = await store.put(segmentKey(KEY, txn), bytes, { condition: { type: 'absent' } });
          expect(put.status).toBe('written');
        })(),
      );
    }
    await Promise.all(writes);
  }
}

async function putCluster(store: ObjectStore): Promise<void> {
  await store.put(
    CLUSTER_KEY,
    encodeClusterRecord({
      clusterId: 'cluster-long-history',
      formatVersion: 1,
      createdAt: '2026-01-01T00:00:00.000Z',
      createdBy: 'test',
    }),
  );
}

/** head.json saying the table is uploaded through `txn`, as the primary's uploader writes it. */
async function putHead(store: ObjectStore, txn: bigint): Promise<void> {
  const head = {
    epoch: 1n,
    nodeId: 'primary-1',
    tables: new Map([[TABLE, txn]]),
    at: new Date().toISOString(),
  };
  await store.put(HEAD_KEY, encodeHead(head));
}

// --- counting requests ---

interface ListRequest {
  prefix: string;
  startAfter: string | undefined;
  token: string | undefined;
  /** The follower's applied watermark of the table when the LIST was sent (0n without a follower). */
  watermark: bigint;
}

interface GetRequest {
  key: string;
  outcome: 'ok' | 'not-modified' | 'absent' | 'error';
}

type Recorded = ObjectStore & { lists: ListRequest[]; gets: GetRequest[]; watermark: () => bigint };

/** `inner` with every LIST (its start-after and token) and GET (its outcome) recorded. */
function recording(inner: ObjectStore): Recorded {
  const wrapper: Recorded = {
    description: inner.description,
    lists: [],
    gets: [],
    watermark: () => 0n,
    async get(key: string, options?: GetOptions) {
      const request: GetRequest = { key, outcome: 'error' };
      wrapper.gets.push(request);
      const got = await inner.get(key, options);
      request.outcome = got === null ? 'absent' : got.status;
      return got;
    },
    list(prefix: string, options?: ListOptions) {
      wrapper.lists.push({
        prefix,
        startAfter: options?.startAfter,
        token: options?.token,
        watermark: wrapper.watermark(),
      });
      return inner.list(prefix, options);
    },
    head: (key) => inner.head(key),
    put: (key, body, options) => inner.put(key, body, options),
    delete: (key) => inner.delete(key),
    deleteMany: (keys) => inner.deleteMany(keys),
    close: () => inner.close(),
  };
  return wrapper;
}

/** The LISTs of the table's segment keys among `lists`. */
function walLists(lists: readonly ListRequest[]): ListRequest[] {
  return lists.filter((l) => l.prefix === WAL_PREFIX);
}

/** The segment keys among `gets` that were downloaded (outcome ok). */
function segmentDownloads(gets: readonly GetRequest[]): string[] {
  return gets.filter((g) => g.outcome === 'ok' && g.key.startsWith(WAL_PREFIX)).map((g) => g.key);
}

/**
 * Every LIST in `lists` pages with start-after (never a continuation token, never from nothing), and
 * each starts strictly after the one before: a listing of the whole table would repeat a start or
 * walk it by tokens.
 */
function expectStartAfterPaging(lists: readonly ListRequest[]): void {
  for (const [i, list] of lists.entries()) {
    expect(list.token, `LIST ${i} used a continuation token`).toBeUndefined();
    expect(list.startAfter, `LIST ${i} has no start-after`).toBeDefined();
    if (i > 0) expect(list.startAfter! > lists[i - 1]!.startAfter!, `LIST ${i} starts no later`).toBe(true);
  }
}

// --- checking the table ---

/** Rows and the sum of `v` in the table, its first and last `v` by rowid, and the first row whose `v` is not vOfTxn(its position). */
function tableFacts(file: string): {
  rows: number;
  sum: bigint;
  first: bigint;
  last: bigint;
  misplaced: string | null;
} {
  const db = new Database(file, { readonly: true });
  try {
    const values = db
      .prepare(`SELECT v FROM "${TABLE}" ORDER BY rowid`)
      .safeIntegers(true)
      .pluck()
      .all() as bigint[];
    let sum = 0n;
    let misplaced: string | null = null;
    for (const [i, v] of values.entries()) {
      sum += v;
      if (misplaced === null && v !== vOfTxn(BigInt(i + 1))) misplaced = `row ${i + 1} holds ${v}`;
    }
    return { rows: values.length, sum, first: values[0] ?? -1n, last: values.at(-1) ?? -1n, misplaced };
  } finally {
    db.close();
  }
}

/** What tableFacts must say after txns 1..last. */
function factsThrough(last: number) {
  const n = BigInt(last);
  return {
    rows: last,
    sum: (7n * n * (n + 1n)) / 2n + 3n * n,
    first: vOfTxn(1n),
    last: vOfTxn(n),
    misplaced: null,
  };
}

// --- the stores ---

let base = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-long-history-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

const STORES: [string, (root: string) => Promise<ObjectStore>][] = [
  ['fs', (root) => FsStore.open({ root })],
  ['memory', async () => new MemoryStore()],
];

describe.each(STORES)(`one table of ${SEGMENTS} single-txn segments, %s store`, (name, open) => {
  let inner: ObjectStore;
  let store: Recorded;
  let dir = '';
  let tables: TableStore | undefined;
  let follower: Follower | undefined;
  const applied: bigint[] = [];

  beforeAll(async () => {
    dir = path.join(base, name);
    await mkdir(dir, { recursive: true });
    inner = await open(path.join(dir, 'store'));
    const startedMs = performance.now();
    await putCluster(inner);
    await putSegments(inner, 1, SEGMENTS);
    await putHead(inner, BigInt(SEGMENTS));
    console.log(
      `[long-history] ${name}: ${SEGMENTS} segments written in ${Math.round(performance.now() - startedMs)} ms`,
    );
    store = recording(inner);
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await follower?.stop();
    tables?.close();
    await inner?.close();
  });

  /** Until the follower applied `txn`; throws at once if it suspended the table instead. */
  async function waitApplied(txn: bigint): Promise<void> {
    const f = follower!;
    while (f.appliedTxn(KEY) < txn) {
      const suspended = f.status().tables.find((t) => t.key === KEY)?.suspended;
      if (suspended != null) throw new Error(`${TABLE} suspended: ${suspended.code} ${suspended.message}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it(
    'a fresh follower applies every txn in order, GETs each segment once and LISTs in start-after pages',
    async () => {
      const startedMs = performance.now();
      tables = TableStore.open(path.join(dir, 'replica.sqlite'), { synchronous: 'NORMAL' });
      follower = new Follower({
        store,
        tables,
        clock: systemClock,
        log,
        pollIntervalMs: 10,
        sweepIntervalMs: 3_600_000,
        downloadConcurrency: 8,
        clusterId: undefined,
        onApplied: (key, txn) => {
          if (key === KEY) applied.push(txn);
        },
      });
      const f = follower;
      store.watermark = () => f.appliedTxn(KEY);
      f.start();
      await waitApplied(BigInt(SEGMENTS));
      const lists = walLists(store.lists);
      const downloads = segmentDownloads(store.gets);
      console.log(
        `[long-history] ${name}: followed ${SEGMENTS} segments in ${Math.round(performance.now() - startedMs)} ms, ` +
          `${lists.length} LISTs of ${WAL_PREFIX}, ${downloads.length} segment GETs`,
      );

      // One callback per segment, in txn order, and nothing else.
      const outOfOrder = applied.findIndex((txn, i) => txn !== BigInt(i + 1));
      expect(outOfOrder).toBe(-1);
      expect(applied.length).toBe(SEGMENTS);
      expect(tableFacts(tables.file)).toEqual(factsThrough(SEGMENTS));
      expect(tables.lastTxn(TABLE)).toBe(BigInt(SEGMENTS));

      // Each segment downloaded exactly once.
      expect(downloads.length).toBe(SEGMENTS);
      expect(new Set(downloads).size).toBe(SEGMENTS);

      // One LIST per page of PAGE_KEYS, plus the one that may confirm the end: a follower that
      // listed from the table's start again for each batch would need 1 + 2 + … + ⌈N/PAGE_KEYS⌉
      // LISTs (15 for 5 000 segments, 5 050 for 100 000), above this bound.
      expect(lists.length).toBeGreaterThanOrEqual(Math.ceil(SEGMENTS / PAGE_KEYS));
      expect(lists.length).toBeLessThanOrEqual(Math.ceil(SEGMENTS / PAGE_KEYS) + 2);
      // Listed as it goes: each page starts at or after the watermark when it was sent, so the next
      // page is asked for only once the previous one is applied. A whole listing up front (pages by
      // token, or from the start) would send its later pages while the watermark is still 0.
      expectStartAfterPaging(lists);
      for (const [i, list] of lists.entries()) {
        expect(
          list.startAfter! >= segmentKey(KEY, list.watermark),
          `LIST ${i} starts before the watermark`,
        ).toBe(true);
      }
      expect(lists.filter((l) => l.watermark >= BigInt(SEGMENTS - PAGE_KEYS)).length).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'once caught up, a round that applies one more segment makes at most 2 LISTs, after the watermark',
    async () => {
      const f = follower!;
      expect(f.appliedTxn(KEY)).toBe(BigInt(SEGMENTS));
      const listsBefore = store.lists.length;
      const getsBefore = store.gets.length;
      const next = BigInt(SEGMENTS + 1);
      await putSegments(inner, SEGMENTS + 1, SEGMENTS + 1);
      await putHead(inner, next);
      await waitApplied(next);
      // Two more polls: any LIST the round still had to send is then sent.
      const polls = f.status().polls;
      while (f.status().polls < polls + 2) await new Promise((resolve) => setTimeout(resolve, 10));

      const lists = walLists(store.lists.slice(listsBefore));
      console.log(
        `[long-history] ${name}: the round after catch-up made ${lists.length} LISTs of ${WAL_PREFIX}`,
      );
      expect(applied.at(-1)).toBe(next);
      expect(tableFacts(tables!.file)).toEqual(factsThrough(SEGMENTS + 1));
      expect(segmentDownloads(store.gets.slice(getsBefore))).toEqual([segmentKey(KEY, next)]);
      // A listing of the whole table costs ⌈(N+1)/PAGE_KEYS⌉ ≥ 6 LISTs, or one LIST without a
      // start-after (the first page, from txn 1): both fail here.
      expect(lists.length).toBeLessThanOrEqual(2);
      for (const list of lists) {
        expect(list.token).toBeUndefined();
        expect(list.startAfter! >= segmentKey(KEY, BigInt(SEGMENTS))).toBe(true);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    `restoreToPoint to txn ${RESTORE_TXN} replays the first half in start-after pages`,
    async () => {
      await follower?.stop();
      follower = undefined;
      store.watermark = () => 0n;
      const listsBefore = store.lists.length;
      const getsBefore = store.gets.length;
      const dataDir = path.join(dir, 'restored');
      const startedMs = performance.now();
      const result = await restoreToPoint({ store, dataDir, to: { txn: BigInt(RESTORE_TXN) }, log });
      const lists = walLists(store.lists.slice(listsBefore));
      const downloads = segmentDownloads(store.gets.slice(getsBefore));
      console.log(
        `[long-history] ${name}: restored ${RESTORE_TXN} txns in ${Math.round(performance.now() - startedMs)} ms, ` +
          `${lists.length} LISTs of ${WAL_PREFIX}, ${downloads.length} segment GETs`,
      );

      expect(result.tables).toEqual([
        expect.objectContaining({
          key: KEY,
          restoredTxn: BigInt(RESTORE_TXN),
          txnsApplied: RESTORE_TXN,
          segmentsApplied: RESTORE_TXN,
          rows: RESTORE_TXN,
          partialSegment: null,
        }),
      ]);
      expect(tableFacts(path.join(dataDir, RESTORED_DATABASE_FILE))).toEqual(factsThrough(RESTORE_TXN));
      expect(downloads.length).toBe(RESTORE_TXN);
      expect(new Set(downloads).size).toBe(RESTORE_TXN);
      // Paged from the snapshot's (here no snapshot's) watermark up to the target only: listing the
      // whole table even once costs ⌈(N+1)/PAGE_KEYS⌉ LISTs, more than this bound (N/2 of them are
      // past the target), and listing it again per batch far more.
      expect(lists.length).toBeLessThanOrEqual(Math.ceil(RESTORE_TXN / PAGE_KEYS) + 2);
      expectStartAfterPaging(lists);
    },
    TEST_TIMEOUT_MS,
  );
});
