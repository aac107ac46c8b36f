import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  type AdminAction,
  assert,
  type Clock,
  createAdminHttpHandler,
  createHttpAuthenticator,
  type HttpAuth,
  type HttpHandler,
  type HttpListenerOptions,
  type Random,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
  statusPathHider,
  systemRandom,
  type Timer,
  WalshipError,
} from '../core/index.js';
import { createIlpHttpHandler, type IlpCommit, type IlpRequestEvent } from '../ilp/index.js';
import {
  CLUSTER_KEY,
  listSnapshots,
  newestSnapshot,
  parseClusterRecord,
  type SnapshotManifest,
  segmentPrefix,
  txnFirstOfSegmentKey,
} from '../layout/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { consistencyParams, type PgQueryOptions } from '../pg/index.js';
import {
  createQueryHttpHandler,
  type PgPage,
  type QueryHttpOptions,
  QueryPool,
  type QueryPoolLimits,
  resolveNodeId,
  type TableKey,
  TableStore,
} from '../table/index.js';
import {
  AppliedWaiters,
  createReadConsistency,
  type ReadConsistencyHook,
  type ReadRefusalReason,
} from './consistency.js';
import { txnIsOfEpoch } from './epoch-history.js';
import { Follower, type FollowerOptions } from './follower.js';
import {
  checkScheduledSnapshot,
  firstSnapshotCheckMs,
  nextSnapshotCheckMs,
  type SnapshotDecision,
} from './snapshot-schedule.js';
import { publishSnapshot, restoreSnapshot } from './snapshots.js';
import {
  bootstrapTableFromSnapshot,
  dropLocalTable,
  resolveServedTables,
  servedTableKey,
  servedTablesMeta,
  TABLE_FILTER_LIMITS,
  type TableChanges,
  TableFilter,
  type TableFilterSpec,
  tableChangesOf,
} from './table-filter.js';
import type { FollowedTableStatus, TableFollower } from './table-follower.js';

/** Everything a replica needs, already parsed and validated (cli/ builds it from the config surface). */
export interface ReplicaSettings {
  dataDir: string;
  nodeId: string | undefined;
  store: ObjectStore;
  pollIntervalMs: number;
  sweepIntervalMs: number;
  downloadConcurrency: number;
  /** Restore the newest snapshot into an empty data dir before replaying segments. */
  bootstrapFromSnapshot: boolean;
  /**
   * `replication.replica.tables` / `.exclude`, parsed (TableFilter.parse); undefined = every table.
   * Changes made at runtime (`POST /admin/tables`) persist until this configuration changes
   * (replica/table-filter.ts).
   */
  tables?: TableFilter;
  /**
   * Check this often whether to upload a snapshot (0 = never): published only when the newest
   * snapshot of the cluster is at least this old and lacks something this replica applied, so many
   * replicas on the same interval publish about one snapshot per interval (replica/snapshot-schedule.ts).
   */
  snapshotIntervalMs: number;
  /** The bound of a read's wait for a commit token or for freshness (`replication.replica.read.wait.max`). */
  readWaitMaxMs: number;
  synchronous: 'FULL' | 'NORMAL';
  /** The HTTP listener: address, TLS (`http.tls.*`) and its limits. */
  http: HttpListenerOptions;
  /** `http.user`/`http.password`/`http.auth.token`: the credentials of queries unless `queryAuth` is set. */
  httpAuth: HttpAuth | undefined;
  /** `query.auth.token`: what `/exec`, `/exp` and `/metrics` accept instead of `httpAuth`. */
  queryAuth?: HttpAuth | undefined;
  /** `ilp.auth.token`: a write with other credentials gets 401 rather than 421 (as on the primary). */
  ilpAuth?: HttpAuth | undefined;
  adminToken: string | undefined;
  maxRequestBytes: number;
  queryTimeoutMs: number;
  queryWorkers: number;
  /** `query.queue.max`, `query.queue.wait.max`, `query.memory.limit`; unset = the pool's defaults. */
  queryLimits?: QueryPoolLimits | undefined;
  version: string;
}

export interface ReplicaDeps {
  clock: Clock;
  log: Logger;
  /** The jitter of the snapshot schedule (replica/snapshot-schedule.ts); systemRandom when unset. */
  random?: Random;
  /** A listener the node shares with other roles (failover/): routes are set on it, it is not closed. */
  http?: RunningHttpServer;
  /** Admin actions of the process around this node (promote, demote …), served beside resume and snapshot. */
  adminActions?: Record<string, AdminAction>;
  /** Extra fields for `/status` from the process around this node (a divergence after a fence). */
  statusExtra?: () => Record<string, unknown>;
  /**
   * The bootstrap's progress, reported while `start` runs (before this node answers `/status`), so
   * the process around it can show it; called with null when the bootstrap ends, however it ends.
   */
  onOperation?: (operation: OperationProgress | null) => void;
  /** Each applied segment (`/metrics`). */
  onApply?: FollowerOptions['onApply'];
  /** Each ILP request answered (refused 421 on a replica; a sequenced writer's writes) (`/metrics`). */
  onIlpRequest?: (event: IlpRequestEvent) => void;
  /** Each read of `/exec` and `/exp` answered (`/metrics`). */
  onQuery?: QueryHttpOptions['onQuery'];
  /** Each read refused by the read consistency, HTTP or PostgreSQL (`/metrics`). */
  onReadRefused?: (reason: ReadRefusalReason) => void;
  /** A table whose next segments WAL retention deleted (RFC-0007): the process may re-bootstrap this replica. */
  onSegmentsCollected?: FollowerOptions['onSegmentsCollected'];
  /**
   * A sequenced cluster (RFC-0003): what follows the txn log instead of the `wal/` chains, built
   * on this node's database; `onApplied` must be called for every applied txn (read-your-writes);
   * `admits` says which tables this node serves (SequencedFollowerOptions.admits), live.
   */
  follower?: (
    tables: TableStore,
    onApplied: (key: string, txn: bigint) => void,
    admits: (tableKey: string) => boolean,
  ) => TableFollower;
  /** A writer of a sequenced cluster: the write path, beside the reads (RFC-0003). */
  writer?: NodeWriter;
}

/** The write path of a sequenced writer, served on a node that applies like a replica (RFC-0003). */
export interface NodeWriter {
  commit: IlpCommit;
  acceptingWrites(): boolean;
  /** Merged into `/status` (role, epoch, queue…). */
  status(): Record<string, unknown>;
}

/** A long operation of a node, as `/status` shows it in `operation` (null when there is none). */
export interface NodeOperation {
  name: 'bootstrap' | 'catch-up' | 'restore';
  /** What it is doing now, for people (`download snapshot <id>`, `restore`, `apply`). */
  phase: string;
  /** Work done so far and the whole of it (null when unknown), in `unit`. */
  done: number;
  total: number | null;
  unit: 'bytes' | 'txns';
  startedAgoMs: number;
}

/** An operation in progress as reported to the process around a node: started at `startedAtMs` on its monotonic clock. */
export type OperationProgress = Omit<NodeOperation, 'startedAgoMs'> & { startedAtMs: number };

/**
 * A replica node (DESIGN §6): follows the store, never the primary. Bootstraps an empty data dir
 * from the newest snapshot, then the Follower polls, verifies and applies segments; reads are
 * served by query hosts with read-your-writes (`X-Walship-Min-Txn`) and bounded staleness
 * (`max_staleness_ms`); writes are answered 421 so multi-URL ILP clients move on.
 */
export class ReplicaNode {
  readonly nodeId: string;
  readonly httpPort: number;
  /** What the bootstrap restored, or null when the data dir was used as it was. */
  readonly restoredSnapshot: SnapshotManifest | null;
  readonly #settings: ReplicaSettings;
  readonly #deps: ReplicaDeps;
  readonly #tables: TableStore;
  readonly #follower: TableFollower;
  readonly #queries: QueryPool;
  /** The read consistency of `/exec` (commit tokens, staleness bounds), for the PostgreSQL door too. */
  readonly #consistency: ReadConsistencyHook;
  readonly #http: RunningHttpServer;
  /** The tables served now, and the configuration they started from (replica/table-filter.ts). */
  readonly #served: ServedTables;
  /** The read waiters' memory of a table's applied txn, cleared when the table is dropped here. */
  readonly #forgetApplied: (key: string) => void;
  /** Admin changes of the served tables, one at a time. */
  #tablesChanging: Promise<unknown> = Promise.resolve();
  #snapshotTimer: Timer | undefined;
  /** A scheduled check in progress (it may be publishing). */
  #snapshotCheck: Promise<void> | undefined;
  #snapshotting: Promise<SnapshotManifest> | undefined;
  /** Aborted by close(): ends a snapshot in progress (its copy process is killed) and a check. */
  readonly #snapshotAbort = new AbortController();
  #lastSnapshot: { id: string; agoMs: () => number } | { error: string } | null = null;
  /**
   * The catch-up baseline: when this replica was last known caught up (at start, or at a `/status`
   * that found nothing behind) and how many txns it had applied then, over unsuspended tables.
   */
  #caughtUp: { atMs: number; appliedTxns: bigint } | null = null;
  #closed = false;

  private constructor(init: {
    settings: ReplicaSettings;
    deps: ReplicaDeps;
    nodeId: string;
    restoredSnapshot: SnapshotManifest | null;
    tables: TableStore;
    follower: TableFollower;
    queries: QueryPool;
    consistency: ReadConsistencyHook;
    http: RunningHttpServer;
    served: ServedTables;
    forgetApplied: (key: string) => void;
  }) {
    this.#settings = init.settings;
    this.#deps = init.deps;
    this.nodeId = init.nodeId;
    this.restoredSnapshot = init.restoredSnapshot;
    this.#tables = init.tables;
    this.#follower = init.follower;
    this.#queries = init.queries;
    this.#consistency = init.consistency;
    this.#http = init.http;
    this.#served = init.served;
    this.#forgetApplied = init.forgetApplied;
    this.httpPort = init.http.port;
  }

  static async start(settings: ReplicaSettings, deps: ReplicaDeps): Promise<ReplicaNode> {
    await mkdir(settings.dataDir, { recursive: true });
    const databaseFile = path.join(settings.dataDir, 'tables.sqlite');
    // Every line carries nodeId, role and epoch: a replica has no epoch of its own (each table
    // has the epoch of its last applied segment, in /status), so epoch is null.
    const bootstrapLog = deps.log.child({ nodeId: settings.nodeId ?? null, role: 'replica', epoch: null });
    const restoredSnapshot = await bootstrap(settings, databaseFile, { ...deps, log: bootstrapLog });
    // Everything a replica applies is in the store already: no fsync per applied segment (at 1 000
    // tables that was most of a catch-up). A power loss loses a suffix of applies, watermark with
    // data, which the follower applies again; a promotion's first commit is FULL and makes all of
    // it durable. A node that takes writes (a sequenced writer) keeps the configured mode.
    const synchronous = deps.writer === undefined ? 'NORMAL' : settings.synchronous;
    const tables = TableStore.open(databaseFile, { synchronous, clock: deps.clock });
    const cleanup: (() => Promise<void> | void)[] = [() => tables.close()];
    try {
      const nodeId = resolveNodeId(tables, settings.nodeId);
      refusePrimaryDataDir(tables);
      const log = deps.log.child({ nodeId, role: 'replica', epoch: null });
      const served = serveTables(tables, settings, databaseFile, log);
      const admits = (key: string) => served.filter.admitsKey(key);
      const waiters = new AppliedWaiters({ clock: deps.clock });
      const clusterId = tables.getMeta('cluster.id');
      const { onApplied, forget: forgetApplied } = appliedNotifier(waiters);
      const follower =
        deps.follower?.(tables, onApplied, admits) ??
        new Follower({
          store: settings.store,
          tables,
          clock: deps.clock,
          log,
          pollIntervalMs: settings.pollIntervalMs,
          sweepIntervalMs: settings.sweepIntervalMs,
          downloadConcurrency: settings.downloadConcurrency,
          clusterId,
          onApplied,
          admits,
          awaitedTables: () => waiters.tables(),
          onCluster: (id) => tables.setMeta('cluster.id', id),
          ...(deps.onApply === undefined ? {} : { onApply: deps.onApply }),
          ...(deps.onSegmentsCollected === undefined
            ? {}
            : { onSegmentsCollected: deps.onSegmentsCollected }),
        });
      cleanup.push(() => follower.stop());
      const queries = await QueryPool.start({
        databaseFile,
        workers: settings.queryWorkers,
        queryTimeoutMs: settings.queryTimeoutMs,
        ...settings.queryLimits,
        clock: deps.clock,
      });
      cleanup.push(() => queries.close());
      let node: ReplicaNode | undefined;
      const { routes, consistency } = handlers(
        settings,
        follower,
        waiters,
        queries,
        deps,
        served,
        () => node,
      );
      const http = deps.http ?? (await startHttpServer(routes, settings.http, log));
      http.setHandlers(routes);
      if (deps.http === undefined) cleanup.push(() => http.close());
      node = new ReplicaNode({
        settings,
        deps: { ...deps, log },
        nodeId,
        restoredSnapshot,
        tables,
        follower,
        queries,
        consistency,
        http,
        served,
        forgetApplied,
      });
      node.#caughtUp = { atMs: deps.clock.monotonicMs(), appliedTxns: appliedOf(follower.status().tables) };
      follower.start();
      node.#startSnapshotSchedule();
      log.info({ http: http.port, snapshot: restoredSnapshot?.id ?? null }, 'replica following');
      return node;
    } catch (error) {
      for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => {});
      throw error;
    }
  }

  /** Whether txn `txn` of table `key`, applied here, was written at `epoch`; undefined when unknown (replica/epoch-history.ts). */
  txnIsOfEpoch(key: string, txn: bigint, epoch: bigint): boolean | undefined {
    return txnIsOfEpoch(this.#tables, key, txn, epoch);
  }

  /** Role, per-table watermarks, lag and suspensions: `GET /status`. */
  status(): Record<string, unknown> {
    const follow = this.#follower.status();
    const last = this.#lastSnapshot;
    return {
      ...this.#deps.statusExtra?.(),
      role: 'replica',
      nodeId: this.nodeId,
      clusterId: this.#tables.getMeta('cluster.id') ?? null,
      acceptingWrites: false,
      ...this.#deps.writer?.status(),
      stalenessMs: follow.stalenessMs === null ? null : Math.round(follow.stalenessMs),
      // How long the primary has announced no upload (head.json unchanged): idle, or gone.
      primarySilentMs: follow.headUnchangedMs === null ? null : Math.round(follow.headUnchangedMs),
      polls: follow.polls,
      store: { description: this.#settings.store.description, lastError: follow.lastError },
      following: follow.fatal === null ? true : { stopped: follow.fatal },
      snapshot:
        last === null
          ? null
          : 'error' in last
            ? { lastError: last.error }
            : { lastId: last.id, agoMs: last.agoMs() },
      queries: this.#queries.stats(),
      operation: this.#catchUpOperation(follow.tables),
      servedTables: this.#served.filter.toJSON(),
      tables: follow.tables
        .filter((t) => this.#served.filter.admitsKey(t.key))
        .map((t) => ({
          name: t.name,
          key: t.key,
          appliedTxn: t.appliedTxn.toString(),
          epoch: t.epoch?.toString() ?? null,
          txnsBehind: t.txnsBehind?.toString() ?? null,
          sinceCaughtUpMs: t.sinceCaughtUpMs,
          lastAppliedAgoMs: t.lastAppliedAgoMs,
          segmentsApplied: t.segmentsApplied,
          rowsApplied: t.rowsApplied,
          suspended:
            t.suspended === null
              ? null
              : { code: t.suspended.code, message: t.suspended.message, key: t.suspended.objectKey },
        })),
    };
  }

  /**
   * `catch-up` while unsuspended tables are behind the store: txns applied since this replica was
   * last known caught up, of those plus the ones still behind; null (and a new baseline) when
   * nothing is behind. Suspended tables are left out: they wait for an operator, not for time.
   */
  #catchUpOperation(tables: FollowedTableStatus[]): NodeOperation | null {
    const now = this.#deps.clock.monotonicMs();
    const following = tables.filter((t) => t.suspended === null);
    // A table whose head is unknown (null) counts as not behind: nothing says it is.
    const behind = following.reduce((sum, t) => sum + (t.txnsBehind ?? 0n), 0n);
    const applied = appliedOf(following);
    const baseline = this.#caughtUp;
    if (behind === 0n || baseline === null) {
      this.#caughtUp = { atMs: now, appliedTxns: applied };
      return null;
    }
    const done = applied > baseline.appliedTxns ? Number(applied - baseline.appliedTxns) : 0;
    return {
      name: 'catch-up',
      phase: 'apply',
      done,
      total: done + Number(behind),
      unit: 'txns',
      startedAgoMs: Math.round(now - baseline.atMs),
    };
  }

  /** The applied watermark of table `key` (store key). */
  appliedTxn(key: string): bigint {
    return this.#follower.appliedTxn(key);
  }

  /** Resume a suspended table (by name or key); false when it was not suspended. */
  resume(table: string): boolean {
    return this.#follower.resume(table);
  }

  /** The tables this node serves now (`servedTables` in `/status`). */
  servedTables(): TableFilterSpec {
    return this.#served.filter.toJSON();
  }

  /** True when this replica serves every table (no include or exclude narrows it). */
  servesAllTables(): boolean {
    return this.#served.filter.servesAll();
  }

  /**
   * `POST /admin/tables`: drops, then adds, served tables, one request at a time. A dropped table
   * is no longer followed, then dropped from the database with its metadata (one transaction); a
   * read of it answers that it does not exist. An added table is followed from the watermark this
   * node's database holds (none: from txn 1); when the database lacks it and the store's chain of
   * it no longer starts at txn 1 (WAL retention), it is first copied in from the newest snapshot
   * that holds it (one transaction), and followed from the snapshot's watermark. The new lists
   * persist (replica/table-filter.ts). Nodes of a sequenced cluster follow an added table from the
   * start of its txn log (no snapshot bootstrap).
   */
  changeTables(changes: TableChanges): Promise<TablesChanged> {
    const run = this.#tablesChanging.then(() => this.#changeTables(changes));
    this.#tablesChanging = run.catch(() => {});
    return run;
  }

  async #changeTables(changes: TableChanges): Promise<TablesChanged> {
    for (const name of [...changes.add, ...changes.drop]) servedTableKey(name); // INVALID_NAME before any change
    const both = changes.add.find((name) => changes.drop.some((d) => d.toLowerCase() === name.toLowerCase()));
    if (both !== undefined)
      throw new WalshipError(
        'INVALID_ARGUMENT',
        'invalid',
        `table ${JSON.stringify(both)} is both added and dropped`,
      );
    const result: TablesChanged = { added: [], dropped: [], servedTables: this.servedTables() };
    for (const name of changes.drop) if (this.#dropTable(name)) result.dropped.push(name);
    for (const name of changes.add) {
      this.#checkOpen();
      const added = await this.#addTable(name);
      if (added !== null) result.added.push(added);
    }
    result.servedTables = this.servedTables();
    return result;
  }

  #checkOpen(): void {
    if (this.#closed) throw new WalshipError('CLOSED', 'closed', 'the replica is closing');
  }

  /** Stop serving `name` and drop it locally; false when it was neither served nor held. */
  #dropTable(name: string): boolean {
    this.#checkOpen();
    const before = this.#served.filter;
    const next = before.dropping(name);
    const held = this.#tables.schema(name) !== undefined;
    if (next.equals(before) && !held) return false;
    // Synchronous from here to the drop's commit: no apply of the table can start in between.
    this.#served.filter = next;
    this.#follower.tablesChanged();
    try {
      dropLocalTable(servedTableKey(name), {
        databaseFile: this.#tables.file,
        synchronous: this.#settings.synchronous,
        meta: servedTablesMeta(next, this.#served.configured),
      });
    } catch (error) {
      this.#served.filter = before;
      this.#follower.tablesChanged();
      throw error;
    }
    // Added back later, the table is applied again from txn 1: its watermarks start over.
    this.#forgetApplied(servedTableKey(name));
    this.#deps.log.info({ table: name, held }, 'table dropped: no longer served');
    return true;
  }

  /** Serve `name` (bootstrapping it from a snapshot when its chain was collected); null when it was served already. */
  async #addTable(name: string): Promise<AddedTable | null> {
    const before = this.#served.filter;
    const next = before.adding(name);
    if (next.equals(before)) return null;
    const meta = servedTablesMeta(next, this.#served.configured);
    const key = servedTableKey(name);
    const snapshot =
      this.#tables.schema(name) === undefined && this.#deps.follower === undefined
        ? await this.#bootstrapTable(key, meta)
        : null;
    this.#checkOpen();
    if (snapshot === null) this.#tables.setMeta(...meta);
    this.#served.filter = next;
    this.#follower.tablesChanged();
    this.#deps.log.info({ table: name, snapshot: snapshot?.id ?? null }, 'table added: now served');
    return { table: name, snapshot };
  }

  /**
   * When the store's chain of table `key` no longer starts at txn 1, copies the table in from the
   * newest snapshot that holds it up to the chain's start (one LIST of one key, then the manifests
   * of the newest snapshots and one image). Null when the chain starts at txn 1 or the table has no
   * segments and no snapshot holds it (it is followed from the start). SNAPSHOT_MISSING
   * (unavailable) when no snapshot covers the gap.
   */
  async #bootstrapTable(key: TableKey, meta: [string, string]): Promise<AddedTable['snapshot']> {
    const { store } = this.#settings;
    const page = await store.list(segmentPrefix(key), { limit: 1 });
    const first = page.objects[0];
    const chainStart = first === undefined ? undefined : txnFirstOfSegmentKey(first.key);
    if (chainStart === 1n) return null;
    const clusterId = this.#tables.getMeta('cluster.id');
    const { manifests } = await listSnapshots(store, { limit: TABLE_BOOTSTRAP_SNAPSHOTS_MAX });
    const manifest = manifests.find((m) => {
      const lastTxn = m.tables.find((t) => t.key === key)?.lastTxn;
      return m.clusterId === clusterId && lastTxn !== undefined && lastTxn + 1n >= (chainStart ?? 0n);
    });
    if (manifest === undefined) {
      if (chainStart === undefined) return null;
      throw new WalshipError(
        'SNAPSHOT_MISSING',
        'unavailable',
        `the store's chain of table key ${key} starts at txn ${chainStart} (WAL retention removed the txns before it) ` +
          `and none of the newest ${TABLE_BOOTSTRAP_SNAPSHOTS_MAX} snapshots holds the table up to there: ` +
          'take a snapshot on a replica that serves it (POST /admin/snapshot), then add the table again',
      );
    }
    this.#deps.log.info(
      { key, snapshot: manifest.id, chainStart: chainStart?.toString() ?? null },
      'bootstrapping a table from a snapshot',
    );
    const lastTxn = await bootstrapTableFromSnapshot({
      store,
      manifest,
      key,
      tmpDir: this.#settings.dataDir,
      databaseFile: this.#tables.file,
      synchronous: this.#settings.synchronous,
      meta,
    });
    return { id: manifest.id, lastTxn: lastTxn.toString() };
  }

  /**
   * Upload a snapshot of this replica's tables now, whatever the schedule would decide (one at a
   * time: a second call joins the first). close() aborts it: it then rejects with CLOSED.
   */
  snapshot(): Promise<SnapshotManifest> {
    this.#snapshotting ??= this.#takeSnapshot().finally(() => {
      this.#snapshotting = undefined;
    });
    return this.#snapshotting;
  }

  async #takeSnapshot(): Promise<SnapshotManifest> {
    const clusterId = this.#tables.getMeta('cluster.id');
    if (clusterId === undefined) {
      throw new WalshipError(
        'NOTHING_TO_SNAPSHOT',
        'unavailable',
        'this replica has not seen a cluster in the store yet',
      );
    }
    if (!this.#served.filter.servesAll()) {
      // A snapshot lacking tables would bootstrap other replicas without them (and mislead GC).
      throw new WalshipError(
        'SNAPSHOT_REFUSED',
        'invalid',
        `this replica serves only some tables (${JSON.stringify(this.servedTables())}): ` +
          'take snapshots on a replica that serves every table',
      );
    }
    const { clock } = this.#deps;
    try {
      const manifest = await publishSnapshot({
        store: this.#settings.store,
        tables: this.#tables,
        clusterId,
        nodeId: this.nodeId,
        clock,
        tmpDir: this.#settings.dataDir,
        signal: this.#snapshotAbort.signal,
      });
      const atMs = clock.monotonicMs();
      this.#lastSnapshot = { id: manifest.id, agoMs: () => Math.round(clock.monotonicMs() - atMs) };
      this.#deps.log.info({ snapshot: manifest.id, tables: manifest.tables.length }, 'snapshot uploaded');
      return manifest;
    } catch (error) {
      this.#lastSnapshot = { error: (error as Error).message };
      throw error;
    }
  }

  #startSnapshotSchedule(): void {
    const intervalMs = this.#settings.snapshotIntervalMs;
    if (intervalMs <= 0) return;
    this.#armSnapshotCheck(firstSnapshotCheckMs(intervalMs, this.#deps.random ?? systemRandom));
  }

  #armSnapshotCheck(delayMs: number): void {
    if (this.#closed) return;
    this.#snapshotTimer = this.#deps.clock.setTimer(
      delayMs,
      () => {
        this.#snapshotCheck = this.#scheduledSnapshot().finally(() => {
          this.#snapshotCheck = undefined;
        });
      },
      { unref: true },
    );
  }

  /** One check of the schedule (replica/snapshot-schedule.ts): publish when due, then arm the next. Never rejects. */
  async #scheduledSnapshot(): Promise<void> {
    const intervalMs = this.#settings.snapshotIntervalMs;
    const { log } = this.#deps;
    let decision: SnapshotDecision | undefined;
    try {
      decision = await this.#checkSnapshot(intervalMs);
      // Re-checked after the await: close() may have come meanwhile.
      if (decision?.publish === true && !this.#closed) await this.snapshot();
    } catch (error) {
      if (!this.#closed) {
        log.warn({ err: (error as Error).message }, 'scheduled snapshot failed; will try again');
      }
    }
    this.#armSnapshotCheck(nextSnapshotCheckMs(intervalMs, this.#deps.random ?? systemRandom, decision));
  }

  /** The schedule's decision; undefined when this replica cannot publish (no cluster seen yet, or only some tables served). */
  async #checkSnapshot(intervalMs: number): Promise<SnapshotDecision | undefined> {
    const clusterId = this.#tables.getMeta('cluster.id');
    if (clusterId === undefined || !this.#served.filter.servesAll()) {
      this.#deps.log.debug(
        { cluster: clusterId ?? null },
        'scheduled snapshot skipped: no cluster seen yet, or only some tables served',
      );
      return undefined;
    }
    const applied = this.#tables
      .schemas()
      .map((schema) => ({ key: schema.key, lastTxn: this.#tables.lastTxn(schema.name) }));
    const decision = await checkScheduledSnapshot({
      store: this.#settings.store,
      clusterId,
      intervalMs,
      nowWallMs: this.#deps.clock.wallMs(),
      applied,
      signal: this.#snapshotAbort.signal,
    });
    if (!decision.publish) {
      this.#deps.log.info(
        { reason: decision.reason, newest: decision.newest?.id ?? null },
        'scheduled snapshot skipped',
      );
    }
    return decision;
  }

  /** Stop following and serving; close all but the store (its opener's). Idempotent. */
  /**
   * A read for the PostgreSQL door: this replica's read consistency first (the session's
   * `walship.min_txn`, `walship.wait_ms`, `walship.max_staleness_ms`, as `/exec`'s parameters),
   * then its query hosts.
   */
  async queryPg(sql: string, options: PgQueryOptions): Promise<PgPage> {
    await this.#consistency({ headers: {} }, consistencyParams(options.session), options.signal);
    return this.#queries.queryPg(sql, options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#snapshotTimer?.cancel();
    // A snapshot in progress ends at once (its copy process is killed): a node stops promptly on
    // SIGTERM whatever the size of its database.
    this.#snapshotAbort.abort(new WalshipError('CLOSED', 'closed', 'the replica closed during the snapshot'));
    await this.#snapshotCheck;
    await this.#snapshotting?.catch(() => {});
    await this.#follower.stop();
    if (this.#deps.http === undefined) await this.#http.close();
    await this.#queries.close();
    this.#tables.close();
  }
}

function handlers(
  settings: ReplicaSettings,
  follower: TableFollower,
  waiters: AppliedWaiters,
  queries: QueryPool,
  deps: ReplicaDeps,
  served: ServedTables,
  node: () => ReplicaNode | undefined,
) {
  const ilpAuth = settings.ilpAuth ?? settings.httpAuth;
  const writer = deps.writer;
  const ilp = createIlpHttpHandler({
    commit:
      writer?.commit ??
      (() => Promise.reject(new WalshipError('NOT_ACCEPTING_WRITES', 'fenced', 'a replica takes no writes'))),
    acceptingWrites: () => writer?.acceptingWrites() ?? false,
    maxRequestBytes: settings.maxRequestBytes,
    releaseVersion: settings.version,
    tcpEnabled: false,
    settingsExtra: () => ({ [TABLES_SETTING]: served.filter.toJSON() }),
    ...(ilpAuth === undefined ? {} : { auth: ilpAuth }),
    ...(deps.onIlpRequest === undefined ? {} : { onRequest: deps.onIlpRequest, clock: deps.clock }),
  });
  const queryAuth = settings.queryAuth ?? settings.httpAuth;
  const readAuth = queryAuth === undefined ? undefined : createHttpAuthenticator(queryAuth);
  const consistency = createReadConsistency({
    waiters,
    applied: (key) => follower.appliedTxn(key),
    appliedAll: () => follower.appliedAll(),
    stalenessMs: () => follower.stalenessMs(),
    refresh: () => follower.refresh(),
    onBehind: (keys) => follower.probeNow(keys),
    txnIsOfEpoch: (key, txn, epoch) => node()?.txnIsOfEpoch(key, txn, epoch),
    waitMaxMs: settings.readWaitMaxMs,
    clock: deps.clock,
    ...(deps.onReadRefused === undefined ? {} : { onRefused: deps.onReadRefused }),
  });
  const query = createQueryHttpHandler(queries, {
    consistency,
    ...(deps.onQuery === undefined ? {} : { onQuery: deps.onQuery, clock: deps.clock }),
    ...(readAuth === undefined
      ? {}
      : { auth: (req: IncomingMessage) => readAuth(req.headers.authorization) }),
  });
  // Public: paths relative to the data dir, never absolute (core/status-paths.ts).
  const hidePaths = statusPathHider({
    dataDir: settings.dataDir,
    storeDescription: settings.store.description,
  });
  const status = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.split('?')[0] !== '/status' || req.method !== 'GET') return false;
    sendJson(res, 200, hidePaths(node()?.status() ?? {}));
    return true;
  };
  const admin = createAdminHttpHandler(settings.adminToken, {
    ...deps.adminActions,
    resume: async (params) => {
      const table = params.get('table');
      if (table === null || table === '')
        throw new WalshipError('INVALID_ARGUMENT', 'invalid', 'resume needs ?table=<name>');
      return { table, resumed: node()?.resume(table) ?? false };
    },
    snapshot: async () => {
      const manifest = await node()?.snapshot();
      return manifest === undefined ? {} : { id: manifest.id, tables: manifest.tables };
    },
    tables: async (params) => {
      const body = params.get(ADMIN_BODY_PARAM) ?? '';
      params.delete(ADMIN_BODY_PARAM);
      const changes = tableChangesOf(params, body);
      const replica = node();
      if (replica === undefined)
        throw new WalshipError('NOT_READY', 'unavailable', 'the replica is starting');
      return replica.changeTables(changes);
    },
  });
  const routes = [
    ilp.handle,
    (req: IncomingMessage, res: ServerResponse) => query.handle(req, res),
    status,
    withTablesBody(admin),
  ];
  return { routes, consistency };
}

/** `/settings` field naming the tables a replica serves (beside QuestDB's fields). */
const TABLES_SETTING = 'replication.replica.tables';
/** Snapshots (newest first) searched for one that can bootstrap an added table: each costs a GET. */
const TABLE_BOOTSTRAP_SNAPSHOTS_MAX = 20;
/** The query parameter that hands the body of `POST /admin/tables` to its action (actions see only the URL). */
const ADMIN_BODY_PARAM = 'walship.body';

/** The tables a node serves now and the configuration they started from (replica/table-filter.ts). */
interface ServedTables {
  filter: TableFilter;
  configured: TableFilter;
}

/** One table `POST /admin/tables` added, and the snapshot it was bootstrapped from (null: none). */
export interface AddedTable {
  table: string;
  snapshot: { id: string; lastTxn: string } | null;
}

/** The answer of `POST /admin/tables`. */
export interface TablesChanged {
  added: AddedTable[];
  dropped: string[];
  servedTables: TableFilterSpec;
}

/**
 * The served tables at start: the configuration or the recorded lists (resolveServedTables), and
 * every table of the database they do not admit dropped (a replica answers only for what it follows).
 */
function serveTables(
  tables: TableStore,
  settings: ReplicaSettings,
  databaseFile: string,
  log: Logger,
): ServedTables {
  const configured = settings.tables ?? TableFilter.ALL;
  const filter = resolveServedTables(tables, configured);
  for (const schema of tables.schemas()) {
    if (filter.admits(schema.name)) continue;
    dropLocalTable(schema.key, {
      databaseFile,
      synchronous: settings.synchronous,
      meta: servedTablesMeta(filter, configured),
    });
    log.info({ table: schema.name }, 'dropped a table this replica does not serve');
  }
  return { filter, configured };
}

/**
 * `POST /admin/tables` may name its tables in the body (`add=a&drop=b` or JSON): the body, at most
 * TABLE_FILTER_LIMITS.adminBodyBytesMax bytes, is read and handed to the action in ADMIN_BODY_PARAM
 * (the admin handler checks the token before the action runs). Other requests pass through.
 */
function withTablesBody(admin: HttpHandler): HttpHandler {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/admin/tables' || req.method !== 'POST') return admin(req, res);
    const body = await readSmallBody(req, TABLE_FILTER_LIMITS.adminBodyBytesMax);
    if (body === null) {
      sendJson(res, 413, {
        code: 'payload too large',
        message: `the body of /admin/tables is limited to ${TABLE_FILTER_LIMITS.adminBodyBytesMax} bytes`,
      });
      return true;
    }
    url.searchParams.delete(ADMIN_BODY_PARAM);
    if (body.trim() !== '') url.searchParams.set(ADMIN_BODY_PARAM, body);
    req.url = `${url.pathname}${url.search}`;
    return admin(req, res);
  };
}

/** The body as UTF-8, or null past `maxBytes` (the rest is drained, not kept). */
function readSmallBody(req: IncomingMessage, maxBytes: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= maxBytes) chunks.push(chunk);
    });
    req.on('end', () => resolve(bytes > maxBytes ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * An empty data dir (no tables.sqlite yet) restores the newest snapshot of the store's cluster
 * (DESIGN §6 "Bootstrap"), so a new replica replays only the segments after it. Returns the
 * manifest restored, or null.
 */
async function bootstrap(
  settings: ReplicaSettings,
  databaseFile: string,
  deps: ReplicaDeps,
): Promise<SnapshotManifest | null> {
  if (!settings.bootstrapFromSnapshot || existsSync(databaseFile)) return null;
  try {
    return await bootstrapFromSnapshot(settings, databaseFile, deps);
  } finally {
    deps.onOperation?.(null);
  }
}

async function bootstrapFromSnapshot(
  settings: ReplicaSettings,
  databaseFile: string,
  { clock, log, onOperation }: ReplicaDeps,
): Promise<SnapshotManifest | null> {
  const cluster = await settings.store.get(CLUSTER_KEY);
  if (cluster === null || cluster.status !== 'ok') return null;
  const { clusterId } = parseClusterRecord(cluster.body);
  const manifest = await newestSnapshot(settings.store, clusterId);
  if (manifest === null) return null;
  log.info({ snapshot: manifest.id, tables: manifest.tables.length }, 'restoring the newest snapshot');
  const startedAtMs = clock.monotonicMs();
  const report = (phase: string, done: number, total: number) =>
    onOperation?.({ name: 'bootstrap', phase, done, total, unit: 'bytes', startedAtMs });
  report(`download snapshot ${manifest.id}`, 0, manifest.image.bytes);
  await restoreSnapshot({
    store: settings.store,
    manifest,
    destFile: databaseFile,
    tmpDir: settings.dataDir,
    // Once the image is all here it is unpacked and checked: the bar stays full, the phase says so.
    onProgress: (done, total) =>
      report(done < total ? `download snapshot ${manifest.id}` : 'restore', done, total),
  });
  const restored = TableStore.open(databaseFile, { synchronous: settings.synchronous });
  try {
    restored.setMeta('cluster.id', clusterId);
  } finally {
    restored.close();
  }
  return manifest;
}

/**
 * Passes each applied watermark on to the read waiters. The follower reports a table's watermark
 * after every segment it applied (the segment's last txn, each segment following the one before),
 * so per table it only goes up: readers waiting for a txn rely on that. `forget` is for a table
 * dropped from this replica (`/admin/tables?drop=`): added back, it is applied from txn 1 again.
 * (Before `forget`, the assertion then failed after every segment, and each poll that failed
 * backed off: a re-added table caught up at one segment a second.)
 */
function appliedNotifier(waiters: AppliedWaiters): {
  onApplied: (key: string, txn: bigint) => void;
  forget: (key: string) => void;
} {
  const lastByKey = new Map<string, bigint>();
  return {
    onApplied: (key, txn) => {
      const last = lastByKey.get(key);
      assert(last === undefined || txn > last, `table ${key}: applied txn ${txn} is not above ${last}`);
      lastByKey.set(key, txn);
      waiters.notify(key, txn);
    },
    forget: (key) => {
      lastByKey.delete(key);
    },
  };
}

/** Txns applied over `tables` (the sum of their watermarks). */
function appliedOf(tables: readonly FollowedTableStatus[]): bigint {
  return tables.reduce((sum, t) => sum + t.appliedTxn, 0n);
}

/**
 * A primary's data dir may hold txns that never reached the store: a replica must not mix them
 * with the store's (a fenced primary writes them to a divergence file and moves the database
 * aside first, RFC-0002). A demoted primary that uploaded everything follows on its own database.
 */
function refusePrimaryDataDir(tables: TableStore): void {
  const pending = tables.pendingSummary();
  if (pending.length === 0) return;
  const txns = pending.reduce((sum, p) => sum + p.count, 0);
  throw new WalshipError(
    'REPLICA_REFUSED',
    'invalid',
    `this data dir holds ${txns} txns of a primary that never reached the object store (tables ${pending
      .map((p) => p.table)
      .join(', ')}); start it as a primary to upload them, or give the replica an empty node.data.dir`,
  );
}
