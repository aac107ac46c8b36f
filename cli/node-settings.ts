import { readFile } from 'node:fs/promises';
import {
  type HttpAuth,
  InvalidConfigError,
  loadTlsCredentials,
  nodeUrl,
  type TlsCredentials,
} from '../core/index.js';
import type { NodeMetrics, NodeSettings } from '../node/index.js';
import { type OpenStoreOptions, openStore, parseConnectionString, S3Store } from '../objectstore/index.js';
import type { PgListenerOptions, PrimarySettings } from '../primary/index.js';
import { type ReplicaSettings, TableFilter } from '../replica/index.js';
import { openSequencer } from '../sequencer/index.js';
import { adminTokenOf } from './admin-token.js';
import { listOf, type NodeConfig, parseHostPort } from './config.js';
import { queryLimitsOf } from './query-limits.js';

/**
 * The configuration surface (cli/config.ts) turned into a node's settings: both roles' over one
 * opened store, and the listener, auth and store pieces the router and the sequencer service share.
 */

/** Both roles' settings over ONE opened store (a node changes role without reopening it). */
export async function nodeSettings(config: NodeConfig, metrics?: NodeMetrics): Promise<NodeSettings> {
  const opened = await openNodeStore(
    config,
    metrics === undefined ? {} : { onRetry: (event) => metrics.onRetry(event) },
  );
  const primary = await primarySettings(config, opened);
  const replica = await replicaSettings(config, opened);
  const sequencerConnection = config.get('replication.sequencer');
  return {
    ...(sequencerConnection === undefined
      ? {}
      : {
          sequenced: {
            sequencer: await openSequencer(String(sequencerConnection)),
            exportGraceMs: config.number('replication.sequencer.export.grace'),
          },
        }),
    primary,
    replica,
    url: nodeUrl(primary.http, primary.nodeUrl),
    demoteTimeoutMs: config.number('replication.ack.durable.timeout'),
    registerIntervalMs: config.number('replication.node.register.interval'),
    autoFailover: {
      enabled: config.bool('replication.failover.auto'),
      leaseTimeoutMs: Math.max(100, config.number('replication.failover.lease.timeout')),
    },
  };
}

/** Turn the configuration surface into the primary's settings, opening the store. */
export async function primarySettings(
  config: NodeConfig,
  opened?: Awaited<ReturnType<typeof openNodeStore>>,
): Promise<PrimarySettings> {
  opened ??= await openNodeStore(config);
  const raw = opened.raw;
  const http = await httpListener(config);
  const level = config.number('replication.primary.compression.level');
  if (level > 9) throw new InvalidConfigError('replication.primary.compression.level: expected 0..9');
  return {
    dataDir: String(config.require('node.data.dir')),
    nodeId: config.string('node.id'),
    nodeUrl: config.string('node.url'),
    store: opened.store,
    storeNotes: () =>
      raw instanceof S3Store && raw.ifMatchQuoting === 'unquoted'
        ? ['If-Match is compared unquoted (Ceph RGW 16)']
        : [],
    skipStoreCheck: config.bool('replication.unsafe.skip.store.check'),
    ackMode: config.require('replication.ack.mode') as 'local' | 'durable',
    durableTimeoutMs: config.number('replication.ack.durable.timeout'),
    pendingMaxBytes: config.number('replication.primary.pending.max.size'),
    rolloverSizeBytes: config.number('cairo.wal.segment.rollover.size'),
    windowMs: config.number('replication.primary.throttle.window.duration'),
    headIntervalMs: config.number('replication.primary.head.update.interval'),
    ttlCheckIntervalMs: Math.max(1, config.number('replication.primary.ttl.check.interval')),
    maxConcurrentUploads: Math.max(1, config.number('replication.requests.max.concurrent')),
    codec: level === 0 ? 'none' : 'deflate',
    compressionLevel: Math.max(level, 1),
    synchronous: config.get('cairo.commit.mode') === 'async' ? 'NORMAL' : 'FULL',
    http,
    tcp: config.bool('line.tcp.enabled')
      ? {
          ...tcpBindAddress(config, http.host),
          authKeys: await tcpAuthKeys(config),
          tls: await tcpTls(config),
          maxConnections: positive(config, 'line.tcp.net.connection.limit'),
        }
      : undefined,
    pg: config.bool('pg.enabled') ? await pgListener(config, http) : undefined,
    httpAuth: httpAuth(config),
    ilpAuth: tokenAuth(config, 'ilp.auth.token'),
    queryAuth: tokenAuth(config, 'query.auth.token'),
    maxRequestBytes: config.number('line.http.max.request.size'),
    maxInflightBytes: inflightBytes(config),
    inflightWaitMs: config.number('line.http.inflight.wait.timeout'),
    adminToken: await adminTokenOf(config),
    queryTimeoutMs: config.number('query.timeout'),
    queryWorkers: Math.max(1, config.number('query.workers')),
    queryLimits: queryLimitsOf(config),
    version: await packageVersion(),
  };
}

/** The node's object store from `replication.object.store` (with retries; `options` e.g. a retry hook for metrics). */
export async function openNodeStore(config: NodeConfig, options: OpenStoreOptions = {}) {
  // The connection string's own retry keys win over the node-wide replication.requests.* ones.
  const storeConfig = parseConnectionString(String(config.require('replication.object.store')));
  storeConfig.retryAttempts ??= config.number('replication.requests.retry.attempts');
  storeConfig.retryIntervalMs ??= config.number('replication.requests.retry.interval');
  return openStore(storeConfig, options);
}

/** The HTTP listener's address, TLS (`http.tls.*`) and limits. */
export async function httpListener(config: NodeConfig): Promise<PrimarySettings['http']> {
  return {
    ...parseHostPort(config, 'http.bind.to'),
    tls: await tlsPair(config, 'http.tls.cert.path', 'http.tls.key.path'),
    authFailuresPerMinute: positive(config, 'http.auth.failures.max'),
    trustedProxies: listOf(config.string('http.trusted.proxies')),
    maxConnections: positive(config, 'http.net.connection.limit'),
  };
}

/**
 * `pg.*`: the PostgreSQL door. When `pg.net.bind.to` is not set it listens on the HTTP listener's
 * host, port 8812 — or a free port when HTTP asked for one (port 0), so nodes started side by side
 * on ephemeral ports (tests, local clusters) do not fight over 8812.
 */
export async function pgListener(
  config: NodeConfig,
  http: { host: string; port: number },
): Promise<PgListenerOptions> {
  const given = parseHostPort(config, 'pg.net.bind.to');
  const address =
    config.sourceOf('pg.net.bind.to') === 'default'
      ? { host: http.host, port: http.port === 0 ? 0 : given.port }
      : given;
  return {
    ...address,
    credentials: [
      { user: String(config.require('pg.user')), password: String(config.require('pg.password')) },
      ...(config.bool('pg.readonly.user.enabled')
        ? [
            {
              user: String(config.require('pg.readonly.user')),
              password: String(config.require('pg.readonly.password')),
            },
          ]
        : []),
    ],
    maxMessageBytes: positive(config, 'pg.recv.buffer.size'),
    maxConnections: positive(config, 'pg.net.connection.limit'),
    tls: await ownTlsElseHttps(config, 'pg.tls.cert.path', 'pg.tls.key.path'),
    authMethod: config.require('pg.auth.method') as 'scram-sha-256' | 'md5',
  };
}

/**
 * `line.tcp.net.bind.to`; when it is not set, port 9009 on the HTTP listener's host: a node whose
 * HTTP is bound to loopback must not open ILP/TCP on every interface when it is promoted.
 */
function tcpBindAddress(config: NodeConfig, httpHost: string): { host: string; port: number } {
  const given = parseHostPort(config, 'line.tcp.net.bind.to');
  return config.sourceOf('line.tcp.net.bind.to') === 'default' ? { ...given, host: httpHost } : given;
}

/** ILP/TCP's TLS: `line.tcp.tls.*`, else the HTTP listener's certificate (one certificate for the host). */
async function tcpTls(config: NodeConfig): Promise<TlsCredentials | undefined> {
  return ownTlsElseHttps(config, 'line.tcp.tls.cert.path', 'line.tcp.tls.key.path');
}

/** A listener's own `*.tls.*` pair, else the HTTP listener's (one certificate for the host). */
function ownTlsElseHttps(
  config: NodeConfig,
  certKey: 'line.tcp.tls.cert.path' | 'pg.tls.cert.path',
  keyKey: 'line.tcp.tls.key.path' | 'pg.tls.key.path',
): Promise<TlsCredentials | undefined> {
  const own = config.string(certKey) !== undefined || config.string(keyKey) !== undefined;
  return own ? tlsPair(config, certKey, keyKey) : tlsPair(config, 'http.tls.cert.path', 'http.tls.key.path');
}

/** Both files or neither; read and checked now, so a bad pair stops the node at start. */
async function tlsPair(
  config: NodeConfig,
  certKey: 'http.tls.cert.path' | 'line.tcp.tls.cert.path' | 'pg.tls.cert.path',
  keyKey: 'http.tls.key.path' | 'line.tcp.tls.key.path' | 'pg.tls.key.path',
): Promise<TlsCredentials | undefined> {
  const cert = config.string(certKey);
  const key = config.string(keyKey);
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new InvalidConfigError(`${certKey} and ${keyKey} go together: set both or neither`);
  }
  return loadTlsCredentials(cert, key, { cert: certKey, key: keyKey });
}

/**
 * `line.http.max.inflight.size`: at least one largest request. Left at its default, it grows to
 * `line.http.max.request.size` when that is larger; set lower by hand, it is refused.
 */
function inflightBytes(config: NodeConfig): number {
  const inflight = config.number('line.http.max.inflight.size');
  const request = config.number('line.http.max.request.size');
  if (inflight >= request) return inflight;
  if (config.sourceOf('line.http.max.inflight.size') === 'default') return request;
  throw new InvalidConfigError(
    `line.http.max.inflight.size (${inflight}) must be at least line.http.max.request.size (${request})`,
  );
}

function positive(
  config: NodeConfig,
  key:
    | 'http.auth.failures.max'
    | 'http.net.connection.limit'
    | 'line.tcp.net.connection.limit'
    | 'pg.net.connection.limit'
    | 'pg.recv.buffer.size',
): number {
  const value = config.number(key);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidConfigError(`${key}: expected a positive integer`);
  return value;
}

/** A surface's own bearer token (`ilp.auth.token`, `query.auth.token`); undefined = the shared HTTP credentials. */
export function tokenAuth(
  config: NodeConfig,
  key: 'ilp.auth.token' | 'query.auth.token',
): HttpAuth | undefined {
  const token = config.string(key);
  return token === undefined ? undefined : { bearer: [token] };
}

export function httpAuth(config: NodeConfig): PrimarySettings['httpAuth'] {
  const user = config.string('http.user');
  const password = config.string('http.password');
  const token = config.string('http.auth.token');
  if ((user === undefined) !== (password === undefined)) {
    throw new InvalidConfigError('http.user and http.password go together: set both or neither');
  }
  if (user === undefined && token === undefined) return undefined;
  return {
    ...(user === undefined ? {} : { basic: [{ username: user, password: password! }] }),
    ...(token === undefined ? {} : { bearer: [token] }),
  };
}

/** QuestDB's auth file: `keyId ec-p-256-sha256 <x base64url> <y base64url>` per line, `#` comments. */
async function tcpAuthKeys(config: NodeConfig) {
  const file = config.string('line.tcp.auth.db.path');
  if (file === undefined) return undefined;
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new InvalidConfigError(`line.tcp.auth.db.path: cannot read ${file}: ${error.code}`);
  });
  const keys: { keyId: string; publicKeyX: string; publicKeyY: string }[] = [];
  for (const [index, line] of text.split(/\r?\n/).entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [keyId, algorithm, x, y] = trimmed.split(/\s+/);
    if (algorithm !== 'ec-p-256-sha256' || keyId === undefined || x === undefined || y === undefined) {
      throw new InvalidConfigError(`${file}:${index + 1}: expected "keyId ec-p-256-sha256 x y"`);
    }
    keys.push({ keyId, publicKeyX: x, publicKeyY: y });
  }
  return keys;
}

export async function packageVersion(): Promise<string> {
  for (const candidate of ['../../package.json', '../package.json']) {
    try {
      const text = await readFile(new URL(candidate, import.meta.url), 'utf8');
      const pkg = JSON.parse(text) as { name?: string; version?: string };
      if (pkg.name === 'walship' && pkg.version !== undefined) return pkg.version;
    } catch {
      // try the next location (compiled under dist/ or run from source)
    }
  }
  return 'dev';
}

/** Turn the configuration surface into the replica's settings, opening the store. */
export async function replicaSettings(
  config: NodeConfig,
  opened?: Awaited<ReturnType<typeof openNodeStore>>,
): Promise<ReplicaSettings> {
  opened ??= await openNodeStore(config);
  return {
    dataDir: String(config.require('node.data.dir')),
    nodeId: config.string('node.id'),
    store: opened.store,
    pollIntervalMs: Math.max(1, config.number('replication.replica.poll.interval')),
    sweepIntervalMs: Math.max(1, config.number('replication.replica.sweep.interval')),
    downloadConcurrency: Math.max(1, config.number('replication.requests.max.concurrent')),
    bootstrapFromSnapshot: config.bool('replication.replica.bootstrap.snapshot'),
    tables: servedTables(config),
    snapshotIntervalMs: config.number('replication.snapshot.interval'),
    readWaitMaxMs: config.number('replication.replica.read.wait.max'),
    synchronous: config.get('cairo.commit.mode') === 'async' ? 'NORMAL' : 'FULL',
    http: await httpListener(config),
    httpAuth: httpAuth(config),
    ilpAuth: tokenAuth(config, 'ilp.auth.token'),
    queryAuth: tokenAuth(config, 'query.auth.token'),
    adminToken: await adminTokenOf(config),
    maxRequestBytes: config.number('line.http.max.request.size'),
    queryTimeoutMs: config.number('query.timeout'),
    queryWorkers: Math.max(1, config.number('query.workers')),
    queryLimits: queryLimitsOf(config),
    version: await packageVersion(),
  };
}

/** `replication.replica.tables` / `.exclude` (INVALID_CONFIG naming the key); undefined when neither is set: every table. */
function servedTables(config: NodeConfig): TableFilter | undefined {
  const include = config.string('replication.replica.tables');
  const exclude = config.string('replication.replica.tables.exclude');
  return include === undefined && exclude === undefined ? undefined : TableFilter.parse(include, exclude);
}
