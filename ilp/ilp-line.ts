import type { DecimalValue, DoubleArrayValue } from '../wal/index.js';

/**
 * One parsed ILP line: what the parser (`ilp/`) hands to the write path, and what the txn
 * builder (`primary/txn-builder.ts`) turns into columnar txn records. Names are as written
 * (unescaped); case-insensitive matching of tables and columns is the table layer's job.
 */
export interface IlpLine {
  /** 1-based line number within the request, for error messages. */
  line: number;
  table: string;
  /** Tag set: symbol columns, in line order. */
  symbols: IlpSymbol[];
  /** Field set, in line order. */
  fields: IlpField[];
  /** The designated timestamp in µs since the epoch, or null for "the server's time at commit". */
  timestampUs: bigint | null;
}

export interface IlpSymbol {
  name: string;
  value: string;
}

export interface IlpField {
  name: string;
  value: IlpFieldValue;
}

/** Field values by ILP type; `type` names match the wal column types. */
export type IlpFieldValue =
  /** `42i`: exact int64. */
  | { type: 'long'; value: bigint }
  /** `1.5`, `2`, `1e+21`, `NaN`, `Infinity`, or the v2 binary double. */
  | { type: 'double'; value: number }
  /** `t`, `f`, `true`, `false`, `T`, `F`, `True`, `FALSE`, … */
  | { type: 'boolean'; value: boolean }
  /** `"…"` with `\"`, `\\` and backslash-newline unescaped. */
  | { type: 'string'; value: string }
  /** `1700000000123456t` (µs) or `…n` (ns, truncated to µs): a timestamp column, in µs. */
  | { type: 'timestamp'; value: bigint }
  /** v2 binary array of doubles; null for the null array (`==` 14 33). */
  | { type: 'double_array'; value: DoubleArrayValue | null }
  /** v3 binary decimal, or text `123.45d`. */
  | { type: 'decimal'; value: DecimalValue | null };
