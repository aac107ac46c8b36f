import { Worker } from 'node:worker_threads';
import type { ErrorCode, ErrorKind } from '../core/index.js';
import {
  MEMORY_LIMIT_TEXT,
  type QueryHostArgs,
  type QueryHostMessage,
  type QueryJobMessage,
  type SerializedQueryError,
} from './query-host-protocol.js';
import {
  connectionSettings,
  isConnectionChangedError,
  openReadOnly,
  runIsolatedQuery,
} from './query-runner.js';

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
 *
 * Nothing a query does may outlive it (RFC-0004 §6): after every query the host compares its
 * connection's settings with those it opened with, and when they differ it withholds the answer and
 * asks to be replaced (`recycle`), since a fresh process is the one state known to be clean. The same
 * watchdog thread bounds the host's resident memory (§7): past `memoryLimitBytes` it writes
 * MEMORY_LIMIT_TEXT to stderr and SIGKILLs the host, and the pool answers QUERY_TOO_LARGE.
 */

/**
 * How often the watchdog thread checks that the parent is still alive, in ms. It matters only when
 * the parent died without closing the pool while this host ran a runaway query (otherwise the closed
 * IPC channel ends the host at once), so it is a trade of an orphan's CPU against idle wake-ups.
 */
const ORPHAN_CHECK_INTERVAL_MS = 1_000;
/**
 * How often the watchdog reads the host's resident memory, in ms. A query can overshoot the limit by
 * what it allocates in one interval before it is stopped; reading RSS costs a few µs, so 40 reads a
 * second per host is noise.
 */
const MEMORY_CHECK_INTERVAL_MS = 25;

/**
 * The watchdog, a worker thread in plain JavaScript (eval), so it runs the same from dist/ and from
 * TypeScript source (so its setInterval is text run in that thread, outside the clock seam, which it
 * cannot import). When the parent dies, the kernel re-parents this process: `process.ppid`
 * changes. SIGKILL to itself, not process.exit: exit would wait for the main thread to leave SQLite.
 */
const WATCHDOG_SOURCE = `
const { workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
setInterval(() => {
  if (process.ppid !== workerData.parentPid) process.kill(process.pid, 'SIGKILL');
}, workerData.intervalMs);
// RSS is the whole process: SQLite's heap (its own hard_heap_limit is inert in better-sqlite3's build,
// which turns memory statistics off), V8's heap and the Buffers in between. writeSync, because the
// main thread, which would flush an ordinary stderr write, is busy in SQLite.
if (workerData.memoryLimitBytes > 0) setInterval(() => {
  const rss = process.memoryUsage.rss();
  if (rss <= workerData.memoryLimitBytes) return;
  try {
    writeSync(2, workerData.memoryLimitText + ': ' + rss + ' > ' + workerData.memoryLimitBytes + ' bytes\\n');
  } finally {
    process.kill(process.pid, 'SIGKILL');
  }
}, workerData.memoryIntervalMs);
`;

function serializeError(error: unknown): SerializedQueryError {
  const e = error as { code?: unknown; kind?: unknown; message?: unknown; details?: unknown };
  const isWalship = typeof e?.code === 'string' && typeof e.kind === 'string';
  return {
    code: isWalship ? (e.code as ErrorCode) : 'QUERY_INTERNAL',
    kind: isWalship ? (e.kind as ErrorKind) : 'internal',
    message: typeof e?.message === 'string' ? e.message : String(error),
    details: isWalship && typeof e.details === 'object' && e.details !== null ? { ...e.details } : {},
  };
}

function startWatchdog(memoryLimitBytes: number): void {
  const watchdog = new Worker(WATCHDOG_SOURCE, {
    eval: true,
    workerData: {
      parentPid: process.ppid,
      intervalMs: ORPHAN_CHECK_INTERVAL_MS,
      memoryLimitBytes,
      memoryIntervalMs: MEMORY_CHECK_INTERVAL_MS,
      memoryLimitText: MEMORY_LIMIT_TEXT,
    },
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
  const { databaseFile, memoryLimitBytes } = JSON.parse(process.argv[2] ?? '{}') as QueryHostArgs;
  let db: ReturnType<typeof openReadOnly>;
  let settings: string;
  try {
    db = openReadOnly(databaseFile);
    settings = connectionSettings(db);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    post({ type: 'failed', message }, () => process.exit(1));
    return;
  }
  let spoiled = false;
  process.on('message', ({ id, request }: QueryJobMessage) => {
    // A host that asked to be replaced answers nothing more; the pool kills it on that answer.
    if (spoiled) return;
    try {
      post({ type: 'result', id, output: runIsolatedQuery(db, request, settings) });
    } catch (error) {
      spoiled = isConnectionChangedError(error);
      post({ type: 'error', id, error: serializeError(error), recycle: spoiled });
    }
  });
  post({ type: 'ready' });
  startWatchdog(memoryLimitBytes);
}

main();
