import type { IlpLineBatch, IlpLines } from './line-batch.js';

/** Which surface a batch of lines arrived on, and the client batch it is (HTTP only). */
export interface IlpRequestInfo {
  protocol: 'http' | 'tcp';
  /**
   * The request's `X-Walship-Batch` identity and its body's digest (RFC-0011). A write path that
   * cannot keep batches exactly once ignores it and says so by leaving `batch` out of its result.
   */
  batch?: IlpBatchIdentity;
}

/** `X-Walship-Batch: <writer>:<seq>`, and the first BATCH_HASH_BYTES bytes of the body's SHA-256. */
export interface IlpBatchIdentity {
  writer: string;
  seq: bigint;
  hash: Uint8Array;
}

export interface IlpCommitResult {
  /** Sent as `X-Walship-Txn` on the HTTP 204 (the commit token for read-your-writes); unused on TCP. */
  txnHeader?: string;
  /**
   * Sent as `X-Walship-Batch-Status` for a request with a batch identity: `committed` (written now)
   * or `replayed` (committed before; nothing written). Absent: the identity was ignored.
   */
  batch?: 'committed' | 'replayed';
  /** Rows this request committed (0 for a replay), for `/metrics`; absent when the write path does not say. */
  rows?: number;
}

/**
 * The write path as the ILP surfaces see it: commits all `lines` of one HTTP request (or one TCP
 * batch) and resolves when they are committed per the node's ack mode. A rejection commits
 * nothing. The HTTP surface maps rejections by WalshipError kind: `invalid` → 400 (with
 * `details.line` when present), `fenced` / `closed` → 421, `unavailable` → 503 (with
 * `details.clientMessage` as the message when present), anything else → 500; the TCP surface
 * closes the connection.
 */
export type IlpCommit = (lines: IlpLines, request: IlpRequestInfo) => Promise<IlpCommitResult>;

/**
 * The lines of one request, parsed while they are consumed (`parseIlpInSlices`), so a large request
 * neither holds the event loop nor keeps one object per line alive.
 */
export interface IlpLineSource {
  /**
   * Hands every line to `sink`, in request order, a slice at a time (a batch, or lines [from, to)
   * of one, that the sink must take what it needs from before it returns), yielding the event loop between slices; resolves with
   * the number of lines. Rejects with IlpParseError for the first
   * bad line, possibly after earlier slices went to `sink` (whoever consumed them must then drop
   * what it built). Call at most once.
   */
  forEachSlice(sink: (batch: IlpLineBatch, from?: number, to?: number) => void): Promise<number>;
}

/**
 * `IlpCommit` for a request parsed while it is committed. Same contract: a rejection commits
 * nothing; an IlpParseError rejection is the request's parse error (400, or 413 when `tooLarge`).
 */
export type IlpSliceCommit = (source: IlpLineSource, request: IlpRequestInfo) => Promise<IlpCommitResult>;
