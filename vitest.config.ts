import { defineConfig } from 'vitest/config';
import SummaryReporter from './tests/helpers/summary-reporter.js';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    // Boots one throwaway Ceph RGW (real S3) for the whole run, or uses WALSHIP_S3_ENDPOINT.
    globalSetup: ['./tests/helpers/global-setup.ts'],
    // The pinned AWS SDK's notice about Node 22 is noise in test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Every test file in its own child process (native SQLite, timers, sockets stay isolated).
    pool: 'forks',
    // The last line of output is `vitest: N passed, M failed, K skipped` (parsed by CI).
    reporters: ['default', new SummaryReporter()],
  },
});
