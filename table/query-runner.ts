import Database from 'better-sqlite3';
import { isWalshipError, WalshipError } from '../core/index.js';
import { namesPgCatalog, refreshPgCatalog, registerPgCatalog } from './pg-catalog.js';
import {
  describeColumn,
  formatCsvHeader,
  formatCsvRow,
  formatDoubleArrayJson,
  formatJsonRow,
  type RenderKind,
  type ResultColumn,
} from './query-format.js';
import { describePgColumns, type PgPage, PgPageBuilder, TIME_NAMES } from './query-pg.js';
import { judgeReadStatement } from './read-statement.js';
import { expressionKind, selectListOf } from './select-list.js';
import { columnTypeOfDeclared } from './sql-types.js';
import {
  columnKindsOf,
  mayHoldTimeLiterals,
  parseTimestampUs,
  registerTimeFunctions,
  rewriteTimeLiterals,
  timestampColumnsOf,
} from './time-literals.js';

/**
 * Runs one read query on a read-only SQLite connection and renders the page QuestDB-style. This is
 * the body of a query host (query-host.ts), kept apart from the process plumbing so it reads on
 * one screen and can be called directly.
 *
 * Error codes thrown (all WalshipError):
 * - `QUERY_INVALID` (invalid): SQLite rejected the SQL; `details.position` is QuestDB's `position`.
 * - `QUERY_READ_ONLY` (invalid): the statement would write or change the connection (judged before it is
 *   prepared: read-statement.ts).
 * - `QUERY_TOO_LARGE` (invalid): more than `maxRows` rows without a limit, or more than `maxBytes`.
 * - `QUERY_DATABASE_BUSY` (unavailable): SQLite stayed busy past the connection's busy timeout.
 */

/** What a host is asked to do. Rows are numbered from 0; the page is rows [skip, stop). */
export interface QueryRequest {
  sql: string;
  /** `pg`: the PostgreSQL door's page (query-pg.ts) in `pg`, the body empty. */
  format: 'json' | 'csv' | 'pg';
  /** Values of the statement's named parameters (`$1` → key `1`), as better-sqlite3 binds them. */
  params?: Record<string, unknown>;
  /** `pg` only: describe the columns without running the statement (no rows, `pg.rows` empty). */
  describeOnly?: boolean;
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
  /** The page for the PostgreSQL door, with format `pg`. */
  pg?: PgPage;
}

/** How long a host's connection waits on a locked database before SQLITE_BUSY, in ms. */
export const QUERY_BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens `databaseFile` so that no statement can write through it: SQLITE_OPEN_READONLY (which also
 * applies to ATTACHed files), the file must exist, and `query_only` as a second lock. Integers come
 * back as bigint so int64 values stay exact. Temporary tables, indexes and sorts stay in memory
 * (`temp_store = MEMORY`, under which SQLite's sorter never spills to a file either): a query's
 * scratch space then counts in the host's memory limit (RFC-0004 §7) instead of filling the disk.
 */
export function openReadOnly(databaseFile: string): Database.Database {
  const db = new Database(databaseFile, {
    readonly: true,
    fileMustExist: true,
    timeout: QUERY_BUSY_TIMEOUT_MS,
  });
  try {
    db.pragma('query_only = ON');
    db.pragma('temp_store = MEMORY');
    db.defaultSafeIntegers(true);
    registerPgCatalog(db);
    registerTimeFunctions(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Runs `request` on `db` (opened with openReadOnly) and renders its page. Throws the codes above. */
export function runQuery(db: Database.Database, request: QueryRequest): QueryOutput {
  // Before anything is prepared: SQLite applies a setting PRAGMA while compiling it.
  judgeReadStatement(request.sql);
  // The connection caches the schema, and a statement prepared from a stale cache describes the
  // columns as they were until its first step re-prepares it: after ILP added a column, /exec would
  // name fewer columns than its rows hold. So read the schema first, inside one read transaction
  // with the query, so the columns named and the rows returned come from the same snapshot.
  db.exec('BEGIN');
  try {
    let timed: QueryRequest;
    try {
      db.prepare(SCHEMA_PROBE_SQL).get();
      if (namesPgCatalog(request.sql)) refreshPgCatalog(db);
      // The schema's timestamp columns are read only for SQL a rewrite could change.
      timed = mayHoldTimeLiterals(request.sql) ? withTimeLiterals(request, timestampColumnsOf(db)) : request;
    } catch (error) {
      throw toQueryError(error, request.sql);
    }
    return runInSnapshot(db, timed);
  } finally {
    db.exec('COMMIT');
  }
}

/**
 * runQuery, then a check that the connection's settings are still `settingsAtOpen`
 * (connectionSettings). When they are not, the answer is withheld, whatever it was, and this throws
 * QUERY_READ_ONLY with `details.connectionChanged`: the connection must not serve another query
 * (the host asks to be replaced). No statement that passes judgeReadStatement is known to change a
 * setting; this is the defence should one ever do so.
 */
export function runIsolatedQuery(
  db: Database.Database,
  request: QueryRequest,
  settingsAtOpen: string,
): QueryOutput {
  let output: QueryOutput | undefined;
  let failure: unknown;
  try {
    output = runQuery(db, request);
  } catch (error) {
    failure = error;
  }
  let settingsNow: string;
  try {
    settingsNow = connectionSettings(db);
  } catch (error) {
    // Unverifiable is treated as changed, but it is not the query's fault: retrying may help.
    throw new WalshipError(
      'QUERY_WORKER_FAILED',
      'unavailable',
      `the query host could not check its connection after the query (${String(error)}); its answer is ` +
        'withheld and the host is replaced, retry may help',
      { cause: error, details: { position: 0, connectionChanged: true } },
    );
  }
  if (settingsNow !== settingsAtOpen) {
    throw new WalshipError(
      'QUERY_READ_ONLY',
      'invalid',
      'only read-only queries are served, and this statement changed a setting of the query ' +
        'connection; its answer is withheld and the query host is replaced, so no other query sees the change',
      { details: { position: 0, connectionChanged: true } },
    );
  }
  if (output === undefined) throw failure;
  return output;
}

/** True for the errors runIsolatedQuery throws when the connection must not serve another query. */
export function isConnectionChangedError(error: unknown): boolean {
  return isWalshipError(error) && error.details.connectionChanged === true;
}

/**
 * The connection's settings that a statement could change, as one comparable text: SETTING_PRAGMAS
 * through their pragma functions, `mmap_size` (it has none), and LIKE's case rule
 * (`case_sensitive_like` cannot be read back). A query host compares it after every query with the
 * value it had when it opened the connection (RFC-0004 §6, the defence behind judgeReadStatement).
 * A probe of twice as many settings measured 25 µs (plus ~7 µs for mmap_size), a fraction of one
 * IPC round trip.
 */
export function connectionSettings(db: Database.Database): string {
  let probe = settingsProbes.get(db);
  if (probe === undefined) {
    probe = db.prepare(SETTINGS_PROBE_SQL).raw(true);
    settingsProbes.set(db, probe);
  }
  const values = probe.get() as unknown[];
  const mmapSize = db.pragma('mmap_size', { simple: true }) as unknown;
  return JSON.stringify([...values, mmapSize], (_key, value) =>
    typeof value === 'bigint' ? value.toString() : value,
  );
}

/**
 * The settings a PRAGMA could change that matter to the next query on a read-only connection: its
 * answer (column names, row order, LIKE), its safety (query_only, writable_schema, trusted_schema,
 * locking_mode EXCLUSIVE would block the writer's checkpoints) and its cost (memory, threads, temp
 * storage, busy wait; the heap limits are process-wide). Settings that act only on writes (fsync,
 * journal, foreign keys, triggers…) are left out: each costs a few µs per query and none of them can
 * change what this connection reads.
 */
const SETTING_PRAGMAS = [
  'automatic_index',
  'busy_timeout',
  'cache_size',
  'cell_size_check',
  'full_column_names',
  'hard_heap_limit',
  'locking_mode',
  'query_only',
  'reverse_unordered_selects',
  'short_column_names',
  'soft_heap_limit',
  'temp_store',
  'threads',
  'trusted_schema',
  'writable_schema',
] as const;

const SETTINGS_PROBE_SQL = `SELECT ${SETTING_PRAGMAS.map((name) => `(SELECT * FROM pragma_${name})`).join(', ')}, 'a' LIKE 'A'`;

const settingsProbes = new WeakMap<Database.Database, Database.Statement>();

/** Reads sqlite_schema, which makes SQLite check its schema cookie and reload a stale cache. */
const SCHEMA_PROBE_SQL = 'SELECT 1 FROM sqlite_schema LIMIT 1';

function runInSnapshot(db: Database.Database, request: QueryRequest): QueryOutput {
  const statement = prepareRead(db, request.sql);
  const definitions = statement.columns();
  const kinds = definitions.map((d) => columnTypeOfDeclared(d.type));
  if (request.format === 'pg') return runPgPage(db, statement, definitions, kinds, request);
  // An expression named `time` or `timestamp` (`time_bucket('1h', timestamp) AS time`) renders as
  // a timestamp when its values are integers, as the PostgreSQL door types it (query-pg.ts).
  for (let i = 0; i < kinds.length; i++) {
    const d = definitions[i]!;
    if (kinds[i] === undefined && d.column === null && TIME_NAMES.has(d.name.toLowerCase()))
      kinds[i] = 'timestamp';
  }
  const page = new PageBuilder(request, kinds);
  try {
    readRows(iterate(statement, request), request, page);
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

/**
 * `request` with its timestamp comparisons rewritten (time-literals.ts): string literals compared
 * with a timestamp column as µs, and string parameters compared so read as timestamps.
 */
function withTimeLiterals(request: QueryRequest, timestampColumns: ReadonlySet<string>): QueryRequest {
  const { sql, timestampParams } = rewriteTimeLiterals(request.sql, timestampColumns);
  if (sql === request.sql && timestampParams.size === 0) return request;
  let params = request.params;
  if (params !== undefined && timestampParams.size > 0) {
    params = { ...params };
    for (const name of timestampParams) {
      const value = params[name];
      if (typeof value !== 'string') continue;
      const us = parseTimestampUs(value);
      if (us === undefined) {
        throw new WalshipError(
          'QUERY_INVALID',
          'invalid',
          `parameter $${name} is compared with a timestamp but ${JSON.stringify(value.slice(0, 64))} is none`,
          { details: { position: 0 } },
        );
      }
      params[name] = us;
    }
  }
  return { ...request, sql, ...(params === undefined ? {} : { params }) };
}

function iterate(
  statement: Database.Statement<unknown[]>,
  request: QueryRequest,
): IterableIterator<unknown[]> {
  const rows = request.params === undefined ? statement.iterate() : statement.iterate(request.params);
  return rows as IterableIterator<unknown[]>;
}

/** The PostgreSQL door's page: every row up to `maxRows` (the door pages with its portals). */
function runPgPage(
  db: Database.Database,
  statement: Database.Statement<unknown[]>,
  definitions: readonly Database.ColumnDefinition[],
  declared: readonly RenderKind[],
  request: QueryRequest,
): QueryOutput {
  let kinds = declared;
  const names = definitions.map((d) => d.name);
  const columns = definitions.map((d, i) => describeColumn(d.name, kinds[i], null, undefined));
  const timestampIndex = designatedTimestampIndex(definitions);
  if (request.describeOnly === true) {
    // Not run: an expression's type is read from its text (count(…) int8, avg(…) float8…).
    const expressions = selectListOf(request.sql);
    if (expressions !== undefined && expressions.length === kinds.length) {
      const known = columnKindsOf(db);
      kinds = kinds.map(
        (kind, i) =>
          kind ??
          (expressionKind(
            expressions[i]!,
            (name) => known.get(name.toLowerCase()) ?? undefined,
          ) as RenderKind),
      );
    }
    const pg = { ...describePgColumns(names, kinds), rows: [] };
    return { columns, timestampIndex, body: '', rowCount: 0, count: 0, pg };
  }
  const page = new PgPageBuilder(names, kinds, request.maxRows, request.maxBytes);
  try {
    for (const row of iterate(statement, request)) page.add(row);
  } catch (error) {
    throw toQueryError(error, request.sql);
  }
  return {
    columns,
    timestampIndex,
    body: '',
    rowCount: page.rowCount,
    count: page.rowCount,
    pg: page.page(),
  };
}

function prepareRead(db: Database.Database, sql: string): Database.Statement<unknown[]> {
  let statement: Database.Statement<unknown[]>;
  try {
    statement = db.prepare(sql);
  } catch (error) {
    throw toQueryError(error, sql);
  }
  // The second wall behind judgeReadStatement: `reader` (returns rows) and `readonly`
  // (sqlite3_stmt_readonly) together refuse DML, DDL, ATTACH and BEGIN, say a `WITH … DELETE`; the
  // read-only connection is the third.
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
