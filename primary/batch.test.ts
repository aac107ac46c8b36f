/**
 * Batches committed exactly once (RFC-0011): a request with a batch identity is written once; a
 * retry is answered from the ledger, on this primary or on a node that applied its records (a
 * promoted replica); a reuse with other content, or a seq below the writer's window, writes nothing.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError, randomInt, seededRandom } from '../core/index.js';
import { type IlpLineSource, parseIlpInSlices } from '../ilp/index.js';
import { BATCH_WINDOW_SEQS, TableStore } from '../table/index.js';
import { decodeTxnRecord } from '../wal/index.js';
import type { BatchIdentity } from './batch-plan.js';
import type { Committer } from './committer.js';
import { pendingSourceOf } from './pending-source.js';
import { testCommitter, testUploader, useCommitterParts } from './testing/test-parts.js';
import { WriteGate } from './write-gate.js';
import { WriteWindow, withLaterWatermarks } from './write-window.js';
import { WriteWorker } from './write-worker.js';

const parts = useCommitterParts('walship-batch-');

function sourceOf(text: string): IlpLineSource {
  return { forEachSlice: (sink) => parseIlpInSlices(Buffer.from(text), { precision: 'n' }, sink) };
}

function identity(writer: string, seq: bigint, body: string): BatchIdentity {
  return { writer, seq, hash: createHash('sha256').update(body).digest().subarray(0, 16) };
}

function count(node: TableStore, table: string): number {
  return node.schema(table) === undefined ? 0 : Number(node.lastTxn(table));
}

const BODY = 'a,s=x v=1i 1000\na,s=y v=2i 2000\nb v=3i 3000\n';

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('a batch with an identity', () => {
  let committer: Committer;
  beforeEach(() => {
    committer = testCommitter(parts.tables, parts.uploader, { epoch: () => 4n });
  });

  it('is written once; a retry is answered with the first tokens and writes nothing', async () => {
    const id = identity('w-1', 7n, BODY);
    const first = await committer.commitSlices(sourceOf(BODY), id);
    expect(first).toMatchObject({ batch: 'committed', txnHeader: 'a=1@4,b=1@4' });
    const again = await committer.commitSlices(sourceOf(BODY), id);
    expect(again).toEqual({ batch: 'replayed', txnHeader: 'a=1@4,b=1@4', txns: [] });
    expect([count(parts.tables, 'a'), count(parts.tables, 'b')]).toEqual([1, 1]);
    // The same body under the next seq is another batch: written again, as the client asked.
    expect((await committer.commitSlices(sourceOf(BODY), identity('w-1', 8n, BODY))).txnHeader).toBe(
      'a=2@4,b=2@4',
    );
  });

  it('reused with other content is refused (BATCH_CONFLICT) and writes nothing', async () => {
    await committer.commitSlices(sourceOf(BODY), identity('w-1', 1n, BODY));
    const other = 'a v=9i 9000\n';
    const error = await errorOf(committer.commitSlices(sourceOf(other), { ...identity('w-1', 1n, other) }));
    expect(isWalshipError(error, 'BATCH_CONFLICT')).toBe(true);
    expect((error as { kind: string }).kind).toBe('conflict');
    expect(count(parts.tables, 'a')).toBe(1);
  });

  it('is kept per writer: the same seq of another writer is another batch', async () => {
    await committer.commitSlices(sourceOf(BODY), identity('w-1', 1n, BODY));
    expect((await committer.commitSlices(sourceOf(BODY), identity('w-2', 1n, BODY))).batch).toBe('committed');
    expect(count(parts.tables, 'a')).toBe(2);
  });

  it('found in part (a failover cut its upload short) is completed: only the missing parts.tables are written', async () => {
    // The old primary's table `a` part reached this node (applied from the parts.store); `b` did not.
    const id = identity('w-1', 3n, BODY);
    const old = TableStore.open(path.join(parts.dir, 'old-primary.sqlite'));
    const oldUploader = testUploader(parts.store, pendingSourceOf(old));
    await testCommitter(old, oldUploader, { epoch: () => 3n }).commitSlices(sourceOf(BODY), id);
    const aRecord = old.pending('a')[0]!;
    await oldUploader.stop();
    old.close();
    parts.tables.applyTxn('a', decodeTxnRecord(aRecord.bytes));
    expect(parts.tables.batch('w-1', 3n)).toMatchObject({
      state: 'known',
      parts: [{ txn: 1n, epoch: 3n, parts: 2 }],
    });

    const retry = await committer.commitSlices(sourceOf(BODY), id);
    expect(retry).toMatchObject({ batch: 'committed', txnHeader: 'a=1@3,b=1@4' });
    expect([count(parts.tables, 'a'), count(parts.tables, 'b')]).toEqual([1, 1]);
    expect(await committer.commitSlices(sourceOf(BODY), id)).toMatchObject({
      batch: 'replayed',
      txnHeader: 'a=1@3,b=1@4',
    });
  });

  it('older than its writer window is refused (BATCH_OUTSIDE_WINDOW), never written twice', async () => {
    const body = (seq: bigint) => `a v=${seq}i ${seq}\n`;
    const last = BATCH_WINDOW_SEQS + 1n;
    for (let seq = 1n; seq <= last; seq++)
      await committer.commitSlices(sourceOf(body(seq)), identity('w', seq, body(seq)));
    expect(count(parts.tables, 'a')).toBe(Number(last));
    const error = await errorOf(committer.commitSlices(sourceOf(body(1n)), identity('w', 1n, body(1n))));
    expect(isWalshipError(error, 'BATCH_OUTSIDE_WINDOW')).toBe(true);
    // The oldest seq still in the window is absorbed.
    expect((await committer.commitSlices(sourceOf(body(2n)), identity('w', 2n, body(2n)))).batch).toBe(
      'replayed',
    );
    expect(count(parts.tables, 'a')).toBe(Number(last));
  });
});

describe('with the write worker', () => {
  it('two attempts of one batch at once: one writes, the other is answered from the ledger', async () => {
    const gate = new WriteGate();
    const window = new WriteWindow();
    const worker = await WriteWorker.start(parts.tables, gate);
    const workerUploader = testUploader(
      parts.store,
      withLaterWatermarks(
        { ...pendingSourceOf(parts.tables), pending: worker.pending.bind(worker) },
        window.unsynced,
        () => {},
      ),
    );
    try {
      const committer = testCommitter(parts.tables, workerUploader, {
        worker,
        writeWindow: window,
        epoch: () => 2n,
      });
      const id = identity('w-9', 1n, BODY);
      const answers = await Promise.all([
        committer.commitSlices(sourceOf(BODY), id),
        committer.commitSlices(sourceOf(BODY), id),
      ]);
      expect(answers.map((a) => a.batch).sort()).toEqual(['committed', 'replayed']);
      expect(answers[0]!.txnHeader).toBe(answers[1]!.txnHeader);
      expect([count(parts.tables, 'a'), count(parts.tables, 'b')]).toEqual([1, 1]);
    } finally {
      await workerUploader.stop();
      await worker.close();
    }
  });
});

describe('a node that applied the records (a promoted replica)', () => {
  it('knows the batch: the retry after a failover writes nothing', async () => {
    const id = identity('w-1', 5n, BODY);
    await testCommitter(parts.tables, parts.uploader, { epoch: () => 1n }).commitSlices(sourceOf(BODY), id);
    const replica = TableStore.open(path.join(parts.dir, 'replica.sqlite'));
    const replicaUploader = testUploader(parts.store, pendingSourceOf(replica));
    try {
      for (const table of ['a', 'b']) {
        replica.applyTxns(
          table,
          parts.tables.pending(table).map((p) => decodeTxnRecord(p.bytes)),
        );
      }
      const promoted = testCommitter(replica, replicaUploader, { epoch: () => 2n });
      expect(await promoted.commitSlices(sourceOf(BODY), id)).toMatchObject({
        batch: 'replayed',
        txnHeader: 'a=1@1,b=1@1',
      });
      expect([count(replica, 'a'), count(replica, 'b')]).toEqual([1, 1]);
    } finally {
      await replicaUploader.stop();
      replica.close();
    }
  });
});

describe('the batch window, property', () => {
  it('a retry inside the window is absorbed, outside it is refused: never written twice', async () => {
    const random = seededRandom(Number(process.env.WALSHIP_SEED ?? 18));
    const committer = testCommitter(parts.tables, parts.uploader, { epoch: () => 1n });
    const body = (seq: bigint) => `p,w=w v=${seq}i ${seq}000\n`;
    const written = new Set<bigint>();
    let next = 1n;
    let outcomes = { committed: 0, replayed: 0, refused: 0 };
    for (let step = 0; step < 2600; step++) {
      // Mostly new batches; now and then a retry of any earlier one, old or recent.
      const retry = next > 1n && random.next() < 0.3;
      const seq = retry ? 1n + BigInt(randomInt(random, Number(next - 1n))) : next++;
      try {
        const answer = await committer.commitSlices(sourceOf(body(seq)), identity('w', seq, body(seq)));
        if (answer.batch === 'committed') {
          expect(written.has(seq)).toBe(false);
          written.add(seq);
        } else {
          expect(written.has(seq)).toBe(true);
          expect(seq).toBeGreaterThan(next - 1n - BATCH_WINDOW_SEQS);
        }
        outcomes = { ...outcomes, [answer.batch!]: outcomes[answer.batch!] + 1 };
      } catch (error) {
        expect(isWalshipError(error, 'BATCH_OUTSIDE_WINDOW')).toBe(true);
        expect(seq).toBeLessThanOrEqual(next - 1n - BATCH_WINDOW_SEQS);
        outcomes.refused++;
      }
    }
    // Rows in the table = batches written, each once.
    expect(count(parts.tables, 'p')).toBe(written.size);
    expect(outcomes.replayed).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(0);
  });
});

describe('a replaced primary rolling back what never reached the parts.store', () => {
  it('forgets those txns batches: a retry through the new primary must be written again', async () => {
    const committer = testCommitter(parts.tables, parts.uploader, { epoch: () => 1n });
    const first = 'a v=1i 1000\n';
    const second = 'a v=2i 2000\n';
    await committer.commitSlices(sourceOf(first), identity('w', 1n, first));
    parts.tables.setUploadedTxn('a', 1n);
    await committer.commitSlices(sourceOf(second), identity('w', 2n, second));
    parts.tables.rollBackPending('a');
    expect(parts.tables.batch('w', 1n)).toMatchObject({ state: 'known' });
    expect(parts.tables.batch('w', 2n)).toEqual({ state: 'unknown' });
  });
});
