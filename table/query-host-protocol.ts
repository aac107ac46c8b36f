import type { ErrorCode, ErrorKind } from '../core/index.js';
import type { QueryOutput, QueryRequest } from './query-runner.js';

/** What the pool (query-host-process.ts) and a query host (query-host.ts) say to each other over IPC. */

/** The one command-line argument of a query host, as JSON. */
export interface QueryHostArgs {
  databaseFile: string;
  /** Resident memory of the whole host (SQLite, JavaScript and buffers) at most, in bytes. */
  memoryLimitBytes: number;
}

/** Pool → host. */
export interface QueryJobMessage {
  id: number;
  request: QueryRequest;
}

/** A WalshipError flattened for IPC (class identity does not cross processes). */
export interface SerializedQueryError {
  code: ErrorCode;
  kind: ErrorKind;
  message: string;
  details: Record<string, unknown>;
}

/** Host → pool. */
export type QueryHostMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; output: QueryOutput }
  | { type: 'error'; id: number; error: SerializedQueryError; recycle?: boolean };

/** What a host's watchdog writes to stderr before it kills the host for exceeding `memoryLimitBytes`. */
export const MEMORY_LIMIT_TEXT = 'walship query host: resident memory limit exceeded';
