import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, link, mkdtemp, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { assert, type Clock, InvalidArgumentError, isWalshipError, WalshipError } from '../core/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import {
  createSnapshotImage,
  restoreSnapshotImage,
  type SnapshotTable,
  type TableStore,
  tableKey,
} from '../table/index.js';
import {
  isSnapshotId,
  SNAPSHOTS_PREFIX,
  snapshotId,
  snapshotIdOfManifestKey,
  snapshotImageKey,
  snapshotManifestKey,
} from '../wal/index.js';

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
 * - `id`: the snapshot id, `<wall ms, 20 digits>-<node id>` (wal/store-layout.ts); equals the id in the key.
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
const CLUSTER_ID_CHARS_MAX = 256;
/**
 * The image is downloaded in ranges of this many bytes: each GET then fits the store's per-request
 * time limit (S3Store: 10 s by default) and memory stays bounded whatever the image size.
 */
const IMAGE_RANGE_BYTES = 8 * 1024 * 1024;
/** Downloads of an image whose size or checksum is wrong before it is declared corrupt (DESIGN §6). */
const IMAGE_FETCH_ATTEMPTS = 2;
/**
 * gzip level 1. On a 40 MB trades table (500 000 rows) level 1 compressed 2.47x in 0.38 s, level 6
 * 2.78x in 1.16 s: the image is made on a live node, so a third of the CPU is worth 12% more bytes.
 */
const GZIP_LEVEL = 1;

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

export interface PublishSnapshotOptions {
  store: ObjectStore;
  /** The node's table store; must not be inside a transaction. The copy blocks the caller while it runs. */
  tables: TableStore;
  clusterId: string;
  /** Becomes part of the snapshot id: only `[A-Za-z0-9._-]`. */
  nodeId: string;
  /** Its wall clock names the snapshot (ms) and dates it. */
  clock: Clock;
  /** Directory for the image while it is made: needs room for it twice (raw and compressed). */
  tmpDir: string;
  signal?: AbortSignal;
  /** Refuse compressed images above this many bytes (`SNAPSHOT_TOO_LARGE`). Default and most SNAPSHOT_IMAGE_BYTES_MAX. */
  imageBytesMax?: number;
}

/**
 * Takes a snapshot of `tables` and publishes it: image to a temp file, gzip, SHA-256, plain put of
 * the image, then the manifest create-only. Returns the manifest. Temp files are removed whatever
 * happens. Throws `SNAPSHOT_EXISTS` (conflict) when the snapshot id is taken (the same node id at
 * the same millisecond), `SNAPSHOT_TOO_LARGE` (invalid) above `imageBytesMax`, `INVALID_ARGUMENT`
 * for a bad node or cluster id, and store errors as they come. After a failure an image without a
 * manifest may remain: it is never used (and is garbage for retention to collect).
 */
export async function publishSnapshot(options: PublishSnapshotOptions): Promise<SnapshotManifest> {
  const { store, signal } = options;
  const imageBytesMax = options.imageBytesMax ?? SNAPSHOT_IMAGE_BYTES_MAX;
  if (!Number.isSafeInteger(imageBytesMax) || imageBytesMax < 1 || imageBytesMax > SNAPSHOT_IMAGE_BYTES_MAX) {
    throw new InvalidArgumentError(
      `imageBytesMax ${imageBytesMax} is outside 1..${SNAPSHOT_IMAGE_BYTES_MAX}`,
    );
  }
  checkClusterId(options.clusterId);
  const createdAtMs = Math.floor(options.clock.wallMs());
  const id = snapshotId(createdAtMs, options.nodeId);
  const manifestKey = snapshotManifestKey(id);
  const imageKey = snapshotImageKey(id, SNAPSHOT_CODEC);
  // Never overwrite another snapshot's image: check before the plain put (the manifest's
  // create-only put below still decides a race, see SNAPSHOT_EXISTS).
  if ((await store.head(manifestKey)) !== null || (await store.head(imageKey)) !== null) {
    throw snapshotExists(id);
  }
  const work = await mkdtemp(path.join(options.tmpDir, 'snapshot-'));
  try {
    const rawFile = path.join(work, 'db.sqlite');
    const image = createSnapshotImage(options.tables, rawFile);
    signal?.throwIfAborted();
    const gzipFile = path.join(work, `db.sqlite.${SNAPSHOT_CODEC}`);
    await compress(rawFile, gzipFile, imageBytesMax, id, signal);
    const body = await readWholeFile(gzipFile, imageBytesMax);
    const manifest: SnapshotManifest = {
      format: SNAPSHOT_MANIFEST_FORMAT,
      id,
      clusterId: options.clusterId,
      nodeId: options.nodeId,
      createdAt: new Date(createdAtMs).toISOString(),
      tables: image.tables,
      image: {
        key: imageKey,
        codec: SNAPSHOT_CODEC,
        bytes: body.byteLength,
        rawBytes: image.rawBytes,
        sha256: sha256Hex(body),
      },
    };
    signal?.throwIfAborted();
    await store.put(imageKey, body, { signal });
    const result = await store.put(manifestKey, encodeSnapshotManifest(manifest), {
      condition: { type: 'absent' },
      writeId: `snapshot.${id}`,
      signal,
    });
    if (result.status === 'precondition-failed') throw snapshotExists(id);
    return manifest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function snapshotExists(id: string): WalshipError {
  return new WalshipError(
    'SNAPSHOT_EXISTS',
    'conflict',
    `snapshot ${id} already exists: another snapshot was taken under the same node id in the same millisecond (do two nodes share a node id?)`,
    { details: { id } },
  );
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

export interface RestoreSnapshotOptions {
  store: ObjectStore;
  manifest: SnapshotManifest;
  /** The table store file to create; neither it nor its `-wal`, `-shm`, `-journal` may exist. */
  destFile: string;
  /** Work directory; must be on the same filesystem as `destFile` (the image is linked into place). */
  tmpDir: string;
  signal?: AbortSignal;
  /**
   * Download progress, called with the image bytes received so far and the image's size: once with
   * 0 before the first range and after each range, so the last call has `doneBytes === totalBytes`.
   * A second download (after a bad first one) starts again from 0.
   */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Bytes per ranged GET (default IMAGE_RANGE_BYTES, 8 MiB); between 1 and IMAGE_RANGE_BYTES. */
  rangeBytes?: number;
}

/**
 * Restores the snapshot `manifest` into the new file `destFile`: downloads the image in ranges,
 * checks its size and SHA-256 (a mismatch is fetched once more), gunzips it to a temp file, checks
 * the image against the manifest (restoreSnapshotImage), fsyncs it and links it into place, so
 * `destFile` appears whole or not at all. Throws `SNAPSHOT_CORRUPT` (kind data) when the manifest
 * is malformed, the image is missing, stays wrong after a second download, or fails a check;
 * `INVALID_ARGUMENT` when `destFile` (or a journal of it) exists or `tmpDir` is on another
 * filesystem; store errors as they come. Temp files are removed whatever happens.
 */
export async function restoreSnapshot(options: RestoreSnapshotOptions): Promise<void> {
  const { store, destFile, signal } = options;
  const manifest = recheckManifest(options.manifest);
  const rangeBytes = rangeBytesOf(options.rangeBytes);
  await refuseExistingTarget(destFile);
  const work = await mkdtemp(path.join(options.tmpDir, 'snapshot-restore-'));
  try {
    const gzipFile = path.join(work, `db.sqlite.${SNAPSHOT_CODEC}`);
    await fetchVerifiedImage(store, manifest, gzipFile, {
      signal,
      onProgress: options.onProgress,
      rangeBytes,
    });
    const rawFile = path.join(work, 'db.sqlite');
    await decompress(gzipFile, rawFile, manifest, signal);
    try {
      restoreSnapshotImage(rawFile, manifest.tables);
    } catch (error) {
      if (!isWalshipError(error, 'SNAPSHOT_CORRUPT')) throw error;
      throw corruptSnapshot(manifest, error.message, error);
    }
    await fsyncPath(rawFile);
    // Re-check after the awaits: someone may have created the target meanwhile.
    await refuseExistingTarget(destFile);
    await linkNew(rawFile, destFile);
    await fsyncPath(path.dirname(destFile));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// --- restore steps ---

type FetchProblem = { problem: string; retry: boolean };

interface FetchOptions {
  signal: AbortSignal | undefined;
  onProgress: ((doneBytes: number, totalBytes: number) => void) | undefined;
  rangeBytes: number;
}

function rangeBytesOf(rangeBytes: number | undefined): number {
  if (rangeBytes === undefined) return IMAGE_RANGE_BYTES;
  if (!Number.isSafeInteger(rangeBytes) || rangeBytes < 1 || rangeBytes > IMAGE_RANGE_BYTES) {
    throw new InvalidArgumentError(`rangeBytes must be a whole number from 1 to ${IMAGE_RANGE_BYTES}`);
  }
  return rangeBytes;
}

async function fetchVerifiedImage(
  store: ObjectStore,
  manifest: SnapshotManifest,
  file: string,
  options: FetchOptions,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await fetchImage(store, manifest, file, options);
    if (outcome === undefined) return;
    if (!outcome.retry || attempt >= IMAGE_FETCH_ATTEMPTS) {
      const tries = attempt === 1 ? '' : ` (after ${attempt} downloads)`;
      throw corruptSnapshot(manifest, `${outcome.problem}${tries}`);
    }
  }
}

/** Downloads the image into `file` range by range; returns what was wrong with it, or undefined. */
async function fetchImage(
  store: ObjectStore,
  manifest: SnapshotManifest,
  file: string,
  { signal, onProgress, rangeBytes }: FetchOptions,
): Promise<FetchProblem | undefined> {
  const { key, bytes, sha256 } = manifest.image;
  const hash = createHash('sha256');
  const out = await open(file, 'w');
  try {
    let etag: string | undefined;
    onProgress?.(0, bytes);
    for (let offset = 0; offset < bytes; ) {
      const range = { offset, length: Math.min(rangeBytes, bytes - offset) };
      const result = await store.get(key, signal === undefined ? { range } : { range, signal });
      if (result === null) {
        return { problem: `its image ${key} is missing`, retry: offset > 0 };
      }
      assert(result.status === 'ok', 'a get without ifNoneMatch answered not-modified');
      const { info, body } = result;
      if (info.sizeBytes !== bytes) {
        return { problem: `its image has ${info.sizeBytes} bytes, the manifest says ${bytes}`, retry: true };
      }
      if (etag !== undefined && info.etag !== etag) {
        return { problem: 'its image changed during the download', retry: true };
      }
      etag = info.etag;
      if (body.byteLength !== range.length) {
        return {
          problem: `a read of ${range.length} bytes at ${offset} gave ${body.byteLength}`,
          retry: true,
        };
      }
      hash.update(body);
      await writeAll(out, body);
      offset += range.length;
      onProgress?.(offset, bytes);
    }
  } finally {
    await out.close();
  }
  const actual = hash.digest('hex');
  if (actual !== sha256) {
    return { problem: `its image has SHA-256 ${actual}, the manifest says ${sha256}`, retry: true };
  }
  return undefined;
}

/** Gunzips `from` into the new file `to`, which must come out exactly `rawBytes` long. */
async function decompress(
  from: string,
  to: string,
  manifest: SnapshotManifest,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { rawBytes } = manifest.image;
  const tooLong = () => corruptSnapshot(manifest, `its image unpacks to more than ${rawBytes} bytes`);
  try {
    await pipeline(
      createReadStream(from),
      createGunzip(),
      byteLimit(rawBytes, tooLong),
      createWriteStream(to, { flags: 'wx' }),
      signal === undefined ? {} : { signal },
    );
  } catch (error) {
    if (isZlibError(error))
      throw corruptSnapshot(manifest, `its image does not unpack: ${error.message}`, error);
    throw error;
  }
  const { size } = await stat(to);
  if (size !== rawBytes)
    throw corruptSnapshot(manifest, `its image unpacks to ${size} bytes, not ${rawBytes}`);
}

async function refuseExistingTarget(destFile: string): Promise<void> {
  for (const file of [destFile, `${destFile}-wal`, `${destFile}-shm`, `${destFile}-journal`]) {
    if (await exists(file)) {
      throw new InvalidArgumentError(
        `cannot restore a snapshot into ${JSON.stringify(destFile)}: ${JSON.stringify(file)} exists (restore only into an empty data dir)`,
      );
    }
  }
}

/** Creates `to` as a link to `from`: atomic, and never replaces an existing file (unlike rename). */
async function linkNew(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') await refuseExistingTarget(to);
    if (code === 'EXDEV') {
      throw new InvalidArgumentError(
        `cannot restore a snapshot into ${JSON.stringify(to)}: the work directory is on another filesystem (give a tmpDir beside it)`,
        { cause: error },
      );
    }
    throw error;
  }
}

// --- publish steps ---

/** Gzips `from` into the new file `to`, refusing output above `bytesMax`. */
async function compress(
  from: string,
  to: string,
  bytesMax: number,
  id: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const tooLarge = () =>
    new WalshipError(
      'SNAPSHOT_TOO_LARGE',
      'invalid',
      `snapshot ${id}: the compressed image passes ${bytesMax} bytes, the most one upload may carry`,
      { details: { id, bytesMax } },
    );
  await pipeline(
    createReadStream(from),
    createGzip({ level: GZIP_LEVEL }),
    byteLimit(bytesMax, tooLarge),
    createWriteStream(to, { flags: 'wx' }),
    signal === undefined ? {} : { signal },
  );
}

/** The whole of `file` in one buffer (fs.readFile stops at 2 GiB; this reads in a loop). */
async function readWholeFile(file: string, bytesMax: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    assert(size <= bytesMax, `compressed image of ${size} bytes passed the limit of ${bytesMax}`);
    const buffer = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(buffer, filled, size - filled, filled);
      assert(bytesRead > 0, `the compressed image shrank while read (${filled} of ${size} bytes)`);
      filled += bytesRead;
    }
    return buffer;
  } finally {
    await handle.close();
  }
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
function recheckManifest(manifest: SnapshotManifest): SnapshotManifest {
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
  if (typeof clusterId !== 'string' || clusterId === '' || clusterId.length > CLUSTER_ID_CHARS_MAX) {
    throw bad('its clusterId is not a non-empty string');
  }
  if (typeof nodeId !== 'string' || `${id.slice(0, 21)}${nodeId}` !== id) {
    throw bad(`its nodeId ${JSON.stringify(nodeId)} is not the node of id ${id}`);
  }
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) {
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
    if (typeof name !== 'string' || typeof key !== 'string' || !isTableKeyOf(name, key)) {
      throw bad(
        `tables[${index}] has name ${JSON.stringify(name)} and key ${JSON.stringify(key)}, which do not go together`,
      );
    }
    if (typeof lastTxn !== 'string' || !/^(0|[1-9]\d{0,18})$/.test(lastTxn) || BigInt(lastTxn) > INT64_MAX) {
      throw bad(
        `tables[${index}] (${name}) has lastTxn ${JSON.stringify(lastTxn)}, not an int64 as a string`,
      );
    }
    if (keys.has(key)) throw bad(`table ${JSON.stringify(name)} is listed twice`);
    keys.add(key);
    return { name, key, lastTxn: BigInt(lastTxn) };
  });
}

function isTableKeyOf(name: string, key: string): boolean {
  try {
    return tableKey(name) === key;
  } catch {
    return false;
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

function corruptManifest(key: string, problem: string): WalshipError {
  return new WalshipError(
    'SNAPSHOT_CORRUPT',
    'data',
    `the snapshot manifest ${key} is unusable: ${problem}; skip this snapshot`,
    { details: { key } },
  );
}

function corruptSnapshot(manifest: SnapshotManifest, problem: string, cause?: unknown): WalshipError {
  return new WalshipError(
    'SNAPSHOT_CORRUPT',
    'data',
    `snapshot ${manifest.id} cannot be restored: ${problem}; restore another snapshot`,
    { cause, details: { id: manifest.id, imageKey: manifest.image.key } },
  );
}

function checkClusterId(clusterId: string): void {
  if (clusterId === '' || clusterId.length > CLUSTER_ID_CHARS_MAX) {
    throw new InvalidArgumentError(`cluster id must be 1..${CLUSTER_ID_CHARS_MAX} characters`);
  }
}

// --- small helpers ---

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;
}

function isZlibError(error: unknown): error is Error {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A pass-through that fails with `makeError()` once more than `bytesMax` bytes went by. */
function byteLimit(bytesMax: number, makeError: () => Error): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.byteLength;
      if (seen > bytesMax) callback(makeError());
      else callback(null, chunk);
    },
  });
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) {
    const result = await handle.write(bytes, written, bytes.byteLength - written);
    written += result.bytesWritten;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** fsync of a file or a directory (a directory's, to make a new entry in it durable). */
async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
