/**
 * `walship verify --store`: a read-only audit of a whole cluster root (issue 7, part 4). It walks
 * what the replica trusts — cluster.json, the epoch records, tables.json, every table's segment
 * chain, the snapshots — and reports every broken invariant of RFC-0001, RFC-0002 and RFC-0005 as
 * a finding instead of throwing: contiguity (txns 1..N, each once), checksums (the replica's own
 * `verifySegment`), epochs that never go back along a chain, fences whose epoch was claimed, and
 * objects that are no part of the layout (orphans).
 *
 * A sequenced cluster (RFC-0003) adds `sequencer.json` and, per table, a `txnlog/` chain audited
 * like `wal/`: contiguous entries that decode, each naming a staged object that exists and (deep)
 * verifies against it; the chain starts right after the table's `wal/` chain (`startAfter`).
 * Staged objects no entry names are warnings: a live writer always has some in flight.
 *
 * Memory is bounded: segments are listed page by page and each is decoded, summarised and dropped;
 * at most `concurrency` GETs are in flight. A store error (after the store's own retries) is
 * thrown as it comes (kind `unavailable`); bad data never is.
 *
 * The cluster records are parsed here rather than through primary/ (readRegistry, readEpoch): an
 * audit must report a malformed record as a finding, where the write path rightly refuses to run.
 * Node registrations belong to failover/, which imports this module: the caller passes a reader.
 * The sequencer's record and log entry codecs are imported as modules, not through sequencer/'s
 * door, which would pull in the sequencer's follower (it imports replica/) and risk a cycle.
 */
import { assert, isWalshipError } from '../core/index.js';
import { listAll, type ObjectInfo, type ObjectStore } from '../objectstore/index.js';
import {
  decodeSequencerRecord,
  SEQUENCER_RECORD_BYTES_MAX,
  type SequencerRecord,
} from '../sequencer/sequencer-record.js';
import type { LogEntry } from '../sequencer/sequencer-store.js';
import { decodeTxnLogEntry, TXN_LOG_ENTRY_BYTES_MAX } from '../sequencer/txn-log-entry.js';
import { decodeTableKey, tableKey } from '../table/index.js';
import {
  CLUSTER_KEY,
  type ClusterRecord,
  decodeSegmentHeader,
  EPOCHS_PREFIX,
  epochKey,
  epochOfKey,
  HEAD_KEY,
  LEASE_KEY,
  NODES_PREFIX,
  parseClusterRecord,
  parseStagedKey,
  parseTxnLogKey,
  SEQUENCER_RECORD_KEY,
  type SegmentHeader,
  SNAPSHOTS_PREFIX,
  type StagedKeyParts,
  segmentKey,
  segmentPrefix,
  snapshotManifestKey,
  stagedPrefix,
  TABLES_PREFIX,
  TABLES_REGISTRY_KEY,
  txnFirstOfSegmentKey,
  txnLogKey,
  txnLogPrefix,
} from '../wal/index.js';
import { verifySegment, verifyStagedSegment } from './segment-verifier.js';
import { listSnapshots, type SnapshotManifest } from './snapshots.js';
import { discoverTableKeys } from './store-scan.js';

// --- Bounds -------------------------------------------------------------------------------------

/** Segment GETs in flight by default: enough to hide a store's latency, few segments in memory. */
export const AUDIT_CONCURRENCY_DEFAULT = 8;
/** The most GETs in flight: each holds a whole segment (up to 257 MiB at the format's limit). */
export const AUDIT_CONCURRENCY_MAX = 64;
/** Findings kept per table and for the whole store; the rest are only counted (`findingsDropped`). */
export const AUDIT_FINDINGS_MAX = 1_000;
/** The most bytes read of a JSON record (cluster.json, an epoch record, tables.json). */
const RECORD_BYTES_MAX = 16 * 1024 * 1024;
/** Top-level names walked by the skip scan of the root (each costs one LIST). */
const ROOT_NAMES_MAX = 1_000;
/**
 * Runs of batch numbers remembered per table to tell committed staged objects from uncommitted
 * ones (~100 bytes each, so ≤ ~50 MB). A writer epoch's batches for one table form one run when
 * every batch touches the table; beyond the bound staged objects are counted but not judged.
 */
const COMMITTED_BATCH_RUNS_MAX = 500_000;
/** Keys per LIST page of the scan for strays beside a table's folders (usually one page). */
const STRAY_PAGE_KEYS = 100;
/** Writer ids kept per table in the report (a cluster has a handful of writers). */
const WRITERS_LISTED_MAX = 100;

// --- The report ---------------------------------------------------------------------------------

export type AuditSeverity = 'error' | 'warning';

/**
 * One broken invariant. Codes are stable: SEGMENT_MISSING, SEGMENT_OVERLAP, SEGMENT_CORRUPT,
 * SEGMENT_MISPLACED, SEGMENT_WRONG_TABLE, SEGMENT_UNREADABLE, SEGMENT_VANISHED, EPOCH_REGRESSION,
 * EPOCH_UNKNOWN, EPOCH_UNFENCED, EPOCH_RECORD_MISSING, EPOCH_RECORD_CORRUPT, CLUSTER_MISSING,
 * CLUSTER_CORRUPT, REGISTRY_MISSING, REGISTRY_CORRUPT, UNREGISTERED_TABLE, ORPHAN,
 * SNAPSHOT_CORRUPT, SNAPSHOT_IMAGE_MISSING, SNAPSHOT_FOREIGN, SNAPSHOT_AHEAD,
 * NODE_REGISTRATION_UNREADABLE; for sequenced clusters (RFC-0003) SEQUENCER_RECORD_CORRUPT,
 * SEQUENCER_RECORD_MISSING, SEQUENCER_CLUSTER_MISMATCH, SEQUENCER_START_MISMATCH,
 * TXN_LOG_MISSING, TXN_LOG_OVERLAP, TXN_LOG_ENTRY_CORRUPT, TXN_LOG_VANISHED, TXN_LOG_BATCH_ORDER,
 * STAGED_MISSING, STAGED_UNCOMMITTED, STAGED_UNCHECKED, and a staged object that does not verify
 * against its entry: SEGMENT_CORRUPT, SEGMENT_ENTRY_MISMATCH, SEGMENT_NOT_STAGED,
 * SEGMENT_WRONG_TABLE, SEGMENT_MISPLACED, SEGMENT_UNREADABLE (the key is then the staged object's).
 * SEGMENT_STAGED: a staged segment sitting in the `wal/` chain.
 */
export interface AuditFinding {
  severity: AuditSeverity;
  code: string;
  /** The object it is about; null when it is about something absent from no one key. */
  key: string | null;
  /** The table's store key when the finding is about one table. */
  table?: string;
  message: string;
}

/** One table's chain. Txn numbers are decimal strings (the report is JSON). */
export interface TableAuditReport {
  /** The table name its key decodes to. */
  name: string;
  key: string;
  registered: boolean;
  segments: number;
  /** The first txn of the first segment and the last of the last; null without segments. */
  txns: { first: string; last: string } | null;
  bytes: number;
  /** Distinct epochs of its segments, in chain order. */
  epochs: string[];
  fences: number;
  /** Its `txnlog/` chain (RFC-0003); null when it has no `txnlog/` or `staged/` object. */
  txnLog: TxnLogAuditReport | null;
  findings: AuditFinding[];
}

/** One table's `txnlog/` chain and `staged/` objects. */
export interface TxnLogAuditReport {
  entries: number;
  /** The first txn of the first entry and the last of the last; null without entries. */
  txns: { first: string; last: string } | null;
  /** Bytes of the staged objects the entries name, as read. */
  bytes: number;
  /** Writer ids of the entries, in order of first appearance (at most WRITERS_LISTED_MAX). */
  writers: string[];
  /** Objects under `staged/`. */
  staged: number;
  /** Staged objects no entry names (uncommitted, or orphans of a closed writer epoch). */
  uncommitted: number;
}

/** `sequencer.json`, when readable. */
export interface SequencerAuditRecord {
  clusterId: string;
  epoch: string;
  /** Tables whose `wal/` chain it continues (its `startAfter`). */
  tables: number;
  at: string;
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

export interface AuditProgress {
  tablesDone: number;
  tablesTotal: number;
  /** Segments and txn-log entries inspected. */
  segmentsDone: number;
  bytesDone: number;
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
  if (typeof sequencer === 'object') {
    report.sequencer = {
      clusterId: sequencer.clusterId,
      epoch: sequencer.epoch.toString(),
      tables: sequencer.startAfter.size,
      at: sequencer.at,
    };
  }
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
  if (sequencer === 'absent' && report.tables.some((t) => t.txnLog !== null)) {
    sink.add({
      severity: 'error',
      code: 'SEQUENCER_RECORD_MISSING',
      key: SEQUENCER_RECORD_KEY,
      message: `tables have txnlog/ or staged/ objects, but there is no ${SEQUENCER_RECORD_KEY}: no replica follows them (run \`walship sequencer init\`?)`,
    });
  }
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

/** Findings in order, bounded; remembers whether any was an error even when dropped. */
class FindingSink {
  readonly findings: AuditFinding[] = [];
  dropped = 0;
  hasError = false;
  add(finding: AuditFinding): void {
    if (finding.severity === 'error') this.hasError = true;
    if (this.findings.length < AUDIT_FINDINGS_MAX) this.findings.push(finding);
    else this.dropped++;
  }
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
): Promise<{ epoch: bigint; tables: string[] } | null> {
  const bytes = await readRecord(store, TABLES_REGISTRY_KEY);
  if (bytes === null) return null;
  const value = parseJson(bytes);
  const epoch =
    isRecord(value) && typeof value.epoch === 'string' && /^\d{1,20}$/.test(value.epoch)
      ? BigInt(value.epoch)
      : undefined;
  const tables =
    isRecord(value) && Array.isArray(value.tables) && value.tables.every((t) => typeof t === 'string')
      ? (value.tables as string[])
      : undefined;
  if (epoch === undefined || tables === undefined) {
    sink.add({
      severity: 'error',
      code: 'REGISTRY_CORRUPT',
      key: TABLES_REGISTRY_KEY,
      message: `${TABLES_REGISTRY_KEY} is not {epoch, tables: [key…]}`,
    });
    return null;
  }
  if (epoch > newestEpoch) {
    sink.add({
      severity: 'error',
      code: 'EPOCH_UNKNOWN',
      key: TABLES_REGISTRY_KEY,
      message: `${TABLES_REGISTRY_KEY} names epoch ${epoch}, but the newest epoch record is ${newestEpoch}`,
    });
  }
  const valid: string[] = [];
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

/**
 * `sequencer.json` (RFC-0003): absent in a single-primary cluster; when present it must decode,
 * name this cluster and an epoch that was claimed.
 */
async function auditSequencer(
  store: ObjectStore,
  sink: FindingSink,
  cluster: ClusterRecord | null,
  newestEpoch: bigint,
): Promise<SequencerRecord | 'absent' | 'corrupt'> {
  const bytes = await readRecord(store, SEQUENCER_RECORD_KEY, SEQUENCER_RECORD_BYTES_MAX + 1);
  if (bytes === null) return 'absent';
  let record: SequencerRecord;
  try {
    record = decodeSequencerRecord(bytes);
  } catch (error) {
    if (!isWalshipError(error) || error.kind !== 'data') throw error;
    sink.add({
      severity: 'error',
      code: 'SEQUENCER_RECORD_CORRUPT',
      key: SEQUENCER_RECORD_KEY,
      message: `${error.message}: writers refuse to start and replicas cannot tell where txnlog/ begins`,
    });
    return 'corrupt';
  }
  if (cluster !== null && record.clusterId !== cluster.clusterId) {
    sink.add({
      severity: 'error',
      code: 'SEQUENCER_CLUSTER_MISMATCH',
      key: SEQUENCER_RECORD_KEY,
      message: `${SEQUENCER_RECORD_KEY} binds cluster ${record.clusterId}, but ${CLUSTER_KEY} is cluster ${cluster.clusterId}`,
    });
  }
  if (record.epoch > newestEpoch) {
    sink.add({
      severity: 'error',
      code: 'EPOCH_UNKNOWN',
      key: SEQUENCER_RECORD_KEY,
      message: `${SEQUENCER_RECORD_KEY} was written in epoch ${record.epoch}, but the newest epoch record is ${newestEpoch}`,
    });
  }
  return record;
}

// --- One table's chain --------------------------------------------------------------------------

interface ChainContext {
  store: ObjectStore;
  deep: boolean;
  concurrency: number;
  newestEpoch: bigint;
  /** Epochs with a readable record, as decimal strings. */
  epochs: Set<string>;
  /** This cluster's readable snapshots: a chain may start after txn 1 where one covers the gap. */
  snapshots: SnapshotManifest[];
  /** `sequencer.json` when readable: where each table's `txnlog/` chain starts. */
  sequencer: SequencerRecord | null;
  progress: AuditProgress;
  onProgress?: (progress: AuditProgress) => void;
}

/** What one segment object says, or why it says nothing; never holds the decoded txns. */
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
  key: string,
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
  checkSequencerStart(context, table);
  const log = new TxnLogChain(key, context, table.findings, table.txns !== null);
  await inspectInOrder(context, txnLogPrefix(key), {
    slotOf: (objectKey) => {
      const slotTxn = parseTxnLogKey(objectKey)?.txnFirst;
      return slotTxn !== undefined && objectKey === txnLogKey(key, slotTxn) ? slotTxn : undefined;
    },
    stray: (objectKey) =>
      addBounded(table.findings, {
        ...orphan(
          objectKey,
          `is no log entry of table ${chain.name} (${txnLogPrefix(key)}<20 digits>.json)`,
          'error',
        ),
        table: key,
      }),
    inspect: (info, slotTxn) => inspectEntry(context, info, slotTxn),
    accept: (summary) => log.accept(summary),
  });
  for await (const info of listAll(context.store, stagedPrefix(key))) {
    const parts = parseStagedKey(info.key);
    if (parts === undefined || parts.tableKey !== key) {
      addBounded(table.findings, {
        ...orphan(
          info.key,
          `is no staged segment of table ${chain.name} (${stagedPrefix(key)}<writer>/<20 digits>/<20 digits>.seg)`,
          'error',
        ),
        table: key,
      });
    } else log.acceptStaged(info.key, parts);
  }
  await reportTableStrays(context.store, key, table.findings);
  table.txnLog = log.finish();
  return table;
}

/** The steps of inspectInOrder for one kind of chain object. */
interface ChainInspection<S extends { bytes: number }> {
  /** The txn of the slot `objectKey` names, or undefined for a key that is no object of this chain. */
  slotOf(objectKey: string): bigint | undefined;
  /** Reports a key under the chain's folder that slotOf refused. */
  stray(objectKey: string): void;
  inspect(info: ObjectInfo, slotTxn: bigint): Promise<S>;
  /** Called in key order, one summary at a time. */
  accept(summary: S): void;
}

/** Lists `prefix` and inspects each object, at most `concurrency` at a time, accepting them in key order. */
async function inspectInOrder<S extends { bytes: number }>(
  context: ChainContext,
  prefix: string,
  steps: ChainInspection<S>,
): Promise<void> {
  const inFlight: Promise<{ summary: S } | { error: unknown }>[] = [];
  const take = async () => {
    const result = await inFlight.shift()!;
    if ('error' in result) throw result.error;
    steps.accept(result.summary);
    context.progress.segmentsDone++;
    context.progress.bytesDone += result.summary.bytes;
    context.onProgress?.({ ...context.progress });
  };
  for await (const info of listAll(context.store, prefix)) {
    const slotTxn = steps.slotOf(info.key);
    if (slotTxn === undefined) {
      steps.stray(info.key);
      continue;
    }
    // Settled into a value, never a rejection, so a failure waiting its turn is not "unhandled".
    inFlight.push(
      steps.inspect(info, slotTxn).then(
        (summary) => ({ summary }),
        (error: unknown) => ({ error }),
      ),
    );
    if (inFlight.length >= context.concurrency) await take();
  }
  while (inFlight.length > 0) await take();
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
      const fence = txns.some((txn) => txn.kind === 'fence');
      return {
        ...base,
        status: 'ok',
        txnFirst: header.txnFirst,
        txnLast: header.txnLast,
        epoch: header.epoch,
        fence,
        tableName: header.tableName,
      };
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
    // Header only: a fence is the one segment kind of one txn and no rows (RFC-0002).
    const fence = header.txnCount === 1 && header.rowCount === 0;
    return {
      ...base,
      status: 'ok',
      txnFirst: header.txnFirst,
      txnLast: header.txnLast,
      epoch: header.epoch,
      fence,
      tableName: header.tableName,
    };
  } catch (error) {
    if (!isWalshipError(error) || error.kind === 'unavailable') throw error;
    const code = error.code === 'CORRUPT_SEGMENT' ? 'SEGMENT_CORRUPT' : error.code;
    const message = error.message.startsWith(info.key)
      ? error.message
      : `${info.key} is unreadable: ${error.message}`;
    return { ...base, status: 'bad', code: knownSegmentCode(code), message };
  }
}

function knownSegmentCode(code: string): string {
  return ['SEGMENT_CORRUPT', 'SEGMENT_WRONG_TABLE', 'SEGMENT_MISPLACED', 'SEGMENT_STAGED'].includes(code)
    ? code
    : 'SEGMENT_UNREADABLE';
}

/** The chain invariants, checked one segment summary at a time in key order. */
class Chain {
  readonly name: string;
  readonly findings: AuditFinding[] = [];
  #segments = 0;
  #bytes = 0;
  #fences = 0;
  #first: bigint | undefined;
  #last: bigint | undefined;
  /** The txn the next segment must start at; undefined before the first and after a bad segment. */
  #next: bigint | undefined;
  #epochMax = 0n;
  #epochs: string[] = [];

  constructor(
    readonly key: string,
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

  #add(severity: AuditSeverity, code: string, key: string, message: string): void {
    if (this.findings.length < AUDIT_FINDINGS_MAX)
      this.findings.push({ severity, code, key, table: this.key, message });
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
      txnLog: null,
      findings: this.findings,
    };
  }
}

/** A chain may start past its first txn when retention removed what a snapshot of this cluster holds. */
function coveredBySnapshot(context: ChainContext, key: string, txn: bigint): boolean {
  return context.snapshots.some((m) => m.tables.some((t) => t.key === key && t.lastTxn >= txn));
}

// --- One table's txn log (RFC-0003) -------------------------------------------------------------

/**
 * A sequenced table's `wal/` chain ends where `sequencer.json` says (its adoption fence): after it
 * the sequencer numbers the table, and a `wal/` txn past it would be numbered twice.
 */
function checkSequencerStart(context: ChainContext, table: TableAuditReport): void {
  const record = context.sequencer;
  if (record === null || table.txns === null) return;
  const startAfter = record.startAfter.get(table.key) ?? 0n;
  const walLast = BigInt(table.txns.last);
  if (walLast === startAfter) return;
  const problem =
    walLast > startAfter
      ? `its wal/ chain holds txns up to ${walLast}, but ${SEQUENCER_RECORD_KEY} numbers it in txnlog/ from txn ${startAfter + 1n}: those txns are numbered twice`
      : `its wal/ chain ends at txn ${walLast}, but ${SEQUENCER_RECORD_KEY} says it ends at txn ${startAfter} (its adoption fence): txns ${walLast + 1n}..${startAfter} are in no segment`;
  addBounded(table.findings, {
    severity: 'error',
    code: 'SEQUENCER_START_MISMATCH',
    key: SEQUENCER_RECORD_KEY,
    table: table.key,
    message: `table ${table.name}: ${problem}`,
  });
}

/** What one log entry and its staged object say; never holds the decoded txns. */
type EntrySummary =
  | {
      key: string;
      slotTxn: bigint;
      /** The staged object's bytes read. */
      bytes: number;
      status: 'ok';
      entry: LogEntry;
      /** Why the staged object is not the one the entry numbered; null when it is. */
      staged: { code: string; message: string } | null;
    }
  | { key: string; slotTxn: bigint; bytes: 0; status: 'bad'; message: string }
  | { key: string; slotTxn: bigint; bytes: 0; status: 'vanished' };

async function inspectEntry(context: ChainContext, info: ObjectInfo, slotTxn: bigint): Promise<EntrySummary> {
  // One byte past the limit, so an oversized entry is refused as such rather than cut.
  const bytes = await readRecord(context.store, info.key, TXN_LOG_ENTRY_BYTES_MAX + 1);
  if (bytes === null) return { key: info.key, slotTxn, bytes: 0, status: 'vanished' };
  let entry: LogEntry;
  try {
    entry = decodeTxnLogEntry(bytes, info.key);
  } catch (error) {
    if (!isWalshipError(error) || error.kind !== 'data') throw error;
    return { key: info.key, slotTxn, bytes: 0, status: 'bad', message: error.message };
  }
  const staged = await inspectStaged(context, entry);
  return { key: info.key, slotTxn, bytes: staged.bytes, status: 'ok', entry, staged: staged.problem };
}

/** GETs the entry's staged object and checks it is the one the entry numbered (deep: every byte). */
async function inspectStaged(
  context: ChainContext,
  entry: LogEntry,
): Promise<{ bytes: number; problem: { code: string; message: string } | null }> {
  const objectKey = entry.staged;
  const got = await context.store.get(objectKey);
  if (got === null) {
    return {
      bytes: 0,
      problem: {
        code: 'STAGED_MISSING',
        message: `${objectKey} is gone, yet the log entry ${txnLogKey(entry.table, entry.txnFirst)} numbers it as txns ${entry.txnFirst}..${entry.txnLast}: no node can apply them`,
      },
    };
  }
  assert(got.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  const bytes = got.body.byteLength;
  try {
    if (context.deep) await verifyStagedSegment(got.body, { objectKey, entry });
    else {
      const problem = stagedHeaderProblem(got.body, entry);
      if (problem !== null) return { bytes, problem };
    }
    return { bytes, problem: null };
  } catch (error) {
    if (!isWalshipError(error) || error.kind === 'unavailable') throw error;
    const code = error.code === 'CORRUPT_SEGMENT' ? 'SEGMENT_CORRUPT' : error.code;
    const message = error.message.startsWith(objectKey)
      ? error.message
      : `${objectKey} is unreadable: ${error.message}`;
    return { bytes, problem: { code: knownStagedCode(code), message } };
  }
}

function knownStagedCode(code: string): string {
  return [
    'SEGMENT_CORRUPT',
    'SEGMENT_ENTRY_MISMATCH',
    'SEGMENT_NOT_STAGED',
    'SEGMENT_WRONG_TABLE',
    'SEGMENT_MISPLACED',
  ].includes(code)
    ? code
    : 'SEGMENT_UNREADABLE';
}

/** The header-only half of verifyStagedSegment (--shallow): the header is checked, the body is not. */
function stagedHeaderProblem(bytes: Uint8Array, entry: LogEntry): { code: string; message: string } | null {
  const objectKey = entry.staged;
  const mismatch = (code: string, problem: string) => ({ code, message: `${objectKey} ${problem}` });
  if (bytes.length !== entry.bytes)
    return mismatch('SEGMENT_ENTRY_MISMATCH', `is ${bytes.length} bytes, its log entry says ${entry.bytes}`);
  const header: SegmentHeader = decodeSegmentHeader(bytes);
  if (header.objectChecksum !== entry.crc32) {
    return mismatch(
      'SEGMENT_ENTRY_MISMATCH',
      `has object checksum ${header.objectChecksum}, its log entry says ${entry.crc32}`,
    );
  }
  if (!header.staged) return mismatch('SEGMENT_NOT_STAGED', 'lacks the staged flag');
  if (tableKey(header.tableName) !== entry.table)
    return mismatch('SEGMENT_WRONG_TABLE', `holds table ${JSON.stringify(header.tableName)}`);
  if (header.writerNodeId !== entry.writer || header.epoch !== entry.writerEpoch) {
    return mismatch(
      'SEGMENT_ENTRY_MISMATCH',
      `was written by ${JSON.stringify(header.writerNodeId)} in epoch ${header.epoch}, its log entry says ${JSON.stringify(entry.writer)} in epoch ${entry.writerEpoch}`,
    );
  }
  const entryCount = entry.txnLast - entry.txnFirst + 1n;
  if (BigInt(header.txnCount) !== entryCount)
    return mismatch(
      'SEGMENT_MISPLACED',
      `holds ${header.txnCount} txns, its log entry numbers ${entryCount}`,
    );
  return null;
}

/**
 * The `txnlog/` invariants, one entry at a time in key order: contiguous from `startAfter + 1`
 * (past it only where a snapshot covers the gap and no `wal/` chain remains), each writer epoch's
 * batches numbered once and in order, and the staged objects no entry names.
 */
class TxnLogChain {
  readonly name: string;
  /**
   * The first txn the sequencer numbers: `startAfter + 1` of sequencer.json (1 for a table it does
   * not list); undefined without a readable record, which is a finding of its own.
   */
  readonly #start: bigint | undefined;
  readonly #batches = new CommittedBatches();
  #entries = 0;
  #bytes = 0;
  #first: bigint | undefined;
  #last: bigint | undefined;
  /** The txn the next entry must start at; undefined before the first and after a bad entry. */
  #next: bigint | undefined;
  #writers: string[] = [];
  #staged = 0;
  #uncommitted = 0;

  constructor(
    readonly key: string,
    readonly context: ChainContext,
    readonly findings: AuditFinding[],
    /** The table has a `wal/` chain: retention cannot have removed the start of its `txnlog/`. */
    readonly walPresent: boolean,
  ) {
    this.name = decodeTableKey(key);
    const record = context.sequencer;
    this.#start = record === null ? undefined : (record.startAfter.get(key) ?? 0n) + 1n;
  }

  accept(summary: EntrySummary): void {
    this.#entries++;
    if (summary.status === 'vanished') {
      this.#add(
        'warning',
        'TXN_LOG_VANISHED',
        summary.key,
        `${summary.key} was listed but was gone when read (deleted meanwhile: is GC running?)`,
      );
      this.#next = undefined;
      return;
    }
    if (summary.status === 'bad') {
      this.#checkContiguity(summary.slotTxn, undefined, summary.key);
      this.#add('error', 'TXN_LOG_ENTRY_CORRUPT', summary.key, summary.message);
      this.#next = undefined;
      this.#first ??= summary.slotTxn;
      return;
    }
    const { entry } = summary;
    this.#checkContiguity(entry.txnFirst, entry.txnLast, summary.key);
    this.#checkBatch(entry, summary.key);
    if (summary.staged !== null)
      this.#add('error', summary.staged.code, entry.staged, summary.staged.message);
    this.#bytes += summary.bytes;
    if (this.#writers.length < WRITERS_LISTED_MAX && !this.#writers.includes(entry.writer))
      this.#writers.push(entry.writer);
    this.#first ??= entry.txnFirst;
    if (this.#last === undefined || entry.txnLast > this.#last) this.#last = entry.txnLast;
    if (this.#next === undefined || entry.txnLast + 1n > this.#next) this.#next = entry.txnLast + 1n;
  }

  /** One object under `staged/`, after every entry was accepted. */
  acceptStaged(objectKey: string, parts: StagedKeyParts): void {
    this.#staged++;
    if (this.#batches.overflowed) return;
    if (this.#batches.has(parts.writer, parts.writerEpoch, parts.batchSeq)) return;
    this.#uncommitted++;
    this.#add(
      'warning',
      'STAGED_UNCOMMITTED',
      objectKey,
      `${objectKey}: uncommitted staged segment (an orphan once its writer epoch is closed: walship gc --sequencer collects it)`,
    );
  }

  #checkContiguity(txnFirst: bigint, txnLast: bigint | undefined, key: string): void {
    if (this.#first === undefined) {
      if (this.#start === undefined) return;
      if (txnFirst < this.#start) {
        this.#add(
          'error',
          'TXN_LOG_OVERLAP',
          key,
          `${key} starts at txn ${txnFirst}, but the table's txnlog/ starts after txn ${this.#start - 1n} (${SEQUENCER_RECORD_KEY} startAfter): those txns are numbered twice`,
        );
      } else if (
        txnFirst > this.#start &&
        (this.walPresent || !coveredBySnapshot(this.context, this.key, txnFirst - 1n))
      ) {
        this.#missing(this.#start, txnFirst - 1n);
      }
      return;
    }
    if (this.#next === undefined) return;
    if (txnFirst > this.#next) this.#missing(this.#next, txnFirst - 1n);
    else if (txnFirst < this.#next) {
      const holds =
        txnLast === undefined ? `starts at txn ${txnFirst}` : `numbers txns ${txnFirst}..${txnLast}`;
      this.#add(
        'error',
        'TXN_LOG_OVERLAP',
        key,
        `${key} ${holds}, but the entries before it already number txns up to ${this.#next - 1n}`,
      );
    }
  }

  #missing(first: bigint, last: bigint): void {
    const expected = txnLogKey(this.key, first);
    const txns = first === last ? `txn ${first}` : `txns ${first}..${last}`;
    this.#add(
      'error',
      'TXN_LOG_MISSING',
      expected,
      `table ${this.name}: ${txns} are in no log entry (expected ${expected})`,
    );
  }

  /** A writer epoch commits one batch at a time, so along one table's log its batches only grow. */
  #checkBatch(entry: LogEntry, key: string): void {
    const after = this.#batches.add(entry.writer, entry.writerEpoch, entry.batchSeq);
    if (after === undefined) return;
    const again = entry.batchSeq === after ? 'again' : `after batch ${after}`;
    this.#add(
      'error',
      'TXN_LOG_BATCH_ORDER',
      key,
      `${key} numbers batch ${entry.batchSeq} of writer ${entry.writer} epoch ${entry.writerEpoch} ${again}: each batch is numbered once, in order (${entry.staged} would be applied twice or out of order)`,
    );
  }

  #add(severity: AuditSeverity, code: string, key: string, message: string): void {
    addBounded(this.findings, { severity, code, key, table: this.key, message });
  }

  finish(): TxnLogAuditReport | null {
    if (this.#entries === 0 && this.#staged === 0) return null;
    if (this.#batches.overflowed) {
      this.#add(
        'warning',
        'STAGED_UNCHECKED',
        stagedPrefix(this.key),
        `table ${this.name}: its log names more than ${COMMITTED_BATCH_RUNS_MAX} runs of batches, so its ${this.#staged} staged objects were counted, not checked for uncommitted ones`,
      );
    }
    return {
      entries: this.#entries,
      txns:
        this.#first === undefined
          ? null
          : { first: this.#first.toString(), last: (this.#last ?? this.#first - 1n).toString() },
      bytes: this.#bytes,
      writers: this.#writers,
      staged: this.#staged,
      uncommitted: this.#uncommitted,
    };
  }
}

/**
 * The batches one table's log entries name, as runs of batch numbers per writer epoch: bounded
 * memory (COMMITTED_BATCH_RUNS_MAX) however long the log. Batches arrive in log order, in which
 * each writer epoch's batch numbers grow, so every run list stays sorted.
 */
class CommittedBatches {
  readonly #runs = new Map<string, { first: bigint; last: bigint }[]>();
  #count = 0;
  /** More runs than the bound: `has` can no longer answer. */
  overflowed = false;

  /** Records a batch; returns the last batch of that writer epoch when `batchSeq` does not grow past it. */
  add(writer: string, writerEpoch: bigint, batchSeq: bigint): bigint | undefined {
    const id = `${writer}/${writerEpoch}`;
    const runs = this.#runs.get(id) ?? [];
    const last = runs.at(-1);
    if (last !== undefined && batchSeq <= last.last) return last.last;
    if (last !== undefined && batchSeq === last.last + 1n) {
      last.last = batchSeq;
      return undefined;
    }
    if (this.#count >= COMMITTED_BATCH_RUNS_MAX) {
      this.overflowed = true;
      return undefined;
    }
    runs.push({ first: batchSeq, last: batchSeq });
    this.#runs.set(id, runs);
    this.#count++;
    return undefined;
  }

  has(writer: string, writerEpoch: bigint, batchSeq: bigint): boolean {
    const runs = this.#runs.get(`${writer}/${writerEpoch}`);
    if (runs === undefined) return false;
    let low = 0;
    let high = runs.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const run = runs[middle]!;
      if (batchSeq < run.first) high = middle - 1;
      else if (batchSeq > run.last) low = middle + 1;
      else return true;
    }
    return false;
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

/** A skip scan of the root's top-level names (one LIST each), as discoverTableKeys does for tables/. */
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
async function reportTableStrays(store: ObjectStore, key: string, findings: AuditFinding[]): Promise<void> {
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

function addBounded(findings: AuditFinding[], finding: AuditFinding): void {
  if (findings.length < AUDIT_FINDINGS_MAX) findings.push(finding);
}

function orphan(key: string, problem: string, severity: AuditSeverity): AuditFinding {
  return { severity, code: 'ORPHAN', key, message: `${key} ${problem}` };
}

// --- Helpers ------------------------------------------------------------------------------------

async function readRecord(
  store: ObjectStore,
  key: string,
  bytesMax = RECORD_BYTES_MAX,
): Promise<Uint8Array | null> {
  const got = await store.get(key, { range: { offset: 0, length: bytesMax } });
  if (got === null) return null;
  assert(got.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  return got.body;
}

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

function isTableKey(key: string): boolean {
  try {
    return tableKey(decodeTableKey(key)) === key;
  } catch {
    return false;
  }
}
