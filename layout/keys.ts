import { InvalidArgumentError } from '../core/index.js';
import { isTableKey, type TableKey } from '../table/index.js';

/**
 * Where things live in the object store (DESIGN §3), relative to the cluster root. Numbers are
 * zero-padded to 20 digits so that lexical order is numeric order (2^64 has 20 digits).
 * `tableKey` is the table layer's store-safe encoding of a table name (`table/names.ts`).
 */
export const CLUSTER_KEY = 'cluster.json';
export const HEAD_KEY = 'head.json';
/** `tables.json`: every table key ever registered and the newest epoch that registered (RFC-0002 W2, P3). */
export const TABLES_REGISTRY_KEY = 'tables.json';
/** `lease.json`: the primary's liveness for automatic failover, renewed by CAS (RFC-0002 W4). */
export const LEASE_KEY = 'lease.json';
export const EPOCHS_PREFIX = 'epochs/';
export const TABLES_PREFIX = 'tables/';
/** `nodes/`: one registration per node, rewritten by the node itself (node/node-registry.ts). */
export const NODES_PREFIX = 'nodes/';
const NUMBER_DIGITS = 20;

/** A non-negative integer as 20 zero-padded digits. */
export function padNumber(value: bigint): string {
  if (value < 0n || value >= 10n ** BigInt(NUMBER_DIGITS)) {
    throw new InvalidArgumentError(`${value} does not fit ${NUMBER_DIGITS} digits`);
  }
  return value.toString().padStart(NUMBER_DIGITS, '0');
}

/** `epochs/<epoch>.json`: create-only record of who holds an epoch. */
export function epochKey(epoch: bigint): string {
  return `${EPOCHS_PREFIX}${padNumber(epoch)}.json`;
}

/** The epoch of an `epochs/…` key, or undefined for a key that is not an epoch record. */
export function epochOfKey(key: string): bigint | undefined {
  const match = /^epochs\/(\d{20})\.json$/.exec(key);
  return match === null ? undefined : BigInt(match[1]!);
}

/** A node id as table/node-identity.ts accepts it: a short, plain token. */
const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * `nodes/<nodeId>.json`: the node's own registration (who it is, where it listens, what it holds).
 * Throws `INVALID_ARGUMENT` for a node id outside `[A-Za-z0-9._-]{1,64}` (the key then has no `/`,
 * and `nodes/..json` is a valid key: its segment is `..json`).
 */
export function nodeRegistrationKey(nodeId: string): string {
  if (!NODE_ID.test(nodeId)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(nodeId)} is not a node id (1 to 64 characters of A-Z a-z 0-9 . _ -)`,
    );
  }
  return `${NODES_PREFIX}${nodeId}.json`;
}

/** The node id of a `nodes/<nodeId>.json` key, or undefined for any other key (or a malformed id). */
export function nodeIdOfRegistrationKey(key: string): string | undefined {
  const match = /^nodes\/([^/]+)\.json$/.exec(key);
  return match === null || !NODE_ID.test(match[1]!) ? undefined : match[1];
}

/** `tables/<t>/wal/`: every segment of one table, in txn order. */
export function segmentPrefix(tableKey: TableKey): string {
  return `${TABLES_PREFIX}${tableKey}/wal/`;
}

/** `tables/<t>/wal/<firstTxn>.seg`: the create-only segment starting at `txnFirst`. */
export function segmentKey(tableKey: TableKey, txnFirst: bigint): string {
  return `${segmentPrefix(tableKey)}${padNumber(txnFirst)}.seg`;
}

/** The first txn of a segment key, or undefined for any other key. */
export function txnFirstOfSegmentKey(key: string): bigint | undefined {
  const match = /\/wal\/(\d{20})\.seg$/.exec(key);
  return match === null ? undefined : BigInt(match[1]!);
}

/**
 * `snapshots/`: one folder per snapshot (DESIGN §3, §8), `snapshots/<id>/manifest.json` beside its
 * image `snapshots/<id>/db.sqlite.<codec>`. A snapshot id is `<wall ms, 20 digits>-<node id>`, so
 * lexical order of ids (and of their keys) is time order, and two nodes never mint the same id.
 */
export const SNAPSHOTS_PREFIX = 'snapshots/';
/** The longest snapshot id: 20 digits, a dash and a node id; short enough to sit in a write id. */
export const SNAPSHOT_ID_CHARS_MAX = 100;
const SNAPSHOT_ID = /^\d{20}-[A-Za-z0-9._-]+$/;
const SNAPSHOT_CODEC = /^[a-z0-9]{1,16}$/;

/** True when `id` is a well-formed snapshot id: `<20 digits>-<[A-Za-z0-9._-]+>`, no `..`, bounded. */
export function isSnapshotId(id: string): boolean {
  return id.length <= SNAPSHOT_ID_CHARS_MAX && SNAPSHOT_ID.test(id) && !id.includes('..');
}

/**
 * The id of a snapshot taken at `wallMs` by `nodeId`. Throws `INVALID_ARGUMENT` when the node id
 * holds characters outside `[A-Za-z0-9._-]` (or `..`), or the id would pass SNAPSHOT_ID_CHARS_MAX.
 */
export function snapshotId(wallMs: number, nodeId: string): string {
  if (!Number.isSafeInteger(wallMs) || wallMs < 0) {
    throw new InvalidArgumentError(`snapshot time ${wallMs} is not a non-negative integer of ms`);
  }
  const id = `${padNumber(BigInt(wallMs))}-${nodeId}`;
  checkSnapshotId(id);
  return id;
}

/** `snapshots/<id>/manifest.json`: written create-only, after the image. */
export function snapshotManifestKey(id: string): string {
  checkSnapshotId(id);
  return `${SNAPSHOTS_PREFIX}${id}/manifest.json`;
}

/** `snapshots/<id>/db.sqlite.<codec>`: the compressed image of a node's table store. */
export function snapshotImageKey(id: string, codec: string): string {
  checkSnapshotId(id);
  if (!SNAPSHOT_CODEC.test(codec)) {
    throw new InvalidArgumentError(`snapshot codec ${JSON.stringify(codec)} is not [a-z0-9]{1,16}`);
  }
  return `${SNAPSHOTS_PREFIX}${id}/db.sqlite.${codec}`;
}

/** The snapshot id of a manifest key, or undefined for any other key (images included). */
export function snapshotIdOfManifestKey(key: string): string | undefined {
  const match = /^snapshots\/([^/]+)\/manifest\.json$/.exec(key);
  if (match === null || !isSnapshotId(match[1]!)) return undefined;
  return match[1];
}

function checkSnapshotId(id: string): void {
  if (!isSnapshotId(id)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(id)} is not a snapshot id (<20 digits>-<node id of [A-Za-z0-9._-]>, no '..', at most ${SNAPSHOT_ID_CHARS_MAX} characters)`,
    );
  }
}

// --- The sequencer's objects (RFC-0003 "Objects in the store") ---

/** `sequencer.json`: written create-only, once, when a cluster becomes sequenced (layout/sequencer-record.ts). */
export const SEQUENCER_RECORD_KEY = 'sequencer.json';

/** A writer id is a node id (as table/node-identity.ts accepts it): one plain key segment. */
function checkWriter(writer: string): void {
  // `.` and `..` match the pattern but are no key segment the object stores accept (objectstore/keys.ts).
  if (typeof writer !== 'string' || !NODE_ID.test(writer) || writer === '.' || writer === '..') {
    throw new InvalidArgumentError(
      `${JSON.stringify(writer)} is not a writer id (1 to 64 characters of A-Z a-z 0-9 . _ -, not . or ..)`,
    );
  }
}

/** Writer epochs and batch numbers start at 1 (sequencer/commit-request.ts); 0 names nothing. */
function checkPositive(what: string, value: bigint): void {
  if (typeof value !== 'bigint' || value < 1n) {
    throw new InvalidArgumentError(`${what} ${String(value)} must be a bigint ≥ 1`);
  }
}

/**
 * `tables/<t>/staged/`, or with `writer` (and `writerEpoch`) the folder of that writer (epoch):
 * what orphan GC lists (RFC-0003 "GC of staged segments"). Throws INVALID_ARGUMENT for a bad
 * writer id or an epoch below 1.
 */
export function stagedPrefix(tableKey: TableKey, writer?: string, writerEpoch?: bigint): string {
  const prefix = `${TABLES_PREFIX}${tableKey}/staged/`;
  if (writer === undefined) {
    if (writerEpoch !== undefined)
      throw new InvalidArgumentError('a staged prefix with an epoch needs a writer');
    return prefix;
  }
  checkWriter(writer);
  if (writerEpoch === undefined) return `${prefix}${writer}/`;
  checkPositive('writer epoch', writerEpoch);
  return `${prefix}${writer}/${padNumber(writerEpoch)}/`;
}

/**
 * `tables/<t>/staged/<writer>/<writerEpoch>/<batchSeq>.seg`: a writer's un-numbered segment of one
 * batch (RFC-0003). A batch holds at most one segment per table, so the four parts name exactly one
 * object. Throws INVALID_ARGUMENT for a bad writer id, an epoch or batchSeq below 1.
 */
export function stagedKey(tableKey: TableKey, writer: string, writerEpoch: bigint, batchSeq: bigint): string {
  checkPositive('batchSeq', batchSeq);
  return `${stagedPrefix(tableKey, writer, writerEpoch)}${padNumber(batchSeq)}.seg`;
}

export interface StagedKeyParts {
  tableKey: TableKey;
  writer: string;
  writerEpoch: bigint;
  batchSeq: bigint;
}

/**
 * The parts of a staged key, or undefined for any key stagedKey cannot produce (one whose table
 * segment is not a key `tableKey` can produce included).
 */
export function parseStagedKey(key: string): StagedKeyParts | undefined {
  const match = /^tables\/([^/]+)\/staged\/([^/]+)\/(\d{20})\/(\d{20})\.seg$/.exec(key);
  if (match === null) return undefined;
  const [, tableKey, writer, epoch, batch] = match as unknown as [string, string, string, string, string];
  const writerEpoch = BigInt(epoch);
  const batchSeq = BigInt(batch);
  if (!NODE_ID.test(writer) || writer === '.' || writer === '..' || writerEpoch < 1n || batchSeq < 1n) {
    return undefined;
  }
  if (!isTableKey(tableKey)) return undefined;
  return { tableKey, writer, writerEpoch, batchSeq };
}

/** `tables/<t>/txnlog/`: the table's exported log entries, in txn order. */
export function txnLogPrefix(tableKey: TableKey): string {
  return `${TABLES_PREFIX}${tableKey}/txnlog/`;
}

/** `tables/<t>/txnlog/<txnFirst>.json`: the create-only export of the log entry starting at `txnFirst`. */
export function txnLogKey(tableKey: TableKey, txnFirst: bigint): string {
  return `${txnLogPrefix(tableKey)}${padNumber(txnFirst)}.json`;
}

/**
 * The table key and first txn of a txn-log key, or undefined for any other key (one whose table
 * segment is not a key `tableKey` can produce included).
 */
export function parseTxnLogKey(key: string): { tableKey: TableKey; txnFirst: bigint } | undefined {
  const match = /^tables\/([^/]+)\/txnlog\/(\d{20})\.json$/.exec(key);
  if (match === null || !isTableKey(match[1]!)) return undefined;
  return { tableKey: match[1], txnFirst: BigInt(match[2]!) };
}

/** The first txn of a txn-log key, or undefined for any other key. */
export function txnFirstOfTxnLogKey(key: string): bigint | undefined {
  return parseTxnLogKey(key)?.txnFirst;
}
