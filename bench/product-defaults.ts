import type { PrimarySettings } from '../primary/index.js';

/**
 * The primary's product defaults (cli/config.ts) where the test helpers use shorter test values,
 * so a suite measures the primary as it ships: 10 s throttle window, 2 MiB rollover, deflate 1,
 * synchronous=FULL, local acks. Kept by hand: a change of a default in cli/config.ts goes here too.
 */
export const PRIMARY_PRODUCT_DEFAULTS: Partial<PrimarySettings> = {
  windowMs: 10_000,
  headIntervalMs: 1_000,
  rolloverSizeBytes: 2 * 1024 * 1024,
  maxConcurrentUploads: 8,
  codec: 'deflate',
  compressionLevel: 1,
  synchronous: 'FULL',
  ackMode: 'local',
};
