import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { childProcesses } from '../tests/helpers/child-processes.js';
import type { TxnRecord } from '../wal/index.js';
import { notesTxn } from '../wal/testing/notes-txn.js';
import { tableKey } from './names.js';
import { createSnapshotImage, restoreSnapshotImage, type SnapshotTable } from './snapshot-image.js';
import { TableStore } from './table-store.js';

const T0 = 1_700_000_000_000_000n;
/** A node fact whose value must not survive in the image, not even in free pages. */
const CLAIM_ID = 'claim-7f3a9c0e-secret-of-this-data-dir';

let dir: string;
const opened: TableStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'walship-snapshot-image-'));
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(file: string, options: Parameters<typeof TableStore.open>[1] = {}): TableStore {
  const store = TableStore.open(join(dir, file), options);
  opened.push(store);
  return store;
}

function record(txn: bigint, rows: number, note: string): TxnRecord {
  return notesTxn(
    txn,
    Array.from({ length: rows }, (_, i) => `${note}-${i}`),
    T0,
  );
}

/** A primary's store: two tables, un-uploaded txns in the pending queue, node facts and a table fact. */
function primaryStore(file = 'tables.sqlite'): TableStore {
  const store = open(file);
  for (let txn = 1n; txn <= 3n; txn++) {
    store.applyTxn('Trades', record(txn, 50, `trade-${txn}`));
    store.enqueuePending('Trades', txn, new TextEncoder().encode(`pending record ${txn} ${CLAIM_ID}`));
  }
  store.setUploadedTxn('Trades', 1n);
  store.dropPendingThrough('Trades', 1n);
  store.applyTxn('quotes', record(1n, 5, 'quote'));
  store.setMeta('node.id', 'node-a');
  store.setMeta('cluster.id', 'cluster-1');
  store.setMeta('epoch', '4');
  store.setMeta('claim.id', CLAIM_ID);
  store.setMeta('table.epoch.trades', '3');
  return store;
}

function errorOf(fn: () => unknown): { code: string; kind: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (isWalshipError(error)) return error;
    throw error;
  }
  throw new Error('expected a WalshipError, nothing was thrown');
}

function rows(db: Database.Database, sql: string): unknown[] {
  return db.prepare(sql).safeIntegers(true).all();
}

describe('createSnapshotImage', () => {
  it('copies tables and rows, and scrubs the pending queue, uploaded watermarks and node facts', async () => {
    const store = primaryStore();
    const image = join(dir, 'image.sqlite');
    const info = await createSnapshotImage(store.file, image);
    expect(info.tables).toEqual([
      { name: 'quotes', key: 'quotes', lastTxn: 1n },
      { name: 'Trades', key: 'trades', lastTxn: 3n },
    ]);
    expect(info.rawBytes).toBe(readFileSync(image).byteLength);

    const db = new Database(image, { readonly: true });
    try {
      expect(rows(db, 'SELECT count(*) AS n FROM _walship_pending')).toEqual([{ n: 0n }]);
      expect(rows(db, 'SELECT key, uploaded_txn FROM _walship_tables ORDER BY key')).toEqual([
        { key: 'quotes', uploaded_txn: 1n },
        { key: 'trades', uploaded_txn: 3n },
      ]);
      expect(rows(db, 'SELECT key, value FROM _walship_kv')).toEqual([
        { key: 'table.epoch.trades', value: '3' },
      ]);
      expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
      const original = new Database(store.file, { readonly: true });
      try {
        expect(rows(db, 'SELECT * FROM "Trades" ORDER BY rowid')).toEqual(
          rows(original, 'SELECT * FROM "Trades" ORDER BY rowid'),
        );
      } finally {
        original.close();
      }
    } finally {
      db.close();
    }
    // The source is untouched: its queue and node facts are the node's own.
    expect(store.pendingSummary()).toMatchObject([{ table: 'Trades', count: 2 }]);
    expect(store.getMeta('claim.id')).toBe(CLAIM_ID);
  });

  it('leaves no byte of the scrubbed state in the file (secure_delete), and one file only', async () => {
    const image = join(dir, 'image.sqlite');
    await createSnapshotImage(primaryStore().file, image);
    const bytes = readFileSync(image).toString('latin1');
    expect(bytes).not.toContain(CLAIM_ID);
    expect(bytes).not.toContain('pending record');
    expect(bytes).toContain('trade-3-49');
    // File header bytes 18 and 19 are 1 in rollback-journal mode, 2 in WAL mode.
    expect([...readFileSync(image).subarray(18, 20)]).toEqual([1, 1]);
  });
});

/**
 * A table store of about `megabytes` MB of incompressible text: big enough that copying it takes
 * many times the 2 ms between two looks of the tests below (VACUUM INTO copies ~0.5 GB/s).
 */
function sizeableStore(megabytes: number): TableStore {
  const store = open('big.sqlite');
  const notes = Array.from({ length: megabytes }, () => randomBytes(768 * 1024).toString('base64'));
  store.applyTxn('blobs', notesTxn(1n, notes, T0));
  store.setMeta('node.id', 'node-a');
  return store;
}

/** Pids of this process's children that run the snapshot image host (Linux /proc). */
const imageHosts = () => childProcesses('snapshot-image-host');

/** Calls `look` every 2 ms until it returns true; a timer, so it runs only while the event loop is free. */
function whenever(look: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (!look()) return;
      clearInterval(timer);
      resolve();
    }, 2);
  });
}

describe.skipIf(process.platform !== 'linux')('createSnapshotImage off the main thread', () => {
  it('leaves the event loop free while the copy runs: a timer set at the start fires before it ends', async () => {
    const store = sizeableStore(40);
    const image = join(dir, 'image.sqlite');
    let settled = false;
    let copyingSeen = false;
    // The synchronous VACUUM INTO of before held the thread for the whole copy: no timer could fire
    // until the image was complete. Here a timer sees the host copying, the call still pending.
    const seen = whenever(() => {
      copyingSeen = !settled && existsSync(image) && imageHosts().length === 1;
      return copyingSeen || settled;
    });
    const info = await createSnapshotImage(store.file, image).finally(() => {
      settled = true;
    });
    await seen;
    expect(copyingSeen).toBe(true);
    expect(info.tables).toEqual([{ name: 'blobs', key: 'blobs', lastTxn: 1n }]);
    expect(imageHosts()).toEqual([]);
  });

  it('copies the last commit while another connection holds a write transaction open', async () => {
    const store = primaryStore();
    const image = join(dir, 'image.sqlite');
    const writer = new Database(store.file);
    try {
      writer.exec(`BEGIN IMMEDIATE; UPDATE _walship_tables SET last_txn = 99 WHERE key = 'trades'`);
      const info = await createSnapshotImage(store.file, image);
      expect(info.tables.find((t) => t.key === 'trades')?.lastTxn).toBe(3n);
      writer.exec('ROLLBACK');
    } finally {
      writer.close();
    }
  });

  it('an abort kills the host at once, removes the copy and rejects with the reason', async () => {
    const store = sizeableStore(40);
    const image = join(dir, 'image.sqlite');
    const abort = new AbortController();
    const copy = createSnapshotImage(store.file, image, { signal: abort.signal });
    let hosts: number[] = [];
    await whenever(() => {
      hosts = imageHosts();
      return existsSync(image) && hosts.length === 1;
    });
    abort.abort(new Error('node closing'));
    await expect(copy).rejects.toThrow('node closing');
    // Rejected only once the host is gone (reaped), before it could finish the copy.
    expect(imageHosts()).toEqual([]);
    expect(() => process.kill(hosts[0]!, 0)).toThrow(/ESRCH/);
    expect(readdirSync(dir).filter((name) => name.startsWith('image'))).toEqual([]);
  });

  it('refuses an existing destination and leaves it alone; a missing database is STORAGE_FAILED', async () => {
    const store = primaryStore();
    writeFileSync(join(dir, 'taken.sqlite'), 'something');
    await expect(createSnapshotImage(store.file, join(dir, 'taken.sqlite'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    expect(readFileSync(join(dir, 'taken.sqlite'), 'utf8')).toBe('something');
    await expect(
      createSnapshotImage(join(dir, 'none.sqlite'), join(dir, 'copy.sqlite')),
    ).rejects.toMatchObject({
      code: 'STORAGE_FAILED',
    });
    expect(existsSync(join(dir, 'copy.sqlite'))).toBe(false);
  });
});

describe('restoreSnapshotImage', () => {
  let image: string;
  let tables: SnapshotTable[];
  beforeEach(async () => {
    image = join(dir, 'image.sqlite');
    tables = (await createSnapshotImage(primaryStore().file, image)).tables;
  });

  function corruptionOf(expected: readonly SnapshotTable[] = tables) {
    const error = errorOf(() => restoreSnapshotImage(image, expected));
    expect(error).toMatchObject({ code: 'SNAPSHOT_CORRUPT', kind: 'data' });
    return error.message;
  }

  function edit(sql: string): void {
    const db = new Database(image);
    db.exec(sql);
    db.close();
  }

  it('accepts an image that matches its watermarks, and opens as a TableStore', () => {
    restoreSnapshotImage(image, tables);
    const restored = open('image.sqlite');
    expect(restored.lastTxn('trades')).toBe(3n);
    expect(restored.uploadedTxn('trades')).toBe(3n);
    expect(restored.getMeta('table.epoch.trades')).toBe('3');
  });

  it('refuses other watermarks, a missing table and an extra table', () => {
    const [quotes, trades] = tables as [SnapshotTable, SnapshotTable];
    expect(corruptionOf([quotes, { ...trades, lastTxn: 4n }])).toMatch(/watermarks check.*txn 3.*txn 4/);
    expect(corruptionOf([quotes, { ...trades, name: 'trades' }])).toMatch(/watermarks check/);
    expect(corruptionOf([trades])).toMatch(/watermarks check.*quotes/);
    expect(corruptionOf([...tables, { name: 'x', key: tableKey('x'), lastTxn: 1n }])).toMatch(
      /"x" is missing/,
    );
  });

  it('refuses an uploaded watermark behind the last txn', () => {
    edit('UPDATE _walship_tables SET uploaded_txn = 0');
    expect(corruptionOf()).toMatch(/watermarks check.*uploaded 0/);
  });

  it('refuses pending txns and node facts', () => {
    edit(`INSERT INTO _walship_pending VALUES ('Trades', 4, x'00')`);
    expect(corruptionOf()).toMatch(/node-local state check.*1 pending/);
    edit(`DELETE FROM _walship_pending; INSERT INTO _walship_kv VALUES ('node.id', 'b')`);
    expect(corruptionOf()).toMatch(/node-local state check.*node\.id/);
  });

  it('refuses another layout version and WAL journal mode', () => {
    edit('PRAGMA user_version = 7');
    expect(corruptionOf()).toMatch(/layout version check/);
    edit('PRAGMA user_version = 1; PRAGMA journal_mode = WAL');
    expect(corruptionOf()).toMatch(/journal mode check/);
  });

  it('refuses a file that is not a database, or whose pages are damaged', () => {
    const good = readFileSync(image);
    writeFileSync(image, Buffer.alloc(good.byteLength, 0x5a));
    expect(corruptionOf()).toMatch(/snapshot image .* failed the quick_check check/);
    // Damage every page after the first (the header and schema survive, the tables do not).
    const damaged = Buffer.from(good);
    const pageBytes = damaged.readUInt16BE(16);
    for (let page = 1; page * pageBytes < damaged.byteLength; page++) {
      damaged.fill(0xff, page * pageBytes, page * pageBytes + 16);
    }
    writeFileSync(image, damaged);
    expect(corruptionOf()).toMatch(/quick_check/);
  });

  it('refuses a missing file', () => {
    rmSync(image);
    expect(corruptionOf()).toMatch(/open check/);
  });
});
