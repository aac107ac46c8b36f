/**
 * The Sender's queue of sealed batches, each waiting for its 204 (issue 18). A flush seals the
 * open rows into a batch with the next seq, appends it here, and sends the held batches oldest
 * first, each with its own identity and its exact bytes; a batch leaves only on a 204. Rows added
 * after a failed flush go into a new batch, so a seq is never reused for other bytes.
 *
 * Two implementations: MemoryHeldBatches (the default: gone with the process) and SfDir (the
 * `sf_dir` store-and-forward directory: every batch is a file before it is sent, and a restarted
 * sender sends what it finds there, under its original identity).
 *
 * Only one flush at a time calls seal/read/release (the Sender's flush queue); clear() may be
 * called at any moment, also while one of them is under way.
 */

/** One sealed batch. Its bytes never change once sealed. */
export interface HeldBatch {
  /** Its seq: X-Walship-Batch `<writerId>:<seq>`. */
  readonly seq: bigint;
  /** Bytes of the ILP payload. */
  readonly lengthBytes: number;
  /** Rows (lines) in it. */
  readonly rows: number;
}

export interface HeldBatches {
  /** The writer id every batch of this queue is sent under. */
  readonly writerId: string;

  /** Batches held, oldest (lowest seq) first; a copy. */
  list(): HeldBatch[];

  /** The oldest held batch, or undefined when none is held. */
  front(): HeldBatch | undefined;

  /** Number of batches held. */
  readonly count: number;

  /** Rows in all held batches. */
  readonly rows: number;

  /** Payload bytes of all held batches. */
  readonly payloadBytes: number;

  /**
   * Bytes of held batches kept in memory: they count against max_buf_size together with the open
   * buffer. 0 for SfDir, whose batches live in files (bounded by sf_max_bytes instead).
   */
  readonly memoryBytes: number;

  /** The seq of the newest batch ever sealed under this writer id (0n before the first). */
  readonly lastSeq: bigint;

  /**
   * True when a batch of `lengthBytes` can be sealed now: the queue is under max_unacked_batches
   * and (SfDir) the files stay within sf_max_bytes. The Sender checks this before seal().
   */
  hasRoomFor(lengthBytes: number): boolean;

  /**
   * True when a batch of `lengthBytes` could never be sealed, even with nothing held (SfDir: its
   * frame alone is larger than sf_max_bytes). Waiting for room would be in vain.
   */
  neverFits(lengthBytes: number): boolean;

  /**
   * Seals `bytes` (holding `rows` lines) as the batch `lastSeq + 1` and appends it, once stored
   * (SfDir: the file is written and renamed into place, fsynced per sf_durability). Precondition:
   * hasRoomFor(bytes.length). Resolves undefined when clear() ran meanwhile (the batch is dropped
   * and its seq stays used). Rejects (SF_DIR_IO) when the bytes could not be stored; nothing is
   * appended then and the seq is given to the next batch instead, as no request carried it.
   */
  seal(bytes: Uint8Array, rows: number): Promise<HeldBatch | undefined>;

  /**
   * The exact bytes of a held batch. Resolves undefined when the batch is no longer held (clear()
   * ran) or (SfDir) its file turned out corrupt: it is then moved aside, reported and dropped.
   */
  read(batch: HeldBatch): Promise<Uint8Array | undefined>;

  /**
   * Drops a batch after its 204 (committed, replayed or ignored). It must be the front one; a
   * batch no longer held (clear() ran) is ignored. SfDir removes its file and keeps its seq as
   * the mark a restart continues after.
   */
  release(batch: HeldBatch): Promise<void>;

  /** Drops every held batch at once (the Sender's reset()); seqs stay used. Synchronous. */
  clear(): void;

  /** Releases what the queue holds open (SfDir: the lock); held files stay for the next run. */
  close(): Promise<void>;
}
