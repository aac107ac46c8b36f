import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Clock, systemClock } from '../core/index.js';
import { stagedKey, txnLogKey } from '../layout/index.js';
import { registerTable } from '../layout/tables-registry.js';
import { encodeTxnLogEntry } from '../layout/txn-log-entry.js';
import { FsStore, type GetOptions, type ObjectStore } from '../objectstore/index.js';
import type { TableFollower } from '../replica/index.js';
import { verifyStagedSegment } from '../replica/segment-verifier.js';
import {
  PARTIAL_ENTRY_META_PREFIX,
  REJECTED_COUNT_META_PREFIX,
  REJECTED_META_PREFIX,
  TableStore,
  tableKey,
} from '../table/index.js';
import {
  decodeSegment,
  decodeSegmentHeader,
  encodeTxnRecord,
  sealSegment,
  type TxnRecord,
} from '../wal/index.js';
import { SequencedFollower, type SequencedFollowerOptions } from './follower.js';
import { type LogSource, sequencerLogSource } from './log-source.js';
import type { LogEntry, SequencerStore } from './sequencer-store.js';
import { SqliteSequencerStore } from './sqlite-store.js';
import { storeLogSource } from './store-log-source.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000_000_000n;
const WAIT = { timeout: 20_000, interval: 10 };

let dir: string;
let store: FsStore;
let seq: SqliteSequencerStore;
const followers: SequencedFollower[] = [];
const opened: TableStore[] = [];
let timestamp = 0n;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-seq-follower-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
  seq = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer.sqlite') });
  await seq.initialize('cluster-1', new Map());
});

afterEach(async () => {
  for (const follower of followers.splice(0)) await follower.stop();
  for (const tables of opened.splice(0)) tables.close();
  await seq.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

// --- what writers do (RFC-0003 commit protocol steps 2–4, 6) ---

/** A data txn: the designated timestamp and a column `v` (long unless given) holding `values`. */
function record(
  txn: bigint,
  values: readonly number[],
  column: { name: string; type: 'long' | 'double' } = { name: 'v', type: 'long' },
): TxnRecord {
  const stamps = values.map(() => T0 + ++timestamp);
  return {
    txn,
    commitTimeUs: T0 + txn,
    kind: 'data',
    rowCount: values.length,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: true,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.from(stamps) },
      },
      {
        name: column.name,
        addedInTxn: true,
        nulls: null,
        data:
          column.type === 'long'
            ? { type: 'long', values: BigInt64Array.from(values, (v) => BigInt(v)) }
            : { type: 'double', values: Float64Array.from(values) },
      },
    ],
  };
}

type TxnSpec =
  | readonly number[]
  | { values: readonly number[]; column: { name: string; type: 'long' | 'double' } };

function recordOf(txn: bigint, spec: TxnSpec): TxnRecord {
  if (isColumnSpec(spec)) return record(txn, spec.values, spec.column);
  return record(txn, spec);
}

function isColumnSpec(spec: TxnSpec): spec is Exclude<TxnSpec, readonly number[]> {
  return !Array.isArray(spec);
}

/**
 * A writer as the real one behaves towards store and sequencer: per batch one staged segment per
 * table, its records numbered in the writer's own contiguous local sequence (not 1..n), uploaded
 * create-only, then committed.
 */
class TestWriter {
  readonly id: string;
  epoch = 0n;
  #batchSeq = 0n;
  readonly #local = new Map<string, bigint>();
  /** Sealed bytes by staged key: what the writer's queue would still hold. */
  readonly segments = new Map<string, Uint8Array>();
  readonly entries: LogEntry[] = [];

  constructor(id: string) {
    this.id = id;
  }

  async register(): Promise<this> {
    this.epoch = (await seq.registerWriter(this.id)).epoch;
    return this;
  }

  /** One batch: per table name, its txns in order (each a list of `v` values). */
  async commit(tables: Record<string, readonly TxnSpec[]>): Promise<LogEntry[]> {
    const batchSeq = ++this.#batchSeq;
    const segments = [];
    for (const [name, txns] of Object.entries(tables)) {
      const key = tableKey(name);
      const first = (this.#local.get(key) ?? 100n) + 1n; // local numbers: not 1..n
      const records = txns.map((spec, i) => recordOf(first + BigInt(i), spec));
      this.#local.set(key, first + BigInt(records.length) - 1n);
      const bytes = await sealSegment({
        tableName: name,
        epoch: this.epoch,
        writerNodeId: this.id,
        records: records.map((r) => encodeTxnRecord(r)),
        staged: true,
      });
      const staged = stagedKey(key, this.id, this.epoch, batchSeq);
      expect((await store.put(staged, bytes, { condition: { type: 'absent' } })).status).toBe('written');
      this.segments.set(staged, bytes);
      segments.push({
        table: key,
        staged,
        txnCount: records.length,
        bytes: bytes.length,
        crc32: decodeSegmentHeader(bytes).objectChecksum,
      });
    }
    const result = await seq.commit({ writer: this.id, writerEpoch: this.epoch, batchSeq, segments });
    this.entries.push(...result.entries);
    return result.entries;
  }
}

async function exportEntries(entries: readonly LogEntry[]): Promise<void> {
  for (const entry of entries)
    await store.put(txnLogKey(entry.table, entry.txnFirst), encodeTxnLogEntry(entry), {
      condition: { type: 'absent' },
    });
}

/** Every entry of `table` in log order, from the sequencer. */
async function logOf(table: string): Promise<LogEntry[]> {
  return seq.readLog(tableKey(table), 1n, 1000);
}

// --- followers ---

function openTables(name: string): TableStore {
  const tables = TableStore.open(path.join(dir, `${name}.sqlite`));
  opened.push(tables);
  return tables;
}

function follow(
  tables: TableStore,
  source: LogSource,
  extra: Partial<SequencedFollowerOptions> = {},
): SequencedFollower {
  const follower = new SequencedFollower({ tables, store, source, clock: systemClock, log, ...extra });
  followers.push(follower);
  follower.start();
  return follower;
}

function fromStore(): LogSource {
  return storeLogSource({ store, pollIntervalMs: 10, tablesRefreshMs: 0 });
}

/** tables.json as a writer registers its tables (the store source discovers tables there). */
async function registerTables(...names: string[]): Promise<void> {
  for (const name of names) expect(await registerTable(store, tableKey(name), 1n)).toBe('registered');
}

async function caughtUp(follower: SequencedFollower, table: string): Promise<void> {
  const head = (await seq.heads()).tables.get(tableKey(table)) ?? 0n;
  await vi.waitFor(() => expect(follower.appliedTxn(tableKey(table))).toBe(head), WAIT);
}

/** Every user table of a table-store file: its watermark, columns and rows in rowid (= apply) order. */
function dump(file: string): unknown {
  const db = new Database(file, { readonly: true });
  try {
    db.defaultSafeIntegers(true);
    const tables = db.prepare('SELECT name, last_txn FROM _walship_tables ORDER BY name').all() as {
      name: string;
      last_txn: bigint;
    }[];
    return tables.map(({ name, last_txn }) => ({
      name,
      lastTxn: last_txn,
      columns: db.prepare(`SELECT name, type FROM pragma_table_info(?)`).all(name),
      rows: db.prepare(`SELECT * FROM "${name.replaceAll('"', '""')}" ORDER BY rowid`).all(),
    }));
  } finally {
    db.close();
  }
}

function rowsOf(file: string, table: string): Record<string, unknown>[] {
  const db = new Database(file, { readonly: true });
  try {
    db.defaultSafeIntegers(true);
    return db.prepare(`SELECT * FROM "${table}" ORDER BY rowid`).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** The `v` values the log's entries carry, in log order, read back from the staged segments. */
async function valuesInLogOrder(table: string, writers: readonly TestWriter[]): Promise<bigint[]> {
  const values: bigint[] = [];
  for (const entry of await logOf(table)) {
    const bytes = writers.map((w) => w.segments.get(entry.staged)).find((b) => b !== undefined)!;
    for (const txn of (await decodeSegment(bytes)).txns) {
      const column = txn.columns.find((c) => c.name === 'v');
      if (column !== undefined) values.push(...Array.from(column.data.values as BigInt64Array));
    }
  }
  return values;
}

/** `store` with every GET counted by key, and an optional hook before each. */
function countingStore(inner: ObjectStore, before?: (key: string, options?: GetOptions) => Promise<void>) {
  const gets = new Map<string, number>();
  const puts = new Map<string, number>();
  let lists = 0;
  const wrapped: ObjectStore = {
    get description() {
      return inner.description;
    },
    async get(key, options) {
      gets.set(key, (gets.get(key) ?? 0) + 1);
      await before?.(key, options);
      return inner.get(key, options);
    },
    async put(key, body, options) {
      puts.set(key, (puts.get(key) ?? 0) + 1);
      return inner.put(key, body, options);
    },
    head: (key) => inner.head(key),
    async list(prefix, options) {
      lists++;
      return inner.list(prefix, options);
    },
    delete: (key) => inner.delete(key),
    deleteMany: (keys) => inner.deleteMany(keys),
    close: async () => {},
  };
  return { store: wrapped, gets, puts, lists: () => lists };
}

// --- the tests ---

describe('SequencedFollower', () => {
  it('a follower of the sequencer and one of the store end identical, in log order, with the sequencer numbers', async () => {
    const w1 = await new TestWriter('w1').register();
    const w2 = await new TestWriter('w2').register();
    await w1.commit({ trades: [[1, 2], [3]], quotes: [[10]] });
    await w2.commit({ trades: [[1001, 1002, 1003]] });
    await w1.commit({ trades: [[4]], quotes: [[11, 12], [13]] });
    await w2.commit({ quotes: [[1010]], trades: [[1004], [1005]] });
    await w1.commit({ trades: [[5, 6]] });
    await exportEntries([...w1.entries, ...w2.entries]);
    await registerTables('trades', 'quotes');

    const appliedA: [string, bigint][] = [];
    const a = follow(openTables('a'), sequencerLogSource(seq), {
      onApplied: (t, txn) => appliedA.push([t, txn]),
    });
    const b = follow(openTables('b'), fromStore());
    for (const f of [a, b]) for (const t of ['trades', 'quotes']) await caughtUp(f, t);

    const heads = (await seq.heads()).tables;
    expect(heads.get('trades')).toBe(7n); // 2 + 1 + 1 + 2 + 1 txns
    expect(heads.get('quotes')).toBe(4n); // 1 + 2 + 1
    expect(dump(path.join(dir, 'a.sqlite'))).toEqual(dump(path.join(dir, 'b.sqlite')));
    for (const t of ['trades', 'quotes']) {
      expect(a.appliedTxn(t)).toBe(heads.get(t));
      expect(b.appliedTxn(t)).toBe(heads.get(t));
      // Rows in the sequencer's order: the two writers' batches interleaved as committed.
      const values = rowsOf(path.join(dir, 'a.sqlite'), t).map((row) => row.v);
      expect(values).toEqual(await valuesInLogOrder(t, [w1, w2]));
    }
    expect(rowsOf(path.join(dir, 'b.sqlite'), 'trades').map((row) => row.v)).toEqual([
      1n,
      2n,
      3n,
      1001n,
      1002n,
      1003n,
      4n,
      1004n,
      1005n,
      5n,
      6n,
    ]);
    // Watermarks move entry by entry to each entry's txnLast under the sequencer's numbering.
    const tradesEntries = await logOf('trades');
    expect(appliedA.filter(([t]) => t === 'trades').map(([, txn]) => txn)).toEqual(
      tradesEntries.map((e) => e.txnLast),
    );
    expect(a.status().source).toBe('sequencer');
    expect(b.status().source).toBe('store');
    expect(b.status().tables.every((t) => t.suspended === null && t.rejected === 0)).toBe(true);
  });

  it('a writer applies its own entries from its queue (no GET) and drops them once applied', async () => {
    const w1 = await new TestWriter('w1').register();
    const w2 = await new TestWriter('w2').register();
    await w1.commit({ trades: [[1]] });
    await w2.commit({ trades: [[2]] });
    await w1.commit({ trades: [[3]] });
    const counting = countingStore(store);
    const own = new Map(w1.segments);
    const dropped: string[] = [];
    const f = new SequencedFollower({
      tables: openTables('w1'),
      store: counting.store,
      source: sequencerLogSource(seq),
      clock: systemClock,
      log,
      ownSegment: (key) => own.get(key),
      dropOwnSegment: (key) => {
        dropped.push(key);
        own.delete(key);
      },
    });
    followers.push(f);
    f.start();
    await caughtUp(f, 'trades');
    expect(rowsOf(path.join(dir, 'w1.sqlite'), 'trades').map((r) => r.v)).toEqual([1n, 2n, 3n]);
    for (const key of w1.segments.keys()) expect(counting.gets.get(key)).toBeUndefined();
    for (const key of w2.segments.keys()) expect(counting.gets.get(key)).toBe(1);
    expect(dropped).toEqual([...w1.segments.keys()]);
  });

  it('a corrupted staged object suspends only its table; resume after it is fixed applies it', async () => {
    const w1 = await new TestWriter('w1').register();
    await w1.commit({ trades: [[1]], quotes: [[10]] });
    const [broken] = await w1.commit({ trades: [[2]], quotes: [[11]] });
    await w1.commit({ trades: [[3]], quotes: [[12]] });
    const good = w1.segments.get(broken!.staged)!;
    const bad = good.slice();
    bad[Math.floor(bad.length / 2)]! ^= 0xff;
    await store.put(broken!.staged, bad);

    const f = follow(openTables('a'), sequencerLogSource(seq));
    await caughtUp(f, 'quotes');
    await vi.waitFor(
      () =>
        expect(f.status().tables.find((t) => t.key === 'trades')?.suspended?.code).toBe('CORRUPT_SEGMENT'),
      WAIT,
    );
    const trades = f.status().tables.find((t) => t.key === 'trades')!;
    expect(trades.appliedTxn).toBe(1n);
    expect(trades.suspended?.code).toBe('CORRUPT_SEGMENT');
    expect(trades.suspended?.objectKey).toBe(broken!.staged);
    expect(trades.suspended?.message).toContain('walship admin resume --table trades');
    expect(f.status().tables.find((t) => t.key === 'quotes')!.suspended).toBeNull();
    expect(f.resume('quotes')).toBe(false);

    await store.put(broken!.staged, good);
    expect(f.resume('trades')).toBe(true);
    await caughtUp(f, 'trades');
    expect(rowsOf(path.join(dir, 'a.sqlite'), 'trades').map((r) => r.v)).toEqual([1n, 2n, 3n]);
    expect(f.status().tables.find((t) => t.key === 'trades')!.suspended).toBeNull();
  });

  it('a staged object that is gone suspends its table with SEGMENT_MISSING', async () => {
    const w1 = await new TestWriter('w1').register();
    await w1.commit({ trades: [[1]] });
    const [gone] = await w1.commit({ trades: [[2]] });
    await store.delete(gone!.staged);
    const f = follow(openTables('a'), sequencerLogSource(seq));
    await vi.waitFor(() => expect(f.status().tables[0]?.suspended?.code).toBe('SEGMENT_MISSING'), WAIT);
    const status = f.status().tables[0]!;
    expect(status.appliedTxn).toBe(1n);
    expect(status.suspended?.code).toBe('SEGMENT_MISSING');
    expect(status.suspended?.message).toContain(`${gone!.staged}, numbered txns 2..2`);
    expect(status.suspended?.message).toContain('is gone from the store');
  });

  it('a staged object a GET does not find once (a store behind its writes) is read again after a backoff and applied', async () => {
    const w1 = await new TestWriter('w1').register();
    await w1.commit({ trades: [[1]] });
    const [late] = await w1.commit({ trades: [[2]] });
    let hidden = 0;
    // The first GET of the object answers "not found", as a store lagging behind a write can.
    const lagging: ObjectStore = {
      description: store.description,
      get: async (key, options) => {
        if (key === late!.staged && hidden === 0) {
          hidden++;
          return null;
        }
        return store.get(key, options);
      },
      head: (key) => store.head(key),
      list: (prefix, options) => store.list(prefix, options),
      put: (key, body, options) => store.put(key, body, options),
      delete: (key) => store.delete(key),
      deleteMany: (keys) => store.deleteMany(keys),
      close: async () => {},
    };
    const f = follow(openTables('a'), sequencerLogSource(seq), { store: lagging });
    await caughtUp(f, 'trades');
    expect(hidden).toBe(1);
    const status = f.status().tables[0]!;
    expect(status.suspended).toBeNull();
    expect(status.appliedTxn).toBe(2n);
    expect(f.status().lastError?.message).toContain('read again after a backoff');
    expect(rowsOf(path.join(dir, 'a.sqlite'), 'trades').map((r) => r.v)).toEqual([1n, 2n]);
  });

  it('a schema conflict between two writers is rejected the same way on every follower and the numbering goes on', async () => {
    const w1 = await new TestWriter('w1').register();
    const w2 = await new TestWriter('w2').register();
    await w1.commit({ trades: [[1]] });
    await w1.commit({ trades: [{ values: [7], column: { name: 'x', type: 'long' } }] });
    await w2.commit({ trades: [[2], { values: [8.5], column: { name: 'x', type: 'double' } }, [3]] });
    await w1.commit({ trades: [[4]] });
    await exportEntries([...w1.entries, ...w2.entries]);
    await registerTables('trades');
    const conflicted = 4n; // txn 1 w1, 2 w1's x, 3..5 w2's batch (4 is the double x), 6 w1

    const a = follow(openTables('a'), sequencerLogSource(seq));
    const b = follow(openTables('b'), fromStore());
    for (const f of [a, b]) await caughtUp(f, 'trades');
    expect(a.appliedTxn('trades')).toBe(6n);
    expect(dump(path.join(dir, 'a.sqlite'))).toEqual(dump(path.join(dir, 'b.sqlite')));
    expect(rowsOf(path.join(dir, 'a.sqlite'), 'trades').map((r) => [r.v, r.x])).toEqual([
      [1n, null],
      [null, 7n],
      [2n, null],
      [3n, null],
      [4n, null],
    ]);
    for (const [f, file] of [
      [a, 'a'],
      [b, 'b'],
    ] as const) {
      expect(f.status().tables[0]!.rejected).toBe(1);
      const tables = opened.find((t) => t.file.endsWith(`${file}.sqlite`))!;
      expect(tables.getMeta(`${REJECTED_META_PREFIX}trades.${conflicted}`)).toBe(
        `table "trades" txn ${conflicted}: column "x" is long, the record carries double`,
      );
      expect(tables.getMeta(`${REJECTED_COUNT_META_PREFIX}trades`)).toBe('1');
      expect(tables.getMeta(`${REJECTED_META_PREFIX}trades.${conflicted - 1n}`)).toBeUndefined();
    }
  });

  it('a follower stopped mid-stream resumes from its watermark after a restart, without duplicate rows', async () => {
    const w1 = await new TestWriter('w1').register();
    let next = 0;
    for (let batch = 0; batch < 12; batch++) await w1.commit({ trades: [[next++, next++], [next++]] });
    const total = next;
    // The 6th staged GET blocks until the follower stops (its signal aborts it).
    let stagedGets = 0;
    let blocked: () => void = () => {};
    const reachedBlock = new Promise<void>((resolve) => {
      blocked = resolve;
    });
    const gated = countingStore(store, async (key, options) => {
      if (!key.includes('/staged/') || ++stagedGets < 6) return;
      blocked();
      await new Promise<void>((_, reject) => {
        const signal = options?.signal;
        if (signal?.aborted) reject(signal.reason);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    });
    const tables = TableStore.open(path.join(dir, 'a.sqlite'));
    const first = new SequencedFollower({
      tables,
      store: gated.store,
      source: sequencerLogSource(seq),
      clock: systemClock,
      log,
      downloadConcurrency: 2,
    });
    first.start();
    await reachedBlock;
    await first.stop();
    const watermark = tables.lastTxn('trades');
    tables.close();
    const entryEnds = new Set(w1.entries.map((e) => e.txnLast));
    expect(watermark).toBeGreaterThan(0n);
    expect(watermark).toBeLessThan(24n);
    expect(entryEnds.has(watermark)).toBe(true);
    const partRows = rowsOf(path.join(dir, 'a.sqlite'), 'trades');
    expect(partRows.length).toBe((Number(watermark) / 2) * 3);

    const again = follow(openTables('a'), sequencerLogSource(seq));
    await caughtUp(again, 'trades');
    const values = rowsOf(path.join(dir, 'a.sqlite'), 'trades').map((r) => r.v);
    expect(values).toEqual(Array.from({ length: total }, (_, i) => BigInt(i)));
  });

  it('a table holding an entry only in part (a restore cut inside it) applies the rest of that entry', async () => {
    const w1 = await new TestWriter('w1').register();
    const [cut] = await w1.commit({ trades: [[1], [2], [3]] });
    await w1.commit({ trades: [[4]] });
    await exportEntries(w1.entries);
    await registerTables('trades');
    const tables = openTables('a');
    const segment = await verifyStagedSegment(w1.segments.get(cut!.staged)!, {
      objectKey: cut!.staged,
      entry: cut!,
    });
    tables.transaction(() => {
      tables.applyTxn('trades', segment.txns[0]!);
      tables.setMeta(`${PARTIAL_ENTRY_META_PREFIX}trades`, cut!.txnFirst.toString());
    });
    // The store source can only start at an entry's key: the marker leads it back to txn 1.
    const f = follow(tables, fromStore());
    await caughtUp(f, 'trades');
    expect(rowsOf(path.join(dir, 'a.sqlite'), 'trades').map((r) => r.v)).toEqual([1n, 2n, 3n, 4n]);
    expect(tables.getMeta(`${PARTIAL_ENTRY_META_PREFIX}trades`)).toBe('');
  });

  it('export catch-up writes a missing txnlog object after the grace period and leaves present ones alone', async () => {
    const w1 = await new TestWriter('w1').register();
    const w2 = await new TestWriter('w2').register();
    const [e1] = await w1.commit({ trades: [[1]] });
    const [e2] = await w2.commit({ trades: [[2]] }); // w2 "crashed after ack, before export"
    const [e3] = await w1.commit({ trades: [[3]] });
    await exportEntries([e1!, e3!]);
    const counting = countingStore(store);
    const clock = manualClock();
    let rounds = 0;
    const inner = sequencerLogSource(seq);
    const source: LogSource = {
      ...inner,
      name: 'sequencer',
      wait: (after, signal) => {
        rounds++;
        return inner.wait(after, signal);
      },
    };
    const f = new SequencedFollower({
      tables: openTables('w1'),
      store: counting.store,
      source,
      clock: clock.clock,
      log,
      exportCatchUp: { graceMs: 5_000 },
    });
    followers.push(f);
    f.start();
    await caughtUp(f, 'trades');
    // Not yet past the grace period on the follower's clock: nothing exported, nothing listed.
    expect(await store.get(txnLogKey(tableKey('trades'), e2!.txnFirst))).toBeNull();
    expect(counting.lists()).toBe(0);

    clock.advance(5_001);
    await vi.waitFor(
      async () => expect(await store.get(txnLogKey(tableKey('trades'), e2!.txnFirst))).not.toBeNull(),
      WAIT,
    );
    const got = await store.get(txnLogKey(tableKey('trades'), e2!.txnFirst));
    expect(got?.status === 'ok' && Buffer.from(got.body).equals(Buffer.from(encodeTxnLogEntry(e2!)))).toBe(
      true,
    );
    expect(counting.puts.get(txnLogKey(tableKey('trades'), e1!.txnFirst))).toBeUndefined();
    expect(counting.puts.get(txnLogKey(tableKey('trades'), e3!.txnFirst))).toBeUndefined();
    expect(counting.puts.get(txnLogKey(tableKey('trades'), e2!.txnFirst))).toBe(1);
    await vi.waitFor(() => expect(f.status().export?.exportsWritten).toBe(1), WAIT);
    expect(f.status().export?.conflict).toBeNull();

    // Another grace period with nothing new applied: no further check.
    const listsBefore = counting.lists();
    clock.advance(5_001);
    const roundsThen = rounds;
    await vi.waitFor(() => expect(rounds).toBeGreaterThan(roundsThen + 1), WAIT);
    expect(counting.lists()).toBe(listsBefore);
    expect(counting.puts.get(txnLogKey(tableKey('trades'), e2!.txnFirst))).toBe(1);
  });

  it('export catch-up reports TXNLOG_CONFLICT when a txnlog object holds other bytes, and stops exporting', async () => {
    const w1 = await new TestWriter('w1').register();
    const [e1] = await w1.commit({ trades: [[1]] });
    const [e2] = await w1.commit({ trades: [[2]] });
    await store.put(
      txnLogKey(tableKey('trades'), e1!.txnFirst),
      new TextEncoder().encode('{"not":"the entry"}\n'),
    );
    const clock = manualClock();
    const f = follow(openTables('w1'), sequencerLogSource(seq), {
      clock: clock.clock,
      exportCatchUp: { graceMs: 1_000 },
    });
    await caughtUp(f, 'trades');
    clock.advance(1_001);
    await vi.waitFor(() => expect(f.status().export?.conflict?.code).toBe('TXNLOG_CONFLICT'), WAIT);
    expect(f.status().export?.conflict?.message).toContain(txnLogKey(tableKey('trades'), e1!.txnFirst));
    // Exports stopped: the entry after the conflicting one is not written.
    expect(await store.get(txnLogKey(tableKey('trades'), e2!.txnFirst))).toBeNull();
  });
});

describe('SequencedFollower as a TableFollower (issue 14 item 3)', () => {
  it('reports the status of a followed table natively: no epoch, no polls, txnsBehind unknown without a known head', async () => {
    const w1 = await new TestWriter('w1').register();
    await w1.commit({ trades: [[1, 2], [3]] });
    await w1.commit({ trades: [[4]] });
    await exportEntries(w1.entries);
    await registerTables('trades');
    const fromSequencer: TableFollower = follow(openTables('a'), sequencerLogSource(seq));
    const fromTxnLog: TableFollower = follow(openTables('b'), fromStore());
    for (const f of [fromSequencer, fromTxnLog]) {
      await vi.waitFor(() => expect(f.appliedTxn(tableKey('trades'))).toBe(3n), WAIT);
      await vi.waitFor(() => expect(f.stalenessMs()).not.toBeNull(), WAIT);
      const status = f.status();
      expect(status).toMatchObject({ polls: null, fatal: null, lastError: null });
      expect(status.stalenessMs).not.toBeNull();
      const [trades] = status.tables;
      // Two entries (3 txns, 4 rows), one staged segment each; a sequenced table has no epoch of its own.
      expect(trades).toMatchObject({
        name: 'trades',
        appliedTxn: 3n,
        epoch: null,
        segmentsApplied: 2,
        rowsApplied: 4,
      });
      expect(f.appliedAll()).toEqual(new Map([[tableKey('trades'), 3n]]));
      // probeNow and refresh have nothing to hurry: the source reports changes as they happen.
      f.probeNow([tableKey('trades')]);
      await f.refresh();
    }
    // The sequencer knows each table's head; the store's txnlog/ does not say: unknown, not 0.
    await vi.waitFor(
      () => expect(fromSequencer.status().tables[0]).toMatchObject({ headTxn: 3n, txnsBehind: 0n }),
      WAIT,
    );
    expect(fromTxnLog.status().tables[0]).toMatchObject({ headTxn: null, txnsBehind: null });
  });
});

describe('sequencerLogSource', () => {
  it('falls back to polling heads() when watch fails, and still sees the next commit', async () => {
    const failingWatch: SequencerStore = new Proxy(seq, {
      get(target, property, receiver) {
        if (property === 'watch') return () => Promise.reject(new Error('watch is broken'));
        const value = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    let failures = 0;
    const source = sequencerLogSource(failingWatch, { onWatchFailed: () => failures++ });
    const w1 = await new TestWriter('w1').register();
    const before = (await seq.heads()).version;
    const waited = source.wait(before, new AbortController().signal);
    await w1.commit({ trades: [[1]] });
    expect(await waited).toBeGreaterThan(before);
    expect(failures).toBe(1);
    expect(await source.tables()).toEqual(['trades']);
    expect(source.knownHead?.('trades')).toBe(1n);
  });
});

/** Monotonic time that moves only when told (sleeps are real: they only pace the loop). */
function manualClock() {
  let nowMs = 0;
  const clock: Clock = {
    wallMs: () => Date.now(),
    monotonicMs: () => nowMs,
    sleep: (ms, signal) => systemClock.sleep(ms, signal),
    setTimer: (ms, callback, options) => systemClock.setTimer(ms, callback, options),
  };
  return {
    clock,
    advance(ms: number) {
      nowMs += ms;
    },
  };
}
