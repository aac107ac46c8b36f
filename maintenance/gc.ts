import { assert, type Clock, InvalidArgumentError } from '../core/index.js';
import {
  CLUSTER_KEY,
  discoverTableKeys,
  listChain,
  listNodeRegistrations,
  listSnapshots,
  parseClusterRecord,
  readSequencerRecord,
  SEGMENT_CHAIN,
  SNAPSHOTS_PREFIX,
  type SnapshotManifest,
  snapshotIdOfManifestKey,
  TABLES_PREFIX,
} from '../layout/index.js';
import { DELETE_MANY_KEYS_MAX, listAll, type ObjectStore } from '../objectstore/index.js';
import type { SequencerStore } from '../sequencer/index.js';
import { SequencerClusterMismatchError } from '../sequencer/index.js';
import { decodeTableKey, type TableKey, tableKey as tableKeyOf } from '../table/index.js';
import type { GcDeletion, GcKept, GcObjectKind } from './gc-types.js';
import { formatDuration, planStagedOrphans, planTxnLogRetention, type RetentionJudge } from './staged-gc.js';

export type { GcDeletion, GcKept, GcObjectKind } from './gc-types.js';
export { formatDuration } from './staged-gc.js';

/**
 * WAL retention and garbage collection (RFC-0007): which segments and snapshots no reader can need
 * any more, and deleting them. Stateless: every run lists the store and plans afresh; deletes are
 * idempotent, so two GCs at once end in the same state.
 */

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/** Segments GC lists per table at most: a table past it is handled in later runs (one LIST page a 1000). */
export const GC_SEGMENTS_PER_TABLE_MAX = 1_000_000;
/** Snapshot objects GC lists at most (two objects a snapshot; SNAPSHOT_LIST_MAX manifests are read). */
const SNAPSHOT_OBJECTS_MAX = 10_000;

export interface GcPolicy {
  /** A segment is a candidate once its store object is older than this (`replication.retention.duration`). */
  retentionMs: number;
  /** Keep the newest N snapshots of the cluster (`replication.retention.snapshots`), ≥ 1. */
  keepSnapshots: number;
  /** A registration not rewritten for this long blocks nothing (`replication.gc.registration.expiry`). */
  registrationExpiryMs: number;
}

export const GC_POLICY_DEFAULT: GcPolicy = {
  retentionMs: 7 * 24 * 3_600_000,
  keepSnapshots: 2,
  registrationExpiryMs: 3_600_000,
};

/** The kinds of a table's chain (reported per table); the rest are snapshot objects. */
export const GC_TABLE_KINDS: readonly GcObjectKind[] = ['segment', 'txnlog', 'staged', 'staged-orphan'];

/** What a sequencer-aware GC may ask the sequencer: who wrote, and which cluster it orders. */
export type GcSequencer = Pick<SequencerStore, 'writers' | 'clusterId'>;

/** A sequenced cluster (sequencer.json present) as GC saw it; null on a single-primary cluster. */
export interface GcSequenced {
  /** True when GC was given the sequencer (orphans are collected only then). */
  sequencerAccess: boolean;
  /** Writers the sequencer knows; null without access. */
  writers: number | null;
  /** Staged folders (table × closed or fenced writer epoch) listed for orphans. */
  foldersListed: number;
}

export interface GcRegistration {
  nodeId: string;
  role: string;
  /** ms since the store last saw it written, by the GC's clock. */
  ageMs: number;
  live: boolean;
}

export interface GcPlan {
  /** The GC clock's wall ms the plan was made at. */
  atMs: number;
  policy: GcPolicy;
  clusterId: string | null;
  /** In deletion order: segments per table oldest first, then snapshot manifests, then their images. */
  delete: GcDeletion[];
  keep: GcKept[];
  registrations: GcRegistration[];
  expiredRegistrations: GcRegistration[];
  /** The snapshots kept, newest first (ids). */
  snapshotsKept: string[];
  sequenced: GcSequenced | null;
}

export interface GcResult {
  plan: GcPlan;
  dryRun: boolean;
  /** Keys deleted (asked to delete: a key already gone counts), in order. */
  deleted: string[];
  deletedBytes: number;
}

export function checkGcPolicy(policy: GcPolicy): void {
  const bad = (what: string) => new InvalidArgumentError(`GC policy: ${what}`);
  if (!Number.isSafeInteger(policy.retentionMs) || policy.retentionMs < 0)
    throw bad(`retention ${policy.retentionMs} ms is not a whole number ≥ 0`);
  if (!Number.isSafeInteger(policy.keepSnapshots) || policy.keepSnapshots < 1)
    throw bad(
      `keep-snapshots ${policy.keepSnapshots} is not a whole number ≥ 1 (the newest snapshot always stays)`,
    );
  if (!Number.isSafeInteger(policy.registrationExpiryMs) || policy.registrationExpiryMs < 1)
    throw bad(`registration expiry ${policy.registrationExpiryMs} ms is not a whole number ≥ 1`);
}

/** A live registration: the txn it holds per table store key (a table it does not list: 0). */
interface LiveNode {
  nodeId: string;
  ageMs: number;
  /** By table store key: the name as the node spells it and its txn. */
  tables: Map<string, { name: string; txn: bigint }>;
  cut: boolean;
}

/**
 * What a GC run would delete now, and why it keeps the rest (RFC-0007). Reads cluster.json, the
 * registrations, the snapshot manifests and one LIST per table; writes nothing. `clock.wallMs()` is
 * compared with the store objects' lastModified. On a sequenced cluster (sequencer.json) also each
 * table's txn log (maintenance/staged-gc.ts), and with `sequencer` the orphans of closed or fenced
 * writer epochs; a sequencer bound to another cluster is SEQUENCER_CLUSTER_MISMATCH.
 */
export async function planGc(
  store: ObjectStore,
  policy: GcPolicy,
  clock: Pick<Clock, 'wallMs'>,
  options: { signal?: AbortSignal; sequencer?: GcSequencer } = {},
): Promise<GcPlan> {
  checkGcPolicy(policy);
  const signal = options.signal;
  const nowMs = clock.wallMs();
  const plan: GcPlan = {
    atMs: nowMs,
    policy,
    clusterId: null,
    delete: [],
    keep: [],
    registrations: [],
    expiredRegistrations: [],
    snapshotsKept: [],
    sequenced: null,
  };
  const cluster = await store.get(CLUSTER_KEY, signal === undefined ? {} : { signal });
  if (cluster === null || cluster.status !== 'ok') {
    plan.keep.push({ key: null, table: null, objects: 0, reason: 'no cluster.json: nothing is collected' });
    return plan;
  }
  const clusterId = parseClusterRecord(cluster.body).clusterId;
  plan.clusterId = clusterId;

  // Registrations: live ones block what they have not applied; unreadable ones block everything.
  const listing = await listNodeRegistrations(store, signal === undefined ? {} : { signal });
  const live: LiveNode[] = [];
  for (const { record, modifiedAtMs } of listing.nodes) {
    const ageMs = Math.max(0, nowMs - modifiedAtMs);
    const entry = {
      nodeId: record.nodeId,
      role: record.role,
      ageMs,
      live: ageMs <= policy.registrationExpiryMs,
    };
    plan.registrations.push(entry);
    if (entry.live) {
      const tables = new Map<string, { name: string; txn: bigint }>();
      for (const [name, txn] of Object.entries(record.tables)) {
        try {
          tables.set(tableKeyOf(name), { name, txn: BigInt(txn) });
        } catch {
          // A name no table can have: it claims nothing.
        }
      }
      live.push({ nodeId: record.nodeId, ageMs, tables, cut: record.tableCount > tables.size });
    } else plan.expiredRegistrations.push(entry);
  }
  let segmentBlocker: string | null = null;
  if (listing.unreadable.length > 0) {
    segmentBlocker = `registration ${listing.unreadable[0]!.key} is unreadable (${listing.unreadable[0]!.problem}): GC cannot know what that node needs`;
  } else if (listing.truncated) {
    segmentBlocker = 'more registrations than GC reads: GC cannot know what every node needs';
  }

  // Snapshots: the newest N of this cluster stay; the oldest kept one bounds every chain.
  const snapshots = await listSnapshots(store, signal === undefined ? {} : { signal });
  const ours = snapshots.manifests.filter((m) => m.clusterId === clusterId);
  const kept = ours.slice(0, policy.keepSnapshots);
  const dropped = ours.slice(policy.keepSnapshots);
  plan.snapshotsKept = kept.map((m) => m.id);
  const oldestKept: SnapshotManifest | undefined = kept.at(-1);
  for (const [index, manifest] of kept.entries()) {
    plan.keep.push({
      key: `${SNAPSHOTS_PREFIX}${manifest.id}/manifest.json`,
      table: null,
      objects: 2,
      reason: `snapshot ${manifest.id} is among the ${policy.keepSnapshots} newest (number ${index + 1})`,
    });
  }
  for (const m of snapshots.manifests.filter((m) => m.clusterId !== clusterId)) {
    plan.keep.push({
      key: `${SNAPSHOTS_PREFIX}${m.id}/manifest.json`,
      table: null,
      objects: 2,
      reason: `snapshot ${m.id} belongs to another cluster (${m.clusterId}): not touched`,
    });
  }
  for (const u of snapshots.unreadable) {
    plan.keep.push({
      key: u.key,
      table: null,
      objects: 1,
      reason: `unreadable manifest, left alone: ${u.error.message}`,
    });
  }
  if (segmentBlocker !== null) plan.keep.push({ key: null, table: null, objects: 0, reason: segmentBlocker });

  // The RFC-0007 rules for one part of a chain (a segment, or a txnlog entry and its staged object).
  const judge: RetentionJudge = ({ tableKey, txnLast, modifiedAtMs, newest, what }) => {
    if (segmentBlocker !== null) return segmentBlocker;
    if (newest) return `the newest ${what} of the table always stays`;
    const ageMs = nowMs - modifiedAtMs;
    if (ageMs <= policy.retentionMs)
      return `newer than the retention window (${formatDuration(ageMs)} old, window ${formatDuration(policy.retentionMs)})`;
    if (oldestKept === undefined)
      return `no snapshot of this cluster: the ${what === 'segment' ? 'segments are' : 'txn log is'} the only copy`;
    const inSnapshot = oldestKept.tables.find((t) => t.key === tableKey);
    if (inSnapshot === undefined)
      return `the oldest kept snapshot ${oldestKept.id} does not hold the table: a new replica replays it from txn 1`;
    if (txnLast > inSnapshot.lastTxn)
      return `holds txns up to ${txnLast}, past the oldest kept snapshot ${oldestKept.id} (watermark ${inSnapshot.lastTxn})`;
    let lowest: { node: LiveNode; txn: bigint } | undefined;
    for (const node of live) {
      const listed = node.tables.get(tableKey);
      const txn = listed === undefined ? 0n : listed.txn;
      if (lowest === undefined || txn < lowest.txn) lowest = { node, txn };
      if (txn < txnLast) {
        const held =
          listed === undefined
            ? `does not list the table${node.cut ? ' (its registration lists only part of its tables)' : ' (it would follow it from txn 1)'}`
            : `has applied only txn ${txn}`;
        return `node ${node.nodeId} (registered ${formatDuration(node.ageMs)} ago) ${held}; the ${what} holds txns up to ${txnLast}`;
      }
    }
    return {
      reason:
        `older than ${formatDuration(policy.retentionMs)} (${formatDuration(ageMs)}), txns ≤ ${txnLast} ≤ snapshot ${oldestKept.id} watermark ${inSnapshot.lastTxn}` +
        (lowest === undefined
          ? ', and no live registered node'
          : `, and applied by every live node (lowest: ${lowest.node.nodeId} at ${lowest.txn})`),
    };
  };

  // A sequenced cluster (RFC-0003): its tables' txn logs, and with the sequencer, orphans.
  const sequencerRecord = await readSequencerRecord(store);
  const sequencer = options.sequencer;
  if (sequencerRecord !== null) {
    if (sequencerRecord.clusterId !== clusterId)
      throw new SequencerClusterMismatchError(
        `sequencer.json names cluster ${sequencerRecord.clusterId}, cluster.json ${clusterId}: GC touches nothing`,
      );
    if (sequencer !== undefined) {
      const bound = await sequencer.clusterId();
      if (bound !== clusterId)
        throw new SequencerClusterMismatchError(
          `the store's cluster is ${clusterId}, but the sequencer given is bound to ${bound ?? 'no cluster'}: GC would judge orphans by another cluster's writers`,
        );
    }
    plan.sequenced = { sequencerAccess: sequencer !== undefined, writers: null, foldersListed: 0 };
  } else if (sequencer !== undefined) {
    plan.keep.push({
      key: null,
      table: null,
      objects: 0,
      reason:
        'a sequencer was given, but the store holds no sequencer.json: not a sequenced cluster, the sequencer is not consulted',
    });
  }

  // Table by table: the longest prefix of its chain every rule allows.
  const { keys: tableKeys } = await discoverTableKeys(store, signal);
  const tables: { key: TableKey; name: string }[] = [];
  for (const tableKey of tableKeys) {
    const name =
      live.map((node) => node.tables.get(tableKey)?.name).find((n) => n !== undefined) ??
      decodeTableKey(tableKey);
    tables.push({ key: tableKey, name });
    const segments = await listChain(store, SEGMENT_CHAIN, tableKey, {
      max: GC_SEGMENTS_PER_TABLE_MAX,
      signal,
    });
    for (let index = 0; index < segments.length; index++) {
      const segment = segments[index]!;
      const newest = index === segments.length - 1;
      const verdict = judge({
        tableKey,
        txnLast: newest ? segment.txnFirst : segments[index + 1]!.txnFirst - 1n,
        modifiedAtMs: segment.modifiedAtMs,
        newest,
        what: 'segment',
      });
      if (typeof verdict === 'string') {
        plan.keep.push({ key: segment.key, table: name, objects: segments.length - index, reason: verdict });
        break;
      }
      plan.delete.push({
        key: segment.key,
        kind: 'segment',
        table: name,
        sizeBytes: segment.sizeBytes,
        reason: verdict.reason,
      });
    }
    if (sequencerRecord === null) continue;
    const txnLog = await planTxnLogRetention({
      store,
      tableKey,
      table: name,
      judge,
      ...(signal === undefined ? {} : { signal }),
    });
    plan.delete.push(...txnLog.delete);
    plan.keep.push(...txnLog.keep);
  }

  if (plan.sequenced !== null) {
    if (sequencer === undefined) {
      plan.keep.push({
        key: null,
        table: null,
        objects: 0,
        reason:
          'no sequencer access (give --sequencer or replication.sequencer): staged objects no collected txnlog ' +
          'entry names are left alone — GC cannot tell a fenced writer’s orphans from batches still being committed',
      });
    } else {
      const writers = await sequencer.writers();
      const orphans = await planStagedOrphans({
        store,
        tables,
        writers,
        nowMs,
        ...(signal === undefined ? {} : { signal }),
      });
      plan.sequenced.writers = writers.length;
      plan.sequenced.foldersListed = orphans.foldersListed;
      plan.delete.push(...orphans.delete);
      plan.keep.push(...orphans.keep);
    }
  }

  // Old snapshots: every manifest, then every image (a manifest never points at a missing image).
  const objects = await listSnapshotObjects(store, signal);
  const images: GcDeletion[] = [];
  for (const manifest of dropped) {
    const reason = `older than the ${policy.keepSnapshots} newest snapshots`;
    const manifestKey = `${SNAPSHOTS_PREFIX}${manifest.id}/manifest.json`;
    plan.delete.push({
      key: manifestKey,
      kind: 'snapshot-manifest',
      table: null,
      sizeBytes: objects.get(manifestKey)?.sizeBytes ?? 0,
      reason,
    });
    const image = objects.get(manifest.image.key);
    if (image !== undefined)
      images.push({
        key: image.key,
        kind: 'snapshot-image',
        table: null,
        sizeBytes: image.sizeBytes,
        reason,
      });
  }
  plan.delete.push(...images);
  const withManifest = new Set(
    [...objects.keys()].map((key) => snapshotIdOfManifestKey(key)).filter((id) => id !== undefined),
  );
  for (const object of objects.values()) {
    const match = /^snapshots\/([^/]+)\/db\.sqlite\.[a-z0-9]{1,16}$/.exec(object.key);
    if (match === null || withManifest.has(match[1]!)) continue;
    const ageMs = nowMs - object.modifiedAtMs;
    if (ageMs <= policy.retentionMs) continue; // a publisher may still be writing its manifest
    plan.delete.push({
      key: object.key,
      kind: 'snapshot-orphan',
      table: null,
      sizeBytes: object.sizeBytes,
      reason: `a snapshot image without a manifest (a publisher stopped half way), ${formatDuration(ageMs)} old`,
    });
  }
  return plan;
}

/**
 * Plans afresh (never trusts an earlier plan) and, unless `dryRun`, deletes what the plan lists in
 * its order: each table's segments oldest first, then snapshot manifests, then images, in batches of
 * at most DELETE_MANY_KEYS_MAX. Idempotent: a key already gone is fine, so runs may overlap.
 */
export async function runGc(
  store: ObjectStore,
  policy: GcPolicy,
  options: {
    clock: Pick<Clock, 'wallMs'>;
    dryRun?: boolean;
    signal?: AbortSignal;
    /** A sequenced cluster's sequencer: orphans are collected only with it (RFC-0003). */
    sequencer?: GcSequencer;
  },
): Promise<GcResult> {
  const plan = await planGc(store, policy, options.clock, {
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.sequencer === undefined ? {} : { sequencer: options.sequencer }),
  });
  for (const deletion of plan.delete) assertCollectable(deletion);
  const result: GcResult = { plan, dryRun: options.dryRun === true, deleted: [], deletedBytes: 0 };
  if (result.dryRun) return result;
  // Consecutive deletions of one kind (and one table) go in one batch, in plan order.
  let batch: GcDeletion[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    options.signal?.throwIfAborted();
    await store.deleteMany(batch.map((d) => d.key));
    for (const d of batch) {
      result.deleted.push(d.key);
      result.deletedBytes += d.sizeBytes;
    }
    batch = [];
  };
  for (const deletion of plan.delete) {
    const previous = batch.at(-1);
    if (
      previous !== undefined &&
      (previous.kind !== deletion.kind ||
        previous.table !== deletion.table ||
        batch.length >= DELETE_MANY_KEYS_MAX)
    )
      await flush();
    batch.push(deletion);
  }
  await flush();
  return result;
}

/**
 * GC deletes only chain objects under `tables/` and snapshot objects under `snapshots/`. Above all
 * it never touches `epochs/`: an epoch record is the evidence a replaced primary's uploader checks
 * before it acknowledges anything (RFC-0002 W5), the one fence GC cannot collect, whatever it does to
 * fence segments (RFC-0007 "Zombies and reopened slots"). Nor `nodes/`, `tables.json`, `lease.json`,
 * `cluster.json`. A plan naming anything else is a bug.
 */
function assertCollectable(deletion: GcDeletion): void {
  const prefix = deletion.kind.startsWith('snapshot-') ? SNAPSHOTS_PREFIX : TABLES_PREFIX;
  assert(
    deletion.key.startsWith(prefix),
    `GC planned to delete ${deletion.key} (${deletion.kind}), which is not under ${prefix}`,
  );
}

async function listSnapshotObjects(
  store: ObjectStore,
  signal?: AbortSignal,
): Promise<Map<string, { key: string; sizeBytes: number; modifiedAtMs: number }>> {
  const objects = new Map<string, { key: string; sizeBytes: number; modifiedAtMs: number }>();
  for await (const object of listAll(store, SNAPSHOTS_PREFIX, signal === undefined ? {} : { signal })) {
    objects.set(object.key, {
      key: object.key,
      sizeBytes: object.sizeBytes,
      modifiedAtMs: object.modifiedAtMs,
    });
    if (objects.size >= SNAPSHOT_OBJECTS_MAX) break;
  }
  return objects;
}
