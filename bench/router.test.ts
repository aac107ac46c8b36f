/**
 * The router bench's own helpers: when replicas count as caught up, how a routed setup's rows are
 * set beside their direct baseline, and how the served-by tally is shown.
 */
import { describe, expect, it } from 'vitest';
import { caughtUp, comparedRows, type SetupFigures, servedByText } from './router.js';

const primary = (committedTxn: string, uploadedTxn: string) => ({
  tables: [
    { name: 'other', committedTxn: '9', uploadedTxn: '9' },
    { name: 'trades', committedTxn, uploadedTxn },
  ],
});
const replica = (appliedTxn: string) => ({ tables: [{ name: 'trades', appliedTxn }] });

describe('caughtUp', () => {
  it('holds when the primary uploaded every committed txn and every replica applied exactly that txn', () => {
    expect(caughtUp(primary('20', '20'), [replica('20'), replica('20')], 'trades')).toBe(true);
  });

  it('does not hold while an upload is pending, a replica is behind, or the table is missing or empty', () => {
    expect(caughtUp(primary('20', '19'), [replica('19')], 'trades')).toBe(false);
    expect(caughtUp(primary('20', '20'), [replica('20'), replica('19')], 'trades')).toBe(false);
    expect(caughtUp(primary('20', '20'), [{ tables: [] }], 'trades')).toBe(false);
    expect(caughtUp(primary('0', '0'), [replica('0')], 'trades')).toBe(false);
    expect(caughtUp({}, [replica('20')], 'trades')).toBe(false);
  });
});

function figures(ops: number, elapsedMs: number, latenciesMs: number[]): SetupFigures {
  return { loop: { ops, elapsedMs, latenciesMs }, servedBy: new Map() };
}

describe('comparedRows', () => {
  it('sets rate, p50 and p99 beside the baseline figure of the same kind, with the difference in ms', () => {
    const latencies = (base: number) => Array.from({ length: 100 }, (_, i) => base + i);
    const rows = comparedRows(
      { measured: 'routed', baseline: 'direct', unit: 'queries/s' },
      figures(300, 2_000, latencies(10)),
      figures(400, 2_000, latencies(5)),
      'note',
    );
    expect(rows.map((r) => [r.name, r.value, r.baseline, r.better, r.unit])).toEqual([
      ['routed: queries/s', 150, 200, 'higher', 'queries/s'],
      ['routed: p50', 59, 54, 'lower', 'ms'],
      ['routed: p99', 108, 103, 'lower', 'ms'],
    ]);
    expect(rows[0]!.note).toBe('300 vs 400 requests; note');
    expect(rows[1]!.baselineName).toBe('direct p50');
    expect(rows[2]!.note).toBe('+5.00 ms');
  });
});

describe('servedByText', () => {
  it('lists who served how many requests, by name', () => {
    expect(
      servedByText(
        new Map([
          ['r2 (replica)', 7],
          ['r1 (replica)', 12],
        ]),
      ),
    ).toBe('r1 (replica) 12, r2 (replica) 7');
  });
});
