/**
 * The exported log entry, `tables/<t>/txnlog/<txnFirst>.json` (RFC-0003 "A log entry"): a pure
 * function of the sequencer's row, so two exporters of one entry write identical bytes and a
 * create-only PUT that meets an existing object can compare bytes.
 *
 * The bytes are one line of JSON and a newline: the keys in the RFC's order (table, txnFirst,
 * txnLast, staged, bytes, crc32, writer, writerEpoch, batchSeq, committedAtMs, check), no
 * whitespace, bigints as decimal strings. `check` is the CRC-32 (wal `checksum`) of the UTF-8 JSON
 * of the same object without `check` (no newline). Decoding is strict: the bytes must be exactly
 * what encodeTxnLogEntry writes for the entry they hold, so nothing unchecked rides along.
 */
import { assert, InvalidArgumentError, WalshipError } from '../core/index.js';
import { isTableKey, type TableKey } from '../table/index.js';
import { checksum } from '../wal/index.js';
import { parseStagedKey, parseTxnLogKey } from './keys.js';

/** The largest entry read, in bytes: a real one is under ~1.2 kB (a table key ≤ 381, a staged key ≤ 512). */
export const TXN_LOG_ENTRY_BYTES_MAX = 4096;

/** Txns in one staged segment at most: the segment format's own bound (wal/limits.ts). */
export const SEQUENCER_SEGMENT_TXNS_MAX = 1_000_000;
/** A writer id is a node id: what fits in a store key segment. */
export const WRITER_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** One numbered segment in a table's txn log. */
export interface LogEntry {
  table: TableKey;
  txnFirst: bigint;
  txnLast: bigint;
  staged: string;
  bytes: number;
  crc32: number;
  writer: string;
  writerEpoch: bigint;
  batchSeq: bigint;
  /** The sequencer's wall clock at commit: informational only, never used to order. */
  committedAtMs: number;
}

/** An entry as decoded, before entryProblem checked it (its table then becomes a TableKey). */
type UncheckedEntry = Omit<LogEntry, 'table'> & { table: string };

const U32_MAX = 0xffff_ffff;
/** Txns, epochs and batch numbers fit an SQLite INTEGER (and a wal u64 ≤ 2^63−1). */
const I64_MAX = (1n << 63n) - 1n;
/** A positive decimal without leading zeros, at most 19 digits (2^63−1 has 19). */
const POSITIVE_DECIMAL = /^[1-9]\d{0,18}$/;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** The entry's JSON without `check`, in the RFC's key order. */
function bodyJson(entry: UncheckedEntry): string {
  return JSON.stringify({
    table: entry.table,
    txnFirst: entry.txnFirst.toString(),
    txnLast: entry.txnLast.toString(),
    staged: entry.staged,
    bytes: entry.bytes,
    crc32: entry.crc32,
    writer: entry.writer,
    writerEpoch: entry.writerEpoch.toString(),
    batchSeq: entry.batchSeq.toString(),
    committedAtMs: entry.committedAtMs,
  });
}

function encodeChecked(entry: UncheckedEntry): Uint8Array {
  const body = bodyJson(entry);
  const check = checksum(textEncoder.encode(body));
  return textEncoder.encode(`${body.slice(0, -1)},"check":${check}}\n`);
}

/**
 * The bytes of `entry`'s txn-log object. Byte-identical for equal entries. Throws
 * INVALID_ARGUMENT for an entry no sequencer can produce (the same checks decode makes).
 */
export function encodeTxnLogEntry(entry: LogEntry): Uint8Array {
  const problem = entryProblem(entry);
  if (problem !== undefined) throw new InvalidArgumentError(`log entry ${problem}`);
  const bytes = encodeChecked(entry);
  if (bytes.length > TXN_LOG_ENTRY_BYTES_MAX)
    throw new InvalidArgumentError(`log entry is ${bytes.length} bytes, above ${TXN_LOG_ENTRY_BYTES_MAX}`);
  return bytes;
}

/**
 * The entry in `bytes`; TXN_LOG_ENTRY_CORRUPT (kind data) for anything encodeTxnLogEntry would
 * not have written: too large, not UTF-8 JSON, a missing, extra or mistyped field, a bad range, a
 * staged key that is not the entry's own (table, writer, writer epoch, batch), a `check` that does
 * not match, or bytes not in canonical form. With `key` (the object's key) it also checks the key
 * names the entry's table and txnFirst. A `key` that is no txn-log key is INVALID_ARGUMENT.
 */
export function decodeTxnLogEntry(bytes: Uint8Array, key?: string): LogEntry {
  const where = key ?? 'txn-log entry';
  const keyParts = key === undefined ? undefined : parseTxnLogKey(key);
  if (key !== undefined && keyParts === undefined)
    throw new InvalidArgumentError(
      `${JSON.stringify(key)} is not a txn-log key (tables/<t>/txnlog/<20 digits>.json)`,
    );
  const bad = (problem: string) =>
    new WalshipError('TXN_LOG_ENTRY_CORRUPT', 'data', `${where} ${problem}`, {
      details: key === undefined ? {} : { key },
    });
  if (!(bytes instanceof Uint8Array))
    throw new InvalidArgumentError('txn-log entry bytes must be a Uint8Array');
  if (bytes.length > TXN_LOG_ENTRY_BYTES_MAX)
    throw bad(`is ${bytes.length} bytes, above ${TXN_LOG_ENTRY_BYTES_MAX}`);
  const fields = parseObject(bytes);
  if (typeof fields === 'string') throw bad(fields);
  const entry = entryOf(fields);
  if (typeof entry === 'string') throw bad(entry);
  // The check first: a damaged byte is best reported as damage, not as the field it happened to hit.
  if (fields.check !== checksum(textEncoder.encode(bodyJson(entry)))) throw bad('fails its check');
  const problem = entryProblem(entry);
  if (problem !== undefined) throw bad(problem);
  if (!sameBytes(bytes, encodeChecked(entry)))
    throw bad('is not in canonical form (key order, whitespace, extra fields)');
  if (keyParts !== undefined && (keyParts.tableKey !== entry.table || keyParts.txnFirst !== entry.txnFirst))
    throw bad(
      `holds the entry of table ${entry.table} from txn ${entry.txnFirst}, not the one its key names`,
    );
  const { table } = entry;
  assert(isTableKey(table), 'entryProblem checked the table key');
  return { ...entry, table };
}

function parseObject(bytes: Uint8Array): Record<string, unknown> | string {
  let value: unknown;
  try {
    value = JSON.parse(textDecoder.decode(bytes));
  } catch {
    return 'is not UTF-8 JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON object';
  return value as Record<string, unknown>;
}

/** The typed entry of parsed JSON, or what is missing or mistyped. */
function entryOf(v: Record<string, unknown>): UncheckedEntry | string {
  for (const name of ['table', 'staged', 'writer'] as const)
    if (typeof v[name] !== 'string') return `lacks a string ${name}`;
  for (const name of ['bytes', 'crc32', 'committedAtMs', 'check'] as const)
    if (typeof v[name] !== 'number') return `lacks a number ${name}`;
  const decimals: Record<string, bigint> = {};
  for (const name of ['txnFirst', 'txnLast', 'writerEpoch', 'batchSeq'] as const) {
    const text = v[name];
    if (typeof text !== 'string' || !POSITIVE_DECIMAL.test(text))
      return `lacks a positive decimal string ${name}`;
    decimals[name] = BigInt(text);
  }
  return {
    table: v.table as string,
    txnFirst: decimals.txnFirst!,
    txnLast: decimals.txnLast!,
    staged: v.staged as string,
    bytes: v.bytes as number,
    crc32: v.crc32 as number,
    writer: v.writer as string,
    writerEpoch: decimals.writerEpoch!,
    batchSeq: decimals.batchSeq!,
    committedAtMs: v.committedAtMs as number,
  };
}

/** What makes `entry` one no sequencer writes, or undefined. */
function entryProblem(entry: UncheckedEntry): string | undefined {
  if (!isTableKey(entry.table)) return `has table ${JSON.stringify(entry.table)}, which is no table key`;
  for (const name of ['txnFirst', 'txnLast', 'writerEpoch', 'batchSeq'] as const) {
    const value = entry[name];
    if (typeof value !== 'bigint' || value < 1n || value > I64_MAX) return `has ${name} outside 1..2^63-1`;
  }
  if (entry.txnLast < entry.txnFirst)
    return `ends at txn ${entry.txnLast}, before its txnFirst ${entry.txnFirst}`;
  if (entry.txnLast - entry.txnFirst >= BigInt(SEQUENCER_SEGMENT_TXNS_MAX))
    return `numbers more than ${SEQUENCER_SEGMENT_TXNS_MAX} txns`;
  if (typeof entry.writer !== 'string' || !WRITER_ID_PATTERN.test(entry.writer))
    return `has writer ${JSON.stringify(entry.writer)}, which is no writer id`;
  if (!Number.isSafeInteger(entry.bytes) || entry.bytes < 1)
    return `has bytes ${entry.bytes}, not a positive integer`;
  if (!Number.isInteger(entry.crc32) || entry.crc32 < 0 || entry.crc32 > U32_MAX)
    return `has crc32 ${entry.crc32}, not an unsigned 32-bit integer`;
  if (!Number.isSafeInteger(entry.committedAtMs) || entry.committedAtMs < 0)
    return `has committedAtMs ${entry.committedAtMs}, not a non-negative integer`;
  return stagedProblem(entry);
}

/** The staged key must be the one stagedKey gives for the entry's table, writer, epoch and batch. */
function stagedProblem(entry: UncheckedEntry): string | undefined {
  const parts = typeof entry.staged === 'string' ? parseStagedKey(entry.staged) : undefined;
  if (parts === undefined) return `has staged ${JSON.stringify(entry.staged)}, which is no staged key`;
  if (
    parts.tableKey !== entry.table ||
    parts.writer !== entry.writer ||
    parts.writerEpoch !== entry.writerEpoch ||
    parts.batchSeq !== entry.batchSeq
  ) {
    return `has staged key ${entry.staged}, which is not its own table, writer, writer epoch and batch`;
  }
  return undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
