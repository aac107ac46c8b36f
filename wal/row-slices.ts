/** A pass over rows [from, to) of a column, run whole or a slice at a time (inSlices). */
export type RowPass = (from: number, to: number) => void;

/**
 * Runs `pass` over rows [0, count) a slice at a time, pausing (yielding) before row `firstPause`
 * and every `sliceRows` rows after it; by default before every row whose index ends in
 * sliceRows - 1 (rows 8191, 16383, … for 8 192), where the encoder's and decoder's loops have
 * always paused. The stepped twins of the plain encoders and decoders run their passes through it.
 */
export function* inSlices(
  count: number,
  sliceRows: number,
  pass: RowPass,
  firstPause = sliceRows - 1,
): Generator<void, void, void> {
  let from = 0;
  for (let pauseAt = firstPause; pauseAt < count; pauseAt += sliceRows) {
    pass(from, pauseAt);
    yield;
    from = pauseAt;
  }
  pass(from, count);
}
