import { type Clock, WalshipError } from '../core/index.js';
import type { IlpLine } from '../ilp/index.js';
import type { TableStore } from '../table/index.js';
import { encodeTxnRecord } from '../wal/index.js';
import { buildTxns } from './txn-builder.js';
import type { Uploader } from './uploader.js';

export type AckMode = 'local' | 'durable';

export interface CommitterOptions {
  tables: TableStore;
  uploader: Uploader;
  clock: Clock;
  ackMode: AckMode;
  /** How long a durable writer waits for its segment before a 503 (`replication.ack.durable.timeout`). */
  durableTimeoutMs: number;
  /** Writes are refused while the pending queue holds more than this (the store is down for long). */
  pendingMaxBytes: number;
  /** False once the node was fenced or demoted; writes are then answered 421. */
  acceptingWrites: () => boolean;
}

export interface CommitResult {
  /** Per table (by store key) the txn this request committed: `trades=42,quotes=17` (X-Walship-Txn). */
  txnHeader: string;
  txns: { table: string; txn: bigint; rows: number }[];
}

/**
 * The write path of one ILP request (DESIGN §5): build one txn per table, then ONE SQLite
 * transaction that inserts the rows, queues the encoded txn records for upload and advances the
 * committed watermarks — so a request is all or nothing across its tables — then, in `durable`
 * mode, wait until the uploader has put the segments holding those txns in the store.
 */
export class Committer {
  readonly #options: CommitterOptions;

  constructor(options: CommitterOptions) {
    this.#options = options;
  }

  async commit(lines: IlpLine[]): Promise<CommitResult> {
    const { tables, uploader, clock } = this.#options;
    if (!this.#options.acceptingWrites()) {
      throw new WalshipError(
        'NOT_ACCEPTING_WRITES',
        'fenced',
        'this node is not accepting writes (not the primary)',
      );
    }
    const pendingBytes = uploader.pendingBytes;
    if (pendingBytes > this.#options.pendingMaxBytes) {
      throw new WalshipError(
        'PENDING_FULL',
        'unavailable',
        `${pendingBytes} bytes await upload (limit ${this.#options.pendingMaxBytes}): the object store has been ` +
          'unavailable for a while; writes resume when uploads catch up',
      );
    }
    if (lines.length === 0) return { txnHeader: '', txns: [] };
    const built = buildTxns(lines, {
      schemaOf: (table) => tables.schema(table),
      commitTimeUs: BigInt(Math.floor(clock.wallMs() * 1000)),
      nextTxn: (table) => tables.lastTxn(table) + 1n,
    });
    const encoded = built.map((b) => ({ ...b, bytes: encodeTxnRecord(b.record) }));
    tables.transaction(() => {
      for (const { table, record, bytes } of encoded) {
        tables.applyTxn(table, record);
        tables.enqueuePending(table, record.txn, bytes);
      }
    });
    for (const { table, bytes } of encoded) uploader.committed(table, bytes.byteLength);
    const result: CommitResult = {
      txnHeader: encoded.map(({ schemaAfter, record }) => `${schemaAfter.key}=${record.txn}`).join(','),
      txns: encoded.map(({ table, record }) => ({ table, txn: record.txn, rows: record.rowCount })),
    };
    if (this.#options.ackMode === 'durable') {
      await Promise.all(
        encoded.map(({ table, record }) =>
          uploader.waitUploaded(table, record.txn, this.#options.durableTimeoutMs),
        ),
      );
    }
    return result;
  }
}
