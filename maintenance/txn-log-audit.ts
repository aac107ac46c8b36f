/**
 * The sequenced-cluster part of `walship verify --store` (RFC-0003): `sequencer.json` and, per
 * table, a `txnlog/` chain audited like `wal/`: contiguous entries that decode, each naming a staged
 * object that exists and (deep) verifies against it; the chain starts right after the table's
 * `wal/` chain (`startAfter`). Staged objects no entry names are warnings: a live writer always has
 * some in flight. store-audit.ts drives it and owns the report; this module adds its findings.
 *
 * The sequencer's record and log entry codecs are imported as modules, not through sequencer/'s
 * door, which would pull in the sequencer's follower (it imports replica/) and risk a cycle.
 * The chain machinery (inspectInOrder, bounded findings) is chain-audit.ts's, which store-audit.ts
 * shares: this module never imports store-audit.ts, so the two form no cycle. The table report it
 * reads and extends is store-audit.ts's TableAuditReport, typed here by the fields it uses.
 */
import { assert, isWalshipError } from '../core/index.js';
import {
  CLUSTER_KEY,
  type ClusterRecord,
  decodeSequencerRecord,
  decodeTxnLogEntry,
  parseStagedKey,
  parseTxnLogKey,
  SEQUENCER_RECORD_BYTES_MAX,
  SEQUENCER_RECORD_KEY,
  type SequencerRecord,
  type StagedKeyParts,
  stagedPrefix,
  TXN_LOG_ENTRY_BYTES_MAX,
  txnLogKey,
  txnLogPrefix,
} from '../layout/index.js';
import { listAll, type ObjectInfo, type ObjectStore } from '../objectstore/index.js';
import { verifyStagedSegment } from '../replica/index.js';
import type { LogEntry } from '../sequencer/index.js';
import { decodeTableKey, type TableKey, tableKey } from '../table/index.js';
import { decodeSegmentHeader, type SegmentHeader } from '../wal/index.js';
import {
  type AuditFinding,
  type AuditSeverity,
  addBounded,
  type ChainContext,
  coveredBySnapshot,
  type FindingSink,
  inspectInOrder,
  orphan,
  readRecord,
  segmentProblem,
} from './chain-audit.js';

// --- Bounds -------------------------------------------------------------------------------------

/**
 * Runs of batch numbers remembered per table to tell committed staged objects from uncommitted
 * ones (~100 bytes each, so ≤ ~50 MB). A writer epoch's batches for one table form one run when
 * every batch touches the table; beyond the bound staged objects are counted but not judged.
 */
const COMMITTED_BATCH_RUNS_MAX = 500_000;

/** Writer ids kept per table in the report (a cluster has a handful of writers). */
const WRITERS_LISTED_MAX = 100;

// --- The report ---------------------------------------------------------------------------------

/**
 * The part of one table's report (store-audit.ts's TableAuditReport) that auditTxnLog reads, after
 * the `wal/` chain was audited, and extends with its findings.
 */
export interface WalChainReport {
  /** The table name its key decodes to. */
  name: string;
  key: TableKey;
  /** The `wal/` chain's first and last txn; null without segments. */
  txns: { first: string; last: string } | null;
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

// --- sequencer.json -----------------------------------------------------------------------------

/**
 * `sequencer.json` (RFC-0003): absent in a single-primary cluster; when present it must decode,
 * name this cluster and an epoch that was claimed.
 */
export async function auditSequencer(
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

/** The report's view of a readable `sequencer.json`. */
export function sequencerAuditRecord(record: SequencerRecord): SequencerAuditRecord {
  return {
    clusterId: record.clusterId,
    epoch: record.epoch.toString(),
    tables: record.startAfter.size,
    at: record.at,
  };
}

/** Txn logs without `sequencer.json` are followed by no replica: an error once every table was audited. */
export function checkSequencerRecordPresent(
  sequencer: SequencerRecord | 'absent' | 'corrupt',
  tables: readonly { txnLog: TxnLogAuditReport | null }[],
  sink: FindingSink,
): void {
  if (sequencer !== 'absent' || !tables.some((t) => t.txnLog !== null)) return;
  sink.add({
    severity: 'error',
    code: 'SEQUENCER_RECORD_MISSING',
    key: SEQUENCER_RECORD_KEY,
    message: `tables have txnlog/ or staged/ objects, but there is no ${SEQUENCER_RECORD_KEY}: no replica follows them (run \`walship sequencer init\`?)`,
  });
}

// --- One table's txn log ------------------------------------------------------------------------

/**
 * Audits one table's `txnlog/` chain and `staged/` objects, after its `wal/` chain (`table`, whose
 * findings it extends). Returns the chain: its `finish()` gives the report once the caller has
 * added its own findings (strays), so the findings stay in the order they were always found.
 */
export async function auditTxnLog(
  context: ChainContext,
  table: WalChainReport,
): Promise<{ finish(): TxnLogAuditReport | null }> {
  const { key } = table;
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
          `is no log entry of table ${table.name} (${txnLogPrefix(key)}<20 digits>.json)`,
          'error',
        ),
        table: key,
      }),
    inspect: (info, slotTxn) => inspectEntry(context, info, slotTxn),
    accept: (summary) => log.accept(summary),
  });
  await auditStagedObjects(context, table, log);
  return log;
}

/** Every object under `staged/`: a staged key of this table goes to `log`, anything else is an orphan. */
async function auditStagedObjects(
  context: ChainContext,
  table: WalChainReport,
  log: TxnLogChain,
): Promise<void> {
  const { key } = table;
  for await (const info of listAll(context.store, stagedPrefix(key))) {
    const parts = parseStagedKey(info.key);
    if (parts === undefined || parts.tableKey !== key) {
      addBounded(table.findings, {
        ...orphan(
          info.key,
          `is no staged segment of table ${table.name} (${stagedPrefix(key)}<writer>/<20 digits>/<20 digits>.seg)`,
          'error',
        ),
        table: key,
      });
    } else log.acceptStaged(info.key, parts);
  }
}

/**
 * A sequenced table's `wal/` chain ends where `sequencer.json` says (its adoption fence): after it
 * the sequencer numbers the table, and a `wal/` txn past it would be numbered twice.
 */
function checkSequencerStart(context: ChainContext, table: WalChainReport): void {
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
    return { bytes, problem: segmentProblem(error, objectKey, STAGED_CODES) };
  }
}

/** The codes a staged object's data error keeps; any other is SEGMENT_UNREADABLE. */
const STAGED_CODES = [
  'SEGMENT_CORRUPT',
  'SEGMENT_ENTRY_MISMATCH',
  'SEGMENT_NOT_STAGED',
  'SEGMENT_WRONG_TABLE',
  'SEGMENT_MISPLACED',
];

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
    readonly key: TableKey,
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
