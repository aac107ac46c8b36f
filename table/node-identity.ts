import { randomBytes } from 'node:crypto';
import { WalshipError } from '../core/index.js';
import type { TableStore } from './table-store.js';

/** The key/value entry that holds a data dir's node id for life. */
const NODE_ID_KEY = 'node.id';
/** A node id goes into write ids, snapshot ids and logs: a short, plain token. */
const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The node id of the data dir behind `tables`: the configured one, the stored one, or a new random
 * one (stored at once). A node keeps its id for life, so a configured id that differs from the
 * stored one is refused with NODE_ID_MISMATCH: two data dirs must never answer to one id. A
 * configured id outside NODE_ID_PATTERN is refused with INVALID_NODE_ID.
 */
export function resolveNodeId(tables: TableStore, configured: string | undefined): string {
  if (configured !== undefined && !NODE_ID_PATTERN.test(configured)) {
    throw new WalshipError(
      'INVALID_NODE_ID',
      'invalid',
      "node.id must be 1 to 64 characters of A-Z a-z 0-9 . _ - (it names segments' write ids and snapshots)",
    );
  }
  const stored = tables.getMeta(NODE_ID_KEY);
  if (configured !== undefined && stored !== undefined && configured !== stored) {
    throw new WalshipError(
      'NODE_ID_MISMATCH',
      'invalid',
      `node.id is ${configured} but this data dir belongs to node ${stored}; a node keeps its id for life`,
    );
  }
  const nodeId = configured ?? stored ?? `node-${randomBytes(4).toString('hex')}`;
  if (stored === undefined) tables.setMeta(NODE_ID_KEY, nodeId);
  return nodeId;
}
