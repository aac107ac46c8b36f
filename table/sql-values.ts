import type { DecimalValue, DoubleArrayValue } from '../wal/index.js';

/**
 * How the boxed column types become SQLite values (sql-types.ts states the storage of each type).
 * Both are exact and deterministic, so a primary and its replicas store identical text.
 */

/**
 * The exact decimal text of `value` = unscaled × 10^-scale, keeping the scale's trailing zeros:
 * `{unscaled: -150n, scale: 2}` → `"-1.50"`, `{unscaled: 5n, scale: 3}` → `"0.005"`, scale 0 → an
 * integer without a point.
 */
export function decimalText(value: DecimalValue): string {
  const { unscaled, scale } = value;
  if (scale === 0) return unscaled.toString();
  const negative = unscaled < 0n;
  let digits = (negative ? -unscaled : unscaled).toString();
  if (digits.length <= scale) digits = digits.padStart(scale + 1, '0');
  const point = digits.length - scale;
  return `${negative ? '-' : ''}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/**
 * A double array as JSON text of nested arrays following its row-major shape: shape [2, 3] gives
 * `[[a,b,c],[d,e,f]]`, a zero-length dimension gives `[]`. JSON has no NaN or ±Infinity: those
 * elements become `null` (as in QuestDB, where a NaN double is null); -0 becomes `0`.
 */
export function doubleArrayJson(value: DoubleArrayValue): string {
  const { shape, values } = value;
  if (shape.length === 1) return JSON.stringify(Array.from(values));
  return JSON.stringify(nest(shape, values, 0, 0).value);
}

/** The nested array for dimensions shape[dim..] starting at element `at`, and the next element. */
function nest(
  shape: number[],
  values: Float64Array,
  dim: number,
  at: number,
): { value: unknown[]; at: number } {
  const length = shape[dim]!;
  if (dim === shape.length - 1)
    return { value: Array.from(values.subarray(at, at + length)), at: at + length };
  const value: unknown[] = [];
  let next = at;
  for (let i = 0; i < length; i++) {
    const inner = nest(shape, values, dim + 1, next);
    value.push(inner.value);
    next = inner.at;
  }
  return { value, at: next };
}
