import { SEQ_MAX } from './batch-identity.js';
import type { HeldBatch, HeldBatches } from './held-batches.js';

/**
 * Held batches in memory (no sf_dir): they live as long as the Sender, under a writer id of its
 * own, so seqs start at 1. Their bytes count against max_buf_size with the open buffer.
 */
export class MemoryHeldBatches implements HeldBatches {
  readonly writerId: string;
  readonly #maxBatches: number;
  readonly #batches: { batch: HeldBatch; bytes: Uint8Array }[] = [];
  #lastSeq = 0n;
  #rows = 0;
  #payloadBytes = 0;

  constructor(options: { writerId: string; maxBatches: number }) {
    this.writerId = options.writerId;
    this.#maxBatches = options.maxBatches;
  }

  list(): HeldBatch[] {
    return this.#batches.map((held) => held.batch);
  }

  front(): HeldBatch | undefined {
    return this.#batches[0]?.batch;
  }

  get count(): number {
    return this.#batches.length;
  }

  get rows(): number {
    return this.#rows;
  }

  get payloadBytes(): number {
    return this.#payloadBytes;
  }

  get memoryBytes(): number {
    return this.#payloadBytes;
  }

  get lastSeq(): bigint {
    return this.#lastSeq;
  }

  hasRoomFor(_lengthBytes: number): boolean {
    // Bytes are bounded when rows are added (max_buf_size counts held bytes too).
    return this.#batches.length < this.#maxBatches;
  }

  neverFits(_lengthBytes: number): boolean {
    return false;
  }

  async seal(bytes: Uint8Array, rows: number): Promise<HeldBatch> {
    if (!this.hasRoomFor(bytes.length)) throw new Error('MemoryHeldBatches.seal without room');
    if (this.#lastSeq === SEQ_MAX) throw new Error('batch seq space exhausted');
    this.#lastSeq++;
    const batch: HeldBatch = { seq: this.#lastSeq, lengthBytes: bytes.length, rows };
    this.#batches.push({ batch, bytes });
    this.#rows += rows;
    this.#payloadBytes += bytes.length;
    return batch;
  }

  async read(batch: HeldBatch): Promise<Uint8Array | undefined> {
    return this.#batches.find((held) => held.batch === batch)?.bytes;
  }

  async release(batch: HeldBatch): Promise<void> {
    const front = this.#batches[0];
    if (front?.batch !== batch) {
      if (this.#batches.some((held) => held.batch === batch)) throw new Error('release out of seq order');
      return;
    }
    this.#batches.shift();
    this.#rows -= batch.rows;
    this.#payloadBytes -= batch.lengthBytes;
  }

  clear(): void {
    this.#batches.length = 0;
    this.#rows = 0;
    this.#payloadBytes = 0;
  }

  async close(): Promise<void> {
    this.clear();
  }
}
