import { WalshipError } from '../core/index.js';

/** The gate's word: writes may commit. */
const OPEN = 0;
/** A commit is under way in the write worker: closing waits for it. */
const COMMITTING = 1;
/** No commit may start. */
const CLOSED = 2;

/** How long closing the gate waits for one COMMIT under way before it gives up on it, in ms. */
const CLOSE_WAIT_MS = 30_000;

/**
 * Whether the primary takes writes, as one word shared with the write worker (RFC-0009 §4), so
 * that closing it is strict across threads: after `accepting = false` returns, no commit starts,
 * and a COMMIT that had started has ended. The worker moves the word from open to committing right
 * before its COMMIT (`enterCommit`) and back after it; closing moves it from open to closed, and
 * while a COMMIT is under way it waits for that COMMIT (Atomics.wait, bounded by one COMMIT).
 * A demotion or fence relies on this: nothing commits after it that the uploader was not told of.
 */
export class WriteGate {
  readonly #word: Int32Array;
  /** Who replaced this node, once it was fenced. */
  fencedBy: string | null = null;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.#word = new Int32Array(buffer);
  }

  /** The shared word, for the write worker (`WorkerGate`). */
  get buffer(): SharedArrayBuffer {
    return this.#word.buffer as SharedArrayBuffer;
  }

  get accepting(): boolean {
    return Atomics.load(this.#word, 0) !== CLOSED;
  }

  /** Opens the gate, or closes it and waits for a COMMIT under way in the worker to end. */
  set accepting(accepting: boolean) {
    if (accepting) {
      Atomics.store(this.#word, 0, OPEN);
      return;
    }
    for (;;) {
      const was = Atomics.compareExchange(this.#word, 0, OPEN, CLOSED);
      if (was !== COMMITTING) return;
      // Blocks this thread for one COMMIT at most: the worker notifies when it leaves.
      if (Atomics.wait(this.#word, 0, COMMITTING, CLOSE_WAIT_MS) === 'timed-out') {
        Atomics.store(this.#word, 0, CLOSED);
        return;
      }
    }
  }
}

/** The write worker's side of a WriteGate's word. */
export class WorkerGate {
  readonly #word: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#word = new Int32Array(buffer);
  }

  /**
   * Runs `commit` (a synchronous COMMIT) with the gate marked committing, so a close waits for it;
   * throws NOT_ACCEPTING_WRITES without running it when the gate is closed.
   */
  commitThrough<T>(commit: () => T): T {
    if (Atomics.compareExchange(this.#word, 0, OPEN, COMMITTING) !== OPEN) {
      throw new WalshipError(
        'NOT_ACCEPTING_WRITES',
        'fenced',
        'this node is not accepting writes (not the primary)',
      );
    }
    try {
      return commit();
    } finally {
      Atomics.compareExchange(this.#word, 0, COMMITTING, OPEN);
      Atomics.notify(this.#word, 0);
    }
  }
}
