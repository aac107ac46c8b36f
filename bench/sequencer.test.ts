/**
 * The sequencer bench's own helpers: the closed loop that drives every load, the ILP bodies the
 * ingest clients POST, and the commit requests the sequencer runs send.
 */
import { describe, expect, it } from 'vitest';
import { parseIlp } from '../ilp/line-parser.js';
import { parseStagedKey } from '../layout/index.js';
import { validateCommitRequest } from '../sequencer/index.js';
import { tableKey } from '../table/index.js';
import { closedLoop, commitRequest, ilpBodies, pooledLoops } from './sequencer.js';
import { generateTrades, timestampUsOf } from './trades.js';

describe('closedLoop', () => {
  it('keeps one call in flight per worker, starts none past the deadline, and times every call', async () => {
    let nowMs = 0;
    const inFlight = new Set<number>();
    const starts: { worker: number; atMs: number }[] = [];
    const result = await closedLoop(
      3,
      100,
      async (worker) => {
        expect(inFlight.has(worker)).toBe(false);
        inFlight.add(worker);
        starts.push({ worker, atMs: nowMs });
        nowMs += 7;
        await new Promise((resolve) => setImmediate(resolve));
        inFlight.delete(worker);
      },
      () => nowMs,
    );
    expect(result.ops).toBe(starts.length);
    expect(result.latenciesMs).toHaveLength(starts.length);
    expect(Math.max(...starts.map((s) => s.atMs))).toBeLessThan(100);
    // The clock passed the deadline, and every worker took part.
    expect(result.elapsedMs).toBeGreaterThanOrEqual(100);
    expect(new Set(starts.map((s) => s.worker))).toEqual(new Set([0, 1, 2]));
    for (const latency of result.latenciesMs) expect(latency).toBeGreaterThan(0);
  });

  it('makes no call when the duration is zero', async () => {
    let calls = 0;
    const result = await closedLoop(4, 0, async () => {
      calls++;
    });
    expect(calls).toBe(0);
    expect(result.ops).toBe(0);
  });

  it('rejects with the first failing call', async () => {
    await expect(
      closedLoop(2, 1_000, async (worker) => {
        if (worker === 1) throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
  });
});

describe('ilpBodies', () => {
  it('holds consecutive rows of the trades, rowsPerRequest lines per body, that the ILP parser reads back', async () => {
    const t = generateTrades(30);
    const bodies = await ilpBodies(t, 'trades', 10, 3);
    expect(bodies).toHaveLength(3);
    bodies.forEach((body, b) => {
      const lines = parseIlp(body, { precision: 'n' });
      expect(lines).toHaveLength(10);
      lines.forEach((line, i) => {
        const row = b * 10 + i;
        expect(line.table).toBe('trades');
        expect(line.timestampUs).toBe(BigInt(timestampUsOf(row)));
        const tradeId = line.fields.find((f) => f.name === 'trade_id')?.value;
        expect(tradeId).toEqual({ type: 'long', value: BigInt(row + 1) });
        const price = line.fields.find((f) => f.name === 'price')?.value;
        expect(price).toEqual({ type: 'double', value: t.price[row] });
      });
    });
  });

  it('refuses more rows than the trades hold', async () => {
    await expect(ilpBodies(generateTrades(5), 'trades', 3, 2)).rejects.toThrow('cannot fill');
  });
});

describe('commitRequest', () => {
  it('is a valid request whose staged keys name its table, writer, epoch and batch', () => {
    const request = commitRequest('w3', 2n, 17n, ['bench_a', 'bench_b', 'bench_c']);
    expect(() => validateCommitRequest(request)).not.toThrow();
    expect(request.segments.map((s) => s.table)).toEqual(['bench_a', 'bench_b', 'bench_c'].map(tableKey));
    for (const segment of request.segments) {
      expect(parseStagedKey(segment.staged)).toEqual({
        tableKey: segment.table,
        writer: 'w3',
        writerEpoch: 2n,
        batchSeq: 17n,
      });
      expect(segment.txnCount).toBe(1);
    }
  });
});

describe('pooledLoops', () => {
  it('adds operations and time and pools the latencies', () => {
    const pooled = pooledLoops([
      { ops: 2, elapsedMs: 10, latenciesMs: [4, 6] },
      { ops: 1, elapsedMs: 5, latenciesMs: [5] },
    ]);
    expect(pooled).toEqual({ ops: 3, elapsedMs: 15, latenciesMs: [4, 6, 5] });
  });
});
