import type { IlpLineBatch, IlpLines } from './line-batch.js';

/** Which surface a batch of lines arrived on. */
export interface IlpRequestInfo {
  protocol: 'http' | 'tcp';
}

export interface IlpCommitResult {
  /** Sent as `X-Walship-Txn` on the HTTP 204 (the commit token for read-your-writes); unused on TCP. */
  txnHeader?: string;
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
