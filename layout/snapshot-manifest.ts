import { assert, isWalshipError, parseTimeMs, WalshipError } from '../core/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { type SnapshotTable, type TableKey, tableKey } from '../table/index.js';
import {
  isSnapshotId,
  SNAPSHOTS_PREFIX,
  snapshotIdOfManifestKey,
  snapshotImageKey,
  snapshotManifestKey,
} from './keys.js';

/**
 * Snapshots in the object store (DESIGN §3, §8): publishing a node's table store as a compressed
 * image beside a manifest, listing them, and restoring one into an empty data dir. An empty
 * replica restores the newest snapshot of its cluster and then replays the segments after the
 * manifest's watermarks (not done here).
 *
 * Layout: `snapshots/<id>/db.sqlite.gzip` (the image: a scrubbed SQLite file, table/snapshot-image.ts,
 * gzipped) and `snapshots/<id>/manifest.json`. The image is written first with a plain put (it may
 * be large, and S3Store sends large unconditional puts as multipart); the manifest LAST and
 * create-only, so a snapshot is visible only once its image is complete, and an image without a
 * manifest (a publisher that died half way) is never used.
 *
 * Manifest (`manifest.json`, UTF-8 JSON; unknown fields are ignored):
 * - `format`: 1, the layout of this manifest; other values are refused.
 * - `id`: the snapshot id, `<wall ms, 20 digits>-<node id>` (layout/keys.ts); equals the id in the key.
 * - `clusterId`: the cluster the data belongs to (`cluster.json`); restore only your own cluster's.
 * - `nodeId`: the node that took the snapshot; equals the id's suffix.
 * - `createdAt`: when the image was taken, ISO 8601 from the publisher's wall clock (informational).
 * - `tables`: `[{ name, key, lastTxn }]` ordered by key: canonical table name, its store key
 *   (`tableKey(name)`), and the last txn the image holds as a decimal string (int64 does not fit a
 *   JSON number). Replay starts at `lastTxn + 1`.
 * - `image`: `{ key, codec, bytes, rawBytes, sha256 }`: the image's key (must equal
 *   `snapshotImageKey(id, codec)`; any other key is refused, so a manifest cannot point a reader
 *   elsewhere), `codec` ('gzip'), the compressed size in bytes, the SQLite file's size in bytes, and
 *   the lowercase hex SHA-256 of the compressed object as stored.
 */

/** The manifest layout this code writes and reads. */
export const SNAPSHOT_MANIFEST_FORMAT = 1;
/** The image codec: gzip, which node:zlib has everywhere. */
export const SNAPSHOT_CODEC = 'gzip';

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/**
 * The largest compressed image published or restored, in bytes (2 GiB). `ObjectStore.put` takes one
 * Uint8Array, so the whole compressed image sits in memory once while it is uploaded; 2 GiB keeps
 * that within what a node can spare and below Node's Buffer limit. Larger stores need a streaming
 * put in the ObjectStore seam first.
 */
export const SNAPSHOT_IMAGE_BYTES_MAX = 2 * 1024 ** 3;
/** The most manifests `listSnapshots` and `newestSnapshot` read (newest first) per call. */
export const SNAPSHOT_LIST_MAX = 1000;
/** The largest manifest read, in bytes: ~100 bytes a table, so ~40 000 tables. */
const MANIFEST_BYTES_MAX = 4 * 1024 * 1024;
/** Longest cluster id accepted, in characters. */
export const SNAPSHOT_CLUSTER_ID_CHARS_MAX = 256;

export interface SnapshotManifest {
  format: typeof SNAPSHOT_MANIFEST_FORMAT;
  id: string;
  clusterId: string;
  nodeId: string;
  createdAt: string;
  tables: SnapshotTable[];
  image: SnapshotImageRef;
}

export interface SnapshotImageRef {
  key: string;
  codec: typeof SNAPSHOT_CODEC;
  bytes: number;
  rawBytes: number;
  sha256: string;
}

/** The manifests under `snapshots/`, newest first, and the manifests that could not be read. */
export interface SnapshotListing {
  manifests: SnapshotManifest[];
  unreadable: UnreadableSnapshot[];
}

/** A manifest that is malformed (`error.code` SNAPSHOT_CORRUPT): skipped, never used. */
export interface UnreadableSnapshot {
  key: string;
  error: WalshipError;
}

/**
 * Reads the manifests of the newest `limit` snapshots (default and most SNAPSHOT_LIST_MAX), newest
 * first. A malformed manifest is reported in `unreadable` rather than thrown; one deleted between
 * the listing and its read is left out. Store errors are thrown.
 */
export async function listSnapshots(
  store: ObjectStore,
  options: { limit?: number; signal?: AbortSignal } = {},
): Promise<SnapshotListing> {
  const limit = Math.min(options.limit ?? SNAPSHOT_LIST_MAX, SNAPSHOT_LIST_MAX);
  const listing: SnapshotListing = { manifests: [], unreadable: [] };
  const keys = await manifestKeysNewestFirst(store, options.signal);
  for (const key of keys.slice(0, limit)) {
    try {
      const manifest = await readSnapshotManifest(store, key, options.signal);
      if (manifest !== null) listing.manifests.push(manifest);
    } catch (error) {
      if (!isWalshipError(error, 'SNAPSHOT_CORRUPT')) throw error;
      listing.unreadable.push({ key, error });
    }
  }
  return listing;
}

/**
 * The newest readable snapshot of cluster `clusterId`, or null when there is none among the newest
 * SNAPSHOT_LIST_MAX. Malformed manifests are skipped and passed to `onUnreadable`.
 */
export async function newestSnapshot(
  store: ObjectStore,
  clusterId: string,
  options: { signal?: AbortSignal; onUnreadable?: (snapshot: UnreadableSnapshot) => void } = {},
): Promise<SnapshotManifest | null> {
  const keys = await manifestKeysNewestFirst(store, options.signal);
  for (const key of keys.slice(0, SNAPSHOT_LIST_MAX)) {
    try {
      const manifest = await readSnapshotManifest(store, key, options.signal);
      if (manifest?.clusterId === clusterId) return manifest;
    } catch (error) {
      if (!isWalshipError(error, 'SNAPSHOT_CORRUPT')) throw error;
      options.onUnreadable?.({ key, error });
    }
  }
  return null;
}

/** Manifest keys, newest first: ids start with the 20-digit wall ms, so key order is time order. */
async function manifestKeysNewestFirst(store: ObjectStore, signal?: AbortSignal): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of listAll(store, SNAPSHOTS_PREFIX, signal === undefined ? {} : { signal })) {
    if (snapshotIdOfManifestKey(object.key) !== undefined) keys.push(object.key);
  }
  return keys.reverse();
}

/**
 * The manifest stored under `key`, parsed and checked; null when there is none. Throws
 * `SNAPSHOT_CORRUPT` (kind data) naming the key when it is malformed or larger than 4 MiB.
 */
export async function readSnapshotManifest(
  store: ObjectStore,
  key: string,
  signal?: AbortSignal,
): Promise<SnapshotManifest | null> {
  const range = { offset: 0, length: MANIFEST_BYTES_MAX + 1 };
  const result = await store.get(key, signal === undefined ? { range } : { range, signal });
  if (result === null) return null;
  assert(result.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  if (result.body.byteLength > MANIFEST_BYTES_MAX) {
    throw corruptManifest(key, `it is larger than ${MANIFEST_BYTES_MAX} bytes`);
  }
  return parseSnapshotManifest(key, result.body);
}

// --- manifests ---

/** The manifest as stored: UTF-8 JSON, txn numbers as decimal strings. */
export function encodeSnapshotManifest(manifest: SnapshotManifest): Uint8Array {
  const json = {
    ...manifest,
    tables: manifest.tables.map((t) => ({ name: t.name, key: t.key, lastTxn: t.lastTxn.toString() })),
  };
  return new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`);
}

/**
 * Parses and checks the manifest stored under `key`. Throws `SNAPSHOT_CORRUPT` (kind data) naming
 * `key` and the first problem found: not JSON, another format, a bad or mismatched id, bad tables
 * (names whose key is not `tableKey(name)`, duplicates, txns that are not int64), or an image entry
 * that points anywhere but `snapshotImageKey(id, codec)`.
 */
export function parseSnapshotManifest(key: string, bytes: Uint8Array): SnapshotManifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw corruptManifest(key, `it is not UTF-8 JSON (${(error as Error).message})`);
  }
  return checkManifest(key, value);
}

/** A caller's manifest, checked like a stored one before its image key is trusted. */
export function recheckManifest(manifest: SnapshotManifest): SnapshotManifest {
  const id = (manifest as { id?: unknown }).id;
  const key =
    typeof id === 'string' && isSnapshotId(id) ? snapshotManifestKey(id) : '(manifest given to restore)';
  let bytes: Uint8Array;
  try {
    bytes = encodeSnapshotManifest(manifest);
  } catch (error) {
    throw corruptManifest(key, `it cannot be encoded (${(error as Error).message})`);
  }
  return parseSnapshotManifest(key, bytes);
}

function checkManifest(key: string, value: unknown): SnapshotManifest {
  const bad = (problem: string) => corruptManifest(key, problem);
  if (!isRecord(value)) throw bad('it is not a JSON object');
  if (value.format !== SNAPSHOT_MANIFEST_FORMAT) {
    throw bad(`its format ${JSON.stringify(value.format)} is not ${SNAPSHOT_MANIFEST_FORMAT}`);
  }
  const id = value.id;
  if (typeof id !== 'string' || !isSnapshotId(id)) {
    throw bad(`its id ${JSON.stringify(id)} is not a snapshot id`);
  }
  if (snapshotManifestKey(id) !== key) throw bad(`its id ${id} does not match its key`);
  const { clusterId, nodeId, createdAt } = value;
  if (typeof clusterId !== 'string' || clusterId === '' || clusterId.length > SNAPSHOT_CLUSTER_ID_CHARS_MAX) {
    throw bad('its clusterId is not a non-empty string');
  }
  if (typeof nodeId !== 'string' || `${id.slice(0, 21)}${nodeId}` !== id) {
    throw bad(`its nodeId ${JSON.stringify(nodeId)} is not the node of id ${id}`);
  }
  if (typeof createdAt !== 'string' || Number.isNaN(parseTimeMs(createdAt))) {
    throw bad(`its createdAt ${JSON.stringify(createdAt)} is not a date`);
  }
  return {
    format: SNAPSHOT_MANIFEST_FORMAT,
    id,
    clusterId,
    nodeId,
    createdAt,
    tables: checkTables(value.tables, bad),
    image: checkImage(id, value.image, bad),
  };
}

const INT64_MAX = 2n ** 63n - 1n;

function checkTables(value: unknown, bad: (problem: string) => WalshipError): SnapshotTable[] {
  if (!Array.isArray(value)) throw bad('its tables are not an array');
  const keys = new Set<string>();
  return value.map((entry: unknown, index) => {
    if (!isRecord(entry)) throw bad(`tables[${index}] is not an object`);
    const { name, key, lastTxn } = entry;
    const ownKey = typeof name === 'string' && typeof key === 'string' ? tableKeyOf(name, key) : undefined;
    if (typeof name !== 'string' || ownKey === undefined) {
      throw bad(
        `tables[${index}] has name ${JSON.stringify(name)} and key ${JSON.stringify(key)}, which do not go together`,
      );
    }
    if (typeof lastTxn !== 'string' || !/^(0|[1-9]\d{0,18})$/.test(lastTxn) || BigInt(lastTxn) > INT64_MAX) {
      throw bad(
        `tables[${index}] (${name}) has lastTxn ${JSON.stringify(lastTxn)}, not an int64 as a string`,
      );
    }
    if (keys.has(ownKey)) throw bad(`table ${JSON.stringify(name)} is listed twice`);
    keys.add(ownKey);
    return { name, key: ownKey, lastTxn: BigInt(lastTxn) };
  });
}

/** `tableKey(name)` when it is `key`, else undefined (also for a name tableKey refuses). */
function tableKeyOf(name: string, key: string): TableKey | undefined {
  try {
    const own = tableKey(name);
    return own === key ? own : undefined;
  } catch {
    return undefined;
  }
}

function checkImage(id: string, value: unknown, bad: (problem: string) => WalshipError): SnapshotImageRef {
  if (!isRecord(value)) throw bad('its image is not an object');
  const { key, codec, bytes, rawBytes, sha256 } = value;
  if (codec !== SNAPSHOT_CODEC)
    throw bad(`its image codec ${JSON.stringify(codec)} is not '${SNAPSHOT_CODEC}'`);
  const expectedKey = snapshotImageKey(id, codec);
  if (key !== expectedKey) {
    throw bad(`its image key ${JSON.stringify(key)} is not ${JSON.stringify(expectedKey)}`);
  }
  if (!isCount(bytes) || bytes > SNAPSHOT_IMAGE_BYTES_MAX) {
    throw bad(`its image size ${JSON.stringify(bytes)} is not in 1..${SNAPSHOT_IMAGE_BYTES_MAX} bytes`);
  }
  if (!isCount(rawBytes))
    throw bad(`its image raw size ${JSON.stringify(rawBytes)} is not a positive integer`);
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw bad(`its image sha256 ${JSON.stringify(sha256)} is not 64 lowercase hex digits`);
  }
  return { key: expectedKey, codec, bytes, rawBytes, sha256 };
}

export function corruptManifest(key: string, problem: string): WalshipError {
  return new WalshipError(
    'SNAPSHOT_CORRUPT',
    'data',
    `the snapshot manifest ${key} is unusable: ${problem}; skip this snapshot`,
    { details: { key } },
  );
}

// --- small helpers ---

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}
