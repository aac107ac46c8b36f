/**
 * Failover proper: promotion and its fences, the primary's lease and its watchers, and the
 * sequencer's epoch holder (DESIGN §7, RFC-0002). The node process that changes roles is node/.
 */

export { LeaseKeeper, LeaseWatcher } from './lease.js';
export { type PromoteOptions, type Promotion, promote } from './promote.js';
export {
  initSequencedCluster,
  SEQUENCER_EPOCH_HOLDER,
  sequencedCluster,
} from './sequenced-cluster.js';
