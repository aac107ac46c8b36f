/**
 * `walship verify --store`: a read-only audit of a whole cluster root (issue 7, part 4). It walks
 * what the replica trusts — cluster.json, the epoch records, tables.json, every table's segment
 * chain, the snapshots — and reports every broken invariant of RFC-0001, RFC-0002 and RFC-0005 as
 * a finding instead of throwing: contiguity (txns 1..N, each once), checksums (the replica's own
 * `verifySegment`), epochs that never go back along a chain, fences whose epoch was claimed, and
 * objects that are no part of the layout (orphans).
 *
 * A sequenced cluster (RFC-0003) adds `sequencer.json` and, per table, a `txnlog/` chain and its
 * `staged/` objects: txn-log-audit.ts audits them. The chain machinery both use (findings, the
 * chain walk, the record reader) is chain-audit.ts's; this module re-exports its public names.
 *
 * Memory is bounded: segments are listed page by page and each is decoded, summarised and dropped;
 * at most `concurrency` GETs are in flight. A store error (after the store's own retries) is
 * thrown as it comes (kind `unavailable`); bad data never is.
 *
 * The cluster records are parsed here rather than through primary/ (readRegistry, readEpoch): an
 * audit must report a malformed record as a finding, where the write path rightly refuses to run.
 * Node registrations belong to failover/, which imports this module: the caller passes a reader.
 */
import { assert } from '../core/index.js';
import {
  CLUSTER_KEY,
  type ClusterRecord,
  discoverTableKeys,
  EPOCHS_PREFIX,
  epochKey,
  epochOfKey,
  HEAD_KEY,
  LEASE_KEY,
  listSnapshots,
  NODES_PREFIX,
  parseClusterRecord,
  parseRegistry,
  SEQUENCER_RECORD_KEY,
  SNAPSHOTS_PREFIX,
  type SnapshotManifest,
  segmentKey,
  segmentPrefix,
  snapshotManifestKey,
  stagedPrefix,
  TABLES_PREFIX,
  TABLES_REGISTRY_KEY,
  type TableRegistry,
  txnFirstOfSegmentKey,
  txnLogPrefix,
} from '../layout/index.js';
import { listAll, type ObjectInfo, type ObjectStore } from '../objectstore/index.js';
import { verifySegment } from '../replica/index.js';
import { decodeTableKey, formatTimestampUs, isTableKey, type TableKey, tableKey } from '../table/index.js';
import { decodeSegmentHeader, type SegmentHeader, type TxnRecord, ttlText } from '../wal/index.js';
import {
  AUDIT_FINDINGS_MAX,
  type AuditFinding,
  type AuditProgress,
  type AuditSeverity,
  addBounded,
  type ChainContext,
  coveredBySnapshot,
  FindingSink,
  inspectInOrder,
  orphan,
  readRecord,
  segmentProblem,
} from './chain-audit.js';
import {
  auditSequencer,
  auditTxnLog,
  checkSequencerRecordPresent,
  type SequencerAuditRecord,
  sequencerAuditRecord,
  type TxnLogAuditReport,
} from './txn-log-audit.js';

export {
  AUDIT_FINDINGS_MAX,
  type AuditFinding,
  type AuditProgress,
  type AuditSeverity,
  addBounded,
  type ChainContext,
  type ChainInspection,
  coveredBySnapshot,
  FindingSink,
  inspectInOrder,
  orphan,
  readRecord,
  segmentProblem,
} from './chain-audit.js';
export type { SequencerAuditRecord, TxnLogAuditReport } from './txn-log-audit.js';

// --- Bounds -------------------------------------------------------------------------------------

/** Segment GETs in flight by default: enough to hide a store's latency, few segments in memory. */
export const AUDIT_CONCURRENCY_DEFAULT = 8;
/** The most GETs in flight: each holds a whole segment (up to 257 MiB at the format's limit). */
export const AUDIT_CONCURRENCY_MAX = 64;
/** Top-level names walked by the skip scan of the root (each costs one LIST of one key). */
const ROOT_NAMES_MAX = 1_000;
/** Drops of one table listed in its report, at most (a table dropped more often is counted only this far). */
const MAX_DROPS_LISTED = 100;

/** Keys per LIST page of the scan for strays beside a table's folders (usually one page). */
const STRAY_PAGE_KEYS = 100;

// --- The report ---------------------------------------------------------------------------------

/** One table's chain. Txn numbers are decimal strings (the report is JSON). */
export interface TableAuditReport {
  /** The table name its key decodes to. */
  name: string;
  key: TableKey;
  registered: boolean;
  segments: number;
  /** The first txn of the first segment and the last of the last; null without segments. */
  txns: { first: string; last: string } | null;
  bytes: number;
  /** Distinct epochs of its segments, in chain order. */
  epochs: string[];
  fences: number;
  /**
   * What its table-changing txns did (RFC-0007 "Retention of rows", RFC-0011): the TTL set last
   * (null: none, or dropped since), trims and their newest bound, drops and upsert-key changes. A
   * --shallow audit reads only segments without rows, so it may miss some.
   */
  changes: TableChangesReport;
  /** Its `txnlog/` chain (RFC-0003); null when it has no `txnlog/` or `staged/` object. */
  txnLog: TxnLogAuditReport | null;
  findings: AuditFinding[];
}

export interface TableChangesReport {
  ttl: string | null;
  trims: number;
  /** The highest trim bound, ISO 8601 UTC; null without trims. */
  trimmedBefore: string | null;
  /** The txns that dropped the table, in chain order. */
  drops: string[];
  upsertKeyChanges: number;
}

export interface EpochAuditRecord {
  epoch: string;
  nodeId: string | null;
  url: string | null;
  reason: string | null;
  at: string | null;
}

export interface SnapshotAuditRecord {
  id: string;
  createdAt: string;
  tables: number;
  imageBytes: number;
}

export interface StoreAuditReport {
  /** No finding of severity `error`. */
  ok: boolean;
  /** True when every segment was fully decoded (checksums of every part). */
  deep: boolean;
  cluster: { clusterId: string; createdAt: string; createdBy: string } | null;
  epochs: EpochAuditRecord[];
  registry: { epoch: string; tables: number } | null;
  /** `sequencer.json`: null when the cluster is not sequenced (or the record is corrupt). */
  sequencer: SequencerAuditRecord | null;
  tables: TableAuditReport[];
  snapshots: SnapshotAuditRecord[];
  /** Node registrations read (null when no reader was given). */
  registrations: { nodes: number; unreadable: number } | null;
  /** Every finding, the tables' included, in the order found. */
  findings: AuditFinding[];
  /** Findings beyond AUDIT_FINDINGS_MAX: counted, not kept. */
  findingsDropped: number;
}

export interface StoreAuditOptions {
  /** Audit only these table names (their chains and snapshot entries); default every table. */
  tables?: string[];
  /** Decode every segment completely (default true); false reads only each header. */
  deep?: boolean;
  /** Called after every segment and every table. */
  onProgress?: (progress: AuditProgress) => void;
  /** Segment GETs in flight, 1..AUDIT_CONCURRENCY_MAX (default 8). */
  concurrency?: number;
  /** Reads `nodes/` (failover/'s listNodeRegistrations); registrations are not checked without it. */
  readRegistrations?: (
    store: ObjectStore,
  ) => Promise<{ nodes: unknown[]; unreadable: { key: string; problem: string }[] }>;
  signal?: AbortSignal;
}

// --- The audit ----------------------------------------------------------------------------------

/** Audits the cluster root of `store`; see the module comment. Throws only store errors and bad options. */
export async function auditStore(
  store: ObjectStore,
  options: StoreAuditOptions = {},
): Promise<StoreAuditReport> {
  const concurrency = options.concurrency ?? AUDIT_CONCURRENCY_DEFAULT;
  assert(
    Number.isSafeInteger(concurrency) && concurrency >= 1 && concurrency <= AUDIT_CONCURRENCY_MAX,
    `concurrency ${concurrency} is outside 1..${AUDIT_CONCURRENCY_MAX}`,
  );
  const sink = new FindingSink();
  const report: StoreAuditReport = {
    ok: true,
    deep: options.deep ?? true,
    cluster: null,
    epochs: [],
    registry: null,
    sequencer: null,
    tables: [],
    snapshots: [],
    registrations: null,
    findings: [],
    findingsDropped: 0,
  };
  const cluster = await auditCluster(store, sink);
  report.cluster =
    cluster === null
      ? null
      : { clusterId: cluster.clusterId, createdAt: cluster.createdAt, createdBy: cluster.createdBy };
  report.epochs = await auditEpochs(store, sink);
  const newestEpoch = report.epochs.reduce((max, e) => (BigInt(e.epoch) > max ? BigInt(e.epoch) : max), 0n);
  const registry = await auditRegistry(store, sink, newestEpoch);
  report.registry =
    registry === null ? null : { epoch: registry.epoch.toString(), tables: registry.tables.length };
  const sequencer = await auditSequencer(store, sink, cluster, newestEpoch);
  if (typeof sequencer === 'object') report.sequencer = sequencerAuditRecord(sequencer);
  const snapshots = await listSnapshots(
    store,
    options.signal === undefined ? {} : { signal: options.signal },
  );
  for (const { key, error } of snapshots.unreadable)
    sink.add({ severity: 'error', code: 'SNAPSHOT_CORRUPT', key, message: error.message });

  const only =
    options.tables === undefined ? undefined : new Set(options.tables.map((name) => tableKey(name)));
  const { keys: discovered, ignored } = await discoverTableKeys(store, options.signal);
  if (only === undefined) for (const name of ignored) await reportStrayTableObjects(store, name, sink);
  const registered = new Set(registry?.tables ?? []);
  const keys = [...new Set([...discovered, ...registered])]
    .sort()
    .filter((key) => only === undefined || only.has(key));
  if (only !== undefined) for (const key of only) if (!keys.includes(key)) keys.push(key);
  const context: ChainContext = {
    store,
    deep: report.deep,
    concurrency,
    newestEpoch,
    epochs: new Set(report.epochs.map((e) => e.epoch)),
    snapshots: snapshots.manifests.filter((m) => cluster === null || m.clusterId === cluster.clusterId),
    sequencer: typeof sequencer === 'object' ? sequencer : null,
    progress: { tablesDone: 0, tablesTotal: keys.length, segmentsDone: 0, bytesDone: 0 },
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  };
  for (const key of keys) {
    options.signal?.throwIfAborted();
    const table = await auditTable(context, key, registered.has(key));
    if (!registered.has(key) && registry !== null && table.segments > 0) {
      table.findings.push({
        severity: 'warning',
        code: 'UNREGISTERED_TABLE',
        key: `${TABLES_PREFIX}${key}/`,
        table: key,
        message: `table ${table.name} has segments but is not in ${TABLES_REGISTRY_KEY} (written before the registry existed, or registered by no primary)`,
      });
    }
    if (registry === null && table.segments > 0 && !report.tables.some((t) => t.segments > 0)) {
      sink.add({
        severity: 'warning',
        code: 'REGISTRY_MISSING',
        key: TABLES_REGISTRY_KEY,
        message: `no ${TABLES_REGISTRY_KEY}, yet tables have segments (written before the registry existed?)`,
      });
    }
    for (const finding of table.findings) sink.add(finding);
    table.findings = table.findings.slice(0, AUDIT_FINDINGS_MAX);
    report.tables.push(table);
    context.progress.tablesDone++;
    options.onProgress?.({ ...context.progress });
  }
  checkSequencerRecordPresent(sequencer, report.tables, sink);
  report.snapshots = await auditSnapshots(store, sink, snapshots.manifests, cluster, report.tables, only);
  if (only === undefined) await auditRoot(store, sink);
  if (options.readRegistrations !== undefined) {
    const listing = await options.readRegistrations(store);
    report.registrations = { nodes: listing.nodes.length, unreadable: listing.unreadable.length };
    for (const { key, problem } of listing.unreadable) {
      sink.add({
        severity: 'warning',
        code: 'NODE_REGISTRATION_UNREADABLE',
        key,
        message: `${key} ${problem}`,
      });
    }
  }
  report.findings = sink.findings;
  report.findingsDropped = sink.dropped;
  report.ok = !sink.hasError;
  return report;
}

// --- Cluster records ----------------------------------------------------------------------------

async function auditCluster(store: ObjectStore, sink: FindingSink): Promise<ClusterRecord | null> {
  const bytes = await readRecord(store, CLUSTER_KEY);
  if (bytes === null) {
    sink.add({
      severity: 'error',
      code: 'CLUSTER_MISSING',
      key: CLUSTER_KEY,
      message: `no ${CLUSTER_KEY}: this is not the root of a walship cluster`,
    });
    return null;
  }
  try {
    return parseClusterRecord(bytes);
  } catch (error) {
    sink.add({
      severity: 'error',
      code: 'CLUSTER_CORRUPT',
      key: CLUSTER_KEY,
      message: `${CLUSTER_KEY} cannot be read: ${(error as Error).message}`,
    });
    return null;
  }
}

/** The epoch records, in epoch order: every one must parse, and they must be 1..E without a hole. */
async function auditEpochs(store: ObjectStore, sink: FindingSink): Promise<EpochAuditRecord[]> {
  const found: bigint[] = [];
  for await (const info of listAll(store, EPOCHS_PREFIX)) {
    const epoch = epochOfKey(info.key);
    if (epoch === undefined)
      sink.add(orphan(info.key, 'is not an epoch record (epochs/<20 digits>.json)', 'warning'));
    else found.push(epoch);
  }
  const records: EpochAuditRecord[] = [];
  let expected = 1n;
  for (const epoch of found) {
    if (epoch > expected) {
      sink.add({
        severity: 'error',
        code: 'EPOCH_RECORD_MISSING',
        key: epochKey(expected),
        message: `no record of epoch${epoch - 1n > expected ? `s ${expected}..${epoch - 1n}` : ` ${expected}`}: epochs are claimed one after another`,
      });
    }
    expected = epoch + 1n;
    records.push(await readEpochRecord(store, epoch, sink));
  }
  return records;
}

async function readEpochRecord(
  store: ObjectStore,
  epoch: bigint,
  sink: FindingSink,
): Promise<EpochAuditRecord> {
  const key = epochKey(epoch);
  const record: EpochAuditRecord = {
    epoch: epoch.toString(),
    nodeId: null,
    url: null,
    reason: null,
    at: null,
  };
  const value = parseJson(await readRecord(store, key));
  if (!isRecord(value) || value.epoch !== epoch.toString() || typeof value.nodeId !== 'string') {
    sink.add({
      severity: 'error',
      code: 'EPOCH_RECORD_CORRUPT',
      key,
      message: `${key} is not a record of epoch ${epoch} ({epoch, nodeId, url, reason, at})`,
    });
    return record;
  }
  record.nodeId = value.nodeId;
  record.url = typeof value.url === 'string' ? value.url : null;
  record.reason = typeof value.reason === 'string' ? value.reason : null;
  record.at = typeof value.at === 'string' ? value.at : null;
  return record;
}

async function auditRegistry(
  store: ObjectStore,
  sink: FindingSink,
  newestEpoch: bigint,
): Promise<{ epoch: bigint; tables: TableKey[] } | null> {
  const bytes = await readRecord(store, TABLES_REGISTRY_KEY);
  if (bytes === null) return null;
  let registry: TableRegistry;
  try {
    registry = parseRegistry(bytes);
  } catch (error) {
    sink.add({
      severity: 'error',
      code: 'REGISTRY_CORRUPT',
      key: TABLES_REGISTRY_KEY,
      message: `${TABLES_REGISTRY_KEY} is not {epoch, tables: [key…]}: ${(error as Error).message}`,
    });
    return null;
  }
  const { epoch, tables } = registry;
  if (epoch > newestEpoch) {
    sink.add({
      severity: 'error',
      code: 'EPOCH_UNKNOWN',
      key: TABLES_REGISTRY_KEY,
      message: `${TABLES_REGISTRY_KEY} names epoch ${epoch}, but the newest epoch record is ${newestEpoch}`,
    });
  }
  const valid: TableKey[] = [];
  for (const key of tables) {
    if (isTableKey(key)) valid.push(key);
    else
      sink.add({
        severity: 'error',
        code: 'REGISTRY_CORRUPT',
        key: TABLES_REGISTRY_KEY,
        message: `${TABLES_REGISTRY_KEY} lists ${JSON.stringify(key)}, which is not a table key`,
      });
  }
  return { epoch, tables: valid };
}

// --- One table's chain --------------------------------------------------------------------------

type SegmentSummary =
  | {
      key: string;
      slotTxn: bigint;
      bytes: number;
      status: 'ok';
      txnFirst: bigint;
      txnLast: bigint;
      epoch: bigint;
      fence: boolean;
      changes: readonly TxnRecord[];
      tableName: string;
    }
  | { key: string; slotTxn: bigint; bytes: number; status: 'bad'; code: string; message: string }
  | { key: string; slotTxn: bigint; bytes: number; status: 'vanished' };

/**
 * Audits one table: its `wal/` chain, its `txnlog/` chain and `staged/` objects (RFC-0003), and
 * anything else under `tables/<key>/` (orphans). Each folder is listed page by page and its objects
 * are inspected at most `concurrency` at a time, in key (= txn) order.
 */
async function auditTable(
  context: ChainContext,
  key: TableKey,
  registered: boolean,
): Promise<TableAuditReport> {
  const chain = new Chain(key, context);
  await inspectInOrder(context, segmentPrefix(key), {
    slotOf: (objectKey) => {
      const slotTxn = txnFirstOfSegmentKey(objectKey);
      return slotTxn !== undefined && objectKey === segmentKey(key, slotTxn) ? slotTxn : undefined;
    },
    stray: (objectKey) =>
      addBounded(chain.findings, {
        ...orphan(
          objectKey,
          `is no segment of table ${chain.name} (${segmentPrefix(key)}<20 digits>.seg)`,
          'error',
        ),
        table: key,
      }),
    inspect: (info, slotTxn) => inspectSegment(context, key, info, slotTxn),
    accept: (summary) => chain.accept(summary),
  });
  const table = chain.finish(registered);
  const log = await auditTxnLog(context, table);
  await reportTableStrays(context.store, key, table.findings);
  table.txnLog = log.finish();
  return table;
}

async function inspectSegment(
  context: ChainContext,
  key: string,
  info: ObjectInfo,
  slotTxn: bigint,
): Promise<SegmentSummary> {
  const got = await context.store.get(info.key);
  if (got === null) return { key: info.key, slotTxn, bytes: 0, status: 'vanished' };
  assert(got.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  const base = { key: info.key, slotTxn, bytes: got.body.byteLength };
  try {
    if (context.deep) {
      const { header, txns } = await verifySegment(got.body, {
        objectKey: info.key,
        tableKey: key,
        txnFirst: slotTxn,
      });
      return okSegment(base, header, txns);
    }
    const header = decodeSegmentHeader(got.body);
    if (header.staged) {
      return {
        ...base,
        status: 'bad',
        code: 'SEGMENT_STAGED',
        message: `${info.key} is a staged segment (writer ${JSON.stringify(header.writerNodeId)}, writer epoch ${header.epoch}) sitting in the numbered chain: only a txn-log entry can place it (RFC-0003)`,
      };
    }
    if (tableKey(header.tableName) !== key) {
      return {
        ...base,
        status: 'bad',
        code: 'SEGMENT_WRONG_TABLE',
        message: `${info.key} holds table ${JSON.stringify(header.tableName)}, not the table stored under key ${key}`,
      };
    }
    if (header.txnFirst !== slotTxn) {
      return {
        ...base,
        status: 'bad',
        code: 'SEGMENT_MISPLACED',
        message: `${info.key} starts at txn ${header.txnFirst} but sits in the slot of txn ${slotTxn}`,
      };
    }
    // Header only, but a segment without rows is small: decoded, it tells a fence from a TTL, a
    // trim, a drop or upsert keys (RFC-0002, RFC-0007).
    if (header.rowCount === 0) {
      const { txns } = await verifySegment(got.body, {
        objectKey: info.key,
        tableKey: key,
        txnFirst: slotTxn,
      });
      return okSegment(base, header, txns);
    }
    return okSegment(base, header, []);
  } catch (error) {
    return { ...base, status: 'bad', ...segmentProblem(error, info.key, SEGMENT_CODES) };
  }
}

function okSegment(
  base: { key: string; slotTxn: bigint; bytes: number },
  header: SegmentHeader,
  txns: readonly TxnRecord[],
): SegmentSummary {
  return {
    ...base,
    status: 'ok',
    txnFirst: header.txnFirst,
    txnLast: header.txnLast,
    epoch: header.epoch,
    fence: txns.some((txn) => txn.kind === 'fence'),
    changes: txns.filter((txn) => txn.kind !== 'data' && txn.kind !== 'fence'),
    tableName: header.tableName,
  };
}

/** The codes a `wal/` segment's data error keeps; any other is SEGMENT_UNREADABLE. */
const SEGMENT_CODES = ['SEGMENT_CORRUPT', 'SEGMENT_WRONG_TABLE', 'SEGMENT_MISPLACED', 'SEGMENT_STAGED'];

/** The chain invariants, checked one segment summary at a time in key order. */
class Chain {
  readonly name: string;
  readonly findings: AuditFinding[] = [];
  #segments = 0;
  #bytes = 0;
  #fences = 0;
  readonly #changes: TableChangesReport = {
    ttl: null,
    trims: 0,
    trimmedBefore: null,
    drops: [],
    upsertKeyChanges: 0,
  };
  #trimmedBelow: bigint | undefined;
  #first: bigint | undefined;
  #last: bigint | undefined;
  /** The txn the next segment must start at; undefined before the first and after a bad segment. */
  #next: bigint | undefined;
  #epochMax = 0n;
  #epochs: string[] = [];

  constructor(
    readonly key: TableKey,
    readonly context: ChainContext,
  ) {
    this.name = decodeTableKey(key);
  }

  accept(segment: SegmentSummary): void {
    this.#segments++;
    this.#bytes += segment.bytes;
    if (segment.status === 'vanished') {
      this.#add(
        'warning',
        'SEGMENT_VANISHED',
        segment.key,
        `${segment.key} was listed but was gone when read (deleted meanwhile: is GC running?)`,
      );
      this.#next = undefined;
      return;
    }
    if (
      segment.status === 'bad' &&
      (segment.code === 'SEGMENT_MISPLACED' || segment.code === 'SEGMENT_WRONG_TABLE')
    ) {
      // Readable, but no part of this chain at this slot: the chain goes on as if it were absent.
      this.#add('error', segment.code, segment.key, segment.message);
      return;
    }
    if (segment.status === 'bad') {
      this.#checkContiguity(segment.slotTxn, undefined, segment.key);
      this.#add('error', segment.code, segment.key, segment.message);
      // Its end is unknown: contiguity is checked again from the next readable segment on.
      this.#next = undefined;
      this.#first ??= segment.slotTxn;
      return;
    }
    this.#checkContiguity(segment.txnFirst, segment.txnLast, segment.key);
    this.#checkEpoch(segment);
    for (const change of segment.changes) this.#change(change);
    this.#first ??= segment.txnFirst;
    if (this.#last === undefined || segment.txnLast > this.#last) this.#last = segment.txnLast;
    if (this.#next === undefined || segment.txnLast + 1n > this.#next) this.#next = segment.txnLast + 1n;
  }

  /** `txnLast` undefined: a segment that could not be read, known only by its slot. */
  #checkContiguity(txnFirst: bigint, txnLast: bigint | undefined, key: string): void {
    if (this.#first === undefined) {
      if (txnFirst > 1n && !coveredBySnapshot(this.context, this.key, txnFirst - 1n))
        this.#missing(1n, txnFirst - 1n);
      return;
    }
    if (this.#next === undefined) return;
    if (txnFirst > this.#next) this.#missing(this.#next, txnFirst - 1n);
    else if (txnFirst < this.#next) {
      const holds =
        txnLast === undefined ? `starts at txn ${txnFirst}` : `holds txns ${txnFirst}..${txnLast}`;
      this.#add(
        'error',
        'SEGMENT_OVERLAP',
        key,
        `${key} ${holds}, but the segments before it already hold txns up to ${this.#next - 1n}`,
      );
    }
  }

  #missing(first: bigint, last: bigint): void {
    const expected = segmentKey(this.key, first);
    const txns = first === last ? `txn ${first}` : `txns ${first}..${last}`;
    this.#add(
      'error',
      'SEGMENT_MISSING',
      expected,
      `table ${this.name}: ${txns} are in no segment (expected ${expected})`,
    );
  }

  #checkEpoch(segment: Extract<SegmentSummary, { status: 'ok' }>): void {
    const { epoch, key } = segment;
    if (epoch < this.#epochMax) {
      this.#add(
        'error',
        'EPOCH_REGRESSION',
        key,
        `${key} was written in epoch ${epoch} after segments of epoch ${this.#epochMax}: a replaced primary wrote it after the fence`,
      );
    }
    if (epoch > this.context.newestEpoch) {
      this.#add(
        'error',
        'EPOCH_UNKNOWN',
        key,
        `${key} was written in epoch ${epoch}, newer than the newest epoch record (${this.context.newestEpoch})`,
      );
    } else if (segment.fence && !this.context.epochs.has(epoch.toString())) {
      this.#add(
        'error',
        'EPOCH_RECORD_MISSING',
        key,
        `${key} fences the table for epoch ${epoch}, which has no readable record ${epochKey(epoch)}`,
      );
    }
    if (epoch > this.#epochMax && this.#epochMax > 0n && !segment.fence) {
      this.#add(
        'warning',
        'EPOCH_UNFENCED',
        key,
        `${key} moves the table from epoch ${this.#epochMax} to ${epoch} without a fence segment (RFC-0002 P4)`,
      );
    }
    if (segment.fence) this.#fences++;
    if (epoch > this.#epochMax) this.#epochMax = epoch;
    if (this.#epochs.at(-1) !== epoch.toString()) this.#epochs.push(epoch.toString());
  }

  #change(txn: TxnRecord): void {
    const changes = this.#changes;
    if (txn.kind === 'ttl') changes.ttl = ttlText(txn.ttl);
    else if (txn.kind === 'dedup') changes.upsertKeyChanges++;
    else if (txn.kind === 'drop') {
      if (changes.drops.length < MAX_DROPS_LISTED) changes.drops.push(txn.txn.toString());
      changes.ttl = null;
    } else if (txn.kind === 'trim') {
      changes.trims++;
      if (this.#trimmedBelow === undefined || txn.trimBeforeUs! > this.#trimmedBelow) {
        this.#trimmedBelow = txn.trimBeforeUs!;
        changes.trimmedBefore = formatTimestampUs(this.#trimmedBelow);
      }
    }
  }

  #add(severity: AuditSeverity, code: string, key: string, message: string): void {
    addBounded(this.findings, { severity, code, key, table: this.key, message });
  }

  finish(registered: boolean): TableAuditReport {
    return {
      name: this.name,
      key: this.key,
      registered,
      segments: this.#segments,
      txns:
        this.#first === undefined
          ? null
          : { first: this.#first.toString(), last: (this.#last ?? this.#first - 1n).toString() },
      bytes: this.#bytes,
      epochs: this.#epochs,
      fences: this.#fences,
      changes: this.#changes,
      txnLog: null,
      findings: this.findings,
    };
  }
}

// --- Snapshots, strays and the root ---------------------------------------------------------------

async function auditSnapshots(
  store: ObjectStore,
  sink: FindingSink,
  manifests: SnapshotManifest[],
  cluster: ClusterRecord | null,
  tables: TableAuditReport[],
  only: Set<string> | undefined,
): Promise<SnapshotAuditRecord[]> {
  const chainEnd = new Map(tables.map((t) => [t.key, lastTxnOf(t)]));
  const records: SnapshotAuditRecord[] = [];
  for (const manifest of manifests) {
    const key = snapshotManifestKey(manifest.id);
    records.push({
      id: manifest.id,
      createdAt: manifest.createdAt,
      tables: manifest.tables.length,
      imageBytes: manifest.image.bytes,
    });
    if (cluster !== null && manifest.clusterId !== cluster.clusterId) {
      sink.add({
        severity: 'warning',
        code: 'SNAPSHOT_FOREIGN',
        key,
        message: `snapshot ${manifest.id} belongs to cluster ${manifest.clusterId}, not ${cluster.clusterId}: it is never restored here`,
      });
      continue;
    }
    const image = await store.head(manifest.image.key);
    if (image === null || image.sizeBytes !== manifest.image.bytes) {
      const problem =
        image === null
          ? 'is missing'
          : `is ${image.sizeBytes} bytes, the manifest says ${manifest.image.bytes}`;
      sink.add({
        severity: 'error',
        code: 'SNAPSHOT_IMAGE_MISSING',
        key: manifest.image.key,
        message: `the image of snapshot ${manifest.id} ${problem}`,
      });
    }
    for (const table of manifest.tables) {
      if (only !== undefined && !only.has(table.key)) continue;
      const end = chainEnd.get(table.key) ?? 0n;
      if (table.lastTxn > end) {
        sink.add({
          severity: 'error',
          code: 'SNAPSHOT_AHEAD',
          key,
          message: `snapshot ${manifest.id} holds table ${table.name} at txn ${table.lastTxn}, but its chains end at txn ${end}`,
        });
      }
    }
  }
  return records;
}

/** The table's last txn in either chain (0 without any). */
function lastTxnOf(table: TableAuditReport): bigint {
  const wal = table.txns === null ? 0n : BigInt(table.txns.last);
  const log = table.txnLog?.txns == null ? 0n : BigInt(table.txnLog.txns.last);
  return wal > log ? wal : log;
}

/** Objects under `tables/<name>` for a name no table key can be: every one is an orphan. */
async function reportStrayTableObjects(store: ObjectStore, name: string, sink: FindingSink): Promise<void> {
  const prefix = `${TABLES_PREFIX}${name}`;
  for await (const info of listAll(store, prefix)) {
    if (info.key !== prefix && !info.key.startsWith(`${prefix}/`)) break;
    sink.add(orphan(info.key, `belongs to no table (${JSON.stringify(name)} is not a table key)`, 'error'));
  }
}

/** The layout's top-level names (DESIGN §3); anything else at the root is a warning. */
const ROOT_NAMES = new Set([
  CLUSTER_KEY,
  SEQUENCER_RECORD_KEY,
  HEAD_KEY,
  TABLES_REGISTRY_KEY,
  LEASE_KEY,
  ...[EPOCHS_PREFIX, TABLES_PREFIX, NODES_PREFIX, SNAPSHOTS_PREFIX].map((p) => p.slice(0, -1)),
]);

/**
 * A skip scan of the root's top-level names, one LIST of one key each: a root holds a handful of
 * names (DESIGN §3), and a wrong one is found whatever its objects are called.
 */
async function auditRoot(store: ObjectStore, sink: FindingSink): Promise<void> {
  let startAfter: string | undefined;
  for (let seen = 0; seen < ROOT_NAMES_MAX; seen++) {
    const page = await store.list('', { limit: 1, ...(startAfter === undefined ? {} : { startAfter }) });
    const first = page.objects[0];
    if (first === undefined) return;
    const name = first.key.split('/')[0]!;
    if (!ROOT_NAMES.has(name))
      sink.add(
        orphan(
          first.key,
          `is under ${JSON.stringify(name)}, which is no part of a cluster root's layout`,
          'warning',
        ),
      );
    startAfter = first.key === name ? name : `${name}0`;
  }
}

/**
 * Objects under `tables/<key>/` beside its `wal/`, `txnlog/` and `staged/` folders: each is an
 * orphan. A skip scan: on meeting a folder it LISTs again after `<folder>0` (`0` sorts right after
 * `/`), so the folders, already walked, cost one key each (a key named exactly `<folder>0` is missed).
 */
async function reportTableStrays(store: ObjectStore, key: TableKey, findings: AuditFinding[]): Promise<void> {
  const prefix = `${TABLES_PREFIX}${key}/`;
  const folders = [stagedPrefix(key), txnLogPrefix(key), segmentPrefix(key)];
  let startAfter: string | undefined;
  for (;;) {
    const page = await store.list(prefix, {
      limit: STRAY_PAGE_KEYS,
      ...(startAfter === undefined ? {} : { startAfter }),
    });
    let skipTo: string | undefined;
    for (const info of page.objects) {
      const folder = folders.find((f) => info.key.startsWith(f));
      if (folder !== undefined) {
        skipTo = `${folder.slice(0, -1)}0`;
        break;
      }
      addBounded(findings, {
        ...orphan(
          info.key,
          `is no part of table ${decodeTableKey(key)}'s layout (wal/, txnlog/, staged/)`,
          'error',
        ),
        table: key,
      });
      startAfter = info.key;
    }
    if (skipTo !== undefined) startAfter = skipTo;
    else if (page.nextToken === undefined || page.objects.length === 0) return;
  }
}

// --- Helpers ------------------------------------------------------------------------------------

function parseJson(bytes: Uint8Array | null): unknown {
  if (bytes === null) return undefined;
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
