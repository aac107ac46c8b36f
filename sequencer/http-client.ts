/**
 * A `SequencerStore` that is a client of `walship sequencer serve` (RFC-0003 "The SQLite backend
 * and walship sequencer serve"): one undici `Pool` with keep-alive per service, a time limit per
 * request, no retries of its own. A timeout or a connection failure is SEQUENCER_UNAVAILABLE: for
 * a commit the outcome is then unknown and the caller sends the same request again (commits are
 * idempotent per (writer, writerEpoch, batchSeq)). Errors the service answers come back as the
 * same WalshipError classes the backend threw (`errorFromWire`).
 *
 * The wire format (shared with http-service.ts): JSON, every bigint as a decimal string, heads'
 * tables as an object `{tableKey: "txn"}`, errors as `{code, kind, message}`.
 */
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import {
  ClosedError,
  type ErrorCode,
  type ErrorKind,
  InvalidArgumentError,
  InvalidConfigError,
  WalshipError,
} from '../core/index.js';
import { asTableKey } from '../table/index.js';
import { validateCommitRequest, validateReadLimit, validateTable, validateWriter } from './commit-request.js';
import {
  parseSequencerConnectionString,
  type SequencerConnectionConfig,
  sequencerOrigin,
} from './connection-string.js';
import {
  type ClosedWriterEpoch,
  type CommitRequest,
  type CommitResult,
  FdbClientMissingError,
  type Heads,
  type LogEntry,
  SequencerBatchOrderError,
  SequencerClusterMismatchError,
  SequencerFencedError,
  SequencerNotInitializedError,
  type SequencerStore,
  SequencerUnavailableError,
  type WriterRecord,
} from './sequencer-store.js';

// --- Bounds -------------------------------------------------------------------------------------

/** One request's time limit by default: far above a commit's group fsync, far below a writer's patience. */
export const REQUEST_TIMEOUT_MS_DEFAULT = 10_000;
/** How long one watch long poll waits at the service before answering "nothing new". */
export const WATCH_WAIT_MS_DEFAULT = 25_000;
/** A long poll's time limit is its wait plus this (the answer still has to travel). */
const WATCH_MARGIN_MS = 5_000;
/** Keep-alive connections per service at most: commits and reads in flight plus one long poll. */
const POOL_CONNECTIONS_MAX = 32;
/** An idle pooled connection is closed after this (below the server's 65 s keep-alive). */
const KEEP_ALIVE_TIMEOUT_MS = 30_000;
/** Bytes of one answer at most: a readLog page (≤ 1000 entries ≈ 600 kB) or the writers list. */
const RESPONSE_BYTES_MAX = 64 * 1024 * 1024;

export interface HttpSequencerClientOptions {
  /** The service's origin, `http://host:port` or `https://host:port`. */
  origin: string;
  /** Bearer token sent with every request (the highest scope this client needs). */
  token?: string | undefined;
  /** Time limit of each request in ms (default 10 s); a watch uses its wait plus a margin. */
  timeoutMs?: number | undefined;
  /** How long one long poll waits at the service (default 25 s). */
  watchWaitMs?: number | undefined;
  /** PEM CA certificates to trust instead of the system's. */
  ca?: string | Buffer | undefined;
}

/** A client for `config` (a parsed or raw connection string), its tls_ca file read now. */
export async function openHttpSequencer(
  config: SequencerConnectionConfig | string,
): Promise<HttpSequencerClient> {
  const parsed = typeof config === 'string' ? parseSequencerConnectionString(config) : config;
  let ca: Buffer | undefined;
  if (parsed.tlsCaPath !== undefined) {
    ca = await readFile(parsed.tlsCaPath).catch((error: NodeJS.ErrnoException) => {
      throw new InvalidConfigError(
        `sequencer connection string: tls_ca: cannot read ${parsed.tlsCaPath}: ${error.code ?? error.message}`,
      );
    });
  }
  return new HttpSequencerClient({
    origin: sequencerOrigin(parsed),
    token: parsed.token,
    timeoutMs: parsed.timeoutMs,
    ca,
  });
}

export class HttpSequencerClient implements SequencerStore {
  readonly origin: string;
  readonly #pool: Pool;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;
  readonly #watchWaitMs: number;
  /** Aborted by close(): every request in flight ends, pending watches resolve with their `after`. */
  readonly #closing = new AbortController();

  constructor(options: HttpSequencerClientOptions) {
    this.origin = options.origin;
    this.#timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.#watchWaitMs = options.watchWaitMs ?? WATCH_WAIT_MS_DEFAULT;
    this.#headers = options.token === undefined ? {} : { authorization: `Bearer ${options.token}` };
    this.#pool = new Pool(options.origin, {
      connections: POOL_CONNECTIONS_MAX,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      pipelining: 1,
      connect: { keepAlive: true, ...(options.ca === undefined ? {} : { ca: options.ca }) },
    });
  }

  async initialize(clusterId: string, startAfter: Map<string, bigint>): Promise<void> {
    if (typeof clusterId !== 'string' || clusterId === '')
      throw new InvalidArgumentError('cluster id must be a non-empty string');
    if (!(startAfter instanceof Map))
      throw new InvalidArgumentError('startAfter must be a Map of table key to txn');
    for (const [table, txn] of startAfter) {
      validateTable(table);
      if (typeof txn !== 'bigint' || txn < 0n)
        throw new InvalidArgumentError(`startAfter of ${table} must be a bigint ≥ 0`);
    }
    await this.#call('POST', '/v1/initialize', { clusterId, startAfter: mapToWire(startAfter) });
  }

  async clusterId(): Promise<string | null> {
    const answer = (await this.#call('GET', '/v1/cluster')) as { clusterId: string | null };
    return answer.clusterId;
  }

  async registerWriter(writer: string): Promise<WriterRecord> {
    validateWriter(writer);
    return writerFromWire(await this.#call('POST', '/v1/writers/register', { writer }));
  }

  async fence(writer: string, epoch: bigint): Promise<{ record: WriterRecord; heads: Heads }> {
    validateWriter(writer);
    if (typeof epoch !== 'bigint' || epoch < 0n) throw new InvalidArgumentError('epoch must be a bigint ≥ 0');
    const answer = (await this.#call('POST', '/v1/writers/fence', { writer, epoch: String(epoch) })) as {
      record: unknown;
      heads: unknown;
    };
    return { record: writerFromWire(answer.record), heads: headsFromWire(answer.heads) };
  }

  async commit(request: CommitRequest): Promise<CommitResult> {
    validateCommitRequest(request);
    return commitResultFromWire(await this.#call('POST', '/v1/commit', commitRequestToWire(request)));
  }

  async readLog(table: string, fromTxn: bigint, limit: number): Promise<LogEntry[]> {
    validateTable(table);
    validateReadLimit(limit);
    if (typeof fromTxn !== 'bigint' || fromTxn < 0n)
      throw new InvalidArgumentError('fromTxn must be a bigint ≥ 0');
    const query = new URLSearchParams({ table, from: String(fromTxn), limit: String(limit) });
    const answer = (await this.#call('GET', `/v1/log?${query}`)) as { entries: unknown[] };
    return answer.entries.map(entryFromWire);
  }

  async heads(): Promise<Heads> {
    return headsFromWire(await this.#call('GET', '/v1/heads'));
  }

  async writers(): Promise<WriterRecord[]> {
    const answer = (await this.#call('GET', '/v1/writers')) as { writers: unknown[] };
    return answer.writers.map(writerFromWire);
  }

  /** The service's /status as JSON (bigints as decimal strings): `walship sequencer status`. */
  async status(): Promise<Record<string, unknown>> {
    return (await this.#call('GET', '/status')) as Record<string, unknown>;
  }

  /** Long polls until the version exceeds `after`; `after` once `signal` aborts or the client closes. */
  async watch(after: bigint, signal: AbortSignal): Promise<bigint> {
    this.#assertOpen();
    for (;;) {
      if (signal.aborted || this.#closing.signal.aborted) return after;
      const query = `after=${after}&waitMs=${this.#watchWaitMs}`;
      let answer: unknown;
      try {
        answer = await this.#call('GET', `/v1/watch?${query}`, undefined, {
          timeoutMs: this.#watchWaitMs + WATCH_MARGIN_MS,
          signal,
        });
      } catch (error) {
        if (signal.aborted || this.#closing.signal.aborted) return after;
        throw error;
      }
      const version = bigintFromWire((answer as { version: unknown }).version, 'version');
      if (version > after) return version;
    }
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    await this.#pool.destroy();
  }

  /** The parsed JSON answer of one request; throws the error the service answered. */
  async #call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    this.#assertOpen();
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signals = [
      timeout,
      this.#closing.signal,
      ...(options.signal === undefined ? [] : [options.signal]),
    ];
    const what = `sequencer ${this.origin} ${method} ${path.split('?')[0]}`;
    let status: number;
    let text: string;
    try {
      const response = await this.#pool.request({
        path,
        method,
        headers: {
          ...this.#headers,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.any(signals),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = response.statusCode;
      text = await readBounded(response.body);
    } catch (error) {
      if (this.#closing.signal.aborted) throw new ClosedError(`${what}: the client was closed`);
      const reason = timeout.aborted ? `no answer within ${timeoutMs} ms` : describeNetworkError(error);
      throw new SequencerUnavailableError(`${what}: ${reason}; the outcome is unknown, send it again`, {
        cause: error,
      });
    }
    if (status < 200 || status >= 300) throw errorFromWire(status, text, what);
    try {
      return text === '' ? {} : JSON.parse(text);
    } catch (cause) {
      throw new WalshipError('SEQUENCER_PROTOCOL', 'invalid', `${what}: the answer is not JSON`, { cause });
    }
  }

  #assertOpen(): void {
    if (this.#closing.signal.aborted) throw new ClosedError(`sequencer client for ${this.origin} is closed`);
  }
}

async function readBounded(body: AsyncIterable<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.byteLength;
    if (bytes > RESPONSE_BYTES_MAX) throw new Error(`the answer exceeds ${RESPONSE_BYTES_MAX} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeNetworkError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? String(error);
  return code === undefined ? message : `${message} (${code})`;
}

// --- Errors on the wire -------------------------------------------------------------------------

/** HTTP status for a WalshipError `kind` (the admin routes' mapping, core/admin-http.ts). */
export function httpStatusOfKind(kind: ErrorKind): number {
  switch (kind) {
    case 'invalid':
      return 400;
    case 'fenced':
    case 'conflict':
      return 409;
    case 'unavailable':
    case 'closed':
      return 503;
    default:
      return 500;
  }
}

type ErrorClass = new (message: string) => WalshipError;

/** Codes the client throws as their own class (matching on `instanceof` works across HTTP). */
const ERROR_CLASSES: Record<string, ErrorClass> = {
  SEQUENCER_FENCED: SequencerFencedError,
  SEQUENCER_BATCH_ORDER: SequencerBatchOrderError,
  SEQUENCER_CLUSTER_MISMATCH: SequencerClusterMismatchError,
  SEQUENCER_NOT_INITIALIZED: SequencerNotInitializedError,
  SEQUENCER_UNAVAILABLE: SequencerUnavailableError,
  FDB_CLIENT_MISSING: class extends FdbClientMissingError {
    constructor(_message: string) {
      super();
    }
  },
  INVALID_ARGUMENT: InvalidArgumentError,
};

const KINDS: ReadonlySet<string> = new Set([
  'invalid',
  'unavailable',
  'data',
  'conflict',
  'fenced',
  'closed',
  'internal',
]);

/**
 * The error an answer with HTTP `status` and body `text` stands for. A service-side CLOSED (the
 * service is shutting down its store) is SEQUENCER_UNAVAILABLE here: for this client it is a
 * dependency going away, retryable, not this client being closed. Auth refusals (401, 403, 429)
 * are SEQUENCER_UNAUTHORIZED (invalid: the configured token is wrong or lacks the scope).
 */
export function errorFromWire(status: number, text: string, what: string): WalshipError {
  let body: { code?: unknown; kind?: unknown; message?: unknown } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON (a proxy's page): judged by its status below
  }
  const code = typeof body.code === 'string' ? body.code : undefined;
  const message = `${what}: ${typeof body.message === 'string' ? body.message : `HTTP ${status}`}`;
  if (status === 401 || status === 403 || status === 429)
    return new WalshipError('SEQUENCER_UNAUTHORIZED', 'invalid', message, { details: { status } });
  if (code === 'CLOSED') return new SequencerUnavailableError(message, { details: { remoteCode: code } });
  const known = code === undefined ? undefined : ERROR_CLASSES[code];
  if (known !== undefined) return new known(message);
  if (code !== undefined && typeof body.kind === 'string' && KINDS.has(body.kind))
    // The service's own code, passed on as is: a newer service may send one this version does not register.
    return new WalshipError(code as ErrorCode, body.kind as ErrorKind, message);
  if (status === 413) return new InvalidArgumentError(message);
  if (status >= 500) return new SequencerUnavailableError(message, { details: { status } });
  return new WalshipError('SEQUENCER_PROTOCOL', 'invalid', message, { details: { status } });
}

// --- Values on the wire -------------------------------------------------------------------------

/** `value` with every bigint as a decimal string and every Map as an object: JSON-ready. */
export function toWire(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toWire(v)]));
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]));
  }
  return value;
}

function mapToWire(map: Map<string, bigint>): Record<string, string> {
  return Object.fromEntries([...map].map(([table, txn]) => [table, String(txn)]));
}

export function commitRequestToWire(request: CommitRequest): unknown {
  return {
    writer: request.writer,
    writerEpoch: String(request.writerEpoch),
    batchSeq: String(request.batchSeq),
    segments: request.segments.map((s) => ({
      table: s.table,
      staged: s.staged,
      txnCount: s.txnCount,
      bytes: s.bytes,
      crc32: s.crc32,
    })),
  };
}

/** A decimal string (as the wire carries bigints) → bigint; anything else is INVALID_ARGUMENT. */
export function bigintFromWire(value: unknown, field: string): bigint {
  if (typeof value !== 'string' || !/^-?\d{1,40}$/.test(value))
    throw new InvalidArgumentError(`${field} must be a decimal string`);
  return BigInt(value);
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new InvalidArgumentError(`${field} must be a JSON object`);
  return value as Record<string, unknown>;
}

export function commitRequestFromWire(value: unknown): CommitRequest {
  const body = object(value, 'commit request');
  if (!Array.isArray(body.segments)) throw new InvalidArgumentError('segments must be an array');
  return {
    writer: body.writer as string,
    writerEpoch: bigintFromWire(body.writerEpoch, 'writerEpoch'),
    batchSeq: bigintFromWire(body.batchSeq, 'batchSeq'),
    segments: body.segments.map((segment, i) => {
      const s = object(segment, `segments[${i}]`);
      return {
        table: s.table as string,
        staged: s.staged as string,
        txnCount: s.txnCount as number,
        bytes: s.bytes as number,
        crc32: s.crc32 as number,
      };
    }),
  };
}

export function startAfterFromWire(value: unknown): Map<string, bigint> {
  const body = object(value, 'startAfter');
  return new Map(
    Object.entries(body).map(([table, txn]) => [table, bigintFromWire(txn, `startAfter.${table}`)]),
  );
}

export function entryFromWire(value: unknown): LogEntry {
  const e = object(value, 'log entry');
  return {
    table: asTableKey(e.table as string),
    txnFirst: bigintFromWire(e.txnFirst, 'txnFirst'),
    txnLast: bigintFromWire(e.txnLast, 'txnLast'),
    staged: e.staged as string,
    bytes: e.bytes as number,
    crc32: e.crc32 as number,
    writer: e.writer as string,
    writerEpoch: bigintFromWire(e.writerEpoch, 'writerEpoch'),
    batchSeq: bigintFromWire(e.batchSeq, 'batchSeq'),
    committedAtMs: e.committedAtMs as number,
  };
}

function commitResultFromWire(value: unknown): CommitResult {
  const body = object(value, 'commit result');
  return { entries: (body.entries as unknown[]).map(entryFromWire), replayed: body.replayed === true };
}

export function writerFromWire(value: unknown): WriterRecord {
  const w = object(value, 'writer record');
  return {
    writer: w.writer as string,
    epoch: bigintFromWire(w.epoch, 'epoch'),
    lastBatchSeq: bigintFromWire(w.lastBatchSeq, 'lastBatchSeq'),
    fenced: w.fenced === true,
    closed: (w.closed as unknown[]).map(
      (c): ClosedWriterEpoch => ({
        epoch: bigintFromWire(object(c, 'closed epoch').epoch, 'closed.epoch'),
        lastBatchSeq: bigintFromWire((c as Record<string, unknown>).lastBatchSeq, 'closed.lastBatchSeq'),
      }),
    ),
  };
}

export function headsFromWire(value: unknown): Heads {
  const h = object(value, 'heads');
  return {
    version: bigintFromWire(h.version, 'version'),
    tables: new Map(
      Object.entries(object(h.tables, 'heads.tables')).map(([t, txn]) => [t, bigintFromWire(txn, t)]),
    ),
  };
}
