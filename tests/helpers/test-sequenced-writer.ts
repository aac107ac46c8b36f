/**
 * A SequencedWriter's settings for tests (sequencer/writer.test.ts, failover/staged-gc.test.ts):
 * small segments, a 5 ms window and fast commit retries, so a test waits on the protocol, not on
 * the product's timers; and the one-row ILP lines those tests commit.
 */
import { systemClock } from '../../core/index.js';
import type { IlpLine } from '../../ilp/index.js';
import type { SequencedWriterOptions } from '../../sequencer/index.js';

/** The writer's own parts from the test, the rest test values; `overrides` win. */
export function testSequencedWriterOptions(
  parts: Pick<SequencedWriterOptions, 'store' | 'sequencer' | 'queue' | 'nodeId' | 'random' | 'log'>,
  overrides: Partial<SequencedWriterOptions> = {},
): SequencedWriterOptions {
  return {
    ...parts,
    clock: systemClock,
    schemaOf: () => undefined,
    rolloverSizeBytes: 64 * 1024,
    windowMs: 5,
    codec: 'deflate',
    compressionLevel: 1,
    durableTimeoutMs: 20_000,
    pendingMaxBytes: 64 * 1024 * 1024,
    commitRetry: { baseMs: 2, maxMs: 20 },
    ...overrides,
  };
}

/** One line per table, each row's long column `v` = value. */
export function longLines(tables: string[], value: bigint): IlpLine[] {
  return tables.map((table, i) => ({
    line: i + 1,
    table,
    symbols: [],
    fields: [{ name: 'v', value: { type: 'long', value } }],
    timestampUs: 1_700_000_000_000_000n,
  }));
}
