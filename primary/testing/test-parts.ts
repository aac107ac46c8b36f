import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach } from 'vitest';
import { seededRandom, systemClock } from '../../core/index.js';
import { MemoryStore, type ObjectStore } from '../../objectstore/index.js';
import { TableStore } from '../../table/index.js';
import { Committer, type CommitterOptions } from '../committer.js';
import { pendingSourceOf } from '../pending-source.js';
import { type PendingSource, Uploader, type UploaderOptions } from '../uploader.js';

/**
 * An Uploader for unit tests. By default it is never due on its own: nothing is uploaded unless
 * the test calls flush(), so the pending queue keeps every record until then.
 */
export function testUploader(
  store: ObjectStore,
  source: PendingSource,
  overrides: Partial<UploaderOptions> = {},
): Uploader {
  return new Uploader({
    store,
    source,
    nodeId: 'node-a',
    epoch: () => 1n,
    clock: systemClock,
    random: seededRandom(1),
    log: pino({ level: 'silent' }),
    rolloverSizeBytes: 1024 * 1024 * 1024,
    windowMs: 3_600_000,
    maxConcurrentTables: 1,
    headIntervalMs: 3_600_000,
    codec: 'deflate',
    compressionLevel: 1,
    onFenced: () => {},
    ...overrides,
  });
}

/** A Committer for unit tests: local acks, limits no test reaches; `overrides` replace its options. */
export function testCommitter(
  tables: TableStore,
  uploader: Uploader,
  overrides: Partial<CommitterOptions> = {},
): Committer {
  return new Committer({
    tables,
    uploader,
    clock: systemClock,
    ackMode: 'local',
    durableTimeoutMs: 1_000,
    pendingMaxBytes: 1024 * 1024 * 1024,
    acceptingWrites: () => true,
    ...overrides,
  });
}

/** A fresh table store in a temp dir, a memory store and an uploader over both, for each test. */
export interface CommitterParts {
  readonly dir: string;
  readonly tables: TableStore;
  readonly store: MemoryStore;
  readonly uploader: Uploader;
}

/** Registers beforeEach/afterEach hooks that make and close CommitterParts; read them inside tests. */
export function useCommitterParts(prefix: string): CommitterParts {
  let parts: { dir: string; tables: TableStore; store: MemoryStore; uploader: Uploader } | undefined;
  beforeEach(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), prefix));
    const tables = TableStore.open(path.join(dir, 'primary.sqlite'));
    const store = new MemoryStore();
    parts = { dir, tables, store, uploader: testUploader(store, pendingSourceOf(tables)) };
  });
  afterEach(async () => {
    if (parts === undefined) return;
    await parts.uploader.stop();
    parts.tables.close();
    await parts.store.close();
    await rm(parts.dir, { recursive: true, force: true });
    parts = undefined;
  });
  const current = () => {
    if (parts === undefined) throw new Error('CommitterParts are made for each test: read them inside one');
    return parts;
  };
  return {
    get dir() {
      return current().dir;
    },
    get tables() {
      return current().tables;
    },
    get store() {
      return current().store;
    },
    get uploader() {
      return current().uploader;
    },
  };
}
