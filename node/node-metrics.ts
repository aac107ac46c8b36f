/**
 * `GET /metrics` (issue 7): one Prometheus registry per node (several nodes share a test process,
 * so never prom-client's global one), kept by `WalshipNode` across role changes.
 *
 * Two sources, so no state is copied: gauges are read from the node's `/status` at each scrape
 * (`collect()`), counters and histograms are fed by events (segment uploads and applies, store
 * requests and retries, role changes and fences; ILP requests, durable acks, queries, refused
 * reads and promotions: request-metrics.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { createHttpAuthenticator, type HttpAuth, type HttpHandler, sendJson } from '../core/index.js';
import type { IlpRequestEvent } from '../ilp/index.js';
import type { RetryEvent, StoreRequestEvent } from '../objectstore/index.js';
import type { UploaderOptions } from '../primary/index.js';
import type { FollowerOptions, ReadRefusalReason } from '../replica/index.js';
import type { QueryOutcome } from '../table/index.js';
import {
  type DURABLE_ACK_OUTCOMES,
  type PromotionEvent,
  type QueryProtocol,
  RequestMetrics,
} from './request-metrics.js';

export type SegmentUploadEvent = Parameters<NonNullable<UploaderOptions['onUpload']>>[0];
export type SegmentApplyEvent = Parameters<NonNullable<FollowerOptions['onApply']>>[0];

/** Node events that count as fencing events (`walship_fencing_events_total{kind}`). */
export const FENCING_EVENT_KINDS = ['promoted', 'demoted', 'fenced', 'divergence'] as const;
export type FencingEventKind = (typeof FENCING_EVENT_KINDS)[number];

/** Histogram buckets, in seconds, each sized for what it measures. */
const BUCKETS_SECONDS = {
  /** Seal + create-only PUT of one segment: milliseconds on fs, up to seconds on a slow S3. */
  upload: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  /** One SQLite transaction per segment: sub-millisecond for small ones. */
  apply: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  /** One store operation (after its retries). */
  store: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
} as const;

export interface NodeMetricsOptions {
  /** Also export prom-client's process metrics (`process_*`, `nodejs_*`): once per process, for the CLI. */
  processMetrics?: boolean;
}

/**
 * The metrics of one node. `render(status)` is a scrape: the gauges read `status`, the node's
 * `/status` JSON at that moment (a primary's, a replica's or `{ role: 'switching' }`).
 */
export class NodeMetrics {
  readonly registry = new Registry();
  /** The status being rendered; scrapes run one at a time so a scrape never reads another's. */
  #status: Record<string, unknown> = {};
  #rendering: Promise<unknown> = Promise.resolve();
  readonly #uploads: Counter<'table' | 'outcome'>;
  readonly #uploadBytes: Counter<'table'>;
  readonly #uploadSeconds: Histogram<'outcome'>;
  readonly #applies: Counter<'table'>;
  readonly #applyBytes: Counter<'table'>;
  readonly #applyRows: Counter<'table'>;
  readonly #applySeconds: Histogram;
  readonly #storeRequests: Counter<'op' | 'outcome'>;
  readonly #storeSeconds: Histogram<'op'>;
  readonly #storeBytes: Counter<'op'>;
  readonly #storeRetries: Counter<'op'>;
  readonly #fencing: Counter<'kind'>;
  readonly #requests: RequestMetrics;

  constructor(options: NodeMetricsOptions = {}) {
    const registers = [this.registry];
    this.#uploads = new Counter({
      name: 'walship_segment_uploads_total',
      help: 'Segment upload attempts by outcome: ok, ours (an earlier attempt had written it), fenced, error.',
      labelNames: ['table', 'outcome'],
      registers,
    });
    this.#uploadBytes = new Counter({
      name: 'walship_segment_upload_bytes_total',
      help: 'Bytes of segments uploaded (outcome ok).',
      labelNames: ['table'],
      registers,
    });
    this.#uploadSeconds = new Histogram({
      name: 'walship_segment_upload_seconds',
      help: 'Time to seal and upload one segment, by outcome.',
      labelNames: ['outcome'],
      buckets: [...BUCKETS_SECONDS.upload],
      registers,
    });
    this.#applies = new Counter({
      name: 'walship_segment_applies_total',
      help: 'Segments applied by this replica.',
      labelNames: ['table'],
      registers,
    });
    this.#applyBytes = new Counter({
      name: 'walship_segment_apply_bytes_total',
      help: 'Bytes of segment objects applied.',
      labelNames: ['table'],
      registers,
    });
    this.#applyRows = new Counter({
      name: 'walship_segment_apply_rows_total',
      help: 'Rows applied from segments.',
      labelNames: ['table'],
      registers,
    });
    this.#applySeconds = new Histogram({
      name: 'walship_segment_apply_seconds',
      help: 'Time to apply one segment (its SQLite transaction; the download is not included).',
      buckets: [...BUCKETS_SECONDS.apply],
      registers,
    });
    this.#storeRequests = new Counter({
      name: 'walship_store_requests_total',
      help: 'Object-store operations (each after its retries) by operation and outcome.',
      labelNames: ['op', 'outcome'],
      registers,
    });
    this.#storeSeconds = new Histogram({
      name: 'walship_store_request_seconds',
      help: 'Duration of object-store operations, retries included.',
      labelNames: ['op'],
      buckets: [...BUCKETS_SECONDS.store],
      registers,
    });
    this.#storeBytes = new Counter({
      name: 'walship_store_transferred_bytes_total',
      help: 'Body bytes sent (put) or received (get) from the object store.',
      labelNames: ['op'],
      registers,
    });
    this.#storeRetries = new Counter({
      name: 'walship_store_retries_total',
      help: 'Object-store requests tried again after an unavailable error.',
      labelNames: ['op'],
      registers,
    });
    this.#fencing = new Counter({
      name: 'walship_fencing_events_total',
      help: 'Promotions, demotions, fences by a newer primary and divergences of this node.',
      labelNames: ['kind'],
      registers,
    });
    // Known label values start at 0, so rate() and increase() see the first event.
    for (const kind of FENCING_EVENT_KINDS) this.#fencing.inc({ kind }, 0);
    this.#requests = new RequestMetrics(registers);
    this.#statusGauges(registers);
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  onUpload(event: SegmentUploadEvent): void {
    this.#uploads.inc({ table: event.table, outcome: event.outcome });
    if (event.outcome === 'ok') this.#uploadBytes.inc({ table: event.table }, event.bytes);
    this.#uploadSeconds.observe({ outcome: event.outcome }, event.seconds);
  }

  onApply(event: SegmentApplyEvent): void {
    this.#applies.inc({ table: event.table });
    this.#applyBytes.inc({ table: event.table }, event.bytes);
    this.#applyRows.inc({ table: event.table }, event.rows);
    this.#applySeconds.observe(event.seconds);
  }

  onStoreRequest(event: StoreRequestEvent): void {
    this.#storeRequests.inc({ op: event.operation, outcome: event.outcome });
    this.#storeSeconds.observe({ op: event.operation }, event.durationMs / 1000);
    if (event.bytes > 0) this.#storeBytes.inc({ op: event.operation }, event.bytes);
  }

  onRetry(event: RetryEvent): void {
    this.#storeRetries.inc({ op: event.operation });
  }

  onFencingEvent(kind: FencingEventKind): void {
    this.#fencing.inc({ kind });
  }

  /** One ILP request (HTTP) or batch (TCP), answered. */
  onIlpRequest(event: IlpRequestEvent): void {
    this.#requests.onIlpRequest(event);
  }

  /** One durable ack's wait for the store. */
  onDurableAck(outcome: (typeof DURABLE_ACK_OUTCOMES)[number], seconds: number): void {
    this.#requests.onDurableAck(outcome, seconds);
  }

  /** One read, answered (or not: `cancelled`). */
  onQuery(protocol: QueryProtocol, outcome: QueryOutcome, seconds: number): void {
    this.#requests.onQuery(protocol, outcome, seconds);
  }

  /** One read a replica's read consistency refused. */
  onReadRefused(reason: ReadRefusalReason): void {
    this.#requests.onReadRefused(reason);
  }

  /** One promotion of this node, ended. */
  onPromotion(event: PromotionEvent): void {
    this.#requests.onPromotion(event);
  }

  /** The exposition text, its gauges read from `status` (the node's `/status` now). */
  render(status: Record<string, unknown>): Promise<string> {
    const run = this.#rendering
      .catch(() => {})
      .then(() => {
        this.#status = status;
        return this.registry.metrics();
      });
    this.#rendering = run;
    return run;
  }

  /** The gauges read from `/status` at each scrape. */
  #statusGauges(registers: Registry[]): void {
    const status = () => this.#status;
    const gauge = <L extends string>(
      name: string,
      help: string,
      labelNames: L[],
      fill: (g: Gauge<L>, s: Record<string, unknown>) => void,
    ) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          // Series of a former role or a vanished table must not linger.
          this.reset();
          fill(this, status());
        },
      });
    gauge(
      'walship_node_info',
      'This node: 1, labelled with its id, role and cluster.',
      ['node_id', 'role', 'cluster_id'],
      (g, s) => g.set({ node_id: text(s.nodeId), role: text(s.role), cluster_id: text(s.clusterId) }, 1),
    );
    gauge(
      'walship_epoch',
      "A primary's epoch; a replica's newest epoch applied over its tables; absent while switching.",
      [],
      (g, s) => {
        const epoch = s.role === 'primary' ? num(s.epoch) : maxOf(tablesOf(s), 'epoch');
        if (epoch !== null) g.set(epoch);
      },
    );
    gauge('walship_accepting_writes', '1 when this node takes writes (a primary not fenced).', [], (g, s) =>
      g.set(s.acceptingWrites === true ? 1 : 0),
    );
    const perTable = (
      name: string,
      help: string,
      role: 'primary' | 'replica',
      value: (t: Record<string, unknown>) => number | null,
    ) =>
      gauge(name, help, ['table'], (g, s) => {
        if (s.role !== role) return;
        for (const t of tablesOf(s)) {
          const v = value(t);
          if (v !== null) g.set({ table: text(t.name) }, v);
        }
      });
    perTable('walship_table_committed_txn', 'Primary: last committed txn.', 'primary', (t) =>
      num(t.committedTxn),
    );
    perTable('walship_table_uploaded_txn', 'Primary: last txn in the store.', 'primary', (t) =>
      num(t.uploadedTxn),
    );
    perTable('walship_table_pending_txns', 'Primary: committed txns not yet in the store.', 'primary', (t) =>
      num(t.pendingTxns),
    );
    perTable('walship_table_pending_bytes', 'Primary: encoded bytes not yet in the store.', 'primary', (t) =>
      num(t.pendingBytes),
    );
    perTable(
      'walship_table_oldest_pending_seconds',
      'Primary: age of the oldest txn not yet in the store; 0 when all is uploaded.',
      'primary',
      (t) => (num(t.oldestPendingAgeMs) ?? 0) / 1000,
    );
    perTable('walship_table_applied_txn', 'Replica: last applied txn.', 'replica', (t) => num(t.appliedTxn));
    perTable('walship_table_applied_epoch', 'Replica: epoch of the last applied segment.', 'replica', (t) =>
      num(t.epoch),
    );
    perTable(
      'walship_table_txns_behind',
      'Replica: txns known in the store and not applied yet.',
      'replica',
      (t) => num(t.txnsBehind),
    );
    perTable(
      'walship_table_since_caught_up_seconds',
      'Replica: time since the table was last known caught up with the store.',
      'replica',
      (t) => secondsOf(t.sinceCaughtUpMs),
    );
    perTable(
      'walship_table_suspended',
      'Replica: 1 when the table is suspended (a bad object).',
      'replica',
      (t) => (t.suspended === null || t.suspended === undefined ? 0 : 1),
    );
    gauge(
      'walship_replica_staleness_seconds',
      'Replica: how old its view of the store may be (absent before the first poll).',
      [],
      (g, s) => {
        const seconds = s.role === 'replica' ? secondsOf(s.stalenessMs) : null;
        if (seconds !== null) g.set(seconds);
      },
    );
    gauge(
      'walship_snapshot_age_seconds',
      'Replica: age of the last snapshot this node published (absent when none).',
      [],
      (g, s) => {
        const snapshot = s.snapshot as { agoMs?: unknown } | null | undefined;
        const seconds = s.role === 'replica' ? secondsOf(snapshot?.agoMs) : null;
        if (seconds !== null) g.set(seconds);
      },
    );
  }
}

/**
 * `GET /metrics`. Public like `/status`, unless query credentials are configured
 * (`query.auth.token`, else `http.user` / `http.auth.token`): then those (401 otherwise).
 */
export function createMetricsHandler(options: {
  metrics: NodeMetrics;
  status: () => Record<string, unknown>;
  auth: HttpAuth | undefined;
}): HttpHandler {
  const authorized = options.auth === undefined ? () => true : createHttpAuthenticator(options.auth);
  return async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.split('?')[0] !== '/metrics' || req.method !== 'GET') return false;
    if (!authorized(req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer, Basic');
      sendJson(res, 401, { code: 'unauthorised', message: '/metrics needs the HTTP credentials' });
      return true;
    }
    const text = await options.metrics.render(options.status());
    res.writeHead(200, {
      'content-type': options.metrics.contentType,
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
    });
    res.end(text);
    return true;
  };
}

function tablesOf(status: Record<string, unknown>): Record<string, unknown>[] {
  const tables = status.tables;
  if (!Array.isArray(tables)) return [];
  return tables.filter((t): t is Record<string, unknown> => t !== null && typeof t === 'object');
}

/** A number from `/status`: numbers as they are, txns given as decimal strings (bigint) as floats. */
function num(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return null;
}

function secondsOf(ms: unknown): number | null {
  const value = num(ms);
  return value === null ? null : value / 1000;
}

function maxOf(tables: Record<string, unknown>[], field: string): number | null {
  let max: number | null = null;
  for (const t of tables) {
    const v = num(t[field]);
    if (v !== null && (max === null || v > max)) max = v;
  }
  return max;
}

/** A label value; absent fields become empty labels. */
function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}
