/**
 * `walship router` (issue 9): a stateless HTTP front that forwards ILP writes to the current
 * primary, routes reads by read preference, and shows the cluster (`GET /cluster`).
 */
export {
  type ClusterSnapshot,
  ClusterView,
  type ClusterViewOptions,
  choosePrimary,
  type EpochFacts,
  type NodeView,
  orderReplicas,
  type PrimaryChoice,
  parseNodeStatus,
  type ReadCandidate,
  STALENESS_TIE_MS,
} from './cluster-view.js';
export { READ_HEADERS_TIMEOUT_MS } from './read-router.js';
export {
  ROUTER_ATTEMPT_OUTCOMES,
  ROUTER_REQUEST_OUTCOMES,
  type RouterEvents,
  RouterMetrics,
  type RouterMetricsOptions,
} from './router-metrics.js';
export { clusterBody, type RouterOptions, type RunningRouter, startRouter } from './router-server.js';
export { type QueryTables, tablesOfQuery } from './sql-tables.js';
export { WRITE_RETRY_TIMEOUT_MS } from './write-forwarder.js';
