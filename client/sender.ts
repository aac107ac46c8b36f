import { readFileSync } from 'node:fs';
import type { Agent } from 'undici';
import { BatchPoster } from './batch-poster.js';
import { type ClientClock, type ClientRandom, systemClientClock, systemClientRandom } from './clock.js';
import {
  type CommitTokenEntry,
  formatCommitToken,
  mergeCommitToken,
  parseCommitToken,
} from './commit-token.js';
import { parseConfigString, type SenderConfig } from './config-string.js';
import { WalshipClientError } from './errors.js';
import { createAgent } from './http-exchange.js';
import { IlpRowEncoder, type TimestampUnit } from './ilp-row-encoder.js';
import { RowBuffer } from './row-buffer.js';

/** What a Sender may be given besides its config (tests inject time and randomness). */
export interface SenderDeps {
  /** Drives backoff waits, retry_timeout and auto_flush_interval. Default: the system clock. */
  clock?: ClientClock;
  /** Drives backoff jitter. Default: Math.random. */
  random?: ClientRandom;
}

/**
 * An ILP-over-HTTP sender for several addresses, with the builder API of QuestDB's official
 * @questdb/nodejs-client:
 *
 *   const sender = Sender.fromConfig('http::addr=replica:9000;addr=primary:9000;');
 *   await sender.table('trades').symbol('sym', 'ETH-USD').floatColumn('price', 2615.54).at(ts, 'us');
 *   await sender.flush();
 *   sender.lastCommitToken; // 'trades=42' — pass to ReadRouter.query for read-your-writes
 *
 * Unlike the official client, a batch leaves the buffer only when a server answered 204: after a
 * failed flush (FlushGaveUpError, IlpRequestError) the rows are still buffered, and the next
 * flush sends them again (or `reset()` drops them). Failover follows QuestDB's Java client (see
 * batch-poster.ts). Flushes run one at a time, in call order.
 */
export class Sender {
  readonly #config: SenderConfig;
  readonly #clock: ClientClock;
  readonly #agent: Agent;
  readonly #poster: BatchPoster;
  readonly #encoder: IlpRowEncoder;
  readonly #buffer: RowBuffer;
  readonly #token = new Map<string, CommitTokenEntry>();
  /** When the oldest buffered row was added (for auto_flush_interval); undefined when empty. */
  #oldestRowMs: number | undefined;
  /** Bumped by reset(): a flush in flight then must not drop rows from the new buffer content. */
  #generation = 0;
  #flushQueue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(config: SenderConfig, deps: SenderDeps = {}) {
    this.#config = config;
    this.#clock = deps.clock ?? systemClientClock;
    this.#agent = createAgent({
      tlsVerify: config.tlsVerify,
      ca: config.tlsCaPath === undefined ? undefined : readCa(config.tlsCaPath),
      connectTimeoutMs: config.requestTimeoutMs,
    });
    this.#poster = new BatchPoster({
      scheme: config.scheme,
      addresses: config.addresses,
      auth: config.auth,
      requestTimeoutMs: config.requestTimeoutMs,
      requestMinThroughputBytesPerS: config.requestMinThroughputBytesPerS,
      retryTimeoutMs: config.retryTimeoutMs,
      agent: this.#agent,
      clock: this.#clock,
      random: deps.random ?? systemClientRandom,
      spread: config.spread,
    });
    this.#encoder = new IlpRowEncoder(config.maxNameLenBytes);
    this.#buffer = new RowBuffer(config.initBufSizeBytes, config.maxBufSizeBytes);
  }

  /** A sender for a config string (config-string.ts); throws INVALID_CONFIG. */
  static fromConfig(conf: string, deps: SenderDeps = {}): Sender {
    return new Sender(parseConfigString(conf), deps);
  }

  /** A sender for the config string in QDB_CLIENT_CONF, as QuestDB's clients read it. */
  static fromEnv(deps: SenderDeps = {}): Sender {
    const conf = process.env.QDB_CLIENT_CONF;
    if (conf === undefined || conf === '') {
      throw new WalshipClientError('INVALID_CONFIG', 'invalid', 'QDB_CLIENT_CONF is not set');
    }
    return Sender.fromConfig(conf, deps);
  }

  /** The parsed configuration (secrets print as `[secret]`). */
  get config(): Readonly<SenderConfig> {
    return this.#config;
  }

  /**
   * The commit token of every committed flush so far, merged (per table the latest txn, by epoch
   * then txn): `quotes=17@2,trades=42@2`, or undefined before the first commit that named one.
   */
  get lastCommitToken(): string | undefined {
    return formatCommitToken(this.#token);
  }

  /** Rows buffered and not yet committed. */
  get bufferedRows(): number {
    return this.#buffer.rows;
  }

  /** Bytes buffered and not yet committed. */
  get bufferedBytes(): number {
    return this.#buffer.lengthBytes;
  }

  /** `host:port` the next flush goes to first (the one that last committed). */
  get currentAddress(): string {
    return this.#poster.currentAddress;
  }

  /** Starts a row. */
  table(name: string): this {
    this.#checkOpen();
    this.#encoder.table(name);
    return this;
  }

  /** Adds a symbol (tag); symbols come before columns. */
  symbol(name: string, value: string): this {
    this.#encoder.symbol(name, value);
    return this;
  }

  stringColumn(name: string, value: string): this {
    this.#encoder.stringColumn(name, value);
    return this;
  }

  /** A double column. */
  floatColumn(name: string, value: number): this {
    this.#encoder.floatColumn(name, value);
    return this;
  }

  /** A long column: a bigint in the int64 range, or a safe-integer number. */
  intColumn(name: string, value: bigint | number): this {
    this.#encoder.intColumn(name, value);
    return this;
  }

  booleanColumn(name: string, value: boolean): this {
    this.#encoder.booleanColumn(name, value);
    return this;
  }

  /** A timestamp column; `value` counts `unit` (default µs). */
  timestampColumn(name: string, value: bigint | number, unit: TimestampUnit = 'us'): this {
    this.#encoder.timestampColumn(name, value, unit);
    return this;
  }

  /** Ends the row with designated timestamp `timestamp` in `unit` (default µs); may auto-flush. */
  async at(timestamp: bigint | number, unit: TimestampUnit = 'us'): Promise<void> {
    return this.#endRow(this.#encoder.finish({ value: timestamp, unit }));
  }

  /** Ends the row without a timestamp: the server stamps it at commit. May auto-flush. */
  async atNow(): Promise<void> {
    return this.#endRow(this.#encoder.finish());
  }

  /**
   * Sends every buffered row as one request (one transaction) and resolves once a server
   * committed it (204); resolves false when there was nothing to send. Rejects with
   * IlpRequestError or FlushGaveUpError, keeping the rows buffered.
   */
  flush(): Promise<boolean> {
    if (this.#closed) return Promise.reject(closedError());
    const flushed = this.#flushQueue.then(() => this.#flushNow());
    this.#flushQueue = flushed.catch(() => {});
    return flushed;
  }

  /** Drops every buffered row and the row being built. */
  reset(): this {
    this.#encoder.discard();
    this.#buffer.clear();
    this.#oldestRowMs = undefined;
    this.#generation++;
    return this;
  }

  /**
   * Flushes what is buffered when auto_flush is on (as QuestDB's Java client does), then closes
   * the connections. With auto_flush=off, buffered rows are dropped: flush first. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.#config.autoFlush && this.#buffer.rows > 0) await this.flush();
    } finally {
      this.#closed = true;
      this.#encoder.discard();
      await this.#flushQueue;
      await this.#agent.close();
    }
  }

  async #endRow(line: string): Promise<void> {
    this.#checkOpen();
    this.#buffer.append(line);
    this.#oldestRowMs ??= this.#clock.monotonicMs();
    if (this.#shouldAutoFlush()) await this.flush();
  }

  #shouldAutoFlush(): boolean {
    const { autoFlush, autoFlushRows, autoFlushIntervalMs } = this.#config;
    if (!autoFlush) return false;
    if (autoFlushRows > 0 && this.#buffer.rows >= autoFlushRows) return true;
    return (
      autoFlushIntervalMs > 0 &&
      this.#oldestRowMs !== undefined &&
      this.#clock.monotonicMs() - this.#oldestRowMs >= autoFlushIntervalMs
    );
  }

  async #flushNow(): Promise<boolean> {
    if (this.#buffer.rows === 0) return false;
    const batch = this.#buffer.snapshot();
    const generation = this.#generation;
    const result = await this.#poster.post(batch.bytes);
    // Committed: only now does the batch leave the buffer (unless reset() dropped it meanwhile).
    if (generation === this.#generation) {
      this.#buffer.dropFront(batch.bytes.length, batch.rows);
      this.#oldestRowMs = this.#buffer.rows === 0 ? undefined : this.#clock.monotonicMs();
    }
    const token = result.commitToken === undefined ? undefined : parseCommitToken(result.commitToken);
    if (token !== undefined) mergeCommitToken(this.#token, token);
    return true;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError();
  }
}

function closedError(): WalshipClientError {
  return new WalshipClientError('CLOSED', 'closed', 'the sender is closed; create a new one');
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new WalshipClientError(
      'INVALID_CONFIG',
      'invalid',
      `invalid config string: cannot read tls_ca ${JSON.stringify(path)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
