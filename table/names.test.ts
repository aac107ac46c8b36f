import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import {
  asTableKey,
  decodeTableKey,
  isTableKey,
  MAX_TABLE_KEY_CHARS,
  tableKey,
  validateColumnName,
  validateTableName,
} from './names.js';

/**
 * The brief's /^[a-z0-9_.%-]+$/ with the escapes' uppercase hex digits allowed, and stricter: a '%'
 * is always followed by two of them. Literal letters are lowercase and hex digits uppercase, so two
 * keys never differ by case alone (safe on case-insensitive file systems).
 */
const KEY_SHAPE = /^(?:[a-z0-9_.-]|%[0-9A-F]{2})+$/;

function invalidNameError(fn: () => void): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectInvalidName(fn: () => void): void {
  const error = invalidNameError(fn);
  expect(isWalshipError(error, 'INVALID_NAME'), String(error)).toBe(true);
  expect((error as { kind: string }).kind).toBe('invalid');
}

/** Well-formed strings from the whole of Unicode, biased towards the characters that matter here. */
const anyName = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('.', '%', 'A', 'a', '-', '_', '/', ' ', 'İ', 'Σ', 'ß', '\u{1F600}', '\u0000'),
    minLength: 1,
  }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
);

describe('validateTableName', () => {
  it.each([
    'trades',
    'Trades',
    'cpu.load',
    'a.b.c',
    'with space',
    'x-y',
    '日本語',
    'émoji\u{1F600}',
    'a'.repeat(127),
    '_walshi',
    'sqlite',
  ])('accepts %j', (name) => {
    expect(() => validateTableName(name)).not.toThrow();
  });

  it.each([
    ['', 'empty'],
    ['a'.repeat(128), '128 bytes'],
    ['é'.repeat(64), '128 UTF-8 bytes'],
    ['.hidden', 'leading dot'],
    ['trailing.', 'trailing dot'],
    ['a..b', 'double dot'],
    [' lead', 'leading space'],
    ['trail ', 'trailing space'],
    ['a/b', 'slash'],
    ['a\\b', 'backslash'],
    ['a?b', '?'],
    ['a,b', ','],
    ["a'b", "'"],
    ['a"b', '"'],
    ['a:b', ':'],
    ['a)b', ')'],
    ['a(b', '('],
    ['a+b', '+'],
    ['a*b', '*'],
    ['a%b', '%'],
    ['a~b', '~'],
    ['a\u0000b', 'NUL'],
    ['a\nb', 'LF'],
    ['a\u0010b', 'U+0010'],
    ['a\u007fb', 'DEL'],
    ['a\u0085b', 'C1 NEL'],
    ['\uFEFFa', 'BOM'],
    ['a\uD800b', 'lone surrogate'],
    ['_walship_tables', 'reserved _walship'],
    ['_WALSHIP', 'reserved, any case'],
    ['sqlite_master', 'reserved sqlite_'],
    ['SQLITE_x', 'reserved sqlite_, any case'],
    ['é'.repeat(63), 'key above the file-name limit'],
  ])('rejects %j (%s)', (name) => {
    expectInvalidName(() => validateTableName(name));
  });

  it('names the table, the name and the reason in the error', () => {
    const error = invalidNameError(() => validateTableName('a/b')) as { message: string; details: object };
    expect(error.message).toContain('"a/b"');
    expect(error.message).toContain("'/'");
    expect(error.details).toMatchObject({ kind: 'table', name: 'a/b' });
  });
});

describe('validateColumnName', () => {
  it.each(['price', 'Price', 'with space', '日本語', 'a'.repeat(127), 'timestamp'])('accepts %j', (name) => {
    expect(() => validateColumnName(name)).not.toThrow();
  });

  it.each([
    '',
    'a.b',
    'a-b',
    '.x',
    'a'.repeat(128),
    'a/b',
    'a%b',
    'a\tb',
    '_walship_x',
    'sqlite_x',
    'a\uDC00',
  ])('rejects %j', (name) => {
    expectInvalidName(() => validateColumnName(name));
  });
});

describe('tableKey', () => {
  it.each([
    ['trades', 'trades'],
    ['Trades', 'trades'],
    ['TRADES', 'trades'],
    ['cpu.load', 'cpu.load'],
    ['x-y_z9', 'x-y_z9'],
    ['with space', 'with%20space'],
    ['é', '%C3%A9'],
    ['É', '%C3%A9'],
    ['.', '%2E'],
    ['..', '%2E%2E'],
    ['...', '%2E%2E%2E'],
    ['.a', '%2Ea'],
    ['a.', 'a%2E'],
    ['a..b', 'a.%2Eb'],
    ['a/b', 'a%2Fb'],
    ['100%', '100%25'],
    ['\u{1F600}', '%F0%9F%98%80'],
  ])('encodes %j as %j', (name, key) => {
    expect(tableKey(name)).toBe(key);
    expect(decodeTableKey(key)).toBe(name.toLowerCase());
  });

  it('is one key for every spelling of a table', () => {
    expect(tableKey('Trades')).toBe(tableKey('tRADES'));
    expect(tableKey('ÄPFEL')).toBe(tableKey('äpfel'));
  });

  it('rejects an empty name and lone surrogates', () => {
    expectInvalidName(() => tableKey(''));
    expectInvalidName(() => tableKey('a\uD800'));
  });

  it('round-trips a name that starts with a byte order mark (a default TextDecoder drops it)', () => {
    const name = '\uFEFF\u0000';
    expect(decodeTableKey(tableKey(name))).toBe(name);
    expect(isTableKey(tableKey(name))).toBe(true);
  });

  it('round-trips every well-formed name to its case-folded form (property)', () => {
    fc.assert(
      fc.property(anyName, (name) => {
        const key = tableKey(name);
        expect(decodeTableKey(key)).toBe(name.toLowerCase());
        expect(tableKey(decodeTableKey(key))).toBe(key);
      }),
      { numRuns: 3000 },
    );
  });

  it('gives keys safe as store keys and file names (property)', () => {
    fc.assert(
      fc.property(anyName, (name) => {
        const key = tableKey(name);
        expect(key).toMatch(KEY_SHAPE);
        expect(key).not.toContain('/');
        expect(key).not.toContain('..');
        expect(key.startsWith('.')).toBe(false);
        expect(key.endsWith('.')).toBe(false);
        expect(key).not.toBe('.');
      }),
      { numRuns: 3000 },
    );
  });

  it('maps names to the same key exactly when they fold to the same name (property)', () => {
    fc.assert(
      fc.property(anyName, anyName, (a, b) => {
        expect(tableKey(a) === tableKey(b)).toBe(a.toLowerCase() === b.toLowerCase());
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps every valid table name within MAX_TABLE_KEY_CHARS', () => {
    fc.assert(
      fc.property(anyName, (name) => {
        if (invalidNameError(() => validateTableName(name)) !== undefined) return;
        expect(tableKey(name).length).toBeLessThanOrEqual(MAX_TABLE_KEY_CHARS);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('decodeTableKey', () => {
  it.each([
    ['', 'empty'],
    ['Trades', 'uppercase letter'],
    ['a/b', 'slash'],
    ['a b', 'space'],
    ['%2e', 'lowercase hex'],
    ['%2', 'short escape'],
    ['%zz', 'not hex'],
    ['%61', 'escape of a kept byte'],
    ['%41', 'escape of an uppercase letter (not case-folded)'],
    ['.', 'bare dot'],
    ['..', 'double dot'],
    ['.a', 'leading dot'],
    ['a.', 'trailing dot'],
    ['a..b', 'double dot inside'],
    ['a%2Eb', 'escaped dot that would be kept'],
    ['%C3', 'truncated UTF-8'],
    ['%FF', 'invalid UTF-8'],
    ['%ED%A0%80', 'UTF-8 of a surrogate'],
    ['%C0%80', 'overlong UTF-8'],
  ])('rejects %j (%s)', (key) => {
    const error = invalidNameError(() => decodeTableKey(key));
    expect(isWalshipError(error, 'INVALID_TABLE_KEY'), String(error)).toBe(true);
  });

  it('accepts only what tableKey produces (property over key-shaped strings)', () => {
    const keyish = fc.string({
      unit: fc.constantFrom('a', 'z', '0', '.', '_', '-', '%', '2', 'E', 'C', '3', 'A', '9', 'F'),
      minLength: 1,
      maxLength: 12,
    });
    fc.assert(
      fc.property(keyish, (key) => {
        let decoded: string | undefined;
        try {
          decoded = decodeTableKey(key);
        } catch (error) {
          expect(isWalshipError(error, 'INVALID_TABLE_KEY')).toBe(true);
          return;
        }
        expect(tableKey(decoded)).toBe(key);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('asTableKey', () => {
  it.each(['trades', 'Trades', 'a.b', 'a/b', '..x', 'données', '.', '日本'])(
    'accepts what tableKey(%j) produces, unchanged',
    (name) => {
      const key = tableKey(name);
      expect(asTableKey(key)).toBe(key);
      expect(isTableKey(key)).toBe(true);
    },
  );

  it.each([
    ['Trades', 'a name with an uppercase letter, given raw'],
    ['a b', 'a name that needs escaping, given raw'],
    ['a/b', "a key with '/'"],
    ['tables/a', "a path with '/'"],
    ['..', 'double dot'],
    ['.', 'bare dot'],
    ['', 'empty'],
    ['a%2fb', 'a lowercase escape'],
  ])('refuses %j (%s) with INVALID_TABLE_KEY', (key) => {
    const error = invalidNameError(() => asTableKey(key));
    expect(isWalshipError(error, 'INVALID_TABLE_KEY'), String(error)).toBe(true);
    expect((error as { kind?: unknown }).kind).toBe('invalid');
    expect(isTableKey(key)).toBe(false);
  });
});
