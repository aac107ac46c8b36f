import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import { type Clock, type HttpHandler, type Random, systemClock, systemRandom } from '../core/index.js';
import type { ClusterView } from './cluster-view.js';
import { describeError, readText } from './cluster-view.js';
import {
  clientGone,
  failedBeforeSending,
  pathOf,
  queryOf,
  readRequestBody,
  requestHeadersFor,
  responseHeadersFor,
} from './forwarding.js';
import type { RouterTokens } from './read-your-writes.js';
import {
  type RouterAttemptOutcome,
  type RouterEvents,
  type RouterRequestOutcome,
  routerNodeLabel,
} from './router-metrics.js';

/**
 * ILP over HTTP through the router: `POST /write` and `POST /api/v2/write` (query string kept) go
 * to the current primary byte for byte, and its answer comes back unchanged (`X-Walship-Txn` on
 * the 204 included), plus `X-Walship-Served-By`.
 *
 * The body is read first, up to `maxRequestBytes` (`line.http.max.request.size`, as the nodes;
 * past it: 413 before anything is sent), and kept until the request is answered, because during a
 * switchover or failover it may have to be sent again:
 * 1. the primary answers 421 (it is being demoted or was fenced), or the connection fails before
 *    the request left (refused, unreachable): the view is refreshed and the request sent to the
 *    primary it names now — after a backoff (WRITE_BACKOFF_*) once no node takes writes;
 * 2. after `retryTimeoutMs` (default WRITE_RETRY_TIMEOUT_MS) without a primary: 503, so the
 *    client's own retry policy takes over;
 * 3. a connection that fails after the request was sent (the primary died mid-request): 503 with
 *    a message saying the batch may or may not be committed — resending it may write it twice
 *    (at-least-once, as with any ILP client), so the router leaves that decision to the client;
 * 4. a client that goes away stops the retries.
 * Any other answer of the node (204, 400, 401, 413, 503, …) is passed through as it is.
 */

/** How long a write waits for a primary during a switchover or failover before 503 (ms). */
export const WRITE_RETRY_TIMEOUT_MS = 30_000;
/** First and largest pause between write attempts while no node takes writes (ms). */
export const WRITE_BACKOFF_INITIAL_MS = 25;
export const WRITE_BACKOFF_MAX_MS = 1_000;
/**
 * How long one forwarded write may wait for the node's answer: a durable ack waits for the upload
 * (`replication.ack.durable.timeout`, default 30 s), so this is well above it.
 */
export const WRITE_ANSWER_TIMEOUT_MS = 120_000;
/** Bytes of a node's answer to a write kept (ILP answers are a 204 or a small JSON error). */
const WRITE_ANSWER_MAX_BYTES = 1024 * 1024;

const WRITE_PATHS: ReadonlySet<string> = new Set(['/write', '/api/v2/write']);

export interface WriteForwarderOptions {
  view: ClusterView;
  agent: Agent;
  /** Bytes of one request body (`line.http.max.request.size`). */
  maxRequestBytes: number;
  /** Default WRITE_RETRY_TIMEOUT_MS. */
  retryTimeoutMs?: number;
  log: Logger;
  clock?: Clock;
  random?: Random;
  /** Notes each committed write's `X-Walship-Txn`, for read-your-writes (read-your-writes.ts). */
  tokens?: RouterTokens;
  /** Each write and each attempt at a node (`/metrics`, router-metrics.ts). Default: nothing. */
  events?: RouterEvents;
}

export function createWriteForwarder(options: WriteForwarderOptions): HttpHandler {
  const errors = new IlpErrors();
  const clock = options.clock ?? systemClock;
  return async (req, res) => {
    const path = pathOf(req.url);
    if (!WRITE_PATHS.has(path)) return false;
    const startedMs = options.events === undefined ? 0 : clock.monotonicMs();
    const outcome = await answerWrite(options, errors, req, res, path);
    options.events?.onRequest('write', outcome, (clock.monotonicMs() - startedMs) / 1000);
    return true;
  };
}

async function answerWrite(
  options: WriteForwarderOptions,
  errors: IlpErrors,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<RouterRequestOutcome> {
  if (req.method !== 'POST') {
    errors.send(res, 405, 'method not allowed', `method ${req.method} not allowed on ${path}`, {
      Allow: 'POST',
    });
    return 'client_error';
  }
  const read = await readRequestBody(req, options.maxRequestBytes);
  if (read.kind === 'gone') {
    res.destroy();
    return 'cancelled';
  }
  if (read.kind === 'tooLarge') {
    errors.send(
      res,
      413,
      'request too large',
      `request too large: more than ${options.maxRequestBytes} bytes`,
      {
        Connection: 'close',
      },
    );
    return 'client_error';
  }
  return forward(options, errors, req, res, read.body);
}

async function forward(
  options: WriteForwarderOptions,
  errors: IlpErrors,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
): Promise<RouterRequestOutcome> {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? systemRandom;
  const retryTimeoutMs = options.retryTimeoutMs ?? WRITE_RETRY_TIMEOUT_MS;
  const gone = clientGone(res);
  const headers = requestHeadersFor(req);
  const target = `${pathOf(req.url)}${queryOf(req.url) === '' ? '' : `?${queryOf(req.url)}`}`;
  const startedMs = clock.monotonicMs();
  let backoffMs = WRITE_BACKOFF_INITIAL_MS;
  const tried: string[] = [];
  for (;;) {
    if (gone.aborted) return 'cancelled';
    const url = options.view.writeTarget();
    if (url !== null) {
      const outcome = await send(options, url, target, headers, body, gone);
      const node = options.view.snapshot.nodes.find((n) => n.url === url);
      if (!gone.aborted)
        options.events?.onAttempt(
          'write',
          routerNodeLabel({ nodeId: node?.nodeId ?? null, url }),
          attemptOutcome(outcome),
        );
      if (outcome.kind === 'answered') {
        const servedBy = `${node?.nodeId ?? url} (primary)`;
        if (outcome.status === 204) options.tokens?.note(outcome.headers['x-walship-txn']);
        res.writeHead(outcome.status, { ...outcome.headers, 'x-walship-served-by': servedBy });
        res.end(outcome.body);
        return outcome.status < 300 ? 'ok' : 'error';
      }
      if (outcome.kind === 'cut') {
        options.log.warn({ node: url, err: outcome.why }, 'router: a write was cut after it was sent');
        errors.send(
          res,
          503,
          'write outcome unknown',
          `the primary ${url} went away after the request was sent (${outcome.why}): the batch may or may not be ` +
            'committed; resending it may write it twice',
        );
        return gone.aborted ? 'cancelled' : 'unknown';
      }
      tried.push(`${url}: ${outcome.why}`);
      if (tried.length > 10) tried.shift();
      options.view.markSuspect(url);
    }
    if (gone.aborted) return 'cancelled';
    const waitedMs = clock.monotonicMs() - startedMs;
    if (waitedMs >= retryTimeoutMs) {
      const primary = options.view.snapshot.primary;
      errors.send(
        res,
        503,
        'no primary',
        `no primary took this write within ${retryTimeoutMs} ms (a switchover or failover in progress?): ` +
          `${primary.why}${tried.length === 0 ? '' : `; last tried ${tried.join('; ')}`}`,
      );
      return 'no_primary';
    }
    await options.view.refresh();
    const now = options.view.writeTargets();
    // A primary other than the one that just refused: try it at once.
    if (now.length > 0 && (url === null || !now.includes(url))) continue;
    const pauseMs = Math.min(backoffMs * (0.5 + random.next()), retryTimeoutMs - waitedMs);
    backoffMs = Math.min(backoffMs * 2, WRITE_BACKOFF_MAX_MS);
    await clock.sleep(Math.max(0, pauseMs), gone).catch(() => {});
  }
}

type SendOutcome =
  | { kind: 'answered'; status: number; headers: Record<string, string | string[]>; body: string }
  /** Not written: 421 (`refused`), or the connection failed before the request left. */
  | { kind: 'retry'; why: string; refused: boolean }
  /** The connection failed after the request was sent: the outcome is unknown. */
  | { kind: 'cut'; why: string };

function attemptOutcome(outcome: SendOutcome): RouterAttemptOutcome {
  if (outcome.kind === 'answered') return outcome.status < 300 ? 'ok' : 'error';
  if (outcome.kind === 'cut') return 'cut';
  return outcome.refused ? 'refused' : 'unreachable';
}

async function send(
  options: WriteForwarderOptions,
  url: string,
  target: string,
  headers: Record<string, string>,
  body: Buffer,
  gone: AbortSignal,
): Promise<SendOutcome> {
  try {
    const response = await request(`${url}${target}`, {
      method: 'POST',
      dispatcher: options.agent,
      headers,
      body,
      headersTimeout: WRITE_ANSWER_TIMEOUT_MS,
      bodyTimeout: WRITE_ANSWER_TIMEOUT_MS,
      signal: gone,
    });
    const text = await readText(response.body, WRITE_ANSWER_MAX_BYTES);
    if (response.statusCode === 421) return { kind: 'retry', why: '421 not accepting writes', refused: true };
    return {
      kind: 'answered',
      status: response.statusCode,
      headers: responseHeadersFor(response.headers),
      body: text,
    };
  } catch (error) {
    if (failedBeforeSending(error)) return { kind: 'retry', why: describeError(error), refused: false };
    return { kind: 'cut', why: describeError(error) };
  }
}

/** QuestDB's ILP error answer: JSON with exactly code, message, line, errorId. */
class IlpErrors {
  readonly #prefix = `router-${randomBytes(4).toString('hex')}`;
  #counter = 0;

  send(
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ): void {
    if (res.headersSent || res.destroyed) return;
    const body = JSON.stringify({ code, message, line: 0, errorId: `${this.#prefix}-${++this.#counter}` });
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  }
}
