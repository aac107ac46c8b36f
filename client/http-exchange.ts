import { Buffer } from 'node:buffer';
import { Agent, request } from 'undici';

/**
 * One HTTP request through undici, reduced to what the sender and the router decide on: the
 * status, headers and a bounded body — or a network failure described in words. Never throws for
 * anything the network or the server does.
 */

/** Body bytes kept from one answer: error bodies are small; a huge one is cut, not buffered. */
export const RESPONSE_BODY_MAX_BYTES = 16 * 1024 * 1024;

/** Keep-alive connections idle this long are closed (the Node client uses the same). */
const KEEP_ALIVE_TIMEOUT_MS = 60_000;

export interface AgentOptions {
  /** false = accept any certificate (tls_verify=unsafe_off). */
  tlsVerify: boolean;
  /** PEM CA certificates to trust instead of the system's (tls_ca). */
  ca: string | Buffer | undefined;
  /** The most a TCP/TLS connect may take, in ms. */
  connectTimeoutMs: number;
}

/** A keep-alive connection pool per origin, one request in flight per connection. */
export function createAgent(options: AgentOptions): Agent {
  return new Agent({
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    pipelining: 1,
    connect: {
      timeout: options.connectTimeoutMs,
      keepAlive: true,
      rejectUnauthorized: options.tlsVerify,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    },
  });
}

export type ExchangeResult =
  | {
      kind: 'response';
      status: number;
      /** Lower-case header names; repeated headers joined with `, `. */
      headers: Record<string, string>;
      body: string;
    }
  | {
      kind: 'network';
      /** `connection refused (ECONNREFUSED)`, `no answer within 5000 ms`, … */
      answer: string;
      cause: unknown;
    };

export interface ExchangeOptions {
  method: 'GET' | 'POST';
  body?: Uint8Array;
  headers: Record<string, string>;
  /** The whole exchange — connect, send, headers, body — must end within this many ms. */
  timeoutMs: number;
  /** Read the body (false: discard it unread, e.g. a 204). */
  readBody?: boolean;
}

/** Sends one request; resolves with the answer or the network failure. */
export async function exchange(agent: Agent, url: string, options: ExchangeOptions): Promise<ExchangeResult> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  try {
    const response = await request(url, {
      method: options.method,
      headers: options.headers,
      ...(options.body === undefined ? {} : { body: options.body }),
      dispatcher: agent,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal: timeout,
    });
    const body = options.readBody === false ? await discard(response.body) : await readBounded(response.body);
    return { kind: 'response', status: response.statusCode, headers: flatHeaders(response.headers), body };
  } catch (error) {
    const answer = timeout.aborted ? `no answer within ${options.timeoutMs} ms` : describeNetworkError(error);
    return { kind: 'network', answer, cause: error };
  }
}

async function discard(body: AsyncIterable<Uint8Array> & { dump(): Promise<void> }): Promise<string> {
  await body.dump();
  return '';
}

async function readBounded(body: AsyncIterable<Uint8Array> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const room = RESPONSE_BODY_MAX_BYTES - bytes;
    chunks.push(Buffer.from(chunk.subarray(0, room)));
    bytes += Math.min(room, chunk.length);
    if (bytes >= RESPONSE_BODY_MAX_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

const NETWORK_WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer body too slow',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CLOSED: 'client closed',
};

/** `connection refused (ECONNREFUSED)` for an undici/Node error; its message otherwise. */
export function describeNetworkError(error: unknown): string {
  const code = codeOf(error) ?? codeOf((error as { cause?: unknown } | undefined)?.cause);
  if (code !== undefined) return `${NETWORK_WORDS[code] ?? 'network error'} (${code})`;
  return `network error: ${error instanceof Error ? error.message : String(error)}`;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** `http://host:port` with IPv6 hosts in brackets. */
export function originOf(scheme: 'http' | 'https', host: string, port: number): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
