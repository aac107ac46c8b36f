import { readFileSync } from 'node:fs';
import type { Agent } from 'undici';
import { formatBatchId, generateWriterId } from './batch-identity.js';
import { BatchPoster } from './batch-poster.js';
import {
  type ClientClock,
  type ClientRandom,
  type ClientRandomBytes,
  systemClientClock,
  systemClientRandom,
  systemClientRandomBytes,
} from './clock.js';
import {
  type CommitTokenEntry,
  formatCommitToken,
  mergeCommitToken,
  parseCommitToken,
} from './commit-token.js';
import { parseConfigString, type SenderConfig } from './config-string.js';
import { FlushGaveUpError, WalshipClientError } from './errors.js';
import type { HeldBatch, HeldBatches } from './held-batches.js';
import { createAgent } from './http-exchange.js';
import { IlpRowEncoder, type TimestampUnit } from './ilp-row-encoder.js';
import { MemoryHeldBatches } from './memory-held-batches.js';
import { RowBuffer } from './row-buffer.js';
import { type CorruptBatchReport, SfDir } from './sf-dir.js';
import { Backoff } from './write-policy.js';

/** What a Sender may be given besides its config (tests inject time and randomness). */
export interface SenderDeps {
  /** Drives backoff waits, retry_timeout, auto_flush_interval and sf_append_deadline_millis. */
  clock?: ClientClock;
  /** Drives backoff jitter. Default: Math.random. */
  random?: ClientRandom;
  /** Generated writer ids and lock tokens. Default: node:crypto randomBytes. */
  randomBytes?: ClientRandomBytes;
  /**
   * Told of each sf_dir batch file that failed its check (at open — that is, during the
   * constructor — or when read): it was moved to `<sf_dir>/corrupt/` and is never sent.
   */
  onCorruptBatch?: (report: CorruptBatchReport) => void;
}

/** What became of the batches this Sender sent (since it was created). */
export interface BatchStats {
  /** 204 `committed`: written by that request. */
  committed: number;
  /** 204 `replayed`: committed before under the same identity (a resend); nothing written now. */
  replayed: number;
  /** 204 without X-Walship-Batch-Status: the server ignores identities (at-least-once). */
  ignored: number;
  /** sf_dir batch files found corrupt, moved to corrupt/ and never sent. */
  corrupt: number;
}

/**
 * An ILP-over-HTTP sender for several addresses, with the builder API of QuestDB's official
 * @questdb/nodejs-client:
 *
 *   const sender = Sender.fromConfig('http::addr=replica:9000;addr=primary:9000;');
 *   await sender.table('trades').symbol('sym', 'ETH-USD').floatColumn('price', 2615.54).at(ts, 'us');
 *   await sender.flush();
 *   sender.lastCommitToken; // 'trades=42@1' (txn 42, epoch 1) — pass to ReadRouter.query for read-your-writes
 *
 * Unlike the official client, a batch leaves the sender only when a server answered 204. A flush
 * seals the open rows into a batch with the next seq of this writer, then sends every held batch,
 * oldest first, each with its own identity (`X-Walship-Batch: <writerId>:<seq>`) and its exact
 * bytes; after a failed flush (FlushGaveUpError, IlpRequestError) the batches stay held and the
 * next flush sends them again — rows added meanwhile go into a new batch — or `reset()` drops
 * them. With `sf_dir` every batch is a file before it is sent, and a restarted sender sends what
 * it finds there (held-batches.ts, sf-dir.ts). Failover follows QuestDB's Java client (see
 * batch-poster.ts). Flushes run one at a time, in call order.
 */
export class Sender {
  readonly #config: SenderConfig;
  readonly #clock: ClientClock;
  readonly #random: ClientRandom;
  readonly #agent: Agent;
  readonly #poster: BatchPoster;
  readonly #encoder: IlpRowEncoder;
  /** The open rows, not yet sealed into a batch. */
  readonly #buffer: RowBuffer;
  /** Sealed batches waiting for their 204, oldest first. */
  readonly #held: HeldBatches;
  readonly #token = new Map<string, CommitTokenEntry>();
  readonly #stats: BatchStats = { committed: 0, replayed: 0, ignored: 0, corrupt: 0 };
  /** When the oldest open row was added (for auto_flush_interval); undefined when empty. */
  #oldestRowMs: number | undefined;
  /** Bumped by reset(): a seal under way then must not drop rows from the new buffer content. */
  #generation = 0;
  #flushQueue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(config: SenderConfig, deps: SenderDeps = {}) {
    this.#config = config;
    this.#clock = deps.clock ?? systemClientClock;
    this.#random = deps.random ?? systemClientRandom;
    const ca = config.tlsCaPath === undefined ? undefined : readCa(config.tlsCaPath);
    // Before the agent: it may refuse (SF_DIR_LOCKED, …), and nothing after it throws.
    this.#held = openHeldBatches(config, deps, () => this.#stats.corrupt++);
    this.#agent = createAgent({
      tlsVerify: config.tlsVerify,
      ca,
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
      random: this.#random,
      spread: config.spread,
    });
    this.#encoder = new IlpRowEncoder(config.maxNameLenBytes);
    this.#buffer = new RowBuffer(config.initBufSizeBytes, config.maxBufSizeBytes);
  }

  /**
   * A sender for a config string (config-string.ts); throws INVALID_CONFIG, and with sf_dir
   * SF_DIR_LOCKED or SF_DIR_IO (the directory is opened here, blocking, once).
   */
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

  /** Rows not yet committed: the open rows and those of held batches. */
  get bufferedRows(): number {
    return this.#buffer.rows + this.#held.rows;
  }

  /** Bytes not yet committed: the open rows and the payloads of held batches. */
  get bufferedBytes(): number {
    return this.#buffer.lengthBytes + this.#held.payloadBytes;
  }

  /** Sealed batches waiting for their 204 (with sf_dir: their files, including those of a previous run). */
  get heldBatches(): number {
    return this.#held.count;
  }

  /** Payload bytes of the held batches. */
  get heldBytes(): number {
    return this.#held.payloadBytes;
  }

  /** The writer id its batches are sent under, or undefined with batch_ids=off. */
  get writerId(): string | undefined {
    return this.#config.batchIds ? this.#held.writerId : undefined;
  }

  /** The seq of the newest sealed batch of this writer (with sf_dir: across runs); 0n before any. */
  get lastBatchSeq(): bigint {
    return this.#held.lastSeq;
  }

  /** What became of the batches sent so far: committed, replayed, ignored (and corrupt files). */
  get batchStats(): Readonly<BatchStats> {
    return { ...this.#stats };
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
   * Seals the open rows into a batch (one request, one transaction), then sends every held batch
   * in seq order, and resolves once each got its 204; resolves false when there was nothing to
   * send. With nothing open it still sends what is held (e.g. an sf_dir's batches at start).
   * Rejects with IlpRequestError or FlushGaveUpError, keeping the batches held; with SF_FULL when
   * no room for the open rows appeared within sf_append_deadline_millis (they stay open).
   */
  flush(): Promise<boolean> {
    if (this.#closed) return Promise.reject(closedError());
    const flushed = this.#flushQueue.then(() => this.#flushNow());
    this.#flushQueue = flushed.catch(() => {});
    return flushed;
  }

  /**
   * Drops the row being built, the open rows and every held batch (with sf_dir: their files too;
   * their seqs stay used). A flush under way then drops nothing of what comes after.
   */
  reset(): this {
    this.#encoder.discard();
    this.#buffer.clear();
    this.#oldestRowMs = undefined;
    this.#generation++;
    this.#held.clear();
    return this;
  }

  /**
   * Flushes what is open or held when auto_flush is on (as QuestDB's Java client does), then
   * closes the connections (and releases the sf_dir's lock). With auto_flush=off, open rows are
   * dropped: flush first; held batches are dropped too — unless in an sf_dir, where they wait for
   * the next run. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.#config.autoFlush && this.#buffer.rows + this.#held.count > 0) await this.flush();
    } finally {
      this.#closed = true;
      this.#encoder.discard();
      await this.#flushQueue;
      await this.#held.close();
      await this.#agent.close();
    }
  }

  async #endRow(line: string): Promise<void> {
    this.#checkOpen();
    this.#buffer.append(line, this.#held.memoryBytes);
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
    await this.#sealOpenRows();
    let sent = false;
    // Each turn sends the front batch or finds it dropped (reset(), a corrupt file): it ends.
    for (let batch = this.#held.front(); batch !== undefined; batch = this.#held.front()) {
      await this.#send(batch);
      sent = true;
    }
    return sent;
  }

  /**
   * Seals the open rows into a held batch. Without room (max_unacked_batches, sf_max_bytes) it
   * first sends held batches, oldest first — the flush is the drainer — retrying with backoff
   * until sf_append_deadline_millis has passed (a send under way finishes first), then gives up
   * with SF_FULL, the rows still open.
   */
  async #sealOpenRows(): Promise<void> {
    const startedMs = this.#clock.monotonicMs();
    const deadlineMs = this.#config.sfAppendDeadlineMs;
    const backoff = new Backoff(this.#random);
    while (this.#buffer.rows > 0 && !this.#held.hasRoomFor(this.#buffer.lengthBytes)) {
      if (this.#held.neverFits(this.#buffer.lengthBytes)) throw this.#fullError(0, undefined);
      const front = this.#held.front();
      if (front === undefined) throw new Error('no room to seal a batch, yet no batch is held');
      const failure = await this.#sendForRoom(front);
      if (failure === undefined) continue;
      const waitedMs = this.#clock.monotonicMs() - startedMs;
      if (waitedMs >= deadlineMs) throw this.#fullError(waitedMs, failure);
      await this.#clock.sleep(Math.min(backoff.nextMs(), deadlineMs - waitedMs));
    }
    if (this.#buffer.rows === 0) return;
    const snapshot = this.#buffer.snapshot();
    const generation = this.#generation;
    await this.#held.seal(snapshot.bytes, snapshot.rows);
    // Sealed: only now do the rows leave the open buffer (unless reset() dropped them meanwhile).
    if (generation === this.#generation) {
      this.#buffer.dropFront(snapshot.bytes.length, snapshot.rows);
      this.#oldestRowMs = this.#buffer.rows === 0 ? undefined : this.#clock.monotonicMs();
    }
  }

  /** Sends `batch` to make room; a give-up is returned (the wait goes on), any other error thrown. */
  async #sendForRoom(batch: HeldBatch): Promise<FlushGaveUpError | undefined> {
    try {
      await this.#send(batch);
      return undefined;
    } catch (error) {
      // An IlpRequestError (the batch refused) or a broken sf_dir: waiting cannot help.
      if (error instanceof FlushGaveUpError) return error;
      throw error;
    }
  }

  /** Sends one held batch under its identity; it leaves on the 204. */
  async #send(batch: HeldBatch): Promise<void> {
    const bytes = await this.#held.read(batch);
    if (bytes === undefined) return; // dropped meanwhile: reset(), or a corrupt file (reported)
    const batchId = this.#config.batchIds ? formatBatchId(this.#held.writerId, batch.seq) : undefined;
    const result = await this.#poster.post(bytes, batchId);
    this.#stats[result.answer]++;
    // A replayed answer carries the original commit's token: merging it again changes nothing.
    const token = result.commitToken === undefined ? undefined : parseCommitToken(result.commitToken);
    if (token !== undefined) mergeCommitToken(this.#token, token);
    await this.#held.release(batch);
  }

  #fullError(waitedMs: number, lastFailure: FlushGaveUpError | undefined): WalshipClientError {
    const { sfDir, sfMaxBytes, maxUnackedBatches, sfAppendDeadlineMs } = this.#config;
    const rowsBytes = this.#buffer.lengthBytes;
    const limits =
      sfDir === undefined
        ? `max_unacked_batches=${maxUnackedBatches}`
        : `sf_max_bytes=${sfMaxBytes}, max_unacked_batches=${maxUnackedBatches}`;
    const why = this.#held.neverFits(rowsBytes)
      ? `a batch of ${rowsBytes} bytes can never fit (${limits}); flush smaller batches or raise sf_max_bytes`
      : `${this.#held.count} batches (${this.#held.payloadBytes} bytes) are held, the limits are ${limits}, and ` +
        `no room appeared within sf_append_deadline_millis=${sfAppendDeadlineMs}` +
        (lastFailure === undefined ? '' : ` (sending the oldest: ${lastFailure.message})`);
    return new WalshipClientError(
      'SF_FULL',
      'unavailable',
      `no room to seal the open rows: ${why}; the rows stay open — flush again later, or reset()`,
      {
        details: { heldBatches: this.#held.count, heldBytes: this.#held.payloadBytes, rowsBytes, waitedMs },
        cause: lastFailure,
      },
    );
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError();
  }
}

/** The held-batch queue the config asks for: an sf_dir, or memory under a fresh writer id. */
function openHeldBatches(config: SenderConfig, deps: SenderDeps, countCorrupt: () => void): HeldBatches {
  const randomBytes = deps.randomBytes ?? systemClientRandomBytes;
  if (config.sfDir === undefined) {
    return new MemoryHeldBatches({
      writerId: config.writerId ?? generateWriterId(randomBytes),
      maxBatches: config.maxUnackedBatches,
    });
  }
  return SfDir.open({
    dir: config.sfDir,
    writerId: config.writerId,
    maxBytes: config.sfMaxBytes,
    maxBatches: config.maxUnackedBatches,
    durability: config.sfDurability,
    randomBytes,
    onCorruptBatch: (report) => {
      countCorrupt();
      deps.onCorruptBatch?.(report);
    },
  });
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
