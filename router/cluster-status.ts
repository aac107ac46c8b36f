import type { ClusterStatus, ClusterStatusNode } from '../core/index.js';
import type { ClusterSnapshot, NodeView } from './cluster-view.js';

/**
 * The router's `GET /status/cluster` (issue 19): its ClusterView in the shape every node's status
 * page reads (core/status-page.ts), so the router serves the same page. Public like `/status`: node
 * ids, URLs, roles, epochs and lag, not the per-table detail of `/cluster` (which takes the query
 * credentials when they are set). Pure.
 */
export function routerClusterStatus(snapshot: ClusterSnapshot, nowMs: number): ClusterStatus {
  return {
    from: snapshot.nodesFrom,
    refreshedAgoMs: snapshot.refreshedAtMs === null ? null : Math.round(nowMs - snapshot.refreshedAtMs),
    primary: { nodeId: snapshot.primary.nodeId, url: snapshot.primary.url, why: snapshot.primary.why },
    nodes: snapshot.nodes.map((node) => nodeRow(node, nowMs)),
    storeError: snapshot.storeError,
    note: null,
  };
}

function nodeRow(node: NodeView, nowMs: number): ClusterStatusNode {
  const sinceSeenMs = node.seenAtMs === null ? null : Math.round(nowMs - node.seenAtMs);
  let backlogTxns: number | null = null;
  if (node.role === 'replica' && node.error === null) {
    backlogTxns = 0;
    for (const table of node.tables) backlogTxns += table.txnsBehind === null ? 0 : Number(table.txnsBehind);
  }
  return {
    nodeId: node.nodeId,
    url: node.url,
    role: node.role,
    epoch: node.epoch,
    appliedEpoch: null,
    acceptingWrites: node.error === null ? node.acceptingWrites : false,
    // A replica's staleness as of now: what it said plus the age of its answer (as `/cluster`).
    lagMs:
      node.role !== 'replica' || node.stalenessMs === null || sinceSeenMs === null
        ? null
        : Math.round(node.stalenessMs + sinceSeenMs),
    backlogTxns,
    lastSeenAgoMs: sinceSeenMs,
    registeredAgoMs: null,
    self: false,
    error: node.error,
  };
}
