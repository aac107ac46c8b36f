/**
 * Pins the FoundationDB semantics the fake promises (RFC-0003 "The fake"): MVCC read versions,
 * read-conflict ranges and 1020, snapshot reads, blind and atomic writes, the seeded 1021
 * injector, 1007 on the injected clock, the size limits, watches, and doTn's retry rules.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type Clock, seededRandom, systemClock } from '../../core/index.js';
import { FDB_ERROR_CODE, type FdbTransaction, fdbErrorCode } from '../fdb-api.js';
import { addLittleEndian, FakeFdb, FakeFdbError } from './fdb-fake.js';

const k = (name: string) => Buffer.from(name);
const v = (text: string) => Buffer.from(text);

function manualClock(): Clock & { advance(ms: number): void } {
  let nowMs = 0;
  return {
    wallMs: () => 1_700_000_000_000 + nowMs,
    monotonicMs: () => nowMs,
    sleep: () => Promise.resolve(),
    setTimer: (ms, callback, options) => systemClock.setTimer(ms, callback, options),
    advance(ms: number) {
      nowMs += ms;
    },
  };
}

/** A promise and its resolver, to hold one transaction open while another commits. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

async function codeOf(promise: Promise<unknown>): Promise<number | undefined> {
  try {
    await promise;
  } catch (error) {
    return fdbErrorCode(error);
  }
  throw new Error('expected the transaction to fail');
}

describe('FakeFdb MVCC and conflicts', () => {
  it('reads at the read version taken when the transaction started, plus its own writes', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    await db.doTn(async (tn) => tn.set(k('a'), v('old')));
    const held = gate();
    const seen: (string | undefined)[] = [];
    const reader = db.doTn(async (tn) => {
      await held.wait;
      seen.push((await tn.snapshot().get(k('a')))?.toString());
      tn.set(k('b'), v('mine'));
      seen.push((await tn.get(k('b')))?.toString());
    });
    await db.doTn(async (tn) => tn.set(k('a'), v('new')));
    held.open();
    await reader;
    expect(seen).toEqual(['old', 'mine']);
    expect(fdb.peek(k('a'))?.toString()).toBe('new');
  });

  it('fails a commit with 1020 when a key it read was written after its read version, and doTn retries', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    await db.doTn(async (tn) => tn.set(k('counter'), v('1')));
    const held = gate();
    let runs = 0;
    const writer = db.doTn(async (tn) => {
      runs++;
      const current = Number((await tn.get(k('counter')))?.toString());
      if (runs === 1) await held.wait;
      tn.set(k('counter'), v(String(current + 10)));
    });
    await db.doTn(async (tn) => tn.set(k('counter'), v('5')));
    held.open();
    await writer;
    expect(runs).toBe(2);
    expect(fdb.stats.conflicts).toBe(1);
    // The retry read the concurrent write: no lost update.
    expect(fdb.peek(k('counter'))?.toString()).toBe('15');
  });

  it('takes read-conflict ranges from range reads too (a phantom insert conflicts)', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const held = gate();
    const counts: number[] = [];
    const scanner = db.doTn(async (tn) => {
      counts.push((await tn.getRangeAll(k('m/'), k('m0'))).length);
      if (counts.length === 1) await held.wait;
      tn.set(k('summary'), v(String(counts.at(-1))));
    });
    await db.doTn(async (tn) => tn.set(k('m/new'), v('x')));
    held.open();
    await scanner;
    expect(counts).toEqual([0, 1]);
    expect(fdb.stats.conflicts).toBe(1);
  });

  it('does not conflict on snapshot reads, blind writes or atomic adds', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    await db.doTn(async (tn) => tn.set(k('watched'), v('0')));
    const held = gate();
    let runs = 0;
    const first = db.doTn(async (tn) => {
      runs++;
      await tn.snapshot().get(k('watched'));
      await tn.snapshot().getRangeAll(k('a'), k('z'));
      await held.wait;
      tn.set(k('blind'), v('first'));
      tn.add(k('hits'), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
    });
    await db.doTn(async (tn) => {
      tn.set(k('watched'), v('1'));
      tn.set(k('blind'), v('second'));
      tn.add(k('hits'), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
    });
    held.open();
    await first;
    expect(runs).toBe(1);
    expect(fdb.stats.conflicts).toBe(0);
    expect(fdb.peek(k('blind'))?.toString()).toBe('first');
    expect(fdb.peek(k('hits'))?.readBigUInt64LE()).toBe(2n);
  });

  it('always commits a read-only transaction, whatever changed since its read version', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const held = gate();
    let runs = 0;
    const reader = db.doTn(async (tn) => {
      runs++;
      await tn.get(k('x'));
      await held.wait;
    });
    await db.doTn(async (tn) => tn.set(k('x'), v('changed')));
    held.open();
    await reader;
    expect(runs).toBe(1);
  });

  it('adds little-endian with carries, as long as the operand', () => {
    expect([...addLittleEndian(Buffer.from([0xff, 0x01]), Buffer.from([0x01, 0x00, 0x00]))]).toEqual([
      0x00, 0x02, 0x00,
    ]);
    expect([...addLittleEndian(undefined, Buffer.from([5, 0]))]).toEqual([5, 0]);
    expect([...addLittleEndian(Buffer.from([0xff, 0xff]), Buffer.from([1, 0]))]).toEqual([0, 0]);
  });
});

describe('FakeFdb injected commit_unknown_result (1021)', () => {
  it('either applies the commit or not before throwing, and the same seed replays the same choices', async () => {
    const outcomes = async (seed: number) => {
      const fdb = new FakeFdb({ random: seededRandom(seed), commitUnknownRate: 1 });
      const db = fdb.open();
      const applied: boolean[] = [];
      for (let i = 0; i < 40; i++) {
        const code = await codeOf(db.doTn(async (tn) => tn.set(k(`key${i}`), v('x')), { retry_limit: 0 }));
        expect(code).toBe(FDB_ERROR_CODE.commitUnknownResult);
        applied.push(fdb.peek(k(`key${i}`)) !== undefined);
      }
      expect(applied.filter(Boolean).length).toBe(fdb.stats.unknownApplied);
      expect(applied.filter((x) => !x).length).toBe(fdb.stats.unknownNotApplied);
      return applied;
    };
    const first = await outcomes(7);
    expect(first).toContain(true);
    expect(first).toContain(false);
    expect(await outcomes(7)).toEqual(first);
  });

  it('makes doTn run a non-idempotent body again after an applied commit (why the store checks batchSeq)', async () => {
    const fdb = new FakeFdb({ random: seededRandom(11), commitUnknownRate: 0.4 });
    const db = fdb.open();
    const calls = 50;
    for (let i = 0; i < calls; i++)
      await db.doTn(async (tn) => {
        const value = await tn.get(k('n'));
        tn.set(k('n'), v(String(Number(value?.toString() ?? '0') + 1)));
      });
    expect(fdb.stats.unknownApplied).toBeGreaterThan(0);
    expect(Number(fdb.peek(k('n'))?.toString())).toBe(calls + fdb.stats.unknownApplied);
  });

  it('never injects into read-only transactions', async () => {
    const fdb = new FakeFdb({ random: seededRandom(3), commitUnknownRate: 1 });
    const db = fdb.open();
    for (let i = 0; i < 10; i++) await db.doTn(async (tn) => tn.get(k('x')), { retry_limit: 0 });
    expect(fdb.stats.unknownApplied + fdb.stats.unknownNotApplied).toBe(0);
  });
});

describe('FakeFdb limits', () => {
  it('fails a read with 1007 past 5 s of simulated time, and doTn retries with a fresh transaction', async () => {
    const clock = manualClock();
    const fdb = new FakeFdb({ clock });
    const db = fdb.open();
    let runs = 0;
    const result = await db.doTn(async (tn) => {
      runs++;
      await tn.get(k('a'));
      if (runs === 1) clock.advance(5_001);
      return (await tn.get(k('a'))) === undefined ? 'absent' : 'present';
    });
    expect(result).toBe('absent');
    expect(runs).toBe(2);
    expect(fdb.stats.tooOld).toBe(1);
  });

  it('fails a commit with 1007 when the transaction outlived 5 s, and not at exactly 5 s', async () => {
    const clock = manualClock();
    const fdb = new FakeFdb({ clock });
    const db = fdb.open();
    await db.doTn(
      async (tn) => {
        clock.advance(5_000);
        tn.set(k('on-time'), v('x'));
      },
      { retry_limit: 0 },
    );
    const code = await codeOf(
      db.doTn(
        async (tn) => {
          clock.advance(5_001);
          tn.set(k('late'), v('x'));
        },
        { retry_limit: 0 },
      ),
    );
    expect(code).toBe(FDB_ERROR_CODE.transactionTooOld);
    expect(fdb.peek(k('on-time'))).toBeDefined();
    expect(fdb.peek(k('late'))).toBeUndefined();
  });

  it('fails past 10 MB of writes with 2101, without retry and without applying anything', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const value = Buffer.alloc(99_000);
    const writeMany = (count: number, prefix: string) => async (tn: FdbTransaction) => {
      for (let i = 0; i < count; i++) tn.set(k(`${prefix}${i}`), value);
    };
    await db.doTn(writeMany(100, 'fits')); // 100 × (99 000 + key) < 10 000 000
    expect(fdb.keyCount()).toBe(100);
    const attemptsBefore = fdb.stats.attempts;
    expect(await codeOf(db.doTn(writeMany(102, 'over')))).toBe(FDB_ERROR_CODE.transactionTooLarge);
    expect(fdb.stats.attempts - attemptsBefore).toBe(1);
    expect(fdb.keyCount()).toBe(100);
  });

  it('fails keys over 10 kB (2102) and values over 100 kB (2103)', async () => {
    const db = new FakeFdb().open();
    expect(await codeOf(db.doTn(async (tn) => tn.set(Buffer.alloc(10_001), v('x'))))).toBe(
      FDB_ERROR_CODE.keyTooLarge,
    );
    expect(await codeOf(db.doTn(async (tn) => tn.set(k('big'), Buffer.alloc(100_001))))).toBe(
      FDB_ERROR_CODE.valueTooLarge,
    );
    await db.doTn(async (tn) => tn.set(Buffer.alloc(10_000), Buffer.alloc(100_000)));
  });

  it('fails the whole doTn with 1031 once its timeout option elapsed on the clock', async () => {
    const clock = manualClock();
    const fdb = new FakeFdb({ clock });
    const db = fdb.open();
    let runs = 0;
    const code = await codeOf(
      db.doTn(
        async (tn) => {
          runs++;
          clock.advance(600);
          await tn.get(k('a'));
          throw new FakeFdbError(FDB_ERROR_CODE.notCommitted, 'simulated conflict');
        },
        { timeout: 1_000 },
      ),
    );
    expect(code).toBe(FDB_ERROR_CODE.transactionTimedOut);
    expect(runs).toBe(2);
  });
});

describe('FakeFdb watches', () => {
  it('fires after a committed change of its key, not on other keys or before', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    await db.doTn(async (tn) => tn.set(k('w'), v('0')));
    const watch = await db.doTn(async (tn) => {
      await tn.get(k('w'));
      return tn.watch(k('w'));
    });
    let fired: boolean | null = null;
    void watch.promise.then((value) => {
      fired = value;
    });
    await db.doTn(async (tn) => tn.set(k('other'), v('1')));
    await nextTurn();
    expect(fired).toBeNull();
    await db.doTn(async (tn) => tn.add(k('w'), Buffer.from([1])));
    await nextTurn();
    expect(fired).toBe(true);
  });

  it('fires at once when the key changed between its read version and its commit (no lost wake-up)', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const held = gate();
    const watching = db.doTn(async (tn) => {
      const seen = await tn.get(k('w'));
      await held.wait;
      return { seen, watch: tn.watch(k('w')) };
    });
    await db.doTn(async (tn) => tn.set(k('w'), v('1')));
    held.open();
    const { seen, watch } = await watching;
    expect(seen).toBeUndefined();
    expect(await watch.promise).toBe(true);
  });

  it('resolves false when cancelled or when its transaction did not commit', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const cancelled = await db.doTn(async (tn) => tn.watch(k('w')));
    cancelled.cancel();
    expect(await cancelled.promise).toBe(false);
    const watches: Promise<boolean>[] = [];
    await expect(
      db.doTn(async (tn) => {
        watches.push(tn.watch(k('w')).promise);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await watches[0]).toBe(false);
  });

  it('rejects while setWatchFailure is set, active watches included', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    const active = await db.doTn(async (tn) => tn.watch(k('w')));
    fdb.setWatchFailure(1_009);
    await expect(active.promise).rejects.toMatchObject({ code: 1_009 });
    const later = await db.doTn(async (tn) => tn.watch(k('w')));
    await expect(later.promise).rejects.toMatchObject({ code: 1_009 });
  });

  it('cancels the watches of a closed handle; another handle still sees the data', async () => {
    const fdb = new FakeFdb();
    const first = fdb.open();
    await first.doTn(async (tn) => tn.set(k('kept'), v('yes')));
    const watch = await first.doTn(async (tn) => tn.watch(k('kept')));
    first.close();
    expect(await watch.promise).toBe(false);
    await expect(first.doTn(async (tn) => tn.get(k('kept')))).rejects.toThrow('closed');
    const second = fdb.open();
    expect((await second.doTn(async (tn) => tn.get(k('kept'))))?.toString()).toBe('yes');
  });
});

describe('FakeFdb doTn retry rules', () => {
  it('aborts on a non-FDB error without retry and without applying the writes', async () => {
    const fdb = new FakeFdb();
    const db = fdb.open();
    let runs = 0;
    await expect(
      db.doTn(async (tn) => {
        runs++;
        tn.set(k('a'), v('x'));
        throw new Error('fenced');
      }),
    ).rejects.toThrow('fenced');
    expect(runs).toBe(1);
    expect(fdb.peek(k('a'))).toBeUndefined();
  });

  it('retries 1020, 1021 and 1007 thrown from the body, not other FDB codes', async () => {
    const db = new FakeFdb().open();
    for (const code of [1020, 1021, 1007]) {
      let runs = 0;
      await db.doTn(async () => {
        runs++;
        if (runs === 1) throw new FakeFdbError(code, 'retry me');
      });
      expect(runs).toBe(2);
    }
    let runs = 0;
    expect(
      await codeOf(
        db.doTn(async () => {
          runs++;
          throw new FakeFdbError(2101, 'not retryable');
        }),
      ),
    ).toBe(2101);
    expect(runs).toBe(1);
  });
});
