/**
 * The tables a replica serves (issue 9, `replication.replica.tables` / `.exclude`): the filter,
 * where its effective lists persist, and the two changes of the served set on a node's database —
 * copying one table in from a snapshot image, and dropping one — each in ONE SQLite transaction
 * together with the new lists.
 *
 * Persistence: the effective lists live in the node's `_walship_kv` under SERVED_TABLES_META_KEY,
 * with the configuration they started from. At start, when the configuration is the one recorded,
 * the recorded lists win (changes made through `POST /admin/tables` survive a restart); when the
 * operator changed the configuration since, the new configuration replaces them. The key does not
 * start with `table.`, so snapshot images never carry it (it is this node's, not the data's).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { InvalidConfigError, WalshipError } from '../core/index.js';
import type { SnapshotManifest } from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import {
  decodeTableKey,
  dropTable,
  quoteIdentifier,
  TABLE_DEDUP_META_PREFIX,
  TABLE_EPOCH_META_PREFIX,
  TABLE_PARTIAL_META_PREFIX,
  TABLE_TTL_META_PREFIX,
  type TableKey,
  type TableStore,
  tableKey,
  validateTableName,
} from '../table/index.js';
import { restoreSnapshot } from './snapshots.js';

/** Bounds of the filter, each with its reason (STYLE rule 7). */
export const TABLE_FILTER_LIMITS = {
  /** Entries of one list (include or exclude): every table check walks them all. */
  entriesMax: 1_000,
  /** Bytes of an admin request body naming tables to add or drop (`add=…&drop=…` or JSON). */
  adminBodyBytesMax: 64 * 1024,
} as const;

/** The `_walship_kv` key of the effective lists (see the file header). */
export const SERVED_TABLES_META_KEY = 'replica.tables';

export const TABLES_INCLUDE_KEY = 'replication.replica.tables';
export const TABLES_EXCLUDE_KEY = 'replication.replica.tables.exclude';

/** The lists as `/status` (`servedTables`) and `/settings` show them; include `['*']` = every table. */
export interface TableFilterSpec {
  include: string[];
  exclude: string[];
}

/**
 * Which tables a replica serves: a table is served when its name matches an entry of `include`
 * and none of `exclude`. Entries are names or patterns (`*` any run of characters, `?` one),
 * matched case-insensitively against the table name (tables are case-insensitive). Immutable:
 * `adding` and `dropping` return a new filter.
 */
export class TableFilter {
  /** Every table: what a replica serves when neither key is set. */
  static readonly ALL = new TableFilter(['*'], []);

  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly #include: readonly Glob[];
  readonly #exclude: readonly Glob[];
  /** servesAll(), fixed at construction (the lists are frozen). */
  readonly #all: boolean;

  private constructor(include: readonly string[], exclude: readonly string[]) {
    this.include = Object.freeze([...include]);
    this.exclude = Object.freeze([...exclude]);
    this.#include = include.map(compileGlob);
    this.#exclude = exclude.map(compileGlob);
    this.#all = this.exclude.length === 0 && this.include.includes('*');
  }

  /**
   * The filter of the two configuration values (comma lists; unset or blank include = every table).
   * Throws INVALID_CONFIG naming the key for an entry that is neither a table name nor a pattern.
   */
  static parse(include: string | undefined, exclude: string | undefined): TableFilter {
    const included = parseList(include, TABLES_INCLUDE_KEY);
    return new TableFilter(included.length === 0 ? ['*'] : included, parseList(exclude, TABLES_EXCLUDE_KEY));
  }

  /** The filter of lists read back from the node's meta (written by `toJSON`); INVALID_CONFIG when malformed. */
  static fromSpec(spec: TableFilterSpec): TableFilter {
    return new TableFilter(
      checkEntries(spec.include, TABLES_INCLUDE_KEY),
      checkEntries(spec.exclude, TABLES_EXCLUDE_KEY),
    );
  }

  /** True when table `name` is served. */
  admits(name: string): boolean {
    const folded = [...name.toLowerCase()];
    return this.#include.some((g) => g.matches(folded)) && !this.#exclude.some((g) => g.matches(folded));
  }

  /** True when the table of store key `key` is served; false for a string no table name maps to. */
  admitsKey(key: string): boolean {
    // A full replica (the common case) is asked on every apply: no key decoding for it.
    if (this.#all) return true;
    let name: string;
    try {
      name = decodeTableKey(key);
    } catch {
      return false;
    }
    return this.admits(name);
  }

  /** True when every table is served (nothing excluded, `*` included): a full replica. */
  servesAll(): boolean {
    return this.#all;
  }

  /**
   * The filter that also serves `name`: an exact exclude entry of it is removed, and it is appended
   * to `include` unless an entry there matches it already. Throws INVALID_NAME for an invalid name,
   * TABLE_EXCLUDED (invalid) when an exclude pattern still matches it (change the configuration),
   * TOO_MANY_TABLES (invalid) past TABLE_FILTER_LIMITS.entriesMax.
   */
  adding(name: string): TableFilter {
    validateTableName(name);
    const folded = name.toLowerCase();
    const exclude = this.exclude.filter((entry) => entry.toLowerCase() !== folded);
    const blocking = exclude.find((entry) => compileGlob(entry).matches([...folded]));
    if (blocking !== undefined)
      throw new WalshipError(
        'TABLE_EXCLUDED',
        'invalid',
        `table ${JSON.stringify(name)} matches ${JSON.stringify(blocking)} of ${TABLES_EXCLUDE_KEY}: ` +
          'change that key and restart the node to serve it',
      );
    const served = this.#include.some((g) => g.matches([...folded]));
    return new TableFilter(
      served ? this.include : withEntry(this.include, name, TABLES_INCLUDE_KEY),
      exclude,
    );
  }

  /**
   * The filter that does not serve `name`: an exact include entry of it is removed, and when a
   * pattern still matches it, it is appended to `exclude`. INVALID_NAME for an invalid name.
   */
  dropping(name: string): TableFilter {
    validateTableName(name);
    const folded = name.toLowerCase();
    const include = this.include.filter((entry) => entry.toLowerCase() !== folded);
    const next = new TableFilter(include, this.exclude);
    return next.admits(name)
      ? new TableFilter(include, withEntry(this.exclude, name, TABLES_EXCLUDE_KEY))
      : next;
  }

  /** Same lists, entry for entry (case-insensitively). */
  equals(other: TableFilter): boolean {
    const same = (a: readonly string[], b: readonly string[]) =>
      a.length === b.length && a.every((entry, i) => entry.toLowerCase() === b[i]!.toLowerCase());
    return same(this.include, other.include) && same(this.exclude, other.exclude);
  }

  toJSON(): TableFilterSpec {
    return { include: [...this.include], exclude: [...this.exclude] };
  }
}

/**
 * True when `served` — a node's `/status` `servedTables`, absent on nodes without table filters —
 * is every table (`{include: ['*'], exclude: []}`): such a replica can be promoted.
 */
export function servesAllTablesSpec(served: unknown): boolean {
  if (served === undefined || served === null) return true;
  if (typeof served !== 'object') return false;
  const { include, exclude } = served as { include?: unknown; exclude?: unknown };
  return Array.isArray(include) && include.includes('*') && (!Array.isArray(exclude) || exclude.length === 0);
}

// --- persistence ---

interface PersistedServedTables extends TableFilterSpec {
  /** The configuration these lists started from. */
  config: TableFilterSpec;
}

/**
 * The filter this node serves at start: the recorded lists when `configured` is the configuration
 * they were recorded with, else `configured` (see the file header). Records the outcome.
 */
export function resolveServedTables(tables: TableStore, configured: TableFilter): TableFilter {
  const recorded = readPersisted(tables.getMeta(SERVED_TABLES_META_KEY));
  const effective =
    recorded !== undefined && TableFilter.fromSpec(recorded.config).equals(configured)
      ? TableFilter.fromSpec(recorded)
      : configured;
  const [key, value] = servedTablesMeta(effective, configured);
  tables.setMeta(key, value);
  return effective;
}

/** The `_walship_kv` pair recording `effective`, started from `configured`. */
export function servedTablesMeta(effective: TableFilter, configured: TableFilter): [string, string] {
  const persisted: PersistedServedTables = { ...effective.toJSON(), config: configured.toJSON() };
  return [SERVED_TABLES_META_KEY, JSON.stringify(persisted)];
}

function readPersisted(text: string | undefined): PersistedServedTables | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (!isSpec(parsed)) return undefined;
    const config = (parsed as { config?: unknown }).config;
    if (!isSpec(config)) return undefined;
    TableFilter.fromSpec(parsed);
    TableFilter.fromSpec(config);
    return { include: parsed.include, exclude: parsed.exclude, config };
  } catch {
    return undefined; // unreadable: the configuration stands, and is recorded anew
  }
}

function isSpec(value: unknown): value is TableFilterSpec {
  const spec = value as Partial<TableFilterSpec> | null;
  return (
    typeof spec === 'object' && spec !== null && Array.isArray(spec.include) && Array.isArray(spec.exclude)
  );
}

// --- admin requests ---

/** The tables an admin request adds and drops: query `add=`/`drop=` (repeatable) plus the body's. */
export interface TableChanges {
  add: string[];
  drop: string[];
}

/**
 * The changes named by `params` and an optional body: `add=a&drop=b` (form encoding) or JSON
 * `{"add": "a" | ["a", …], "drop": …}`. Throws INVALID_ARGUMENT for a malformed body or when
 * nothing is named.
 */
export function tableChangesOf(params: URLSearchParams, body: string): TableChanges {
  const changes: TableChanges = { add: params.getAll('add'), drop: params.getAll('drop') };
  const text = body.trim();
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new WalshipError('INVALID_ARGUMENT', 'invalid', 'the request body is not valid JSON');
    }
    for (const field of ['add', 'drop'] as const) {
      const value = (parsed as Record<string, unknown>)[field];
      const names = value === undefined ? [] : Array.isArray(value) ? value : [value];
      if (!names.every((n): n is string => typeof n === 'string'))
        throw new WalshipError(
          'INVALID_ARGUMENT',
          'invalid',
          `"${field}" must be a table name or a list of them`,
        );
      changes[field].push(...names);
    }
  } else if (text !== '') {
    const form = new URLSearchParams(text);
    changes.add.push(...form.getAll('add'));
    changes.drop.push(...form.getAll('drop'));
  }
  if (changes.add.length + changes.drop.length === 0)
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      'POST /admin/tables needs add=<table> or drop=<table> (query or body)',
    );
  if (changes.add.length + changes.drop.length > TABLE_FILTER_LIMITS.entriesMax)
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      `at most ${TABLE_FILTER_LIMITS.entriesMax} tables per request`,
    );
  return changes;
}

// --- the database side of a change ---

/** How a change opens the node's database beside its TableStore (a second connection, same file). */
export interface DatabaseChangeOptions {
  databaseFile: string;
  synchronous: 'FULL' | 'NORMAL';
  /** The `_walship_kv` pair written in the same transaction (the new effective lists). */
  meta: [string, string];
}

/**
 * Drops table `name` (store key `key`) from the node's database: the SQLite table, its rows in
 * `_walship_tables` and `_walship_columns`, and every meta key of it (the follower's epoch and
 * partial marks, the sequenced follower's), with `meta`, in ONE transaction on a second
 * connection (the TableStore sees the commit through `data_version`). Returns false when the table
 * was not there (`meta` is still written). Refuses (TABLE_HAS_PENDING, invalid) a table with txns
 * waiting for upload: those exist only here.
 */
export function dropLocalTable(key: TableKey, options: DatabaseChangeOptions): boolean {
  return withConnection(options, (db) => {
    return db.transaction(() => {
      writeMeta(db, options.meta);
      return dropTable(db, key);
    })();
  });
}

export interface TableBootstrapOptions extends DatabaseChangeOptions {
  store: ObjectStore;
  /** A snapshot that holds the table (its manifest lists it). */
  manifest: SnapshotManifest;
  /** Where the image is restored meanwhile (on the database's filesystem). */
  tmpDir: string;
  key: string;
}

/**
 * Bootstraps ONE table from a snapshot: restores the image (restoreSnapshot: downloaded, checked)
 * to a temp file, then copies the table's SQL definition and rows, its `_walship_tables` and
 * `_walship_columns` rows and its `table.*` meta into the node's database, with `meta`, in ONE
 * transaction (ATTACH, INSERT … SELECT). Returns the table's watermark in the snapshot: the
 * follower goes on from the next txn. Throws TABLE_EXISTS (conflict) when the database holds the
 * table already, SNAPSHOT_CORRUPT when the image lacks it, and restoreSnapshot's errors.
 */
export async function bootstrapTableFromSnapshot(options: TableBootstrapOptions): Promise<bigint> {
  const work = await mkdtemp(path.join(options.tmpDir, 'table-bootstrap-'));
  try {
    const imageFile = path.join(work, 'snapshot.sqlite');
    await restoreSnapshot({
      store: options.store,
      manifest: options.manifest,
      destFile: imageFile,
      tmpDir: work,
    });
    return copyTableFromImage(imageFile, options);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function copyTableFromImage(imageFile: string, options: TableBootstrapOptions): bigint {
  const { key } = options;
  return withConnection(options, (db) => {
    db.prepare('ATTACH DATABASE ? AS snap').run(imageFile);
    try {
      return db.transaction(() => {
        const row = db
          .prepare('SELECT name, last_txn AS lastTxn FROM snap._walship_tables WHERE key = ?')
          .safeIntegers(true)
          .get(key) as { name: string; lastTxn: bigint } | undefined;
        if (row === undefined)
          throw new WalshipError(
            'SNAPSHOT_CORRUPT',
            'data',
            `snapshot ${options.manifest.id} does not hold table key ${key}, though its manifest lists it`,
          );
        if (db.prepare('SELECT 1 FROM main._walship_tables WHERE key = ?').get(key) !== undefined)
          throw new WalshipError(
            'TABLE_EXISTS',
            'conflict',
            `table ${JSON.stringify(row.name)} is in this node's database already`,
          );
        const ddl = db
          .prepare(
            'SELECT type, sql FROM snap.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC',
          )
          .all(row.name) as { type: string; sql: string }[];
        // 'table' > 'index': the table is created first, then its indexes. A dropped table (RFC-0007)
        // has none: only its watermarks come, and its chain goes on from the drop.
        for (const { sql } of ddl) db.exec(sql);
        if (ddl.length > 0)
          db.exec(
            `INSERT INTO main.${quoteIdentifier(row.name)} SELECT * FROM snap.${quoteIdentifier(row.name)}`,
          );
        db.prepare('INSERT INTO main._walship_tables SELECT * FROM snap._walship_tables WHERE key = ?').run(
          key,
        );
        db.prepare(
          'INSERT INTO main._walship_columns SELECT * FROM snap._walship_columns WHERE "table" = ?',
        ).run(row.name);
        const copyMeta = db.prepare(
          'INSERT OR REPLACE INTO main._walship_kv SELECT * FROM snap._walship_kv WHERE key = ?',
        );
        for (const prefix of [
          TABLE_EPOCH_META_PREFIX,
          TABLE_PARTIAL_META_PREFIX,
          TABLE_DEDUP_META_PREFIX,
          TABLE_TTL_META_PREFIX,
        ])
          copyMeta.run(`${prefix}${key}`);
        writeMeta(db, options.meta);
        return row.lastTxn;
      })();
    } finally {
      db.exec('DETACH DATABASE snap');
    }
  });
}

function withConnection<T>(options: DatabaseChangeOptions, fn: (db: Database.Database) => T): T {
  const db = new Database(options.databaseFile, { fileMustExist: true, timeout: 5_000 });
  try {
    db.pragma(`synchronous = ${options.synchronous}`);
    return fn(db);
  } catch (error) {
    if (error instanceof Database.SqliteError)
      throw new WalshipError(
        'STORAGE_FAILED',
        'unavailable',
        `could not change the served tables: ${error.message}`,
        {
          cause: error,
        },
      );
    throw error;
  } finally {
    db.close();
  }
}

function writeMeta(db: Database.Database, [key, value]: [string, string]): void {
  db.prepare(
    'INSERT INTO _walship_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  ).run(key, value);
}

// --- lists and patterns ---

function parseList(text: string | undefined, configKey: string): string[] {
  if (text === undefined || text.trim() === '') return [];
  return checkEntries(
    text.split(',').map((entry) => entry.trim()),
    configKey,
  );
}

function checkEntries(entries: readonly unknown[], configKey: string): string[] {
  if (entries.length > TABLE_FILTER_LIMITS.entriesMax)
    throw new InvalidConfigError(
      `${configKey}: ${entries.length} entries, above the limit of ${TABLE_FILTER_LIMITS.entriesMax}`,
    );
  return entries.map((entry) => {
    if (typeof entry !== 'string' || entry === '')
      throw new InvalidConfigError(
        `${configKey}: an entry is empty (two commas in a row, or one at an end?)`,
      );
    try {
      // A pattern is valid when it would be a valid name with each wildcard read as a letter.
      validateTableName(entry.replaceAll(/[*?]/g, 'x'));
    } catch (error) {
      const reason =
        error instanceof WalshipError ? String(error.details.reason ?? error.message) : String(error);
      throw new InvalidConfigError(
        `${configKey}: ${JSON.stringify(entry)} is neither a table name nor a pattern of one (* and ?): it ${reason}`,
      );
    }
    return entry;
  });
}

function withEntry(entries: readonly string[], name: string, configKey: string): string[] {
  if (entries.length >= TABLE_FILTER_LIMITS.entriesMax)
    throw new WalshipError(
      'TOO_MANY_TABLES',
      'invalid',
      `${configKey} holds ${entries.length} entries, the limit: use a pattern`,
    );
  return [...entries, name];
}

interface Glob {
  matches(name: readonly string[]): boolean;
}

/**
 * A case-insensitive glob over code points: `*` any run, `?` one. Matched by the two-pointer walk
 * that backtracks only to the last `*` (O(pattern × name)), not by a RegExp, whose backtracking on
 * patterns like `*a*a*a*b` grows exponentially.
 */
function compileGlob(pattern: string): Glob {
  const p = [...pattern.toLowerCase()];
  return {
    matches(name) {
      let pi = 0;
      let ni = 0;
      let star = -1;
      let resume = 0;
      while (ni < name.length) {
        if (pi < p.length && (p[pi] === '?' || p[pi] === name[ni])) {
          pi++;
          ni++;
        } else if (pi < p.length && p[pi] === '*') {
          star = pi++;
          resume = ni;
        } else if (star >= 0) {
          pi = star + 1;
          ni = ++resume;
        } else {
          return false;
        }
      }
      while (pi < p.length && p[pi] === '*') pi++;
      return pi === p.length;
    },
  };
}

/** The store key of `name` (INVALID_NAME for an invalid one). */
export function servedTableKey(name: string): TableKey {
  validateTableName(name);
  return tableKey(name);
}
