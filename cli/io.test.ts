import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { runUntilSignal } from './io.js';

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
