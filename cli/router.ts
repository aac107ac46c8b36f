import { InvalidConfigError } from '../core/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { startRouter } from '../router/index.js';
import { loadConfig } from './config.js';
import { type CommandIo, EXIT, runUntilSignal } from './io.js';
import { nodeLogger } from './node.js';
import {
  httpAuth,
  httpListener,
  openNodeStore,
  packageVersion,
  pgListener,
  tokenAuth,
} from './node-settings.js';

export const ROUTER_USAGE = `walship router --replication.object.store=CONNSTRING [--router.nodes=URL,URL] [--key=value …]

One HTTP address in front of a walship cluster, for any client (curl, the official single-address
QuestDB clients, dashboards):
  POST /write, /api/v2/write   forwarded to the current primary; held and re-sent through a
                               switchover or failover (up to 30 s), then 503
  GET /exec, /exp              routed by read preference: header X-Walship-Read-Preference or
                               read_preference= (primary | replica | replica_preferred), else
                               router.read.preference; answers carry X-Walship-Served-By and
                               X-Walship-Staleness-Ms
  GET /cluster                 every node, its role, epoch, tables with txns and lag, and why the
                               primary is the primary (query credentials when configured)
  GET /metrics                 Prometheus: requests, reads and writes per node, what the router
                               believes (query credentials when configured)
  GET /status, /ping, /settings

Keys: replication.object.store (epoch records; the node list when router.nodes is unset),
router.nodes, router.read.preference, router.refresh.interval, http.bind.to, http.tls.*,
line.http.max.request.size, log.level; pg.* for its PostgreSQL door (reads routed as over HTTP;
SET READ_PREFERENCE = 'leader' | 'follower' | 'follower_preferred' per session). Credentials (http.user/http.password, http.auth.token,
ilp.auth.token, query.auth.token) are the nodes' own: the router passes the client's
Authorization header through unchanged, and checks the query credentials itself on /cluster and
/metrics only.
Several routers can run side by side: each keeps nothing but a cache of the cluster's state.
Example:
  walship router --replication.object.store='fs::root=/var/lib/walship/store;' --http.bind.to=0.0.0.0:9000`;

/** `walship router`: runs until SIGINT or SIGTERM. */
export async function runRouterCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(ROUTER_USAGE);
    return EXIT.ok;
  }
  const config = await loadConfig({ argv, env: io.env });
  const log = nodeLogger(String(config.get('log.level'))).child({ role: 'router' });
  const nodes = config
    .string('router.nodes')
    ?.split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  if (nodes !== undefined) {
    for (const url of nodes) {
      if (!/^https?:\/\/[^/]+\/?$/.test(url))
        throw new InvalidConfigError(
          `router.nodes: ${JSON.stringify(url)} is not a base URL like http://host:9000`,
        );
    }
  }
  if (config.get('replication.object.store') === undefined && nodes === undefined) {
    throw new InvalidConfigError(
      'walship router needs replication.object.store (the epoch records and node registrations) or router.nodes',
    );
  }
  const store: ObjectStore | undefined =
    config.get('replication.object.store') === undefined ? undefined : (await openNodeStore(config)).store;
  try {
    const http = await httpListener(config);
    const pg = config.bool('pg.enabled') ? await pgListener(config, http) : undefined;
    const router = await startRouter({
      nodes,
      store,
      ...(pg === undefined ? {} : { pg }),
      refreshIntervalMs: Math.max(50, config.number('router.refresh.interval')),
      readPreference: config.require('router.read.preference') as 'primary' | 'replica' | 'replica_preferred',
      http,
      maxRequestBytes: config.number('line.http.max.request.size'),
      writeRetryTimeoutMs: config.number('router.write.retry.timeout'),
      clusterAuth: tokenAuth(config, 'query.auth.token') ?? httpAuth(config),
      version: await packageVersion(),
      log,
      processMetrics: true,
    });
    const snapshot = router.view.snapshot;
    io.stdout(
      `walship router listening: http ${router.port}${router.pgPort === undefined ? '' : `, pg ${router.pgPort}`} (${snapshot.nodes.length} nodes from ${snapshot.nodesFrom}; ` +
        `primary ${snapshot.primary.nodeId ?? snapshot.primary.url ?? 'none yet'})`,
    );
    await runUntilSignal(router, { close: async () => store?.close() }, log);
  } catch (error) {
    await store?.close();
    throw error;
  }
  return EXIT.ok;
}
