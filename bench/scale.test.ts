import { describe, expect, it } from 'vitest';
import { idleFigures, parseTableCounts, ratioToOne, rowsOfTable, tableNameOf } from './scale.js';

describe('parseTableCounts', () => {
  it('defaults to the issue 15 counts', () => {
    expect(parseTableCounts(undefined)).toEqual([1, 100, 1_000, 10_000]);
    expect(parseTableCounts(' ')).toEqual([1, 100, 1_000, 10_000]);
  });

  it('always runs one table, ascending and without repeats', () => {
    expect(parseTableCounts('1000, 100')).toEqual([1, 100, 1_000]);
    expect(parseTableCounts('1,1,100')).toEqual([1, 100]);
  });

  it('refuses what is not a table count in range', () => {
    for (const text of ['0', '-1', '1.5', 'ten', '100,', '10001'])
      expect(() => parseTableCounts(text, 10_000)).toThrow(/WALSHIP_BENCH_SCALE_TABLES/);
  });
});

describe('tableNameOf and rowsOfTable', () => {
  it('names tables from m00001, sorted as numbered', () => {
    expect(tableNameOf(0)).toBe('m00001');
    expect(tableNameOf(9_999)).toBe('m10000');
  });

  it('spreads rows round-robin: the first tables take the remainder', () => {
    expect(rowsOfTable(500_000, 1, 0)).toBe(500_000);
    expect(rowsOfTable(500_000, 10_000, 9_999)).toBe(50);
    expect([0, 1, 2].map((i) => rowsOfTable(10, 3, i))).toEqual([4, 3, 3]);
    expect(rowsOfTable(2, 3, 2)).toBe(0);
    const total = Array.from({ length: 7 }, (_, i) => rowsOfTable(1_000, 7, i)).reduce((a, b) => a + b);
    expect(total).toBe(1_000);
  });
});

describe('idleFigures', () => {
  it('reads polls from keys outside tables/ and sweeps from keys under it, per minute by kind', () => {
    const byKind = new Map([
      ['LIST', 202],
      ['GET not-modified', 60],
    ]);
    const f = idleFigures({ byKind, pollRequests: 60, tableRequests: 202 }, 60_000, 60, 30_000);
    expect(f.requestsPerMinute).toBe(262);
    expect(f.requestsPerPoll).toBe(1);
    expect(f.sweepRequestsPerInterval).toBe(101);
    expect(f.breakdown).toBe('GET not-modified 60.0, LIST 202.0');
  });

  it('has no per-poll figure without polls', () => {
    const count = { byKind: new Map(), pollRequests: 0, tableRequests: 0 };
    expect(idleFigures(count, 30_000, 0, 30_000).requestsPerPoll).toBeNaN();
  });
});

describe('ratioToOne', () => {
  it('reads a figure beside the one-table one', () => {
    expect(ratioToOne(50, 100)).toBe('0.50× one table');
    expect(ratioToOne(50, undefined)).toBe('no one-table figure in this run');
    expect(ratioToOne(Number.NaN, 100)).toBe('no one-table figure in this run');
  });
});
