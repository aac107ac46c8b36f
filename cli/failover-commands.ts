import { InvalidConfigError, systemClock } from '../core/index.js';
import { adminTokenOf } from './admin-token.js';
import { loadConfig, parseDurationMs } from './config.js';
import { type CommandIo, EXIT } from './io.js';
import { SWITCHOVER_MAX_LAG_TXNS_DEFAULT, switchoverReadiness } from './switchover-check.js';

export const PROMOTE_USAGE = `walship promote --node URL [--reason TEXT] [--config server.conf] [--admin.token=… | --admin.token.file=F]

Unplanned failover (RFC-0002): the replica at URL catches up with the store, takes the next epoch,
fences every table and starts taking writes. The old primary, if it still runs, is fenced at its
next upload. Two replicas promoted at once: one wins, the other answers 409 and stays a replica.`;

export const SWITCHOVER_USAGE = `walship switchover --from URL --to URL [--timeout 30s] [--max-lag-txns N] [--config server.conf] [--admin.token=… | --admin.token.file=F]

Planned switchover without loss or restarts (RFC-0002): demote the primary at --from (writes stop
with 421, everything is uploaded, each table's last txn reported), wait until the replica at --to
has applied those txns, promote it; the old primary follows as a replica. If the replica does not
catch up in time, the old primary is promoted back and the command fails.

Before anything is demoted, both nodes' /status are read: the command refuses (exit 1, the primary
untouched) unless --from is an accepting primary and --to a replica of the same cluster that answers,
follows every table, is not bootstrapping, has no suspended table and is at most --max-lag-txns
txns behind (summed over tables; default ${SWITCHOVER_MAX_LAG_TXNS_DEFAULT}).`;

type Fetch = typeof fetch;

/** How long the pre-check waits for a node's `/status` (a node that answers slower is not ready). */
const STATUS_TIMEOUT_MS = 5_000;

/** `walship promote --node URL`. */
export async function promoteCommand(
  argv: string[],
  io: CommandIo,
  fetchImpl: Fetch = fetch,
): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(PROMOTE_USAGE);
    return EXIT.ok;
  }
  const { own, token } = await parse(argv, io, ['node', 'reason']);
  const node = requireFlag(own, 'node');
  const params = own.reason === undefined ? '' : `?reason=${encodeURIComponent(own.reason)}`;
  const answer = await post(fetchImpl, node, `/admin/promote${params}`, token);
  (answer.ok ? io.stdout : io.stderr)(JSON.stringify(answer.body));
  return answer.ok ? EXIT.ok : exitOf(answer.status);
}

/** `walship switchover --from A --to B`. */
export async function switchoverCommand(
  argv: string[],
  io: CommandIo,
  fetchImpl: Fetch = fetch,
): Promise<number> {
  if (argv.includes('--help')) {
    io.stdout(SWITCHOVER_USAGE);
    return EXIT.ok;
  }
  const { own, token } = await parse(argv, io, ['from', 'to', 'timeout', 'max-lag-txns']);
  const from = requireFlag(own, 'from');
  const to = requireFlag(own, 'to');
  const timeoutMs = own.timeout === undefined ? 30_000 : parseDurationMs(own.timeout);
  if (timeoutMs === undefined) throw new InvalidConfigError('--timeout: expected a duration such as 30s');
  const maxLagTxns = parseMaxLag(own['max-lag-txns']);
  const readiness = switchoverReadiness(await getStatus(fetchImpl, from), await getStatus(fetchImpl, to), {
    fromUrl: from,
    toUrl: to,
    maxLagTxns,
  });
  if (!readiness.ready) {
    io.stderr(
      `walship: switchover refused, nothing was demoted:\n${readiness.reasons.map((r) => `  - ${r}`).join('\n')}`,
    );
    return EXIT.failed;
  }
  const startedAt = systemClock.monotonicMs();
  const demoted = await post(fetchImpl, from, '/admin/demote', token);
  const demotedAt = systemClock.monotonicMs();
  if (!demoted.ok) {
    io.stderr(`walship: ${from} refused to demote: ${JSON.stringify(demoted.body)}`);
    return exitOf(demoted.status);
  }
  const { lastTxns = {}, epoch: demotedEpoch } = demoted.body as {
    lastTxns?: Record<string, string>;
    epoch?: string;
  };
  // Both promotions below happen only if nobody took the next epoch meanwhile (an automatic
  // failover, another operator): the switchover must never fence a primary that took over.
  const onlyAfter = demotedEpoch === undefined ? '' : `&only_after_epoch=${encodeURIComponent(demotedEpoch)}`;
  const caughtUp = await waitApplied(fetchImpl, to, lastTxns, timeoutMs);
  const appliedAt = systemClock.monotonicMs();
  if (caughtUp === 'promoted') {
    // Promotion catches up with the store first, and the demoted primary had uploaded everything.
    const pauseMs = Math.round(systemClock.monotonicMs() - startedAt);
    const oldPrimary = (await waitRole(fetchImpl, from, 'replica', timeoutMs))
      ? 'replica'
      : 'not yet a replica';
    io.stdout(
      JSON.stringify({
        from,
        to,
        lastTxns,
        writePauseMs: pauseMs,
        promotedBy: 'another promotion',
        oldPrimary,
      }),
    );
    io.stderr(
      `switchover done: ${to} was promoted by something else meanwhile (automatic failover?); ${from} is ${oldPrimary} following it; nothing lost`,
    );
    return EXIT.ok;
  }
  if (caughtUp === 'timeout') {
    const back = await post(fetchImpl, from, `/admin/promote?reason=switchover-aborted${onlyAfter}`, token);
    io.stderr(
      `walship: ${to} did not apply ${JSON.stringify(lastTxns)} within ${timeoutMs} ms; ` +
        `switchover aborted, ${from} ${back.ok ? 'is the primary again' : `could not be promoted back: ${JSON.stringify(back.body)}`}`,
    );
    return EXIT.failed;
  }
  const promoted = await post(fetchImpl, to, `/admin/promote?reason=switchover${onlyAfter}`, token);
  const pauseMs = Math.round(systemClock.monotonicMs() - startedAt);
  if (!promoted.ok) {
    io.stderr(
      `walship: ${to} refused the promotion: ${JSON.stringify(promoted.body)}; ${from} is a replica now`,
    );
    return exitOf(promoted.status);
  }
  const epoch = (promoted.body as { epoch?: string }).epoch;
  // Where the pause went: demote (stop, upload everything), wait (the target applies it), promote.
  const phasesMs = {
    demote: Math.round(demotedAt - startedAt),
    waitApplied: Math.round(appliedAt - demotedAt),
    promote: Math.round(systemClock.monotonicMs() - appliedAt),
  };
  // The old primary answered the demotion once everything was uploaded and changes role meanwhile
  // (outside the write pause); the command ends once it follows as a replica.
  const oldPrimary = (await waitRole(fetchImpl, from, 'replica', timeoutMs))
    ? 'replica'
    : 'not yet a replica';
  io.stdout(JSON.stringify({ from, to, epoch, lastTxns, writePauseMs: pauseMs, phasesMs, oldPrimary }));
  io.stderr(
    `switchover done: ${to} is the primary at epoch ${epoch}; writes paused ${pauseMs} ms; nothing lost; ` +
      `${from} is ${oldPrimary}`,
  );
  return EXIT.ok;
}

/**
 * Polls `to`'s /status until every table in `lastTxns` (by key) is applied that far ('applied'),
 * `to` answers as a primary ('promoted': something else promoted it), or the time is up.
 */
async function waitApplied(
  fetchImpl: Fetch,
  to: string,
  lastTxns: Record<string, string>,
  timeoutMs: number,
): Promise<'applied' | 'promoted' | 'timeout'> {
  const deadline = systemClock.monotonicMs() + timeoutMs;
  while (systemClock.monotonicMs() < deadline) {
    try {
      const response = await fetchImpl(new URL('/status', to));
      const status = (await response.json()) as {
        role?: string;
        tables?: { key: string; appliedTxn?: string }[];
      };
      if (status.role === 'primary') return 'promoted';
      const applied = new Map((status.tables ?? []).map((t) => [t.key, BigInt(t.appliedTxn ?? '0')]));
      if (Object.entries(lastTxns).every(([key, txn]) => (applied.get(key) ?? 0n) >= BigInt(txn)))
        return 'applied';
    } catch {
      // the replica may be busy or restarting its role: ask again
    }
    await systemClock.sleep(20);
  }
  return 'timeout';
}

/** `--max-lag-txns N`: a non-negative integer. */
function parseMaxLag(text: string | undefined): bigint {
  if (text === undefined) return SWITCHOVER_MAX_LAG_TXNS_DEFAULT;
  if (!/^\d{1,18}$/.test(text))
    throw new InvalidConfigError('--max-lag-txns: expected a whole number of txns');
  return BigInt(text);
}

/** GET `/status` of a node: its JSON, or an Error saying why there is none (bounded by 5 s). */
async function getStatus(fetchImpl: Fetch, base: string): Promise<unknown> {
  try {
    const response = await fetchImpl(new URL('/status', base), {
      signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
    });
    const text = await response.text();
    if (!response.ok) return new Error(`HTTP ${response.status}`);
    return JSON.parse(text) as unknown;
  } catch (error) {
    return new Error((error as Error).message);
  }
}

/** Polls `base`'s /status until its role is `role` (true) or `timeoutMs` pass (false). */
async function waitRole(fetchImpl: Fetch, base: string, role: string, timeoutMs: number): Promise<boolean> {
  const deadline = systemClock.monotonicMs() + timeoutMs;
  while (systemClock.monotonicMs() < deadline) {
    const status = await getStatus(fetchImpl, base);
    if (!(status instanceof Error) && (status as { role?: unknown }).role === role) return true;
    await systemClock.sleep(20);
  }
  return false;
}

async function parse(argv: string[], io: CommandIo, names: string[]) {
  const own: Record<string, string> = {};
  const others: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (match === null || !names.includes(match[1]!)) {
      others.push(arg);
      continue;
    }
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new InvalidConfigError(`--${match[1]} needs a value`);
    own[match[1]!] = value;
  }
  const config = await loadConfig({ argv: others, env: io.env });
  const token = await adminTokenOf(config);
  if (token === undefined)
    throw new InvalidConfigError(
      'admin.token is required (WALSHIP_ADMIN_TOKEN, --admin.token or --admin.token.file)',
    );
  return { own, token };
}

function requireFlag(own: Record<string, string>, name: string): string {
  const value = own[name];
  if (value === undefined) throw new InvalidConfigError(`--${name} URL is required`);
  try {
    return new URL(value).origin;
  } catch {
    throw new InvalidConfigError(`--${name}: not a URL (expected http://host:port)`);
  }
}

async function post(fetchImpl: Fetch, base: string, pathAndQuery: string, token: string) {
  try {
    const response = await fetchImpl(new URL(pathAndQuery, base), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { ok: response.ok, status: response.status, body };
  } catch (error) {
    return {
      ok: false,
      status: 0,
      body: { code: 'unreachable', message: `${base}: ${(error as Error).message}` },
    };
  }
}

function exitOf(status: number): number {
  return status === 0 || status >= 500 ? EXIT.unavailable : EXIT.failed;
}
