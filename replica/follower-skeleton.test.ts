import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { WalshipError } from '../core/index.js';
import { tableKey } from '../table/index.js';
import {
  commonTableStatus,
  FailureBackoff,
  type FollowedTableState,
  findTable,
  readVerified,
  resumeTable,
  sortedByKey,
  stalenessOf,
  suspendTable,
} from './follower-skeleton.js';

const log = pino({ level: 'silent' });

function table(name: string, extra: Partial<FollowedTableState> = {}): FollowedTableState {
  return {
    key: tableKey(name),
    name,
    appliedTxn: 7n,
    lastAppliedAtMs: null,
    confirmedAtMs: null,
    suspended: null,
    segmentsApplied: 0,
    rowsApplied: 0,
    ...extra,
  };
}

describe('FailureBackoff', () => {
  it('doubles from base to max per failure, starts again after a success, and keeps the last error', () => {
    const backoff = new FailureBackoff({ base: 250, max: 10_000 });
    expect(backoff.lastError(0)).toBeNull();
    const delays = Array.from({ length: 9 }, (_, i) => backoff.failed(`failure ${i}`, 100));
    // Both followers' formula before it was shared: min(max, base · 2^(failures − 1)).
    expect(delays).toEqual([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(backoff.failures).toBe(9);
    for (let i = 0; i < 2000; i++) backoff.failed('still down', 100);
    expect(backoff.failed('still down', 100)).toBe(10_000); // no overflow to Infinity or NaN
    backoff.succeeded();
    expect(backoff.failures).toBe(0);
    expect(backoff.failed('again', 200)).toBe(250);
    backoff.recordError('an export check', 300);
    expect(backoff.failures).toBe(1);
    expect(backoff.lastError(1300.4)).toEqual({ message: 'an export check', agoMs: 1000 });
  });

  it('refuses a policy whose max is not reached within 16 doublings', () => {
    expect(() => new FailureBackoff({ base: 1, max: 2 ** 17 })).toThrow(/base·2\^16/);
  });
});

describe('stalenessOf', () => {
  it('is since the oldest confirmation, null while a table never confirmed, and for no tables since the empty confirmation', () => {
    expect(
      stalenessOf([table('a', { confirmedAtMs: 50 }), table('b', { confirmedAtMs: 80 })], 100, null),
    ).toBe(50);
    expect(stalenessOf([table('a', { confirmedAtMs: 50 }), table('b')], 100, 90)).toBeNull();
    expect(stalenessOf([], 100, 90)).toBe(10);
    expect(stalenessOf([], 100, null)).toBeNull();
  });
});

describe('table bookkeeping', () => {
  it('finds a table by key or by name, case-insensitively; undefined for unknown or invalid names', () => {
    const trades = table('Trades');
    const tables = new Map([[trades.key, trades]]);
    expect(findTable(tables, trades.key)).toBe(trades);
    expect(findTable(tables, 'trades')).toBe(trades);
    expect(findTable(tables, 'quotes')).toBeUndefined();
    expect(findTable(tables, '')).toBeUndefined();
  });

  it('suspends with the object key and the resume command, and resumes only a suspended table', () => {
    const t = table('trades');
    const error = new WalshipError('SEGMENT_MISSING', 'data', 'gone', {
      details: { key: 'tables/x/wal/8.seg' },
    });
    suspendTable(t, error, { atMs: 42, log });
    expect(t.suspended).toMatchObject({ code: 'SEGMENT_MISSING', objectKey: 'tables/x/wal/8.seg', atMs: 42 });
    expect(t.suspended?.message).toMatch(/^table "trades" is suspended at txn 7: gone\. /);
    expect(t.suspended?.message).toContain('walship admin resume --table trades');
    expect(resumeTable(t, log)).toBe(true);
    expect(t.suspended).toBeNull();
    expect(resumeTable(t, log)).toBe(false);
    suspendTable(t, new WalshipError('SEGMENTS_COLLECTED', 'data', 'collected'), { atMs: 1, log }, 'custom');
    expect(t.suspended).toEqual({ code: 'SEGMENTS_COLLECTED', message: 'custom', objectKey: null, atMs: 1 });
  });

  it('reports the common status fields in whole ms, tables in key order', () => {
    const t = table('b', { confirmedAtMs: 10.2, lastAppliedAtMs: 20, segmentsApplied: 3, rowsApplied: 9 });
    expect(commonTableStatus(t, 100)).toEqual({
      name: 'b',
      key: t.key,
      appliedTxn: 7n,
      sinceCaughtUpMs: 90,
      lastAppliedAgoMs: 80,
      segmentsApplied: 3,
      rowsApplied: 9,
      suspended: null,
    });
    expect(sortedByKey([table('b'), table('a')]).map((x) => x.name)).toEqual(['a', 'b']);
  });
});

describe('readVerified', () => {
  const corrupt = new WalshipError('CORRUPT_SEGMENT', 'data', 'bad checksum');

  it('reads again after a data error, up to its attempts, and not after any other error', async () => {
    const reads: number[] = [];
    const retried: string[] = [];
    const verified = await readVerified({
      attempts: 2,
      read: async (attempt) => {
        reads.push(attempt);
        return attempt;
      },
      verify: async (bytes) => {
        if (bytes === 1) throw corrupt;
        return `ok ${bytes}`;
      },
      onRetry: (error) => retried.push(error.code),
    });
    expect(verified).toBe('ok 2');
    expect(reads).toEqual([1, 2]);
    expect(retried).toEqual(['CORRUPT_SEGMENT']);
    const always = { attempts: 2, read: async () => 0, onRetry: () => {} };
    await expect(readVerified({ ...always, verify: () => Promise.reject(corrupt) })).rejects.toBe(corrupt);
    const other = new WalshipError('STORE_UNAVAILABLE', 'unavailable', 'down');
    let verifies = 0;
    await expect(
      readVerified({
        ...always,
        verify: () => {
          verifies++;
          return Promise.reject(other);
        },
      }),
    ).rejects.toBe(other);
    expect(verifies).toBe(1);
    // An error of the read itself is never retried, even a data error.
    await expect(
      readVerified({ ...always, read: () => Promise.reject(corrupt), verify: async () => 1 }),
    ).rejects.toBe(corrupt);
  });
});
