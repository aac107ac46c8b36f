/**
 * What is specific to the FoundationDB backend (the shared behaviour is in fdb-contract.test.ts):
 * the tuple key layout, exactly-once numbering under injected commit_unknown_result and under
 * conflicts, FoundationDB's size limits with the largest batch, the fallback poll when watches
 * fail, the mapping of FDB errors, and the factory where the client library is absent.
 */
import { pack, range, unpack } from 'fdb-tuple';
import { describe, expect, it } from 'vitest';
import { type Clock, seededRandom, systemClock } from '../core/index.js';
import { tableKey } from '../table/index.js';
import { FDB_ERROR_CODE, FDB_LIMITS, fdbErrorCode } from './fdb-api.js';
import {
  createFdbSequencerOver,
  FdbKeyspace,
  type FdbSequencerStore,
  loadFdbModule,
  openFdbSequencer,
} from './fdb-store.js';
import {
  type CommitRequest,
  type CommitResult,
  FDB_CLIENT_MISSING_MESSAGE,
  type LogEntry,
  SEQUENCER_BATCH_MAX,
  SEQUENCER_READ_LIMIT_MAX,
  SEQUENCER_SEGMENT_TXNS_MAX,
} from './sequencer-store.js';
import { stagedBatch } from './testing/contract.js';
import { FakeFdb } from './testing/fdb-fake.js';

const CLUSTER = 'cluster-fdb';

async function initializedStore(fdb: FakeFdb, options: { clock?: Clock; pollIntervalMs?: number } = {}) {
  const store = createFdbSequencerOver(fdb.open(), options);
  await store.initialize(CLUSTER, new Map());
  return store;
}

/** The whole log of `table`, checked gap-free from txn 1. */
async function wholeLog(store: FdbSequencerStore, table: string): Promise<LogEntry[]> {
  const log: LogEntry[] = [];
  let next = 1n;
  for (;;) {
    const page = await store.readLog(table, next, SEQUENCER_READ_LIMIT_MAX);
    if (page.length === 0) return log;
    for (const entry of page) {
      expect(entry.txnFirst).toBe(next);
      next = entry.txnLast + 1n;
      log.push(entry);
    }
  }
}

/** Every key the fake holds under `root`, decoded. */
async function rawTuples(fdb: FakeFdb, root = 'walship'): Promise<unknown[][]> {
  const db = fdb.open();
  const { begin, end } = range([root]);
  const pairs = await db.doTn((tn) => tn.getRangeAll(begin, end));
  return pairs.map(([key]) => unpack(key).map((item) => (typeof item === 'number' ? BigInt(item) : item)));
}

describe('FoundationDB sequencer: key layout', () => {
  it('writes exactly the RFC-0003 keys under (walship, clusterId), plus the cluster binding', async () => {
    const fdb = new FakeFdb();
    const store = await initializedStore(fdb);
    await store.initialize(CLUSTER, new Map()); // a no-op: nothing new
    const { epoch } = await store.registerWriter('p1');
    await store.commit(
      stagedBatch('p1', epoch, 1n, [
        ['trades', 3],
        ['quotes', 1],
      ]),
    );
    await store.registerWriter('p1');
    await store.commit(stagedBatch('p1', 2n, 1n, [['trades', 2]]));
    const tuples = await rawTuples(fdb);
    const inCluster = (...items: unknown[]) => ['walship', CLUSTER, ...items];
    expect(tuples).toEqual([
      ['walship', 'cluster'],
      inCluster('changed'),
      inCluster('log', 'quotes', 1n),
      inCluster('log', 'trades', 1n),
      inCluster('log', 'trades', 4n),
      inCluster('seq', 'quotes'),
      inCluster('seq', 'trades'),
      inCluster('writer', 'p1'),
      inCluster('writerEpoch', 'p1', 1n),
    ]);
    const keyspace = new FdbKeyspace('walship', CLUSTER);
    expect(unpack(fdb.peek(keyspace.seq('trades')) as Buffer)).toEqual([5]);
    expect(unpack(fdb.peek(FdbKeyspace.clusterKey('walship')) as Buffer)).toEqual([CLUSTER]);
    // ('changed') is the 8-byte little-endian counter heads().version reports: 1 + 2 commits.
    const changed = fdb.peek(keyspace.changed) as Buffer;
    expect(changed).toHaveLength(8);
    expect(changed.readBigUInt64LE()).toBe(3n);
    expect((await store.heads()).version).toBe(3n);
    const [epochNow, lastBatchSeq, fenced, pairs] = unpack(fdb.peek(keyspace.writer('p1')) as Buffer);
    expect([epochNow, lastBatchSeq, fenced, pairs]).toEqual([2, 1, false, [['trades', 4]]]);
    await store.close();
  });

  it('orders log keys by txn number (tuple integers), so one range read pages the log', () => {
    const keyspace = new FdbKeyspace('walship', CLUSTER);
    const txns = [1n, 2n, 9n, 10n, 99n, 100n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n];
    const keys = [...txns].reverse().map((txn) => keyspace.log('trades', txn));
    keys.sort(Buffer.compare);
    expect(keys.map((key) => BigInt(keyspace.itemsOf(key)[2] as bigint | number))).toEqual(txns);
    // Every log key of a table is inside its range, none of another table's (even a prefix name).
    const trades = keyspace.range('log', 'trades');
    for (const key of keys)
      expect(Buffer.compare(trades.begin, key) < 0 && Buffer.compare(key, trades.end) < 0).toBe(true);
    const prefixTable = keyspace.log('trades2', 1n);
    expect(Buffer.compare(prefixTable, trades.end) >= 0).toBe(true);
    expect(keyspace.seq('trades')).toEqual(pack(['walship', CLUSTER, 'seq', 'trades']));
  });

  it('refuses a store opened for another cluster than the one the keyspace is bound to', async () => {
    const fdb = new FakeFdb();
    const bound = await initializedStore(fdb);
    await bound.close();
    const other = createFdbSequencerOver(fdb.open(), { clusterId: 'another' });
    await expect(other.heads()).rejects.toMatchObject({ code: 'SEQUENCER_CLUSTER_MISMATCH' });
    await expect(other.registerWriter('p1')).rejects.toMatchObject({ code: 'SEQUENCER_CLUSTER_MISMATCH' });
    await expect(other.initialize('another', new Map())).rejects.toMatchObject({
      code: 'SEQUENCER_CLUSTER_MISMATCH',
    });
    await expect(other.initialize(CLUSTER, new Map())).rejects.toMatchObject({
      code: 'SEQUENCER_CLUSTER_MISMATCH',
    });
    await other.close();
    // The same cluster id is served.
    const same = createFdbSequencerOver(fdb.open(), { clusterId: CLUSTER });
    expect(await same.clusterId()).toBe(CLUSTER);
    await same.registerWriter('p1');
    await same.close();
  });
});

describe('FoundationDB sequencer: exactly-once under FDB faults', () => {
  it('never duplicates or skips a txn when commit_unknown_result hits a third of the commits', async () => {
    const fdb = new FakeFdb({ random: seededRandom(2024), schedulingRandom: seededRandom(99) });
    const store = await initializedStore(fdb);
    const writers = ['p1', 'p2', 'p3', 'p4'];
    const epochs = new Map<string, bigint>();
    for (const writer of writers) epochs.set(writer, (await store.registerWriter(writer)).epoch);
    const versionBefore = (await store.heads()).version;
    fdb.commitUnknownRate = 0.3;
    const tables = ['trades', 'quotes', 'orders'];
    const results: { commit: CommitRequest; result: CommitResult }[] = [];
    await Promise.all(
      writers.map(async (writer, index) => {
        const random = seededRandom(index + 1);
        for (let batch = 1n; batch <= 60n; batch++) {
          const chosen = tables.filter(() => random.next() < 0.6);
          const commit = stagedBatch(
            writer,
            epochs.get(writer) ?? 0n,
            batch,
            (chosen.length > 0 ? chosen : ['trades']).map((t) => [t, 1 + Math.floor(random.next() * 4)]),
          );
          results.push({ commit, result: await store.commit(commit) });
        }
      }),
    );
    fdb.commitUnknownRate = 0;
    // The injector did fire both ways; each applied-but-unknown commit came back as a replay.
    expect(fdb.stats.unknownApplied).toBeGreaterThan(0);
    expect(fdb.stats.unknownNotApplied).toBeGreaterThan(0);
    expect(results.filter(({ result }) => result.replayed)).toHaveLength(fdb.stats.unknownApplied);
    const heads = await store.heads();
    for (const table of tables) {
      const log = await wholeLog(store, table);
      const answered = results
        .flatMap(({ result }) => result.entries)
        .filter((entry) => entry.table === table)
        .sort((a, b) => (a.txnFirst < b.txnFirst ? -1 : 1));
      // Gap-free from 1 (wholeLog), every batch exactly once, and as its commit answered.
      expect(log).toEqual(answered);
      expect(heads.tables.get(table)).toBe(log.at(-1)?.txnLast);
    }
    // Heads.version counts commits that applied, replays excluded.
    expect(heads.version - versionBefore).toBe(BigInt(results.length));
    await store.close();
  });

  it('serialises concurrent writers on one table through conflicts, each keeping its batch order', async () => {
    const fdb = new FakeFdb({ schedulingRandom: seededRandom(5) });
    const store = await initializedStore(fdb);
    const writers = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const writer of writers) await store.registerWriter(writer);
    const conflictsBefore = fdb.stats.conflicts;
    await Promise.all(
      writers.map(async (writer) => {
        for (let batch = 1n; batch <= 30n; batch++)
          await store.commit(stagedBatch(writer, 1n, batch, [['trades', 2]]));
      }),
    );
    expect(fdb.stats.conflicts).toBeGreaterThan(conflictsBefore);
    const log = await wholeLog(store, 'trades');
    expect(log).toHaveLength(writers.length * 30);
    expect(log.at(-1)?.txnLast).toBe(BigInt(writers.length * 30 * 2));
    for (const writer of writers) {
      const own = log.filter((entry) => entry.writer === writer).map((entry) => entry.batchSeq);
      expect(own).toEqual(Array.from({ length: 30 }, (_, index) => BigInt(index + 1)));
    }
    await store.close();
  });

  it('turns an FDB error that outlives doTn into SEQUENCER_UNAVAILABLE; the same request then lands once', async () => {
    /** A 1021 takes 20 s here, so doTn's retry meets the 10 s transaction timeout (1031). */
    class SlowUnknownFdb extends FakeFdb {
      nowMs = 0;
      override commit(state: Parameters<FakeFdb['commit']>[0]): void {
        try {
          super.commit(state);
        } catch (error) {
          if (fdbErrorCode(error) === FDB_ERROR_CODE.commitUnknownResult) this.nowMs += 20_000;
          throw error;
        }
      }
    }
    const outcomes = new Set<boolean>();
    for (let seed = 1; seed <= 12; seed++) {
      const clock: Clock = { ...systemClock, monotonicMs: () => fdb.nowMs };
      const fdb: SlowUnknownFdb = new SlowUnknownFdb({ clock, random: seededRandom(seed) });
      const store = await initializedStore(fdb);
      await store.registerWriter('p1');
      const commit = stagedBatch('p1', 1n, 1n, [['trades', 5]]);
      fdb.commitUnknownRate = 1;
      const error = await store.commit(commit).then(
        () => null,
        (failure: unknown) => failure,
      );
      expect(error).toMatchObject({
        code: 'SEQUENCER_UNAVAILABLE',
        details: { fdbErrorCode: FDB_ERROR_CODE.transactionTimedOut },
      });
      fdb.commitUnknownRate = 0;
      const applied = fdb.stats.unknownApplied === 1;
      outcomes.add(applied);
      const retried = await store.commit(commit);
      // Whether the unknown commit had applied or not, the batch is in the log exactly once.
      expect(retried.replayed).toBe(applied);
      expect(await wholeLog(store, 'trades')).toEqual(retried.entries);
      expect((await store.heads()).tables.get('trades')).toBe(5n);
      await store.close();
    }
    expect([...outcomes].sort()).toEqual([false, true]);
  });
});

describe('FoundationDB sequencer: limits', () => {
  it('commits a batch of 100 segments with the longest table and staged keys within FDB limits', async () => {
    const fdb = new FakeFdb();
    const store = await initializedStore(fdb);
    await store.registerWriter('w'.repeat(64));
    const tables = Array.from({ length: SEQUENCER_BATCH_MAX }, (_, index) =>
      tableKey(`t${String(index).padStart(3, '0')}xx${'é'.repeat(41)}`),
    );
    expect(Math.min(...tables.map((table) => table.length))).toBeGreaterThan(250);
    const commit: CommitRequest = {
      writer: 'w'.repeat(64),
      writerEpoch: 1n,
      batchSeq: 1n,
      segments: tables.map((table) => ({
        table,
        staged: `${table}/${'s'.repeat(512 - table.length - 1)}`,
        txnCount: SEQUENCER_SEGMENT_TXNS_MAX,
        bytes: Number.MAX_SAFE_INTEGER,
        crc32: 0xffff_ffff,
      })),
    };
    const result = await store.commit(commit);
    expect(result.entries).toHaveLength(SEQUENCER_BATCH_MAX);
    expect(fdb.stats.tooLarge).toBe(0);
    expect((await store.commit(commit)).replayed).toBe(true);
    // The largest value, the writer record with 100 (table, txnFirst) pairs, has room to spare.
    const keyspace = new FdbKeyspace('walship', CLUSTER);
    const writerValue = fdb.peek(keyspace.writer('w'.repeat(64))) as Buffer;
    expect(writerValue.length).toBeLessThan(FDB_LIMITS.valueBytesMax / 2);
    const [entry] = await store.readLog(tables[0] as string, 1n, 1);
    expect(entry).toEqual(result.entries[0]);
    await store.close();
  });
});

describe('FoundationDB sequencer: watch', () => {
  it('falls back to polling heads() when FDB watches fail, and still wakes on a commit', async () => {
    const fdb = new FakeFdb();
    let sleeps = 0;
    const clock: Clock = {
      ...systemClock,
      sleep: (durationMs, signal) => {
        sleeps++;
        return systemClock.sleep(durationMs, signal);
      },
    };
    const store = await initializedStore(fdb, { clock, pollIntervalMs: 20 });
    const { epoch } = await store.registerWriter('p1');
    fdb.setWatchFailure(FDB_ERROR_CODE.transactionTooOld);
    const { version } = await store.heads();
    const woke = store.watch(version, new AbortController().signal);
    await store.commit(stagedBatch('p1', epoch, 1n, [['trades', 1]]));
    expect(await woke).toBeGreaterThan(version);
    expect(sleeps).toBeGreaterThan(0);
    await store.close();
  });

  it('wakes a watch started before initialize once initialize binds the keyspace', async () => {
    const fdb = new FakeFdb();
    const store = createFdbSequencerOver(fdb.open());
    const woke = store.watch(0n, new AbortController().signal);
    await createFdbSequencerOver(fdb.open()).initialize(CLUSTER, new Map([['trades', 7n]]));
    expect(await woke).toBe(1n);
    await store.close();
  });
});

describe('FoundationDB sequencer: the client library', () => {
  it('openFdbSequencer fails FDB_CLIENT_MISSING with the documented message where foundationdb is absent', async () => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await openFdbSequencer({ clusterId: CLUSTER }).then(
        () => null,
        (failure: unknown) => failure,
      );
      expect(error).toMatchObject({ code: 'FDB_CLIENT_MISSING', kind: 'invalid' });
      expect((error as Error).message).toBe(FDB_CLIENT_MISSING_MESSAGE);
      expect(FDB_CLIENT_MISSING_MESSAGE).toBe(
        'FoundationDB client library not found: install foundationdb-clients 7.2+ matching your cluster',
      );
      expect((error as Error).cause).toBeInstanceOf(Error);
    }
    await expect(loadFdbModule()).rejects.toMatchObject({ code: 'FDB_CLIENT_MISSING' });
  });
});
