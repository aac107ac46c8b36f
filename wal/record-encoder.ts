import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../core/index.js';
import { batchStampBytes, checkBatchStamp, RECORD_FLAG_BATCH, writeBatchStamp } from './batch-stamp.js';
import { ByteWriter } from './byte-writer.js';
import { checksum } from './checksum.js';
import {
  type ChunkContext,
  ENCODE_SLICE_ROWS,
  encodeColumnChunk,
  encodeColumnChunkSteps,
} from './column-encoder.js';
import { COLUMN_TYPE_IDS } from './column-types.js';
import { resolveLimits, type SegmentLimits } from './limits.js';
import { anyBitSet, nullBitmapBytes, paddingBitsSet } from './null-bitmap.js';
import {
  COLUMN_FLAG_ADDED_IN_TXN,
  COLUMN_FLAG_HAS_NULLS,
  MAX_I64,
  MIN_I64,
  RECORD_FIXED_PAYLOAD_BYTES,
} from './segment-layout.js';
import { SegmentTally } from './segment-tally.js';
import { checkTableOp, tableOpBytes, writeTableOp } from './table-ops.js';
import { type ColumnData, TXN_KIND_IDS, type TxnRecord } from './txn-record.js';

const textEncoder = new TextEncoder();

/** Makes the "txn N" that starts an error message (see checkTxnFields). */
type Where = () => string;

/** What encoding one segment's records shares: its limits, running totals, and encoded names. */
export interface RecordEncodeState {
  limits: SegmentLimits;
  tally: SegmentTally;
  /** Column names repeat in every record; encoding each once saves a TextEncoder call per column. */
  nameBytes: Map<string, Uint8Array>;
}

/** Fresh state for encoding one segment (or one stand-alone record). */
export function recordEncodeState(limits: SegmentLimits): RecordEncodeState {
  return { limits, tally: new SegmentTally(limits), nameBytes: new Map() };
}

/**
 * Appends one txn record (RFC-0001 §2.4) to `writer`, validating it completely first where that is
 * cheap and value by value otherwise. Throws InvalidArgumentError naming the txn (and column and
 * row) of the first problem; `writer` then holds a partial record and must be discarded. The
 * record's designated timestamp range is the caller's to compute (designatedTimestampRange), when
 * it needs it: a segment's header does, a pending record does not.
 */
export function appendTxnRecord(writer: ByteWriter, txn: TxnRecord, state: RecordEncodeState): void {
  // appendTxnRecordSteps without the generators, writing and checking the same bytes in the same
  // order: a generator per record and column would cost a thousand small records more than
  // encoding them does.
  const record = beginRecord(writer, txn, state);
  for (let i = 0; i < txn.columns.length; i++) {
    encodeColumnChunk(chunkContext(record, i), txn.columns[i]!.data);
  }
  finishRecord(record);
}

/**
 * `appendTxnRecord` as steps: the generator pauses (yields) after each column chunk and inside
 * long ones (column-encoder.ts ENCODE_SLICE_ROWS), so a caller can free the event loop between
 * steps while a large record is encoded. The caller runs it to the end before touching `writer` or
 * `state` again.
 */
export function* appendTxnRecordSteps(
  writer: ByteWriter,
  txn: TxnRecord,
  state: RecordEncodeState,
): Generator<void, void, void> {
  const record = beginRecord(writer, txn, state);
  // A chunk of fewer rows than a slice never pauses inside: encode it without a generator.
  const pauses = txn.rowCount >= ENCODE_SLICE_ROWS;
  for (let i = 0; i < txn.columns.length; i++) {
    const ctx = chunkContext(record, i);
    const { data } = txn.columns[i]!;
    if (pauses) yield* encodeColumnChunkSteps(ctx, data);
    else encodeColumnChunk(ctx, data);
    yield;
  }
  finishRecord(record);
}

/** A record whose head and column descriptors are written, and its chunks' shared context. */
interface OpenRecord {
  txn: TxnRecord;
  /** Where the record starts: its length is patched there, its checksum covers from there. */
  start: number;
  /** Each column's effective null bitmap (see effectiveNulls). */
  nulls: (Uint8Array | null)[];
  ctx: ChunkContext;
}

/** Validates the record and its columns, counts it in the tally, writes its head and descriptors. */
function beginRecord(writer: ByteWriter, txn: TxnRecord, state: RecordEncodeState): OpenRecord {
  const { limits, tally } = state;
  const where = checkTxnFields(txn, limits);
  const overLimit = tally.addRecord(txn.columns.length, txn.rowCount);
  if (overLimit !== undefined) throw new InvalidArgumentError(`${where()}: ${overLimit}`);
  const names = txn.columns.map((column, i) => checkColumn(column, i, txn.rowCount, where, state));
  checkUniqueNames(txn.columns, where);
  const nulls = txn.columns.map((column) => effectiveNulls(column, txn.rowCount));
  const { batch } = txn;
  const start = writer.offset;
  const stampBytes = (batch === undefined ? 0 : batchStampBytes(batch)) + tableOpBytes(txn);
  if (!writer.reserve(4 + RECORD_FIXED_PAYLOAD_BYTES + stampBytes)) throw bodyTooLarge(where, limits);
  writer.u32(0); // payloadBytes, patched by finishRecord
  writer.u64(txn.txn);
  writer.i64(txn.commitTimeUs);
  writer.u8(TXN_KIND_IDS[txn.kind]);
  writer.u8(batch === undefined ? 0 : RECORD_FLAG_BATCH);
  writer.u16(txn.columns.length);
  writer.u32(txn.rowCount);
  if (batch !== undefined) writeBatchStamp(writer, batch);
  writeTableOp(writer, txn);
  // Every descriptor before any row: the applier learns the whole schema, changes included, first.
  for (let i = 0; i < txn.columns.length; i++) {
    const column = txn.columns[i]!;
    const name = names[i]!;
    if (!writer.reserve(3 + name.length)) throw bodyTooLarge(where, limits);
    writer.u8(name.length);
    writer.bytes(name);
    writer.u8(COLUMN_TYPE_IDS[column.data.type]);
    const flags = (column.addedInTxn ? COLUMN_FLAG_ADDED_IN_TXN : 0) | (nulls[i] ? COLUMN_FLAG_HAS_NULLS : 0);
    writer.u8(flags);
  }
  const ctx: ChunkContext = { writer, limits, tally, rowCount: txn.rowCount, nulls: null, where, column: '' };
  return { txn, start, nulls, ctx };
}

/** The record's chunk context, pointed at column `index`. */
function chunkContext(record: OpenRecord, index: number): ChunkContext {
  const { ctx } = record;
  ctx.nulls = record.nulls[index] ?? null;
  ctx.column = record.txn.columns[index]!.name;
  return ctx;
}

/** Patches the record's length and appends its checksum. */
function finishRecord(record: OpenRecord): void {
  const { writer, where, limits } = record.ctx;
  const { start } = record;
  if (!writer.reserve(4)) throw bodyTooLarge(where, limits);
  writer.patchU32(start, writer.offset - start - 4);
  writer.u32(checksum(writer.bytesView, start, writer.offset));
}

/**
 * Encodes one txn record on its own — the bytes appendTxnRecord would put in a segment, with the
 * record's own checksum — e.g. for a pending queue. The segment-wide limits apply to this one
 * record. Throws InvalidArgumentError like encodeSegment.
 */
export function encodeTxnRecord(txn: TxnRecord, limits?: Partial<SegmentLimits>): Uint8Array {
  const resolved = resolveLimits(limits);
  const writer = new ByteWriter(resolved.maxRawBodyBytes, 4096);
  appendTxnRecord(writer, txn, recordEncodeState(resolved));
  return writer.toBytes();
}

/** A TxnRecordEncoder keeps its scratch buffer between records up to this size, 1 MiB. */
const SCRATCH_KEPT_BYTES = 1024 * 1024;

/**
 * `encodeTxnRecord` for many records in a row (one per table of a request spread over many
 * tables): the same bytes and errors, each record on its own under the limits, but the records are
 * written in one reused scratch buffer and column names are encoded once, so a small record costs
 * one allocation (its copy) instead of a 4 KiB buffer, its copy and a name per column (issue 15:
 * half of the encoding time of a thousand 10-row records). A buffer grown past SCRATCH_KEPT_BYTES
 * by a large record is dropped after it.
 */
export class TxnRecordEncoder {
  readonly #state: RecordEncodeState;
  #writer: ByteWriter;

  constructor(limits?: Partial<SegmentLimits>) {
    this.#state = recordEncodeState(resolveLimits(limits));
    this.#writer = new ByteWriter(this.#state.limits.maxRawBodyBytes, 4096);
  }

  /** The bytes encodeTxnRecord(txn) returns, a copy no later call touches (see copyOut); throws as it does. */
  encode(txn: TxnRecord): Uint8Array {
    const writer = this.#writer;
    writer.reset();
    // Each record is alone under the limits: its tally starts from zero, as a new one would.
    this.#state.tally.reset();
    try {
      appendTxnRecord(writer, txn, this.#state);
      return copyOut(writer.bytesView);
    } finally {
      if (writer.capacityBytes > SCRATCH_KEPT_BYTES)
        this.#writer = new ByteWriter(this.#state.limits.maxRawBodyBytes, 4096);
    }
  }
}

/**
 * A copy of `bytes`, for a small record in Node's shared pool of small buffers (Buffer.allocUnsafe,
 * filled at once): a fresh ArrayBuffer per record cost a fifth of encoding a 10-row record. The
 * copy is a plain Uint8Array over its own bytes; its `buffer` may hold other records' bytes too.
 */
function copyOut(bytes: Uint8Array): Uint8Array {
  const pooled = Buffer.allocUnsafe(bytes.length);
  pooled.set(bytes);
  return new Uint8Array(pooled.buffer, pooled.byteOffset, pooled.length);
}

/**
 * `encodeTxnRecord` that frees the event loop while it works: `pause` is awaited between steps of
 * appendTxnRecordSteps, so a record of a million rows never holds the loop for more than one
 * column slice. Same bytes, same errors as encodeTxnRecord.
 */
export async function encodeTxnRecordInSlices(
  txn: TxnRecord,
  options: { pause: () => Promise<void>; limits?: Partial<SegmentLimits> },
): Promise<Uint8Array> {
  const resolved = resolveLimits(options.limits);
  const writer = new ByteWriter(resolved.maxRawBodyBytes, 4096);
  const steps = appendTxnRecordSteps(writer, txn, recordEncodeState(resolved));
  for (let step = steps.next(); step.done !== true; step = steps.next()) await options.pause();
  return writer.toBytes();
}

function bodyTooLarge(where: Where, limits: SegmentLimits): InvalidArgumentError {
  return new InvalidArgumentError(
    `${where()}: segment body would exceed maxRawBodyBytes ${limits.maxRawBodyBytes}`,
  );
}

/**
 * Checks a txn's own fields; returns what makes "txn N" for messages. A function, called only when
 * a message is made: a request spread over a thousand tables encodes a thousand records, and the
 * number's text would be built for each of them and every column.
 */
function checkTxnFields(txn: TxnRecord, limits: SegmentLimits): Where {
  if (txn === null || typeof txn !== 'object') {
    throw new InvalidArgumentError('a txn must be a TxnRecord object');
  }
  if (typeof txn.txn !== 'bigint' || txn.txn < 1n || txn.txn > MAX_I64) {
    throw new InvalidArgumentError(`txn number ${String(txn.txn)} must be a bigint in 1..2^63-1`);
  }
  const number = txn.txn;
  const where = () => `txn ${number}`;
  if (typeof txn.commitTimeUs !== 'bigint' || txn.commitTimeUs < MIN_I64 || txn.commitTimeUs > MAX_I64) {
    throw new InvalidArgumentError(`${where()}: commitTimeUs must be a bigint within int64`);
  }
  if (!Object.hasOwn(TXN_KIND_IDS, txn.kind)) {
    throw new InvalidArgumentError(`${where()}: unknown kind '${txn.kind}'`);
  }
  if (!Number.isInteger(txn.rowCount) || txn.rowCount < 0 || txn.rowCount > limits.maxRowsPerRecord) {
    throw new InvalidArgumentError(
      `${where()}: rowCount ${txn.rowCount} is not an integer in 0..${limits.maxRowsPerRecord}`,
    );
  }
  if (!Array.isArray(txn.columns) || txn.columns.length > limits.maxColumnsPerRecord) {
    throw new InvalidArgumentError(
      `${where()}: columns must be an array of at most ${limits.maxColumnsPerRecord}`,
    );
  }
  if (txn.kind === 'fence' && (txn.rowCount !== 0 || txn.columns.length !== 0)) {
    throw new InvalidArgumentError(`${where()}: a fence has no rows and no columns`);
  }
  if (txn.kind === 'dedup' && (txn.rowCount !== 0 || txn.columns.some((c) => c.addedInTxn))) {
    throw new InvalidArgumentError(`${where()}: a dedup txn has no rows and adds no column`);
  }
  if (txn.rowCount > 0 && txn.columns.length === 0) {
    throw new InvalidArgumentError(`${where()}: ${txn.rowCount} rows but no columns`);
  }
  if (txn.batch !== undefined) {
    if (txn.kind !== 'data')
      throw new InvalidArgumentError(`${where()}: only a data txn carries a batch stamp`);
    checkBatchStamp(txn.batch, where);
  }
  checkTableOp(txn, where);
  return where;
}

/** Checks a column's name, type and null bitmap; returns the name's UTF-8 bytes. */
function checkColumn(
  column: ColumnData,
  index: number,
  rowCount: number,
  where: Where,
  state: RecordEncodeState,
) {
  const { limits } = state;
  if (column === null || typeof column !== 'object') {
    throw new InvalidArgumentError(`${where()}: column ${index} is not an object`);
  }
  const { name } = column;
  if (typeof name !== 'string' || !(name as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidArgumentError(`${where()}: column ${index} name must be a well-formed string`);
  }
  let nameBytes = state.nameBytes.get(name);
  if (nameBytes === undefined) {
    nameBytes = textEncoder.encode(name);
    state.nameBytes.set(name, nameBytes);
  }
  if (nameBytes.length < 1 || nameBytes.length > limits.maxNameBytes) {
    throw new InvalidArgumentError(
      `${where()}: column '${name}' name is ${nameBytes.length} UTF-8 bytes, not 1..${limits.maxNameBytes}`,
    );
  }
  if (typeof column.addedInTxn !== 'boolean') {
    throw new InvalidArgumentError(`${where()}: column '${name}' addedInTxn must be a boolean`);
  }
  if (
    column.data === null ||
    typeof column.data !== 'object' ||
    !Object.hasOwn(COLUMN_TYPE_IDS, column.data.type)
  ) {
    throw new InvalidArgumentError(`${where()}: column '${name}' has an unknown type`);
  }
  const { nulls } = column;
  if (nulls !== null) {
    if (!(nulls instanceof Uint8Array) || nulls.length !== nullBitmapBytes(rowCount)) {
      throw new InvalidArgumentError(
        `${where()}: column '${name}' nulls must be null or a Uint8Array of ${nullBitmapBytes(rowCount)} bytes`,
      );
    }
    if (paddingBitsSet(nulls, rowCount)) {
      throw new InvalidArgumentError(
        `${where()}: column '${name}' nulls has bits set past row ${rowCount - 1}`,
      );
    }
  }
  return nameBytes;
}

/** Up to this many columns, comparing every pair costs less than building a Set. */
const PAIRWISE_NAME_CHECK_COLUMNS = 16;

/** Throws for the first column whose name an earlier column has. */
function checkUniqueNames(columns: readonly ColumnData[], where: Where): void {
  if (columns.length <= PAIRWISE_NAME_CHECK_COLUMNS) {
    for (let j = 1; j < columns.length; j++) {
      const { name } = columns[j]!;
      for (let i = 0; i < j; i++) if (columns[i]!.name === name) throw duplicateColumn(where, name);
    }
    return;
  }
  const seen = new Set<string>();
  for (const { name } of columns) {
    if (seen.has(name)) throw duplicateColumn(where, name);
    seen.add(name);
  }
}

function duplicateColumn(where: Where, name: string): InvalidArgumentError {
  return new InvalidArgumentError(`${where()}: duplicate column '${name}'`);
}

/** The bitmap to write: null when no row is null, so the decoder's `nulls` is null exactly then. */
function effectiveNulls(column: ColumnData, rowCount: number): Uint8Array | null {
  return column.nulls !== null && anyBitSet(column.nulls, rowCount) ? column.nulls : null;
}
