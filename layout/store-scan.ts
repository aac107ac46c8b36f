import { compareKeys, type ObjectStore } from '../objectstore/index.js';
import { isTableKey, type TableKey } from '../table/index.js';
import { segmentKey, segmentPrefix, TABLES_PREFIX, txnFirstOfSegmentKey } from './keys.js';

/**
 * Entries of `tables/` (common prefixes, or keys) a discovery pass reads at most: a bound on a
 * hostile or huge root, 100 full pages of a listing with a delimiter.
 */
export const DISCOVERED_TABLES_MAX = 100_000;

/**
 * The store keys of every table with at least one object under `tables/`, in listing order (by the
 * UTF-8 bytes of `<key>/`), from a listing of `tables/` one level deep: each table is one common
 * prefix `tables/<key>/`, so T tables cost max(1, ⌈T/1000⌉) LISTs, however many objects each holds
 * (on a filesystem store, reads of the one directory `tables/`). Names that `tableKey` could not
 * have produced, and objects directly under `tables/` (no table's folder), are skipped and
 * returned in `ignored`: they are not ours to apply.
 */
export async function discoverTableKeys(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<{ keys: TableKey[]; ignored: string[] }> {
  const keys: TableKey[] = [];
  const ignored: string[] = [];
  const seen = new Set<string>();
  let token: string | undefined;
  let entries = 0;
  do {
    const page = await store.list(TABLES_PREFIX, {
      delimiter: '/',
      ...(token === undefined ? {} : { token }),
      ...(signal === undefined ? {} : { signal }),
    });
    const names = [...(page.prefixes ?? []), ...page.objects.map((o) => o.key)].sort(compareKeys);
    for (const name of names) {
      if (entries++ === DISCOVERED_TABLES_MAX) return { keys, ignored };
      // `tables/<key>/`; an object the store did not roll up, `tables/<key>/…` (counted once); or
      // an object `tables/<name>`, which is no table's folder.
      const rest = name.slice(TABLES_PREFIX.length);
      const slash = rest.indexOf('/');
      const folder = slash < 0 ? rest : rest.slice(0, slash + 1);
      if (seen.has(folder)) continue;
      seen.add(folder);
      const key = slash < 0 ? rest : rest.slice(0, slash);
      if (slash >= 0 && isTableKey(key)) keys.push(key);
      else ignored.push(key);
    }
    token = page.nextToken;
  } while (token !== undefined);
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
  return (await segmentPageAfter(store, key, appliedTxn, limit, signal)).segments;
}

/**
 * segmentsAfter with whether the page was the last (`complete`: the store gave no next token), so
 * it names every segment after `appliedTxn` the store held when the LIST was sent.
 */
export async function segmentPageAfter(
  store: ObjectStore,
  key: TableKey,
  appliedTxn: bigint,
  limit: number,
  signal?: AbortSignal,
): Promise<{ segments: { key: string; txnFirst: bigint }[]; complete: boolean }> {
  const page = await store.list(segmentPrefix(key), {
    startAfter: segmentKey(key, appliedTxn),
    limit,
    ...(signal === undefined ? {} : { signal }),
  });
  const segments: { key: string; txnFirst: bigint }[] = [];
  for (const object of page.objects) {
    const txnFirst = txnFirstOfSegmentKey(object.key);
    // Only `<20 digits>.seg` keys are segments; anything else under wal/ is ignored.
    if (txnFirst !== undefined && object.key === segmentKey(key, txnFirst))
      segments.push({ key: object.key, txnFirst });
  }
  return { segments, complete: page.nextToken === undefined };
}
