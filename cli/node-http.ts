/**
 * What the drill and the demo ask running walship nodes over HTTP: `/status` (once, or until it
 * shows what they wait for), `/admin/*` with the admin token, one row to `/write`, and every `id`
 * of a table through `/exec`. A node that does not answer in time is "unreachable", never an
 * exception: a killed or stopped node is part of what these commands do.
 */
import { systemClock, WalshipError } from '../core/index.js';

// --- Bounds -------------------------------------------------------------------------------------

/** A node's answer to /status must come within this (a stopped node never answers). */
const STATUS_TIMEOUT_MS = 1_000;
/** /admin/demote and /admin/promote upload or catch up first: they may take a while. */
const ADMIN_TIMEOUT_MS = 60_000;
const QUERY_TIMEOUT_MS = 60_000;
/** Rows per /exec page when reading a table back. */
const QUERY_PAGE_ROWS = 200_000;
/** How often a wait looks again (at a node's /status, or at a condition). */
export const STATUS_POLL_MS = 20;

// --- /status ------------------------------------------------------------------------------------

/** A fenced or replaced primary's txns that never reached the store (node/walship-node.ts). */
export interface DivergenceInfo {
  epoch: string;
  files: { table: string; key: string; file: string; txns: number; rows: number }[];
  movedTo: string | null;
}

/** The parts of a primary's or a replica's `/status` these commands read. */
export interface NodeStatus {
  role?: string;
  nodeId?: string | null;
  epoch?: string;
  acceptingWrites?: boolean;
  ackMode?: string;
  fencedBy?: string | null;
  stalenessMs?: number | null;
  divergence?: DivergenceInfo;
  tables?: NodeTableStatus[];
}

/** One table of `/status`: the primary's watermarks, or the replica's. Txn numbers as decimal text. */
export interface NodeTableStatus {
  name: string;
  committedTxn?: string;
  uploadedTxn?: string;
  pendingTxns?: number;
  appliedTxn?: string;
  /** A replica's: the epoch of the newest txn it applied; null on a sequenced node (its tables have none). */
  epoch?: string | null;
  /** A replica's: null when its source does not know the table's head. */
  txnsBehind?: string | null;
  suspended?: { code: string; message: string } | null;
}

/** The node's `/status`, or null when it does not answer 200 within STATUS_TIMEOUT_MS. */
export async function statusOf(url: string): Promise<NodeStatus | null> {
  try {
    const response = await fetch(new URL('/status', url), { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
    if (!response.ok) return null;
    return (await response.json()) as NodeStatus;
  } catch {
    return null;
  }
}

export function isAcceptingPrimary(status: NodeStatus | null | undefined): boolean {
  return status?.role === 'primary' && status.acceptingWrites === true;
}

/** "url role, url role, …" for error messages. */
export function describeRoles(urls: string[], statuses: (NodeStatus | null | undefined)[]): string {
  return urls.map((url, i) => `${url} ${statuses[i]?.role ?? 'unreachable'}`).join(', ');
}

/** Polls `url`'s /status until `accept` says yes or `timeoutMs` passed; returns the last answer. */
export async function waitForStatus(
  url: string,
  accept: (status: NodeStatus) => boolean,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<NodeStatus | null> {
  const deadline = systemClock.monotonicMs() + timeoutMs;
  for (;;) {
    const status = await statusOf(url);
    if (status !== null && accept(status)) return status;
    if (systemClock.monotonicMs() > deadline || signal?.aborted === true) return status;
    await sleep(STATUS_POLL_MS);
  }
}

/** The first of `urls` whose /status shows an accepting primary, within `timeoutMs` (or until aborted). */
export async function waitForPrimary(
  urls: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const deadline = systemClock.monotonicMs() + timeoutMs;
  do {
    const statuses = await Promise.all(urls.map((url) => statusOf(url)));
    const index = statuses.findIndex(isAcceptingPrimary);
    if (index >= 0) return urls[index];
    await sleep(STATUS_POLL_MS);
  } while (systemClock.monotonicMs() < deadline && signal?.aborted !== true);
  return undefined;
}

// --- /admin, /write, /exec ----------------------------------------------------------------------

/** POST an admin route with the bearer token; the body as JSON when it is JSON. Never throws. */
export async function postAdmin(
  url: string,
  pathAndQuery: string,
  token: string,
): Promise<{ ok: boolean; body: unknown }> {
  try {
    const response = await fetch(new URL(pathAndQuery, url), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { ok: response.ok, body };
  } catch (error) {
    return { ok: false, body: `${url}: ${(error as Error).message}` };
  }
}

/** One row straight to `/write` on one node (a stale client); true when it answered 204. */
export async function writeOne(url: string, table: string, id: number, timeoutMs: number): Promise<boolean> {
  try {
    const response = await fetch(new URL('/write', url), {
      method: 'POST',
      body: `${table} id=${id}i,v=${id / 2} ${BigInt(Math.floor(systemClock.wallMs())) * 1_000_000n}\n`,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.arrayBuffer();
    return response.status === 204;
  } catch {
    return false;
  }
}

/**
 * GET `/exec` for `sql` (with `params`, e.g. `limit`) and return the raw body text; a table that
 * does not exist is `null`. Throws NODE_READ_FAILED (unavailable) on any other refusal.
 */
export async function execText(
  url: string,
  sql: string,
  params: Record<string, string> = {},
): Promise<string | null> {
  const query = new URLSearchParams({ query: sql, ...params });
  const response = await fetch(new URL(`/exec?${query}`, url), {
    signal: AbortSignal.timeout(QUERY_TIMEOUT_MS),
  });
  const text = await response.text();
  if (response.ok) return text;
  if (/no such table/i.test(text)) return null;
  throw new WalshipError(
    'NODE_READ_FAILED',
    'unavailable',
    `${url} /exec ${sql}: ${response.status} ${text}`,
  );
}

/** Every `id` of `table` on the node at `url`, page by page; a table that does not exist has none. */
export async function readIds(url: string, table: string): Promise<number[]> {
  const ids: number[] = [];
  for (let lo = 1; ; lo += QUERY_PAGE_ROWS) {
    const text = await execText(url, `SELECT id FROM ${quoteSqlIdentifier(table)}`, {
      limit: `${lo},${lo + QUERY_PAGE_ROWS - 1}`,
    });
    if (text === null) return ids;
    const page = (JSON.parse(text) as { dataset?: [number][] }).dataset ?? [];
    for (const [id] of page) ids.push(id);
    if (page.length < QUERY_PAGE_ROWS) return ids;
  }
}

/** A SQL identifier, double-quoted (a `"` inside doubled). */
export function quoteSqlIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// --- Waiting ------------------------------------------------------------------------------------

/** Resolves after `ms`, or at once when `signal` is (or gets) aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const done = () => {
      timer.cancel();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = systemClock.setTimer(ms, done);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Polls `done` every STATUS_POLL_MS until it is true (→ true), or `timeoutMs` passed or `signal`
 * was aborted (→ false).
 */
export async function waitFor(
  done: () => boolean,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = systemClock.monotonicMs() + timeoutMs;
  while (!done()) {
    if (systemClock.monotonicMs() > deadline || signal?.aborted === true) return false;
    await sleep(STATUS_POLL_MS);
  }
  return true;
}
