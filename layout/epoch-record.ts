import { WalshipError } from '../core/index.js';
import { listAll, type ObjectStore } from '../objectstore/index.js';
import { EPOCHS_PREFIX, epochKey, epochOfKey } from './keys.js';

/** `epochs/<epoch>.json`, written create-only by whoever takes that epoch (DESIGN §7). */
export interface EpochRecord {
  epoch: bigint;
  nodeId: string;
  url: string;
  reason: string;
  at: string;
  /** A random id of the claiming data dir (absent in records written before it existed). */
  claimId?: string;
}

/** The epoch record with the highest number, or null on a root without any. */
export async function newestEpoch(store: ObjectStore): Promise<EpochRecord | null> {
  let newest: bigint | undefined;
  for await (const info of listAll(store, EPOCHS_PREFIX)) {
    const epoch = epochOfKey(info.key);
    if (epoch !== undefined && (newest === undefined || epoch > newest)) newest = epoch;
  }
  return newest === undefined ? null : readEpoch(store, newest);
}

/**
 * `epochs/<epoch>.json`, or null when absent. Throws CORRUPT_EPOCH_RECORD (kind `data`) naming
 * the key when the object is not an epoch record: who holds the primary role is never guessed.
 */
export async function readEpoch(store: ObjectStore, epoch: bigint): Promise<EpochRecord | null> {
  const key = epochKey(epoch);
  const result = await store.get(key);
  if (result === null || result.status !== 'ok') return null;
  return parseEpochRecord(result.body, { key, epoch, where: store.description });
}

/** Bytes of an epoch record parsed at most (a real one is ~200 bytes). */
const EPOCH_RECORD_MAX_BYTES = 64 * 1024;

/**
 * The epoch record codec's decoder, the inverse of encodeEpoch: JSON with `epoch` (decimal text,
 * equal to the key's), `nodeId`, `url`, `reason`, `at` and an optional `claimId`, all strings.
 * Anything else — not JSON, another shape, another epoch — is CORRUPT_EPOCH_RECORD (kind `data`),
 * naming `key`; the message quotes no field value (a record is not trusted text).
 */
export function parseEpochRecord(
  body: Uint8Array,
  source: { key: string; epoch: bigint; where: string },
): EpochRecord {
  const corrupt = (why: string, cause?: unknown) =>
    new WalshipError(
      'CORRUPT_EPOCH_RECORD',
      'data',
      `${source.key} in ${source.where} is not an epoch record (${why}); epoch records decide who may be ` +
        'the primary, so walship will not guess: inspect that object (it should be JSON with epoch, nodeId, ' +
        'url, reason and at) and restore it from where it came from',
      { cause, details: { key: source.key } },
    );
  if (body.byteLength > EPOCH_RECORD_MAX_BYTES) throw corrupt(`more than ${EPOCH_RECORD_MAX_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (error) {
    throw corrupt('not valid JSON', error);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw corrupt('not a JSON object');
  const record = raw as Record<string, unknown>;
  for (const field of ['epoch', 'nodeId', 'url', 'reason', 'at'] as const) {
    if (typeof record[field] !== 'string') throw corrupt(`${field} is missing or not a string`);
  }
  if (record.claimId !== undefined && typeof record.claimId !== 'string')
    throw corrupt('claimId is not a string');
  if (!/^\d{1,20}$/.test(record.epoch as string)) throw corrupt('epoch is not a whole number');
  if (BigInt(record.epoch as string) !== source.epoch)
    throw corrupt(`epoch differs from the key's ${source.epoch}`);
  // Fields beyond the checked ones are kept, as before: a newer writer may add some.
  return { ...record, epoch: source.epoch } as EpochRecord;
}

export function encodeEpoch(record: EpochRecord): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify({ ...record, epoch: record.epoch.toString() })}\n`);
}
