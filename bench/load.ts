/**
 * The load generator the peer suite points at every server alike (walship, InfluxDB): bodies encoded
 * before the clock starts, POSTed over N keep-alive connections of one undici Pool, each connection
 * driven by a closed loop of its own (send, wait for the whole answer, send the next), so N
 * requests are in flight at any moment and none waits in a client queue. Each request's latency is
 * the time from handing it to the pool to its answer's last byte.
 */
import { Pool } from 'undici';
import { assert } from '../core/index.js';
import { percentile } from './report.js';

/** At most this many connections: a bench that wants more is measuring something else. */
export const LOAD_CONNECTIONS_MAX = 64;
/** A request not answered (headers, then body) within this fails the run instead of hanging it. */
const REQUEST_TIMEOUT_MS = 120_000;
/** Bytes of an unexpected answer kept for the error message. */
const ERROR_BODY_BYTES = 500;

export interface LoadOptions {
  /** Where to POST, e.g. `http://127.0.0.1:9000/write?precision=ns`. */
  url: string;
  /** The request bodies, sent in order of index (request i+N starts after one of the first N ends). */
  bodies: readonly Buffer[];
  /** Keep-alive connections, and requests in flight; 1..LOAD_CONNECTIONS_MAX. */
  connections: number;
  /** The status every answer must have; another one fails the run. Default 204. */
  expectStatus?: number;
  /** Called after every `progressEvery` answered requests (logging). Default: never. */
  onProgress?: (answered: number) => void;
  progressEvery?: number;
}

export interface LoadResult {
  /** From the first request sent to the last answer read, ms. */
  ms: number;
  /** One per request, in order of answer, ms. */
  latencyMs: number[];
}

/** POSTs every body once over `connections` keep-alive connections; rejects on the first failed request. */
export async function postBodies(options: LoadOptions): Promise<LoadResult> {
  const { bodies, connections } = options;
  assert(
    Number.isInteger(connections) && connections >= 1 && connections <= LOAD_CONNECTIONS_MAX,
    `connections in 1..${LOAD_CONNECTIONS_MAX}`,
  );
  const url = new URL(options.url);
  const expectStatus = options.expectStatus ?? 204;
  const pool = new Pool(url.origin, {
    connections,
    pipelining: 1,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const path = `${url.pathname}${url.search}`;
  const latencyMs: number[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < bodies.length) {
      const index = next++;
      const sent = performance.now();
      const answer = await pool.request({
        path,
        method: 'POST',
        body: bodies[index]!,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
      const text = await answer.body.text();
      if (answer.statusCode !== expectStatus) {
        failed = true;
        throw new Error(
          `POST ${path} of body ${index + 1} of ${bodies.length}: ${answer.statusCode} ${text.slice(0, ERROR_BODY_BYTES)}`,
        );
      }
      latencyMs.push(performance.now() - sent);
      if (options.progressEvery !== undefined && latencyMs.length % options.progressEvery === 0)
        options.onProgress?.(latencyMs.length);
    }
  };
  try {
    const started = performance.now();
    const workers = Array.from({ length: Math.min(connections, bodies.length) }, worker);
    const outcomes = await Promise.allSettled(workers);
    const ms = performance.now() - started;
    const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
    if (rejected !== undefined) throw (rejected as PromiseRejectedResult).reason;
    assert(latencyMs.length === bodies.length, 'every body answered once');
    return { ms, latencyMs };
  } finally {
    await pool.close();
  }
}

export interface LoadFigures {
  rowsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p99 / p50: how far the tail is from the typical request. */
  tailRatio: number;
}

/** The figures of a run that carried `rows` rows. */
export function loadFigures(rows: number, result: LoadResult): LoadFigures {
  const p50Ms = percentile(result.latencyMs, 50);
  const p99Ms = percentile(result.latencyMs, 99);
  return {
    rowsPerSecond: (rows / result.ms) * 1000,
    p50Ms,
    p99Ms,
    maxMs: Math.max(...result.latencyMs),
    tailRatio: p99Ms / p50Ms,
  };
}
