/**
 * The request side of `/metrics` (issue 19 item 3): ILP requests, durable acks, queries, refused
 * reads and promotions, fed by event hooks of the surfaces (NodeMetrics wires them). Labels are a
 * small fixed set — never a table, a client or query text — and every known label value starts at
 * 0, so `rate()` and `increase()` see the first event.
 *
 * The ILP hook runs once per request on the write path: its children are bound once here, so an
 * event costs three counter increments and one histogram observation, with no label hashing.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { isWalshipError } from '../core/index.js';
import { ILP_OUTCOMES, type IlpOutcome, type IlpRequestEvent } from '../ilp/index.js';
import { READ_REFUSAL_REASONS, type ReadRefusalReason, readRefusalReasonOf } from '../replica/index.js';
import { QUERY_OUTCOMES, type QueryOutcome } from '../table/index.js';

/** How a promotion was asked for: `POST /admin/promote` (or `walship promote`), the lease, a switchover. */
export const PROMOTION_TRIGGERS = ['admin', 'automatic', 'switchover'] as const;
export type PromotionTrigger = (typeof PROMOTION_TRIGGERS)[number];

export const ILP_TRANSPORTS = ['http', 'tcp'] as const;
type IlpTransport = (typeof ILP_TRANSPORTS)[number];
export const QUERY_PROTOCOLS = ['http', 'pg'] as const;
export type QueryProtocol = (typeof QUERY_PROTOCOLS)[number];
export const DURABLE_ACK_OUTCOMES = ['ok', 'timeout', 'error'] as const;

/** One promotion of this node, asked for by `trigger`, as it ended. */
export interface PromotionEvent {
  trigger: PromotionTrigger;
  outcome: 'ok' | 'failed';
  /** From the promotion's start (the request, or the lease found expired) to taking writes (or failing). */
  seconds: number;
  /** Automatic only: from the last lease renewal this node saw to taking writes. */
  failoverSeconds?: number;
}

/** Histogram buckets, in seconds, each sized for what it measures. */
const BUCKETS_SECONDS = {
  /** One ILP request: sub-millisecond for a few rows, up to the durable timeout (30 s by default). */
  ilp: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  /** From a local commit to the store holding it: the seal window plus one upload. */
  durable: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  /** One read, commit-token and staleness waits included, up to the query time limit. */
  query: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  /** Catching up with the store, fencing every table, starting the primary role. */
  promotion: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  /** A lease timeout plus a promotion. */
  failover: [0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300],
} as const;

/** The bound children of one (transport, outcome) of the ILP families. */
interface IlpChildren {
  requests: Counter.Internal;
  seconds: Histogram.Internal<'transport' | 'outcome'>;
  rows: Counter.Internal;
  bytes: Counter.Internal;
}

export class RequestMetrics {
  /** By transport, then outcome. */
  readonly #ilp: Record<IlpTransport, Record<IlpOutcome, IlpChildren>>;
  readonly #durableAck: Histogram<'outcome'>;
  readonly #queries: Counter<'protocol' | 'outcome'>;
  readonly #querySeconds: Histogram<'protocol' | 'outcome'>;
  readonly #refused: Counter<'reason'>;
  readonly #promotions: Counter<'trigger' | 'outcome'>;
  readonly #promotionSeconds: Histogram<'trigger'>;
  readonly #failoverSeconds: Histogram;

  constructor(registers: Registry[]) {
    this.#ilp = bindIlp(registers);
    this.#durableAck = new Histogram({
      name: 'walship_durable_ack_seconds',
      help: 'Durable ack mode: from a request’s local commit to the store holding its txns, by outcome (ok, timeout, error).',
      labelNames: ['outcome'],
      buckets: [...BUCKETS_SECONDS.durable],
      registers,
    });
    this.#queries = new Counter({
      name: 'walship_queries_total',
      help: 'Reads by protocol (http: /exec and /exp; pg) and outcome (ok, client_error, refused, unavailable, server_error, cancelled).',
      labelNames: ['protocol', 'outcome'],
      registers,
    });
    this.#querySeconds = new Histogram({
      name: 'walship_query_seconds',
      help: 'Duration of reads, consistency waits included, by protocol and outcome.',
      labelNames: ['protocol', 'outcome'],
      buckets: [...BUCKETS_SECONDS.query],
      registers,
    });
    this.#refused = new Counter({
      name: 'walship_reads_refused_total',
      help: 'Reads a replica refused, by reason (stale, token_timeout, busy, txn_not_in_cluster).',
      labelNames: ['reason'],
      registers,
    });
    this.#promotions = new Counter({
      name: 'walship_promotions_total',
      help: 'Promotions of this node by trigger (admin, automatic, switchover) and outcome (ok, failed).',
      labelNames: ['trigger', 'outcome'],
      registers,
    });
    this.#promotionSeconds = new Histogram({
      name: 'walship_promotion_seconds',
      help: 'From the start of a promotion of this node to its taking writes, by trigger.',
      labelNames: ['trigger'],
      buckets: [...BUCKETS_SECONDS.promotion],
      registers,
    });
    this.#failoverSeconds = new Histogram({
      name: 'walship_failover_seconds',
      help: 'Automatic failover to this node: from the last lease renewal it saw to its taking writes.',
      buckets: [...BUCKETS_SECONDS.failover],
      registers,
    });
    for (const protocol of QUERY_PROTOCOLS)
      for (const outcome of QUERY_OUTCOMES) this.#queries.inc({ protocol, outcome }, 0);
    for (const reason of Object.values(READ_REFUSAL_REASONS)) this.#refused.inc({ reason }, 0);
    for (const trigger of PROMOTION_TRIGGERS)
      for (const outcome of ['ok', 'failed']) this.#promotions.inc({ trigger, outcome }, 0);
  }

  onIlpRequest(event: IlpRequestEvent): void {
    const children = this.#ilp[event.transport][event.outcome];
    children.requests.inc();
    children.seconds.observe(event.seconds);
    if (event.rows > 0) children.rows.inc(event.rows);
    if (event.bytes > 0) children.bytes.inc(event.bytes);
  }

  onDurableAck(outcome: (typeof DURABLE_ACK_OUTCOMES)[number], seconds: number): void {
    this.#durableAck.observe({ outcome }, seconds);
  }

  onQuery(protocol: QueryProtocol, outcome: QueryOutcome, seconds: number): void {
    this.#queries.inc({ protocol, outcome });
    this.#querySeconds.observe({ protocol, outcome }, seconds);
  }

  onReadRefused(reason: ReadRefusalReason): void {
    this.#refused.inc({ reason });
  }

  onPromotion(event: PromotionEvent): void {
    this.#promotions.inc({ trigger: event.trigger, outcome: event.outcome });
    if (event.outcome !== 'ok') return;
    this.#promotionSeconds.observe({ trigger: event.trigger }, event.seconds);
    if (event.failoverSeconds !== undefined) this.#failoverSeconds.observe(event.failoverSeconds);
  }
}

/** The ILP families, their children bound per (transport, outcome) and started at 0. */
function bindIlp(registers: Registry[]): Record<IlpTransport, Record<IlpOutcome, IlpChildren>> {
  const requests = new Counter({
    name: 'walship_ilp_requests_total',
    help: 'ILP requests (HTTP) and batches (TCP) by transport and outcome (ok, replayed, client_error, refused, unavailable, server_error).',
    labelNames: ['transport', 'outcome'],
    registers,
  });
  const seconds = new Histogram({
    name: 'walship_ilp_request_seconds',
    help: 'From an ILP request’s arrival (a TCP batch’s parse) to its answer (commit), durable wait included.',
    labelNames: ['transport', 'outcome'],
    buckets: [...BUCKETS_SECONDS.ilp],
    registers,
  });
  const rows = new Counter({
    name: 'walship_ilp_rows_total',
    help: 'Rows committed by ILP requests, by transport.',
    labelNames: ['transport'],
    registers,
  });
  const bytes = new Counter({
    name: 'walship_ilp_received_bytes_total',
    help: 'ILP body bytes received (HTTP: bodies read; TCP: lines of batches), by transport.',
    labelNames: ['transport'],
    registers,
  });
  const bind = (transport: IlpTransport): Record<IlpOutcome, IlpChildren> => {
    const rowsChild = rows.labels({ transport });
    const bytesChild = bytes.labels({ transport });
    rowsChild.inc(0);
    bytesChild.inc(0);
    const byOutcome = (outcome: IlpOutcome): [IlpOutcome, IlpChildren] => {
      const requestsChild = requests.labels({ transport, outcome });
      requestsChild.inc(0);
      return [
        outcome,
        {
          requests: requestsChild,
          seconds: seconds.labels({ transport, outcome }),
          rows: rowsChild,
          bytes: bytesChild,
        },
      ];
    };
    return Object.fromEntries(ILP_OUTCOMES.map(byOutcome)) as Record<IlpOutcome, IlpChildren>;
  };
  return { http: bind('http'), tcp: bind('tcp') };
}

/**
 * The outcome of a PostgreSQL read that rejected with `error` (QUERY_OUTCOMES, as `/exec` answers
 * it): a read-consistency refusal is `refused`, an aborted read `cancelled`, then by error kind.
 */
export function queryOutcomeOfError(error: unknown): QueryOutcome {
  if (readRefusalReasonOf(error) !== undefined) return 'refused';
  if (!isWalshipError(error)) return 'server_error';
  if (error.code === 'QUERY_ABORTED') return 'cancelled';
  switch (error.kind) {
    case 'invalid':
      return 'client_error';
    case 'unavailable':
    case 'closed':
      return 'unavailable';
    default:
      return 'server_error';
  }
}

/** `switchover` for the promotions `walship switchover` asks for (reason `switchover…`), else `admin`. */
export function promotionTriggerOf(reason: string): PromotionTrigger {
  return reason.startsWith('switchover') ? 'switchover' : 'admin';
}
