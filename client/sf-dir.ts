import { mkdirSync, readdirSync, renameSync, rmSync, truncateSync } from 'node:fs';
import { readFile, rename, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { decodeBatchFrame, encodeBatchFrame, FRAME_PAYLOAD_MAX_BYTES, frameBytesFor } from './batch-frame.js';
import { SEQ_MAX } from './batch-identity.js';
import type { ClientRandomBytes } from './clock.js';
import { fsyncDirectory, fsyncDirectorySync, TEMP_SUFFIX, writeFileAtomic } from './durable-file.js';
import { isClientError } from './errors.js';
import type { HeldBatch, HeldBatches } from './held-batches.js';
import {
  batchName,
  type CorruptBatchReport,
  type Held,
  markName,
  openWriterId,
  quarantine,
  type Scan,
  scanBatches,
  sfDirIoError,
} from './sf-dir-files.js';
import { SfDirLock } from './sf-dir-lock.js';

export type { CorruptBatchReport } from './sf-dir-files.js';

/**
 * The store-and-forward directory (`sf_dir`): held batches as files, so a batch sealed before a
 * crash is sent after the restart, under its original identity (issue 18). Layout:
 *
 *   lock                  one Sender per directory (sf-dir-lock.ts)
 *   writer.json           {"writerId": …}: created once, reused by every run
 *   <seq:20>.batch        a sealed batch not yet acknowledged (batch-frame.ts)
 *   <seq:20>.acked        empty: the seq mark, the newest batch that left (204 or reset())
 *   corrupt/<seq>.batch   files that failed their check (at open, or when read); never sent
 *
 * Invariants, kept by every step below at every crash point:
 * - batches leave in seq order (release: the front one) or all at once (clear), and the one that
 *   leaves last becomes the mark by a rename — so every seq at or below the mark has left, and
 *   every held batch is above it. A `.batch` file at or below the mark can only be one that
 *   clear() had not removed yet when the process died: open removes it, never sends it;
 * - the newest seq ever sealed is max(mark, held files, corrupt/ names), so a restart never
 *   reuses one, even when every batch was acknowledged. Seqs are given out one by one; only a seal
 *   whose file never reached its name gives its seq back, as no request can have carried it.
 *
 * Crash points: killed while a `.tmp` is written → the batch was never sent; the `.tmp` is removed
 * at open and the rows are lost with the process, as unsealed rows are. After the rename, before
 * or during the request, or after the 204 but before the rename to `.acked` → sent again at the
 * next start under the same identity: the server commits it, or answers `replayed`.
 *
 * With sf_durability=none the same steps run without fsync: a process crash is survived (the
 * kernel keeps the files), a power loss may lose batches or the mark.
 */

export interface SfDirOptions {
  dir: string;
  /** writer_id from the config: must match writer.json when that exists. */
  writerId: string | undefined;
  /** sf_max_bytes: bytes of `.batch` files (frames included) held at most. */
  maxBytes: number;
  /** max_unacked_batches. */
  maxBatches: number;
  /** sf_durability: fsync every batch file and directory change, or not. */
  durability: 'fsync' | 'none';
  randomBytes: ClientRandomBytes;
  /** Called once per corrupt batch file found (at open or when read); the file is moved to corrupt/. */
  onCorruptBatch?: ((report: CorruptBatchReport) => void) | undefined;
}

export class SfDir implements HeldBatches {
  readonly writerId: string;
  readonly #dir: string;
  readonly #options: SfDirOptions;
  readonly #lock: SfDirLock;
  readonly #held: Held[];
  #lastSeq: bigint;
  #markSeq: bigint;
  #fileBytes = 0;
  #rows = 0;
  #payloadBytes = 0;
  /** Bumped by clear(): a seal or read under way then must not touch the queue. */
  #epoch = 0;
  #corrupt = 0;
  #closed = false;

  private constructor(fields: { options: SfDirOptions; lock: SfDirLock; writerId: string; scan: Scan }) {
    this.#options = fields.options;
    this.#dir = fields.options.dir;
    this.#lock = fields.lock;
    this.writerId = fields.writerId;
    this.#held = fields.scan.held;
    this.#lastSeq = fields.scan.lastSeq;
    this.#markSeq = fields.scan.markSeq;
    this.#corrupt = fields.scan.corrupt;
    for (const { batch, fileBytes } of this.#held) this.#count(batch, fileBytes, +1);
  }

  /**
   * Opens (creating it if needed) the directory: takes the lock, reads or creates writer.json,
   * removes leftovers, checks every batch file and holds the good ones. Blocking: it runs once,
   * when the Sender is created. Throws SF_DIR_LOCKED, INVALID_CONFIG (writer_id differs from
   * writer.json) or SF_DIR_IO.
   */
  static open(options: SfDirOptions): SfDir {
    const { dir } = options;
    try {
      mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw sfDirIoError(`cannot create the sf_dir ${dir}`, error);
    }
    let lock: SfDirLock;
    try {
      lock = SfDirLock.acquire(dir, options.randomBytes);
    } catch (error) {
      throw isClientError(error) ? error : sfDirIoError(`cannot lock the sf_dir ${dir}`, error);
    }
    try {
      const names = readdirSync(dir);
      const writerId = openWriterId(dir, names, options);
      const scan = scanBatches(dir, names, options.onCorruptBatch);
      return new SfDir({ options, lock, writerId, scan });
    } catch (error) {
      lock.release();
      throw isClientError(error) ? error : sfDirIoError(`cannot open the sf_dir ${dir}`, error);
    }
  }

  list(): HeldBatch[] {
    return this.#held.map((held) => held.batch);
  }

  front(): HeldBatch | undefined {
    return this.#held[0]?.batch;
  }

  get count(): number {
    return this.#held.length;
  }

  get rows(): number {
    return this.#rows;
  }

  get payloadBytes(): number {
    return this.#payloadBytes;
  }

  get memoryBytes(): number {
    return 0;
  }

  /** Bytes of the held `.batch` files (what sf_max_bytes bounds). */
  get fileBytes(): number {
    return this.#fileBytes;
  }

  get lastSeq(): bigint {
    return this.#lastSeq;
  }

  /** Corrupt batch files moved to corrupt/ since open (at open included). */
  get corruptBatches(): number {
    return this.#corrupt;
  }

  hasRoomFor(lengthBytes: number): boolean {
    return (
      this.#held.length < this.#options.maxBatches &&
      this.#fileBytes + frameBytesFor(lengthBytes) <= this.#options.maxBytes
    );
  }

  neverFits(lengthBytes: number): boolean {
    return lengthBytes > FRAME_PAYLOAD_MAX_BYTES || frameBytesFor(lengthBytes) > this.#options.maxBytes;
  }

  async seal(bytes: Uint8Array, rows: number): Promise<HeldBatch | undefined> {
    this.#checkOpen();
    if (!this.hasRoomFor(bytes.length)) throw new Error('SfDir.seal without room');
    if (this.#lastSeq === SEQ_MAX) throw new Error('batch seq space exhausted');
    const seq = this.#lastSeq + 1n;
    this.#lastSeq = seq;
    const epoch = this.#epoch;
    const frame = encodeBatchFrame(seq, bytes);
    try {
      await writeFileAtomic(this.#batchFile(seq), frame, { fsync: this.#fsync });
    } catch (error) {
      await rm(this.#batchFile(seq), { force: true }).catch(() => {});
      await rm(`${this.#batchFile(seq)}${TEMP_SUFFIX}`, { force: true }).catch(() => {});
      // No request carried this seq (a batch is sent only after its file is in place).
      if (this.#lastSeq === seq) this.#lastSeq = seq - 1n;
      throw sfDirIoError(
        `cannot write batch ${seq} to the sf_dir ${this.#dir}; its rows stay in the buffer`,
        error,
      );
    }
    const batch: HeldBatch = { seq, lengthBytes: bytes.length, rows };
    if (epoch !== this.#epoch) {
      // reset() ran while the file was written: the batch is dropped, its seq stays used.
      await this.#retire(seq).catch((error: unknown) => {
        throw sfDirIoError(`cannot drop batch ${seq} (reset() ran while it was written)`, error);
      });
      return undefined;
    }
    this.#held.push({ batch, fileBytes: frame.length });
    this.#count(batch, frame.length, +1);
    return batch;
  }

  async read(batch: HeldBatch): Promise<Uint8Array | undefined> {
    if (!this.#holds(batch)) return undefined;
    const file = this.#batchFile(batch.seq);
    let frame: Buffer;
    try {
      frame = await readFile(file);
    } catch (error) {
      if (!this.#holds(batch)) return undefined;
      throw sfDirIoError(`cannot read batch ${batch.seq} from the sf_dir ${this.#dir}`, error);
    }
    if (!this.#holds(batch)) return undefined;
    const decoded = decodeBatchFrame(frame);
    if (decoded.ok && decoded.seq === batch.seq && decoded.payload.length === batch.lengthBytes) {
      return decoded.payload;
    }
    const reason = !decoded.ok
      ? decoded.reason
      : decoded.seq !== batch.seq
        ? `its header says seq ${decoded.seq}`
        : `it changed since it was sealed (${decoded.payload.length} bytes, not ${batch.lengthBytes})`;
    this.#drop(batch);
    this.#corrupt++;
    try {
      quarantine(this.#dir, batch.seq, reason, this.#options.onCorruptBatch);
    } catch (error) {
      throw sfDirIoError(`cannot move the corrupt batch ${batch.seq} to corrupt/ (${reason})`, error);
    }
    return undefined;
  }

  async release(batch: HeldBatch): Promise<void> {
    if (this.#held[0]?.batch !== batch) {
      if (this.#holds(batch)) throw new Error('SfDir.release out of seq order');
      return;
    }
    this.#drop(batch);
    try {
      await this.#retire(batch.seq);
    } catch (error) {
      throw sfDirIoError(
        `batch ${batch.seq} was acknowledged, but its file could not be retired; after a restart it is ` +
          'sent again and the server answers "replayed"',
        error,
      );
    }
  }

  clear(): void {
    const dropped = this.#forgetAll();
    const newest = dropped.at(-1);
    if (newest === undefined) return;
    try {
      // The newest becomes the mark first: a crash after it leaves only files below the mark,
      // which the next open removes.
      renameSync(this.#batchFile(newest.batch.seq), this.#markFile(newest.batch.seq));
      if (this.#fsync) fsyncDirectorySync(this.#dir);
      truncateSync(this.#markFile(newest.batch.seq), 0);
      this.#advanceMarkSync(newest.batch.seq);
      for (const { batch } of dropped.slice(0, -1)) rmSync(this.#batchFile(batch.seq), { force: true });
    } catch (error) {
      throw sfDirIoError(`cannot remove the dropped batches from the sf_dir ${this.#dir}`, error);
    }
  }

  /** Releases the lock; the files stay for the next run, and this object forgets them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Forgotten, so that nothing (a late clear()) touches a directory another process may own now.
    this.#forgetAll();
    this.#lock.release();
  }

  /** Empties the queue in memory (a seal or read under way then sees the epoch changed). */
  #forgetAll(): Held[] {
    this.#epoch++;
    const dropped = this.#held.splice(0);
    this.#fileBytes = 0;
    this.#rows = 0;
    this.#payloadBytes = 0;
    return dropped;
  }

  get #fsync(): boolean {
    return this.#options.durability === 'fsync';
  }

  #batchFile(seq: bigint): string {
    return path.join(this.#dir, batchName(seq));
  }

  #markFile(seq: bigint): string {
    return path.join(this.#dir, markName(seq));
  }

  #holds(batch: HeldBatch): boolean {
    return this.#held.some((held) => held.batch === batch);
  }

  #drop(batch: HeldBatch): void {
    const index = this.#held.findIndex((held) => held.batch === batch);
    if (index < 0) return;
    const [held] = this.#held.splice(index, 1);
    this.#count(batch, held!.fileBytes, -1);
  }

  #count(batch: HeldBatch, fileBytes: number, sign: 1 | -1): void {
    this.#fileBytes += sign * fileBytes;
    this.#rows += sign * batch.rows;
    this.#payloadBytes += sign * batch.lengthBytes;
  }

  /** The file of batch `seq`, which left, becomes the seq mark (its bytes are no longer needed). */
  async #retire(seq: bigint): Promise<void> {
    await rename(this.#batchFile(seq), this.#markFile(seq));
    if (this.#fsync) await fsyncDirectory(this.#dir);
    await truncate(this.#markFile(seq), 0);
    this.#advanceMarkSync(seq);
  }

  /** Records `seq` as the mark and removes the older mark file (a newer one may exist: keep it). */
  #advanceMarkSync(seq: bigint): void {
    const previous = this.#markSeq;
    if (seq <= previous) return;
    this.#markSeq = seq;
    if (previous > 0n) rmSync(this.#markFile(previous), { force: true });
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error('SfDir used after close()');
  }
}
