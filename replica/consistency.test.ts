import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { type Clock, systemClock, WalshipError } from '../core/index.js';
import { createQueryHttpHandler, MAX_TABLE_KEY_CHARS, QueryPool, tableKey } from '../table/index.js';
import {
  AppliedWaiters,
  COMMIT_TOKEN_MAX_CHARS,
  COMMIT_TOKEN_MAX_ENTRIES,
  createReadConsistency,
  formatCommitToken,
  parseCommitToken,
  parseCommitTokenEntries,
  type ReadConsistencyOptions,
  TXN_MAX,
} from './consistency.js';

/** A clock that only moves when told; its sleeps and timers are observable and cancellable. */
function manualClock(): Clock & { advance(ms: number): Promise<void>; readonly pendingSleeps: number } {
  let nowMs = 0;
  const sleeps = new Set<{ dueMs: number; resolve: () => void }>();
  return {
    wallMs: () => 1_700_000_000_000 + nowMs,
    monotonicMs: () => nowMs,
    sleep(durationMs, signal) {
      return new Promise((resolve, reject) => {
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        const entry = { dueMs: nowMs + durationMs, resolve };
        sleeps.add(entry);
        signal?.addEventListener(
          'abort',
          () => {
            sleeps.delete(entry);
            reject(signal.reason);
          },
          { once: true },
        );
      });
    },
    setTimer(durationMs, callback) {
      const entry = { dueMs: nowMs + durationMs, resolve: callback };
      sleeps.add(entry);
      return { cancel: () => sleeps.delete(entry) };
    },
    async advance(ms) {
      nowMs += ms;
      for (const entry of [...sleeps]) {
        if (entry.dueMs > nowMs) continue;
        sleeps.delete(entry);
        entry.resolve();
      }
      await flush();
    },
    get pendingSleeps() {
      return sleeps.size;
    },
  };
}

/** Lets promise callbacks run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** The settled state of `promise` right now, after pending callbacks ran. */
async function stateOf(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  await flush();
  return state;
}

async function failure(promise: Promise<unknown>): Promise<WalshipError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(WalshipError);
    return error as WalshipError;
  }
  throw new Error('expected a failure');
}

function expectThrowsCode(run: () => unknown, code: string): WalshipError {
  try {
    run();
  } catch (error) {
    expect(error).toMatchObject({ code });
    return error as WalshipError;
  }
  throw new Error(`expected ${code}`);
}

describe('parseCommitToken', () => {
  test('reads key=txn parts, tolerating whitespace around them', () => {
    expect(parseCommitToken('trades=42,quotes=17')).toEqual(
      new Map([
        ['trades', 42n],
        ['quotes', 17n],
      ]),
    );
    expect(parseCommitToken(' trades=42 ,\tcaf%C3%A9=3 ')).toEqual(
      new Map([
        ['trades', 42n],
        ['caf%C3%A9', 3n],
      ]),
    );
    expect(parseCommitToken(`t=${TXN_MAX}`).get('t')).toBe(TXN_MAX);
  });

  test('a table named twice keeps its larger txn', () => {
    expect(parseCommitToken('t=5,t=9,t=7')).toEqual(new Map([['t', 9n]]));
  });

  test('reads the committing epoch after @; a table named twice keeps the newer epoch, whatever its txn', () => {
    expect(parseCommitTokenEntries('trades=42@3,quotes=17')).toEqual(
      new Map([
        ['trades', { txn: 42n, epoch: 3n }],
        ['quotes', { txn: 17n, epoch: undefined }],
      ]),
    );
    // txn 45 of epoch 1 was lost in the failover to epoch 2: 42@2 is the later write.
    expect(parseCommitTokenEntries('t=45@1,t=42@2')).toEqual(new Map([['t', { txn: 42n, epoch: 2n }]]));
    expect(parseCommitTokenEntries('t=7@2,t=9@2')).toEqual(new Map([['t', { txn: 9n, epoch: 2n }]]));
    expect(parseCommitToken('t=45@1,t=42@2')).toEqual(new Map([['t', 42n]]));
  });

  test.each([
    ['', /part 1 is empty/],
    ['  ', /part 1 is empty/],
    ['a=1,,b=2', /part 2 is empty/],
    ['a=1,', /part 2 is empty/],
    ['trades', /"trades" is not key=txn/],
    ['=1', /"" is not a table key/],
    ['Trades=1', /not a table key/],
    ['tr ades=1', /not a table key/],
    ['trades =1', /not a table key/],
    ['caf%c3%a9=1', /not a table key/],
    ['.t=1', /not a table key/],
    ['trades=', /txn "" is not an integer/],
    ['trades=0', /txn "0" is not an integer in 1\.\.9223372036854775807/],
    ['trades=-1', /txn "-1"/],
    ['trades=+1', /txn "\+1"/],
    ['trades=01', /txn "01"/],
    ['trades=1.0', /txn "1.0"/],
    ['trades= 1', /txn " 1"/],
    ['trades=0x10', /txn "0x10"/],
    ['trades=9223372036854775808', /txn "9223372036854775808"/],
    ['trades=1=2', /txn "1=2"/],
    ['trades=1@0', /epoch "0"/],
    ['trades=1@', /epoch ""/],
    ['trades=1@2@3', /epoch "2@3"/],
    ['trades=1@x', /epoch "x"/],
    ['trades=@2', /txn ""/],
  ])('refuses %j', (value, message) => {
    const error = expectThrowsCode(() => parseCommitToken(value), 'INVALID_COMMIT_TOKEN');
    expect(error.kind).toBe('invalid');
    expect(error.message).toMatch(message);
  });

  test('bounds the token and never echoes more than ~100 characters of it', () => {
    const longKey = 'k'.repeat(5_000);
    const error = expectThrowsCode(() => parseCommitToken(`${longKey}=1`), 'INVALID_COMMIT_TOKEN');
    expect(error.message).not.toContain('k'.repeat(101));
    expect(error.message).toMatch(/\(5000 characters\) is longer than a table key/);
    expect(error.message.length).toBeLessThan(400);

    const tooLongKey = `${'k'.repeat(MAX_TABLE_KEY_CHARS + 1)}=1`;
    expect(() => parseCommitToken(tooLongKey)).toThrow(/is longer than a table key/);
    const badLongKey = expectThrowsCode(
      () => parseCommitToken(`${'K'.repeat(200)}=1`),
      'INVALID_COMMIT_TOKEN',
    );
    expect(badLongKey.message).toMatch(/is not a table key \(character "K" at 0 is not allowed\)/);
    expect(badLongKey.message).not.toContain('K'.repeat(101));

    const tooLong = `t=1,${'x'.repeat(COMMIT_TOKEN_MAX_CHARS)}`;
    expect(expectThrowsCode(() => parseCommitToken(tooLong), 'INVALID_COMMIT_TOKEN').message).toMatch(
      /above the limit of 16384/,
    );

    const entries = (n: number) => Array.from({ length: n }, (_, i) => `t${i}=1`).join(',');
    expect(parseCommitToken(entries(COMMIT_TOKEN_MAX_ENTRIES)).size).toBe(COMMIT_TOKEN_MAX_ENTRIES);
    expect(
      expectThrowsCode(() => parseCommitToken(entries(COMMIT_TOKEN_MAX_ENTRIES + 1)), 'INVALID_COMMIT_TOKEN')
        .message,
    ).toMatch(/1001 tables, above the limit of 1000/);
  });
});

describe('formatCommitToken', () => {
  test('sorts by key', () => {
    expect(
      formatCommitToken(
        new Map([
          ['trades', 42n],
          ['quotes', 17n],
        ]),
      ),
    ).toBe('quotes=17,trades=42');
    expect(formatCommitToken(new Map())).toBe('');
  });

  test('parse(format(token)) gives the token back', () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_é€ -]{1,20}$/).filter((n) => n.trim() === n && n !== '');
    const token = fc.dictionary(name, fc.bigInt({ min: 1n, max: TXN_MAX }), { minKeys: 1, maxKeys: 20 });
    fc.assert(
      fc.property(token, (byName) => {
        const byKey = new Map<string, bigint>();
        for (const [n, txn] of Object.entries(byName)) {
          const key = tableKey(n);
          byKey.set(key, (byKey.get(key) ?? 0n) > txn ? byKey.get(key)! : txn);
        }
        expect(parseCommitToken(formatCommitToken(byKey))).toEqual(byKey);
      }),
    );
  });
});

/** Applied txns a test moves by hand, notifying `waiters` as the applier would. */
function appliedTables(waiters: AppliedWaiters, initial: Record<string, bigint>) {
  const applied = new Map(Object.entries(initial));
  return {
    applied: (key: string) => applied.get(key) ?? 0n,
    appliedAll: () => new Map(applied),
    apply(key: string, txn: bigint) {
      applied.set(key, txn);
      waiters.notify(key, txn);
    },
    /** Advances without notifying, as a missed notification would. */
    set(key: string, txn: bigint) {
      applied.set(key, txn);
    },
  };
}

const token = (value: string) => parseCommitToken(value);

describe('AppliedWaiters', () => {
  test('resolves at once when the replica has applied the token, without waiting or polling', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, { trades: 42n, quotes: 20n });
    const behind: string[][] = [];
    const wait = waiters.wait(token('trades=42,quotes=17'), {
      timeoutMs: 100,
      applied: tables.applied,
      onBehind: (keys) => behind.push(keys),
    });
    expect(await stateOf(wait)).toBe('resolved');
    expect([behind, waiters.size, clock.pendingSleeps]).toEqual([[], 0, 0]);
  });

  test('waits until every table has applied its txn, then frees its timer', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, { trades: 40n, quotes: 17n, other: 1n });
    const behind: string[][] = [];
    const wait = waiters.wait(token('trades=42,quotes=17,other=3'), {
      timeoutMs: 100,
      applied: tables.applied,
      onBehind: (keys) => behind.push(keys),
    });
    expect(behind).toEqual([['other', 'trades']]);
    tables.apply('trades', 41n);
    tables.apply('other', 3n);
    tables.apply('quotes', 99n);
    expect(await stateOf(wait)).toBe('pending');
    expect([waiters.size, clock.pendingSleeps]).toEqual([1, 1]);
    tables.apply('trades', 42n);
    expect(await stateOf(wait)).toBe('resolved');
    expect([behind.length, waiters.size, clock.pendingSleeps]).toEqual([1, 0, 0]);
  });

  test('times out with MIN_TXN_TIMEOUT naming the table, the txns and the wait', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, { trades: 40n });
    const wait = waiters.wait(token('trades=42,quotes=17'), { timeoutMs: 5_000, applied: tables.applied });
    await clock.advance(4_999);
    expect(await stateOf(wait)).toBe('pending');
    tables.apply('trades', 41n);
    await clock.advance(1);
    const error = await failure(wait);
    expect(error).toMatchObject({
      code: 'MIN_TXN_TIMEOUT',
      kind: 'unavailable',
      details: { table: 'quotes', wantedTxn: 17n, appliedTxn: 0n, waitedMs: 5_000 },
    });
    expect(error.message).toBe(
      'waited 5000 ms for quotes txn 17 but this replica has applied txn 0 (and 1 more tables are behind); ' +
        'the primary may not have uploaded it yet (see replication.primary.throttle.window.duration) ' +
        '— retry, or read from the primary',
    );
    expect([waiters.size, clock.pendingSleeps]).toEqual([0, 0]);
    // A late notify after the timeout is harmless.
    tables.apply('quotes', 17n);
  });

  test('looks once more at the timeout, so a missed notify does not fail a read that is satisfied', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, { trades: 1n });
    const wait = waiters.wait(token('trades=2'), { timeoutMs: 50, applied: tables.applied });
    tables.set('trades', 2n);
    await clock.advance(50);
    expect(await stateOf(wait)).toBe('resolved');
  });

  test('an abort rejects with QUERY_ABORTED and removes its listener and timer', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, {});
    const controller = new AbortController();
    const wait = waiters.wait(token('trades=1'), {
      timeoutMs: 100,
      signal: controller.signal,
      applied: tables.applied,
    });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort();
    expect(await failure(wait)).toMatchObject({ code: 'QUERY_ABORTED', kind: 'closed' });
    expect([waiters.size, clock.pendingSleeps]).toEqual([0, 0]);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    // Already aborted: refused before waiting.
    const again = waiters.wait(token('trades=1'), {
      timeoutMs: 100,
      signal: controller.signal,
      applied: tables.applied,
    });
    expect(await failure(again)).toMatchObject({ code: 'QUERY_ABORTED' });
    expect(waiters.size).toBe(0);
  });

  test('a resolved wait removes its abort listener', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, {});
    const controller = new AbortController();
    const wait = waiters.wait(token('trades=1'), {
      timeoutMs: 100,
      signal: controller.signal,
      applied: tables.applied,
    });
    tables.apply('trades', 1n);
    await wait;
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  test('at most waitersMax reads wait; one more is READ_BUSY, a caught-up read still passes', async () => {
    const clock = manualClock();
    const waiters = new AppliedWaiters({ clock, waitersMax: 2 });
    const tables = appliedTables(waiters, { done: 5n });
    const options = { timeoutMs: 100, applied: tables.applied };
    const first = waiters.wait(token('a=1'), options);
    const second = waiters.wait(token('b=1'), options);
    expect(await failure(waiters.wait(token('c=1'), options))).toMatchObject({
      code: 'READ_BUSY',
      kind: 'unavailable',
    });
    expect(await stateOf(waiters.wait(token('done=5'), options))).toBe('resolved');
    tables.apply('a', 1n);
    await first;
    expect(await stateOf(waiters.wait(token('c=1'), options))).toBe('pending');
    tables.apply('b', 1n);
    tables.apply('c', 1n);
    await second;
    expect([waiters.size, clock.pendingSleeps]).toEqual([0, 0]);
  });

  test('with real timers, a settled wait leaves no timer running', async () => {
    let running = 0;
    const clock: Clock = {
      ...systemClock,
      sleep: (ms, signal) => {
        running++;
        return systemClock.sleep(ms, signal).finally(() => running--);
      },
    };
    const waiters = new AppliedWaiters({ clock });
    const tables = appliedTables(waiters, {});
    const resolved = waiters.wait(token('t=1'), { timeoutMs: 60_000, applied: tables.applied });
    expect(running).toBe(1);
    tables.apply('t', 1n);
    await resolved;
    await flush();
    expect(running).toBe(0);
    const timedOut = waiters.wait(token('u=1'), { timeoutMs: 50, applied: tables.applied });
    expect((await failure(timedOut)).code).toBe('MIN_TXN_TIMEOUT');
    expect(running).toBe(0);
  });
});

/** A replica node as the consistency hook sees it, every part controllable. */
function fakeNode(initial: Record<string, bigint>, options: Partial<ReadConsistencyOptions> = {}) {
  const clock = manualClock();
  const waiters = new AppliedWaiters({ clock });
  const tables = appliedTables(waiters, initial);
  const state = {
    stalenessMs: null as number | null,
    refreshes: 0,
    behind: [] as string[][],
    /** What refresh does; default: confirms freshness at once. */
    refresh: async () => {
      state.stalenessMs = 0;
    },
  };
  const hook = createReadConsistency({
    waiters,
    applied: tables.applied,
    appliedAll: tables.appliedAll,
    stalenessMs: () => state.stalenessMs,
    refresh: () => {
      state.refreshes++;
      return state.refresh();
    },
    onBehind: (keys) => state.behind.push(keys),
    waitMaxMs: 1_000,
    clock,
    ...options,
  });
  const read = (
    params: Record<string, string> = {},
    headers: Record<string, string> = {},
    signal = new AbortController().signal,
  ) => hook({ headers } as unknown as IncomingMessage, new URLSearchParams(params), signal);
  return { clock, waiters, tables, state, read };
}

describe('createReadConsistency', () => {
  test('without requirements: answers what the read reflects, nothing-applied tables left out', async () => {
    const node = fakeNode({ trades: 42n, quotes: 17n, empty: 0n });
    expect(await node.read()).toEqual({
      'x-walship-applied-txn': 'quotes=17,trades=42',
      'x-walship-staleness-ms': 'unknown',
    });
    node.state.stalenessMs = 1234.7;
    expect((await node.read())['x-walship-staleness-ms']).toBe('1234');
    expect(node.state.refreshes).toBe(0);
  });

  test('names at most 100 tables, the first by key', async () => {
    const initial = Object.fromEntries(
      Array.from({ length: 150 }, (_, i) => [`t${String(i).padStart(3, '0')}`, 1n]),
    );
    const header = (await fakeNode(initial).read())['x-walship-applied-txn']!;
    const keys = [...parseCommitToken(header).keys()];
    expect([keys.length, keys[0], keys[99]]).toEqual([100, 't000', 't099']);
  });

  test('a commit token waits until applied and the answer names its tables', async () => {
    const node = fakeNode({ trades: 40n, quotes: 17n, other: 5n });
    const read = node.read({}, { 'x-walship-min-txn': 'trades=42, quotes=17' });
    expect(await stateOf(read)).toBe('pending');
    expect(node.state.behind).toEqual([['trades']]);
    node.tables.apply('trades', 43n);
    expect(await read).toEqual({
      'x-walship-applied-txn': 'quotes=17,trades=43',
      'x-walship-staleness-ms': 'unknown',
    });
  });

  test('min_txn and the header both count', async () => {
    const node = fakeNode({ a: 1n, b: 1n });
    const read = node.read({ min_txn: 'a=2' }, { 'x-walship-min-txn': 'b=2' });
    node.tables.apply('a', 2n);
    expect(await stateOf(read)).toBe('pending');
    node.tables.apply('b', 2n);
    expect((await read)['x-walship-applied-txn']).toBe('a=2,b=2');
    // An empty value (the primary's header of an empty write) asks for nothing.
    expect(await stateOf(node.read({ min_txn: '' }, { 'x-walship-min-txn': ' ' }))).toBe('resolved');
  });

  test.each([
    [{}, {}, 1_000],
    [{ wait_ms: '50' }, {}, 50],
    [{}, { 'x-walship-wait-ms': '70' }, 70],
    [{ wait_ms: '5000' }, {}, 1_000],
  ])('waits min(waitMaxMs, wait_ms): %j %j → %d ms', async (params, headers, waitedMs) => {
    const node = fakeNode({});
    const read = node.read({ ...params, min_txn: 't=1' }, headers);
    await node.clock.advance(waitedMs - 1);
    expect(await stateOf(read)).toBe('pending');
    await node.clock.advance(1);
    expect(await failure(read)).toMatchObject({ code: 'MIN_TXN_TIMEOUT', details: { waitedMs } });
    expect(node.waiters.size).toBe(0);
  });

  test.each([
    [{ max_staleness_ms: '-1' }, {}, 'INVALID_ARGUMENT', /max_staleness_ms must be a non-negative integer/],
    [{ max_staleness_ms: '1.5' }, {}, 'INVALID_ARGUMENT', /max_staleness_ms/],
    [{ max_staleness_ms: '' }, {}, 'INVALID_ARGUMENT', /max_staleness_ms/],
    [{}, { 'x-walship-max-staleness-ms': 'soon' }, 'INVALID_ARGUMENT', /x-walship-max-staleness-ms/],
    [{ wait_ms: '1e3' }, {}, 'INVALID_ARGUMENT', /wait_ms/],
    [{ wait_ms: '1'.repeat(16) }, {}, 'INVALID_ARGUMENT', /at most 15 digits/],
    [{ min_txn: 'trades=0' }, {}, 'INVALID_COMMIT_TOKEN', /txn "0"/],
    [{}, { 'x-walship-min-txn': 'trades' }, 'INVALID_COMMIT_TOKEN', /not key=txn/],
  ])('refuses %j %j before waiting', async (params, headers, code, message) => {
    const node = fakeNode({});
    const error = await failure(node.read({ min_txn: 'x=1', ...params }, headers));
    expect([error.code, error.kind]).toEqual([code, 'invalid']);
    expect(error.message).toMatch(message);
    expect([node.waiters.size, node.state.behind, node.state.refreshes]).toEqual([0, [], 0]);
  });

  test('fresh enough: no refresh; the stricter of parameter and header counts', async () => {
    const node = fakeNode({ t: 1n });
    node.state.stalenessMs = 300;
    expect((await node.read({ max_staleness_ms: '300' }))['x-walship-staleness-ms']).toBe('300');
    expect(node.state.refreshes).toBe(0);
    node.state.refresh = async () => {};
    const error = await failure(
      node.read({ max_staleness_ms: '1000' }, { 'x-walship-max-staleness-ms': '299' }),
    );
    expect(error).toMatchObject({
      code: 'STALE_REPLICA',
      details: { stalenessMs: 300, maxStalenessMs: 299 },
    });
  });

  test('too stale: asks the store once, and serves when that confirms freshness', async () => {
    const node = fakeNode({ t: 1n });
    node.state.stalenessMs = 900;
    expect((await node.read({ max_staleness_ms: '500' }))['x-walship-staleness-ms']).toBe('0');
    expect(node.state.refreshes).toBe(1);
  });

  test('still too stale after asking: STALE_REPLICA saying how stale and what to do', async () => {
    const node = fakeNode({ t: 1n });
    node.state.stalenessMs = 900;
    node.state.refresh = async () => {};
    const error = await failure(node.read({ max_staleness_ms: '500' }));
    expect(error).toMatchObject({ code: 'STALE_REPLICA', kind: 'unavailable' });
    expect(error.message).toBe(
      'this replica last confirmed it was caught up with the object store 900 ms before this read arrived ' +
        '(max_staleness_ms=500); checking again could not confirm it within the bound (a table may be ' +
        'suspended or the store failing) — retry, read from another replica or the primary, ' +
        'or allow more staleness',
    );
    expect(node.state.refreshes).toBe(1);
  });

  test('never confirmed, and the store fails: STALE_REPLICA with the cause', async () => {
    const node = fakeNode({});
    const cause = new Error('store down');
    node.state.refresh = async () => {
      throw cause;
    };
    const error = await failure(node.read({ max_staleness_ms: '0' }));
    expect(error.code).toBe('STALE_REPLICA');
    expect(error.cause).toBe(cause);
    expect(error.message).toMatch(
      /^this replica has not yet confirmed it is caught up with the object store \(max_staleness_ms=0\); checking again failed: Error: store down/,
    );
  });

  test('a refresh that hangs is bounded by the wait budget and leaves no timer behind', async () => {
    const node = fakeNode({});
    node.state.refresh = () => new Promise<void>(() => {});
    const read = node.read({ max_staleness_ms: '10', wait_ms: '200' });
    await node.clock.advance(199);
    expect(await stateOf(read)).toBe('pending');
    await node.clock.advance(1);
    expect((await failure(read)).message).toMatch(/checking again did not finish within 200 ms/);
    expect(node.clock.pendingSleeps).toBe(0);
  });

  test('the token wait and the refresh share one budget; wait_ms=0 never refreshes', async () => {
    const node = fakeNode({ t: 1n });
    node.state.refresh = () => new Promise<void>(() => {});
    const read = node.read({ min_txn: 't=2', max_staleness_ms: '10', wait_ms: '100' });
    await node.clock.advance(60);
    node.tables.apply('t', 2n);
    await flush();
    await node.clock.advance(40);
    expect((await failure(read)).message).toMatch(/within 40 ms/);

    const noWait = await failure(node.read({ max_staleness_ms: '10', wait_ms: '0' }));
    expect(noWait.message).toMatch(/no wait time was left to check again/);
    expect(node.state.refreshes).toBe(1);
  });

  test('concurrent stale reads share one refresh', async () => {
    const node = fakeNode({});
    let finish = () => {};
    node.state.refresh = () =>
      new Promise<void>((resolve) => {
        finish = () => {
          node.state.stalenessMs = 0;
          resolve();
        };
      });
    const reads = [1, 2, 3].map(() => node.read({ max_staleness_ms: '5' }));
    await flush();
    finish();
    await Promise.all(reads);
    expect(node.state.refreshes).toBe(1);
  });

  test('a client that goes away aborts either wait and leaves no listener or timer', async () => {
    const node = fakeNode({});
    const waiting = new AbortController();
    const read = node.read({ min_txn: 't=1' }, {}, waiting.signal);
    await flush();
    waiting.abort();
    expect(await failure(read)).toMatchObject({ code: 'QUERY_ABORTED', kind: 'closed' });

    node.state.refresh = () => new Promise<void>(() => {});
    const refreshing = new AbortController();
    const stale = node.read({ max_staleness_ms: '1' }, {}, refreshing.signal);
    await flush();
    expect(await stateOf(stale)).toBe('pending');
    refreshing.abort();
    expect(await failure(stale)).toMatchObject({ code: 'QUERY_ABORTED' });
    expect(getEventListeners(waiting.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(refreshing.signal, 'abort')).toHaveLength(0);
    expect([node.waiters.size, node.clock.pendingSleeps]).toEqual([0, 0]);
  });
});

describe('with the read endpoints', () => {
  test('a token wait answers 504 when it times out, and 200 with what it reflects once applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-consistency-'));
    const file = join(dir, 'node.db');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE trades (qty INTEGER)');
    db.close();
    const pool = await QueryPool.start({ databaseFile: file, workers: 1 });
    const waiters = new AppliedWaiters({ clock: systemClock });
    const tables = appliedTables(waiters, { trades: 1n });
    // Once set, the txn arrives as soon as a read starts waiting for it (as a prompt poll would).
    let arriveWhenAsked = false;
    const handler = createQueryHttpHandler(pool, {
      consistency: createReadConsistency({
        waiters,
        applied: tables.applied,
        appliedAll: tables.appliedAll,
        stalenessMs: () => 25,
        refresh: async () => {},
        onBehind: () => {
          if (arriveWhenAsked) setImmediate(() => tables.apply('trades', 2n));
        },
        // Txn 2 here was written at epoch 2: the txn 2 that epoch 1 answered never reached the store.
        txnIsOfEpoch: (_key, txn, epoch) => (txn === 2n ? epoch === 2n : undefined),
        waitMaxMs: 100,
        clock: systemClock,
      }),
    });
    const server = createServer((req, res) => void handler.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const url = `${base}/exec?${new URLSearchParams({ query: 'SELECT count(*) FROM trades', nm: 'true' })}`;
      const timedOut = await fetch(url, { headers: { 'x-walship-min-txn': 'trades=2' } });
      expect(timedOut.status).toBe(504);
      expect(((await timedOut.json()) as { error: string }).error).toMatch(
        /^waited \d+ ms for trades txn 2 but this replica has applied txn 1/,
      );

      arriveWhenAsked = true;
      const res = await fetch(url, { headers: { 'x-walship-min-txn': 'trades=2' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-walship-applied-txn')).toBe('trades=2');
      expect(res.headers.get('x-walship-staleness-ms')).toBe('25');
      expect(await res.text()).toBe('{"dataset":[[0]],"count":1}');

      expect((await fetch(url, { headers: { 'x-walship-min-txn': 'trades=2@2' } })).status).toBe(200);
      const lost = await fetch(url, { headers: { 'x-walship-min-txn': 'trades=2@1' } });
      expect(lost.status).toBe(409);
      expect(((await lost.json()) as { error: string }).error).toMatch(
        /^trades txn 2 of epoch 1 never reached the cluster: a newer primary took over/,
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
