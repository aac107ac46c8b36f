/**
 * `walship verify --store`: a read-only audit of a whole cluster root (issue 7, part 4). It walks
 * what the replica trusts — cluster.json, the epoch records, tables.json, every table's segment
 * chain, the snapshots — and reports every broken invariant of RFC-0001, RFC-0002 and RFC-0005 as
 * a finding instead of throwing: contiguity (txns 1..N, each once), checksums (the replica's own
 * `verifySegment`), epochs that never go back along a chain, fences whose epoch was claimed, and
 * objects that are no part of the layout (orphans).
 *
 * Memory is bounded: segments are listed page by page and each is decoded, summarised and dropped;
 * at most `concurrency` GETs are in flight. A store error (after the store's own retries) is
 * thrown as it comes (kind `unavailable`); bad data never is.
 *
 * The cluster records are parsed here rather than through primary/ (readRegistry, readEpoch): an
 * audit must report a malformed record as a finding, where the write path rightly refuses to run.
 * Node registrations belong to failover/, which imports this module: the caller passes a reader.
 */
import { assert, isWalshipError } from '../core/index.js';
import { listAll, type ObjectInfo, type ObjectStore } from '../objectstore/index.js';
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
  SNAPSHOTS_PREFIX,
  segmentKey,
  snapshotManifestKey,
  TABLES_PREFIX,
  TABLES_REGISTRY_KEY,
  txnFirstOfSegmentKey,
} from '../wal/index.js';
import { verifySegment } from './segment-verifier.js';
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

// --- The report ---------------------------------------------------------------------------------

export type AuditSeverity = 'error' | 'warning';

/**
 * One broken invariant. Codes are stable: SEGMENT_MISSING, SEGMENT_OVERLAP, SEGMENT_CORRUPT,
 * SEGMENT_MISPLACED, SEGMENT_WRONG_TABLE, SEGMENT_UNREADABLE, SEGMENT_VANISHED, EPOCH_REGRESSION,
 * EPOCH_UNKNOWN, EPOCH_UNFENCED, EPOCH_RECORD_MISSING, EPOCH_RECORD_CORRUPT, CLUSTER_MISSING,
 * CLUSTER_CORRUPT, REGISTRY_MISSING, REGISTRY_CORRUPT, UNREGISTERED_TABLE, ORPHAN,
 * SNAPSHOT_CORRUPT, SNAPSHOT_IMAGE_MISSING, SNAPSHOT_FOREIGN, SNAPSHOT_AHEAD,
 * NODE_REGISTRATION_UNREADABLE.
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
  findings: AuditFinding[];
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
 * Lists `tables/<key>/` page by page and inspects each segment, at most `concurrency` at a time,
 * feeding the summaries to the chain in key (= txn) order.
 */
async function auditTable(
  context: ChainContext,
  key: string,
  registered: boolean,
): Promise<TableAuditReport> {
  const chain = new Chain(key, context);
  const inFlight: Promise<SegmentSummary | { error: unknown }>[] = [];
  const take = async () => {
    const result = await inFlight.shift()!;
    if ('error' in result) throw result.error;
    chain.accept(result);
    context.progress.segmentsDone++;
    context.progress.bytesDone += result.bytes;
    context.onProgress?.({ ...context.progress });
  };
  for await (const info of listAll(context.store, `${TABLES_PREFIX}${key}/`)) {
    const slotTxn = txnFirstOfSegmentKey(info.key);
    if (slotTxn === undefined || info.key !== segmentKey(key, slotTxn)) {
      chain.findings.push({
        ...orphan(
          info.key,
          `is no segment of table ${chain.name} (tables/<table>/wal/<20 digits>.seg)`,
          'error',
        ),
        table: key,
      });
      continue;
    }
    // Settled into a value, never a rejection, so a failure waiting its turn is not "unhandled".
    inFlight.push(
      inspectSegment(context, key, info, slotTxn).then(
        (s) => s,
        (error: unknown) => ({ error }),
      ),
    );
    if (inFlight.length >= context.concurrency) await take();
  }
  while (inFlight.length > 0) await take();
  return chain.finish(registered);
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
  return ['SEGMENT_CORRUPT', 'SEGMENT_WRONG_TABLE', 'SEGMENT_MISPLACED'].includes(code)
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
      if (txnFirst > 1n && !this.#coveredBySnapshot(txnFirst - 1n)) this.#missing(1n, txnFirst - 1n);
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

  /** A chain may start past txn 1 when retention removed what a snapshot of this cluster holds. */
  #coveredBySnapshot(txn: bigint): boolean {
    return this.context.snapshots.some((m) => m.tables.some((t) => t.key === this.key && t.lastTxn >= txn));
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
  const chainEnd = new Map(tables.map((t) => [t.key, t.txns === null ? 0n : BigInt(t.txns.last)]));
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
          message: `snapshot ${manifest.id} holds table ${table.name} at txn ${table.lastTxn}, but its segments end at txn ${end}`,
        });
      }
    }
  }
  return records;
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

function orphan(key: string, problem: string, severity: AuditSeverity): AuditFinding {
  return { severity, code: 'ORPHAN', key, message: `${key} ${problem}` };
}

// --- Helpers ------------------------------------------------------------------------------------

async function readRecord(store: ObjectStore, key: string): Promise<Uint8Array | null> {
  const got = await store.get(key, { range: { offset: 0, length: RECORD_BYTES_MAX } });
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
