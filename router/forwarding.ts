import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

/**
 * What the write forwarder and the read router share: which headers cross the router, how a
 * network error is classified, and the request body read with a bound.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1) and those the router sets itself: never copied across. */
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);

/**
 * The client's request headers as sent on to a node, minus hop-by-hop ones and minus `drop`.
 * `Authorization` crosses unchanged: the node checks the client's credentials itself.
 * `X-Forwarded-For` gets the client's address appended, so a node that trusts this router
 * (`http.trusted.proxies`) counts failed authentications per real client, not per router
 * (core/client-address.ts; issue 13 item 9).
 */
export function requestHeadersFor(
  req: IncomingMessage,
  drop: ReadonlySet<string> = new Set(),
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || NOT_FORWARDED.has(name) || drop.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  out['x-forwarded-for'] = forwardedFor(req.headers, req.socket.remoteAddress);
  return out;
}

/** The request's `X-Forwarded-For` with `peer` (the router's own client) appended. */
export function forwardedFor(headers: IncomingHttpHeaders, peer: string | undefined): string {
  const before = headers['x-forwarded-for'];
  const chain = Array.isArray(before) ? before.join(', ') : before;
  const self = peer ?? 'unknown';
  return chain === undefined || chain.trim() === '' ? self : `${chain}, ${self}`;
}

/** A node's response headers as sent back to the client, minus hop-by-hop ones. */
export function responseHeadersFor(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || (NOT_FORWARDED.has(name) && name !== 'content-length')) continue;
    out[name] = value;
  }
  return out;
}

/** Error codes meaning the request never reached the node: resending it cannot write twice. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);

/** True when `error` happened while connecting, before any byte of the request left. */
export function failedBeforeSending(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } };
  return NOT_SENT_CODES.has(e.code ?? '') || NOT_SENT_CODES.has(e.cause?.code ?? '');
}

/** An AbortSignal that fires when the client goes away before its response was finished. */
export function clientGone(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  return controller.signal;
}

export function pathOf(url: string | undefined): string {
  const text = url ?? '/';
  const query = text.indexOf('?');
  return query < 0 ? text : text.slice(0, query);
}

export function queryOf(url: string | undefined): string {
  const text = url ?? '';
  const query = text.indexOf('?');
  return query < 0 ? '' : text.slice(query + 1);
}

/**
 * The request body, or `tooLarge` as soon as it passes `maxBytes` (reading stops there), or
 * `gone` when the client left before its end.
 */
export function readRequestBody(
  req: IncomingMessage,
  maxBytes: number,
): Promise<{ kind: 'body'; body: Buffer } | { kind: 'tooLarge' } | { kind: 'gone' }> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > maxBytes) return Promise.resolve({ kind: 'tooLarge' });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (result: { kind: 'body'; body: Buffer } | { kind: 'tooLarge' } | { kind: 'gone' }) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        req.pause();
        done({ kind: 'tooLarge' });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => done({ kind: 'body', body: Buffer.concat(chunks, total) });
    const onGone = () => done({ kind: 'gone' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}
