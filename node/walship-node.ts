import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import {
  type AdminAction,
  assert,
  type Clock,
  createHealthHandler,
  createStatusPageHandler,
  type HttpHandler,
  isoTime,
  isWalshipError,
  nodeUrl,
  type Random,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
  statusPathHider,
  type Timer,
  WalshipError,
} from '../core/index.js';
import { LeaseKeeper, LeaseWatcher, type Promotion, promote, sequencedCluster } from '../failover/index.js';
import { createIlpHttpHandler } from '../ilp/index.js';
import {
  type EpochRecord,
  LEASE_KEY,
  type NodeFacts,
  newestEpoch,
  newestSnapshot,
  readCluster,
  readSequencerRecord,
} from '../layout/index.js';
import { type ObjectStore, runConformanceProbe, withMetrics } from '../objectstore/index.js';
import { PG_SERVER_VERSION, type PgServer, startPgServer } from '../pg/index.js';
import {
  ACK_MODE_META_KEY,
  type DivergenceSummary,
  type PgListenerOptions,
  PrimaryNode,
  type PrimarySettings,
  recordedAckMode,
  recordUploadsFound,
  recordUploadsFoundRetrying,
  writeDivergenceFiles,
} from '../primary/index.js';
import { type ReplicaDeps, ReplicaNode, type ReplicaSettings } from '../replica/index.js';
import { moveDatabaseFiles, TableStore } from '../table/index.js';
import { ClusterStatusSource } from './cluster-status.js';
import {
  type ActivityEventDetails,
  type ActivityEventKind,
  NodeActivity,
  STATUS_EVENTS_MAX,
} from './node-activity.js';
import {
  createMetricsHandler,
  FENCING_EVENT_KINDS,
  type FencingEventKind,
  NodeMetrics,
} from './node-metrics.js';
import { NodeRegistration } from './node-registry.js';
import { type PromotionTrigger, promotionTriggerOf, queryOutcomeOfError } from './request-metrics.js';
import {
  openWriter,
  type SequencedSettings,
  sequencedFollowerFactory,
  WriterSlot,
} from './sequenced-roles.js';

/** Both roles' settings, built from one configuration (same data dir, store, listener, identity). */
export interface NodeSettings {
  primary: PrimarySettings;
  replica: ReplicaSettings;
  /** How others reach this node (epoch records). */
  url: string;
  /** How long a demotion waits for the backlog to upload (`replication.ack.durable.timeout`). */
  demoteTimeoutMs: number;
  /**
   * Automatic failover (`replication.failover.auto`): as primary, renew `lease.json`; as replica,
   * promote itself when the lease has not changed for `leaseTimeoutMs` (RFC-0002).
   */
  autoFailover: { enabled: boolean; leaseTimeoutMs: number };
  /** How often the status page's history samples `/status` (default STATUS_SAMPLE_MS_DEFAULT). */
  statusSampleMs?: number;
  /**
   * Rewrite `nodes/<nodeId>.json` this often, and at every role change (`replication.node.register.interval`);
   * undefined or 0: never register (node/node-registry.ts).
   */
  registerIntervalMs?: number;
  /** `replication.sequencer`: this node belongs to a cluster of several primaries (RFC-0003). */
  sequenced?: SequencedSettings;
  /**
   * How a promoted node retries starting its primary role (default PRIMARY_START_RETRY_DEFAULT);
   * tests lengthen it to free a held port at their own pace.
   */
  primaryStartRetry?: PrimaryStartRetry;
}

/** Attempts (the first included) and the waits between them, doubling from `firstWaitMs` up to `maxWaitMs`. */
export interface PrimaryStartRetry {
  attemptsMax: number;
  firstWaitMs: number;
  maxWaitMs: number;
}

/** The bootstrap's progress as a replica reports it while starting (replica/replica-node.ts). */
type OperationProgress = Parameters<NonNullable<ReplicaDeps['onOperation']>>[0];

/** A table whose next segments WAL retention deleted, as the replica reports it (RFC-0007). */
type SegmentsCollected = Parameters<NonNullable<ReplicaDeps['onSegmentsCollected']>>[0];

/** The status page's lag chart gets a point a second by default. */
const STATUS_SAMPLE_MS_DEFAULT = 1_000;

export interface NodeDeps {
  clock: Clock;
  random: Random;
  /**
   * The base logger. The node adds `nodeId`, `role` and `epoch` to every line (a replica's epoch is
   * null: each of its tables has its own, in `/status`).
   */
  log: Logger;
  /**
   * This node's metrics; default a new registry. The CLI passes its own so that the store's retry
   * hook, set when the store is opened, feeds the same registry.
   */
  metrics?: NodeMetrics;
}

export type NodeRole = 'primary' | 'replica' | 'switching';

/**
 * How long a demoted primary goes on renewing the lease for the switchover's target (see
 * #handover): the switchover command's default wait for the target to catch up.
 */
const HANDOVER_LEASE_MS = 30_000;

/** The database file both roles use in a data dir. */
const DATABASE_FILE = 'tables.sqlite';

/**
 * A promoted node whose primary role cannot start (its ILP/TCP port still taken, the store briefly
 * unreachable) tries 5 times in all, waiting 0.25 + 0.5 + 1 + 2 s between them, then steps down
 * to a replica: candidates then promote past its epoch (failover/lease.ts), so a failed promotion
 * never leaves the cluster without a primary (issue 13 item 6).
 */
const PRIMARY_START_RETRY_DEFAULT: PrimaryStartRetry = { attemptsMax: 5, firstWaitMs: 250, maxWaitMs: 4_000 };

/**
 * How often a node waiting for its cluster to choose a primary lists `epochs/` (one LIST and one
 * GET each time): a waiting node costs at most 2 requests a second.
 */
const WAIT_POLL_MS = 1_000;

/** How often a waiting node says again in its log what it waits for (the first line comes at once). */
const WAIT_LOG_INTERVAL_MS = 60_000;

/** `Retry-After`, in seconds, while no role runs: a start or a role change takes about that long. */
const RETRY_AFTER_S = 1;

/**
 * What the listener answers while no role runs, by where the node is heading: `unknown` (starting
 * as primary; it may yet rejoin as a replica) and `primary` (being promoted) answer writes 503 with
 * Retry-After — QuestDB's clients retry that on the same address, which is about to take writes;
 * `replica` (starting as one, waiting, demoted, fenced) answers writes 421, so multi-URL clients
 * move on to the primary at once.
 */
type Heading = 'unknown' | 'primary' | 'replica';

/** What `/status` says while a node waits for its cluster to choose a primary (issue 13 item 4). */
interface Waiting {
  for: string;
  /** When the wait began (ISO 8601, wall clock). */
  since: string;
  sinceMonotonicMs: number;
  hint: string;
  epoch: string;
  pendingTxns: number;
  lastError: string | null;
}
/**
 * One walship process: a primary or a replica that can change role without a restart (RFC-0002).
 * It owns the HTTP listener (clients keep their connections; during a switch writes get 421 and
 * reads 503) and serves `POST /admin/promote` and `POST /admin/demote` beside the role's own
 * admin actions. A primary fenced by a newer epoch writes its un-uploaded txns to divergence files,
 * moves its database aside and follows the new primary as a replica.
 */
export class WalshipNode {
  readonly #settings: NodeSettings;
  readonly #deps: NodeDeps;
  readonly #http: RunningHttpServer;
  /** The PostgreSQL door: like the HTTP listener it lives across roles and asks the current one. */
  readonly #pg: PgServer | undefined;
  #node: PrimaryNode | ReplicaNode | undefined;
  #role: NodeRole = 'switching';
  /** The write path while this node is a writer of a sequenced cluster (its #node is then a ReplicaNode). */
  #writer: WriterSlot | undefined;
  /** True once this node found (or was told) that its cluster is sequenced: roles are then RFC-0003's. */
  #sequenced = false;
  #nodeId: string | undefined;
  /** Role changes run one at a time. */
  #transition: Promise<unknown> = Promise.resolve();
  #lease: LeaseKeeper | LeaseWatcher | undefined;
  /**
   * After a demotion with automatic failover on, the demoted primary's keeper goes on renewing the
   * lease until the new primary's keeper takes it over (this one then sees a newer epoch and
   * stops) or HANDOVER_LEASE_MS pass: otherwise a candidate could promote itself by timeout while
   * the switchover's target is still catching up.
   */
  #handover: { keeper: LeaseKeeper; timer: Timer } | undefined;
  /**
   * The conformance probe, run in the background once this process is a replica, so a promotion
   * does not wait for it inside the write pause; true when the store can fence.
   */
  #storeCheck: Promise<boolean> | undefined;
  /**
   * Set when this node's own promotion could not start its primary role (its port taken, say): its
   * next lease watcher waits twice the lease timeout, so that another candidate goes first.
   */
  #deferCandidacy = false;
  #divergence: { epoch: string; files: DivergenceSummary[]; movedTo: string | null } | null = null;
  /** The last re-bootstrap after WAL retention collected segments this replica needed (RFC-0007). */
  #rebootstrap: Record<string, unknown> | null = null;
  /** Set while the node waits for its cluster to choose a primary before joining (`/status` `waiting`). */
  #waiting: Waiting | null = null;
  /** The start of the role asked for (see `open`); settled once a role runs or the start failed. */
  #started: Promise<void> = Promise.resolve();
  /** Aborted by `close`: ends a wait for the cluster and a wait between primary start attempts. */
  readonly #closing = new AbortController();
  #rebootstrapping = false;
  /** The status page's history (lag samples, events): kept across role changes. */
  readonly #activity: NodeActivity;
  /** The status page and `/status/history`, served in every role and while switching. */
  readonly #activityRoutes: HttpHandler[];
  /** `/status/cluster`: every registered node as this node sees it (issue 19). */
  readonly #cluster: ClusterStatusSource;
  /** The last role change: from what role, heading where, since when, and that role's last `/status`. */
  #switching: {
    from: NodeRole;
    to: Heading;
    sinceMonotonicMs: number;
    last: Record<string, unknown> | null;
  } | null = null;
  /** This node's registration in the store; undefined when registration is off. */
  #registration: NodeRegistration | undefined;
  /** A long operation while no role answers `/status` (a replica's bootstrap). */
  #operation: OperationProgress | null = null;
  /** `GET /metrics`: kept across role changes like the activity. */
  readonly #metrics: NodeMetrics;
  /** A logger whose lines carry the node's identity as it is when each line is written. */
  readonly #liveLog: Logger;
  #closed = false;

  private constructor(
    settings: NodeSettings,
    deps: NodeDeps & { metrics: NodeMetrics },
    http: RunningHttpServer,
    liveLog: Logger,
    pg: PgServer | undefined,
  ) {
    this.#settings = settings;
    this.#deps = deps;
    this.#http = http;
    this.#pg = pg;
    this.#metrics = deps.metrics;
    this.#liveLog = liveLog;
    this.#activity = new NodeActivity({
      clock: deps.clock,
      sampleIntervalMs: settings.statusSampleMs ?? STATUS_SAMPLE_MS_DEFAULT,
      status: () => this.#node?.status() ?? { role: this.#role },
    });
    const history: HttpHandler = async (req, res) => {
      if (req.url?.split('?')[0] !== '/status/history' || req.method !== 'GET') return false;
      res.setHeader('cache-control', 'no-store');
      sendJson(res, 200, this.#publicPaths(this.#activity.history()));
      return true;
    };
    this.#cluster = new ClusterStatusSource({
      store: settings.primary.store,
      clock: deps.clock,
      nodeId: () => this.#nodeId,
      url: () => this.#url(),
      status: () => this.status(),
    });
    const cluster: HttpHandler = async (req, res) => {
      if (req.url?.split('?')[0] !== '/status/cluster' || req.method !== 'GET') return false;
      res.setHeader('cache-control', 'no-store');
      sendJson(res, 200, this.#publicPaths(await this.#cluster.current()));
      return true;
    };
    // While no role runs, `/status` is this node's own (a role starting may have set its routes already).
    const switchingStatus: HttpHandler = async (req, res) => {
      if (this.#node !== undefined || req.url?.split('?')[0] !== '/status' || req.method !== 'GET')
        return false;
      res.setHeader('cache-control', 'no-store');
      sendJson(res, 200, this.#publicPaths(this.status()));
      return true;
    };
    const metrics = createMetricsHandler({
      metrics: this.#metrics,
      status: () => this.status(),
      // `/metrics` is read-side: the query credentials (`query.auth.token`, else the HTTP ones).
      auth: settings.primary.queryAuth ?? settings.primary.httpAuth,
    });
    this.#activityRoutes = [
      createStatusPageHandler(),
      createHealthHandler(() => this.status()),
      switchingStatus,
      history,
      cluster,
      metrics,
    ];
  }

  /**
   * Starts a node in `role` and resolves once a role runs — after waiting for the cluster when it
   * must (see `open`). Rejects as the role's start does, the listener closed.
   */
  static async start(
    role: 'primary' | 'replica',
    settings: NodeSettings,
    deps: NodeDeps,
  ): Promise<WalshipNode> {
    const node = await WalshipNode.open(role, settings, deps);
    try {
      await node.started;
    } catch (error) {
      await node.close();
      throw error;
    }
    return node;
  }

  /**
   * Listens at once and starts `role` in the background (`started`). Until a role runs the node
   * says it is starting: `/ping` answers 503 with Retry-After, and so do writes when the node may
   * become the primary (421 when it is heading for a replica); ILP/TCP does not listen yet
   * (issue 13 item 8). A node that must wait for its cluster before joining waits here, listening
   * and saying so in its log and `/status` (`waiting`), instead of exiting (issue 13 item 4):
   * - started as a replica on the data dir of the newest epoch's primary that holds txns which
   *   never reached the store: it waits until another node is promoted (then it rejoins, keeping
   *   those txns in divergence files) or those txns turn out to be in the store after all;
   * - started as the primary of an epoch that a newer one replaced while it was down: it rejoins
   *   as a replica at once (RFC-0002 W3), logging why.
   */
  static async open(
    role: 'primary' | 'replica',
    settings: NodeSettings,
    deps: NodeDeps,
  ): Promise<WalshipNode> {
    const metrics = deps.metrics ?? new NodeMetrics();
    // The listener lives across roles: its lines name the node as it is when they are written.
    let node: WalshipNode | undefined;
    const liveLog = liveLogger(() =>
      node === undefined
        ? deps.log.child({ nodeId: settings.primary.nodeId ?? null, role: 'switching', epoch: null })
        : node.#log(),
    );
    const http = await startHttpServer([], settings.primary.http, liveLog);
    let pg: PgServer | undefined;
    try {
      pg = await startPgDoor(settings.primary.pg, () => node?.current, liveLog, {
        metrics,
        clock: deps.clock,
      });
    } catch (error) {
      await http.close();
      throw error;
    }
    node = new WalshipNode(
      measuredStore(settings, metrics, deps.clock),
      { ...deps, metrics },
      http,
      liveLog,
      pg,
    );
    const opened = node;
    http.setHandlers(opened.#switchingRoutes(role === 'primary' ? 'unknown' : 'replica'));
    opened.#started = opened.#serialised(async () => {
      await opened.#startRole(role);
      if (opened.#closed) return;
      opened.#record(
        'started',
        opened.#node instanceof PrimaryNode
          ? `started as primary at epoch ${opened.#node.epoch}`
          : 'started as replica',
      );
      opened.#activity.start();
      opened.#startRegistration();
    });
    opened.#started.catch(() => {}); // observed by `start` and by the command line
    return opened;
  }

  /**
   * Settles once the role asked for at `open` runs (or the node joined as a replica instead);
   * rejects when it could not start, with CLOSED when the node was closed first (a wait cut short).
   */
  get started(): Promise<void> {
    return this.#started;
  }

  get role(): NodeRole {
    return this.#role;
  }

  /** The PostgreSQL door's port, or undefined when it is off (`pg.enabled=false`). */
  get pgPort(): number | undefined {
    return this.#pg?.port;
  }

  get httpPort(): number {
    return this.#http.port;
  }

  get nodeId(): string | undefined {
    return this.#nodeId;
  }

  /** This node's metrics registry (`GET /metrics`). */
  get metrics(): NodeMetrics {
    return this.#metrics;
  }

  /** A logger whose every line carries this node's `nodeId`, `role` and `epoch` at the time of the line. */
  get log(): Logger {
    return this.#liveLog;
  }

  /** The current role's node (undefined while switching). */
  get current(): PrimaryNode | ReplicaNode | undefined {
    return this.#node;
  }

  /** Replica → primary at the next epoch (RFC-0002 P1–P5). On failure the node stays (or becomes again) a replica. */
  promote(reason = 'promote', onlyAfterEpoch?: bigint): Promise<Promotion> {
    return this.#timedPromotion(promotionTriggerOf(reason), () => this.#promote(reason, onlyAfterEpoch));
  }

  /**
   * `promote()` counted in `/metrics` by `trigger`: its outcome, and how long it took to take
   * writes; with `lastLeaseChangeMs` (automatic failover) also since the lease was last renewed.
   */
  async #timedPromotion(
    trigger: PromotionTrigger,
    run: () => Promise<Promotion>,
    lastLeaseChangeMs?: number,
  ): Promise<Promotion> {
    const { clock } = this.#deps;
    const startedMs = clock.monotonicMs();
    try {
      const promotion = await run();
      const endedMs = clock.monotonicMs();
      this.#metrics.onPromotion({
        trigger,
        outcome: 'ok',
        seconds: (endedMs - startedMs) / 1000,
        ...(lastLeaseChangeMs === undefined ? {} : { failoverSeconds: (endedMs - lastLeaseChangeMs) / 1000 }),
      });
      return promotion;
    } catch (error) {
      this.#metrics.onPromotion({
        trigger,
        outcome: 'failed',
        seconds: (clock.monotonicMs() - startedMs) / 1000,
      });
      throw error;
    }
  }

  #promote(reason: string, onlyAfterEpoch: bigint | undefined): Promise<Promotion> {
    return this.#serialised(async () => {
      const replica = this.#node;
      if (!(replica instanceof ReplicaNode) || this.#writer !== undefined)
        throw notRole('promote', 'replica', this.#role);
      const nodeId = replica.nodeId;
      refuseFilteredReplica(replica);
      if (this.#sequenced) return this.#promoteToWriter(replica, reason);
      const startedMs = this.#deps.clock.monotonicMs();
      this.#enterSwitching('primary');
      await replica.close();
      let promotion: Promotion;
      try {
        promotion = await promote({
          store: this.#settings.primary.store,
          databaseFile: this.#databaseFile(),
          nodeId,
          url: this.#url(),
          reason,
          clock: this.#deps.clock,
          log: this.#log().child({ step: 'promote' }),
          codec: this.#settings.primary.codec,
          compressionLevel: this.#settings.primary.compressionLevel,
          synchronous: this.#settings.primary.synchronous,
          ...(onlyAfterEpoch === undefined ? {} : { onlyAfterEpoch }),
        });
      } catch (error) {
        this.#http.setHandlers(this.#switchingRoutes('replica'));
        if (this.#closed) throw error;
        await this.#startReplica(nodeId);
        this.#record('role', `promotion failed, still a replica: ${(error as Error).message}`);
        throw error;
      }
      try {
        await this.#startPrimaryRetrying(nodeId, promotion.epoch);
        this.#record('promoted', `promoted to primary at epoch ${promotion.epoch} (${reason})`, {
          durationMs: this.#deps.clock.monotonicMs() - startedMs,
        });
      } catch (error) {
        // Overtaken between the fences and the start (a newer epoch exists), or the role would
        // not start: step down and follow. The epoch stays claimed by this node; candidates
        // promote past it once it has gone a lease timeout without a renewal (failover/lease.ts).
        this.#http.setHandlers(this.#switchingRoutes('replica'));
        if (this.#closed) throw error;
        const overtaken = isWalshipError(error) && error.kind === 'fenced';
        const message = overtaken
          ? `promoted to epoch ${promotion.epoch}, but overtaken before taking writes; following as a replica: ${(error as Error).message}`
          : `promoted to epoch ${promotion.epoch}, but the primary role could not start (${(error as Error).message}); ` +
            'stepped down: following as a replica (automatic failover promotes a candidate past this epoch once its lease timeout passes)';
        this.#log().error({ err: (error as Error).message, epoch: promotion.epoch.toString() }, message);
        this.#deferCandidacy = !overtaken;
        await this.#startReplica(nodeId);
        this.#record('role', message);
        throw error;
      }
      return promotion;
    });
  }

  /**
   * Primary → replica after uploading everything (planned switchover, step 1); resolves each
   * table's last txn. With `answerOnceUploaded` it resolves as soon as every txn is in the store and
   * writes are refused (421), while the role change (closing the primary, starting the replica,
   * seconds on a loaded machine) goes on in the node's transition: the switchover promotes its
   * target meanwhile, and any later transition (a promotion back) waits for this one.
   */
  demote(
    timeoutMs = this.#settings.demoteTimeoutMs,
    options: { answerOnceUploaded?: boolean } = {},
  ): Promise<{ lastTxns: Record<string, string>; epoch: bigint }> {
    let answer: ((value: { lastTxns: Record<string, string>; epoch: bigint }) => void) | undefined;
    const answered = new Promise<{ lastTxns: Record<string, string>; epoch: bigint }>((resolve) => {
      answer = resolve;
    });
    const transition = this.#serialised(async () => {
      const primary = this.#node;
      if (this.#writer !== undefined) {
        throw new WalshipError(
          'NOT_SUPPORTED',
          'invalid',
          'a writer of a sequenced cluster is not demoted: stop it; the other writers go on taking writes',
        );
      }
      if (!(primary instanceof PrimaryNode)) throw notRole('demote', 'primary', this.#role);
      const startedMs = this.#deps.clock.monotonicMs();
      const lastTxns = await primary.demote(timeoutMs);
      const nodeId = primary.nodeId;
      this.#enterSwitching('replica', { handOverLease: true });
      answer?.({ lastTxns, epoch: primary.epoch });
      await primary.close();
      await this.#startReplica(nodeId);
      this.#record(
        'demoted',
        `demoted from epoch ${primary.epoch}: every txn is in the store; following as a replica`,
        { durationMs: this.#deps.clock.monotonicMs() - startedMs },
      );
      return { lastTxns, epoch: primary.epoch };
    });
    if (options.answerOnceUploaded !== true) return transition;
    transition.catch((error: unknown) =>
      this.#log().error({ err: (error as Error).message }, 'demoted, but the replica role did not start'),
    );
    // Whichever comes first: the early answer, or the transition's own outcome (a refusal).
    return Promise.race([answered, transition]);
  }

  status(): Record<string, unknown> {
    return this.#node?.status() ?? this.#switchingStatus();
  }

  /**
   * `/status` while no role runs (starting, waiting, changing role): who this node is, the change
   * under way (null while starting) and the last role's own `/status` as it was when the change
   * began, so that a page opened meanwhile has something to show (issue 19).
   */
  #switchingStatus(): Record<string, unknown> {
    const change = this.#switching;
    return {
      role: this.#role,
      nodeId: this.#nodeId ?? null,
      switching:
        change === null
          ? null
          : {
              from: change.from,
              to: change.to,
              forMs: Math.round(this.#deps.clock.monotonicMs() - change.sinceMonotonicMs),
            },
      last: change?.last ?? null,
      ...this.#statusExtra(),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new WalshipError('CLOSED', 'closed', 'the node is shutting down'));
    await this.#registration?.stop();
    this.#activity.stop();
    this.#cluster.close();
    await this.#transition.catch(() => {});
    await this.#endHandover();
    await this.#lease?.stop();
    await this.#writer?.close();
    this.#writer = undefined;
    await this.#node?.close();
    this.#node = undefined;
    await this.#pg?.close();
    await this.#http.close();
  }

  // --- roles ---

  /**
   * The role asked for at start. A primary whose epoch a newer one replaced while it was down
   * rejoins as a replica instead of refusing (RFC-0002 W3): exiting would only have its supervisor
   * start it again, refused again. A replica on a primary's data dir first waits for the cluster.
   */
  async #startRole(role: 'primary' | 'replica'): Promise<void> {
    if (role === 'primary') {
      try {
        return await this.#startPrimary(this.#settings.primary.nodeId);
      } catch (error) {
        // A failed start may have set its routes on the shared listener: take them back.
        this.#http.setHandlers(this.#switchingRoutes('unknown'));
        if (!isWalshipError(error, 'PRIMARY_REFUSED')) throw error;
        const replaced = await this.#replacedWhileDown();
        if (replaced === null) throw error;
        const { newest } = replaced;
        const message =
          `started as primary, but epoch ${newest.epoch} (node ${newest.nodeId}, ${newest.reason} at ${newest.at}) ` +
          `replaced this data dir's epoch ${replaced.localEpoch} while it was down: joining as a replica`;
        this.#log().warn(
          { localEpoch: replaced.localEpoch.toString(), newestEpoch: newest.epoch.toString() },
          message,
        );
        this.#record('role', message);
        this.#http.setHandlers(this.#switchingRoutes('replica'));
      }
    }
    await this.#waitForTheCluster();
    await this.#rejoinThenStartReplica();
  }

  /** The newest epoch, when it replaced the epoch this data dir was the primary of (same cluster); else null. */
  async #replacedWhileDown(): Promise<{ localEpoch: bigint; newest: EpochRecord } | null> {
    const local = this.#localPrimaryState();
    if (local === null) return null;
    const store = this.#settings.primary.store;
    const cluster = await readCluster(store);
    if (cluster === null || cluster.clusterId !== local.clusterId) return null;
    const newest = await newestEpoch(store);
    return newest !== null && newest.epoch > local.epoch ? { localEpoch: local.epoch, newest } : null;
  }

  /**
   * What this data dir holds of the primary it was: its epoch and cluster, its node id, and how
   * many txns never reached the store; null when it never was a primary (no epoch of its own).
   */
  #localPrimaryState(): {
    epoch: bigint;
    clusterId: string;
    nodeId: string | undefined;
    pendingTxns: number;
  } | null {
    const file = this.#databaseFile();
    if (!existsSync(file)) return null;
    const tables = TableStore.open(file, { synchronous: this.#settings.primary.synchronous });
    try {
      const epoch = tables.getMeta('epoch');
      const clusterId = tables.getMeta('cluster.id');
      if (epoch === undefined || clusterId === undefined) return null;
      return {
        epoch: BigInt(epoch),
        clusterId,
        nodeId: this.#settings.replica.nodeId ?? tables.getMeta('node.id'),
        pendingTxns: tables.pendingSummary().reduce((sum, p) => sum + p.count, 0),
      };
    } finally {
      tables.close();
    }
  }

  /**
   * Issue 13 item 4. This data dir was the primary of the newest epoch and holds txns that never
   * reached the store (it crashed, and was restarted as a replica before anyone was promoted): a
   * replica cannot follow on it (it would mix them with the store's, replica/replica-node.ts) nor
   * drop them, and only this node, as the primary, can upload them. So it waits, listening and
   * saying what for in its log and `/status` (`waiting`), polling `epochs/` every WAIT_POLL_MS,
   * until the cluster decides: a newer epoch (another node promoted, by hand or by its lease) →
   * return, and the rejoin keeps those txns in divergence files; every one of them found in the
   * store after all (a crash hid its upload's answer) → return, following loses nothing. It never
   * gives up by itself: exiting would only have a supervisor start it again into the same state.
   */
  async #waitForTheCluster(): Promise<void> {
    // A sequenced cluster has no epochs to wait for (RFC-0003): its replica refuses such a dir as before.
    if (this.#settings.sequenced !== undefined) return;
    const local = this.#localPrimaryState();
    if (local === null || local.pendingTxns === 0) return;
    this.#nodeId ??= local.nodeId;
    let pendingTxns = local.pendingTxns;
    let uploadsChecked = false;
    let loggedAtMs: number | undefined;
    for (;;) {
      try {
        const newest = await newestEpoch(this.#settings.primary.store);
        if (newest !== null && newest.epoch > local.epoch) {
          if (this.#waiting !== null) {
            const message = `epoch ${newest.epoch} (node ${newest.nodeId}) replaced epoch ${local.epoch}: joining as a replica`;
            this.#log().warn({ newestEpoch: newest.epoch.toString() }, message);
            this.#record('waiting', message);
          }
          this.#waiting = null;
          return;
        }
        if (!uploadsChecked) {
          pendingTxns = await this.#recordWhatReachedTheStore(local.epoch, local.nodeId);
          uploadsChecked = true;
          if (pendingTxns === 0) return;
        }
        if (this.#waiting !== null) this.#waiting.lastError = null;
      } catch (error) {
        // An unreachable or unreadable store decides nothing: keep waiting, and say why in /status.
        const message = (error as Error).message;
        if (this.#waiting !== null && this.#waiting.lastError !== message)
          this.#log().warn({ err: message }, 'waiting: cannot read the epochs');
        if (this.#waiting !== null) this.#waiting.lastError = message;
      }
      if (this.#waiting === null) {
        this.#waiting = waitingFor(local.epoch, local.nodeId, pendingTxns, this.#deps.clock);
        this.#record('waiting', `${this.#waiting.for}; ${this.#waiting.hint}`);
      }
      const nowMs = this.#deps.clock.monotonicMs();
      if (loggedAtMs === undefined || nowMs - loggedAtMs >= WAIT_LOG_INTERVAL_MS) {
        loggedAtMs = nowMs;
        this.#log().warn(
          { waiting: this.#waitingStatus() },
          `waiting: ${this.#waiting.for}; ${this.#waiting.hint}`,
        );
      }
      await this.#deps.clock.sleep(WAIT_POLL_MS, this.#closing.signal);
    }
  }

  /** The URL this node advertises (core/node-url.ts): in epoch records, registrations and status. */
  #url(): string {
    return nodeUrl(this.#settings.primary.http, this.#settings.url, this.#http.port);
  }

  /**
   * P5 after a promotion to `epoch`: start the primary role, again with backoff while the failure
   * may pass (mayPass); a failure that will not, or the last one, is thrown and the caller steps down.
   */
  async #startPrimaryRetrying(nodeId: string, epoch: bigint): Promise<void> {
    const retry = this.#settings.primaryStartRetry ?? PRIMARY_START_RETRY_DEFAULT;
    assert(
      Number.isSafeInteger(retry.attemptsMax) && retry.attemptsMax >= 1 && retry.firstWaitMs >= 0,
      'primaryStartRetry: at least one attempt, waits not negative',
    );
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#startPrimary(nodeId);
      } catch (error) {
        // A failed start may have set its routes on the shared listener: take them back.
        this.#http.setHandlers(this.#switchingRoutes('primary'));
        if (this.#closed || attempt >= retry.attemptsMax || !mayPass(error)) throw error;
        const waitMs = Math.min(retry.maxWaitMs, retry.firstWaitMs * 2 ** (attempt - 1));
        const message =
          `promoted to epoch ${epoch}, but the primary role could not start (${(error as Error).message}): ` +
          `trying again in ${waitMs} ms (attempt ${attempt + 1} of ${retry.attemptsMax})`;
        this.#log().warn({ err: (error as Error).message, attempt }, message);
        this.#record('role', message);
        await this.#deps.clock.sleep(waitMs, this.#closing.signal);
      }
    }
  }

  async #startPrimary(nodeId: string | undefined): Promise<void> {
    if (this.#settings.sequenced?.sequencer !== undefined) return this.#startWriter(nodeId);
    if ((await readSequencerRecord(this.#settings.primary.store)) !== null) {
      throw new WalshipError(
        'SEQUENCER_REQUIRED',
        'invalid',
        'this cluster has several primaries ordered by a sequencer (sequencer.json in the store): ' +
          'set replication.sequencer on every primary, or start this node as a replica',
      );
    }
    await this.#endHandover();
    const storeAlreadyChecked = (await this.#storeCheck) === true;
    const node = await PrimaryNode.start(
      { ...this.#settings.primary, nodeId, nodeUrl: this.#url(), storeAlreadyChecked },
      {
        clock: this.#deps.clock,
        random: this.#deps.random,
        log: this.#deps.log,
        http: this.#roleHttp(),
        adminActions: this.#adminActions(),
        statusExtra: () => this.#statusExtra(),
        onFenced: (detail) =>
          void this.#onFenced(detail).catch((error: unknown) =>
            this.#log().error({ err: (error as Error).message }, 'handling the fence failed'),
          ),
        onUpload: (event) => this.#metrics.onUpload(event),
        onIlpRequest: (event) => this.#metrics.onIlpRequest(event),
        onDurableAck: (outcome, seconds) => this.#metrics.onDurableAck(outcome, seconds),
        onQuery: (outcome, seconds) => this.#metrics.onQuery('http', outcome, seconds),
      },
    );
    this.#node = node;
    this.#nodeId = node.nodeId;
    this.#role = 'primary';
    this.#registration?.writeNow();
    if (this.#settings.autoFailover.enabled) {
      const keeper = new LeaseKeeper({
        store: this.#settings.primary.store,
        nodeId: node.nodeId,
        epoch: node.epoch,
        timeoutMs: this.#settings.autoFailover.leaseTimeoutMs,
        clock: this.#deps.clock,
        log: this.#log().child({ part: 'lease' }),
        onLost: (holder) => {
          // After a demotion this keeper only hands the lease over (#handover): nothing to fence.
          if (this.#node !== node) return;
          node.fence(holder === undefined ? LEASE_KEY : `${holder.nodeId} (lease, epoch ${holder.epoch})`);
        },
      });
      this.#lease = keeper;
      keeper.start();
    }
  }

  async #startReplica(nodeId: string | undefined): Promise<void> {
    if (
      this.#settings.sequenced !== undefined ||
      (await readSequencerRecord(this.#settings.replica.store)) !== null
    )
      return this.#startSequenced(nodeId, 'reader');
    this.#storeCheck ??= runConformanceProbe(this.#settings.primary.store)
      .then((report) => report.error === null && report.fencingSafe)
      .catch(() => false);
    const node = await ReplicaNode.start(
      { ...this.#settings.replica, nodeId },
      {
        ...this.#roleDeps(),
        onApply: (event) => this.#metrics.onApply(event),
        onSegmentsCollected: (event) => this.#onSegmentsCollected(event),
      },
    );
    this.#node = node;
    this.#nodeId = node.nodeId;
    this.#role = 'replica';
    this.#registration?.writeNow();
    if (this.#settings.autoFailover.enabled) {
      const deferred = this.#deferCandidacy;
      this.#deferCandidacy = false;
      const watcher = new LeaseWatcher({
        store: this.#settings.replica.store,
        timeoutMs: this.#settings.autoFailover.leaseTimeoutMs * (deferred ? 2 : 1),
        pollIntervalMs: this.#settings.replica.pollIntervalMs,
        clock: this.#deps.clock,
        random: this.#deps.random,
        log: this.#log().child({ part: 'lease' }),
        newestEpoch: async () => (await newestEpoch(this.#settings.replica.store))?.epoch ?? null,
        onExpired: async (afterEpoch, lastChangeMs) => {
          const reason = 'automatic: the primary stopped renewing its lease';
          await this.#timedPromotion('automatic', () => this.#promote(reason, afterEpoch), lastChangeMs);
        },
      });
      this.#lease = watcher;
      watcher.start();
    }
  }

  #startWriter(nodeId: string | undefined): Promise<void> {
    return this.#startSequenced(nodeId, 'writer');
  }

  /**
   * A node of a sequenced cluster (RFC-0003): a ReplicaNode applying the txn log in sequencer
   * order, plus the write path for a writer. The writer opens once the node has its id (it is the
   * writer id), so the first writes are answered 421 for those milliseconds.
   */
  async #startSequenced(nodeId: string | undefined, kind: 'writer' | 'reader'): Promise<void> {
    this.#sequenced = true;
    const sequenced = this.#settings.sequenced ?? { sequencer: undefined, exportGraceMs: 5_000 };
    const store = this.#settings.replica.store;
    const record = await sequencedCluster(store, sequenced.sequencer);
    const sequencer = sequenced.sequencer;
    assert(kind === 'reader' || sequencer !== undefined, 'a writer is started only with a sequencer');
    const slot = kind === 'writer' ? new WriterSlot(this.#settings.primary.ackMode) : undefined;
    let tables: TableStore | undefined;
    const factory = sequencedFollowerFactory(
      {
        store,
        sequenced,
        clusterId: record.clusterId,
        clock: this.#deps.clock,
        log: this.#deps.log.child({ nodeId: nodeId ?? null, role: kind }),
        pollIntervalMs: this.#settings.replica.pollIntervalMs,
        downloadConcurrency: this.#settings.replica.downloadConcurrency,
      },
      slot === undefined ? undefined : { own: slot.own, follower: (f) => slot.setFollower(f) },
    );
    const node = await ReplicaNode.start(
      { ...this.#settings.replica, nodeId },
      {
        ...this.#roleDeps(),
        follower: (store, onApplied, admits) => {
          tables = store;
          return factory(store, onApplied, admits);
        },
        ...(slot === undefined ? {} : { writer: slot }),
      },
    );
    if (slot !== undefined && sequencer !== undefined) {
      try {
        await openWriter({
          slot,
          dataDir: this.#settings.primary.dataDir,
          nodeId: node.nodeId,
          store,
          sequencer,
          primary: this.#settings.primary,
          tables: () => tables,
          clock: this.#deps.clock,
          random: this.#deps.random,
          log: this.#deps.log.child({ nodeId: node.nodeId, role: 'primary' }),
          onFenced: (error) => this.#record('fenced', `the sequencer fenced this writer: ${error.message}`),
          faults: sequenced.writerFaults,
        });
      } catch (error) {
        await node.close();
        throw error;
      }
    }
    this.#node = node;
    this.#nodeId = node.nodeId;
    this.#writer = slot;
    this.#role = slot === undefined ? 'replica' : 'primary';
    this.#registration?.writeNow();
  }

  /** What every replica-shaped role gets from this process: clock, log, the shared listener, admin actions, status. */
  #roleDeps(): ReplicaDeps {
    return {
      clock: this.#deps.clock,
      log: this.#deps.log,
      http: this.#roleHttp(),
      adminActions: this.#adminActions(),
      statusExtra: () => this.#statusExtra(),
      onOperation: (operation) => {
        this.#operation = operation;
      },
      onIlpRequest: (event) => this.#metrics.onIlpRequest(event),
      onQuery: (outcome, seconds) => this.#metrics.onQuery('http', outcome, seconds),
      onReadRefused: (reason) => this.#metrics.onReadRefused(reason),
    };
  }

  /** A reader of a sequenced cluster becomes a writer: no fence, no pause for the other writers (RFC-0003). */
  async #promoteToWriter(replica: ReplicaNode, reason: string): Promise<Promotion> {
    if (this.#settings.sequenced?.sequencer === undefined) {
      throw new WalshipError(
        'SEQUENCER_REQUIRED',
        'invalid',
        'promoting a replica of a sequenced cluster makes it a writer: it needs replication.sequencer',
      );
    }
    const nodeId = replica.nodeId;
    const startedMs = this.#deps.clock.monotonicMs();
    this.#enterSwitching('primary');
    await replica.close();
    try {
      await this.#startWriter(nodeId);
    } catch (error) {
      await this.#startSequenced(nodeId, 'reader');
      this.#record('role', `promotion to writer failed, still a replica: ${(error as Error).message}`);
      throw error;
    }
    const epoch = this.#writer?.writer?.status().epoch ?? 0n;
    this.#record('promoted', `promoted to writer at writer epoch ${epoch} (${reason})`, {
      durationMs: this.#deps.clock.monotonicMs() - startedMs,
    });
    const clusterId = (this.#node?.status() as { clusterId?: string | null } | undefined)?.clusterId ?? '';
    return { clusterId, epoch, fenced: [] };
  }

  /**
   * An upload found this primary replaced (RFC-0002 "fenced"): stop, keep what never reached the
   * store in divergence files, move the database aside when it holds such txns, follow as a replica.
   */
  #onFenced(detail: { table: string; writerNodeId: string; epoch: bigint }): Promise<unknown> {
    const fencedMs = this.#deps.clock.monotonicMs();
    this.#record(
      'fenced',
      detail.table === ''
        ? `replaced by ${detail.writerNodeId}: stopped taking writes`
        : `replaced by ${detail.writerNodeId} at epoch ${detail.epoch} (found uploading ${detail.table}): stopped taking writes`,
    );
    return this.#serialised(async () => {
      const primary = this.#node;
      if (!(primary instanceof PrimaryNode) || this.#closed) return;
      const nodeId = primary.nodeId;
      const epoch = primary.epoch;
      this.#enterSwitching('replica');
      await primary.close();
      // An upload whose answer was lost may be in the store (and applied by others): not divergence.
      // Retried (UPLOADS_FOUND_ATTEMPTS); with the store still unreachable after that, the divergence
      // may list such txns (the log says so).
      await this.#recordWhatReachedTheStore(epoch, nodeId, true).catch((error: unknown) =>
        this.#log().warn(
          { err: (error as Error).message },
          'could not check the store for uploads whose answer was lost; the divergence files may list some',
        ),
      );
      const files = await this.#writeDivergence(epoch);
      const movedTo = files.length === 0 ? null : await this.#rollBackOrMoveAside(epoch);
      this.#divergence = { epoch: epoch.toString(), files, movedTo };
      if (files.length > 0) this.#recordDivergence(epoch, files, movedTo);
      this.#log().error(
        { fencedEpoch: epoch.toString(), divergence: files, movedTo },
        files.length === 0
          ? 'fenced by a newer primary; every txn had reached the store: following as a replica'
          : 'fenced by a newer primary; txns that never reached the store are in the divergence files: following as a replica',
      );
      await this.#startReplica(nodeId);
      this.#record('role', `following the new primary as a replica (was primary at epoch ${epoch})`, {
        durationMs: this.#deps.clock.monotonicMs() - fencedMs,
      });
    });
  }

  /**
   * Started as a replica on the data dir of a primary that was replaced while it still held txns
   * that never reached the store (it crashed or was killed, RFC-0002 W3 "rejoin"): keep those txns
   * in divergence files, undo them in the database (or move it aside when that is not safe), then follow. A data dir that is still the newest
   * epoch's primary is left alone (the replica refuses it: it must upload first, as a primary).
   */
  async #rejoinThenStartReplica(): Promise<void> {
    const file = this.#databaseFile();
    let nodeId = this.#settings.replica.nodeId;
    if (existsSync(file)) {
      const tables = TableStore.open(file, { synchronous: this.#settings.primary.synchronous });
      let localEpoch: string | undefined;
      let pending: number;
      try {
        localEpoch = tables.getMeta('epoch');
        nodeId ??= tables.getMeta('node.id'); // kept when the database moves aside
        pending = tables.pendingSummary().length;
      } finally {
        tables.close();
      }
      if (localEpoch !== undefined && pending > 0) {
        const newest = await newestEpoch(this.#settings.primary.store);
        if (newest !== null && newest.epoch > BigInt(localEpoch)) {
          const epoch = BigInt(localEpoch);
          // A crash between an upload and its being recorded: those txns are in the store, not lost.
          if ((await this.#recordWhatReachedTheStore(epoch, nodeId)) > 0) {
            const files = await this.#writeDivergence(epoch);
            const movedTo = await this.#rollBackOrMoveAside(epoch);
            this.#divergence = { epoch: localEpoch, files, movedTo };
            this.#recordDivergence(epoch, files, movedTo);
            this.#log().error(
              { localEpoch, newestEpoch: newest.epoch.toString(), divergence: files, movedTo },
              'this data dir was a replaced primary with txns that never reached the store: they are in the divergence files; following as a replica',
            );
          }
        }
      }
    }
    await this.#startReplica(nodeId);
  }

  /**
   * WAL retention deleted segments this replica still needed (RFC-0007): when the newest snapshot of
   * its cluster covers the gap, move the database aside (`tables.sqlite.gc-<ms>`) and start the
   * replica role again, which restores that snapshot and replays. Otherwise the table stays suspended.
   */
  #onSegmentsCollected(event: SegmentsCollected): void {
    if (this.#rebootstrapping || this.#closed) return;
    this.#rebootstrapping = true;
    void this.#serialised(async () => {
      const replica = this.#node;
      if (!(replica instanceof ReplicaNode) || this.#closed) return;
      const store = this.#settings.replica.store;
      const clusterId = (replica.status() as { clusterId?: string | null }).clusterId ?? null;
      const snapshot = clusterId === null ? null : await newestSnapshot(store, clusterId);
      const covers = snapshot?.tables.find((t) => t.key === event.key);
      if (
        !this.#settings.replica.bootstrapFromSnapshot ||
        snapshot === null ||
        covers === undefined ||
        covers.lastTxn + 1n < event.chainStartTxn
      ) {
        const why = !this.#settings.replica.bootstrapFromSnapshot
          ? 'replication.replica.bootstrap.snapshot is off'
          : snapshot === null
            ? 'the store holds no snapshot of this cluster'
            : `the newest snapshot ${snapshot.id} does not reach txn ${event.chainStartTxn - 1n} of ${event.table}`;
        this.#log().error(
          { table: event.table, appliedTxn: event.appliedTxn.toString() },
          `${event.message}; cannot re-bootstrap: ${why}`,
        );
        this.#record(
          'suspended',
          `segments after txn ${event.appliedTxn} of ${event.table} were garbage-collected; cannot re-bootstrap: ${why}`,
        );
        return;
      }
      const message = `segments after txn ${event.appliedTxn} of ${event.table} were garbage-collected (this replica's registration expired); re-bootstrapping from snapshot ${snapshot.id}`;
      const nodeId = replica.nodeId;
      this.#enterSwitching('replica');
      await replica.close();
      const movedTo = `${this.#databaseFile()}.gc-${Math.floor(this.#deps.clock.wallMs())}`;
      await moveDatabaseFiles(this.#databaseFile(), movedTo);
      this.#rebootstrap = {
        message,
        table: event.table,
        appliedTxn: event.appliedTxn.toString(),
        chainStartTxn: event.chainStartTxn.toString(),
        snapshot: snapshot.id,
        movedTo,
        at: isoTime(this.#deps.clock.wallMs()),
      };
      this.#log().warn({ table: event.table, snapshot: snapshot.id, movedTo }, message);
      this.#record('role', `${message}; database moved to ${movedTo}`);
      this.#rebootstrapping = false; // the new replica may report its own tables
      await this.#startReplica(nodeId);
    })
      .catch((error: unknown) =>
        this.#log().error(
          { err: (error as Error).message },
          're-bootstrapping after garbage collection failed',
        ),
      )
      .finally(() => {
        this.#rebootstrapping = false;
      });
  }

  /** recordUploadsFound on this data dir's database; returns the txns still pending. */
  async #recordWhatReachedTheStore(
    epoch: bigint,
    nodeId: string | undefined,
    retry = false,
  ): Promise<number> {
    const tables = TableStore.open(this.#databaseFile(), { synchronous: this.#settings.primary.synchronous });
    try {
      if (nodeId === undefined) return tables.pendingSummary().reduce((sum, p) => sum + p.count, 0);
      const options = { store: this.#settings.primary.store, tables, nodeId, epoch };
      const { found, pending } = retry
        ? await recordUploadsFoundRetrying({
            ...options,
            sleep: (ms) => this.#deps.clock.sleep(ms, this.#closing.signal),
            onRetry: (error, attempt) =>
              this.#log().warn(
                { err: (error as Error).message, attempt },
                'checking the store for uploads whose answer was lost failed; trying again',
              ),
          })
        : await recordUploadsFound(options);
      if (found > 0)
        this.#log().info(
          { found },
          'txns found uploaded after all (their answer was lost or hidden by a crash)',
        );
      return pending;
    } finally {
      tables.close();
    }
  }

  async #writeDivergence(epoch: bigint): Promise<DivergenceSummary[]> {
    const tables = TableStore.open(this.#databaseFile(), { synchronous: this.#settings.primary.synchronous });
    try {
      return await writeDivergenceFiles({
        dir: path.join(this.#settings.primary.dataDir, 'divergence'),
        epoch,
        tables,
        ackMode: recordedAckMode(tables.getMeta(ACK_MODE_META_KEY), this.#settings.primary.ackMode),
      });
    } finally {
      tables.close();
    }
  }

  /**
   * Once the divergence files hold the txns that never reached the store: undo those txns in the
   * database (TableStore.rollBackPending), so it holds exactly what the cluster holds up to each
   * table's last uploaded txn and the replica follows from there — moving it aside had the replica
   * replay every table from txn 1 (or a snapshot), seconds to minutes inside a failover (issue 13
   * item 3). Returns null; or, when the database does not hold what its queue says
   * (ROLLBACK_UNSAFE) or SQLite fails, moves it aside as before and returns where to.
   */
  async #rollBackOrMoveAside(epoch: bigint): Promise<string | null> {
    try {
      const undone = this.#rollBackPending();
      this.#log().info(
        { undone },
        'rolled the database back to the last uploaded txn of every table: following the new primary from there',
      );
      return null;
    } catch (error) {
      this.#log().warn(
        { err: (error as Error).message },
        'could not roll the database back to the last uploaded txns; moving it aside (the replica starts from a snapshot, or from txn 1)',
      );
      return this.#moveDatabaseAside(epoch);
    }
  }

  /** rollBackPending for every table with pending txns, in one transaction (all or none). */
  #rollBackPending(): Record<string, ReturnType<TableStore['rollBackPending']>> {
    const tables = TableStore.open(this.#databaseFile(), { synchronous: this.#settings.primary.synchronous });
    try {
      return tables.transaction(() =>
        Object.fromEntries(
          tables.pendingSummary().map(({ table }) => [table, tables.rollBackPending(table)]),
        ),
      );
    } finally {
      tables.close();
    }
  }

  /** The database holds rows the cluster does not have: keep it for reconciliation, start the replica empty. */
  async #moveDatabaseAside(epoch: bigint): Promise<string> {
    const dir = path.join(
      this.#settings.primary.dataDir,
      `diverged-epoch-${epoch}-${Math.floor(this.#deps.clock.wallMs())}`,
    );
    await mkdir(dir, { recursive: true });
    await moveDatabaseFiles(this.#databaseFile(), path.join(dir, DATABASE_FILE));
    return dir;
  }

  /** Register in the store now, at every role change and every `registerIntervalMs` (when not 0). */
  #startRegistration(): void {
    const intervalMs = this.#settings.registerIntervalMs ?? 0;
    if (intervalMs <= 0 || this.#closed) return;
    this.#registration = new NodeRegistration({
      store: this.#settings.primary.store,
      clock: this.#deps.clock,
      log: liveLogger(() => this.#log().child({ part: 'registration' })),
      intervalMs,
      facts: () => this.#registrationFacts(),
    });
    this.#registration.start();
  }

  /** What `nodes/<nodeId>.json` says now; null while switching (the next role writes it). */
  #registrationFacts(): NodeFacts | null {
    const node = this.#node;
    if (node === undefined) return null;
    const status = node.status() as {
      clusterId?: string | null;
      tables?: { name: string; committedTxn?: string; appliedTxn?: string }[];
    };
    const primary = node instanceof PrimaryNode;
    const tables: Record<string, string> = {};
    for (const t of status.tables ?? []) {
      const txn = primary ? t.committedTxn : t.appliedTxn;
      if (txn !== undefined) tables[t.name] = txn;
    }
    return {
      nodeId: node.nodeId,
      url: this.#url(),
      role: primary || this.#writer !== undefined ? 'primary' : 'replica',
      epoch: primary ? node.epoch.toString() : null,
      clusterId: status.clusterId ?? null,
      tables,
    };
  }

  /** `operation` in `/status` while no role answers it; a role's own `/status` shows its own. */
  #operationStatus(): Record<string, unknown> | null {
    const operation = this.#operation;
    if (operation === null) return null;
    const { startedAtMs, ...rest } = operation;
    return { ...rest, startedAgoMs: Math.round(this.#deps.clock.monotonicMs() - startedAtMs) };
  }

  /** A status-page event; promotions, demotions, fences and divergences also count in `/metrics`. */
  #record(kind: ActivityEventKind, message: string, details: ActivityEventDetails = {}): void {
    this.#activity.record(kind, message, details);
    if ((FENCING_EVENT_KINDS as readonly string[]).includes(kind))
      this.#metrics.onFencingEvent(kind as FencingEventKind);
  }

  /** The node's logger now: its id, role (`switching` between roles) and epoch (a primary's; null otherwise). */
  #log(): Logger {
    const node = this.#node;
    return this.#deps.log.child({
      nodeId: this.#nodeId ?? this.#settings.primary.nodeId ?? null,
      role: this.#role,
      epoch: node instanceof PrimaryNode ? node.epoch.toString() : null,
    });
  }

  #databaseFile(): string {
    return path.join(this.#settings.primary.dataDir, DATABASE_FILE);
  }

  /** Public answers (`/status`, `/status/history`) name files relative to the data dir (core/status-paths.ts). */
  #publicPaths<T>(value: T): T {
    const { dataDir, store } = this.#settings.primary;
    return statusPathHider({ dataDir, storeDescription: store.description })(value);
  }

  #statusExtra(): Record<string, unknown> {
    const events = this.#activity.events(STATUS_EVENTS_MAX);
    const operation = this.#operationStatus();
    const lease = this.#lease instanceof LeaseWatcher ? this.#lease.status() : undefined;
    return {
      ...(lease === undefined ? {} : { primaryLease: lease }),
      ...(this.#divergence === null ? {} : { divergence: this.#divergence }),
      ...(this.#rebootstrap === null ? {} : { rebootstrap: this.#rebootstrap }),
      ...(this.#waiting === null ? {} : { waiting: this.#waitingStatus() }),
      events,
      operation,
    };
  }

  /** `waiting` in `/status`: what for, since when and for how long, what a person can do. */
  #waitingStatus(): Record<string, unknown> | null {
    const waiting = this.#waiting;
    if (waiting === null) return null;
    const { sinceMonotonicMs, ...rest } = waiting;
    return { ...rest, waitedMs: Math.round(this.#deps.clock.monotonicMs() - sinceMonotonicMs) };
  }

  #recordDivergence(epoch: bigint, files: DivergenceSummary[], movedTo: string | null): void {
    const txns = files.reduce((sum, f) => sum + f.txns, 0);
    const rows = files.reduce((sum, f) => sum + f.rows, 0);
    this.#record(
      'divergence',
      `${txns} txns (${rows} rows) of epoch ${epoch} never reached the store: ` +
        `${files.map((f) => f.file).join(', ')}${movedTo === null ? '' : `; database moved to ${movedTo}`}`,
    );
  }

  /**
   * The listener as a role node sees it: the routes it sets come after the status page and
   * `/status/history`, so those answer in every role without the role nodes knowing of them.
   */
  #roleHttp(): RunningHttpServer {
    const http = this.#http;
    return {
      server: http.server,
      port: http.port,
      setHandlers: (handlers) => http.setHandlers([...this.#activityRoutes, ...handlers]),
      close: () => http.close(),
    };
  }

  #adminActions(): Record<string, AdminAction> {
    return {
      promote: async (params) => {
        const onlyAfter = params.get('only_after_epoch');
        const promotion = await this.promote(
          params.get('reason') ?? 'promote',
          onlyAfter === null ? undefined : parseEpoch(onlyAfter),
        );
        return {
          epoch: promotion.epoch.toString(),
          fenced: promotion.fenced.map((f) => ({ ...f, fenceTxn: f.fenceTxn.toString() })),
        };
      },
      demote: async (params) => {
        const timeout = params.get('timeout_ms');
        const { lastTxns, epoch } = await this.demote(
          timeout === null ? undefined : parseTimeoutMs(timeout),
          {
            answerOnceUploaded: true,
          },
        );
        return { role: 'replica', epoch: epoch.toString(), lastTxns };
      },
    };
  }

  /** While switching: see Heading for writes; everything else but `/status` and the status page 503. */
  #enterSwitching(heading: Heading, options: { handOverLease?: boolean } = {}): void {
    const lease = this.#lease;
    this.#lease = undefined;
    if (options.handOverLease === true && lease instanceof LeaseKeeper) {
      lease.handOver();
      const timer = this.#deps.clock.setTimer(HANDOVER_LEASE_MS, () => void this.#endHandover(), {
        unref: true,
      });
      this.#handover = { keeper: lease, timer };
    } else void lease?.stop();
    this.#switching = {
      from: this.#role,
      to: heading,
      sinceMonotonicMs: this.#deps.clock.monotonicMs(),
      last: this.#lastRoleStatus(),
    };
    this.#role = 'switching';
    this.#node = undefined;
    this.#http.setHandlers(this.#switchingRoutes(heading));
  }

  /** The role's `/status` as it is now, stamped with the wall clock; null when it cannot say (closing). */
  #lastRoleStatus(): Record<string, unknown> | null {
    try {
      const status = this.#node?.status();
      return status === undefined ? null : { ...status, at: this.#deps.clock.wallMs() };
    } catch {
      return null;
    }
  }

  async #endHandover(): Promise<void> {
    const handover = this.#handover;
    this.#handover = undefined;
    if (handover === undefined) return;
    handover.timer.cancel();
    await handover.keeper.stop();
  }

  /**
   * The routes while no role runs (starting, waiting, changing role): `/ping` answers 503 with
   * Retry-After (the node serves neither reads nor writes yet, and says so to load balancers and
   * clients alike); writes and `/settings` as `heading` says (Heading); `/status` and the status
   * page answer; everything else 503.
   */
  #switchingRoutes(heading: Heading) {
    const ilp = createIlpHttpHandler({
      commit: () => Promise.reject(new WalshipError('NOT_ACCEPTING_WRITES', 'fenced', 'changing role')),
      acceptingWrites: () => false,
      releaseVersion: this.#settings.primary.version,
      tcpEnabled: false,
      onRequest: (event) => this.#metrics.onIlpRequest(event),
      clock: this.#deps.clock,
    });
    const notReady = async (req: IncomingMessage, res: ServerResponse) => {
      const route = req.url?.split('?')[0] ?? '/';
      const takesWritesSoon = heading !== 'replica';
      if (route !== '/ping' && !(takesWritesSoon && WRITES_AND_SETTINGS.has(route))) return false;
      const message =
        heading === 'unknown'
          ? 'this node is starting and does not know its role yet; retry shortly'
          : heading === 'primary'
            ? 'this node is becoming the primary; retry shortly'
            : this.#waiting === null
              ? 'this node is starting or changing role; retry shortly'
              : `this node is waiting before it joins as a replica: ${this.#waiting.for}`;
      res.setHeader('retry-after', String(RETRY_AFTER_S));
      if (req.method === 'HEAD') {
        res.writeHead(503);
        res.end();
      } else sendJson(res, 503, { code: 'not ready', message });
      return true;
    };
    // `/status` is answered before this, by the activity routes (#switchingStatus).
    const busy = async (_req: IncomingMessage, res: ServerResponse) => {
      res.setHeader('retry-after', '1');
      sendJson(res, 503, { code: 'switching role', message: 'this node is changing role; retry shortly' });
      return true;
    };
    return [notReady, ilp.handle, ...this.#activityRoutes, busy];
  }

  #serialised<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#transition
      .catch(() => {})
      .then(() => {
        if (this.#closed) throw new WalshipError('CLOSED', 'closed', 'the node is shutting down');
        return step();
      });
    this.#transition = run;
    return run;
  }
}

/**
 * Both roles' settings with the store wrapped once by `withMetrics` (both roles share one store
 * object, so a role change keeps counting into the same series).
 */
function measuredStore(settings: NodeSettings, metrics: NodeMetrics, clock: Clock): NodeSettings {
  const wrapped = new Map<ObjectStore, ObjectStore>();
  const measured = (store: ObjectStore) => {
    let result = wrapped.get(store);
    if (result === undefined) {
      result = withMetrics(store, (event) => metrics.onStoreRequest(event), clock);
      wrapped.set(store, result);
    }
    return result;
  };
  return {
    ...settings,
    primary: { ...settings.primary, store: measured(settings.primary.store) },
    replica: { ...settings.replica, store: measured(settings.replica.store) },
  };
}

/**
 * A logger that forwards each call to `current()` at the time of the call: for parts that outlive
 * a role (the listener, the registration) so their lines name the node as it is then.
 */
function liveLogger(current: () => Logger): Logger {
  return new Proxy({} as Logger, {
    get(_target, property) {
      const log = current();
      const value: unknown = Reflect.get(log, property, log);
      return typeof value === 'function' ? value.bind(log) : value;
    },
  });
}

/** What a replica on the data dir of the newest epoch's primary waits for, and what a person can do. */
function waitingFor(epoch: bigint, nodeId: string | undefined, pendingTxns: number, clock: Clock): Waiting {
  return {
    for:
      `the cluster to choose its primary: this data dir holds ${pendingTxns} txns of the primary of epoch ${epoch} ` +
      `(node ${nodeId ?? 'unknown'}, the newest epoch) that never reached the object store`,
    since: isoTime(clock.wallMs()),
    sinceMonotonicMs: clock.monotonicMs(),
    hint:
      'start this node as primary (walship primary on this node.data.dir) to upload them, or promote another node ' +
      '(walship promote --node URL, or automatic failover once the lease times out); this node then joins as a ' +
      'replica and keeps those txns in divergence files',
    epoch: epoch.toString(),
    pendingTxns,
    lastError: null,
  };
}

/** The ILP paths that answer 503 while a node heading for the primary role starts (see Heading). */
const WRITES_AND_SETTINGS: ReadonlySet<string> = new Set(['/write', '/api/v2/write', '/settings']);

/**
 * A primary start that failed for a reason that may pass by itself: a listener's address taken (a
 * process not yet gone) or not there yet, the store unreachable. A newer epoch (`fenced`) or a bad
 * configuration (`invalid`) will not pass: those step down at once.
 */
function mayPass(error: unknown): boolean {
  if (isWalshipError(error)) return error.kind === 'unavailable';
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL';
}

function notRole(action: string, wanted: string, actual: NodeRole): WalshipError {
  return new WalshipError(
    'WRONG_ROLE',
    'conflict',
    `cannot ${action}: this node is ${actual === 'switching' ? 'changing role' : `a ${actual}`}, not a ${wanted}`,
  );
}

function parseEpoch(text: string): bigint {
  if (!/^\d{1,20}$/.test(text))
    throw new WalshipError('INVALID_ARGUMENT', 'invalid', 'only_after_epoch must be an epoch number');
  return BigInt(text);
}

function parseTimeoutMs(text: string): number {
  if (!/^\d{1,9}$/.test(text))
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      'timeout_ms must be a whole number of milliseconds',
    );
  return Number(text);
}

/**
 * A replica of chosen tables (RFC-0008) holds only those tables: as primary or writer it would
 * drop every other table's later writes, so it is never promoted, by hand or by the lease.
 */
function refuseFilteredReplica(replica: ReplicaNode): void {
  if (replica.servesAllTables()) return;
  const served = replica.servedTables();
  throw new WalshipError(
    'PROMOTION_REFUSED',
    'invalid',
    `this replica serves only some tables (include ${served.include.join(',')}, exclude ${served.exclude.join(',') || 'none'}): ` +
      'promote a replica of every table',
  );
}

/**
 * Starts the PostgreSQL door when `options` says so. Queries go to the role that runs when they
 * arrive; between roles they fail with SQLSTATE 57P03 (cannot connect now), as reads get 503.
 */
async function startPgDoor(
  options: PgListenerOptions | undefined,
  current: () => PrimaryNode | ReplicaNode | undefined,
  log: Logger,
  measure: { metrics: NodeMetrics; clock: Clock },
): Promise<PgServer | undefined> {
  if (options === undefined) return undefined;
  if (
    options.credentials.some((c) => c.password === DEFAULT_PG_PASSWORD) &&
    !['127.0.0.1', '::1', 'localhost'].includes(options.host)
  ) {
    log.warn(
      { host: options.host },
      "pg.password is QuestDB's default and the PostgreSQL door listens beyond loopback: set pg.password",
    );
  }
  return startPgServer({
    ...options,
    serverVersion: PG_SERVER_VERSION,
    runQuery: (sql, query) => {
      const run = () => {
        const role = current();
        if (role === undefined) {
          return Promise.reject(
            new WalshipError('NOT_READY', 'unavailable', 'the node is switching roles; retry'),
          );
        }
        return role.queryPg(sql, query);
      };
      // A Describe that only prepares a statement is no read.
      return query.describeOnly === true ? run() : measuredPgQuery(run, measure);
    },
    log: (message) => log.info(message),
  });
}

/** `run`, counted in `/metrics` as a PostgreSQL read by its outcome and duration. */
async function measuredPgQuery<T>(
  run: () => Promise<T>,
  { metrics, clock }: { metrics: NodeMetrics; clock: Clock },
): Promise<T> {
  const startedMs = clock.monotonicMs();
  try {
    const result = await run();
    metrics.onQuery('pg', 'ok', (clock.monotonicMs() - startedMs) / 1000);
    return result;
  } catch (error) {
    metrics.onQuery('pg', queryOutcomeOfError(error), (clock.monotonicMs() - startedMs) / 1000);
    throw error;
  }
}

/** QuestDB's default `pg.password`, which the node warns about beyond loopback. */
const DEFAULT_PG_PASSWORD = 'quest';
