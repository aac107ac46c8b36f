import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../core/index.js';
import {
  PROGRESS_HEARTBEAT_MS,
  PROGRESS_PLAIN_MS,
  PROGRESS_REDRAW_MS,
  progressLine,
  runUntilSignal,
} from './io.js';

function recordingLog() {
  const lines: string[] = [];
  return {
    lines,
    info: (_: object, message: string) => lines.push(`info ${message}`),
    error: (_: object, message: string) => lines.push(`error ${message}`),
  };
}

describe('runUntilSignal: a node stops on SIGTERM within a bound', () => {
  it('closes the node, then the store, and resolves', async () => {
    const signals = new EventEmitter();
    const order: string[] = [];
    const exits: number[] = [];
    const done = runUntilSignal(
      { close: async () => void order.push('node') },
      { close: async () => void order.push('store') },
      recordingLog(),
      { signals, exit: (code) => exits.push(code) },
    );
    signals.emit('SIGTERM');
    await done;
    expect(order).toEqual(['node', 'store']);
    expect(exits).toEqual([]);
    expect(signals.listenerCount('SIGTERM')).toBe(0);
  });

  it('exits with code 1 when the close outlasts the bound', async () => {
    const signals = new EventEmitter();
    const log = recordingLog();
    let exited!: (code: number) => void;
    const exit = new Promise<number>((resolve) => {
      exited = resolve;
    });
    void runUntilSignal({ close: () => new Promise(() => {}) }, { close: async () => {} }, log, {
      signals,
      exit: exited,
      boundMs: 20,
    });
    signals.emit('SIGTERM');
    expect(await exit).toBe(1);
    expect(log.lines.at(-1)).toContain('did not finish within its bound');
  });

  it('a second signal exits at once', async () => {
    const signals = new EventEmitter();
    const log = recordingLog();
    const exits: number[] = [];
    void runUntilSignal({ close: () => new Promise(() => {}) }, { close: async () => {} }, log, {
      signals,
      exit: (code) => exits.push(code),
      boundMs: 3_600_000,
    });
    signals.emit('SIGTERM');
    expect(exits).toEqual([]);
    signals.emit('SIGINT');
    expect(exits).toEqual([1]);
    expect(log.lines.at(-1)).toContain('second signal');
  });
});

/** A clock that moves only when told, running the timers that fall due. */
function manualClock(): Clock & { advance(ms: number): void } {
  let nowMs = 0;
  const timers: { atMs: number; callback: () => void; cancelled: boolean }[] = [];
  return {
    wallMs: () => nowMs,
    monotonicMs: () => nowMs,
    sleep: () => Promise.reject(new Error('not used')),
    setTimer(durationMs, callback) {
      const timer = { atMs: nowMs + durationMs, callback, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
        },
      };
    },
    advance(ms) {
      const endMs = nowMs + ms;
      for (;;) {
        const due = timers.filter((t) => !t.cancelled && t.atMs <= endMs).sort((a, b) => a.atMs - b.atMs)[0];
        if (due === undefined) break;
        due.cancelled = true;
        nowMs = due.atMs;
        due.callback();
      }
      nowMs = endMs;
    },
  };
}

describe('progressLine: a long command says it is moving, on stderr', () => {
  const io = () => {
    const err: string[] = [];
    return { err, stdout: () => {}, stderr: (t: string) => err.push(t), env: {} };
  };

  it('in place: drawn at once, at most every 100 ms, at least every second, then ended with a summary', () => {
    const clock = manualClock();
    const drawn: [string, boolean][] = [];
    const plain = io();
    const line = progressLine(plain, 'walship verify', {
      inPlace: true,
      clock,
      draw: (text, final) => drawn.push([text, final]),
    });
    line.update('1/3 tables');
    clock.advance(50);
    line.update('2/3 tables'); // within PROGRESS_REDRAW_MS of the last: not drawn
    clock.advance(PROGRESS_REDRAW_MS);
    line.update('3/3 tables');
    clock.advance(2_500); // nothing reported: the heartbeat redraws with the time moving on
    line.finish('done');
    line.update('late');
    clock.advance(5_000);
    expect(drawn).toEqual([
      ['walship verify: 1/3 tables · 0 ms', false],
      ['walship verify: 3/3 tables · 150 ms', false],
      ['walship verify: 3/3 tables · 1 s', false],
      ['walship verify: 3/3 tables · 2 s', false],
      ['walship verify: 3/3 tables; done · 2 s', true],
    ]);
    expect(plain.err).toEqual([]);
    expect(PROGRESS_HEARTBEAT_MS).toBe(1_000);
  });

  it('plain lines: nothing for a short run, else one every 5 s and the summary', () => {
    const clock = manualClock();
    const short = io();
    const quick = progressLine(short, 'walship gc', { inPlace: false, clock });
    quick.update('3 LIST requests');
    clock.advance(PROGRESS_PLAIN_MS - 1);
    quick.finish('done');
    expect(short.err).toEqual([]);

    const long = io();
    const slow = progressLine(long, 'walship gc', { inPlace: false, clock });
    slow.update('3 LIST requests');
    clock.advance(PROGRESS_PLAIN_MS);
    slow.update('9 LIST requests'); // the heartbeat has just drawn: waits for the next one
    clock.advance(PROGRESS_PLAIN_MS + 1_000);
    slow.update('12 LIST, 4 DELETE requests');
    clock.advance(64_000 - 2 * PROGRESS_PLAIN_MS - 1_000);
    slow.finish('done: 4 objects deleted');
    expect(long.err).toEqual([
      'walship gc: 3 LIST requests · 5 s',
      'walship gc: 9 LIST requests · 10 s',
      'walship gc: 12 LIST, 4 DELETE requests · 15 s',
      ...[20, 25, 30, 35, 40, 45, 50, 55].map((s) => `walship gc: 12 LIST, 4 DELETE requests · ${s} s`),
      'walship gc: 12 LIST, 4 DELETE requests · 1 min 00 s',
      'walship gc: 12 LIST, 4 DELETE requests; done: 4 objects deleted · 1 min 04 s',
    ]);
  });
});
