/**
 * The store's exported txn log as a log source (RFC-0003 "Applying in sequencer order", the path
 * of nodes without sequencer access): each entry is `tables/<t>/txnlog/<txnFirst>.json`, written
 * create-only and byte-identical by whichever writer exports it.
 *
 * Costs (RFC-0003 "Cost per commit"): an idle table costs one GET per poll (the 404 of
 * `txnlog/<applied+1>.json`); a table that is behind costs one GET, one LIST and one GET per
 * further entry of the page (then one GET per staged segment, by the follower); `tables.json`
 * is read with a conditional GET (304 while unchanged) at most once per `tablesRefreshMs` and round.
 *
 * Entries are keyed by their txnFirst, so this source can only start a read at an entry boundary.
 * That is all the follower needs: it applies whole entries (one SQLite transaction each) and reads
 * from `applied + 1`, which after an entry through txnLast is the next entry's key. The one way a
 * table ends inside an entry (a restore cut there) is recorded by whoever cut it in the table's
 * `sequencer.partial.<key>` meta, and the follower then reads from that entry's txnFirst.
 */
import { type Clock, systemClock, WalshipError } from '../core/index.js';
// The module, not primary/index.js: primary/ (the writer path) imports sequencer/, and its door would
// pull the whole primary node into this small reader and risk an import cycle.
import {
  decodeTxnLogEntry,
  readRegistryIfChanged,
  txnFirstOfTxnLogKey,
  txnLogKey,
  txnLogPrefix,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { isTableKey, type TableKey } from '../table/index.js';
import { validateReadLimit, validateTable } from './commit-request.js';
import type { LogSource } from './log-source.js';
import type { LogEntry } from './sequencer-store.js';

/** Bounds of the store source, each with its reason (STYLE rule 7). */
export const STORE_LOG_SOURCE_LIMITS = {
  /**
   * tables.json is read again at most this often by default. Each read is a conditional GET (a 304
   * while no table was added), so a new table is found within about a poll.
   */
  tablesRefreshMsDefault: 0,
  /** txnlog GETs in flight at once within one readLog page (a page is up to 1000 small objects). */
  readConcurrencyDefault: 8,
  /** Fetches of an entry object that fails to decode before the error stands (a torn read heals). */
  fetchAttemptsPerEntry: 2,
} as const;

export interface StoreLogSourceOptions {
  store: ObjectStore;
  /** `replication.replica.poll.interval`: wait() sleeps this long. */
  pollIntervalMs: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Read tables.json again at most this often (default STORE_LOG_SOURCE_LIMITS.tablesRefreshMsDefault). */
  tablesRefreshMs?: number;
  /** txnlog GETs in flight within one page (default STORE_LOG_SOURCE_LIMITS.readConcurrencyDefault). */
  readConcurrency?: number;
}

/** A LogSource over `tables/<t>/txnlog/` (see the file comment for what it costs). */
export function storeLogSource(options: StoreLogSourceOptions): LogSource {
  const clock = options.clock ?? systemClock;
  const tablesRefreshMs = options.tablesRefreshMs ?? STORE_LOG_SOURCE_LIMITS.tablesRefreshMsDefault;
  const concurrency = options.readConcurrency ?? STORE_LOG_SOURCE_LIMITS.readConcurrencyDefault;
  if (!Number.isFinite(options.pollIntervalMs) || options.pollIntervalMs < 0)
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      `pollIntervalMs ${options.pollIntervalMs} must be ≥ 0`,
    );
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      `readConcurrency ${concurrency} must be an integer ≥ 1`,
    );
  let cachedTables: { keys: TableKey[]; etag: string | undefined; atMs: number } | null = null;

  return {
    name: 'store',
    async tables() {
      const now = clock.monotonicMs();
      if (cachedTables !== null && now - cachedTables.atMs < tablesRefreshMs) return cachedTables.keys;
      const read = await readRegistryIfChanged(options.store, cachedTables?.etag);
      if (read === 'unchanged') cachedTables = { ...cachedTables!, atMs: now };
      // tables.json is read as stored: its keys become txnlog/ keys, so they are checked here. A key
      // tableKey cannot produce names no table; it is left out (walship verify --store reports it).
      else
        cachedTables = {
          keys: (read?.registry.tables ?? []).filter(isTableKey),
          etag: read?.etag,
          atMs: now,
        };
      return cachedTables.keys;
    },
    async readLog(table, fromTxn, limit) {
      const key = validateTable(table);
      validateReadLimit(limit);
      const first = await getEntry(options.store, key, fromTxn);
      if (first === null) return [];
      if (limit === 1) return [first];
      return [first, ...(await nextEntries(options.store, first, limit - 1, concurrency))];
    },
    async wait(after, signal) {
      try {
        await clock.sleep(options.pollIntervalMs, signal);
      } catch {
        return after; // aborted
      }
      // No version to learn from the store: every poll "may have changed something".
      return after + 1n;
    },
  };
}

/**
 * Up to `limit` entries contiguous after `first`: one LIST after its key, the listed entries
 * fetched in parallel (bounded), kept in order up to the first that does not follow on.
 */
async function nextEntries(
  store: ObjectStore,
  first: LogEntry,
  limit: number,
  concurrency: number,
): Promise<LogEntry[]> {
  const table = first.table;
  const page = await store.list(txnLogPrefix(table), { startAfter: txnLogKey(table, first.txnFirst), limit });
  const txnFirsts: bigint[] = [];
  let expected = first.txnLast + 1n;
  for (const object of page.objects) {
    const txnFirst = txnFirstOfTxnLogKey(object.key);
    // Only `<20 digits>.json` keys are entries; a gap in the keys ends the contiguous run.
    if (txnFirst === undefined || object.key !== txnLogKey(table, txnFirst)) continue;
    if (txnFirsts.length === 0 && txnFirst !== expected) break;
    txnFirsts.push(txnFirst);
  }
  const fetched = await mapBounded(txnFirsts, concurrency, (txnFirst) => getEntry(store, table, txnFirst));
  const entries: LogEntry[] = [];
  for (const entry of fetched) {
    if (entry === null || entry.txnFirst !== expected) break;
    entries.push(entry);
    expected = entry.txnLast + 1n;
  }
  return entries;
}

/**
 * GET and decode `txnlog/<txnFirst>.json` of `table`; null when absent. A decode failure (which
 * includes an entry of another table or txn than its key names) is fetched once more (a torn read
 * heals) and then thrown: TXN_LOG_ENTRY_CORRUPT, kind data.
 */
async function getEntry(store: ObjectStore, table: TableKey, txnFirst: bigint): Promise<LogEntry | null> {
  const key = txnLogKey(table, txnFirst);
  for (let attempt = 1; ; attempt++) {
    const got = await store.get(key);
    if (got === null) return null;
    if (got.status !== 'ok')
      throw new WalshipError('STORE_INCONSISTENT', 'unavailable', `GET ${key} answered not-modified`);
    try {
      return decodeTxnLogEntry(got.body, key);
    } catch (error) {
      if (attempt >= STORE_LOG_SOURCE_LIMITS.fetchAttemptsPerEntry || !isDataError(error)) throw error;
    }
  }
}

function isDataError(error: unknown): boolean {
  return error instanceof WalshipError && error.kind === 'data';
}

/** `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
async function mapBounded<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
