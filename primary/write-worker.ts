import { Worker } from 'node:worker_threads';
import { deserializeWalshipError, WalshipError } from '../core/index.js';
import type { TableSchema, TableStore } from '../table/index.js';
import type { WriteGate } from './write-gate.js';
import { ownBuffer, type WriteJob, type WriteReply, type WriteWorkerData } from './write-worker-protocol.js';

/** A txn handed to the worker: its table, encoded record, txn and the table's schema after it. */
export interface WorkerTxn {
  table: string;
  txn: bigint;
  bytes: Uint8Array;
  schemaAfter: TableSchema;
  /** The txn changed the table's settings (upsert keys, TTL) or dropped it: the cache reads it again. */
  reload?: boolean;
}

/** Distributes a job without its `id` over the union's members. */
type JobBody = WriteJob extends infer J ? (J extends WriteJob ? Omit<J, 'id'> : never) : never;

/**
 * The main thread's handle on the primary's write worker (RFC-0009 §4, write-worker-thread.ts),
 * which owns every write to the table store while the node is primary: the committer's requests
 * and the uploader's watermarks. The SQLite work of a request (inserts, the pending queue, COMMIT)
 * runs there, so the event loop that answers HTTP and renews the lease never waits for it; the main
 * thread keeps its own connection for reads, whose cache follows the worker's commits as their
 * answers arrive (TableStore.noteCommitted). Jobs run in the order they were sent.
 *
 * If the worker dies, every job waiting and every later one fails with STORAGE_FAILED: the node
 * then takes no more writes until it is restarted (its database is intact: a COMMIT under way
 * when the thread died did not happen).
 */
export class WriteWorker {
  readonly #worker: Worker;
  readonly #tables: TableStore;
  readonly #waiting = new Map<
    number,
    { resolve: (reply: WriteReply) => void; reject: (error: Error) => void }
  >();
  #nextId = 1;
  #dead: string | undefined;
  #closing: Promise<void> | undefined;

  private constructor(worker: Worker, tables: TableStore) {
    this.#worker = worker;
    this.#tables = tables;
    worker.on('message', (reply: WriteReply) => this.#settle(reply));
    worker.on('error', (error) => this.#die(`the write worker failed: ${error.message}`));
    worker.on('exit', (code) => this.#die(`the write worker exited (code ${code})`));
  }

  /**
   * Starts the worker on the store `tables` was opened on, with the node's write gate; resolves once
   * its connection is open. Rejects with STORAGE_FAILED when it cannot open the store.
   */
  static async start(tables: TableStore, gate: WriteGate): Promise<WriteWorker> {
    const { entry, workerData } = workerEntry({
      file: tables.file,
      synchronous: tables.synchronous,
      gate: gate.buffer,
    });
    const worker = new Worker(entry, { workerData });
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error) => {
        worker.off('message', ready);
        reject(
          new WalshipError(
            'STORAGE_FAILED',
            'unavailable',
            `the write worker did not start: ${error.message}`,
          ),
        );
      };
      const ready = () => {
        worker.off('error', failed);
        resolve();
      };
      worker.once('message', ready);
      worker.once('error', failed);
    });
    return new WriteWorker(worker, tables);
  }

  /**
   * Commits one request's txns in one SQLite transaction, through the write gate, and resolves once
   * committed (its fsync is the caller's: TableStore.syncWal) and the main thread's cache knows it.
   * The records' buffers are handed over: they are unusable here afterwards.
   */
  async commit(txns: readonly WorkerTxn[]): Promise<void> {
    const transfer: ArrayBuffer[] = [];
    const sent = txns.map(({ table, bytes }) => {
      const owned = ownBuffer(bytes);
      transfer.push(owned.buffer as ArrayBuffer);
      return { table, bytes: owned };
    });
    await this.#send({ type: 'commit', txns: sent }, transfer);
    this.#tables.noteCommitted(
      txns.map(({ table, txn, schemaAfter, reload }) => ({
        table,
        lastTxn: txn,
        schema: schemaAfter,
        reload,
      })),
    );
  }

  /** In one transaction: the uploaded watermark of `table` := `txn`, and its pending records through it dropped. */
  async markUploaded(table: string, txn: bigint): Promise<void> {
    await this.#send({ type: 'uploaded', table, txn });
    this.#tables.noteCommitted([{ table, uploadedTxn: txn }]);
  }

  /**
   * The pending records of `table` (TableStore.pending), read on the
   * worker's connection: a large record is read off the event loop. Answered before the writes
   * queued when it arrives, after the job under way.
   */
  async pending(
    table: string,
    options: { limitBytes: number; afterTxn?: bigint },
  ): Promise<{ txn: bigint; bytes: Uint8Array }[]> {
    return (await this.#send({ type: 'pending', table, ...options })).records ?? [];
  }

  /** Commits are taken again after a failed one (the caller has renumbered what it builds next). */
  async resume(): Promise<void> {
    await this.#send({ type: 'resume' });
  }

  /** Resolves once every job sent so far has been answered. */
  async idle(): Promise<void> {
    if (this.#waiting.size === 0 || this.#dead !== undefined) return;
    // Jobs run in order: the answer to a no-op comes after every earlier one's.
    await this.#send({ type: 'flush' }).catch(() => {});
  }

  /** Waits for the jobs sent, closes the worker's connection and ends the thread. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#dead === undefined) await this.#send({ type: 'close' }).catch(() => {});
      await this.#worker.terminate();
    })();
    return this.#closing;
  }

  #send(job: JobBody, transfer: ArrayBuffer[] = []): Promise<WriteReply> {
    if (this.#dead !== undefined) return Promise.reject(this.#deadError());
    const id = this.#nextId++;
    return new Promise<WriteReply>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...job, id }, transfer);
    });
  }

  #settle(reply: WriteReply): void {
    const waiting = this.#waiting.get(reply.id);
    if (waiting === undefined) return;
    this.#waiting.delete(reply.id);
    if (reply.error === undefined) waiting.resolve(reply);
    else waiting.reject(deserializeWalshipError(reply.error));
  }

  #die(why: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = this.#closing === undefined ? why : 'the write worker was closed';
    const error = this.#deadError();
    for (const { reject } of this.#waiting.values()) reject(error);
    this.#waiting.clear();
  }

  #deadError(): WalshipError {
    return new WalshipError(
      'STORAGE_FAILED',
      this.#closing === undefined ? 'unavailable' : 'closed',
      `${this.#dead ?? 'the write worker stopped'}: this node takes no more writes until it is restarted`,
    );
  }
}

/**
 * What to start. Compiled (dist/primary/write-worker.js): write-worker-thread.js beside it. From
 * TypeScript source (vitest): write-worker-ts-entry.mjs, which registers the TypeScript module
 * hooks the query hosts use (table/query-host-ts-hooks.mjs) and imports write-worker-thread.ts.
 */
function workerEntry(data: WriteWorkerData): { entry: URL; workerData: unknown } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    return {
      entry: new URL('./write-worker-ts-entry.mjs', here),
      workerData: {
        ...data,
        hooks: new URL('../table/query-host-ts-hooks.mjs', here).href,
        thread: new URL('./write-worker-thread.ts', here).href,
      },
    };
  }
  return { entry: new URL('./write-worker-thread.js', here), workerData: data };
}
