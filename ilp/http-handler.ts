import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Clock,
  createHttpAuthenticator,
  type HttpAuth,
  InvalidArgumentError,
  isWalshipError,
  systemClock,
  WalshipError,
} from '../core/index.js';
import { BATCH_HASH_BYTES, BATCH_WRITER_PATTERN } from '../wal/index.js';
import { BodyBudget, type Reservation } from './body-budget.js';
import type {
  IlpBatchIdentity,
  IlpCommit,
  IlpCommitResult,
  IlpLineSource,
  IlpSliceCommit,
} from './ilp-commit.js';
import type { IlpLine } from './ilp-line.js';
import { IlpParseError } from './ilp-parse-error.js';
import { type IlpRequestEvent, ilpOutcomeOfStatus } from './ilp-request-event.js';
import { type IlpLimits, resolveIlpLimits } from './limits.js';
import { type ParseIlpInSlicesOptions, parseIlpInSlices } from './line-parser.js';
import { type Precision, parsePrecision } from './precision.js';

/**
 * The ILP HTTP surface, byte-compatible with QuestDB (docs: shared/reference/ilp-http.md):
 * `POST /write` and `POST /api/v2/write` (query `precision`), `GET|HEAD /ping`, `GET /settings`.
 * Success is exactly 204 without a body; every error is `application/json` with exactly the keys
 * `code`, `message`, `line`, `errorId`. A parse error anywhere commits nothing: the body is parsed
 * completely before `commit` is called, or, with `commitSlices`, while it is committed (a parse
 * error rejects that commit). Either way the body is parsed in slices with the event loop free in
 * between (parseIlpInSlices), so `/ping`, `/status` and a lease renewal never wait long behind a
 * large request.
 */

export interface IlpHttpOptions {
  /** The write path; see IlpCommit for how its rejections map to statuses. */
  commit: IlpCommit;
  /**
   * The write path for a body parsed while it is committed (no array of every line is built, so a
   * request costs a small multiple of its body). Used instead of `commit` when set.
   */
  commitSlices?: IlpSliceCommit;
  /** False on replicas and demoted primaries: writes get 421 before their body is read. */
  acceptingWrites: () => boolean;
  /** `release.version` in `/settings` (walship's version). */
  releaseVersion: string;
  /** `release.type` in `/settings`. Default `OSS`, as open-source QuestDB; clients do not read it. */
  releaseType?: string;
  /** False when this node has no ILP TCP listener; `/settings` then lists HTTP only. Default true. */
  tcpEnabled?: boolean;
  /** When set, writes need one of these credentials (401 otherwise). `/ping` and `/settings` stay open. */
  auth?: HttpAuth;
  /** Bytes of one request body; past it the answer is 413 and reading stops. Default 100 MiB. */
  maxRequestBytes?: number;
  /**
   * Bytes of the request bodies held at once (BodyBudget): a request that does not fit waits
   * unread, then is answered 503 after `inflightWaitMs`. A body of unknown length (chunked) counts
   * as `maxRequestBytes` until it is read. At least maxRequestBytes; default the larger of 256 MiB
   * and maxRequestBytes.
   */
  maxInflightBytes?: number;
  /** How long a request waits for room among `maxInflightBytes`. Default 5 s. */
  inflightWaitMs?: number;
  limits?: Partial<IlpLimits>;
  /**
   * Extra `config` fields of `/settings` (a replica's `replication.replica.tables`), added after
   * QuestDB's: a field QuestDB's body has is never replaced. Default: none.
   */
  settingsExtra?: () => Record<string, unknown>;
  /** Called for every 5xx answer (with the errorId the client saw), for logging. Default: nothing. */
  onError?: (error: unknown, context: { errorId: string; status: number }) => void;
  /** Called once per write request once it is answered (`/metrics`). Default: nothing. */
  onRequest?: (event: IlpRequestEvent) => void;
  /** Times requests for `onRequest`. Default systemClock. */
  clock?: Clock;
}

/**
 * Answers `req` if it is an ILP route and resolves true once the answer is sent; resolves false
 * (touching nothing) for any other path, so the caller can route it elsewhere. Never rejects.
 * Callable directly (a route handler) or as `handler.handle(req, res)`.
 */
export interface IlpHttpHandler {
  (req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
}

/** Bytes of one request body by default: the official clients' largest buffer (max_buf_size) is 100 MiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024;
/** Bytes of request bodies held at once by default. */
export const DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024;
/** How long a request waits for room among them by default. */
export const DEFAULT_INFLIGHT_WAIT_MS = 5_000;
/** What InfluxDB v2 clients look for on /ping. */
const INFLUXDB_VERSION = 'v2.7.4';
const WRITE_PATHS: ReadonlySet<string> = new Set(['/write', '/api/v2/write']);

/** Creates the handler; throws InvalidArgumentError for bad limits or a bad maxRequestBytes. */
export function createIlpHttpHandler(options: IlpHttpOptions): IlpHttpHandler {
  const limits = resolveIlpLimits(options.limits);
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  if (!Number.isSafeInteger(maxRequestBytes) || maxRequestBytes < 1) {
    throw new InvalidArgumentError(`maxRequestBytes must be a positive integer, got ${maxRequestBytes}`);
  }
  const maxInflightBytes = options.maxInflightBytes ?? Math.max(DEFAULT_MAX_INFLIGHT_BYTES, maxRequestBytes);
  if (!Number.isSafeInteger(maxInflightBytes) || maxInflightBytes < maxRequestBytes) {
    throw new InvalidArgumentError(
      `maxInflightBytes must be an integer of at least maxRequestBytes (${maxRequestBytes}), got ${maxInflightBytes}`,
    );
  }
  const inflightWaitMs = options.inflightWaitMs ?? DEFAULT_INFLIGHT_WAIT_MS;
  if (!Number.isSafeInteger(inflightWaitMs) || inflightWaitMs < 0) {
    throw new InvalidArgumentError(`inflightWaitMs must be a non-negative integer, got ${inflightWaitMs}`);
  }
  const budget = new BodyBudget(maxInflightBytes);
  const authenticate = options.auth === undefined ? undefined : createHttpAuthenticator(options.auth);
  const errors = new ErrorResponder(options.onError);
  const context: WriteContext = {
    options,
    limits,
    maxRequestBytes,
    budget,
    inflightWaitMs,
    authenticate,
    errors,
  };
  const clock = options.clock ?? systemClock;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = pathOf(req.url);
    if (!WRITE_PATHS.has(path) && path !== '/ping' && path !== '/settings') return false;
    const tally: WriteTally = { bytes: 0, rows: 0, batch: undefined };
    const startedMs = options.onRequest === undefined ? 0 : clock.monotonicMs();
    try {
      if (path === '/ping') answerPing(req, res, errors);
      else if (path === '/settings') answerSettings(req, res, context);
      else await answerWrite(req, res, context, tally);
    } catch (error) {
      // A bug: answer 500 if still possible, and tell the operator.
      errors.send(res, 500, 'internal error', 'internal error', 0, { error });
    }
    if (options.onRequest !== undefined && WRITE_PATHS.has(path)) {
      options.onRequest({
        transport: 'http',
        outcome: ilpOutcomeOfStatus(res.headersSent ? res.statusCode : null, tally.batch),
        rows: tally.rows,
        bytes: tally.bytes,
        seconds: (clock.monotonicMs() - startedMs) / 1000,
      });
    }
    return true;
  };
  return Object.assign(handle, { handle });
}

/** What one write request read and committed, for `onRequest`. */
interface WriteTally {
  bytes: number;
  rows: number;
  batch: IlpCommitResult['batch'];
}

interface WriteContext {
  options: IlpHttpOptions;
  limits: IlpLimits;
  maxRequestBytes: number;
  budget: BodyBudget;
  inflightWaitMs: number;
  authenticate: ((authorization: string | undefined) => boolean) | undefined;
  errors: ErrorResponder;
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

function queryOf(url: string | undefined): URLSearchParams {
  const query = url === undefined ? -1 : url.indexOf('?');
  return new URLSearchParams(query < 0 ? '' : url!.slice(query + 1));
}

function answerPing(req: IncomingMessage, res: ServerResponse, errors: ErrorResponder): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    errors.send(res, 405, 'method not allowed', `method ${req.method} not allowed on /ping`, 0, {
      headers: { Allow: 'GET, HEAD' },
    });
    return;
  }
  res.writeHead(204, { 'X-Influxdb-Version': INFLUXDB_VERSION });
  res.end();
}

function writeTransports(options: IlpHttpOptions): string[] {
  return options.tcpEnabled === false ? ['http'] : ['http', 'tcp'];
}

/** The body QuestDB serves; the Node client reads `config["line.proto.support.versions"]`. */
function settingsBody(context: WriteContext): string {
  const { releaseType, releaseVersion } = context.options;
  const config: Record<string, unknown> = {
    'release.type': releaseType ?? 'OSS',
    'release.version': releaseVersion,
    // The Java client keeps a node only if this contains "http": a replica answers [].
    'accepting.writes': context.options.acceptingWrites() ? writeTransports(context.options) : [],
    'line.proto.support.versions': [1, 2, 3],
    'ilp.proto.transports': context.options.tcpEnabled === false ? ['http'] : ['tcp', 'http'],
    'cairo.max.file.name.length': context.limits.maxNameBytes,
  };
  for (const [key, value] of Object.entries(context.options.settingsExtra?.() ?? {}))
    if (!Object.hasOwn(config, key)) config[key] = value;
  return JSON.stringify({ config, 'preferences.version': 0, preferences: {} });
}

function answerSettings(req: IncomingMessage, res: ServerResponse, context: WriteContext): void {
  if (req.method !== 'GET') {
    context.errors.send(res, 405, 'method not allowed', `method ${req.method} not allowed on /settings`, 0, {
      headers: { Allow: 'GET' },
    });
    return;
  }
  const body = settingsBody(context);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Checks that need no body, in order: method, credentials, writability, encoding, precision. */
function checkWriteRequest(
  req: IncomingMessage,
  res: ServerResponse,
  context: WriteContext,
): Precision | null {
  const { errors } = context;
  if (req.method !== 'POST') {
    errors.send(res, 405, 'method not allowed', `method ${req.method} not allowed on ${pathOf(req.url)}`, 0, {
      headers: { Allow: 'POST' },
    });
    return null;
  }
  if (context.authenticate !== undefined && !context.authenticate(req.headers.authorization)) {
    errors.send(res, 401, 'unauthorised', 'unauthorised: missing or wrong credentials', 0);
    return null;
  }
  if (!context.options.acceptingWrites()) {
    errors.send(res, 421, 'not accepting writes', 'not accepting writes: this node is not the primary', 0);
    return null;
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    errors.send(res, 415, 'not supported', `not supported: Content-Encoding ${encoding.slice(0, 32)}`, 0);
    return null;
  }
  try {
    return parsePrecision(queryOf(req.url).get('precision'));
  } catch (error) {
    errors.send(
      res,
      400,
      'not supported',
      isWalshipError(error) ? error.message : 'unsupported precision',
      0,
    );
    return null;
  }
}

async function answerWrite(
  req: IncomingMessage,
  res: ServerResponse,
  context: WriteContext,
  tally: WriteTally,
): Promise<void> {
  const precision = checkWriteRequest(req, res, context);
  if (precision === null) return;
  const { errors, maxRequestBytes } = context;
  const batch = parseBatchHeader(req.headers[BATCH_HEADER]);
  if (batch === null) {
    errors.send(
      res,
      400,
      'BATCH_ID_INVALID',
      'invalid X-Walship-Batch: expected <writer>:<seq>, writer 1..64 of [A-Za-z0-9._-], seq 1..2^63-1',
      0,
    );
    return;
  }
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > maxRequestBytes) {
    answerTooLarge(res, context);
    return;
  }
  const bytes = Number.isSafeInteger(declared) && declared >= 0 ? declared : maxRequestBytes;
  // Taken in this turn when there is room, so the body is read from its first chunk on even when
  // something else listens to the request already; otherwise the request is paused while it waits.
  const room = context.budget.tryReserve(bytes) ?? (await waitForRoom(req, bytes, context));
  if (room === null) {
    if (!res.destroyed) {
      const message =
        'server busy: the request bodies in flight fill line.http.max.inflight.size ' +
        `(${context.budget.maxBytes} bytes); retry`;
      errors.send(res, 503, 'internal error', `internal error: ${message}`, 0, {
        headers: { Connection: 'close', 'Retry-After': '1' },
        error: new WalshipError('INFLIGHT_FULL', 'unavailable', message),
      });
    }
    return;
  }
  try {
    await readAndCommit(req, res, { precision, batch }, declared, room, context, tally);
  } finally {
    room.release();
  }
}

/**
 * Room for `bytes` among the bodies in flight, once earlier waiters got theirs; null if none came
 * in time or the client left while waiting. The request is paused meanwhile (readBody resumes
 * it): no chunk of its body goes by unread, whoever else listens to it.
 */
async function waitForRoom(
  req: IncomingMessage,
  bytes: number,
  context: WriteContext,
): Promise<Reservation | null> {
  req.pause();
  const left = new AbortController();
  const leave = () => left.abort();
  req.once('close', leave);
  try {
    return await context.budget.reserve(bytes, context.inflightWaitMs, left.signal);
  } finally {
    req.off('close', leave);
  }
}

function answerTooLarge(res: ServerResponse, context: WriteContext): void {
  // Stop reading: the connection closes after the answer instead of draining a huge body.
  context.errors.send(
    res,
    413,
    'request too large',
    `request too large: more than ${context.maxRequestBytes} bytes`,
    0,
    { headers: { Connection: 'close' } },
  );
}

async function readAndCommit(
  req: IncomingMessage,
  res: ServerResponse,
  { precision, batch }: { precision: Precision; batch: { writer: string; seq: bigint } | undefined },
  declared: number,
  room: Reservation,
  context: WriteContext,
  tally: WriteTally,
): Promise<void> {
  const { errors, maxRequestBytes } = context;
  let body: Buffer | null;
  try {
    body = await readBody(req, maxRequestBytes, declared);
  } catch {
    // The client went away mid-body: nobody is left to answer, and nothing was parsed.
    res.destroy();
    return;
  }
  if (body === null) {
    answerTooLarge(res, context);
    return;
  }
  room.shrinkTo(body.length);
  tally.bytes = body.length;
  const identity: IlpBatchIdentity | undefined =
    batch === undefined ? undefined : { ...batch, hash: bodyDigest(body) };
  const source = bodySource(body, { precision, limits: context.limits });
  // The source holds the body now, and lets go of it once parsed (a large request's body is as
  // big as its encoded records, which the commit goes on to make).
  body = null;
  let result: IlpCommitResult | undefined;
  try {
    result = await commitBody(source, context.options, identity);
  } catch (error) {
    if (error instanceof IlpParseError) {
      if (error.tooLarge) errors.send(res, 413, 'request too large', error.message, error.line);
      else errors.send(res, 400, 'invalid', error.message, error.line);
      return;
    }
    answerCommitError(res, errors, error);
    return;
  }
  tally.rows = result?.rows ?? 0;
  tally.batch = result?.batch;
  answerNoContent(res, result);
}

/** The header naming a request's client batch (RFC-0011). */
const BATCH_HEADER = 'x-walship-batch';
const BATCH_SEQ = /^[1-9][0-9]{0,18}$/;
const MAX_SEQ = (1n << 63n) - 1n;

/**
 * `<writer>:<seq>` from X-Walship-Batch: undefined without the header, null when it is malformed
 * (or sent twice).
 */
export function parseBatchHeader(
  value: string | string[] | undefined,
): { writer: string; seq: bigint } | undefined | null {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') return null;
  const colon = value.lastIndexOf(':');
  const writer = value.slice(0, colon);
  const seqText = value.slice(colon + 1).trim();
  if (colon < 0 || !BATCH_WRITER_PATTERN.test(writer.trim()) || !BATCH_SEQ.test(seqText)) return null;
  const seq = BigInt(seqText);
  return seq > MAX_SEQ ? null : { writer: writer.trim(), seq };
}

/** The digest a batch's content is compared by: the first BATCH_HASH_BYTES bytes of SHA-256. */
function bodyDigest(body: Buffer): Uint8Array {
  return new Uint8Array(createHash('sha256').update(body).digest().subarray(0, BATCH_HASH_BYTES));
}

/** The lines of `body`, parsed in slices; the body is let go of as the parse starts (call once). */
function bodySource(body: Buffer, options: ParseIlpInSlicesOptions): IlpLineSource {
  let held: Buffer | null = body;
  return {
    forEachSlice: (sink) => {
      const bytes = held;
      held = null;
      if (bytes === null) return Promise.reject(new Error('an ILP request body can be parsed only once'));
      return parseIlpInSlices(bytes, options, sink);
    },
  };
}

/**
 * Commits one request's lines: through `commitSlices` as they are parsed, or parsed whole first and
 * then through `commit`. An empty request (or only comments) commits nothing, as QuestDB answers
 * 204 to it.
 */
async function commitBody(
  source: IlpLineSource,
  options: IlpHttpOptions,
  batch: IlpBatchIdentity | undefined,
): Promise<IlpCommitResult | undefined> {
  const request = batch === undefined ? { protocol: 'http' as const } : { protocol: 'http' as const, batch };
  if (options.commitSlices !== undefined) return options.commitSlices(source, request);
  const lines: IlpLine[] = [];
  await source.forEachSlice((slice) => {
    for (const line of slice.toLines()) lines.push(line);
  });
  if (lines.length === 0) return undefined;
  return options.commit(lines, request);
}

/**
 * The longest X-Walship-Txn sent. HTTP clients cap a response's headers (Node's http and undici:
 * 16 KiB in all) and fail the whole response past it, so a request that wrote to hundreds of
 * tables (a token of ~20 bytes each) would see its committed write as a failure. Past this the
 * token is left out and `X-Walship-Txn-Omitted` gives the number of tables it would have named: a
 * reader then asks for freshness with `max_staleness_ms` instead (docs/write-path.md).
 */
export const COMMIT_TOKEN_HEADER_BYTES_MAX = 8 * 1024;

function answerNoContent(res: ServerResponse, result: IlpCommitResult | undefined): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = {};
  const txnHeader = result?.txnHeader;
  if (txnHeader === undefined || txnHeader === '') {
    // No token: nothing was written (an empty request).
  } else if (Buffer.byteLength(txnHeader) <= COMMIT_TOKEN_HEADER_BYTES_MAX)
    headers['X-Walship-Txn'] = txnHeader;
  else headers['X-Walship-Txn-Omitted'] = String(txnHeader.split(',').length);
  if (result?.batch !== undefined) headers['X-Walship-Batch-Status'] = result.batch;
  res.writeHead(204, headers);
  res.end();
}

/** Maps a commit rejection to the status a QuestDB client expects (reference: ilp-http.md). */
function answerCommitError(res: ServerResponse, errors: ErrorResponder, error: unknown): void {
  if (isWalshipError(error)) {
    switch (error.kind) {
      case 'invalid': {
        const line = error.details.line;
        errors.send(res, 400, 'invalid', error.message, typeof line === 'number' ? line : 0);
        return;
      }
      case 'conflict':
        // A batch identity reused for other content, or older than its writer's window (RFC-0011).
        errors.send(res, 409, error.code, error.message, 0);
        return;
      case 'fenced':
      case 'closed':
        errors.send(
          res,
          421,
          'not accepting writes',
          'not accepting writes: this node is not the primary',
          0,
        );
        return;
      case 'unavailable': {
        // Store errors may name internals, so the client gets a generic message, unless the write
        // path wrote one for it (a durable write that timed out: its rows stay committed).
        const told = error.details.clientMessage;
        const message = typeof told === 'string' ? told : 'storage temporarily unavailable';
        errors.send(res, 503, 'internal error', `internal error: ${message}`, 0, { error });
        return;
      }
    }
  }
  errors.send(res, 500, 'internal error', 'internal error', 0, { error });
}

/**
 * The request body, or null as soon as it grows past `maxBytes` (the request is then paused and
 * left unread). Rejects if the client goes away before the end. With a `declared` length (HTTP
 * framing guarantees the body has exactly that many bytes) the chunks are copied into one buffer
 * as they arrive, so the body is held once, not twice at its end.
 */
function readBody(req: IncomingMessage, maxBytes: number, declared: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const whole = Number.isSafeInteger(declared) && declared >= 0 ? Buffer.allocUnsafe(declared) : null;
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      if (total + chunk.length > maxBytes) {
        cleanup();
        req.pause();
        resolve(null);
        return;
      }
      if (whole === null) chunks.push(chunk);
      else if (total + chunk.length <= whole.length) chunk.copy(whole, total);
      else {
        onError(new Error('the request body is longer than its Content-Length'));
        return;
      }
      total += chunk.length;
    };
    const onEnd = () => {
      cleanup();
      if (whole === null) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
      else if (total === whole.length) resolve(whole);
      else reject(new Error('the request body is shorter than its Content-Length'));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the client closed the connection before the request body ended'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    // A request paused while it waited for room (waitForRoom) does not flow by itself again.
    req.resume();
  });
}

/** Writes error answers: JSON with exactly code, message, line, errorId. */
class ErrorResponder {
  /** errorId = `<random hex per handler>-<counter>`, as QuestDB's `<hex>-<counter>`. */
  private readonly prefix = randomBytes(4).toString('hex');
  private counter = 0;

  constructor(private readonly onError: IlpHttpOptions['onError']) {}

  send(
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    line: number,
    extra: { headers?: Record<string, string>; error?: unknown } = {},
  ): void {
    const errorId = `${this.prefix}-${++this.counter}`;
    if (status >= 500 && this.onError !== undefined) this.onError(extra.error, { errorId, status });
    if (res.headersSent || res.destroyed) return;
    const body = JSON.stringify({ code, message, line, errorId });
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      ...extra.headers,
    });
    res.end(body);
  }
}
