import { Buffer } from 'node:buffer';
import type { Agent } from 'undici';
import { BATCH_ID_HEADER, BATCH_STATUS_HEADER, type BatchAnswer, batchAnswerOf } from './batch-identity.js';
import type { ClientClock, ClientRandom } from './clock.js';
import type { SenderAddress, SenderAuth } from './config-string.js';
import { type FlushAttempt, FlushGaveUpError, type IlpErrorBody, IlpRequestError } from './errors.js';
import { type ExchangeResult, exchange, originOf } from './http-exchange.js';
import { Backoff, requestTimeoutMsFor, verdictOfStatus } from './write-policy.js';

/**
 * Posts one batch to `/write` on a list of addresses until one commits it (204), following
 * write-policy.ts:
 *
 * 1. send to the current address (the one that last committed; the first at start);
 * 2. 204 → done: that address stays current for the next batch (with `spread`, the next one is);
 *    its X-Walship-Batch-Status says whether the server wrote the batch now (`committed`), had
 *    committed this identity with these bytes before (`replayed`), or ignores identities (absent);
 * 3. 421 / 404, a network error or a timeout → the next address at once; after a whole round of
 *    addresses without a commit, back off first;
 * 4. 500, 503, 504, 507, 509, 523, 524, 529, 599 → back off, then the same address;
 * 5. anything else (400, 401, 403, 405, 409, 413, …) → IlpRequestError at once (409: the server
 *    refused the batch's identity — its seq was used for other bytes, or is below its window);
 * 6. once retry_timeout has passed since the first failure, FlushGaveUpError naming every address
 *    tried and what it answered last.
 *
 * A network error after the body was sent may hide a commit, so resending could write a batch
 * twice; every attempt therefore carries the same `X-Walship-Batch: <writerId>:<seq>`, and a server
 * that tracks identities answers the resend `replayed` instead of writing it again. Without an
 * identity, or with a server that ignores it, this is at-least-once, as with QuestDB's own clients.
 */

/** Attempts a FlushGaveUpError keeps (the newest), so a long retry_timeout cannot grow it unbounded. */
export const ATTEMPTS_KEPT = 100;

/** Characters of a non-JSON error body kept in an IlpRequestError. */
const RAW_BODY_MAX_CHARS = 1_000;

export interface BatchPosterOptions {
  scheme: 'http' | 'https';
  addresses: readonly SenderAddress[];
  auth: SenderAuth;
  requestTimeoutMs: number;
  requestMinThroughputBytesPerS: number;
  retryTimeoutMs: number;
  agent: Agent;
  clock: ClientClock;
  random: ClientRandom;
  /** After a commit, start the next batch at the next address (round-robin over several primaries). */
  spread?: boolean;
}

/** What a committed batch got back. */
export interface PostResult {
  /** `host:port` that committed it. */
  address: string;
  /** The `X-Walship-Txn` header of the 204, if any (for `replayed`: the original commit's). */
  commitToken: string | undefined;
  /** What the server did with the batch's identity. */
  answer: BatchAnswer;
}

export class BatchPoster {
  readonly #options: BatchPosterOptions;
  readonly #headers: Record<string, string>;
  #current = 0;

  constructor(options: BatchPosterOptions) {
    if (options.addresses.length === 0) throw new Error('BatchPoster needs at least one address');
    this.#options = options;
    this.#headers = authHeaders(options.auth);
  }

  /** `host:port` the next batch goes to first. */
  get currentAddress(): string {
    return addressText(this.#options.addresses[this.#current]!);
  }

  /**
   * Sends `body` until an address commits it; see the file comment for the rules. `batchId`
   * (`writerId:seq`) goes with every attempt as X-Walship-Batch.
   */
  async post(body: Uint8Array, batchId?: string): Promise<PostResult> {
    const { addresses, clock, retryTimeoutMs } = this.#options;
    const backoff = new Backoff(this.#options.random);
    const attempts: FlushAttempt[] = [];
    let total = 0;
    let firstFailureMs: number | undefined;
    let hopsSinceWait = 0;
    for (;;) {
      const address = addresses[this.#current]!;
      const result = await this.#send(address, body, batchId);
      const verdict = result.kind === 'network' ? 'next_address' : verdictOfStatus(result.status);
      if (verdict === 'committed' && result.kind === 'response') {
        if (this.#options.spread === true) this.#current = (this.#current + 1) % addresses.length;
        return {
          address: addressText(address),
          commitToken: result.headers['x-walship-txn'],
          answer: batchId === undefined ? 'ignored' : batchAnswerOf(result.headers[BATCH_STATUS_HEADER]),
        };
      }
      if (verdict === 'fail' && result.kind === 'response') throw requestError(address, result, batchId);
      total++;
      attempts.push(attemptOf(address, result));
      if (attempts.length > ATTEMPTS_KEPT) attempts.shift();
      firstFailureMs ??= clock.monotonicMs();
      const elapsedMs = clock.monotonicMs() - firstFailureMs;
      if (elapsedMs >= retryTimeoutMs)
        throw new FlushGaveUpError({ elapsedMs, retryTimeoutMs, attempts, total });
      if (verdict === 'next_address') {
        this.#current = (this.#current + 1) % addresses.length;
        hopsSinceWait++;
        // A fresh address gets its chance at once; a full round of refusals means wait.
        if (hopsSinceWait < addresses.length) continue;
      }
      hopsSinceWait = 0;
      await clock.sleep(backoff.nextMs());
    }
  }

  #send(address: SenderAddress, body: Uint8Array, batchId: string | undefined): Promise<ExchangeResult> {
    const { scheme } = this.#options;
    return exchange(this.#options.agent, `${originOf(scheme, address.host, address.port)}/write`, {
      method: 'POST',
      body,
      headers: batchId === undefined ? this.#headers : { ...this.#headers, [BATCH_ID_HEADER]: batchId },
      timeoutMs: requestTimeoutMsFor(body.length, this.#options),
    });
  }
}

export function addressText(address: SenderAddress): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

function authHeaders(auth: SenderAuth): Record<string, string> {
  if (auth.kind === 'basic') {
    const pair = `${auth.username}:${auth.password.reveal()}`;
    return { authorization: `Basic ${Buffer.from(pair, 'utf8').toString('base64')}` };
  }
  if (auth.kind === 'token') return { authorization: `Bearer ${auth.token.reveal()}` };
  return {};
}

function attemptOf(address: SenderAddress, result: ExchangeResult): FlushAttempt {
  if (result.kind === 'network')
    return { address: addressText(address), status: undefined, answer: result.answer };
  const body = parseErrorBody(result.body);
  const what = body === undefined ? '' : ` ${body.code}`;
  return { address: addressText(address), status: result.status, answer: `${result.status}${what}` };
}

function requestError(
  address: SenderAddress,
  result: Extract<ExchangeResult, { kind: 'response' }>,
  batchId: string | undefined,
): IlpRequestError {
  return new IlpRequestError({
    status: result.status,
    address: addressText(address),
    body: parseErrorBody(result.body),
    text: result.body.slice(0, RAW_BODY_MAX_CHARS),
    batchId,
  });
}

/** QuestDB's `{code,message,line,errorId}` body, or undefined for anything else. */
export function parseErrorBody(text: string): IlpErrorBody | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    if (typeof value.code !== 'string' || typeof value.message !== 'string') return undefined;
    return {
      code: value.code,
      message: value.message,
      line: typeof value.line === 'number' ? value.line : 0,
      errorId: typeof value.errorId === 'string' ? value.errorId : '',
    };
  } catch {
    return undefined;
  }
}
