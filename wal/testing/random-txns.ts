import { type Random, randomInt } from '../../core/index.js';
import { BATCH_HASH_BYTES, type BatchStamp } from '../batch-stamp.js';
import { COLUMN_TYPES, type ColumnType, type ColumnValues } from '../column-types.js';
import { nullBitmapBytes, setBit } from '../null-bitmap.js';
import { MAX_I64, MIN_I64 } from '../segment-layout.js';
import { type ColumnData, DESIGNATED_TIMESTAMP_COLUMN, TTL_UNITS, type TxnRecord } from '../txn-record.js';

/** Shape of the random txns; every field has a small default suited to fuzzing. */
export interface RandomTxnsOptions {
  txnFirst?: bigint;
  /** Txns to generate (default 1..4). */
  txnCount?: number;
  /** Rows per data txn, at most (default 12). */
  maxRows?: number;
  /** Columns a table grows to, at most (default 6). */
  maxColumns?: number;
  /** Column types to draw from (default all). */
  types?: readonly ColumnType[];
  /**
   * Also draw ttl, trim and drop txns now and then (default false: the draws of callers that hold
   * seeded txns to fixed expectations stay as they were).
   */
  tableOps?: boolean;
}

/**
 * Seeded random txns of one table for fuzz and soak tests: a schema that grows across txns
 * (addedInTxn on the txn that adds a column), random subsets of columns per txn, occasional fences
 * (and with `tableOps` ttl, trim and drop txns),
 * nulls, and values biased towards edge cases (int64 extremes, NaN, -0, empty and astral strings).
 * The same `random` state gives the same txns. Every result is valid input to encodeSegment.
 */
export function randomTxns(random: Random, options: RandomTxnsOptions = {}): TxnRecord[] {
  const txnCount = options.txnCount ?? 1 + randomInt(random, 4);
  const maxRows = options.maxRows ?? 12;
  const maxColumns = options.maxColumns ?? 6;
  const types = options.types ?? COLUMN_TYPES;
  const schema: { name: string; type: ColumnType }[] = [];
  const txns: TxnRecord[] = [];
  const txnFirst = options.txnFirst ?? BigInt(1 + randomInt(random, 1000));
  for (let i = 0; i < txnCount; i++) {
    const txn = txnFirst + BigInt(i);
    const commitTimeUs = 1_700_000_000_000_000n + BigInt(randomInt(random, 1_000_000_000));
    if (random.next() < 0.1) {
      txns.push({ txn, commitTimeUs, kind: 'fence', rowCount: 0, columns: [] });
      continue;
    }
    const op = options.tableOps === true ? random.next() : 1;
    if (schema.length > 0 && op < 0.04) {
      const unit = TTL_UNITS[randomInt(random, TTL_UNITS.length)]!;
      const ttl = { count: random.next() < 0.2 ? 0 : 1 + randomInt(random, 1000), unit };
      txns.push({ txn, commitTimeUs, kind: 'ttl', rowCount: 0, columns: [], ttl });
      continue;
    }
    if (schema.length > 0 && op < 0.08) {
      const trimBeforeUs =
        random.next() < 0.1 ? MAX_I64 : commitTimeUs - BigInt(randomInt(random, 1_000_000));
      txns.push({ txn, commitTimeUs, kind: 'trim', rowCount: 0, columns: [], trimBeforeUs });
      continue;
    }
    if (schema.length > 0 && op < 0.1) {
      // The table is gone: the next data txn creates it anew, every column added again.
      schema.length = 0;
      txns.push({ txn, commitTimeUs, kind: 'drop', rowCount: 0, columns: [] });
      continue;
    }
    // Upsert keys as a table store accepts them: the designated timestamp and some other columns
    // (or none: dedup off).
    if (schema[0]?.name === DESIGNATED_TIMESTAMP_COLUMN && random.next() < 0.05) {
      const keys =
        random.next() < 0.2 ? [] : [schema[0], ...schema.slice(1).filter(() => random.next() < 0.5)];
      const columns = keys.map((c) => randomColumn(random, c.name, c.type, 0, false));
      txns.push({ txn, commitTimeUs, kind: 'dedup', rowCount: 0, columns });
      continue;
    }
    const added = new Set<string>();
    const growBy = schema.length === 0 ? 1 + randomInt(random, 3) : randomInt(random, 2);
    for (let k = 0; k < growBy && schema.length < maxColumns; k++) {
      const column = newColumn(random, schema.length, types);
      schema.push(column);
      added.add(column.name);
    }
    const rowCount = randomInt(random, maxRows + 1);
    const chosen = schema.filter((c) => added.has(c.name) || random.next() < 0.7);
    if (rowCount > 0 && chosen.length === 0) chosen.push(schema[0]!);
    const columns = chosen.map((c) => randomColumn(random, c.name, c.type, rowCount, added.has(c.name)));
    const record: TxnRecord = { txn, commitTimeUs, kind: 'data', rowCount, columns };
    if (random.next() < 0.3) record.batch = randomBatchStamp(random);
    txns.push(record);
  }
  return txns;
}

/** A batch stamp (RFC-0011) with edge values now and then: the longest writer id, the largest seq. */
function randomBatchStamp(random: Random): BatchStamp {
  const hash = new Uint8Array(BATCH_HASH_BYTES);
  for (let i = 0; i < hash.length; i++) hash[i] = randomInt(random, 256);
  return {
    writer: random.next() < 0.2 ? 'w'.repeat(64) : `w-${randomInt(random, 1_000_000)}`,
    seq: random.next() < 0.2 ? MAX_I64 : BigInt(1 + randomInt(random, 1_000_000)),
    parts: 1 + randomInt(random, 1000),
    epoch: BigInt(1 + randomInt(random, 50)),
    hash,
  };
}

function newColumn(random: Random, index: number, types: readonly ColumnType[]) {
  if (index === 0 && types.includes('timestamp') && random.next() < 0.5) {
    return { name: DESIGNATED_TIMESTAMP_COLUMN, type: 'timestamp' as const };
  }
  const type = types[randomInt(random, types.length)]!;
  const name = random.next() < 0.2 ? `列_${index}_\u{1F600}` : `c${index}_${type}`;
  return { name, type };
}

/** One column of `rowCount` random rows, about a quarter of them null in a third of the columns. */
export function randomColumn(
  random: Random,
  name: string,
  type: ColumnType,
  rowCount: number,
  addedInTxn: boolean,
): ColumnData {
  let nulls: Uint8Array | null = null;
  if (random.next() < 0.35) {
    nulls = new Uint8Array(nullBitmapBytes(rowCount));
    for (let row = 0; row < rowCount; row++) if (random.next() < 0.25) setBit(nulls, row);
  }
  return { name, addedInTxn, nulls, data: randomValues(random, type, rowCount) };
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[randomInt(random, items.length)]!;
}

const EDGE_LONGS = [MIN_I64, MAX_I64, 0n, -1n, 1n, 1n << 53n, -(1n << 53n) - 1n];
const EDGE_DOUBLES = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  -0,
  0,
  Number.MIN_VALUE,
  Number.MAX_VALUE,
];
const EDGE_STRINGS = ['', 'a', 'é', '\u{1F600}', '\u0000', '\uFEFFbom', 'x'.repeat(300), '日本語テキスト'];

function randomLong(random: Random): bigint {
  if (random.next() < 0.3) return pick(random, EDGE_LONGS);
  return BigInt.asIntN(64, (BigInt(randomInt(random, 2 ** 32)) << 32n) | BigInt(randomInt(random, 2 ** 32)));
}

function randomDouble(random: Random): number {
  if (random.next() < 0.3) return pick(random, EDGE_DOUBLES);
  return (random.next() - 0.5) * 10 ** randomInt(random, 12);
}

function randomCodePoint(random: Random): number {
  if (random.next() < 0.9) return 32 + randomInt(random, 95);
  const codePoint = 0x80 + randomInt(random, 0x110000 - 0x80);
  // Surrogate code points would make lone surrogates, which UTF-8 cannot carry.
  return codePoint >= 0xd800 && codePoint <= 0xdfff ? codePoint + 0x800 : codePoint;
}

function randomString(random: Random, pool: readonly string[]): string {
  if (random.next() < 0.4) return pick(random, pool);
  const length = randomInt(random, 12);
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCodePoint(randomCodePoint(random));
  return text;
}

function randomValues(random: Random, type: ColumnType, rowCount: number): ColumnValues {
  const rows = Array.from({ length: rowCount }, (_, i) => i);
  switch (type) {
    case 'boolean':
      return { type, values: Uint8Array.from(rows, () => randomInt(random, 2)) };
    case 'long':
      return { type, values: BigInt64Array.from(rows, () => randomLong(random)) };
    case 'timestamp':
      return {
        type,
        values: BigInt64Array.from(
          rows,
          () => 1_700_000_000_000_000n + BigInt(randomInt(random, 2 ** 31)) - 2n ** 30n,
        ),
      };
    case 'double':
      return { type, values: Float64Array.from(rows, () => randomDouble(random)) };
    case 'string':
      return { type, values: rows.map(() => randomString(random, EDGE_STRINGS)) };
    case 'symbol': {
      const pool = Array.from({ length: 1 + randomInt(random, 5) }, (_, i) => `sym${i}`);
      return { type, values: rows.map(() => pick(random, pool)) };
    }
    case 'double_array':
      return { type, values: rows.map(() => randomArray(random)) };
    case 'decimal':
      return {
        type,
        values: rows.map(() => ({ unscaled: randomDecimalUnscaled(random), scale: randomInt(random, 77) })),
      };
  }
}

function randomArray(random: Random) {
  const shape = Array.from({ length: 1 + randomInt(random, 3) }, () => randomInt(random, 4));
  const elements = shape.reduce((a, b) => a * b, 1);
  return { shape, values: Float64Array.from({ length: elements }, () => randomDouble(random)) };
}

function randomDecimalUnscaled(random: Random): bigint {
  const edge = [0n, -1n, (1n << 255n) - 1n, -(1n << 255n), 127n, -128n, 128n];
  if (random.next() < 0.3) return pick(random, edge);
  const bits = BigInt(1 + randomInt(random, 200));
  const magnitude = BigInt(Math.floor(random.next() * 2 ** 52)) << (bits > 52n ? bits - 52n : 0n);
  return random.next() < 0.5 ? -magnitude : magnitude;
}
