import { InvalidArgumentError } from '../core/index.js';
import type { ByteReader } from './byte-reader.js';
import type { ByteWriter } from './byte-writer.js';
import { MAX_I64 } from './segment-layout.js';

/**
 * The identity of the client batch a txn belongs to (RFC-0011): who sent it, its number, how many
 * tables it wrote, the epoch of the primary that committed it and a digest of its body. Every txn of
 * a request sent with `X-Walship-Batch` carries the same stamp, in its record (RFC-0001 §2.4, record
 * flag bit 0), so the identity reaches every replica with the rows, and a promoted replica knows
 * which batches the old primary committed.
 */
export interface BatchStamp {
  /** The client's writer id: 1..64 characters of `[A-Za-z0-9._-]` (BATCH_WRITER_PATTERN). */
  writer: string;
  /** The batch's number for that writer, 1..2^63-1. */
  seq: bigint;
  /** How many tables (txns) the request wrote, 1..2^32-1: the batch is whole once that many are held. */
  parts: number;
  /** The epoch of the primary that committed the txn, 1..2^63-1 (its commit token's `@epoch`). */
  epoch: bigint;
  /** BATCH_HASH_BYTES bytes: the first bytes of the SHA-256 of the request body. */
  hash: Uint8Array;
}

/** What a writer id may be: short, and safe in a header, a log line and an SQL parameter. */
export const BATCH_WRITER_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Bytes of the body digest kept: 128 bits, so two different bodies never pass for one. */
export const BATCH_HASH_BYTES = 16;
/** The record flag (RFC-0001 §2.4) that says a batch stamp follows the row count. */
export const RECORD_FLAG_BATCH = 0x01;
/** Bytes of a stamp besides its writer id: its length byte, seq, epoch, parts, hash. */
const STAMP_FIXED_BYTES = 1 + 8 + 8 + 4 + BATCH_HASH_BYTES;
const MAX_U32 = 0xffff_ffff;

/** Why `stamp` cannot be written, or undefined when it can. */
export function batchStampProblem(stamp: BatchStamp): string | undefined {
  if (stamp === null || typeof stamp !== 'object') return 'the batch stamp is not an object';
  if (typeof stamp.writer !== 'string' || !BATCH_WRITER_PATTERN.test(stamp.writer)) {
    return 'the batch writer id is not 1..64 characters of [A-Za-z0-9._-]';
  }
  if (typeof stamp.seq !== 'bigint' || stamp.seq < 1n || stamp.seq > MAX_I64) {
    return 'the batch seq is not a bigint in 1..2^63-1';
  }
  if (typeof stamp.epoch !== 'bigint' || stamp.epoch < 1n || stamp.epoch > MAX_I64) {
    return 'the batch epoch is not a bigint in 1..2^63-1';
  }
  if (!Number.isInteger(stamp.parts) || stamp.parts < 1 || stamp.parts > MAX_U32) {
    return 'the batch parts is not an integer in 1..2^32-1';
  }
  if (!(stamp.hash instanceof Uint8Array) || stamp.hash.length !== BATCH_HASH_BYTES) {
    return `the batch hash is not ${BATCH_HASH_BYTES} bytes`;
  }
  return undefined;
}

/** Bytes `stamp` takes in a record. */
export function batchStampBytes(stamp: BatchStamp): number {
  return STAMP_FIXED_BYTES + stamp.writer.length;
}

/** Writes a stamp that batchStampProblem accepted (the writer id is ASCII: one byte a character). */
export function writeBatchStamp(writer: ByteWriter, stamp: BatchStamp): void {
  writer.u8(stamp.writer.length);
  writer.utf8(stamp.writer);
  writer.u64(stamp.seq);
  writer.u64(stamp.epoch);
  writer.u32(stamp.parts);
  writer.bytes(stamp.hash);
}

/** Reads and checks a stamp (CorruptSegmentError naming `txn` for a bad one). */
export function readBatchStamp(reader: ByteReader, txn: bigint): BatchStamp {
  const at = reader.offset;
  const length = reader.u8('batch writer id length');
  reader.need(length + STAMP_FIXED_BYTES - 1, 'batch stamp');
  const writer = reader.utf8(length, 'batch writer id');
  // A copy: the body may be a Buffer, whose slice() is a view that would pin it.
  const hash = new Uint8Array(BATCH_HASH_BYTES);
  const stamp: BatchStamp = {
    writer,
    seq: reader.u64('batch seq'),
    epoch: reader.u64('batch epoch'),
    parts: reader.u32('batch parts'),
    hash,
  };
  hash.set(reader.view8(BATCH_HASH_BYTES, 'batch hash'));
  const problem = batchStampProblem(stamp);
  if (problem !== undefined) {
    reader.offset = at;
    throw reader.corrupt(`txn ${txn}: ${problem}`);
  }
  return stamp;
}

/** Throws InvalidArgumentError naming the txn when `stamp` cannot be written. */
export function checkBatchStamp(stamp: BatchStamp, where: () => string): void {
  const problem = batchStampProblem(stamp);
  if (problem !== undefined) throw new InvalidArgumentError(`${where()}: ${problem}`);
}
