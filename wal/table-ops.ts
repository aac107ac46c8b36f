import { InvalidArgumentError } from '../core/index.js';
import type { ByteReader } from './byte-reader.js';
import type { ByteWriter } from './byte-writer.js';
import { MAX_I64, MIN_I64 } from './segment-layout.js';
import { type TableTtl, TTL_UNITS, type TxnRecord } from './txn-record.js';

/**
 * The parameters of the txns that change a table rather than add rows to it (RFC-0001 §2.4, txn
 * kinds 4–6; docs/rfcs/0007-retention-and-gc.md "Retention of rows"):
 * - `ttl` (4) sets the table's time to live, QuestDB's `ALTER TABLE t SET TTL n UNIT`: a u32 count
 *   and a u8 unit follow the row count; a count of 0 clears it;
 * - `trim` (5) deletes the rows whose designated timestamp is below a bound: an i64 follows the
 *   row count, µs since the Unix epoch. The primary commits one when a table's TTL has rows to drop,
 *   so every node deletes exactly the same rows;
 * - `drop` (6) drops the table, rows and columns (`DROP TABLE`): nothing follows. The table's txn
 *   numbers go on: a later data txn creates it anew, with columns of its own.
 * All three have no rows, no columns and no batch stamp.
 */

/** `2 DAYS`, QuestDB's words; null for none (undefined or a count of 0). */
export function ttlText(ttl: TableTtl | undefined): string | null {
  if (ttl === undefined || ttl.count === 0) return null;
  return `${ttl.count} ${ttl.unit}${ttl.count === 1 ? '' : 'S'}`;
}

/** The kinds whose record carries no rows and changes the table itself. */
export const TABLE_OP_KINDS = new Set<TxnRecord['kind']>(['ttl', 'trim', 'drop']);

const MAX_U32 = 0xffff_ffff;

/** Bytes the parameters of `txn` take after its row count. */
export function tableOpBytes(txn: TxnRecord): number {
  if (txn.kind === 'ttl') return 5;
  if (txn.kind === 'trim') return 8;
  return 0;
}

/** Why `txn`'s parameters cannot be written (or were read wrong), or undefined when they are right. */
export function tableOpProblem(txn: TxnRecord): string | undefined {
  if (!TABLE_OP_KINDS.has(txn.kind)) {
    if (txn.ttl !== undefined || txn.trimBeforeUs !== undefined)
      return `a ${txn.kind} txn carries a TTL or a trim bound`;
    return undefined;
  }
  if (txn.rowCount !== 0 || txn.columns.length !== 0)
    return `a ${txn.kind} txn with ${txn.rowCount} rows and ${txn.columns.length} columns (it has none)`;
  if (txn.kind === 'ttl') {
    const ttl = txn.ttl;
    if (ttl === undefined || ttl === null || typeof ttl !== 'object') return 'a ttl txn without its TTL';
    if (!Number.isInteger(ttl.count) || ttl.count < 0 || ttl.count > MAX_U32)
      return 'the TTL count is not an integer in 0..2^32-1';
    if (!TTL_UNITS.includes(ttl.unit)) return `the TTL unit is not one of ${TTL_UNITS.join(', ')}`;
  } else if (txn.ttl !== undefined) return `a ${txn.kind} txn carries a TTL`;
  if (txn.kind === 'trim') {
    const before = txn.trimBeforeUs;
    if (typeof before !== 'bigint' || before <= MIN_I64 || before > MAX_I64)
      return 'the trim bound is not a bigint in -2^63+1..2^63-1';
  } else if (txn.trimBeforeUs !== undefined) return `a ${txn.kind} txn carries a trim bound`;
  return undefined;
}

/** Throws InvalidArgumentError naming the txn when its parameters cannot be written. */
export function checkTableOp(txn: TxnRecord, where: () => string): void {
  const problem = tableOpProblem(txn);
  if (problem !== undefined) throw new InvalidArgumentError(`${where()}: ${problem}`);
}

/** Writes the parameters that checkTableOp accepted. */
export function writeTableOp(writer: ByteWriter, txn: TxnRecord): void {
  if (txn.kind === 'ttl') {
    writer.u32(txn.ttl!.count);
    writer.u8(TTL_UNITS.indexOf(txn.ttl!.unit) + 1);
  } else if (txn.kind === 'trim') {
    writer.i64(txn.trimBeforeUs!);
  }
}

/** Reads and checks the parameters of `txn` (CorruptSegmentError naming it for bad ones). */
export function readTableOp(reader: ByteReader, txn: TxnRecord): void {
  const at = reader.offset;
  if (txn.kind === 'ttl') {
    const count = reader.u32('TTL count');
    const unit = TTL_UNITS[reader.u8('TTL unit') - 1];
    if (unit === undefined) {
      reader.offset = at;
      throw reader.corrupt(`txn ${txn.txn}: unknown TTL unit`);
    }
    txn.ttl = { count, unit };
  } else if (txn.kind === 'trim') {
    txn.trimBeforeUs = reader.i64('trim bound');
  }
  const problem = tableOpProblem(txn);
  if (problem !== undefined) {
    reader.offset = at;
    throw reader.corrupt(`txn ${txn.txn}: ${problem}`);
  }
}
