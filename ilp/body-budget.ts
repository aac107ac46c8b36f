import { type Clock, systemClock } from '../core/index.js';

/**
 * The bytes of ILP request bodies a node holds at once (`line.http.max.inflight.size`). A request
 * reserves its body's size before the body is read and gives it back once answered, so a request
 * costs a bounded multiple of its body (its columns and its encoded records come after it, while
 * it is held) and the node's ILP memory is bounded however many clients send at once. A request
 * that does not fit waits, unread (TCP pushes back on its sender), in arrival order: a large
 * request is not passed over forever by small ones. Past its wait it is refused, and the client
 * retries (docs/write-path.md, "Memory").
 */
export class BodyBudget {
  readonly #maxBytes: number;
  readonly #clock: Clock;
  #heldBytes = 0;
  readonly #waiting: Waiter[] = [];

  constructor(maxBytes: number, clock: Clock = systemClock) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new RangeError(`a body budget must be a positive integer of bytes, got ${maxBytes}`);
    this.#maxBytes = maxBytes;
    this.#clock = clock;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  /** Bytes reserved by requests now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Requests waiting for room. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Reserves `bytes` (at most maxBytes) once every earlier waiter got its room and this fits:
   * resolves with the reservation, or with null after `waitMs` without room, or as soon
   * as `signal` aborts. A reservation of 0 bytes is given at once.
   */
  reserve(bytes: number, waitMs: number, signal?: AbortSignal): Promise<Reservation | null> {
    const now = this.tryReserve(bytes);
    if (now !== null) return Promise.resolve(now);
    if (signal?.aborted === true) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        bytes,
        grant: () => {
          timer.cancel();
          signal?.removeEventListener('abort', giveUp);
          resolve(this.#take(bytes));
        },
      };
      const giveUp = () => {
        timer.cancel();
        signal?.removeEventListener('abort', giveUp);
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        // The head may have been what held the others back.
        if (at === 0) this.#grantWaiting();
        resolve(null);
      };
      const timer = this.#clock.setTimer(waitMs, giveUp);
      signal?.addEventListener('abort', giveUp, { once: true });
      this.#waiting.push(waiter);
    });
  }

  /**
   * `reserve` without waiting: the reservation if nobody waits and `bytes` fits now, else null.
   * Synchronous, so a caller can start reading a body in the same turn it was offered.
   */
  tryReserve(bytes: number): Reservation | null {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > this.#maxBytes)
      throw new RangeError(`cannot reserve ${bytes} bytes of a budget of ${this.#maxBytes}`);
    if (this.#waiting.length === 0 && this.#heldBytes + bytes <= this.#maxBytes) return this.#take(bytes);
    return null;
  }

  #take(bytes: number): Reservation {
    this.#heldBytes += bytes;
    let held = bytes;
    return {
      shrinkTo: (fewer) => {
        if (fewer >= held) return;
        this.#heldBytes -= held - Math.max(0, fewer);
        held = Math.max(0, fewer);
        this.#grantWaiting();
      },
      release: () => {
        this.#heldBytes -= held;
        held = 0;
        this.#grantWaiting();
      },
    };
  }

  /** Lets waiters in, in order, while the first of them fits. */
  #grantWaiting(): void {
    for (;;) {
      const head = this.#waiting[0];
      if (head === undefined || this.#heldBytes + head.bytes > this.#maxBytes) return;
      this.#waiting.shift();
      head.grant();
    }
  }
}

/** Room taken from a BodyBudget. */
export interface Reservation {
  /** Gives back all but `bytes` (a body read whole turned out smaller than reserved). */
  shrinkTo(bytes: number): void;
  /** Gives everything back; later calls do nothing. */
  release(): void;
}

interface Waiter {
  bytes: number;
  grant: () => void;
}
