import { parentPort, workerData } from 'node:worker_threads';
import { serializeWalshipError, WalshipError } from '../core/index.js';
import { TableStore } from '../table/index.js';
import { decodeTxnRecords } from '../wal/index.js';
import { applyRequest } from './apply-request.js';
import { WorkerGate } from './write-gate.js';
import { ownBuffer, type WriteJob, type WriteReply, type WriteWorkerData } from './write-worker-protocol.js';

/**
 * The primary's write worker (RFC-0009 §4, write-worker.ts): a thread that owns every write to the
 * table store while the node is primary. Jobs run one at a time, each to its end, writes in the
 * order they were sent, so commits happen in that order; a read of pending records goes before the
 * writes waiting. After a failed commit every later commit is refused (WRITE_ABORTED) until the
 * main thread, having seen the failure and renumbered its txns, sends `resume`.
 */
type UploadedJob = Extract<WriteJob, { type: 'uploaded' }>;

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('write-worker-thread must run in a worker thread');
  const data = workerData as WriteWorkerData;
  const tables = TableStore.open(data.file, { synchronous: data.synchronous });
  const gate = new WorkerGate(data.gate);
  const aroundCommit = (commit: () => void) => gate.commitThrough(commit);
  /** Why later commits are refused: a commit failed and the main thread has not resumed. */
  let aborted: string | undefined;

  /**
   * Uploaded watermarks, and the pending records through them dropped, in one transaction: an
   * upload round over a thousand tables marks a thousand, and a transaction (and an fsync) each
   * held the commits queued behind them for most of a second (issue 15). Their commit is not
   * synced: a mark lost to a power cut leaves its records pending, and the uploader then finds
   * its own segment in the store and records it again (uploader.ts, as after a crash between the
   * PUT and this write); the next synced commit makes the marks durable anyway.
   */
  const markUploaded = (marks: readonly { table: string; txn: bigint }[]): void => {
    tables.deferringSync(() =>
      tables.transaction(() => {
        for (const { table, txn } of marks) {
          tables.setUploadedTxn(table, txn);
          tables.dropPendingThrough(table, txn);
        }
      }),
    );
  };

  const run = (job: WriteJob): WriteReply['records'] => {
    switch (job.type) {
      case 'commit': {
        if (aborted !== undefined) {
          throw new WalshipError(
            'WRITE_ABORTED',
            'unavailable',
            `an earlier write of this request stream failed (${aborted}); retry`,
          );
        }
        try {
          const records = decodeTxnRecords(job.txns.map(({ bytes }) => bytes));
          const txns = job.txns.map(({ table, bytes }, i) => ({ table, bytes, record: records[i]! }));
          applyRequest(tables, txns, aroundCommit);
        } catch (error) {
          aborted = error instanceof Error ? error.message : String(error);
          throw error;
        }
        return;
      }
      case 'uploaded':
        markUploaded([job]);
        return;
      case 'pending':
        return tables
          .pending(job.table, {
            limitBytes: job.limitBytes,
            ...(job.afterTxn === undefined ? {} : { afterTxn: job.afterTxn }),
          })
          .map(({ txn, bytes }) => ({ txn, bytes: ownBuffer(bytes) }));
      case 'resume':
        aborted = undefined;
        return;
      case 'flush':
        return;
      case 'close':
        tables.close();
        return;
    }
  };

  // Jobs are taken one per turn of this thread's event loop, so a read that arrived while a
  // commit ran is answered before the writes queued behind it: an upload does not wait for them.
  const queue: WriteJob[] = [];
  let scheduled = false;
  const next = (): void => {
    scheduled = false;
    const read = queue.findIndex((job) => job.type === 'pending');
    const job = read >= 0 ? queue.splice(read, 1)[0] : queue.shift();
    if (job === undefined) return;
    if (job.type === 'uploaded' && queue.some((other) => other.type === 'uploaded')) {
      markUploadedTogether(job);
      if (queue.length > 0) schedule();
      return;
    }
    let reply: WriteReply;
    const transfer: ArrayBuffer[] = [];
    try {
      const records = run(job);
      reply = records === undefined ? { id: job.id } : { id: job.id, records };
      for (const { bytes } of records ?? []) transfer.push(bytes.buffer as ArrayBuffer);
    } catch (error) {
      reply = { id: job.id, error: serializeWalshipError(error) };
    }
    port.postMessage(reply, transfer);
    if (job.type === 'close') {
      port.close();
      return;
    }
    if (queue.length > 0) schedule();
  };
  /**
   * `first` and every other uploaded mark waiting, in one transaction. A mark is for txns already
   * committed, so it may go before the commits queued ahead of it. If the batch fails, each mark
   * is made alone, so that only a failing one is refused.
   */
  const markUploadedTogether = (first: UploadedJob): void => {
    const marks = [first, ...queue.filter((job): job is UploadedJob => job.type === 'uploaded')];
    const others = queue.filter((job) => job.type !== 'uploaded');
    queue.splice(0, queue.length, ...others);
    try {
      markUploaded(marks);
      for (const { id } of marks) port.postMessage({ id } satisfies WriteReply);
    } catch {
      for (const mark of marks) {
        let reply: WriteReply = { id: mark.id };
        try {
          markUploaded([mark]);
        } catch (error) {
          reply = { id: mark.id, error: serializeWalshipError(error) };
        }
        port.postMessage(reply);
      }
    }
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(next);
  };
  port.on('message', (job: WriteJob) => {
    queue.push(job);
    schedule();
  });
  port.postMessage({ id: 0 } satisfies WriteReply);
}

main();
