import type { ObjectStore } from '../objectstore/index.js';
import { isTableKey, type TableKey } from '../table/index.js';
import { segmentKey, segmentPrefix, TABLES_PREFIX, txnFirstOfSegmentKey } from './keys.js';

/** Tables a discovery pass walks at most: each costs one LIST (a bound on a hostile or huge root). */
export const DISCOVERED_TABLES_MAX = 100_000;

/**
 * The store keys of every table with at least one object under `tables/`, in key order, found by a
 * skip scan: LIST one key, then LIST after `tables/<key>0` — `0` sorts right after `/`, so that
 * skips every object of `<key>` and nothing else (a key never holds `/`). Costs one LIST per table
 * plus one; works on every store without delimiter support. Keys that `tableKey` could not have
 * produced are skipped (and returned in `ignored`): they are not ours to apply.
 */
export async function discoverTableKeys(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<{ keys: TableKey[]; ignored: string[] }> {
  const keys: TableKey[] = [];
  const ignored: string[] = [];
  let startAfter: string | undefined;
  while (keys.length + ignored.length < DISCOVERED_TABLES_MAX) {
    const page = await store.list(TABLES_PREFIX, {
      limit: 1,
      ...(startAfter === undefined ? {} : { startAfter }),
      ...(signal === undefined ? {} : { signal }),
    });
    const first = page.objects[0];
    if (first === undefined) break;
    const key = first.key.slice(TABLES_PREFIX.length).split('/')[0]!;
    if (isTableKey(key)) keys.push(key);
    else ignored.push(key);
    startAfter = `${TABLES_PREFIX}${key}0`;
  }
  return { keys, ignored };
}

/** The segment keys of table `key` after txn `appliedTxn`, in txn order: at most `limit` (one LIST). */
export async function segmentsAfter(
  store: ObjectStore,
  key: TableKey,
  appliedTxn: bigint,
  limit: number,
  signal?: AbortSignal,
): Promise<{ key: string; txnFirst: bigint }[]> {
  const page = await store.list(segmentPrefix(key), {
    startAfter: segmentKey(key, appliedTxn),
    limit,
    ...(signal === undefined ? {} : { signal }),
  });
  const found: { key: string; txnFirst: bigint }[] = [];
  for (const object of page.objects) {
    const txnFirst = txnFirstOfSegmentKey(object.key);
    // Only `<20 digits>.seg` keys are segments; anything else under wal/ is ignored.
    if (txnFirst !== undefined && object.key === segmentKey(key, txnFirst))
      found.push({ key: object.key, txnFirst });
  }
  return found;
}
