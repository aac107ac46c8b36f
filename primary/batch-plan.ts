import { WalshipError } from '../core/index.js';
import type { BatchLookup, BatchPart } from '../table/index.js';
import type { BatchStamp } from '../wal/index.js';
import type { BuiltTxn } from './txn-builder.js';

/** A request's batch identity (RFC-0011): `X-Walship-Batch: <writer>:<seq>` and its body's digest. */
export interface BatchIdentity {
  writer: string;
  seq: bigint;
  /** BATCH_HASH_BYTES bytes of the body's SHA-256. */
  hash: Uint8Array;
}

/** What to do with a batched request, from what the table store knows of its identity. */
export type BatchPlan =
  /** Every table of the batch is committed: answer with their tokens, write nothing. */
  | { kind: 'replay'; known: BatchPart[] }
  /** Write the tables not committed yet (all of them for a new batch), and answer for all. */
  | { kind: 'write'; known: BatchPart[] };

/**
 * The plan for `batch` given `lookup` (TableStore.batch). Throws BATCH_CONFLICT when a committed part
 * has another digest (the identity was reused for other content), BATCH_OUTSIDE_WINDOW when the
 * seq is below the writer's window: in both cases nothing may be written.
 */
export function planBatch(batch: BatchIdentity, lookup: BatchLookup): BatchPlan {
  const id = `${batch.writer}:${batch.seq}`;
  if (lookup.state === 'unknown') return { kind: 'write', known: [] };
  if (lookup.state === 'outside-window') {
    throw new WalshipError(
      'BATCH_OUTSIDE_WINDOW',
      'conflict',
      `batch ${id} is older than the batches remembered for writer ${batch.writer} (from seq ${lookup.lowSeq}): ` +
        'whether it was committed cannot be told, so it was not written',
      { details: { writer: batch.writer, seq: batch.seq, lowSeq: lookup.lowSeq } },
    );
  }
  const { parts } = lookup;
  if (parts.some((part) => Buffer.compare(part.hash, batch.hash) !== 0)) {
    throw new WalshipError(
      'BATCH_CONFLICT',
      'conflict',
      `batch ${id} was committed with other content: a batch identity is retried only with its exact bytes`,
      { details: { writer: batch.writer, seq: batch.seq } },
    );
  }
  return parts.length >= parts[0]!.parts ? { kind: 'replay', known: parts } : { kind: 'write', known: parts };
}

/**
 * The txns of a batched request left to write: those of tables without a committed part, each
 * stamped with the batch (its parts = every table the request names, written now or before).
 */
export function stampBatch(
  built: readonly BuiltTxn[],
  batch: BatchIdentity,
  known: readonly BatchPart[],
  epoch: bigint,
): BuiltTxn[] {
  const committed = new Set(known.map((part) => part.tableKey));
  const stamp: BatchStamp = {
    writer: batch.writer,
    seq: batch.seq,
    parts: built.length,
    epoch,
    hash: batch.hash,
  };
  const kept: BuiltTxn[] = [];
  for (const b of built) {
    if (committed.has(b.schemaAfter.key)) continue;
    b.record.batch = stamp;
    kept.push(b);
  }
  return kept;
}

/**
 * One batched request at a time per identity: a retry that arrives while an earlier attempt of the
 * same batch is still being committed waits for it, then finds it in the ledger.
 */
export class BatchesInFlight {
  readonly #tails = new Map<string, Promise<void>>();

  /** Resolves, once no earlier attempt of `batch` is in flight, with the function that ends this one. */
  async enter(batch: BatchIdentity): Promise<() => void> {
    const id = `${batch.writer}:${batch.seq}`;
    let leave!: () => void;
    const mine = new Promise<void>((resolve) => {
      leave = resolve;
    });
    const before = this.#tails.get(id);
    this.#tails.set(id, mine);
    if (before !== undefined) await before;
    return () => {
      leave();
      if (this.#tails.get(id) === mine) this.#tails.delete(id);
    };
  }
}
