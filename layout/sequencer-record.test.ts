import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isWalshipError, type WalshipError } from '../core/index.js';
import { checksum } from '../wal/index.js';
import {
  decodeSequencerRecord,
  encodeSequencerRecord,
  SEQUENCER_RECORD_BYTES_MAX,
  type SequencerRecord,
} from './sequencer-record.js';

function record(overrides: Partial<SequencerRecord> = {}): SequencerRecord {
  return {
    version: 1,
    clusterId: 'c0ffee00-1111-2222-3333-444455556666',
    epoch: 7n,
    startAfter: new Map([
      ['trades', 1042n],
      ['a%2Fb', 1n],
      ['quotes', 0n],
    ]),
    at: '2026-01-01T00:00:00.123Z',
    ...overrides,
  };
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const utf8 = (s: string) => new TextEncoder().encode(s);

function corrupt(bytes: Uint8Array): WalshipError {
  try {
    decodeSequencerRecord(bytes);
  } catch (error) {
    if (isWalshipError(error, 'SEQUENCER_RECORD_CORRUPT')) return error;
    throw error;
  }
  throw new Error('expected SEQUENCER_RECORD_CORRUPT');
}

/** `fields` as the encoder writes them, crc32 recomputed so the field checks must reject them. */
function resealed(fields: Record<string, unknown>): Uint8Array {
  const startAfter = Object.entries((fields.startAfter ?? {}) as Record<string, unknown>).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const canonical = JSON.stringify([fields.version, fields.clusterId, fields.epoch, startAfter, fields.at]);
  return utf8(`${JSON.stringify({ ...fields, crc32: checksum(utf8(canonical)) })}\n`);
}

function fieldsOf(r: SequencerRecord): Record<string, unknown> {
  return JSON.parse(text(encodeSequencerRecord(r))) as Record<string, unknown>;
}

describe('sequencer.json', () => {
  test('the layout: one line, decimal strings, tables sorted by key, a checksum', () => {
    const bytes = encodeSequencerRecord(record());
    const line = text(bytes);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['version', 'clusterId', 'epoch', 'startAfter', 'at', 'crc32']);
    expect(parsed.epoch).toBe('7');
    expect(parsed.startAfter).toEqual({ 'a%2Fb': '1', quotes: '0', trades: '1042' });
    expect(Object.keys(parsed.startAfter as object)).toEqual(['a%2Fb', 'quotes', 'trades']);
    const canonical = JSON.stringify([
      1,
      record().clusterId,
      '7',
      [
        ['a%2Fb', '1'],
        ['quotes', '0'],
        ['trades', '1042'],
      ],
      record().at,
    ]);
    expect(parsed.crc32).toBe(checksum(utf8(canonical)));
  });

  test('round trip, including no tables, a table key that is an Object.prototype name, and int64 ends', () => {
    for (const r of [
      record(),
      record({ startAfter: new Map() }),
      record({ startAfter: new Map([['__proto__', 3n]]), epoch: (1n << 63n) - 1n }),
      record({ startAfter: new Map([['t', (1n << 63n) - 1n]]) }),
    ]) {
      expect(decodeSequencerRecord(encodeSequencerRecord(r))).toEqual(r);
    }
  });

  test('byte-identical whatever order the map was built in', () => {
    const reversed = record({ startAfter: new Map([...record().startAfter].reverse()) });
    expect(Buffer.compare(encodeSequencerRecord(record()), encodeSequencerRecord(reversed))).toBe(0);
  });

  test('unknown fields are ignored (a later version may add some)', () => {
    const fields = { ...fieldsOf(record()), note: 'hello' };
    expect(decodeSequencerRecord(utf8(JSON.stringify(fields)))).toEqual(record());
  });

  test('SEQUENCER_RECORD_CORRUPT (kind data) for each way the record can be wrong', () => {
    const good = () => fieldsOf(record());
    const cases: [string, Uint8Array, RegExp][] = [
      ['not JSON', utf8('{"version":'), /not UTF-8 JSON/],
      ['not UTF-8', Uint8Array.of(0x7b, 0xc3, 0x7d), /not UTF-8 JSON/],
      ['null', utf8('null'), /not a JSON object/],
      ['too large', new Uint8Array(SEQUENCER_RECORD_BYTES_MAX + 1), /larger than/],
      ['version 2', resealed({ ...good(), version: 2 }), /version 2, not 1/],
      ['no clusterId', resealed({ ...good(), clusterId: undefined }), /lacks a clusterId/],
      ['empty clusterId', resealed({ ...good(), clusterId: '' }), /clusterId that is not/],
      ['epoch as a number', resealed({ ...good(), epoch: 7 }), /decimal epoch/],
      ['epoch 0', resealed({ ...good(), epoch: '0' }), /epoch 0 outside/],
      ['epoch past int64', resealed({ ...good(), epoch: '9223372036854775808' }), /outside 1..2\^63-1/],
      ['startAfter an array', resealed({ ...good(), startAfter: [] }), /bad startAfter/],
      ['a txn as a number', resealed({ ...good(), startAfter: { t: 5 } }), /bad startAfter/],
      ['a negative txn', resealed({ ...good(), startAfter: { t: '-1' } }), /bad startAfter/],
      ['a key that is no table key', resealed({ ...good(), startAfter: { Trades: '5' } }), /no table key/],
      ['no time', resealed({ ...good(), at: undefined }), /lacks its time/],
      ['a time that is not ISO', resealed({ ...good(), at: 'yesterday' }), /not ISO 8601/],
      [
        'a changed field',
        utf8(text(encodeSequencerRecord(record())).replace('"1042"', '"1043"')),
        /checksum/,
      ],
      ['no checksum', utf8(JSON.stringify({ ...good(), crc32: undefined })), /checksum/],
    ];
    for (const [what, bytes, message] of cases) {
      const error = corrupt(bytes);
      expect([what, error.kind]).toEqual([what, 'data']);
      expect(error.message, what).toMatch(message);
      expect(error.message.startsWith('sequencer.json ')).toBe(true);
    }
  });

  test('encode refuses a record decode would refuse (INVALID_ARGUMENT)', () => {
    for (const bad of [
      record({ epoch: 0n }),
      record({ clusterId: '' }),
      record({ at: 'now' }),
      record({ startAfter: new Map([['Trades', 1n]]) }),
      record({ startAfter: new Map([['t', -1n]]) }),
    ]) {
      let caught: unknown;
      try {
        encodeSequencerRecord(bad);
      } catch (error) {
        caught = error;
      }
      expect(isWalshipError(caught, 'INVALID_ARGUMENT'), String(caught)).toBe(true);
    }
  });

  test('property: byte mutations decode to the same record or are SEQUENCER_RECORD_CORRUPT', () => {
    const bytes = encodeSequencerRecord(record());
    const reference = record();
    let rejected = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.nat({ max: bytes.length - 1 }),
            fc.integer({ min: 0, max: 255 }),
            fc.integer({ min: 0, max: 3 }),
          ),
          { minLength: 1, maxLength: 4 },
        ),
        (edits) => {
          let mangled = bytes.slice();
          for (const [at, value, kind] of edits) {
            const i = Math.min(at, mangled.length - 1);
            if (kind === 0) mangled[i] = value;
            else if (kind === 1)
              mangled = Uint8Array.from([...mangled.subarray(0, i), value, ...mangled.subarray(i)]);
            else if (kind === 2)
              mangled = Uint8Array.from([...mangled.subarray(0, i), ...mangled.subarray(i + 1)]);
            else mangled = mangled.subarray(0, i);
          }
          try {
            // Edits that land in whitespace-free JSON and keep it valid must keep the same record.
            expect(decodeSequencerRecord(mangled)).toEqual(reference);
          } catch (error) {
            if (!isWalshipError(error, 'SEQUENCER_RECORD_CORRUPT') || error.kind !== 'data') throw error;
            rejected++;
          }
        },
      ),
      { numRuns: 2000, seed: 31 },
    );
    expect(rejected).toBeGreaterThan(1900);
  });
});
