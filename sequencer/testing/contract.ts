/**
 * The SequencerStore contract (sequencer-store.ts, RFC-0003 "Contract tests" 1–7), one body run
 * against every backend: SQLite in-process (contract.test.ts), SQLite over HTTP, the fake and the
 * real FoundationDB. Each test opens a fresh, empty backend and closes it.
 *
 * No timing thresholds: "resolves" is checked by awaiting under vitest's time limit, and the
 * concurrency tests check outcomes (every acked commit present, no gap, no entry past a fence),
 * never durations.
 */
import { describe, expect, it } from 'vitest';
import { isWalshipError, type Random, randomInt, seededRandom } from '../../core/index.js';
import {
  type CommitRequest,
  type CommitResult,
  type Heads,
  type LogEntry,
  SEQUENCER_BATCH_MAX,
  SEQUENCER_READ_LIMIT_MAX,
  type SequencerStore,
  type StagedSegmentRef,
} from '../sequencer-store.js';

export interface SequencerUnderTest {
  /** A fresh, empty backend (its own file / map / service). */
  open(): Promise<SequencerStore>;
  /** Close `store` and open the same backing state again; omit when the backend has no restart story. */
  reopen?(store: SequencerStore): Promise<SequencerStore>;
  /** Appended to every test name, e.g. "(fake FDB semantics)". */
  testNameSuffix?: string;
}

const CLUSTER = 'cluster-contract';
const SHARED_TABLES = ['trades', 'quotes', 'orders'] as const;
/** Test 1 (RFC-0003): 8 writers × 200 batches over 3 shared tables. */
const CONCURRENT_WRITERS = 8;
const CONCURRENT_BATCHES = 200;
/** Most txns one test segment holds: small, so heads stay readable in failures. */
const TEST_TXNS_MAX = 5;
/** Generous: a whole test run on SQLite takes seconds; this only catches a hang. */
const LONG_TEST_MS = 120_000;

/** A staged segment of `txnCount` txns: key, size and checksum derived from what names it. */
export function stagedSegment(
  table: string,
  writer: string,
  writerEpoch: bigint,
  batchSeq: bigint,
  txnCount: number,
): StagedSegmentRef {
  const pad = (n: bigint) => n.toString().padStart(20, '0');
  const staged = `tables/${table}/staged/${writer}/${pad(writerEpoch)}/${pad(batchSeq)}.seg`;
  let crc32 = 0;
  for (let index = 0; index < staged.length; index += 1)
    crc32 = (Math.imul(crc32, 31) + staged.charCodeAt(index)) >>> 0;
  return { table, staged, txnCount, bytes: 100 + staged.length * txnCount, crc32 };
}

/** A commit request of one staged segment (stagedSegment) per `[table, txnCount]`, in that order. */
export function stagedBatch(
  writer: string,
  writerEpoch: bigint,
  batchSeq: bigint,
  tables: [string, number][],
): CommitRequest {
  return {
    writer,
    writerEpoch,
    batchSeq,
    segments: tables.map(([table, txnCount]) =>
      stagedSegment(table, writer, writerEpoch, batchSeq, txnCount),
    ),
  };
}

/** Every entry of `table`, paged with `pageLimit`, checked contiguous from txn 1 (or `startAfter` + 1). */
async function readWholeLog(
  store: SequencerStore,
  table: string,
  pageLimit: number,
  startAfter = 0n,
): Promise<LogEntry[]> {
  const all: LogEntry[] = [];
  let next = startAfter + 1n;
  for (;;) {
    const page = await store.readLog(table, next, pageLimit);
    expect(page.length).toBeLessThanOrEqual(pageLimit);
    if (page.length === 0) return all;
    for (const entry of page) {
      expect(entry.table).toBe(table);
      expect(entry.txnFirst).toBe(next);
      expect(entry.txnLast).toBeGreaterThanOrEqual(entry.txnFirst);
      next = entry.txnLast + 1n;
      all.push(entry);
    }
  }
}

/** The request's part of an entry: what the sequencer must store unchanged. */
function expectEntryOf(entry: LogEntry, commit: CommitRequest, segment: StagedSegmentRef): void {
  expect(entry).toMatchObject({
    table: segment.table,
    staged: segment.staged,
    bytes: segment.bytes,
    crc32: segment.crc32,
    writer: commit.writer,
    writerEpoch: commit.writerEpoch,
    batchSeq: commit.batchSeq,
  });
  expect(entry.txnLast - entry.txnFirst + 1n).toBe(BigInt(segment.txnCount));
  expect(Number.isFinite(entry.committedAtMs)).toBe(true);
}

function expectResultMatches(result: CommitResult, commit: CommitRequest): void {
  expect(result.entries).toHaveLength(commit.segments.length);
  commit.segments.forEach((segment, index) => {
    const entry = result.entries[index];
    expect(entry).toBeDefined();
    if (entry !== undefined) expectEntryOf(entry, commit, segment);
  });
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code });
}

/** heads() with the map made comparable (toEqual compares Maps by entries). */
async function headsOf(store: SequencerStore): Promise<Heads> {
  return store.heads();
}

/** Runs `fn` with a fresh backend and closes it (or whatever `fn` replaced it with). */
async function withStore<T>(
  backend: SequencerUnderTest,
  fn: (store: SequencerStore, replace: (next: SequencerStore) => void) => Promise<T>,
): Promise<T> {
  let store = await backend.open();
  try {
    return await fn(store, (next) => {
      store = next;
    });
  } finally {
    await store.close();
  }
}

async function initialized(
  store: SequencerStore,
  startAfter = new Map<string, bigint>(),
): Promise<SequencerStore> {
  await store.initialize(CLUSTER, startAfter);
  return store;
}

/** 1..3 distinct tables of SHARED_TABLES with random txn counts. */
function randomTables(random: Random): [string, number][] {
  const count = 1 + randomInt(random, SHARED_TABLES.length);
  const shuffled = [...SHARED_TABLES].sort(() => random.next() - 0.5);
  return shuffled.slice(0, count).map((table) => [table, 1 + randomInt(random, TEST_TXNS_MAX)]);
}

export function describeSequencerContract(label: string, backend: SequencerUnderTest): void {
  const name = (text: string) =>
    backend.testNameSuffix === undefined ? text : `${text} ${backend.testNameSuffix}`;

  describe(`SequencerStore contract: ${label}`, () => {
    it(
      name('1: 8 writers × 200 batches over 3 shared tables number every txn exactly once, gap-free'),
      async () => {
        const seed = Number(process.env.WALSHIP_SEQUENCER_SEED ?? Date.now() % 1_000_000);
        console.log(
          `sequencer contract ${label}: test 1 seed ${seed} (WALSHIP_SEQUENCER_SEED=${seed} replays it)`,
        );
        await withStore(backend, async (store) => {
          await initialized(store);
          const committed: { commit: CommitRequest; result: CommitResult }[] = [];
          const writerLoop = async (index: number) => {
            const random = seededRandom(seed * 31 + index);
            const record = await store.registerWriter(`w${index}`);
            expect(record).toMatchObject({ epoch: 1n, lastBatchSeq: 0n, fenced: false });
            for (let batch = 1n; batch <= BigInt(CONCURRENT_BATCHES); batch += 1n) {
              const commit = stagedBatch(`w${index}`, record.epoch, batch, randomTables(random));
              const result = await store.commit(commit);
              expect(result.replayed).toBe(false);
              expectResultMatches(result, commit);
              committed.push({ commit, result });
            }
          };
          await Promise.all(Array.from({ length: CONCURRENT_WRITERS }, (_, index) => writerLoop(index + 1)));
          expect(committed).toHaveLength(CONCURRENT_WRITERS * CONCURRENT_BATCHES);

          const heads = await store.heads();
          const expectedByTable = new Map<string, Map<bigint, LogEntry>>();
          for (const { result } of committed)
            for (const entry of result.entries) {
              const byFirst = expectedByTable.get(entry.table) ?? new Map<bigint, LogEntry>();
              expect(byFirst.has(entry.txnFirst)).toBe(false); // two commits never share a txn
              byFirst.set(entry.txnFirst, entry);
              expectedByTable.set(entry.table, byFirst);
            }
          for (const table of SHARED_TABLES) {
            const expected = expectedByTable.get(table) ?? new Map<bigint, LogEntry>();
            const pageLimit = 1 + randomInt(seededRandom(seed), 97);
            const log = await readWholeLog(store, table, pageLimit);
            // Gap-free from 1, every acked entry exactly once, identical to what commit answered.
            expect(log).toHaveLength(expected.size);
            for (const entry of log) expect(entry).toEqual(expected.get(entry.txnFirst));
            expect(heads.tables.get(table)).toBe(log.at(-1)?.txnLast);
            const txns = [...expected.values()].reduce(
              (sum, entry) => sum + (entry.txnLast - entry.txnFirst + 1n),
              0n,
            );
            expect(heads.tables.get(table)).toBe(txns);
          }
          const writers = await store.writers();
          const lastBatches = writers.map((record) => `${record.writer}:${record.lastBatchSeq}`).sort();
          expect(lastBatches).toEqual(
            Array.from(
              { length: CONCURRENT_WRITERS },
              (_, index) => `w${index + 1}:${CONCURRENT_BATCHES}`,
            ).sort(),
          );
        });
      },
      LONG_TEST_MS,
    );

    it(
      name('2: a retried batch replays its entries and changes nothing; batchSeq out of order fails'),
      async () => {
        await withStore(backend, async (store) => {
          await initialized(store);
          const { epoch } = await store.registerWriter('w');
          const first = stagedBatch('w', epoch, 1n, [
            ['trades', 3],
            ['quotes', 2],
          ]);
          const original = await store.commit(first);
          expect(original.replayed).toBe(false);
          const headsAfter = await headsOf(store);
          const retried = await store.commit(first);
          expect(retried.replayed).toBe(true);
          expect(retried.entries).toEqual(original.entries);
          expect(await headsOf(store)).toEqual(headsAfter);

          await expectCode(
            store.commit(stagedBatch('w', epoch, 3n, [['trades', 1]])),
            'SEQUENCER_BATCH_ORDER',
          );
          await store.commit(stagedBatch('w', epoch, 2n, [['trades', 1]]));
          const third = await store.commit(stagedBatch('w', epoch, 3n, [['orders', 4]]));
          const headsThen = await headsOf(store);
          await expectCode(
            store.commit(stagedBatch('w', epoch, 1n, [['trades', 1]])),
            'SEQUENCER_BATCH_ORDER',
          );
          await expectCode(
            store.commit(stagedBatch('w', epoch, 5n, [['trades', 1]])),
            'SEQUENCER_BATCH_ORDER',
          );
          expect(await headsOf(store)).toEqual(headsThen);
          // The last batch is still the one a retry replays.
          const again = await store.commit(stagedBatch('w', epoch, 3n, [['orders', 4]]));
          expect(again).toEqual({ entries: third.entries, replayed: true });
          expect((await store.writers())[0]?.lastBatchSeq).toBe(3n);
        });
      },
    );

    it(
      name('3: a re-registered or fenced writer epoch cannot commit and the log stays unchanged'),
      async () => {
        await withStore(backend, async (store) => {
          await initialized(store);
          const one = await store.registerWriter('w');
          expect(one).toEqual({ writer: 'w', epoch: 1n, lastBatchSeq: 0n, fenced: false, closed: [] });
          await store.commit(stagedBatch('w', 1n, 1n, [['trades', 2]]));
          const two = await store.registerWriter('w');
          expect(two).toEqual({
            writer: 'w',
            epoch: 2n,
            lastBatchSeq: 0n,
            fenced: false,
            closed: [{ epoch: 1n, lastBatchSeq: 1n }],
          });
          const before = await headsOf(store);
          await expectCode(store.commit(stagedBatch('w', 1n, 2n, [['trades', 1]])), 'SEQUENCER_FENCED');
          // Fencing is checked before idempotency: a superseded epoch cannot even replay.
          await expectCode(store.commit(stagedBatch('w', 1n, 1n, [['trades', 2]])), 'SEQUENCER_FENCED');
          // An epoch from the future and an unknown writer are fenced too.
          await expectCode(store.commit(stagedBatch('w', 3n, 1n, [['trades', 1]])), 'SEQUENCER_FENCED');
          await expectCode(
            store.commit(stagedBatch('stranger', 1n, 1n, [['trades', 1]])),
            'SEQUENCER_FENCED',
          );
          expect(await headsOf(store)).toEqual(before);

          await store.commit(stagedBatch('w', 2n, 1n, [['trades', 1]]));
          // Fencing below the current epoch leaves it alone.
          const below = await store.fence('w', 1n);
          expect(below.record).toMatchObject({ epoch: 2n, fenced: false });
          const fenced = await store.fence('w', 2n);
          expect(fenced.record).toMatchObject({ writer: 'w', epoch: 2n, lastBatchSeq: 1n, fenced: true });
          expect(fenced.heads.tables.get('trades')).toBe(3n);
          const atFence = await headsOf(store);
          await expectCode(store.commit(stagedBatch('w', 2n, 2n, [['trades', 1]])), 'SEQUENCER_FENCED');
          expect(await headsOf(store)).toEqual(atFence);
          expect(await readWholeLog(store, 'trades', SEQUENCER_READ_LIMIT_MAX)).toHaveLength(2);

          const three = await store.registerWriter('w');
          expect(three).toEqual({
            writer: 'w',
            epoch: 3n,
            lastBatchSeq: 0n,
            fenced: false,
            closed: [
              { epoch: 1n, lastBatchSeq: 1n },
              { epoch: 2n, lastBatchSeq: 1n },
            ],
          });
          const resumed = await store.commit(stagedBatch('w', 3n, 1n, [['trades', 1]]));
          expect(resumed.entries[0]?.txnFirst).toBe(4n);
        });
      },
    );

    it(
      name('3b: fencing an unknown writer records epoch 0, fenced; its registration starts at epoch 1'),
      async () => {
        await withStore(backend, async (store) => {
          await initialized(store);
          const { record, heads } = await store.fence('ghost', 4n);
          expect(record).toEqual({ writer: 'ghost', epoch: 0n, lastBatchSeq: 0n, fenced: true, closed: [] });
          expect(heads.tables.size).toBe(0);
          await expectCode(store.commit(stagedBatch('ghost', 1n, 1n, [['trades', 1]])), 'SEQUENCER_FENCED');
          const registered = await store.registerWriter('ghost');
          expect(registered).toMatchObject({ epoch: 1n, fenced: false, lastBatchSeq: 0n });
          const result = await store.commit(stagedBatch('ghost', 1n, 1n, [['trades', 1]]));
          expect(result.entries[0]?.txnFirst).toBe(1n);
        });
      },
    );

    it(
      name('4: promotion racing commits: every acked commit is in the log, none above the fence heads'),
      async () => {
        await withStore(backend, async (store) => {
          await initialized(store);
          const { epoch } = await store.registerWriter('old');
          const other = await store.registerWriter('other');
          const acked: CommitResult[] = [];
          const rejected: unknown[] = [];
          let fence: Promise<{ heads: Heads }> | null = null;
          let fenceDone = false;
          const oldLoop = async () => {
            // Commits until fenced, then a few more attempts; a fenced batch is never numbered,
            // so the writer's move is to retry the same batch (and be fenced again).
            let afterFenced = 0;
            let batch = 1n;
            while (afterFenced < 5) {
              if (batch > 10_000n) throw new Error('the fence never took effect');
              const sent = store.commit(
                stagedBatch('old', epoch, batch, [['trades', 1 + Number(batch % 3n)]]),
              );
              // The fence races batch 20: both requests are in flight together.
              if (batch === 20n && fence === null)
                fence = store.fence('old', epoch).finally(() => (fenceDone = true));
              try {
                acked.push(await sent);
                batch += 1n;
              } catch (error) {
                rejected.push(error);
                if (fenceDone) afterFenced += 1;
              }
            }
          };
          const otherLoop = async () => {
            // Another writer keeps committing until some of its commits were sent after the fence
            // resolved: those land above the fence heads, so the bound below is not vacuous.
            let batch = 0n;
            let sentAfterFence = 0;
            while (sentAfterFence < 3) {
              const fencedAlready = fenceDone;
              batch += 1n;
              await store.commit(stagedBatch('other', other.epoch, batch, [['trades', 1]]));
              if (fencedAlready) sentAfterFence += 1;
            }
          };
          await Promise.all([oldLoop(), otherLoop()]);
          expect(fence).not.toBeNull();
          const fenceHeads = (await (fence as unknown as Promise<{ heads: Heads }>)).heads;
          expect(rejected.length).toBeGreaterThanOrEqual(5);
          for (const error of rejected) expect(error).toMatchObject({ code: 'SEQUENCER_FENCED' });
          const log = await readWholeLog(store, 'trades', 50);
          const limit = fenceHeads.tables.get('trades') ?? 0n;
          const oldEntries = log.filter((entry) => entry.writer === 'old');
          // Every acked commit is in the log as answered, and nothing else of the fenced epoch is.
          expect(oldEntries).toEqual(acked.map((result) => result.entries[0]));
          for (const entry of oldEntries) expect(entry.txnFirst).toBeLessThanOrEqual(limit);
          // The other writer kept committing past the fence, so the bound is not vacuous.
          expect(log.at(-1)?.txnLast).toBeGreaterThan(limit);
          expect(acked.length).toBeGreaterThanOrEqual(19);
        });
      },
      LONG_TEST_MS,
    );

    it(name('5: readLog from any txn, inside an entry too, with any limit, pages contiguously'), async () => {
      await withStore(backend, async (store) => {
        await initialized(store);
        const { epoch } = await store.registerWriter('w');
        const random = seededRandom(5);
        const results: LogEntry[] = [];
        for (let batch = 1n; batch <= 30n; batch += 1n) {
          const result = await store.commit(
            stagedBatch('w', epoch, batch, [['trades', 1 + randomInt(random, TEST_TXNS_MAX)]]),
          );
          results.push(...result.entries);
        }
        const head = results.at(-1)?.txnLast ?? 0n;
        for (let txn = 1n; txn <= head; txn += 1n) {
          const holding = results.findIndex((entry) => entry.txnFirst <= txn && txn <= entry.txnLast);
          for (const limit of [1, 2, 7, SEQUENCER_READ_LIMIT_MAX]) {
            const page = await store.readLog('trades', txn, limit);
            expect(page).toEqual(results.slice(holding, holding + limit));
          }
        }
        expect(await store.readLog('trades', head + 1n, 10)).toEqual([]);
        expect(await store.readLog('trades', head + 1000n, 10)).toEqual([]);
        expect(await store.readLog('never_numbered', 1n, 10)).toEqual([]);
        expect(await readWholeLog(store, 'trades', 4)).toEqual(results);
      });
    });

    it(name('5b: readLog rejects a limit outside 1..1000 (INVALID_ARGUMENT)'), async () => {
      await withStore(backend, async (store) => {
        await initialized(store);
        for (const limit of [0, -1, 1.5, SEQUENCER_READ_LIMIT_MAX + 1, Number.NaN])
          await expectCode(store.readLog('trades', 1n, limit), 'INVALID_ARGUMENT');
        expect(await store.readLog('trades', 1n, SEQUENCER_READ_LIMIT_MAX)).toEqual([]);
      });
    });

    it(
      name('6: watch resolves after another caller commits, with no lost wake-up; abort resolves after'),
      async () => {
        await withStore(backend, async (store) => {
          await initialized(store);
          const { epoch } = await store.registerWriter('w');
          const never = new AbortController().signal;

          // A commit by another caller wakes a pending watch.
          const start = await store.heads();
          let settled = false;
          const pending = store.watch(start.version, never).finally(() => (settled = true));
          await store.heads(); // a round trip: nothing changed, so the watch must still wait
          expect(settled).toBe(false);
          await store.commit(stagedBatch('w', epoch, 1n, [['trades', 1]]));
          const woke = await pending;
          expect(woke).toBeGreaterThan(start.version);
          expect((await store.heads()).version).toBeGreaterThanOrEqual(woke);

          // No lost wake-up: a commit between heads() and watch() resolves the watch at once
          // (the signal never aborts, so only the commit can resolve it).
          const seen = await store.heads();
          await store.commit(stagedBatch('w', epoch, 2n, [['trades', 1]]));
          expect(await store.watch(seen.version, never)).toBeGreaterThan(seen.version);

          // Versions only grow.
          const later = await store.heads();
          expect(later.version).toBeGreaterThan(seen.version);

          // Aborting resolves with `after`; so does an already aborted signal.
          const controller = new AbortController();
          const aborted = store.watch(later.version, controller.signal);
          controller.abort();
          expect(await aborted).toBe(later.version);
          expect(await store.watch(later.version, controller.signal)).toBe(later.version);
        });
      },
    );

    it(
      name('initialize: the same arguments again are a no-op, others mismatch; heads start after startAfter'),
      async () => {
        await withStore(backend, async (store) => {
          expect(await store.clusterId()).toBeNull();
          const startAfter = new Map([
            ['trades', 41n],
            ['quotes', 0n],
          ]);
          await store.initialize(CLUSTER, startAfter);
          expect(await store.clusterId()).toBe(CLUSTER);
          await store.initialize(CLUSTER, new Map([...startAfter].reverse()));
          await expectCode(store.initialize('another-cluster', startAfter), 'SEQUENCER_CLUSTER_MISMATCH');
          await expectCode(
            store.initialize(CLUSTER, new Map([['trades', 40n]])),
            'SEQUENCER_CLUSTER_MISMATCH',
          );
          await expectCode(
            store.initialize(CLUSTER, new Map([...startAfter, ['orders', 1n]])),
            'SEQUENCER_CLUSTER_MISMATCH',
          );
          const heads = await store.heads();
          expect(heads.tables).toEqual(startAfter);

          const { epoch } = await store.registerWriter('w');
          const result = await store.commit(
            stagedBatch('w', epoch, 1n, [
              ['trades', 2],
              ['orders', 1],
            ]),
          );
          expect(result.entries.map((entry) => [entry.table, entry.txnFirst, entry.txnLast])).toEqual([
            ['trades', 42n, 43n],
            ['orders', 1n, 1n],
          ]);
          expect(await readWholeLog(store, 'trades', 10, 41n)).toEqual([result.entries[0]]);
          // Still a no-op after commits moved the heads.
          await store.initialize(CLUSTER, startAfter);
          expect((await store.heads()).tables.get('trades')).toBe(43n);
        });
      },
    );

    it(name('a commit before initialize fails SEQUENCER_NOT_INITIALIZED'), async () => {
      await withStore(backend, async (store) => {
        await expectCode(
          store.commit(stagedBatch('w', 1n, 1n, [['trades', 1]])),
          'SEQUENCER_NOT_INITIALIZED',
        );
        expect((await store.heads()).tables.size).toBe(0);
      });
    });

    it(name('malformed commit requests fail INVALID_ARGUMENT before any state is read'), async () => {
      await withStore(backend, async (store) => {
        await initialized(store);
        const { epoch } = await store.registerWriter('w');
        const good = stagedBatch('w', epoch, 1n, [['trades', 1]]);
        const segment = good.segments[0] as StagedSegmentRef;
        const tooMany = Array.from({ length: SEQUENCER_BATCH_MAX + 1 }, (_, index) =>
          stagedSegment(`t${index}`, 'w', epoch, 1n, 1),
        );
        const malformed: [string, CommitRequest][] = [
          ['no segments', { ...good, segments: [] }],
          ['too many segments', { ...good, segments: tooMany }],
          ['one table twice', { ...good, segments: [segment, segment] }],
          ['txnCount 0', { ...good, segments: [{ ...segment, txnCount: 0 }] }],
          ['txnCount fractional', { ...good, segments: [{ ...segment, txnCount: 1.5 }] }],
          ['negative crc32', { ...good, segments: [{ ...segment, crc32: -1 }] }],
          ['crc32 above 32 bits', { ...good, segments: [{ ...segment, crc32: 2 ** 32 }] }],
          ['empty staged key', { ...good, segments: [{ ...segment, staged: '' }] }],
          ['bytes 0', { ...good, segments: [{ ...segment, bytes: 0 }] }],
          ['batchSeq 0', { ...good, batchSeq: 0n }],
          ['writerEpoch 0', { ...good, writerEpoch: 0n }],
          // An invalid writer id is INVALID_ARGUMENT, not SEQUENCER_FENCED: checked before state.
          ['writer id with a slash', { ...good, writer: 'a/b' }],
          ['empty writer id', { ...good, writer: '' }],
        ];
        const before = await store.heads();
        for (const [what, commit] of malformed) {
          const outcome = await store.commit(commit).then(
            () => 'committed',
            (error: unknown) => (isWalshipError(error) ? error.code : String(error)),
          );
          expect([what, outcome]).toEqual([what, 'INVALID_ARGUMENT']);
        }
        // A table name that is not a table key is refused as invalid too (its own code).
        await expect(
          store.commit({ ...good, segments: [{ ...segment, table: 'Not/A/Key' }] }),
        ).rejects.toMatchObject({ kind: 'invalid' });
        expect(await store.heads()).toEqual(before);
        // The writer's batch 1 is still free: nothing was consumed by the bad requests.
        expect((await store.commit(good)).replayed).toBe(false);
      });
    });

    it(name('close() resolves pending watches with their after; later calls throw ClosedError'), async () => {
      const store = await backend.open();
      await initialized(store);
      const { version } = await store.heads();
      const pending = store.watch(version, new AbortController().signal);
      await store.close();
      expect(await pending).toBe(version);
      await store.close(); // idempotent
      await expectCode(store.heads(), 'CLOSED');
      await expectCode(store.readLog('trades', 1n, 10), 'CLOSED');
      await expectCode(store.registerWriter('w'), 'CLOSED');
      await expectCode(store.commit(stagedBatch('w', 1n, 1n, [['trades', 1]])), 'CLOSED');
      await expectCode(store.watch(0n, new AbortController().signal), 'CLOSED');
      await expectCode(store.writers(), 'CLOSED');
    });

    const reopen = backend.reopen?.bind(backend);
    if (reopen !== undefined)
      it(
        name(
          '7: reopen mid-stream: no gap, a retried last batch replays with the same numbers, version never goes back',
        ),
        async () => {
          await withStore(backend, async (first, replace) => {
            await initialized(first);
            let store = first;
            /** Resolves once the reopen finished; writers that hit the closed store wait on it. */
            let reopened: Promise<void> | null = null;
            let ackedTotal = 0;
            const results = new Map<string, CommitResult>();
            const requests = new Map<string, CommitRequest>();
            const epochs = new Map<string, bigint>();
            const writerIds = ['w1', 'w2', 'w3'];
            for (const writer of writerIds) epochs.set(writer, (await store.registerWriter(writer)).epoch);
            let versionBefore = 0n;

            const commitSurvivingRestart = async (commit: CommitRequest): Promise<CommitResult> => {
              for (let attempt = 0; attempt < 100; attempt += 1) {
                try {
                  return await store.commit(commit);
                } catch (error) {
                  const retryable =
                    isWalshipError(error) && (error.kind === 'closed' || error.kind === 'unavailable');
                  if (!retryable) throw error;
                  // Outcome unknown: wait for the new store, send the very same request again.
                  await (reopened ?? new Promise((resolve) => setTimeout(resolve, 10)));
                }
              }
              throw new Error(`batch ${commit.batchSeq} of ${commit.writer} never got through`);
            };
            const writerLoop = async (writer: string) => {
              const random = seededRandom(writer.length * 7 + Number(writer.slice(1)));
              for (let batch = 1n; batch <= 40n; batch += 1n) {
                const commit = stagedBatch(writer, epochs.get(writer) ?? 0n, batch, randomTables(random));
                const result = await commitSurvivingRestart(commit);
                expectResultMatches(result, commit);
                results.set(`${writer}/${batch}`, result);
                requests.set(`${writer}/${batch}`, commit);
                ackedTotal += 1;
                if (ackedTotal === 50 && reopened === null) {
                  versionBefore = (await store.heads()).version;
                  reopened = reopen(store).then((next) => {
                    store = next;
                    replace(next);
                  });
                }
              }
            };
            await Promise.all(writerIds.map(writerLoop));
            expect(reopened).not.toBeNull();
            await reopened;

            const after = await store.heads();
            expect(after.version).toBeGreaterThan(versionBefore);
            expect(await store.clusterId()).toBe(CLUSTER);
            for (const table of SHARED_TABLES) {
              const log = await readWholeLog(store, table, 64);
              const fromResults = [...results.values()].flatMap((result) =>
                result.entries.filter((entry) => entry.table === table),
              );
              fromResults.sort((a, b) => (a.txnFirst < b.txnFirst ? -1 : 1));
              // Each batch exactly once, as answered (a replayed answer carries the same numbers).
              expect(log).toEqual(fromResults);
              expect(after.tables.get(table)).toBe(log.at(-1)?.txnLast ?? undefined);
            }
            // A retry of each writer's last batch on the reopened store replays the same numbers.
            for (const writer of writerIds) {
              const last = requests.get(`${writer}/40`) as CommitRequest;
              const original = results.get(`${writer}/40`) as CommitResult;
              expect(await store.commit(last)).toEqual({ entries: original.entries, replayed: true });
            }
            expect((await store.heads()).version).toBe(after.version);

            // A plain reopen when idle keeps everything, and the version does not go back.
            const writersBefore = await store.writers();
            const next = await reopen(store);
            store = next;
            replace(next);
            expect(await store.writers()).toEqual(writersBefore);
            expect((await store.heads()).version).toBeGreaterThanOrEqual(after.version);
            const { epoch } = await store.registerWriter('w1');
            const more = await store.commit(stagedBatch('w1', epoch, 1n, [['trades', 1]]));
            expect(more.entries[0]?.txnFirst).toBe((after.tables.get('trades') ?? 0n) + 1n);
            expect((await store.heads()).version).toBeGreaterThan(after.version);
          });
        },
        LONG_TEST_MS,
      );
  });
}
