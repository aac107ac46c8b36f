import type { DecimalValue, DoubleArrayValue } from '../wal/index.js';
import type { IlpField, IlpFieldValue, IlpLine } from './ilp-line.js';
import type { NameEntry } from './names.js';

/**
 * Parsed ILP lines as columns of their own: what the parser writes and the txn builder reads, with
 * no object per line, field or cell (issue 16). A line is a table name, a line number, a run of
 * cells and an optional timestamp; a cell is a column name, a type code, and a number (`nums`) or a
 * reference (`refs`: a string, a bigint beyond 2^53, an array or a decimal). Names are the
 * parser's cached entries, so a name costs nothing per line. Integers that are safe JS numbers
 * (every timestamp before the year 2255 in µs) stay numbers: no BigInt is made until a value is
 * bound to SQLite. The arrays grow by doubling and are reused slice after slice of a request.
 */

/** A tag: `refs` holds the value. */
export const CELL_SYMBOL = 0;
/** A quoted string: `refs`. */
export const CELL_STRING = 1;
/** `42i` within ±2^53: `nums`. */
export const CELL_LONG = 2;
/** `42i` beyond ±2^53: `refs` holds the bigint. */
export const CELL_LONG_BIG = 3;
/** A double (text or binary): `nums`. */
export const CELL_DOUBLE = 4;
/** A boolean: `nums` holds 1 or 0. */
export const CELL_BOOLEAN = 5;
/** A timestamp field, in µs, within ±2^53: `nums`. */
export const CELL_TIMESTAMP = 6;
/** A timestamp field, in µs, beyond ±2^53: `refs` holds the bigint. */
export const CELL_TIMESTAMP_BIG = 7;
/** A v2 array of doubles (null for the null array): `refs`. */
export const CELL_DOUBLE_ARRAY = 8;
/** A decimal (null for the null decimal): `refs`. */
export const CELL_DECIMAL = 9;

/** The ILP field type each cell code stands for (what error messages name). */
export const CELL_TYPE_NAMES = [
  'symbol',
  'string',
  'long',
  'long',
  'double',
  'boolean',
  'timestamp',
  'timestamp',
  'double_array',
  'decimal',
] as const;

/** A line's designated timestamp: none (the commit time), a number of µs, or a bigint of µs. */
export const TS_NONE = 0;
export const TS_NUMBER = 1;
export const TS_BIG = 2;

const INITIAL_LINES = 64;
const INITIAL_CELLS = 256;

export class IlpLineBatch {
  /** Complete lines. */
  lineCount = 0;
  /** Cells of the complete lines, and of the line being added after them. */
  cellCount = 0;
  /** Per line: its 1-based number in the request (comments and blank lines count). */
  lineNumbers = new Float64Array(INITIAL_LINES);
  /** Per line: its table name. */
  tables: NameEntry[] = [];
  /** Per line: the end (exclusive) of its cells; line i's cells start at line i − 1's end, or 0. */
  cellEnds = new Int32Array(INITIAL_LINES);
  /** Per line: TS_NONE, TS_NUMBER (`timestampNums`) or TS_BIG (`timestampRefs`). */
  timestampKinds = new Uint8Array(INITIAL_LINES);
  timestampNums = new Float64Array(INITIAL_LINES);
  timestampRefs: (bigint | undefined)[] = [];
  /** Per cell: its column name, in line order (tags first, as in the line). */
  names: NameEntry[] = [];
  /** Per cell: a CELL_* code. */
  types = new Uint8Array(INITIAL_CELLS);
  nums = new Float64Array(INITIAL_CELLS);
  refs: unknown[] = [];

  #lineNumber = 0;
  #table: NameEntry | undefined;

  /** Starts a line; its cells follow, then endLine (or abortLine). */
  startLine(lineNumber: number, table: NameEntry): void {
    this.#lineNumber = lineNumber;
    this.#table = table;
  }

  /** A cell of the current line held as a number (CELL_LONG, CELL_DOUBLE, CELL_BOOLEAN, CELL_TIMESTAMP). */
  addNumber(name: NameEntry, type: number, value: number): void {
    const at = this.#nextCell();
    this.names[at] = name;
    this.types[at] = type;
    this.nums[at] = value;
    this.refs[at] = undefined;
  }

  /** A cell of the current line held as a reference (the other CELL_* codes). */
  addRef(
    name: NameEntry,
    type: number,
    value: string | bigint | DoubleArrayValue | DecimalValue | null,
  ): void {
    const at = this.#nextCell();
    this.names[at] = name;
    this.types[at] = type;
    this.refs[at] = value;
  }

  /** Ends the current line with its timestamp (TS_NONE, TS_NUMBER with `num`, TS_BIG with `big`). */
  endLine(kind: number, num: number, big: bigint | undefined): void {
    const line = this.lineCount;
    if (line === this.cellEnds.length) this.#growLines();
    this.lineNumbers[line] = this.#lineNumber;
    this.tables[line] = this.#table!;
    this.cellEnds[line] = this.cellCount;
    this.timestampKinds[line] = kind;
    this.timestampNums[line] = num;
    this.timestampRefs[line] = big;
    this.lineCount = line + 1;
  }

  /** Drops the cells of the line started last (a line cut by the end of the bytes, or a bad one). */
  abortLine(): void {
    this.cellCount = this.lineCount === 0 ? 0 : this.cellEnds[this.lineCount - 1]!;
    this.#table = undefined;
  }

  /** Forgets every line (the arrays stay for the next slice; references are dropped). */
  clear(): void {
    this.refs.fill(undefined, 0, this.cellCount);
    this.timestampRefs.fill(undefined, 0, this.lineCount);
    this.lineCount = 0;
    this.cellCount = 0;
    this.#table = undefined;
  }

  /** The first cell of line `line`. */
  cellStart(line: number): number {
    return line === 0 ? 0 : this.cellEnds[line - 1]!;
  }

  /** The lines as IlpLine objects (tests, tools, and callers that build lines by hand). */
  toLines(): IlpLine[] {
    const lines: IlpLine[] = [];
    for (let line = 0; line < this.lineCount; line++) {
      const symbols: IlpLine['symbols'] = [];
      const fields: IlpField[] = [];
      for (let cell = this.cellStart(line); cell < this.cellEnds[line]!; cell++) {
        const name = this.names[cell]!.name;
        if (this.types[cell] === CELL_SYMBOL) symbols.push({ name, value: this.refs[cell] as string });
        else fields.push({ name, value: this.#fieldValue(cell) });
      }
      const kind = this.timestampKinds[line];
      const timestampUs =
        kind === TS_NUMBER
          ? BigInt(this.timestampNums[line]!)
          : kind === TS_BIG
            ? this.timestampRefs[line]!
            : null;
      lines.push({
        line: this.lineNumbers[line]!,
        table: this.tables[line]!.name,
        symbols,
        fields,
        timestampUs,
      });
    }
    return lines;
  }

  /** A batch of `lines` built by hand (each name gets an entry of its own). */
  static fromLines(lines: readonly IlpLine[]): IlpLineBatch {
    const batch = new IlpLineBatch();
    for (const line of lines) {
      batch.startLine(line.line, entryOf(line.table));
      for (const symbol of line.symbols) batch.addRef(entryOf(symbol.name), CELL_SYMBOL, symbol.value);
      for (const field of line.fields) batch.#addField(entryOf(field.name), field.value);
      const ts = line.timestampUs;
      if (ts === null) batch.endLine(TS_NONE, 0, undefined);
      else if (isSafe(ts)) batch.endLine(TS_NUMBER, Number(ts), undefined);
      else batch.endLine(TS_BIG, 0, ts);
    }
    return batch;
  }

  #addField(name: NameEntry, value: IlpFieldValue): void {
    switch (value.type) {
      case 'long':
        if (isSafe(value.value)) this.addNumber(name, CELL_LONG, Number(value.value));
        else this.addRef(name, CELL_LONG_BIG, value.value);
        return;
      case 'timestamp':
        if (isSafe(value.value)) this.addNumber(name, CELL_TIMESTAMP, Number(value.value));
        else this.addRef(name, CELL_TIMESTAMP_BIG, value.value);
        return;
      case 'double':
        this.addNumber(name, CELL_DOUBLE, value.value);
        return;
      case 'boolean':
        this.addNumber(name, CELL_BOOLEAN, value.value ? 1 : 0);
        return;
      case 'string':
        this.addRef(name, CELL_STRING, value.value);
        return;
      case 'double_array':
        this.addRef(name, CELL_DOUBLE_ARRAY, value.value);
        return;
      case 'decimal':
        this.addRef(name, CELL_DECIMAL, value.value);
        return;
    }
  }

  #fieldValue(cell: number): IlpFieldValue {
    const num = this.nums[cell]!;
    const ref = this.refs[cell];
    switch (this.types[cell]) {
      case CELL_LONG:
        return { type: 'long', value: BigInt(num) };
      case CELL_LONG_BIG:
        return { type: 'long', value: ref as bigint };
      case CELL_DOUBLE:
        return { type: 'double', value: num };
      case CELL_BOOLEAN:
        return { type: 'boolean', value: num === 1 };
      case CELL_TIMESTAMP:
        return { type: 'timestamp', value: BigInt(num) };
      case CELL_TIMESTAMP_BIG:
        return { type: 'timestamp', value: ref as bigint };
      case CELL_DOUBLE_ARRAY:
        return { type: 'double_array', value: ref as DoubleArrayValue | null };
      case CELL_DECIMAL:
        return { type: 'decimal', value: ref as DecimalValue | null };
      default:
        return { type: 'string', value: ref as string };
    }
  }

  #nextCell(): number {
    const at = this.cellCount;
    if (at === this.types.length) {
      const size = at * 2;
      this.types = grownTo(this.types, size);
      this.nums = grownTo(this.nums, size);
    }
    this.cellCount = at + 1;
    return at;
  }

  #growLines(): void {
    const size = this.cellEnds.length * 2;
    this.lineNumbers = grownTo(this.lineNumbers, size);
    this.cellEnds = grownTo(this.cellEnds, size);
    this.timestampKinds = grownTo(this.timestampKinds, size);
    this.timestampNums = grownTo(this.timestampNums, size);
  }
}

/** Lines as a batch, whichever form they come in. */
export type IlpLines = readonly IlpLine[] | IlpLineBatch;

/** The lines as IlpLine objects, whichever form they come in. */
export function linesOf(lines: IlpLines): readonly IlpLine[] {
  return lines instanceof IlpLineBatch ? lines.toLines() : lines;
}

export function asBatch(lines: IlpLines): IlpLineBatch {
  return lines instanceof IlpLineBatch ? lines : IlpLineBatch.fromLines(lines);
}

/** The number of lines, whichever form they come in. */
export function lineCountOf(lines: IlpLines): number {
  return lines instanceof IlpLineBatch ? lines.lineCount : lines.length;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function isSafe(value: bigint): boolean {
  return value <= MAX_SAFE && value >= -MAX_SAFE;
}

function entryOf(name: string): NameEntry {
  return { name, folded: name.toLowerCase(), byteLength: 0 };
}

function grownTo<T extends Float64Array | Int32Array | Uint8Array>(array: T, size: number): T {
  const bigger = new (array.constructor as new (length: number) => T)(size);
  bigger.set(array);
  return bigger;
}
