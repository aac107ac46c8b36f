import { randomUUID } from 'node:crypto';
import { type Clock, isoTime, WalshipError } from '../core/index.js';
import {
  CLUSTER_KEY,
  type ClusterRecord,
  type EpochRecord,
  encodeClusterRecord,
  encodeEpoch,
  epochKey,
  newestEpoch,
  readCluster,
  readEpoch,
  TABLES_PREFIX,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';

/** Node-local facts the check compares with the store: kept in the node's own database. */
export interface NodeMeta {
  get(key: NodeMetaKey): string | undefined;
  set(key: NodeMetaKey, value: string): void;
}

/** `claim.id`: a random id this data dir wrote into the epoch record it took (tells two nodes that share a node id apart). */
export type NodeMetaKey = 'cluster.id' | 'epoch' | 'claim.id';

export interface PrimaryClaim {
  clusterId: string;
  epoch: bigint;
  /** True when this call created the cluster (a fresh root). */
  created: boolean;
}

/**
 * Decide whether this node may be the primary of the cluster in `store`, and record the answer
 * in `meta` (DESIGN §7, first bullets; the rest of the protocol is step 4's RFC-0002):
 * - a fresh root: write `cluster.json` and `epochs/1.json` create-only; of two racing first
 *   primaries exactly one wins, the other stops with `PRIMARY_REFUSED`;
 * - a root that holds a cluster: the node must have been that cluster's primary at the newest
 *   epoch (same cluster id and epoch in its own data dir); anything else — another cluster's
 *   data (QuestDB ER001), a newer epoch held by another node, a wiped data dir reusing a node
 *   id — is refused with `PRIMARY_REFUSED` and a message that says what to do;
 * - this node's own bootstrap, cut short between writing `epochs/1.json` and remembering it (a
 *   crash, a lost answer), is finished: the cluster id is remembered before the epoch is written.
 * Costs one GET of cluster.json and one LIST of epochs/ on restart; three writes on a new root.
 */
export async function claimPrimary(options: {
  store: ObjectStore;
  meta: NodeMeta;
  nodeId: string;
  url: string;
  clock: Clock;
}): Promise<PrimaryClaim> {
  const { store, meta, nodeId } = options;
  const localCluster = meta.get('cluster.id');
  const localEpoch = meta.get('epoch');
  const existing = await readCluster(store);
  if (existing === null && localCluster !== undefined) {
    throw refused(
      `this node's data dir belongs to cluster ${localCluster}, but the store root holds no cluster: ` +
        'is replication.object.store pointing at the right bucket and root?',
    );
  }
  if (existing !== null && localCluster !== undefined && existing.clusterId !== localCluster) {
    throw refused(
      `the store root holds cluster ${existing.clusterId}, but this node's data dir belongs to cluster ${localCluster}`,
    );
  }
  const cluster = existing ?? (await createCluster(store, nodeId, options.clock));
  const newest = await newestEpoch(store);
  if (newest === null) {
    if (existing !== null && localCluster === undefined && (await hasAnyObject(store, TABLES_PREFIX))) {
      throw refused(
        `the store root already holds data of cluster ${cluster.clusterId}; start this node as a replica`,
      );
    }
    const claimId = meta.get('claim.id') ?? randomUUID();
    const record: EpochRecord = {
      epoch: 1n,
      nodeId,
      url: options.url,
      reason: 'bootstrap',
      at: iso(options.clock),
      claimId,
    };
    // Remember the cluster before taking its first epoch: after a crash between the epoch write and
    // `remember`, this trace tells the node's own unfinished bootstrap (finished below) from a wiped
    // data dir reusing the node id (refused).
    meta.set('cluster.id', cluster.clusterId);
    meta.set('claim.id', claimId);
    const result = await store.put(epochKey(1n), encodeEpoch(record), { condition: { type: 'absent' } });
    const winner = result.status === 'written' ? record : await readEpoch(store, 1n);
    if (winner === null || winner.nodeId !== nodeId || winner.claimId !== claimId) {
      throw refused(
        `another node (${winner?.nodeId ?? 'unknown'}) became the first primary of this cluster at the same time` +
          (winner?.nodeId === nodeId
            ? ' (it has the same node.id as this one: node ids must be unique)'
            : ''),
      );
    }
    return remember(meta, cluster.clusterId, 1n, existing === null);
  }
  if (newest.nodeId === nodeId && localCluster === cluster.clusterId && localEpoch === String(newest.epoch)) {
    return remember(meta, cluster.clusterId, newest.epoch, false);
  }
  if (
    newest.nodeId === nodeId &&
    newest.epoch === 1n &&
    localCluster === cluster.clusterId &&
    localEpoch === undefined &&
    newest.claimId !== undefined &&
    newest.claimId === meta.get('claim.id')
  ) {
    // This node's bootstrap, cut short after epochs/1.json was written (a crash, a lost answer). It
    // took no write before the claim was remembered, so finishing the bootstrap loses nothing.
    return remember(meta, cluster.clusterId, 1n, false);
  }
  if (newest.nodeId === nodeId) {
    throw refused(
      `epoch ${newest.epoch} of cluster ${cluster.clusterId} belongs to node id ${nodeId}, but this data dir ` +
        `does not hold that primary's state (cluster ${localCluster ?? 'none'}, epoch ${localEpoch ?? 'none'}); ` +
        'start the node with its original data dir, or as a replica',
    );
  }
  throw refused(
    `the newest epoch of cluster ${cluster.clusterId} is ${newest.epoch}, held by node ${newest.nodeId} ` +
      `(${newest.reason} at ${newest.at}); this node (epoch ${localEpoch ?? 'none'}) is not the primary: ` +
      'start it as a replica, or promote it',
  );
}

/**
 * PRIMARY_REFUSED (kind `fenced`) when `epochs/<epoch + 1>.json` exists: a candidate promoted past
 * `epoch` after it was claimed. One HEAD; a claim after it is still fenced by the store (RFC-0002).
 */
export async function refuseIfOvertaken(store: ObjectStore, epoch: bigint): Promise<void> {
  if ((await store.head(epochKey(epoch + 1n))) === null) return;
  throw refused(
    `epoch ${epoch + 1n} was claimed while this node was starting as the primary of epoch ${epoch}`,
  );
}

/** Writes cluster.json create-only with a new cluster id; of two racing creators both get the winner's record. */
export async function createCluster(
  store: ObjectStore,
  nodeId: string,
  clock: Clock,
): Promise<ClusterRecord> {
  const record: ClusterRecord = {
    clusterId: randomUUID(),
    formatVersion: 1,
    createdAt: iso(clock),
    createdBy: nodeId,
  };
  const body = encodeClusterRecord(record);
  const result = await store.put(CLUSTER_KEY, body, { condition: { type: 'absent' } });
  if (result.status === 'written') return record;
  const winner = await readCluster(store);
  if (winner === null)
    throw new WalshipError('STORE_INCONSISTENT', 'unavailable', 'cluster.json exists but cannot be read');
  return winner;
}

function remember(meta: NodeMeta, clusterId: string, epoch: bigint, created: boolean): PrimaryClaim {
  meta.set('cluster.id', clusterId);
  meta.set('epoch', String(epoch));
  return { clusterId, epoch, created };
}

async function hasAnyObject(store: ObjectStore, prefix: string): Promise<boolean> {
  return (await store.list(prefix, { limit: 1 })).objects.length > 0;
}

function refused(message: string): WalshipError {
  return new WalshipError('PRIMARY_REFUSED', 'fenced', `refusing the primary role: ${message}`);
}

function iso(clock: Clock): string {
  return isoTime(clock.wallMs());
}
