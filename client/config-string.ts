import { inspect } from 'node:util';
import { FRAME_PAYLOAD_MAX_BYTES } from './batch-frame.js';
import { MAX_UNACKED_BATCHES_LIMIT, WRITER_ID_PATTERN } from './batch-identity.js';
import { WalshipClientError } from './errors.js';

/**
 * QuestDB's client configuration string (shared/reference/ilp-http.md, "The config-string
 * grammar"): `http::addr=host:port;key=value;…` or `https::…`.
 *
 * - keys are case-sensitive; an unknown key, a key given twice (except `addr`) or an empty value
 *   is an error;
 * - `;;` inside a value is a literal `;` (so a password may hold semicolons); the last `;` is
 *   optional;
 * - `addr=` may repeat: the sender tries the addresses in order (failover); the port defaults to
 *   9000; IPv6 hosts go in brackets (`[::1]:9000`);
 * - `tcp::`/`tcps::` are refused: ILP over TCP has no acknowledgement, so a client cannot know what
 *   was committed and cannot fail over safely.
 *
 * Errors are WalshipClientError INVALID_CONFIG. They name the key and say what is expected, but
 * never repeat a value of `password` or `token` — nor any value of an unknown key, which may be a
 * mistyped secret.
 */

/** The bounds of a config string, so a hostile or broken one cannot make parsing expensive. */
export const CONFIG_STRING_MAX_CHARS = 64 * 1024;
/** Addresses one sender fails over between. */
export const ADDRESSES_MAX = 64;

/** QuestDB's defaults for an HTTP sender (the Java and Node clients agree on these). */
export const CONFIG_DEFAULTS = {
  port: 9000,
  autoFlushRows: 75_000,
  autoFlushIntervalMs: 1_000,
  requestTimeoutMs: 10_000,
  /** 100 KiB/s: a request of n bytes gets request_timeout + n / this seconds. */
  requestMinThroughputBytesPerS: 100 * 1024,
  retryTimeoutMs: 10_000,
  initBufSizeBytes: 64 * 1024,
  maxBufSizeBytes: 100 * 1024 * 1024,
  /** QuestDB's cairo.max.file.name.length. */
  maxNameLenBytes: 127,
  /** 1 GiB of batch files in an sf_dir. */
  sfMaxBytes: 1024 * 1024 * 1024,
  /** QuestDB's sf_append_deadline_millis. */
  sfAppendDeadlineMs: 30_000,
  /** The server remembers the last 1000 seqs of a writer (MAX_UNACKED_BATCHES_LIMIT). */
  maxUnackedBatches: MAX_UNACKED_BATCHES_LIMIT,
} as const;

/** A secret value: printing, logging or JSON-encoding it shows `[secret]`; `reveal()` gives it. */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '[secret]';
  }

  toJSON(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return '[secret]';
  }
}

export interface SenderAddress {
  host: string;
  port: number;
}

export type SenderAuth =
  | { kind: 'none' }
  | { kind: 'basic'; username: string; password: Secret }
  | { kind: 'token'; token: Secret };

/** A parsed config string, with every default filled in. */
export interface SenderConfig {
  scheme: 'http' | 'https';
  /** In the order given; at least one. */
  addresses: SenderAddress[];
  auth: SenderAuth;
  /** `auto_flush` (default on): flush when a row completes and a threshold below is reached. */
  autoFlush: boolean;
  /** `auto_flush_rows` (default 75000): 0 = never by row count. */
  autoFlushRows: number;
  /** `auto_flush_interval` in ms (default 1000): 0 = never by time. */
  autoFlushIntervalMs: number;
  /** `request_timeout` in ms (default 10000). */
  requestTimeoutMs: number;
  /** `request_min_throughput` in bytes/s (default 102400): 0 = no size-dependent extra time. */
  requestMinThroughputBytesPerS: number;
  /** `retry_timeout` in ms (default 10000): how long a flush retries after its first failure. */
  retryTimeoutMs: number;
  /** `init_buf_size` in bytes (default 64 KiB). */
  initBufSizeBytes: number;
  /** `max_buf_size` in bytes (default 100 MiB). */
  maxBufSizeBytes: number;
  /** `max_name_len` in UTF-8 bytes (default 127). */
  maxNameLenBytes: number;
  /** `protocol_version`: only 1 (ILP text). */
  protocolVersion: 1;
  /** `tls_verify` (https only; default on; `unsafe_off` disables certificate checks). */
  tlsVerify: boolean;
  /** `tls_ca` (https only): path of a PEM file with the CA certificates to trust. */
  tlsCaPath: string | undefined;
  /**
   * `spread` (walship's own key, default off): after each committed batch move on to the next
   * address, so batches go round-robin over several primaries (RFC-0003); off, the address that
   * last committed keeps getting them (failover only, as QuestDB's clients).
   */
  spread: boolean;
  /**
   * `batch_ids` (walship's own, default on): send `X-Walship-Batch: <writerId>:<seq>` with every
   * batch, so a server that tracks identities answers a resend `replayed` instead of writing it twice.
   */
  batchIds: boolean;
  /**
   * `writer_id` (walship's own; needs sf_dir): the writer id, 1–64 of `[A-Za-z0-9._-]`. Default: a
   * generated `w-…`, per Sender — or, with sf_dir, generated once and kept in the directory.
   */
  writerId: string | undefined;
  /** `sf_dir` (QuestDB's name): the store-and-forward directory; undefined = batches held in memory. */
  sfDir: string | undefined;
  /** `sf_max_bytes` (needs sf_dir; default 1 GiB): batch files the directory holds at most. */
  sfMaxBytes: number;
  /**
   * `sf_append_deadline_millis` (QuestDB's name; default 30000): how long sealing a batch waits for
   * room (sf_max_bytes, max_unacked_batches) while earlier batches are sent, before SF_FULL.
   */
  sfAppendDeadlineMs: number;
  /** `sf_durability` (needs sf_dir; `fsync` default, or `none`): fsync each batch file and rename. */
  sfDurability: 'fsync' | 'none';
  /** `max_unacked_batches` (walship's own; 1..1000, default 1000): sealed batches held at most. */
  maxUnackedBatches: number;
}

type Key =
  | 'addr'
  | 'username'
  | 'password'
  | 'token'
  | 'auto_flush'
  | 'auto_flush_rows'
  | 'auto_flush_interval'
  | 'request_timeout'
  | 'request_min_throughput'
  | 'retry_timeout'
  | 'max_buf_size'
  | 'init_buf_size'
  | 'max_name_len'
  | 'protocol_version'
  | 'tls_verify'
  | 'tls_ca'
  | 'spread'
  | 'batch_ids'
  | 'writer_id'
  | 'sf_dir'
  | 'sf_max_bytes'
  | 'sf_append_deadline_millis'
  | 'sf_durability'
  | 'max_unacked_batches';

const KEYS: ReadonlySet<string> = new Set<Key>([
  'addr',
  'username',
  'password',
  'token',
  'auto_flush',
  'auto_flush_rows',
  'auto_flush_interval',
  'request_timeout',
  'request_min_throughput',
  'retry_timeout',
  'max_buf_size',
  'init_buf_size',
  'max_name_len',
  'protocol_version',
  'tls_verify',
  'tls_ca',
  'spread',
  'batch_ids',
  'writer_id',
  'sf_dir',
  'sf_max_bytes',
  'sf_append_deadline_millis',
  'sf_durability',
  'max_unacked_batches',
]);

/** QuestDB keys this HTTP-only client refuses with a reason of their own. */
const REFUSED_KEYS: Readonly<Record<string, string>> = {
  token_x:
    'is part of ILP-over-TCP authentication; this client is HTTP-only (use token= or username=/password=)',
  token_y:
    'is part of ILP-over-TCP authentication; this client is HTTP-only (use token= or username=/password=)',
  tls_roots: 'is not supported; use tls_ca=<path of a PEM file>',
  tls_roots_password: 'is not supported; use tls_ca=<path of a PEM file>',
  stdlib_http: 'is not supported; this client always uses undici',
  bind_interface: 'is for ILP over TCP; this client is HTTP-only',
  init_buf_size_bytes: 'is not a key; use init_buf_size',
};

/** Characters of a non-secret value or key an error message repeats. */
const SHOWN_MAX_CHARS = 60;

function shown(text: string): string {
  return JSON.stringify(text.length <= SHOWN_MAX_CHARS ? text : `${text.slice(0, SHOWN_MAX_CHARS)}…`);
}

function configError(message: string, details: Record<string, unknown> = {}): WalshipClientError {
  return new WalshipClientError('INVALID_CONFIG', 'invalid', `invalid config string: ${message}`, {
    details,
  });
}

/** Parses a config string; throws WalshipClientError INVALID_CONFIG. Pure. */
export function parseConfigString(conf: string): SenderConfig {
  if (typeof conf !== 'string') throw configError('expected a string such as "http::addr=localhost:9000;"');
  if (conf.length > CONFIG_STRING_MAX_CHARS) {
    throw configError(`${conf.length} characters, above the limit of ${CONFIG_STRING_MAX_CHARS}`);
  }
  const separator = conf.indexOf('::');
  if (separator < 0) {
    throw configError('no scheme; expected "http::addr=host:port;" or "https::addr=host:port;"');
  }
  const scheme = parseScheme(conf.slice(0, separator));
  const settings = splitSettings(conf, separator + 2);
  return buildConfig(scheme, settings);
}

function parseScheme(scheme: string): 'http' | 'https' {
  if (scheme === 'http' || scheme === 'https') return scheme;
  if (scheme === 'tcp' || scheme === 'tcps') {
    throw configError(
      `scheme "${scheme}" is refused: this client is HTTP-only because ILP over TCP has no acknowledgement, ` +
        'so it cannot know what was committed nor fail over safely; use "http::" or "https::"',
      { scheme },
    );
  }
  throw configError(`unknown scheme ${shown(scheme)}; accepted: http, https`);
}

/** One `key=value` of the string, unescaped, in order. */
interface Setting {
  key: string;
  value: string;
  /** 1-based position among the settings, for messages. */
  index: number;
}

/** Splits `key=value;key=value;…` from `start`; `;;` in a value is a `;`. */
function splitSettings(conf: string, start: number): Setting[] {
  const settings: Setting[] = [];
  let position = start;
  while (position < conf.length) {
    const index = settings.length + 1;
    const equals = conf.indexOf('=', position);
    const semicolon = conf.indexOf(';', position);
    if (equals < 0 || (semicolon >= 0 && semicolon < equals)) {
      // Not echoed: a malformed setting may be a secret that lost its key.
      throw configError(`setting ${index} has no "=" (expected key=value;)`, { setting: index });
    }
    const key = conf.slice(position, equals);
    const { value, end } = readValue(conf, equals + 1);
    settings.push({ key, value, index });
    position = end;
  }
  return settings;
}

/** The value starting at `start` up to an unescaped `;` (or the end), and where the next setting starts. */
function readValue(conf: string, start: number): { value: string; end: number } {
  let value = '';
  let position = start;
  while (position < conf.length) {
    const semicolon = conf.indexOf(';', position);
    if (semicolon < 0) {
      value += conf.slice(position);
      return { value, end: conf.length };
    }
    value += conf.slice(position, semicolon);
    if (conf.charCodeAt(semicolon + 1) === 59 /* ; */) {
      value += ';';
      position = semicolon + 2;
    } else {
      return { value, end: semicolon + 1 };
    }
  }
  return { value, end: conf.length };
}

/** Checks keys and values, then fills in defaults. */
function buildConfig(scheme: 'http' | 'https', settings: Setting[]): SenderConfig {
  const values = new Map<Key, string>();
  const addresses: SenderAddress[] = [];
  for (const setting of settings) {
    const key = checkKey(setting);
    checkValueChars(key, setting.value);
    if (key === 'addr') {
      if (addresses.length === ADDRESSES_MAX) throw configError(`more than ${ADDRESSES_MAX} addr= entries`);
      addresses.push(parseAddress(setting.value));
    } else if (values.has(key)) {
      throw configError(`key "${key}" is given twice`, { key });
    } else {
      values.set(key, setting.value);
    }
  }
  if (addresses.length === 0) {
    throw configError('"addr" is required, e.g. "http::addr=localhost:9000;" (repeat addr= for failover)');
  }
  const maxBufSizeBytes = integerOf(values, 'max_buf_size', 1) ?? CONFIG_DEFAULTS.maxBufSizeBytes;
  const initBufSizeBytes = integerOf(values, 'init_buf_size', 1) ?? CONFIG_DEFAULTS.initBufSizeBytes;
  if (initBufSizeBytes > maxBufSizeBytes) {
    throw configError(`init_buf_size (${initBufSizeBytes}) is larger than max_buf_size (${maxBufSizeBytes})`);
  }
  const autoFlush = onOffOf(values, 'auto_flush', 'off') ?? true;
  return {
    scheme,
    addresses,
    auth: authOf(values),
    autoFlush,
    autoFlushRows: integerOrOffOf(values, 'auto_flush_rows') ?? CONFIG_DEFAULTS.autoFlushRows,
    autoFlushIntervalMs: integerOrOffOf(values, 'auto_flush_interval') ?? CONFIG_DEFAULTS.autoFlushIntervalMs,
    requestTimeoutMs: integerOf(values, 'request_timeout', 1) ?? CONFIG_DEFAULTS.requestTimeoutMs,
    requestMinThroughputBytesPerS:
      integerOf(values, 'request_min_throughput', 0) ?? CONFIG_DEFAULTS.requestMinThroughputBytesPerS,
    retryTimeoutMs: integerOf(values, 'retry_timeout', 0) ?? CONFIG_DEFAULTS.retryTimeoutMs,
    initBufSizeBytes,
    maxBufSizeBytes,
    maxNameLenBytes: integerOf(values, 'max_name_len', 1) ?? CONFIG_DEFAULTS.maxNameLenBytes,
    protocolVersion: protocolVersionOf(values),
    spread: onOffOf(values, 'spread', 'off') ?? false,
    ...tlsOf(scheme, values),
    ...batchesOf(values, maxBufSizeBytes),
  };
}

function checkKey(setting: Setting): Key {
  const { key, index } = setting;
  if (KEYS.has(key)) return key as Key;
  if (key === '') throw configError(`setting ${index} has an empty key`, { setting: index });
  const refused = REFUSED_KEYS[key];
  if (refused !== undefined) throw configError(`key "${key}" ${refused}`, { key });
  const lower = key.toLowerCase();
  const hint = KEYS.has(lower) ? ` (keys are case-sensitive: did you mean "${lower}"?)` : '';
  throw configError(
    `unknown key ${shown(key)}${hint}; known keys: ${[...KEYS].join(', ')}`,
    // The value is never shown: an unknown key may be a mistyped "password".
    { setting: index },
  );
}

function checkValueChars(key: Key, value: string): void {
  if (value === '') throw configError(`key "${key}" has an empty value`, { key });
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c < 0xa0)) {
      throw configError(`the value of "${key}" holds a control character at position ${i + 1}`, { key });
    }
  }
}

/** `host`, `host:port` or `[v6]:port`; port defaults to 9000. */
export function parseAddress(text: string): SenderAddress {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw configError(`addr ${shown(text)}: "[" without "]"`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':'))
      throw configError(`addr ${shown(text)}: expected ":port" after "]"`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0 && text.indexOf(':') !== colon) {
      throw configError(`addr ${shown(text)}: put an IPv6 host in brackets, e.g. "[::1]:9000"`);
    }
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (host === '' || /[\s/?#@]/.test(host))
    throw configError(`addr ${shown(text)}: expected host or host:port`);
  if (portText === undefined) return { host, port: CONFIG_DEFAULTS.port };
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) throw configError(`addr ${shown(text)}: the port must be 1..65535`);
  return { host, port };
}

function integerOf(values: Map<Key, string>, key: Key, min: number): number | undefined {
  const text = values.get(key);
  if (text === undefined) return undefined;
  const value = /^[0-9]{1,15}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= min)) throw configError(`"${key}" must be an integer ≥ ${min}, not ${shown(text)}`, { key });
  return value;
}

/** An integer ≥ 0 or `off` (= 0: this trigger never fires). */
function integerOrOffOf(values: Map<Key, string>, key: Key): number | undefined {
  if (values.get(key) === 'off') return 0;
  const text = values.get(key);
  if (text !== undefined && !/^[0-9]{1,15}$/.test(text)) {
    throw configError(`"${key}" must be an integer ≥ 0 or "off", not ${shown(text)}`, { key });
  }
  return integerOf(values, key, 0);
}

function onOffOf(values: Map<Key, string>, key: Key, offWord: string): boolean | undefined {
  const text = values.get(key);
  if (text === undefined) return undefined;
  if (text === 'on') return true;
  if (text === offWord) return false;
  throw configError(`"${key}" must be "on" or "${offWord}", not ${shown(text)}`, { key });
}

function authOf(values: Map<Key, string>): SenderAuth {
  const username = values.get('username');
  const password = values.get('password');
  const token = values.get('token');
  if (token !== undefined) {
    if (username !== undefined || password !== undefined) {
      throw configError('give either token= or username= with password=, not both');
    }
    return { kind: 'token', token: new Secret(token) };
  }
  if (username === undefined && password === undefined) return { kind: 'none' };
  if (username === undefined) throw configError('password= needs username=');
  if (password === undefined) throw configError('username= needs password=');
  return { kind: 'basic', username, password: new Secret(password) };
}

function protocolVersionOf(values: Map<Key, string>): 1 {
  const text = values.get('protocol_version');
  if (text === undefined || text === '1') return 1;
  throw configError(
    `protocol_version ${shown(text)} is not supported: this client sends ILP text, protocol_version=1 ` +
      '(leave the key out, or set it to 1)',
    { key: 'protocol_version' },
  );
}

/** The batch identity and store-and-forward keys (issue 18), checked together. */
function batchesOf(
  values: Map<Key, string>,
  maxBufSizeBytes: number,
): Pick<
  SenderConfig,
  | 'batchIds'
  | 'writerId'
  | 'sfDir'
  | 'sfMaxBytes'
  | 'sfAppendDeadlineMs'
  | 'sfDurability'
  | 'maxUnackedBatches'
> {
  const batchIds = onOffOf(values, 'batch_ids', 'off') ?? true;
  const sfDir = values.get('sf_dir');
  const writerId = values.get('writer_id');
  if (sfDir === undefined) {
    for (const key of ['sf_max_bytes', 'sf_durability', 'writer_id'] as const) {
      if (values.has(key)) {
        const why =
          key === 'writer_id'
            ? ': without it every run would start again at seq 1 under the same id, and the server ' +
              'refuses reused seqs (leave writer_id out: each sender then gets a fresh generated id)'
            : '';
        throw configError(`"${key}" needs sf_dir=<path>${why}`, { key });
      }
    }
  } else if (!batchIds) {
    throw configError(
      'sf_dir needs batch_ids=on: batches replayed after a restart must carry their identity, or a ' +
        'server would write them twice',
      { key: 'sf_dir' },
    );
  } else if (maxBufSizeBytes > FRAME_PAYLOAD_MAX_BYTES) {
    throw configError(
      `with sf_dir, max_buf_size must be ≤ ${FRAME_PAYLOAD_MAX_BYTES} (a batch file's limit)`,
      {
        key: 'max_buf_size',
      },
    );
  }
  if (writerId !== undefined && !WRITER_ID_PATTERN.test(writerId)) {
    throw configError(`"writer_id" must be 1–64 characters of A-Z a-z 0-9 . _ -, not ${shown(writerId)}`, {
      key: 'writer_id',
    });
  }
  const maxUnackedBatches = integerOf(values, 'max_unacked_batches', 1) ?? CONFIG_DEFAULTS.maxUnackedBatches;
  if (maxUnackedBatches > MAX_UNACKED_BATCHES_LIMIT) {
    throw configError(
      `"max_unacked_batches" must be ≤ ${MAX_UNACKED_BATCHES_LIMIT}: the server remembers that many seqs per writer`,
      { key: 'max_unacked_batches' },
    );
  }
  return {
    batchIds,
    writerId,
    sfDir,
    sfMaxBytes: integerOf(values, 'sf_max_bytes', 1) ?? CONFIG_DEFAULTS.sfMaxBytes,
    sfAppendDeadlineMs:
      integerOf(values, 'sf_append_deadline_millis', 0) ?? CONFIG_DEFAULTS.sfAppendDeadlineMs,
    sfDurability: sfDurabilityOf(values),
    maxUnackedBatches,
  };
}

function sfDurabilityOf(values: Map<Key, string>): 'fsync' | 'none' {
  const text = values.get('sf_durability');
  if (text === undefined || text === 'fsync') return 'fsync';
  if (text === 'none') return 'none';
  throw configError(`"sf_durability" must be "fsync" or "none", not ${shown(text)}`, {
    key: 'sf_durability',
  });
}

function tlsOf(
  scheme: 'http' | 'https',
  values: Map<Key, string>,
): { tlsVerify: boolean; tlsCaPath: string | undefined } {
  if (scheme === 'http') {
    for (const key of ['tls_verify', 'tls_ca'] as const) {
      if (values.has(key)) throw configError(`"${key}" needs the https scheme ("https::…")`, { key });
    }
    return { tlsVerify: true, tlsCaPath: undefined };
  }
  return { tlsVerify: onOffOf(values, 'tls_verify', 'unsafe_off') ?? true, tlsCaPath: values.get('tls_ca') };
}
