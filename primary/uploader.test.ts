import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { Clock } from '../core/index.js';
import { encodeEpoch, epochKey, segmentKey } from '../layout/index.js';
import { listAll, MemoryStore, type ObjectStore, withFaults } from '../objectstore/index.js';
import { asTableKey, tableKey } from '../table/index.js';
import {
  decodeSegment,
  designatedTimestampRange,
  encodeTxnRecord,
  sealSegment,
  type TxnRecord,
} from '../wal/index.js';
import { testUploader } from './testing/test-parts.js';
import type { PendingSource, UploaderOptions } from './uploader.js';

const log = pino({ level: 'silent' });

function record(txn: bigint, rows = 10): TxnRecord {
  return {
    txn,
    commitTimeUs: 1_700_000_000_000_000n + txn,
    kind: 'data',
    rowCount: rows,
    columns: [
      {
        name: 'timestamp',
        addedInTxn: txn === 1n,
        nulls: null,
        data: {
          type: 'timestamp',
          values: BigInt64Array.from({ length: rows }, (_, i) => 1_700_000_000_000_000n + BigInt(i)),
        },
      },
      {
        name: 'v',
        addedInTxn: txn === 1n,
        nulls: null,
        data: { type: 'long', values: BigInt64Array.from({ length: rows }, () => txn) },
      },
    ],
  };
}

/** An in-memory pending queue standing in for the SQLite one. */
function memorySource(): PendingSource & {
  add(table: string, txn: bigint): number;
  uploaded: Map<string, bigint>;
} {
  const pending = new Map<string, { txn: bigint; bytes: Uint8Array }[]>();
  const uploaded = new Map<string, bigint>();
  return {
    uploaded,
    add(table, txn) {
      const bytes = encodeTxnRecord(record(txn));
      pending.set(table, [...(pending.get(table) ?? []), { txn, bytes }]);
      return bytes.byteLength;
    },
    pendingSummary: () =>
      [...pending.entries()]
        .filter(([, list]) => list.length > 0)
        .map(([table, list]) => ({
          table,
          count: list.length,
          bytes: list.reduce((s, r) => s + r.bytes.byteLength, 0),
          oldestTxn: list[0]!.txn,
        })),
    pending(table, { limitBytes }) {
      const out: { txn: bigint; bytes: Uint8Array }[] = [];
      let size = 0;
      for (const r of pending.get(table) ?? []) {
        if (out.length > 0 && size + r.bytes.byteLength > limitBytes) break;
        out.push(r);
        size += r.bytes.byteLength;
      }
      return out;
    },
    markUploaded(table, txn) {
      uploaded.set(table, txn);
      pending.set(
        table,
        (pending.get(table) ?? []).filter((r) => r.txn > txn),
      );
    },
    uploadedTxn: (table) => uploaded.get(table) ?? 0n,
    uploadedAll: () => [...uploaded].map(([table, uploadedTxn]) => ({ table, uploadedTxn })),
    tableKey: (table) => tableKey(table),
  };
}

function uploader(store: ObjectStore, source: PendingSource, overrides: Partial<UploaderOptions> = {}) {
  const fenced: unknown[] = [];
  const instance = testUploader(store, source, {
    log,
    rolloverSizeBytes: 1 << 20,
    windowMs: 60_000,
    maxConcurrentTables: 4,
    headIntervalMs: 10,
    onFenced: (detail) => fenced.push(detail),
    ...overrides,
  });
  return { instance, fenced };
}

async function segments(store: ObjectStore, table: string) {
  const out = [];
  for await (const info of listAll(store, `tables/${table}/wal/`)) {
    const got = await store.get(info.key);
    if (got?.status === 'ok') out.push({ key: info.key, ...(await decodeSegment(got.body)).header });
  }
  return out;
}

/** Time that moves only when the test says: setTimer callbacks fire as `advance` passes them. */
function manualClock() {
  let nowMs = 0;
  const timers: { atMs: number; fire: () => void; cancelled: boolean }[] = [];
  const clock: Clock = {
    wallMs: () => 1_700_000_000_000 + nowMs,
    monotonicMs: () => nowMs,
    sleep: () => Promise.resolve(),
    setTimer(durationMs, callback) {
      const timer = { atMs: nowMs + durationMs, fire: callback, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
  };
  const advance = (ms: number) => {
    nowMs += ms;
    for (const timer of timers.filter((t) => !t.cancelled && t.atMs <= nowMs)) {
      timer.cancelled = true;
      timer.fire();
    }
  };
  return { clock, advance };
}

/** `source` with its pending reads counted. */
function countingReads(source: ReturnType<typeof memorySource>) {
  const reads: bigint[] = [];
  const counted: PendingSource = {
    ...source,
    pending: (table, options) => {
      const records = source.pending(table, options) as { txn: bigint }[];
      reads.push(records[0]?.txn ?? 0n);
      return source.pending(table, options);
    },
  };
  return { counted, reads };
}

describe('uploader', () => {
  it('a durable waiter seals at once and shares one upload with its neighbours (group commit)', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    const { instance } = uploader(store, source);
    for (const txn of [1n, 2n, 3n]) instance.committed('Trades', source.add('Trades', txn));
    await Promise.all([1n, 2n, 3n].map((txn) => instance.waitUploaded('Trades', txn, 5_000)));
    const segs = await segments(store, 'trades');
    expect(segs.map((s) => [s.key, s.txnFirst, s.txnLast, s.writerNodeId, s.epoch])).toEqual([
      [segmentKey(tableKey('trades'), 1n), 1n, 3n, 'node-a', 1n],
    ]);
    expect(source.uploadedTxn('Trades')).toBe(3n);
    instance.stop();
  });

  it('seals the records the committer handed over without reading the pending queue; reads it from the first txn it lacks', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    const { counted, reads } = countingReads(source);
    const one = encodeTxnRecord(record(1n)).byteLength;
    // Room for three records: the fourth is not kept, and neither is anything after it.
    const { instance } = uploader(store, counted, { rolloverSizeBytes: one * 2, recentMaxBytes: one * 3 });
    const commit = (txn: bigint, handOver: boolean) => {
      const size = source.add('t', txn);
      const bytes = encodeTxnRecord(record(txn));
      const facts = { txn, rowCount: 10, tsRange: designatedTimestampRange(record(txn)) };
      instance.committed('t', size, facts, handOver ? bytes : undefined);
    };
    for (let txn = 1n; txn <= 5n; txn++) commit(txn, true);
    await Promise.all([2n, 4n, 5n].map((txn) => instance.waitUploaded('t', txn, 5_000)));
    // 1-2 and 3 came from memory; 4 was over the cap, so 4-5 was read from the pending queue.
    expect(reads).toEqual([4n]);
    // Uploaded records leave memory: 6 and 7 fit again.
    for (let txn = 6n; txn <= 7n; txn++) commit(txn, true);
    commit(8n, false);
    await instance.waitUploaded('t', 8n, 5_000);
    expect(reads).toEqual([4n, 8n]);
    const segs = await segments(store, 't');
    expect(segs.map((s) => `${s.txnFirst}-${s.txnLast}`)).toEqual(['1-2', '3-3', '4-5', '6-7', '8-8']);
    for (const seg of segs) {
      const got = await store.get(seg.key);
      const { txns } = await decodeSegment((got as { body: Uint8Array }).body);
      for (const txn of txns) expect(txn).toEqual(record(txn.txn));
    }
    instance.stop();
  });

  it('seals on rollover size without any waiter, strictly in txn order', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    const one = encodeTxnRecord(record(1n)).byteLength;
    const { instance } = uploader(store, source, { rolloverSizeBytes: one * 2 });
    for (let txn = 1n; txn <= 6n; txn++) instance.committed('t', source.add('t', txn));
    await expect.poll(() => source.uploadedTxn('t'), { timeout: 5_000 }).toBe(6n);
    const segs = await segments(store, 't');
    expect(segs.map((s) => `${s.txnFirst}-${s.txnLast}`)).toEqual(['1-2', '3-4', '5-6']);
    instance.stop();
  });

  it('txns due at once stay due after the first segment: start() and flush() upload all of them (regression)', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    const one = encodeTxnRecord(record(1n)).byteLength;
    // A window far longer than the test: nothing may wait for it. Three txns left by an earlier run
    // are due at once; the first segment takes two, and the third must not wait a new window.
    for (let txn = 1n; txn <= 3n; txn++) source.add('t', txn);
    const { instance } = uploader(store, source, { rolloverSizeBytes: one * 2, windowMs: 3_600_000 });
    instance.start();
    await expect.poll(() => source.uploadedTxn('t'), { timeout: 5_000 }).toBe(3n);
    // flush() likewise: five txns, one rollover segment at a time, all uploaded within the flush.
    for (let txn = 4n; txn <= 6n; txn++) instance.committed('t', source.add('t', txn));
    expect(await instance.flush(5_000)).toBe(true);
    expect(source.uploadedTxn('t')).toBe(6n);
    expect((await segments(store, 't')).map((s) => `${s.txnFirst}-${s.txnLast}`)).toEqual([
      '1-2',
      '3-3',
      '4-5',
      '6-6',
    ]);
    await instance.stop();
  });

  it('seals a partly filled segment when the throttle window passes', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    const { instance } = uploader(store, source, { windowMs: 50 });
    instance.committed('t', source.add('t', 1n));
    expect(source.uploadedTxn('t')).toBe(0n);
    await expect.poll(() => source.uploadedTxn('t'), { timeout: 5_000 }).toBe(1n);
    await expect.poll(async () => (await store.head('head.json')) !== null).toBe(true);
    instance.stop();
  });

  it('writes head.json as it starts when tables were uploaded before (a promoted node corrects a stale one); not on an empty node', async () => {
    const store = new MemoryStore();
    const empty = uploader(store, memorySource()).instance;
    empty.start();
    await empty.stop();
    expect(await store.head('head.json')).toBeNull();

    const source = memorySource();
    source.markUploaded('t', 7n); // caught up from the store before this node was promoted
    const { instance } = uploader(store, source, { epoch: () => 2n, headIntervalMs: 3_600_000 });
    instance.start();
    await expect.poll(async () => (await store.head('head.json')) !== null).toBe(true);
    const got = await store.get('head.json');
    const head = JSON.parse(new TextDecoder().decode(got?.status === 'ok' ? got.body : undefined));
    expect(head).toMatchObject({ epoch: '2', nodeId: 'node-a', tables: { t: '7' } });
    await instance.stop();
  });

  it('keeps retrying through a store outage; a durable waiter gets DURABLE_TIMEOUT meanwhile', async () => {
    const inner = new MemoryStore();
    const store = withFaults(inner, [
      { fault: { type: 'error', message: 'store down' }, operations: ['put'] },
    ]);
    const source = memorySource();
    const { instance } = uploader(store, source);
    instance.committed('t', source.add('t', 1n));
    const error = await instance.waitUploaded('t', 1n, 300).catch((e: Error) => e);
    expect(error).toMatchObject({ code: 'DURABLE_TIMEOUT', kind: 'unavailable' });
    expect((error as Error).message).toMatch(
      /committed locally as t txn 1 .*store down.*would write the rows again/,
    );
    expect(instance.status().tables.t?.lastError).toContain('store down');
    store.setRules([]);
    await instance.waitUploaded('t', 1n, 15_000);
    expect((await segments(inner, 't')).map((s) => s.txnLast)).toEqual([1n]);
    instance.stop();
  });

  it('a durable waiter cuts a long failure backoff to at most a second: the retry does not spend its whole time limit', async () => {
    const inner = new MemoryStore();
    const store = withFaults(inner, [
      { fault: { type: 'error', message: 'store down' }, operations: ['put'] },
    ]);
    const source = memorySource();
    const { clock, advance } = manualClock();
    const { instance } = uploader(store, source, { clock, windowMs: 0 });
    instance.committed('t', source.add('t', 1n));
    // Six failures in a row: the backoff has grown to 4–8 s (250 ms doubling, jittered).
    for (let failures = 1; failures <= 6; failures++) {
      advance(10_000);
      await vi.waitFor(() => expect(store.injected.error ?? 0).toBe(failures));
    }
    store.setRules([]);
    let uploaded = false;
    const waiting = instance.waitUploaded('t', 1n, 60_000).then(() => {
      uploaded = true;
    });
    advance(999);
    await new Promise((resolve) => setImmediate(resolve));
    expect(uploaded).toBe(false);
    advance(1); // a second after the last failure
    await vi.waitFor(() => expect(uploaded).toBe(true));
    await waiting;
    expect((await segments(inner, 't')).map((seg) => seg.txnLast)).toEqual([1n]);
    await instance.stop();
  });

  it('recognises its own segment after a lost response, or after a crash between upload and bookkeeping', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    source.add('t', 1n);
    source.add('t', 2n);
    // An earlier run uploaded txns 1..2 and died before recording it.
    const bytes = (await source.pending('t', { limitBytes: 1 << 20 })).map((r) => r.bytes);
    await store.put(
      segmentKey(tableKey('t'), 1n),
      await sealSegment({ tableName: 't', epoch: 1n, writerNodeId: 'node-a', records: bytes }),
      {
        condition: { type: 'absent' },
      },
    );
    source.add('t', 3n);
    const { instance, fenced } = uploader(store, source);
    instance.start();
    await instance.waitUploaded('t', 3n, 5_000);
    expect(fenced).toEqual([]);
    expect((await segments(store, 't')).map((s) => `${s.txnFirst}-${s.txnLast}`)).toEqual(['1-2', '3-3']);
    instance.stop();
  });

  it('recognises its own segment even when it holds more txns than one seal would take now', async () => {
    const store = new MemoryStore();
    const source = memorySource();
    for (let txn = 1n; txn <= 4n; txn++) source.add('t', txn);
    const bytes = (await source.pending('t', { limitBytes: 1 << 20 })).map((r) => r.bytes);
    const earlier = await sealSegment({ tableName: 't', epoch: 1n, writerNodeId: 'node-a', records: bytes });
    await store.put(segmentKey(tableKey('t'), 1n), earlier, { condition: { type: 'absent' } });
    // The rollover is now smaller than that segment: a new seal takes one record.
    const { instance, fenced } = uploader(store, source, { rolloverSizeBytes: 1 });
    instance.start();
    await instance.waitUploaded('t', 4n, 5_000);
    expect(fenced).toEqual([]);
    expect(source.uploadedTxn('t')).toBe(4n);
    instance.stop();
  });

  it("is fenced when another writer's segment holds its slot, and refuses durable waiters", async () => {
    const store = new MemoryStore();
    const other = await sealSegment({
      tableName: 't',
      epoch: 2n,
      writerNodeId: 'node-b',
      records: [encodeTxnRecord(record(1n))],
    });
    await store.put(segmentKey(tableKey('t'), 1n), other, { condition: { type: 'absent' } });
    const source = memorySource();
    const { instance, fenced } = uploader(store, source);
    instance.committed('t', source.add('t', 1n));
    await expect(instance.waitUploaded('t', 1n, 5_000)).rejects.toMatchObject({ code: 'FENCED' });
    expect(fenced).toEqual([{ table: 't', txnFirst: 1n, writerNodeId: 'node-b', epoch: 2n }]);
    expect(source.uploadedTxn('t')).toBe(0n);
    instance.stop();
  });

  it('uploads different tables in parallel and each in order', async () => {
    const store = withFaults(new MemoryStore(), [
      { fault: { type: 'latency', ms: 20 }, operations: ['put'] },
    ]);
    const source = memorySource();
    const { instance } = uploader(store, source);
    for (let txn = 1n; txn <= 3n; txn++)
      for (const t of ['a', 'b', 'c']) instance.committed(t, source.add(t, txn));
    await Promise.all(['a', 'b', 'c'].map((t) => instance.waitUploaded(t, 3n, 5_000)));
    for (const t of ['a', 'b', 'c']) expect(source.uploadedTxn(t)).toBe(3n);
    instance.stop();
  });

  describe('confirms its epoch before it acknowledges (RFC-0002 W5)', () => {
    /** `epochs/2.json`: node-b took over epoch 1's primary (node-a). */
    async function promoted(store: ObjectStore): Promise<void> {
      const record = {
        epoch: 2n,
        nodeId: 'node-b',
        url: 'http://b',
        reason: 'test',
        at: '2026-01-01T00:00:00Z',
        claimId: 'c',
      };
      await store.put(epochKey(2n), encodeEpoch(record), { condition: { type: 'absent' } });
    }

    /** A segment of epoch 2 by node-b at slot `txn` (the new primary's chain). */
    async function newEpochSegment(store: ObjectStore, table: string, txn: bigint, kind: 'fence' | 'data') {
      const fence: TxnRecord = { txn, commitTimeUs: 1n, kind: 'fence', rowCount: 0, columns: [] };
      const segment = await sealSegment({
        tableName: table,
        epoch: 2n,
        writerNodeId: 'node-b',
        records: [encodeTxnRecord(kind === 'fence' ? fence : record(txn))],
      });
      await store.put(segmentKey(asTableKey(table), txn), segment, { condition: { type: 'absent' } });
    }

    it('a write into a slot GC reopened after the fence is not acknowledged, and the node is fenced (regression: issue 13 item 11)', async () => {
      // Epoch 2 fenced at slot 1 and wrote on; GC then collected slots 1–4 (the fence too): only 5 is left.
      const store = new MemoryStore();
      await promoted(store);
      await newEpochSegment(store, 't', 5n, 'data');
      const source = memorySource();
      const { instance, fenced } = uploader(store, source);
      for (const txn of [1n, 2n]) instance.committed('t', source.add('t', txn));
      await expect(instance.waitUploaded('t', 2n, 5_000)).rejects.toMatchObject({ code: 'FENCED' });
      expect(source.uploadedTxn('t')).toBe(0n); // stays pending: the divergence file gets it
      expect(fenced).toEqual([{ table: 't', txnFirst: 1n, writerNodeId: epochKey(2n), epoch: 2n }]);
      await instance.stop();
    });

    it('a segment that raced the promotion (the newest of its table, or fenced right after) is acknowledged', async () => {
      const store = new MemoryStore();
      await promoted(store);
      await newEpochSegment(store, 'b', 3n, 'fence'); // slot 3: the fence right after txns 1–2
      const source = memorySource();
      const { instance, fenced } = uploader(store, source);
      for (const txn of [1n, 2n]) for (const t of ['a', 'b']) instance.committed(t, source.add(t, txn));
      await Promise.all(['a', 'b'].map((t) => instance.waitUploaded(t, 2n, 5_000)));
      expect([source.uploadedTxn('a'), source.uploadedTxn('b')]).toEqual([2n, 2n]);
      expect(fenced).toHaveLength(1);
      await instance.stop();
    });

    it('one HEAD covers every upload that completed before it started', async () => {
      const tables = ['a', 'b', 'c', 'd', 'e', 'f'];
      const inner = new MemoryStore();
      let puts = 0;
      let allPut: () => void = () => {};
      const everyPutDone = new Promise<void>((resolve) => {
        allPut = resolve;
      });
      const heads: string[] = [];
      // The first HEAD is held until every table's PUT completed: those uploads must share one more.
      const store: ObjectStore = {
        description: inner.description,
        put: async (key, body, options) => {
          const result = await inner.put(key, body, options);
          if (key.includes('/wal/') && ++puts === tables.length) allPut();
          return result;
        },
        get: (key, options) => inner.get(key, options),
        head: async (key) => {
          heads.push(key);
          if (heads.length === 1) await everyPutDone;
          return inner.head(key);
        },
        list: (prefix, options) => inner.list(prefix, options),
        delete: (key) => inner.delete(key),
        deleteMany: (keys) => inner.deleteMany(keys),
        close: async () => {},
      };
      const source = memorySource();
      const { instance, fenced } = uploader(store, source, { maxConcurrentTables: tables.length });
      for (const t of tables) instance.committed(t, source.add(t, 1n));
      await Promise.all(tables.map((t) => instance.waitUploaded(t, 1n, 5_000)));
      expect(heads).toEqual([epochKey(2n), epochKey(2n)]);
      expect(instance.epochChecks).toBe(2);
      expect(fenced).toEqual([]);
      await instance.stop();
    });
  });
});
