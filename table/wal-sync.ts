import { closeSync, fsync, open } from 'node:fs';
import { promisify } from 'node:util';

const openFile = promisify(open);
const fsyncFile = promisify(fsync);

/**
 * fsyncs a SQLite WAL file from libuv's thread pool, so a commit made with SQLite's own sync off
 * (`synchronous=NORMAL`) becomes durable without the event loop waiting on the disk (issue 16).
 *
 * Group commit: a round is one fsync. A caller joins the round that starts next (never one already
 * in flight, which may have begun before the caller's commit was written), so every commit waiting
 * when a round starts is made durable by that one fsync. fsync is per file, not per descriptor:
 * this descriptor's fsync flushes the frames SQLite's own descriptor wrote.
 */
export class WalSync {
  readonly #path: string;
  #fd: number | null = null;
  #inFlight: Promise<void> | null = null;
  #next: Promise<void> | null = null;
  #rounds = 0;
  #closing = false;

  constructor(walPath: string) {
    this.#path = walPath;
  }

  /** fsyncs run so far (a round serves every commit that waited for it). */
  get rounds(): number {
    return this.#rounds;
  }

  /** Resolves once everything written to the WAL before this call is on disk; rejects with the fsync's error. */
  sync(): Promise<void> {
    if (this.#inFlight === null) return this.#begin();
    this.#next ??= this.#inFlight.then(
      () => this.#startNext(),
      () => this.#startNext(),
    );
    return this.#next;
  }

  /**
   * Closes the descriptor once no round is left: rounds already asked for still run (a commit
   * waiting for one is answered), so a store may close while its last commits are being synced.
   */
  close(): void {
    this.#closing = true;
    if (this.#inFlight === null) this.#closeFd();
  }

  #startNext(): Promise<void> {
    this.#next = null;
    return this.#begin();
  }

  #begin(): Promise<void> {
    const round = this.#fsyncOnce().finally(() => {
      if (this.#inFlight !== round) return;
      this.#inFlight = null;
      if (this.#closing && this.#next === null) this.#closeFd();
    });
    this.#inFlight = round;
    return round;
  }

  async #fsyncOnce(): Promise<void> {
    this.#rounds++;
    if (this.#fd === null) {
      try {
        this.#fd = await openFile(this.#path, 'r');
      } catch (error) {
        // No WAL file: SQLite checkpointed it into the database (with a sync) and deleted it on close.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
    }
    await fsyncFile(this.#fd);
  }

  #closeFd(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }
}
