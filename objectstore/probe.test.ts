import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { withFaults } from './faults.js';
import { FsStore } from './fs.js';
import { MemoryStore } from './memory.js';
import { renderProbeReport, runConformanceProbe } from './probe.js';
import { S3Store } from './s3.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-probe-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('conformance probe', () => {
  it('passes on the memory store and cleans up after itself', async () => {
    const store = new MemoryStore();
    const report = await runConformanceProbe(store);
    expect(report.checks.filter((c) => !c.passed)).toEqual([]);
    expect(report).toMatchObject({ ok: true, fencingSafe: true });
    expect(report.checks).toHaveLength(11);
    expect((await store.list('')).objects).toEqual([]);
  });

  it('passes on the fs store', async () => {
    const store = await FsStore.open({ root: path.join(base, 'fs') });
    const report = await runConformanceProbe(store);
    expect(report.checks.filter((c) => !c.passed)).toEqual([]);
    expect((await store.list('')).objects).toEqual([]);
  });

  it.skipIf(s3.env === null)('passes on Ceph RGW and notes its unquoted If-Match', async () => {
    const bucket = await createTestBucket(s3.env!, 'probe');
    const store = new S3Store({ bucket, root: 'probe-test', ...s3.env! });
    const report = await runConformanceProbe(store, {
      notes: () => (store.ifMatchQuoting === 'unquoted' ? ['unquoted If-Match'] : []),
    });
    expect(report.checks.filter((c) => !c.passed)).toEqual([]);
    expect(report.notes).toEqual(['unquoted If-Match']);
    await store.close();
  });

  it('fails a store that ignores create-only and compare-and-swap, and calls it unsafe', async () => {
    const store = withFaults(new MemoryStore(), [{ fault: { type: 'ignore-conditions' } }]);
    const report = await runConformanceProbe(store);
    expect(report).toMatchObject({ ok: false, fencingSafe: false, error: null });
    const failed = report.checks.filter((c) => !c.passed).map((c) => c.name);
    expect(failed).toEqual([
      'create-only: second write refused',
      'create-only: racing writers, one wins',
      'compare-and-swap: stale ETag refused',
      'compare-and-swap: missing object refused',
    ]);
    expect(report.checks.find((c) => c.name === 'create-only: second write refused')?.detail).toContain(
      'ignores If-None-Match',
    );
    expect(renderProbeReport(report)).toContain('UNSAFE');
  });

  it('fails a store whose listing lies, without calling it unsafe for fencing', async () => {
    const store = withFaults(new MemoryStore(), [
      { fault: { type: 'stale-list', drop: 1 }, keyPrefix: 'probe/' },
    ]);
    const report = await runConformanceProbe(store);
    expect(report).toMatchObject({ ok: false, fencingSafe: true });
    expect(report.checks.filter((c) => !c.passed).map((c) => c.name)).toContain('listing order and paging');
  });

  it('reports a store that fails every request as failing every check', async () => {
    const store = withFaults(new MemoryStore(), [
      { fault: { type: 'error', message: `down ${randomUUID()}` } },
    ]);
    const report = await runConformanceProbe(store);
    expect(report.checks.every((c) => !c.passed && c.errored)).toBe(true);
    expect(report.error?.message).toMatch(/^down /);
    expect(renderProbeReport(report)).toContain('UNREACHABLE');
  });
});
