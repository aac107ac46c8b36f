/**
 * ClusterStatusSource (`GET /status/cluster`) on a fake clock over registrations in a real store
 * (filesystem and S3 on Ceph RGW): every registered node with what its `/status` says, this node
 * from its own status, a peer that does not answer as unreachable with its last answer kept, and
 * at most one LIST of `nodes/` per refresh interval however often the view is asked for. Peers'
 * `/status` is read by a function the test gives (counted); the real HTTP reads, and the page, are
 * tested with real nodes in tests/status-page.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../core/index.js';
import {
  encodeNodeRegistration,
  NODE_REGISTRATION_VERSION,
  NODES_PREFIX,
  type NodeRegistrationRecord,
  nodeRegistrationKey,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { createTestBucket, deleteTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { storesUnderTest } from '../tests/helpers/store-under-test.js';
import { CLUSTER_REFRESH_MS, ClusterStatusSource, summariseStatus } from './cluster-status.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-cluster-status-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'cluster-status');
});
afterAll(async () => {
  if (s3.env !== null && bucket !== '') await deleteTestBucket(s3.env, bucket);
  await rm(base, { recursive: true, force: true });
});

/** Monotonic and wall time move only when told; `sleep` ends only when aborted. */
function fakeClock(): Clock & { advance(ms: number): void } {
  let monotonicMs = 1_000;
  const wallStartMs = Date.now();
  return {
    wallMs: () => wallStartMs + monotonicMs,
    monotonicMs: () => monotonicMs,
    sleep: (_ms, signal) =>
      new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason))),
    setTimer: () => {
      throw new Error('ClusterStatusSource sets no timer');
    },
    advance(ms) {
      monotonicMs += ms;
    },
  };
}

/** `store` with its LISTs of `nodes/` counted. */
function countingLists(store: ObjectStore): { store: ObjectStore; lists: () => number } {
  let lists = 0;
  const counted: ObjectStore = {
    get description() {
      return store.description;
    },
    put: (key, body, options) => store.put(key, body, options),
    get: (key, options) => store.get(key, options),
    head: (key) => store.head(key),
    list: (prefix, options) => {
      if (prefix.startsWith(NODES_PREFIX)) lists++;
      return store.list(prefix, options);
    },
    delete: (key) => store.delete(key),
    deleteMany: (keys) => store.deleteMany(keys),
    close: async () => {},
  };
  return { store: counted, lists: () => lists };
}

async function register(store: ObjectStore, record: Partial<NodeRegistrationRecord> & { nodeId: string }) {
  const full: NodeRegistrationRecord = {
    version: NODE_REGISTRATION_VERSION,
    url: `http://${record.nodeId}.test:9000`,
    role: 'replica',
    epoch: null,
    clusterId: 'c1',
    tables: {},
    tableCount: 0,
    startedAt: new Date().toISOString(),
    at: new Date().toISOString(),
    ...record,
  };
  await store.put(nodeRegistrationKey(full.nodeId), encodeNodeRegistration(full));
}

const selfStatus = {
  role: 'primary',
  nodeId: 'n1',
  epoch: '3',
  acceptingWrites: true,
  tables: [{ name: 't', pendingTxns: 2, oldestPendingAgeMs: 25 }],
};
const peerStatus = {
  role: 'replica',
  nodeId: 'n2',
  acceptingWrites: false,
  stalenessMs: 40,
  tables: [
    { name: 't', epoch: '3', txnsBehind: '2' },
    { name: 'u', epoch: '2', txnsBehind: '1' },
  ],
};

describe.each(
  storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'cluster-status' }),
)('ClusterStatusSource on %s', (_name, skipReason, makeStore) => {
  it.skipIf(skipReason !== null)(
    'lists every registered node as its /status says, this node from its own, one LIST per refresh interval',
    async () => {
      const opened = await makeStore().open();
      try {
        await register(opened, { nodeId: 'n1', role: 'primary', epoch: '2' });
        await register(opened, { nodeId: 'n2' });
        await register(opened, { nodeId: 'n3', role: 'primary', epoch: '1' });
        const { store, lists } = countingLists(opened);
        const clock = fakeClock();
        const asked: string[] = [];
        let n3Answers = true;
        const source = new ClusterStatusSource({
          store,
          clock,
          nodeId: () => 'n1',
          url: () => 'http://n1.test:9000',
          status: () => selfStatus,
          readStatus: async (url) => {
            asked.push(url);
            if (url.includes('n2')) return peerStatus;
            if (n3Answers) return { role: 'primary', nodeId: 'n3', epoch: '1', acceptingWrites: false };
            throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
          },
        });

        const first = await source.current();
        expect(first.from).toBe('store registrations');
        expect(first.refreshedAgoMs).toBe(0);
        expect(first.storeError).toBeNull();
        expect(first.nodes).toEqual([
          {
            nodeId: 'n1',
            url: 'http://n1.test:9000',
            role: 'primary',
            epoch: '3',
            appliedEpoch: null,
            acceptingWrites: true,
            lagMs: 25,
            backlogTxns: 2,
            lastSeenAgoMs: 0,
            registeredAgoMs: expect.any(Number),
            self: true,
            error: null,
          },
          {
            nodeId: 'n2',
            url: 'http://n2.test:9000',
            role: 'replica',
            epoch: null,
            appliedEpoch: '3',
            acceptingWrites: false,
            lagMs: 40,
            backlogTxns: 3,
            lastSeenAgoMs: 0,
            registeredAgoMs: expect.any(Number),
            self: false,
            error: null,
          },
          expect.objectContaining({ nodeId: 'n3', role: 'primary', epoch: '1', acceptingWrites: false }),
        ]);
        expect(asked.sort(), 'every peer asked once, never this node').toEqual([
          'http://n2.test:9000',
          'http://n3.test:9000',
        ]);
        expect(lists()).toBe(1);

        // However many pages poll within the interval: no LIST, no peer asked.
        for (let i = 0; i < 20; i++) await source.current();
        clock.advance(CLUSTER_REFRESH_MS - 1);
        const cached = await source.current();
        expect(lists()).toBe(1);
        expect(asked).toHaveLength(2);
        expect(cached.refreshedAgoMs).toBe(CLUSTER_REFRESH_MS - 1);
        expect(cached.nodes.find((n) => n.nodeId === 'n2')?.lagMs, 'staleness grows with the answer').toBe(
          40 + CLUSTER_REFRESH_MS - 1,
        );

        // Past the interval: the old view at once, a refresh behind it.
        n3Answers = false;
        clock.advance(1);
        const stale = await source.current();
        expect(stale.refreshedAgoMs).toBe(CLUSTER_REFRESH_MS);
        await vi.waitFor(async () => expect((await source.current()).refreshedAgoMs).toBe(0));
        expect(lists()).toBe(2);
        const refreshed = await source.current();
        expect(refreshed.nodes.find((n) => n.nodeId === 'n3')).toMatchObject({
          role: 'unreachable',
          epoch: '1',
          acceptingWrites: false,
          lastSeenAgoMs: CLUSTER_REFRESH_MS,
          error: '/status: fetch failed (ECONNREFUSED)',
        });
        source.close();
      } finally {
        await opened.close();
      }
    },
  );

  it.skipIf(skipReason !== null)('with nothing registered: this node alone, and says why', async () => {
    const store = await makeStore().open();
    try {
      const source = new ClusterStatusSource({
        store,
        clock: fakeClock(),
        nodeId: () => undefined,
        url: () => 'http://self.test:9000',
        status: () => {
          throw new Error('the role is closing');
        },
        readStatus: () => Promise.reject(new Error('no peer to ask')),
      });
      const view = await source.current();
      expect(view.nodes).toEqual([
        expect.objectContaining({
          nodeId: null,
          url: 'http://self.test:9000',
          role: 'switching',
          self: true,
        }),
      ]);
      expect(view.note).toMatch(/^no node is registered in the store/);
    } finally {
      await store.close();
    }
  });
});

describe('summariseStatus', () => {
  it('reads role, epochs, lag and backlog of each role; nothing of a switching node but its id', () => {
    expect(summariseStatus(selfStatus)).toEqual({
      nodeId: 'n1',
      role: 'primary',
      epoch: '3',
      appliedEpoch: null,
      acceptingWrites: true,
      lagMs: 25,
      backlogTxns: 2,
    });
    expect(summariseStatus(peerStatus)).toMatchObject({
      role: 'replica',
      appliedEpoch: '3',
      lagMs: 40,
      backlogTxns: 3,
    });
    expect(summariseStatus({ role: 'switching', nodeId: 'x' })).toEqual({
      nodeId: 'x',
      role: 'switching',
      epoch: null,
      appliedEpoch: null,
      acceptingWrites: null,
      lagMs: null,
      backlogTxns: null,
    });
    expect(summariseStatus('not json').role).toBe('unknown');
  });
});
