import type { KeyObject } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import {
  type Clock,
  InvalidArgumentError,
  isWalshipError,
  listen,
  systemClock,
  type Timer,
  type TlsCredentials,
} from '../core/index.js';
import type { IlpCommit } from './ilp-commit.js';
import { type IlpOutcome, type IlpRequestEvent, ilpOutcomeOfError } from './ilp-request-event.js';
import { type IlpLimits, resolveIlpLimits } from './limits.js';
import { parseCompleteIlpBatch } from './line-parser.js';
import { type Precision, parsePrecision } from './precision.js';
import {
  createChallenge,
  type IlpTcpAuthKey,
  loadTcpAuthKeys,
  MAX_AUTH_LINE_BYTES,
  verifyChallenge,
} from './tcp-auth.js';

/**
 * ILP over TCP (QuestDB's port 9009): the same lines on a raw socket, no acknowledgement and no
 * error channel. Complete lines are committed in batches; while a batch commits the socket is
 * paused, so a fast client is slowed by TCP backpressure instead of growing a buffer. A parse error
 * or a refused commit closes the connection (what QuestDB does; the client sees a reset).
 */

export interface IlpTcpServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  commit: IlpCommit;
  /** Checked on every new connection and before every batch: false closes the connection. */
  acceptingWrites: () => boolean;
  /** TLS with these credentials (QuestDB clients' `tcps::`); plain TCP without. */
  tls?: TlsCredentials | undefined;
  /** When set, every connection must pass the ECDSA challenge with one of these keys. */
  auth?: { keys: IlpTcpAuthKey[] };
  /** Bytes of one line; overrides `limits.maxLineBytes`. Default 1 MiB. */
  maxLineBytes?: number;
  limits?: Partial<IlpLimits>;
  /** Unit of bare designated timestamps (QuestDB's line.tcp.timestamp). Default `n`. */
  precision?: Precision;
  /** Bytes parsed and committed as one batch at most. Default 4 MiB; at least maxLineBytes + 2. */
  maxBatchBytes?: number;
  /** Milliseconds a connection has to pass the challenge. Default 15 000. */
  authTimeoutMs?: number;
  /** Open connections at most; Node closes any further one as soon as it connects. Default 1024. */
  maxConnections?: number;
  /** Connection-level events (never data, keys or signatures). Default: nothing. */
  log?: (message: string) => void;
  /** Times the authentication deadline (and batches for `onBatch`). Default systemClock. */
  clock?: Clock;
  /**
   * Called once per batch (committed, or refused: the connection then closes) and once per
   * connection refused before any batch (not accepting writes, a failed challenge), for `/metrics`.
   * Default: nothing.
   */
  onBatch?: (event: IlpRequestEvent) => void;
}

export interface IlpTcpServer {
  /** The port listened on (the real one when 0 was asked). */
  port: number;
  /** Stops listening, closes every connection and waits for batches being committed to settle. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Lines of one TCP batch (one commit) at most. TCP promises nothing about where batches end, so a
 * batch is kept small enough to parse and commit in one short step (a few ms; the committer's
 * one-step limit is about the same), and the event loop is freed between batches.
 */
const TCP_BATCH_LINES = 4096;
const DEFAULT_AUTH_TIMEOUT_MS = 15_000;
/** Each connection may buffer up to maxBatchBytes while a batch commits: this bounds the sum. */
const DEFAULT_MAX_CONNECTIONS = 1024;

/** Starts listening; resolves once bound. Throws InvalidArgumentError / InvalidConfigError for bad options. */
export async function startIlpTcpServer(options: IlpTcpServerOptions): Promise<IlpTcpServer> {
  const config = resolveConfig(options);
  const connections = new Set<IlpTcpConnection>();
  const accept = (socket: Socket) => {
    if (!options.acceptingWrites()) {
      config.report('refused', 0, 0, undefined);
      socket.destroy();
      return;
    }
    const connection = new IlpTcpConnection(socket, config);
    connections.add(connection);
    socket.once('close', () => connections.delete(connection));
  };
  // Over TLS the connection starts once the handshake is done; a failed handshake only closes it.
  const server: Server =
    options.tls === undefined
      ? createServer(accept)
      : createTlsServer(
          { cert: options.tls.cert, key: options.tls.key, handshakeTimeout: config.authTimeoutMs },
          accept,
        );
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const port = await listen(server, options.host, options.port);
  return {
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const committing = [...connections].map((connection) => connection.destroy());
      await Promise.allSettled(committing);
      await closed;
    },
  };
}

interface TcpConfig {
  commit: IlpCommit;
  acceptingWrites: () => boolean;
  keys: Map<string, KeyObject> | null;
  limits: IlpLimits;
  /** `limits` with maxLinesPerRequest at most TCP_BATCH_LINES: where a batch ends. */
  batchLimits: IlpLimits;
  precision: Precision;
  maxBatchBytes: number;
  authTimeoutMs: number;
  log: (message: string) => void;
  clock: Clock;
  /** Reports a batch to `onBatch` (nothing without one); `startedMs` undefined: 0 seconds. */
  report: (outcome: IlpOutcome, rows: number, bytes: number, startedMs: number | undefined) => void;
  /** Monotonic ms for a batch's start when `onBatch` is set, else 0 (no clock read on the hot path). */
  startMs: () => number;
}

function resolveConfig(options: IlpTcpServerOptions): TcpConfig {
  const limits = resolveIlpLimits({
    ...options.limits,
    maxLineBytes: options.maxLineBytes ?? options.limits?.maxLineBytes,
  });
  const maxBatchBytes = options.maxBatchBytes ?? Math.max(DEFAULT_MAX_BATCH_BYTES, limits.maxLineBytes + 2);
  // A batch must hold the longest line and its CR LF, or a long line could never be committed.
  if (maxBatchBytes < limits.maxLineBytes + 2) {
    throw new InvalidArgumentError(`maxBatchBytes (${maxBatchBytes}) must be at least maxLineBytes + 2`);
  }
  const clock = options.clock ?? systemClock;
  const onBatch = options.onBatch;
  return {
    commit: options.commit,
    acceptingWrites: options.acceptingWrites,
    keys: options.auth === undefined ? null : loadTcpAuthKeys(options.auth.keys),
    limits,
    batchLimits: { ...limits, maxLinesPerRequest: Math.min(limits.maxLinesPerRequest, TCP_BATCH_LINES) },
    // Checked here so a bad setting fails at start, not as a parse error on every connection.
    precision: parsePrecision(options.precision ?? null),
    maxBatchBytes,
    authTimeoutMs: options.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS,
    log: options.log ?? (() => {}),
    clock,
    report: (outcome, rows, bytes, startedMs) =>
      onBatch?.({
        transport: 'tcp',
        outcome,
        rows,
        bytes,
        seconds: startedMs === undefined ? 0 : (clock.monotonicMs() - startedMs) / 1000,
      }),
    startMs: onBatch === undefined ? () => 0 : () => clock.monotonicMs(),
  };
}

type ConnectionState = 'key-id' | 'signature' | 'lines' | 'closed';

/** One client connection: the optional challenge, then batches of lines. */
class IlpTcpConnection {
  private state: ConnectionState;
  /** Received bytes not yet used: at most maxBatchBytes plus one socket chunk (the socket is paused meanwhile). */
  private pending: Buffer = Buffer.alloc(0);
  private nextLineNumber = 1;
  private pumping: Promise<void> | null = null;
  /** Bytes arrived while a pump was running: it goes round once more before it stops. */
  private pumpAgain = false;
  private key: KeyObject | null = null;
  private challenge: Buffer | null = null;
  private authTimer: Timer | null = null;
  private readonly peer: string;

  constructor(
    private readonly socket: Socket,
    private readonly config: TcpConfig,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.state = config.keys === null ? 'lines' : 'key-id';
    if (this.state === 'key-id') {
      this.authTimer = config.clock.setTimer(
        config.authTimeoutMs,
        () => this.close('authentication timed out'),
        { unref: true },
      );
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
  }

  /** Closes the connection at once; resolves when a batch being committed has settled. */
  destroy(): Promise<void> {
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.authTimer?.cancel();
      this.pending = Buffer.alloc(0);
      this.socket.destroy();
    }
    return this.pumping ?? Promise.resolve();
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private close(reason: string): void {
    if (this.state === 'closed') return;
    this.config.log(`ilp tcp ${this.peer}: closing: ${reason}`);
    void this.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    const authenticating = this.state !== 'lines';
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (authenticating && !this.authenticate()) return;
    // Without a new CR or LF no line can have been completed, so a long line arriving in many
    // chunks is not parsed again for each one (that would cost its length squared), until it
    // passes the line limit and has to be refused.
    const mayComplete =
      authenticating ||
      chunk.indexOf(10) >= 0 ||
      chunk.indexOf(13) >= 0 ||
      this.pending.length > this.config.limits.maxLineBytes + 2;
    if (!mayComplete) return;
    if (this.pumping !== null) this.pumpAgain = true;
    else this.pumping = this.pumpUntilIdle();
  }

  private async pumpUntilIdle(): Promise<void> {
    try {
      do {
        this.pumpAgain = false;
        await this.pump();
      } while (this.pumpAgain && this.state === 'lines');
    } finally {
      this.pumping = null;
    }
  }

  /** Advances the challenge with the bytes received; true once authenticated. */
  private authenticate(): boolean {
    while (this.state === 'key-id' || this.state === 'signature') {
      const lf = this.pending.indexOf(10);
      if (lf < 0) {
        if (this.pending.length > MAX_AUTH_LINE_BYTES) this.close('authentication line too long');
        return false;
      }
      const text = this.pending.toString('utf8', 0, lf).replace(/\r$/, '');
      this.pending = this.pending.subarray(lf + 1);
      if (this.state === 'key-id') this.receiveKeyId(text);
      else this.receiveSignature(text);
    }
    return this.state === 'lines';
  }

  private receiveKeyId(keyId: string): void {
    const key = this.config.keys?.get(keyId);
    if (key === undefined) {
      this.config.report('refused', 0, 0, undefined);
      this.close('authentication failed: unknown key id');
      return;
    }
    this.key = key;
    this.challenge = createChallenge();
    this.socket.write(Buffer.concat([this.challenge, Buffer.from('\n')]));
    this.state = 'signature';
  }

  private receiveSignature(signature: string): void {
    if (!verifyChallenge(this.key!, this.challenge!, signature)) {
      this.config.report('refused', 0, 0, undefined);
      this.close('authentication failed: bad signature');
      return;
    }
    this.state = 'lines';
    this.key = null;
    this.challenge = null;
    this.authTimer?.cancel();
  }

  /**
   * Parses and commits complete lines until none is left; the socket is paused during commits.
   * A batch is at most TCP_BATCH_LINES lines and the event loop is freed between batches, so a
   * connection sending fast never holds the loop for long (issue 13 item 5).
   */
  private async pump(): Promise<void> {
    for (let first = true; this.state === 'lines'; first = false) {
      if (!first) {
        // Paused while the loop is free, so the buffered bytes stay bounded as during a commit.
        this.socket.pause();
        await new Promise((resolve) => setImmediate(resolve));
        if (this.state !== 'lines') return;
        this.socket.resume();
      }
      const window = this.pending.subarray(0, Math.min(this.pending.length, this.config.maxBatchBytes));
      const startedMs = this.config.startMs();
      let batch: ReturnType<typeof parseCompleteIlpBatch>;
      try {
        batch = parseCompleteIlpBatch(window, {
          precision: this.config.precision,
          limits: this.config.batchLimits,
          firstLineNumber: this.nextLineNumber,
        });
      } catch (error) {
        this.config.report('client_error', 0, 0, startedMs);
        return this.close(`parse error (${describe(error)})`);
      }
      const bytes = batch.consumedBytes;
      if (bytes === 0) return;
      this.pending = this.pending.subarray(bytes);
      this.nextLineNumber = batch.nextLineNumber;
      if (batch.batch.lineCount === 0) continue;
      if (!this.config.acceptingWrites()) {
        this.config.report('refused', 0, bytes, startedMs);
        return this.close('not accepting writes');
      }
      this.socket.pause();
      let rows: number;
      try {
        const result = await this.config.commit(batch.batch, { protocol: 'tcp' });
        rows = result.rows ?? batch.batch.lineCount;
      } catch (error) {
        this.config.report(ilpOutcomeOfError(error), 0, bytes, startedMs);
        return this.close(`commit refused (${describe(error)})`);
      }
      this.config.report('ok', rows, bytes, startedMs);
      // The connection may have been closed while the batch committed.
      if (!this.isClosed()) this.socket.resume();
    }
  }
}

/** An error's code and line for the log: never its message, which may quote the client's data. */
function describe(error: unknown): string {
  if (!isWalshipError(error)) return 'unexpected error';
  const line = error.details.line;
  return typeof line === 'number' ? `${error.code} at line ${line}` : error.code;
}
