/**
 * Sequencer connection strings (`replication.sequencer`, `walship sequencer status --sequencer`),
 * QuestDB-style like the object store's (objectstore/connection-string.ts):
 *
 *     http::addr=seq:9100;token=…;
 *     https::addr=seq.example.com:9100;token=…;tls_ca=/etc/walship/ca.pem;timeout=5000;
 *
 * `scheme::` then `key=value` pairs separated by `;` (the last one optional), no escaping: a value
 * cannot contain `;`. Unknown, repeated and empty keys are errors naming the key. No message ever
 * quotes the token, nor the text after it (a token holding `;` would parse as the next "key").
 */
import { InvalidConfigError } from '../core/index.js';

export interface SequencerConnectionConfig {
  scheme: 'http' | 'https';
  host: string;
  port: number;
  /** Bearer token sent with every request; none = the service runs without tokens. */
  token?: string;
  /** PEM CA certificates to trust instead of the system's (https only). */
  tlsCaPath?: string;
  /** Time limit of one request in ms (`timeout`); the client's default when absent. */
  timeoutMs?: number;
}

/** The port `addr=host` means when it names none: `walship sequencer serve`'s default. */
export const SEQUENCER_PORT_DEFAULT = 9100;

const WHERE = 'sequencer connection string';
const KEYS = ['addr', 'token', 'tls_ca', 'timeout'] as const;
const SECRET_KEYS: ReadonlySet<string> = new Set(['token']);

/** Parse and check a connection string. Throws InvalidConfigError naming the key, never the token. */
export function parseSequencerConnectionString(text: string): SequencerConnectionConfig {
  const separator = text.indexOf('::');
  if (separator < 0)
    throw new InvalidConfigError(`${WHERE}: expected "http::addr=host:port;token=…;" or "https::…"`);
  const scheme = text.slice(0, separator).trim();
  if (scheme !== 'http' && scheme !== 'https') {
    const shown = /^[a-z][a-z0-9]{0,7}$/.test(scheme) ? ` ${JSON.stringify(scheme)}` : '';
    throw new InvalidConfigError(`${WHERE}: unknown scheme${shown}; supported: http, https`);
  }
  const pairs = parsePairs(text.slice(separator + 2));
  const addr = pairs.get('addr');
  if (addr === undefined) throw new InvalidConfigError(`${WHERE}: required key addr is missing`);
  const { host, port } = parseAddr(addr);
  const tlsCaPath = pairs.get('tls_ca');
  if (tlsCaPath !== undefined && scheme !== 'https')
    throw new InvalidConfigError(`${WHERE}: key tls_ca needs the https:: scheme`);
  const token = pairs.get('token');
  const timeout = pairs.get('timeout');
  return {
    scheme,
    host,
    port,
    ...(token === undefined ? {} : { token }),
    ...(tlsCaPath === undefined ? {} : { tlsCaPath }),
    ...(timeout === undefined ? {} : { timeoutMs: positiveInt('timeout', timeout) }),
  };
}

/** The connection string with the token replaced by `****`: safe to log. */
export function redactSequencerConnectionString(text: string): string {
  return text.replace(/(^|;|::)([^=;:]+)=([^;]*)/g, (whole, lead: string, key: string) =>
    SECRET_KEYS.has(key.trim()) ? `${lead}${key}=****` : whole,
  );
}

/** `http://host:port` (IPv6 hosts in brackets): the service's origin. */
export function sequencerOrigin(config: SequencerConnectionConfig): string {
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return `${config.scheme}://${host}:${config.port}`;
}

function parsePairs(body: string): Map<string, string> {
  const pairs = new Map<string, string>();
  const entries = body.split(';');
  if (entries.at(-1)?.trim() === '') entries.pop();
  let afterSecret = false;
  for (const [index, entry] of entries.entries()) {
    const equals = entry.indexOf('=');
    if (equals < 0)
      throw new InvalidConfigError(
        `${WHERE}: entry ${index + 1} is not key=value (values cannot contain ';')`,
      );
    const key = entry.slice(0, equals).trim();
    const value = entry.slice(equals + 1).trim();
    if (!(KEYS as readonly string[]).includes(key)) {
      // Only echo what looks like a key name, and never what follows the token.
      const shown = !afterSecret && /^[a-z_]{1,40}$/.test(key) ? ` ${JSON.stringify(key)}` : '';
      throw new InvalidConfigError(`${WHERE}: unknown key${shown}; known keys: ${KEYS.join(', ')}`);
    }
    if (pairs.has(key)) throw new InvalidConfigError(`${WHERE}: key ${key} is given twice`);
    if (value === '') throw new InvalidConfigError(`${WHERE}: key ${key} has an empty value`);
    pairs.set(key, value);
    afterSecret = SECRET_KEYS.has(key);
  }
  return pairs;
}

function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(addr);
  const port = match?.[2] === undefined ? SEQUENCER_PORT_DEFAULT : Number(match[2]);
  if (match === null || port < 1 || port > 65535)
    throw new InvalidConfigError(`${WHERE}: key addr must be host:port, got ${JSON.stringify(addr)}`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

function positiveInt(key: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value)))
    throw new InvalidConfigError(
      `${WHERE}: key ${key} must be a positive integer, got ${JSON.stringify(value)}`,
    );
  return Number(value);
}
