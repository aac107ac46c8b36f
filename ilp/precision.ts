import { WalshipError } from '../core/index.js';

/**
 * The unit of a bare designated timestamp (one without an `n`/`t`/`m` suffix), as in the
 * `precision` query parameter of `/write`: nanoseconds (`n`, `ns`, the default), microseconds
 * (`u`, `us`), milliseconds (`ms`), seconds (`s`), minutes (`m`) or hours (`h`).
 */
export type Precision = 'n' | 'ns' | 'u' | 'us' | 'ms' | 's' | 'm' | 'h';

const PRECISIONS: ReadonlySet<string> = new Set(['n', 'ns', 'u', 'us', 'ms', 's', 'm', 'h']);

/**
 * The precision named by `text` (a `precision` query parameter). Absent (`null`) or empty means
 * nanoseconds, as QuestDB. Anything else throws a WalshipError with code `ILP_PRECISION`, kind
 * `invalid` (the HTTP surface answers 400 `not supported`).
 */
export function parsePrecision(text: string | null): Precision {
  if (text === null || text === '') return 'n';
  if (PRECISIONS.has(text)) return text as Precision;
  throw new WalshipError(
    'ILP_PRECISION',
    'invalid',
    `unsupported precision '${text.slice(0, 32)}'; use one of n, ns, u, us, ms, s, m, h`,
  );
}

/** Units a timestamp token can be in, inside the parser. */
export const UNIT_NS = 0;
export const UNIT_US = 1;
export const UNIT_MS = 2;
export const UNIT_S = 3;
export const UNIT_MIN = 4;
export const UNIT_H = 5;
export type TimestampUnit = 0 | 1 | 2 | 3 | 4 | 5;

/** Microseconds per unit; index = TimestampUnit. The ns entry is unused (ns divides). */
export const MICROS_PER_UNIT: readonly number[] = [0, 1, 1_000, 1_000_000, 60_000_000, 3_600_000_000];
export const MICROS_PER_UNIT_BIG: readonly bigint[] = MICROS_PER_UNIT.map((v) => BigInt(v));

/** The parser's unit for a precision. */
export function unitOfPrecision(precision: Precision): TimestampUnit {
  switch (precision) {
    case 'n':
    case 'ns':
      return UNIT_NS;
    case 'u':
    case 'us':
      return UNIT_US;
    case 'ms':
      return UNIT_MS;
    case 's':
      return UNIT_S;
    case 'm':
      return UNIT_MIN;
    case 'h':
      return UNIT_H;
  }
}
