import { describe, expect, it } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { loadConfig } from './config.js';
import { queryLimitsOf } from './query-limits.js';

describe('queryLimitsOf', () => {
  it('maps query.queue.max, query.queue.wait.max and query.memory.limit, with their defaults', async () => {
    expect(queryLimitsOf(await loadConfig({ argv: [], env: {} }))).toEqual({
      maxQueueLength: 256,
      maxQueueWaitMs: 5_000,
      memoryLimitBytes: 1024 * 1024 * 1024,
    });
    const set = await loadConfig({
      argv: ['--query.queue.max=8', '--query.queue.wait.max=250ms', '--query.memory.limit=512m'],
      env: {},
    });
    expect(queryLimitsOf(set)).toEqual({
      maxQueueLength: 8,
      maxQueueWaitMs: 250,
      memoryLimitBytes: 512 * 1024 * 1024,
    });
  });

  it('refuses a memory limit an idle query host would already exceed, naming the key', async () => {
    const config = await loadConfig({ argv: [], env: { WALSHIP_QUERY_MEMORY_LIMIT: '64m' } });
    let thrown: unknown;
    try {
      queryLimitsOf(config);
    } catch (error) {
      thrown = error;
    }
    expect(isWalshipError(thrown, 'INVALID_CONFIG')).toBe(true);
    expect((thrown as Error).message).toMatch(
      /query\.memory\.limit \(env WALSHIP_QUERY_MEMORY_LIMIT\) must be at least 128m/,
    );
  });
});
