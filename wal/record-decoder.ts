import { InvalidArgumentError } from '../core/index.js';
import { RECORD_FLAG_BATCH, readBatchStamp } from './batch-stamp.js';
import { ByteReader, corruptAt } from './byte-reader.js';
import { checksum } from './checksum.js';
import {
  ChunkDecodeContext,
  DECODE_SLICE_ROWS,
  decodeColumnChunk,
  decodeColumnChunkSteps,
} from './column-decoder.js';
import { type ColumnType, columnTypeOfId } from './column-types.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import { hex } from './segment-header.js';
import {
  CHECKSUM_BYTES,
  COLUMN_FLAG_ADDED_IN_TXN,
  COLUMN_FLAG_HAS_NULLS,
  MAX_I64,
  MIN_RECORD_BYTES,
  RECORD_FIXED_PAYLOAD_BYTES,
} from './segment-layout.js';
import { SegmentTally } from './segment-tally.js';
import { readTableOp, TABLE_OP_KINDS } from './table-ops.js';
import { designatedTimestampRange, type TimestampRange } from './timestamp-range.js';
import type { TxnRecord } from './txn-record.js';
import { txnKindOfId } from './txn-record.js';
import { ValueArena } from './value-arena.js';

/** A decoded record with its designated timestamp range. */
export interface DecodedRecord {
  txn: TxnRecord;
  tsRange: TimestampRange | null;
}

/** What decoding one segment's records shares: its limits, running totals and value arena. */
export interface RecordDecodeState {
  limits: SegmentLimits;
  tally: SegmentTally;
  arena: ValueArena;
  /** The last record's column descriptors, reused while the next records' bytes repeat them. */
  schema: Schema | null;
}

/** Fresh state for decoding one segment (or one stand-alone record). */
export function recordDecodeState(limits: SegmentLimits): RecordDecodeState {
  return { limits, tally: new SegmentTally(limits), arena: new ValueArena(), schema: null };
}

interface Descriptor {
  name: string;
  type: ColumnType;
  addedInTxn: boolean;
  hasNulls: boolean;
}

/** Validated column descriptors and the bytes they were read from. */
interface Schema {
  bytes: Uint8Array;
  descriptors: readonly Descriptor[];
}

/**
 * Reads the txn record at the reader's offset (RFC-0001 §7 step 10): frame, record checksum
 * (verified before anything else in the record is read), txn number (must equal `expectedTxn`
 * when given), schema, then the column chunks; the record must be consumed exactly. Leaves the
 * reader after the record. Throws CorruptSegmentError.
 */
export function readTxnRecord(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn?: bigint,
): DecodedRecord {
  // readTxnRecordSteps without the generators, reading and checking the same bytes in the same
  // order: a generator per record and column would cost a segment of small records more than
  // decoding them does.
  const outerEnd = openRecord(reader);
  const { txn, descriptors } = readRecordHead(reader, state, expectedTxn);
  const chunk = chunkContext(reader, state, txn);
  for (const descriptor of descriptors) {
    chunk.column = descriptor.name;
    const { nulls, data } = decodeColumnChunk(chunk, descriptor.type, descriptor.hasNulls);
    txn.columns.push({ name: descriptor.name, addedInTxn: descriptor.addedInTxn, nulls, data });
  }
  return closeRecord(reader, txn, outerEnd);
}

/**
 * `readTxnRecord` as steps: it pauses (yields) inside long column chunks (DECODE_SLICE_ROWS), so
 * a caller can free the event loop while a large record is verified. The caller runs it to the end
 * before using `reader` or `state` again.
 */
export function* readTxnRecordSteps(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn?: bigint,
): Generator<void, DecodedRecord, void> {
  const outerEnd = openRecord(reader);
  const { txn, descriptors } = readRecordHead(reader, state, expectedTxn);
  const chunk = chunkContext(reader, state, txn);
  // A chunk of fewer rows than a slice never pauses: decode it without a generator.
  const pauses = txn.rowCount >= DECODE_SLICE_ROWS;
  for (const descriptor of descriptors) {
    chunk.column = descriptor.name;
    const { nulls, data } = pauses
      ? yield* decodeColumnChunkSteps(chunk, descriptor.type, descriptor.hasNulls)
      : decodeColumnChunk(chunk, descriptor.type, descriptor.hasNulls);
    txn.columns.push({ name: descriptor.name, addedInTxn: descriptor.addedInTxn, nulls, data });
  }
  return closeRecord(reader, txn, outerEnd);
}

/**
 * Checks the txn record at the reader's offset without decoding its columns: its frame, its
 * checksum (so its bytes are the ones that were encoded), its txn number (must equal
 * `expectedTxn` when given) and its fixed fields, counted against the segment's limits. Leaves
 * the reader after the record. For records this process encoded itself from checked columns
 * (sealSegment's `known`); anything read from elsewhere goes through readTxnRecord. Throws
 * CorruptSegmentError.
 */
export function checkTxnRecordFrame(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn?: bigint,
): { txn: bigint; rowCount: number } {
  const payloadStart = reader.offset + 4;
  const outerEnd = openRecord(reader);
  const payloadEnd = payloadStart + reader.view.getUint32(payloadStart - 4, true);
  const { txn, rowCount } = readFixedFields(reader, state, expectedTxn);
  reader.offset = payloadEnd;
  reader.restoreEnd(outerEnd);
  reader.offset += CHECKSUM_BYTES;
  return { txn: txn.txn, rowCount };
}

/**
 * Checks the record's frame and checksum, then limits the reader to the record's payload; returns
 * the reader's previous end for closeRecord.
 */
function openRecord(reader: ByteReader): number {
  const start = reader.offset;
  reader.need(MIN_RECORD_BYTES, 'txn record (truncated)');
  const payloadBytes = reader.u32('record length');
  if (payloadBytes < RECORD_FIXED_PAYLOAD_BYTES || payloadBytes > reader.remaining - CHECKSUM_BYTES) {
    reader.offset = start;
    throw reader.corrupt(
      `record length ${payloadBytes} is below ${RECORD_FIXED_PAYLOAD_BYTES} or runs past the body (truncated)`,
    );
  }
  const end = start + 4 + payloadBytes;
  const stored = reader.view.getUint32(end, true);
  const computed = checksum(reader.bytes, start, end);
  if (stored !== computed) {
    reader.offset = end;
    throw reader.corrupt(
      `record checksum mismatch: stored ${hex(stored)}, computed ${hex(computed)} (record at ${start})`,
    );
  }
  return reader.limitTo(end);
}

/** Checks that the payload was consumed exactly and moves the reader past the record's checksum. */
function closeRecord(reader: ByteReader, txn: TxnRecord, outerEnd: number): DecodedRecord {
  if (reader.remaining !== 0) {
    throw reader.corrupt(`txn ${txn.txn}: record has ${reader.remaining} trailing bytes`);
  }
  reader.restoreEnd(outerEnd);
  reader.offset += CHECKSUM_BYTES;
  return { txn, tsRange: designatedTimestampRange(txn) };
}

/** The record's fixed fields and its column descriptors, checked; `txn.columns` is left empty to fill. */
function readRecordHead(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn: bigint | undefined,
): { txn: TxnRecord; descriptors: readonly Descriptor[] } {
  const { txn, columnCount } = readFixedFields(reader, state, expectedTxn);
  const at = reader.offset;
  const descriptors = readDescriptors(reader, state, txn.txn, columnCount);
  if (txn.kind === 'dedup' && descriptors.some((d) => d.addedInTxn)) {
    reader.offset = at;
    throw reader.corrupt(`txn ${txn.txn}: a dedup txn adds a column`);
  }
  return { txn, descriptors };
}

/**
 * The record's fixed fields (txn number, commit time, kind, flags, column and row counts), checked
 * and counted against the segment's limits; the reader is left at the column descriptors.
 */
function readFixedFields(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn: bigint | undefined,
): { txn: TxnRecord; columnCount: number; rowCount: number } {
  const { limits, tally } = state;
  const txnAt = reader.offset;
  const txnNumber = reader.u64('txn number');
  if (expectedTxn !== undefined ? txnNumber !== expectedTxn : txnNumber < 1n || txnNumber > MAX_I64) {
    reader.offset = txnAt;
    throw reader.corrupt(
      `txn number ${txnNumber} where ${expectedTxn ?? 'a number in 1..2^63-1'} was expected`,
    );
  }
  // Messages name the txn as `txn ${txnNumber}`, formatted only when one is thrown.
  const commitTimeUs = reader.i64('commit time');
  const kindId = reader.u8('txn kind');
  const kind = txnKindOfId(kindId);
  if (kind === undefined) throw backOne(reader, `txn ${txnNumber}: unknown txn kind ${kindId}`);
  const flags = reader.u8('record flags');
  if ((flags & ~RECORD_FLAG_BATCH) !== 0)
    throw backOne(reader, `txn ${txnNumber}: reserved record flags set`);
  if (flags !== 0 && kind !== 'data')
    throw backOne(reader, `txn ${txnNumber}: a ${kind} txn with a batch stamp`);
  const columnCount = reader.u16('column count');
  const rowCount = reader.u32('row count');
  const problem = countsProblem(kind, columnCount, rowCount, limits, reader.remaining);
  if (problem !== undefined) {
    reader.offset -= 6;
    throw reader.corrupt(`txn ${txnNumber}: ${problem}`);
  }
  const overLimit = tally.addRecord(columnCount, rowCount);
  if (overLimit !== undefined) throw reader.corrupt(`txn ${txnNumber}: ${overLimit}`);
  const txn: TxnRecord = { txn: txnNumber, commitTimeUs, kind, rowCount, columns: [] };
  if (flags !== 0) txn.batch = readBatchStamp(reader, txnNumber);
  if (TABLE_OP_KINDS.has(kind)) readTableOp(reader, txn);
  return { txn, columnCount, rowCount };
}

/** The context the record's column chunks are decoded in; the caller sets `column` for each. */
function chunkContext(reader: ByteReader, state: RecordDecodeState, txn: TxnRecord): ChunkDecodeContext {
  const chunk = new ChunkDecodeContext(reader, state.limits, state.tally, state.arena);
  chunk.txn = txn.txn;
  chunk.rowCount = txn.rowCount;
  return chunk;
}

function backOne(reader: ByteReader, message: string) {
  reader.offset -= 1;
  return reader.corrupt(message);
}

/** What is wrong with a record's column and row counts, or undefined; `bytesLeft` follow them. */
function countsProblem(
  kind: TxnRecord['kind'],
  columnCount: number,
  rowCount: number,
  limits: SegmentLimits,
  bytesLeft: number,
): string | undefined {
  if (columnCount > limits.maxColumnsPerRecord) {
    return `${columnCount} columns, above maxColumnsPerRecord ${limits.maxColumnsPerRecord}`;
  }
  if (rowCount > limits.maxRowsPerRecord) {
    return `${rowCount} rows, above maxRowsPerRecord ${limits.maxRowsPerRecord}`;
  }
  if (kind === 'fence' && (rowCount !== 0 || columnCount !== 0)) {
    return `a fence with ${rowCount} rows and ${columnCount} columns (a fence has none)`;
  }
  if (kind === 'dedup' && rowCount !== 0) return `a dedup txn with ${rowCount} rows (it has none)`;
  if (TABLE_OP_KINDS.has(kind) && (rowCount !== 0 || columnCount !== 0))
    return `a ${kind} txn with ${rowCount} rows and ${columnCount} columns (it has none)`;
  if (rowCount > 0 && columnCount === 0) return `${rowCount} rows but no columns`;
  // Each descriptor takes at least 4 bytes: check before building the descriptors array.
  if (columnCount * 4 > bytesLeft) {
    return `${columnCount} column descriptors cannot fit in the ${bytesLeft} bytes left`;
  }
  return undefined;
}

/**
 * The record's column descriptors. Consecutive records of a segment usually share a schema, so
 * when the descriptor bytes repeat the previous record's, its descriptors are reused: their checks
 * depend only on those bytes and the segment's limits, so the same bytes pass them again and
 * decode to the same descriptors. Otherwise every name is validated as it is first seen.
 */
function readDescriptors(
  reader: ByteReader,
  state: RecordDecodeState,
  txnNumber: bigint,
  columnCount: number,
): readonly Descriptor[] {
  const last = state.schema;
  if (last !== null && last.descriptors.length === columnCount && reader.startsWith(last.bytes)) {
    reader.offset += last.bytes.length;
    return last.descriptors;
  }
  const at = reader.offset;
  const descriptors = parseDescriptors(reader, `txn ${txnNumber}`, columnCount, state.limits);
  state.schema = { bytes: reader.bytes.slice(at, reader.offset), descriptors };
  return descriptors;
}

function parseDescriptors(
  reader: ByteReader,
  where: string,
  columnCount: number,
  limits: SegmentLimits,
): Descriptor[] {
  const descriptors: Descriptor[] = [];
  const names = new Set<string>();
  for (let i = 0; i < columnCount; i++) {
    const at = reader.offset;
    const nameBytes = reader.u8(`${where} column ${i} name length`);
    if (nameBytes < 1 || nameBytes > limits.maxNameBytes) {
      throw backOne(
        reader,
        `${where}: column ${i} name length ${nameBytes} is outside 1..${limits.maxNameBytes}`,
      );
    }
    const name = reader.utf8(nameBytes, `${where} column ${i} name`);
    if (names.has(name)) {
      reader.offset = at;
      throw reader.corrupt(`${where}: duplicate column '${name}'`);
    }
    names.add(name);
    const typeId = reader.u8(`${where} column '${name}' type`);
    const type = columnTypeOfId(typeId);
    if (type === undefined) throw backOne(reader, `${where}: column '${name}' has unknown type id ${typeId}`);
    const flags = reader.u8(`${where} column '${name}' flags`);
    if ((flags & ~(COLUMN_FLAG_ADDED_IN_TXN | COLUMN_FLAG_HAS_NULLS)) !== 0) {
      throw backOne(reader, `${where}: column '${name}' has reserved flags set: ${hex(flags)}`);
    }
    descriptors.push({
      name,
      type,
      addedInTxn: (flags & COLUMN_FLAG_ADDED_IN_TXN) !== 0,
      hasNulls: (flags & COLUMN_FLAG_HAS_NULLS) !== 0,
    });
  }
  return descriptors;
}

/**
 * Decodes one txn record stored on its own (the output of encodeTxnRecord): the bytes must hold
 * exactly one record. Throws CorruptSegmentError like decodeSegment, with offsets counted from
 * the record's first byte ('body' region).
 */
export function decodeTxnRecord(bytes: Uint8Array, limits?: Partial<SegmentLimits>): TxnRecord {
  return decodeTxnRecords([bytes], limits)[0]!;
}

/**
 * decodeTxnRecord of each of `list`, each checked on its own (its own running totals), sharing
 * what is dear to make per record: the resolved limits, the value arena (a fresh one allocates a
 * buffer) and the last column descriptors. A primary's request over 1 000 tables hands its write
 * worker 1 000 small records (issue 15). The values of all share the arena's chunks.
 */
export function decodeTxnRecords(list: readonly Uint8Array[], limits?: Partial<SegmentLimits>): TxnRecord[] {
  const resolved = resolveLimits(limits);
  const shared = recordDecodeState(resolved);
  return list.map((bytes) => {
    if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('record bytes must be a Uint8Array');
    if (bytes.length > resolved.maxRawBodyBytes) {
      throw corruptAt(
        'body',
        0,
        `record is ${bytes.length} bytes, more than maxRawBodyBytes ${resolved.maxRawBodyBytes}`,
      );
    }
    const reader = new ByteReader(bytes, 'body');
    shared.tally = new SegmentTally(resolved);
    const { txn } = readTxnRecord(reader, shared);
    if (reader.remaining !== 0) throw reader.corrupt(`${reader.remaining} bytes follow the record`);
    return txn;
  });
}
