import { Buffer } from 'node:buffer';
import { WalshipClientError } from './errors.js';

/**
 * Encodes rows as ILP text v1, the way QuestDB and its official clients write them
 * (shared/reference/ilp-http.md, "Text forms"):
 *
 *   table,sym=value,… field=value,… designatedTimestampNs\n
 *
 * - table and column names and symbol values escape space, comma, `=`, CR, LF and backslash with a
 *   backslash (and a table name's leading `#`, which would otherwise start a comment line);
 * - strings are quoted; `"`, `\`, CR and LF inside are escaped with a backslash;
 * - longs get the `i` suffix, timestamp columns are µs with the `t` suffix, booleans are `t`/`f`;
 * - doubles are JS text (`2615.54`, `1e+21`, `2`, `NaN`, `Infinity`, `-Infinity`; `-0` keeps its sign);
 * - the designated timestamp is bare nanoseconds (v1); none means "the server's time".
 *
 * Names are checked against QuestDB's rules (TableUtils.isValidTableName / isValidColumnName) and
 * max_name_len, so a bad name fails here, at the call that added it, instead of failing a whole
 * batch at the server. Any error discards the row being built (the buffer only ever holds complete
 * rows) and is a WalshipClientError INVALID_ROW.
 */

export type TimestampUnit = 'ns' | 'us' | 'ms';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Forbidden in every name: `? , ' " \ / : ) ( + * % ~`, and the control characters QuestDB refuses. */
const FORBIDDEN_IN_NAMES = new Set([...'?,\'"\\/:)(+*%~'].map((c) => c.charCodeAt(0)));
for (const code of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x7f, 0xfeff]) {
  FORBIDDEN_IN_NAMES.add(code);
}
const DOT = 0x2e;
const DASH = 0x2d;

const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** What unquoted tokens (names, symbol values) must escape. */
const TOKEN_SPECIAL = /[ ,=\r\n\\]/g;
/** What quoted strings must escape. */
const STRING_SPECIAL = /["\\\r\n]/g;

function rowError(message: string, details: Record<string, unknown> = {}): WalshipClientError {
  return new WalshipClientError('INVALID_ROW', 'invalid', message, { details });
}

/** `name` escaped for a table name, column name or symbol value. Pure. */
export function escapeToken(text: string): string {
  return text.replace(TOKEN_SPECIAL, '\\$&');
}

/** `text` as a quoted ILP string. Pure. */
export function quoteString(text: string): string {
  return `"${text.replace(STRING_SPECIAL, '\\$&')}"`;
}

/** A double as ILP text: JS text, with `-0` kept negative. Pure. */
export function formatDouble(value: number): string {
  return Object.is(value, -0) ? '-0' : String(value);
}

/** Why `name` cannot name a column (QuestDB's rules), or undefined when it can. Pure. */
export function columnNameProblem(name: string, maxNameLenBytes: number): string | undefined {
  return nameProblem(name, maxNameLenBytes, false);
}

/** Why `name` cannot name a table (QuestDB's rules), or undefined when it can. Pure. */
export function tableNameProblem(name: string, maxNameLenBytes: number): string | undefined {
  return nameProblem(name, maxNameLenBytes, true);
}

function nameProblem(name: string, maxNameLenBytes: number, isTable: boolean): string | undefined {
  if (typeof name !== 'string') return `a name must be a string, not ${typeof name}`;
  if (name.length === 0) return 'a name must not be empty';
  if (UNPAIRED_SURROGATE.test(name)) return 'a name must be valid Unicode (it holds an unpaired surrogate)';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > maxNameLenBytes)
    return `a name may have at most ${maxNameLenBytes} UTF-8 bytes (max_name_len), not ${bytes}`;
  if (isTable && (name.startsWith(' ') || name.endsWith(' ')))
    return 'a table name must not start or end with a space';
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (FORBIDDEN_IN_NAMES.has(c)) return `a name must not contain ${JSON.stringify(name[i])}`;
    if (!isTable && (c === DOT || c === DASH))
      return `a column name must not contain ${JSON.stringify(name[i])}`;
    if (isTable && c === DOT && (i === 0 || i === name.length - 1 || name.charCodeAt(i - 1) === DOT)) {
      return 'a table name may hold single dots only between other characters';
    }
  }
  return undefined;
}

/** `value` in `unit` as an exact bigint count of that unit; INVALID_ROW for a non-integer. */
function integerOf(value: bigint | number, what: string): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw rowError(`${what} must be a bigint or a safe integer number, not ${String(value)}`);
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/** Nanoseconds of a timestamp given in `unit`. Pure. */
export function toNanos(value: bigint, unit: TimestampUnit): bigint {
  if (unit === 'ns') return value;
  if (unit === 'us') return value * 1_000n;
  return value * 1_000_000n;
}

/** Microseconds of a timestamp given in `unit`, nanoseconds rounded down (as the server does). Pure. */
export function toMicros(value: bigint, unit: TimestampUnit): bigint {
  if (unit === 'ns') return floorDiv(value, 1_000n);
  if (unit === 'us') return value;
  return value * 1_000n;
}

function checkUnit(unit: TimestampUnit): void {
  if (unit !== 'ns' && unit !== 'us' && unit !== 'ms') {
    throw rowError(`a timestamp unit is "ns", "us" or "ms", not ${JSON.stringify(unit)}`);
  }
}

function checkInt64(value: bigint, what: string): bigint {
  if (value < INT64_MIN || value > INT64_MAX)
    throw rowError(`${what} ${value} is outside the signed 64-bit range`);
  return value;
}

/**
 * Builds one row at a time. `table()` starts it, symbols come before columns, and `finish()` ends
 * it and hands back the complete line. Not reentrant; the Sender owns one.
 */
export class IlpRowEncoder {
  readonly #maxNameLenBytes: number;
  #line: string | undefined;
  #hasColumns = false;
  #hasAny = false;
  /** Column names of this row, folded: the server refuses a name twice in one row. */
  readonly #names = new Set<string>();

  constructor(maxNameLenBytes: number) {
    this.#maxNameLenBytes = maxNameLenBytes;
  }

  /** True while a row is started and not finished. */
  get inRow(): boolean {
    return this.#line !== undefined;
  }

  /** Drops the row being built, if any. */
  discard(): void {
    this.#line = undefined;
    this.#hasColumns = false;
    this.#hasAny = false;
    this.#names.clear();
  }

  table(name: string): void {
    if (this.#line !== undefined) {
      throw this.#fail('table() called again before the row was finished with at() or atNow()');
    }
    const problem = tableNameProblem(name, this.#maxNameLenBytes);
    if (problem !== undefined) throw this.#fail(`bad table name ${JSON.stringify(String(name))}: ${problem}`);
    const escaped = escapeToken(name);
    this.#line = escaped.startsWith('#') ? `\\${escaped}` : escaped;
  }

  symbol(name: string, value: string): void {
    if (this.#line === undefined) throw this.#fail('symbol() needs table() first');
    if (this.#hasColumns) throw this.#fail('symbols must come before columns in a row');
    this.#addName(name);
    if (typeof value !== 'string') throw this.#fail(`symbol ${name}: the value must be a string`);
    if (value.includes('\0')) throw this.#fail(`symbol ${name}: the value must not contain NUL`);
    if (UNPAIRED_SURROGATE.test(value))
      throw this.#fail(`symbol ${name}: the value holds an unpaired surrogate`);
    this.#line += `,${escapeToken(name)}=${escapeToken(value)}`;
    this.#hasAny = true;
  }

  stringColumn(name: string, value: string): void {
    if (typeof value !== 'string') throw this.#fail(`column ${name}: the value must be a string`);
    if (UNPAIRED_SURROGATE.test(value))
      throw this.#fail(`column ${name}: the value holds an unpaired surrogate`);
    this.#column(name, quoteString(value));
  }

  floatColumn(name: string, value: number): void {
    if (typeof value !== 'number') throw this.#fail(`column ${name}: the value must be a number`);
    this.#column(name, formatDouble(value));
  }

  intColumn(name: string, value: bigint | number): void {
    const exact = this.#guard(() => checkInt64(integerOf(value, `column ${name}`), `column ${name}:`));
    this.#column(name, `${exact}i`);
  }

  booleanColumn(name: string, value: boolean): void {
    if (typeof value !== 'boolean') throw this.#fail(`column ${name}: the value must be a boolean`);
    this.#column(name, value ? 't' : 'f');
  }

  /** A timestamp column, sent in µs (`…t`); `unit` says what `value` counts (default µs). */
  timestampColumn(name: string, value: bigint | number, unit: TimestampUnit = 'us'): void {
    const micros = this.#guard(() => {
      checkUnit(unit);
      return checkInt64(toMicros(integerOf(value, `column ${name}`), unit), `column ${name}:`);
    });
    this.#column(name, `${micros}t`);
  }

  /**
   * Ends the row with a designated timestamp in `unit` (sent as ns), or with none (the server's
   * time); returns the complete line, LF included.
   */
  finish(timestamp?: { value: bigint | number; unit: TimestampUnit }): string {
    if (this.#line === undefined) throw this.#fail('at()/atNow() needs table() first');
    if (!this.#hasAny) throw this.#fail('a row needs at least one symbol or column');
    let suffix = '';
    if (timestamp !== undefined) {
      const nanos = this.#guard(() => {
        checkUnit(timestamp.unit);
        return checkInt64(
          toNanos(integerOf(timestamp.value, 'the designated timestamp'), timestamp.unit),
          'the designated timestamp in ns',
        );
      });
      suffix = ` ${nanos}`;
    }
    const line = `${this.#line}${suffix}\n`;
    this.discard();
    return line;
  }

  #column(name: string, text: string): void {
    if (this.#line === undefined) throw this.#fail('a column needs table() first');
    this.#addName(name);
    this.#line += `${this.#hasColumns ? ',' : ' '}${escapeToken(name)}=${text}`;
    this.#hasColumns = true;
    this.#hasAny = true;
  }

  #addName(name: string): void {
    const problem = columnNameProblem(name, this.#maxNameLenBytes);
    if (problem !== undefined)
      throw this.#fail(`bad column name ${JSON.stringify(String(name))}: ${problem}`);
    const folded = name.toLowerCase();
    if (this.#names.has(folded)) throw this.#fail(`column ${JSON.stringify(name)} appears twice in the row`);
    this.#names.add(folded);
  }

  /** Runs `check`; on an error discards the row first. */
  #guard<T>(check: () => T): T {
    try {
      return check();
    } catch (error) {
      this.discard();
      throw error;
    }
  }

  #fail(message: string): WalshipClientError {
    this.discard();
    return rowError(`${message}; the row was dropped`);
  }
}
