import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/index.js';
import { withFaults } from './faults.js';
import { MemoryStore } from './memory.js';
import { type StoreRequestEvent, withMetrics } from './metrics.js';

describe('withMetrics', () => {
  it('reports operation, outcome, bytes and error code of every request and changes no result', async () => {
    const events: StoreRequestEvent[] = [];
    const faulty = withFaults(new MemoryStore(), [], { random: seededRandom(3) });
    const store = withMetrics(faulty, (e) => events.push(e));
    const body = new Uint8Array(100);
    const first = await store.put('k', body, { condition: { type: 'absent' } });
    await store.put('k', body, { condition: { type: 'absent' } });
    const got = await store.get('k');
    await store.get('missing');
    await store.get('k', { ifNoneMatch: first.status === 'written' ? first.etag : '' });
    await store.head('missing');
    await store.list('');
    await store.delete('k');
    faulty.setRules([{ fault: { type: 'error' } }]);
    await expect(store.deleteMany(['a'])).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });

    expect(got?.status === 'ok' && got.body.byteLength).toBe(100);
    expect(
      events.map(({ operation, outcome, bytes, errorCode }) => ({ operation, outcome, bytes, errorCode })),
    ).toEqual([
      { operation: 'put', outcome: 'ok', bytes: 100, errorCode: undefined },
      { operation: 'put', outcome: 'precondition-failed', bytes: 100, errorCode: undefined },
      { operation: 'get', outcome: 'ok', bytes: 100, errorCode: undefined },
      { operation: 'get', outcome: 'missing', bytes: 0, errorCode: undefined },
      { operation: 'get', outcome: 'not-modified', bytes: 0, errorCode: undefined },
      { operation: 'head', outcome: 'missing', bytes: 0, errorCode: undefined },
      { operation: 'list', outcome: 'ok', bytes: 0, errorCode: undefined },
      { operation: 'delete', outcome: 'ok', bytes: 0, errorCode: undefined },
      { operation: 'deleteMany', outcome: 'error', bytes: 0, errorCode: 'STORE_UNAVAILABLE' },
    ]);
    expect(events.every((e) => e.durationMs >= 0)).toBe(true);
  });
});
