/**
 * What the ILP surfaces report of each request (HTTP) or batch (TCP) for `/metrics`
 * (node/node-metrics.ts): one event per request, a few numbers, no table names and no data.
 */
import { isWalshipError } from '../core/index.js';

/**
 * How an ILP request ended, a small fixed set (the `outcome` label):
 * - `ok`: committed (HTTP 204; an empty request too);
 * - `replayed`: a batch identity committed before; nothing written, answered 204 (RFC-0011);
 * - `client_error`: the request is wrong as sent (HTTP 400, 405, 409, 413, 415; a TCP parse error),
 *   or the client left before its body ended;
 * - `refused`: not taken for who sent it or where: bad credentials (401, a failed TCP challenge) or
 *   this node not taking writes (421: a replica, fenced, demoted, changing role);
 * - `unavailable`: try again later (503: the bodies in flight fill `line.http.max.inflight.size`,
 *   the pending queue is full, the store is down, a durable ack timed out);
 * - `server_error`: a bug (500).
 */
export const ILP_OUTCOMES = [
  'ok',
  'replayed',
  'client_error',
  'refused',
  'unavailable',
  'server_error',
] as const;
export type IlpOutcome = (typeof ILP_OUTCOMES)[number];

export interface IlpRequestEvent {
  transport: 'http' | 'tcp';
  outcome: IlpOutcome;
  /** Rows this request committed (0 unless `ok`). */
  rows: number;
  /** Body bytes received (HTTP: the body read, 0 when it was not; TCP: the batch's bytes). */
  bytes: number;
  /** From the request's arrival (TCP: the batch's parse) to its answer (TCP: its commit). */
  seconds: number;
}

/** The outcome of an HTTP answer with `status` (null: none was sent, the client left first). */
export function ilpOutcomeOfStatus(status: number | null, batch?: 'committed' | 'replayed'): IlpOutcome {
  if (status === null) return 'client_error';
  if (status < 300) return batch === 'replayed' ? 'replayed' : 'ok';
  if (status === 401 || status === 421) return 'refused';
  if (status < 500) return 'client_error';
  if (status === 503) return 'unavailable';
  return 'server_error';
}

/** The outcome of a TCP batch whose commit rejected with `error`, as HTTP answers it (IlpCommit). */
export function ilpOutcomeOfError(error: unknown): IlpOutcome {
  if (!isWalshipError(error)) return 'server_error';
  switch (error.kind) {
    case 'invalid':
    case 'conflict':
      return 'client_error';
    case 'fenced':
    case 'closed':
      return 'refused';
    case 'unavailable':
      return 'unavailable';
    default:
      return 'server_error';
  }
}
