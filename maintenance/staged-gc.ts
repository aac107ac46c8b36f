import { isWalshipError } from '../core/index.js';
import {
  decodeTxnLogEntry,
  type ListedChainObject,
  listChain,
  parseStagedKey,
  stagedKey,
  stagedPrefix,
  TXNLOG_CHAIN,
} from '../layout/index.js';
import { DELETE_MANY_KEYS_MAX, listAll, type ObjectStore } from '../objectstore/index.js';
import type { LogEntry, WriterRecord } from '../sequencer/index.js';
import type { TableKey } from '../table/index.js';
import type { GcDeletion, GcKept } from './gc-types.js';

/**
 * GC of a sequenced cluster's tables (RFC-0003 "GC of staged segments", RFC-0007 "Sequenced
 * tables"): the committed log (`txnlog/` entries and the staged objects they name) under the same
 * retention rules as a `wal/` chain, and orphans (staged objects a closed or fenced writer epoch
 * uploaded but never committed). Planning only: maintenance/gc.ts runs the plan.
 */

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/** An orphan is deleted only once older than this (a writer may still be uploading it as it learns it is fenced). */
export const GC_ORPHAN_AGE_MS = 10 * 60_000;
/** txnlog entries GC reads (GETs) per table per run to learn their staged keys; the rest go in later runs. */
export const GC_TXNLOG_READS_PER_TABLE_MAX = 100_000;
/** txnlog entries GC lists per table at most (as GC_SEGMENTS_PER_TABLE_MAX for `wal/`). */
export const GC_TXNLOG_ENTRIES_PER_TABLE_MAX = 1_000_000;
/** Staged folders (table × writer epoch) orphan GC lists per run; the rest are reported, not examined. */
export const GC_ORPHAN_LISTS_MAX = 10_000;
/** txnlog GETs in flight at once. */
const TXNLOG_READS_IN_FLIGHT = 16;
/** Staged objects of one writer epoch below the oldest kept entry examined per run (one LIST page). */
const LEFTOVERS_PER_TABLE_MAX = 1000;

/**
 * The RFC-0007 rules for one part of a table's chain holding txns up to `txnLast` whose object was
 * last modified at `modifiedAtMs`: a string is why it stays, an object says it may go and why.
 */
export type RetentionJudge = (part: {
  tableKey: string;
  txnLast: bigint;
  modifiedAtMs: number;
  /** The newest part of the chain: it always stays. */
  newest: boolean;
  /** What the part is, as reasons name it. */
  what: 'segment' | 'txnlog entry';
}) => string | { reason: string };

export interface StagedGcPart {
  delete: GcDeletion[];
  keep: GcKept[];
}

/**
 * Which prefix of table `tableKey`'s txn log goes (RFC-0007 rules applied to `txnlog/` as to
 * `wal/`): one LIST, then a GET of each entry that the rules allow (it names its staged object) and
 * of the first kept one. Deletions are, per chunk of at most DELETE_MANY_KEYS_MAX entries, the
 * chunk's txnlog objects and then their staged objects, so a reader that finds an entry finds its
 * segment. Also collects staged objects an interrupted earlier run left behind (their entries
 * gone): see `leftovers`.
 */
export async function planTxnLogRetention(options: {
  store: ObjectStore;
  tableKey: TableKey;
  /** The table's name as reported. */
  table: string;
  judge: RetentionJudge;
  signal?: AbortSignal;
}): Promise<StagedGcPart> {
  const { store, tableKey, table, judge, signal } = options;
  const part: StagedGcPart = { delete: [], keep: [] };
  const entries = await listChain(store, TXNLOG_CHAIN, tableKey, {
    max: GC_TXNLOG_ENTRIES_PER_TABLE_MAX,
    signal,
  });
  if (entries.length === 0) return part;

  // Which prefix the keys and object times allow (txnLast bounded by the next entry's txnFirst − 1).
  let end = 0;
  let keepReason = '';
  for (; end < entries.length; end++) {
    const newest = end === entries.length - 1;
    const verdict = judge({
      tableKey,
      txnLast: newest ? entries[end]!.txnFirst : entries[end + 1]!.txnFirst - 1n,
      modifiedAtMs: entries[end]!.modifiedAtMs,
      newest,
      what: 'txnlog entry',
    });
    if (typeof verdict === 'string') {
      keepReason = verdict;
      break;
    }
    if (end >= GC_TXNLOG_READS_PER_TABLE_MAX) {
      keepReason = `GC reads at most ${GC_TXNLOG_READS_PER_TABLE_MAX} txnlog entries of a table per run: the rest go in the next run`;
      break;
    }
  }

  // Each entry names its staged object: read them (and the first kept one), in order, bounded.
  const read = await readEntries(store, entries.slice(0, Math.min(end + 1, entries.length)), signal);
  const gone: { listed: ListedChainObject; entry: LogEntry; reason: string }[] = [];
  for (let i = 0; i < end; i++) {
    const got = read[i]!;
    if (typeof got === 'string') {
      end = i;
      keepReason = got;
      break;
    }
    const next = entries[i + 1]!;
    if (got.txnLast >= next.txnFirst) {
      end = i;
      keepReason = `holds txns ${got.txnFirst}..${got.txnLast}, overlapping the next entry ${next.key}: left for walship verify`;
      break;
    }
    const verdict = judge({
      tableKey,
      txnLast: got.txnLast,
      modifiedAtMs: entries[i]!.modifiedAtMs,
      newest: false,
      what: 'txnlog entry',
    });
    if (typeof verdict === 'string') {
      end = i;
      keepReason = verdict;
      break;
    }
    gone.push({ listed: entries[i]!, entry: got, reason: verdict.reason });
  }
  for (let from = 0; from < gone.length; from += DELETE_MANY_KEYS_MAX) {
    const chunk = gone.slice(from, from + DELETE_MANY_KEYS_MAX);
    for (const g of chunk)
      part.delete.push({
        key: g.listed.key,
        kind: 'txnlog',
        table,
        sizeBytes: g.listed.sizeBytes,
        reason: g.reason,
      });
    for (const g of chunk)
      part.delete.push({
        key: g.entry.staged,
        kind: 'staged',
        table,
        sizeBytes: g.entry.bytes,
        reason: `named by ${g.listed.key}, deleted before it`,
      });
  }
  const firstKept = entries[end]!;
  part.keep.push({ key: firstKept.key, table, objects: entries.length - end, reason: keepReason });

  const kept = read[end];
  if (kept !== undefined && typeof kept !== 'string') {
    const named = new Set(gone.map((g) => g.entry.staged));
    part.delete.push(...(await leftovers(store, kept, named, table, judge, signal)));
  }
  return part;
}

/**
 * Staged objects of the oldest kept entry's writer epoch with a lower batchSeq that no entry of this
 * run names: left by a run that deleted their txnlog entries and stopped before the staged objects.
 * One writer epoch commits its batches in batchSeq order and a table's txns in commit order, so
 * they are committed and hold txns below the kept entry's txnFirst; they go when the rules allow a
 * chain part ending at txnFirst − 1 (the same rules their entries passed). Other writer epochs'
 * leftovers are collected when one of their entries is the oldest kept (or stay: RFC-0007 notes it).
 */
async function leftovers(
  store: ObjectStore,
  kept: LogEntry,
  named: Set<string>,
  table: string,
  judge: RetentionJudge,
  signal?: AbortSignal,
): Promise<GcDeletion[]> {
  if (kept.txnFirst <= 1n || kept.batchSeq <= 1n) return [];
  const page = await store.list(stagedPrefix(kept.table, kept.writer, kept.writerEpoch), {
    limit: LEFTOVERS_PER_TABLE_MAX,
    ...(signal === undefined ? {} : { signal }),
  });
  const found: GcDeletion[] = [];
  for (const object of page.objects) {
    const parts = parseStagedKey(object.key);
    if (parts === undefined || parts.batchSeq >= kept.batchSeq) break;
    if (object.key !== stagedKey(kept.table, kept.writer, kept.writerEpoch, parts.batchSeq)) continue;
    if (named.has(object.key)) continue;
    const verdict = judge({
      tableKey: kept.table,
      txnLast: kept.txnFirst - 1n,
      modifiedAtMs: object.modifiedAtMs,
      newest: false,
      what: 'txnlog entry',
    });
    if (typeof verdict === 'string') break;
    found.push({
      key: object.key,
      kind: 'staged',
      table,
      sizeBytes: object.sizeBytes,
      reason:
        `committed before batch ${kept.batchSeq} of writer ${kept.writer} epoch ${kept.writerEpoch} ` +
        `(the oldest kept entry, txn ${kept.txnFirst}), its txnlog entry already collected; ${verdict.reason}`,
    });
  }
  return found;
}

/**
 * Orphans (RFC-0003): for each closed epoch of every writer, and the current epoch of a fenced one,
 * the staged objects above that epoch's last committed batch — they can never be committed. One LIST
 * per table and such epoch, from after the last committed batch. Those older than
 * GC_ORPHAN_AGE_MS (GC clock − the object's lastModified) go; younger ones stay, reported. The
 * current epoch of a live (unfenced) writer is never listed: it retries until committed or fenced.
 */
export async function planStagedOrphans(options: {
  store: ObjectStore;
  tables: { key: TableKey; name: string }[];
  writers: WriterRecord[];
  nowMs: number;
  signal?: AbortSignal;
}): Promise<StagedGcPart & { foldersListed: number }> {
  const { store, tables, writers, nowMs, signal } = options;
  const part: StagedGcPart & { foldersListed: number } = { delete: [], keep: [], foldersListed: 0 };
  const epochs: { writer: string; epoch: bigint; lastBatchSeq: bigint; why: string }[] = [];
  for (const record of writers) {
    for (const closed of record.closed)
      if (closed.epoch >= 1n)
        epochs.push({ writer: record.writer, ...closed, why: 'closed by a later registration' });
    if (record.fenced && record.epoch >= 1n)
      epochs.push({
        writer: record.writer,
        epoch: record.epoch,
        lastBatchSeq: record.lastBatchSeq,
        why: 'fenced',
      });
  }
  const needed = epochs.length * tables.length;
  if (needed > GC_ORPHAN_LISTS_MAX)
    part.keep.push({
      key: null,
      table: null,
      objects: 0,
      reason: `${epochs.length} closed or fenced writer epochs × ${tables.length} tables is more staged folders than GC lists in one run (${GC_ORPHAN_LISTS_MAX}): only the first ${GC_ORPHAN_LISTS_MAX} were examined for orphans`,
    });
  outer: for (const table of tables) {
    for (const e of epochs) {
      if (part.foldersListed >= GC_ORPHAN_LISTS_MAX) break outer;
      part.foldersListed++;
      const startAfter =
        e.lastBatchSeq >= 1n ? stagedKey(table.key, e.writer, e.epoch, e.lastBatchSeq) : undefined;
      for await (const object of listAll(store, stagedPrefix(table.key, e.writer, e.epoch), {
        ...(startAfter === undefined ? {} : { startAfter }),
        ...(signal === undefined ? {} : { signal }),
      })) {
        const parts = parseStagedKey(object.key);
        if (
          parts === undefined ||
          parts.batchSeq <= e.lastBatchSeq ||
          object.key !== stagedKey(table.key, e.writer, e.epoch, parts.batchSeq)
        )
          continue;
        const ageMs = nowMs - object.modifiedAtMs;
        const what = `batch ${parts.batchSeq} of writer ${e.writer} epoch ${e.epoch} (${e.why}; its last committed batch is ${e.lastBatchSeq}): never committed`;
        if (ageMs > GC_ORPHAN_AGE_MS)
          part.delete.push({
            key: object.key,
            kind: 'staged-orphan',
            table: table.name,
            sizeBytes: object.sizeBytes,
            reason: `${what}, ${formatDuration(ageMs)} old`,
          });
        else
          part.keep.push({
            key: object.key,
            table: table.name,
            objects: 1,
            reason: `${what}, but only ${formatDuration(ageMs)} old: orphans go after ${formatDuration(GC_ORPHAN_AGE_MS)}`,
          });
      }
    }
  }
  return part;
}

/** Each listed entry decoded, or why it cannot be used (gone, unreadable), in order; bounded concurrency. */
async function readEntries(
  store: ObjectStore,
  listed: ListedChainObject[],
  signal?: AbortSignal,
): Promise<(LogEntry | string)[]> {
  const out: (LogEntry | string)[] = [];
  for (let from = 0; from < listed.length; from += TXNLOG_READS_IN_FLIGHT) {
    const chunk = listed.slice(from, from + TXNLOG_READS_IN_FLIGHT);
    const got = await Promise.all(chunk.map((l) => readEntry(store, l.key, signal)));
    out.push(...got);
    if (got.some((g) => typeof g === 'string')) break; // the prefix stops there anyway
  }
  return out;
}

async function readEntry(store: ObjectStore, key: string, signal?: AbortSignal): Promise<LogEntry | string> {
  const object = await store.get(key, signal === undefined ? {} : { signal });
  if (object === null || object.status !== 'ok')
    return 'vanished while GC read it (another GC deleting it?): its staged object is unknown here';
  try {
    return decodeTxnLogEntry(object.body, key);
  } catch (error) {
    if (isWalshipError(error) && error.kind === 'data')
      return `unreadable txnlog entry, left alone (walship verify): ${error.message}`;
    throw error;
  }
}

/** `3 s`, `12 min`, `5 h`, `8 d`: a rough, readable age. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 1) return `${Math.round(ms)} ms`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7_200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3_600)} h`;
  return `${Math.round(s / 86_400)} d`;
}
