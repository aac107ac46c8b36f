/** The write gate shared by the main thread and the write worker (RFC-0009 §4). */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { WorkerGate, WriteGate } from './write-gate.js';

/** A thread that takes `gate` for a COMMIT of `holdMs`; `done` reads 1 once that COMMIT ended. */
function holdGate(gate: WriteGate, holdMs: number) {
  const done = new SharedArrayBuffer(4);
  const worker = new Worker(new URL('./write-worker-ts-entry.mjs', import.meta.url), {
    workerData: {
      hooks: new URL('../table/query-host-ts-hooks.mjs', import.meta.url).href,
      thread: new URL('../tests/helpers/gate-holder-thread.ts', import.meta.url).href,
      gate: gate.buffer,
      done,
      holdMs,
    },
  });
  const answer = new Promise<string>((resolve) => worker.once('message', resolve));
  return { done: new Int32Array(done), answer, worker };
}

describe('WriteGate', () => {
  it('closing waits for a COMMIT under way in another thread, and no COMMIT starts after it', async () => {
    const gate = new WriteGate();
    const holder = holdGate(gate, 300);
    // Wait until the other thread holds the gate (the word reads committing).
    const word = new Int32Array(gate.buffer);
    while (Atomics.load(word, 0) !== 1) await new Promise((resolve) => setTimeout(resolve, 1));
    gate.accepting = false;
    expect(Atomics.load(holder.done, 0)).toBe(1);
    expect(await holder.answer).toBe('committed');
    expect(gate.accepting).toBe(false);
    expect(() => new WorkerGate(gate.buffer).commitThrough(() => 1)).toThrow(/not accepting writes/);
    await holder.worker.terminate();
  });

  it('opens again, and a COMMIT that ends leaves it open', () => {
    const gate = new WriteGate();
    const worker = new WorkerGate(gate.buffer);
    expect(worker.commitThrough(() => 7)).toBe(7);
    expect(gate.accepting).toBe(true);
    gate.accepting = false;
    gate.accepting = true;
    expect(worker.commitThrough(() => 8)).toBe(8);
    expect(() =>
      worker.commitThrough(() => {
        throw new Error('COMMIT failed');
      }),
    ).toThrow('COMMIT failed');
    expect(gate.accepting).toBe(true);
  });
});
