/**
 * The cluster side of RFC-0003: `walship sequencer init` binds a new store root to a sequencer
 * (`cluster.json`, an epoch record that fences single primaries, `initialize`, `sequencer.json`),
 * and every sequenced node checks that the sequencer it was given is that cluster's.
 */
import { type Clock, isoTime, WalshipError } from '../core/index.js';
import {
  encodeEpoch,
  encodeSequencerRecord,
  epochKey,
  newestEpoch,
  readCluster,
  readSequencerRecord,
  SEQUENCER_RECORD_KEY,
  type SequencerRecord,
  TABLES_PREFIX,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { createCluster } from '../primary/index.js';
import type { SequencerStore } from '../sequencer/index.js';

/** The node id the sequencer's epoch record names: no node may use it (node ids are checked on start). */
export const SEQUENCER_EPOCH_HOLDER = 'sequencer';

/**
 * The cluster's sequencer record, checked against the sequencer this node was given: a writer
 * refuses a store without one (run `walship sequencer init`) and a sequencer bound to another cluster.
 */
export async function sequencedCluster(
  store: ObjectStore,
  sequencer: SequencerStore | undefined,
): Promise<SequencerRecord> {
  const record = await readSequencerRecord(store);
  if (record === null) {
    throw new WalshipError(
      'SEQUENCER_NOT_INITIALIZED',
      'invalid',
      'replication.sequencer is set, but the store holds no sequencer.json: run `walship sequencer init` first',
    );
  }
  const bound = sequencer === undefined ? record.clusterId : await sequencer.clusterId();
  if (bound !== record.clusterId) {
    throw new WalshipError(
      'SEQUENCER_CLUSTER_MISMATCH',
      'invalid',
      `the store's cluster is ${record.clusterId}, but the sequencer is bound to ${bound ?? 'no cluster'}`,
    );
  }
  return record;
}

/**
 * Binds a store root to `sequencer` (RFC-0003 "Coexistence", fresh cluster): cluster.json
 * (created when absent), `epochs/1.json` held by SEQUENCER_EPOCH_HOLDER so a single primary is
 * refused from then on, `initialize(clusterId, {})`, then `sequencer.json` create-only. Idempotent:
 * run again it checks and returns the same record. A root of a single-primary cluster that has
 * written anything is refused (ADOPTION_UNSUPPORTED): adopting its chains is not built yet.
 */
export async function initSequencedCluster(options: {
  store: ObjectStore;
  sequencer: SequencerStore;
  clock: Clock;
}): Promise<{ record: SequencerRecord; created: boolean }> {
  const { store, sequencer, clock } = options;
  const existing = await readSequencerRecord(store);
  if (existing !== null) {
    await sequencer.initialize(existing.clusterId, existing.startAfter);
    return { record: existing, created: false };
  }
  const cluster = await readCluster(store);
  const newest = await newestEpoch(store);
  const tables = await store.list(TABLES_PREFIX, { limit: 1 });
  if ((newest !== null && newest.nodeId !== SEQUENCER_EPOCH_HOLDER) || tables.objects.length > 0) {
    throw new WalshipError(
      'ADOPTION_UNSUPPORTED',
      'invalid',
      `the store root holds single-primary cluster ${cluster?.clusterId ?? '(no cluster.json)'} with data or ` +
        'epochs; adopting it into a sequenced cluster is not built yet (RFC-0003 "Coexistence"): initialise a new root',
    );
  }
  const { clusterId } = cluster ?? (await createCluster(store, SEQUENCER_EPOCH_HOLDER, clock));
  const at = isoTime(clock.wallMs());
  if (newest === null) {
    // Fences single primaries: claimPrimary refuses a root whose newest epoch another node holds.
    const epoch = await store.put(
      epochKey(1n),
      encodeEpoch({ epoch: 1n, nodeId: SEQUENCER_EPOCH_HOLDER, url: '', reason: 'sequencer', at }),
      { condition: { type: 'absent' } },
    );
    if (epoch.status !== 'written' && (await newestEpoch(store))?.nodeId !== SEQUENCER_EPOCH_HOLDER) {
      throw new WalshipError(
        'ADOPTION_UNSUPPORTED',
        'invalid',
        'a primary took epoch 1 of this root while it was being initialised: initialise a new root',
      );
    }
  }
  await sequencer.initialize(clusterId, new Map());
  const record: SequencerRecord = { version: 1, clusterId, epoch: 1n, startAfter: new Map(), at };
  const put = await store.put(SEQUENCER_RECORD_KEY, encodeSequencerRecord(record), {
    condition: { type: 'absent' },
  });
  if (put.status === 'written') return { record, created: true };
  const winner = await readSequencerRecord(store);
  if (winner === null || winner.clusterId !== clusterId)
    throw new WalshipError('STORE_INCONSISTENT', 'unavailable', 'sequencer.json exists but does not match');
  return { record: winner, created: false };
}
