import { InvalidArgumentError } from '../core/index.js';
import { DEFAULT_SEGMENT_LIMITS } from '../wal/index.js';

/**
 * Every bound of the ILP parser, in one place (STYLE rule 7). The parser checks each one before it
 * allocates, so a hostile request costs at most these amounts; breaking one is a parse error that
 * names the line.
 */
export interface IlpLimits {
  /** Bytes of one line, without its terminator. */
  maxLineBytes: number;
  /** Symbols plus fields in one line. */
  maxColumnsPerLine: number;
  /** Lines (empty and comment lines excluded) in one parse call, i.e. one HTTP request or TCP batch. */
  maxLinesPerRequest: number;
  /** UTF-8 bytes of a table or column name. */
  maxNameBytes: number;
  /** Dimensions of one binary array. */
  maxArrayDims: number;
  /** Elements (doubles) of one binary array. */
  maxArrayElements: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_ILP_LIMITS: Readonly<IlpLimits> = Object.freeze({
  // A line is parsed whole; 1 MiB holds a 128 Ki-element array or a long string and still bounds
  // what a TCP connection buffers before it finds a line end.
  maxLineBytes: 1 * MiB,
  // QuestDB's default limit of columns per table; each column costs a few objects per line.
  maxColumnsPerLine: 2048,
  // The parsed form costs ~1 KB per 10-column line, so this caps one request's output near 1 GiB.
  // The official clients flush every 75 000 rows (HTTP) or 600 rows (TCP) by default.
  maxLinesPerRequest: 1 * MiB,
  // QuestDB's cairo.max.file.name.length; also the WAL format's name limit.
  maxNameBytes: DEFAULT_SEGMENT_LIMITS.maxNameBytes,
  // QuestDB's limit for ILP arrays (ColumnType.ARRAY_NDIMS_LIMIT).
  maxArrayDims: DEFAULT_SEGMENT_LIMITS.maxArrayDims,
  // What a WAL segment accepts; in practice maxLineBytes binds first (8 bytes per element).
  maxArrayElements: DEFAULT_SEGMENT_LIMITS.maxArrayElements,
});

/**
 * The limits in force: the defaults with `overrides` applied. Throws `InvalidArgumentError` for an
 * unknown key or a value that is not a positive safe integer, so a typo never disables a bound.
 */
export function resolveIlpLimits(overrides: Partial<IlpLimits> | undefined): IlpLimits {
  if (overrides === undefined) return DEFAULT_ILP_LIMITS;
  if (overrides === null || typeof overrides !== 'object') {
    throw new InvalidArgumentError('ILP limit overrides must be an object');
  }
  const limits: IlpLimits = { ...DEFAULT_ILP_LIMITS };
  for (const [key, value] of Object.entries(overrides) as [keyof IlpLimits, unknown][]) {
    if (!(key in DEFAULT_ILP_LIMITS)) throw new InvalidArgumentError(`unknown ILP limit '${key}'`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new InvalidArgumentError(`ILP limit ${key} must be a positive integer, got ${String(value)}`);
    }
    limits[key] = value;
  }
  // The binary array header stores dims in a u8; a name longer than the WAL format allows could
  // never be stored.
  if (limits.maxArrayDims > 255) throw new InvalidArgumentError('ILP limit maxArrayDims cannot exceed 255');
  if (limits.maxNameBytes > 255) throw new InvalidArgumentError('ILP limit maxNameBytes cannot exceed 255');
  return limits;
}
