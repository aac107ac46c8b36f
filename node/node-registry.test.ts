import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type Clock, StoreUnavailableError, seededRandom, systemClock } from '../core/index.js';
import {
  encodeNodeRegistration,
  listNodeRegistrations,
  type NodeFacts,
  type NodeRegistrationRecord,
  parseNodeRegistration,
} from '../layout/index.js';
import { MemoryStore, type ObjectStore, type PutOptions } from '../objectstore/index.js';
import { testNodeSettings } from '../tests/helpers/test-node.js';
import {
  NodeRegistration,
  REGISTRATION_STOP_WAIT_MS,
  REGISTRATION_UNCHANGED_REWRITE_MS,
} from './node-registry.js';
import { WalshipNode } from './walship-node.js';

const silent = pino({ level: 'silent' });

function record(overrides: Partial<NodeRegistrationRecord> = {}): NodeRegistrationRecord {
  return {
    version: 1,
    nodeId: 'node-a',
    url: 'http://127.0.0.1:9000',
    role: 'replica',
    epoch: null,
    clusterId: 'c-1',
    tables: { trades: '42', '7': '3' },
    tableCount: 2,
    startedAt: '2024-01-01T00:00:00.000Z',
    at: '2024-01-01T00:00:10.000Z',
    ...overrides,
  };
}

/** A wall clock a test sets; the rest is the system's. */
function fixedWallClock(wallMs: number): Clock & { wallMs(): number } {
  return { ...systemClock, wallMs: () => wallMs };
}

/** Delegates to `inner`; puts wait for `release()` while held, and fail while `failing` says so. */
class ControlledStore implements ObjectStore {
  readonly description = 'controlled';
  readonly inner = new MemoryStore();
  failing = 0;
  putsStarted = 0;
  #held: { promise: Promise<void>; release: () => void } | undefined;

  hold(): void {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#held = { promise, release };
  }

  release(): void {
    this.#held?.release();
    this.#held = undefined;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions) {
    this.putsStarted++;
    await this.#held?.promise;
    if (this.failing > 0) {
      this.failing--;
      throw new StoreUnavailableError('the test store refuses this put');
    }
    return this.inner.put(key, body, options);
  }
  get: ObjectStore['get'] = (key, options) => this.inner.get(key, options);
  head: ObjectStore['head'] = (key) => this.inner.head(key);
  list: ObjectStore['list'] = (prefix, options) => this.inner.list(prefix, options);
  delete: ObjectStore['delete'] = (key) => this.inner.delete(key);
  deleteMany: ObjectStore['deleteMany'] = (keys) => this.inner.deleteMany(keys);
  close: ObjectStore['close'] = () => this.inner.close();
}

async function readRecord(store: ObjectStore, nodeId: string): Promise<NodeRegistrationRecord | null> {
  const key = `nodes/${nodeId}.json`;
  const result = await store.get(key);
  return result === null || result.status !== 'ok' ? null : parseNodeRegistration(key, result.body);
}

describe('the node registration record', () => {
  it('round-trips, whatever order the tables come in', () => {
    const original = record();
    expect(parseNodeRegistration('nodes/node-a.json', encodeNodeRegistration(original))).toEqual(original);
  });

  it.each([
    ['a tampered txn', (text: string) => text.replace('"42"', '"43"'), 'fails its checksum'],
    ['another version', (text: string) => text.replace('"version":1', '"version":2'), 'version 2'],
    ['not JSON', (text: string) => text.slice(0, 20), 'is not JSON'],
    ['a bad epoch', (text: string) => text.replace('"epoch":null', '"epoch":"x"'), 'bad epoch'],
  ])('refuses %s with NODE_REGISTRATION_CORRUPT', (_, mangle, problem) => {
    const text = new TextDecoder().decode(encodeNodeRegistration(record()));
    const bytes = new TextEncoder().encode(mangle(text));
    expect(() => parseNodeRegistration('nodes/node-a.json', bytes)).toThrow(
      expect.objectContaining({
        code: 'NODE_REGISTRATION_CORRUPT',
        kind: 'data',
        message: expect.stringContaining(problem),
      }),
    );
  });

  it('refuses a record that names another node than its key', () => {
    const bytes = encodeNodeRegistration(record({ nodeId: 'node-b' }));
    expect(() => parseNodeRegistration('nodes/node-a.json', bytes)).toThrow(/names another node/);
  });
});

describe('listNodeRegistrations', () => {
  it('lists readable registrations and reports the others without throwing', async () => {
    const store = new MemoryStore();
    await store.put('nodes/node-a.json', encodeNodeRegistration(record()));
    await store.put(
      'nodes/node-b.json',
      encodeNodeRegistration(record({ nodeId: 'node-b', role: 'primary', epoch: '3' })),
    );
    await store.put('nodes/node-c.json', new TextEncoder().encode('{"version":1,'));
    await store.put('nodes/deeper/node-d.json', encodeNodeRegistration(record({ nodeId: 'node-d' })));
    await store.put('nodes/bad id!.json', encodeNodeRegistration(record()));

    const listing = await listNodeRegistrations(store);

    expect(listing.nodes.map((n) => [n.key, n.record.role, n.record.epoch])).toEqual([
      ['nodes/node-a.json', 'replica', null],
      ['nodes/node-b.json', 'primary', '3'],
    ]);
    expect(listing.unreadable.map((u) => u.key).sort()).toEqual([
      'nodes/bad id!.json',
      'nodes/deeper/node-d.json',
      'nodes/node-c.json',
    ]);
    expect(listing.unreadable.find((u) => u.key === 'nodes/node-c.json')?.problem).toMatch(/is not JSON/);
    expect(listing.truncated).toBe(false);
  });

  it('throws when the store cannot be listed (the caller says the store is unreachable)', async () => {
    const store = new MemoryStore();
    await store.close();
    await expect(listNodeRegistrations(store)).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('NodeRegistration', () => {
  const facts = (overrides: Partial<NodeFacts> = {}): NodeFacts => ({
    nodeId: 'node-a',
    url: 'http://127.0.0.1:9000',
    role: 'primary',
    epoch: '2',
    clusterId: 'c-1',
    tables: { trades: '10' },
    ...overrides,
  });

  it('writes on start and on every request, with the facts of that moment', async () => {
    const store = new ControlledStore();
    let now = facts();
    const registration = new NodeRegistration({
      store,
      clock: fixedWallClock(Date.UTC(2024, 0, 1)),
      log: silent,
      intervalMs: 3_600_000,
      facts: () => now,
    });
    registration.start();
    await registration.flush();
    expect(await readRecord(store, 'node-a')).toMatchObject({
      role: 'primary',
      epoch: '2',
      tables: { trades: '10' },
      tableCount: 1,
      at: '2024-01-01T00:00:00.000Z',
    });

    now = facts({ role: 'replica', epoch: null, tables: { trades: '12', quotes: '1' } });
    registration.writeNow();
    await registration.flush();
    expect(await readRecord(store, 'node-a')).toMatchObject({
      role: 'replica',
      epoch: null,
      tables: { trades: '12', quotes: '1' },
      tableCount: 2,
    });
    expect(registration.writes).toBe(2);
    await registration.stop();
  });

  it('logs a failed write, never throws, and writes at the next request', async () => {
    const store = new ControlledStore();
    store.failing = 1;
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const registration = new NodeRegistration({
      store,
      clock: systemClock,
      log,
      intervalMs: 3_600_000,
      facts: () => facts(),
    });
    registration.start();
    await registration.flush();
    expect(registration.lastError).toMatch(/refuses this put/);
    expect(await readRecord(store, 'node-a')).toBeNull();
    expect(warnings.join('')).toMatch(/could not write this node registration/);

    registration.writeNow();
    await registration.flush();
    expect(registration.lastError).toBeNull();
    expect((await readRecord(store, 'node-a'))?.role).toBe('primary');
    await registration.stop();
  });

  it('rewrites the record every interval while its facts change', async () => {
    const store = new ControlledStore();
    let txn = 10;
    const registration = new NodeRegistration({
      store,
      clock: systemClock,
      log: silent,
      intervalMs: 10,
      facts: () => facts({ tables: { trades: String(txn++) } }),
    });
    registration.start();
    await expect.poll(() => registration.writes, { timeout: 5_000 }).toBeGreaterThanOrEqual(3);
    await registration.stop();
  });

  it('an unchanged record is rewritten only every REGISTRATION_UNCHANGED_REWRITE_MS (an idle node), a changed one at the next interval', async () => {
    const store = new ControlledStore();
    let offsetMs = 0;
    const clock = { ...systemClock, monotonicMs: () => systemClock.monotonicMs() + offsetMs };
    let now = facts();
    const registration = new NodeRegistration({ store, clock, log: silent, intervalMs: 5, facts: () => now });
    registration.start();
    await registration.flush();
    await sleep(100); // about 20 intervals
    expect(registration.writes).toBe(1);
    offsetMs = REGISTRATION_UNCHANGED_REWRITE_MS;
    await expect.poll(() => registration.writes, { timeout: 5_000 }).toBe(2);
    now = facts({ tables: { trades: '11' } });
    await expect.poll(() => registration.writes, { timeout: 5_000 }).toBe(3);
    expect((await readRecord(store, 'node-a'))?.tables).toEqual({ trades: '11' });
    await sleep(100);
    expect(registration.writes).toBe(3);
    await registration.stop();
  });

  it('stop() waits for the write in flight, and nothing is written after it', async () => {
    const store = new ControlledStore();
    store.hold();
    const registration = new NodeRegistration({
      store,
      clock: systemClock,
      log: silent,
      intervalMs: 3_600_000,
      facts: () => facts(),
    });
    registration.start();
    await expect.poll(() => store.putsStarted).toBe(1);
    let stopped = false;
    const stopping = registration.stop().then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    store.release();
    await stopping;
    expect(await readRecord(store, 'node-a')).not.toBeNull();

    registration.writeNow();
    await registration.flush();
    expect(store.putsStarted).toBe(1);
  });
});

describe('NodeRegistration.stop with a stuck write', () => {
  it('gives up after REGISTRATION_STOP_WAIT_MS so a shutdown is never held by it', async () => {
    const store = new ControlledStore();
    store.hold();
    const waits: number[] = [];
    // A clock whose sleeps end at once: "the bound has passed".
    const clock: Clock = {
      ...systemClock,
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    };
    const registration = new NodeRegistration({
      store,
      clock,
      log: silent,
      intervalMs: 3_600_000,
      facts: () => ({
        nodeId: 'node-a',
        url: 'http://x:1',
        role: 'replica',
        epoch: null,
        clusterId: null,
        tables: {},
      }),
    });
    registration.start();
    await expect.poll(() => store.putsStarted).toBe(1);
    await registration.stop();
    expect(waits).toEqual([REGISTRATION_STOP_WAIT_MS]);
    expect(await readRecord(store, 'node-a')).toBeNull();
    store.release();
    await registration.flush();
  });
});

describe('WalshipNode registration', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('registers at start and rewrites the record when the role changes', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-registry-'));
    const store = new MemoryStore();
    const settings = { ...testNodeSettings(store, path.join(dir, 'a')), registerIntervalMs: 3_600_000 };
    const node = await WalshipNode.start('primary', settings, {
      clock: systemClock,
      random: seededRandom(1),
      log: silent,
    });
    try {
      const nodeId = node.nodeId!;
      await expect.poll(async () => (await readRecord(store, nodeId))?.role).toBe('primary');
      const asPrimary = await readRecord(store, nodeId);
      expect(asPrimary).toMatchObject({ epoch: '1', url: `http://127.0.0.1:${node.httpPort}` });
      expect(asPrimary?.clusterId).toMatch(/./);

      await node.demote();
      await expect.poll(async () => (await readRecord(store, nodeId))?.role).toBe('replica');
      expect(await readRecord(store, nodeId)).toMatchObject({ epoch: null, startedAt: asPrimary?.startedAt });
    } finally {
      await node.close();
    }
    // Closed: the registration is stopped, the record stays (a stopped node shows its age).
    const listing = await listNodeRegistrations(store);
    expect(listing.nodes.map((n) => n.record.role)).toEqual(['replica']);
  });

  it('does not register when the interval is 0', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-registry-'));
    const store = new MemoryStore();
    const settings = { ...testNodeSettings(store, path.join(dir, 'a')), registerIntervalMs: 0 };
    const node = await WalshipNode.start('primary', settings, {
      clock: systemClock,
      random: seededRandom(1),
      log: silent,
    });
    await node.close();
    expect((await store.list('nodes/')).objects).toEqual([]);
  });
});
