/**
 * The SequencerStore contract (contract.ts) on the FoundationDB backend: always over the
 * in-memory fake (every test name says so), and over a real cluster only when FDB_CLUSTER_FILE is
 * set; otherwise one test reports the real backend skipped, by name, never a silent pass.
 */
import { randomUUID } from 'node:crypto';
import { it } from 'vitest';
import { createFdbSequencerOver, FdbSequencerStore, loadFdbModule } from './fdb-store.js';
import type { SequencerStore } from './sequencer-store.js';
import { describeSequencerContract } from './testing/contract.js';
import { FakeFdb } from './testing/fdb-fake.js';

/** The fake behind each store, so reopen opens the same in-memory cluster again. */
const fakes = new WeakMap<SequencerStore, FakeFdb>();

function openOverFake(fdb: FakeFdb): SequencerStore {
  const store = createFdbSequencerOver(fdb.open());
  fakes.set(store, fdb);
  return store;
}

describeSequencerContract('FoundationDB fake', {
  open: async () => openOverFake(new FakeFdb()),
  reopen: async (store) => {
    const fdb = fakes.get(store);
    if (fdb === undefined) throw new Error('reopen expects a store this suite opened');
    await store.close();
    return openOverFake(fdb);
  },
  testNameSuffix: '(fake FDB semantics)',
});

const clusterFile = process.env.FDB_CLUSTER_FILE;
if (clusterFile !== undefined && clusterFile !== '') {
  // Each store gets its own keyspace root, so tests share one real cluster without meeting.
  const openReal = async (keyspaceRoot: string) => {
    const fdb = await loadFdbModule();
    return createFdbSequencerOver(fdb.open(clusterFile), { keyspaceRoot });
  };
  describeSequencerContract('FoundationDB', {
    open: () => openReal(`walship-test-${randomUUID()}`),
    reopen: async (store) => {
      if (!(store instanceof FdbSequencerStore)) throw new Error('reopen expects an FdbSequencerStore');
      await store.close();
      return openReal(store.keyspaceRoot);
    },
  });
} else {
  console.log('FoundationDB backend skipped: FDB_CLUSTER_FILE not set (the contract ran on the fake only)');
  it.skip('FoundationDB backend skipped: FDB_CLUSTER_FILE not set', () => {});
}
