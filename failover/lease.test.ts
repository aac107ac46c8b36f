/**
 * The candidate's side of automatic failover (failover/lease.ts), on a memory store with a manual
 * monotonic clock: a watcher promotes only when the lease has not changed for its timeout, and
 * only past the epoch it is armed with. Regression (issue 13 item 6): a promotion that claimed an
 * epoch but never started its primary left the lease at the older epoch, so every later automatic
 * promotion "past" that older epoch lost to the claimed one, and the cluster stayed headless.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type Clock, systemClock } from '../core/index.js';
import { encodeEpoch, encodeLease, epochKey, LEASE_KEY, newestEpoch } from '../layout/index.js';
import { MemoryStore, type ObjectStore } from '../objectstore/index.js';
import { LeaseWatcher } from './lease.js';

const TIMEOUT_MS = 1_000;
/** More than the timeout plus the largest jitter (25 %): one step always expires a lease. */
const PAST_TIMEOUT_MS = TIMEOUT_MS * 1.25 + 1;

const watchers: LeaseWatcher[] = [];
afterEach(async () => {
  await Promise.all(watchers.splice(0).map((watcher) => watcher.stop()));
});

/** A watcher over a memory store whose lease reads are counted, on a clock the test moves. */
function harness() {
  const memory = new MemoryStore();
  let nowMs = 0;
  const clock: Clock = { ...systemClock, monotonicMs: () => nowMs };
  let leaseReads = 0;
  const readers = new Set<() => void>();
  const store: ObjectStore = {
    description: memory.description,
    put: (key, body, options) => memory.put(key, body, options),
    get: async (key, options) => {
      if (key === LEASE_KEY) {
        leaseReads++;
        for (const reader of readers) reader();
      }
      return memory.get(key, options);
    },
    head: (key) => memory.head(key),
    list: (prefix, options) => memory.list(prefix, options),
    delete: (key) => memory.delete(key),
    deleteMany: (keys) => memory.deleteMany(keys),
    close: () => memory.close(),
  };
  const expiredAfter: (bigint | undefined)[] = [];
  const watcher = new LeaseWatcher({
    store,
    timeoutMs: TIMEOUT_MS,
    pollIntervalMs: 1,
    clock,
    random: { next: () => 0.5 },
    log: pino({ level: 'silent' }),
    newestEpoch: async () => (await newestEpoch(store))?.epoch ?? null,
    onExpired: async (afterEpoch) => {
      expiredAfter.push(afterEpoch);
    },
  });
  watchers.push(watcher);
  return {
    store,
    watcher,
    expiredAfter,
    advance(ms: number) {
      nowMs += ms;
    },
    /**
     * Resolves after two more lease reads: the look that began with the first of them has ended
     * (the next look starts only once the previous one, its promotion included, is over).
     */
    looks(): Promise<void> {
      const target = leaseReads + 2;
      return new Promise((resolve) => {
        const check = () => {
          if (leaseReads < target) return;
          readers.delete(check);
          resolve();
        };
        readers.add(check);
      });
    },
    async claim(epoch: bigint, nodeId: string) {
      const record = {
        epoch,
        nodeId,
        url: `http://${nodeId}`,
        reason: 'test',
        at: new Date(0).toISOString(),
      };
      await store.put(epochKey(epoch), encodeEpoch(record), { condition: { type: 'absent' } });
    },
    async renew(epoch: bigint, nodeId: string, renewal: number) {
      await store.put(LEASE_KEY, encodeLease({ epoch, nodeId, renewal, at: new Date(0).toISOString() }));
    },
  };
}

describe('LeaseWatcher', () => {
  it('promotes past the expired lease epoch when no newer epoch was claimed', async () => {
    const h = harness();
    await h.claim(1n, 'a');
    await h.renew(1n, 'a', 1);
    h.watcher.start();
    await h.looks();
    h.advance(TIMEOUT_MS / 2);
    await h.looks();
    expect(h.expiredAfter).toEqual([]);
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    expect(h.expiredAfter).toEqual([1n]);
  });

  it('re-arms with an epoch claimed after the lease whose holder never renewed it, then promotes past that epoch', async () => {
    const h = harness();
    await h.claim(1n, 'a');
    await h.renew(1n, 'a', 1);
    h.watcher.start();
    await h.looks();
    // A promotion took epoch 2 but its primary never started: the lease still names epoch 1.
    await h.claim(2n, 'b');
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    // Promoting past epoch 1 now would only lose to epoch 2 (PROMOTION_LOST, for ever): wait one
    // more timeout for epoch 2's holder to take the lease instead.
    expect(h.expiredAfter).toEqual([]);
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    expect(h.expiredAfter).toEqual([2n]);
  });

  it('does not replace a newly elected primary that takes the lease within the timeout', async () => {
    const h = harness();
    await h.claim(1n, 'a');
    await h.renew(1n, 'a', 1);
    h.watcher.start();
    await h.looks();
    await h.claim(2n, 'b');
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    expect(h.expiredAfter).toEqual([]);
    await h.renew(2n, 'b', 1);
    await h.looks();
    h.advance(TIMEOUT_MS / 2);
    await h.looks();
    expect(h.expiredAfter).toEqual([]);
    // Epoch 2's primary dies in turn: promote past epoch 2.
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    expect(h.expiredAfter).toEqual([2n]);
  });

  it('without any lease (a primary without automatic failover) promotes past the newest epoch', async () => {
    const h = harness();
    await h.claim(1n, 'a');
    await h.claim(2n, 'b');
    h.watcher.start();
    await h.looks();
    h.advance(PAST_TIMEOUT_MS);
    await h.looks();
    expect(h.expiredAfter).toEqual([2n]);
  });
});
