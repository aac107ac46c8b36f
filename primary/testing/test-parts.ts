import { pino } from 'pino';
import { seededRandom, systemClock } from '../../core/index.js';
import type { ObjectStore } from '../../objectstore/index.js';
import type { TableStore } from '../../table/index.js';
import { Committer, type CommitterOptions } from '../committer.js';
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
