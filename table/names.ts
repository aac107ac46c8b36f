/**
 * Table and column names: which names are valid, and how a table name becomes a store key.
 *
 * Validity follows QuestDB's `TableUtils.isValidTableName` / `isValidColumnName` (what ILP clients
 * already expect), tightened where walship stores names elsewhere:
 * - 1..127 UTF-8 bytes (QuestDB's `cairo.max.file.name.length`, also the segment format's
 *   `maxNameBytes`), well-formed UTF-16 (a lone surrogate has no UTF-8 form);
 * - none of `? , ' " \ / : ) ( + * % ~`, no control character (U+0000–U+001F, U+007F–U+009F: QuestDB
 *   forbids U+0000–U+000F and U+007F; the rest of C0 and C1 are invisible in logs and keys too)
 *   and no byte order mark U+FEFF;
 * - tables: no leading or trailing space or `.`, no `..` (QuestDB's rules: a leading dot hides a
 *   directory, Windows trims a trailing one), and a store key (below) of at most
 *   MAX_TABLE_KEY_CHARS characters, so the key fits in one file name on common file systems;
 * - columns: additionally no `.` and no `-`;
 * - names starting with `_walship` or `sqlite_` (ASCII case-insensitive) are reserved for
 *   walship's metadata tables and SQLite's own.
 *
 * The table key (DESIGN §3 `<t>`). Tables are case-insensitive, so the key is an encoding of the
 * case-folded name (`name.toLowerCase()`): `Trades` and `trades` share the key `trades`. Each
 * UTF-16 code unit run of the folded name is written as UTF-8 and then:
 * - the bytes of `a`–`z`, `0`–`9`, `_` and `-` are kept as they are;
 * - `.` is kept, except when it is the first or last character or follows another `.`, where it
 *   is written `%2E` — so a key is never `.` or `..`, never starts with `.` and never holds `..`;
 * - every other byte is written `%XX`, two uppercase hex digits.
 * So a key matches /^(?:[a-z0-9_.-]|%[0-9A-F]{2})+$/ and contains no `/`: safe as an object-store
 * key segment and as a file name. Literal letters are lowercase and hex digits uppercase, so two
 * keys never differ by case alone (safe on case-insensitive file systems too). The encoding is a function of the folded name, and `decodeTableKey` accepts only
 * keys it produces (re-encoding the decoded name must give the same key), so one table has exactly
 * one key. A key is at most 3 characters per UTF-8 byte of the folded name.
 */
import { WalshipError } from '../core/index.js';

/** UTF-8 bytes of a table or column name: QuestDB's cairo.max.file.name.length. */
export const MAX_NAME_BYTES = 127;

/**
 * Characters of a table key: NAME_MAX (255 bytes) of ext4, xfs and APFS, since the fs object store
 * and snapshot directories use the key as one file name. Only names of mostly non-ASCII characters
 * come near it (each non-ASCII UTF-8 byte costs 3 characters).
 */
export const MAX_TABLE_KEY_CHARS = 255;

/**
 * A table's store key: a string `tableKey` produced (or `asTableKey` / `isTableKey` checked), so it
 * is safe as an object-store key segment and a file name. A name (user input) or any other string
 * becomes one only through those functions; the brand exists only at compile time.
 */
declare const TABLE_KEY_BRAND: unique symbol;
export type TableKey = string & { readonly [TABLE_KEY_BRAND]: true };

const RESERVED_PREFIXES = ['_walship', 'sqlite_'] as const;

/** Characters QuestDB forbids in both table and column names (besides control characters). */
const FORBIDDEN_IN_ALL = new Set([
  '?',
  ',',
  "'",
  '"',
  '\\',
  '/',
  ':',
  ')',
  '(',
  '+',
  '*',
  '%',
  '~',
  '\uFEFF',
]);
/** Characters forbidden in column names only. */
const FORBIDDEN_IN_COLUMNS = new Set(['.', '-']);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** String.prototype.isWellFormed (Node 20) is ES2024, above this project's lib setting. */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

type NameKind = 'table' | 'column';

function invalidName(kind: NameKind, name: unknown, reason: string): WalshipError {
  const shown = typeof name === 'string' ? JSON.stringify(name) : String(name);
  return new WalshipError('INVALID_NAME', 'invalid', `invalid ${kind} name ${shown}: ${reason}`, {
    details: { kind, name, reason },
  });
}

function isControl(code: number): boolean {
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f);
}

/** The reason `name` breaks a rule both kinds share, or undefined. */
function commonProblem(name: unknown, kind: NameKind): string | undefined {
  if (typeof name !== 'string') return 'not a string';
  if (name.length === 0) return 'empty';
  if (!isWellFormed(name)) return 'has a lone surrogate, which UTF-8 cannot carry';
  const bytes = utf8.encode(name).length;
  if (bytes > MAX_NAME_BYTES) return `${bytes} UTF-8 bytes, above the limit of ${MAX_NAME_BYTES}`;
  const forbiddenHere = kind === 'column' ? FORBIDDEN_IN_COLUMNS : undefined;
  for (const char of name) {
    const code = char.codePointAt(0)!;
    if (isControl(code))
      return `has the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
    if (FORBIDDEN_IN_ALL.has(char) || forbiddenHere?.has(char))
      return `has the forbidden character '${char}'`;
  }
  const lower = name.toLowerCase();
  const reserved = RESERVED_PREFIXES.find((prefix) => lower.startsWith(prefix));
  if (reserved !== undefined) return `names starting with '${reserved}' are reserved`;
  return undefined;
}

function tableProblem(name: string): string | undefined {
  if (name.startsWith(' ') || name.endsWith(' ')) return 'starts or ends with a space';
  if (name.startsWith('.') || name.endsWith('.')) return "starts or ends with '.'";
  if (name.includes('..')) return "has '..'";
  const keyChars = tableKey(name).length;
  if (keyChars > MAX_TABLE_KEY_CHARS) {
    return `its store key is ${keyChars} characters, above the limit of ${MAX_TABLE_KEY_CHARS} (use fewer non-ASCII characters)`;
  }
  return undefined;
}

/**
 * Throws WalshipError `INVALID_NAME` (kind `invalid`, details `{kind, name, reason}`) unless `name`
 * is a valid table name (rules in the file header). Returns nothing; pure.
 */
export function validateTableName(name: string): void {
  const problem = commonProblem(name, 'table') ?? tableProblem(name);
  if (problem !== undefined) throw invalidName('table', name, problem);
}

/**
 * Throws WalshipError `INVALID_NAME` (kind `invalid`, details `{kind, name, reason}`) unless `name`
 * is a valid column name (rules in the file header). Returns nothing; pure.
 */
export function validateColumnName(name: string): void {
  const problem = commonProblem(name, 'column');
  if (problem !== undefined) throw invalidName('column', name, problem);
}

/** True for the bytes a key keeps as they are: a-z, 0-9, '_', '-' ('.' has its own rule). */
function isKeptByte(byte: number): boolean {
  return (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x5f || byte === 0x2d;
}

const DOT = 0x2e;
const HEX = '0123456789ABCDEF';

/**
 * The store-key and file-name-safe encoding of the case-folded table name (rules in the file
 * header). Defined for every non-empty well-formed string, valid table name or not; throws
 * `INVALID_NAME` for an empty string or one with a lone surrogate. Pure and deterministic:
 * `tableKey(a) === tableKey(b)` exactly when `a.toLowerCase() === b.toLowerCase()`.
 */
export function tableKey(name: string): TableKey {
  if (typeof name !== 'string' || name.length === 0) throw invalidName('table', name, 'empty');
  if (!isWellFormed(name)) throw invalidName('table', name, 'has a lone surrogate, which UTF-8 cannot carry');
  const bytes = utf8.encode(name.toLowerCase());
  let key = '';
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    const keptDot = byte === DOT && i > 0 && i < bytes.length - 1 && bytes[i - 1] !== DOT;
    if (keptDot || isKeptByte(byte)) key += String.fromCharCode(byte);
    else key += `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
  }
  return key as TableKey;
}

function invalidKey(key: unknown, reason: string): WalshipError {
  const shown = typeof key === 'string' ? JSON.stringify(key) : String(key);
  return new WalshipError('INVALID_TABLE_KEY', 'invalid', `invalid table key ${shown}: ${reason}`, {
    details: { key, reason },
  });
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

/** The bytes a key spells out, or a reason it is not a well-formed escape sequence. */
function keyBytes(key: string): Uint8Array | string {
  const bytes = new Uint8Array(key.length);
  let length = 0;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code !== 0x25) {
      if (!isKeptByte(code) && code !== DOT)
        return `character ${JSON.stringify(key[i])} at ${i} is not allowed`;
      bytes[length++] = code;
      continue;
    }
    const high = hexValue(key.charCodeAt(i + 1));
    const low = hexValue(key.charCodeAt(i + 2));
    if (high < 0 || low < 0) return `'%' at ${i} is not followed by two uppercase hex digits`;
    bytes[length++] = (high << 4) | low;
    i += 2;
  }
  return bytes.subarray(0, length);
}

/**
 * The case-folded table name `key` encodes: the inverse of `tableKey`. Throws WalshipError
 * `INVALID_TABLE_KEY` (kind `invalid`) for any string `tableKey` cannot produce: other characters,
 * bad or lowercase escapes, escapes of bytes that are kept as they are, invalid UTF-8, a name that
 * is not case-folded. Pure.
 */
export function decodeTableKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw invalidKey(key, 'empty');
  const bytes = keyBytes(key);
  if (typeof bytes === 'string') throw invalidKey(key, bytes);
  let name: string;
  try {
    name = strictUtf8.decode(bytes);
  } catch (cause) {
    throw invalidKey(key, `escapes are not valid UTF-8 (${String(cause)})`);
  }
  // Canonical form: the one key tableKey gives for this name. This also rejects names that are
  // not case-folded and escapes of bytes that must stay literal.
  if (name.length === 0 || tableKey(name) !== key)
    throw invalidKey(key, 'not the canonical encoding of a name');
  return name;
}

/**
 * `key` as a TableKey, for a key that arrives as a plain string (a listing, a request, a record).
 * Throws WalshipError `INVALID_TABLE_KEY` (kind `invalid`) for any string `tableKey` cannot
 * produce (the checks of `decodeTableKey`). Pure.
 */
export function asTableKey(key: string): TableKey {
  decodeTableKey(key);
  return key as TableKey;
}

/** True when `key` is a string `tableKey` can produce (what `asTableKey` accepts). Pure. */
export function isTableKey(key: string): key is TableKey {
  try {
    decodeTableKey(key);
    return true;
  } catch {
    return false;
  }
}
