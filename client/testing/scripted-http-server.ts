import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP server on port 0 for the client's tests: each request is answered by a script,
 * and every request is recorded with its body. Test code only.
 */

export interface RecordedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** What the script answers; `hang` never answers (until the server closes). */
export type ScriptedAnswer =
  | { status: number; headers?: Record<string, string>; body?: string }
  | 'hang'
  | Promise<{ status: number; headers?: Record<string, string>; body?: string }>;

export type Script = (request: RecordedRequest, index: number) => ScriptedAnswer;

export interface ScriptedServer {
  /** `127.0.0.1:<port>`. */
  address: string;
  port: number;
  url: string;
  requests: RecordedRequest[];
  /** The most requests that were in flight at once. */
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startScriptedServer(script: Script): Promise<ScriptedServer> {
  const requests: RecordedRequest[] = [];
  let inFlight = 0;
  const state = { maxInFlight: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(request);
      const answer = script(request, requests.length - 1);
      if (answer === 'hang') return;
      void Promise.resolve(answer).then(({ status, headers, body }) => {
        inFlight--;
        res.writeHead(status, headers ?? {});
        res.end(body ?? '');
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    get maxInFlight() {
      return state.maxInFlight;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port with nothing listening (connections are refused). */
export async function refusedAddress(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** QuestDB's JSON error body. */
export function ilpError(
  status: number,
  code: string,
  message: string,
  line = 0,
): { status: number; headers: Record<string, string>; body: string } {
  return {
    status,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code, message, line, errorId: 'abc-1' }),
  };
}
