import { crc32 } from 'node:zlib';
import { assert, WalshipError } from '../core/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { NODES_PREFIX, nodeIdOfRegistrationKey } from './keys.js';

/**
 * Node registrations: every node keeps `nodes/<nodeId>.json` in the store up to date — who it is,
 * where it listens, its role and epoch, and how far each of its tables goes — so that tools
 * (`walship status --store`), and later WAL garbage collection and the read router, can find every
 * node of a cluster from the store alone. A registration is advisory: nothing in replication or
 * fencing reads it, and a stale one only means a node stopped (or cannot reach the store).
 *
 * Record (`nodes/<nodeId>.json`, UTF-8 JSON, one line; unknown fields are ignored):
 * - `version`: 1, the layout of this record; other values are refused.
 * - `nodeId`: equals the id in the key.
 * - `url`: how others reach the node (`node.url`, or its HTTP listener).
 * - `role`: `primary` or `replica` (the role it had when it wrote the record).
 * - `epoch`: a primary's epoch as a decimal string; null for a replica.
 * - `clusterId`: the cluster the node's data belongs to; null before it has seen one.
 * - `tables`: `{ <table name>: "<txn>" }`: a primary's committed txn, a replica's applied txn, per
 *   table (decimal strings: int64 does not fit a JSON number); at most REGISTRATION_TABLES_MAX.
 * - `tableCount`: how many tables the node holds (more than `tables` lists when it was cut).
 * - `startedAt`, `at`: when the process started and when the record was written (ISO 8601, the
 *   node's wall clock; informational).
 * - `crc32`: CRC-32 (IEEE, as wal/checksum.ts) of the JSON array `[version, nodeId, url, role, epoch, clusterId,
 *   [[name, txn], …] sorted by name, tableCount, startedAt, at]`, so a torn or corrupted read is
 *   refused instead of shown.
 *
 * Writes are plain overwrites of the node's own key (no condition: only that node writes it): at
 * start, after every role change, and every `intervalMs`. A failed write is logged and tried again
 * at the next interval; it never blocks or fails the node.
 */

export const NODE_REGISTRATION_VERSION = 1;

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/** Tables listed in one record: ~60 bytes each, so a record stays well under REGISTRATION_BYTES_MAX. */
export const REGISTRATION_TABLES_MAX = 10_000;
/** The largest registration read, in bytes. */
const REGISTRATION_BYTES_MAX = 1024 * 1024;
/** Registrations `listNodeRegistrations` reads per call: a cluster has a handful of nodes. */
export const NODE_REGISTRATIONS_MAX = 1000;
/** GETs in flight while listing registrations. */
const READS_IN_FLIGHT_MAX = 8;
/** The longest `url` accepted, in characters. */
const URL_CHARS_MAX = 2048;
/** The longest cluster id accepted, in characters. */
const CLUSTER_ID_CHARS_MAX = 256;
const TXN = /^\d{1,20}$/;

export type RegisteredRole = 'primary' | 'replica';

export interface NodeRegistrationRecord {
  version: typeof NODE_REGISTRATION_VERSION;
  nodeId: string;
  url: string;
  role: RegisteredRole;
  epoch: string | null;
  clusterId: string | null;
  tables: Record<string, string>;
  tableCount: number;
  startedAt: string;
  at: string;
}

/** What a node says about itself at one moment; the registration adds version and times. */
export type NodeFacts = Pick<NodeRegistrationRecord, 'nodeId' | 'url' | 'role' | 'epoch' | 'clusterId'> & {
  /** Every table and its txn (committed on a primary, applied on a replica). */
  tables: Record<string, string>;
};

export function encodeNodeRegistration(record: NodeRegistrationRecord): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify({ ...record, crc32: crcOf(record) })}\n`);
}

/**
 * The record in `bytes`, read from `key`; NODE_REGISTRATION_CORRUPT (kind data) when it is not
 * JSON, too large, lacks or mistypes a field, names another node than its key, or fails its checksum.
 */
export function parseNodeRegistration(key: string, bytes: Uint8Array): NodeRegistrationRecord {
  const bad = (problem: string) =>
    new WalshipError('NODE_REGISTRATION_CORRUPT', 'data', `node registration ${key} ${problem}`);
  if (bytes.byteLength > REGISTRATION_BYTES_MAX) throw bad(`is larger than ${REGISTRATION_BYTES_MAX} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw bad('is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== NODE_REGISTRATION_VERSION) throw bad(`has version ${JSON.stringify(v.version)}, not 1`);
  const keyNodeId = nodeIdOfRegistrationKey(key);
  if (keyNodeId === undefined || v.nodeId !== keyNodeId) throw bad('names another node than its key');
  if (typeof v.url !== 'string' || v.url === '' || v.url.length > URL_CHARS_MAX) throw bad('lacks a url');
  if (v.role !== 'primary' && v.role !== 'replica') throw bad('has no role of primary or replica');
  if (v.epoch !== null && !(typeof v.epoch === 'string' && TXN.test(v.epoch))) throw bad('has a bad epoch');
  if (
    v.clusterId !== null &&
    !(typeof v.clusterId === 'string' && v.clusterId !== '' && v.clusterId.length <= CLUSTER_ID_CHARS_MAX)
  ) {
    throw bad('has a bad clusterId');
  }
  const tables = checkTables(v.tables);
  if (tables === undefined) throw bad('has a bad tables map');
  if (!Number.isSafeInteger(v.tableCount) || (v.tableCount as number) < Object.keys(tables).length) {
    throw bad('has a bad tableCount');
  }
  if (typeof v.startedAt !== 'string' || typeof v.at !== 'string') throw bad('lacks its times');
  const record: NodeRegistrationRecord = {
    version: NODE_REGISTRATION_VERSION,
    nodeId: keyNodeId,
    url: v.url,
    role: v.role,
    epoch: v.epoch,
    clusterId: v.clusterId,
    tables,
    tableCount: v.tableCount as number,
    startedAt: v.startedAt,
    at: v.at,
  };
  if (v.crc32 !== crcOf(record)) throw bad('fails its checksum');
  return record;
}

function checkTables(value: unknown): Record<string, string> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const entries = Object.entries(value);
  if (entries.length > REGISTRATION_TABLES_MAX) return undefined;
  const tables: Record<string, string> = {};
  for (const [name, txn] of entries) {
    if (name === '' || typeof txn !== 'string' || !TXN.test(txn)) return undefined;
    tables[name] = txn;
  }
  return tables;
}

function crcOf(record: NodeRegistrationRecord): number {
  const tables = Object.entries(record.tables).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify([
    record.version,
    record.nodeId,
    record.url,
    record.role,
    record.epoch,
    record.clusterId,
    tables,
    record.tableCount,
    record.startedAt,
    record.at,
  ]);
  return crc32(new TextEncoder().encode(canonical)) >>> 0;
}

// --- listing ---

export interface ListedNodeRegistration {
  key: string;
  record: NodeRegistrationRecord;
  /** When the store last saw the object written (the store's clock, wall ms). */
  modifiedAtMs: number;
}

export interface UnreadableNodeRegistration {
  key: string;
  problem: string;
}

export interface NodeRegistrationListing {
  /** Readable registrations, in key order (node id order). */
  nodes: ListedNodeRegistration[];
  /** Objects under `nodes/` that are not a readable registration: reported, never thrown. */
  unreadable: UnreadableNodeRegistration[];
  /** True when more than NODE_REGISTRATIONS_MAX objects exist (the rest were not read). */
  truncated: boolean;
}

/**
 * Every registration under `nodes/`: one LIST (paged), then a GET per key, READS_IN_FLIGHT_MAX at
 * a time, at most NODE_REGISTRATIONS_MAX. A record that does not parse, or a key that is not
 * `nodes/<node id>.json`, is listed in `unreadable`; one deleted between the LIST and its GET is
 * skipped. Store errors are thrown (the store is unreachable).
 */
export async function listNodeRegistrations(
  store: ObjectStore,
  options: { signal?: AbortSignal } = {},
): Promise<NodeRegistrationListing> {
  const keys: string[] = [];
  let truncated = false;
  for await (const info of listAll(store, NODES_PREFIX, options)) {
    if (keys.length >= NODE_REGISTRATIONS_MAX) {
      truncated = true;
      break;
    }
    keys.push(info.key);
  }
  const nodes: ListedNodeRegistration[] = [];
  const unreadable: UnreadableNodeRegistration[] = [];
  for (let start = 0; start < keys.length; start += READS_IN_FLIGHT_MAX) {
    const batch = keys.slice(start, start + READS_IN_FLIGHT_MAX);
    const read = await Promise.all(batch.map((key) => readRegistration(store, key, options.signal)));
    for (const entry of read) {
      if (entry === null) continue;
      if ('problem' in entry) unreadable.push(entry);
      else nodes.push(entry);
    }
  }
  return { nodes, unreadable, truncated };
}

async function readRegistration(
  store: ObjectStore,
  key: string,
  signal: AbortSignal | undefined,
): Promise<ListedNodeRegistration | UnreadableNodeRegistration | null> {
  if (nodeIdOfRegistrationKey(key) === undefined) {
    return { key, problem: 'is not nodes/<node id>.json' };
  }
  const result = await store.get(key, signal === undefined ? {} : { signal });
  if (result === null) return null;
  assert(result.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  try {
    return { key, record: parseNodeRegistration(key, result.body), modifiedAtMs: result.info.modifiedAtMs };
  } catch (error) {
    return { key, problem: (error as Error).message };
  }
}
