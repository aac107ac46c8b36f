import { describe, expect, it } from 'vitest';
import { healthOf } from './health.js';

describe('healthOf (GET /health, issue 19)', () => {
  it('a primary is healthy while it accepts writes', () => {
    expect(healthOf({ role: 'primary', acceptingWrites: true }, undefined)).toEqual({
      healthy: true,
      reason: null,
    });
    expect(
      healthOf({ role: 'primary', acceptingWrites: false, fencedBy: 'n2 (epoch 3)' }, undefined),
    ).toEqual({
      healthy: false,
      reason: 'the primary does not accept writes: fenced by n2 (epoch 3)',
    });
  });

  it('a replica is healthy while it follows, and within max_staleness_ms when one is given', () => {
    const replica = { role: 'replica', following: true, stalenessMs: 120 };
    expect(healthOf(replica, undefined).healthy).toBe(true);
    expect(healthOf(replica, 500).healthy).toBe(true);
    expect(healthOf(replica, 100)).toEqual({
      healthy: false,
      reason: 'the replica last confirmed it was caught up 120 ms ago (max_staleness_ms=100)',
    });
    expect(healthOf({ ...replica, stalenessMs: null }, 100).reason).toMatch(/not yet confirmed/);
    expect(healthOf({ ...replica, following: { stopped: 'another cluster' } }, undefined).reason).toBe(
      'the replica stopped following the store: another cluster',
    );
  });

  it('a node changing role or starting serves no role', () => {
    expect(healthOf({ role: 'switching' }, undefined)).toEqual({
      healthy: false,
      reason: 'the node is switching, not serving a role',
    });
    expect(healthOf({}, undefined).reason).toBe('the node is starting, not serving a role');
  });
});
