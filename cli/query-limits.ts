import { InvalidConfigError } from '../core/index.js';
import type { QueryPoolLimits } from '../table/index.js';
import type { NodeConfig } from './config.js';

/** An idle query host holds ~60 MiB, so a smaller limit would stop hosts at rest (RFC-0004 §7). */
const MIN_QUERY_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;

/**
 * The query pool's bounds from `query.queue.max`, `query.queue.wait.max` and `query.memory.limit`
 * (RFC-0004 §7–§8). Throws INVALID_CONFIG naming the key for a memory limit below 128m.
 */
export function queryLimitsOf(config: NodeConfig): QueryPoolLimits {
  const memoryLimitBytes = config.number('query.memory.limit');
  if (memoryLimitBytes < MIN_QUERY_MEMORY_LIMIT_BYTES) {
    throw new InvalidConfigError(
      `query.memory.limit (${config.sourceOf('query.memory.limit')}) must be at least 128m: an idle query host ` +
        `already holds ~60 MiB; got ${memoryLimitBytes} bytes`,
    );
  }
  return {
    maxQueueLength: config.number('query.queue.max'),
    maxQueueWaitMs: Math.max(1, config.number('query.queue.wait.max')),
    memoryLimitBytes,
  };
}
