import { InvalidArgumentError } from '../core/index.js';
import { ByteReader, corruptAt } from './byte-reader.js';
import { checksum } from './checksum.js';
import { type ChunkDecodeContext, decodeColumnChunkSteps } from './column-decoder.js';
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
import { designatedTimestampRange, type TimestampRange } from './timestamp-range.js';
import type { ColumnData, TxnRecord } from './txn-record.js';
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
}

/** Fresh state for decoding one segment (or one stand-alone record). */
export function recordDecodeState(limits: SegmentLimits): RecordDecodeState {
  return { limits, tally: new SegmentTally(limits), arena: new ValueArena() };
}

interface Descriptor {
  name: string;
  type: ColumnType;
  addedInTxn: boolean;
  hasNulls: boolean;
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
  const steps = readTxnRecordSteps(reader, state, expectedTxn);
  for (let step = steps.next(); ; step = steps.next()) if (step.done === true) return step.value;
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
  const stored = new DataView(reader.bytes.buffer, reader.bytes.byteOffset + end, 4).getUint32(0, true);
  const computed = checksum(reader.bytes, start, end);
  if (stored !== computed) {
    reader.offset = end;
    throw reader.corrupt(
      `record checksum mismatch: stored ${hex(stored)}, computed ${hex(computed)} (record at ${start})`,
    );
  }
  const outerEnd = reader.limitTo(end);
  const record = yield* readRecordPayload(reader, state, expectedTxn);
  if (reader.remaining !== 0) {
    throw reader.corrupt(`txn ${record.txn.txn}: record has ${reader.remaining} trailing bytes`);
  }
  reader.restoreEnd(outerEnd);
  reader.offset = end + CHECKSUM_BYTES;
  return record;
}

function* readRecordPayload(
  reader: ByteReader,
  state: RecordDecodeState,
  expectedTxn: bigint | undefined,
): Generator<void, DecodedRecord, void> {
  const { limits, tally, arena } = state;
  const txnAt = reader.offset;
  const txnNumber = reader.u64('txn number');
  if (expectedTxn !== undefined ? txnNumber !== expectedTxn : txnNumber < 1n || txnNumber > MAX_I64) {
    reader.offset = txnAt;
    throw reader.corrupt(
      `txn number ${txnNumber} where ${expectedTxn ?? 'a number in 1..2^63-1'} was expected`,
    );
  }
  const where = `txn ${txnNumber}`;
  const commitTimeUs = reader.i64('commit time');
  const kindId = reader.u8('txn kind');
  const kind = txnKindOfId(kindId);
  if (kind === undefined) throw backOne(reader, `${where}: unknown txn kind ${kindId}`);
  if (reader.u8('record flags') !== 0) throw backOne(reader, `${where}: reserved record flags set`);
  const columnCount = reader.u16('column count');
  const rowCount = reader.u32('row count');
  checkCounts(reader, where, kind, columnCount, rowCount, limits);
  const overLimit = tally.addRecord(columnCount, rowCount);
  if (overLimit !== undefined) throw reader.corrupt(`${where}: ${overLimit}`);
  const descriptors = readDescriptors(reader, where, columnCount, limits);
  const columns: ColumnData[] = [];
  for (const descriptor of descriptors) {
    const ctx: ChunkDecodeContext = {
      reader,
      limits,
      tally,
      rowCount,
      where: `${where} column '${descriptor.name}'`,
      arena,
    };
    const { nulls, data } = yield* decodeColumnChunkSteps(ctx, descriptor.type, descriptor.hasNulls);
    columns.push({ name: descriptor.name, addedInTxn: descriptor.addedInTxn, nulls, data });
  }
  const txn: TxnRecord = { txn: txnNumber, commitTimeUs, kind, rowCount, columns };
  return { txn, tsRange: designatedTimestampRange(txn) };
}

function backOne(reader: ByteReader, message: string) {
  reader.offset -= 1;
  return reader.corrupt(message);
}

function checkCounts(
  reader: ByteReader,
  where: string,
  kind: TxnRecord['kind'],
  columnCount: number,
  rowCount: number,
  limits: SegmentLimits,
): void {
  const countsAt = reader.offset - 6;
  const fail = (message: string) => {
    reader.offset = countsAt;
    return reader.corrupt(`${where}: ${message}`);
  };
  if (columnCount > limits.maxColumnsPerRecord) {
    throw fail(`${columnCount} columns, above maxColumnsPerRecord ${limits.maxColumnsPerRecord}`);
  }
  if (rowCount > limits.maxRowsPerRecord) {
    throw fail(`${rowCount} rows, above maxRowsPerRecord ${limits.maxRowsPerRecord}`);
  }
  if (kind === 'fence' && (rowCount !== 0 || columnCount !== 0)) {
    throw fail(`a fence with ${rowCount} rows and ${columnCount} columns (a fence has none)`);
  }
  if (rowCount > 0 && columnCount === 0) throw fail(`${rowCount} rows but no columns`);
  // Each descriptor takes at least 4 bytes: check before building the descriptors array.
  if (columnCount * 4 > reader.remaining) {
    throw fail(`${columnCount} column descriptors cannot fit in the ${reader.remaining} bytes left`);
  }
}

function readDescriptors(
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
  const resolved = resolveLimits(limits);
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('record bytes must be a Uint8Array');
  if (bytes.length > resolved.maxRawBodyBytes) {
    throw corruptAt(
      'body',
      0,
      `record is ${bytes.length} bytes, more than maxRawBodyBytes ${resolved.maxRawBodyBytes}`,
    );
  }
  const reader = new ByteReader(bytes, 'body');
  const { txn } = readTxnRecord(reader, recordDecodeState(resolved));
  if (reader.remaining !== 0) throw reader.corrupt(`${reader.remaining} bytes follow the record`);
  return txn;
}
