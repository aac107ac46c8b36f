import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ListOptions,
  type ListPage,
  MemoryStore,
  type ObjectStore,
  withFaults,
} from '../objectstore/index.js';
import { compareKeys } from '../objectstore/keys.js';
import { asTableKey, decodeTableKey, tableKey } from '../table/index.js';
import { encodeHead, parseHeadHint } from './head-record.js';
import { segmentKey, segmentPrefix } from './keys.js';
import { DISCOVERED_TABLES_MAX, discoverTableKeys, segmentsAfter } from './store-scan.js';

const bytes = (text: string) => new TextEncoder().encode(text);

/** A store that counts LIST requests (and forwards everything to `inner`). */
function countingLists(
  inner: ObjectStore,
): ObjectStore & { lists: { prefix: string; options: ListOptions }[] } {
  const lists: { prefix: string; options: ListOptions }[] = [];
  return {
    description: inner.description,
    lists,
    put: (key, body, options) => inner.put(key, body, options),
    get: (key, options) => inner.get(key, options),
    head: (key) => inner.head(key),
    list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
      lists.push({ prefix, options });
      return inner.list(prefix, options);
    },
    delete: (key) => inner.delete(key),
    deleteMany: (keys) => inner.deleteMany(keys),
    close: () => inner.close(),
  };
}

/** Table keys in the order a LIST of `tables/` meets them: by the UTF-8 bytes of `<key>/`. */
function listOrder(keys: Iterable<string>): string[] {
  return [...new Set(keys)].sort((a, b) => compareKeys(`${a}/`, `${b}/`));
}

async function putAll(store: ObjectStore, keys: readonly string[]): Promise<void> {
  for (const key of keys) await store.put(key, bytes(key));
}

describe('discoverTableKeys', () => {
  it('finds every table key, including keys that share prefixes, in listing order, with one LIST', async () => {
    // Names whose keys share the prefix `a` and sort on both sides of `a/` (`%`, `-`, `.` sort before `/`).
    const names = [
      'a',
      'a.b',
      'a-b',
      'ab',
      'a.',
      'a0',
      'a_',
      'A_B',
      'a%',
      'é',
      'ü.x',
      '日本',
      'z',
      '_x',
      '0',
    ];
    const expected = listOrder(names.map(tableKey));
    expect(expected).toContain('a%2E'); // the escaped trailing dot
    const inner = new MemoryStore();
    for (const key of expected) {
      // Several objects per table, segments and others, so the skip has something to skip.
      await putAll(inner, [
        segmentKey(asTableKey(key), 1n),
        segmentKey(asTableKey(key), 2n),
        segmentKey(asTableKey(key), 10n),
        `tables/${key}/staged/x`,
      ]);
    }
    await putAll(inner, ['cluster.json', 'head.json', 'snapshots/1/manifest.json', 'tablesx/a/wal/y']);
    const store = countingLists(inner);
    const signal = new AbortController().signal;
    const { keys, ignored } = await discoverTableKeys(store, signal);
    expect(keys).toEqual(expected);
    expect(ignored).toEqual([]);
    expect(store.lists).toEqual([{ prefix: 'tables/', options: { delimiter: '/', signal } }]);
  });

  it('costs one LIST per 1000 tables, following the pages', async () => {
    const inner = new MemoryStore();
    const names = Array.from({ length: 2_500 }, (_, i) => `t${i}`);
    for (const name of names)
      await putAll(inner, [segmentKey(tableKey(name), 1n), segmentKey(tableKey(name), 2n)]);
    const store = countingLists(inner);
    const order = listOrder(names.map(tableKey));
    expect((await discoverTableKeys(store)).keys).toEqual(order);
    // Each page resumes after the last prefix of the one before.
    expect(store.lists.map((l) => l.options.token)).toEqual([
      undefined,
      `tables/${order[999]}/`,
      `tables/${order[1999]}/`,
    ]);
  });

  it('objects directly under tables/ are no tables: they are ignored and reported', async () => {
    const store = new MemoryStore();
    await putAll(store, [
      'tables/a',
      'tables/a.json',
      segmentKey(tableKey('a'), 1n),
      segmentKey(tableKey('b'), 1n),
    ]);
    expect(await discoverTableKeys(store)).toEqual({ keys: ['a', 'b'], ignored: ['a', 'a.json'] });
  });

  it('a store that does not roll keys up into prefixes still yields each table once', async () => {
    const inner = new MemoryStore();
    const expected = listOrder(['a', 'a-b', 'b']);
    for (const key of expected)
      await putAll(inner, [
        segmentKey(asTableKey(key), 1n),
        segmentKey(asTableKey(key), 2n),
        `tables/${key}/x`,
      ]);
    const flat: ObjectStore = {
      ...countingLists(inner),
      list: (prefix, { delimiter: _, ...rest } = {}) => inner.list(prefix, { ...rest, limit: 2 }),
    };
    expect(await discoverTableKeys(flat)).toEqual({ keys: expected, ignored: [] });
  });

  it('skips keys that tableKey could not have produced and reports them', async () => {
    const store = new MemoryStore();
    const stray = ['A', 'a%2e', '%61', 'a..b', 'with space', 'x%ZZ', '.hidden', 'a%2F%'];
    for (const key of stray) await store.put(`tables/${key}/wal/00000000000000000001.seg`, bytes(key));
    await putAll(store, [segmentKey(tableKey('good'), 1n), segmentKey(tableKey('a'), 1n)]);
    const { keys, ignored } = await discoverTableKeys(store);
    expect(keys).toEqual(['a', 'good']);
    expect([...ignored].sort(compareKeys)).toEqual([...stray].sort(compareKeys));
    // Every ignored key really is one decodeTableKey refuses or does not give back.
    for (const key of ignored) {
      let canonical = false;
      try {
        canonical = tableKey(decodeTableKey(key)) === key;
      } catch {
        canonical = false;
      }
      expect(canonical).toBe(false);
    }
  });

  it('an empty store or one without tables/ costs one LIST and finds nothing', async () => {
    const store = countingLists(new MemoryStore());
    await store.put('cluster.json', bytes('{}'));
    expect(await discoverTableKeys(store)).toEqual({ keys: [], ignored: [] });
    expect(store.lists.length).toBe(1);
  });

  it('works when every LIST page is short (a store that pages honestly)', async () => {
    const inner = new MemoryStore();
    const expected = listOrder(['a', 'a-b', 'a.b', 'b']);
    expect(expected).toEqual(['a-b', 'a.b', 'a', 'b']);
    for (const key of expected)
      await putAll(inner, [segmentKey(asTableKey(key), 1n), segmentKey(asTableKey(key), 2n)]);
    const store = withFaults(inner, [{ fault: { type: 'truncate-list', keys: 1 }, operations: ['list'] }]);
    expect((await discoverTableKeys(store)).keys).toEqual(expected);
  });

  it('property: finds exactly the table keys of any set of table names', async () => {
    const nameChar = fc.constantFrom('a', 'b', '.', '-', '_', '0', 'é', 'Z', ' ', '%', '日');
    const name = fc.string({ unit: nameChar, minLength: 1, maxLength: 5 });
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(name, { maxLength: 12 }), async (tableNames) => {
        const store = new MemoryStore();
        const keys = listOrder(tableNames.map(tableKey));
        for (const key of keys) await putAll(store, [segmentKey(asTableKey(key), 1n), `tables/${key}/other`]);
        expect((await discoverTableKeys(store)).keys).toEqual(keys);
      }),
      { numRuns: 150 },
    );
  });

  it('is bounded', () => {
    expect(DISCOVERED_TABLES_MAX).toBeGreaterThan(0);
    expect(Number.isSafeInteger(DISCOVERED_TABLES_MAX)).toBe(true);
  });
});

describe('segmentsAfter', () => {
  it('lists the segment keys after the watermark in txn order, at most limit, ignoring other objects', async () => {
    const inner = new MemoryStore();
    const txns = [1n, 3n, 7n, 8n, 12n, 100n];
    await putAll(
      inner,
      txns.map((txn) => segmentKey(tableKey('t'), txn)),
    );
    await putAll(inner, [
      `${segmentPrefix(tableKey('t'))}00000000000000000009.seg.tmp`,
      `${segmentPrefix(tableKey('t'))}9.seg`,
      `${segmentPrefix(tableKey('t'))}0000000000000000000x.seg`,
      `${segmentPrefix(tableKey('t'))}sub/00000000000000000010.seg`,
      segmentKey(tableKey('t0'), 5n),
      segmentKey(tableKey('u'), 5n),
      'tables/t/staged/00000000000000000011.seg',
    ]);
    const store = countingLists(inner);
    expect(await segmentsAfter(store, tableKey('t'), 0n, 100)).toEqual(
      txns.map((txn) => ({ key: segmentKey(tableKey('t'), txn), txnFirst: txn })),
    );
    expect(await segmentsAfter(store, tableKey('t'), 3n, 100)).toEqual(
      [7n, 8n, 12n, 100n].map((txn) => ({ key: segmentKey(tableKey('t'), txn), txnFirst: txn })),
    );
    // A watermark inside a segment (txn 5 of one starting at 3) lists what starts after it.
    expect((await segmentsAfter(store, tableKey('t'), 5n, 100)).map((s) => s.txnFirst)).toEqual([
      7n,
      8n,
      12n,
      100n,
    ]);
    expect((await segmentsAfter(store, tableKey('t'), 3n, 2)).map((s) => s.txnFirst)).toEqual([7n, 8n]);
    expect(await segmentsAfter(store, tableKey('t'), 100n, 100)).toEqual([]);
    expect(await segmentsAfter(store, tableKey('missing'), 0n, 100)).toEqual([]);
    expect(store.lists.length).toBe(6); // one LIST each
    expect(store.lists.map((l) => l.prefix)).toEqual([
      ...Array.from({ length: 5 }, () => segmentPrefix(tableKey('t'))),
      segmentPrefix(tableKey('missing')),
    ]);
  });
});

describe('parseHeadHint', () => {
  it('reads back what encodeHead writes (the one head.json codec), leaving out tables with nothing uploaded', () => {
    const encoded = encodeHead({
      epoch: 5n,
      nodeId: 'p1',
      tables: new Map([
        ['Trades', 42n],
        ['empty', 0n],
        ['é', 18446744073709551615n],
      ]),
      at: '2025-01-01T00:00:00.000Z',
    });
    const hint = parseHeadHint(encoded);
    expect(hint?.epoch).toBe(5n);
    expect([...(hint?.tables ?? [])]).toEqual([
      ['trades', { name: 'Trades', txn: 42n }],
      [tableKey('é'), { name: 'é', txn: 18446744073709551615n }],
    ]);
    expect(new TextDecoder().decode(encoded).endsWith('}\n')).toBe(true);
  });

  it('reads what the uploader writes', () => {
    const hint = parseHeadHint(
      bytes(
        `${JSON.stringify({
          epoch: '3',
          nodeId: 'p1',
          tables: { Trades: '42', 'a.b': '7', é: '18446744073709551615' },
          at: '2025-01-01T00:00:00.000Z',
        })}\n`,
      ),
    );
    expect(hint).toBeDefined();
    expect(hint!.epoch).toBe(3n);
    expect([...hint!.tables]).toEqual([
      ['trades', { name: 'Trades', txn: 42n }],
      ['a.b', { name: 'a.b', txn: 7n }],
      [tableKey('é'), { name: 'é', txn: 18446744073709551615n }],
    ]);
  });

  it.each([
    ['not JSON', '{"tables":'],
    ['JSON null', 'null'],
    ['a number', '42'],
    ['a string', '"tables"'],
    ['no tables', '{"epoch":"1"}'],
    ['tables null', '{"epoch":"1","tables":null}'],
    ['tables a string', '{"tables":"x"}'],
    ['invalid UTF-8', '\u00ff'],
  ])('malformed (%s) is undefined', (_what, text) => {
    const input = text === '\u00ff' ? Uint8Array.of(0xff, 0xfe, 0x7b) : bytes(text);
    expect(parseHeadHint(input)).toBeUndefined();
  });

  it('skips the entries it cannot trust and keeps the rest', () => {
    const hint = parseHeadHint(
      bytes(
        JSON.stringify({
          epoch: 7, // a number, not the decimal string the uploader writes
          tables: {
            good: '5',
            number: 5,
            negative: '-1',
            fraction: '1.5',
            hex: '0x10',
            tooLong: '123456789012345678901',
            empty: '',
            spaced: ' 5',
            nested: { txn: '5' },
            '': '9',
            lone: '\ud800',
            '\ud800': '3',
          },
        }),
      ),
    );
    expect(hint).toEqual({ epoch: null, tables: new Map([['good', { name: 'good', txn: 5n }]]) });
  });

  it('hostile names never pollute prototypes or escape the key encoding', () => {
    const hint = parseHeadHint(bytes('{"tables":{"__proto__":"1","constructor":"2","../x":"3","a/b":"4"}}'));
    expect(hint).toBeDefined();
    expect(({} as Record<string, unknown>).constructor).toBe(Object);
    for (const [key, { name }] of hint!.tables) {
      expect(key).toBe(tableKey(name));
      expect(key).toMatch(/^(?:[a-z0-9_.-]|%[0-9A-F]{2})+$/);
      expect(key).not.toContain('..');
    }
    expect([...hint!.tables.values()].map((t) => t.txn)).toEqual([1n, 2n, 3n, 4n]);
  });

  it('a deeply nested or huge document does not throw', () => {
    expect(parseHeadHint(bytes(`${'['.repeat(100_000)}${']'.repeat(100_000)}`))).toBeUndefined();
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`t${i}`, String(i)]));
    expect(parseHeadHint(bytes(JSON.stringify({ tables: many })))?.tables.size).toBe(10_000);
  });

  it('property: never throws; whatever it returns is keyed by tableKey with non-negative txns', () => {
    const check = (input: Uint8Array) => {
      const hint = parseHeadHint(input);
      if (hint === undefined) return;
      expect(hint.epoch === null || hint.epoch >= 0n).toBe(true);
      for (const [key, { name, txn }] of hint.tables) {
        expect(key).toBe(tableKey(name));
        expect(txn >= 0n && txn < 10n ** 20n).toBe(true);
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 500 });
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => check(bytes(JSON.stringify(value) ?? 'null'))),
      { numRuns: 500 },
    );
    const tables = fc.dictionary(
      fc.string({ maxLength: 8, unit: 'binary' }),
      fc.oneof(fc.bigInt({ min: -1n, max: 10n ** 21n }).map(String), fc.jsonValue({ maxDepth: 2 })),
    );
    fc.assert(
      fc.property(fc.record({ epoch: fc.jsonValue({ maxDepth: 1 }), tables }), (head) =>
        check(bytes(JSON.stringify(head))),
      ),
      { numRuns: 500 },
    );
  });
});
