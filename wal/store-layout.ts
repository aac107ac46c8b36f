import { InvalidArgumentError } from '../core/index.js';

/**
 * Where things live in the object store (DESIGN §3), relative to the cluster root. Numbers are
 * zero-padded to 20 digits so that lexical order is numeric order (2^64 has 20 digits).
 * `tableKey` is the table layer's store-safe encoding of a table name (`table/names.ts`).
 */
export const CLUSTER_KEY = 'cluster.json';
export const HEAD_KEY = 'head.json';
export const EPOCHS_PREFIX = 'epochs/';
export const TABLES_PREFIX = 'tables/';
const NUMBER_DIGITS = 20;

/** A non-negative integer as 20 zero-padded digits. */
export function padNumber(value: bigint): string {
  if (value < 0n || value >= 10n ** BigInt(NUMBER_DIGITS)) {
    throw new InvalidArgumentError(`${value} does not fit ${NUMBER_DIGITS} digits`);
  }
  return value.toString().padStart(NUMBER_DIGITS, '0');
}

/** `epochs/<epoch>.json`: create-only record of who holds an epoch. */
export function epochKey(epoch: bigint): string {
  return `${EPOCHS_PREFIX}${padNumber(epoch)}.json`;
}

/** The epoch of an `epochs/…` key, or undefined for a key that is not an epoch record. */
export function epochOfKey(key: string): bigint | undefined {
  const match = /^epochs\/(\d{20})\.json$/.exec(key);
  return match === null ? undefined : BigInt(match[1]!);
}

/** `tables/<t>/wal/`: every segment of one table, in txn order. */
export function segmentPrefix(tableKey: string): string {
  return `${TABLES_PREFIX}${tableKey}/wal/`;
}

/** `tables/<t>/wal/<firstTxn>.seg`: the create-only segment starting at `txnFirst`. */
export function segmentKey(tableKey: string, txnFirst: bigint): string {
  return `${segmentPrefix(tableKey)}${padNumber(txnFirst)}.seg`;
}

/** The first txn of a segment key, or undefined for any other key. */
export function txnFirstOfSegmentKey(key: string): bigint | undefined {
  const match = /\/wal\/(\d{20})\.seg$/.exec(key);
  return match === null ? undefined : BigInt(match[1]!);
}
