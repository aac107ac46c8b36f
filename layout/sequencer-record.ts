/**
 * `sequencer.json` (RFC-0003 "Objects in the store", "Coexistence with single-primary mode"):
 * written create-only, once, when a cluster becomes sequenced (`walship sequencer adopt` or
 * `init`), after the sequencer was initialised. Writers refuse to run without it; replicas read
 * it to know where each table's `wal/` chain ends and its `txnlog/` begins.
 *
 * Record (UTF-8 JSON, one line and a newline; unknown fields are ignored):
 * - `version`: 1, the layout of this record; other values are refused.
 * - `clusterId`: the cluster the sequencer was initialised for (`cluster.json`).
 * - `epoch`: the cluster epoch of the adoption's fence (`epochs/`), a decimal string.
 * - `startAfter`: `{ <table key>: "<txn>" }`, sorted by key: the table's `wal/` chain ends at that
 *   txn (its fence) and the sequencer numbers from the next one; tables absent start at txn 1 in
 *   `txnlog/`. Decimal strings: int64 does not fit a JSON number.
 * - `at`: when it was written (ISO 8601 from `Date#toISOString`, the writer's wall clock; informational).
 * - `crc32`: CRC-32 (wal `checksum`) of the JSON array `[version, clusterId, epoch, [[key, txn], …]
 *   sorted by key, at]`, so a torn or corrupted read is refused instead of adopted.
 */
import { InvalidArgumentError, isoTime, parseTimeMs, WalshipError } from '../core/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { decodeTableKey } from '../table/index.js';
import { checksum } from '../wal/index.js';
import { SEQUENCER_RECORD_KEY } from './keys.js';

export const SEQUENCER_RECORD_VERSION = 1;

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/** Tables in `startAfter`: as many as `tables.json` may register (layout/tables-registry.ts). */
export const SEQUENCER_RECORD_TABLES_MAX = 100_000;
/** The largest record read: 100 000 tables × ≤ 410 bytes (a 381-character key and a txn) and a margin. */
export const SEQUENCER_RECORD_BYTES_MAX = 48 * 1024 * 1024;
/** The longest cluster id accepted, in characters (as node registrations). */
const CLUSTER_ID_CHARS_MAX = 256;
const I64_MAX = (1n << 63n) - 1n;
const DECIMAL = /^(0|[1-9]\d{0,18})$/;

export interface SequencerRecord {
  version: typeof SEQUENCER_RECORD_VERSION;
  clusterId: string;
  /** The cluster epoch of the adoption fence, ≥ 1. */
  epoch: bigint;
  /** Table key → the last txn of its `wal/` chain (0..2^63−1); the sequencer numbers from the next. */
  startAfter: Map<string, bigint>;
  /** ISO 8601 as `Date#toISOString` writes it. */
  at: string;
}

/** The bytes of `sequencer.json`. Throws INVALID_ARGUMENT for a record decode would refuse. */
export function encodeSequencerRecord(record: SequencerRecord): Uint8Array {
  const problem = recordProblem(record);
  if (problem !== undefined) throw new InvalidArgumentError(`${SEQUENCER_RECORD_KEY} ${problem}`);
  const startAfter = Object.fromEntries(
    sortedTables(record.startAfter).map(([t, txn]) => [t, txn.toString()]),
  );
  const json = JSON.stringify({
    version: record.version,
    clusterId: record.clusterId,
    epoch: record.epoch.toString(),
    startAfter,
    at: record.at,
    crc32: crcOf(record),
  });
  const bytes = new TextEncoder().encode(`${json}\n`);
  if (bytes.length > SEQUENCER_RECORD_BYTES_MAX)
    throw new InvalidArgumentError(`${SEQUENCER_RECORD_KEY} would be ${bytes.length} bytes`);
  return bytes;
}

/**
 * The record in `bytes`; SEQUENCER_RECORD_CORRUPT (kind data) when it is too large, not UTF-8
 * JSON, lacks or mistypes a field, holds a key that is no table key or a txn out of range, or
 * fails its checksum.
 */
export function decodeSequencerRecord(bytes: Uint8Array): SequencerRecord {
  const bad = (problem: string) =>
    new WalshipError('SEQUENCER_RECORD_CORRUPT', 'data', `${SEQUENCER_RECORD_KEY} ${problem}`, {
      details: { key: SEQUENCER_RECORD_KEY },
    });
  if (!(bytes instanceof Uint8Array))
    throw new InvalidArgumentError(`${SEQUENCER_RECORD_KEY} bytes must be a Uint8Array`);
  if (bytes.length > SEQUENCER_RECORD_BYTES_MAX)
    throw bad(`is larger than ${SEQUENCER_RECORD_BYTES_MAX} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad('is not UTF-8 JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== SEQUENCER_RECORD_VERSION) throw bad(`has version ${JSON.stringify(v.version)}, not 1`);
  if (typeof v.clusterId !== 'string') throw bad('lacks a clusterId');
  if (typeof v.epoch !== 'string' || !DECIMAL.test(v.epoch)) throw bad('lacks a decimal epoch');
  if (typeof v.at !== 'string') throw bad('lacks its time');
  const startAfter = startAfterOf(v.startAfter);
  if (startAfter === undefined) throw bad('has a bad startAfter map');
  const record: SequencerRecord = {
    version: SEQUENCER_RECORD_VERSION,
    clusterId: v.clusterId,
    epoch: BigInt(v.epoch),
    startAfter,
    at: v.at,
  };
  const problem = recordProblem(record);
  if (problem !== undefined) throw bad(problem);
  if (v.crc32 !== crcOf(record)) throw bad('fails its checksum');
  return record;
}

/** The map of a parsed `startAfter`, or undefined when it is not `{ string: decimal string }`. */
function startAfterOf(value: unknown): Map<string, bigint> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const entries = Object.entries(value);
  if (entries.length > SEQUENCER_RECORD_TABLES_MAX) return undefined;
  const map = new Map<string, bigint>();
  for (const [table, txn] of entries) {
    if (typeof txn !== 'string' || !DECIMAL.test(txn)) return undefined;
    map.set(table, BigInt(txn));
  }
  return map;
}

/** What makes `record` one no adoption writes, or undefined. */
function recordProblem(record: SequencerRecord): string | undefined {
  if (record.version !== SEQUENCER_RECORD_VERSION) return `has version ${String(record.version)}, not 1`;
  const id = record.clusterId;
  if (typeof id !== 'string' || id === '' || id.length > CLUSTER_ID_CHARS_MAX)
    return `has a clusterId that is not 1..${CLUSTER_ID_CHARS_MAX} characters`;
  if (typeof record.epoch !== 'bigint' || record.epoch < 1n || record.epoch > I64_MAX)
    return `has epoch ${String(record.epoch)} outside 1..2^63-1`;
  if (!(record.startAfter instanceof Map) || record.startAfter.size > SEQUENCER_RECORD_TABLES_MAX)
    return `has a startAfter that is not a map of at most ${SEQUENCER_RECORD_TABLES_MAX} tables`;
  for (const [table, txn] of record.startAfter) {
    try {
      decodeTableKey(table);
    } catch {
      return `starts ${JSON.stringify(table)}, which is no table key`;
    }
    if (typeof txn !== 'bigint' || txn < 0n || txn > I64_MAX)
      return `starts table ${table} after txn ${String(txn)}, outside 0..2^63-1`;
  }
  if (typeof record.at !== 'string' || !isIsoTime(record.at))
    return `has time ${JSON.stringify(record.at)}, not ISO 8601`;
  return undefined;
}

function isIsoTime(at: string): boolean {
  const ms = parseTimeMs(at);
  return Number.isFinite(ms) && isoTime(ms) === at;
}

function sortedTables(startAfter: Map<string, bigint>): [string, bigint][] {
  return [...startAfter].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function crcOf(record: SequencerRecord): number {
  const tables = sortedTables(record.startAfter).map(([t, txn]) => [t, txn.toString()]);
  const canonical = JSON.stringify([
    record.version,
    record.clusterId,
    record.epoch.toString(),
    tables,
    record.at,
  ]);
  return checksum(new TextEncoder().encode(canonical));
}

/** The store's `sequencer.json`, or null when this cluster has no sequencer. */
export async function readSequencerRecord(store: ObjectStore): Promise<SequencerRecord | null> {
  const object = await store.get(SEQUENCER_RECORD_KEY);
  if (object === null || object.status !== 'ok') return null;
  return decodeSequencerRecord(object.body);
}
