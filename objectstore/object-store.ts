/**
 * The storage seam. Every node talks to the cluster only through an ObjectStore; `fs.ts`,
 * `s3.ts` and `memory.ts` implement it, and decorators (`retries.ts`, `metrics.ts`,
 * `faults.ts`) wrap any of them. One contract suite (`contract.test.ts`) checks every
 * statement below against every implementation.
 *
 * Keys are relative to the store's root (the connection string's `root=`), use `/` as the
 * separator, and are validated by `assertValidKey`: a key can never name anything outside the
 * root. ETags are opaque strings, unquoted; compare them only for equality.
 *
 * Errors: a store throws `StoreUnavailableError` or `StoreTimeoutError` (kind `unavailable`)
 * when it could not do the operation or does not know whether it did, `InvalidArgumentError`
 * for a bad key or range, and `ClosedError` after `close()`. A missing object or a lost
 * condition is not an error: it is part of the result.
 */
export interface ObjectStore {
  /** A human-readable name of the store with every secret redacted; safe for logs. */
  readonly description: string;

  /**
   * Store `body` under `key`.
   * - `condition: { type: 'none' }` (default) overwrites whatever is there.
   * - `condition: { type: 'absent' }` is create-only: it writes only if no object exists under
   *   `key`, atomically with respect to every other writer on any node.
   * - `condition: { type: 'match', etag }` is compare-and-swap: it writes only if the current
   *   object's ETag equals `etag` (a missing object never matches).
   * On success the whole object is visible at once to every reader (no partial objects) and
   * durable; the result carries its new ETag. When the condition does not hold the result is
   * `{ status: 'precondition-failed' }` and nothing was written.
   * `writeId` (a unique string chosen by the caller, up to 128 ASCII characters) is recorded
   * with the object where the store can keep it, so that a writer whose response was lost can
   * recognise its own write by reading the object back (see `retries.ts`).
   */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<PutResult>;

  /**
   * Read an object, or `null` when there is none.
   * - `range` reads `length` bytes from `offset`; a range past the end is cut at the end, and an
   *   offset at or past the end yields an empty body.
   * - `ifNoneMatch`: when the object's ETag equals it, the result is
   *   `{ status: 'not-modified' }` and no body is transferred (a cheap poll).
   * The body and `info` always describe the same version of the object.
   */
  get(key: string, options?: GetOptions): Promise<GetResult | null>;

  /** The object's metadata, or `null` when there is none. */
  head(key: string): Promise<ObjectInfo | null>;

  /**
   * One page of the keys that start with `prefix`, in ascending order of their UTF-8 bytes,
   * strictly after `startAfter` when given. A page holds at most `limit` keys (default and
   * maximum 1000) and may hold fewer even when more exist: callers must follow `nextToken`
   * until it is `undefined`. `listAll` does that.
   *
   * With `delimiter: '/'` the listing is one level deep, as S3's ListObjectsV2 with a delimiter:
   * every key that holds a `/` after `prefix` is rolled up into its common prefix — `prefix`
   * plus its part up to and including that first `/` — reported once in `prefixes`; the other
   * keys are in `objects`. Keys and prefixes are one sequence, in UTF-8 byte order:
   * - `limit` counts both, and `nextToken` resumes after the page's last entry of either kind;
   * - `startAfter` and `token` apply to an entry as it is reported: a common prefix is listed
   *   only when the prefix itself sorts after them. So a `startAfter` inside a common prefix
   *   (`tables/a/wal/x`, below `tables/a/`) skips that whole prefix, as S3 and Ceph RGW do, and
   *   a token that is a prefix resumes after everything below it.
   * Cost per page: one request on S3, one directory read on a filesystem store, however many keys
   * lie below the prefixes. Any other delimiter is an InvalidArgumentError.
   */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /** Remove an object. Removing a missing object succeeds (deletes are idempotent). */
  delete(key: string): Promise<void>;

  /**
   * Remove several objects (at most `DELETE_MANY_KEYS_MAX` per call). Missing keys are not
   * errors. Not atomic: on an error some keys may be gone and others not; calling again is safe.
   */
  deleteMany(keys: readonly string[]): Promise<void>;

  /** Release connections and handles. Later calls throw `ClosedError`. Idempotent. */
  close(): Promise<void>;
}

export type PutCondition = { type: 'none' } | { type: 'absent' } | { type: 'match'; etag: string };

export interface PutOptions {
  condition?: PutCondition;
  writeId?: string;
  /** Aborts the request; the outcome is then unknown, as after a timeout. */
  signal?: AbortSignal;
}

export type PutResult = { status: 'written'; etag: string } | { status: 'precondition-failed' };

export interface GetOptions {
  range?: { offset: number; length: number };
  ifNoneMatch?: string;
  signal?: AbortSignal;
}

export type GetResult = { status: 'ok'; body: Uint8Array; info: ObjectInfo } | { status: 'not-modified' };

export interface ObjectInfo {
  key: string;
  /** Size of the whole object in bytes (not of a range). */
  sizeBytes: number;
  etag: string;
  /** Last modification, wall clock ms, as the store reports it. Informational only. */
  modifiedAtMs: number;
  /** The `writeId` given at put time, when the store records it; otherwise undefined. */
  writeId?: string;
}

export interface ListOptions {
  startAfter?: string;
  /** At most this many entries (keys, and prefixes with a delimiter) in the page; 1..1000, default 1000. */
  limit?: number;
  /** The `nextToken` of the previous page. */
  token?: string;
  /** Roll keys up into common prefixes at the first `/` after the list prefix (see `list`). */
  delimiter?: '/';
  signal?: AbortSignal;
}

export interface ListPage {
  objects: ObjectInfo[];
  /**
   * With a delimiter, the common prefixes of this page (each ends with `/`), in order; absent
   * without one. On a filesystem store a prefix may name an empty directory (see `fs.ts`).
   */
  prefixes?: string[];
  /** Present when more entries may follow; pass it as `token` to get them. */
  nextToken?: string;
}

/** The most keys one `list` page may hold (S3's own limit). */
export const LIST_PAGE_KEYS_MAX = 1000;
/** The most keys one `deleteMany` call may name (S3's DeleteObjects limit). */
export const DELETE_MANY_KEYS_MAX = 1000;
/** The longest key in UTF-8 bytes (S3's limit). */
export const KEY_BYTES_MAX = 1024;
/** The longest write id; it travels in an HTTP header. */
export const WRITE_ID_CHARS_MAX = 128;

/** Every object under `prefix`, across pages, in order. */
export async function* listAll(
  store: ObjectStore,
  prefix: string,
  options: { startAfter?: string; signal?: AbortSignal } = {},
): AsyncGenerator<ObjectInfo> {
  let token: string | undefined;
  do {
    const page = await store.list(prefix, { ...options, ...(token === undefined ? {} : { token }) });
    yield* page.objects;
    token = page.nextToken;
  } while (token !== undefined);
}
