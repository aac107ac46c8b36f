/**
 * `npm run bench -- exactly-once` (issue 18): what batch identities, the client's store-and-forward
 * directory and deduplicated tables cost, each beside the same run without them.
 *
 * - Server side (each pair alternating over ROUNDS rounds, the fastest of each counts): the same 10 000-row trades bodies (10 columns, the official client's encoding)
 *   POSTed by fetch to a fresh primary (product defaults, fs store, local ack), without a batch
 *   identity, with `X-Walship-Batch`, and into a table declared `DEDUP UPSERT KEYS(timestamp,
 *   symbol)` (no row replaces another: the index and the per-txn delete query are the whole cost),
 *   and the same bodies a second time into that table (every row replaces one). The runs alternate
 *   (plain, batch, plain, batch) so the machine's drift hits both; the faster of each counts.
 * - Durable ack latency of sequential 1-row requests on fs, without and with an identity.
 * - End to end through walship's Sender (10 000-row flushes, local ack): batch_ids=off, on, and
 *   with an sf_dir (fsync per batch, and sf_durability=none); and its durable 1-row flush latency
 *   without identities, with them, and with an sf_dir.
 * Every row also shows the raw better-sqlite3 INSERT rate (or the store's PUT latency) of the same
 * run, as the suites before; the comparison that matters is each "with" beside its "without".
 */
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { Sender as WalshipSender } from '../client/index.js';
import { betweenRawInserts, evenTxnRows } from './baselines.js';
import { throughputRow } from './ingest.js';
import { adminSql, postBodies, postBody, tradesBodies, withBenchPrimary } from './primary-requests.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';
import { encodeTradeRow, generateTrades, TRADE_COLUMNS, type Trades, timestampUsOf } from './trades.js';

const ROWS = 500_000;
const ROWS_PER_REQUEST = 10_000;
/** Rows of the Sender runs (each encodes on the bench's thread too). */
const SENDER_ROWS = 200_000;
const LATENCY_SAMPLES = 200;
/** Rounds of each with/without pair, alternating, so the machine's drift hits both alike. */
const ROUNDS = 3;
const LATENCY_WARMUP = 10;
const TABLE = 'trades';

const log = (message: string) => process.stderr.write(`bench exactly-once: ${message}\n`);

interface ServerSide {
  plainMs: number[];
  batchMs: number[];
  dedupMs: number;
  replaceMs: number;
}

async function serverSide(dir: string, bodies: readonly Buffer[]): Promise<ServerSide> {
  const result: ServerSide = { plainMs: [], batchMs: [], dedupMs: 0, replaceMs: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    log(`server side, round ${round + 1}: without identities`);
    result.plainMs.push(
      await withBenchPrimary(dir, `plain-${round}`, {}, (node) => postBodies(node.httpPort, bodies)),
    );
    log(`server side, round ${round + 1}: with X-Walship-Batch`);
    result.batchMs.push(
      await withBenchPrimary(dir, `batch-${round}`, {}, (node) =>
        postBodies(node.httpPort, bodies, `bench-${round}`),
      ),
    );
  }
  log('server side: a deduplicated table, then the same bodies again (every row replaces one)');
  await withBenchPrimary(dir, 'dedup', {}, async (node) => {
    // The table is made by its first row, declared deduplicated, then filled.
    await postBody(node.httpPort, Buffer.from(bodies[0]!.toString('utf8').split('\n')[0]!.concat('\n')));
    await adminSql(node.httpPort, 'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, symbol)');
    result.dedupMs = await postBodies(node.httpPort, bodies);
    result.replaceMs = await postBodies(node.httpPort, bodies);
  });
  return result;
}

/** Sequential 1-row requests, each timed to its 204, with or without an identity. */
async function durableLatencies(dir: string, body: Buffer, withIds: boolean): Promise<number[]> {
  const name = `durable-${withIds ? 'batch' : 'plain'}`;
  return withBenchPrimary(dir, name, { ackMode: 'durable', windowMs: 5 }, async (node) => {
    const samples: number[] = [];
    for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
      const started = performance.now();
      await postBody(node.httpPort, body, withIds ? `lat:${i + 1}` : undefined);
      if (i >= LATENCY_WARMUP) samples.push(performance.now() - started);
    }
    return samples;
  });
}

/** walship's Sender with `extra` config: rows/s of SENDER_ROWS rows in 10 000-row flushes. */
async function senderRun(dir: string, name: string, t: Trades, extra: string): Promise<number> {
  return withBenchPrimary(dir, `sender-${name}`, {}, async (node) => {
    const sender = WalshipSender.fromConfig(
      `http::addr=127.0.0.1:${node.httpPort};auto_flush_rows=${ROWS_PER_REQUEST};auto_flush_interval=0;${extra}`,
    );
    try {
      const started = performance.now();
      for (let row = 0; row < SENDER_ROWS; row++)
        await encodeTradeRow(sender, t, row, TABLE).at(timestampUsOf(row), 'us');
      await sender.flush();
      return performance.now() - started;
    } finally {
      await sender.close();
    }
  });
}

/** walship's Sender, durable acks: 1-row flushes, each timed to its 204. */
async function senderLatencies(dir: string, name: string, t: Trades, extra: string): Promise<number[]> {
  return withBenchPrimary(dir, `sender-lat-${name}`, { ackMode: 'durable', windowMs: 5 }, async (node) => {
    const sender = WalshipSender.fromConfig(`http::addr=127.0.0.1:${node.httpPort};auto_flush=off;${extra}`);
    try {
      const samples: number[] = [];
      for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
        const started = performance.now();
        await encodeTradeRow(sender, t, i, TABLE).at(timestampUsOf(i), 'us');
        await sender.flush();
        if (i >= LATENCY_WARMUP) samples.push(performance.now() - started);
      }
      return samples;
    } finally {
      await sender.close();
    }
  });
}

function latencies(name: string, samples: number[], withoutName: string, without: number[]): BenchRow[] {
  return [50, 99].map((p) => ({
    name: `${name} p${p}`,
    value: percentile(samples, p),
    unit: 'ms',
    better: 'lower' as const,
    baselineName: `${withoutName} p${p}`,
    baseline: percentile(without, p),
    note: `${samples.length} requests each`,
  }));
}

export async function benchExactlyOnce(): Promise<BenchSuiteResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-exactly-once-'));
  const context: BenchSuiteResult['context'] = {
    node: process.version,
    rows: ROWS,
    rowsPerRequest: ROWS_PER_REQUEST,
    columns: TRADE_COLUMNS.length,
    cores: availableParallelism(),
  };
  try {
    log(`generating ${ROWS} rows`);
    const t = generateTrades(ROWS);
    const bodies = await tradesBodies(t, TABLE, ROWS_PER_REQUEST);
    const txnRows = evenTxnRows(t.count, ROWS_PER_REQUEST);
    const { raw, result: server } = await betweenRawInserts(dir, t, txnRows, () => serverSide(dir, bodies));
    log('durable ack latency, without and with identities');
    const oneRow = Buffer.from(`${bodies[0]!.toString('utf8').split('\n')[0]!}\n`);
    const durablePlain = await durableLatencies(dir, oneRow, false);
    const durableBatch = await durableLatencies(dir, oneRow, true);
    log("walship's Sender: batch_ids off, on, sf_dir");
    const sfDir = (name: string) => `sf_dir=${path.join(dir, `sf-${name}`)};`;
    const senderMs = {
      off: [] as number[],
      on: [] as number[],
      sf: [] as number[],
      sfNoSync: [] as number[],
    };
    for (let round = 0; round < ROUNDS; round++) {
      senderMs.off.push(await senderRun(dir, `off-${round}`, t, 'batch_ids=off;'));
      senderMs.on.push(await senderRun(dir, `on-${round}`, t, ''));
      senderMs.sf.push(await senderRun(dir, `sf-${round}`, t, sfDir(`run-${round}`)));
      senderMs.sfNoSync.push(
        await senderRun(dir, `sf-nosync-${round}`, t, `${sfDir(`run-nosync-${round}`)}sf_durability=none;`),
      );
    }
    const sender = {
      off: Math.min(...senderMs.off),
      on: Math.min(...senderMs.on),
      sf: Math.min(...senderMs.sf),
      sfNoSync: Math.min(...senderMs.sfNoSync),
    };
    const senderLatency = {
      off: await senderLatencies(dir, 'off', t, 'batch_ids=off;'),
      on: await senderLatencies(dir, 'on', t, ''),
      sf: await senderLatencies(dir, 'sf', t, sfDir('lat')),
    };
    const plainMs = Math.min(...server.plainMs);
    const batchMs = Math.min(...server.batchMs);
    const runs = (ms: number[]) => `runs ${ms.map((m) => m.toFixed(0)).join(' / ')} ms, the fastest counts`;
    const rows: BenchRow[] = [
      throughputRow('server side, no batch identity', ROWS, plainMs, raw, runs(server.plainMs)),
      throughputRow(
        'server side, X-Walship-Batch on every request',
        ROWS,
        batchMs,
        raw,
        `${(plainMs / batchMs).toFixed(2)}× of without; ${runs(server.batchMs)}`,
      ),
      throughputRow(
        'server side, DEDUP UPSERT KEYS(timestamp, symbol), no row replaced',
        ROWS,
        server.dedupMs,
        raw,
        `${(plainMs / server.dedupMs).toFixed(2)}× of a plain table`,
      ),
      throughputRow(
        'server side, DEDUP table, every row replaces one',
        ROWS,
        server.replaceMs,
        raw,
        `${(plainMs / server.replaceMs).toFixed(2)}× of a plain table`,
      ),
      ...latencies(
        'fs durable ack, 1-row request with X-Walship-Batch',
        durableBatch,
        'without',
        durablePlain,
      ),
      throughputRow(
        "walship's Sender, batch_ids=off",
        SENDER_ROWS,
        sender.off,
        raw,
        `client encoding included; ${runs(senderMs.off)}`,
      ),
      throughputRow(
        "walship's Sender, batch identities (default)",
        SENDER_ROWS,
        sender.on,
        raw,
        `${(sender.off / sender.on).toFixed(2)}× of batch_ids=off; ${runs(senderMs.on)}`,
      ),
      throughputRow(
        "walship's Sender, sf_dir (fsync per batch)",
        SENDER_ROWS,
        sender.sf,
        raw,
        `${(sender.off / sender.sf).toFixed(2)}× of batch_ids=off; ${runs(senderMs.sf)}`,
      ),
      throughputRow(
        "walship's Sender, sf_dir, sf_durability=none",
        SENDER_ROWS,
        sender.sfNoSync,
        raw,
        `${(sender.off / sender.sfNoSync).toFixed(2)}× of batch_ids=off; ${runs(senderMs.sfNoSync)}`,
      ),
      ...latencies(
        "walship's Sender durable 1-row flush, batch identities",
        senderLatency.on,
        'batch_ids=off',
        senderLatency.off,
      ),
      ...latencies(
        "walship's Sender durable 1-row flush, sf_dir",
        senderLatency.sf,
        'batch_ids=off',
        senderLatency.off,
      ),
    ];
    return { suite: 'exactly-once', context, rows };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
