import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Clock, WalshipError } from '../core/index.js';
import {
  MEMORY_LIMIT_TEXT,
  type QueryHostArgs,
  type QueryHostMessage,
  type QueryJobMessage,
} from './query-host-protocol.js';

export { MEMORY_LIMIT_TEXT } from './query-host-protocol.js';

import type { QueryRequest } from './query-runner.js';

/**
 * The parent's handle on one query host process (query-host.ts, RFC-0004): forks it, waits for it to
 * open the database, sends it queries, hands its answers to the pool, and kills it with SIGKILL, the
 * one signal that stops a process whatever it is doing, native SQLite code included.
 */

/** Options of QueryHostProcess.start. */
export interface QueryHostOptions {
  /** The node's SQLite file; the host opens it read-only. */
  databaseFile: string;
  /** V8 old-space bound of the host, in MB (`--max-old-space-size`). */
  heapMb: number;
  /** Resident memory of the host at most, in bytes; past it the host kills itself (query-host.ts). */
  memoryLimitBytes: number;
  /** Longest the host may take to open the database, in ms, before `started` rejects. */
  startTimeoutMs: number;
  /** Times `startTimeoutMs`. */
  clock: Clock;
  /** Receives the host's answers (`result` and `error`), in the order the host sent them. */
  onAnswer: (message: Extract<QueryHostMessage, { type: 'result' | 'error' }>) => void;
  /**
   * Called once, synchronously, when the process is gone (before `exited` resolves), whether it had
   * started or not, so the caller never sends to a dead host in between.
   */
  onExit: (exit: QueryHostExit) => void;
}

/** How a host process ended. */
export interface QueryHostExit {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** V8 reported that the host's heap (`heapMb`) ran out. */
  outOfMemory: boolean;
  /** The host's watchdog stopped it for using more than `memoryLimitBytes` of resident memory. */
  memoryLimitExceeded: boolean;
  /** The end of what the host wrote to stderr, at most STDERR_TAIL_CHARS characters. */
  stderrTail: string;
}

/**
 * What a host wrote to stderr is kept for error messages, up to this many characters (the end, where
 * a fatal error's reason is); a host writes nothing there in normal operation.
 */
const STDERR_TAIL_CHARS = 2_048;
/** V8's message when a heap bound is reached (printed before it aborts the process). */
const OUT_OF_MEMORY_TEXT = 'JavaScript heap out of memory';

/**
 * One host process. Lifecycle: start() → `started` resolves (or rejects, and the host is killed) →
 * run() one query at a time, answers to `onAnswer` → kill() or its own death → `onExit`, `exited`.
 */
export class QueryHostProcess {
  /**
   * Resolves when the host has opened the database read-only. Rejects with QUERY_WORKER_FAILED when
   * it could not (its reason in the message), did not within `startTimeoutMs`, or died first; the
   * host is then being killed.
   */
  readonly started: Promise<void>;
  /** Resolves once the process is gone (reaped: its pid is free again). Never rejects. */
  readonly exited: Promise<QueryHostExit>;
  /** `started` has settled (resolved or rejected). */
  private startSettled = false;
  private ready = false;
  private gone = false;
  private killed = false;
  private stderrTail = '';
  private outOfMemory = false;
  private memoryLimitExceeded = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly options: QueryHostOptions,
  ) {
    this.exited = new Promise((resolve) => this.watchExit(resolve));
    this.started = new Promise((resolve, reject) => this.watchStart(resolve, reject));
    // The pool learns of a failed start from `started`, and of a later death from `exited`.
    this.started.catch(() => {});
  }

  /** Forks a host for `options.databaseFile`. Never throws; a failed fork rejects `started`. */
  static start(options: QueryHostOptions): QueryHostProcess {
    const { entry, execArgv } = hostEntry();
    const args: QueryHostArgs = {
      databaseFile: options.databaseFile,
      memoryLimitBytes: options.memoryLimitBytes,
    };
    const child = fork(entry, [JSON.stringify(args)], {
      // 'advanced' is V8's structured clone: BigInt and typed arrays cross the channel as they are.
      serialization: 'advanced',
      // Not the parent's execArgv: an inspector port or a loader of the parent has no place here.
      execArgv: [`--max-old-space-size=${options.heapMb}`, ...execArgv],
      // stdout ignored: a stray write must not interleave with the node's own log lines on stdout.
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    return new QueryHostProcess(child, options);
  }

  /** The host's process id; undefined only when the fork itself failed. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True from `ready` until the process is gone or kill() was called. */
  get usable(): boolean {
    return this.ready && !this.gone && !this.killed;
  }

  /**
   * Sends one query. The host must be usable and idle (the pool sends one query at a time). A send
   * that fails because the host just died needs no handling here: its exit fails the query.
   */
  run(id: number, request: QueryRequest): void {
    if (!this.usable) throw new WalshipError('ASSERTION_FAILED', 'internal', 'run() on a host not usable');
    const message: QueryJobMessage = { id, request };
    this.child.send(message, undefined, {}, () => {});
  }

  /** Ends the host with SIGKILL. Idempotent; `exited` resolves once the kernel has reaped it. */
  kill(): void {
    if (this.killed || this.gone) return;
    this.killed = true;
    this.child.kill('SIGKILL');
  }

  private watchStart(resolve: () => void, reject: (error: unknown) => void): void {
    const fail = (reason: string) => {
      if (this.startSettled) return;
      this.startSettled = true;
      timer.cancel();
      this.kill();
      reject(startError(this.options.databaseFile, reason));
    };
    const timer = this.options.clock.setTimer(this.options.startTimeoutMs, () =>
      fail(`no answer within ${this.options.startTimeoutMs} ms`),
    );
    this.child.on('message', (message: QueryHostMessage) => {
      if (message.type === 'ready' && !this.startSettled) {
        this.startSettled = true;
        this.ready = true;
        timer.cancel();
        resolve();
      } else if (message.type === 'failed') {
        fail(message.message);
      } else if ((message.type === 'result' || message.type === 'error') && this.usable) {
        this.options.onAnswer(message);
      }
    });
    this.child.on('error', (error) => fail(error.message));
    this.exited.then((exit) => fail(describeExit(exit)));
  }

  private watchExit(resolve: (exit: QueryHostExit) => void): void {
    const stderr = this.child.stderr;
    stderr?.setEncoding('utf8');
    stderr?.on('data', (chunk: string) => {
      const text = this.stderrTail + chunk;
      // Searched across the chunk boundary too, before the tail is cut.
      if (text.includes(OUT_OF_MEMORY_TEXT)) this.outOfMemory = true;
      if (text.includes(MEMORY_LIMIT_TEXT)) this.memoryLimitExceeded = true;
      this.stderrTail = text.slice(-STDERR_TAIL_CHARS);
    });
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.gone) return;
      this.gone = true;
      const exit: QueryHostExit = {
        code,
        signal,
        outOfMemory: this.outOfMemory,
        memoryLimitExceeded: this.memoryLimitExceeded,
        stderrTail: this.stderrTail.trim(),
      };
      this.options.onExit(exit);
      resolve(exit);
    };
    // 'close' comes after the exit and after stderr ended, so the tail is complete.
    this.child.on('close', done);
    // A fork that failed (no pid) may never emit 'close'.
    this.child.on('error', () => {
      if (this.child.pid === undefined) done(null, null);
    });
  }
}

/**
 * One line about how a host ended, for error messages: the exit code or signal, and the last line of
 * its stderr that names an error (V8's and Node's fatal messages are followed by stack frames).
 */
export function describeExit(exit: QueryHostExit): string {
  const how =
    exit.signal !== null ? `was killed by ${exit.signal}` : `exited with code ${exit.code ?? 'unknown'}`;
  const lines = exit.stderrTail.split('\n');
  const reason = (lines.findLast((line) => /error/i.test(line)) ?? lines.at(-1) ?? '').trim().slice(0, 300);
  return `the query host ${how}${reason === '' ? '' : ` (stderr: ${reason})`}`;
}

/**
 * What to fork. Compiled (dist/table/query-host-process.js): query-host.js beside it. From TypeScript
 * source (vitest runs .ts without a build, but a child process is a plain Node): query-host.ts with
 * `--import` of query-host-ts-register.mjs, whose module hooks compile .ts with the `typescript`
 * devDependency. This keeps the host in TypeScript, type-checked with the rest, with no build change:
 * tsc compiles query-host.ts like any module, and the .mjs files are never needed in dist.
 */
function hostEntry(): { entry: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    return {
      entry: fileURLToPath(new URL('./query-host.ts', here)),
      execArgv: ['--import', new URL('./query-host-ts-register.mjs', here).href],
    };
  }
  return { entry: fileURLToPath(new URL('./query-host.js', here)), execArgv: [] };
}

function startError(databaseFile: string, reason: string): WalshipError {
  return new WalshipError(
    'QUERY_WORKER_FAILED',
    'unavailable',
    `a query host could not open ${databaseFile} read-only: ${reason}`,
    { details: { databaseFile } },
  );
}
