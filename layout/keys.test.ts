import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { asTableKey, isTableKey, tableKey } from '../table/index.js';
import {
  parseStagedKey,
  parseTxnLogKey,
  SEQUENCER_RECORD_KEY,
  segmentKey,
  stagedKey,
  stagedPrefix,
  txnFirstOfSegmentKey,
  txnFirstOfTxnLogKey,
  txnLogKey,
  txnLogPrefix,
} from './keys.js';

/** The sequencer's keys (RFC-0003 "Objects in the store"). */

function invalid(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(isWalshipError(caught, 'INVALID_ARGUMENT'), String(caught)).toBe(true);
  expect((caught as Error).message).toMatch(message);
}

describe('staged keys', () => {
  test('the layout, numbers in 20 digits', () => {
    expect(SEQUENCER_RECORD_KEY).toBe('sequencer.json');
    expect(stagedKey(tableKey('trades'), 'p2', 3n, 317n)).toBe(
      'tables/trades/staged/p2/00000000000000000003/00000000000000000317.seg',
    );
    expect(stagedPrefix(tableKey('trades'))).toBe('tables/trades/staged/');
    expect(stagedPrefix(tableKey('trades'), 'p2')).toBe('tables/trades/staged/p2/');
    expect(stagedPrefix(tableKey('trades'), 'p2', 3n)).toBe('tables/trades/staged/p2/00000000000000000003/');
    const key = stagedKey(tableKey('trades'), 'p2', 3n, 317n);
    expect(key.startsWith(stagedPrefix(tableKey('trades'), 'p2', 3n))).toBe(true);
  });

  test('parseStagedKey inverts stagedKey', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.stringMatching(/^[a-z0-9_-][a-z0-9._-]{0,40}$/).filter(isTableKey),
          fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }).map((name) => tableKey(name)),
        ),
        fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/).filter((w) => w !== '.' && w !== '..'),
        fc.bigInt({ min: 1n, max: 10n ** 20n - 1n }),
        fc.bigInt({ min: 1n, max: 10n ** 20n - 1n }),
        (table, writer, writerEpoch, batchSeq) => {
          const key = stagedKey(table, writer, writerEpoch, batchSeq);
          expect(parseStagedKey(key)).toEqual({ tableKey: table, writer, writerEpoch, batchSeq });
        },
      ),
      { numRuns: 300, seed: 3 },
    );
  });

  test('parseStagedKey refuses every other key', () => {
    const good = 'tables/t/staged/w/00000000000000000001/00000000000000000002.seg';
    expect(parseStagedKey(good)).toBeDefined();
    for (const key of [
      'tables/t/staged/w/00000000000000000001/00000000000000000002.json',
      'tables/t/staged/w/0000000000000000001/00000000000000000002.seg',
      'tables/t/staged/w/00000000000000000000/00000000000000000002.seg',
      'tables/t/staged/w/00000000000000000001/00000000000000000000.seg',
      'tables/t/staged/../00000000000000000001/00000000000000000002.seg',
      'tables/t/staged/a b/00000000000000000001/00000000000000000002.seg',
      `tables/t/staged/${'w'.repeat(65)}/00000000000000000001/00000000000000000002.seg`,
      'tables/t/staged/w/x/00000000000000000001/00000000000000000002.seg',
      'tables/t/wal/00000000000000000001.seg',
      `x${good}`,
      `${good}x`,
      'tables//staged/w/00000000000000000001/00000000000000000002.seg',
      // Table segments tableKey cannot produce: not ours.
      'tables/T/staged/w/00000000000000000001/00000000000000000002.seg',
      'tables/../staged/w/00000000000000000001/00000000000000000002.seg',
      'tables/a%2fb/staged/w/00000000000000000001/00000000000000000002.seg',
    ]) {
      expect(parseStagedKey(key), key).toBeUndefined();
    }
  });

  test('bad writers, epochs and batch numbers are INVALID_ARGUMENT', () => {
    invalid(() => stagedKey(tableKey('t'), 'a/b', 1n, 1n), /not a writer id/);
    invalid(() => stagedKey(tableKey('t'), '', 1n, 1n), /not a writer id/);
    invalid(() => stagedKey(tableKey('t'), '..', 1n, 1n), /not a writer id/);
    invalid(() => stagedKey(tableKey('t'), '.', 1n, 1n), /not a writer id/);
    invalid(() => stagedKey(tableKey('t'), 'w'.repeat(65), 1n, 1n), /not a writer id/);
    invalid(() => stagedKey(tableKey('t'), 'w', 0n, 1n), /writer epoch 0 must be/);
    invalid(() => stagedKey(tableKey('t'), 'w', 1n, 0n), /batchSeq 0 must be/);
    invalid(() => stagedKey(tableKey('t'), 'w', 1n, 10n ** 20n), /does not fit 20 digits/);
    invalid(() => stagedKey(tableKey('t'), 'w', 1 as never, 1n), /writer epoch 1 must be a bigint/);
    invalid(() => stagedPrefix(tableKey('t'), undefined, 1n), /needs a writer/);
    invalid(() => stagedPrefix(tableKey('t'), 'w/x'), /not a writer id/);
  });

  test('a staged key is never taken for a wal/ segment, even of a writer named "wal"', () => {
    const key = stagedKey(tableKey('t'), 'wal', 1n, 2n);
    expect(txnFirstOfSegmentKey(key)).toBeUndefined();
    expect(parseTxnLogKey(key)).toBeUndefined();
  });
});

describe('txn-log keys', () => {
  test('the layout, and its parsers', () => {
    expect(txnLogPrefix(tableKey('trades'))).toBe('tables/trades/txnlog/');
    expect(txnLogKey(tableKey('trades'), 1042n)).toBe('tables/trades/txnlog/00000000000000001042.json');
    expect(parseTxnLogKey(txnLogKey(tableKey('trades'), 1042n))).toEqual({
      tableKey: 'trades',
      txnFirst: 1042n,
    });
    expect(txnFirstOfTxnLogKey(txnLogKey(asTableKey('a%2Fb'), 7n))).toBe(7n);
    // Lexical order of keys is txn order.
    const keys = [10n, 9n, 100n, 1n].map((n) => txnLogKey(tableKey('t'), n));
    expect([...keys].sort()).toEqual([1n, 9n, 10n, 100n].map((n) => txnLogKey(tableKey('t'), n)));
  });

  test('any other key parses as undefined', () => {
    for (const key of [
      segmentKey(tableKey('t'), 5n),
      'tables/t/txnlog/00000000000000000005.seg',
      'tables/t/txnlog/5.json',
      'tables/t/txnlog/00000000000000000005.json.tmp',
      'x/tables/t/txnlog/00000000000000000005.json',
      'tables/t/x/txnlog/00000000000000000005.json',
      // Table segments tableKey cannot produce: not ours.
      'tables/T/txnlog/00000000000000000005.json',
      'tables/../txnlog/00000000000000000005.json',
      'tables/a%2fb/txnlog/00000000000000000005.json',
    ]) {
      expect(parseTxnLogKey(key), key).toBeUndefined();
      expect(txnFirstOfTxnLogKey(key), key).toBeUndefined();
    }
  });

  test('a txn beyond 20 digits is INVALID_ARGUMENT', () => {
    invalid(() => txnLogKey(tableKey('t'), 10n ** 20n), /does not fit 20 digits/);
    invalid(() => txnLogKey(tableKey('t'), -1n), /does not fit 20 digits/);
  });
});
