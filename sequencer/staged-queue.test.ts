import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tableKey } from '../table/index.js';
import { decodeTxnRecord, encodeTxnRecord, type TxnRecord } from '../wal/index.js';
import { SEQUENCER_BATCH_MAX } from './sequencer-store.js';
import { type SegmentPlan, StagedQueue, type StagedSegment } from './staged-queue.js';

let dir: string;
let file: string;
const open: StagedQueue[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-staged-queue-'));
  file = path.join(dir, 'staged.sqlite');
});

afterEach(async () => {
  for (const q of open.splice(0)) q.close();
  await rm(dir, { recursive: true, force: true });
});

function openQueue(): StagedQueue {
  const queue = StagedQueue.open(file);
  open.push(queue);
  return queue;
}

/** A record numbered `seq` whose one long column holds `value` in each of `rows` rows. */
function record(seq: bigint, value: bigint, rows = 1): Uint8Array {
  const txn: TxnRecord = {
    txn: seq,
    commitTimeUs: 1_700_000_000_000_000n,
    kind: 'data',
    rowCount: rows,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: false,
        nulls: null,
        data: {
          type: 'timestamp',
          values: BigInt64Array.from({ length: rows }, () => 1_700_000_000_000_000n),
        },
      },
      {
        name: 'v',
        addedInTxn: false,
        nulls: null,
        data: { type: 'long', values: BigInt64Array.from({ length: rows }, () => value) },
      },
    ],
  };
  return encodeTxnRecord(txn);
}

/** Enqueues one request writing `value` to each of `tables`, numbered as the queue says. */
function request(queue: StagedQueue, tables: string[], value: bigint, rows = 1) {
  return queue.enqueue(
    tables.map((t) => {
      const seq = queue.nextSeq(t);
      return { tableKey: tableKey(t), tableName: t.toUpperCase(), seq, bytes: record(seq, value, rows) };
    }),
  );
}

/** The values a plan's records hold, by decoding them. */
function valuesOf(plan: SegmentPlan): bigint[] {
  return plan.records.map((bytes) => {
    const column = decodeTxnRecord(bytes).columns.find((c) => c.name === 'v')!;
    return (column.data.values as BigInt64Array)[0]!;
  });
}

/** A makeSegments that records what it was given and "seals" without a store. */
function sealer() {
  const calls: { batchSeq: bigint; writerEpoch: bigint; plans: SegmentPlan[] }[] = [];
  const make = async (b: { batchSeq: bigint; writerEpoch: bigint; plans: SegmentPlan[] }) => {
    calls.push(b);
    return b.plans.map(
      (p): StagedSegment => ({
        tableKey: p.tableKey,
        tableName: p.tableName,
        seqFirst: p.seqFirst,
        seqLast: p.seqLast,
        staged: `staged/${p.tableKey}/${b.writerEpoch}/${b.batchSeq}`,
        bytes: p.records.reduce((s, r) => s + r.byteLength, 0),
        crc32: 7,
      }),
    );
  };
  return { calls, make };
}

describe('StagedQueue', () => {
  it('numbers each table contiguously from 1 and gives each request the next id', () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 1n);
    const first = request(queue, ['a', 'b'], 1n);
    const second = request(queue, ['b', 'c'], 2n);
    expect(first.requestId).toBe(1n);
    expect(second.requestId).toBe(2n);
    expect([...first.seqs]).toEqual([
      ['a', 1n],
      ['b', 1n],
    ]);
    expect([...second.seqs]).toEqual([
      ['b', 2n],
      ['c', 1n],
    ]);
    expect(queue.nextSeq('a')).toBe(2n);
    expect(queue.nextSeq('b')).toBe(3n);
    expect(queue.pendingSummary()).toMatchObject({
      txns: 4,
      unsealedTxns: 4,
      lastRequest: 2n,
      sealedRequest: 0n,
    });
  });

  it('enqueues all of a request or none of it', () => {
    const queue = openQueue();
    const before = queue.pendingSummary();
    const bad = [
      { tableKey: tableKey('a'), tableName: 'a', seq: 1n, bytes: record(1n, 1n) },
      { tableKey: tableKey('b'), tableName: 'b', seq: 5n, bytes: record(5n, 1n) }, // not b's next seq
    ];
    expect(() => queue.enqueue(bad)).toThrow(/expected 1/);
    expect(queue.pendingSummary()).toEqual(before);
    expect(queue.nextSeq('a')).toBe(1n);
    const twice = [
      { tableKey: tableKey('a'), tableName: 'a', seq: 1n, bytes: record(1n, 1n) },
      { tableKey: tableKey('a'), tableName: 'a', seq: 1n, bytes: record(1n, 1n) },
    ];
    expect(() => queue.enqueue(twice)).toThrow(/twice/);
    expect(() => queue.enqueue([])).toThrow(/1\.\.100 tables/);
    expect(queue.pendingSummary()).toEqual(before);
  });

  it('cuts a batch at request boundaries within limitBytes, at least one request', async () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 3n);
    const size = record(1n, 1n).byteLength;
    for (let i = 1n; i <= 5n; i++) request(queue, ['a', 'b', 'c'], i); // 3 records of `size` each
    const { calls, make } = sealer();
    // Room for two whole requests and most of a third: the third is not split.
    const batch = await queue.sealNextBatch(size * 8, make);
    expect(batch).not.toBeNull();
    expect(batch!.batchSeq).toBe(1n);
    expect(batch!.writerEpoch).toBe(3n);
    expect(batch!.requestLast).toBe(2n);
    expect(calls[0]!.plans.map((p) => [p.tableKey, p.seqFirst, p.seqLast, valuesOf(p)])).toEqual([
      ['a', 1n, 2n, [1n, 2n]],
      ['b', 1n, 2n, [1n, 2n]],
      ['c', 1n, 2n, [1n, 2n]],
    ]);
    expect(batch!.segments.map((s) => s.staged)).toEqual(['staged/a/3/1', 'staged/b/3/1', 'staged/c/3/1']);
    expect(queue.pendingSummary()).toMatchObject({ txns: 15, unsealedTxns: 9, sealedRequest: 2n });

    // One batch in flight: no second seal until the first is finished.
    await expect(queue.sealNextBatch(size * 8, make)).rejects.toThrow(/one batch in flight/);
    queue.finishBatch(1n);
    expect(queue.pendingSummary()).toMatchObject({ txns: 9, unsealedTxns: 9 });

    // A limit below one request still takes one whole request.
    const next = await queue.sealNextBatch(1, make);
    expect(next!.batchSeq).toBe(2n);
    expect(next!.requestLast).toBe(3n);
    expect(calls[1]!.plans.map((p) => [p.tableKey, p.seqFirst, p.seqLast, valuesOf(p)])).toEqual([
      ['a', 3n, 3n, [3n]],
      ['b', 3n, 3n, [3n]],
      ['c', 3n, 3n, [3n]],
    ]);
  });

  it('takes the remaining requests when they all fit, and nothing when nothing is unsealed', async () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 1n);
    const { make } = sealer();
    expect(await queue.sealNextBatch(1_000_000, make)).toBeNull();
    request(queue, ['a'], 1n);
    request(queue, ['b'], 2n);
    request(queue, ['a'], 3n);
    const batch = await queue.sealNextBatch(1_000_000, make);
    expect(batch!.requestLast).toBe(3n);
    expect(batch!.segments.map((s) => [s.tableKey, s.seqFirst, s.seqLast])).toEqual([
      ['a', 1n, 2n],
      ['b', 1n, 1n],
    ]);
    queue.finishBatch(1n);
    expect(await queue.sealNextBatch(1_000_000, make)).toBeNull();
  });

  it(`holds at most ${SEQUENCER_BATCH_MAX} tables in a batch`, async () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 1n);
    for (let i = 0; i < SEQUENCER_BATCH_MAX + 5; i++) request(queue, [`t${i}`], BigInt(i));
    const { make } = sealer();
    const batch = await queue.sealNextBatch(100_000_000, make);
    expect(batch!.segments).toHaveLength(SEQUENCER_BATCH_MAX);
    expect(batch!.requestLast).toBe(BigInt(SEQUENCER_BATCH_MAX));
  });

  it('survives a reopen: batches, records, counters, and seqs are never reused', async () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 2n);
    request(queue, ['a', 'b'], 1n);
    request(queue, ['a'], 2n);
    const { make } = sealer();
    const batch = await queue.sealNextBatch(1, make);
    request(queue, ['a'], 3n);
    const summary = queue.pendingSummary();
    queue.close();

    const again = openQueue();
    expect(again.writerEpoch()).toEqual({ writer: 'p1', epoch: 2n });
    expect(again.batches()).toEqual([batch]);
    expect(again.pendingSummary()).toEqual(summary);
    expect(again.pendingBytes()).toBe(summary.bytes);
    const seg = batch!.segments[0]!;
    expect(again.records(seg.tableKey, seg.seqFirst, seg.seqLast)).toEqual([record(1n, 1n)]);
    again.finishBatch(1n);
    expect(again.batches()).toEqual([]);
    // Records a1 and b1 are gone; the counters never go back.
    expect(again.nextSeq('a')).toBe(4n);
    expect(again.nextSeq('b')).toBe(2n);
    again.close();

    const third = openQueue();
    expect(third.nextSeq('b')).toBe(2n);
    expect(third.pendingSummary()).toMatchObject({ txns: 2, unsealedTxns: 2, sealedRequest: 1n });
    const next = await third.sealNextBatch(1_000_000, make);
    expect(next!.batchSeq).toBe(2n);
    expect(next!.segments.map((s) => [s.tableKey, s.seqFirst, s.seqLast])).toEqual([['a', 2n, 3n]]);
  });

  it('finishes only the oldest unfinished batch', async () => {
    const queue = openQueue();
    queue.setWriterEpoch('p1', 1n);
    request(queue, ['a'], 1n);
    await queue.sealNextBatch(1, sealer().make);
    expect(() => queue.finishBatch(2n)).toThrow(/not the oldest/);
    expect(queue.batches()).toHaveLength(1);
  });

  it('keeps the writer epoch going up, for one writer, with no batch of the old epoch left', async () => {
    const queue = openQueue();
    expect(queue.writerEpoch()).toBeNull();
    queue.setWriterEpoch('p1', 1n);
    expect(() => queue.setWriterEpoch('p1', 1n)).toThrow(/does not follow/);
    expect(() => queue.setWriterEpoch('p2', 5n)).toThrow(/does not follow/);
    request(queue, ['a'], 1n);
    await queue.sealNextBatch(1, sealer().make);
    expect(() => queue.setWriterEpoch('p1', 2n)).toThrow(/unfinished/);
    queue.finishBatch(1n);
    queue.setWriterEpoch('p1', 2n);
    request(queue, ['a'], 2n);
    const batch = await queue.sealNextBatch(1, sealer().make);
    expect(batch).toMatchObject({ batchSeq: 1n, writerEpoch: 2n });
  });

  it('refuses to seal before an epoch is recorded and to work after close', async () => {
    const queue = openQueue();
    request(queue, ['a'], 1n);
    await expect(queue.sealNextBatch(1, sealer().make)).rejects.toThrow(/writer epoch/);
    queue.close();
    expect(() => queue.nextSeq('a')).toThrow(/closed/);
  });
});
