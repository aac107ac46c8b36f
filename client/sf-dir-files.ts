import { Buffer } from 'node:buffer';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { decodeBatchFrame } from './batch-frame.js';
import { generateWriterId, WRITER_ID_PATTERN } from './batch-identity.js';
import type { ClientRandomBytes } from './clock.js';
import { TEMP_SUFFIX, writeFileAtomicSync } from './durable-file.js';
import { WalshipClientError } from './errors.js';
import type { HeldBatch } from './held-batches.js';
import { isLockLeftover } from './sf-dir-lock.js';

/**
 * The files of an sf_dir (see sf-dir.ts for the layout and its invariants), and what SfDir.open
 * reads of them: writer.json, and every batch file checked, held or quarantined.
 */

export const WRITER_FILE = 'writer.json';
export const CORRUPT_DIR = 'corrupt';
const BATCH_NAME = /^([0-9]{20})\.batch$/;
const MARK_NAME = /^([0-9]{20})\.acked$/;

/** A batch file that failed its check and was moved aside, never sent. */
export interface CorruptBatchReport {
  /** Where it was. */
  file: string;
  /** Where it is now (under corrupt/). */
  movedTo: string;
  /** The seq its name gives. */
  seq: bigint;
  reason: string;
}

/** A held batch and the size of its file. */
export interface Held {
  batch: HeldBatch;
  /** Bytes of its file. */
  fileBytes: number;
}

/** What open found: the held batches in seq order and the seq counters. */
export interface Scan {
  held: Held[];
  lastSeq: bigint;
  markSeq: bigint;
  corrupt: number;
}

/** Removes leftovers, checks each batch file, holds the good ones and quarantines the rest. */
export function scanBatches(
  dir: string,
  names: string[],
  onCorruptBatch: ((report: CorruptBatchReport) => void) | undefined,
): Scan {
  for (const name of names) {
    if (name.endsWith(TEMP_SUFFIX) || isLockLeftover(name)) rmSync(path.join(dir, name), { force: true });
  }
  const marks = seqsOf(names, MARK_NAME);
  const markSeq = marks.at(-1) ?? 0n;
  for (const seq of marks.slice(0, -1)) rmSync(path.join(dir, markName(seq)), { force: true });
  const held: Held[] = [];
  let corrupt = 0;
  for (const seq of seqsOf(names, BATCH_NAME)) {
    const file = path.join(dir, batchName(seq));
    // At or below the mark: it left before the crash (reset() removes those after the mark).
    if (seq <= markSeq) {
      rmSync(file, { force: true });
      continue;
    }
    const checked = checkBatchFile(file, seq);
    if (checked.ok) {
      held.push(checked.held);
    } else {
      corrupt++;
      quarantine(dir, seq, checked.reason, onCorruptBatch);
    }
  }
  const quarantined = seqsOf(safeReaddir(path.join(dir, CORRUPT_DIR)), BATCH_NAME);
  const newest = [markSeq, held.at(-1)?.batch.seq ?? 0n, quarantined.at(-1) ?? 0n];
  const lastSeq = newest.reduce((a, b) => (b > a ? b : a));
  return { held, lastSeq, markSeq, corrupt };
}

function checkBatchFile(file: string, seq: bigint): { ok: true; held: Held } | { ok: false; reason: string } {
  const frame = readFileSync(file);
  const decoded = decodeBatchFrame(frame);
  if (!decoded.ok) return decoded;
  if (decoded.seq !== seq) return { ok: false, reason: `its header says seq ${decoded.seq}` };
  const batch: HeldBatch = { seq, lengthBytes: decoded.payload.length, rows: linesIn(decoded.payload) };
  return { ok: true, held: { batch, fileBytes: frame.length } };
}

/** Moves a corrupt batch file to corrupt/ and reports it. */
export function quarantine(
  dir: string,
  seq: bigint,
  reason: string,
  onCorruptBatch: ((report: CorruptBatchReport) => void) | undefined,
): void {
  const file = path.join(dir, batchName(seq));
  const movedTo = path.join(dir, CORRUPT_DIR, batchName(seq));
  mkdirSync(path.dirname(movedTo), { recursive: true });
  renameSync(file, movedTo);
  onCorruptBatch?.({ file, movedTo, seq, reason });
}

/** The writer id of writer.json, created on first open (see the file comment). */
export function openWriterId(
  dir: string,
  names: string[],
  options: { writerId: string | undefined; randomBytes: ClientRandomBytes },
): string {
  const file = path.join(dir, WRITER_FILE);
  const persisted = readWriterFile(file);
  if (persisted !== undefined) {
    if (options.writerId !== undefined && options.writerId !== persisted) {
      throw new WalshipClientError(
        'INVALID_CONFIG',
        'invalid',
        `invalid config string: writer_id ${JSON.stringify(options.writerId)} differs from ` +
          `${JSON.stringify(persisted)}, the writer id of the sf_dir ${dir} (${WRITER_FILE}); a directory's ` +
          'batches and seqs belong to its writer id — drop writer_id= or use another sf_dir',
        { details: { key: 'writer_id' } },
      );
    }
    return persisted;
  }
  if (names.some((name) => BATCH_NAME.test(name) || MARK_NAME.test(name))) {
    // Sending these under a new id would commit them again on a server that saw them already.
    throw sfDirIoError(
      `the sf_dir ${dir} holds batches but no ${WRITER_FILE}; restore it (or empty the directory to ` +
        'drop the batches)',
      undefined,
    );
  }
  const writerId = options.writerId ?? generateWriterId(options.randomBytes);
  writeFileAtomicSync(file, Buffer.from(`${JSON.stringify({ writerId })}\n`), { fsync: true });
  return writerId;
}

function readWriterFile(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let writerId: unknown;
  try {
    writerId = (JSON.parse(text) as { writerId?: unknown }).writerId;
  } catch {
    writerId = undefined;
  }
  if (typeof writerId !== 'string' || !WRITER_ID_PATTERN.test(writerId)) {
    throw sfDirIoError(`${file} does not hold a writer id; restore it`, undefined);
  }
  return writerId;
}

function seqsOf(names: string[], pattern: RegExp): bigint[] {
  const seqs: bigint[] = [];
  for (const name of names) {
    const match = pattern.exec(name);
    if (match !== null) seqs.push(BigInt(match[1]!));
  }
  return seqs.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

function linesIn(payload: Buffer): number {
  let lines = 0;
  for (let at = payload.indexOf(10); at >= 0; at = payload.indexOf(10, at + 1)) lines++;
  return lines;
}

function padded(seq: bigint): string {
  return seq.toString().padStart(20, '0');
}

/** `<seq, 20 digits>.acked`: the seq mark. */
export function markName(seq: bigint): string {
  return `${padded(seq)}.acked`;
}

/** `<seq, 20 digits>.batch`. */
export function batchName(seq: bigint): string {
  return `${padded(seq)}.batch`;
}

/** SF_DIR_IO: a file of the directory could not be read or written. */
export function sfDirIoError(message: string, cause: unknown): WalshipClientError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new WalshipClientError('SF_DIR_IO', 'unavailable', `${message}${why}`, { cause });
}
