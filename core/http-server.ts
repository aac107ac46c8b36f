import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { clientAddressOf, TrustedProxies } from './client-address.js';
import { AuthFailureLimiter } from './http-auth.js';
import { listen } from './listen.js';
import { InvalidConfigError } from './walship-error.js';

/** A route handler: resolves true when it answered the request, false to let the next one try. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

// Every bound of the HTTP listener, in one place (STYLE rule 7). Only ILP reads a request body
// (bounded by `line.http.max.request.size`, ilp/http-handler.ts); every other route answers from
// the request line and headers and never reads the body.

/** Keep-alive connections idle longer than this are closed (clients reconnect transparently). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** A request whose headers take longer than this is dropped (slowloris). */
const HEADERS_TIMEOUT_MS = 30_000;
/**
 * A whole request (body included) must arrive within this: a 100 MiB ILP request at ~1 MiB/s
 * still fits, a connection trickling a body forever does not.
 */
const REQUEST_TIMEOUT_MS = 300_000;
/**
 * Characters of a request target (path and query string): a query travels in `/exec?query=`, and
 * 64 KiB of SQL is far beyond any sane query. Longer targets get 414.
 */
export const MAX_URL_CHARS = 64 * 1024;
/**
 * Bytes of the request line plus headers (Node's maxHeaderSize, which counts the target too):
 * room for MAX_URL_CHARS and 16 KiB of headers (Node's default). More gets 431.
 */
export const MAX_HEADER_BYTES = MAX_URL_CHARS + 16 * 1024;
/** Open connections at most; Node closes any further one at once. */
const MAX_CONNECTIONS_DEFAULT = 1024;

/** A PEM certificate chain and its private key (`http.tls.*`, `line.tcp.tls.*`), read at start. */
export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
}

/** Where and how the listener listens. */
export interface HttpListenerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** HTTPS with these credentials; plain HTTP without. */
  tls?: TlsCredentials | undefined;
  /**
   * Failed authentications per client IP per minute before 429; undefined = no limit (the CLI
   * always sets `http.auth.failures.max`, default 30).
   */
  authFailuresPerMinute?: number | undefined;
  /**
   * `http.trusted.proxies`: peers (IPs, CIDR blocks) whose `X-Forwarded-For` names the client the
   * failure limit counts (client-address.ts); empty or undefined = every peer is its own client.
   */
  trustedProxies?: readonly string[] | undefined;
  /** Open connections at most (default 1024). */
  maxConnections?: number | undefined;
}

export interface RunningHttpServer {
  server: Server;
  port: number;
  /** Replace the routes (a node changing role keeps its listener and its clients' connections). */
  setHandlers(handlers: HttpHandler[]): void;
  close(): Promise<void>;
}

/**
 * Serve `handlers` in order on host:port (port 0 = any free port), over HTTPS when `address.tls`
 * is set; unknown routes get a JSON 404. Before any route: a target longer than MAX_URL_CHARS
 * gets 414, a client IP over its failed-authentication budget 429.
 */
export async function startHttpServer(
  handlers: HttpHandler[],
  address: HttpListenerOptions,
  log: Logger,
): Promise<RunningHttpServer> {
  const options = {
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    maxHeaderSize: MAX_HEADER_BYTES,
  };
  const server: Server =
    address.tls === undefined
      ? createServer(options)
      : (createHttpsServer({
          ...options,
          cert: address.tls.cert,
          key: address.tls.key,
        }) as unknown as Server);
  server.maxConnections = address.maxConnections ?? MAX_CONNECTIONS_DEFAULT;
  const limiter =
    address.authFailuresPerMinute === undefined
      ? undefined
      : {
          failures: new AuthFailureLimiter({ failuresPerMinute: address.authFailuresPerMinute }),
          // Checked before listening: a bad entry stops the node at start (InvalidConfigError).
          trusted: new TrustedProxies(address.trustedProxies ?? []),
        };
  let routes = handlers;
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void serve(routes, limiter, req, res).catch((error: unknown) => {
      log.error({ err: (error as Error).message, path: req.url?.split('?')[0] }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { code: 'internal error', message: 'internal error' });
      else res.destroy();
    });
  });
  const port = await listen(server, address.host, address.port);
  return {
    server,
    port,
    setHandlers: (next) => {
      routes = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The listener's failed-authentication limit: the buckets, and whose X-Forwarded-For names the client. */
interface ListenerLimiter {
  failures: AuthFailureLimiter;
  trusted: TrustedProxies;
}

async function serve(
  handlers: HttpHandler[],
  limiter: ListenerLimiter | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  if ((req.url ?? '').length > MAX_URL_CHARS) {
    sendJson(res, 414, {
      code: 'uri too long',
      message: `the request target exceeds ${MAX_URL_CHARS} characters`,
    });
    return;
  }
  if (limiter !== undefined && refusedForFailures(limiter, req, res)) return;
  for (const handler of handlers) if (await handler(req, res)) return;
  sendJson(res, 404, { code: 'not found', message: `no route for ${req.method} ${req.url?.split('?')[0]}` });
}

/**
 * Answers 429 when the request's client is over its failed-authentication budget and the request
 * presents credentials; otherwise arranges for a 401 answer to count against the client. The client
 * is the real one behind trusted proxies (client-address.ts), so a router's clients do not share
 * one budget. A request without an `Authorization` header guesses nothing and is never refused:
 * a monitor's or the router's own `/status` probes keep working whoever failed from their address.
 */
function refusedForFailures(limiter: ListenerLimiter, req: IncomingMessage, res: ServerResponse): boolean {
  const client = clientAddressOf(req.socket.remoteAddress, req.headers['x-forwarded-for'], limiter.trusted);
  const retryAfterS = req.headers.authorization === undefined ? 0 : limiter.failures.blockedForS(client);
  if (retryAfterS > 0) {
    res.setHeader('retry-after', String(retryAfterS));
    sendJson(res, 429, {
      code: 'too many failed authentications',
      message: `too many failed authentications from this address; retry in ${retryAfterS} s`,
    });
    return true;
  }
  // Counted when the answer is sent, whichever route refused the credentials.
  res.once('finish', () => {
    if (res.statusCode === 401) limiter.failures.recordFailure(client);
  });
  return false;
}

/**
 * The PEM files `certPath` and `keyPath`, checked to be a certificate and its own key. Throws
 * InvalidConfigError naming `keys` (the two configuration keys) when a file cannot be read, is not
 * PEM, or the key does not match the certificate: a node refuses to start rather than serve
 * without the TLS it was told to use.
 */
export async function loadTlsCredentials(
  certPath: string,
  keyPath: string,
  keys: { cert: string; key: string },
): Promise<TlsCredentials> {
  const read = (file: string, key: string) =>
    readFile(file).catch((error: NodeJS.ErrnoException) => {
      throw new InvalidConfigError(`${key}: cannot read ${file}: ${error.code ?? error.message}`);
    });
  const cert = await read(certPath, keys.cert);
  const key = await read(keyPath, keys.key);
  try {
    createSecureContext({ cert, key });
  } catch (cause) {
    // OpenSSL's reason (e.g. "key values mismatch", "no start line") names no secret.
    throw new InvalidConfigError(
      `${keys.cert} / ${keys.key}: not a usable certificate and key (${(cause as Error).message})`,
      { cause },
    );
  }
  assertKeyOfCertificate(cert, key, { certPath, keyPath, keys });
  return { cert, key };
}

/**
 * OpenSSL checks a key against the certificate of its own type only: an EC key beside an RSA
 * certificate loads without complaint, and then every handshake fails (issue 13 item 10). So the
 * public half of the key is compared with the leaf certificate's public key (SPKI DER, which is
 * the same bytes for the same key whatever the PEM flavour).
 */
function assertKeyOfCertificate(
  cert: Buffer,
  key: Buffer,
  where: { certPath: string; keyPath: string; keys: { cert: string; key: string } },
): void {
  let fromCert: Buffer;
  let fromKey: Buffer;
  try {
    fromCert = new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' });
    fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
  } catch (cause) {
    throw new InvalidConfigError(
      `${where.keys.cert} / ${where.keys.key}: cannot read the public key of ${where.certPath} or ` +
        `${where.keyPath} (${(cause as Error).message})`,
      { cause },
    );
  }
  if (fromCert.equals(fromKey)) return;
  throw new InvalidConfigError(
    `${where.keys.key} (${where.keyPath}) is not the private key of the certificate in ${where.keys.cert} ` +
      `(${where.certPath}): the key is ${describeKey(fromKey)}, the certificate's ${describeKey(fromCert)}; ` +
      'every TLS handshake would fail',
  );
}

function describeKey(spki: Buffer): string {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  const details = key.asymmetricKeyDetails;
  const size =
    details?.modulusLength !== undefined
      ? ` ${details.modulusLength}-bit`
      : details?.namedCurve !== undefined
        ? ` ${details.namedCurve}`
        : '';
  return `${key.asymmetricKeyType ?? 'unknown'}${size}`;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
