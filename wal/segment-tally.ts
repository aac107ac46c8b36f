import type { SegmentLimits } from './limits.js';

/**
 * Running totals of what a segment decodes to, checked against the segment-wide limits
 * (RFC-0001 §6). The encoder and the decoder count the same things the same way, so a segment
 * the encoder accepts always decodes under the same limits.
 */
export class SegmentTally {
  private cells = 0;
  private columns = 0;
  private boxedValues = 0;
  private readonly limits: SegmentLimits;

  constructor(limits: SegmentLimits) {
    this.limits = limits;
  }

  /** Forgets every count, as a fresh tally: for an encoder that checks records one at a time. */
  reset(): void {
    this.cells = 0;
    this.columns = 0;
    this.boxedValues = 0;
  }

  /**
   * Counts a record's columns and cells. Returns a description of the limit it breaks, or
   * undefined when it fits. Call before allocating anything for the record's rows.
   */
  addRecord(columnCount: number, rowCount: number): string | undefined {
    this.columns += columnCount;
    this.cells += columnCount * rowCount;
    if (this.columns > this.limits.maxColumnsPerSegment) {
      return `segment holds more than maxColumnsPerSegment ${this.limits.maxColumnsPerSegment} column chunks`;
    }
    if (this.cells > this.limits.maxCellsPerSegment) {
      return `segment holds more than maxCellsPerSegment ${this.limits.maxCellsPerSegment} cells (rows x columns)`;
    }
    return undefined;
  }

  /** Counts one non-null double_array or decimal value; returns the broken limit or undefined. */
  addBoxedValue(): string | undefined {
    this.boxedValues += 1;
    if (this.boxedValues > this.limits.maxBoxedValuesPerSegment) {
      return `segment holds more than maxBoxedValuesPerSegment ${this.limits.maxBoxedValuesPerSegment} array and decimal values`;
    }
    return undefined;
  }
}
