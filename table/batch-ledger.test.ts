import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomInt, seededRandom } from '../core/index.js';
import type { BatchStamp, TxnRecord } from '../wal/index.js';
import { BATCH_WINDOW_SEQS, BATCH_WRITER_TTL_US } from './batch-ledger.js';
import { TableStore } from './table-store.js';

let dir = '';
let tables: TableStore;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-ledger-'));
  tables = TableStore.open(path.join(dir, 't.sqlite'));
});
afterEach(async () => {
  tables.close();
  await rm(dir, { recursive: true, force: true });
});

const HASH = new Uint8Array(16).fill(7);
const DAY_US = 24n * 3600n * 1_000_000n;

/** Applies the next txn of `table`, stamped with writer:seq, committed at `atUs`. */
function apply(table: string, writer: string, seq: bigint, atUs: bigint): void {
  const txn = tables.lastTxn(table) + 1n;
  const batch: BatchStamp = { writer, seq, parts: 1, epoch: 1n, hash: HASH };
  const record: TxnRecord = {
    txn,
    commitTimeUs: atUs,
    kind: 'data',
    rowCount: 1,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'timestamp', values: BigInt64Array.of(atUs) },
      },
    ],
    batch,
  };
  tables.applyTxn(table, record);
}

describe('the batch ledger (RFC-0011)', () => {
  it('keeps the newest BATCH_WINDOW_SEQS sequences of a writer, whatever order they arrive in', () => {
    // A replica applies tables one by one, so a writer's sequences arrive out of order.
    const random = seededRandom(11);
    const seqs = Array.from({ length: Number(BATCH_WINDOW_SEQS) + 300 }, (_, i) => BigInt(i + 1));
    for (let i = seqs.length - 1; i > 0; i--) {
      const j = randomInt(random, i + 1);
      [seqs[i], seqs[j]] = [seqs[j]!, seqs[i]!];
    }
    for (const seq of seqs) apply(`t${seq % 3n}`, 'w', seq, 1_000n);
    const max = BigInt(seqs.length);
    const low = max - BATCH_WINDOW_SEQS + 1n;
    expect(tables.batch('w', low)).toMatchObject({ state: 'known' });
    expect(tables.batch('w', max)).toMatchObject({ state: 'known' });
    expect(tables.batch('w', low - 1n)).toEqual({ state: 'outside-window', lowSeq: low });
    expect(tables.batch('w', max + 1n)).toEqual({ state: 'unknown' });
  });

  it('forgets a writer silent for BATCH_WRITER_TTL_US once a new writer commits after that', () => {
    apply('t', 'old', 1n, 1n * DAY_US);
    apply('t', 'recent', 1n, 5n * DAY_US);
    apply('t', 'new', 1n, 1n * DAY_US + BATCH_WRITER_TTL_US - 1n);
    expect(tables.batch('old', 1n)).toMatchObject({ state: 'known' });
    apply('t', 'newer', 1n, 1n * DAY_US + BATCH_WRITER_TTL_US + 1n);
    expect(tables.batch('old', 1n)).toEqual({ state: 'unknown' });
    expect(tables.batch('recent', 1n)).toMatchObject({ state: 'known' });
  });

  it('rolls back with the apply that recorded it', () => {
    expect(() =>
      tables.transaction(() => {
        apply('t', 'w', 1n, 1n);
        throw new Error('cut short');
      }),
    ).toThrow('cut short');
    expect(tables.batch('w', 1n)).toEqual({ state: 'unknown' });
  });
});
