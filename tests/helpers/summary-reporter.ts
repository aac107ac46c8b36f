/**
 * Prints one machine-readable line at the very end of a run, after the default reporter's summary:
 *
 *   vitest: N passed, M failed, K skipped
 *
 * (CI parses `N passed, M failed`.) "failed" counts failed tests plus test files that failed without
 * a failed test (import/collection errors, failing beforeAll/afterAll hooks) plus unhandled errors, so
 * a broken run never reports 0 failed. "skipped" includes todo tests and tests that never ran.
 */
import type { Reporter, SerializedError, TestModule, TestRunEndReason } from 'vitest/node';

export interface RunCounts {
  passed: number;
  failed: number;
  skipped: number;
}

export function countResults(
  testModules: ReadonlyArray<TestModule>,
  unhandledErrors: ReadonlyArray<SerializedError>,
): RunCounts {
  const counts: RunCounts = { passed: 0, failed: 0, skipped: 0 };
  for (const mod of testModules) {
    let failedTests = 0;
    for (const test of mod.children.allTests()) {
      const state = test.result().state;
      if (state === 'passed') counts.passed++;
      else if (state === 'failed') {
        counts.failed++;
        failedTests++;
      } else counts.skipped++;
    }
    if (failedTests === 0 && (mod.errors().length > 0 || mod.state() === 'failed' || !mod.ok())) {
      counts.failed++;
    }
  }
  counts.failed += unhandledErrors.length;
  return counts;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
    _reason: TestRunEndReason,
  ): void {
    const c = countResults(testModules, unhandledErrors);
    process.stdout.write(`\nvitest: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped\n`);
  }
}
