import type { SerializedWalshipError } from '../core/index.js';

/** What the write worker is started with (its workerData). */
export interface WriteWorkerData {
  /** The table store's file. */
  file: string;
  synchronous: 'FULL' | 'NORMAL';
  /** The word of the node's WriteGate. */
  gate: SharedArrayBuffer;
}

/** A job for the write worker; `id` names its reply. */
export type WriteJob = { id: number } & (
  | { type: 'commit'; txns: { table: string; bytes: Uint8Array }[] }
  | { type: 'uploaded'; table: string; txn: bigint }
  /** A read, not a write: answered before the writes waiting (PendingSource.pending). */
  | { type: 'pending'; table: string; limitBytes: number; afterTxn?: bigint }
  | { type: 'resume' }
  /** Does nothing: its answer comes after every earlier job's. */
  | { type: 'flush' }
  | { type: 'close' }
);

/** The worker's answer to job `id` (id 0: the worker is ready). */
export interface WriteReply {
  id: number;
  error?: SerializedWalshipError;
  /** The answer to a `pending` job. */
  records?: { txn: bigint; bytes: Uint8Array }[];
}

/** `bytes` in a buffer of its own, which can be transferred without taking anything else along. */
export function ownBuffer(bytes: Uint8Array): Uint8Array {
  return isOwnBuffer(bytes) ? bytes : new Uint8Array(bytes);
}

/**
 * Whether `bytes` is transferred itself when handed to a thread (ownBuffer), and so is unusable
 * here afterwards; otherwise a copy goes and `bytes` stays as it is.
 */
export function isOwnBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes instanceof Buffer);
}
