import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Clock, StoreUnavailableError, seededRandom, systemClock } from '../core/index.js';
import { type FaultRule, withFaults } from './faults.js';
import { FsStore } from './fs.js';
import { MemoryStore } from './memory.js';
import { listAll, type ObjectStore } from './object-store.js';
import { type RetryEvent, withRetries } from './retries.js';

/** A clock whose sleeps return at once but are recorded, so backoff is observable without waiting. */
function fakeClock(): Clock & { slept: number[] } {
  let nowMs = 0;
  const slept: number[] = [];
  return {
    slept,
    wallMs: () => 1_700_000_000_000 + nowMs,
    monotonicMs: () => nowMs,
    sleep: async (ms) => {
      slept.push(ms);
      nowMs += ms;
    },
    // Retries arm no timers; a real one is enough should that change.
    setTimer: (ms, callback, options) => systemClock.setTimer(ms, callback, options),
  };
}

const bytes = (text: string) => new TextEncoder().encode(text);

let fsBase = '';
beforeAll(async () => {
  fsBase = await mkdtemp(path.join(tmpdir(), 'walship-retries-'));
});
afterAll(() => rm(fsBase, { recursive: true, force: true }));

const backends: [string, () => Promise<ObjectStore>][] = [
  ['memory (records write ids)', async () => new MemoryStore()],
  ['fs (compares bytes)', () => FsStore.open({ root: path.join(fsBase, String(Math.random())) })],
];

describe.each(backends)('withRetries over %s', (_name, open) => {
  function setUp(rules: FaultRule[], attempts = 4) {
    return open().then((inner) => {
      const faulty = withFaults(inner, rules, { random: seededRandom(1) });
      const clock = fakeClock();
      const events: RetryEvent[] = [];
      const store = withRetries(faulty, {
        policy: { attempts, baseDelayMs: 100, maxDelayMs: 1000 },
        clock,
        random: seededRandom(2),
        onRetry: (e) => events.push(e),
      });
      return { inner, faulty, store, clock, events };
    });
  }

  it('a create-only put whose response was lost is recognised as our own write', async () => {
    const { inner, store, events } = await setUp([
      { fault: { type: 'lost-response' }, operations: ['put'], times: 1 },
    ]);
    const result = await store.put('seg', bytes('ours'), { condition: { type: 'absent' } });
    expect(result.status).toBe('written');
    expect(events).toHaveLength(1);
    const stored = await inner.get('seg');
    expect(stored?.status === 'ok' && new TextDecoder().decode(stored.body)).toBe('ours');
  });

  it('a compare-and-swap that timed out after taking effect is recognised as our own write', async () => {
    const { inner, faulty, store } = await setUp([]);
    const v1 = await inner.put('lease', bytes('v1'));
    if (v1.status !== 'written') throw new Error('setup failed');
    faulty.setRules([
      { fault: { type: 'timeout', ms: 50, afterEffect: true }, operations: ['put'], times: 1 },
    ]);
    const result = await store.put('lease', bytes('v2-mine'), {
      condition: { type: 'match', etag: v1.etag },
    });
    expect(result.status).toBe('written');
    expect((await inner.head('lease'))?.etag).toBe(result.status === 'written' ? result.etag : '');
  });

  it("a retry that finds someone else's object reports precondition-failed", async () => {
    const { inner, faulty, store, clock } = await setUp([]);
    // The first try fails; while it backs off, another writer takes the key.
    clock.sleep = async () => {
      await inner.put('seg', bytes('theirs'));
    };
    faulty.setRules([{ fault: { type: 'error' }, operations: ['put'], times: 1 }]);
    expect((await store.put('seg', bytes('mine'), { condition: { type: 'absent' } })).status).toBe(
      'precondition-failed',
    );
    const stored = await inner.get('seg');
    expect(stored?.status === 'ok' && new TextDecoder().decode(stored.body)).toBe('theirs');
  });

  it('gives up after the configured attempts with exponential, jittered backoff', async () => {
    const { store, clock, events } = await setUp([{ fault: { type: 'error' }, operations: ['get'] }], 4);
    await expect(store.get('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(events.map((e) => e.attempt)).toEqual([1, 2, 3]);
    const ceilings = [100, 200, 400];
    clock.slept.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(ceilings[i]!);
    });
  });

  it('does not retry errors that retrying cannot fix', async () => {
    const { store, events } = await setUp([]);
    await expect(store.get('../escape')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(events).toHaveLength(0);
  });

  it('recovers from transient failures of every operation', async () => {
    const { store, faulty } = await setUp([{ fault: { type: 'error' }, probability: 0.5 }], 30);
    for (let i = 0; i < 20; i++)
      await store.put(`k/${i}`, bytes(String(i)), { condition: { type: 'absent' } });
    const keys: string[] = [];
    for await (const info of listAll(store, 'k/')) keys.push(info.key);
    expect(keys).toHaveLength(20);
    expect(faulty.injected.error).toBeGreaterThan(0);
  });
});

describe('withFaults', () => {
  it('truncated listings force paging and listAll still sees every key', async () => {
    const inner = new MemoryStore();
    for (let i = 0; i < 10; i++) await inner.put(`p/${i}`, bytes('x'));
    const store = withFaults(inner, [{ fault: { type: 'truncate-list', keys: 3 } }]);
    const page = await store.list('p/');
    expect(page.objects).toHaveLength(3);
    expect(page.nextToken).toBe('p/2');
    const all: string[] = [];
    for await (const info of listAll(store, 'p/')) all.push(info.key);
    expect(all).toEqual(Array.from({ length: 10 }, (_, i) => `p/${i}`));
  });

  it('a stale listing drops keys and claims to be complete', async () => {
    const inner = new MemoryStore();
    for (let i = 0; i < 5; i++) await inner.put(`p/${i}`, bytes('x'));
    const store = withFaults(inner, [{ fault: { type: 'stale-list', drop: 2 } }]);
    const page = await store.list('p/');
    expect(page.objects.map((o) => o.key)).toEqual(['p/0', 'p/1', 'p/2']);
    expect(page.nextToken).toBeUndefined();
  });

  it('ignore-conditions overwrites like a store without conditional writes', async () => {
    const store = withFaults(new MemoryStore(), [{ fault: { type: 'ignore-conditions' } }]);
    await store.put('k', bytes('a'), { condition: { type: 'absent' } });
    expect((await store.put('k', bytes('b'), { condition: { type: 'absent' } })).status).toBe('written');
    expect(store.injected['ignore-conditions']).toBe(2);
  });

  it('corrupt-read flips exactly one bit of a body and leaves the stored object intact', async () => {
    const inner = new MemoryStore();
    const original = bytes('some segment bytes');
    await inner.put('k', original);
    const store = withFaults(inner, [{ fault: { type: 'corrupt-read' }, times: 1 }], {
      random: seededRandom(7),
    });
    const corrupted = await store.get('k');
    if (corrupted?.status !== 'ok') throw new Error('expected a body');
    let differingBits = 0;
    corrupted.body.forEach((b, i) => {
      differingBits += (b ^ original[i]!).toString(2).split('1').length - 1;
    });
    expect(differingBits).toBe(1);
    const clean = await store.get('k');
    expect(clean?.status === 'ok' && Buffer.from(clean.body).equals(Buffer.from(original))).toBe(true);
  });

  it('latency and timeouts go through the injected clock; rules can be scoped and spent', async () => {
    const clock = fakeClock();
    const store = withFaults(
      new MemoryStore(),
      [
        { fault: { type: 'latency', ms: 250 }, operations: ['get'], keyPrefix: 'slow/' },
        { fault: { type: 'timeout', ms: 1000 }, operations: ['head'], times: 1 },
      ],
      { clock },
    );
    await store.get('slow/a');
    await store.get('fast/a');
    expect(clock.slept).toEqual([250]);
    await expect(store.head('x')).rejects.toMatchObject({ code: 'STORE_TIMEOUT' });
    expect(await store.head('x')).toBeNull();
    expect(clock.slept).toEqual([250, 1000]);
  });
});
