import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isWalshipError, type WalshipError } from '../core/index.js';
import type { LogEntry } from '../sequencer/sequencer-store.js';
import { asTableKey, type TableKey, tableKey } from '../table/index.js';
import { checksum } from '../wal/index.js';
import { stagedKey, txnLogKey } from './keys.js';
import { decodeTxnLogEntry, encodeTxnLogEntry, TXN_LOG_ENTRY_BYTES_MAX } from './txn-log-entry.js';

const EXAMPLE: LogEntry = {
  table: tableKey('trades'),
  txnFirst: 1042n,
  txnLast: 1049n,
  staged: 'tables/trades/staged/p2/00000000000000000003/00000000000000000317.seg',
  bytes: 81234,
  crc32: 3735928559,
  writer: 'p2',
  writerEpoch: 3n,
  batchSeq: 317n,
  committedAtMs: 1767225600123,
};

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const utf8 = (s: string) => new TextEncoder().encode(s);

function corrupt(fn: () => unknown): WalshipError {
  try {
    fn();
  } catch (error) {
    if (isWalshipError(error, 'TXN_LOG_ENTRY_CORRUPT')) return error;
    throw error;
  }
  throw new Error('expected TXN_LOG_ENTRY_CORRUPT');
}

/** A JSON object written as the encoder would, `check` recomputed: the semantic checks must reject it. */
function resealed(fields: Record<string, unknown>): Uint8Array {
  const { check: _, ...body } = fields;
  const json = JSON.stringify(body);
  return utf8(`${json.slice(0, -1)},"check":${checksum(utf8(json))}}\n`);
}

/** The example with `table` moved last, carrying the check of its canonical form. */
function reorderedKeepingCheck(): Uint8Array {
  const { table, ...rest } = fieldsOf(EXAMPLE);
  return utf8(`${JSON.stringify({ ...rest, table })}\n`);
}

function fieldsOf(entry: LogEntry): Record<string, unknown> {
  return JSON.parse(text(encodeTxnLogEntry(entry))) as Record<string, unknown>;
}

describe('encodeTxnLogEntry', () => {
  test('the RFC layout: key order, no whitespace, decimal strings, check over the rest, one newline', () => {
    const bytes = encodeTxnLogEntry(EXAMPLE);
    const body =
      '{"table":"trades","txnFirst":"1042","txnLast":"1049",' +
      '"staged":"tables/trades/staged/p2/00000000000000000003/00000000000000000317.seg",' +
      '"bytes":81234,"crc32":3735928559,"writer":"p2","writerEpoch":"3","batchSeq":"317",' +
      '"committedAtMs":1767225600123}';
    const check = checksum(utf8(body));
    expect(text(bytes)).toBe(`${body.slice(0, -1)},"check":${check}}\n`);
    expect(decodeTxnLogEntry(bytes, txnLogKey(tableKey('trades'), 1042n))).toEqual(EXAMPLE);
  });

  test('byte-identical for equal entries, whoever builds them', () => {
    const copy = { ...EXAMPLE, txnFirst: BigInt('1042'), staged: `${EXAMPLE.staged}` };
    expect(Buffer.compare(encodeTxnLogEntry(EXAMPLE), encodeTxnLogEntry(copy))).toBe(0);
    // Field order of the input object does not matter.
    const reordered = Object.fromEntries(Object.entries(EXAMPLE).reverse()) as unknown as LogEntry;
    expect(Buffer.compare(encodeTxnLogEntry(EXAMPLE), encodeTxnLogEntry(reordered))).toBe(0);
  });

  test('an entry no sequencer writes is INVALID_ARGUMENT', () => {
    const cases: [string, Partial<LogEntry>][] = [
      ['txnLast before txnFirst', { txnLast: 1041n }],
      ['txnFirst 0', { txnFirst: 0n }],
      ['a staged key of another batch', { batchSeq: 318n }],
      ['a bad writer', { writer: 'a/b' }],
      ['crc32 above u32', { crc32: 2 ** 32 }],
      ['bytes 0', { bytes: 0 }],
      // A cast: the brand is what keeps such a key out of product code.
      ['a table that is no key', { table: 'Trades' as TableKey }],
    ];
    for (const [what, change] of cases) {
      let caught: unknown;
      try {
        encodeTxnLogEntry({ ...EXAMPLE, ...change });
      } catch (error) {
        caught = error;
      }
      expect(isWalshipError(caught, 'INVALID_ARGUMENT'), what).toBe(true);
    }
  });
});

describe('decodeTxnLogEntry', () => {
  const good = () => fieldsOf(EXAMPLE);

  test('TXN_LOG_ENTRY_CORRUPT (kind data) for each way an entry can be wrong', () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['not JSON', utf8('{"table":'), /is not UTF-8 JSON/],
      ['not UTF-8', Uint8Array.of(0x7b, 0xff, 0x7d), /is not UTF-8 JSON/],
      ['an array', utf8('[1]'), /is not a JSON object/],
      ['too large', new Uint8Array(TXN_LOG_ENTRY_BYTES_MAX + 1).fill(0x20), /above 4096/],
      ['a missing field', resealed({ ...good(), writer: undefined }), /lacks a string writer/],
      ['a mistyped number', resealed({ ...good(), bytes: '81234' }), /lacks a number bytes/],
      ['a bigint as a number', resealed({ ...good(), txnFirst: 1042 }), /positive decimal string txnFirst/],
      ['a leading zero', resealed({ ...good(), batchSeq: '0317' }), /positive decimal string batchSeq/],
      ['txnLast < txnFirst', resealed({ ...good(), txnLast: '1041' }), /before its txnFirst/],
      ['a negative crc32', resealed({ ...good(), crc32: -1 }), /unsigned 32-bit/],
      ['a fractional committedAtMs', resealed({ ...good(), committedAtMs: 1.5 }), /committedAtMs/],
      [
        'a staged key of another table',
        resealed({ ...good(), staged: stagedKey(tableKey('quotes'), 'p2', 3n, 317n) }),
        /not its own table/,
      ],
      ['an unparseable staged key', resealed({ ...good(), staged: 'tables/trades/x.seg' }), /no staged key/],
      [
        'a staged key of another writer',
        resealed({ ...good(), staged: stagedKey(tableKey('trades'), 'p3', 3n, 317n) }),
        /not its own table, writer/,
      ],
      [
        'a staged key of another epoch',
        resealed({ ...good(), staged: stagedKey(tableKey('trades'), 'p2', 4n, 317n) }),
        /not its own/,
      ],
      [
        'a staged key of another batch',
        resealed({ ...good(), staged: stagedKey(tableKey('trades'), 'p2', 3n, 316n) }),
        /not its own/,
      ],
      ['a check mismatch', utf8(text(encodeTxnLogEntry(EXAMPLE)).replace('"p2"', '"p3"')), /fails its check/],
      ['whitespace', utf8(`${JSON.stringify(good(), null, 1)}\n`), /canonical/],
      ['an extra field', utf8(text(encodeTxnLogEntry(EXAMPLE)).replace('}\n', ',"extra":1}\n')), /canonical/],
      ['an extra field in the check', resealed({ ...good(), extra: 1 }), /fails its check/],
      // Its check covers the reordered JSON, not the canonical one the reader recomputes.
      ['key order', resealed(Object.fromEntries(Object.entries(good()).reverse())), /fails its check/],
      ['key order, canonical check', reorderedKeepingCheck(), /canonical/],
      ['no newline', encodeTxnLogEntry(EXAMPLE).subarray(0, -1), /canonical/],
    ];
    for (const [what, bytes, message] of cases) {
      const error = corrupt(() => decodeTxnLogEntry(bytes));
      expect([what, error.kind]).toEqual([what, 'data']);
      expect(error.message, what).toMatch(message);
    }
  });

  test('the key must name the entry’s table and txnFirst', () => {
    const bytes = encodeTxnLogEntry(EXAMPLE);
    for (const key of [txnLogKey(tableKey('trades'), 1043n), txnLogKey(tableKey('quotes'), 1042n)]) {
      const error = corrupt(() => decodeTxnLogEntry(bytes, key));
      expect(error.message).toContain(`${key} holds the entry of table trades from txn 1042`);
      expect(error.details).toEqual({ key });
    }
    expect(() => decodeTxnLogEntry(bytes, 'tables/trades/wal/00000000000000001042.seg')).toThrow(
      /not a txn-log key/,
    );
  });
});

// --- Property tests ---

const tableKeys = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9_-]{0,20}$/),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).map((name) => {
    try {
      return tableKey(name);
    } catch {
      return 'fallback';
    }
  }),
);
const positive = fc.bigInt({ min: 1n, max: (1n << 63n) - 1n });

const entries: fc.Arbitrary<LogEntry> = fc
  .record({
    table: tableKeys,
    txnFirst: fc.bigInt({ min: 1n, max: (1n << 63n) - 2_000_000n }),
    count: fc.integer({ min: 1, max: 1_000_000 }),
    writer: fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/),
    writerEpoch: positive,
    batchSeq: positive,
    bytes: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    crc32: fc.integer({ min: 0, max: 0xffff_ffff }),
    committedAtMs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  })
  .map((r) => ({
    table: asTableKey(r.table),
    txnFirst: r.txnFirst,
    txnLast: r.txnFirst + BigInt(r.count) - 1n,
    staged: stagedKey(asTableKey(r.table), r.writer, r.writerEpoch, r.batchSeq),
    bytes: r.bytes,
    crc32: r.crc32,
    writer: r.writer,
    writerEpoch: r.writerEpoch,
    batchSeq: r.batchSeq,
    committedAtMs: r.committedAtMs,
  }));

/** One edit of the bytes: flip, set, insert, delete, truncate, duplicate a slice. */
const byteEdit = fc.tuple(
  fc.integer({ min: 0, max: 5 }),
  fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  fc.integer({ min: 0, max: 255 }),
);

function applyEdit(bytes: Uint8Array, [kind, where, value]: [number, number, number]): Uint8Array {
  const at = Math.floor(where * bytes.length);
  const copy = bytes.slice();
  switch (kind) {
    case 0:
      copy[at] = copy[at]! ^ (value || 1);
      return copy;
    case 1:
      copy[at] = value;
      return copy;
    case 2:
      return Uint8Array.from([...bytes.subarray(0, at), value, ...bytes.subarray(at)]);
    case 3:
      return Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(at + 1)]);
    case 4:
      return bytes.subarray(0, at);
    default:
      return Uint8Array.from([...bytes.subarray(0, at + 1), ...bytes.subarray(at)]);
  }
}

/** Field-level edits resealed with a valid check, so the semantic checks (not the CRC) must reject them. */
const fieldEdit = fc.tuple(
  fc.constantFrom(
    'table',
    'txnFirst',
    'txnLast',
    'staged',
    'bytes',
    'crc32',
    'writer',
    'writerEpoch',
    'batchSeq',
    'committedAtMs',
    'check',
    'extra',
  ),
  fc.oneof(
    fc.jsonValue({ maxDepth: 1 }),
    fc.bigInt({ min: -2n, max: 1n << 64n }).map(String),
    fc.constantFrom(undefined, '', '0', '-1', '1e3', 'trades', 'p2', 1042, 2 ** 32, -0, 1.5),
  ),
);

/** Decodes `bytes`; anything but an entry that re-encodes to `bytes` or TXN_LOG_ENTRY_CORRUPT fails. */
function checkDecode(bytes: Uint8Array): 'decoded' | 'corrupt' {
  let entry: LogEntry;
  try {
    entry = decodeTxnLogEntry(bytes);
  } catch (error) {
    if (isWalshipError(error, 'TXN_LOG_ENTRY_CORRUPT') && error.kind === 'data') return 'corrupt';
    throw error;
  }
  expect(Buffer.compare(encodeTxnLogEntry(entry), bytes)).toBe(0);
  return 'decoded';
}

describe('properties', () => {
  test('valid entries round-trip, deterministically, under every key the entry names', () => {
    fc.assert(
      fc.property(entries, (entry) => {
        const bytes = encodeTxnLogEntry(entry);
        expect(bytes.length).toBeLessThanOrEqual(TXN_LOG_ENTRY_BYTES_MAX);
        expect(decodeTxnLogEntry(bytes, txnLogKey(entry.table, entry.txnFirst))).toEqual(entry);
        expect(Buffer.compare(encodeTxnLogEntry({ ...entry }), bytes)).toBe(0);
      }),
      { numRuns: 1000, seed: 21 },
    );
  });

  test('byte mutations of valid encodings decode to themselves or are TXN_LOG_ENTRY_CORRUPT', () => {
    const outcomes = { decoded: 0, corrupt: 0 };
    fc.assert(
      fc.property(entries, fc.array(byteEdit, { minLength: 1, maxLength: 4 }), (entry, edits) => {
        let bytes = encodeTxnLogEntry(entry);
        for (const edit of edits) bytes = applyEdit(bytes, edit);
        outcomes[checkDecode(bytes)]++;
      }),
      { numRuns: 3000, seed: 22 },
    );
    expect(outcomes.corrupt).toBeGreaterThan(2500);
  });

  test('field mutations with a recomputed check decode to themselves or are TXN_LOG_ENTRY_CORRUPT', () => {
    const outcomes = { decoded: 0, corrupt: 0 };
    fc.assert(
      fc.property(entries, fc.array(fieldEdit, { minLength: 1, maxLength: 3 }), (entry, edits) => {
        const fields = fieldsOf(entry);
        for (const [name, value] of edits) fields[name] = value;
        outcomes[checkDecode(resealed(fields))]++;
      }),
      { numRuns: 3000, seed: 23 },
    );
    // Some edits keep a valid entry (a new crc32, bytes or committedAtMs): those must decode.
    expect(outcomes.decoded).toBeGreaterThan(0);
    expect(outcomes.corrupt).toBeGreaterThan(0);
  });
});
