import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isWalshipError, systemClock } from '../core/index.js';
import { stagedKey, TABLES_REGISTRY_KEY, txnLogKey, txnLogPrefix } from '../layout/index.js';
import { registerTable } from '../layout/tables-registry.js';
import { encodeTxnLogEntry } from '../layout/txn-log-entry.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { asTableKey, TableStore, tableKey } from '../table/index.js';
import { decodeSegmentHeader, encodeTxnRecord, sealSegment } from '../wal/index.js';
import { SequencedFollower } from './follower.js';
import type { LogSource } from './log-source.js';
import type { LogEntry } from './sequencer-store.js';
import { storeLogSource } from './store-log-source.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000_000_000n;
const WAIT = { timeout: 20_000, interval: 10 };

let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-store-log-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A log entry as a sequencer numbers it: batch `batchSeq` of writer w1, epoch 1. */
function entry(table: string, txnFirst: bigint, txnLast: bigint, batchSeq: bigint): LogEntry {
  return {
    table: asTableKey(table),
    txnFirst,
    txnLast,
    staged: stagedKey(asTableKey(table), 'w1', 1n, batchSeq),
    bytes: 100,
    crc32: 1234,
    writer: 'w1',
    writerEpoch: 1n,
    batchSeq,
    committedAtMs: 1_767_225_600_000,
  };
}

/** Entries 1..2, 3..3, 4..6, 7..7 of `table`, exported. */
async function exportChain(table: string): Promise<LogEntry[]> {
  const entries = [
    entry(table, 1n, 2n, 1n),
    entry(table, 3n, 3n, 2n),
    entry(table, 4n, 6n, 3n),
    entry(table, 7n, 7n, 4n),
  ];
  for (const e of entries) await store.put(txnLogKey(asTableKey(table), e.txnFirst), encodeTxnLogEntry(e));
  return entries;
}

/** `inner` with GETs and LISTs counted by key, and an optional rewrite of a GET's body. */
function countingStore(
  inner: ObjectStore,
  rewrite?: (key: string, body: Uint8Array, nth: number) => Uint8Array,
) {
  const gets = new Map<string, number>();
  const lists: string[] = [];
  const wrapped: ObjectStore = {
    get description() {
      return inner.description;
    },
    async get(key, options) {
      const nth = (gets.get(key) ?? 0) + 1;
      gets.set(key, nth);
      const got = await inner.get(key, options);
      if (got === null || got.status !== 'ok' || rewrite === undefined) return got;
      return { ...got, body: rewrite(key, got.body, nth) };
    },
    put: (key, body, options) => inner.put(key, body, options),
    head: (key) => inner.head(key),
    async list(prefix, options) {
      lists.push(prefix);
      return inner.list(prefix, options);
    },
    delete: (key) => inner.delete(key),
    deleteMany: (keys) => inner.deleteMany(keys),
    close: async () => {},
  };
  const count = (match: (key: string) => boolean) =>
    [...gets].filter(([key]) => match(key)).reduce((n, [, c]) => n + c, 0);
  return { store: wrapped, gets, lists, count };
}

describe('storeLogSource.readLog', () => {
  it('reads contiguous entries from the one starting at fromTxn, at most limit, [] where none starts', async () => {
    const entries = await exportChain('trades');
    const source = storeLogSource({ store, pollIntervalMs: 10 });
    expect(await source.readLog('trades', 1n, 1000)).toEqual(entries);
    expect(await source.readLog('trades', 3n, 2)).toEqual(entries.slice(1, 3));
    expect(await source.readLog('trades', 4n, 1)).toEqual([entries[2]]);
    expect(await source.readLog('trades', 8n, 10)).toEqual([]);
    expect(await source.readLog('quotes', 1n, 10)).toEqual([]);
  });

  it('stops at a gap in the exported entries', async () => {
    const entries = await exportChain('trades');
    await store.delete(txnLogKey(tableKey('trades'), 4n));
    const source = storeLogSource({ store, pollIntervalMs: 10 });
    expect(await source.readLog('trades', 1n, 1000)).toEqual(entries.slice(0, 2));
    expect(await source.readLog('trades', 7n, 1000)).toEqual([entries[3]]);
  });

  it('an idle table costs one GET and no LIST; a hit costs one GET, one LIST and one GET per further entry', async () => {
    await exportChain('trades');
    const counting = countingStore(store);
    const source = storeLogSource({ store: counting.store, pollIntervalMs: 10 });
    expect(await source.readLog('trades', 8n, 100)).toEqual([]);
    expect([...counting.gets]).toEqual([[txnLogKey(tableKey('trades'), 8n), 1]]);
    expect(counting.lists).toEqual([]);
    counting.gets.clear();
    expect(await source.readLog('trades', 3n, 100)).toHaveLength(3);
    expect(counting.count(() => true)).toBe(3);
    expect(counting.lists).toEqual([txnLogPrefix(tableKey('trades'))]);
  });

  it('a corrupt entry is fetched once more, then fails with TXN_LOG_ENTRY_CORRUPT (kind data)', async () => {
    await exportChain('trades');
    const key = txnLogKey(tableKey('trades'), 3n);
    const bytes = (await store.get(key)) as { status: 'ok'; body: Uint8Array };
    const damaged = bytes.body.slice();
    damaged[10]! ^= 0x01;
    await store.put(key, damaged);
    const counting = countingStore(store);
    const source = storeLogSource({ store: counting.store, pollIntervalMs: 10 });
    const error = await source.readLog('trades', 3n, 10).catch((e: unknown) => e);
    expect(isWalshipError(error, 'TXN_LOG_ENTRY_CORRUPT') && error.kind === 'data').toBe(true);
    expect(counting.gets.get(key)).toBe(2);
  });

  it('a torn first read heals on the second GET', async () => {
    const entries = await exportChain('trades');
    const key = txnLogKey(tableKey('trades'), 1n);
    const counting = countingStore(store, (k, body, nth) =>
      k === key && nth === 1 ? body.subarray(0, 20) : body,
    );
    const source = storeLogSource({ store: counting.store, pollIntervalMs: 10 });
    expect(await source.readLog('trades', 1n, 1)).toEqual([entries[0]]);
    expect(counting.gets.get(key)).toBe(2);
  });

  it('an entry under the key of another txn is refused', async () => {
    const entries = await exportChain('trades');
    await store.put(txnLogKey(tableKey('trades'), 8n), encodeTxnLogEntry(entries[3]!));
    const source = storeLogSource({ store, pollIntervalMs: 10 });
    await expect(source.readLog('trades', 8n, 10)).rejects.toMatchObject({
      code: 'TXN_LOG_ENTRY_CORRUPT',
      kind: 'data',
    });
  });
});

describe('storeLogSource.tables and wait', () => {
  it('lists the tables of tables.json (none without it), read again only after tablesRefreshMs', async () => {
    let nowMs = 0;
    const clock = { ...systemClock, monotonicMs: () => nowMs };
    const counting = countingStore(store);
    const source = storeLogSource({
      store: counting.store,
      pollIntervalMs: 10,
      clock,
      tablesRefreshMs: 1_000,
    });
    expect(await source.tables()).toEqual([]);
    await registerTable(store, tableKey('trades'), 1n);
    expect(await source.tables()).toEqual([]); // cached
    nowMs += 1_000;
    expect(await source.tables()).toEqual(['trades']);
    expect(counting.gets.get(TABLES_REGISTRY_KEY)).toBe(2);
  });

  it('by default reads tables.json every round with a conditional GET: unchanged costs a 304, a new table shows at once', async () => {
    const answers: string[] = [];
    const watching: ObjectStore = {
      get description() {
        return store.description;
      },
      get: async (key, options) => {
        const got = await store.get(key, options);
        if (key === TABLES_REGISTRY_KEY)
          answers.push(
            `${options?.ifNoneMatch === undefined ? 'plain' : 'conditional'} ${got?.status ?? 'absent'}`,
          );
        return got;
      },
      put: (key, body, options) => store.put(key, body, options),
      head: (key) => store.head(key),
      list: (prefix, options) => store.list(prefix, options),
      delete: (key) => store.delete(key),
      deleteMany: (keys) => store.deleteMany(keys),
      close: async () => {},
    };
    const source = storeLogSource({ store: watching, pollIntervalMs: 10 });
    await registerTable(store, tableKey('trades'), 1n);
    expect(await source.tables()).toEqual(['trades']);
    expect(await source.tables()).toEqual(['trades']);
    await registerTable(store, tableKey('quotes'), 1n);
    expect((await source.tables()).sort()).toEqual(['quotes', 'trades']);
    expect(answers).toEqual(['plain ok', 'conditional not-modified', 'conditional ok']);
  });

  it('wait sleeps the poll interval and reports a change; an abort returns `after`', async () => {
    const source = storeLogSource({ store, pollIntervalMs: 5 });
    expect(await source.wait(7n, new AbortController().signal)).toBe(8n);
    const aborted = new AbortController();
    const slow = storeLogSource({ store, pollIntervalMs: 60_000 });
    const waiting = slow.wait(7n, aborted.signal);
    aborted.abort();
    expect(await waiting).toBe(7n);
  });
});

describe('a follower of the store', () => {
  it('costs one GET per table per idle poll', async () => {
    const tables = ['trades', 'quotes'];
    let batchSeq = 0n;
    let txn = 0n;
    for (const name of tables) {
      for (let i = 0; i < 3; i++) {
        const bytes = await sealSegment({
          tableName: name,
          epoch: 1n,
          writerNodeId: 'w1',
          staged: true,
          records: [
            encodeTxnRecord({
              txn: ++txn,
              commitTimeUs: T0,
              kind: 'data',
              rowCount: 1,
              columns: [
                {
                  name: 'timestamp',
                  addedInTxn: true,
                  nulls: null,
                  data: { type: 'timestamp', values: BigInt64Array.of(T0 + txn) },
                },
              ],
            }),
          ],
        });
        const key = tableKey(name);
        const e: LogEntry = {
          ...entry(key, BigInt(i + 1), BigInt(i + 1), ++batchSeq),
          bytes: bytes.length,
          crc32: decodeSegmentHeader(bytes).objectChecksum,
        };
        await store.put(e.staged, bytes);
        await store.put(txnLogKey(key, e.txnFirst), encodeTxnLogEntry(e));
      }
      await registerTable(store, tableKey(name), 1n);
    }
    const counting = countingStore(store);
    // Snapshot the counters at every poll (each wait() call starts one).
    const snapshots: { gets: number; txnlogGets: number; lists: number }[] = [];
    const inner = storeLogSource({ store: counting.store, pollIntervalMs: 5, tablesRefreshMs: 3_600_000 });
    const source: LogSource = {
      ...inner,
      name: 'store',
      wait: (after, signal) => {
        snapshots.push({
          gets: counting.count(() => true),
          txnlogGets: counting.count((k) => k.includes('/txnlog/')),
          lists: counting.lists.length,
        });
        return inner.wait(after, signal);
      },
    };
    const tableStore = TableStore.open(path.join(dir, 'a.sqlite'));
    const follower = new SequencedFollower({
      tables: tableStore,
      store: counting.store,
      source,
      clock: systemClock,
      log,
    });
    follower.start();
    try {
      await vi.waitFor(() => expect(tables.map((t) => follower.appliedTxn(t))).toEqual([3n, 3n]), WAIT);
      const caughtUpAt = snapshots.length;
      await vi.waitFor(() => expect(snapshots.length).toBeGreaterThan(caughtUpAt + 4), WAIT);
      const idle = snapshots.slice(caughtUpAt + 1, caughtUpAt + 5);
      for (let i = 1; i < idle.length; i++) {
        expect(idle[i]!.gets - idle[i - 1]!.gets).toBe(tables.length);
        expect(idle[i]!.txnlogGets - idle[i - 1]!.txnlogGets).toBe(tables.length);
        expect(idle[i]!.lists - idle[i - 1]!.lists).toBe(0);
      }
      expect(counting.gets.get(txnLogKey(tableKey('trades'), 4n))).toBeGreaterThan(3);
    } finally {
      await follower.stop();
      tableStore.close();
    }
  });
});
