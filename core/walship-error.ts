import type { ErrorCode, ErrorKind } from './error-codes.js';

export type { ErrorKind } from './error-codes.js';

export interface WalshipErrorOptions {
  cause?: unknown;
  /** Structured facts for logs and API answers; never secrets. */
  details?: Record<string, unknown>;
}

/**
 * The one error class of walship. `code` is stable and documented (core/error-codes.ts, generated
 * into docs/errors.md); match on it, never on messages.
 */
export class WalshipError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, kind: ErrorKind, message: string, options: WalshipErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalshipError';
    this.code = code;
    this.kind = kind;
    this.details = options.details ?? {};
  }
}

/** True when `error` is a WalshipError, optionally with the given code. */
export function isWalshipError(error: unknown, code?: ErrorCode): error is WalshipError {
  return error instanceof WalshipError && (code === undefined || error.code === code);
}

/** A WalshipError flattened to cross a thread or process boundary (class identity does not). */
export interface SerializedWalshipError {
  code: ErrorCode;
  kind: ErrorKind;
  message: string;
  details: Record<string, unknown>;
}

/** `error` flattened: a WalshipError keeps its code, kind and details; anything else is `fallback`, internal. */
export function serializeWalshipError(
  error: unknown,
  fallback: ErrorCode = 'STORAGE_FAILED',
): SerializedWalshipError {
  if (isWalshipError(error)) {
    return { code: error.code, kind: error.kind, message: error.message, details: { ...error.details } };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: fallback, kind: 'internal', message, details: {} };
}

/** A flattened error as a WalshipError again. */
export function deserializeWalshipError(error: SerializedWalshipError): WalshipError {
  return new WalshipError(error.code, error.kind, error.message, { details: error.details });
}

/** Bytes that claim to be a WAL segment are not a valid one. Never apply anything from it. */
export class CorruptSegmentError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('CORRUPT_SEGMENT', 'data', message, options);
    this.name = 'CorruptSegmentError';
  }
}

/** The object store could not be reached, answered an error, or timed out. Retrying may help. */
export class StoreUnavailableError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('STORE_UNAVAILABLE', 'unavailable', message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** An object-store request took longer than its time limit; whether it took effect is unknown. */
export class StoreTimeoutError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('STORE_TIMEOUT', 'unavailable', message, options);
    this.name = 'StoreTimeoutError';
  }
}

/** A configuration value or argument is wrong. The message names the key. */
export class InvalidConfigError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('INVALID_CONFIG', 'invalid', message, options);
    this.name = 'InvalidConfigError';
  }
}

/** An argument broke a documented precondition (a bad key, a value out of range). */
export class InvalidArgumentError extends WalshipError {
  constructor(message: string, options: WalshipErrorOptions = {}) {
    super('INVALID_ARGUMENT', 'invalid', message, options);
    this.name = 'InvalidArgumentError';
  }
}

/** The component was closed before or during the call. */
export class ClosedError extends WalshipError {
  constructor(message: string) {
    super('CLOSED', 'closed', message);
    this.name = 'ClosedError';
  }
}

/** Assert an invariant. A failure is a bug: it throws an `internal` error that should crash the caller. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new WalshipError('ASSERTION_FAILED', 'internal', `assertion failed: ${message}`);
}
