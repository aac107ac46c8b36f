import type { BatchStamp } from './batch-stamp.js';
import type { ColumnValues } from './column-types.js';

/**
 * A data txn carries rows; a fence carries no rows and records a new epoch (DESIGN §7); a dedup txn
 * carries no rows and sets the table's upsert keys (its columns name them; none turns dedup off:
 * RFC-0011 "Deduplicated tables"); `ttl`, `trim` and `drop` carry no rows and set the table's time
 * to live, delete its rows below a timestamp, or drop it (table-ops.ts).
 */
export type TxnKind = 'data' | 'fence' | 'dedup' | 'ttl' | 'trim' | 'drop';

/** QuestDB's TTL units, in the order of their ids (1..5) in a record. */
export const TTL_UNITS = ['HOUR', 'DAY', 'WEEK', 'MONTH', 'YEAR'] as const;
export type TtlUnit = (typeof TTL_UNITS)[number];

/** A table's time to live: `count` units; a count of 0 means none. */
export interface TableTtl {
  count: number;
  unit: TtlUnit;
}

/** One column of one txn record. */
export interface ColumnData {
  /** UTF-8, 1..maxNameBytes bytes, unique within the record. */
  name: string;
  /** A schema change: this txn created the column, so the applier must ALTER before it applies rows. */
  addedInTxn: boolean;
  /**
   * Null bitmap of exactly nullBitmapBytes(rowCount) bytes: bit (i & 7) of byte (i >> 3) set means
   * row i is null. `null` means no row is null (and is what the decoder returns then).
   */
  nulls: Uint8Array | null;
  data: ColumnValues;
}

/** One table's share of one committed write request. */
export interface TxnRecord {
  /** The table's txn number, >= 1, gap-free within a table. */
  txn: bigint;
  /** The primary's wall clock at commit, µs since the Unix epoch. Informational: never used for ordering. */
  commitTimeUs: bigint;
  kind: TxnKind;
  rowCount: number;
  /** Every column has exactly rowCount value slots. A fence has no columns. */
  columns: ColumnData[];
  /**
   * The client batch this txn belongs to (RFC-0011), when the request carried `X-Walship-Batch`;
   * absent otherwise, and on a fence.
   */
  batch?: BatchStamp;
  /** A `ttl` txn's time to live (count 0: none); absent on every other kind. */
  ttl?: TableTtl;
  /** A `trim` txn's bound: rows whose designated timestamp is below it (µs) go; absent otherwise. */
  trimBeforeUs?: bigint;
}

/** The designated timestamp column (DESIGN §1): its non-null values give a segment's ts range. */
export const DESIGNATED_TIMESTAMP_COLUMN = 'timestamp';

/** The kind id written in a record. 0 is never valid, so zeroed memory never parses. */
export const TXN_KIND_IDS: Readonly<Record<TxnKind, number>> = Object.freeze({
  data: 1,
  fence: 2,
  dedup: 3,
  ttl: 4,
  trim: 5,
  drop: 6,
});

/** The txn kind for a kind id, or undefined for an unknown id. */
export function txnKindOfId(kindId: number): TxnKind | undefined {
  if (kindId === TXN_KIND_IDS.data) return 'data';
  if (kindId === TXN_KIND_IDS.fence) return 'fence';
  if (kindId === TXN_KIND_IDS.dedup) return 'dedup';
  if (kindId === TXN_KIND_IDS.ttl) return 'ttl';
  if (kindId === TXN_KIND_IDS.trim) return 'trim';
  if (kindId === TXN_KIND_IDS.drop) return 'drop';
  return undefined;
}
