import { Buffer } from 'node:buffer';
import { type FileHandle, link, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { assert, isoTime, isWalshipError, WALL_MS_MAX, WalshipError } from '../core/index.js';
import { DEFAULT_ILP_LIMITS } from '../ilp/index.js';
import { type TableStore, tableKey } from '../table/index.js';
import {
  type ColumnData,
  type ColumnValues,
  DESIGNATED_TIMESTAMP_COLUMN,
  type DecimalValue,
  type DoubleArrayValue,
  decodeTxnRecord,
  isNull,
  MAX_DECIMAL_SCALE,
  type TxnRecord,
  ttlText,
} from '../wal/index.js';
import type { AckMode } from './committer.js';

/**
 * Divergence files (RFC-0002 "Fenced means"): when a primary learns it was fenced, the txns it
 * committed but never uploaded (acknowledged in local ack mode, never in durable mode) are written
 * as ILP text, one file per table, for a person to review and replay. Everything is ILP text v1 that walship's parser (and QuestDB)
 * accepts, except double arrays, which only the binary protocol carries: those go into `#`
 * comment lines as JSON, so the file still parses.
 */

/** Encoded bytes read from the pending queue at a time: bounds memory whatever the queue holds. */
export const PENDING_CHUNK_BYTES = 4 * 1024 * 1024;
/** Rendered characters buffered before a write: bounds memory and keeps writes large. */
const WRITE_BUFFER_CHARS = 1024 * 1024;
/** Names tried per file (`x.ilp`, `x-2.ilp` … `x-1000.ilp`) before giving up. */
const FILE_SUFFIX_MAX = 1000;
/** NAME_MAX of ext4, xfs and APFS; a table key alone may be 255 characters, so it is cut to fit. */
const FILE_NAME_BYTES_MAX = 255;
/** Doubles per array comment line: keeps comment lines far below the ILP line limit. */
const ARRAY_VALUES_PER_COMMENT = 4096;
/** Characters reserved for the header's tally line, written last (it is known only at the end). */
const TALLY_LINE_CHARS = 120;
/** Lines above this are refused by a walship using the default limits: flagged by a comment. */
const LINE_BYTES_MAX = DEFAULT_ILP_LIMITS.maxLineBytes;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// ---------------------------------------------------------------------------------------------
// Rendering

/**
 * The rows of one txn record as ILP text v1, every line ending in `\n`: first a `# txn …` comment,
 * then per row any comments about it and its line — symbols as tags, other columns as fields
 * (`t`/`f`, `42i`, shortest round-trip doubles with `-0`, `NaN`, `±Infinity`, quoted strings,
 * `<µs>t`, `<text>d` decimals), nulls left out, the designated timestamp trailing in nanoseconds
 * (`<µs>t` when ns would overflow int64). A row with nothing ILP can carry is a comment, never an
 * invalid line. Fences, dedup, ttl, trim and drop txns and empty txns are a comment only. Pure.
 */
export function renderTxnAsIlp(tableName: string, record: TxnRecord): string {
  let text = '';
  for (const piece of renderTxnPieces(tableName, record)) text += piece;
  return text;
}

/** renderTxnAsIlp in pieces (one or more whole lines each), so a writer can flush as it goes. */
function* renderTxnPieces(tableName: string, record: TxnRecord): Generator<string> {
  if (record.kind === 'fence') {
    yield `# txn ${record.txn}: fence (no rows)\n`;
    return;
  }
  if (record.kind === 'dedup') {
    const keys = record.columns.map((c) => c.name).join(', ');
    yield `# txn ${record.txn}: ${keys === '' ? 'DEDUP DISABLE' : `DEDUP ENABLE UPSERT KEYS(${keys})`} (no rows)\n`;
    return;
  }
  if (record.kind === 'ttl') {
    yield `# txn ${record.txn}: SET TTL ${ttlText(record.ttl) ?? '0'} (no rows)\n`;
    return;
  }
  if (record.kind === 'trim') {
    yield `# txn ${record.txn}: rows before ${isoMicros(record.trimBeforeUs!)} deleted (TTL; no rows)\n`;
    return;
  }
  if (record.kind === 'drop') {
    yield `# txn ${record.txn}: DROP TABLE (no rows)\n`;
    return;
  }
  yield `# txn ${record.txn}: ${record.rowCount} rows, committed at ${isoMicros(record.commitTimeUs)}\n`;
  if (record.rowCount === 0) return;
  const plan = planRecord(tableName, record);
  for (let row = 0; row < record.rowCount; row++) yield renderRow(plan, row);
}

interface PlannedColumn {
  column: ColumnData;
  /** The escaped name and `=`. */
  prefix: string;
}

interface RecordPlan {
  table: string;
  designated: ColumnData | undefined;
  tags: PlannedColumn[];
  fields: PlannedColumn[];
}

/** Sorts a record's columns into tags, fields and the designated timestamp, escaping names once. */
function planRecord(tableName: string, record: TxnRecord): RecordPlan {
  // A table name starting with `#` would turn its line into a comment: the backslash keeps it a name.
  const table = tableName.startsWith('#') ? `\\${escapeToken(tableName)}` : escapeToken(tableName);
  const plan: RecordPlan = { table, designated: undefined, tags: [], fields: [] };
  for (const column of record.columns) {
    const type = column.data.type;
    const planned = { column, prefix: `${escapeToken(column.name)}=` };
    if (column.name === DESIGNATED_TIMESTAMP_COLUMN && type === 'timestamp') plan.designated = column;
    else if (type === 'symbol') plan.tags.push(planned);
    else plan.fields.push(planned);
  }
  return plan;
}

/** One row: comments about cells ILP text cannot carry, then its line (or a comment instead). */
function renderRow(plan: RecordPlan, row: number): string {
  let notes = '';
  let tags = '';
  for (const { column, prefix } of plan.tags) {
    if (isNull(column, row)) continue;
    const value = (column.data.values as (string | null)[])[row] ?? null;
    if (value === null) continue;
    if (isWellFormed(value)) tags += `,${prefix}${escapeToken(value)}`;
    else notes += cellComment(row, column, JSON.stringify(value));
  }
  let fields = '';
  for (const { column, prefix } of plan.fields) {
    if (isNull(column, row)) continue;
    const text = fieldText(column.data, row);
    if (text === null) continue;
    if (text !== undefined) fields += `${fields === '' ? '' : ','}${prefix}${text}`;
    else notes += uncarriedComment(row, column);
  }
  const timestamp = designatedText(plan.designated, row);
  if (tags === '' && fields === '') {
    const at = timestamp === '' ? 'no designated timestamp' : `designated timestamp ${timestamp.trim()}`;
    return `${notes}# row ${row}: no value ILP text can carry (${at}), so no line\n`;
  }
  const line = `${plan.table}${tags}${fields === '' ? '' : ` ${fields}`}${timestamp}`;
  return `${notes}${lineTooLongComment(row, line)}${line}\n`;
}

/**
 * A field's value as ILP text; undefined when ILP text cannot carry it (double arrays, strings with
 * a lone surrogate, a decimal scale outside the format); null for a missing value in a non-null row.
 */
function fieldText(data: ColumnValues, row: number): string | null | undefined {
  switch (data.type) {
    case 'boolean':
      return data.values[row] === 0 ? 'f' : 't';
    case 'long':
      return `${data.values[row]}i`;
    case 'timestamp':
      return `${data.values[row]}t`;
    case 'double':
      return formatDouble(data.values[row]!);
    case 'string':
    case 'symbol': {
      const value = data.values[row] ?? null;
      if (value === null) return null;
      return isWellFormed(value) ? quoteString(value) : undefined;
    }
    case 'decimal': {
      const value = data.values[row] ?? null;
      if (value === null) return null;
      return value.scale >= 0 && value.scale <= MAX_DECIMAL_SCALE ? formatDecimal(value) : undefined;
    }
    case 'double_array':
      return (data.values[row] ?? null) === null ? null : undefined;
  }
}

/** ` <ns>` for the designated timestamp of `row`, ` <µs>t` beyond int64 ns, '' when there is none. */
function designatedText(column: ColumnData | undefined, row: number): string {
  if (column === undefined || isNull(column, row)) return '';
  const micros = (column.data.values as BigInt64Array)[row]!;
  const nanos = micros * 1000n;
  return nanos >= INT64_MIN && nanos <= INT64_MAX ? ` ${nanos}` : ` ${micros}t`;
}

/** `# row N column "c" (type): <JSON>` lines for a value ILP text cannot carry. */
function uncarriedComment(row: number, column: ColumnData): string {
  const data = column.data;
  if (data.type === 'double_array') return arrayComments(row, column, data.values[row]!);
  const value = (data.values as unknown[])[row];
  return cellComment(
    row,
    column,
    JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}` : v)),
  );
}

function cellComment(row: number, column: ColumnData, json: string): string {
  return `# row ${row} column ${JSON.stringify(column.name)} (${column.data.type}): ${json}\n`;
}

/**
 * An array as JSON `{"shape":[…],"values":[…]}` (row-major; NaN and ±Infinity as strings, -0 as
 * `-0`), split into lines of ARRAY_VALUES_PER_COMMENT values with `"first"` set when it is long.
 */
function arrayComments(row: number, column: ColumnData, array: DoubleArrayValue): string {
  const shape = JSON.stringify(array.shape);
  const count = array.values.length;
  if (count <= ARRAY_VALUES_PER_COMMENT) {
    return cellComment(row, column, `{"shape":${shape},"values":[${jsonDoubles(array.values, 0, count)}]}`);
  }
  let text = '';
  for (let first = 0; first < count; first += ARRAY_VALUES_PER_COMMENT) {
    const values = jsonDoubles(array.values, first, Math.min(count, first + ARRAY_VALUES_PER_COMMENT));
    text += cellComment(row, column, `{"shape":${shape},"first":${first},"values":[${values}]}`);
  }
  return text;
}

function jsonDoubles(values: Float64Array, start: number, end: number): string {
  const parts: string[] = [];
  for (let i = start; i < end; i++) {
    const value = values[i]!;
    parts.push(Number.isFinite(value) ? formatDouble(value) : `"${value}"`);
  }
  return parts.join(',');
}

function lineTooLongComment(row: number, line: string): string {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most lines never need counting.
  if (line.length * 3 <= LINE_BYTES_MAX) return '';
  const bytes = Buffer.byteLength(line, 'utf8');
  if (bytes <= LINE_BYTES_MAX) return '';
  return `# row ${row}: the next line is ${bytes} bytes, above the default ILP line limit of ${LINE_BYTES_MAX}: raise the limit to replay it\n`;
}

/** Shortest text that parses back to the same double (JS `String`), keeping the sign of -0. */
function formatDouble(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

/** `unscaled × 10^-scale` as `-123.45d`: the digits after the point are exactly `scale`. */
function formatDecimal(value: DecimalValue): string {
  const negative = value.unscaled < 0n;
  let digits = (negative ? -value.unscaled : value.unscaled).toString();
  if (value.scale > 0) {
    digits = digits.padStart(value.scale + 1, '0');
    digits = `${digits.slice(0, -value.scale)}.${digits.slice(-value.scale)}`;
  }
  return `${negative ? '-' : ''}${digits}d`;
}

/** A quoted string field: `"` and `\` escaped, and a backslash before LF and CR so no raw line end is left. */
function quoteString(value: string): string {
  return `"${value.replace(/[\\"\n\r]/g, (c) => `\\${c}`)}"`;
}

/** A name or symbol value: a backslash before comma, space, `=`, backslash, LF, CR and NUL. */
function escapeToken(value: string): string {
  return value.replace(/[\\ ,=\n\r\0]/g, (c) => `\\${c}`);
}

/** String.prototype.isWellFormed (Node 20) is ES2024, above this project's lib setting. */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** µs since the epoch as ISO 8601 with six fractional digits, or as a number outside Date's range. */
function isoMicros(micros: bigint): string {
  const millis = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
  if (millis > BigInt(WALL_MS_MAX) || millis < -BigInt(WALL_MS_MAX)) return `${micros} µs since the epoch`;
  const subMillis = String(micros - millis * 1000n).padStart(3, '0');
  return `${isoTime(Number(millis)).slice(0, -1)}${subMillis}Z`;
}

// ---------------------------------------------------------------------------------------------
// Writing

/** What writeDivergenceFiles needs from the node's database (TableStore implements it). */
export type DivergenceSource = Pick<TableStore, 'pendingSummary' | 'pending'>;

/**
 * Meta key of the ack mode this data dir's primary last ran with: a node restarted as a replica
 * (perhaps with another configuration) still writes the header its writes were answered under.
 */
export const ACK_MODE_META_KEY = 'ack.mode';

/** The ack mode recorded in `meta` (ACK_MODE_META_KEY), or `fallback` when none or another value. */
export function recordedAckMode(meta: string | undefined, fallback: AckMode): AckMode {
  return meta === 'local' || meta === 'durable' ? meta : fallback;
}

export interface DivergenceSummary {
  /** The table, as the store spells it. */
  table: string;
  /** Its store key (table/names.ts). */
  key: string;
  /** Path of the file written. */
  file: string;
  txnFirst: bigint;
  txnLast: bigint;
  /** Pending txns in the file, fences and undecodable ones included. */
  txns: number;
  /** Rows of those txns. */
  rows: number;
  /** Txns whose bytes did not decode: each is a comment; its bytes stay in the moved-aside database. */
  undecodableTxns: number;
}

export interface WriteDivergenceOptions {
  /** Directory of the files (`<data dir>/divergence`); created when there is something to write. */
  dir: string;
  /** The epoch in the file names and headers. */
  epoch: bigint;
  tables: DivergenceSource;
  /** Called once per file written. */
  log?: (summary: DivergenceSummary) => void;
  /** Encoded bytes read from the pending queue at a time (default PENDING_CHUNK_BYTES). */
  chunkBytes?: number;
  /**
   * The node's `replication.ack.mode` (default 'local', the key's default): the header says whether
   * clients were told these rows were written (local) or not (durable), which decides whether
   * replaying the file restores lost rows or duplicates rows the clients sent again.
   */
  ackMode?: AckMode;
}

/**
 * Writes every table's pending txns to `<dir>/<epoch>-<key>.ilp` (RFC-0002 "Fenced means"): a
 * header saying what the rows are, then renderTxnAsIlp of each txn in order. Each file is written
 * to a temp file, fsynced, and hard-linked to its name — which never replaces an existing file, so
 * a taken name gets `-2`, `-3` … — then the directory is fsynced. Reads the queue in chunks of
 * `chunkBytes`. Returns one summary per file, in table order; [] (and no directory) when nothing is
 * pending. Throws `DIVERGENCE_WRITE_FAILED` (kind unavailable) when the file system refuses; a
 * complete temp file that could not be linked is kept and named in the message.
 */
export async function writeDivergenceFiles(options: WriteDivergenceOptions): Promise<DivergenceSummary[]> {
  assert(options.epoch >= 0n, 'an epoch is never negative');
  const chunkBytes = options.chunkBytes ?? PENDING_CHUNK_BYTES;
  assert(Number.isSafeInteger(chunkBytes) && chunkBytes > 0, 'chunkBytes must be a positive integer');
  const tables = options.tables.pendingSummary();
  if (tables.length === 0) return [];
  await fsStep(`create the divergence directory ${options.dir}`, () =>
    mkdir(options.dir, { recursive: true }),
  );
  const summaries: DivergenceSummary[] = [];
  for (const { table } of tables) {
    const summary = await writeTableFile(options, table, chunkBytes);
    if (summary === undefined) continue;
    summaries.push(summary);
    options.log?.(summary);
  }
  await fsStep(`sync the divergence directory ${options.dir}`, () => syncDirectory(options.dir));
  return summaries;
}

interface Tally {
  txnFirst: bigint;
  txnLast: bigint;
  txns: number;
  rows: number;
  undecodableTxns: number;
}

/** One table's file; undefined when its queue emptied since the summary (nothing written then). */
async function writeTableFile(
  options: WriteDivergenceOptions,
  table: string,
  chunkBytes: number,
): Promise<DivergenceSummary | undefined> {
  const key = tableKey(table);
  const temp = await createTempFile(options.dir);
  let tally: Tally;
  try {
    const output = new FileOutput(temp.handle);
    tally = await writeBody(output, options, table, key, chunkBytes);
    await temp.handle.sync();
  } catch (error) {
    await temp.handle.close().catch(() => {});
    await unlink(temp.path).catch(() => {});
    // Only the file system's errors are operating errors; anything else is a bug and stays as it is.
    if (isWalshipError(error) || errorCode(error) === undefined) throw error;
    throw fsError(`write the divergence file of table ${JSON.stringify(table)}`, error);
  }
  await fsStep(`close ${temp.path}`, () => temp.handle.close());
  if (tally.txns === 0) {
    await fsStep(`remove ${temp.path}`, () => unlink(temp.path));
    return undefined;
  }
  const file = await linkWithoutOverwrite(temp.path, options.dir, baseName(options.epoch, key));
  await fsStep(`remove ${temp.path}`, () => unlink(temp.path));
  return { table, key, file, ...tally };
}

/** The header, then every pending txn; the header's tally line is written last, in place. */
async function writeBody(
  output: FileOutput,
  options: WriteDivergenceOptions,
  table: string,
  key: string,
  chunkBytes: number,
): Promise<Tally> {
  output.append(headerText(table, key, options.epoch, options.ackMode ?? 'local'));
  const tallyAt = output.bytesAppended();
  output.append(`${' '.repeat(TALLY_LINE_CHARS)}\n`);
  const tally: Tally = { txnFirst: 0n, txnLast: 0n, txns: 0, rows: 0, undecodableTxns: 0 };
  let afterTxn = 0n;
  for (;;) {
    const chunk = options.tables.pending(table, { afterTxn, limitBytes: chunkBytes });
    if (chunk.length === 0) break;
    for (const pending of chunk) {
      assert(pending.txn > afterTxn, 'the pending queue is read in txn order');
      afterTxn = pending.txn;
      if (tally.txns === 0) tally.txnFirst = pending.txn;
      tally.txnLast = pending.txn;
      tally.txns++;
      const record = decodePending(pending.txn, pending.bytes);
      if (typeof record === 'string') {
        tally.undecodableTxns++;
        output.append(`# txn ${pending.txn}: could not be decoded (${record}); not written\n`);
        continue;
      }
      tally.rows += record.kind === 'data' ? record.rowCount : 0;
      for (const piece of renderTxnPieces(table, record)) {
        output.append(piece);
        if (output.bufferedChars() >= WRITE_BUFFER_CHARS) await output.flush();
      }
    }
  }
  await output.flush();
  await output.writeAt(tallyAt, tallyLine(tally));
  return tally;
}

/** The record in `bytes`, or why it could not be decoded. */
function decodePending(txn: bigint, bytes: Uint8Array): TxnRecord | string {
  let record: TxnRecord;
  try {
    record = decodeTxnRecord(bytes);
  } catch (error) {
    if (isWalshipError(error) && error.kind === 'data') return error.message.replace(/[\r\n]+/g, ' ');
    throw error;
  }
  return record.txn === txn ? record : `the record says txn ${record.txn}`;
}

function headerText(table: string, key: string, epoch: bigint, ackMode: AckMode): string {
  return [
    `# walship divergence file: table ${JSON.stringify(table)} (store key ${key}), epoch ${epoch}.`,
    ...(ackMode === 'durable' ? DURABLE_HEADER : LOCAL_HEADER),
    '# Designated timestamps are in nanoseconds (precision=n, the ILP default), or in µs where marked `t`.',
    '# Values ILP text cannot carry (double arrays) are in "# row N column" comments as JSON.',
    '',
  ].join('\n');
}

/**
 * `replication.ack.mode=local`: a write was answered once committed here, so these rows were
 * acknowledged; only a request the crash cut before its answer may have been sent again.
 */
const LOCAL_HEADER = [
  '# replication.ack.mode=local: this node committed these rows and answered their writes (204), but',
  '# they never reached the object store before it was replaced (RFC-0002),',
  '# so the cluster does not have them, except rows of a request whose answer a crash cut off: its client',
  '# may have sent it again to the new primary. Review them (look for rows the cluster already holds, by',
  '# designated timestamp), then replay what should be kept with any ILP client,',
  '# e.g. curl --data-binary @<file> "http://<primary>:9000/write?precision=n"',
];

/**
 * `replication.ack.mode=durable`: a write is answered only once it is in the store, so none of these
 * was acknowledged; a client that retries has sent them again, most likely to the new primary.
 */
const DURABLE_HEADER = [
  '# replication.ack.mode=durable: this node committed these rows locally but NEVER acknowledged them: a',
  '# write is answered only once it is in the object store, and these never got there before the node was',
  '# replaced (RFC-0002). Their clients got an error or no answer; a client that retries has sent them',
  '# again, most likely to the new primary, so the cluster probably holds most of them already.',
  '# Do NOT replay this file as it is: that duplicates every row the clients re-sent. Keep only the rows',
  '# the cluster lacks (compare by designated timestamp and values, e.g. on this node once it follows),',
  '# then replay those with any ILP client, e.g. curl --data-binary @<file> "http://<primary>:9000/write?precision=n"',
];

function tallyLine(tally: Tally): string {
  const undecodable = tally.undecodableTxns === 0 ? '' : `, ${tally.undecodableTxns} could not be decoded`;
  const line = `# txns ${tally.txnFirst}..${tally.txnLast}: ${tally.txns} txns, ${tally.rows} rows${undecodable}`;
  assert(line.length <= TALLY_LINE_CHARS, 'the tally line fits the space reserved for it');
  return line;
}

/** Buffers text and writes it at increasing positions; `writeAt` patches earlier bytes. */
class FileOutput {
  private readonly handle: FileHandle;
  private buffered: string[] = [];
  private chars = 0;
  private position = 0;
  private pendingBytes = 0;

  constructor(handle: FileHandle) {
    this.handle = handle;
  }

  append(text: string): void {
    this.buffered.push(text);
    this.chars += text.length;
    this.pendingBytes += Buffer.byteLength(text, 'utf8');
  }

  bufferedChars(): number {
    return this.chars;
  }

  /** Bytes appended so far, written or not: the position the next append lands at. */
  bytesAppended(): number {
    return this.position + this.pendingBytes;
  }

  async flush(): Promise<void> {
    const bytes = Buffer.from(this.buffered.join(''), 'utf8');
    this.buffered = [];
    this.chars = 0;
    this.pendingBytes = 0;
    await this.writeAt(this.position, bytes);
    this.position += bytes.length;
  }

  async writeAt(position: number, data: string | Buffer): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
  }
}

let tempCounter = 0;

/** A new, exclusively created hidden temp file in `dir`. */
async function createTempFile(dir: string): Promise<{ path: string; handle: FileHandle }> {
  for (let attempt = 0; attempt < FILE_SUFFIX_MAX; attempt++) {
    const path = join(dir, `.divergence-${process.pid}-${++tempCounter}.tmp`);
    try {
      return { path, handle: await open(path, 'wx') };
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw fsError(`create ${path}`, error);
    }
  }
  throw fsError(`create a temp file in ${dir}`, new Error(`${FILE_SUFFIX_MAX} names were taken`));
}

/** `<epoch>-<key>`, the key cut so that `<base>-1000.ilp` fits in FILE_NAME_BYTES_MAX. */
function baseName(epoch: bigint, key: string): string {
  const prefix = `${epoch}-`;
  const budget = FILE_NAME_BYTES_MAX - prefix.length - `-${FILE_SUFFIX_MAX}.ilp`.length;
  if (key.length <= budget) return prefix + key;
  let cut = key.slice(0, budget);
  // Never end on half a `%XX` escape (keys are ASCII, so chars are bytes).
  const percent = cut.lastIndexOf('%');
  if (percent >= cut.length - 2) cut = cut.slice(0, percent);
  return prefix + cut;
}

/** Links `temp` to the first free name of `<base>.ilp`, `<base>-2.ilp` …; never replaces a file. */
async function linkWithoutOverwrite(temp: string, dir: string, base: string): Promise<string> {
  for (let n = 1; n <= FILE_SUFFIX_MAX; n++) {
    const file = join(dir, `${base}${n === 1 ? '' : `-${n}`}.ilp`);
    try {
      await link(temp, file);
      return file;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw fsError(`link ${file} (the complete file is ${temp})`, error);
    }
  }
  throw fsError(
    `name the divergence file (the complete file is ${temp})`,
    new Error(`${base}.ilp through ${base}-${FILE_SUFFIX_MAX}.ilp are taken`),
  );
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsStep<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw fsError(doing, error);
  }
}

function fsError(doing: string, cause: unknown): WalshipError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new WalshipError('DIVERGENCE_WRITE_FAILED', 'unavailable', `could not ${doing}: ${why}`, { cause });
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
