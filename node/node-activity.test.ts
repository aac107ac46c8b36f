/**
 * NodeActivity on a fake clock and scripted `/status` answers: the sample ring and its time window
 * are bounded, events are a bounded ring read newest first, lag and backlog are read per role, the
 * laggiest tables are sampled (a bounded number) and drawn as lines, and table suspensions are
 * detected from successive samples with their durations. The node wiring and the page are tested
 * in tests/status-page.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Clock, systemClock } from '../core/index.js';
import {
  ACTIVITY_EVENTS_MAX,
  ACTIVITY_SAMPLES_MAX,
  ACTIVITY_TABLE_LINES_MAX,
  ACTIVITY_TABLES_SAMPLED_MAX,
  EVENT_MESSAGE_MAX_CHARS,
  NodeActivity,
  sampleOf,
  tableLagsOf,
} from './node-activity.js';

function fakeClock(startMs = 1_700_000_000_000): Clock & { advance(ms: number): void } {
  let nowMs = startMs;
  return {
    wallMs: () => nowMs,
    monotonicMs: () => nowMs - startMs,
    sleep: () => Promise.reject(new Error('the fake clock does not sleep')),
    // Real timers, which the timer test fakes with vi.useFakeTimers.
    setTimer: (ms, callback, options) => systemClock.setTimer(ms, callback, options),
    advance(ms) {
      nowMs += ms;
    },
  };
}

function replicaStatus(stalenessMs: number | null, tables: Record<string, unknown>[] = []) {
  return { role: 'replica', nodeId: 'r', stalenessMs, tables };
}

function replicaTable(name: string, txnsBehind: string, suspended: unknown = null, sinceCaughtUpMs = 0) {
  return { name, key: name, appliedTxn: '5', epoch: '1', txnsBehind, suspended, sinceCaughtUpMs };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('NodeActivity samples', () => {
  it('keeps the samples of the last historyMs in a ring of historyMs / interval + 1, oldest first', () => {
    const clock = fakeClock();
    let staleness = 0;
    const activity = new NodeActivity({
      clock,
      status: () => replicaStatus(staleness),
      sampleIntervalMs: 100,
      historyMs: 1_000,
    });
    for (let i = 0; i < 30; i++) {
      staleness = i;
      activity.sample();
      clock.advance(100);
    }
    const samples = activity.samples();
    // 30 taken; the ring holds 11; of those the ones within 1000 ms of now (advanced past the last) remain.
    expect(samples.map((s) => s.lagMs)).toEqual([20, 21, 22, 23, 24, 25, 26, 27, 28, 29]);
    expect(samples.every((s, i) => i === 0 || s.at > samples[i - 1]!.at)).toBe(true);
    clock.advance(10_000);
    expect(activity.samples(), 'older than historyMs: out of the window').toEqual([]);
  });

  it('holds at most ACTIVITY_SAMPLES_MAX samples however short the interval', () => {
    const clock = fakeClock();
    const activity = new NodeActivity({ clock, status: () => replicaStatus(1), sampleIntervalMs: 1 });
    for (let i = 0; i < ACTIVITY_SAMPLES_MAX + 25; i++) activity.sample();
    expect(activity.samples()).toHaveLength(ACTIVITY_SAMPLES_MAX);
  });

  it('skips a sample when the status cannot be read (a role closing)', () => {
    const clock = fakeClock();
    let fail = false;
    const activity = new NodeActivity({
      clock,
      status: () => {
        if (fail) throw new Error('database closed');
        return replicaStatus(3);
      },
      sampleIntervalMs: 100,
    });
    expect(activity.sample()?.lagMs).toBe(3);
    fail = true;
    expect(activity.sample()).toBeUndefined();
    expect(activity.samples()).toHaveLength(1);
  });

  it('samples on its timer from start() until stop()', () => {
    vi.useFakeTimers();
    const clock = fakeClock();
    const activity = new NodeActivity({ clock, status: () => replicaStatus(1), sampleIntervalMs: 100 });
    activity.start();
    expect(activity.samples(), 'the first sample comes one interval after the start').toHaveLength(0);
    vi.advanceTimersByTime(350);
    expect(activity.samples()).toHaveLength(3);
    activity.stop();
    vi.advanceTimersByTime(1_000);
    expect(activity.samples()).toHaveLength(3);
    activity.start();
    vi.advanceTimersByTime(1_000);
    expect(activity.samples(), 'a stopped activity does not start again').toHaveLength(3);
  });

  it('refuses an interval that is not positive', () => {
    expect(() => new NodeActivity({ clock: fakeClock(), status: () => ({}), sampleIntervalMs: 0 })).toThrow(
      /sampleIntervalMs/,
    );
  });
});

describe('sampleOf', () => {
  it('replica: lag = staleness, txnsBehind summed over tables', () => {
    const sample = sampleOf(replicaStatus(250, [replicaTable('a', '3'), replicaTable('b', '4')]), 42);
    expect(sample).toEqual({
      at: 42,
      role: 'replica',
      epoch: null,
      lagMs: 250,
      txnsBehind: 7,
      pendingTxns: 0,
    });
    expect(sampleOf(replicaStatus(null), 1).lagMs, 'no poll yet: unknown').toBeNull();
  });

  it('primary: lag = the oldest pending txn of any table (0 when all uploaded), pending summed', () => {
    const status = {
      role: 'primary',
      epoch: '3',
      tables: [
        { name: 'a', pendingTxns: 2, oldestPendingAgeMs: 40 },
        { name: 'b', pendingTxns: 1, oldestPendingAgeMs: 90 },
        { name: 'c', pendingTxns: 0, oldestPendingAgeMs: null },
      ],
    };
    expect(sampleOf(status, 7)).toEqual({
      at: 7,
      role: 'primary',
      epoch: '3',
      lagMs: 90,
      txnsBehind: 0,
      pendingTxns: 3,
    });
    const idle = {
      role: 'primary',
      epoch: '3',
      tables: [{ name: 'a', pendingTxns: 0, oldestPendingAgeMs: null }],
    };
    expect(sampleOf(idle, 7).lagMs).toBe(0);
  });

  it('switching: nothing known', () => {
    expect(sampleOf({ role: 'switching', nodeId: 'n' }, 5)).toEqual({
      at: 5,
      role: 'switching',
      epoch: null,
      lagMs: null,
      txnsBehind: 0,
      pendingTxns: 0,
    });
  });
});

describe('per-table lag', () => {
  it('tableLagsOf: the laggiest tables first, a replica by sinceCaughtUpMs, a primary by oldestPendingAgeMs', () => {
    const replica = replicaStatus(5, [
      replicaTable('a', '0', null, 30),
      replicaTable('b', '0', null, 70),
      { ...replicaTable('c', '0'), sinceCaughtUpMs: null },
    ]);
    expect(tableLagsOf(replica, 8), 'c never caught up: unknown, left out').toEqual([
      ['b', 70],
      ['a', 30],
    ]);
    expect(tableLagsOf(replica, 1)).toEqual([['b', 70]]);
    const primary = {
      role: 'primary',
      epoch: '2',
      tables: [
        { name: 'x', oldestPendingAgeMs: null },
        { name: 'y', oldestPendingAgeMs: 12 },
      ],
    };
    expect(tableLagsOf(primary, 8), 'nothing pending is a lag of 0').toEqual([
      ['y', 12],
      ['x', 0],
    ]);
    expect(tableLagsOf({ role: 'switching' }, 8)).toEqual([]);
  });

  it('keeps ACTIVITY_TABLES_SAMPLED_MAX tables a sample and draws the ACTIVITY_TABLE_LINES_MAX that lagged most', () => {
    const clock = fakeClock();
    const tableCount = ACTIVITY_TABLES_SAMPLED_MAX + 4;
    let round = 0;
    // Table tN lags N ms (t0 never); in the second sample t1 lags most of all.
    const status = () =>
      replicaStatus(
        1,
        Array.from({ length: tableCount }, (_, n) =>
          replicaTable(`t${n}`, '0', null, round === 1 && n === 1 ? 1_000 : n),
        ),
      );
    const activity = new NodeActivity({ clock, status, sampleIntervalMs: 100 });
    for (round = 0; round < 3; round++) {
      activity.sample();
      clock.advance(100);
    }
    const { samples, tableLines } = activity.history();
    expect(samples).toHaveLength(3);
    const top = Array.from({ length: ACTIVITY_TABLE_LINES_MAX - 1 }, (_, i) => `t${tableCount - 1 - i}`);
    expect(tableLines.map((l) => l.name)).toEqual(['t1', ...top]);
    expect(tableLines[0]?.lagMs, 't1 was among the sampled tables only when it lagged most').toEqual([
      null,
      1_000,
      null,
    ]);
    expect(tableLines[1]?.lagMs).toEqual([tableCount - 1, tableCount - 1, tableCount - 1]);
    expect(tableLines.every((l) => l.lagMs.length === samples.length)).toBe(true);
  });

  it('leaves out tables that never lagged', () => {
    const clock = fakeClock();
    const activity = new NodeActivity({
      clock,
      status: () => ({ role: 'primary', epoch: '1', tables: [{ name: 'idle', oldestPendingAgeMs: null }] }),
      sampleIntervalMs: 100,
    });
    activity.sample();
    expect(activity.history().tableLines).toEqual([]);
  });
});

describe('NodeActivity events', () => {
  it('keeps the last ACTIVITY_EVENTS_MAX events, newest first, each stamped with the wall clock', () => {
    const clock = fakeClock();
    const activity = new NodeActivity({ clock, status: () => ({}), sampleIntervalMs: 1_000 });
    for (let i = 0; i < ACTIVITY_EVENTS_MAX + 10; i++) {
      activity.record('role', `event ${i}`);
      clock.advance(1);
    }
    const events = activity.events();
    expect(events).toHaveLength(ACTIVITY_EVENTS_MAX);
    expect(events[0]).toEqual({
      at: clock.wallMs() - 1,
      kind: 'role',
      message: `event ${ACTIVITY_EVENTS_MAX + 9}`,
    });
    expect(events.at(-1)?.message).toBe('event 10');
    expect(activity.events(3).map((e) => e.message)).toEqual(['event 59', 'event 58', 'event 57']);
    expect(activity.history().events).toEqual(events);
  });

  it('cuts a long message to EVENT_MESSAGE_MAX_CHARS', () => {
    const activity = new NodeActivity({ clock: fakeClock(), status: () => ({}), sampleIntervalMs: 1_000 });
    activity.record('role', 'x'.repeat(EVENT_MESSAGE_MAX_CHARS * 3));
    expect(activity.events()[0]?.message).toHaveLength(EVENT_MESSAGE_MAX_CHARS);
  });

  it('records a suspension when a replica table becomes suspended, and its resumption, once each', () => {
    const clock = fakeClock();
    const suspended = { code: 'CORRUPT_SEGMENT', message: 'checksum mismatch', key: 'tables/a/wal/7.seg' };
    const script = [
      replicaStatus(1, [replicaTable('a', '0'), replicaTable('b', '0')]),
      replicaStatus(1, [replicaTable('a', '2', suspended), replicaTable('b', '0')]),
      replicaStatus(1, [replicaTable('a', '2', suspended), replicaTable('b', '0')]),
      replicaStatus(1, [replicaTable('a', '0'), replicaTable('b', '0')]),
    ];
    let next = 0;
    const activity = new NodeActivity({ clock, status: () => script[next++]!, sampleIntervalMs: 100 });
    activity.sample();
    expect(activity.events()).toEqual([]);
    activity.sample();
    activity.sample();
    expect(activity.events()).toEqual([
      {
        at: clock.wallMs(),
        kind: 'suspended',
        message: 'table a suspended: CORRUPT_SEGMENT: checksum mismatch',
        table: 'a',
      },
    ]);
    clock.advance(100);
    activity.sample();
    expect(activity.events().map((e) => [e.kind, e.message])).toEqual([
      ['resumed', 'table a resumed'],
      ['suspended', 'table a suspended: CORRUPT_SEGMENT: checksum mismatch'],
    ]);
    expect(activity.events()[0], 'suspended from the second sample to the fourth').toMatchObject({
      table: 'a',
      durationMs: 100,
    });
  });

  it('keeps a duration and a table given with an event, rounded and never negative', () => {
    const clock = fakeClock();
    const activity = new NodeActivity({ clock, status: () => ({}), sampleIntervalMs: 1_000 });
    activity.record('promoted', 'promoted to primary at epoch 2 (x)', { durationMs: 1234.6 });
    activity.record('role', 'clock went back', { durationMs: -5 });
    activity.record('demoted', 'no duration');
    expect(activity.events().map((e) => [e.kind, e.durationMs])).toEqual([
      ['demoted', undefined],
      ['role', 0],
      ['promoted', 1235],
    ]);
    expect('durationMs' in activity.events()[0]!, 'absent, not undefined, in the JSON').toBe(false);
  });

  it('a role change forgets suspensions instead of reporting them resumed', () => {
    const suspended = { code: 'CORRUPT_SEGMENT', message: 'bad', key: 'k' };
    const script: Record<string, unknown>[] = [
      replicaStatus(1, [replicaTable('a', '1', suspended)]),
      { role: 'switching' },
      { role: 'primary', epoch: '2', tables: [{ name: 'a', pendingTxns: 0 }] },
    ];
    let next = 0;
    const activity = new NodeActivity({
      clock: fakeClock(),
      status: () => script[next++]!,
      sampleIntervalMs: 100,
    });
    for (let i = 0; i < script.length; i++) activity.sample();
    expect(activity.events().map((e) => e.kind)).toEqual(['suspended']);
  });
});
