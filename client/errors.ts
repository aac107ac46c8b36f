/**
 * The client's errors: one class with a stable `code` to match on and a `kind` telling the caller
 * what to do (STYLE rule 4), plus two subclasses that carry what a server answered. Messages never
 * contain a password or token: config errors name the key, never its value.
 */

/** What the caller should do about an error. */
export type ClientErrorKind =
  /** Fix the input (config string, row, SQL); retrying the same thing fails the same way. */
  | 'invalid'
  /** No node could take the request now; retry later or elsewhere. */
  | 'unavailable'
  /** The sender or router was closed. */
  | 'closed';

/** Stable codes of WalshipClientError. */
export type ClientErrorCode =
  /** The config string is malformed, names an unknown key, or a value is out of range. */
  | 'INVALID_CONFIG'
  /** An option or argument of the API is wrong (a node URL, a read preference). */
  | 'INVALID_ARGUMENT'
  /** A row is built wrongly: a bad name, a value of the wrong type, a call out of order. */
  | 'INVALID_ROW'
  /** Adding a row would take the buffer past max_buf_size; flush first (the row was not added). */
  | 'BUFFER_FULL'
  /** A server refused the batch at once (400, 401, 403, 405, 413, …): see IlpRequestError. */
  | 'WRITE_REJECTED'
  /** Every address failed until retry_timeout passed: see FlushGaveUpError. */
  | 'WRITE_GAVE_UP'
  /** A read was refused as written (bad SQL, not authorised): retrying elsewhere will not help. */
  | 'READ_REJECTED'
  /** No node qualified for a read under its preference, or every one that did failed. */
  | 'NO_NODE_FOR_READ'
  /** The sender or router was used after close(). */
  | 'CLOSED'
  /** Another live process (or another Sender of this one) holds the sf_dir's lock. */
  | 'SF_DIR_LOCKED'
  /**
   * Sealing a batch would take the sf_dir past sf_max_bytes, or the held batches past
   * max_unacked_batches, and sending earlier batches did not make room within
   * sf_append_deadline_millis. The rows stay in the open buffer.
   */
  | 'SF_FULL'
  /** A file of the sf_dir could not be read or written (permissions, a full disk, …). */
  | 'SF_DIR_IO';

export class WalshipClientError extends Error {
  readonly code: ClientErrorCode;
  readonly kind: ClientErrorKind;
  /** Facts for programs (never secrets). */
  readonly details: Record<string, unknown>;

  constructor(
    code: ClientErrorCode,
    kind: ClientErrorKind,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalshipClientError';
    this.code = code;
    this.kind = kind;
    this.details = options.details ?? {};
  }
}

/** True when `error` is a WalshipClientError, with `code` when given. */
export function isClientError(error: unknown, code?: ClientErrorCode): error is WalshipClientError {
  return error instanceof WalshipClientError && (code === undefined || error.code === code);
}

/** QuestDB's ILP error body: exactly these keys (shared/reference/ilp-http.md "Responses"). */
export interface IlpErrorBody {
  code: string;
  message: string;
  line: number;
  errorId: string;
}

/**
 * A server refused a batch in a way that retrying cannot fix (WRITE_REJECTED). The batch stays
 * held by the sender: fix the cause and flush again, or drop it with `sender.reset()`. A 409 means
 * the server refused the batch's identity (X-Walship-Batch): its seq was used before for other
 * bytes, or it is below the window the server remembers for that writer.
 */
export class IlpRequestError extends WalshipClientError {
  /** The HTTP status, e.g. 400. */
  readonly status: number;
  /** The address that answered, `host:port`. */
  readonly address: string;
  /** The parsed JSON error body, when the server sent QuestDB's shape. */
  readonly body: IlpErrorBody | undefined;
  /** The raw body otherwise (at most RAW_BODY_MAX_CHARS characters). */
  readonly text: string;

  /** The refused batch's identity `writerId:seq` (X-Walship-Batch), when it carried one. */
  readonly batchId: string | undefined;

  constructor(facts: {
    status: number;
    address: string;
    body: IlpErrorBody | undefined;
    text: string;
    batchId?: string | undefined;
  }) {
    const what = facts.body === undefined ? facts.text : `${facts.body.code}: ${facts.body.message}`;
    const batch = facts.batchId === undefined ? 'the batch' : `batch ${facts.batchId}`;
    super(
      'WRITE_REJECTED',
      'invalid',
      `${facts.address} refused ${batch} with HTTP ${facts.status} (${what}); the batch is still held — ` +
        'fix the cause and flush again, or drop it with sender.reset()',
      {
        details: {
          status: facts.status,
          address: facts.address,
          ...(facts.batchId === undefined ? {} : { batchId: facts.batchId }),
          ...(facts.body === undefined ? {} : { line: facts.body.line, errorId: facts.body.errorId }),
        },
      },
    );
    this.name = 'IlpRequestError';
    this.status = facts.status;
    this.address = facts.address;
    this.body = facts.body;
    this.text = facts.text;
    this.batchId = facts.batchId;
  }
}

/** What one attempt of a flush got from one address. */
export interface FlushAttempt {
  /** `host:port`. */
  address: string;
  /** The HTTP status, or undefined for a network error or timeout. */
  status: number | undefined;
  /** A short description: `421 not accepting writes`, `connection refused (ECONNREFUSED)`, … */
  answer: string;
}

/**
 * A flush kept failing until retry_timeout passed (WRITE_GAVE_UP). The batch stays in the buffer:
 * the next flush sends it again.
 */
export class FlushGaveUpError extends WalshipClientError {
  /** The most recent attempts, oldest first (at most ATTEMPTS_KEPT). */
  readonly attempts: readonly FlushAttempt[];

  constructor(facts: { elapsedMs: number; retryTimeoutMs: number; attempts: FlushAttempt[]; total: number }) {
    super(
      'WRITE_GAVE_UP',
      'unavailable',
      `flush gave up after ${Math.round(facts.elapsedMs)} ms (retry_timeout=${facts.retryTimeoutMs}) and ` +
        `${facts.total} attempts; ${summarizeAttempts(facts.attempts)}; the batch is still buffered and the ` +
        'next flush sends it again',
      {
        details: { elapsedMs: facts.elapsedMs, retryTimeoutMs: facts.retryTimeoutMs, attempts: facts.total },
      },
    );
    this.name = 'FlushGaveUpError';
    this.attempts = facts.attempts;
  }
}

/** `tried a:1 (last: 421 not accepting writes, 3×), b:2 (last: connection refused, 2×)`. */
function summarizeAttempts(attempts: readonly FlushAttempt[]): string {
  const byAddress = new Map<string, { last: string; count: number }>();
  for (const attempt of attempts) {
    const seen = byAddress.get(attempt.address);
    byAddress.set(attempt.address, { last: attempt.answer, count: (seen?.count ?? 0) + 1 });
  }
  const parts = [...byAddress].map(([address, s]) => `${address} (last: ${s.last}, ${s.count}×)`);
  return `tried ${parts.join(', ')}`;
}
