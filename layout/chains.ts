import { listAll, type ObjectStore } from '../objectstore/index.js';
import type { TableKey } from '../table/index.js';
import {
  segmentKey,
  segmentPrefix,
  txnFirstOfSegmentKey,
  txnFirstOfTxnLogKey,
  txnLogKey,
  txnLogPrefix,
} from './keys.js';

/** Where a kind of chain object lives in the store (layout/keys.ts). */
export interface ChainLayout {
  prefix(tableKey: TableKey): string;
  key(tableKey: TableKey, txnFirst: bigint): string;
  /** The first txn a key names, or undefined for any other key. */
  txnFirstOf(key: string): bigint | undefined;
}

/** A table's `wal/` segments. */
export const SEGMENT_CHAIN: ChainLayout = {
  prefix: segmentPrefix,
  key: segmentKey,
  txnFirstOf: txnFirstOfSegmentKey,
};

/** A sequenced table's `txnlog/` entries (RFC-0003). */
export const TXNLOG_CHAIN: ChainLayout = {
  prefix: txnLogPrefix,
  key: txnLogKey,
  txnFirstOf: txnFirstOfTxnLogKey,
};

/** One object of a table's chain (a `wal/` segment or a `txnlog/` entry) as GC lists it. */
export interface ListedChainObject {
  key: string;
  txnFirst: bigint;
  sizeBytes: number;
  modifiedAtMs: number;
}

/**
 * Table `tableKey`'s chain objects of `layout`, in listing order (txn order: the numbers in keys
 * are zero-padded), at most `max` of them; the rest are left to later GC runs. An object counts
 * only when its key is exactly the layout's key for the txn it names: anything else under the
 * prefix is not a chain object, and GC leaves it alone.
 */
export async function listChain(
  store: ObjectStore,
  layout: ChainLayout,
  tableKey: TableKey,
  options: { max: number; signal?: AbortSignal | undefined },
): Promise<ListedChainObject[]> {
  const { max, signal } = options;
  const listed: ListedChainObject[] = [];
  for await (const object of listAll(
    store,
    layout.prefix(tableKey),
    signal === undefined ? {} : { signal },
  )) {
    const txnFirst = layout.txnFirstOf(object.key);
    if (txnFirst === undefined || object.key !== layout.key(tableKey, txnFirst)) continue;
    listed.push({
      key: object.key,
      txnFirst,
      sizeBytes: object.sizeBytes,
      modifiedAtMs: object.modifiedAtMs,
    });
    if (listed.length >= max) break;
  }
  return listed;
}
