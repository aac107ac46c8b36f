/**
 * The chain machinery both halves of `walship verify --store` share: store-audit.ts (the `wal/`
 * chains and the cluster records) and txn-log-audit.ts (RFC-0003's `txnlog/` chains and `staged/`
 * objects). The findings and their bounds, the context of one store's audit, the in-order, bounded
 * concurrency walk of one chain folder (inspectInOrder) and the small readers both use.
 *
 * It imports neither of them: store-audit.ts imports this module and txn-log-audit.ts, and
 * txn-log-audit.ts imports only this one, so the three form no cycle.
 */
import { assert, isWalshipError } from '../core/index.js';
import type { SequencerRecord, SnapshotManifest } from '../layout/index.js';
import { listAll, type ObjectInfo, type ObjectStore } from '../objectstore/index.js';

// --- Bounds -------------------------------------------------------------------------------------

/** Findings kept per table and for the whole store; the rest are only counted (`findingsDropped`). */
export const AUDIT_FINDINGS_MAX = 1_000;
/** The most bytes read of a JSON record (cluster.json, an epoch record, tables.json). */
const RECORD_BYTES_MAX = 16 * 1024 * 1024;

// --- Findings -----------------------------------------------------------------------------------

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

/** Findings in order, bounded; remembers whether any was an error even when dropped. */
export class FindingSink {
  readonly findings: AuditFinding[] = [];
  dropped = 0;
  hasError = false;
  add(finding: AuditFinding): void {
    if (finding.severity === 'error') this.hasError = true;
    if (this.findings.length < AUDIT_FINDINGS_MAX) this.findings.push(finding);
    else this.dropped++;
  }
}

/** Appends `finding` unless AUDIT_FINDINGS_MAX are kept already. */
export function addBounded(findings: AuditFinding[], finding: AuditFinding): void {
  if (findings.length < AUDIT_FINDINGS_MAX) findings.push(finding);
}

export function orphan(key: string, problem: string, severity: AuditSeverity): AuditFinding {
  return { severity, code: 'ORPHAN', key, message: `${key} ${problem}` };
}

// --- One chain ----------------------------------------------------------------------------------

export interface AuditProgress {
  tablesDone: number;
  tablesTotal: number;
  /** Segments and txn-log entries inspected. */
  segmentsDone: number;
  bytesDone: number;
}

/** What every chain audit of one store shares (txn-log-audit.ts's too). */
export interface ChainContext {
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

/** The steps of inspectInOrder for one kind of chain object. */
export interface ChainInspection<S extends { bytes: number }> {
  /** The txn of the slot `objectKey` names, or undefined for a key that is no object of this chain. */
  slotOf(objectKey: string): bigint | undefined;
  /** Reports a key under the chain's folder that slotOf refused. */
  stray(objectKey: string): void;
  inspect(info: ObjectInfo, slotTxn: bigint): Promise<S>;
  /** Called in key order, one summary at a time. */
  accept(summary: S): void;
}

/** Lists `prefix` and inspects each object, at most `concurrency` at a time, accepting them in key order. */
export async function inspectInOrder<S extends { bytes: number }>(
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

/**
 * A segment's data error as a finding's code (one of `codes`, else SEGMENT_UNREADABLE) and message.
 * A store error (kind `unavailable`) or anything not a WalshipError is no finding: it is rethrown.
 */
export function segmentProblem(
  error: unknown,
  objectKey: string,
  codes: readonly string[],
): { code: string; message: string } {
  if (!isWalshipError(error) || error.kind === 'unavailable') throw error;
  const code = error.code === 'CORRUPT_SEGMENT' ? 'SEGMENT_CORRUPT' : error.code;
  const message = error.message.startsWith(objectKey)
    ? error.message
    : `${objectKey} is unreadable: ${error.message}`;
  return { code: codes.includes(code) ? code : 'SEGMENT_UNREADABLE', message };
}

/** A chain may start past its first txn when retention removed what a snapshot of this cluster holds. */
export function coveredBySnapshot(context: ChainContext, key: string, txn: bigint): boolean {
  return context.snapshots.some((m) => m.tables.some((t) => t.key === key && t.lastTxn >= txn));
}

// --- Helpers ------------------------------------------------------------------------------------

/** At most `bytesMax` bytes of `key`, or null when absent. */
export async function readRecord(
  store: ObjectStore,
  key: string,
  bytesMax = RECORD_BYTES_MAX,
): Promise<Uint8Array | null> {
  const got = await store.get(key, { range: { offset: 0, length: bytesMax } });
  if (got === null) return null;
  assert(got.status === 'ok', 'a get without ifNoneMatch answered not-modified');
  return got.body;
}
