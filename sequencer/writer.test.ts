import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { seededRandom, systemClock, type WalshipError } from '../core/index.js';
import { readRegistry, stagedPrefix, txnLogKey } from '../layout/index.js';
import { decodeTxnLogEntry, encodeTxnLogEntry } from '../layout/txn-log-entry.js';
import { FsStore, listAll } from '../objectstore/index.js';
import { asTableKey, tableKey } from '../table/index.js';
import { longLines, testSequencedWriterOptions } from '../tests/helpers/test-sequenced-writer.js';
import { decodeSegment } from '../wal/index.js';
import {
  type CommitRequest,
  type LogEntry,
  type SequencerStore,
  SequencerUnavailableError,
} from './sequencer-store.js';
import { SqliteSequencerStore } from './sqlite-store.js';
import { StagedQueue } from './staged-queue.js';
import { SequencedWriter, type SequencedWriterOptions } from './writer.js';

const log = pino({ level: 'silent' });
/** Each wait below ends as soon as its condition holds; this only bounds a broken run. */
const WAIT = { timeout: 20_000, interval: 10 };

let dir: string;
let store: FsStore;
let sequencer: SqliteSequencerStore;
let opened: { writer: SequencedWriter; queue: StagedQueue }[];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-writer-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
  sequencer = SqliteSequencerStore.open({ path: path.join(dir, 'sequencer.sqlite') });
  await sequencer.initialize('cluster-1', new Map());
  opened = [];
});

afterEach(async () => {
  for (const { writer, queue } of opened.splice(0)) {
    await writer.stop();
    queue.close();
  }
  await sequencer.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A writer for `nodeId` on its own queue file (the same file on every call: a restart). */
async function openWriter(
  nodeId: string,
  overrides: Partial<SequencedWriterOptions> = {},
): Promise<{ writer: SequencedWriter; queue: StagedQueue }> {
  const queue = StagedQueue.open(path.join(dir, `${nodeId}-staged.sqlite`));
  const writer = await SequencedWriter.open(
    testSequencedWriterOptions({ store, sequencer, queue, nodeId, random: seededRandom(7), log }, overrides),
  );
  writer.start();
  const handle = { writer, queue };
  opened.push(handle);
  return handle;
}

/** Closes a writer and its queue as a crash would leave them (nothing flushed beyond SQLite). */
async function close(handle: { writer: SequencedWriter; queue: StagedQueue }): Promise<void> {
  opened.splice(opened.indexOf(handle), 1);
  await handle.writer.stop();
  handle.queue.close();
}

/** The whole log of `table`, paged. */
async function readAll(table: string): Promise<LogEntry[]> {
  const out: LogEntry[] = [];
  for (;;) {
    const page = await sequencer.readLog(table, (out.at(-1)?.txnLast ?? 0n) + 1n, 1000);
    if (page.length === 0) return out;
    out.push(...page);
  }
}

/** The `v` of each record of an entry's staged object, after checking the object against the entry. */
async function valuesOf(entry: LogEntry): Promise<bigint[]> {
  const got = await store.get(entry.staged);
  if (got === null || got.status !== 'ok') throw new Error(`${entry.staged} is missing`);
  const { header, txns } = await decodeSegment(got.body);
  expect(header.staged).toBe(true);
  expect(header.writerNodeId).toBe(entry.writer);
  expect(header.epoch).toBe(entry.writerEpoch);
  expect(header.objectChecksum).toBe(entry.crc32);
  expect(got.body.byteLength).toBe(entry.bytes);
  expect(BigInt(txns.length)).toBe(entry.txnLast - entry.txnFirst + 1n);
  return txns.map((txn) => {
    const column = txn.columns.find((c) => c.name === 'v')!;
    return (column.data.values as BigInt64Array)[0]!;
  });
}

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of listAll(store, prefix)) keys.push(info.key);
  return keys;
}

function expectContiguous(entries: LogEntry[]): void {
  let next = 1n;
  for (const entry of entries) {
    expect(entry.txnFirst).toBe(next);
    next = entry.txnLast + 1n;
  }
}

/** The sequencer with `commit` failing SEQUENCER_UNAVAILABLE while `failing.left` > 0. */
function flaky(inner: SequencerStore, failing: { left: number; applyFirst: boolean; calls: number }) {
  const commit = async (request: CommitRequest) => {
    failing.calls++;
    if (failing.left > 0) {
      failing.left--;
      // An answer lost after the commit happened: the outcome is unknown to the writer.
      if (failing.applyFirst) await inner.commit(request);
      throw new SequencerUnavailableError('injected: the sequencer did not answer');
    }
    return inner.commit(request);
  };
  return new Proxy(inner, {
    get(target, property) {
      if (property === 'commit') return commit;
      const value = Reflect.get(target, property);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('SequencedWriter', () => {
  it('two writers on the same tables: gap-free numbers, each entry holds exactly its writer’s records', async () => {
    const writers = [await openWriter('p1'), await openWriter('p2')];
    const queued = new Map<string, bigint[]>(); // `${writer}/${table}` -> values in local order
    const acked: { table: string; txn: bigint; value: bigint }[] = [];
    const run = async (w: SequencedWriter, name: string, index: number) => {
      for (let i = 0; i <= 30; i++) {
        const value = BigInt(index * 1000 + i);
        const tables = [['a', 'b', 'c'], ['a', 'b'], ['b']][i % 3]!;
        const mode = i % 2 === 0 ? 'durable' : 'local';
        const result = await w.commitLines(longLines(tables, value), mode);
        for (const t of tables) queued.set(`${name}/${t}`, [...(queued.get(`${name}/${t}`) ?? []), value]);
        expect(result.txns.map((t) => t.table)).toEqual(tables);
        if (mode === 'local') {
          expect(result.txnHeader).toBe('');
          continue;
        }
        expect(result.txnHeader).toBe(result.txns.map((t) => `${t.table}=${t.txn}`).join(','));
        for (const t of result.txns) acked.push({ table: t.table, txn: t.txn!, value });
      }
    };
    // The last request of each run is durable: once it returns, everything before it is committed.
    await Promise.all(writers.map(({ writer }, i) => run(writer, `p${i + 1}`, i + 1)));

    for (const table of ['a', 'b', 'c']) {
      const entries = await readAll(table);
      expectContiguous(entries);
      const perWriter = new Map<string, bigint[]>();
      for (const entry of entries) {
        perWriter.set(entry.writer, [...(perWriter.get(entry.writer) ?? []), ...(await valuesOf(entry))]);
      }
      for (const name of ['p1', 'p2']) expect(perWriter.get(name)).toEqual(queued.get(`${name}/${table}`));
      const total = (queued.get(`p1/${table}`)?.length ?? 0) + (queued.get(`p2/${table}`)?.length ?? 0);
      expect(entries.at(-1)!.txnLast).toBe(BigInt(total));
      // Every durable answer names the txn that holds that request's row.
      for (const ack of acked.filter((a) => a.table === table)) {
        const entry = entries.find((e) => e.txnFirst <= ack.txn && ack.txn <= e.txnLast)!;
        expect((await valuesOf(entry))[Number(ack.txn - entry.txnFirst)]).toBe(ack.value);
      }
    }
    for (const { writer } of writers) {
      expect(writer.status()).toMatchObject({ queuedTxns: 0, fenced: false, haltedBy: null });
    }
    // Tables are registered in tables.json for nodes without sequencer access.
    expect((await readRegistry(store))!.registry.tables.sort()).toEqual(['a', 'b', 'c']);
  });

  it('exports every entry to txnlog/ byte-identical to encodeTxnLogEntry', async () => {
    const { writer } = await openWriter('p1');
    for (let i = 0n; i < 5n; i++) await writer.commitLines(longLines(['a', 'b'], i), 'durable');
    for (const table of ['a', 'b']) {
      const entries = await readAll(table);
      expect(entries.length).toBeGreaterThan(0);
      await vi.waitFor(async () => {
        const keys = await keysUnder(`tables/${table}/txnlog/`);
        expect(keys).toEqual(entries.map((e) => txnLogKey(asTableKey(table), e.txnFirst)));
      }, WAIT);
      for (const entry of entries) {
        const key = txnLogKey(asTableKey(table), entry.txnFirst);
        const got = await store.get(key);
        expect(got?.status).toBe('ok');
        if (got?.status !== 'ok') continue;
        expect(Buffer.from(got.body).equals(Buffer.from(encodeTxnLogEntry(entry)))).toBe(true);
        expect(decodeTxnLogEntry(got.body, key)).toEqual(entry);
      }
    }
    expect(writer.status()).toMatchObject({ exportsPending: 0, exportError: null });
  });

  it('an export slot holding another entry is TXNLOG_CONFLICT: exports stop, status says so', async () => {
    const squatter: LogEntry = {
      table: tableKey('x'),
      txnFirst: 1n,
      txnLast: 1n,
      staged: 'tables/x/staged/other/00000000000000000001/00000000000000000001.seg',
      bytes: 10,
      crc32: 1,
      writer: 'other',
      writerEpoch: 1n,
      batchSeq: 1n,
      committedAtMs: 1,
    };
    const foreign = encodeTxnLogEntry(squatter);
    await store.put(txnLogKey(tableKey('x'), 1n), foreign);
    const { writer } = await openWriter('p1');
    const result = await writer.commitLines(longLines(['x'], 1n), 'durable');
    expect(result.txns[0]!.txn).toBe(1n);
    await vi.waitFor(() => expect(writer.status().exportError).toMatch(/^TXNLOG_CONFLICT/), WAIT);
    const got = await store.get(txnLogKey(tableKey('x'), 1n));
    expect(got?.status === 'ok' && Buffer.from(got.body).equals(Buffer.from(foreign))).toBe(true);
    // Writes go on: exports are off the ack path.
    expect((await writer.commitLines(longLines(['x'], 2n), 'durable')).txns[0]!.txn).toBe(2n);
  });

  it('a crash between upload and commit: the restart commits the same batch once, no orphan', async () => {
    const first = await openWriter('p1', {
      faults: {
        afterUpload: async () => {
          throw new Error('simulated crash after upload');
        },
      },
    });
    await expect(first.writer.commitLines(longLines(['a', 'b'], 7n), 'durable')).rejects.toThrow(
      /simulated crash/,
    );
    expect(first.writer.status().haltedBy).toMatch(/simulated crash/);
    const stagedBefore = [
      ...(await keysUnder(stagedPrefix(tableKey('a')))),
      ...(await keysUnder(stagedPrefix(tableKey('b')))),
    ];
    expect(stagedBefore).toHaveLength(2);
    expect(await readAll('a')).toEqual([]);
    await close(first);

    const second = await openWriter('p1');
    await vi.waitFor(() => expect(second.writer.status()).toMatchObject({ queuedTxns: 0, commits: 1 }), WAIT);
    const entries = [...(await readAll('a')), ...(await readAll('b'))];
    expect(entries.map((e) => [e.table, e.txnFirst, e.txnLast, e.batchSeq, e.writerEpoch])).toEqual([
      ['a', 1n, 1n, 1n, 1n],
      ['b', 1n, 1n, 1n, 1n],
    ]);
    expect(entries.map((e) => e.staged)).toEqual(stagedBefore);
    for (const entry of entries) expect(await valuesOf(entry)).toEqual([7n]);
    // No orphan: every staged object is in the log; and the restart did not re-register.
    expect([
      ...(await keysUnder(stagedPrefix(tableKey('a')))),
      ...(await keysUnder(stagedPrefix(tableKey('b')))),
    ]).toEqual(stagedBefore);
    const records = await sequencer.writers();
    expect(records.map((r) => [r.writer, r.epoch, r.lastBatchSeq])).toEqual([['p1', 1n, 1n]]);
  });

  it('a crash between commit and ack: the restart replays, same numbers, no duplicate entry', async () => {
    const committedFirst: LogEntry[][] = [];
    const first = await openWriter('p1', {
      onCommitted: (entries) => committedFirst.push(entries),
      faults: {
        afterCommit: async () => {
          throw new Error('simulated crash after commit');
        },
      },
    });
    await expect(first.writer.commitLines(longLines(['a', 'b'], 1n), 'durable')).rejects.toThrow(
      /simulated crash/,
    );
    const before = [...(await readAll('a')), ...(await readAll('b'))];
    expect(before.map((e) => [e.table, e.txnFirst, e.batchSeq])).toEqual([
      ['a', 1n, 1n],
      ['b', 1n, 1n],
    ]);
    const headsBefore = await sequencer.heads();
    expect(committedFirst).toEqual([]);
    expect(first.queue.batches().map((b) => b.batchSeq)).toEqual([1n]);
    await close(first);

    const committedAgain: LogEntry[][] = [];
    const second = await openWriter('p1', { onCommitted: (entries) => committedAgain.push(entries) });
    await vi.waitFor(() => expect(committedAgain).toHaveLength(1), WAIT);
    expect(committedAgain[0]).toEqual(before);
    expect([...(await readAll('a')), ...(await readAll('b'))]).toEqual(before);
    const headsAfter = await sequencer.heads();
    expect(headsAfter.version).toBe(headsBefore.version);
    expect(headsAfter.tables).toEqual(headsBefore.tables);
    expect(second.queue.batches()).toEqual([]);
    // The next request follows: batch 2, txn 2.
    const next = await second.writer.commitLines(longLines(['a'], 2n), 'durable');
    expect(next.txnHeader).toBe('a=2');
    expect((await readAll('a')).map((e) => e.batchSeq)).toEqual([1n, 2n]);
  });

  for (const how of ['registerWriter', 'fence'] as const) {
    it(`a writer fenced by ${how}: commits rejected, waiters fail fenced, writes refused`, async () => {
      const fencedBy: WalshipError[] = [];
      const { writer } = await openWriter('p1', { onFenced: (error) => fencedBy.push(error) });
      expect((await writer.commitLines(longLines(['a'], 1n), 'durable')).txnHeader).toBe('a=1');
      if (how === 'registerWriter') await sequencer.registerWriter('p1');
      else await sequencer.fence('p1', 1n);

      await expect(writer.commitLines(longLines(['a'], 2n), 'durable')).rejects.toMatchObject({
        code: 'SEQUENCER_FENCED',
        kind: 'fenced',
      });
      expect(writer.acceptingWrites()).toBe(false);
      expect(writer.status().fenced).toBe(true);
      expect(fencedBy.map((e) => e.code)).toEqual(['SEQUENCER_FENCED']);
      await expect(writer.commitLines(longLines(['a'], 3n), 'local')).rejects.toMatchObject({
        code: 'NOT_ACCEPTING_WRITES',
      });
      const entries = await readAll('a');
      expect(entries.map((e) => [e.txnFirst, e.txnLast, e.batchSeq])).toEqual([[1n, 1n, 1n]]);
      // Its own uncommitted staged object (batch 2) is deleted; the committed one stays.
      await vi.waitFor(
        async () => expect(await keysUnder(stagedPrefix(tableKey('a')))).toEqual([entries[0]!.staged]),
        WAIT,
      );
    });
  }

  for (const applyFirst of [false, true]) {
    it(`retries a commit while the sequencer is unavailable (${applyFirst ? 'answers lost after commit' : 'nothing committed'}), once`, async () => {
      const failing = { left: 3, applyFirst, calls: 0 };
      const { writer } = await openWriter('p1', { sequencer: flaky(sequencer, failing) });
      const result = await writer.commitLines(longLines(['a', 'b'], 5n), 'durable');
      expect(result.txnHeader).toBe('a=1,b=1');
      expect(failing.calls).toBe(4);
      for (const table of ['a', 'b']) {
        const entries = await readAll(table);
        expect(entries.map((e) => [e.txnFirst, e.txnLast, e.batchSeq])).toEqual([[1n, 1n, 1n]]);
        expect(await valuesOf(entries[0]!)).toEqual([5n]);
      }
      expect(writer.status()).toMatchObject({ commits: 1, queuedTxns: 0 });
      expect(writer.status().lastError?.message).toMatch(/injected/);
    });
  }

  it('durable times out while the sequencer is down (the request stays queued), PENDING_FULL past the limit', async () => {
    const failing = { left: Number.POSITIVE_INFINITY, applyFirst: false, calls: 0 };
    const { writer } = await openWriter('p1', {
      sequencer: flaky(sequencer, failing),
      durableTimeoutMs: 100,
      pendingMaxBytes: 1,
    });
    await expect(writer.commitLines(longLines(['a'], 1n), 'durable')).rejects.toMatchObject({
      code: 'DURABLE_TIMEOUT',
      kind: 'unavailable',
    });
    await expect(writer.commitLines(longLines(['a'], 2n), 'local')).rejects.toMatchObject({
      code: 'PENDING_FULL',
    });
    failing.left = 0;
    await vi.waitFor(() => expect(writer.status().queuedTxns).toBe(0), WAIT);
    const result = await writer.commitLines(longLines(['a'], 3n), 'durable');
    expect(result.txnHeader).toBe('a=2');
    const values: bigint[] = [];
    for (const entry of await readAll('a')) values.push(...(await valuesOf(entry)));
    expect(values).toEqual([1n, 3n]);
  });

  it('a request across 3 tables is always in one batch', async () => {
    // A small rollover makes many batches: a wrong cut would split some request.
    const { writer } = await openWriter('p1', { rolloverSizeBytes: 700 });
    const shapes = [['a', 'b', 'c'], ['a'], ['a', 'b', 'c'], ['c', 'b']];
    const requests: { tables: string[]; value: bigint }[] = [];
    for (let i = 0; i < 40; i++) {
      const tables = shapes[i % shapes.length]!;
      requests.push({ tables, value: BigInt(i) });
      await writer.commitLines(longLines(tables, BigInt(i)), i === 39 ? 'durable' : 'local');
    }
    const batchOf = new Map<string, bigint>(); // `${table}/${value}` -> batchSeq
    for (const table of ['a', 'b', 'c']) {
      for (const entry of await readAll(table)) {
        for (const value of await valuesOf(entry)) batchOf.set(`${table}/${value}`, entry.batchSeq);
      }
    }
    const batches = new Set(batchOf.values());
    expect(batches.size).toBeGreaterThan(3);
    for (const { tables, value } of requests) {
      const seqs = tables.map((t) => batchOf.get(`${t}/${value}`));
      expect(seqs[0]).toBeDefined();
      expect(new Set(seqs).size).toBe(1);
    }
  });

  it('does not register again on restart, and refuses a queue of another writer', async () => {
    const first = await openWriter('p1');
    await first.writer.commitLines(longLines(['a'], 1n), 'durable');
    await close(first);
    const second = await openWriter('p1');
    expect(second.writer.status().epoch).toBe(1n);
    expect((await second.writer.commitLines(longLines(['a'], 2n), 'durable')).txnHeader).toBe('a=2');
    await close(second);
    const queue = StagedQueue.open(path.join(dir, 'p1-staged.sqlite'));
    try {
      await expect(
        SequencedWriter.open({
          store,
          sequencer,
          queue,
          nodeId: 'p9',
          clock: systemClock,
          random: seededRandom(1),
          log,
          schemaOf: () => undefined,
          rolloverSizeBytes: 1024,
          windowMs: 5,
          codec: 'deflate',
          compressionLevel: 1,
          durableTimeoutMs: 1000,
          pendingMaxBytes: 1024,
        }),
      ).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    } finally {
      queue.close();
    }
    expect((await sequencer.writers()).map((r) => [r.writer, r.epoch])).toEqual([['p1', 1n]]);
  });
});
