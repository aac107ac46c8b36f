/**
 * The few calls walship makes of the `foundationdb` npm package (2.0.x, API version 720),
 * declared here because that package is an optionalDependency: where `libfdb_c.so` is absent its
 * install is skipped and its own types disappear (RFC-0003 "The FoundationDB backend"). Keys and
 * values are raw Buffers: we encode keys with `fdb-tuple` ourselves and never use the bindings'
 * key or value transformers. `fdb-fake.ts` implements the same declarations in memory.
 */

/** The API version we are written against (FoundationDB 7.2). Set once per process. */
export const FDB_API_VERSION = 720;

/** The error codes we reason about (FoundationDB error-code table). */
export const FDB_ERROR_CODE = {
  /** Read version older than the 5 s MVCC window: retryable with a fresh transaction. */
  transactionTooOld: 1007,
  /** A key this transaction read was written after its read version (a conflict): retryable. */
  notCommitted: 1020,
  /** The commit may or may not have been applied: retryable, so bodies must be idempotent. */
  commitUnknownResult: 1021,
  /** The `timeout` transaction option elapsed: not retryable. */
  transactionTimedOut: 1031,
  /** More than 10 MB of mutations (keys + values) in one transaction: not retryable. */
  transactionTooLarge: 2101,
  /** A key longer than 10 kB: not retryable. */
  keyTooLarge: 2102,
  /** A value longer than 100 kB: not retryable. */
  valueTooLarge: 2103,
} as const;

/** Codes `doTn` retries with a fresh transaction (the subset of `fdb_transaction_on_error` we model). */
export const FDB_RETRYABLE_CODES: ReadonlySet<number> = new Set([
  FDB_ERROR_CODE.transactionTooOld,
  FDB_ERROR_CODE.notCommitted,
  FDB_ERROR_CODE.commitUnknownResult,
]);

/** FoundationDB's own limits (https://apple.github.io/foundationdb/known-limitations.html). */
export const FDB_LIMITS = {
  transactionBytesMax: 10_000_000,
  keyBytesMax: 10_000,
  valueBytesMax: 100_000,
  transactionDurationMs: 5_000,
} as const;

/** The bindings' `FDBError`: an Error with the numeric FoundationDB error code. */
export interface FdbErrorLike extends Error {
  code: number;
}

/** The FoundationDB error code of `error`, or undefined when it is not an FDB error. */
export function fdbErrorCode(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as Partial<FdbErrorLike>).code;
  return typeof code === 'number' && Number.isInteger(code) ? code : undefined;
}

export interface FdbRangeOptions {
  /** At most this many pairs (0 or absent: no limit). */
  limit?: number;
  /** Highest key first. */
  reverse?: boolean;
}

/**
 * `tn.watch(key)`: becomes active when its transaction commits and fires once the key's value
 * differs from the one that transaction saw. `promise` resolves true when it fired, false when it
 * was cancelled (or its transaction did not commit); it rejects on other errors.
 */
export interface FdbWatch {
  promise: Promise<boolean>;
  cancel(): void;
}

export interface FdbTransaction {
  /** The value at this transaction's read version (with its own writes), or undefined. */
  get(key: Buffer): Promise<Buffer | undefined>;
  set(key: Buffer, value: Buffer): void;
  clear(key: Buffer): void;
  /** Atomic little-endian add: no read, so no read conflict. */
  add(key: Buffer, operand: Buffer): void;
  /** Every pair with start ≤ key < end, in key order (or reversed). */
  getRangeAll(start: Buffer, end: Buffer, options?: FdbRangeOptions): Promise<[Buffer, Buffer][]>;
  watch(key: Buffer): FdbWatch;
  /** The same transaction reading without adding read-conflict ranges. */
  snapshot(): FdbTransaction;
  addReadConflictKey(key: Buffer): void;
}

/** The bindings' TransactionOptions we use (snake_case as the generated option names). */
export interface FdbTransactionOptions {
  /** Milliseconds before the whole doTn fails with 1031 (not retried). */
  timeout?: number;
  /** Retries of retryable errors before the error reaches the caller. */
  retry_limit?: number;
}

export interface FdbDatabase {
  /**
   * Runs `body` in a transaction and commits it, retrying on retryable FDB errors with a fresh
   * transaction (1020, 1021, 1007…). Any non-FDB error thrown by `body` aborts without retry.
   */
  doTn<T>(body: (tn: FdbTransaction) => Promise<T>, options?: FdbTransactionOptions): Promise<T>;
  close(): void;
}

/** The module object `import('foundationdb')` yields. */
export interface FdbModule {
  setAPIVersion(version: number): void;
  /** Synchronous in 2.0.x; `clusterFile` absent: FDB_CLUSTER_FILE or the default location. */
  open(clusterFile?: string): FdbDatabase;
}
