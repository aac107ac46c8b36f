import { WalshipError } from '../core/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { asTableKey, type TableKey } from '../table/index.js';
import { TABLES_REGISTRY_KEY } from './keys.js';

/**
 * `tables.json` (RFC-0002 W2, P3): every table key ever registered, and the newest epoch that
 * registered or closed registration. One object, written by compare-and-swap, orders table
 * creation against promotion: a primary registers a table before its first segment, and a
 * promoter raises `epoch` before fencing, so after a promotion no older primary can start a table
 * the promoter does not know about.
 */
export interface TableRegistry {
  epoch: bigint;
  /** As stored, unchecked (the audit reports bad ones one by one); closeRegistration checks them. */
  tables: string[];
}

/** CAS rounds before giving up: each lost round means another writer changed the object meanwhile. */
const CAS_ATTEMPTS_MAX = 32;
/** Table keys one registry holds at most (~300 bytes each at the longest: a few MB). */
const REGISTRY_TABLES_MAX = 100_000;

/** The registry and its ETag, or null when none was ever written. */
export async function readRegistry(
  store: ObjectStore,
): Promise<{ registry: TableRegistry; etag: string } | null> {
  const got = await store.get(TABLES_REGISTRY_KEY);
  if (got === null) return null;
  if (got.status !== 'ok') throw inconsistent('answered not-modified to a plain GET');
  return { registry: parseRegistry(got.body), etag: got.info.etag };
}

/**
 * tables.json if it changed since `etag` (a conditional GET: an unchanged registry costs a 304 and
 * no body), 'unchanged' otherwise, null when there is none.
 */
export async function readRegistryIfChanged(
  store: ObjectStore,
  etag: string | undefined,
): Promise<{ registry: TableRegistry; etag: string } | 'unchanged' | null> {
  const got = await store.get(TABLES_REGISTRY_KEY, etag === undefined ? {} : { ifNoneMatch: etag });
  if (got === null) return null;
  if (got.status === 'not-modified') return 'unchanged';
  return { registry: parseRegistry(got.body), etag: got.info.etag };
}

/**
 * Registers table `key` for a primary of `epoch`. Resolves 'registered' (now or already), or
 * 'fenced' when the registry carries a newer epoch: this primary was replaced (RFC-0002 W2).
 */
export function registerTable(
  store: ObjectStore,
  key: TableKey,
  epoch: bigint,
): Promise<'registered' | 'fenced'> {
  return registerTables(store, [key], epoch);
}

/**
 * Registers every key of `keys` in one CAS write (registerTable for many: a request that creates a
 * thousand tables costs one rewrite of tables.json, not a thousand, each as long as the registry).
 */
export async function registerTables(
  store: ObjectStore,
  keys: readonly TableKey[],
  epoch: bigint,
): Promise<'registered' | 'fenced'> {
  for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
    const current = await readRegistry(store);
    if (current !== null && current.registry.epoch > epoch) return 'fenced';
    const known = new Set(current?.registry.tables);
    const missing = [...new Set(keys)].filter((key) => !known.has(key));
    if (missing.length === 0) return 'registered';
    const tables = [...(current?.registry.tables ?? []), ...missing];
    if (tables.length > REGISTRY_TABLES_MAX) {
      throw new WalshipError(
        'TOO_MANY_TABLES',
        'invalid',
        `the cluster already has ${known.size} tables; ${missing.length} more would pass ${REGISTRY_TABLES_MAX}`,
      );
    }
    if (await write(store, { epoch, tables }, current?.etag)) return 'registered';
  }
  throw contended();
}

/**
 * Raises the registry's epoch to `epoch` (RFC-0002 P3) and returns every registered table key.
 * Throws FENCED when the registry already carries a newer epoch: a later promotion overtook this one,
 * and INVALID_TABLE_KEY (kind invalid), before writing, when it lists a key tableKey cannot produce:
 * the promoter would place fences under it.
 */
export async function closeRegistration(store: ObjectStore, epoch: bigint): Promise<TableKey[]> {
  for (let attempt = 0; attempt < CAS_ATTEMPTS_MAX; attempt++) {
    const current = await readRegistry(store);
    if (current !== null && current.registry.epoch > epoch) {
      throw new WalshipError(
        'FENCED',
        'fenced',
        `tables.json already belongs to epoch ${current.registry.epoch}: a newer promotion overtook epoch ${epoch}`,
      );
    }
    const tables = current?.registry.tables ?? [];
    const keys = tables.map(asTableKey);
    if (current !== null && current.registry.epoch === epoch) return keys;
    if (await write(store, { epoch, tables }, current?.etag)) return keys;
  }
  throw contended();
}

/** One CAS round: create-only when there was no registry, else If-Match; false when the round was lost. */
async function write(
  store: ObjectStore,
  registry: TableRegistry,
  etag: string | undefined,
): Promise<boolean> {
  const body = new TextEncoder().encode(
    `${JSON.stringify({ epoch: registry.epoch.toString(), tables: registry.tables })}\n`,
  );
  const result = await store.put(TABLES_REGISTRY_KEY, body, {
    condition: etag === undefined ? { type: 'absent' } : { type: 'match', etag },
  });
  return result.status === 'written';
}

/** tables.json's decoder: throws STORE_INCONSISTENT (kind unavailable) naming the problem. */
export function parseRegistry(bytes: Uint8Array): TableRegistry {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw inconsistent('is not JSON');
  }
  const { epoch, tables } = (value ?? {}) as { epoch?: unknown; tables?: unknown };
  if (typeof epoch !== 'string' || !/^\d{1,20}$/.test(epoch)) throw inconsistent('has no valid epoch');
  if (!Array.isArray(tables) || !tables.every((t) => typeof t === 'string'))
    throw inconsistent('has no table list');
  return { epoch: BigInt(epoch), tables: tables as string[] };
}

function inconsistent(problem: string): WalshipError {
  return new WalshipError('STORE_INCONSISTENT', 'unavailable', `${TABLES_REGISTRY_KEY} ${problem}`);
}

function contended(): WalshipError {
  return new WalshipError(
    'REGISTRY_CONTENDED',
    'unavailable',
    `${TABLES_REGISTRY_KEY}: lost ${CAS_ATTEMPTS_MAX} compare-and-swap rounds in a row; retrying later`,
  );
}
