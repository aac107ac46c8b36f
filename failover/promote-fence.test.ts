/**
 * RFC-0002 P4 (issue 13 item 11): a fence always lands above every GC boundary. A promoter whose
 * watermark lies below a chain GC collected — here a listing hid the chain from its catch-up — must
 * not put its fence into a collected slot below the chain, where the create-only PUT would succeed
 * and fence nothing (SlateDB's fence below the replay boundary).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { systemClock } from '../core/index.js';
import { segmentKey, segmentPrefix } from '../layout/index.js';
import { MemoryStore, withFaults } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { startTestPrimary } from '../tests/helpers/test-primary.js';
import { promote } from './promote.js';

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-promote-fence-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('promote: where the fence lands', () => {
  test('never below a chain GC collected past the promoter (a listing hid it from the catch-up)', async () => {
    const inner = new MemoryStore();
    const primary = await startTestPrimary(inner, path.join(base, 'primary'), { ackMode: 'durable' });
    for (let i = 0; i < 6; i++) {
      const response = await fetch(`http://127.0.0.1:${primary.httpPort}/write`, {
        method: 'POST',
        body: `ledger v=${i}i ${1_700_000_000_000_000_000n + BigInt(i)}\n`,
      });
      expect(response.status).toBe(204);
    }
    await primary.demote(10_000);
    await primary.close();
    const key = tableKey('ledger');
    const chain = (await inner.list(segmentPrefix(key))).objects.map((o) => o.key);
    expect(chain.length).toBeGreaterThan(2);
    // GC collected the oldest half of the chain (a prefix; the newest stays).
    await inner.deleteMany(chain.slice(0, Math.floor(chain.length / 2)));
    // The catch-up's one listing of the chain comes back empty and claims to be complete.
    const store = withFaults(inner, [
      {
        fault: { type: 'stale-list', drop: 1000 },
        operations: ['list'],
        keyPrefix: segmentPrefix(key),
        times: 1,
      },
    ]);

    const attempt = promote({
      store,
      databaseFile: path.join(base, 'fresh-candidate.sqlite'),
      nodeId: 'candidate',
      url: 'http://candidate:9000',
      reason: 'test',
      clock: systemClock,
      log: pino({ level: 'silent' }),
      codec: 'deflate',
      compressionLevel: 1,
      synchronous: 'FULL',
    });
    // The catch-up, run again once the fence check saw the chain, finds it collected past txn 0.
    await expect(attempt).rejects.toMatchObject({ code: 'CATCH_UP_INCOMPLETE' });
    expect(store.injected['stale-list']).toBe(1);
    expect(await inner.head(segmentKey(key, 1n))).toBeNull(); // no fence below the chain
  });
});
