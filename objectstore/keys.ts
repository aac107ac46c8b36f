import { InvalidArgumentError } from '../core/index.js';
import { KEY_BYTES_MAX, WRITE_ID_CHARS_MAX } from './object-store.js';

/**
 * Key rules, shared by every store so that a key valid on one is valid on all, and so that
 * no key can name a file outside a filesystem store's root:
 * non-empty; at most KEY_BYTES_MAX UTF-8 bytes; segments separated by single `/`; no leading
 * or trailing `/`; no `.` or `..` segment; no control characters or backslashes; the first
 * segment may not be `.walship` (the filesystem store keeps its temp and lock files there).
 */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key, false);
  if (problem !== undefined)
    throw new InvalidArgumentError(`invalid object key ${JSON.stringify(key)}: ${problem}`);
}

/** A list prefix follows the key rules, but may be empty, may end with `/` and may end mid-segment. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const problem = keyProblem(prefix, true);
  if (problem !== undefined) {
    throw new InvalidArgumentError(`invalid object key prefix ${JSON.stringify(prefix)}: ${problem}`);
  }
}

export const RESERVED_FIRST_SEGMENT = '.walship';

function keyProblem(key: string, isPrefix: boolean): string | undefined {
  if (key.length === 0) return 'it is empty';
  if (Buffer.byteLength(key, 'utf8') > KEY_BYTES_MAX) return `it is longer than ${KEY_BYTES_MAX} bytes`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what we reject
  if (/[\u0000-\u001f\u007f\\]/.test(key)) return 'it contains a control character or a backslash';
  if (key.startsWith('/')) return 'it starts with /';
  if (!isWellFormedUtf16(key)) return 'it contains an unpaired surrogate';
  const segments = key.split('/');
  if (isPrefix && segments.at(-1) === '') segments.pop();
  for (const segment of segments) {
    if (segment === '') return 'it has an empty segment (// or a trailing /)';
    if (segment === '.' || segment === '..') return 'it has a . or .. segment';
  }
  if (segments[0] === RESERVED_FIRST_SEGMENT)
    return `its first segment ${RESERVED_FIRST_SEGMENT} is reserved`;
  return undefined;
}

function isWellFormedUtf16(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return false;
      i++;
    } else if (unit >= 0xdc00 && unit <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/**
 * Order keys by their UTF-8 bytes, as S3 lists them. JavaScript's `<` orders UTF-16 code
 * units, which differs only when a key holds characters beyond U+FFFF; take the slow path then.
 */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 || y >= 0xd800) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
    return x - y;
  }
  return a.length - b.length;
}

export function assertValidWriteId(writeId: string): void {
  if (writeId.length === 0 || writeId.length > WRITE_ID_CHARS_MAX || !/^[\x21-\x7e]+$/.test(writeId)) {
    throw new InvalidArgumentError(
      `invalid write id: 1..${WRITE_ID_CHARS_MAX} printable ASCII characters without spaces expected`,
    );
  }
}

/** Validate list options; returns the effective page size. */
export function pageLimit(limit: number | undefined, max: number): number {
  if (limit === undefined) return max;
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidArgumentError(`invalid list limit ${limit}: an integer in 1..${max} expected`);
  }
  return limit;
}

/** Validate a list delimiter: only `/` is supported (it is the key separator). */
export function assertValidDelimiter(delimiter: string | undefined): void {
  if (delimiter !== undefined && delimiter !== '/') {
    throw new InvalidArgumentError(
      `invalid list delimiter ${JSON.stringify(delimiter)}: only "/" is supported`,
    );
  }
}

/**
 * The entry under which a delimiter listing of `prefix` reports `key` (which starts with
 * `prefix`): the key itself, or its common prefix when a `/` follows `prefix` in it.
 */
export function rolledUp(key: string, prefix: string): string {
  const slash = key.indexOf('/', prefix.length);
  return slash < 0 ? key : key.slice(0, slash + 1);
}

/** Validate a byte range; returns [start, endExclusive] clipped to `sizeBytes`. */
export function clipRange(
  range: { offset: number; length: number } | undefined,
  sizeBytes: number,
): [number, number] {
  if (range === undefined) return [0, sizeBytes];
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new InvalidArgumentError(
      `invalid range offset=${offset} length=${length}: non-negative integers expected`,
    );
  }
  const start = Math.min(offset, sizeBytes);
  return [start, Math.min(sizeBytes, start + length)];
}
