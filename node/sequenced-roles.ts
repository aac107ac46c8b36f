/**
 * The roles of a node in a sequenced cluster (RFC-0003), assembled from parts: a **writer** (a
 * primary with `replication.sequencer` set) queues ILP writes, uploads staged segments and has the
 * sequencer number them, and applies every writer's txns in sequencer order like everyone else; a
 * **reader** (a replica) applies them the same way, from the sequencer when it may reach it, else
 * from `txnlog/` in the store. Both are a ReplicaNode (reads, consistency, snapshots, `/status`)
 * whose follower is the SequencedFollower; the writer adds the write path.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { type Clock, type Random, WalshipError } from '../core/index.js';
import type { IlpLines } from '../ilp/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import type { PrimarySettings } from '../primary/index.js';
import type { NodeWriter, TableFollower } from '../replica/index.js';
import {
  type LogEntry,
  SequencedFollower,
  SequencedWriter,
  type SequencedWriterFaults,
  type SequencerStore,
  StagedQueue,
  sequencerLogSource,
  storeLogSource,
} from '../sequencer/index.js';
import type { TableStore } from '../table/index.js';

/** `replication.sequencer` and what goes with it; absent on a node of a single-primary cluster. */
export interface SequencedSettings {
  /** The sequencer, opened once per process; undefined: a reader follows `txnlog/` in the store. */
  sequencer: SequencerStore | undefined;
  /** `replication.sequencer.export.grace`. */
  exportGraceMs: number;
  /** Test hooks: a crash between upload and commit, or commit and ack (SequencedWriter). */
  writerFaults?: SequencedWriterFaults;
}

/** The writer's private queue in a data dir (RFC-0003 "Commit protocol" step 1). */
const STAGED_QUEUE_FILE = 'staged.sqlite';
/** How many own sealed segments a writer keeps for its follower (no GET); beyond it the follower GETs. */
const OWN_SEGMENTS_MAX = 256;

/** A writer's sealed segments, kept until its own follower applied them (bounded). */
class OwnSegments {
  readonly #bytes = new Map<string, Uint8Array>();

  add(segments: Map<string, Uint8Array>): void {
    for (const [key, bytes] of segments) {
      if (this.#bytes.size >= OWN_SEGMENTS_MAX) this.#bytes.delete(this.#bytes.keys().next().value!);
      this.#bytes.set(key, bytes);
    }
  }

  get(key: string): Uint8Array | undefined {
    return this.#bytes.get(key);
  }

  drop(key: string): void {
    this.#bytes.delete(key);
  }
}

export interface SequencedFollowerParts {
  store: ObjectStore;
  sequenced: SequencedSettings;
  clusterId: string;
  clock: Clock;
  log: Logger;
  pollIntervalMs: number;
  downloadConcurrency: number;
}

/** What ReplicaNode calls to build the follower on its database (ReplicaDeps.follower). */
export function sequencedFollowerFactory(
  parts: SequencedFollowerParts,
  writer?: { own: OwnSegments; follower: (follower: SequencedFollower) => void },
): (
  tables: TableStore,
  onApplied: (key: string, txn: bigint) => void,
  admits: (key: string) => boolean,
) => TableFollower {
  return (tables, onApplied, admits) => {
    tables.setMeta('cluster.id', parts.clusterId);
    const source =
      parts.sequenced.sequencer === undefined
        ? storeLogSource({ store: parts.store, pollIntervalMs: parts.pollIntervalMs, clock: parts.clock })
        : sequencerLogSource(parts.sequenced.sequencer, {
            clock: parts.clock,
            onWatchFailed: (error) =>
              parts.log.warn({ err: (error as Error).message }, 'sequencer watch failed; polling heads'),
          });
    const follower = new SequencedFollower({
      tables,
      store: parts.store,
      source,
      clock: parts.clock,
      log: parts.log.child({ part: 'follower' }),
      downloadConcurrency: parts.downloadConcurrency,
      onApplied,
      admits,
      ...(writer === undefined
        ? {}
        : {
            ownSegment: (key: string) => writer.own.get(key),
            dropOwnSegment: (key: string) => writer.own.drop(key),
            exportCatchUp: { graceMs: parts.sequenced.exportGraceMs },
          }),
    });
    writer?.follower(follower);
    return follower;
  };
}

/**
 * The write path of a writer node, set once the writer is open (ReplicaNode starts first: the
 * writer needs its node id and schemas). Until then, and after `stop`, writes get 421.
 */
export class WriterSlot implements NodeWriter {
  readonly own = new OwnSegments();
  #writer: SequencedWriter | undefined;
  #queue: StagedQueue | undefined;
  #follower: SequencedFollower | undefined;
  readonly #ackMode: 'local' | 'durable';

  constructor(ackMode: 'local' | 'durable') {
    this.#ackMode = ackMode;
  }

  get writer(): SequencedWriter | undefined {
    return this.#writer;
  }

  setFollower(follower: SequencedFollower): void {
    this.#follower = follower;
  }

  set(writer: SequencedWriter, queue: StagedQueue): void {
    this.#writer = writer;
    this.#queue = queue;
  }

  /** Stops the writer (its step in flight finishes, bounded) and closes its queue. Idempotent. */
  async close(): Promise<void> {
    const writer = this.#writer;
    this.#writer = undefined;
    await writer?.stop();
    this.#queue?.close();
    this.#queue = undefined;
  }

  commit = async (lines: IlpLines): Promise<{ txnHeader?: string; rows: number }> => {
    const writer = this.#writer;
    if (writer === undefined)
      throw new WalshipError('NOT_ACCEPTING_WRITES', 'fenced', 'this writer is not started yet');
    const result = await writer.commitLines(lines, this.#ackMode);
    const rows = result.txns.reduce((sum, t) => sum + t.rows, 0);
    return result.txnHeader === '' ? { rows } : { txnHeader: result.txnHeader, rows };
  };

  acceptingWrites(): boolean {
    return this.#writer?.acceptingWrites() ?? false;
  }

  status(): Record<string, unknown> {
    const writer = this.#writer?.status();
    const follower = this.#follower?.status();
    return {
      role: 'primary',
      acceptingWrites: this.acceptingWrites(),
      ackMode: this.#ackMode,
      sequenced: {
        source: follower?.source ?? null,
        export: follower?.export ?? null,
        writer:
          writer === undefined
            ? null
            : {
                ...writer,
                epoch: writer.epoch.toString(),
                batchInFlight: writer.batchInFlight?.toString() ?? null,
              },
      },
    };
  }

  /** Entries a committed batch numbered: the writer's own, so its follower need not GET them. */
  onCommitted(_entries: LogEntry[], segments: Map<string, Uint8Array>): void {
    this.own.add(segments);
  }
}

/** Opens the writer of `nodeId` over its queue in `dataDir` and plugs it into `slot`. */
export async function openWriter(options: {
  slot: WriterSlot;
  dataDir: string;
  nodeId: string;
  store: ObjectStore;
  sequencer: SequencerStore;
  primary: PrimarySettings;
  tables: () => TableStore | undefined;
  clock: Clock;
  random: Random;
  log: Logger;
  onFenced: (error: WalshipError) => void;
  faults?: SequencedWriterFaults | undefined;
}): Promise<SequencedWriter> {
  const queue = StagedQueue.open(path.join(options.dataDir, STAGED_QUEUE_FILE));
  try {
    const { primary } = options;
    const writer = await SequencedWriter.open({
      store: options.store,
      sequencer: options.sequencer,
      queue,
      nodeId: options.nodeId,
      clock: options.clock,
      random: options.random,
      log: options.log.child({ part: 'writer' }),
      schemaOf: (table) => options.tables()?.schema(table),
      rolloverSizeBytes: primary.rolloverSizeBytes,
      windowMs: primary.windowMs,
      codec: primary.codec,
      compressionLevel: primary.compressionLevel,
      durableTimeoutMs: primary.durableTimeoutMs,
      pendingMaxBytes: primary.pendingMaxBytes,
      onCommitted: (entries, segments) => options.slot.onCommitted(entries, segments),
      onFenced: options.onFenced,
      ...(options.faults === undefined ? {} : { faults: options.faults }),
    });
    options.slot.set(writer, queue);
    writer.start();
    return writer;
  } catch (error) {
    queue.close();
    throw error;
  }
}
