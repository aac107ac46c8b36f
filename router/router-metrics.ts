/**
 * `GET /metrics` of the router (issue 19 item 3): its own prom-client registry (several routers
 * and nodes may share a test process, so never the global one). Counters and histograms are fed by
 * the read router and the write forwarder (RouterEvents); gauges are read from the ClusterView at
 * each scrape — what the router believes now: whether it knows where writes go, which nodes answer.
 *
 * The `node` label is a node's id, or its URL while the router has not read its id: a cluster has
 * a handful of nodes (at most VIEW_NODES_MAX).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type Clock, type HttpHandler, sendJson } from '../core/index.js';
import type { ClusterSnapshot, NodeView } from './cluster-view.js';
import { pathOf } from './forwarding.js';

export type RouterRequestKind = 'read' | 'write';

/**
 * How the router ended a client's request (`walship_router_requests_total{kind,outcome}`):
 * - `ok`: a node's 2xx answer passed through;
 * - `error`: a node's other answer passed through (bad SQL, bad credentials, a full queue…);
 * - `no_node` (reads): no candidate could answer (503 NO_REPLICA, NO_PRIMARY, NO_NODE);
 * - `no_primary` (writes): no primary took the write within `router.write.retry.timeout` (503);
 * - `unknown` (writes): the primary went away after the write was sent (503, the outcome unknown);
 * - `client_error`: refused by the router itself (405, 413, a bad read preference);
 * - `cancelled`: the client went away first.
 */
export const ROUTER_REQUEST_OUTCOMES = {
  read: ['ok', 'error', 'no_node', 'client_error', 'cancelled'],
  write: ['ok', 'error', 'no_primary', 'unknown', 'client_error', 'cancelled'],
} as const;
export type RouterRequestOutcome =
  | (typeof ROUTER_REQUEST_OUTCOMES.read)[number]
  | (typeof ROUTER_REQUEST_OUTCOMES.write)[number];

/**
 * How one attempt at a node went (`walship_router_reads_total` and `walship_router_writes_total`,
 * by `node`): `ok` and `error` as above (the node's answer went to the client); `refused`: the node
 * answered 421 (or a replica 503/504: stale, a commit token not applied in time) and the next
 * candidate was tried; `unreachable`: no connection (the next candidate, or the write sent again);
 * `cut` (writes): the connection failed after the write was sent.
 */
export const ROUTER_ATTEMPT_OUTCOMES = {
  read: ['ok', 'error', 'refused', 'unreachable'],
  write: ['ok', 'error', 'refused', 'unreachable', 'cut'],
} as const;
export type RouterAttemptOutcome =
  | (typeof ROUTER_ATTEMPT_OUTCOMES.read)[number]
  | (typeof ROUTER_ATTEMPT_OUTCOMES.write)[number];

/** What the read router and the write forwarder report (RouterMetrics implements it). */
export interface RouterEvents {
  /** One attempt of a client's request at a node (`node`: its id, else its URL). */
  onAttempt(kind: RouterRequestKind, node: string, outcome: RouterAttemptOutcome): void;
  /** One client request, as the router ended it, and how long it took from arrival to answer. */
  onRequest(kind: RouterRequestKind, outcome: RouterRequestOutcome, seconds: number): void;
}

/** The label a node's series carry: its id, else its URL. */
export function routerNodeLabel(node: Pick<NodeView, 'nodeId' | 'url'>): string {
  return node.nodeId ?? node.url;
}

/** Buckets of a request through the router, in seconds: a forwarded read or write, up to a durable ack or a held write. */
const REQUEST_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

export interface RouterMetricsOptions {
  /** The router's view of the cluster now (the gauges). */
  snapshot: () => ClusterSnapshot;
  clock: Clock;
  /** Also export prom-client's process metrics (`process_*`, `nodejs_*`): once per process, for the CLI. */
  processMetrics?: boolean;
}

export class RouterMetrics implements RouterEvents {
  readonly registry = new Registry();
  readonly #options: RouterMetricsOptions;
  readonly #requests: Counter<'kind' | 'outcome'>;
  readonly #requestSeconds: Histogram<'kind' | 'outcome'>;
  readonly #attempts: Record<RouterRequestKind, Counter<'node' | 'outcome'>>;

  constructor(options: RouterMetricsOptions) {
    this.#options = options;
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'walship_router_requests_total',
      help: 'Client requests through the router by kind (read, write) and how the router ended them.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.#requestSeconds = new Histogram({
      name: 'walship_router_request_seconds',
      help: 'From a request’s arrival at the router to its answer, by kind and outcome (retries and waits for a primary included).',
      labelNames: ['kind', 'outcome'],
      buckets: REQUEST_BUCKETS_SECONDS,
      registers,
    });
    this.#attempts = {
      read: new Counter({
        name: 'walship_router_reads_total',
        help: 'Reads the router sent to each node, by outcome (ok, error, refused, unreachable).',
        labelNames: ['node', 'outcome'],
        registers,
      }),
      write: new Counter({
        name: 'walship_router_writes_total',
        help: 'Writes the router sent to each node, by outcome (ok, error, refused, unreachable, cut).',
        labelNames: ['node', 'outcome'],
        registers,
      }),
    };
    for (const kind of ['read', 'write'] as const)
      for (const outcome of ROUTER_REQUEST_OUTCOMES[kind]) this.#requests.inc({ kind, outcome }, 0);
    this.#viewGauges(registers);
    if (options.processMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  onAttempt(kind: RouterRequestKind, node: string, outcome: RouterAttemptOutcome): void {
    this.#attempts[kind].inc({ node, outcome });
  }

  onRequest(kind: RouterRequestKind, outcome: RouterRequestOutcome, seconds: number): void {
    this.#requests.inc({ kind, outcome });
    this.#requestSeconds.observe({ kind, outcome }, seconds);
  }

  /** The exposition text; every node the router knows has its attempt series, from 0. */
  render(): Promise<string> {
    for (const node of this.#options.snapshot().nodes) {
      const label = routerNodeLabel(node);
      for (const kind of ['read', 'write'] as const)
        for (const outcome of ROUTER_ATTEMPT_OUTCOMES[kind])
          this.#attempts[kind].inc({ node: label, outcome }, 0);
    }
    return this.registry.metrics();
  }

  /** The gauges read from the view at each scrape. */
  #viewGauges(registers: Registry[]): void {
    const { snapshot, clock } = this.#options;
    new Gauge({
      name: 'walship_router_primary_known',
      help: 'The router knows where writes go: 1 (a primary, or writers of a sequenced cluster), else 0.',
      registers,
      collect() {
        const primary = snapshot().primary;
        this.set(primary.url !== null || primary.writers.length > 0 ? 1 : 0);
      },
    });
    new Gauge<'node' | 'role'>({
      name: 'walship_router_node_up',
      help: 'Each node the router follows: 1 when its last /status answered, else 0; labelled with the role it reported.',
      labelNames: ['node', 'role'],
      registers,
      collect() {
        // A node's former role, or a node no longer followed, must not linger.
        this.reset();
        for (const node of snapshot().nodes)
          this.set({ node: routerNodeLabel(node), role: node.role }, node.error === null ? 1 : 0);
      },
    });
    new Gauge({
      name: 'walship_router_view_age_seconds',
      help: 'Time since the router last refreshed its view of the cluster (absent before the first refresh).',
      registers,
      collect() {
        this.reset();
        const refreshedAtMs = snapshot().refreshedAtMs;
        if (refreshedAtMs !== null) this.set((clock.monotonicMs() - refreshedAtMs) / 1000);
      },
    });
  }
}

/**
 * `GET /metrics` of the router: public like `/status`, unless query credentials are configured
 * (as `GET /cluster`: `query.auth.token`, else the `http.*` ones; 401 otherwise).
 */
export function createRouterMetricsHandler(options: {
  metrics: RouterMetrics;
  checkAuth: ((authorization: string | undefined) => boolean) | undefined;
}): HttpHandler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    if (pathOf(req.url) !== '/metrics') return false;
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      sendJson(res, 405, {
        code: 'method not allowed',
        message: `method ${req.method} not allowed on /metrics`,
      });
      return true;
    }
    if (options.checkAuth !== undefined && !options.checkAuth(req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer, Basic');
      sendJson(res, 401, {
        code: 'unauthorised',
        message: 'unauthorised: /metrics needs the query credentials',
      });
      return true;
    }
    const text = await options.metrics.render();
    res.writeHead(200, {
      'content-type': options.metrics.contentType,
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
    });
    res.end(text);
    return true;
  };
}
