import { Worker } from 'node:worker_threads';
import type { ErrorKind } from '../core/index.js';
import { openReadOnly, type QueryOutput, type QueryRequest, runQuery } from './query-runner.js';

/**
 * The query host: a child process of the node (RFC-0004) with one read-only connection, running one
 * query at a time and answering over the IPC channel. QueryPool starts it (query-host-process.ts
 * explains how it is loaded from dist/ and under vitest) and ends it with SIGKILL when a query
 * outlives its time limit, which is the only way to stop a query stuck inside one SQLite step.
 *
 * Its lifetime belongs to the parent: it exits when the IPC channel closes (the pool closed or the
 * parent died), a watchdog thread kills it when the parent is gone while the main thread is stuck in
 * SQLite, and it ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the
 * whole process group, so that the parent shuts down in its own order.
 */

/** The one command-line argument of a query host, as JSON. */
export interface QueryHostArgs {
  databaseFile: string;
}

/** Pool → host. */
export interface QueryJobMessage {
  id: number;
  request: QueryRequest;
}

/** A WalshipError flattened for IPC (class identity does not cross processes). */
export interface SerializedQueryError {
  code: string;
  kind: ErrorKind;
  message: string;
  details: Record<string, unknown>;
}

/** Host → pool. */
export type QueryHostMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; output: QueryOutput }
  | { type: 'error'; id: number; error: SerializedQueryError };

/**
 * How often the watchdog thread checks that the parent is still alive, in ms. It matters only when
 * the parent died without closing the pool while this host ran a runaway query (otherwise the closed
 * IPC channel ends the host at once), so it is a trade of an orphan's CPU against idle wake-ups.
 */
const ORPHAN_CHECK_INTERVAL_MS = 1_000;

/**
 * The watchdog, a worker thread in plain JavaScript (eval), so it runs the same from dist/ and from
 * TypeScript source. When the parent dies, the kernel re-parents this process: `process.ppid`
 * changes. SIGKILL to itself, not process.exit: exit would wait for the main thread to leave SQLite.
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid !== workerData.parentPid) process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
`;

function serializeError(error: unknown): SerializedQueryError {
  const e = error as { code?: unknown; kind?: unknown; message?: unknown; details?: unknown };
  const isWalship = typeof e?.code === 'string' && typeof e.kind === 'string';
  return {
    code: isWalship ? (e.code as string) : 'QUERY_INTERNAL',
    kind: isWalship ? (e.kind as ErrorKind) : 'internal',
    message: typeof e?.message === 'string' ? e.message : String(error),
    details: isWalship && typeof e.details === 'object' && e.details !== null ? { ...e.details } : {},
  };
}

function startWatchdog(): void {
  const watchdog = new Worker(WATCHDOG_SOURCE, {
    eval: true,
    workerData: { parentPid: process.ppid, intervalMs: ORPHAN_CHECK_INTERVAL_MS },
    // A few MB are plenty for one timer; the host's own heap bound is for query results.
    resourceLimits: { maxOldGenerationSizeMb: 8 },
  });
  // If the watchdog itself fails, the host must not go on unguarded.
  watchdog.on('error', () => process.kill(process.pid, 'SIGKILL'));
  watchdog.unref();
}

function main(): void {
  const send = process.send?.bind(process);
  if (send === undefined)
    throw new Error('query-host must be started by QueryPool (it needs an IPC channel)');
  const post = (message: QueryHostMessage, then?: () => void) => send(message, undefined, {}, then);
  process.on('disconnect', () => process.exit(0));
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  const { databaseFile } = JSON.parse(process.argv[2] ?? '{}') as QueryHostArgs;
  let db: ReturnType<typeof openReadOnly>;
  try {
    db = openReadOnly(databaseFile);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    post({ type: 'failed', message }, () => process.exit(1));
    return;
  }
  process.on('message', ({ id, request }: QueryJobMessage) => {
    try {
      post({ type: 'result', id, output: runQuery(db, request) });
    } catch (error) {
      post({ type: 'error', id, error: serializeError(error) });
    }
  });
  post({ type: 'ready' });
  startWatchdog();
}

main();
