import { WalshipError } from '../core/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { checksum } from '../wal/index.js';
import { CLUSTER_KEY } from './keys.js';

/**
 * `cluster.json` (DESIGN §3), written once, create-only, by the first primary of a root. Like every
 * object walship reads, it carries its own checksum (`crc32`, over the other fields in a fixed
 * order), so a torn or corrupted read is refused and read again instead of a wrong cluster id
 * being adopted for good.
 */
export interface ClusterRecord {
  clusterId: string;
  formatVersion: 1;
  createdAt: string;
  createdBy: string;
}

/** The longest cluster.json read, in bytes (a record is ~200). */
const CLUSTER_RECORD_BYTES_MAX = 64 * 1024;

export function encodeClusterRecord(record: ClusterRecord): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify({ ...record, crc32: crcOf(record) })}\n`);
}

/**
 * The record in `bytes`; STORE_CORRUPT (kind unavailable: read it again) when it is not JSON, lacks
 * a field, or its checksum does not match.
 */
export function parseClusterRecord(bytes: Uint8Array): ClusterRecord {
  if (bytes.length > CLUSTER_RECORD_BYTES_MAX) throw corrupt(`is ${bytes.length} bytes`);
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    throw corrupt('is not JSON');
  }
  const { clusterId, formatVersion, createdAt, createdBy, crc32 } = value ?? {};
  if (
    typeof clusterId !== 'string' ||
    clusterId === '' ||
    formatVersion !== 1 ||
    typeof createdAt !== 'string' ||
    typeof createdBy !== 'string'
  ) {
    throw corrupt('lacks a field');
  }
  const record: ClusterRecord = { clusterId, formatVersion, createdAt, createdBy };
  if (crc32 !== crcOf(record)) throw corrupt('fails its checksum');
  return record;
}

function crcOf(record: ClusterRecord): number {
  const text = [record.clusterId, record.formatVersion, record.createdAt, record.createdBy].join('\n');
  return checksum(new TextEncoder().encode(text));
}

function corrupt(problem: string): WalshipError {
  return new WalshipError('STORE_CORRUPT', 'unavailable', `cluster.json ${problem}; it is read again`);
}

/** cluster.json, or null when absent; checksum-verified (a corrupt read is retried once). */
export async function readCluster(store: ObjectStore): Promise<ClusterRecord | null> {
  for (let attempt = 1; ; attempt++) {
    const result = await store.get(CLUSTER_KEY);
    if (result === null || result.status !== 'ok') return null;
    try {
      return parseClusterRecord(result.body);
    } catch (error) {
      if (attempt >= 2) throw error;
    }
  }
}
