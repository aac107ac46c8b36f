/**
 * The committer's sliced path (issue 13 item 5): a request larger than COMMIT_SLICE_ROWS is
 * parsed, built, encoded and applied a slice at a time with the event loop free in between, under
 * the write lock and in ONE SQLite transaction, so it stays all or nothing; writes arriving
 * meanwhile wait for the lock; the uploader's watermark writes wait for the transaction.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type IlpLineSource, IlpParseError, parseIlp, parseIlpInSlices } from '../ilp/index.js';
import { MemoryStore } from '../objectstore/index.js';
import { TableStore, tableKey } from '../table/index.js';
import { decodeTxnRecord } from '../wal/index.js';
import { COMMIT_SLICE_ROWS, type CommitterOptions } from './committer.js';
import { pendingSourceOf } from './pending-source.js';
import { testCommitter, testUploader } from './testing/test-parts.js';
import type { PendingSource, Uploader } from './uploader.js';
import { deferWritesDuring, WriteWindow } from './write-window.js';

let dir = '';
let tables: TableStore;
let uploader: Uploader;
let store: MemoryStore;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-committer-'));
  tables = TableStore.open(path.join(dir, 'tables.sqlite'));
  store = new MemoryStore();
  uploader = testUploader(store, pendingSourceOf(tables));
});
afterEach(async () => {
  await uploader.stop();
  tables.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A committer whose pauses are counted (each is one real event-loop turn); `overrides` replace its options. */
function committer(pauses = { count: 0 }, overrides: Partial<CommitterOptions> = {}) {
  return testCommitter(tables, uploader, {
    pause: () => {
      pauses.count++;
      return new Promise((resolve) => setImmediate(resolve));
    },
    ...overrides,
  });
}

function lines(table: string, first: number, count: number): string {
  let text = '';
  for (let id = first; id < first + count; id++)
    text += `${table},s=S${id % 7} id=${id}i,v=${id}.5,n="x${id}" ${id}\n`;
  return text;
}

function sourceOf(text: string, sliceLines = 500): IlpLineSource {
  return {
    forEachSlice: (sink) => parseIlpInSlices(Buffer.from(text), { precision: 'n', sliceLines }, sink),
  };
}

/** The rows of `table`'s pending record of txn `txn`. */
function pendingRows(table: string, txn: bigint): number {
  const record = tables.pending(table).find((p) => p.txn === txn);
  return record === undefined ? 0 : decodeTxnRecord(record.bytes).rowCount;
}

describe('Committer, a request larger than a slice', () => {
  const rows = 3 * COMMIT_SLICE_ROWS + 17;

  it('commits in slices with the event loop free between them, as one txn per table', async () => {
    const pauses = { count: 0 };
    let timerRan = false;
    const committing = committer(pauses).commitSlices(sourceOf(lines('t', 1, rows)));
    // A timer set now runs before the commit ends: the commit left the loop free at least once.
    setTimeout(() => {
      timerRan = true;
    }, 0);
    const result = await committing;
    expect(timerRan).toBe(true);
    expect(pauses.count).toBeGreaterThanOrEqual(3);
    expect(result.txns).toEqual([{ table: 't', txn: 1n, rows }]);
    expect(tables.lastTxn('t')).toBe(1n);
    expect(pendingRows('t', 1n)).toBe(rows);
  });

  it('commits nothing when a line in a later slice is bad (400 for the whole request)', async () => {
    const text = `${lines('t', 1, 2 * COMMIT_SLICE_ROWS)}t id=oops\n`;
    const error = await committer()
      .commitSlices(sourceOf(text))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IlpParseError);
    expect((error as IlpParseError).line).toBe(2 * COMMIT_SLICE_ROWS + 1);
    expect(tables.schema('t')).toBeUndefined();
    expect(tables.pendingSummary()).toEqual([]);
  });

  it('rolls back every row when the apply fails after some slices went in', async () => {
    // A failure inside the sliced SQLite transaction after every row went in (a full disk at the
    // end, injected): the whole transaction rolls back.
    const c = committer();
    await c.commit(parseIlp(Buffer.from(lines('t', 0, 1)), { precision: 'n' }));
    const original = tables.applyTxnInSlices.bind(tables);
    let calls = 0;
    tables.applyTxnInSlices = async (table, record, options) => {
      calls++;
      await original(table, record, options);
      throw new Error('disk full (injected after every row went in)');
    };
    await expect(c.commitSlices(sourceOf(lines('t', 1, rows)))).rejects.toThrow(/disk full/);
    tables.applyTxnInSlices = original;
    expect(calls).toBe(1);
    expect(tables.lastTxn('t')).toBe(1n);
    expect(tables.pending('t').map((p) => p.txn)).toEqual([1n]);
    // The next request takes txn 2: nothing of the failed one is left behind.
    const next = await c.commit(parseIlp(Buffer.from(lines('t', 5, 3)), { precision: 'n' }));
    expect(next.txns).toEqual([{ table: 't', txn: 2n, rows: 3 }]);
  });

  it('commits nothing when the node stops taking writes while the rows go in (a fence, a demotion)', async () => {
    const accepting = { value: true };
    const c = committer({ count: 0 }, { acceptingWrites: () => accepting.value });
    const original = tables.applyTxnInSlices.bind(tables);
    tables.applyTxnInSlices = async (table, record, options) => {
      await original(table, record, options);
      accepting.value = false; // the gate closes after every row went in, before COMMIT
    };
    const error = await c.commitSlices(sourceOf(lines('t', 1, rows))).catch((e: unknown) => e);
    tables.applyTxnInSlices = original;
    expect((error as { code?: string }).code).toBe('NOT_ACCEPTING_WRITES');
    expect(tables.lastTxn('t')).toBe(0n);
    expect(tables.pendingSummary()).toEqual([]);
  });

  it('makes a write arriving meanwhile wait for the lock, then commit as the next txn', async () => {
    const c = committer();
    const big = c.commitSlices(sourceOf(lines('t', 1, rows)));
    // Parsed already, small: it would commit synchronously if the lock were free.
    const small = c.commit(parseIlp(Buffer.from(lines('t', rows + 1, 2)), { precision: 'n' }));
    expect(tables.lastTxn('t')).toBe(0n);
    const [bigResult, smallResult] = await Promise.all([big, small]);
    expect(bigResult.txns[0]!.txn).toBe(1n);
    expect(smallResult.txns).toEqual([{ table: 't', txn: 2n, rows: 2 }]);
    await c.idle();
  });

  it('commits a small request synchronously when the lock is free', async () => {
    const c = committer();
    const answered = c.commit(parseIlp(Buffer.from(lines('t', 1, 3)), { precision: 'n' }));
    expect(tables.lastTxn('t')).toBe(1n);
    await answered;
  });
});

describe('Committer, a request spread over many tables (issue 15)', () => {
  const tableCount = 300;
  const rowsPerTable = 20;

  /** `rowsPerTable` rows for each of `tableCount` tables, round-robin, as a client batching them sends. */
  function spread(first: number, extraColumn = ''): string {
    let text = '';
    for (let row = first; row < first + tableCount * rowsPerTable; row++)
      text += `m${row % tableCount},s=S${row % 7} id=${row}i,v=${row}.5${extraColumn} ${row}\n`;
    return text;
  }

  it('commits one txn per table, frees the loop every slice of rows and not for every table', async () => {
    expect(tableCount * rowsPerTable).toBeGreaterThan(COMMIT_SLICE_ROWS);
    const pauses = { count: 0 };
    const c = committer(pauses);
    const result = await c.commitSlices(sourceOf(spread(0)));
    expect(result.txns).toHaveLength(tableCount);
    expect(result.txns.every(({ txn, rows }) => txn === 1n && rows === rowsPerTable)).toBe(true);
    const slices = Math.ceil((tableCount * rowsPerTable) / COMMIT_SLICE_ROWS);
    // Encoding and applying free the loop about once a slice each; a pause per table (or per column
    // of each table) would be hundreds.
    expect(pauses.count).toBeGreaterThanOrEqual(2);
    expect(pauses.count).toBeLessThanOrEqual(4 * slices);
    for (const table of ['m0', `m${tableCount - 1}`]) {
      expect(tables.schema(table)!.columns).toEqual([
        { name: 'timestamp', type: 'timestamp' },
        { name: 's', type: 'symbol' },
        { name: 'id', type: 'long' },
        { name: 'v', type: 'double' },
      ]);
      expect(pendingRows(table, 1n)).toBe(rowsPerTable);
    }
    // The next request adds a column to every table: the tables exist, the column is altered in.
    const next = await c.commitSlices(sourceOf(spread(tableCount * rowsPerTable, ',n="x"')));
    expect(next.txns.every(({ txn }) => txn === 2n)).toBe(true);
    expect(tables.schema('m7')!.columns.map((column) => column.name)).toEqual([
      'timestamp',
      's',
      'id',
      'v',
      'n',
    ]);
    expect(pendingRows('m7', 2n)).toBe(rowsPerTable);
  });

  it('leaves nothing of the request when a table late in it fails, after the loop was freed', async () => {
    const c = committer();
    await c.commitSlices(sourceOf(spread(0)));
    const before = tables.pendingSummary();
    const original = tables.applyTxn.bind(tables);
    let applied = 0;
    tables.applyTxn = (table, record) => {
      // Two thirds in: earlier tables' rows (and columns) went in, some slices ago.
      if (++applied === Math.floor((2 * tableCount) / 3)) throw new Error('disk full (injected)');
      original(table, record);
    };
    const failing = c.commitSlices(sourceOf(`${spread(tableCount * rowsPerTable, ',n="x"')}fresh v=1 1\n`));
    await expect(failing).rejects.toThrow(/disk full/);
    tables.applyTxn = original;
    expect(applied).toBe(Math.floor((2 * tableCount) / 3));
    expect(tables.pendingSummary()).toEqual(before);
    expect(tables.schema('fresh')).toBeUndefined();
    for (let t = 0; t < tableCount; t++) {
      expect(tables.lastTxn(`m${t}`)).toBe(1n);
      expect(tables.schema(`m${t}`)!.columns.map((column) => column.name)).toEqual([
        'timestamp',
        's',
        'id',
        'v',
      ]);
    }
    const db = new Database(path.join(dir, 'tables.sqlite'), { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM m0').get()).toEqual({ n: rowsPerTable });
    db.close();
    // The same request then commits as each table's txn 2.
    const retried = await c.commitSlices(
      sourceOf(`${spread(tableCount * rowsPerTable, ',n="x"')}fresh v=1 1\n`),
    );
    expect(retried.txns).toHaveLength(tableCount + 1);
    expect(tables.lastTxn('m0')).toBe(2n);
    expect(tables.lastTxn('fresh')).toBe(1n);
  });

  it('leaves nothing of a small request over several tables when one of them fails', async () => {
    const c = committer();
    const text = 'a v=1 1\nb v=2 2\nc v=3 3\n';
    await c.commit(parseIlp(Buffer.from(text), { precision: 'n' }));
    const original = tables.applyTxn.bind(tables);
    tables.applyTxn = (table, record) => {
      if (table === 'c') throw new Error('disk full (injected)');
      original(table, record);
    };
    const adding = 'a w=1,v=1 1\nb w=1,v=2 2\nc w=1,v=3 3\nd w=1,v=4 4\n';
    const failing = c.commit(parseIlp(Buffer.from(adding), { precision: 'n' }));
    await expect(failing).rejects.toThrow(/disk full/);
    tables.applyTxn = original;
    expect(['a', 'b', 'c', 'd'].map((t) => tables.lastTxn(t))).toEqual([1n, 1n, 1n, 0n]);
    expect(tables.schema('a')!.columns.map((column) => column.name)).toEqual(['timestamp', 'v']);
    expect(tables.pendingSummary().map((p) => [p.table, p.count])).toEqual([
      ['a', 1],
      ['b', 1],
      ['c', 1],
    ]);
  });
});

describe('deferWritesDuring', () => {
  function fakeSource(): PendingSource & { marked: [string, bigint][] } {
    const marked: [string, bigint][] = [];
    return {
      marked,
      pendingSummary: () => [],
      pending: () => [],
      markUploaded: (table, txn) => {
        marked.push([table, txn]);
      },
      uploadedTxn: () => 1n,
      uploadedAll: () => [],
      tableKey: (table) => tableKey(table),
    };
  }

  it('holds watermark writes while the window is open, reporting them at once, and runs them after', async () => {
    const source = fakeSource();
    const window = new WriteWindow();
    const deferred = deferWritesDuring(source, window);
    await window.during(async () => {
      deferred.markUploaded('t', 3n);
      expect(source.marked).toEqual([]);
      expect(deferred.uploadedTxn('t')).toBe(3n);
      await new Promise((resolve) => setImmediate(resolve));
    });
    expect(source.marked).toEqual([['t', 3n]]);
    deferred.markUploaded('t', 4n);
    expect(source.marked).toEqual([
      ['t', 3n],
      ['t', 4n],
    ]);
  });

  it('hides records through a deferred watermark: the next upload does not seal them again', async () => {
    // Found by `npm run bench -- ingest`: a re-sealed upload found our own segment in its slot, with
    // records no longer comparable, and the primary fenced itself.
    const records = [1n, 2n, 3n, 4n].map((txn) => ({ txn, bytes: new Uint8Array([Number(txn)]) }));
    // Like TableStore.pending: records from the oldest, about limitBytes worth (at least one).
    const pending = (
      _table: string,
      { limitBytes, afterTxn = 0n }: { limitBytes: number; afterTxn?: bigint },
    ) => records.filter((r) => r.txn > afterTxn).slice(0, Math.max(1, limitBytes));
    const source = { ...fakeSource(), pending };
    const window = new WriteWindow();
    const deferred = deferWritesDuring(source, window);
    await window.during(async () => {
      deferred.markUploaded('t', 2n);
      expect((await deferred.pending('t', { limitBytes: 100 })).map((r) => r.txn)).toEqual([3n, 4n]);
      // Within the limit every record is through the watermark: it asks for those after it, never
      // answers empty while txns are pending (the uploader would forget the table: found by the
      // replicate bench).
      expect((await deferred.pending('t', { limitBytes: 1 })).map((r) => r.txn)).toEqual([3n]);
      deferred.markUploaded('t', 4n);
      expect(await deferred.pending('t', { limitBytes: 1 })).toEqual([]);
    });
    expect((await deferred.pending('t', { limitBytes: 100 })).map((r) => r.txn)).toEqual([1n, 2n, 3n, 4n]);
  });

  it('finds the records after a deferred watermark however large the ones through it are', async () => {
    // Found by big-write-failover with the write worker: the uploader asked for more from the
    // oldest record until one past the watermark showed up, and stopped at a record larger than
    // the doubled limit, answering "nothing pending" while txn 3 was: it was never uploaded.
    const records = [1n, 2n, 3n].map((txn) => ({ txn, bytes: new Uint8Array(txn === 3n ? 1 : 1000) }));
    // Like TableStore.pending: after afterTxn, from the oldest, while within limitBytes (at least one).
    const pending = (
      _table: string,
      { limitBytes, afterTxn = 0n }: { limitBytes: number; afterTxn?: bigint },
    ) => {
      const out: typeof records = [];
      let bytes = 0;
      for (const r of records.filter((p) => p.txn > afterTxn)) {
        if (out.length > 0 && bytes + r.bytes.length > limitBytes) break;
        out.push(r);
        bytes += r.bytes.length;
      }
      return out;
    };
    const window = new WriteWindow();
    const deferred = deferWritesDuring({ ...fakeSource(), pending }, window);
    await window.during(async () => {
      deferred.markUploaded('t', 2n);
      expect((await deferred.pending('t', { limitBytes: 10 })).map((r) => r.txn)).toEqual([3n]);
    });
  });

  it('runs the deferred writes when the window ends with an error too; a failing one is reported', async () => {
    const source = fakeSource();
    const failures: unknown[] = [];
    const window = new WriteWindow((error) => failures.push(error));
    const failing = deferWritesDuring(
      {
        ...source,
        markUploaded: () => {
          throw new Error('the table store is closed');
        },
      },
      window,
    );
    const plain = deferWritesDuring(source, window);
    await expect(
      window.during(async () => {
        failing.markUploaded('u', 1n);
        plain.markUploaded('t', 2n);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(source.marked).toEqual([['t', 2n]]);
    expect(failures).toHaveLength(1);
  });
});

describe('group commit: the fsync runs off the event loop, shared, before anything is reported', () => {
  /** Holds every syncWal call until released; counts them. */
  function holdSyncs() {
    const held: (() => void)[] = [];
    const real = tables.syncWal.bind(tables);
    let calls = 0;
    tables.syncWal = () => {
      calls++;
      return new Promise<void>((resolve, reject) => {
        held.push(() => real().then(resolve, reject));
      });
    };
    return {
      calls: () => calls,
      releaseAll: () => {
        for (const release of held.splice(0)) release();
      },
    };
  }

  it('answers only after the WAL fsync, and keeps the txns from the uploader until then', async () => {
    const syncs = holdSyncs();
    const window = new WriteWindow();
    const source = deferWritesDuring(pendingSourceOf(tables), window);
    const c = committer({ count: 0 }, { writeWindow: window });
    let answered = false;
    const first = c.commit(parseIlp(Buffer.from(lines('g', 1, 3)), { precision: 'n' })).then((r) => {
      answered = true;
      return r;
    });
    const second = c.commit(parseIlp(Buffer.from(lines('g', 4, 2)), { precision: 'n' }));
    // Both committed in SQLite (another connection sees them), neither answered nor uploadable.
    const other = new Database(path.join(dir, 'tables.sqlite'), { readonly: true });
    try {
      expect(other.prepare('SELECT count(*) FROM g').pluck().get()).toBe(5);
    } finally {
      other.close();
    }
    expect(tables.synchronous).toBe('FULL');
    await new Promise((resolve) => setImmediate(resolve));
    expect(answered).toBe(false);
    expect(await source.pending('g', { limitBytes: 1 << 30 })).toEqual([]);
    expect(uploader.pendingBytes).toBe(0);
    syncs.releaseAll();
    const [a, b] = await Promise.all([first, second]);
    expect(a.txns).toEqual([{ table: 'g', txn: 1n, rows: 3 }]);
    expect(b.txns).toEqual([{ table: 'g', txn: 2n, rows: 2 }]);
    expect((await source.pending('g', { limitBytes: 1 << 30 })).map((r) => r.txn)).toEqual([1n, 2n]);
    expect(syncs.calls()).toBe(2);
  });

  it('idle() waits for commits whose fsync is still to come, so a demotion flushes every txn', async () => {
    const syncs = holdSyncs();
    const c = committer();
    const answered = c.commit(parseIlp(Buffer.from(lines('d', 1, 2)), { precision: 'n' }));
    let idle = false;
    const idled = c.idle().then(() => {
      idle = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(idle).toBe(false);
    expect(uploader.pendingBytes).toBe(0);
    syncs.releaseAll();
    await idled;
    // The uploader heard of the txn before idle() resolved: a flush now uploads it.
    expect(uploader.pendingBytes).toBeGreaterThan(0);
    await answered;
  });

  it('shares one fsync among the commits that wait for it', async () => {
    const c = committer();
    const before = tables.walSyncs;
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        c.commit(parseIlp(Buffer.from(lines('s', i * 10, 10)), { precision: 'n' })),
      ),
    );
    const rounds = tables.walSyncs - before;
    // The first commit's fsync starts at once; the seven committed meanwhile share the next.
    expect(rounds).toBeGreaterThanOrEqual(1);
    expect(rounds).toBeLessThan(8);
    expect(tables.lastTxn('s')).toBe(8n);
  });
});
