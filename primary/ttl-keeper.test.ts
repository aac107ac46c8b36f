import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Clock, systemClock } from '../core/index.js';
import { formatTimestampUs, parseTimestampUs, TableStore } from '../table/index.js';
import type { TableTtl, TxnRecord } from '../wal/index.js';
import { TtlKeeper, ttlCutoffUs } from './ttl-keeper.js';

const us = (text: string): bigint => parseTimestampUs(text)!;
const at = (reference: string, ttl: TableTtl): string => formatTimestampUs(ttlCutoffUs(us(reference), ttl));

describe('the TTL cutoff: a day goes once it ends before reference − TTL (QuestDB, partitions by day)', () => {
  it.each<[string, TableTtl, string]>([
    ['2026-12-07T10:00:00Z', { count: 2, unit: 'DAY' }, '2026-12-05T00:00:00.000000Z'],
    // The day ending exactly at reference − TTL stays: it does not end before it.
    ['2026-12-07T00:00:00Z', { count: 2, unit: 'DAY' }, '2026-12-04T00:00:00.000000Z'],
    ['2026-12-07T10:00:00Z', { count: 48, unit: 'HOUR' }, '2026-12-05T00:00:00.000000Z'],
    ['2026-12-07T10:00:00Z', { count: 1, unit: 'WEEK' }, '2026-11-30T00:00:00.000000Z'],
    // Calendar months keep the day of the month, clamped to the month's last.
    ['2026-03-31T12:00:00Z', { count: 1, unit: 'MONTH' }, '2026-02-28T00:00:00.000000Z'],
    ['2026-01-15T12:00:00Z', { count: 2, unit: 'MONTH' }, '2025-11-15T00:00:00.000000Z'],
    ['2024-02-29T01:00:00Z', { count: 1, unit: 'YEAR' }, '2023-02-28T00:00:00.000000Z'],
    ['1970-01-01T10:00:00Z', { count: 1, unit: 'DAY' }, '1969-12-31T00:00:00.000000Z'],
  ])('at %s, a TTL of %j drops the rows before %s', (reference, ttl, cutoff) => {
    expect(at(reference, ttl)).toBe(cutoff);
  });
});

describe('TtlKeeper', () => {
  let dir = '';
  let tables: TableStore;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-ttl-'));
    tables = TableStore.open(path.join(dir, 'tables.sqlite'));
  });
  afterEach(async () => {
    tables.close();
    await rm(dir, { recursive: true, force: true });
  });

  const record = (txn: bigint, fields: Partial<TxnRecord> & Pick<TxnRecord, 'kind'>): TxnRecord => ({
    txn,
    commitTimeUs: 1n,
    rowCount: 0,
    columns: [],
    ...fields,
  });
  const rowsAt = (txn: bigint, times: string[]): TxnRecord =>
    record(txn, {
      kind: 'data',
      rowCount: times.length,
      columns: [
        {
          name: 'timestamp',
          addedInTxn: false,
          nulls: null,
          data: { type: 'timestamp', values: BigInt64Array.from(times.map(us)) },
        },
      ],
    });
  /** The keeper commits trims as the committer would: the table's next txn. */
  const keeper = (clock: Clock) => {
    const trims: bigint[] = [];
    const keeperOf = new TtlKeeper({
      tables,
      clock,
      intervalMs: 60_000,
      log: pino({ level: 'silent' }),
      trim: async (table, beforeUs) => {
        const txn = tables.lastTxn(table) + 1n;
        tables.applyTxn(table, record(txn, { kind: 'trim', trimBeforeUs: beforeUs }));
        trims.push(beforeUs);
        return { txnHeader: `${table}=${txn}` };
      },
    });
    return { keeper: keeperOf, trims };
  };
  const times = () =>
    tables.timestampBounds('t') === undefined
      ? []
      : [
          formatTimestampUs(tables.timestampBounds('t')!.minUs),
          formatTimestampUs(tables.timestampBounds('t')!.maxUs),
        ];

  it('trims a table whose oldest day has expired, once, and leaves tables without a TTL alone', async () => {
    const days = ['2026-12-01T05:00:00Z', '2026-12-02T05:00:00Z', '2026-12-06T23:00:00Z'];
    tables.applyTxn('t', rowsAt(1n, days));
    tables.applyTxn('u', rowsAt(1n, days));
    tables.applyTxn('t', record(2n, { kind: 'ttl', ttl: { count: 3, unit: 'DAY' } }));
    // The wall clock is far ahead: the newest row is the reference.
    const { keeper: k, trims } = keeper({
      ...systemClock,
      wallMs: () => Number(us('2027-06-01T00:00:00Z') / 1000n),
    });
    expect((await k.check()).map((t) => t.txn)).toEqual(['t=3']);
    expect(trims.map(formatTimestampUs)).toEqual(['2026-12-03T00:00:00.000000Z']);
    expect(times()).toEqual(['2026-12-06T23:00:00.000000Z', '2026-12-06T23:00:00.000000Z']);
    expect(await k.check()).toEqual([]);
    // Whichever check made it, the trim is known to a SET TTL that began before it.
    expect(k.trimsSince('T', 0).map((t) => t.txn)).toEqual(['t=3']);
    expect(k.trimsSince('t', systemClock.monotonicMs() + 1_000)).toEqual([]);
    expect(tables.timestampBounds('u')?.minUs).toBe(us(days[0]!));
  });

  it('takes the wall clock as the reference when rows come from the future', async () => {
    tables.applyTxn('t', rowsAt(1n, ['2026-12-01T05:00:00Z', '2099-01-01T00:00:00Z']));
    tables.applyTxn('t', record(2n, { kind: 'ttl', ttl: { count: 30, unit: 'DAY' } }));
    const { keeper: k, trims } = keeper({
      ...systemClock,
      wallMs: () => Number(us('2026-12-07T00:00:00Z') / 1000n),
    });
    expect(await k.check()).toEqual([]);
    expect(trims).toEqual([]);
  });
});
