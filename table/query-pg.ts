import { WalshipError } from '../core/index.js';
import type { ColumnType } from '../wal/index.js';
import type { RenderKind } from './query-format.js';

/**
 * A query's page as the PostgreSQL door (pg/) needs it, made in the query host: a PostgreSQL type
 * per column and each value as canonical text for that type, which the door then writes in the
 * text or the binary format a client asks for. Canonical text: int8 and timestamp (µs since the
 * Unix epoch) as decimal digits, float8 as JavaScript prints it (`NaN`, `Infinity`, `-Infinity`),
 * bool as `t`/`f`, bytea as `\x` and hex, anything else as it is; NULL as null.
 *
 * A table column's type comes from its declared walship type. An expression's (`count(*)`,
 * `avg(price)`) comes from its values: only integers → int8 (timestamp when the column is named
 * `time` or `timestamp`), numbers → float8, only BLOBs → bytea, anything else or nothing → text.
 */

/** PostgreSQL type OIDs (pg_type.oid) the door uses. */
export const PG_OID = Object.freeze({
  bool: 16,
  bytea: 17,
  int8: 20,
  text: 25,
  float8: 701,
  timestamp: 1114,
  numeric: 1700,
});

/** The PostgreSQL type of each walship column type. */
const OID_OF_KIND: Readonly<Record<ColumnType, number>> = Object.freeze({
  boolean: PG_OID.bool,
  long: PG_OID.int8,
  double: PG_OID.float8,
  string: PG_OID.text,
  symbol: PG_OID.text,
  timestamp: PG_OID.timestamp,
  double_array: PG_OID.text,
  decimal: PG_OID.numeric,
});

/** A page for the PostgreSQL door. */
export interface PgPage {
  /** Column names, in result order. */
  names: string[];
  /** A PostgreSQL type OID per column (PG_OID). */
  oids: number[];
  /** The rows, each value canonical text for its column's type, or null. */
  rows: (string | null)[][];
  /** Said to the client as a NOTICE before the rows (the router: which node served the read). */
  notice?: string;
}

/** The columns of a statement not run yet: declared ones typed, expressions as text. */
export function describePgColumns(
  names: readonly string[],
  kinds: readonly RenderKind[],
): Pick<PgPage, 'names' | 'oids'> {
  return {
    names: [...names],
    oids: kinds.map((kind) => (kind === undefined ? PG_OID.text : OID_OF_KIND[kind])),
  };
}

/** An integer expression column of one of these names is a timestamp (µs): `time_bucket(…) AS time`. */
export const TIME_NAMES: ReadonlySet<string> = new Set(['time', 'timestamp']);

/** Bits of the JavaScript types an expression column's values had. */
const SEEN_BIGINT = 1;
const SEEN_NUMBER = 2;
const SEEN_BYTES = 4;
const SEEN_OTHER = 8;

/** Collects a page's rows as canonical text, bounded in rows and bytes like the other formats. */
export class PgPageBuilder {
  readonly rows: (string | null)[][] = [];
  private bytes = 0;
  private readonly seen: number[];

  constructor(
    private readonly names: readonly string[],
    private readonly kinds: readonly RenderKind[],
    private readonly maxRows: number,
    private readonly maxBytes: number,
  ) {
    this.seen = kinds.map(() => 0);
  }

  get rowCount(): number {
    return this.rows.length;
  }

  add(row: readonly unknown[]): void {
    if (this.rows.length >= this.maxRows) {
      throw new WalshipError(
        'QUERY_TOO_LARGE',
        'invalid',
        `the query returns more than ${this.maxRows} rows; add a LIMIT`,
        { details: { position: 0, maxRows: this.maxRows } },
      );
    }
    const out: (string | null)[] = new Array(row.length);
    for (let i = 0; i < row.length; i++) {
      const value = row[i];
      if (value === null || value === undefined) {
        out[i] = null;
        continue;
      }
      const kind = this.kinds[i];
      if (kind === undefined) this.seen[i]! |= seenBit(value);
      const text = canonicalText(kind, value);
      this.bytes += text.length + 4;
      out[i] = text;
    }
    if (this.bytes > this.maxBytes) {
      throw new WalshipError(
        'QUERY_TOO_LARGE',
        'invalid',
        `the query result exceeds ${this.maxBytes} bytes; select fewer columns or rows`,
        { details: { position: 0, maxBytes: this.maxBytes } },
      );
    }
    this.rows.push(out);
  }

  page(): PgPage {
    const oids = this.kinds.map((kind, i) => {
      if (kind !== undefined) return OID_OF_KIND[kind];
      const seen = this.seen[i]!;
      // Dashboards name their time column `time` (Grafana's rule); integers there are µs, as stored.
      if (seen === SEEN_BIGINT)
        return TIME_NAMES.has(this.names[i]!.toLowerCase()) ? PG_OID.timestamp : PG_OID.int8;
      if (seen === SEEN_NUMBER || seen === (SEEN_BIGINT | SEEN_NUMBER)) return PG_OID.float8;
      if (seen === SEEN_BYTES) return PG_OID.bytea;
      return PG_OID.text;
    });
    return { names: [...this.names], oids, rows: this.rows };
  }
}

function seenBit(value: unknown): number {
  if (typeof value === 'bigint') return SEEN_BIGINT;
  if (typeof value === 'number') return SEEN_NUMBER;
  if (value instanceof Uint8Array) return SEEN_BYTES;
  return SEEN_OTHER;
}

/** A value as canonical text for its column (see the file comment). */
function canonicalText(kind: RenderKind, value: unknown): string {
  if (kind === 'boolean' && typeof value === 'bigint') return value === 0n ? 'f' : 't';
  if (typeof value === 'bigint' || typeof value === 'string') return String(value);
  if (typeof value === 'number') return floatText(value);
  if (value instanceof Uint8Array)
    return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  return String(value);
}

/** A double as PostgreSQL's float8 text reads it back exactly. */
export function floatText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return 'Infinity';
  if (value === Number.NEGATIVE_INFINITY) return '-Infinity';
  if (Object.is(value, -0)) return '-0';
  return String(value);
}
