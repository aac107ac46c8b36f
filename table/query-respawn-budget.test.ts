import { describe, expect, test } from 'vitest';
import { isWalshipError } from '../core/index.js';
import { RespawnBudget } from './query-respawn-budget.js';

describe('RespawnBudget', () => {
  test('allows `burst` starts at once, then one per interval, and says how long to wait', () => {
    const budget = new RespawnBudget(3, 250);
    expect([budget.take(1000), budget.take(1000), budget.take(1000)]).toEqual([0, 0, 0]);
    expect(budget.take(1000)).toBe(250);
    // Asking again does not take anything: the wait shrinks with time, then one start is allowed.
    expect(budget.take(1100)).toBe(150);
    expect(budget.take(1250)).toBe(0);
    expect(budget.take(1250)).toBe(250);
  });

  test('a crash loop is held to the refill rate however often it asks', () => {
    const budget = new RespawnBudget(8, 250);
    let started = 0;
    // Asking every millisecond for 10 s.
    for (let nowMs = 0; nowMs < 10_000; nowMs++) if (budget.take(nowMs) === 0) started++;
    // The burst, plus what refilled between the first ask and the last one (9 999 ms).
    expect(started).toBe(Math.floor(8 + 9_999 / 250));
  });

  test('refills up to `burst`, not beyond', () => {
    const budget = new RespawnBudget(2, 100);
    expect(budget.take(0)).toBe(0);
    const afterIdle = [budget.take(60_000), budget.take(60_000), budget.take(60_000)];
    expect(afterIdle).toEqual([0, 0, 100]);
  });

  test('refuses bad bounds and time going backwards', () => {
    expect(() => new RespawnBudget(0, 100)).toThrow(/burst/);
    expect(() => new RespawnBudget(1, 0)).toThrow(/intervalMs/);
    const budget = new RespawnBudget(1, 100);
    budget.take(50);
    let error: unknown;
    try {
      budget.take(49);
    } catch (caught) {
      error = caught;
    }
    expect(isWalshipError(error, 'INVALID_ARGUMENT')).toBe(true);
  });
});
