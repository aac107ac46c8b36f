import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  type AdminAction,
  type Clock,
  createAdminHttpHandler,
  createHttpAuthenticator,
  type HttpAuth,
  type HttpListenerOptions,
  isWalshipError,
  nodeUrl,
  type Random,
  type RunningHttpServer,
  StoreUnavailableError,
  sendJson,
  startHttpServer,
  statusPathHider,
  type TlsCredentials,
  WalshipError,
} from '../core/index.js';
import {
  createIlpHttpHandler,
  type IlpLineSource,
  type IlpRequestEvent,
  type IlpRequestInfo,
  type IlpTcpAuthKey,
  startIlpTcpServer,
} from '../ilp/index.js';
import { type ObjectStore, renderProbeReport, runConformanceProbe } from '../objectstore/index.js';
import type { PgQueryOptions } from '../pg/index.js';
import {
  createQueryHttpHandler,
  isDropped,
  type PgPage,
  type QueryHttpOptions,
  QueryPool,
  type QueryPoolLimits,
  resolveNodeId,
  TableStore,
} from '../table/index.js';
import { type Codec, ttlText } from '../wal/index.js';
import { claimPrimary, refuseIfOvertaken } from './cluster-bootstrap.js';
import { type AckMode, type CommitResult, Committer, type CommitterOptions } from './committer.js';
import { ACK_MODE_META_KEY } from './divergence.js';
import { pendingSourceOf } from './pending-source.js';
import { parseTableStatement, type TableStatement } from './table-statement.js';
import { TtlKeeper } from './ttl-keeper.js';
import { Uploader, type UploaderOptions } from './uploader.js';
import { WriteGate } from './write-gate.js';
import { WriteWindow, withLaterWatermarks } from './write-window.js';
import { WriteWorker } from './write-worker.js';

/** Everything a primary needs, already parsed and validated (cli/ builds it from the config surface). */
/** Where and how the PostgreSQL door listens (`pg.*` keys). */
export interface PgListenerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  credentials: { user: string; password: string }[];
  maxMessageBytes: number;
  maxConnections: number;
  /** TLS for every connection (SSLRequest); without it the port speaks plain TCP only. */
  tls?: TlsCredentials | undefined;
  /** `pg.auth.method`: SCRAM-SHA-256 unless MD5 is asked for. */
  authMethod?: 'scram-sha-256' | 'md5';
}

export interface PrimarySettings {
  dataDir: string;
  /** Fixed identity, or undefined to use (or generate and persist) the data dir's. */
  nodeId: string | undefined;
  /** How others reach this node; recorded in epoch records. Default: http(s)://<host>:<port>. */
  nodeUrl: string | undefined;
  store: ObjectStore;
  /** Extra notes for the conformance probe report (e.g. Ceph's If-Match quirk). */
  storeNotes?: () => string[];
  skipStoreCheck: boolean;
  /** This process already ran the conformance probe on this store and it passed (a promotion need not wait for it again). */
  storeAlreadyChecked?: boolean;
  ackMode: AckMode;
  durableTimeoutMs: number;
  pendingMaxBytes: number;
  rolloverSizeBytes: number;
  windowMs: number;
  headIntervalMs: number;
  /** How often tables with a TTL are checked for expired rows (`replication.primary.ttl.check.interval`). */
  ttlCheckIntervalMs?: number;
  maxConcurrentUploads: number;
  codec: Codec;
  compressionLevel: number;
  synchronous: 'FULL' | 'NORMAL';
  /** The HTTP listener: address, TLS (`http.tls.*`) and its limits. */
  http: HttpListenerOptions;
  /** The PostgreSQL door (pg/), shared by the node's roles like `http`; undefined when off (`pg.enabled`). */
  pg?: PgListenerOptions | undefined;
  tcp:
    | {
        host: string;
        port: number;
        authKeys: IlpTcpAuthKey[] | undefined;
        tls?: TlsCredentials | undefined;
        /** Open connections at most (`line.tcp.net.connection.limit`; default 1024). */
        maxConnections?: number | undefined;
      }
    | undefined;
  /** `http.user`/`http.password`/`http.auth.token`: the credentials of ILP and queries unless a surface has its own. */
  httpAuth: HttpAuth | undefined;
  /** `ilp.auth.token` (with nothing else): what ILP over HTTP accepts instead of `httpAuth`. */
  ilpAuth?: HttpAuth | undefined;
  /** `query.auth.token`: what `/exec`, `/exp` and `/metrics` accept instead of `httpAuth`. */
  queryAuth?: HttpAuth | undefined;
  maxRequestBytes: number;
  /** `line.http.max.inflight.size`: bytes of ILP request bodies held at once; unset = the handler's default. */
  maxInflightBytes?: number | undefined;
  /** `line.http.inflight.wait.timeout`: how long a request waits for room among them; unset = default. */
  inflightWaitMs?: number | undefined;
  /** `admin.token`: `POST /admin/*` needs it; none = admin routes answer 403. */
  adminToken?: string | undefined;
  queryTimeoutMs: number;
  queryWorkers: number;
  /** `query.queue.max`, `query.queue.wait.max`, `query.memory.limit`; unset = the pool's defaults. */
  queryLimits?: QueryPoolLimits | undefined;
  version: string;
}

export interface PrimaryDeps {
  clock: Clock;
  random: Random;
  log: Logger;
  /** A listener the node shares with other roles (failover/): routes are set on it, it is not closed. */
  http?: RunningHttpServer;
  /** Admin actions of the process around this node (promote, demote …), served beside the node's own. */
  adminActions?: Record<string, AdminAction>;
  /** Extra fields for `/status` from the process around this node. */
  statusExtra?: () => Record<string, unknown>;
  /** Called once when an upload finds this node replaced (RFC-0002 "fenced"). */
  onFenced?: (detail: { table: string; writerNodeId: string; epoch: bigint }) => void;
  /** Each segment upload attempt (`/metrics`). */
  onUpload?: UploaderOptions['onUpload'];
  /** Each ILP request (HTTP) or batch (TCP) answered (`/metrics`). */
  onIlpRequest?: (event: IlpRequestEvent) => void;
  /** Each durable ack's wait for the store (`/metrics`). */
  onDurableAck?: CommitterOptions['onDurableAck'];
  /** Each read of `/exec` and `/exp` answered (`/metrics`). */
  onQuery?: QueryHttpOptions['onQuery'];
}

/** How long a shutdown waits for pending txns to reach the store. */
const SHUTDOWN_FLUSH_MS = 10_000;

/**
 * A primary node (DESIGN §5): ILP over HTTP and TCP into SQLite, queries on worker threads,
 * segments shipped to the store by the uploader. `start` refuses the role with PRIMARY_REFUSED
 * when the store cannot fence (unless skipStoreCheck) or the store's newest epoch is not ours.
 */
export class PrimaryNode {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly epoch: bigint;
  readonly httpPort: number;
  readonly tcpPort: number | undefined;
  readonly #settings: PrimarySettings;
  readonly #deps: PrimaryDeps;
  readonly #tables: TableStore;
  readonly #uploader: Uploader;
  readonly #queries: QueryPool;
  readonly #http: RunningHttpServer;
  readonly #tcp: { close(): Promise<void> } | undefined;
  readonly #committer: Committer;
  readonly #ttlKeeper: TtlKeeper;
  readonly #worker: WriteWorker;
  /** Shared with the write path: false once the node is fenced or shutting down. */
  readonly #gate: WriteGate;
  #closed = false;

  private constructor(init: {
    settings: PrimarySettings;
    deps: PrimaryDeps;
    nodeId: string;
    clusterId: string;
    epoch: bigint;
    tables: TableStore;
    uploader: Uploader;
    queries: QueryPool;
    http: RunningHttpServer;
    tcp: { port: number; close(): Promise<void> } | undefined;
    gate: WriteGate;
    worker: WriteWorker;
    committer: Committer;
    ttlKeeper: TtlKeeper;
  }) {
    this.#committer = init.committer;
    this.#ttlKeeper = init.ttlKeeper;
    this.#worker = init.worker;
    this.#gate = init.gate;
    this.#settings = init.settings;
    this.#deps = init.deps;
    this.nodeId = init.nodeId;
    this.clusterId = init.clusterId;
    this.epoch = init.epoch;
    this.#tables = init.tables;
    this.#uploader = init.uploader;
    this.#queries = init.queries;
    this.#http = init.http;
    this.#tcp = init.tcp;
    this.httpPort = init.http.port;
    this.tcpPort = init.tcp?.port;
  }

  static async start(settings: PrimarySettings, deps: PrimaryDeps): Promise<PrimaryNode> {
    const { log } = deps;
    await mkdir(settings.dataDir, { recursive: true });
    const databaseFile = path.join(settings.dataDir, 'tables.sqlite');
    const tables = TableStore.open(databaseFile, { synchronous: settings.synchronous });
    const cleanup: (() => Promise<void> | void)[] = [() => tables.close()];
    try {
      const nodeId = resolveNodeId(tables, settings.nodeId);
      // Every line carries nodeId, role and epoch (null until the epoch is claimed).
      const nodeLog = log.child({ nodeId, role: 'primary', epoch: null });
      await checkStore(settings, nodeLog);
      const url = nodeUrl(settings.http, settings.nodeUrl);
      const claim = await claimPrimary({
        store: settings.store,
        meta: { get: (k) => tables.getMeta(k), set: (k, v) => tables.setMeta(k, v) },
        nodeId,
        url,
        clock: deps.clock,
      });
      const epochLog = log.child({ nodeId, role: 'primary', epoch: claim.epoch.toString() });
      epochLog.info({ clusterId: claim.clusterId, created: claim.created }, 'primary role claimed');
      // What a divergence file written later (after a restart in any role) tells of these txns.
      tables.setMeta(ACK_MODE_META_KEY, settings.ackMode);

      let node: PrimaryNode | undefined;
      const gate = new WriteGate();
      // From here on the write worker makes every write to the table store (RFC-0009 §4).
      const worker = await WriteWorker.start(tables, gate);
      cleanup.push(() => worker.close());
      const writeWindow = new WriteWindow();
      const uploader = new Uploader({
        store: settings.store,
        source: withLaterWatermarks(
          // Read on the worker's connection: a large record would hold the event loop.
          {
            ...pendingSourceOf(tables),
            pending: (table, options) => worker.pending(table, options),
          },
          writeWindow.unsynced,
          (table, txn, forget) => {
            worker
              .markUploaded(table, txn)
              .catch((error: unknown) =>
                epochLog.warn({ err: (error as Error).message }, 'an uploaded-watermark write failed'),
              )
              .finally(forget);
          },
        ),
        nodeId,
        epoch: () => claim.epoch,
        clock: deps.clock,
        random: deps.random,
        log: epochLog,
        rolloverSizeBytes: settings.rolloverSizeBytes,
        windowMs: settings.windowMs,
        maxConcurrentTables: settings.maxConcurrentUploads,
        headIntervalMs: settings.headIntervalMs,
        codec: settings.codec,
        compressionLevel: settings.compressionLevel,
        onFenced: (detail) => {
          gate.accepting = false;
          gate.fencedBy = `${detail.writerNodeId} (epoch ${detail.epoch}) at ${detail.table}`;
          deps.onFenced?.(detail);
        },
        ...(deps.onUpload === undefined ? {} : { onUpload: deps.onUpload }),
      });
      cleanup.push(() => uploader.stop());
      const committer = new Committer({
        tables,
        uploader,
        clock: deps.clock,
        ackMode: settings.ackMode,
        durableTimeoutMs: settings.durableTimeoutMs,
        pendingMaxBytes: settings.pendingMaxBytes,
        acceptingWrites: () => gate.accepting,
        writeWindow,
        worker,
        epoch: () => claim.epoch,
        ...(deps.onDurableAck === undefined ? {} : { onDurableAck: deps.onDurableAck }),
      });
      const ttlKeeper = new TtlKeeper({
        tables,
        trim: (table, beforeUs) => committer.trim(table, beforeUs),
        clock: deps.clock,
        intervalMs: settings.ttlCheckIntervalMs ?? TTL_CHECK_INTERVAL_MS_DEFAULT,
        log: epochLog,
      });
      cleanup.push(() => ttlKeeper.stop());
      const queries = await QueryPool.start({
        databaseFile,
        workers: settings.queryWorkers,
        queryTimeoutMs: settings.queryTimeoutMs,
        ...settings.queryLimits,
        clock: deps.clock,
      });
      cleanup.push(() => queries.close());
      const accepting = () => gate.accepting;
      // An empty request commits nothing and gets no X-Walship-Txn.
      const answer = ({ txnHeader, batch, txns }: CommitResult) => ({
        ...(txnHeader === '' ? {} : { txnHeader }),
        ...(batch === undefined ? {} : { batch }),
        rows: txns.reduce((sum, t) => sum + t.rows, 0),
      });
      const commit = async (lines: Parameters<Committer['commit']>[0], request: IlpRequestInfo) =>
        answer(await committer.commit(lines, request.batch));
      const commitSlices = async (source: IlpLineSource, request: IlpRequestInfo) =>
        answer(await committer.commitSlices(source, request.batch));
      const ilpAuth = settings.ilpAuth ?? settings.httpAuth;
      const ilp = createIlpHttpHandler({
        commit,
        commitSlices,
        acceptingWrites: accepting,
        maxRequestBytes: settings.maxRequestBytes,
        ...(settings.maxInflightBytes === undefined ? {} : { maxInflightBytes: settings.maxInflightBytes }),
        ...(settings.inflightWaitMs === undefined ? {} : { inflightWaitMs: settings.inflightWaitMs }),
        releaseVersion: settings.version,
        tcpEnabled: settings.tcp !== undefined,
        onError: (error, context) =>
          epochLog.error(
            { err: error instanceof Error ? error.message : String(error), ...context },
            'ILP request answered with a server error',
          ),
        ...(ilpAuth === undefined ? {} : { auth: ilpAuth }),
        ...(deps.onIlpRequest === undefined ? {} : { onRequest: deps.onIlpRequest, clock: deps.clock }),
      });
      // Reads need credentials whenever writes do (QuestDB protects /exec and /exp with http auth too).
      const queryAuth = settings.queryAuth ?? settings.httpAuth;
      const readAuth = queryAuth === undefined ? undefined : createHttpAuthenticator(queryAuth);
      const queryHandler = createQueryHttpHandler(queries, {
        ...(readAuth === undefined
          ? {}
          : { auth: (req: IncomingMessage) => readAuth(req.headers.authorization) }),
        ...(deps.onQuery === undefined ? {} : { onQuery: deps.onQuery, clock: deps.clock }),
      });
      const query = (req: IncomingMessage, res: ServerResponse) => queryHandler.handle(req, res);
      // Public: paths relative to the data dir, never absolute (core/status-paths.ts).
      const hidePaths = statusPathHider({
        dataDir: settings.dataDir,
        storeDescription: settings.store.description,
      });
      const status = async (req: IncomingMessage, res: ServerResponse) => {
        if (req.url?.split('?')[0] !== '/status' || req.method !== 'GET') return false;
        sendJson(res, 200, hidePaths(node?.status() ?? {}));
        return true;
      };
      const admin = createAdminHttpHandler(settings.adminToken, {
        ...deps.adminActions,
        // QuestDB's table statements (DEDUP, SET TTL, DROP TABLE), each committed as a txn of the table.
        sql: (params) =>
          runTableStatement(parseTableStatement(params.get('query') ?? ''), committer, ttlKeeper, deps.clock),
      });
      const routes = [ilp.handle, query, status, admin];
      const http = deps.http ?? (await startHttpServer(routes, settings.http, epochLog));
      http.setHandlers(routes);
      if (deps.http === undefined) cleanup.push(() => http.close());
      const tcp =
        settings.tcp === undefined
          ? undefined
          : await startIlpTcpServer({
              host: settings.tcp.host,
              port: settings.tcp.port,
              commit: (lines) => commit(lines, { protocol: 'tcp' }),
              acceptingWrites: accepting,
              log: (message) => epochLog.warn({ surface: 'ilp-tcp' }, message),
              clock: deps.clock,
              ...(deps.onIlpRequest === undefined ? {} : { onBatch: deps.onIlpRequest }),
              ...(settings.tcp.authKeys === undefined ? {} : { auth: { keys: settings.tcp.authKeys } }),
              ...(settings.tcp.tls === undefined ? {} : { tls: settings.tcp.tls }),
              ...(settings.tcp.maxConnections === undefined
                ? {}
                : { maxConnections: settings.tcp.maxConnections }),
            });
      if (tcp !== undefined) cleanup.push(() => tcp.close());
      // Opening the query hosts and binding the ports took time: a candidate may have promoted
      // past this epoch meanwhile. Refuse now rather than take writes that the store will fence.
      await refuseIfOvertaken(settings.store, claim.epoch);
      node = new PrimaryNode({
        settings,
        deps: { ...deps, log: epochLog },
        nodeId,
        clusterId: claim.clusterId,
        epoch: claim.epoch,
        tables,
        uploader,
        queries,
        http,
        tcp,
        gate,
        worker,
        committer,
        ttlKeeper,
      });
      uploader.start();
      ttlKeeper.start();
      epochLog.info(
        { http: http.port, tcp: tcp?.port ?? null, ackMode: settings.ackMode },
        'primary listening',
      );
      return node;
    } catch (error) {
      for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => {});
      throw error;
    }
  }

  get acceptingWrites(): boolean {
    return this.#gate.accepting;
  }

  /** Role, epoch, per-table watermarks and upload state: `GET /status`. */
  status(): Record<string, unknown> {
    const upload = this.#uploader.status();
    const pending = new Map(this.#tables.pendingSummary().map((p) => [p.table, p]));
    const tables = this.#tables.schemas().map((schema) => ({
      name: schema.name,
      key: schema.key,
      committedTxn: this.#tables.lastTxn(schema.name).toString(),
      uploadedTxn: this.#tables.uploadedTxn(schema.name).toString(),
      pendingTxns: pending.get(schema.name)?.count ?? 0,
      pendingBytes: pending.get(schema.name)?.bytes ?? 0,
      lastUploadAgoMs: upload.tables[schema.name]?.lastUploadAgoMs ?? null,
      oldestPendingAgeMs: upload.tables[schema.name]?.oldestPendingAgeMs ?? null,
      lastError: upload.tables[schema.name]?.lastError ?? null,
      ttl: ttlText(this.#tables.ttl(schema.name)),
      ...(isDropped(schema) ? { dropped: true } : {}),
    }));
    return {
      ...this.#deps.statusExtra?.(),
      role: 'primary',
      nodeId: this.nodeId,
      clusterId: this.clusterId,
      epoch: this.epoch.toString(),
      acceptingWrites: this.#gate.accepting,
      fencedBy: this.#gate.fencedBy,
      ackMode: this.#settings.ackMode,
      store: { description: this.#settings.store.description, lastError: upload.lastStoreError },
      queries: this.#queries.stats(),
      tables,
    };
  }

  /**
   * Another authority (the failover lease) says this node was replaced: stop taking writes now and
   * report it as fenced. Uploads still run until the node is closed: a txn that reaches its slot
   * before the new primary's fence is kept by the cluster, not lost.
   */
  fence(by: string): void {
    if (this.#gate.fencedBy !== null) return;
    this.#gate.accepting = false;
    this.#gate.fencedBy = by;
    this.#deps.onFenced?.({ table: '', writerNodeId: by, epoch: this.epoch + 1n });
  }

  /**
   * Planned switchover, step 1 (RFC-0002): stop taking writes (421), upload everything pending, and
   * resolve each table's last txn by table key — all of it is in the store. If the backlog cannot
   * be uploaded within `timeoutMs`, writes are taken again and DEMOTE_FAILED (unavailable) is thrown:
   * a switchover must not go on while txns exist only here. FENCED when the node was replaced.
   */
  async demote(timeoutMs: number): Promise<Record<string, string>> {
    if (this.#closed) throw new WalshipError('CLOSED', 'closed', 'the node is shutting down');
    if (this.#gate.fencedBy !== null)
      throw new WalshipError('FENCED', 'fenced', `already replaced by ${this.#gate.fencedBy}`);
    this.#gate.accepting = false;
    // Commits made before the gate closed: their fsync ends before the uploader is flushed.
    await this.#committer.idle();
    const flushed = await this.#uploader.flush(timeoutMs);
    // The uploaded watermarks (and the pending records they drop) are the worker's writes.
    await this.#worker.idle();
    if (this.#gate.fencedBy !== null)
      throw new WalshipError('FENCED', 'fenced', `replaced by ${this.#gate.fencedBy}`);
    const pending = this.#tables.pendingSummary();
    if (!flushed || pending.length > 0) {
      this.#gate.accepting = !this.#closed;
      const txns = pending.reduce((sum, p) => sum + p.count, 0);
      throw new WalshipError(
        'DEMOTE_FAILED',
        'unavailable',
        `${txns} txns could not be uploaded within ${timeoutMs} ms (${this.#uploader.status().lastStoreError?.message ?? 'uploads still running'}); ` +
          'this node takes writes again; retry the switchover when the store is healthy',
      );
    }
    this.#deps.log.info('demoted: writes stopped and every txn is in the store');
    return Object.fromEntries(
      this.#tables.schemas().map((t) => [t.key, this.#tables.lastTxn(t.name).toString()]),
    );
  }

  /** Stop taking writes, upload what is pending (bounded), close all but the store (its opener's). Idempotent. */
  /** A read for the PostgreSQL door: the primary's query hosts (it holds every committed row). */
  queryPg(sql: string, options: PgQueryOptions): Promise<PgPage> {
    return this.#queries.queryPg(sql, options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gate.accepting = false;
    await this.#ttlKeeper.stop();
    await this.#tcp?.close();
    // A large request may be mid-way through its slices: let it end (committed or not) before the
    // database closes under it.
    await this.#committer.idle();
    const flushed = await this.#uploader.flush(SHUTDOWN_FLUSH_MS);
    if (!flushed)
      this.#deps.log.warn('shutting down with txns not yet uploaded; they are uploaded at the next start');
    await this.#uploader.stop();
    await this.#worker.close();
    if (this.#deps.http === undefined) await this.#http.close();
    await this.#queries.close();
    this.#tables.close();
  }
}

/** How often a primary checks its tables with a TTL for expired rows, by default: QuestDB drops partitions lazily too. */
export const TTL_CHECK_INTERVAL_MS_DEFAULT = 60_000;

/**
 * `POST /admin/sql`: one of QuestDB's table statements, committed as a txn of the table. A new TTL
 * is applied at once: the answer names the trim it made, if any.
 */
async function runTableStatement(
  statement: TableStatement,
  committer: Committer,
  ttlKeeper: TtlKeeper,
  clock: Clock,
): Promise<Record<string, unknown>> {
  const { table } = statement;
  if (statement.kind === 'dedup') {
    const result = await committer.setDedupKeys(table, statement.keys);
    return { table, upsertKeys: statement.keys, txn: result.txnHeader };
  }
  if (statement.kind === 'ttl') {
    const sinceMs = clock.monotonicMs();
    const result = await committer.setTtl(table, statement.ttl);
    // The periodic check may have run in between and made the trim itself.
    await ttlKeeper.check(table);
    const trims = ttlKeeper.trimsSince(table, sinceMs);
    return {
      table,
      ttl: ttlText(statement.ttl),
      txn: result.txnHeader,
      trimmed: trims.map((t) => ({ beforeUs: t.beforeUs.toString(), txn: t.txn })),
    };
  }
  try {
    const result = await committer.dropTable(table);
    return { table, dropped: true, txn: result.txnHeader };
  } catch (error) {
    if (statement.ifExists && isWalshipError(error, 'TABLE_UNKNOWN')) return { table, dropped: false };
    throw error;
  }
}

async function checkStore(settings: PrimarySettings, log: Logger): Promise<void> {
  if (settings.storeAlreadyChecked === true) {
    log.info('the object store passed the conformance probe earlier in this process');
    return;
  }
  if (settings.skipStoreCheck) {
    log.warn(
      'replication.unsafe.skip.store.check is set: the object store was not checked; fencing may not work',
    );
    return;
  }
  const report = await runConformanceProbe(
    settings.store,
    settings.storeNotes ? { notes: settings.storeNotes } : {},
  );
  for (const note of report.notes) log.info({ note }, 'object store note');
  if (report.error !== null) {
    throw new StoreUnavailableError(
      `cannot check the object store ${settings.store.description}: ${report.error.message}`,
      {
        cause: report.error,
      },
    );
  }
  if (!report.fencingSafe) {
    throw new WalshipError(
      'PRIMARY_REFUSED',
      'invalid',
      `refusing the primary role: the object store does not honour conditional writes, so a replaced primary ` +
        `could not be fenced (set replication.unsafe.skip.store.check=true to run anyway)\n${renderProbeReport(report)}`,
    );
  }
  if (!report.ok)
    log.warn({ failed: report.checks.filter((c) => !c.passed) }, 'object store check found problems');
}
