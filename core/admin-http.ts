import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHttpAuthenticator } from './http-auth.js';
import type { HttpHandler } from './http-server.js';
import { sendJson } from './http-server.js';
import { isWalshipError } from './walship-error.js';

/** One admin action: resolves the JSON answer (status 200) or throws a WalshipError. */
export type AdminAction = (params: URLSearchParams) => Promise<unknown>;

/**
 * `POST /admin/<action>` routes (DESIGN §10), each needing `Authorization: Bearer <admin.token>`.
 * Without a configured token every admin route answers 403: admin is off by default, never open.
 * A missing or wrong token is 401; an unknown action 404; a method other than POST 405. A thrown
 * WalshipError becomes `{code, message}` with 400 (invalid), 409 (conflict, fenced), 503
 * (unavailable, closed) or 500; the message never carries a secret (actions are written so).
 */
export function createAdminHttpHandler(
  token: string | undefined,
  actions: Record<string, AdminAction>,
): HttpHandler {
  const authorized = token === undefined ? () => false : createHttpAuthenticator({ bearer: [token] });
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!url.pathname.startsWith('/admin/')) return false;
    const name = url.pathname.slice('/admin/'.length);
    const action = Object.hasOwn(actions, name) ? actions[name] : undefined;
    if (token === undefined) {
      sendJson(res, 403, {
        code: 'admin disabled',
        message: 'admin endpoints are off: set admin.token to enable them',
      });
    } else if (!authorized(req.headers.authorization)) {
      sendJson(res, 401, {
        code: 'unauthorized',
        message: 'admin endpoints need Authorization: Bearer <admin.token>',
      });
    } else if (action === undefined) {
      sendJson(res, 404, {
        code: 'not found',
        message: `no admin action ${JSON.stringify(name.slice(0, 64))}`,
      });
    } else if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      sendJson(res, 405, { code: 'method not allowed', message: 'admin actions take POST' });
    } else {
      await run(action, url.searchParams, res);
    }
    return true;
  };
}

async function run(action: AdminAction, params: URLSearchParams, res: ServerResponse): Promise<void> {
  try {
    sendJson(res, 200, await action(params));
  } catch (error) {
    if (!isWalshipError(error)) throw error;
    const status =
      error.kind === 'invalid'
        ? 400
        : error.kind === 'conflict' || error.kind === 'fenced'
          ? 409
          : error.kind === 'unavailable' || error.kind === 'closed'
            ? 503
            : 500;
    sendJson(res, status, { code: error.code, message: error.message });
  }
}
