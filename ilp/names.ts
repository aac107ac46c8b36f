import { Buffer } from 'node:buffer';

/**
 * Table and column name rules, as QuestDB's TableUtils.isValidTableName / isValidColumnName:
 * - never `? , ' " \ / : ) ( + * % ~`, NUL, U+0001..U+0008, TAB, U+000B, U+000C, LF, CR, U+000E,
 *   U+000F, DEL or U+FEFF (QuestDB allows U+0010..U+001F, so walship does too);
 * - columns additionally never `.` or `-`;
 * - tables may hold single dots, but not first, last or twice in a row, and never start or end
 *   with a space;
 * - 1..maxNameBytes UTF-8 bytes (QuestDB's cairo.max.file.name.length, 127).
 */

const FORBIDDEN_IN_BOTH = new Uint8Array(128);
for (const c of '?,\'"\\/:)(+*%~') FORBIDDEN_IN_BOTH[c.charCodeAt(0)] = 1;
for (const code of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0b, 0x0c, 0x0a, 0x0d, 0x0e, 0x0f, 0x7f]) {
  FORBIDDEN_IN_BOTH[code] = 1;
}
const BOM = 0xfeff;
const DOT = 46;
const DASH = 45;
const SPACE = 32;

/** UTF-8 bytes of `name`, cheap for ASCII. */
function utf8Bytes(name: string, ascii: boolean): number {
  return ascii ? name.length : Buffer.byteLength(name, 'utf8');
}

/** True when `name` may name a column. `ascii` tells the caller already knows it is ASCII. */
export function isValidColumnName(name: string, maxNameBytes: number, ascii = false): boolean {
  const length = name.length;
  if (length === 0 || utf8Bytes(name, ascii) > maxNameBytes) return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    if (c < 128) {
      if (FORBIDDEN_IN_BOTH[c] === 1 || c === DOT || c === DASH) return false;
    } else if (c === BOM) {
      return false;
    }
  }
  return true;
}

/** True when `name` may name a table. */
export function isValidTableName(name: string, maxNameBytes: number, ascii = false): boolean {
  const length = name.length;
  if (length === 0 || utf8Bytes(name, ascii) > maxNameBytes) return false;
  if (name.charCodeAt(0) === SPACE || name.charCodeAt(length - 1) === SPACE) return false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    if (c < 128) {
      if (FORBIDDEN_IN_BOTH[c] === 1) return false;
      // A single dot in the middle only: a leading dot hides a directory, a trailing one is
      // trimmed by some file systems, and `..` looks like path traversal.
      if (c === DOT && (i === 0 || i === length - 1 || name.charCodeAt(i - 1) === DOT)) return false;
    } else if (c === BOM) {
      return false;
    }
  }
  return true;
}

/** A decoded, validated name, shared by every line that spells it the same way. */
export interface NameEntry {
  name: string;
  /** Lower-cased: tables and columns are case-insensitive, so `a` and `A` are the same column. */
  folded: string;
  /** UTF-8 bytes, checked against the caller's maxNameBytes on every hit (limits may differ). */
  byteLength: number;
}

/**
 * A direct-mapped cache from raw token bytes (as a latin1 string, escapes included: the same bytes
 * always mean the same thing) to what they decode to. Names and symbol values repeat on every line
 * of a request and across requests, so decoding, validating and folding them once pays, and so
 * does sharing one string per distinct value. A lookup allocates nothing: the parser hashes the
 * token while scanning it, and the cache compares it in place char by char. Bounded: SLOTS
 * entries; a colliding token evicts the one in its slot.
 */
export class TokenCache<T> {
  /** Entries kept (a power of two). */
  static readonly SLOTS = 4096;
  /** Tokens longer than this are never cached: they rarely repeat. */
  static readonly MAX_TOKEN_CHARS = 64;

  private readonly keys: (string | undefined)[] = new Array(TokenCache.SLOTS).fill(undefined);
  private readonly values: (T | undefined)[] = new Array(TokenCache.SLOTS).fill(undefined);

  /** The value cached for the token [start, end) of `text` with hash `hash`, if any. */
  get(text: string, start: number, end: number, hash: number): T | undefined {
    const slot = hash & (TokenCache.SLOTS - 1);
    const key = this.keys[slot];
    if (key === undefined || key.length !== end - start) return undefined;
    for (let i = 0; i < key.length; i++) {
      if (key.charCodeAt(i) !== text.charCodeAt(start + i)) return undefined;
    }
    return this.values[slot];
  }

  set(text: string, start: number, end: number, hash: number, value: T): void {
    if (end - start > TokenCache.MAX_TOKEN_CHARS) return;
    const slot = hash & (TokenCache.SLOTS - 1);
    this.keys[slot] = text.slice(start, end);
    this.values[slot] = value;
  }
}
