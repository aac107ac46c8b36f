import Database from 'better-sqlite3';
import { WalshipError } from '../core/index.js';
import {
  describeColumn,
  formatCsvHeader,
  formatCsvRow,
  formatDoubleArrayJson,
  formatJsonRow,
  type RenderKind,
  type ResultColumn,
} from './query-format.js';
import { columnTypeOfDeclared } from './sql-types.js';

/**
 * Runs one read query on a read-only SQLite connection and renders the page QuestDB-style. This is
 * the body of a query host (query-host.ts), kept apart from the process plumbing so it reads on
 * one screen and can be called directly.
 *
 * Error codes thrown (all WalshipError):
 * - `QUERY_INVALID` (invalid): SQLite rejected the SQL; `details.position` is QuestDB's `position`.
 * - `QUERY_READ_ONLY` (invalid): the statement would write or change the connection.
 * - `QUERY_TOO_LARGE` (invalid): more than `maxRows` rows without a limit, or more than `maxBytes`.
 * - `QUERY_DATABASE_BUSY` (unavailable): SQLite stayed busy past the connection's busy timeout.
 */

/** What a host is asked to do. Rows are numbered from 0; the page is rows [skip, stop). */
export interface QueryRequest {
  sql: string;
  format: 'json' | 'csv';
  /** Rows to skip before the page starts. */
  skip: number;
  /** The row index the page ends before, or null for "to the end" (then `maxRows` is an error bound). */
  stop: number | null;
  /** Count every row of the result even past the page (QuestDB's `count=true`). */
  countAll: boolean;
  /** Bound on rows in the page. */
  maxRows: number;
  /** Bound on the rendered page, in UTF-8 bytes. */
  maxBytes: number;
  /** CSV only: write the header line (QuestDB's `/exp` omits it with `nm=true`). */
  csvHeader: boolean;
  /** CSV only: the field delimiter, one character. */
  csvDelimiter: string;
}

/** A rendered page. */
export interface QueryOutput {
  columns: ResultColumn[];
  /** Index of the designated timestamp column, or -1. */
  timestampIndex: number;
  /** JSON: the dataset `[[…],…]`. CSV: the header (if asked) and the rows. */
  body: string;
  /** Rows in the page. */
  rowCount: number;
  /**
   * QuestDB's `count`: the number of rows read up to the end of the page (skipped ones included),
   * which is the total when the result ended inside the page or `countAll` was set; 0 when `skip`
   * was past the end (as QuestDB answers).
   */
  count: number;
}

/** How long a host's connection waits on a locked database before SQLITE_BUSY, in ms. */
export const QUERY_BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens `databaseFile` so that no statement can write through it: SQLITE_OPEN_READONLY (which also
 * applies to ATTACHed files), the file must exist, and `query_only` as a second lock. Integers come
 * back as bigint so int64 values stay exact.
 */
export function openReadOnly(databaseFile: string): Database.Database {
  const db = new Database(databaseFile, {
    readonly: true,
    fileMustExist: true,
    timeout: QUERY_BUSY_TIMEOUT_MS,
  });
  try {
    db.pragma('query_only = ON');
    db.defaultSafeIntegers(true);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Runs `request` on `db` (opened with openReadOnly) and renders its page. Throws the codes above. */
export function runQuery(db: Database.Database, request: QueryRequest): QueryOutput {
  // The connection caches the schema, and a statement prepared from a stale cache describes the
  // columns as they were until its first step re-prepares it: after ILP added a column, /exec would
  // name fewer columns than its rows hold. So read the schema first, inside one read transaction
  // with the query, so the columns named and the rows returned come from the same snapshot.
  db.exec('BEGIN');
  try {
    try {
      db.prepare(SCHEMA_PROBE_SQL).get();
    } catch (error) {
      throw toQueryError(error, request.sql);
    }
    return runInSnapshot(db, request);
  } finally {
    db.exec('COMMIT');
  }
}

/** Reads sqlite_schema, which makes SQLite check its schema cookie and reload a stale cache. */
const SCHEMA_PROBE_SQL = 'SELECT 1 FROM sqlite_schema LIMIT 1';

function runInSnapshot(db: Database.Database, request: QueryRequest): QueryOutput {
  const statement = prepareRead(db, request.sql);
  const definitions = statement.columns();
  const kinds = definitions.map((d) => columnTypeOfDeclared(d.type));
  const page = new PageBuilder(request, kinds);
  try {
    readRows(statement.iterate() as IterableIterator<unknown[]>, request, page);
  } catch (error) {
    throw toQueryError(error, request.sql);
  }
  // The CSV header comes from the statement, so an empty page still names its columns.
  const header =
    request.format === 'csv' && request.csvHeader
      ? formatCsvHeader(
          definitions.map((d) => d.name),
          request.csvDelimiter,
        )
      : '';
  return {
    columns: definitions.map((d, i) => page.describe(d.name, i)),
    timestampIndex: designatedTimestampIndex(definitions),
    body: header + page.body(),
    rowCount: page.rowCount,
    count: page.count,
  };
}

function prepareRead(db: Database.Database, sql: string): Database.Statement<unknown[]> {
  let statement: Database.Statement<unknown[]>;
  try {
    statement = db.prepare(sql);
  } catch (error) {
    throw toQueryError(error, sql);
  }
  // `reader` (returns rows) and `readonly` (sqlite3_stmt_readonly) together refuse DML, DDL, ATTACH,
  // BEGIN and setting PRAGMAs before they run; the read-only connection is the second wall.
  if (!statement.reader || !statement.readonly) {
    throw new WalshipError(
      'QUERY_READ_ONLY',
      'invalid',
      'only read-only queries (SELECT, WITH … SELECT, read-only PRAGMA, EXPLAIN) are served here; ' +
        'tables are written through ILP, not SQL',
      { details: { position: 0 } },
    );
  }
  statement.raw(true);
  return statement;
}

/** Walks the cursor: skip, render the page, then (QuestDB's count=true) count the rest. */
function readRows(rows: IterableIterator<unknown[]>, request: QueryRequest, page: PageBuilder): void {
  let index = 0;
  for (const row of rows) {
    if (index >= request.skip) {
      if (request.stop !== null && index >= request.stop) {
        if (!request.countAll) {
          page.count = index;
          rows.return?.();
          return;
        }
      } else {
        page.add(row);
      }
    }
    index++;
  }
  page.count = index > request.skip ? index : 0;
}

/** Accumulates the rendered rows of one page and what the column descriptions need. */
class PageBuilder {
  rowCount = 0;
  count = 0;
  private readonly parts: string[] = [];
  private bytes = 0;
  private readonly firstValues: unknown[];
  private readonly arrayDims: (number | undefined)[];

  constructor(
    private readonly request: QueryRequest,
    private readonly kinds: readonly RenderKind[],
  ) {
    this.firstValues = kinds.map(() => null);
    this.arrayDims = kinds.map(() => undefined);
  }

  add(row: unknown[]): void {
    if (this.rowCount >= this.request.maxRows) {
      throw new WalshipError(
        'QUERY_TOO_LARGE',
        'invalid',
        `the query returns more than ${this.request.maxRows} rows; add a LIMIT or ask for a page (limit=lo,hi)`,
        { details: { position: 0, maxRows: this.request.maxRows } },
      );
    }
    this.noteTypes(row);
    const text =
      this.request.format === 'json'
        ? (this.rowCount > 0 ? ',' : '') + formatJsonRow(this.kinds, row)
        : formatCsvRow(this.kinds, row, this.request.csvDelimiter);
    this.bytes += Buffer.byteLength(text);
    if (this.bytes > this.request.maxBytes) {
      throw new WalshipError(
        'QUERY_TOO_LARGE',
        'invalid',
        `the query result exceeds ${this.request.maxBytes} bytes; select fewer columns or ask for a smaller page`,
        { details: { position: 0, maxBytes: this.request.maxBytes } },
      );
    }
    this.parts.push(text);
    this.rowCount++;
  }

  describe(name: string, index: number): ResultColumn {
    return describeColumn(name, this.kinds[index], this.firstValues[index], this.arrayDims[index]);
  }

  body(): string {
    if (this.request.format === 'json') return `[${this.parts.join('')}]`;
    return this.parts.join('');
  }

  /** Remembers the first non-null value per column: expression columns are typed by it. */
  private noteTypes(row: unknown[]): void {
    for (let i = 0; i < row.length; i++) {
      const value = row[i];
      if (value === null || this.firstValues[i] !== null) continue;
      this.firstValues[i] = value;
      if (this.kinds[i] === 'double_array' && typeof value === 'string') {
        this.arrayDims[i] = formatDoubleArrayJson(value).dim;
      }
    }
  }
}

/**
 * QuestDB's designated timestamp: the first result column that is a table's `timestamp` column as
 * declared by walship (TIMESTAMP_INT), or -1.
 */
function designatedTimestampIndex(definitions: readonly Database.ColumnDefinition[]): number {
  return definitions.findIndex(
    (d) =>
      d.column === 'timestamp' &&
      d.table !== null &&
      !d.table.startsWith('_walship_') &&
      columnTypeOfDeclared(d.type) === 'timestamp',
  );
}

/** Maps a SQLite or better-sqlite3 error to a stable walship code, with QuestDB's `position`. */
function toQueryError(error: unknown, sql: string): WalshipError {
  if (error instanceof WalshipError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new WalshipError('QUERY_DATABASE_BUSY', 'unavailable', `the database stayed busy: ${message}`, {
      cause: error,
      details: { position: 0 },
    });
  }
  if (code === 'SQLITE_READONLY' || code === 'SQLITE_AUTH') {
    return new WalshipError('QUERY_READ_ONLY', 'invalid', message, {
      cause: error,
      details: { position: 0 },
    });
  }
  return new WalshipError('QUERY_INVALID', 'invalid', message, {
    cause: error,
    details: { position: errorPosition(message, sql) },
  });
}

/**
 * SQLite's messages carry no offset (better-sqlite3 does not expose sqlite3_error_offset), so the
 * position is found from the token the message names; 0 when it names none.
 */
export function errorPosition(message: string, sql: string): number {
  if (message.includes('incomplete input')) return sql.length;
  const token = /near "((?:[^"]|"")*)"/.exec(message)?.[1] ?? /no such \w+: (.+)$/.exec(message)?.[1];
  if (token === undefined || token === '') return 0;
  const found = sql.toLowerCase().indexOf(token.toLowerCase());
  return Math.max(found, 0);
}
