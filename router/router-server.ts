import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { Agent } from 'undici';
import type { ReadPreference } from '../client/index.js';
import {
  type Clock,
  createHttpAuthenticator,
  createStatusPageHandler,
  type HttpAuth,
  type HttpHandler,
  type HttpListenerOptions,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
  systemClock,
} from '../core/index.js';
import { DEFAULT_ILP_LIMITS } from '../ilp/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { PG_SERVER_VERSION, type PgServer } from '../pg/index.js';
import { routerClusterStatus } from './cluster-status.js';
import { type ClusterSnapshot, ClusterView, type NodeView } from './cluster-view.js';
import { pathOf } from './forwarding.js';
import { type RouterPgOptions, startRouterPgDoor } from './pg-door.js';
import { createReadRouter } from './read-router.js';
import { RouterTokens } from './read-your-writes.js';
import { createRouterMetricsHandler, RouterMetrics } from './router-metrics.js';
import { createWriteForwarder, WRITE_RETRY_TIMEOUT_MS } from './write-forwarder.js';

/**
 * `walship router`: one HTTP address in front of a cluster (issue 9). Writes go to the primary
 * (write-forwarder.ts), reads by read preference (read-router.ts); `GET /cluster` shows what the
 * router knows, `GET /status` the router itself, `GET /` a status page of both (read from `/status`
 * and `/status/cluster`); `/ping` and `/settings` answer as a QuestDB node so the official clients
 * accept the router as their single address. The router keeps no state but
 * its ClusterView cache: any number of routers can run side by side.
 */

export interface RouterOptions {
  /** `router.nodes`; undefined = the nodes registered in `store`. */
  nodes?: readonly string[] | undefined;
  /** The cluster's store (`replication.object.store`): epoch records and registrations. */
  store?: ObjectStore | undefined;
  /** `router.refresh.interval`, ms. */
  refreshIntervalMs: number;
  /** `router.read.preference`. */
  readPreference: ReadPreference;
  http: HttpListenerOptions;
  /** `line.http.max.request.size`: the largest write body, as the nodes. */
  maxRequestBytes: number;
  /** How long a write waits for a primary (ms); default WRITE_RETRY_TIMEOUT_MS. */
  writeRetryTimeoutMs?: number;
  /** Credentials `GET /cluster` needs (`query.auth.token`, else the http.* ones); undefined = open. */
  clusterAuth?: HttpAuth | undefined;
  /** `release.version` in `/settings`. */
  version: string;
  log: Logger;
  clock?: Clock;
  /** The PostgreSQL door (`pg.*`, as on a node): reads routed as HTTP reads are (pg-door.ts). */
  pg?: RouterPgOptions | undefined;
  /** `GET /metrics` also exports prom-client's process metrics: once per process, for the CLI. */
  processMetrics?: boolean;
}

export interface RunningRouter {
  port: number;
  /** The PostgreSQL door's port, when it listens. */
  pgPort?: number;
  view: ClusterView;
  close(): Promise<void>;
}

/** Forwarded requests in flight per node origin; undici queues the rest. */
const CONNECTIONS_PER_NODE_MAX = 256;

/** Starts the router: one refresh of the view first, so the first request finds the cluster. */
export async function startRouter(options: RouterOptions): Promise<RunningRouter> {
  const clock = options.clock ?? systemClock;
  const view = new ClusterView({
    nodes: options.nodes,
    store: options.store,
    refreshIntervalMs: options.refreshIntervalMs,
    log: options.log,
    clock,
  });
  await view.start();
  const agent = new Agent({ keepAliveTimeout: 30_000, pipelining: 1, connections: CONNECTIONS_PER_NODE_MAX });
  const startedMs = clock.monotonicMs();
  const checkAuth =
    options.clusterAuth === undefined ? undefined : createHttpAuthenticator(options.clusterAuth);
  // Read-your-writes: what the router wrote, its reads wait for (read-your-writes.ts).
  const tokens = new RouterTokens();
  const metrics = new RouterMetrics({
    snapshot: () => view.snapshot,
    clock,
    processMetrics: options.processMetrics === true,
  });
  const routes: HttpHandler[] = [
    createWriteForwarder({
      view,
      agent,
      tokens,
      maxRequestBytes: options.maxRequestBytes,
      retryTimeoutMs: options.writeRetryTimeoutMs ?? WRITE_RETRY_TIMEOUT_MS,
      log: options.log,
      clock,
      events: metrics,
    }),
    createReadRouter({
      view,
      agent,
      preference: options.readPreference,
      log: options.log,
      tokens,
      events: metrics,
      clock,
    }),
    // `GET /metrics`: what the router forwarded and what it believes (router-metrics.ts).
    createRouterMetricsHandler({ metrics, checkAuth }),
    async (req, res) => answerOwn(req, res, { view, options, clock, startedMs, checkAuth }),
    // The status page (`GET /`), drawn from `/status` and `/status/cluster` (issue 19).
    createStatusPageHandler(),
  ];
  let http: RunningHttpServer;
  try {
    http = await startHttpServer(routes, options.http, options.log);
  } catch (error) {
    await view.close();
    await agent.close();
    throw error;
  }
  let pg: PgServer | undefined;
  if (options.pg !== undefined) {
    try {
      pg = await startRouterPgDoor({
        ...options.pg,
        serverVersion: PG_SERVER_VERSION,
        routerUrl: selfUrl(options.http, http.port),
        view: () => view.snapshot,
        monotonicMs: () => clock.monotonicMs(),
        nodeAgent: agent,
        // Its own listener, on loopback: a TLS certificate names the public host, not 127.0.0.1.
        agent: options.http.tls === undefined ? agent : new Agent({ connect: { rejectUnauthorized: false } }),
      });
    } catch (error) {
      await http.close();
      await view.close();
      await agent.close();
      throw error;
    }
  }
  return {
    port: http.port,
    ...(pg === undefined ? {} : { pgPort: pg.port }),
    view,
    close: async () => {
      await pg?.close();
      await http.close();
      await view.close();
      await agent.close();
    },
  };
}

/** The router's own HTTP listener as its PostgreSQL door reaches it. */
function selfUrl(http: HttpListenerOptions, port: number): string {
  const host = http.host === '0.0.0.0' || http.host === '::' || http.host === '' ? '127.0.0.1' : http.host;
  const shown = host.includes(':') ? `[${host}]` : host;
  return `${http.tls === undefined ? 'http' : 'https'}://${shown}:${port}`;
}

interface OwnContext {
  view: ClusterView;
  options: RouterOptions;
  clock: Clock;
  startedMs: number;
  checkAuth: ((authorization: string | undefined) => boolean) | undefined;
}

/** `/ping`, `/settings`, `/status`, `/status/cluster`, `/cluster`, `/health`: answered by the router itself. */
async function answerOwn(req: IncomingMessage, res: ServerResponse, context: OwnContext): Promise<boolean> {
  const path = pathOf(req.url);
  if (
    path !== '/ping' &&
    path !== '/settings' &&
    path !== '/status' &&
    path !== '/status/cluster' &&
    path !== '/cluster' &&
    path !== '/health'
  )
    return false;
  const allowed = path === '/ping' || path === '/health' ? ['GET', 'HEAD'] : ['GET'];
  if (!allowed.includes(req.method ?? '')) {
    res.setHeader('Allow', allowed.join(', '));
    sendJson(res, 405, {
      code: 'method not allowed',
      message: `method ${req.method} not allowed on ${path}`,
    });
    return true;
  }
  if (path === '/ping') {
    res.writeHead(204, { 'X-Influxdb-Version': 'v2.7.4' });
    res.end();
  } else if (path === '/settings') {
    sendJson(res, 200, settingsBody(context.options.version));
  } else if (path === '/status') {
    sendJson(res, 200, routerStatus(context));
  } else if (path === '/status/cluster') {
    res.setHeader('cache-control', 'no-store');
    sendJson(res, 200, routerClusterStatus(context.view.snapshot, context.clock.monotonicMs()));
  } else if (path === '/health') {
    answerHealth(req, res, context);
  } else if (context.checkAuth !== undefined && !context.checkAuth(req.headers.authorization)) {
    sendJson(res, 401, {
      code: 'unauthorised',
      message: 'unauthorised: /cluster needs the query credentials',
    });
  } else {
    sendJson(res, 200, clusterBody(context.view.snapshot, context.clock.monotonicMs()));
  }
  return true;
}

/**
 * `GET|HEAD /health` of the router (issue 19): 200 while it knows where writes go (a primary, or the
 * writers of a sequenced cluster); with `?max_staleness_ms=N`, also while at least one reachable
 * replica last reported a staleness within N (reads of `replica` preference need one). 503 with
 * the reason otherwise.
 */
function answerHealth(req: IncomingMessage, res: ServerResponse, context: OwnContext): void {
  const bound = new URL(req.url ?? '/', 'http://localhost').searchParams.get('max_staleness_ms');
  if (bound !== null && !/^\d{1,12}$/.test(bound)) {
    sendJson(res, 400, {
      code: 'invalid',
      message: 'max_staleness_ms must be a whole number of milliseconds',
    });
    return;
  }
  const snapshot = context.view.snapshot;
  let reason: string | null = null;
  if (snapshot.primary.url === null) reason = `no primary to write to: ${snapshot.primary.why}`;
  else if (bound !== null) {
    const fresh = snapshot.nodes.filter(
      (n) =>
        n.role === 'replica' && n.error === null && n.stalenessMs !== null && n.stalenessMs <= Number(bound),
    );
    if (fresh.length === 0) reason = `no reachable replica within max_staleness_ms=${bound}`;
  }
  res.setHeader('cache-control', 'no-store');
  if (req.method === 'HEAD') {
    res.writeHead(reason === null ? 200 : 503);
    res.end();
    return;
  }
  sendJson(res, reason === null ? 200 : 503, {
    status: reason === null ? 'ok' : 'unavailable',
    role: 'router',
    primary: snapshot.primary.url,
    ...(reason === null ? {} : { reason }),
  });
}

/**
 * QuestDB's `/settings` (ilp/http-handler.ts). The router always lists `http` in
 * `accepting.writes`: it takes writes whoever the primary is, and holds them through a switchover.
 */
function settingsBody(version: string): Record<string, unknown> {
  return {
    config: {
      'release.type': 'OSS',
      'release.version': version,
      'accepting.writes': ['http'],
      'line.proto.support.versions': [1, 2, 3],
      'ilp.proto.transports': ['http'],
      'cairo.max.file.name.length': DEFAULT_ILP_LIMITS.maxNameBytes,
    },
    'preferences.version': 0,
    preferences: {},
  };
}

function routerStatus(context: OwnContext): Record<string, unknown> {
  const snapshot = context.view.snapshot;
  const now = context.clock.monotonicMs();
  return {
    role: 'router',
    version: context.options.version,
    upMs: Math.round(now - context.startedMs),
    readPreference: context.options.readPreference,
    refreshIntervalMs: context.options.refreshIntervalMs,
    refreshedAgoMs: snapshot.refreshedAtMs === null ? null : Math.round(now - snapshot.refreshedAtMs),
    nodesFrom: snapshot.nodesFrom,
    nodes: snapshot.nodes.length,
    reachable: snapshot.nodes.filter((n) => n.error === null).length,
    primary: { nodeId: snapshot.primary.nodeId, url: snapshot.primary.url, why: snapshot.primary.why },
    storeError: snapshot.storeError,
  };
}

/** `GET /cluster`: every node, its role, epoch, tables served with their txns and lag, and the primary. */
export function clusterBody(snapshot: ClusterSnapshot, nowMs: number): Record<string, unknown> {
  const primary = snapshot.nodes.find((n) => n.url === snapshot.primary.url);
  const committed = new Map((primary?.tables ?? []).map((t) => [t.name.toLowerCase(), t.committedTxn]));
  return {
    refreshedAgoMs: snapshot.refreshedAtMs === null ? null : Math.round(nowMs - snapshot.refreshedAtMs),
    nodesFrom: snapshot.nodesFrom,
    primary: {
      nodeId: snapshot.primary.nodeId,
      url: snapshot.primary.url,
      epoch: snapshot.primary.epoch,
      writers: snapshot.primary.writers,
      why: snapshot.primary.why,
    },
    epochRecord:
      snapshot.epochRecord === null
        ? null
        : { ...snapshot.epochRecord, epoch: String(snapshot.epochRecord.epoch) },
    storeError: snapshot.storeError,
    nodes: snapshot.nodes.map((node) => nodeBody(node, node === primary, committed, nowMs)),
  };
}

function nodeBody(
  node: NodeView,
  isPrimary: boolean,
  committed: Map<string, string | null>,
  nowMs: number,
): Record<string, unknown> {
  const sinceSeenMs = node.seenAtMs === null ? null : Math.round(nowMs - node.seenAtMs);
  return {
    nodeId: node.nodeId,
    url: node.url,
    role: node.role,
    primary: isPrimary,
    epoch: node.epoch,
    acceptingWrites: node.acceptingWrites,
    sequenced: node.sequenced,
    stalenessMs:
      node.stalenessMs === null || sinceSeenMs === null ? null : Math.round(node.stalenessMs + sinceSeenMs),
    lastSeenAgoMs: sinceSeenMs,
    lastSeenAt: node.lastSeenAt,
    error: node.error,
    tables: node.tables.map((t) => {
      const head = committed.get(t.name.toLowerCase()) ?? null;
      const lagTxns =
        t.appliedTxn === null || head === null
          ? null
          : String(maxBig(0n, BigInt(head) - BigInt(t.appliedTxn)));
      return {
        name: t.name,
        committedTxn: t.committedTxn,
        appliedTxn: t.appliedTxn,
        txnsBehind: t.txnsBehind,
        lagTxns,
        suspended: t.suspended,
      };
    }),
  };
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
