import type Database from 'better-sqlite3';
import { columnTypeOfDeclared } from './sql-types.js';

/**
 * Enough of PostgreSQL's catalog for psql (`\dt`, `\d table`) and dashboards (Grafana lists
 * tables and columns through `information_schema`), on a query host's read-only connection:
 * virtual tables (better-sqlite3 `db.table`) named as the PostgreSQL door rewrites the schema
 * qualified names (`pg_catalog.pg_class` → `pg_class`, `information_schema.columns` →
 * `information_schema_columns`), and the functions those queries call (`version()`,
 * `current_setting()`, `format_type()`, …). A virtual table cannot query its own connection while
 * a statement runs, so the tables' rows come from a snapshot of the schema taken before each
 * statement that names one (`refreshPgCatalog`). OIDs are text, so psql's `c.oid = '16385'`
 * compares as it does on PostgreSQL; those psql compares with 0 (reloftype, reltablespace,
 * reltoastrelid) are the integer 0.
 */

const NAMESPACE = { pg_catalog: '11', public: '2200', information_schema: '13000' } as const;
const DATABASE = 'qdb';
const OWNER = 'admin';

/** What a PostgreSQL type is called and how it is sized, by OID (PG_OID and the usual others). */
const PG_TYPES: readonly { oid: number; name: string; len: number; category: string; array: number }[] = [
  { oid: 16, name: 'bool', len: 1, category: 'B', array: 1000 },
  { oid: 17, name: 'bytea', len: -1, category: 'U', array: 1001 },
  { oid: 18, name: 'char', len: 1, category: 'S', array: 1002 },
  { oid: 19, name: 'name', len: 64, category: 'S', array: 1003 },
  { oid: 20, name: 'int8', len: 8, category: 'N', array: 1016 },
  { oid: 21, name: 'int2', len: 2, category: 'N', array: 1005 },
  { oid: 23, name: 'int4', len: 4, category: 'N', array: 1007 },
  { oid: 25, name: 'text', len: -1, category: 'S', array: 1009 },
  { oid: 26, name: 'oid', len: 4, category: 'N', array: 1028 },
  { oid: 700, name: 'float4', len: 4, category: 'N', array: 1021 },
  { oid: 701, name: 'float8', len: 8, category: 'N', array: 1022 },
  { oid: 1043, name: 'varchar', len: -1, category: 'S', array: 1015 },
  { oid: 1082, name: 'date', len: 4, category: 'D', array: 1182 },
  { oid: 1114, name: 'timestamp', len: 8, category: 'D', array: 1115 },
  { oid: 1184, name: 'timestamptz', len: 8, category: 'D', array: 1185 },
  { oid: 1700, name: 'numeric', len: -1, category: 'N', array: 1231 },
];

/** format_type's answer per OID, and information_schema's data_type. */
const TYPE_DISPLAY: Readonly<Record<number, string>> = {
  16: 'boolean',
  17: 'bytea',
  20: 'bigint',
  21: 'smallint',
  23: 'integer',
  25: 'text',
  700: 'real',
  701: 'double precision',
  1043: 'character varying',
  1082: 'date',
  1114: 'timestamp without time zone',
  1184: 'timestamp with time zone',
  1700: 'numeric',
};

/** The PostgreSQL type of a walship column type (as the door describes results: query-pg.ts). */
const OID_OF_DECLARED: Readonly<Record<string, number>> = {
  boolean: 16,
  long: 20,
  double: 701,
  string: 25,
  symbol: 25,
  timestamp: 1114,
  double_array: 25,
  decimal: 1700,
};

interface CatalogTable {
  oid: string;
  name: string;
  columns: { name: string; oid: number; notNull: boolean }[];
}

/** The settings `current_setting()` and `pg_settings` answer. */
export const PG_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  server_version: '15.0',
  server_version_num: '150000',
  server_encoding: 'UTF8',
  client_encoding: 'UTF8',
  search_path: '"$user", public',
  datestyle: 'ISO, MDY',
  timezone: 'UTC',
  integer_datetimes: 'on',
  standard_conforming_strings: 'on',
  max_identifier_length: '63',
  transaction_isolation: 'read committed',
  default_transaction_read_only: 'on',
  is_superuser: 'off',
});

/** The catalog tables whose rows come from the schema snapshot: a statement naming one takes one first. */
const CATALOG_NAMES = /\b(pg_class|pg_attribute|pg_tables|information_schema_\w+)\b/i;

const catalogs = new WeakMap<Database.Database, { tables: CatalogTable[] }>();

/** Registers the catalog's virtual tables and functions on `db` (a query host's connection). */
export function registerPgCatalog(db: Database.Database): void {
  const state = { tables: [] as CatalogTable[] };
  catalogs.set(db, state);
  const table = (name: string, columns: string[], rows: () => Iterable<unknown[]>) =>
    db.table(name, {
      columns,
      *rows() {
        yield* rows();
      },
    });
  // Booleans as PostgreSQL's text: psql compares them with "t".
  const b = (flag: boolean) => (flag ? 't' : 'f');

  table('pg_namespace', ['oid', 'nspname', 'nspowner', 'nspacl'], () =>
    Object.entries(NAMESPACE).map(([name, oid]) => [oid, name, '10', null]),
  );
  table(
    'pg_database',
    ['oid', 'datname', 'datdba', 'encoding', 'datcollate', 'datctype', 'datallowconn'],
    () => [['16384', DATABASE, '10', 6, 'C', 'C', 't']],
  );
  table('pg_am', ['oid', 'amname', 'amhandler', 'amtype'], () => [['2', 'heap', '3', 't']]);
  table(
    'pg_class',
    [
      'oid',
      'relname',
      'relnamespace',
      'reltype',
      'reloftype',
      'relowner',
      'relam',
      'relfilenode',
      'reltablespace',
      'relpages',
      'reltuples',
      'reltoastrelid',
      'relhasindex',
      'relisshared',
      'relpersistence',
      'relkind',
      'relnatts',
      'relchecks',
      'relhasrules',
      'relhastriggers',
      'relhassubclass',
      'relrowsecurity',
      'relforcerowsecurity',
      'relispopulated',
      'relreplident',
      'relispartition',
      'relacl',
      'reloptions',
      'relpartbound',
    ],
    () =>
      state.tables.map((t) => [
        t.oid,
        t.name,
        NAMESPACE.public,
        '0',
        0,
        '10',
        '2',
        t.oid,
        0,
        0,
        -1,
        0,
        'f',
        'f',
        'p',
        'r',
        t.columns.length,
        0,
        'f',
        'f',
        'f',
        'f',
        'f',
        't',
        'd',
        'f',
        null,
        null,
        null,
      ]),
  );
  table(
    'pg_attribute',
    [
      'attrelid',
      'attname',
      'atttypid',
      'attstattarget',
      'attlen',
      'attnum',
      'attndims',
      'atttypmod',
      'attbyval',
      'attstorage',
      'attalign',
      'attnotnull',
      'atthasdef',
      'atthasmissing',
      'attidentity',
      'attgenerated',
      'attisdropped',
      'attislocal',
      'attinhcount',
      'attcollation',
      'attacl',
      'attoptions',
      'attfdwoptions',
      'attcompression',
    ],
    function* () {
      for (const t of state.tables) {
        let position = 0;
        for (const c of t.columns) {
          position++;
          const len = PG_TYPES.find((type) => type.oid === c.oid)?.len ?? -1;
          yield [
            t.oid,
            c.name,
            String(c.oid),
            -1,
            len,
            position,
            0,
            -1,
            b(len > 0),
            'p',
            'd',
            b(c.notNull),
            'f',
            'f',
            '',
            '',
            'f',
            't',
            0,
            '0',
            null,
            null,
            null,
            '',
          ];
        }
      }
    },
  );
  table(
    'pg_type',
    [
      'oid',
      'typname',
      'typnamespace',
      'typowner',
      'typlen',
      'typbyval',
      'typtype',
      'typcategory',
      'typelem',
      'typarray',
      'typbasetype',
      'typtypmod',
      'typnotnull',
      'typrelid',
      'typcollation',
    ],
    function* () {
      for (const t of PG_TYPES) {
        yield [
          String(t.oid),
          t.name,
          NAMESPACE.pg_catalog,
          '10',
          t.len,
          b(t.len > 0),
          'b',
          t.category,
          '0',
          String(t.array),
          '0',
          -1,
          'f',
          '0',
          '0',
        ];
        yield [
          String(t.array),
          `_${t.name}`,
          NAMESPACE.pg_catalog,
          '10',
          -1,
          'f',
          'b',
          'A',
          String(t.oid),
          '0',
          '0',
          -1,
          'f',
          '0',
          '0',
        ];
      }
    },
  );
  table('pg_settings', ['name', 'setting', 'unit', 'category', 'short_desc'], () =>
    Object.entries(PG_SETTINGS).map(([name, setting]) => [name, setting, null, 'walship', '']),
  );
  table('pg_roles', ['oid', 'rolname', 'rolsuper', 'rolcanlogin'], () => [['10', OWNER, 'f', 't']]);
  table('pg_user', ['usesysid', 'usename', 'usesuper'], () => [['10', OWNER, 'f']]);
  table(
    'pg_tables',
    [
      'schemaname',
      'tablename',
      'tableowner',
      'tablespace',
      'hasindexes',
      'hasrules',
      'hastriggers',
      'rowsecurity',
    ],
    () => state.tables.map((t) => ['public', t.name, OWNER, null, 'f', 'f', 'f', 'f']),
  );
  // What psql's \d asks of and expects empty: walship has no indexes, constraints, inheritance…
  table(
    'pg_index',
    ['indexrelid', 'indrelid', 'indisprimary', 'indisunique', 'indisclustered', 'indisvalid', 'indkey'],
    () => [],
  );
  table('pg_inherits', ['inhrelid', 'inhparent', 'inhseqno', 'inhdetachpending'], () => []);
  table('pg_constraint', ['oid', 'conname', 'conrelid', 'contype', 'conindid', 'confrelid'], () => []);
  table('pg_description', ['objoid', 'classoid', 'objsubid', 'description'], () => []);
  table('pg_proc', ['oid', 'proname', 'pronamespace'], () => []);
  table('pg_extension', ['oid', 'extname', 'extowner', 'extnamespace', 'extversion'], () => []);
  table('pg_attrdef', ['oid', 'adrelid', 'adnum', 'adbin'], () => []);
  table('pg_collation', ['oid', 'collname', 'collnamespace', 'collprovider'], () => []);
  table(
    'pg_trigger',
    ['oid', 'tgrelid', 'tgname', 'tgfoid', 'tgtype', 'tgenabled', 'tgisinternal', 'tgparentid'],
    () => [],
  );
  table(
    'pg_policy',
    ['oid', 'polname', 'polrelid', 'polcmd', 'polpermissive', 'polroles', 'polqual', 'polwithcheck'],
    () => [],
  );
  table('pg_rewrite', ['oid', 'rulename', 'ev_class', 'ev_type', 'is_instead'], () => []);
  table(
    'pg_statistic_ext',
    ['oid', 'stxrelid', 'stxname', 'stxnamespace', 'stxkeys', 'stxkind', 'stxstattarget'],
    () => [],
  );
  table('pg_publication', ['oid', 'pubname', 'puballtables'], () => []);
  table('pg_publication_rel', ['oid', 'prpubid', 'prrelid', 'prqual', 'prattrs'], () => []);
  table('pg_publication_namespace', ['oid', 'pnpubid', 'pnnspid'], () => []);
  table('pg_partitioned_table', ['partrelid', 'partstrat', 'partnatts'], () => []);
  table('pg_foreign_table', ['ftrelid', 'ftserver', 'ftoptions'], () => []);
  table('pg_tablespace', ['oid', 'spcname'], () => []);
  table('pg_sequence', ['seqrelid'], () => []);

  table('information_schema_schemata', ['catalog_name', 'schema_name', 'schema_owner'], () =>
    Object.keys(NAMESPACE).map((name) => [DATABASE, name, OWNER]),
  );
  table(
    'information_schema_tables',
    ['table_catalog', 'table_schema', 'table_name', 'table_type', 'is_insertable_into'],
    () => state.tables.map((t) => [DATABASE, 'public', t.name, 'BASE TABLE', 'NO']),
  );
  table(
    'information_schema_columns',
    [
      'table_catalog',
      'table_schema',
      'table_name',
      'column_name',
      'ordinal_position',
      'column_default',
      'is_nullable',
      'data_type',
      'udt_catalog',
      'udt_schema',
      'udt_name',
      'character_maximum_length',
      'numeric_precision',
      'datetime_precision',
    ],
    function* () {
      for (const t of state.tables) {
        let position = 0;
        for (const c of t.columns) {
          position++;
          const udt = PG_TYPES.find((type) => type.oid === c.oid)?.name ?? 'text';
          yield [
            DATABASE,
            'public',
            t.name,
            c.name,
            position,
            null,
            c.notNull ? 'NO' : 'YES',
            TYPE_DISPLAY[c.oid] ?? 'text',
            DATABASE,
            'pg_catalog',
            udt,
            null,
            c.oid === 20 ? 64 : c.oid === 701 ? 53 : null,
            c.oid === 1114 ? 6 : null,
          ];
        }
      }
    },
  );

  const deterministic = { deterministic: true, varargs: true };
  db.function('version', () => 'PostgreSQL 15.0 (walship; SQLite underneath)');
  db.function(
    'current_setting',
    { varargs: true },
    (name: unknown) => PG_SETTINGS[String(name).toLowerCase()] ?? null,
  );
  db.function('current_database', () => DATABASE);
  db.function('current_schema', () => 'public');
  db.function('current_user', () => OWNER);
  db.function('session_user', () => OWNER);
  db.function('pg_backend_pid', () => process.pid);
  db.function('pg_table_is_visible', deterministic, () => 1);
  db.function('pg_type_is_visible', deterministic, () => 1);
  db.function('pg_get_userbyid', deterministic, () => OWNER);
  db.function('obj_description', { varargs: true }, () => null);
  db.function('col_description', { varargs: true }, () => null);
  db.function('shobj_description', { varargs: true }, () => null);
  db.function('pg_get_expr', { varargs: true }, () => null);
  db.function('pg_encoding_to_char', deterministic, () => 'UTF8');
  db.function('has_table_privilege', { varargs: true }, () => 1);
  db.function('has_schema_privilege', { varargs: true }, () => 1);
  db.function('format_type', deterministic, (oid: unknown) => TYPE_DISPLAY[Number(oid)] ?? 'text');
  db.function('quote_ident', deterministic, (name: unknown) => quoteIdent(String(name)));
  // parse_ident(text) as PostgreSQL splits it, for Grafana's `(parse_ident('t'))[1]` (pg/sql-text.ts).
  db.function('pg_ident_length', deterministic, (text: unknown) => identParts(String(text)).length);
  db.function(
    'pg_ident_part',
    deterministic,
    (text: unknown, n: unknown) => identParts(String(text))[Number(n) - 1] ?? null,
  );
  // SQLite's REGEXP operator calls regexp(pattern, value); the door turns PostgreSQL's ~ into it.
  db.function('regexp', deterministic, (pattern: unknown, value: unknown) =>
    value === null || pattern === null ? null : new RegExp(String(pattern)).test(String(value)) ? 1 : 0,
  );
}

/** True when `sql` names one of the catalog's tables (so a snapshot is worth taking). */
export function namesPgCatalog(sql: string): boolean {
  return CATALOG_NAMES.test(sql);
}

/**
 * Reads the user tables and their columns for the catalog's virtual tables. Run on `db` before a
 * statement that names one, inside the statement's read transaction (the same snapshot).
 */
export function refreshPgCatalog(db: Database.Database): void {
  const state = catalogs.get(db);
  if (state === undefined) return;
  const rows = db
    .prepare(
      `SELECT m.rowid AS id, m.name AS tbl, p.name AS col, p.type AS type, p."notnull" AS nn
       FROM sqlite_schema m JOIN pragma_table_info(m.name) p
       WHERE m.type = 'table' AND m.name NOT LIKE '\\_walship\\_%' ESCAPE '\\' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
       ORDER BY m.name, p.cid`,
    )
    .all() as { id: number | bigint; tbl: string; col: string; type: string; nn: number | bigint }[];
  const tables: CatalogTable[] = [];
  for (const row of rows) {
    let t = tables.at(-1);
    if (t?.name !== row.tbl) {
      t = { oid: String(100_000 + Number(row.id)), name: row.tbl, columns: [] };
      tables.push(t);
    }
    const kind = columnTypeOfDeclared(row.type);
    t.columns.push({
      name: row.col,
      oid: kind === undefined ? 25 : (OID_OF_DECLARED[kind] ?? 25),
      notNull: Number(row.nn) === 1,
    });
  }
  state.tables = tables;
}

/** PostgreSQL's quote_ident: as it is when it is a plain lower-case identifier, else double-quoted. */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

/** PostgreSQL's parse_ident: dotted parts, quoted ones as written (without quotes), others lower case. */
export function identParts(text: string): string[] {
  const parts: string[] = [];
  const pattern = /\s*(?:"((?:[^"]|"")*)"|([^."\s]+))\s*(\.|$)/y;
  let at = 0;
  while (at < text.length) {
    pattern.lastIndex = at;
    const m = pattern.exec(text);
    if (m === null) break;
    parts.push(m[1] !== undefined ? m[1].replaceAll('""', '"') : m[2]!.toLowerCase());
    at = pattern.lastIndex;
    if (m[3] === '') break;
  }
  return parts;
}
