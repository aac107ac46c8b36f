/**
 * The seeded failover simulation, shard 2 of 2 (see failover-sim.test.ts): the other half of the
 * seeds, in its own file so that vitest runs both halves in parallel.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { describeFailures, runSeeds, seedsOfShard } from './failover-sim.js';

const seeds = seedsOfShard(2, 2);

beforeAll(() => {
  // As in shard 1: the parts' own timers must never fire on the machine's time.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
});
afterAll(() => {
  vi.useRealTimers();
});

describe('failover simulation', () => {
  it.skipIf(seeds.length === 0)(
    `keeps every invariant over ${seeds.length} seeds (shard 2 of 2)`,
    { timeout: 600_000 },
    async () => {
      const { failures, summary } = await runSeeds(seeds);
      console.log(`failover simulation, shard 2: ${summary}`);
      expect(failures.length, describeFailures(failures)).toBe(0);
    },
  );
});
