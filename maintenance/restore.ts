import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import {
  type Clock,
  InvalidArgumentError,
  isWalshipError,
  parseTimeMs,
  systemClock,
  WalshipError,
} from '../core/index.js';
import {
  CLUSTER_KEY,
  discoverTableKeys,
  listSnapshots,
  parseClusterRecord,
  type SnapshotManifest,
  segmentKey,
  segmentsAfter,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import {
  checkEpochOrder,
  restoreSnapshot,
  TABLE_EPOCH_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
  verifySegment,
} from '../replica/index.js';
import { decodeTableKey, moveDatabaseFiles, type TableKey, TableStore, tableKey } from '../table/index.js';
import type { DecodedSegment, TxnRecord } from '../wal/index.js';

/**
 * Point-in-time recovery (RFC-0006): builds a node data dir holding every table as it was at a
 * txn or a time, from the newest usable snapshot plus the segments after it, verified exactly as
 * a replica verifies them (replica/segment-verifier.ts) and applied with the same TableStore calls
 * as the follower (one SQLite transaction per segment with the watermark and the table's epoch).
 */

/** Segment keys one LIST asks for while replaying (as the follower, FOLLOWER_LIMITS.listBatchKeys: S3's page maximum). */
const LIST_BATCH_KEYS = 1_000;
/** Fetches of a segment that fails verification before the restore gives up (a torn read heals). */
const FETCH_ATTEMPTS = 2;
/** The database file a node uses in its data dir (node/walship-node.ts, replica/replica-node.ts). */
export const RESTORED_DATABASE_FILE = 'tables.sqlite';
/** The restore builds the database under this name and renames it into place only when complete. */
const WORK_FILE = 'tables.sqlite.restoring';
/** Node facts that tie a data dir to one cluster and one node: cleared for `newCluster`. */
const NODE_META_KEYS = ['cluster.id', 'epoch', 'node.id', 'claim.id'] as const;

/** Where to stop: exactly one of `txn` and `atMs`. */
export interface RestoreTarget {
  /**
   * Apply every txn up to and including this one: one number for every restored table, or one per
   * table name. A segment holding txns past it is applied partially.
   */
  txn?: bigint | Record<string, bigint>;
  /**
   * Wall-clock ms since the Unix epoch: per table, apply the longest run of txns from the start
   * whose commit time (the primary's clock, recorded in every txn record) is at or before it.
   */
  atMs?: number;
}

/** Progress: the snapshot image's bytes, then the txns applied (total null when unknown, for a time). */
export interface RestoreProgress {
  phase: 'snapshot' | 'replay';
  done: number;
  total: number | null;
  unit: 'bytes' | 'txns';
}

export interface RestoreOptions {
  store: ObjectStore;
  /** The data dir to create; must be absent or empty. */
  dataDir: string;
  to: RestoreTarget;
  /** Restore only these tables (names); default every table in the store (or the target's tables). */
  tables?: string[];
  /**
   * Leave no cluster, epoch or node identity in the data dir (nor any table epoch), so that a primary
   * started on it with another store root founds a new cluster holding this data.
   */
  newCluster?: boolean;
  onProgress?: (progress: RestoreProgress) => void;
  log: Logger;
  clock?: Clock;
}

/** One restored table. */
export interface RestoredTable {
  name: string;
  key: TableKey;
  /** The snapshot's watermark for this table (0n without a snapshot or when it lacked the table). */
  snapshotTxn: bigint;
  /** The last txn the data dir holds. */
  restoredTxn: bigint;
  txnsApplied: number;
  segmentsApplied: number;
  rows: number;
  /**
   * The segment the restore stopped inside (only some of its txns applied), or null. A replica
   * applies whole segments, so it cannot follow such a table onward (RFC-0006 "Starting on it").
   */
  partialSegment: string | null;
  /** True when the store held nothing after `restoredTxn` (the whole chain was at or before the target). */
  endOfChain: boolean;
}

export interface RestoreResult {
  dataDir: string;
  /** The store's cluster; the data dir's `cluster.id` unless `newCluster`. */
  clusterId: string;
  snapshot: SnapshotManifest | null;
  tables: RestoredTable[];
  durationMs: number;
}

/** Per-table replay state. */
interface Replay {
  key: TableKey;
  name: string;
  snapshotTxn: bigint;
  appliedTxn: bigint;
  epoch: bigint;
  /** Stop after this txn (txn target), or undefined (time target). */
  targetTxn: bigint | undefined;
  txnsApplied: number;
  segmentsApplied: number;
  partialSegment: string | null;
  endOfChain: boolean;
  done: boolean;
}

/**
 * Builds `dataDir` at the point `to` (RFC-0006): refuses a non-empty data dir (`DATA_DIR_NOT_EMPTY`),
 * restores the newest snapshot of the store's cluster that holds nothing past the target, replays
 * each table's segments after it in txn order and stops exactly at the target, then renames the
 * database into place (a failed restore leaves no `tables.sqlite`). Throws `SEGMENT_MISSING` (data)
 * naming the key when a table's chain has a gap before the target, `RESTORE_BEYOND_END` (data) when
 * a txn target lies past a table's last txn in the store, `RESTORE_NO_CLUSTER` (invalid) for a root
 * without a cluster, the verifier's codes for a bad segment, and store errors as they come.
 */
export async function restoreToPoint(options: RestoreOptions): Promise<RestoreResult> {
  const clock = options.clock ?? systemClock;
  const startedMs = clock.monotonicMs();
  checkTarget(options.to);
  await prepareEmptyDir(options.dataDir);
  const workFile = path.join(options.dataDir, WORK_FILE);
  try {
    const clusterId = await readClusterId(options.store);
    const keys = await tablesToRestore(options);
    const snapshot = await pickSnapshot(options, clusterId, keys);
    options.log.info({ snapshot: snapshot?.id ?? null, tables: keys.length }, 'restoring');
    if (snapshot !== null) {
      await restoreSnapshot({
        store: options.store,
        manifest: snapshot,
        destFile: workFile,
        tmpDir: options.dataDir,
        onProgress: (done, total) => options.onProgress?.({ phase: 'snapshot', done, total, unit: 'bytes' }),
      });
      dropTablesExcept(workFile, new Set(keys));
    }
    const tables = TableStore.open(workFile, { clock });
    let restored: RestoredTable[];
    try {
      restored = await replayAll(options, tables, replaysOf(options.to, keys, tables, snapshot));
      if (options.newCluster !== true) tables.setMeta('cluster.id', clusterId);
    } finally {
      tables.close();
    }
    if (options.newCluster === true) clearClusterIdentity(workFile);
    countRows(workFile, restored);
    await moveDatabaseFiles(workFile, path.join(options.dataDir, RESTORED_DATABASE_FILE));
    return {
      dataDir: options.dataDir,
      clusterId,
      snapshot,
      tables: restored,
      durationMs: clock.monotonicMs() - startedMs,
    };
  } catch (error) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${workFile}${suffix}`, { force: true });
    throw error;
  }
}

// --- setup ---

function checkTarget(to: RestoreTarget): void {
  if ((to.txn === undefined) === (to.atMs === undefined)) {
    throw new InvalidArgumentError('give exactly one restore target: a txn or a time');
  }
  if (to.atMs !== undefined && !Number.isFinite(to.atMs)) {
    throw new InvalidArgumentError(`the restore time ${to.atMs} is not a finite number of ms`);
  }
  const txns = typeof to.txn === 'bigint' ? [to.txn] : Object.values(to.txn ?? {});
  for (const txn of txns) {
    if (txn < 0n) throw new InvalidArgumentError(`the restore target txn ${txn} is negative`);
  }
}

async function prepareEmptyDir(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const entries = await readdir(dataDir);
  if (entries.length > 0) {
    throw new WalshipError(
      'DATA_DIR_NOT_EMPTY',
      'invalid',
      `cannot restore into ${JSON.stringify(dataDir)}: it is not empty (it holds ${entries.slice(0, 3).join(', ')}` +
        `${entries.length > 3 ? ', …' : ''}); give a new or empty directory`,
      { details: { dataDir } },
    );
  }
}

async function readClusterId(store: ObjectStore): Promise<string> {
  const got = await store.get(CLUSTER_KEY);
  if (got === null || got.status !== 'ok') {
    throw new WalshipError(
      'RESTORE_NO_CLUSTER',
      'invalid',
      `${store.description} holds no cluster.json: there is nothing to restore (is --store the right root?)`,
    );
  }
  return parseClusterRecord(got.body).clusterId;
}

/** The store keys of the tables to restore, in key order. */
async function tablesToRestore(options: RestoreOptions): Promise<TableKey[]> {
  const { keys: inStore } = await discoverTableKeys(options.store);
  const named =
    options.tables ??
    (options.to.txn !== undefined && typeof options.to.txn !== 'bigint'
      ? Object.keys(options.to.txn)
      : undefined);
  if (named === undefined) return inStore;
  const present = new Set(inStore);
  const keys = [...new Set(named.map((name) => tableKey(name)))].sort();
  for (const key of keys) {
    if (!present.has(key)) {
      throw new WalshipError(
        'RESTORE_BEYOND_END',
        'data',
        `table ${JSON.stringify(decodeTableKey(key))} has no segments in ${options.store.description}`,
        { details: { table: key } },
      );
    }
  }
  return keys;
}

/** The target txn of table `key`, or undefined for a time target. */
function targetTxnOf(to: RestoreTarget, key: string): bigint | undefined {
  if (to.txn === undefined) return undefined;
  if (typeof to.txn === 'bigint') return to.txn;
  for (const [name, txn] of Object.entries(to.txn)) if (tableKey(name) === key) return txn;
  return undefined;
}

/**
 * The newest snapshot of `clusterId` that holds nothing past the target: for a txn target each
 * restored table's watermark at most its target txn; for a time, taken at or before it (its
 * `createdAt`, the snapshotting replica's clock: RFC-0006 "Time"). Null: replay from txn 1.
 */
async function pickSnapshot(
  options: RestoreOptions,
  clusterId: string,
  keys: TableKey[],
): Promise<SnapshotManifest | null> {
  const { manifests, unreadable } = await listSnapshots(options.store);
  for (const { key, error } of unreadable) options.log.warn({ key, err: error.message }, 'snapshot skipped');
  for (const manifest of manifests) {
    if (manifest.clusterId !== clusterId) continue;
    if (options.to.atMs !== undefined) {
      if (parseTimeMs(manifest.createdAt) <= options.to.atMs) return manifest;
      continue;
    }
    const fits = keys.every((key) => {
      const lastTxn = manifest.tables.find((t) => t.key === key)?.lastTxn ?? 0n;
      return lastTxn <= (targetTxnOf(options.to, key) ?? 0n);
    });
    if (fits) return manifest;
  }
  return null;
}

/** A snapshot holds every table: drop the ones not restored (with their columns and table facts). */
function dropTablesExcept(file: string, keep: Set<string>): void {
  const db = new Database(file);
  try {
    const rows = db.prepare('SELECT name, key FROM _walship_tables').all() as { name: string; key: string }[];
    db.transaction(() => {
      for (const { name, key } of rows) {
        if (keep.has(key)) continue;
        db.exec(`DROP TABLE "${name.replaceAll('"', '""')}"`);
        db.prepare('DELETE FROM _walship_columns WHERE "table" = ?').run(name);
        db.prepare('DELETE FROM _walship_tables WHERE key = ?').run(key);
        db.prepare('DELETE FROM _walship_kv WHERE key = ?').run(`${TABLE_EPOCH_META_PREFIX}${key}`);
      }
    })();
  } finally {
    db.close();
  }
}

function replaysOf(
  to: RestoreTarget,
  keys: TableKey[],
  tables: TableStore,
  snapshot: SnapshotManifest | null,
): Replay[] {
  return keys.map((key) => {
    const schema = tables.schemas().find((s) => s.key === key);
    const snapshotTxn = schema === undefined ? 0n : tables.lastTxn(schema.name);
    const epochText = tables.getMeta(`${TABLE_EPOCH_META_PREFIX}${key}`);
    const targetTxn = targetTxnOf(to, key);
    return {
      key,
      name: schema?.name ?? snapshot?.tables.find((t) => t.key === key)?.name ?? decodeTableKey(key),
      snapshotTxn,
      appliedTxn: snapshotTxn,
      epoch: epochText === undefined ? 0n : BigInt(epochText),
      targetTxn,
      txnsApplied: 0,
      segmentsApplied: 0,
      partialSegment: null,
      endOfChain: false,
      done: targetTxn !== undefined && snapshotTxn >= targetTxn,
    };
  });
}

// --- replay ---

async function replayAll(
  options: RestoreOptions,
  tables: TableStore,
  replays: Replay[],
): Promise<RestoredTable[]> {
  const toApply = options.to.atMs === undefined;
  const total = toApply
    ? Number(replays.reduce((sum, r) => sum + ((r.targetTxn ?? 0n) - r.appliedTxn), 0n))
    : null;
  const progress = { done: 0 };
  const report = () => options.onProgress?.({ phase: 'replay', done: progress.done, total, unit: 'txns' });
  report();
  for (const replay of replays) {
    await replayTable(options, tables, replay, (txns) => {
      progress.done += txns;
      report();
    });
  }
  return replays.map((r) => ({
    name: tables.schemas().find((s) => s.key === r.key)?.name ?? r.name,
    key: r.key,
    snapshotTxn: r.snapshotTxn,
    restoredTxn: r.appliedTxn,
    txnsApplied: r.txnsApplied,
    segmentsApplied: r.segmentsApplied,
    rows: 0,
    partialSegment: r.partialSegment,
    endOfChain: r.endOfChain,
  }));
}

/** LIST after the watermark and apply segment by segment until the target (or the chain's end). */
async function replayTable(
  options: RestoreOptions,
  tables: TableStore,
  r: Replay,
  onApplied: (txns: number) => void,
): Promise<void> {
  while (!r.done) {
    const listed = await segmentsAfter(options.store, r.key, r.appliedTxn, LIST_BATCH_KEYS);
    if (listed.length === 0) {
      r.endOfChain = true;
      if (r.targetTxn !== undefined && r.appliedTxn < r.targetTxn) throw beyondEnd(r, options.store);
      return;
    }
    for (const { key, txnFirst } of listed) {
      if (txnFirst > r.appliedTxn + 1n) {
        // One listing is not evidence of a gap: it can be torn or stale (issue 13). The next key is
        // read first; only when it is absent is the gap real.
        if (!(await bridgeGap(options, tables, r, onApplied))) throw missingSegment(r, txnFirst);
        if (r.done) return;
        break; // list again from the new watermark
      }
      if (txnFirst !== r.appliedTxn + 1n) throw missingSegment(r, txnFirst);
      const segment = await fetchVerified(options.store, r, key, txnFirst);
      if (segment === null) throw vanishedSegment(r, key);
      const applied = applySegment(tables, r, key, segment, options.to.atMs);
      onApplied(applied);
      if (r.done) return;
    }
  }
}

/** Applies the segment after the watermark that a listing skipped, when it is there; false when it is absent. */
async function bridgeGap(
  options: RestoreOptions,
  tables: TableStore,
  r: Replay,
  onApplied: (txns: number) => void,
): Promise<boolean> {
  const key = segmentKey(r.key, r.appliedTxn + 1n);
  const segment = await fetchVerified(options.store, r, key, r.appliedTxn + 1n);
  if (segment === null) return false;
  options.log.info({ table: r.name, key }, 'a listing skipped this segment, which is there; applying it');
  onApplied(applySegment(tables, r, key, segment, options.to.atMs));
  return true;
}

async function fetchVerified(
  store: ObjectStore,
  r: Replay,
  key: string,
  txnFirst: bigint,
): Promise<DecodedSegment | null> {
  for (let attempt = 1; ; attempt++) {
    const got = await store.get(key);
    if (got === null) return null;
    if (got.status !== 'ok')
      throw new WalshipError('STORE_INCONSISTENT', 'unavailable', `GET ${key} answered not-modified`);
    try {
      return await verifySegment(got.body, { objectKey: key, tableKey: r.key, txnFirst });
    } catch (error) {
      if (!isWalshipError(error) || error.kind !== 'data' || attempt >= FETCH_ATTEMPTS) throw error;
    }
  }
}

/**
 * Applies the records of `segment` up to the target in one SQLite transaction, with the uploaded
 * watermark and the table's epoch, as the follower applies a whole segment. Returns the txns applied.
 */
function applySegment(
  tables: TableStore,
  r: Replay,
  key: string,
  segment: DecodedSegment,
  atMs: number | undefined,
): number {
  const { header, txns } = segment;
  checkEpochOrder(key, header.epoch, r.epoch);
  const records = recordsUpToTarget(txns, r.targetTxn, atMs);
  if (records.length < txns.length) r.done = true;
  if (r.targetTxn !== undefined && header.txnLast >= r.targetTxn) r.done = true;
  if (records.length === 0) return 0;
  const lastTxn = records[records.length - 1]!.txn;
  tables.transaction(() => {
    for (const record of records) tables.applyTxn(header.tableName, record);
    tables.setUploadedTxn(header.tableName, lastTxn);
    if (header.epoch !== r.epoch)
      tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${r.key}`, header.epoch.toString());
    // A follower finishes this segment first (RFC-0006 "Starting on it").
    if (records.length < txns.length)
      tables.setMeta(`${TABLE_PARTIAL_META_PREFIX}${r.key}`, header.txnFirst.toString());
  });
  r.appliedTxn = lastTxn;
  r.epoch = header.epoch;
  r.txnsApplied += records.length;
  r.segmentsApplied++;
  if (records.length < txns.length) r.partialSegment = key;
  return records.length;
}

/** The leading records at or before the target: txn ≤ targetTxn, or commit time ≤ atMs (stopping at the first later one). */
function recordsUpToTarget(
  txns: readonly TxnRecord[],
  targetTxn: bigint | undefined,
  atMs: number | undefined,
): TxnRecord[] {
  const limitUs = atMs === undefined ? undefined : BigInt(Math.floor(atMs)) * 1000n;
  const taken: TxnRecord[] = [];
  for (const record of txns) {
    if (targetTxn !== undefined && record.txn > targetTxn) break;
    if (limitUs !== undefined && record.commitTimeUs > limitUs) break;
    taken.push(record);
  }
  return taken;
}

// --- finish ---

/** A new cluster: no identity of the old one, and no table epochs (the new cluster's start at 1). */
function clearClusterIdentity(file: string): void {
  const db = new Database(file);
  try {
    const del = db.prepare('DELETE FROM _walship_kv WHERE key = ?');
    db.transaction(() => {
      for (const key of NODE_META_KEYS) del.run(key);
      // A new cluster's store holds none of the old segments: nothing to finish either.
      for (const prefix of [TABLE_EPOCH_META_PREFIX, TABLE_PARTIAL_META_PREFIX])
        db.prepare('DELETE FROM _walship_kv WHERE substr(key, 1, ?) = ?').run(prefix.length, prefix);
    })();
  } finally {
    db.close();
  }
}

/**
 * Fills each table's row count from the finished database. A writable connection, the last one to
 * close, checkpoints and removes the `-wal` file: the data dir holds one file.
 */
function countRows(file: string, restored: RestoredTable[]): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    for (const table of restored) {
      const exists = db.prepare('SELECT 1 FROM _walship_tables WHERE key = ?').get(table.key) !== undefined;
      if (!exists) continue;
      const count = db
        .prepare(`SELECT count(*) FROM "${table.name.replaceAll('"', '""')}"`)
        .pluck()
        .get();
      table.rows = Number(count);
    }
  } finally {
    db.close();
  }
}

// --- errors ---

function missingSegment(r: Replay, foundTxn: bigint): WalshipError {
  const key = segmentKey(r.key, r.appliedTxn + 1n);
  const target = r.targetTxn === undefined ? 'the target time' : `the target txn ${r.targetTxn}`;
  return new WalshipError(
    'SEGMENT_MISSING',
    'data',
    `cannot restore table ${JSON.stringify(r.name)} past txn ${r.appliedTxn}: ${key} is missing ` +
      `(the store's next segment starts at txn ${foundTxn}), so ${target} cannot be reached; ` +
      'restore to an earlier point, or from a snapshot taken after the gap',
    { details: { key, table: r.key, appliedTxn: r.appliedTxn } },
  );
}

function vanishedSegment(r: Replay, key: string): WalshipError {
  return new WalshipError(
    'SEGMENT_MISSING',
    'data',
    `cannot restore table ${JSON.stringify(r.name)} past txn ${r.appliedTxn}: ${key} was listed but is gone ` +
      '(deleted during the restore: is retention running?); try again',
    { details: { key, table: r.key, appliedTxn: r.appliedTxn } },
  );
}

function beyondEnd(r: Replay, store: ObjectStore): WalshipError {
  return new WalshipError(
    'RESTORE_BEYOND_END',
    'data',
    `table ${JSON.stringify(r.name)} ends at txn ${r.appliedTxn} in ${store.description}, ` +
      `before the target txn ${r.targetTxn}; restore to txn ${r.appliedTxn} or earlier`,
    { details: { table: r.key, lastTxn: r.appliedTxn, targetTxn: r.targetTxn } },
  );
}
