import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { assert, type Clock, isoTime, WalshipError } from '../core/index.js';
import {
  closeRegistration,
  type EpochRecord,
  encodeEpoch,
  epochKey,
  newestEpoch,
  readEpoch,
  segmentKey,
  segmentPrefix,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { Follower, recordEpochStart, TABLE_EPOCH_META_PREFIX } from '../replica/index.js';
import { decodeTableKey, type TableKey, TableStore } from '../table/index.js';
import {
  type Codec,
  decodeSegmentHeader,
  encodeTxnRecord,
  sealSegment,
  type TxnRecord,
} from '../wal/index.js';

export interface PromoteOptions {
  store: ObjectStore;
  /** The replica's SQLite file; the replica must be closed (this opens it for writing). */
  databaseFile: string;
  nodeId: string;
  /** Recorded in the epoch record: how clients and tools reach the new primary. */
  url: string;
  reason: string;
  clock: Clock;
  log: Logger;
  codec: Codec;
  compressionLevel: number;
  synchronous: 'FULL' | 'NORMAL';
  /**
   * Claim epoch E+1 only if E, the newest epoch in the store, is this one: an automatic promotion
   * passes the epoch of the lease that expired, so a candidate that was too slow stays a replica
   * instead of replacing a primary elected a moment earlier (PROMOTION_LOST).
   */
  onlyAfterEpoch?: bigint;
}

export interface Promotion {
  clusterId: string;
  epoch: bigint;
  /** Per table: the fence's txn (the last txn of the old epoch is one less). */
  fenced: { key: TableKey; name: string; fenceTxn: bigint }[];
}

/** Fence rounds per table before giving up: each lost round means the old primary uploaded one more segment. */
const FENCE_ROUNDS_MAX = 1_000;

/**
 * Tables fenced at once in P4's first round: each fence is a LIST and a PUT, so with many tables
 * on S3 the write pause of a switchover is mostly these round trips one after another.
 */
const FENCE_CONCURRENCY = 8;

type Fenced = Promotion['fenced'][number];

/**
 * Promotes the replica whose database is `databaseFile` to the next epoch (RFC-0002 P1–P4):
 * catch up with the store, claim `epochs/<E+1>.json` create-only, close table registration in
 * `tables.json`, and fence every table with a create-only fence segment at the slot after its
 * last txn — applying whatever the old primary got in first. Leaves the database ready for
 * `PrimaryNode.start` (meta `epoch`, `cluster.id`, uploaded = applied). Throws PROMOTION_LOST
 * (conflict) when another node took the epoch, CATCH_UP_INCOMPLETE when a table is suspended,
 * FENCED when a newer promotion overtook this one, store errors as they come (the promotion can
 * be retried: every step is idempotent for the same node).
 */
export async function promote(options: PromoteOptions): Promise<Promotion> {
  const tables = TableStore.open(options.databaseFile, {
    synchronous: options.synchronous,
    clock: options.clock,
  });
  try {
    // A candidate that already lost learns it from one LIST (and one GET) of epochs/, before a
    // catch-up that may download the whole WAL; P2 checks again, since the race goes on meanwhile.
    await refuseIfAlreadyLost(options);
    const follower = followerOf(tables, options);
    await follower.catchUp(); // P1
    const clusterId = tables.getMeta('cluster.id');
    if (clusterId === undefined) {
      throw new WalshipError(
        'NOTHING_TO_PROMOTE',
        'invalid',
        'the store holds no cluster yet: start a primary instead',
      );
    }
    const epoch = await claimNextEpoch(tables, options); // P2
    const registered = await closeRegistration(options.store, epoch); // P3
    const keys = new Set([...registered, ...follower.tableWatermarks().map((t) => t.key)]);
    const fenced = await fenceAll(tables, [...keys].sort(), epoch, options); // P4
    assert(fenced.length === keys.size, `fenced ${fenced.length} of ${keys.size} tables`);
    tables.transaction(() => {
      tables.setMeta('cluster.id', clusterId);
      tables.setMeta('epoch', epoch.toString());
    });
    options.log.info({ newEpoch: epoch.toString(), tables: fenced.length }, 'promoted: every table fenced');
    return { clusterId, epoch, fenced };
  } finally {
    tables.close();
  }
}

/**
 * With `onlyAfterEpoch` set: throws PROMOTION_LOST when the newest epoch in the store is another
 * one (a promotion already replaced that primary). Costs one LIST of `epochs/` and one GET.
 */
async function refuseIfAlreadyLost(options: PromoteOptions): Promise<void> {
  if (options.onlyAfterEpoch === undefined) return;
  const newest = await newestEpoch(options.store);
  if (newest !== null) refuseIfReplaced(newest, options.onlyAfterEpoch);
}

/** PROMOTION_LOST when `newest` is not the epoch this promotion was to follow (another won). */
function refuseIfReplaced(
  newest: { epoch: bigint; nodeId: string },
  onlyAfterEpoch: bigint | undefined,
): void {
  if (onlyAfterEpoch === undefined || newest.epoch === onlyAfterEpoch) return;
  throw new WalshipError(
    'PROMOTION_LOST',
    'conflict',
    `epoch ${newest.epoch} (node ${newest.nodeId}) already replaced the primary of epoch ${onlyAfterEpoch}: ` +
      'this node stays a replica',
    { details: { epoch: newest.epoch, winner: newest.nodeId } },
  );
}

function followerOf(tables: TableStore, options: PromoteOptions): Follower {
  return new Follower({
    store: options.store,
    tables,
    clock: options.clock,
    log: options.log,
    pollIntervalMs: 1_000,
    sweepIntervalMs: 1_000,
    downloadConcurrency: 8,
    clusterId: tables.getMeta('cluster.id'),
    onCluster: (id) => tables.setMeta('cluster.id', id),
  });
}

/** P2: `epochs/<E+1>.json` create-only; a lost answer is recognised by the claim id. */
async function claimNextEpoch(tables: TableStore, options: PromoteOptions): Promise<bigint> {
  const newest = await newestEpoch(options.store);
  if (newest === null) {
    throw new WalshipError(
      'NOTHING_TO_PROMOTE',
      'invalid',
      'the store holds no epoch yet: start a primary instead',
    );
  }
  refuseIfReplaced(newest, options.onlyAfterEpoch);
  const epoch = newest.epoch + 1n;
  // The claim is the next epoch after the newest read, and after the one this promotion was to follow.
  assert(epoch > newest.epoch && epoch >= 1n, `epoch ${epoch} is not above the newest one ${newest.epoch}`);
  assert(
    options.onlyAfterEpoch === undefined || epoch === options.onlyAfterEpoch + 1n,
    `epoch ${epoch} does not follow epoch ${options.onlyAfterEpoch} (the one to replace)`,
  );
  const claimId = randomUUID();
  const record: EpochRecord = {
    epoch,
    nodeId: options.nodeId,
    url: options.url,
    reason: options.reason,
    at: isoTime(options.clock.wallMs()),
    claimId,
  };
  tables.setMeta('claim.id', claimId);
  const result = await options.store.put(epochKey(epoch), encodeEpoch(record), {
    condition: { type: 'absent' },
  });
  if (result.status === 'written') return epoch;
  const winner = await readEpoch(options.store, epoch);
  if (winner?.claimId === claimId) return epoch;
  throw new WalshipError(
    'PROMOTION_LOST',
    'conflict',
    `epoch ${epoch} was taken by node ${winner?.nodeId ?? 'unknown'} (${winner?.url ?? '?'}) first: this node stays a replica`,
    { details: { epoch, winner: winner?.nodeId ?? null } },
  );
}

/**
 * P4 for every table: a first round for all of them at once (FENCE_CONCURRENCY at a time), which
 * fences every table whose slot the old primary did not take; then the others one at a time with
 * catch-ups (fenceTable). No catch-up runs during the first round, so nothing but the fences
 * themselves is applied to the database meanwhile. Throws the first error, after every request of
 * the round has settled (nothing touches the database after this returns or throws).
 */
async function fenceAll(
  tables: TableStore,
  keys: TableKey[],
  epoch: bigint,
  options: PromoteOptions,
): Promise<Fenced[]> {
  const done = new Map<string, Fenced>();
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      const outcome = await fenceOnce(tables, key, epoch, options);
      if ('fenced' in outcome) done.set(key, outcome.fenced);
    }
  };
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(FENCE_CONCURRENCY, keys.length) }, worker),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const fenced: Fenced[] = [];
  for (const key of keys) fenced.push(done.get(key) ?? (await fenceTable(tables, key, epoch, options)));
  return fenced;
}

/**
 * P4 for one table: a fence segment at the slot after the last txn in the store. On 412 the slot
 * was taken: ours (a lost answer) → done; else the old primary's → apply it and everything after
 * (catch up), then try the next slot.
 */
async function fenceTable(
  tables: TableStore,
  key: TableKey,
  epoch: bigint,
  options: PromoteOptions,
): Promise<Fenced> {
  for (let round = 0; round < FENCE_ROUNDS_MAX; round++) {
    const outcome = await fenceOnce(tables, key, epoch, options);
    if ('fenced' in outcome) return outcome.fenced;
    if ('later' in outcome) {
      await followerOf(tables, options).catchUp();
      if (tables.lastTxn(outcome.name) >= outcome.fenceTxn) continue;
      throw new WalshipError(
        'FENCE_BELOW_CHAIN',
        'data',
        `table ${key}: the store holds ${outcome.later} past txn ${outcome.fenceTxn - 1n}, this node's last, and catching up ` +
          `did not reach it: a fence at ${segmentKey(key, outcome.fenceTxn)} would land below the chain and fence nothing`,
        { details: { key: segmentKey(key, outcome.fenceTxn), table: key, later: outcome.later } },
      );
    }
    options.log.info(
      { table: outcome.name, slot: outcome.fenceTxn.toString() },
      'the old primary took the fence slot first; applying it',
    );
    // A fresh follower: it reads the watermarks (our fences included) from the database.
    await followerOf(tables, options).catchUp();
  }
  throw new WalshipError(
    'FENCE_CONTENDED',
    'unavailable',
    `table ${key}: lost the fence slot ${FENCE_ROUNDS_MAX} times in a row to the old primary; retry the promotion`,
  );
}

/**
 * One attempt at a table's fence: `fenced` (written, or ours from a lost answer; applied), `later`
 * (the store holds a segment past the slot: this node's watermark lies below the chain) or `taken`
 * (the old primary's segment is in the slot). Throws FENCED when a newer promotion's fence is there.
 */
async function fenceOnce(
  tables: TableStore,
  key: TableKey,
  epoch: bigint,
  options: PromoteOptions,
): Promise<
  | { fenced: Fenced }
  | { later: string; name: string; fenceTxn: bigint }
  | { taken: true; name: string; fenceTxn: bigint }
> {
  const name = tables.schemas().find((s) => s.key === key)?.name ?? decodeTableKey(key);
  const fenceTxn = tables.lastTxn(name) + 1n;
  const record: TxnRecord = {
    txn: fenceTxn,
    commitTimeUs: BigInt(Math.floor(options.clock.wallMs() * 1000)),
    kind: 'fence',
    rowCount: 0,
    columns: [],
  };
  const segment = await sealSegment({
    tableName: name,
    epoch,
    writerNodeId: options.nodeId,
    records: [encodeTxnRecord(record)],
    codec: options.codec,
    compressionLevel: options.compressionLevel,
  });
  const objectKey = segmentKey(key, fenceTxn);
  // A fence lands above every GC and restore boundary (RFC-0002 P4): the store must hold nothing
  // past its slot. Something there means this node's watermark lies below the chain — a listing
  // that hid it from the catch-up, or a chain GC collected past the watermark, whose slot the
  // create-only PUT would find free — and a fence there would fence nothing. Catch up again.
  const later = await segmentAfter(options.store, key, fenceTxn);
  if (later !== undefined) return { later, name, fenceTxn };
  const writeId = `${options.nodeId}.${epoch}.${fenceTxn}`;
  const put = await options.store.put(objectKey, segment, { condition: { type: 'absent' }, writeId });
  if (put.status === 'written' || (await isOurs(options.store, objectKey, options.nodeId, epoch))) {
    // The fence sits right above the table's last txn: nothing applied to this table across the
    // awaits above (no catch-up runs during one attempt, one attempt per table at a time).
    assert(
      tables.lastTxn(name) + 1n === fenceTxn,
      `fence txn ${fenceTxn} of table ${key} does not follow its last txn ${tables.lastTxn(name)}`,
    );
    tables.transaction(() => {
      tables.applyTxn(name, record);
      tables.setUploadedTxn(name, fenceTxn);
      tables.setMeta(`${TABLE_EPOCH_META_PREFIX}${key}`, epoch.toString());
      recordEpochStart(tables, key, epoch, fenceTxn);
    });
    return { fenced: { key, name: tables.schemas().find((s) => s.key === key)?.name ?? name, fenceTxn } };
  }
  const holder = await slotHeader(options.store, objectKey);
  if (holder !== null && holder.epoch > epoch) {
    throw new WalshipError(
      'FENCED',
      'fenced',
      `${objectKey} holds a fence of epoch ${holder.epoch} by ${holder.writerNodeId}: a newer promotion overtook this one (epoch ${epoch})`,
    );
  }
  return { taken: true, name, fenceTxn };
}

/** The first segment key of table `key` after the slot of `txn`, or undefined (one LIST of one key). */
async function segmentAfter(store: ObjectStore, key: TableKey, txn: bigint): Promise<string | undefined> {
  const page = await store.list(segmentPrefix(key), { startAfter: segmentKey(key, txn), limit: 1 });
  return page.objects[0]?.key;
}

async function isOurs(store: ObjectStore, key: string, nodeId: string, epoch: bigint): Promise<boolean> {
  const header = await slotHeader(store, key);
  return header !== null && header.writerNodeId === nodeId && header.epoch === epoch;
}

/** The header of the segment at `key`, or null when there is none. */
async function slotHeader(store: ObjectStore, key: string) {
  const got = await store.get(key);
  if (got === null || got.status !== 'ok') return null;
  return decodeSegmentHeader(got.body);
}
