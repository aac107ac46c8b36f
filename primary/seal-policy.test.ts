import { describe, expect, it } from 'vitest';
import { overdueAtMs, type SealPolicy, sealDueAtMs, sealReason, type Unsealed } from './seal-policy.js';

const policy: SealPolicy = { rolloverSizeBytes: 1000, windowMs: 200 };

/** Committed at 1000 ms, 10 bytes, nobody waiting: due by nothing before 1200 ms. */
function unsealed(overrides: Partial<Unsealed> = {}): Unsealed {
  return { bytes: 10, oldestAtMs: 1000, writerWaiting: false, ...overrides };
}

describe('seal policy', () => {
  it('waits while the records are small, young and nobody waits for them', () => {
    expect(sealReason(policy, unsealed(), 1000)).toBeNull();
    expect(sealReason(policy, unsealed(), 1199)).toBeNull();
  });

  it('seals on size once the unsealed bytes reach the rollover size, not before', () => {
    expect(sealReason(policy, unsealed({ bytes: 999 }), 1000)).toBeNull();
    expect(sealReason(policy, unsealed({ bytes: 1000 }), 1000)).toBe('size');
    expect(sealReason(policy, unsealed({ bytes: 5000 }), 1000)).toBe('size');
  });

  it('seals on the window once the oldest record is windowMs old, not before', () => {
    expect(sealReason(policy, unsealed(), 1199.5)).toBeNull();
    expect(sealReason(policy, unsealed(), 1200)).toBe('window');
    expect(sealReason(policy, unsealed(), 9000)).toBe('window');
  });

  it('seals at once for a waiting durable writer, however young and small the records', () => {
    expect(sealReason(policy, unsealed({ writerWaiting: true }), 1000)).toBe('waiting');
  });

  it('never seals by window when the oldest commit time is unknown', () => {
    expect(sealReason(policy, unsealed({ oldestAtMs: undefined }), 1_000_000)).toBeNull();
    expect(sealReason(policy, unsealed({ oldestAtMs: undefined, bytes: 1000 }), 0)).toBe('size');
  });

  it('names size first, then a waiting writer, then the window, when several hold', () => {
    const all = unsealed({ bytes: 1000, writerWaiting: true });
    expect(sealReason(policy, all, 5000)).toBe('size');
    expect(sealReason(policy, { ...all, bytes: 1 }, 5000)).toBe('waiting');
  });

  it('a window of 0 ms seals every record as soon as it is asked', () => {
    expect(sealReason({ ...policy, windowMs: 0 }, unsealed(), 1000)).toBe('window');
  });

  it('is next due when the oldest record’s window closes', () => {
    expect(sealDueAtMs(policy, 1000)).toBe(1200);
    expect(sealReason(policy, unsealed(), sealDueAtMs(policy, 1000))).toBe('window');
    expect(sealReason(policy, unsealed(), sealDueAtMs(policy, 1000) - 1)).toBeNull();
  });

  it('records an earlier run left unsealed are overdue at once', () => {
    const nowMs = 50_000;
    const atMs = overdueAtMs(policy, nowMs);
    expect(atMs).toBe(49_800);
    expect(sealDueAtMs(policy, atMs)).toBe(nowMs);
    expect(sealReason(policy, unsealed({ oldestAtMs: atMs }), nowMs)).toBe('window');
  });
});
