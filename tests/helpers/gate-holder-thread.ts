/**
 * A thread for write-gate.test.ts: takes the write gate the way the write worker does for a COMMIT
 * and holds it for `holdMs` (a slow COMMIT), then sets `done` to 1. Started through
 * primary/write-worker-ts-entry.mjs, as the write worker is from TypeScript source.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { WorkerGate } from '../../primary/write-gate.js';

const { gate, done, holdMs } = workerData as {
  gate: SharedArrayBuffer;
  done: SharedArrayBuffer;
  holdMs: number;
};
const flag = new Int32Array(done);
try {
  new WorkerGate(gate).commitThrough(() => {
    Atomics.wait(flag, 0, 0, holdMs);
    Atomics.store(flag, 0, 1);
  });
  parentPort?.postMessage('committed');
} catch (error) {
  parentPort?.postMessage((error as Error).message);
}
