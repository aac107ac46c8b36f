import { Buffer, isUtf8 } from 'node:buffer';
import { assert } from '../core/index.js';
import type { DecimalValue } from '../wal/index.js';
import { type BinaryCursor, readBinaryValue } from './binary-field.js';
import type { IlpLine } from './ilp-line.js';
import { IlpParseError } from './ilp-parse-error.js';
import { type IlpLimits, resolveIlpLimits } from './limits.js';
import {
  CELL_BOOLEAN,
  CELL_DECIMAL,
  CELL_DOUBLE,
  CELL_LONG,
  CELL_LONG_BIG,
  CELL_STRING,
  CELL_SYMBOL,
  CELL_TIMESTAMP,
  CELL_TIMESTAMP_BIG,
  IlpLineBatch,
  TS_BIG,
  TS_NONE,
  TS_NUMBER,
} from './line-batch.js';
import { isValidColumnName, isValidTableName, type NameEntry, TokenCache } from './names.js';
import {
  type Precision,
  parsePrecision,
  type TimestampUnit,
  UNIT_MS,
  UNIT_NS,
  UNIT_US,
  unitOfPrecision,
} from './precision.js';
import {
  isIntegerText,
  parseDecimalText,
  parseDouble,
  parseInt64Number,
  parseTimestampMicrosNumber,
} from './text-numbers.js';

/**
 * The ILP parser: text v1 plus the binary fields of v2/v3, on the bytes of a request.
 *
 * It writes the lines into an IlpLineBatch (line-batch.ts: columns of lines and cells, no object per
 * line, field or cell). It works on a latin1 view of the bytes (char i is byte i, one C++ call per window), so scanning
 * is `charCodeAt` and an ASCII token is a cheap `slice`; only tokens with non-ASCII bytes are
 * validated and decoded as UTF-8, and only tokens with escapes are copied. Names are decoded,
 * validated and folded once and then shared through a cache. Binary values are read from the bytes
 * at the same offsets. Grammar, as QuestDB's LineTcpParser:
 *
 *   line      = table ("," name "=" symbol)* [" " field ("," field)*] [" " timestamp] [" "] EOL
 *   field     = name "=" (quoted-string | "=" binary | token)    — an empty token is a null field
 *   EOL       = LF | CR LF | CR | end of input (last line only)
 *
 * Empty lines, blank lines and lines starting with `#` are skipped but counted in line numbers.
 */

const LF = 10;
const CR = 13;
const TAB = 9;
const SPACE = 32;
const QUOTE = 34;
const HASH = 35;
const COMMA = 44;
const EQUALS = 61;
const BACKSLASH = 92;
const NUL = 0;
/** `delimiter()` at the end of the input (full mode only). */
const END = -1;

/** Chars that end or interrupt a token outside quoted strings. */
const SPECIAL = new Uint8Array(256);
for (const c of [LF, CR, SPACE, COMMA, EQUALS, BACKSLASH, NUL]) SPECIAL[c] = 1;

/** Bytes of the request decoded to one latin1 string at a time: bounds that string's size. */
const WINDOW_BYTES = 16 * 1024 * 1024;
/** The window of parseIlpInSlices: decoding it is one synchronous step, so it is kept small. */
const SLICED_WINDOW_BYTES = 4 * 1024 * 1024;
/** Characters of a name or value quoted in an error message. */
const MESSAGE_VALUE_CHARS = 64;

const TABLE_NAMES = new TokenCache<NameEntry>();
const COLUMN_NAMES = new TokenCache<NameEntry>();
/** ASCII symbol values without escapes: the token is the value, so the cache shares one string. */
const SYMBOL_VALUES = new TokenCache<string>();

/**
 * How a parser treats the end of its bytes and the line limit:
 * - WHOLE: the end of the input ends the last line; more than maxLinesPerRequest lines is an error;
 * - WINDOW: a window of a larger input: a line cut by the end waits for the next window; the line
 *   limit counts over all windows (the lines array is shared), so passing it is still an error;
 * - STREAM: a TCP batch: a cut line waits for more bytes, and the batch simply ends at the limit.
 */
type ParseMode = 0 | 1 | 2;
const WHOLE: ParseMode = 0;
const WINDOW: ParseMode = 1;
const STREAM: ParseMode = 2;

/** Thrown inside the parser (never out of it) when a partial parse runs out of bytes mid-line. */
class IncompleteLine extends Error {}
const INCOMPLETE = new IncompleteLine('incomplete line');

export interface ParseIlpOptions {
  /** Unit of bare designated timestamps. */
  precision: Precision;
  limits?: Partial<IlpLimits>;
}

/**
 * Every line of one request, in order, or throws `IlpParseError` (code `ILP_PARSE`, `details.line`)
 * for the first bad line; nothing else for any input. The last line may lack its LF. Throws a
 * WalshipError `ILP_PRECISION` for an unsupported precision and `InvalidArgumentError` for bad limit
 * overrides (programmer errors, not input errors).
 */
export function parseIlp(body: Uint8Array, options: ParseIlpOptions): IlpLine[] {
  return parseIlpInWindows(body, options, WINDOW_BYTES);
}

/** `parseIlp` into one IlpLineBatch: the same lines and errors, without an object per line. */
export function parseIlpBatch(body: Uint8Array, options: ParseIlpOptions): IlpLineBatch {
  return parseBatchInWindows(body, options, WINDOW_BYTES);
}

/**
 * `parseIlp` decoding at most `windowBytes` at a time (raised to 2 × maxLineBytes + 2, so that a
 * window always ends with a complete line). Same result as `parseIlp` for any window size; tests
 * use small windows to check that.
 */
export function parseIlpInWindows(
  body: Uint8Array,
  options: ParseIlpOptions,
  windowBytes: number,
): IlpLine[] {
  return parseBatchInWindows(body, options, windowBytes).toLines();
}

function parseBatchInWindows(body: Uint8Array, options: ParseIlpOptions, windowBytes: number): IlpLineBatch {
  const limits = resolveIlpLimits(options.limits);
  const unit = unitOfPrecision(parsePrecision(options.precision));
  const bytes = asBuffer(body);
  const batch = new IlpLineBatch();
  const window = Math.max(windowBytes, 2 * limits.maxLineBytes + 2);
  let offset = 0;
  let lineNumber = 1;
  while (offset < bytes.length) {
    const windowEnd = Math.min(bytes.length, offset + window);
    const last = windowEnd === bytes.length;
    const mode = last ? WHOLE : WINDOW;
    const parser = new IlpParser(
      bytes.subarray(offset, windowEnd),
      limits,
      unit,
      mode,
      lineNumber,
      batch.lineCount,
      batch,
    );
    parser.run();
    if (last) break;
    assert(parser.consumedBytes > 0, 'an ILP window longer than any line must end with a complete line');
    offset += parser.consumedBytes;
    lineNumber = parser.consumedLineNumber;
  }
  return batch;
}

export interface CompleteIlpLines {
  lines: IlpLine[];
  /** Bytes used by `lines` (and any empty or comment lines among them); the rest is an incomplete line. */
  consumedBytes: number;
  /** The line number the first unconsumed line will have. */
  nextLineNumber: number;
}

/**
 * For streams (TCP): the complete lines at the start of `bytes`, each ending with LF or CR LF
 * (binary values may hold LF bytes, so a stream cannot be split on LF beforehand). A line cut off
 * by the end of `bytes` is left unconsumed; bad lines throw `IlpParseError` as in `parseIlp`,
 * numbered from `firstLineNumber`. Returns at most `limits.maxLinesPerRequest` lines.
 */
export function parseCompleteIlpLines(
  bytes: Uint8Array,
  options: ParseIlpOptions & { firstLineNumber?: number },
): CompleteIlpLines {
  const { batch, consumedBytes, nextLineNumber } = parseCompleteIlpBatch(bytes, options);
  return { lines: batch.toLines(), consumedBytes, nextLineNumber };
}

/** `parseCompleteIlpLines` into an IlpLineBatch (the TCP surface's parse). */
export function parseCompleteIlpBatch(
  bytes: Uint8Array,
  options: ParseIlpOptions & { firstLineNumber?: number },
): { batch: IlpLineBatch; consumedBytes: number; nextLineNumber: number } {
  const limits = resolveIlpLimits(options.limits);
  const unit = unitOfPrecision(parsePrecision(options.precision));
  const batch = new IlpLineBatch();
  const parser = new IlpParser(asBuffer(bytes), limits, unit, STREAM, options.firstLineNumber ?? 1, 0, batch);
  parser.run();
  return { batch, consumedBytes: parser.consumedBytes, nextLineNumber: parser.consumedLineNumber };
}

/**
 * How much one synchronous slice of `parseIlpInSlices` parses before it hands its lines over and
 * yields the event loop: whichever bound comes first. ~2 k lines of ~100 bytes parse (and are built
 * into columns by the usual sink) in a few ms, so lease renewals, `/ping` and `/status` wait at most
 * that long behind a maximum-size request.
 */
export const PARSE_SLICE_LINES = 2048;
export const PARSE_SLICE_BYTES = 256 * 1024;

export interface ParseIlpInSlicesOptions extends ParseIlpOptions {
  /** Awaited between slices. Default: one turn of the event loop (setImmediate). */
  pause?: () => Promise<void>;
  /** Overrides of PARSE_SLICE_LINES / PARSE_SLICE_BYTES (tests use small slices). */
  sliceLines?: number;
  sliceBytes?: number;
}

/**
 * `parseIlp` that never holds the event loop for long: it parses a slice of lines (see
 * PARSE_SLICE_LINES), hands them to `sink` as a batch, awaits `pause`, and goes on, so no line of
 * an earlier slice is kept: the sink must take what it needs before it returns (the same batch is
 * cleared and refilled for the next slice). Same lines,
 * same errors as `parseIlp`; a rejection (IlpParseError for the first bad line) may come after
 * earlier slices went to the sink, so the consumer must discard what it built then. Resolves with
 * the number of lines.
 */
export async function parseIlpInSlices(
  body: Uint8Array,
  options: ParseIlpInSlicesOptions,
  sink: (batch: IlpLineBatch) => void,
): Promise<number> {
  const limits = resolveIlpLimits(options.limits);
  const unit = unitOfPrecision(parsePrecision(options.precision));
  const pause = options.pause ?? nextTurn;
  const sliceLines = options.sliceLines ?? PARSE_SLICE_LINES;
  const sliceBytes = options.sliceBytes ?? PARSE_SLICE_BYTES;
  const bytes = asBuffer(body);
  const window = Math.max(SLICED_WINDOW_BYTES, 2 * limits.maxLineBytes + 2);
  let offset = 0;
  let lineNumber = 1;
  let count = 0;
  const batch = new IlpLineBatch();
  while (offset < bytes.length) {
    if (offset > 0) await pause();
    const windowEnd = Math.min(bytes.length, offset + window);
    const last = windowEnd === bytes.length;
    const parser = new IlpParser(
      bytes.subarray(offset, windowEnd),
      limits,
      unit,
      last ? WHOLE : WINDOW,
      lineNumber,
      count,
      batch,
    );
    for (;;) {
      const more = parser.run(sliceLines, sliceBytes);
      count = parser.lineCount;
      if (batch.lineCount > 0) sink(batch);
      batch.clear();
      if (!more) break;
      await pause();
    }
    if (last) break;
    assert(parser.consumedBytes > 0, 'an ILP window longer than any line must end with a complete line');
    offset += parser.consumedBytes;
    lineNumber = parser.consumedLineNumber;
  }
  return count;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** One pass over one window of bytes. Not reusable. */
class IlpParser implements BinaryCursor {
  readonly buf: Buffer;
  readonly view: DataView;
  pos = 0;
  consumedBytes = 0;
  consumedLineNumber: number;

  private readonly text: string;
  private readonly end: number;
  private readonly limits: IlpLimits;
  private readonly unit: TimestampUnit;
  /** True: running out of bytes mid-line is "wait for more", not an error (WINDOW and STREAM). */
  private readonly partial: boolean;
  /** True: stop, without an error, once maxLinesPerRequest lines are parsed (STREAM). */
  private readonly stopAtMaxLines: boolean;
  /** Where the lines go; the caller takes them between runs. */
  private readonly batch: IlpLineBatch;
  /** Lines of the whole request so far, earlier windows included: what maxLinesPerRequest bounds. */
  lineCount: number;

  private lineNumber: number;
  /** Scans stop here: the end of the input, or one byte past the longest allowed line. */
  private lineLimit = 0;
  private lineLimitIsLength = false;
  /** The last token scanned: OR of its chars (>= 0x80: non-ASCII) and whether it holds escapes. */
  private tokenBits = 0;
  /** Hash of the last scanned token's raw chars, for the token caches. */
  private tokenHash = 0;
  private tokenEscaped = false;
  private table = '';
  /** Folded names of the current line's columns, for duplicate detection. */
  private readonly seen: string[] = [];
  private seenCount = 0;
  private seenSet: Set<string> | null = null;
  /** The designated timestamp of the line being parsed: TS_NONE, TS_NUMBER or TS_BIG. */
  private timestampKind = TS_NONE;
  private timestampNum = 0;
  private timestampBig: bigint | undefined;

  constructor(
    buf: Buffer,
    limits: IlpLimits,
    unit: TimestampUnit,
    mode: ParseMode,
    firstLineNumber: number,
    linesBefore: number,
    batch: IlpLineBatch,
  ) {
    this.buf = buf;
    this.batch = batch;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.text = buf.toString('latin1');
    this.end = buf.length;
    this.limits = limits;
    this.unit = unit;
    this.partial = mode !== WHOLE;
    this.stopAtMaxLines = mode === STREAM;
    this.lineCount = linesBefore;
    this.lineNumber = firstLineNumber - 1;
    this.consumedLineNumber = firstLineNumber;
  }

  /**
   * Parses lines until the end of the bytes (or, partial, the last complete line), or until this
   * call added `maxLines` lines or consumed `maxBytes` bytes; true when stopped by those bounds with
   * bytes left, so another call goes on from the next line.
   */
  run(maxLines = Number.POSITIVE_INFINITY, maxBytes = Number.POSITIVE_INFINITY): boolean {
    const startCount = this.lineCount;
    const startPos = this.pos;
    try {
      while (this.pos < this.end) {
        if (this.stopAtMaxLines && this.lineCount >= this.limits.maxLinesPerRequest) return false;
        if (this.lineCount - startCount >= maxLines || this.pos - startPos >= maxBytes) return true;
        this.startLine();
        this.parseLine();
        this.consumedBytes = this.pos;
        this.consumedLineNumber = this.lineNumber + 1;
      }
    } catch (e) {
      this.batch.abortLine();
      if (e !== INCOMPLETE) throw e;
    }
    return false;
  }

  /** BinaryCursor: returns when `byteCount` bytes follow `pos` within the line. */
  require(byteCount: number): void {
    if (this.pos + byteCount <= this.lineLimit) return;
    if (this.lineLimitIsLength) this.failTooLong();
    if (this.partial) throw INCOMPLETE;
    this.fail('truncated binary value');
  }

  /** Throws the parse error `what` for the current line. */
  fail(what: string): never {
    throw new IlpParseError(this.lineNumber, what);
  }

  private failTooLong(): never {
    throw new IlpParseError(this.lineNumber, `line too long: more than ${this.limits.maxLineBytes} bytes`, {
      tooLarge: true,
    });
  }

  private startLine(): void {
    this.lineNumber++;
    const lengthLimit = this.pos + this.limits.maxLineBytes + 1;
    this.lineLimitIsLength = lengthLimit <= this.end;
    this.lineLimit = this.lineLimitIsLength ? lengthLimit : this.end;
  }

  /**
   * A scan reached `lineLimit` without finding the line's end: the line is too long, or (partial
   * mode) more bytes are needed, or (full mode) the input ended and so did the line — the only
   * case that returns.
   */
  private hitLimit(): void {
    if (this.lineLimitIsLength) this.failTooLong();
    if (this.partial) throw INCOMPLETE;
  }

  private parseLine(): void {
    const c = this.text.charCodeAt(this.pos);
    if (c === HASH) this.skipComment();
    else if (c === LF || c === CR || ((c === SPACE || c === TAB) && this.skipBlank())) this.finishLine();
    else this.parseMeasurement();
  }

  /** Consumes the line terminator at `pos` (the caller has seen one, or the end of the input). */
  private finishLine(): void {
    const p = this.pos;
    if (p >= this.lineLimit) {
      this.hitLimit();
      return;
    }
    const c = this.text.charCodeAt(p);
    if (c === LF) {
      this.pos = p + 1;
    } else if (c === CR) {
      // A CR LF pair is one terminator; a lone CR ends a line too, as in QuestDB. A CR at the very
      // end of a partial buffer waits for the next byte, so CR LF is never split into two lines.
      if (p + 1 < this.end) this.pos = this.text.charCodeAt(p + 1) === LF ? p + 2 : p + 1;
      else if (this.partial) throw INCOMPLETE;
      else this.pos = p + 1;
    } else {
      this.fail(`unexpected character '${String.fromCharCode(c)}' at the end of the line`);
    }
  }

  /** Skips spaces and tabs; true when only a line terminator (or the end) follows them. */
  private skipBlank(): boolean {
    let p = this.pos;
    while (p < this.lineLimit && (this.text.charCodeAt(p) === SPACE || this.text.charCodeAt(p) === TAB)) p++;
    const c = p < this.lineLimit ? this.text.charCodeAt(p) : END;
    if (c !== LF && c !== CR && c !== END) return false;
    this.pos = p;
    return true;
  }

  private skipComment(): void {
    const lf = this.buf.indexOf(LF, this.pos);
    const contentEnd = lf === -1 || lf >= this.lineLimit ? this.lineLimit : lf;
    if (contentEnd === this.lineLimit) this.hitLimit();
    if (!isAscii(this.text, this.pos, contentEnd) && !isUtf8(this.buf.subarray(this.pos, contentEnd))) {
      this.fail('invalid UTF-8 in a comment line');
    }
    this.pos = contentEnd;
    this.finishLine();
  }

  private parseMeasurement(): void {
    const lineNumber = this.lineNumber;
    const table = this.readName(true);
    this.table = table.name;
    this.batch.startLine(lineNumber, table);
    this.seenCount = 0;
    this.seenSet = null;
    this.timestampKind = TS_NONE;
    this.timestampBig = undefined;
    let c = this.delimiter();
    const hasSymbols = c === COMMA;
    if (hasSymbols) c = this.readSymbols();
    if (c === SPACE) {
      this.pos++;
      c = this.delimiter();
      if (c !== LF && c !== CR && c !== END) this.readFieldsAndTimestamp(hasSymbols);
    } else if (c === EQUALS) {
      this.fail(`unexpected '=' after table name: ${clip(this.table)}`);
    }
    if (this.seenCount === 0) this.fail('No fields were provided');
    this.finishLine();
    if (this.lineCount >= this.limits.maxLinesPerRequest) {
      throw new IlpParseError(
        lineNumber,
        `too many lines in one request: more than ${this.limits.maxLinesPerRequest}`,
        { tooLarge: true },
      );
    }
    this.lineCount++;
    this.batch.endLine(this.timestampKind, this.timestampNum, this.timestampBig);
  }

  /** Reads `,name=value` pairs from `pos` (at a comma); returns the delimiter after the last one. */
  private readSymbols(): number {
    let c = COMMA;
    while (c === COMMA) {
      this.pos++;
      const entry = this.readName(false);
      if (this.delimiter() !== EQUALS) {
        this.fail(`Could not parse entire line. Symbol value is missing: ${clip(entry.name)}`);
      }
      this.pos++;
      this.addColumn(entry);
      this.batch.addRef(entry, CELL_SYMBOL, this.readSymbolValue(entry.name));
      c = this.delimiter();
    }
    return c;
  }

  private readSymbolValue(name: string): string {
    const start = this.pos;
    this.scanToken();
    if (this.delimiter() === EQUALS) {
      this.fail(`Could not parse entire line, tag value is invalid. Tag: ${clip(name)}; unexpected '='`);
    }
    const end = this.pos;
    if (this.tokenBits < 0x80 && !this.tokenEscaped && end - start <= TokenCache.MAX_TOKEN_CHARS) {
      const hash = this.tokenHash;
      const cached = SYMBOL_VALUES.get(this.text, start, end, hash);
      if (cached !== undefined) return cached;
      const value = this.text.slice(start, end);
      SYMBOL_VALUES.set(this.text, start, end, hash, value);
      return value;
    }
    const value = this.decodeToken(start, end);
    if (value === null) this.fail(`invalid UTF-8 in symbol value. Tag: ${clip(name)}`);
    return value;
  }

  /**
   * Reads the field set (from `pos`, just past the space) into the batch and the optional
   * timestamp into `this.timestamp…`. A lone token right after the symbols, with no `=`, is the
   * timestamp of a line without fields.
   */
  private readFieldsAndTimestamp(hasSymbols: boolean): void {
    for (let first = true; ; first = false) {
      const nameStart = this.pos;
      this.scanToken();
      const c = this.delimiter();
      if (c !== EQUALS) {
        if (this.pos === nameStart) this.fail(`table: ${clip(this.table)}; column name is missing`);
        if (first && hasSymbols && (c === LF || c === CR || c === END)) {
          this.pos = nameStart;
          this.readTimestamp();
          return;
        }
        this.fail(
          `Could not parse entire line. Field value is missing: ${this.showBytes(nameStart, this.pos)}`,
        );
      }
      const entry = this.resolveName(nameStart, this.pos, false);
      this.pos++;
      this.addColumn(entry);
      this.readFieldValue(entry);
      const next = this.delimiter();
      if (next === COMMA) {
        this.pos++;
      } else if (next === SPACE) {
        this.pos++;
        this.readTimestamp();
        return;
      } else if (next === LF || next === CR || next === END) {
        return;
      } else {
        this.fail(
          `Could not parse entire line, unexpected '${String.fromCharCode(next)}' after field ${clip(entry.name)}`,
        );
      }
    }
  }

  /** The char at `pos`, or END at the end of the input (full mode; partial mode throws). */
  private delimiter(): number {
    if (this.pos < this.lineLimit) return this.text.charCodeAt(this.pos);
    this.hitLimit();
    return END;
  }

  /** Records a column of the line; fails on a duplicate (case-insensitive) or too many columns. */
  private addColumn(entry: NameEntry): void {
    const count = this.seenCount;
    if (count >= this.limits.maxColumnsPerLine)
      this.fail(`too many columns: more than ${this.limits.maxColumnsPerLine}`);
    const folded = entry.folded;
    let duplicate = false;
    if (this.seenSet !== null) {
      duplicate = this.seenSet.has(folded);
      this.seenSet.add(folded);
    } else {
      // Linear search is fastest for typical lines; a set keeps 2048-column lines linear overall.
      const seen = this.seen;
      for (let i = 0; i < count; i++) if (seen[i] === folded) duplicate = true;
      if (count >= 32) this.seenSet = new Set(seen.slice(0, count)).add(folded);
    }
    if (duplicate) this.fail(`table: ${clip(this.table)}; duplicate column name: ${clip(entry.name)}`);
    this.seen[count] = folded;
    this.seenCount = count + 1;
  }

  /**
   * Scans a token from `pos` to the next unescaped space, comma, `=`, CR or LF (or the end of the
   * input): leaves `pos` there and records the token's bits and escapes. A backslash escapes any
   * one byte; a NUL byte outside a quoted string is an error, as in QuestDB.
   */
  private scanToken(): void {
    const text = this.text;
    const limit = this.lineLimit;
    let p = this.pos;
    let bits = 0;
    let hash = 0;
    let escaped = false;
    for (;;) {
      if (p >= limit) {
        this.pos = limit;
        this.hitLimit();
        break;
      }
      const c = text.charCodeAt(p);
      if (SPECIAL[c] === 0) {
        bits |= c;
        hash = (Math.imul(hash, 31) + c) | 0;
        p++;
      } else if (c === BACKSLASH) {
        if (p + 1 >= limit) {
          this.pos = limit;
          this.hitLimit();
          this.fail('the line ends with a lone backslash');
        }
        const next = text.charCodeAt(p + 1);
        bits |= next;
        hash = (Math.imul(hash, 961) + Math.imul(c, 31) + next) | 0;
        escaped = true;
        p += 2;
      } else if (c === NUL) {
        this.pos = p;
        this.fail('unexpected NUL byte outside a quoted string');
      } else {
        break;
      }
    }
    this.pos = p;
    this.tokenBits = bits;
    this.tokenHash = hash ^ (hash >>> 15);
    this.tokenEscaped = escaped;
  }

  /** The last scanned token [start, end) as a string, escapes removed; null for invalid UTF-8. */
  private decodeToken(start: number, end: number): string | null {
    const ascii = this.tokenBits < 0x80;
    if (!this.tokenEscaped) {
      if (ascii) return this.text.slice(start, end);
      const bytes = this.buf.subarray(start, end);
      return isUtf8(bytes) ? bytes.toString('utf8') : null;
    }
    const bytes = Buffer.allocUnsafe(end - start);
    let length = 0;
    for (let p = start; p < end; p++) {
      let b = this.buf[p]!;
      if (b === BACKSLASH) b = this.buf[++p]!;
      bytes[length++] = b;
    }
    const unescaped = bytes.subarray(0, length);
    if (ascii) return unescaped.toString('latin1');
    return isUtf8(unescaped) ? unescaped.toString('utf8') : null;
  }

  /** Reads a table (isTable) or column name at `pos`, validated, from the cache when seen before. */
  private readName(isTable: boolean): NameEntry {
    const start = this.pos;
    this.scanToken();
    return this.resolveName(start, this.pos, isTable);
  }

  /** The name of the token just scanned, [start, end). */
  private resolveName(start: number, end: number, isTable: boolean): NameEntry {
    if (end === start) {
      if (isTable) this.fail('table name is missing');
      this.fail(`table: ${clip(this.table)}; column name is missing`);
    }
    const cache = isTable ? TABLE_NAMES : COLUMN_NAMES;
    const hash = this.tokenHash;
    const cached = cache.get(this.text, start, end, hash);
    if (cached !== undefined && cached.byteLength <= this.limits.maxNameBytes) return cached;
    const entry = this.decodeName(start, end, isTable);
    cache.set(this.text, start, end, hash, entry);
    return entry;
  }

  private decodeName(start: number, end: number, isTable: boolean): NameEntry {
    const name = this.decodeToken(start, end);
    const ascii = this.tokenBits < 0x80;
    if (name === null) {
      this.fail(
        isTable ? 'invalid UTF-8 in table name' : `table: ${clip(this.table)}; invalid UTF-8 in column name`,
      );
    }
    const max = this.limits.maxNameBytes;
    if (isTable && !isValidTableName(name, max, ascii)) this.fail(`table: ${clip(name)}; invalid table name`);
    if (!isTable && !isValidColumnName(name, max, ascii)) {
      this.fail(`table: ${clip(this.table)}; invalid column name: ${clip(name)}`);
    }
    const byteLength = ascii ? name.length : Buffer.byteLength(name, 'utf8');
    return { name, folded: name.toLowerCase(), byteLength };
  }

  /** A field's value at `pos` (just past `=`), as a cell; none for an empty value (a null field, as QuestDB). */
  private readFieldValue(column: NameEntry): void {
    const name = column.name;
    const c = this.delimiter();
    if (c === QUOTE) {
      this.batch.addRef(column, CELL_STRING, this.readString(name));
      return;
    }
    if (c === EQUALS) {
      this.pos++;
      readBinaryValue(this, this.limits, column, this.batch);
      return;
    }
    const start = this.pos;
    this.scanToken();
    const end = this.pos;
    if (this.delimiter() === EQUALS) this.failValue(name, start, end, "unexpected '='");
    if (end === start) return;
    if (this.tokenBits >= 0x80) this.failValue(name, start, end);
    if (!this.tokenEscaped) {
      this.classify(this.text, start, end, column);
      return;
    }
    const unescaped = this.decodeToken(start, end)!;
    this.classify(unescaped, 0, unescaped.length, column);
  }

  /** Types an unquoted field value by its last char, as QuestDB's ProtoEntity.parse, and adds it as a cell. */
  private classify(text: string, start: number, end: number, column: NameEntry): void {
    const name = column.name;
    const last = text.charCodeAt(end - 1);
    const length = end - start;
    const batch = this.batch;
    switch (last) {
      case 105: {
        // i: 42i
        const value = parseInt64Number(text, start, end - 1);
        if (typeof value === 'number') {
          batch.addNumber(column, CELL_LONG, value);
          return;
        }
        if (value !== undefined) {
          batch.addRef(column, CELL_LONG_BIG, value);
          return;
        }
        if (isIntegerText(text, start, end - 1)) {
          this.failValue(name, start, end, 'out of the int64 range', text);
        }
        break;
      }
      case 116: // t: boolean t, or a µs timestamp 1700000000123456t
        if (length === 1) {
          batch.addNumber(column, CELL_BOOLEAN, 1);
          return;
        }
        if (this.timestampCell(column, parseTimestampMicrosNumber(text, start, end - 1, UNIT_US))) return;
        break;
      case 110: // n: ns timestamp
        if (
          length > 1 &&
          this.timestampCell(column, parseTimestampMicrosNumber(text, start, end - 1, UNIT_NS))
        )
          return;
        break;
      case 109: // m: ms timestamp (QuestDB)
        if (
          length > 1 &&
          this.timestampCell(column, parseTimestampMicrosNumber(text, start, end - 1, UNIT_MS))
        )
          return;
        break;
      case 100: // d: decimal
        batch.addRef(column, CELL_DECIMAL, this.decimal(text, start, end, name));
        return;
      case 84: // T
      case 102: // f
      case 70: // F
      case 101: // e: true, false, any case
      case 69: {
        // E
        const value = parseBoolean(text, start, end);
        if (value !== undefined) {
          batch.addNumber(column, CELL_BOOLEAN, value);
          return;
        }
        break;
      }
      default: {
        const double = parseDouble(text, start, end);
        if (double !== undefined) {
          batch.addNumber(column, CELL_DOUBLE, double);
          return;
        }
      }
    }
    this.failValue(name, start, end, undefined, text);
  }

  /** Adds a timestamp cell of `value` µs; false when there is no value (the text was not one). */
  private timestampCell(column: NameEntry, value: number | bigint | undefined): boolean {
    if (value === undefined) return false;
    if (typeof value === 'number') this.batch.addNumber(column, CELL_TIMESTAMP, value);
    else this.batch.addRef(column, CELL_TIMESTAMP_BIG, value);
    return true;
  }

  private decimal(text: string, start: number, end: number, name: string): DecimalValue | null {
    const decimal = parseDecimalText(text, start, end - 1);
    if (decimal === 'scale') this.failValue(name, start, end, 'decimal scale is out of range 0..76', text);
    if (decimal === 'overflow')
      this.failValue(name, start, end, 'decimal value does not fit in 256 bits', text);
    if (decimal === 'syntax') this.failValue(name, start, end, undefined, text);
    return decimal;
  }

  private failValue(name: string, start: number, end: number, why?: string, text?: string): never {
    const shown = text === undefined ? this.showBytes(start, end) : clip(text.slice(start, end));
    const reason = why === undefined ? '' : ` (${why})`;
    this.fail(
      `Could not parse entire line, field value is invalid. Field: ${clip(name)}; value: ${shown}${reason}`,
    );
  }

  /** A quoted string at `pos`: `\` escapes any byte; an unescaped LF before the closing quote is an error. */
  private readString(name: string): string {
    const text = this.text;
    const limit = this.lineLimit;
    const start = this.pos + 1;
    let p = start;
    let bits = 0;
    let escaped = false;
    for (;;) {
      const c = p < limit ? text.charCodeAt(p) : END;
      if (c === QUOTE) break;
      if (c === BACKSLASH && p + 1 < limit) {
        bits |= text.charCodeAt(p + 1);
        escaped = true;
        p += 2;
      } else if (c === LF || c === END || c === BACKSLASH) {
        // The end of the line (or of the bytes, or a backslash with nothing after it) before the
        // closing quote: wait for more bytes if this is a stream, else the string is unterminated.
        this.pos = c === LF ? p : limit;
        if (c !== LF) this.hitLimit();
        this.fail(`unterminated string value. Field: ${clip(name)}`);
      } else {
        bits |= c;
        p++;
      }
    }
    this.tokenBits = bits;
    this.tokenEscaped = escaped;
    const value = this.decodeToken(start, p);
    if (value === null) this.fail(`invalid UTF-8 in string value. Field: ${clip(name)}`);
    this.pos = p + 1;
    return value;
  }

  /** The designated timestamp at `pos` (none when the line ends there), in µs, into `this.timestamp…`. */
  private readTimestamp(): void {
    const first = this.delimiter();
    if (first === LF || first === CR || first === END) return;
    const start = this.pos;
    this.scanToken();
    const end = this.pos;
    const c = this.delimiter();
    if (c !== LF && c !== CR && c !== END) this.fail(`Could not parse timestamp: ${this.restOfLine(start)}`);
    const value = this.tokenEscaped || this.tokenBits >= 0x80 ? undefined : this.timestampOf(start, end);
    if (value === undefined) this.fail(`Could not parse timestamp: ${this.showBytes(start, end)}`);
    if (typeof value === 'number') {
      this.timestampKind = TS_NUMBER;
      this.timestampNum = value;
    } else {
      this.timestampKind = TS_BIG;
      this.timestampBig = value;
    }
  }

  private timestampOf(start: number, end: number): number | bigint | undefined {
    if (end === start) return undefined;
    switch (this.text.charCodeAt(end - 1)) {
      case 110: // n
        return parseTimestampMicrosNumber(this.text, start, end - 1, UNIT_NS);
      case 116: // t
        return parseTimestampMicrosNumber(this.text, start, end - 1, UNIT_US);
      case 109: // m
        return parseTimestampMicrosNumber(this.text, start, end - 1, UNIT_MS);
      default:
        return parseTimestampMicrosNumber(this.text, start, end, this.unit);
    }
  }

  /**
   * The line from `start` to its end (or the length limit), for an error message. A partial parse
   * waits for the rest of the line first, so the message never depends on where the bytes were cut.
   */
  private restOfLine(start: number): string {
    let p = start;
    while (p < this.lineLimit && this.text.charCodeAt(p) !== LF && this.text.charCodeAt(p) !== CR) p++;
    if (p === this.lineLimit && this.partial && !this.lineLimitIsLength) throw INCOMPLETE;
    return this.showBytes(start, p);
  }

  /** Bytes [start, end) for an error message: UTF-8 with replacement chars, clipped. */
  private showBytes(start: number, end: number): string {
    const shownEnd = Math.min(end, start + 4 * MESSAGE_VALUE_CHARS);
    return clip(this.buf.toString('utf8', start, shownEnd), end > shownEnd);
  }
}

/** `t`, `T`, `f`, `F`, and `true` / `false` in any case (QuestDB's SqlKeywords). */
/** 1 for true, 0 for false, undefined for neither. */
function parseBoolean(text: string, start: number, end: number): number | undefined {
  const length = end - start;
  if (length === 1) {
    const c = text.charCodeAt(start) | 32;
    return c === 116 ? 1 : c === 102 ? 0 : undefined;
  }
  if (length === 4 && equalsIgnoreCase(text, start, 'true')) return 1;
  if (length === 5 && equalsIgnoreCase(text, start, 'false')) return 0;
  return undefined;
}

function equalsIgnoreCase(text: string, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((text.charCodeAt(start + i) | 32) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

function isAscii(text: string, start: number, end: number): boolean {
  let bits = 0;
  for (let p = start; p < end; p++) bits |= text.charCodeAt(p);
  return bits < 0x80;
}

/** A name or value for an error message: at most MESSAGE_VALUE_CHARS chars. */
function clip(text: string, truncated = false): string {
  if (text.length <= MESSAGE_VALUE_CHARS && !truncated) return text;
  return `${text.slice(0, MESSAGE_VALUE_CHARS)}…`;
}
