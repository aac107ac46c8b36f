import { readFile } from 'node:fs/promises';
import { InvalidConfigError } from '../core/index.js';
import { parseConnectionString, redactConnectionString } from '../objectstore/index.js';
import { describeArgument } from './io.js';

/**
 * The node configuration surface, shared by `walship primary`, `walship replica` and every later
 * node command. Keys use QuestDB's names where the meaning is the same. Each key can be set
 *   1. in a `server.conf` file (`--config FILE` or `-c FILE`; `key=value` lines, `#` comments),
 *   2. as an environment variable `WALSHIP_` + the key upper-cased with dots as underscores
 *      (`WALSHIP_REPLICATION_OBJECT_STORE`),
 *   3. as a flag `--key=value` or `--key value`;
 * flags win over the environment, the environment over the file. Unknown keys and bad values
 * stop start-up with a message naming the key and where it came from. Secret values never
 * appear in messages or in `describe()`.
 */
type Kind =
  | 'string'
  | 'secret'
  | 'store'
  | 'bool'
  | 'int'
  | 'bytes'
  | 'duration'
  | { oneOf: readonly string[] };

interface KeySpec {
  kind: Kind;
  /** The default as it would be written in server.conf; undefined = no default. */
  default?: string;
  doc: string;
}

/** Every key, its type, default (with unit) and meaning. docs/configuration.md is generated from this. */
export const CONFIG_KEYS = {
  'replication.role': {
    kind: { oneOf: ['none', 'primary', 'replica'] },
    default: 'none',
    doc: "the role `walship --config FILE` starts a node in (QuestDB's key); `walship primary` and `walship replica` name it themselves and refuse a file or variable naming the other one",
  },
  'replication.object.store': { kind: 'store', doc: 'object store connection string (fs::… or s3::…)' },
  'replication.sequencer': {
    kind: 'secret',
    doc: 'sequencer connection string (http::addr=host:port;token=…;): set on every primary of a cluster with several primaries (RFC-0003); on a replica it follows the sequencer instead of txnlog/ in the store',
  },
  'replication.sequencer.export.grace': {
    kind: 'duration',
    default: '5s',
    doc: 'a primary of a sequenced cluster exports a txn-log entry another writer has not exported after this long (txnlog/ in the store)',
  },
  'sequencer.data.dir': {
    kind: 'string',
    default: './walship-sequencer',
    doc: 'walship sequencer serve: the folder of its SQLite file (sequencer.sqlite); back it up, it holds the txn order',
  },
  'sequencer.group.max': {
    kind: 'int',
    default: '256',
    doc: 'walship sequencer serve: commits applied in one SQLite transaction (one fsync) at most',
  },
  'sequencer.auth.read.token': {
    kind: 'secret',
    doc: 'walship sequencer serve: bearer token for reading the txn log, heads, watch and status',
  },
  'sequencer.auth.write.token': {
    kind: 'secret',
    doc: 'walship sequencer serve: bearer token for writers (register, commit); also reads',
  },
  'sequencer.auth.admin.token': {
    kind: 'secret',
    doc: 'walship sequencer serve: bearer token for initialize and fence; also writes and reads',
  },
  'replication.ack.mode': {
    kind: { oneOf: ['local', 'durable'] },
    default: 'local',
    doc: 'answer ILP writes after the local commit (local) or after the segment is in the store (durable)',
  },
  'replication.ack.durable.timeout': {
    kind: 'duration',
    default: '10s',
    doc: 'a durable write not in the store by then is answered 503 (it stays committed locally)',
  },
  'cairo.wal.segment.rollover.size': { kind: 'bytes', default: '2m', doc: 'seal a segment at this size' },
  'replication.primary.throttle.window.duration': {
    kind: 'duration',
    default: '10s',
    doc: 'upload a partly filled segment once its oldest txn is this old',
  },
  'replication.primary.compression.level': {
    kind: 'int',
    default: '1',
    doc: 'segment compression level (deflate 1..9; 0 stores uncompressed)',
  },
  'replication.primary.ttl.check.interval': {
    kind: 'duration',
    default: '1m',
    doc: 'check tables with a TTL (ALTER TABLE … SET TTL) for expired rows this often',
  },
  'replication.primary.head.update.interval': {
    kind: 'duration',
    default: '1s',
    doc: 'rewrite the head.json hint at most this often',
  },
  'replication.replica.poll.interval': {
    kind: 'duration',
    default: '1s',
    doc: 'how often a replica polls (an idle poll is one conditional GET of head.json); 20ms on a filesystem store for the lowest lag',
  },
  'replication.replica.sweep.interval': {
    kind: 'duration',
    default: '5m',
    doc: 'a replica also checks every table directly this often (a delimiter LIST per 1 000 tables, then one GET per table, in the background), so a head.json left stale by a primary that died with no successor delays it at most this long (docs/operations.md: request costs)',
  },
  'replication.replica.read.wait.max': {
    kind: 'duration',
    default: '5s',
    doc: 'how long a replica read waits for X-Walship-Min-Txn or for max_staleness_ms before failing',
  },
  'replication.replica.bootstrap.snapshot': {
    kind: 'bool',
    default: 'true',
    doc: 'an empty replica restores the newest snapshot before replaying segments',
  },
  'replication.replica.tables': {
    kind: 'string',
    doc: 'a replica of chosen tables: comma-separated names or patterns (* and ?, case-insensitive) of the tables it downloads and serves; unset = every table',
  },
  'replication.replica.tables.exclude': {
    kind: 'string',
    doc: 'comma-separated names or patterns of tables a replica leaves out (applied after replication.replica.tables)',
  },
  'router.nodes': {
    kind: 'string',
    doc: 'walship router: comma-separated base URLs of the nodes; unset = the nodes registered in the store (nodes/*.json)',
  },
  'router.read.preference': {
    kind: { oneOf: ['primary', 'replica', 'replica_preferred'] },
    default: 'replica_preferred',
    doc: 'walship router: where reads go unless a request says otherwise (X-Walship-Read-Preference or read_preference=)',
  },
  'router.write.retry.timeout': {
    kind: 'duration',
    default: '30s',
    doc: 'walship router: how long a write waits for a primary (switchover, failover) before 503',
  },
  'router.refresh.interval': {
    kind: 'duration',
    default: '1s',
    doc: "walship router: how often it asks every node's /status (and the store's newest epoch) who is primary, what each serves and how fresh",
  },
  'replication.failover.auto': {
    kind: 'bool',
    default: 'false',
    doc: 'automatic failover: a primary renews lease.json, a replica promotes itself when the lease stops changing (set on every node)',
  },
  'replication.failover.lease.timeout': {
    kind: 'duration',
    default: '10s',
    doc: 'a candidate replica promotes itself after the lease has not changed this long (its own clock); the primary renews 4 times per timeout',
  },
  'replication.node.register.interval': {
    kind: 'duration',
    default: '10s',
    doc: "rewrite this node's registration nodes/<node.id>.json in the store this often and at every role change (walship status --store lists them); 0 = never register",
  },
  'replication.snapshot.interval': {
    kind: 'duration',
    default: '1h',
    doc: 'a replica checks this often (jittered) and uploads a snapshot only if the newest in the store is at least this old and lacks txns it applied: about one per interval for all replicas together (RFC-0005); 0 = never',
  },
  'replication.retention.duration': {
    kind: 'duration',
    default: '168h',
    doc: 'walship gc deletes a segment only once it is older than this (and a kept snapshot and every live registered node hold its txns; RFC-0007)',
  },
  'replication.retention.snapshots': {
    kind: 'int',
    default: '2',
    doc: 'walship gc keeps the newest N snapshots of the cluster (at least 1) and deletes older ones',
  },
  'replication.gc.registration.expiry': {
    kind: 'duration',
    default: '1h',
    doc: 'walship gc ignores a node registration not rewritten for this long (store time vs the GC host clock): that node is expired and re-bootstraps if it needed collected segments',
  },
  'replication.requests.max.concurrent': {
    kind: 'int',
    default: '8',
    doc: 'segment uploads in flight at once (different tables)',
  },
  'replication.requests.retry.attempts': {
    kind: 'int',
    default: '4',
    doc: 'tries per store request, the first included',
  },
  'replication.requests.retry.interval': {
    kind: 'duration',
    default: '200ms',
    doc: 'first retry backoff, doubling',
  },
  'replication.primary.pending.max.size': {
    kind: 'bytes',
    default: '1g',
    doc: 'committed txns awaiting upload beyond this size make new writes fail with 503 (the store is down)',
  },
  'replication.unsafe.skip.store.check': {
    kind: 'bool',
    default: 'false',
    doc: 'run a primary on a store that fails the conformance probe (fencing will not work)',
  },
  'node.data.dir': {
    kind: 'string',
    default: './walship-data',
    doc: 'where the node keeps its SQLite file and state',
  },
  'node.id': { kind: 'string', doc: 'node identity; generated and persisted in the data dir when unset' },
  'node.url': {
    kind: 'string',
    doc: 'the URL other nodes and tools use to reach this node (recorded in epochs)',
  },
  'http.bind.to': { kind: 'string', default: '0.0.0.0:9000', doc: 'HTTP listener (ILP, queries, status)' },
  'http.user': { kind: 'string', doc: 'Basic auth user for HTTP (ILP and queries); with http.password' },
  'http.password': { kind: 'secret', doc: 'Basic auth password' },
  'http.auth.token': { kind: 'secret', doc: 'Bearer token accepted on HTTP (ILP and queries)' },
  'ilp.auth.token': {
    kind: 'secret',
    doc: 'Bearer token for ILP over HTTP (/write, /api/v2/write); when set, http.* no longer opens ILP',
  },
  'query.auth.token': {
    kind: 'secret',
    doc: 'Bearer token for /exec, /exp and /metrics; when set, http.* no longer opens them',
  },
  'http.tls.cert.path': {
    kind: 'string',
    doc: 'PEM certificate chain: with http.tls.key.path the HTTP listener speaks HTTPS only',
  },
  'http.tls.key.path': { kind: 'string', doc: 'PEM private key of http.tls.cert.path' },
  'http.auth.failures.max': {
    kind: 'int',
    default: '30',
    doc: 'failed authentications (401) one client IP may make per minute; more get 429',
  },
  'http.trusted.proxies': {
    kind: 'string',
    doc: 'comma-separated IPs or CIDR blocks of proxies (walship router, load balancers) whose X-Forwarded-For names the client that http.auth.failures.max counts; unset = the TCP peer is the client',
  },
  'http.net.connection.limit': { kind: 'int', default: '1024', doc: 'open HTTP connections at most' },
  'line.http.max.request.size': {
    kind: 'bytes',
    default: '100m',
    doc: 'ILP HTTP requests above this get 413',
  },
  'line.http.max.inflight.size': {
    kind: 'bytes',
    default: '256m',
    doc: 'bytes of ILP HTTP request bodies a primary holds at once (a chunked body counts as line.http.max.request.size until read); a request that does not fit waits unread, then gets 503; at least line.http.max.request.size (left at its default, it grows to it)',
  },
  'line.http.inflight.wait.timeout': {
    kind: 'duration',
    default: '5s',
    doc: 'how long an ILP HTTP request waits for room among line.http.max.inflight.size before a 503 (clients retry it)',
  },
  'line.tcp.enabled': { kind: 'bool', default: 'true', doc: 'listen for ILP over TCP' },
  'line.tcp.net.bind.to': {
    kind: 'string',
    default: '0.0.0.0:9009',
    doc: 'ILP TCP listener; when not set, port 9009 on the host of http.bind.to (a loopback node stays on loopback)',
  },
  'line.tcp.tls.cert.path': {
    kind: 'string',
    doc: 'PEM certificate chain for ILP over TCP (tcps::); default http.tls.cert.path',
  },
  'line.tcp.tls.key.path': {
    kind: 'string',
    doc: 'PEM private key of line.tcp.tls.cert.path; default http.tls.key.path',
  },
  'line.tcp.net.connection.limit': { kind: 'int', default: '1024', doc: 'open ILP TCP connections at most' },
  'line.tcp.auth.db.path': {
    kind: 'string',
    doc: 'QuestDB-format auth file (keyId ec-p-256-sha256 x y per line) enabling the ECDSA challenge',
  },
  'cairo.commit.mode': {
    kind: { oneOf: ['sync', 'async'] },
    default: 'sync',
    doc: "sync = SQLite synchronous=FULL (a commit survives power loss), async = NORMAL; a primary's and a sequenced writer's commits (a replica applies with NORMAL: all it applies is in the store)",
  },
  'pg.enabled': {
    kind: 'bool',
    default: 'true',
    doc: 'listen for the PostgreSQL wire protocol (psql, Grafana, JDBC)',
  },
  'pg.net.bind.to': {
    kind: 'string',
    default: '0.0.0.0:8812',
    doc: 'PostgreSQL listener; when not set, port 8812 on the host of http.bind.to (port 0 when http.bind.to asks for port 0)',
  },
  'pg.user': {
    kind: 'string',
    default: 'admin',
    doc: 'PostgreSQL user (QuestDB default admin); with pg.password',
  },
  'pg.password': {
    kind: 'secret',
    default: 'quest',
    doc: "PostgreSQL user's password (QuestDB default quest: change it; the node warns while it is the default on a non-loopback address)",
  },
  'pg.readonly.user.enabled': {
    kind: 'bool',
    default: 'false',
    doc: "a second PostgreSQL user (QuestDB's read-only user; every walship PostgreSQL user only reads)",
  },
  'pg.readonly.user': {
    kind: 'string',
    default: 'user',
    doc: 'the second PostgreSQL user, with pg.readonly.password',
  },
  'pg.readonly.password': { kind: 'secret', default: 'quest', doc: "the second PostgreSQL user's password" },
  'pg.auth.method': {
    kind: { oneOf: ['scram-sha-256', 'md5'] },
    default: 'scram-sha-256',
    doc: 'how a PostgreSQL client proves its password: SCRAM-SHA-256 (PostgreSQL 14+ default), or MD5 for old clients',
  },
  'pg.tls.cert.path': {
    kind: 'string',
    doc: 'PEM certificate chain for the PostgreSQL port (then every connection must use TLS: SSLRequest); default http.tls.cert.path',
  },
  'pg.tls.key.path': {
    kind: 'string',
    doc: 'PEM private key of pg.tls.cert.path; default http.tls.key.path',
  },
  'pg.recv.buffer.size': {
    kind: 'bytes',
    default: '1m',
    doc: 'largest PostgreSQL message a client may send; a longer one closes the connection (SQLSTATE 54000)',
  },
  'pg.net.connection.limit': { kind: 'int', default: '64', doc: 'open PostgreSQL connections at most' },
  'query.timeout': { kind: 'duration', default: '60s', doc: 'a query running longer is cancelled' },
  'query.workers': { kind: 'int', default: '2', doc: 'query host processes serving /exec and /exp' },
  'query.queue.max': {
    kind: 'int',
    default: '256',
    doc: 'queries waiting for a free query host at most; one more is answered 503 with Retry-After',
  },
  'query.queue.wait.max': {
    kind: 'duration',
    default: '5s',
    doc: 'a query that waits longer for a free query host is answered 503 with Retry-After',
  },
  'query.memory.limit': {
    kind: 'bytes',
    default: '1g',
    doc: 'resident memory of one query host (SQLite values, temporary tables and sorts, JavaScript), at least 128m; a query taking its host past it is answered 400 and the host replaced',
  },
  'admin.token': { kind: 'secret', doc: 'token required by admin endpoints and commands' },
  'admin.token.file': {
    kind: 'string',
    doc: 'a file holding the admin token (its first line), instead of admin.token: a node creates it with a random token, mode 0600, when it is missing; walship admin, switchover and promote read it',
  },
  'log.level': {
    kind: { oneOf: ['trace', 'debug', 'info', 'warn', 'error', 'silent'] },
    default: 'info',
    doc: 'log level',
  },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;
type Value = string | number | boolean;

/** A loaded configuration: every key with a value (defaults filled in), and where each came from. */
export interface NodeConfig {
  get(key: ConfigKey): Value | undefined;
  /** The value, or an error naming the key when it has none. */
  require(key: ConfigKey): Value;
  string(key: ConfigKey): string | undefined;
  number(key: ConfigKey): number;
  bool(key: ConfigKey): boolean;
  /** `file:LINE`, `env WALSHIP_…`, `flag --…` or `default`. */
  sourceOf(key: ConfigKey): string;
  /** Every set key as `key=value (source)`, secrets as `****`. */
  describe(): string[];
}

export interface ConfigSources {
  /** Arguments after the command name; `--config FILE` and `--key=value` are consumed. */
  argv: string[];
  env: Record<string, string | undefined>;
  /** Overrides applied as if they were flags (the command's own role, for example). */
  fixed?: Partial<Record<ConfigKey, string>>;
}

/** Read file, environment and flags; validate; fill defaults. Throws InvalidConfigError. */
export async function loadConfig(sources: ConfigSources): Promise<NodeConfig> {
  const raw = new Map<ConfigKey, { text: string; source: string }>();
  const { flags, configFile } = parseFlags(sources.argv);
  if (configFile !== undefined) {
    for (const entry of parseConfFile(await readConfFile(configFile), configFile)) raw.set(entry.key, entry);
  }
  for (const [name, text] of Object.entries(sources.env)) {
    if (!name.startsWith('WALSHIP_') || text === undefined) continue;
    const key = keyOfEnv(name);
    if (key === undefined) continue; // WALSHIP_ variables that are not config keys belong to tools and tests
    raw.set(key, { text, source: `env ${name}` });
  }
  for (const entry of flags) raw.set(entry.key, entry);
  for (const [key, text] of Object.entries(sources.fixed ?? {}))
    raw.set(key as ConfigKey, { text, source: 'command' });

  const values = new Map<ConfigKey, { value: Value; source: string }>();
  for (const key of Object.keys(CONFIG_KEYS) as ConfigKey[]) {
    const given = raw.get(key);
    const spec: KeySpec = CONFIG_KEYS[key];
    if (given !== undefined)
      values.set(key, { value: parseValue(key, given.text, given.source), source: given.source });
    else if (spec.default !== undefined)
      values.set(key, { value: parseValue(key, spec.default, 'default'), source: 'default' });
  }
  return makeConfig(values);
}

function makeConfig(values: Map<ConfigKey, { value: Value; source: string }>): NodeConfig {
  const config: NodeConfig = {
    get: (key) => values.get(key)?.value,
    require(key) {
      const entry = values.get(key);
      if (entry === undefined) {
        throw new InvalidConfigError(
          `${key} is required: set it in server.conf, as ${envNameOf(key)} or as --${key}=…`,
        );
      }
      return entry.value;
    },
    string: (key) => {
      const value = values.get(key)?.value;
      return value === undefined ? undefined : String(value);
    },
    number: (key) => Number(config.require(key)),
    bool: (key) => config.require(key) === true,
    sourceOf: (key) => values.get(key)?.source ?? 'unset',
    describe: () =>
      [...values.entries()].map(
        ([key, { value, source }]) => `${key}=${displayValue(key, value)} (${source})`,
      ),
  };
  return config;
}

/** The environment variable for a key: `WALSHIP_` + upper case, dots to underscores. */
export function envNameOf(key: ConfigKey): string {
  return `WALSHIP_${key.toUpperCase().replaceAll('.', '_')}`;
}

const ENV_TO_KEY = new Map((Object.keys(CONFIG_KEYS) as ConfigKey[]).map((key) => [envNameOf(key), key]));

function keyOfEnv(name: string): ConfigKey | undefined {
  return ENV_TO_KEY.get(name);
}

function isKey(name: string): name is ConfigKey {
  return Object.hasOwn(CONFIG_KEYS, name);
}

function parseFlags(argv: string[]): {
  flags: { key: ConfigKey; text: string; source: string }[];
  configFile: string | undefined;
} {
  const flags: { key: ConfigKey; text: string; source: string }[] = [];
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    // `-c FILE`: the short form of `--config FILE`.
    const arg = argv[i] === '-c' ? '--config' : argv[i]!;
    // Never the argument itself: it may be a secret that missed its flag (issue 13 item 10).
    if (!arg.startsWith('--')) throw new InvalidConfigError(`unexpected argument (${describeArgument(arg)})`);
    const equals = arg.indexOf('=');
    const name = equals < 0 ? arg.slice(2) : arg.slice(2, equals);
    let text = equals < 0 ? undefined : arg.slice(equals + 1);
    if (text === undefined) {
      text = argv[i + 1];
      if (text === undefined || text.startsWith('--'))
        throw new InvalidConfigError(`flag --${name} needs a value`);
      i++;
    }
    if (name === 'config') configFile = text;
    else if (isKey(name)) flags.push({ key: name, text, source: `flag --${name}` });
    else throw new InvalidConfigError(`unknown flag --${name}; ${hint(name)}`);
  }
  return { flags, configFile };
}

async function readConfFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new InvalidConfigError(
      `cannot read config file ${file}: ${(error as NodeJS.ErrnoException).code}`,
      {
        cause: error,
      },
    );
  }
}

/** `key=value` lines; blank lines and `#` comments skipped; no escaping (like QuestDB's server.conf). */
export function parseConfFile(
  text: string,
  file: string,
): { key: ConfigKey; text: string; source: string }[] {
  const entries: { key: ConfigKey; text: string; source: string }[] = [];
  const seen = new Set<string>();
  for (const [index, rawLine] of text.split(/\r?\n/).entries()) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const source = `${file}:${index + 1}`;
    const equals = line.indexOf('=');
    if (equals < 0) throw new InvalidConfigError(`${source}: expected key=value`);
    const name = line.slice(0, equals).trim();
    if (!isKey(name))
      throw new InvalidConfigError(`${source}: unknown key ${JSON.stringify(name)}; ${hint(name)}`);
    if (seen.has(name)) throw new InvalidConfigError(`${source}: key ${name} is set twice`);
    seen.add(name);
    entries.push({ key: name, text: line.slice(equals + 1).trim(), source });
  }
  return entries;
}

function hint(name: string): string {
  const close = (Object.keys(CONFIG_KEYS) as string[]).filter((key) =>
    key.includes(name.split('.').at(-1) ?? name),
  );
  return close.length > 0 && close.length <= 4
    ? `did you mean ${close.join(' or ')}?`
    : 'see `walship help config`';
}

function parseValue(key: ConfigKey, text: string, source: string): Value {
  const spec: KeySpec = CONFIG_KEYS[key];
  const fail = (expected: string): never => {
    const shown = spec.kind === 'secret' || spec.kind === 'store' ? '' : ` ${JSON.stringify(text)}`;
    throw new InvalidConfigError(
      `${key} (${source}): expected ${expected}, got${shown || ' an invalid value'}`,
    );
  };
  if (text === '' && spec.kind !== 'string') fail('a value');
  const kind = spec.kind;
  if (typeof kind === 'object')
    return kind.oneOf.includes(text) ? text : fail(`one of ${kind.oneOf.join(', ')}`);
  switch (kind) {
    case 'string':
    case 'secret':
      return text;
    case 'store':
      try {
        parseConnectionString(text);
      } catch (error) {
        throw new InvalidConfigError(`${key} (${source}): ${(error as Error).message}`, { cause: error });
      }
      return text;
    case 'bool':
      return text === 'true' ? true : text === 'false' ? false : fail('true or false');
    case 'int':
      return /^\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : fail('a whole number');
    case 'bytes':
      return parseBytes(text) ?? fail('a size in bytes, like 2097152, 512k, 2m or 1g');
    case 'duration':
      return parseDurationMs(text) ?? fail('a duration, like 250 (ms), 250ms, 10s, 5m or 1h');
  }
}

/** `2097152`, `512k`, `2m`, `1g` (binary multiples) → bytes; undefined if malformed. */
export function parseBytes(text: string): number | undefined {
  const match = /^(\d+)([kmg]?)b?$/i.exec(text.trim());
  if (match === null) return undefined;
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[
    match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'
  ];
  const bytes = Number(match[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** `250` (ms), `250ms`, `10s`, `5m`, `1h` → milliseconds; undefined if malformed. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(match[1]) * unit;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

function displayValue(key: ConfigKey, value: Value): string {
  const spec: KeySpec = CONFIG_KEYS[key];
  if (spec.kind === 'secret') return '****';
  if (spec.kind === 'store') return redactConnectionString(String(value));
  return String(value);
}

/** `host:port` → parts; throws naming the key. */
export function parseHostPort(config: NodeConfig, key: ConfigKey): { host: string; port: number } {
  const text = String(config.require(key));
  const match = /^(.*):(\d{1,5})$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || port > 65535) {
    throw new InvalidConfigError(
      `${key} (${config.sourceOf(key)}): expected host:port, got ${JSON.stringify(text)}`,
    );
  }
  return { host: match[1] === '' ? '0.0.0.0' : match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/** Every key with its default, environment variable and meaning: `walship help config`. */
export function renderConfigReference(): string {
  const lines = [
    'Configuration keys (server.conf key=value, WALSHIP_<KEY> variables, or --key=value flags):',
    '',
  ];
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as [ConfigKey, KeySpec][]) {
    const kind = typeof spec.kind === 'object' ? spec.kind.oneOf.join('|') : spec.kind;
    const fallback = spec.default === undefined ? 'no default' : `default ${spec.default}`;
    lines.push(`  ${key}  (${kind}; ${fallback}; ${envNameOf(key)})`, `      ${spec.doc}`);
  }
  lines.push('', 'Sizes take k, m, g suffixes (binary); durations ms, s, m, h (a bare number is ms).');
  return lines.join('\n');
}

/** A comma-separated key (`http.trusted.proxies`) as its trimmed, non-empty entries; unset = none. */
export function listOf(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}
