/**
 * ILP parser throughput on realistic trades lines: 3 symbols + 7 fields (doubles, a long, a
 * boolean, a string on 3 % of rows) and a ns designated timestamp, ~4 MiB per request — the text v1
 * form, and the v2 form the clients send by default (doubles binary, timestamps with `n`).
 * Same-run baselines over the same rows: `JSON.parse` of them as a JSON array of objects (what a
 * JSON API would parse), a bare `body.toString().split('\n')` (the floor of any text parser that
 * builds strings), and building the same IlpLine objects from ready values without parsing (the
 * floor set by the output shape: ~22 objects and 2 BigInts per line). MB = 10^6 bytes of body.
 */
import { Buffer } from 'node:buffer';
import { type Random, randomInt, seededRandom } from '../core/index.js';
import { type IlpField, type IlpLine, parseIlp } from '../ilp/index.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';

const TARGET_BODY_BYTES = 4 * 1024 * 1024;
/** How long each measurement samples for: long enough for a stable median, short enough for the suite. */
const MEASURE_MS = 1500;
const SYMBOLS = Array.from(
  { length: 20 },
  (_, i) => `${['BTC', 'ETH', 'SOL', 'XRP', 'ADA'][i % 5]}-${['USD', 'EUR', 'USDT', 'GBP'][i >> 2]}`,
);
const VENUES = ['binance', 'coinbase', 'kraken', 'okx', 'bybit'];

interface Trade {
  symbol: string;
  side: string;
  venue: string;
  price: number;
  amount: number;
  bid: number;
  ask: number;
  tradeId: number;
  maker: boolean;
  note: string | null;
  timestampNs: bigint;
}

function generateTrades(random: Random, count: number): Trade[] {
  const prices = SYMBOLS.map((_, i) => 100 * (i + 1));
  let timestampNs = 1_700_000_000_000_000_000n;
  return Array.from({ length: count }, (_, i) => {
    const s = randomInt(random, SYMBOLS.length);
    prices[s] = prices[s]! * (1 + (random.next() - 0.5) * 0.002);
    const mid = prices[s]!;
    timestampNs += BigInt(1_000_000 + randomInt(random, 200_000) - 100_000);
    return {
      symbol: SYMBOLS[s]!,
      side: random.next() < 0.5 ? 'buy' : 'sell',
      venue: VENUES[randomInt(random, VENUES.length)]!,
      price: Math.round(mid * 100) / 100,
      amount: Math.round(random.next() * 5 * 1e4) / 1e4,
      bid: Math.round(mid * 0.9995 * 100) / 100,
      ask: Math.round(mid * 1.0005 * 100) / 100,
      tradeId: i + 1,
      maker: random.next() < 0.5,
      note: random.next() < 0.03 ? `liquidation order ${randomInt(random, 1e6)}` : null,
      timestampNs,
    };
  });
}

/** One trade as the Node client writes it with protocol_version=1. */
function textLine(t: Trade): string {
  const note = t.note === null ? '' : `,note="${t.note}"`;
  return (
    `trades,symbol=${t.symbol},side=${t.side},venue=${t.venue} price=${t.price},amount=${t.amount},` +
    `bid=${t.bid},ask=${t.ask},trade_id=${t.tradeId}i,maker=${t.maker ? 't' : 'f'}${note} ${t.timestampNs}\n`
  );
}

/** One trade as the Node client writes it with protocol_version=2: doubles binary, `n` timestamps. */
function binaryLine(t: Trade): Buffer {
  const double = (name: string, value: number) => {
    const out = Buffer.alloc(name.length + 12);
    out.write(`,${name}==`, 0, 'latin1');
    out[name.length + 3] = 16;
    out.writeDoubleLE(value, name.length + 4);
    return out;
  };
  const note = t.note === null ? '' : `,note="${t.note}"`;
  return Buffer.concat([
    Buffer.from(`trades,symbol=${t.symbol},side=${t.side},venue=${t.venue} `),
    double('price', t.price).subarray(1),
    double('amount', t.amount),
    double('bid', t.bid),
    double('ask', t.ask),
    Buffer.from(`,trade_id=${t.tradeId}i,maker=${t.maker ? 't' : 'f'}${note} ${t.timestampNs}n\n`),
  ]);
}

/** The same rows as a JSON API would carry them (int64 as numbers: these fit in 2^53). */
function asJson(trades: Trade[]): string {
  return JSON.stringify(
    trades.map((t) => ({
      table: 'trades',
      symbol: t.symbol,
      side: t.side,
      venue: t.venue,
      price: t.price,
      amount: t.amount,
      bid: t.bid,
      ask: t.ask,
      trade_id: t.tradeId,
      maker: t.maker,
      note: t.note,
      timestamp: Number(t.timestampNs / 1000n),
    })),
  );
}

/** The IlpLines of `trades` built directly: the allocation work any parser of this output must do. */
function buildLines(trades: Trade[]): IlpLine[] {
  return trades.map((t, i) => {
    const fields: IlpField[] = [
      { name: 'price', value: { type: 'double', value: t.price } },
      { name: 'amount', value: { type: 'double', value: t.amount } },
      { name: 'bid', value: { type: 'double', value: t.bid } },
      { name: 'ask', value: { type: 'double', value: t.ask } },
      { name: 'trade_id', value: { type: 'long', value: BigInt(t.tradeId) } },
      { name: 'maker', value: { type: 'boolean', value: t.maker } },
    ];
    if (t.note !== null) fields.push({ name: 'note', value: { type: 'string', value: t.note } });
    return {
      line: i + 1,
      table: 'trades',
      symbols: [
        { name: 'symbol', value: t.symbol },
        { name: 'side', value: t.side },
        { name: 'venue', value: t.venue },
      ],
      fields,
      timestampUs: BigInt(Number(t.timestampNs / 1000n)),
    };
  });
}

/** Runs `op` repeatedly for about MEASURE_MS after a warm-up; returns per-call times in ms. */
function measure(op: () => unknown): number[] {
  for (let i = 0; i < 5; i++) op();
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 5 || performance.now() - started < MEASURE_MS) {
    const t0 = performance.now();
    op();
    samples.push(performance.now() - t0);
  }
  return samples;
}

const mbPerSecond = (bytes: number, samples: number[]) => bytes / 1e6 / (percentile(samples, 50) / 1000);
const perSecond = (count: number, samples: number[]) => count / (percentile(samples, 50) / 1000);

/** Runs the suite: about 10 s on Node 20. */
export async function benchIlp(): Promise<BenchSuiteResult> {
  const probe = generateTrades(seededRandom(7), 1000);
  const bytesPerLine = Buffer.byteLength(probe.map(textLine).join('')) / probe.length;
  const trades = generateTrades(seededRandom(7), Math.round(TARGET_BODY_BYTES / bytesPerLine));
  const count = trades.length;
  const text = Buffer.from(trades.map(textLine).join(''));
  const binary = Buffer.concat(trades.map(binaryLine));
  const json = asJson(trades);
  const jsonBytes = Buffer.byteLength(json);
  if (
    parseIlp(text, { precision: 'n' }).length !== count ||
    parseIlp(binary, { precision: 'n' }).length !== count
  ) {
    throw new Error('bench/ilp: the generated requests do not parse to one line per trade');
  }

  const textParse = measure(() => parseIlp(text, { precision: 'n' }));
  const binaryParse = measure(() => parseIlp(binary, { precision: 'n' }));
  const jsonParse = measure(() => JSON.parse(json));
  const split = measure(() => text.toString().split('\n'));
  const floor = measure(() => buildLines(trades));

  const jsonRows = { baselineName: 'JSON.parse of the same rows', baseline: perSecond(count, jsonParse) };
  const jsonMb = { baselineName: 'JSON.parse (MB/s of JSON)', baseline: mbPerSecond(jsonBytes, jsonParse) };
  const splitMb = { baselineName: "toString().split('\\n')", baseline: mbPerSecond(text.length, split) };
  const floorRows = {
    baselineName: 'build the same IlpLines, no parsing',
    baseline: perSecond(count, floor),
  };
  const note = (samples: number[]) =>
    `p50 of ${samples.length} runs, p99 ${percentile(samples, 99).toFixed(1)} ms per request`;
  const rows: BenchRow[] = [
    {
      name: 'parse v1 text lines/s',
      value: perSecond(count, textParse),
      unit: 'lines/s',
      better: 'higher',
      ...jsonRows,
      note: note(textParse),
    },
    {
      name: 'parse v1 text MB/s',
      value: mbPerSecond(text.length, textParse),
      unit: 'MB/s',
      better: 'higher',
      ...jsonMb,
    },
    {
      name: 'parse v1 text MB/s vs split',
      value: mbPerSecond(text.length, textParse),
      unit: 'MB/s',
      better: 'higher',
      ...splitMb,
    },
    {
      name: 'parse v1 text lines/s vs output floor',
      value: perSecond(count, textParse),
      unit: 'lines/s',
      better: 'higher',
      ...floorRows,
    },
    {
      name: 'parse v2 binary-double lines/s',
      value: perSecond(count, binaryParse),
      unit: 'lines/s',
      better: 'higher',
      ...jsonRows,
      note: note(binaryParse),
    },
    {
      name: 'parse v2 binary-double MB/s',
      value: mbPerSecond(binary.length, binaryParse),
      unit: 'MB/s',
      better: 'higher',
      ...jsonMb,
    },
  ];
  return {
    suite: 'ilp',
    context: {
      node: process.versions.node,
      lines: count,
      columns: 10,
      textBytes: text.length,
      binaryBytes: binary.length,
      jsonBytes,
    },
    rows,
  };
}
