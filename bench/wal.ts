/**
 * WAL segment encode/decode throughput and size on a trades-like table (RFC-0001 §11): ~2 MiB
 * segments (the default rollover) of 100-row txns, per codec, beside same-run baselines over the
 * same raw body bytes — zlib deflateRawSync level 1 / inflateRawSync alone, and JSON.stringify /
 * JSON.parse of the same rows for reference. MB = 10^6 bytes of raw (uncompressed) body.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import {
  availableCodecs,
  type Codec,
  type ColumnData,
  decodeSegment,
  encodeSegment,
  nullBitmapBytes,
  setNull,
  type TxnRecord,
} from '../wal/index.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';

const ROWS_PER_TXN = 100;
const TARGET_RAW_BODY_BYTES = 2 * 1024 * 1024;
/** How long each measurement samples for: long enough for a stable median, short enough for the suite. */
const MEASURE_MS = 1200;
const SYMBOLS = Array.from(
  { length: 20 },
  (_, i) => `${['BTC', 'ETH', 'SOL', 'XRP', 'ADA'][i % 5]}-${['USD', 'EUR', 'USDT', 'GBP'][i >> 2]}`,
);
const VENUES = ['binance', 'coinbase', 'kraken', 'okx', 'bybit'];

/** A trades-like txn generator: per-symbol random-walk prices, ~1 ms timestamps with jitter. */
class TradesGenerator {
  private readonly random: Random;
  private readonly prices = SYMBOLS.map((_, i) => 100 * (i + 1));
  private timestampUs = 1_700_000_000_000_000n;
  private tradeId = 1n;

  constructor(seed: number) {
    this.random = seededRandom(seed);
  }

  txn(txn: bigint): TxnRecord {
    const rows = ROWS_PER_TXN;
    const symbol: string[] = [];
    const side: string[] = [];
    const venue: string[] = [];
    const price = new Float64Array(rows);
    const amount = new Float64Array(rows);
    const bid = new Float64Array(rows);
    const ask = new Float64Array(rows);
    const timestamp = new BigInt64Array(rows);
    const tradeId = new BigInt64Array(rows);
    const note: (string | null)[] = [];
    const noteNulls = new Uint8Array(nullBitmapBytes(rows));
    for (let row = 0; row < rows; row++) {
      const s = randomInt(this.random, SYMBOLS.length);
      this.prices[s] = this.prices[s]! * (1 + (this.random.next() - 0.5) * 0.002);
      const mid = this.prices[s]!;
      symbol.push(SYMBOLS[s]!);
      side.push(this.random.next() < 0.5 ? 'buy' : 'sell');
      venue.push(VENUES[randomInt(this.random, VENUES.length)]!);
      price[row] = Math.round(mid * 100) / 100;
      amount[row] = Math.round(this.random.next() * 5 * 1e4) / 1e4;
      bid[row] = Math.round(mid * 0.9995 * 100) / 100;
      ask[row] = Math.round(mid * 1.0005 * 100) / 100;
      this.timestampUs += 1000n + BigInt(randomInt(this.random, 200)) - 100n;
      timestamp[row] = this.timestampUs;
      tradeId[row] = this.tradeId++;
      const hasNote = this.random.next() < 0.03;
      note.push(hasNote ? `liquidation order ${randomInt(this.random, 1e6)}` : null);
      if (!hasNote) setNull(noteNulls, row);
    }
    const column = (name: string, data: ColumnData['data'], nulls: Uint8Array | null = null): ColumnData => ({
      name,
      addedInTxn: false,
      nulls,
      data,
    });
    return {
      txn,
      commitTimeUs: this.timestampUs,
      kind: 'data',
      rowCount: rows,
      columns: [
        column('symbol', { type: 'symbol', values: symbol }),
        column('side', { type: 'symbol', values: side }),
        column('venue', { type: 'symbol', values: venue }),
        column('price', { type: 'double', values: price }),
        column('amount', { type: 'double', values: amount }),
        column('bid', { type: 'double', values: bid }),
        column('ask', { type: 'double', values: ask }),
        column('trade_id', { type: 'long', values: tradeId }),
        column('note', { type: 'string', values: note }, noteNulls),
        column('timestamp', { type: 'timestamp', values: timestamp }),
      ],
    };
  }
}

/** The same rows as plain objects, as a JSON API would carry them (int64 as numbers: µs fit in 2^53). */
function rowsAsObjects(txns: TxnRecord[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const txn of txns) {
    for (let row = 0; row < txn.rowCount; row++) {
      const object: Record<string, unknown> = {};
      for (const column of txn.columns) {
        const value = column.data.values[row];
        object[column.name] = typeof value === 'bigint' ? Number(value) : (value ?? null);
      }
      out.push(object);
    }
  }
  return out;
}

/** Runs `op` repeatedly for about MEASURE_MS after a warm-up; returns per-call times in ms. */
async function measure(op: () => unknown): Promise<number[]> {
  for (let i = 0; i < 3; i++) await op();
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 5 || performance.now() - started < MEASURE_MS) {
    const t0 = performance.now();
    await op();
    samples.push(performance.now() - t0);
  }
  return samples;
}

const mbPerSecond = (bytes: number, samples: number[]) => bytes / 1e6 / (percentile(samples, 50) / 1000);
const perSecond = (count: number, samples: number[]) => count / (percentile(samples, 50) / 1000);

async function buildTxns(): Promise<TxnRecord[]> {
  const generator = new TradesGenerator(42);
  const probe = Array.from({ length: 10 }, (_, i) => generator.txn(BigInt(i + 1)));
  const probeBytes = (
    await encodeSegment({ tableName: 'trades', epoch: 1n, writerNodeId: 'bench', txns: probe, codec: 'none' })
  ).length;
  const txnCount = Math.round((TARGET_RAW_BODY_BYTES / probeBytes) * probe.length);
  const fresh = new TradesGenerator(42);
  return Array.from({ length: txnCount }, (_, i) => fresh.txn(BigInt(i + 1)));
}

/** Runs the suite: about 10–15 s on Node 20 (two codecs), a little more where zstd exists. */
export async function benchWal(): Promise<BenchSuiteResult> {
  const txns = await buildTxns();
  const rowCount = txns.length * ROWS_PER_TXN;
  const input = { tableName: 'trades', epoch: 1n, writerNodeId: 'bench' };
  const rawSegment = await encodeSegment({ ...input, txns, codec: 'none' });
  const { header } = await decodeSegment(rawSegment);
  const rawBody = rawSegment.subarray(rawSegment.length - 4 - header.bodyBytesRaw, rawSegment.length - 4);
  const rawBytes = header.bodyBytesRaw;

  const deflateBaseline = await measure(() => deflateRawSync(rawBody, { level: 1 }));
  const deflated = deflateRawSync(rawBody, { level: 1 });
  const inflateBaseline = await measure(() => inflateRawSync(deflated));
  const objects = rowsAsObjects(txns);
  const json = JSON.stringify(objects);
  const stringifyBaseline = await measure(() => JSON.stringify(objects));
  const parseBaseline = await measure(() => JSON.parse(json));
  const jsonBytesPerRow = Buffer.byteLength(json) / rowCount;

  const rows: BenchRow[] = [];
  for (const codec of availableCodecs())
    rows.push(...(await codecRows(codec, txns, input, rawBytes, rowCount)));
  const baselines = {
    deflate: { name: 'zlib.deflateRawSync L1 (raw body)', value: mbPerSecond(rawBytes, deflateBaseline) },
    inflate: { name: 'zlib.inflateRawSync (raw body)', value: mbPerSecond(rawBytes, inflateBaseline) },
    stringify: { name: 'JSON.stringify rows/s', value: perSecond(rowCount, stringifyBaseline) },
    parse: { name: 'JSON.parse rows/s', value: perSecond(rowCount, parseBaseline) },
    jsonBytes: { name: 'JSON bytes/row', value: jsonBytesPerRow },
  };
  for (const row of rows) {
    const baseline = baselines[row.baselineName as keyof typeof baselines];
    if (baseline !== undefined) Object.assign(row, { baselineName: baseline.name, baseline: baseline.value });
  }
  return {
    suite: 'wal',
    context: {
      node: process.versions.node,
      rawBodyBytes: rawBytes,
      txns: txns.length,
      rowsPerTxn: ROWS_PER_TXN,
      rows: rowCount,
      columns: txns[0]!.columns.length,
      jsonBytes: Buffer.byteLength(json),
      codecs: availableCodecs().join('+'),
    },
    rows,
  };
}

async function codecRows(
  codec: Codec,
  txns: TxnRecord[],
  input: { tableName: string; epoch: bigint; writerNodeId: string },
  rawBytes: number,
  rowCount: number,
): Promise<BenchRow[]> {
  const segment = await encodeSegment({ ...input, txns, codec });
  const encode = await measure(() => encodeSegment({ ...input, txns, codec }));
  const decode = await measure(() => decodeSegment(segment));
  const note = `p50 of ${encode.length}/${decode.length} runs, p99 encode ${percentile(encode, 99).toFixed(1)} ms, decode ${percentile(decode, 99).toFixed(1)} ms`;
  const storedBytes = segment.length;
  return [
    {
      name: `encode ${codec}`,
      value: mbPerSecond(rawBytes, encode),
      unit: 'MB/s',
      better: 'higher',
      baselineName: 'deflate',
      note,
    },
    {
      name: `decode ${codec}`,
      value: mbPerSecond(rawBytes, decode),
      unit: 'MB/s',
      better: 'higher',
      baselineName: 'inflate',
      note,
    },
    {
      name: `encode ${codec} rows/s`,
      value: perSecond(rowCount, encode),
      unit: 'rows/s',
      better: 'higher',
      baselineName: 'stringify',
    },
    {
      name: `decode ${codec} rows/s`,
      value: perSecond(rowCount, decode),
      unit: 'rows/s',
      better: 'higher',
      baselineName: 'parse',
    },
    {
      name: `compression ratio ${codec}`,
      value: rawBytes / storedBytes,
      unit: 'raw/stored',
      better: 'higher',
      note: `${storedBytes} bytes stored`,
    },
    {
      name: `stored bytes/row ${codec}`,
      value: storedBytes / rowCount,
      unit: 'bytes',
      better: 'lower',
      baselineName: 'jsonBytes',
    },
  ];
}
