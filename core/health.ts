import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpHandler } from './http-server.js';
import { sendJson } from './http-server.js';

/** What `GET /health` answers: healthy or not, and why not. */
export interface HealthVerdict {
  healthy: boolean;
  /** Why the node is not healthy, in words; null when it is. */
  reason: string | null;
}

/**
 * Whether a node serves its role, from its `/status` document (issue 19): a primary while it
 * accepts writes; a replica while it follows the store and — with `maxStalenessMs` — while its
 * staleness is within that bound (a sequenced cluster's writers and followers report the same
 * roles); anything else (a node changing role, starting, waiting) is not serving. Pure.
 */
export function healthOf(status: Record<string, unknown>, maxStalenessMs: number | undefined): HealthVerdict {
  const role = status.role;
  if (role === 'primary') {
    if (status.acceptingWrites === true) return { healthy: true, reason: null };
    const fenced = typeof status.fencedBy === 'string' ? `: fenced by ${status.fencedBy}` : '';
    return { healthy: false, reason: `the primary does not accept writes${fenced}` };
  }
  if (role === 'replica') {
    const following = status.following;
    if (following !== undefined && following !== true) {
      const stopped =
        typeof following === 'object' && following !== null && 'stopped' in following
          ? `: ${String((following as { stopped: unknown }).stopped)}`
          : '';
      return { healthy: false, reason: `the replica stopped following the store${stopped}` };
    }
    if (maxStalenessMs === undefined) return { healthy: true, reason: null };
    const staleness = status.stalenessMs;
    if (typeof staleness !== 'number')
      return { healthy: false, reason: 'the replica has not yet confirmed it holds what the store holds' };
    if (staleness > maxStalenessMs)
      return {
        healthy: false,
        reason: `the replica last confirmed it was caught up ${Math.round(staleness)} ms ago (max_staleness_ms=${maxStalenessMs})`,
      };
    return { healthy: true, reason: null };
  }
  return {
    healthy: false,
    reason: `the node is ${typeof role === 'string' ? role : 'starting'}, not serving a role`,
  };
}

/**
 * `GET|HEAD /health` for load balancers and Kubernetes probes: 200 `{status: "ok", role, …}` when
 * `healthOf` says the node serves its role, 503 `{status: "unavailable", role, reason}` otherwise.
 * `?max_staleness_ms=N` bounds a replica's staleness; a malformed value is 400. Never blocks: it
 * reads the node's status document, nothing else.
 */
export function createHealthHandler(status: () => Record<string, unknown>): HttpHandler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/health') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      sendJson(res, 405, { code: 'method not allowed', message: '/health takes GET or HEAD' });
      return true;
    }
    const bound = url.searchParams.get('max_staleness_ms');
    if (bound !== null && !/^\d{1,12}$/.test(bound)) {
      sendJson(res, 400, {
        code: 'invalid',
        message: 'max_staleness_ms must be a whole number of milliseconds',
      });
      return true;
    }
    const current = status();
    const verdict = healthOf(current, bound === null ? undefined : Number(bound));
    const body = {
      status: verdict.healthy ? 'ok' : 'unavailable',
      role: current.role ?? null,
      ...(typeof current.stalenessMs === 'number' || current.stalenessMs === null
        ? { stalenessMs: current.stalenessMs }
        : {}),
      ...(verdict.reason === null ? {} : { reason: verdict.reason }),
    };
    if (req.method === 'HEAD') {
      res.writeHead(verdict.healthy ? 200 : 503, { 'cache-control': 'no-store' });
      res.end();
    } else {
      res.setHeader('cache-control', 'no-store');
      sendJson(res, verdict.healthy ? 200 : 503, body);
    }
    return true;
  };
}
