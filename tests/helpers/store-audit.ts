/**
 * Reading what a primary shipped, straight from the object store, the way a replica will: list a
 * table's segments, decode each, and check the invariants every fault and crash test relies on —
 * txns 1..N, each exactly once, in order, with no gap or overlap between segments — and which row
 * ids (a `long` column the test writes) they carry.
 */

import { segmentPrefix, txnFirstOfSegmentKey } from '../../layout/index.js';
import { listAll, type ObjectStore } from '../../objectstore/index.js';
import { asTableKey } from '../../table/index.js';
import { decodeSegment, isNull, type TxnRecord } from '../../wal/index.js';

export interface StoredSegment {
  key: string;
  writerNodeId: string;
  epoch: bigint;
  txns: TxnRecord[];
}

/**
 * Every segment of one table, decoded, in key (= txn) order. Segments are create-only and never
 * change, so `cache` (by key) may be shared between calls to avoid decoding them again.
 */
export async function readSegments(
  store: ObjectStore,
  tableKey: string,
  cache: Map<string, StoredSegment> = new Map(),
): Promise<StoredSegment[]> {
  const segments: StoredSegment[] = [];
  for await (const info of listAll(store, segmentPrefix(asTableKey(tableKey)))) {
    let segment = cache.get(info.key);
    if (segment === undefined) {
      const got = await store.get(info.key);
      if (got === null || got.status !== 'ok') throw new Error(`${info.key} is listed but cannot be read`);
      const { header, txns } = await decodeSegment(got.body);
      segment = { key: info.key, writerNodeId: header.writerNodeId, epoch: header.epoch, txns };
      cache.set(info.key, segment);
    }
    segments.push(segment);
  }
  return segments;
}

export interface TableAudit {
  /** The last txn of the last segment (0n when the table has none). */
  txnLast: bigint;
  /** Every value of the id column over all stored txns, in store order. */
  ids: number[];
  /** Broken invariants, one sentence each; empty when the table's segments are sound. */
  problems: string[];
}

/**
 * Check one table's segments: each key names its first txn, the first segment starts at txn 1
 * and each next one right after the previous one ends (a gap loses txns, an overlap duplicates
 * them), and every txn has its id column.
 */
export async function auditTable(
  store: ObjectStore,
  tableKey: string,
  options: { idColumn?: string; cache?: Map<string, StoredSegment> } = {},
): Promise<TableAudit> {
  const idColumn = options.idColumn ?? 'id';
  const problems: string[] = [];
  const ids: number[] = [];
  let txnLast = 0n;
  for (const segment of await readSegments(store, tableKey, options.cache)) {
    const first = segment.txns[0]?.txn;
    if (first === undefined) {
      problems.push(`${segment.key} holds no txn`);
      continue;
    }
    if (txnFirstOfSegmentKey(segment.key) !== first) problems.push(`${segment.key} starts at txn ${first}`);
    if (first !== txnLast + 1n) {
      problems.push(`${segment.key} starts at txn ${first} but the previous segment ended at ${txnLast}`);
    }
    for (const [index, txn] of segment.txns.entries()) {
      if (index > 0 && txn.txn !== txnLast + 1n)
        problems.push(`${segment.key}: txn ${txn.txn} follows ${txnLast}`);
      txnLast = txn.txn;
      const found = idsOf(txn, idColumn);
      if (found === null) problems.push(`${segment.key}: txn ${txn.txn} has no ${idColumn} column`);
      else ids.push(...found);
    }
  }
  return { txnLast, ids, problems };
}

/** The non-null values of a `long` column of one txn, or null when the txn lacks the column. */
export function idsOf(txn: TxnRecord, idColumn = 'id'): number[] | null {
  const column = txn.columns.find((c) => c.name === idColumn);
  if (column === undefined || column.data.type !== 'long') return null;
  const ids: number[] = [];
  for (let row = 0; row < txn.rowCount; row++) {
    if (!isNull(column, row)) ids.push(Number(column.data.values[row]));
  }
  return ids;
}

/** Values that occur more than once, with their counts. */
export function duplicates(values: Iterable<number>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  for (const [value, count] of counts) if (count === 1) counts.delete(value);
  return counts;
}

/**
 * Durable mode's promise, read from the store itself: every table's txn named in a 204's
 * X-Walship-Txn (`trades=42,quotes=17`) is in a segment already and holds exactly the ids the
 * request sent to that table. Returns what is not so, one sentence each.
 */
export async function missingFromStore(
  store: ObjectStore,
  txnHeader: string,
  idsByTable: ReadonlyMap<string, readonly number[]>,
  cache: Map<string, StoredSegment>,
): Promise<string[]> {
  const txnOf = new Map<string, bigint>();
  for (const part of txnHeader.split(',')) {
    // `table=txn@epoch` from a primary, `table=txn` from a sequenced writer.
    const [table, txn] = part.split('@')[0]!.split('=');
    if (table !== undefined && txn !== undefined && /^\d+$/.test(txn)) txnOf.set(table, BigInt(txn));
  }
  const problems: string[] = [];
  for (const [table, ids] of idsByTable) {
    const txn = txnOf.get(table);
    if (txn === undefined) {
      problems.push(`the 204 names no txn of ${table} (X-Walship-Txn: ${txnHeader})`);
      continue;
    }
    const segments = await readSegments(store, table, cache);
    const record = segments.flatMap((s) => s.txns).find((t) => t.txn === txn);
    const stored = record === undefined ? null : idsOf(record);
    if (stored === null) problems.push(`${table} txn ${txn} was acknowledged but is not in the store`);
    else if (stored.join() !== ids.join()) {
      problems.push(`${table} txn ${txn} holds ids ${stored.join()}, the request sent ${ids.join()}`);
    }
  }
  return problems;
}
