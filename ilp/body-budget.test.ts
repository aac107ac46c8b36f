import { describe, expect, it } from 'vitest';
import { BodyBudget, type Reservation } from './body-budget.js';

const LONG = 60_000;

/** What a pending reservation has become so far: still waiting, granted, or refused. */
function watch(pending: Promise<Reservation | null>) {
  const state: { outcome: 'waiting' | 'granted' | 'refused'; reservation: Reservation | null } = {
    outcome: 'waiting',
    reservation: null,
  };
  void pending.then((reservation) => {
    state.outcome = reservation === null ? 'refused' : 'granted';
    state.reservation = reservation;
  });
  return state;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('BodyBudget', () => {
  it('grants what fits at once and counts it until released', async () => {
    const budget = new BodyBudget(100);
    const a = (await budget.reserve(60, LONG))!;
    const b = (await budget.reserve(40, LONG))!;
    expect(budget.heldBytes).toBe(100);
    a.release();
    a.release();
    expect(budget.heldBytes).toBe(40);
    b.release();
    expect(budget.heldBytes).toBe(0);
  });

  it('lets waiters in in arrival order: a small one does not pass a large one', async () => {
    const budget = new BodyBudget(100);
    const first = (await budget.reserve(70, LONG))!;
    const large = watch(budget.reserve(80, LONG));
    const small = watch(budget.reserve(10, LONG));
    await settle();
    // 10 would fit beside 70, but the 80 before it waits.
    expect([large.outcome, small.outcome]).toEqual(['waiting', 'waiting']);
    expect(budget.waiting).toBe(2);
    // Nor does a reservation without waiting.
    expect(budget.tryReserve(10)).toBeNull();
    first.release();
    await settle();
    expect([large.outcome, small.outcome]).toEqual(['granted', 'granted']);
    expect(budget.heldBytes).toBe(90);
  });

  it('refuses a waiter after its wait, and the next one goes in if it fits', async () => {
    const budget = new BodyBudget(100);
    const held = (await budget.reserve(50, LONG))!;
    const refused = await budget.reserve(80, 20);
    expect(refused).toBeNull();
    expect(budget.waiting).toBe(0);
    const large = watch(budget.reserve(80, 30));
    const small = watch(budget.reserve(20, LONG));
    await settle();
    expect(small.outcome).toBe('waiting');
    // The head gives up; the one behind it fits beside the 50 held.
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect([large.outcome, small.outcome]).toEqual(['refused', 'granted']);
    expect(budget.heldBytes).toBe(70);
    held.release();
  });

  it('a waiter whose signal aborts leaves the queue', async () => {
    const budget = new BodyBudget(10);
    const held = (await budget.reserve(10, LONG))!;
    const controller = new AbortController();
    const leaving = watch(budget.reserve(5, LONG, controller.signal));
    await settle();
    controller.abort();
    await settle();
    expect(leaving.outcome).toBe('refused');
    expect(budget.waiting).toBe(0);
    held.release();
    expect(budget.heldBytes).toBe(0);
    expect(await budget.reserve(5, LONG, controller.signal)).not.toBeNull();
  });

  it('shrinkTo gives back room, and waiters get it', async () => {
    const budget = new BodyBudget(100);
    const chunked = (await budget.reserve(100, LONG))!;
    const next = watch(budget.reserve(60, LONG));
    await settle();
    expect(next.outcome).toBe('waiting');
    chunked.shrinkTo(30);
    await settle();
    expect(next.outcome).toBe('granted');
    expect(budget.heldBytes).toBe(90);
    chunked.shrinkTo(50);
    expect(budget.heldBytes).toBe(90);
    chunked.release();
    next.reservation!.release();
    expect(budget.heldBytes).toBe(0);
  });

  it('refuses a reservation larger than the budget, or not a byte count', () => {
    const budget = new BodyBudget(100);
    expect(() => budget.reserve(101, LONG)).toThrow(RangeError);
    expect(() => budget.reserve(-1, LONG)).toThrow(RangeError);
    expect(() => budget.reserve(1.5, LONG)).toThrow(RangeError);
    expect(() => new BodyBudget(0)).toThrow(RangeError);
  });
});
