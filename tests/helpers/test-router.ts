/** A `walship router` in the test process: a fast refresh, silent, on a free port. */
import { pino } from 'pino';
import { type RouterOptions, type RunningRouter, startRouter } from '../../router/index.js';

export function startTestRouter(options: Partial<RouterOptions>): Promise<RunningRouter> {
  return startRouter({
    refreshIntervalMs: 100,
    readPreference: 'replica_preferred',
    http: { host: '127.0.0.1', port: 0 },
    maxRequestBytes: 1024 * 1024,
    version: 'test',
    log: pino({ level: process.env.WALSHIP_TEST_LOG ?? 'silent' }),
    ...options,
  });
}
