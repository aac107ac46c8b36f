/**
 * promote() (RFC-0002 P1–P4): a promotion that already lost learns it from `epochs/` before it
 * catches up. Found by issue 13 item 3: a candidate whose lease timer ran out after another node
 * had been promoted spent 15 s downloading the WAL before P2 told it so.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { systemClock } from '../core/index.js';
import { encodeEpoch, epochKey } from '../layout/index.js';
import { MemoryStore, type ObjectStore } from '../objectstore/index.js';
import { startTestPrimary } from '../tests/helpers/test-primary.js';
import { promote } from './promote.js';

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-promote-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** `store` with every GET's key recorded in `keys`. */
function countingGets(store: ObjectStore, keys: string[]): ObjectStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'get') {
        return (key: string, options?: Parameters<ObjectStore['get']>[1]) => {
          keys.push(key);
          return target.get(key, options);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('promote', () => {
  test('a promotion whose onlyAfterEpoch is stale refuses (PROMOTION_LOST) without downloading the WAL', async () => {
    const store = new MemoryStore();
    // History: epoch 1 wrote 20 txns to the store; then another node took epoch 2.
    const primary = await startTestPrimary(store, path.join(base, 'primary'));
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
        method: 'POST',
        body: `history v=${i}i ${1_700_000_000_000_000_000n + BigInt(i)}\n`,
      });
      expect(response.status).toBe(204);
    }
    await primary.demote(10_000);
    await primary.close();
    const segments = (await store.list('tables/')).objects.filter((o) => o.key.includes('/wal/'));
    expect(segments.length).toBeGreaterThan(0);
    await store.put(
      epochKey(2n),
      encodeEpoch({
        epoch: 2n,
        nodeId: 'winner',
        url: 'http://winner:9000',
        reason: 'automatic',
        at: new Date().toISOString(),
        claimId: 'c',
      }),
      { condition: { type: 'absent' } },
    );

    const gets: string[] = [];
    const attempt = promote({
      store: countingGets(store, gets),
      databaseFile: path.join(base, 'late-candidate.sqlite'),
      nodeId: 'late',
      url: 'http://late:9000',
      reason: 'automatic: the primary stopped renewing its lease',
      clock: systemClock,
      log: pino({ level: 'silent' }),
      codec: 'deflate',
      compressionLevel: 1,
      synchronous: 'FULL',
      onlyAfterEpoch: 1n,
    });
    await expect(attempt).rejects.toMatchObject({ code: 'PROMOTION_LOST' });
    expect(gets.filter((key) => key.includes('/wal/'))).toEqual([]);
    expect((await store.list('epochs/')).objects.map((o) => o.key)).toEqual([epochKey(1n), epochKey(2n)]);
  });
});
