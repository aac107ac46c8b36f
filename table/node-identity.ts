import { randomBytes } from 'node:crypto';
import { WalshipError } from '../core/index.js';
import type { TableStore } from './table-store.js';

/** The key/value entry that holds a data dir's node id for life. */
const NODE_ID_KEY = 'node.id';

/**
 * The node id of the data dir behind `tables`: the configured one, the stored one, or a new random
 * one (stored at once). A node keeps its id for life, so a configured id that differs from the
 * stored one is refused with NODE_ID_MISMATCH: two data dirs must never answer to one id.
 */
export function resolveNodeId(tables: TableStore, configured: string | undefined): string {
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
