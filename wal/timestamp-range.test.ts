import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { setBit } from './null-bitmap.js';
import { int64Range } from './timestamp-range.js';

describe('int64Range', () => {
  it('finds the min and max BigInt comparison finds, skipping nulls, over the whole int64 range', () => {
    const int64 = fc.oneof(
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.constantFrom(
        0n,
        -1n,
        2n ** 32n,
        -(2n ** 32n),
        2n ** 31n,
        -(2n ** 31n) - 1n,
        2n ** 63n - 1n,
        -(2n ** 63n),
      ),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(int64, fc.boolean()), { maxLength: 40 }), (cells) => {
        const values = BigInt64Array.from(cells, ([v]) => v);
        const nulls = new Uint8Array(Math.ceil(cells.length / 8) + 1);
        cells.forEach(([, isNull], row) => {
          if (isNull) setBit(nulls, row);
        });
        const kept = cells.filter(([, isNull]) => !isNull).map(([v]) => v);
        const expected =
          kept.length === 0
            ? null
            : {
                // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.min does not take
                minUs: kept.reduce((a, b) => (b < a ? b : a)),
                // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.max does not take
                maxUs: kept.reduce((a, b) => (b > a ? b : a)),
              };
        expect(int64Range(values, nulls, cells.length)).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });
});
