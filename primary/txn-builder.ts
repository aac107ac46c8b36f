import { WalshipError } from '../core/index.js';
import {
  asBatch,
  CELL_BOOLEAN,
  CELL_DOUBLE,
  CELL_LONG,
  CELL_TIMESTAMP,
  CELL_TYPE_NAMES,
  type IlpLineBatch,
  type IlpLines,
  type NameEntry,
  TS_BIG,
  TS_NUMBER,
} from '../ilp/index.js';
import {
  columnIndexOf,
  type TableSchema,
  tableKey,
  validateColumnName,
  validateTableName,
} from '../table/index.js';
import {
  type ColumnData,
  type ColumnType,
  DESIGNATED_TIMESTAMP_COLUMN,
  type TxnRecord,
} from '../wal/index.js';
import {
  type CellValue,
  ColumnBuilder,
  castCell,
  castProblem,
  grown,
  INITIAL_ROWS,
  int32View,
  setInt64,
  trimmed,
  typeConflict,
  typedArray,
} from './column-builder.js';

/**
 * Turns the parsed lines of one ILP request into one txn record per table (DESIGN §5 step 1):
 * columnar, typed, in the table's schema order, ready to apply and to encode.
 *
 * Rules (QuestDB's ILP behaviour unless said otherwise):
 * - Tables and columns are case-insensitive. A table or column keeps the spelling it was created
 *   with; a new one takes the first spelling in the request.
 * - Tags become `symbol` columns; fields take the type of their value. A value whose type differs
 *   from its column's (existing, or set by an earlier line of the request) is `TYPE_CONFLICT`
 *   (kind invalid, `details.line`), except the exact casts listed in column-builder.ts: long →
 *   double when exactly representable, string → symbol.
 * - The designated timestamp is the line's timestamp, or `commitTimeUs` when it has none. A field
 *   named `timestamp` (any case) of type timestamp sets it instead — it wins over the line's
 *   timestamp, as QuestDB documents ("the columnset value always wins"); a tag or a field of any
 *   other type named `timestamp` is a TYPE_CONFLICT.
 * - A column named twice in one line keeps its first value; the later ones are ignored, whatever
 *   their type (QuestDB skips duplicate columns the same way).
 * - A record carries the designated timestamp and the columns the request sets, not every column
 *   of the table: the others are NULL in SQLite without costing bytes in the segment.
 * - Names are validated (table/names.ts): `INVALID_NAME`, kind invalid, `details.line`.
 * - At most MAX_TABLE_COLUMNS columns per table: `TOO_MANY_COLUMNS`, kind invalid.
 * Errors name the first bad line in request order; nothing is built then.
 */

/** SQLite's default SQLITE_MAX_COLUMN: a table with more columns cannot be altered or inserted into. */
export const MAX_TABLE_COLUMNS = 2000;

export interface BuiltTxn {
  /** Canonical spelling: the existing table's, else the first spelling in the request. */
  table: string;
  record: TxnRecord;
  /** The table's schema once `record` is applied: existing columns, then the new ones. */
  schemaAfter: TableSchema;
}

export interface BuildTxnsOptions {
  /** The current schema of a table (case-insensitive lookup), undefined for a new table. */
  schemaOf: (table: string) => TableSchema | undefined;
  /** The commit time, µs since the epoch: the record's commitTimeUs and the default row timestamp. */
  commitTimeUs: bigint;
  /** The txn number the table's record gets; called once per table, after every line was built. */
  nextTxn: (tableCanonical: string) => bigint;
}

/**
 * One BuiltTxn per table named in `lines`, in the order tables first appear. Pure apart from the
 * two callbacks; throws WalshipError (`INVALID_NAME`, `TYPE_CONFLICT`, `TOO_MANY_COLUMNS`, all kind
 * invalid with `details.line`) for the first bad line and builds nothing then.
 */
export function buildTxns(lines: IlpLines, options: BuildTxnsOptions): BuiltTxn[] {
  const builder = new TxnBuilder(options);
  builder.addLines(lines);
  return builder.finish(options.nextTxn);
}

/**
 * `buildTxns` a slice of lines at a time, for requests parsed while they are committed: each slice
 * becomes rows of the per-table columns at once and can be dropped, so a request never costs one
 * object per line. `schemaOf` is asked when a table first appears: the caller keeps schemas still
 * (the committer's write lock) from the first slice to `finish`. After a throw the builder is
 * spoilt: drop it.
 */
export class TxnBuilder {
  readonly #options: Omit<BuildTxnsOptions, 'nextTxn'>;
  readonly #bySpelling = new Map<string, TableBuilder>();
  readonly #byFolded = new Map<string, TableBuilder>();
  readonly #builders: TableBuilder[] = [];
  #rowCount = 0;
  /** The table name of the last line and its builder: consecutive lines of one table skip the lookup. */
  #lastName: NameEntry | undefined;
  #lastBuilder: TableBuilder | undefined;

  constructor(options: Omit<BuildTxnsOptions, 'nextTxn'>) {
    this.#options = options;
  }

  /** Rows added so far, over all tables. */
  get rowCount(): number {
    return this.#rowCount;
  }

  /**
   * Adds `lines` (or lines [from, to) of a batch) as the next rows of their tables; throws for the
   * first bad line (see buildTxns). Takes what it needs from a batch before it returns.
   */
  addLines(lines: IlpLines, from = 0, to?: number): void {
    const batch = asBatch(lines);
    const end = to ?? batch.lineCount;
    for (let line = from; line < end; line++) {
      const name = batch.tables[line]!;
      const builder = name === this.#lastName ? this.#lastBuilder! : this.#tableOf(batch, line);
      this.#lastName = name;
      this.#lastBuilder = builder;
      builder.addLine(batch, line);
      this.#rowCount++;
    }
  }

  /** One BuiltTxn per table, in the order tables first appeared; `nextTxn` is called once per table. */
  finish(nextTxn: BuildTxnsOptions['nextTxn']): BuiltTxn[] {
    return this.#builders.map((builder) => builder.finish(nextTxn(builder.table)));
  }

  /**
   * The builder of `line`'s table. Each spelling is validated on its first line, except the
   * existing table's own, validated when the table was created: a request over a thousand tables
   * would otherwise validate (and encode) a thousand known names.
   */
  #tableOf(batch: IlpLineBatch, line: number): TableBuilder {
    const { name: table, folded } = batch.tables[line]!;
    let builder = this.#bySpelling.get(table);
    if (builder !== undefined) return builder;
    const lineNumber = batch.lineNumbers[line]!;
    builder = this.#byFolded.get(folded);
    if (builder === undefined) {
      const schema = this.#options.schemaOf(table);
      if (schema?.name !== table) withLine(lineNumber, () => validateTableName(table));
      builder = new TableBuilder(table, schema, this.#options.commitTimeUs);
      this.#byFolded.set(folded, builder);
      this.#builders.push(builder);
    } else {
      withLine(lineNumber, () => validateTableName(table));
    }
    this.#bySpelling.set(table, builder);
    return builder;
  }
}

/** Runs `fn`; a WalshipError it throws gets the line number in its message and details. */
function withLine(line: number, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof WalshipError)) throw error;
    throw new WalshipError(error.code, error.kind, `line ${line}: ${error.message}`, {
      cause: error.cause,
      details: { ...error.details, line },
    });
  }
}

const DESIGNATED = DESIGNATED_TIMESTAMP_COLUMN;

/**
 * `columns` sorted by schema position, in place. Lines name their columns in the same order as a
 * rule, so the check that they already are spares most of a thousand small tables a sort each.
 */
function inPositionOrder(columns: ColumnBuilder[]): ColumnBuilder[] {
  for (let i = 1; i < columns.length; i++)
    if (columns[i - 1]!.position > columns[i]!.position)
      return columns.sort((a, b) => a.position - b.position);
  return columns;
}

/** One table's txn under construction. */
class TableBuilder {
  readonly table: string;
  private readonly schema: TableSchema | undefined;
  private readonly existing: ReadonlyMap<string, number>;
  private readonly commitTimeUs: bigint;
  /** Rows added so far. */
  private row = 0;
  /** Designated timestamps; grows by doubling (trimmed to the row count by finish). */
  private timestamps = typedArray(BigInt64Array, INITIAL_ROWS);
  /** `timestamps` as Int32 halves, which a timestamp held as a number is written to (setInt64). */
  private timestampHalves = int32View(this.timestamps);
  /** The row whose timestamp a `timestamp` field set (first one wins). */
  private timestampFieldRow = -1;
  /** Columns touched, by spelling as sent and by folded name. */
  private readonly bySpelling = new Map<string, ColumnBuilder | typeof DESIGNATED>();
  private readonly byFolded = new Map<string, ColumnBuilder | typeof DESIGNATED>();
  private readonly touched: ColumnBuilder[] = [];
  private readonly added: ColumnBuilder[] = [];

  constructor(spelling: string, schema: TableSchema | undefined, commitTimeUs: bigint) {
    this.table = schema?.name ?? spelling;
    this.schema = schema;
    this.existing = schema === undefined ? new Map() : columnIndexOf(schema);
    this.commitTimeUs = commitTimeUs;
    this.byFolded.set(DESIGNATED, DESIGNATED);
  }

  /** Adds line `line` of `batch` as the next row. */
  addLine(batch: IlpLineBatch, line: number): void {
    const row = this.row++;
    if (row === this.timestamps.length) {
      this.timestamps = grown(this.timestamps, row + 1);
      this.timestampHalves = int32View(this.timestamps);
    }
    const kind = batch.timestampKinds[line];
    if (kind === TS_NUMBER) setInt64(this.timestampHalves, row, batch.timestampNums[line]!);
    else this.timestamps[row] = kind === TS_BIG ? batch.timestampRefs[line]! : this.commitTimeUs;
    const end = batch.cellEnds[line]!;
    for (let cell = batch.cellStart(line); cell < end; cell++) this.setCell(batch, line, row, cell);
  }

  private setCell(batch: IlpLineBatch, line: number, row: number, cell: number): void {
    const name = batch.names[cell]!.name;
    const code = batch.types[cell]!;
    const type = CELL_TYPE_NAMES[code]!;
    const column = this.bySpelling.get(name) ?? this.resolve(batch, line, cell, type);
    if (column === DESIGNATED) {
      this.setTimestampField(batch, line, row, cell, type);
      return;
    }
    if (column.nextRow > row) return; // named twice in this line: the first value stays
    if (type === column.type) {
      if (isNumberCell(code)) column.setNumber(row, batch.nums[cell]!);
      else column.set(row, batch.refs[cell] as CellValue);
      return;
    }
    // A long within ±2^53 is exactly a double: the common cast needs no BigInt.
    if (code === CELL_LONG && column.type === 'double') {
      column.setNumber(row, batch.nums[cell]!);
      return;
    }
    const value = cellValue(batch, cell);
    const problem = castProblem(column.type, type, value);
    if (problem !== undefined)
      throw typeConflict(batch.lineNumbers[line]!, this.table, column.name, column.type, type, problem);
    column.set(row, castCell(column.type, value));
  }

  private setTimestampField(
    batch: IlpLineBatch,
    line: number,
    row: number,
    cell: number,
    type: ColumnType,
  ): void {
    if (type !== 'timestamp')
      throw typeConflict(batch.lineNumbers[line]!, this.table, DESIGNATED, 'timestamp', type, '');
    if (this.timestampFieldRow === row) return;
    this.timestampFieldRow = row;
    if (isNumberCell(batch.types[cell]!)) setInt64(this.timestampHalves, row, batch.nums[cell]!);
    else this.timestamps[row] = batch.refs[cell] as bigint;
  }

  /** The column a spelling not seen yet names: touched before under another spelling, existing, or new. */
  private resolve(
    batch: IlpLineBatch,
    line: number,
    cell: number,
    type: ColumnType,
  ): ColumnBuilder | typeof DESIGNATED {
    const { name, folded } = batch.names[cell]!;
    let column = this.byFolded.get(folded);
    if (column === undefined) {
      const position = this.existing.get(folded);
      column =
        position === undefined
          ? this.createColumn(batch.lineNumbers[line]!, name, type)
          : this.touchColumn(position);
      this.byFolded.set(folded, column);
    }
    this.bySpelling.set(name, column);
    return column;
  }

  private touchColumn(position: number): ColumnBuilder {
    const existing = this.schema!.columns[position]!;
    const column = new ColumnBuilder({ name: existing.name, type: existing.type, isNew: false, position });
    this.touched.push(column);
    return column;
  }

  private createColumn(line: number, name: string, type: ColumnType): ColumnBuilder {
    withLine(line, () => validateColumnName(name));
    const position = (this.schema?.columns.length ?? 1) + this.added.length;
    if (position >= MAX_TABLE_COLUMNS) {
      throw new WalshipError(
        'TOO_MANY_COLUMNS',
        'invalid',
        `line ${line}: table ${JSON.stringify(this.table)} would have more than ${MAX_TABLE_COLUMNS} columns`,
        { details: { line, table: this.table, column: name } },
      );
    }
    const column = new ColumnBuilder({ name, type, isNew: true, position });
    this.added.push(column);
    return column;
  }

  /** The txn record (number `txn`) and the schema after it. */
  finish(txn: bigint): BuiltTxn {
    const isNewTable = this.schema === undefined;
    const rowCount = this.row;
    const timestamp: ColumnData = {
      name: DESIGNATED,
      addedInTxn: isNewTable,
      nulls: null,
      data: { type: 'timestamp', values: trimmed(this.timestamps, rowCount) },
    };
    const existing = inPositionOrder(this.touched);
    const columns = [
      timestamp,
      ...existing.map((c) => c.finish(rowCount)),
      ...this.added.map((c) => c.finish(rowCount)),
    ];
    const record: TxnRecord = {
      txn,
      commitTimeUs: this.commitTimeUs,
      kind: 'data',
      rowCount,
      columns,
    };
    return { table: this.table, record, schemaAfter: this.schemaAfter() };
  }

  /** The schema after this txn: the table's own (frozen) one when the txn adds no column. */
  private schemaAfter(): TableSchema {
    if (this.schema !== undefined && this.added.length === 0) return this.schema;
    const before = this.schema?.columns ?? [{ name: DESIGNATED, type: 'timestamp' as const }];
    return {
      name: this.table,
      key: this.schema?.key ?? tableKey(this.table),
      columns: [...before, ...this.added.map((c) => ({ name: c.name, type: c.type }))],
    };
  }
}

/** Whether a cell of this code holds its value in `nums` (CELL_LONG, CELL_DOUBLE, CELL_BOOLEAN, CELL_TIMESTAMP). */
function isNumberCell(code: number): boolean {
  return code === CELL_LONG || code === CELL_DOUBLE || code === CELL_BOOLEAN || code === CELL_TIMESTAMP;
}

/** A cell's value as a CellValue (BigInt for integers): only for the rare casts and conflicts. */
function cellValue(batch: IlpLineBatch, cell: number): CellValue {
  const code = batch.types[cell]!;
  const num = batch.nums[cell]!;
  if (code === CELL_LONG || code === CELL_TIMESTAMP) return BigInt(num);
  if (code === CELL_DOUBLE) return num;
  if (code === CELL_BOOLEAN) return num === 1;
  return batch.refs[cell] as CellValue;
}
