import type { DecimalValue } from '../wal/index.js';
import { MICROS_PER_UNIT, MICROS_PER_UNIT_BIG, type TimestampUnit, UNIT_NS } from './precision.js';

/**
 * Number parsing on a range of a one-byte string (the parser's latin1 view of the request, where
 * char i is byte i). Every function returns `undefined` for text that is not the number it expects
 * or is out of range; none throws. Integers take a JS-number fast path while the value stays a
 * safe integer, and go through BigInt only beyond that, so int64 values are always exact.
 */

const ZERO = 48;
const NINE = 57;
const MINUS = 45;
const PLUS = 43;
const DOT = 46;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INT256_MIN = -(2n ** 255n);
const INT256_MAX = 2n ** 255n - 1n;
/** Largest x with x * 10 + 9 <= MAX_SAFE_INTEGER: past it, a digit loop must leave the fast path. */
const SAFE_ACCUMULATE_MAX = Math.floor((Number.MAX_SAFE_INTEGER - 9) / 10);
/** 10^0 .. 10^22 are exact doubles, so m * 10^k and m / 10^k round once (the Clinger fast path). */
const EXACT_POW10: readonly number[] = Array.from({ length: 23 }, (_, i) => 10 ** i);
/** DECIMAL(76) is QuestDB's widest decimal; its scale cannot exceed 76. */
const MAX_DECIMAL_SCALE = 76;

/**
 * Where the digits of `[+-]?digits` in [start, end) begin, or -1 if the text is not that; the sign
 * is left in `integerNegative` (a module variable, so the hot path allocates nothing).
 */
let integerNegative = false;

function integerDigitsStart(text: string, start: number, end: number): number {
  const first = text.charCodeAt(start);
  integerNegative = first === MINUS;
  const digitsStart = integerNegative || first === PLUS ? start + 1 : start;
  if (digitsStart >= end) return -1;
  for (let i = digitsStart; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < ZERO || c > NINE) return -1;
  }
  return digitsStart;
}

/** The digits in [start, end) as a number, or -1 when the value is not a safe integer. */
function safeDigits(text: string, start: number, end: number): number {
  let value = 0;
  for (let i = start; i < end; i++) {
    if (value > SAFE_ACCUMULATE_MAX) return -1;
    value = value * 10 + (text.charCodeAt(i) - ZERO);
  }
  return value;
}

/** The signed integer in [digitsStart, end) as a bigint if it fits int64; digits already checked. */
function bigInt64(text: string, negative: boolean, digitsStart: number, end: number): bigint | undefined {
  let p = digitsStart;
  while (p < end - 1 && text.charCodeAt(p) === ZERO) p++;
  // 20 significant digits are always beyond int64; refusing early keeps BigInt parsing O(1).
  if (end - p > 19) return undefined;
  const magnitude = BigInt(text.slice(p, end));
  const value = negative ? -magnitude : magnitude;
  return value < INT64_MIN || value > INT64_MAX ? undefined : value;
}

/** `[+-]?digits` in [start, end) as an exact int64, or undefined (not an integer, or out of range). */
export function parseInt64(text: string, start: number, end: number): bigint | undefined {
  return asBigInt(parseInt64Number(text, start, end));
}

/**
 * `parseInt64`, but a value within ±(2^53 − 1) comes back as a number (no BigInt is made): the
 * parser keeps such values as numbers until they are bound.
 */
export function parseInt64Number(text: string, start: number, end: number): number | bigint | undefined {
  const digitsStart = integerDigitsStart(text, start, end);
  if (digitsStart < 0) return undefined;
  const negative = integerNegative;
  const fast = safeDigits(text, digitsStart, end);
  if (fast >= 0) return negative ? -fast : fast;
  return bigInt64(text, negative, digitsStart, end);
}

function asBigInt(value: number | bigint | undefined): bigint | undefined {
  return typeof value === 'number' ? BigInt(value) : value;
}

/** True for `[+-]?digits`, whatever the value's size. */
export function isIntegerText(text: string, start: number, end: number): boolean {
  return integerDigitsStart(text, start, end) >= 0;
}

/** floor(value / 1000) for bigints: BigInt division truncates toward zero. */
function floorDiv1000(value: bigint): bigint {
  const quotient = value / 1000n;
  return value % 1000n < 0n ? quotient - 1n : quotient;
}

/**
 * `[+-]?digits` in [start, end), read in `unit`, as microseconds since the epoch: nanoseconds are
 * divided with floor (so -1 ns is -1 µs, the microsecond that contains it), coarser units are
 * multiplied. Undefined when the text is not an integer, the value is outside int64, or the result
 * in µs is outside int64.
 */
export function parseTimestampMicros(
  text: string,
  start: number,
  end: number,
  unit: TimestampUnit,
): bigint | undefined {
  return asBigInt(parseTimestampMicrosNumber(text, start, end, unit));
}

/**
 * `parseTimestampMicros`, but a result within ±2^53 comes back as a number (no BigInt is made):
 * every µs timestamp before the year 2255 does.
 */
export function parseTimestampMicrosNumber(
  text: string,
  start: number,
  end: number,
  unit: TimestampUnit,
): number | bigint | undefined {
  const digitsStart = integerDigitsStart(text, start, end);
  if (digitsStart < 0) return undefined;
  const negative = integerNegative;
  if (unit === UNIT_NS) {
    // Split off the last three digits: the rest is the µs count, exact as a number for any date
    // before the year 2255, so the common 19-digit ns timestamp never touches BigInt parsing.
    const split = Math.max(digitsStart, end - 3);
    const micros = safeDigits(text, digitsStart, split);
    if (micros >= 0) {
      if (!negative) return micros;
      const nanos = safeDigits(text, split, end);
      return -micros - (nanos > 0 ? 1 : 0);
    }
    const value = bigInt64(text, negative, digitsStart, end);
    return value === undefined ? undefined : floorDiv1000(value);
  }
  const fast = safeDigits(text, digitsStart, end);
  if (fast >= 0) {
    const micros = fast * MICROS_PER_UNIT[unit]!;
    if (micros <= Number.MAX_SAFE_INTEGER) return negative ? -micros : micros;
  }
  const value = bigInt64(text, negative, digitsStart, end);
  if (value === undefined) return undefined;
  const micros = value * MICROS_PER_UNIT_BIG[unit]!;
  return micros < INT64_MIN || micros > INT64_MAX ? undefined : micros;
}

/**
 * The parts of `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?` in [start, end), left in these
 * module variables (no allocation on the hot path); `scanDecimal` returns false if it is not that.
 */
let decimalNegative = false;
let decimalMantissa = 0;
let decimalIntStart = 0;
let decimalIntEnd = 0;
let decimalFracStart = 0;
let decimalFracEnd = 0;
/** The exponent, clamped to ±100 000 (far past anything representable). */
let decimalExponent = 0;

function scanDecimal(text: string, start: number, end: number): boolean {
  let p = start;
  const first = text.charCodeAt(p);
  decimalNegative = first === MINUS;
  if (decimalNegative || first === PLUS) p++;
  // Beyond 15 significant digits the mantissa may be inexact: parseDouble then takes its slow path.
  let mantissa = 0;
  decimalIntStart = p;
  for (; p < end; p++) {
    const d = text.charCodeAt(p) - ZERO;
    if (d < 0 || d > 9) break;
    mantissa = mantissa * 10 + d;
  }
  decimalIntEnd = p;
  decimalFracStart = p;
  if (p < end && text.charCodeAt(p) === DOT) {
    decimalFracStart = ++p;
    for (; p < end; p++) {
      const d = text.charCodeAt(p) - ZERO;
      if (d < 0 || d > 9) break;
      mantissa = mantissa * 10 + d;
    }
  }
  decimalFracEnd = p;
  decimalMantissa = mantissa;
  if (decimalIntEnd === decimalIntStart && decimalFracEnd === decimalFracStart) return false;
  decimalExponent = 0;
  if (p < end && (text.charCodeAt(p) | 32) === 101) {
    p++;
    const sign = text.charCodeAt(p);
    const expNegative = sign === MINUS;
    if (expNegative || sign === PLUS) p++;
    if (p >= end) return false;
    let exponent = 0;
    for (; p < end; p++) {
      const d = text.charCodeAt(p) - ZERO;
      if (d < 0 || d > 9) return false;
      if (exponent < 100_000) exponent = exponent * 10 + d;
    }
    decimalExponent = expNegative ? -exponent : exponent;
  }
  return p === end;
}

/**
 * A double in JS/QuestDB text form: `2615.54`, `-0.5`, `2`, `1e+21`, `.5`, `NaN`, `Infinity`,
 * `-Infinity`. Short mantissas take an exact fast path; the rest go through `Number()` once the
 * grammar has been checked (so `Number`'s extras — hex, blanks, `_` — are never accepted).
 */
export function parseDouble(text: string, start: number, end: number): number | undefined {
  if (!scanDecimal(text, start, end)) return parseSpecialDouble(text, start, end);
  const exponent = decimalExponent - (decimalFracEnd - decimalFracStart);
  const mantissa = decimalMantissa;
  if (mantissa < 1e15 && exponent >= -22 && exponent <= 22) {
    const magnitude = exponent < 0 ? mantissa / EXACT_POW10[-exponent]! : mantissa * EXACT_POW10[exponent]!;
    return decimalNegative ? -magnitude : magnitude;
  }
  return Number(text.slice(start, end));
}

function parseSpecialDouble(text: string, start: number, end: number): number | undefined {
  const length = end - start;
  if (length === 3 && text.startsWith('NaN', start)) return Number.NaN;
  const first = text.charCodeAt(start);
  const signed = first === MINUS || first === PLUS;
  const bodyStart = signed ? start + 1 : start;
  if (end - bodyStart === 8 && text.startsWith('Infinity', bodyStart)) {
    return first === MINUS ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  return undefined;
}

/** Why a decimal text was refused, for the error message. */
export type DecimalRefusal = 'syntax' | 'scale' | 'overflow';

/**
 * A decimal in text form (the `d` suffix already removed): `123.45` → {unscaled 12345, scale 2};
 * the scale is kept as written (`1.50` has scale 2); a positive exponent is folded into the
 * unscaled value (`1e3` → {1000, 0}). `NaN` and `±Infinity` are the null decimal (QuestDB has no
 * such decimal values). Refused: other syntax, a scale above 76, or an unscaled value outside
 * 256-bit two's complement (what the WAL format and QuestDB's Decimal256 hold).
 */
export function parseDecimalText(
  text: string,
  start: number,
  end: number,
): DecimalValue | null | DecimalRefusal {
  if (!scanDecimal(text, start, end))
    return parseSpecialDouble(text, start, end) === undefined ? 'syntax' : null;
  const negative = decimalNegative;
  let scale = decimalFracEnd - decimalFracStart - decimalExponent;
  if (scale > MAX_DECIMAL_SCALE) return 'scale';
  let digits = text.slice(decimalIntStart, decimalIntEnd) + text.slice(decimalFracStart, decimalFracEnd);
  let firstSignificant = 0;
  while (firstSignificant < digits.length - 1 && digits.charCodeAt(firstSignificant) === ZERO)
    firstSignificant++;
  digits = digits.slice(firstSignificant);
  const isZero = digits === '0';
  // 2^255 has 77 digits: more significant digits (after the exponent) can never fit.
  if (!isZero && digits.length + Math.max(0, -scale) > 78) return 'overflow';
  if (scale < 0) {
    if (!isZero) digits += '0'.repeat(-scale);
    scale = 0;
  }
  const magnitude = BigInt(digits);
  const unscaled = negative ? -magnitude : magnitude;
  if (unscaled < INT256_MIN || unscaled > INT256_MAX) return 'overflow';
  return { unscaled, scale };
}

/** True when a bigint fits 256-bit two's complement (the WAL format's and QuestDB's widest decimal). */
export function fitsInt256(value: bigint): boolean {
  return value >= INT256_MIN && value <= INT256_MAX;
}

export { MAX_DECIMAL_SCALE };
