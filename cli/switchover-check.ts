/**
 * What `walship switchover` checks before it demotes anything (issue 13 item 2): a switchover whose
 * target cannot take over costs a write outage (demote, wait, promote back) and a new epoch, so the
 * command reads both nodes' `/status` first and refuses, with every reason, while the primary is
 * still untouched.
 */
import { servesAllTablesSpec } from '../replica/index.js';

/** Default of `--max-lag-txns`: txns the target may be behind the primary, summed over tables. */
export const SWITCHOVER_MAX_LAG_TXNS_DEFAULT = 10_000n;

/** A node's `/status` as far as the check reads it; anything else in it is ignored. */
interface StatusShape {
  role?: unknown;
  clusterId?: unknown;
  acceptingWrites?: unknown;
  operation?: { name?: unknown; phase?: unknown } | null;
  following?: unknown;
  servedTables?: unknown;
  tables?: unknown;
}

interface TableShape {
  key?: unknown;
  name?: unknown;
  committedTxn?: unknown;
  appliedTxn?: unknown;
  suspended?: { code?: unknown; message?: unknown } | null;
}

export type SwitchoverReadiness =
  | { ready: true; lagTxns: bigint }
  | { ready: false; reasons: string[]; lagTxns: bigint | null };

/**
 * `from` and `to` are the parsed `/status` bodies (or an Error when a node did not answer).
 * Ready when `from` is an accepting primary, `to` a replica of the same cluster that follows every
 * table, is not bootstrapping, has no suspended table and is at most `maxLagTxns` txns behind.
 */
export function switchoverReadiness(
  from: unknown,
  to: unknown,
  options: { fromUrl: string; toUrl: string; maxLagTxns: bigint },
): SwitchoverReadiness {
  const reasons: string[] = [];
  if (from instanceof Error) reasons.push(`${options.fromUrl} did not answer /status: ${from.message}`);
  if (to instanceof Error) reasons.push(`${options.toUrl} did not answer /status: ${to.message}`);
  if (from instanceof Error || to instanceof Error) return { ready: false, reasons, lagTxns: null };
  const primary = (from ?? {}) as StatusShape;
  const target = (to ?? {}) as StatusShape;

  if (primary.role !== 'primary' || primary.acceptingWrites === false)
    reasons.push(`${options.fromUrl} is not an accepting primary (role ${String(primary.role)})`);
  if (target.role !== 'replica')
    reasons.push(`${options.toUrl} is not a replica (role ${String(target.role)})`);
  if (
    typeof primary.clusterId === 'string' &&
    typeof target.clusterId === 'string' &&
    primary.clusterId !== target.clusterId
  )
    reasons.push(
      `${options.toUrl} belongs to cluster ${target.clusterId}, ${options.fromUrl} to ${primary.clusterId}`,
    );
  if (target.operation?.name === 'bootstrap')
    reasons.push(`${options.toUrl} is still bootstrapping (${String(target.operation.phase ?? 'restore')})`);
  if (typeof target.following === 'object' && target.following !== null)
    reasons.push(`${options.toUrl} stopped following the store: ${JSON.stringify(target.following)}`);
  if (!servesAllTablesSpec(target.servedTables))
    reasons.push(
      `${options.toUrl} replicates chosen tables only (${JSON.stringify(target.servedTables)}): it cannot be promoted`,
    );

  const targetTables = tablesOf(target);
  for (const t of targetTables.values()) {
    if (t.suspended !== null && t.suspended !== undefined)
      reasons.push(
        `${options.toUrl} has table ${String(t.name ?? t.key)} suspended (${String(t.suspended.code)}: ${String(t.suspended.message)}); ` +
          'resolve it (walship admin resume) first',
      );
  }
  const lag = lagTxns(tablesOf(primary), targetTables);
  if (lag.total > options.maxLagTxns)
    reasons.push(
      `${options.toUrl} is ${lag.total} txns behind ${options.fromUrl} (most in ${lag.worst}), more than --max-lag-txns ${options.maxLagTxns}: ` +
        'wait until it catches up (walship status), or raise the bound and accept a longer write pause',
    );
  return reasons.length === 0
    ? { ready: true, lagTxns: lag.total }
    : { ready: false, reasons, lagTxns: lag.total };
}

function tablesOf(status: StatusShape): Map<string, TableShape> {
  const tables = Array.isArray(status.tables) ? (status.tables as TableShape[]) : [];
  return new Map(tables.filter((t) => typeof t.key === 'string').map((t) => [t.key as string, t]));
}

/** Sum over the primary's tables of committed − applied (a table the target lacks counts whole). */
function lagTxns(
  primary: Map<string, TableShape>,
  target: Map<string, TableShape>,
): { total: bigint; worst: string } {
  let total = 0n;
  let worst = { name: '-', behind: -1n };
  for (const [key, t] of primary) {
    const committed = txnOf(t.committedTxn);
    const applied = txnOf(target.get(key)?.appliedTxn);
    const behind = committed > applied ? committed - applied : 0n;
    total += behind;
    if (behind > worst.behind) worst = { name: String(t.name ?? key), behind };
  }
  return { total, worst: worst.name };
}

function txnOf(value: unknown): bigint {
  if (typeof value !== 'string' || !/^\d{1,19}$/.test(value)) return 0n;
  return BigInt(value);
}
