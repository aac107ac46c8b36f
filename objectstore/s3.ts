import { DeleteObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  ClosedError,
  InvalidArgumentError,
  parseTimeMs,
  StoreTimeoutError,
  StoreUnavailableError,
  WalshipError,
} from '../core/index.js';
import {
  assertValidDelimiter,
  assertValidKey,
  assertValidPrefix,
  assertValidWriteId,
  pageLimit,
} from './keys.js';
import { maxKey } from './memory.js';
import {
  DELETE_MANY_KEYS_MAX,
  type GetOptions,
  type GetResult,
  LIST_PAGE_KEYS_MAX,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PutCondition,
  type PutOptions,
  type PutResult,
} from './object-store.js';
import { headerOf, parseListBucket, S3Requests, type S3Response } from './s3-requests.js';
import { Semaphore } from './semaphore.js';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix of this cluster inside the bucket (`root=`); one bucket may hold several clusters. */
  root: string;
  /** Default `us-east-1` (what Ceph RGW accepts for CreateBucket). */
  region?: string;
  /** e.g. `http://127.0.0.1:7480`; omit for AWS. */
  endpoint?: string;
  /** Static credentials; when omitted the SDK's default provider chain (env, profile, instance role) is used. */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Path-style addressing (`endpoint/bucket/key`). Default true: every S3-compatible server supports it. */
  forcePathStyle?: boolean;
  /** Time limit of one request in ms; past it the outcome is unknown (StoreTimeoutError). Default 10 000 (QuestDB's base timeout). */
  requestTimeoutMs?: number;
  /** Time limit to open a connection in ms. Default 3 000. */
  connectTimeoutMs?: number;
  /** Requests in flight at once; more wait in line. Default 64. */
  maxConcurrentRequests?: number;
  /** Unconditional puts at least this large go through multipart upload. Default 64 MiB. Create-only and CAS puts never do (Ceph ignores If-None-Match on CompleteMultipartUpload). */
  multipartThresholdBytes?: number;
  /**
   * How to send an ETag in If-Match. `auto` (default) starts with the standard quoted form and
   * switches to unquoted for good when the server rejects a current ETag that way (Ceph RGW 16).
   */
  ifMatchQuoting?: 'auto' | 'quoted' | 'unquoted';
}

const WRITE_ID_META = 'walship-write-id';
const REQUEST_TIMEOUT_MS_DEFAULT = 10_000;
const CONNECT_TIMEOUT_MS_DEFAULT = 3_000;
const MAX_CONCURRENT_REQUESTS_DEFAULT = 64;
const MULTIPART_THRESHOLD_BYTES_DEFAULT = 64 * 1024 * 1024;
const MULTIPART_PART_BYTES = 16 * 1024 * 1024;

/**
 * An ObjectStore on S3 or an S3-compatible server (Ceph RGW, MinIO), with `@aws-sdk/client-s3`.
 * - Create-only is `If-None-Match: *`; compare-and-swap is `If-Match: <etag>`; both single PUTs.
 * - A write's id travels as user metadata `x-amz-meta-walship-write-id`, so a writer can find out
 *   after a lost response whether the object is its own.
 * - A conditional PUT that comes back 409 (AWS: concurrent conditional request) or 500 (Ceph 16:
 *   a losing concurrent If-Match) is ambiguous: the store reads the object back and decides.
 * - The SDK's own retries are off (maxAttempts 1): retries are the `withRetries` decorator's job,
 *   so that they are bounded and visible in one place.
 */
export class S3Store implements ObjectStore {
  readonly description: string;
  readonly #client: S3Client;
  readonly #requests: S3Requests;
  readonly #bucket: string;
  readonly #root: string;
  readonly #requestTimeoutMs: number;
  readonly #multipartThresholdBytes: number;
  readonly #semaphore: Semaphore;
  #ifMatchQuoting: 'auto' | 'quoted' | 'unquoted';
  #closed = false;

  constructor(options: S3StoreOptions) {
    if (options.bucket === '') throw new InvalidArgumentError('s3 store: bucket is empty');
    if (options.root !== '') assertValidPrefix(`${options.root}/`);
    this.#bucket = options.bucket;
    this.#root = options.root;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.#multipartThresholdBytes = options.multipartThresholdBytes ?? MULTIPART_THRESHOLD_BYTES_DEFAULT;
    this.#semaphore = new Semaphore(options.maxConcurrentRequests ?? MAX_CONCURRENT_REQUESTS_DEFAULT);
    this.#ifMatchQuoting = options.ifMatchQuoting ?? 'auto';
    const region = options.region ?? 'us-east-1';
    const endpoint = options.endpoint === undefined ? '' : `endpoint=${options.endpoint};`;
    this.description = `s3::bucket=${options.bucket};root=${options.root};region=${region};${endpoint}`;
    const hasStaticCredentials = options.accessKeyId !== undefined && options.secretAccessKey !== undefined;
    this.#client = new S3Client({
      region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? true,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
        requestTimeout: this.#requestTimeoutMs,
        httpAgent: {
          keepAlive: true,
          maxSockets: options.maxConcurrentRequests ?? MAX_CONCURRENT_REQUESTS_DEFAULT,
        },
        httpsAgent: {
          keepAlive: true,
          maxSockets: options.maxConcurrentRequests ?? MAX_CONCURRENT_REQUESTS_DEFAULT,
        },
      },
      ...(hasStaticCredentials
        ? {
            credentials: {
              accessKeyId: options.accessKeyId!,
              secretAccessKey: options.secretAccessKey!,
              ...(options.sessionToken === undefined ? {} : { sessionToken: options.sessionToken }),
            },
          }
        : {}),
    });
    const client = this.#client;
    this.#requests = new S3Requests({
      bucket: options.bucket,
      region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? true,
      credentials: () => client.config.credentials(),
      connectTimeoutMs: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      maxConnections: options.maxConcurrentRequests ?? MAX_CONCURRENT_REQUESTS_DEFAULT,
    });
  }

  /** How If-Match is sent now: `auto` until the first CAS has shown which form the server honours. */
  get ifMatchQuoting(): 'auto' | 'quoted' | 'unquoted' {
    return this.#ifMatchQuoting;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    assertValidKey(key);
    if (options.writeId !== undefined) assertValidWriteId(options.writeId);
    const condition = options.condition ?? { type: 'none' };
    if (condition.type === 'none' && body.byteLength >= this.#multipartThresholdBytes) {
      return this.#putMultipart(key, body, options);
    }
    const quoting = this.#ifMatchQuoting === 'unquoted' ? 'unquoted' : 'quoted';
    const first = await this.#putOnce(key, body, options, quoting);
    if (first === 'ambiguous') return this.#resolveAmbiguous(key, condition, options.writeId);
    if (condition.type !== 'match') return first;
    if (first.status === 'written') {
      if (this.#ifMatchQuoting === 'auto') this.#ifMatchQuoting = 'quoted';
      return first;
    }
    // A CAS that failed: was the ETag stale, or did the server not understand the quoted form?
    if (this.#ifMatchQuoting !== 'auto') return first;
    const current = await this.head(key);
    if (current === null || current.etag !== condition.etag) {
      return current?.writeId !== undefined && current.writeId === options.writeId
        ? { status: 'written', etag: current.etag }
        : first;
    }
    const second = await this.#putOnce(key, body, options, 'unquoted');
    if (second === 'ambiguous') return this.#resolveAmbiguous(key, condition, options.writeId);
    if (second.status === 'written') this.#ifMatchQuoting = 'unquoted';
    return second;
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult | null> {
    this.#checkOpen();
    assertValidKey(key);
    const range = options.range;
    if (range !== undefined) {
      if (
        !Number.isSafeInteger(range.offset) ||
        range.offset < 0 ||
        !Number.isSafeInteger(range.length) ||
        range.length < 0
      ) {
        throw new InvalidArgumentError(`invalid range offset=${range.offset} length=${range.length}`);
      }
      if (range.length === 0) return this.#emptyRead(key, options);
    }
    const headers: Record<string, string> = {};
    if (range !== undefined) headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    if (options.ifNoneMatch !== undefined) headers['if-none-match'] = quote(options.ifNoneMatch);
    const response = await this.#request('GET', key, options.signal, {}, headers, [404, 304, 416]);
    if (response.status === 404) return null;
    if (response.status === 304) return { status: 'not-modified' };
    if (response.status === 416) return this.#emptyRead(key, options);
    const { body } = response;
    const info: ObjectInfo = {
      key,
      sizeBytes: totalSizeOf(headerOf(response, 'content-range')) ?? body.byteLength,
      ...infoOf(response),
    };
    return { status: 'ok', body, info };
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.#checkOpen();
    assertValidKey(key);
    const response = await this.#request('HEAD', key, undefined, {}, {}, [404]);
    if (response.status === 404) return null;
    return { key, sizeBytes: Number(headerOf(response, 'content-length') ?? 0), ...infoOf(response) };
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    this.#checkOpen();
    assertValidPrefix(prefix);
    assertValidDelimiter(options.delimiter);
    const limit = pageLimit(options.limit, LIST_PAGE_KEYS_MAX);
    const after = maxKey(options.startAfter, options.token);
    // A token is the last entry of the previous page, a key or a common prefix: as StartAfter it
    // skips everything below such a prefix too (Ceph RGW fast-forwards a marker inside one).
    const response = await this.#request(
      'LIST',
      prefix,
      options.signal,
      {
        'list-type': '2',
        prefix: this.#fullKey(prefix),
        'max-keys': String(limit),
        ...(after === undefined ? {} : { 'start-after': this.#fullKey(after) }),
        ...(options.delimiter === undefined ? {} : { delimiter: options.delimiter }),
      },
      {},
      [],
    );
    const listed = parseListBucket(response.body);
    const rootLength = this.#root === '' ? 0 : this.#root.length + 1;
    const objects: ObjectInfo[] = listed.contents.map((entry) => ({
      key: (entry.Key ?? '').slice(rootLength),
      sizeBytes: Number(entry.Size ?? 0),
      etag: unquote(entry.ETag ?? ''),
      modifiedAtMs: timeOf(entry.LastModified),
    }));
    const prefixes = listed.prefixes.map((entry) => (entry.Prefix ?? '').slice(rootLength));
    const last = maxKey(objects.at(-1)?.key, prefixes.at(-1));
    return {
      objects,
      ...(options.delimiter === undefined ? {} : { prefixes }),
      ...(listed.truncated && last !== undefined ? { nextToken: last } : {}),
    };
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    await this.#request('DELETE', key, undefined, {}, {}, [404]);
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    this.#checkOpen();
    if (keys.length > DELETE_MANY_KEYS_MAX) {
      throw new InvalidArgumentError(
        `deleteMany takes at most ${DELETE_MANY_KEYS_MAX} keys, got ${keys.length}`,
      );
    }
    for (const key of keys) assertValidKey(key);
    if (keys.length === 0) return;
    const response = await this.#send('DELETE_MANY', keys[0]!, undefined, (abortSignal) =>
      this.#client.send(
        new DeleteObjectsCommand({
          Bucket: this.#bucket,
          Delete: { Objects: keys.map((key) => ({ Key: this.#fullKey(key) })), Quiet: true },
        }),
        { abortSignal },
      ),
    );
    const failures = (response.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
    if (failures.length > 0) {
      const first = failures[0]!;
      throw new StoreUnavailableError(
        `${this.description}: ${failures.length} of ${keys.length} deletes failed, first ${first.Key}: ${first.Code} ${first.Message ?? ''}`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.destroy();
    await this.#requests.close();
  }

  /** One PUT. 'ambiguous' when the server's answer does not say whether the write happened. */
  async #putOnce(
    key: string,
    body: Uint8Array,
    options: PutOptions,
    quoting: 'quoted' | 'unquoted',
  ): Promise<PutResult | 'ambiguous'> {
    const condition = options.condition ?? { type: 'none' };
    const headers: Record<string, string> = {};
    if (condition.type === 'absent') headers['if-none-match'] = '*';
    if (condition.type === 'match')
      headers['if-match'] = quoting === 'quoted' ? quote(condition.etag) : condition.etag;
    if (options.writeId !== undefined) headers[`x-amz-meta-${WRITE_ID_META}`] = options.writeId;
    // A conditional PUT's 412 is its answer; 409 (AWS: a concurrent conditional request) and 500
    // (Ceph 16: a losing concurrent If-Match) are ambiguous, and read back by the caller.
    const answers = condition.type === 'none' ? [] : [412, 409, 500];
    const response = await this.#request('PUT', key, options.signal, {}, headers, answers, body);
    if (response.status === 412) return { status: 'precondition-failed' };
    if (response.status === 409 || response.status === 500) return 'ambiguous';
    return { status: 'written', etag: unquote(headerOf(response, 'etag') ?? '') };
  }

  /** Read the object back and decide what a conditional PUT with an unclear answer did. */
  async #resolveAmbiguous(
    key: string,
    condition: PutCondition,
    writeId: string | undefined,
  ): Promise<PutResult> {
    const current = await this.head(key);
    if (current !== null && writeId !== undefined && current.writeId === writeId) {
      return { status: 'written', etag: current.etag };
    }
    if (condition.type === 'absent' && current !== null) return { status: 'precondition-failed' };
    if (condition.type === 'match' && (current === null || current.etag !== condition.etag)) {
      return { status: 'precondition-failed' };
    }
    throw new StoreUnavailableError(
      `${this.description}: conditional PUT of ${key} got an ambiguous answer and did not take effect; retry`,
    );
  }

  async #putMultipart(key: string, body: Uint8Array, options: PutOptions): Promise<PutResult> {
    const upload = new Upload({
      client: this.#client,
      partSize: MULTIPART_PART_BYTES,
      queueSize: 4,
      params: {
        Bucket: this.#bucket,
        Key: this.#fullKey(key),
        Body: body,
        ...(options.writeId === undefined ? {} : { Metadata: { [WRITE_ID_META]: options.writeId } }),
      },
    });
    const onAbort = () => void upload.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // A multipart upload is many requests: it holds one concurrency slot and has no single time limit.
      const response = await this.#semaphore.run(() => upload.done());
      return { status: 'written', etag: unquote(response.ETag ?? '') };
    } catch (error) {
      throw mapError(error, this.description, 'PUT (multipart)', key, false);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  async #emptyRead(key: string, options: GetOptions): Promise<GetResult | null> {
    const info = await this.head(key);
    if (info === null) return null;
    if (options.ifNoneMatch !== undefined && options.ifNoneMatch === info.etag)
      return { status: 'not-modified' };
    return { status: 'ok', body: new Uint8Array(0), info };
  }

  /** Run one request under the concurrency cap and the time limit; map failures to store errors. */
  async #send<T>(
    operation: string,
    key: string,
    signal: AbortSignal | undefined,
    request: (abortSignal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return this.#semaphore.run(async () => {
      const timeout = AbortSignal.timeout(this.#requestTimeoutMs);
      const abortSignal = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
      try {
        return await request(abortSignal);
      } catch (error) {
        throw mapError(error, this.description, operation, key, timeout.aborted, this.#requestTimeoutMs);
      }
    });
  }

  /**
   * One request through S3Requests under #send's cap, time limit and error mapping: a 2xx answer,
   * or one with a status of `answers`, which the caller reads; any other status throws. LIST is a
   * GET of the bucket, named for the errors and metrics by its prefix.
   */
  #request(
    operation: 'GET' | 'HEAD' | 'PUT' | 'DELETE' | 'LIST',
    key: string,
    signal: AbortSignal | undefined,
    query: Record<string, string>,
    headers: Record<string, string>,
    answers: readonly number[],
    body?: Uint8Array,
  ): Promise<S3Response> {
    return this.#send(operation, key, signal, async (abortSignal) => {
      const method = operation === 'LIST' ? 'GET' : operation;
      const fullKey = operation === 'LIST' ? '' : this.#fullKey(key);
      const response = await this.#requests.send(method, fullKey, query, headers, abortSignal, body);
      if ((response.status >= 200 && response.status < 300) || answers.includes(response.status))
        return response;
      throw this.#requests.errorOf(response);
    });
  }

  #fullKey(key: string): string {
    return this.#root === '' ? key : `${this.#root}/${key}`;
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`${this.description} is closed`);
  }
}

/** An SDK error keeps its HTTP status; our mapped errors keep it in details. */
function httpStatusOf(error: unknown): number | undefined {
  if (error instanceof WalshipError) return error.details.httpStatus as number | undefined;
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/**
 * Turn an SDK or network error into a store error. Statuses that describe the object (404, 304,
 * 412, 416) keep their status in `details.httpStatus` for the caller to interpret; client errors
 * that retrying cannot fix (403, 400, a missing bucket) are `invalid`; the rest are `unavailable`.
 */
function mapError(
  error: unknown,
  store: string,
  operation: string,
  key: string,
  timedOut: boolean,
  timeoutMs = 0,
): WalshipError {
  if (error instanceof WalshipError) return error;
  const status = httpStatusOf(error);
  const name = (error as Error | undefined)?.name ?? 'Error';
  const message = (error as Error | undefined)?.message ?? String(error);
  const details = { httpStatus: status, operation, key, errorName: name };
  if (timedOut) {
    return new StoreTimeoutError(
      `${store}: ${operation} ${key} timed out after ${timeoutMs} ms; outcome unknown`,
      {
        cause: error,
        details,
      },
    );
  }
  const what = `${store}: ${operation} ${key} failed: ${status ?? 'no response'} ${name}: ${message}`;
  if (status !== undefined && [400, 401, 403, 405, 411].includes(status)) {
    return new WalshipError(
      'STORE_REJECTED',
      'invalid',
      `${what} (check bucket, credentials and permissions)`,
      {
        cause: error,
        details,
      },
    );
  }
  if (name === 'NoSuchBucket') {
    return new WalshipError('STORE_REJECTED', 'invalid', `${what} (the bucket does not exist)`, {
      cause: error,
      details,
    });
  }
  return new StoreUnavailableError(what, { cause: error, details });
}

function quote(etag: string): string {
  return `"${etag}"`;
}

function unquote(etag: string): string {
  return etag.startsWith('"') && etag.endsWith('"') && etag.length >= 2 ? etag.slice(1, -1) : etag;
}

/** An object's ETag, modification time and write id, from a GET or HEAD answer's headers. */
function infoOf(response: S3Response): Omit<ObjectInfo, 'key' | 'sizeBytes'> {
  const writeId = headerOf(response, `x-amz-meta-${WRITE_ID_META}`);
  return {
    etag: unquote(headerOf(response, 'etag') ?? ''),
    modifiedAtMs: timeOf(headerOf(response, 'last-modified')),
    ...(writeId === undefined ? {} : { writeId }),
  };
}

/** A date as S3 writes it (RFC 7231 in headers, ISO 8601 in listings) → ms; 0 when absent or unreadable. */
function timeOf(text: string | undefined): number {
  const ms = text === undefined ? Number.NaN : parseTimeMs(text);
  return Number.isNaN(ms) ? 0 : ms;
}

/** `bytes 0-99/1234` → 1234. */
function totalSizeOf(contentRange: string | undefined): number | undefined {
  const match = contentRange === undefined ? null : /\/(\d+)$/.exec(contentRange);
  return match === null ? undefined : Number(match[1]);
}
