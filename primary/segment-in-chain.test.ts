/**
 * segmentInChain (RFC-0002 W5): is an uploaded segment in the chain a newer epoch continues, or in a
 * slot GC reopened below it? Every verdict, from a MemoryStore laid out by hand.
 */
import { describe, expect, it } from 'vitest';
import { segmentKey, segmentPrefix } from '../layout/index.js';
import { MemoryStore, type ObjectStore, withFaults } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { encodeTxnRecord, sealSegment, type TxnRecord } from '../wal/index.js';
import { segmentInChain } from './segment-in-chain.js';

const TABLE = tableKey('t');
/** Ours: txns 4..6 of epoch 1. */
const OWN = { tableKey: TABLE, txnFirst: 4n, txnLast: 6n, epoch: 1n };

async function put(
  store: ObjectStore,
  txnFirst: bigint,
  txnLast: bigint,
  epoch: bigint,
  kind: 'fence' | 'data' = 'data',
): Promise<void> {
  const records: Uint8Array[] = [];
  for (let txn = txnFirst; txn <= txnLast; txn++) {
    const record: TxnRecord =
      kind === 'fence'
        ? { txn, commitTimeUs: 1n, kind: 'fence', rowCount: 0, columns: [] }
        : {
            txn,
            commitTimeUs: 1n,
            kind: 'data',
            rowCount: 1,
            columns: [
              {
                name: 'v',
                addedInTxn: txn === 1n,
                nulls: null,
                data: { type: 'long', values: BigInt64Array.from([txn]) },
              },
            ],
          };
    records.push(encodeTxnRecord(record));
  }
  const segment = await sealSegment({ tableName: TABLE, epoch, writerNodeId: `node-${epoch}`, records });
  await store.put(segmentKey(TABLE, txnFirst), segment, { condition: { type: 'absent' } });
}

/** A store holding ours (4..6) and `rest`. */
async function storeWith(...rest: [bigint, bigint, bigint, ('fence' | 'data')?][]): Promise<MemoryStore> {
  const store = new MemoryStore();
  await put(store, 4n, 6n, 1n);
  for (const [first, last, epoch, kind] of rest) await put(store, first, last, epoch, kind);
  return store;
}

describe('segmentInChain', () => {
  it('the newest segment of the table is in the chain (a promotion fences above it)', async () => {
    expect((await segmentInChain(await storeWith(), OWN)).inChain).toBe(true);
  });

  it("a newer epoch's fence right after it: in the chain", async () => {
    const store = await storeWith([7n, 7n, 2n, 'fence'], [8n, 9n, 2n]);
    expect((await segmentInChain(store, OWN)).inChain).toBe(true);
  });

  it('a gap after it (the chain GC left starts later): not in the chain', async () => {
    const verdict = await segmentInChain(await storeWith([9n, 9n, 2n]), OWN);
    expect(verdict).toEqual({ inChain: false, reason: expect.stringContaining('starts at txn 9, not 7') });
  });

  it('a segment overlapping it: not in the chain', async () => {
    const verdict = await segmentInChain(await storeWith([5n, 8n, 2n]), OWN);
    expect(verdict).toEqual({ inChain: false, reason: expect.stringContaining('overlaps it') });
  });

  it("a newer epoch's data right after it (its fence was collected): not in the chain", async () => {
    const verdict = await segmentInChain(await storeWith([7n, 8n, 2n]), OWN);
    expect(verdict).toEqual({ inChain: false, reason: expect.stringContaining('without a fence') });
  });

  it('a listing that misses the next slot is not taken for a gap (confirmed by a HEAD)', async () => {
    const inner = await storeWith([7n, 7n, 2n, 'fence'], [8n, 9n, 2n]);
    const torn = withFaults(inner, [
      { fault: { type: 'skip-list', index: 0 }, operations: ['list'], keyPrefix: segmentPrefix(TABLE) },
    ]);
    expect((await segmentInChain(torn, OWN)).inChain).toBe(true);
    expect(torn.injected['skip-list']).toBe(1);
  });
});
