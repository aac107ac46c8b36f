import type { BatchStamp } from '../batch-stamp.js';
import type { ColumnValues } from '../column-types.js';
import { anyBitSet, isBitSet } from '../null-bitmap.js';
import type { ColumnData, TxnRecord } from '../txn-record.js';

/**
 * Exact comparison of txn records as the format defines equality (RFC-0001 §3): doubles and int64
 * values compare bit for bit (NaN payloads, -0), a bitmap with no bit set equals no bitmap, and
 * value slots of null rows are ignored. For tests and for checking a decoded segment against
 * what was sent; allocation-free apart from messages.
 */
export function describeTxnDifference(
  expected: readonly TxnRecord[],
  actual: readonly TxnRecord[],
): string | null {
  if (expected.length !== actual.length) return `${actual.length} txns, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++) {
    const difference = describeOneTxn(expected[i]!, actual[i]!);
    if (difference !== null) return `txn index ${i}: ${difference}`;
  }
  return null;
}

function describeBatchDifference(
  expected: BatchStamp | undefined,
  actual: BatchStamp | undefined,
): string | null {
  if (expected === undefined || actual === undefined) {
    return expected === actual ? null : `batch ${actual === undefined ? 'missing' : 'unexpected'}`;
  }
  if (expected.writer !== actual.writer || expected.seq !== actual.seq) {
    return `batch ${actual.writer}:${actual.seq}, expected ${expected.writer}:${expected.seq}`;
  }
  if (expected.parts !== actual.parts || expected.epoch !== actual.epoch) {
    return `batch parts/epoch ${actual.parts}/${actual.epoch}, expected ${expected.parts}/${expected.epoch}`;
  }
  if (Buffer.compare(expected.hash, actual.hash) !== 0) return 'batch hash differs';
  return null;
}

function describeOneTxn(expected: TxnRecord, actual: TxnRecord): string | null {
  if (expected.txn !== actual.txn) return `txn ${actual.txn}, expected ${expected.txn}`;
  if (expected.commitTimeUs !== actual.commitTimeUs) {
    return `commitTimeUs ${actual.commitTimeUs}, expected ${expected.commitTimeUs}`;
  }
  if (expected.kind !== actual.kind) return `kind ${actual.kind}, expected ${expected.kind}`;
  if (expected.rowCount !== actual.rowCount) {
    return `rowCount ${actual.rowCount}, expected ${expected.rowCount}`;
  }
  if (expected.columns.length !== actual.columns.length) {
    return `${actual.columns.length} columns, expected ${expected.columns.length}`;
  }
  const batch = describeBatchDifference(expected.batch, actual.batch);
  if (batch !== null) return batch;
  for (let c = 0; c < expected.columns.length; c++) {
    const difference = describeColumn(expected.columns[c]!, actual.columns[c]!, expected.rowCount);
    if (difference !== null) return `column ${c} '${expected.columns[c]!.name}': ${difference}`;
  }
  return null;
}

function nullAt(column: ColumnData, row: number): boolean {
  return column.nulls !== null && isBitSet(column.nulls, row);
}

function describeColumn(expected: ColumnData, actual: ColumnData, rowCount: number): string | null {
  if (expected.name !== actual.name) return `name '${actual.name}'`;
  if (expected.addedInTxn !== actual.addedInTxn) return `addedInTxn ${actual.addedInTxn}`;
  if (expected.data.type !== actual.data.type) {
    return `type ${actual.data.type}, expected ${expected.data.type}`;
  }
  const expectedHasNulls = expected.nulls !== null && anyBitSet(expected.nulls, rowCount);
  const actualHasNulls = actual.nulls !== null && anyBitSet(actual.nulls, rowCount);
  if (expectedHasNulls !== actualHasNulls) return `has nulls ${actualHasNulls}, expected ${expectedHasNulls}`;
  if (actual.data.values.length !== rowCount) {
    return `${actual.data.values.length} values for ${rowCount} rows`;
  }
  for (let row = 0; row < rowCount; row++) {
    if (nullAt(expected, row) !== nullAt(actual, row)) return `row ${row} null ${nullAt(actual, row)}`;
    if (nullAt(expected, row)) continue;
    if (!sameValue(expected.data, actual.data, row)) {
      return `row ${row}: ${show(actual.data, row)}, expected ${show(expected.data, row)}`;
    }
  }
  return null;
}

/** Compares the 8 bytes of slot `row`: reading a NaN into a JS number may not keep its payload. */
function sameDoubleBits(a: Float64Array, b: Float64Array, row: number): boolean {
  return sameDoubleArrays(a.subarray(row, row + 1), b.subarray(row, row + 1));
}

function sameDoubleArrays(a: Float64Array, b: Float64Array): boolean {
  if (a.length !== b.length) return false;
  const bytesA = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const bytesB = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < bytesA.length; i++) if (bytesA[i] !== bytesB[i]) return false;
  return true;
}

function sameValue(expected: ColumnValues, actual: ColumnValues, row: number): boolean {
  const a = expected.values[row];
  const b = actual.values[row];
  switch (expected.type) {
    case 'double':
      return sameDoubleBits(expected.values, actual.values as Float64Array, row);
    case 'double_array': {
      const x = a as { shape: number[]; values: Float64Array } | null;
      const y = b as { shape: number[]; values: Float64Array } | null;
      if (x === null || y === null) return x === y;
      return (
        x.shape.length === y.shape.length &&
        x.shape.every((d, i) => d === y.shape[i]) &&
        sameDoubleArrays(x.values, y.values)
      );
    }
    case 'decimal': {
      const x = a as { unscaled: bigint; scale: number } | null;
      const y = b as { unscaled: bigint; scale: number } | null;
      if (x === null || y === null) return x === y;
      return x.unscaled === y.unscaled && x.scale === y.scale;
    }
    default:
      return a === b;
  }
}

function show(data: ColumnValues, row: number): string {
  const value = data.values[row];
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null) {
    return JSON.stringify(value, (_key, v) =>
      typeof v === 'bigint' ? `${v}n` : v instanceof Float64Array ? Array.from(v) : v,
    );
  }
  return JSON.stringify(value) ?? String(value);
}
