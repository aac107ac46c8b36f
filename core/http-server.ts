import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** A route handler: resolves true when it answered the request, false to let the next one try. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/** Keep-alive connections idle longer than this are closed (clients reconnect transparently). */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** A request whose headers take longer than this is dropped (slowloris). */
const HEADERS_TIMEOUT_MS = 30_000;

export interface RunningHttpServer {
  server: Server;
  port: number;
  /** Replace the routes (a node changing role keeps its listener and its clients' connections). */
  setHandlers(handlers: HttpHandler[]): void;
  close(): Promise<void>;
}

/** Serve `handlers` in order on host:port (port 0 = any free port); unknown routes get a JSON 404. */
export async function startHttpServer(
  handlers: HttpHandler[],
  address: { host: string; port: number },
  log: Logger,
): Promise<RunningHttpServer> {
  const server = createServer({
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    headersTimeout: HEADERS_TIMEOUT_MS,
  });
  let routes = handlers;
  server.on('request', (req, res) => {
    void route(routes, req, res).catch((error: unknown) => {
      log.error({ err: (error as Error).message, url: req.url }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { code: 'internal error', message: 'internal error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
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

async function route(handlers: HttpHandler[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  for (const handler of handlers) if (await handler(req, res)) return;
  sendJson(res, 404, { code: 'not found', message: `no route for ${req.method} ${req.url?.split('?')[0]}` });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
