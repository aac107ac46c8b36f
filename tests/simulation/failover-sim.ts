/**
 * A seeded simulation of fencing and promotion (RFC-0002, STYLE rule 13), at the operation level
 * with walship's real parts and no HTTP: one `MemoryStore` shared by three nodes through
 * `withFaults` (seeded errors, lost responses, honest short listings, outages) and, per node,
 * `withRetries`; each node has its own data dir and SQLite `TableStore`. A primary is a real
 * `Committer` + `Uploader` pair built the way `PrimaryNode.start` builds them (after the real
 * `claimPrimary`); a replica is a fresh `Follower` whose `catchUp()` applies what the store holds;
 * a promotion is the real `promote()`; a fenced primary writes its divergence files with the real
 * `writeDivergenceFiles`, moves its database aside when it holds txns the cluster lacks, and
 * follows — what `WalshipNode` does, replayed step by step.
 *
 * Each step is one operation, drawn by weight among those that have a node to run on: a local or
 * durable write (an ILP request of 1–2 tables, every row with a unique id) on a node that believes
 * it is primary; a flush (some return at once, leaving uploads in flight); a replica catch-up; a
 * promotion; two of these on two nodes at once (a promotion racing the old primary's upload or
 * another promotion; or a crash in the middle of a flush, catch-up or promotion); a pause (the node
 * sits out a few steps: a paused primary is a zombie); a crash (in-memory state gone, SQLite kept)
 * and a restart (a primary claims its role again or rejoins as a replica); a change of the store's
 * fault mode (calm, stormy, lossy, flaky, outage).
 *
 * One seed drives everything: which operation runs next and on which node, the faults, the
 * retries' jitter, and the order in which concurrent operations interleave (each node's store
 * calls wait a seeded number of event-loop turns first). Time is a manual clock: sleeping advances
 * it and yields one event-loop turn, and up to 400 ms pass between steps, so nothing depends on
 * the machine's speed. Timers the parts
 * arm (the uploader's windows, a durable writer's timeout) never fire: those set through the
 * clock are parked by `SimClock.setTimer`, those still set with `setTimeout` are faked by the
 * caller (the test does, with vitest's fake timers), and the simulation drives uploads by calling
 * `flush` instead, as a window expiring would. Every step is awaited to the end and the
 * event loop drained before the next, so the same seed replays the same trace.
 *
 * After every step an auditor checks, from the raw store and each node's own database:
 * - every durably acknowledged write is in the store's history at the txn it was acknowledged as,
 *   with exactly its rows (and every replica that holds that txn holds those rows);
 * - each table's history is one chain from txn 1 (no gap, no overlap), whose epochs never go down,
 *   each segment written by the node that holds its epoch; once a promotion has completed, no
 *   segment of an older epoch is accepted any more (a zombie never gets an upload in);
 * - a replica holds exactly the rows of the history's txns up to its watermark, a primary those
 *   up to its uploaded watermark plus its pending queue — so any two nodes agree on every txn both
 *   hold; each row's values are the ones written; watermarks never go down;
 * - at most one node is an unfenced primary: one that believes it is primary, still accepts writes
 *   (no upload or registry write has found it fenced) and holds the newest epoch in `epochs/`;
 * - a catch-up that ran alone ends with every table at the store's last txn;
 * - rows of a request that was refused are nowhere; a row is never in the history twice;
 * - a divergence file lists only txns the cluster does not hold.
 * At the end the store heals, every node comes back, zombies are made to write (and must be
 * fenced), everyone catches up, and all nodes must hold the same rows; every acknowledged row is
 * then either in the history or in exactly one divergence file.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import {
  type Clock,
  ClosedError,
  isWalshipError,
  type Random,
  randomInt,
  seededRandom,
  type Timer,
} from '../../core/index.js';
import { promote } from '../../failover/index.js';
import { parseIlp } from '../../ilp/index.js';
import {
  EPOCHS_PREFIX,
  epochOfKey,
  newestEpoch,
  segmentKey,
  TABLES_PREFIX,
  txnFirstOfSegmentKey,
} from '../../layout/index.js';
import {
  type FaultRule,
  type FaultyStore,
  listAll,
  MemoryStore,
  type ObjectStore,
  withFaults,
  withRetries,
} from '../../objectstore/index.js';
import {
  Committer,
  claimPrimary,
  pendingSourceOf,
  recordUploadsFound,
  recordUploadsFoundRetrying,
  Uploader,
  writeDivergenceFiles,
} from '../../primary/index.js';
import { Follower } from '../../replica/index.js';
import { asTableKey, resolveNodeId, TableStore, tableKey } from '../../table/index.js';
import {
  decodeSegment,
  decodeTxnRecord,
  encodeTxnRecord,
  isNull,
  sealSegment,
  type TxnRecord,
} from '../../wal/index.js';

// ---------------------------------------------------------------------------------------------
// Knobs

export interface SimulationOptions {
  seed: number;
  /** Operations before the final convergence phase (default: 45–100, drawn from the seed). */
  steps?: number;
  /** Nodes in the cluster (default 3). */
  nodes?: number;
  /**
   * Plant a bug the auditor must catch (for the auditor's own tests): `zombie-segment` writes a
   * segment of an old epoch past a completed promotion's fence straight into the store;
   * `lose-acked` deletes the segment of a durably acknowledged txn.
   */
  plant?: 'zombie-segment' | 'lose-acked';
  /** Where data dirs go (default: /dev/shm when present, else the OS temp dir). */
  baseDir?: string;
  /** Trace every store call each node makes (for replaying a failing seed). */
  verbose?: boolean;
}

export interface SimulationResult {
  seed: number;
  trace: string[];
  violations: string[];
  /** SHA-256 over every segment, tables.json and head.json in the store at the end (epoch records hold random claim ids). */
  storeDigest: string;
  /** Whether the planted bug (options.plant) was planted. */
  planted: boolean;
  stats: {
    steps: number;
    writes: number;
    durableAcks: number;
    localAcks: number;
    promotions: number;
    fencedPrimaries: number;
    divergedTxns: number;
    crashes: number;
    faultsInjected: number;
  };
}

const TABLES = ['trades', 'quotes', 'fills'] as const;
type TableName = (typeof TABLES)[number];
const log = pino({ level: 'silent' });
/** Manual time: how long a flush may keep retrying (some return at once, leaving uploads in flight), and how long a durable writer's step drives uploads. */
const FLUSH_MS = 2_000;
const FLUSH_TIMEOUTS_MS = [0, 50, 500, FLUSH_MS];
const DURABLE_DRIVE_MS = 1_500;
/** The final flush on a healed store outlasts the uploader's longest backoff (10 s). */
const FINAL_FLUSH_MS = 60_000;
/**
 * The uploader's window and head interval: never reached in manual time, so segments are sealed only
 * by a flush, a durable writer, or the rollover size (700 B in half the seeds, so commits upload too).
 */
const NEVER_MS = 1_000_000_000;
/** A durable writer's own timeout (a real timer, faked away): the simulation decides by flushing. */
const DURABLE_TIMEOUT_MS = 3_600_000;
const BASE_NS = 1_700_000_000_000_000_000n;
const WALL_BASE_MS = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Time and scheduling

/** One turn of the event loop (setImmediate is never faked). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A clock that moves only when someone sleeps (each sleep advances it and yields one turn) or when
 * the simulation lets time pass between steps.
 */
class SimClock implements Clock {
  #now = 0;
  wallMs(): number {
    return WALL_BASE_MS + this.#now;
  }
  monotonicMs(): number {
    return this.#now;
  }
  /** Time passes between operations (nothing runs meanwhile). */
  advance(durationMs: number): void {
    this.#now += durationMs;
  }
  async sleep(durationMs: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    this.#now += Math.max(0, durationMs);
    await turn();
    if (signal?.aborted) throw signal.reason;
  }
  /**
   * Parks the timer: it never fires, so no upload window or timeout runs at a moment the seed does
   * not choose (the simulation calls `flush` instead, see the header comment).
   */
  setTimer(): Timer {
    return { cancel: () => {} };
  }
}

/** A 32-bit seed for one purpose of one run, so each stream of randomness stays the same when others change. */
function derive(seed: number, label: string): Random {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return seededRandom(h);
}

function chance(random: Random, p: number): boolean {
  return random.next() < p;
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[randomInt(random, items.length)]!;
}

// ---------------------------------------------------------------------------------------------
// Nodes

/** One life of a node's process: its store calls die with it. */
interface Incarnation {
  dead: boolean;
  store: ObjectStore;
}

interface PrimaryRole {
  inc: Incarnation;
  tables: TableStore;
  uploader: Uploader;
  local: Committer;
  durable: Committer;
  epoch: bigint;
  gate: { accepting: boolean; fencedBy: string | null };
}

interface ReplicaRole {
  inc: Incarnation;
  tables: TableStore;
}

interface SimNode {
  id: string;
  dataDir: string;
  dbFile: string;
  role: 'primary' | 'replica' | 'down';
  /** What it comes back as after a crash. */
  intent: 'primary' | 'replica';
  primary: PrimaryRole | undefined;
  replica: ReplicaRole | undefined;
  /** An operation in flight in a concurrent step (a crash may interrupt it). */
  busy: Incarnation | undefined;
  pausedSteps: number;
  /** Bumped when the database is moved aside: watermarks of a new database start again. */
  dbGeneration: number;
  jitter: Random;
  retryRandom: Random;
  uploaderRandom: Random;
}

/**
 * What became of a write: refused before anything was committed; committed locally and waiting for
 * its durable acknowledgement; acknowledged (local: committed; durable: in the store); or committed
 * locally but its durable wait failed (fenced, closed) — not acknowledged.
 */
type WriteStatus = 'rejected' | 'committed' | 'local-ack' | 'durable-ack' | 'failed';

interface WriteRecord {
  n: number;
  node: string;
  epoch: bigint;
  mode: 'local' | 'durable';
  status: WriteStatus;
  /** Per table: the ids of its rows, and the txn the node committed them as. */
  parts: { table: TableName; key: string; ids: number[]; txn: bigint }[];
  error?: string;
}

interface HistoryTxn {
  txn: bigint;
  epoch: bigint;
  writer: string;
  kind: string;
  ids: number[];
  segment: string;
}

interface CachedSegment {
  etag: string;
  txnFirst: bigint;
  txnLast: bigint;
  epoch: bigint;
  writer: string;
  tableName: string;
  txns: TxnRecord[];
  /** The id column of each txn. */
  ids: number[][];
}

const FAULT_MODES: Record<string, FaultRule[]> = {
  none: [],
  calm: [
    { fault: { type: 'error' }, probability: 0.05 },
    { fault: { type: 'lost-response' }, operations: ['put'], probability: 0.03 },
  ],
  stormy: [
    { fault: { type: 'error' }, probability: 0.12 },
    { fault: { type: 'lost-response' }, operations: ['put'], probability: 0.12 },
    { fault: { type: 'timeout', ms: 0, afterEffect: true }, operations: ['put'], probability: 0.05 },
    { fault: { type: 'truncate-list', keys: 1 }, operations: ['list'], probability: 0.3 },
  ],
  'lossy-puts': [{ fault: { type: 'lost-response' }, operations: ['put'], probability: 0.5 }],
  flaky: [
    { fault: { type: 'error' }, probability: 0.3 },
    { fault: { type: 'lost-response' }, operations: ['put'], probability: 0.3 },
  ],
  outage: [{ fault: { type: 'error', message: 'injected outage' } }],
};

class Simulation {
  readonly seed: number;
  readonly options: SimulationOptions;
  readonly clock = new SimClock();
  readonly random: Random;
  readonly mem: MemoryStore;
  readonly faulty: FaultyStore;
  readonly nodes: SimNode[] = [];
  readonly trace: string[] = [];
  readonly violations: string[] = [];
  readonly writes: WriteRecord[] = [];
  /** Store calls in flight, over all nodes: the step is over when this stays 0. */
  inFlight = 0;
  step = 0;
  nextId = 1;
  faultMode = 'calm';
  faultStepsLeft = 0;
  /** The newest epoch whose promotion completed (every table fenced) before the current step. */
  completedEpoch = 1n;
  completedThisStep: bigint[] = [];
  readonly fillsFrom: number;
  readonly qFrom: number;
  readonly rolloverBytes: number;
  readonly stepsTotal: number;
  baseDir = '';
  // auditor state
  readonly segmentCache = new Map<string, CachedSegment>();
  readonly seenSegments = new Set<string>();
  readonly watermarks = new Map<string, bigint>();
  readonly diverged = new Map<number, string>();
  readonly readers = new Map<string, DatabaseReader>();
  readonly epochRecords = new Map<string, string>();
  readonly checkedFingerprints = new Map<string, string>();
  readonly stats: SimulationResult['stats'] = {
    steps: 0,
    writes: 0,
    durableAcks: 0,
    localAcks: 0,
    promotions: 0,
    fencedPrimaries: 0,
    divergedTxns: 0,
    crashes: 0,
    faultsInjected: 0,
  };
  planted = false;

  constructor(options: SimulationOptions) {
    this.options = options;
    this.seed = options.seed;
    this.random = derive(this.seed, 'ops');
    this.mem = new MemoryStore({ name: `sim-${this.seed}`, clock: this.clock });
    this.faulty = withFaults(this.mem, FAULT_MODES.calm!, {
      random: derive(this.seed, 'faults'),
      clock: this.clock,
    });
    const config = derive(this.seed, 'config');
    this.stepsTotal = options.steps ?? 45 + randomInt(config, 56);
    this.fillsFrom = 10 + randomInt(config, this.stepsTotal);
    this.qFrom = randomInt(config, this.stepsTotal);
    this.rolloverBytes = chance(config, 0.5) ? 1 << 20 : 700;
  }

  // --- trace and violations ---

  note(text: string): void {
    this.trace.push(`#${this.step} ${text}`);
  }

  violate(text: string): void {
    this.violations.push(`step ${this.step}: ${text}`);
    this.trace.push(`#${this.step} VIOLATION ${text}`);
  }

  stateLine(): string {
    const nodes = this.nodes.map((n) => {
      let role = 'D';
      if (n.role === 'primary') role = `P${n.primary!.epoch}${n.primary!.gate.fencedBy === null ? '' : '!'}`;
      else if (n.role === 'replica') role = 'R';
      return `${n.id}=${role}${n.pausedSteps > 0 ? 'z' : ''}`;
    });
    return `${nodes.join(' ')} faults=${this.faultMode}`;
  }

  // --- the store as each node sees it ---

  incarnation(node: SimNode): Incarnation {
    const inc: Incarnation = { dead: false, store: undefined as unknown as ObjectStore };
    const faulty = this.faulty;
    const jitter = node.jitter;
    const gate = async <T>(what: string, call: () => Promise<T>): Promise<T> => {
      // Mostly 0–2 turns; now and then a slow request that lets other nodes' calls overtake it.
      const turns = chance(jitter, 0.05) ? 10 + randomInt(jitter, 50) : randomInt(jitter, 3);
      for (let i = 0; i < turns; i++) await turn();
      if (inc.dead) throw new ClosedError(`${node.id} crashed`);
      if (this.options.verbose !== true) return call();
      try {
        const result = await call();
        this.note(`  ${node.id} ${what} → ${describeResult(result)}`);
        return result;
      } catch (error) {
        this.note(`  ${node.id} ${what} → ${errorCode(error)} ${(error as Error).message}`);
        throw error;
      }
    };
    const gated: ObjectStore = {
      description: faulty.description,
      put: (key, body, opts) =>
        gate(`put ${key} ${opts?.condition?.type ?? 'none'}`, () => faulty.put(key, body, opts)),
      get: (key, opts) => gate(`get ${key}`, () => faulty.get(key, opts)),
      head: (key) => gate(`head ${key}`, () => faulty.head(key)),
      list: (prefix, opts) =>
        gate(`list ${prefix} after ${opts?.startAfter ?? opts?.token ?? '-'}`, () =>
          faulty.list(prefix, opts),
        ),
      delete: (key) => gate(`delete ${key}`, () => faulty.delete(key)),
      deleteMany: (keys) => gate(`deleteMany ${keys.length}`, () => faulty.deleteMany(keys)),
      close: async () => {},
    };
    const retried = withRetries(gated, {
      policy: { attempts: 3, baseDelayMs: 20, maxDelayMs: 200 },
      clock: this.clock,
      random: node.retryRandom,
    });
    const counted = <T>(call: () => Promise<T>): Promise<T> => {
      this.inFlight++;
      return call().finally(() => {
        this.inFlight--;
      });
    };
    inc.store = {
      description: faulty.description,
      put: (key, body, opts) => counted(() => retried.put(key, body, opts)),
      get: (key, opts) => counted(() => retried.get(key, opts)),
      head: (key) => counted(() => retried.head(key)),
      list: (prefix, opts) => counted(() => retried.list(prefix, opts)),
      delete: (key) => counted(() => retried.delete(key)),
      deleteMany: (keys) => counted(() => retried.deleteMany(keys)),
      close: async () => {},
    };
    return inc;
  }

  /** Let every background store call of this step finish: the event loop holds nothing of ours. */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let i = 0; i < 100_000 && quiet < 4; i++) {
      await turn();
      quiet = this.inFlight === 0 ? quiet + 1 : 0;
    }
    if (quiet < 4) this.violate('store calls still in flight after draining the event loop');
  }

  // --- roles ---

  openTables(node: SimNode): TableStore {
    const tables = TableStore.open(node.dbFile, { synchronous: 'NORMAL', clock: this.clock });
    try {
      resolveNodeId(tables, node.id);
    } catch (error) {
      tables.close();
      throw error;
    }
    return tables;
  }

  /** PrimaryNode.start without HTTP, queries or the store probe: claim, then uploader + committers. */
  async startPrimary(node: SimNode, inc = this.incarnation(node)): Promise<void> {
    const tables = this.openTables(node);
    let claim: Awaited<ReturnType<typeof claimPrimary>>;
    try {
      claim = await claimPrimary({
        store: inc.store,
        meta: { get: (k) => tables.getMeta(k), set: (k, v) => tables.setMeta(k, v) },
        nodeId: node.id,
        url: `sim://${node.id}`,
        clock: this.clock,
      });
    } catch (error) {
      tables.close();
      throw error;
    }
    const gate = { accepting: true, fencedBy: null as string | null };
    const uploader = new Uploader({
      store: inc.store,
      source: pendingSourceOf(tables),
      nodeId: node.id,
      epoch: () => claim.epoch,
      clock: this.clock,
      random: node.uploaderRandom,
      log,
      rolloverSizeBytes: this.rolloverBytes,
      windowMs: NEVER_MS,
      maxConcurrentTables: 2,
      headIntervalMs: NEVER_MS,
      codec: 'deflate',
      compressionLevel: 1,
      onFenced: (detail) => {
        gate.accepting = false;
        gate.fencedBy = `${detail.writerNodeId} (epoch ${detail.epoch}) at ${detail.table}`;
      },
    });
    const committer = (ackMode: 'local' | 'durable') =>
      new Committer({
        tables,
        uploader,
        clock: this.clock,
        ackMode,
        durableTimeoutMs: DURABLE_TIMEOUT_MS,
        pendingMaxBytes: 1 << 20,
        acceptingWrites: () => gate.accepting,
      });
    node.primary = {
      inc,
      tables,
      uploader,
      local: committer('local'),
      durable: committer('durable'),
      epoch: claim.epoch,
      gate,
    };
    node.replica = undefined;
    node.role = 'primary';
    node.intent = 'primary';
    uploader.start();
  }

  startReplica(node: SimNode): void {
    node.replica = { inc: this.incarnation(node), tables: this.openTables(node) };
    node.primary = undefined;
    node.role = 'replica';
    node.intent = 'replica';
  }

  /** Close a primary the way PrimaryNode.close does (bounded flush, stop, close). */
  async closePrimary(node: SimNode): Promise<void> {
    const p = node.primary!;
    p.gate.accepting = false;
    await p.uploader.flush(FLUSH_MS);
    await p.uploader.stop();
    p.tables.close();
    node.primary = undefined;
  }

  /** The process dies: its store calls fail from now on, its in-memory state is gone, SQLite stays. */
  async crash(node: SimNode): Promise<void> {
    this.stats.crashes++;
    if (node.busy !== undefined) node.busy.dead = true;
    if (node.primary !== undefined) {
      const p = node.primary;
      p.inc.dead = true;
      node.primary = undefined;
      await p.uploader.stop();
      p.tables.close();
    }
    if (node.replica !== undefined) {
      node.replica.inc.dead = true;
      node.replica.tables.close();
      node.replica = undefined;
    }
    node.role = 'down';
  }

  /**
   * WalshipNode's fence reaction: close, write divergence files, move the database aside when it
   * holds txns that never reached the store, follow as a replica.
   */
  async reactToFence(node: SimNode): Promise<void> {
    const p = node.primary!;
    const epoch = p.epoch;
    await this.closePrimary(node);
    // As WalshipNode#onFenced: an upload whose answer was lost may be in the store after all;
    // retried as WalshipNode does (UPLOADS_FOUND_ATTEMPTS), then best effort.
    await this.recordWhatReachedTheStore(node, p.inc.store, epoch, true).catch(() => 0);
    await this.divergeAndRejoin(node, epoch, `fenced by ${p.gate.fencedBy}`);
    this.stats.fencedPrimaries++;
  }

  /** Divergence files + move aside (when anything is pending), then a replica on what is left. */
  async divergeAndRejoin(node: SimNode, epoch: bigint, why: string): Promise<void> {
    const tables = TableStore.open(node.dbFile, { synchronous: 'NORMAL' });
    let pendingIds: { table: string; txn: bigint; ids: number[] }[];
    let files: Awaited<ReturnType<typeof writeDivergenceFiles>>;
    try {
      pendingIds = pendingRecords(tables).map((r) => ({
        table: r.table,
        txn: r.record.txn,
        ids: idsOf(r.record),
      }));
      files = await writeDivergenceFiles({ dir: path.join(node.dataDir, 'divergence'), epoch, tables });
    } finally {
      tables.close();
    }
    const rows = files.reduce((sum, f) => sum + f.rows, 0);
    const expectedRows = pendingIds.reduce((sum, r) => sum + r.ids.length, 0);
    if (rows !== expectedRows)
      this.violate(`${node.id}: divergence files hold ${rows} rows, its pending queue ${expectedRows}`);
    for (const r of pendingIds) {
      for (const id of r.ids) {
        const earlier = this.diverged.get(id);
        if (earlier !== undefined)
          this.violate(`row ${id} is in two divergence files (${earlier}, ${node.id})`);
        this.diverged.set(id, `${node.id}@${epoch}:${r.table}#${r.txn}`);
      }
    }
    this.stats.divergedTxns += pendingIds.length;
    if (files.length > 0) {
      const aside = path.join(node.dataDir, `diverged-epoch-${epoch}-${this.step}-${node.dbGeneration}`);
      await mkdir(aside, { recursive: true });
      for (const suffix of ['', '-wal', '-shm']) {
        const file = `${node.dbFile}${suffix}`;
        if (existsSync(file)) await rename(file, path.join(aside, `tables.sqlite${suffix}`));
      }
      this.readers.get(`${node.id}/${node.dbGeneration}`)?.close();
      this.readers.delete(`${node.id}/${node.dbGeneration}`);
      node.dbGeneration++;
    }
    this.startReplica(node);
    this.note(
      `${node.id} ${why}: ${pendingIds.length} txns diverged (${expectedRows} rows)` +
        `${files.length > 0 ? ', database moved aside' : ''}; follows as a replica`,
    );
  }

  /**
   * WalshipNode's rejoin after a crash: pending txns whose segment is in the store after all (this
   * node, this epoch, the same records: an upload whose success the crash hid) are marked uploaded
   * before the rest goes to divergence files. Returns how many txns it found.
   */
  async recordWhatReachedTheStore(
    node: SimNode,
    store: ObjectStore,
    epoch: bigint,
    retry = false,
  ): Promise<number> {
    const tables = TableStore.open(node.dbFile, { synchronous: 'NORMAL' });
    try {
      const options = { store, tables, nodeId: node.id, epoch };
      if (retry)
        return (await recordUploadsFoundRetrying({ ...options, sleep: (ms) => this.clock.sleep(ms) })).found;
      return (await recordUploadsFound(options)).found;
    } finally {
      tables.close();
    }
  }

  /** A restart after a crash: as primary (claim; a refusal rejoins), or as a replica (rejoin first). */
  async restart(node: SimNode): Promise<string> {
    if (node.intent === 'primary') {
      try {
        await this.startPrimary(node);
        return `restarted as primary of epoch ${node.primary!.epoch}`;
      } catch (error) {
        if (!isWalshipError(error, 'PRIMARY_REFUSED')) throw error;
      }
    }
    const tables = TableStore.open(node.dbFile, { synchronous: 'NORMAL' });
    let localEpoch: string | undefined;
    let pending: number;
    try {
      localEpoch = tables.getMeta('epoch');
      pending = tables.pendingSummary().length;
    } finally {
      tables.close();
    }
    if (localEpoch !== undefined && pending > 0) {
      const store = this.incarnation(node).store;
      const newest = await newestEpoch(store);
      if (newest === null || newest.epoch <= BigInt(localEpoch)) {
        node.intent = 'primary';
        return 'still the newest primary with txns to upload: stays down, restarts as primary';
      }
      const found = await this.recordWhatReachedTheStore(node, store, BigInt(localEpoch));
      await this.divergeAndRejoin(
        node,
        BigInt(localEpoch),
        `was replaced while down (${found} txns found uploaded)`,
      );
      return 'rejoined as a replica';
    }
    this.startReplica(node);
    return 'restarted as a replica';
  }

  // --- operations ---

  liveNodes(role: 'primary' | 'replica'): SimNode[] {
    return this.nodes.filter((n) => n.role === role && n.pausedSteps === 0 && n.busy === undefined);
  }

  enabledTables(): TableName[] {
    return this.step >= this.fillsFrom ? [...TABLES] : ['trades', 'quotes'];
  }

  /** One ILP request of 1–2 tables, 1–3 rows each, with fresh ids. */
  async write(node: SimNode, mode: 'local' | 'durable', table?: TableName): Promise<string> {
    const p = node.primary!;
    const chosen = table !== undefined ? [table] : this.chooseTables();
    const parts: WriteRecord['parts'] = [];
    let text = '';
    for (const t of chosen) {
      const ids: number[] = [];
      const rows = 1 + randomInt(this.random, 3);
      for (let i = 0; i < rows; i++) {
        const id = this.nextId++;
        ids.push(id);
        text += rowLine(t, id, t === 'trades' && this.step >= this.qFrom);
      }
      parts.push({ table: t, key: tableKey(t), ids, txn: p.tables.lastTxn(t) + 1n });
    }
    const record: WriteRecord = {
      n: this.writes.length,
      node: node.id,
      epoch: p.epoch,
      mode,
      status: 'committed',
      parts,
    };
    this.writes.push(record);
    this.stats.writes++;
    const lines = parseIlp(Buffer.from(text), { precision: 'n' });
    const committer = mode === 'durable' ? p.durable : p.local;
    const promise = committer.commit(lines);
    // commit() is synchronous up to its durable wait: the local commit happened (or not) by now.
    const committed = parts.every((part) => p.tables.lastTxn(part.table) === part.txn);
    let outcome: string | undefined;
    promise.then(
      () => {
        record.status = mode === 'durable' ? 'durable-ack' : 'local-ack';
        if (mode === 'durable') this.stats.durableAcks++;
        else this.stats.localAcks++;
        if (outcome !== undefined) this.note(`w${record.n} on ${node.id} acknowledged late (${mode})`);
      },
      (error: unknown) => {
        record.error = isWalshipError(error) ? error.code : String(error);
        record.status = committed ? 'failed' : 'rejected';
        const expected = ['NOT_ACCEPTING_WRITES', 'PENDING_FULL', 'FENCED', 'CLOSED', 'DURABLE_TIMEOUT'];
        if (!isWalshipError(error) || !expected.includes(error.code))
          this.violate(`w${record.n} on ${node.id}: unexpected commit error ${String(error)}`);
        if (outcome !== undefined) this.note(`w${record.n} on ${node.id} failed late: ${record.error}`);
      },
    );
    if (!committed && !(await settled(promise)))
      this.violate(`w${record.n}: commit neither committed locally nor failed`);
    if (mode === 'durable' && committed) await p.uploader.flush(DURABLE_DRIVE_MS);
    await this.settle();
    const where = parts.map((part) => `${part.table}#${part.txn}[${part.ids.join(',')}]`).join(' ');
    outcome = `w${record.n} ${mode} on ${node.id}@${p.epoch} ${where} → ${record.status}${record.error ? ` ${record.error}` : ''}`;
    return outcome;
  }

  chooseTables(): TableName[] {
    const enabled = this.enabledTables();
    const first = pick(this.random, enabled);
    if (!chance(this.random, 0.3)) return [first];
    const second = pick(this.random, enabled);
    return second === first ? [first] : [first, second];
  }

  async flush(node: SimNode, timeoutMs = FLUSH_MS): Promise<string> {
    const p = node.primary!;
    const done = await p.uploader.flush(timeoutMs);
    const marks = TABLES.filter((t) => p.tables.schema(t) !== undefined)
      .map((t) => `${t}=${p.tables.uploadedTxn(t)}/${p.tables.lastTxn(t)}`)
      .join(' ');
    return `flush ${node.id}@${p.epoch} → ${done ? 'done' : 'incomplete'} ${marks}${p.gate.fencedBy ? ' FENCED' : ''}`;
  }

  /** A fresh Follower's catchUp on the replica's database (what promote's P1 does). */
  async catchUp(node: SimNode, solo: boolean): Promise<string> {
    const r = node.replica!;
    const inc = r.inc;
    const follower = new Follower({
      store: inc.store,
      tables: r.tables,
      clock: this.clock,
      log,
      pollIntervalMs: 1_000,
      sweepIntervalMs: 1_000,
      downloadConcurrency: 3,
      clusterId: r.tables.getMeta('cluster.id'),
      onCluster: (id) => r.tables.setMeta('cluster.id', id),
    });
    try {
      await follower.catchUp();
    } catch (error) {
      if (inc.dead) return `catch-up ${node.id} cut short by its crash`;
      if (isWalshipError(error) && error.kind === 'unavailable') return `catch-up ${node.id} → store error`;
      this.violate(`catch-up ${node.id} failed: ${String(error)}`);
      return `catch-up ${node.id} → ${String(error)}`;
    }
    const marks = follower
      .tableWatermarks()
      .map((t) => `${t.name}=${t.appliedTxn}`)
      .sort()
      .join(' ');
    if (solo) await this.checkCaughtUp(node, follower.appliedAll());
    return `catch-up ${node.id} → ${marks}`;
  }

  /** After a catch-up that ran alone, the replica holds every txn the store holds. */
  async checkCaughtUp(node: SimNode, applied: Map<string, bigint>): Promise<void> {
    const history = await this.readHistory();
    for (const [key, txns] of history) {
      const last = BigInt(txns.length);
      if ((applied.get(key) ?? 0n) !== last)
        this.violate(
          `${node.id} caught up to ${key}#${applied.get(key) ?? 0n}, but the store holds ${last} txns`,
        );
    }
  }

  async promoteNode(node: SimNode): Promise<string> {
    const r = node.replica!;
    r.tables.close();
    node.replica = undefined;
    node.role = 'down';
    node.intent = 'replica';
    const inc = this.incarnation(node);
    node.busy = inc;
    let result: string;
    try {
      const promotion = await promote({
        store: inc.store,
        databaseFile: node.dbFile,
        nodeId: node.id,
        url: `sim://${node.id}`,
        reason: `simulation step ${this.step}`,
        clock: this.clock,
        log,
        codec: 'deflate',
        compressionLevel: 1,
        synchronous: 'NORMAL',
      });
      this.stats.promotions++;
      this.completedThisStep.push(promotion.epoch);
      const fenced = promotion.fenced.map((f) => `${f.name}@${f.fenceTxn}`).join(' ');
      result = `promote ${node.id} → epoch ${promotion.epoch}, fenced ${fenced}`;
      node.intent = 'primary';
      if (inc.dead) return `${result}; crashed before starting the write path`;
      try {
        await this.startPrimary(node, inc);
        result += '; primary';
      } catch (error) {
        // WalshipNode: a primary role that cannot start after the promotion follows as a replica.
        if (inc.dead) return `${result}; crashed while starting the write path`;
        if (!isWalshipError(error) || !(error.code === 'PRIMARY_REFUSED' || error.kind === 'unavailable'))
          throw error;
        this.startReplica(node);
        result += `; write path not started (${error.code}): follows as a replica`;
      }
    } catch (error) {
      const code = isWalshipError(error) ? error.code : String(error);
      const expected =
        isWalshipError(error) &&
        (['PROMOTION_LOST', 'FENCED'].includes(error.code) || error.kind === 'unavailable' || inc.dead);
      if (!expected) this.violate(`promote ${node.id}: unexpected error ${String(error)}`);
      result = `promote ${node.id} → ${code}`;
      if (node.role === 'down' && !inc.dead) {
        this.startReplica(node);
        result += '; stays a replica';
      }
    } finally {
      node.busy = undefined;
    }
    return result;
  }

  // --- one step ---

  async runStep(): Promise<void> {
    const r = this.random;
    this.clock.advance(randomInt(r, 400));
    const primaries = this.liveNodes('primary');
    const replicas = this.liveNodes('replica');
    const up = this.nodes.filter((n) => n.role !== 'down' && n.busy === undefined);
    const awake = up.filter((n) => n.pausedSteps === 0);
    const paused = this.nodes.filter((n) => n.pausedSteps > 0);
    const restartable = this.nodes.filter((n) => n.role === 'down' && n.pausedSteps === 0);
    // Each operation with its weight, when it has a node to run on.
    const ops: [number, boolean, () => Promise<string> | string][] = [
      [22, primaries.length > 0, () => this.write(pick(r, primaries), 'local')],
      [14, primaries.length > 0, () => this.write(pick(r, primaries), 'durable')],
      [9, primaries.length > 0, () => this.flush(pick(r, primaries), pick(r, FLUSH_TIMEOUTS_MS))],
      [14, replicas.length > 0, () => this.catchUp(pick(r, replicas), true)],
      [3, replicas.length > 0, () => this.promoteNode(pick(r, replicas))],
      [8, awake.length >= 2, () => this.concurrent(awake)],
      [6, replicas.length >= 2, () => this.promotionRace(replicas)],
      [4, paused.length < 2 && up.length > 0, () => this.pause(up)],
      [2, paused.length > 0, () => this.resume(paused)],
      [3, up.length > 0, () => this.crashStep(up)],
      [8, restartable.length > 0, () => this.restartStep(restartable)],
      [5, true, () => this.toggleFaults()],
    ];
    const eligible = ops.filter(([, ok]) => ok);
    let roll = r.next() * eligible.reduce((sum, [weight]) => sum + weight, 0);
    let chosen = eligible.at(-1)![2];
    for (const [weight, , op] of eligible) {
      if (roll < weight) {
        chosen = op;
        break;
      }
      roll -= weight;
    }
    const text = await chosen();
    await this.settle();
    this.note(text);
  }

  /** Two operations on two different nodes at once; their store calls interleave by the seed. */
  async concurrent(candidates: SimNode[]): Promise<string> {
    const r = this.random;
    const a = pick(r, candidates);
    const b = pick(
      r,
      candidates.filter((n) => n !== a),
    );
    const ops = [a, b].map((node) => this.concurrentOp(node));
    const results = await Promise.all(ops.map((op) => op()));
    return `together: ${results.join(' ‖ ')}`;
  }

  concurrentOp(node: SimNode): () => Promise<string> {
    const r = this.random;
    if (node.role === 'primary') {
      const roll = r.next();
      if (roll < 0.4) return () => this.flush(node, pick(r, FLUSH_TIMEOUTS_MS));
      if (roll < 0.8) return () => this.write(node, 'durable');
      const ticks = randomInt(r, 12);
      return async () => {
        const flushing = this.flush(node).catch(
          (e: unknown) => `flush ${node.id} cut short (${errorCode(e)})`,
        );
        for (let i = 0; i < ticks; i++) await turn();
        await this.crash(node);
        return `${await flushing}, crashed after ${ticks} turns`;
      };
    }
    const roll = r.next();
    if (roll < 0.45) return () => this.promoteNode(node);
    if (roll < 0.85) return () => this.catchUp(node, false);
    const ticks = randomInt(r, 12);
    const promoting = chance(r, 0.5);
    return async () => {
      const op = promoting ? this.promoteNode(node) : this.catchUp(node, false);
      for (let i = 0; i < ticks; i++) await turn();
      await this.crash(node);
      return `${await op}, crashed after ${ticks} turns`;
    };
  }

  /** Two replicas promoted at about the same time: the second starts up to 11 event-loop turns later. */
  async promotionRace(replicas: SimNode[]): Promise<string> {
    const r = this.random;
    const a = pick(r, replicas);
    const b = pick(
      r,
      replicas.filter((n) => n !== a),
    );
    const apart = randomInt(r, 12);
    const first = this.promoteNode(a);
    for (let i = 0; i < apart; i++) await turn();
    const second = this.promoteNode(b);
    const results = await Promise.all([first, second]);
    return `promotions ${apart} turns apart: ${results.join(' ‖ ')}`;
  }

  /** A node stops taking part for a few steps (a paused process: a zombie when it is the primary). */
  pause(candidates: SimNode[]): string {
    const node = pick(this.random, candidates);
    node.pausedSteps = 1 + randomInt(this.random, 8);
    return `pause ${node.id} for ${node.pausedSteps} steps`;
  }

  resume(paused: SimNode[]): string {
    const node = pick(this.random, paused);
    node.pausedSteps = 0;
    return `resume ${node.id}`;
  }

  async crashStep(candidates: SimNode[]): Promise<string> {
    const node = pick(this.random, candidates);
    await this.crash(node);
    return `crash ${node.id}`;
  }

  async restartStep(candidates: SimNode[]): Promise<string> {
    const node = pick(this.random, candidates);
    try {
      return `restart ${node.id}: ${await this.restart(node)}`;
    } catch (error) {
      if (isWalshipError(error) && error.kind === 'unavailable') {
        node.role = 'down';
        return `restart ${node.id} → store error, stays down`;
      }
      throw error;
    }
  }

  toggleFaults(): string {
    const mode = pick(this.random, ['calm', 'stormy', 'lossy-puts', 'flaky', 'flaky', 'outage']);
    this.setFaults(mode, mode === 'calm' ? 0 : 2 + randomInt(this.random, 8));
    return `faults → ${mode}${this.faultStepsLeft > 0 ? ` for ${this.faultStepsLeft} steps` : ''}`;
  }

  setFaults(mode: string, steps: number): void {
    this.faultMode = mode;
    this.faultStepsLeft = steps;
    this.faulty.setRules(FAULT_MODES[mode]!);
  }

  /** Between steps: pauses and fault modes run out; unpaused fenced primaries react. */
  async afterStep(): Promise<void> {
    for (const node of this.nodes) if (node.pausedSteps > 0) node.pausedSteps--;
    if (this.faultStepsLeft > 0 && --this.faultStepsLeft === 0) {
      this.setFaults('calm', 0);
      this.note('faults → calm');
    }
    for (const node of this.nodes) {
      if (node.role === 'primary' && node.primary!.gate.fencedBy !== null && node.pausedSteps === 0)
        await this.reactToFence(node);
    }
  }

  // --- the auditor ---

  /** Each table's history as an honest reader sees it: the chain of segments from txn 1. */
  async readHistory(): Promise<Map<string, HistoryTxn[]>> {
    const byTable = new Map<string, { key: string; etag: string }[]>();
    for await (const info of listAll(this.mem, TABLES_PREFIX)) {
      const [, key, dir] = info.key.split('/');
      if (key === undefined || dir !== 'wal') continue;
      const list = byTable.get(key) ?? [];
      list.push({ key: info.key, etag: info.etag });
      byTable.set(key, list);
    }
    const history = new Map<string, HistoryTxn[]>();
    for (const [tableKeyText, segments] of byTable) {
      const txns: HistoryTxn[] = [];
      for (const { key, etag } of segments) {
        const segment = await this.decoded(key, etag);
        if (txnFirstOfSegmentKey(key) !== segment.txnFirst)
          this.violateOnce(`${key} holds txns from ${segment.txnFirst}`);
        const expected = BigInt(txns.length) + 1n;
        if (segment.txnFirst !== expected) {
          this.violateOnce(
            `${tableKeyText}: ${key} starts at txn ${segment.txnFirst}, the chain before it ends at ${expected - 1n}`,
          );
          if (segment.txnFirst > expected) break;
          continue;
        }
        for (const [index, record] of segment.txns.entries()) {
          txns.push({
            txn: record.txn,
            epoch: segment.epoch,
            writer: segment.writer,
            kind: record.kind,
            ids: segment.ids[index]!,
            segment: key,
          });
        }
      }
      history.set(tableKeyText, txns);
    }
    return history;
  }

  readonly reported = new Set<string>();
  violateOnce(text: string): void {
    if (this.reported.has(text)) return;
    this.reported.add(text);
    this.violate(text);
  }

  async decoded(key: string, etag: string): Promise<CachedSegment> {
    const cached = this.segmentCache.get(key);
    if (cached !== undefined) {
      if (cached.etag !== etag) this.violateOnce(`${key} changed after it was written`);
      return cached;
    }
    const got = await this.mem.get(key);
    if (got === null || got.status !== 'ok') throw new Error(`${key} is listed but cannot be read`);
    const { header, txns } = await decodeSegment(got.body);
    const segment: CachedSegment = {
      etag,
      txnFirst: header.txnFirst,
      txnLast: header.txnLast,
      epoch: header.epoch,
      writer: header.writerNodeId,
      tableName: header.tableName,
      txns,
      ids: txns.map(idsOf),
    };
    this.segmentCache.set(key, segment);
    return segment;
  }

  async epochHolders(): Promise<Map<bigint, string>> {
    const holders = new Map<bigint, string>();
    for await (const info of listAll(this.mem, EPOCHS_PREFIX)) {
      const epoch = epochOfKey(info.key);
      if (epoch === undefined) continue;
      let holder = this.epochRecords.get(`${info.key} ${info.etag}`);
      if (holder === undefined) {
        const got = await this.mem.get(info.key);
        if (got === null || got.status !== 'ok') continue;
        holder = (JSON.parse(new TextDecoder().decode(got.body)) as { nodeId: string }).nodeId;
        this.epochRecords.set(`${info.key} ${info.etag}`, holder);
      }
      holders.set(epoch, holder);
    }
    return holders;
  }

  async audit(): Promise<void> {
    const history = await this.readHistory();
    const holders = await this.epochHolders();
    const newest = [...holders.keys()].reduce((a, b) => (b > a ? b : a), 0n);
    const completedBefore = this.completedEpoch;

    // Each table's chain: epochs never go down; each segment by its epoch's holder; nothing old after a completed promotion.
    const where = new Map<number, { key: string; txn: bigint }>();
    for (const [key, txns] of history) {
      let epoch = 0n;
      for (const t of txns) {
        if (t.epoch < epoch)
          this.violateOnce(
            `${key}#${t.txn} (${t.segment}) is of epoch ${t.epoch}, after txns of epoch ${epoch}`,
          );
        epoch = t.epoch > epoch ? t.epoch : epoch;
        const holder = holders.get(t.epoch);
        if (holder !== t.writer)
          this.violateOnce(
            `${t.segment} was written by ${t.writer} in epoch ${t.epoch}, held by ${holder ?? 'nobody'}`,
          );
        if (!this.seenSegments.has(t.segment)) {
          this.seenSegments.add(t.segment);
          if (t.epoch < completedBefore)
            this.violateOnce(
              `${t.segment} (epoch ${t.epoch}, by ${t.writer}) was accepted after the promotion to epoch ${completedBefore} had fenced every table`,
            );
        }
        for (const id of t.ids) {
          const earlier = where.get(id);
          if (earlier !== undefined)
            this.violateOnce(
              `row ${id} is in the history twice: ${earlier.key}#${earlier.txn} and ${key}#${t.txn}`,
            );
          where.set(id, { key, txn: t.txn });
        }
      }
    }

    // Writes: acknowledged durable ones are in, refused ones are nowhere, any row is where it was committed.
    const writeOf = new Map<number, { w: WriteRecord; part: WriteRecord['parts'][number] }>();
    for (const w of this.writes) {
      for (const part of w.parts) {
        for (const id of part.ids) writeOf.set(id, { w, part });
        const stored = history.get(part.key)?.[Number(part.txn) - 1];
        const present = part.ids.map((id) => where.get(id));
        if (w.status === 'durable-ack') {
          if (stored === undefined || stored.ids.join() !== part.ids.join())
            this.violateOnce(
              `w${w.n} was acknowledged durable by ${w.node}@${w.epoch} as ${part.table}#${part.txn} [${part.ids.join(',')}], ` +
                `but the store's ${part.table}#${part.txn} ${stored === undefined ? 'does not exist' : `holds [${stored.ids.join(',')}] (${stored.segment}, ${stored.writer}@${stored.epoch})`}`,
            );
        }
        if (w.status === 'rejected' && present.some((p) => p !== undefined))
          this.violateOnce(`w${w.n} was refused, yet its rows are in the store`);
        if (present.some((p) => p !== undefined)) {
          const wrong = present.some((p) => p === undefined || p.key !== part.key || p.txn !== part.txn);
          if (wrong)
            this.violateOnce(
              `w${w.n} ${part.table}#${part.txn} [${part.ids.join(',')}] is in the store only in part or elsewhere`,
            );
        }
        for (const id of part.ids) {
          if (this.diverged.has(id) && where.has(id))
            this.violateOnce(
              `row ${id} (w${w.n}) is in a divergence file (${this.diverged.get(id)}) but the cluster holds it (${part.table}#${where.get(id)!.txn})`,
            );
        }
      }
    }
    for (const id of where.keys())
      if (!writeOf.has(id)) this.violateOnce(`row ${id} in the store was never written`);

    // At most one unfenced primary.
    const unfenced = this.nodes.filter(
      (n) => n.role === 'primary' && n.primary!.gate.accepting && n.primary!.epoch === newest,
    );
    if (unfenced.length > 1)
      this.violate(
        `${unfenced.map((n) => n.id).join(' and ')} are both unfenced primaries of epoch ${newest}`,
      );
    for (const n of unfenced)
      if (holders.get(newest) !== n.id)
        this.violate(`${n.id} is primary of epoch ${newest}, held by ${holders.get(newest)}`);

    // Every node's database against the history (again only when its watermarks, role or the history moved).
    for (const node of this.nodes) {
      const tables = node.primary?.tables ?? node.replica?.tables;
      if (tables === undefined) continue;
      const fingerprint = [
        node.role,
        node.dbGeneration,
        tables.pendingSummary().reduce((sum, p) => sum + p.count, 0),
        ...tables
          .schemas()
          .map(
            (s) =>
              `${s.key}:${tables.lastTxn(s.name)}:${tables.uploadedTxn(s.name)}:${s.columns.length}:${history.get(s.key)?.length ?? 0}`,
          ),
      ].join('|');
      if (this.checkedFingerprints.get(node.id) === fingerprint) continue;
      this.checkedFingerprints.set(node.id, fingerprint);
      this.checkNode(node, tables, history, writeOf);
    }
  }

  checkNode(
    node: SimNode,
    tables: TableStore,
    history: Map<string, HistoryTxn[]>,
    writeOf: Map<number, { w: WriteRecord; part: WriteRecord['parts'][number] }>,
  ): void {
    const isPrimary = node.role === 'primary';
    const pending = isPrimary ? pendingRecords(tables) : [];
    const reader = this.reader(node);
    for (const schema of tables.schemas()) {
      const last = tables.lastTxn(schema.name);
      const mark = `${node.id}/${node.dbGeneration}/${schema.key}`;
      const before = this.watermarks.get(mark) ?? 0n;
      if (last < before)
        this.violateOnce(`${node.id}: ${schema.name} went back from txn ${before} to ${last}`);
      this.watermarks.set(mark, last);
      const txns = history.get(schema.key) ?? [];
      const upTo = isPrimary ? tables.uploadedTxn(schema.name) : last;
      if (upTo > BigInt(txns.length)) {
        this.violateOnce(
          `${node.id} (${node.role}) holds ${schema.name} up to txn ${upTo} as in the store, which holds ${txns.length}`,
        );
        continue;
      }
      const expected = txns.slice(0, Number(upTo)).flatMap((t) => t.ids);
      const mine = pending.filter((p) => p.table === schema.name);
      if (isPrimary) {
        const txnsPending = mine.map((p) => p.record.txn);
        const contiguous = txnsPending.every((txn, i) => txn === upTo + 1n + BigInt(i));
        if (!contiguous || upTo + BigInt(txnsPending.length) !== last)
          this.violateOnce(
            `${node.id}: ${schema.name} uploaded ${upTo}, committed ${last}, pending [${txnsPending.join(',')}]`,
          );
        for (const p of mine) expected.push(...idsOf(p.record));
      }
      const hasId = schema.columns.some((c) => c.name === 'id');
      const rows = hasId ? reader.rows(schema.name, schema.columns.length) : [];
      const actual = rows.map((row) => Number(row.id));
      const a = [...actual].sort((x, y) => x - y).join(',');
      const e = [...expected].sort((x, y) => x - y).join(',');
      if (a !== e)
        this.violateOnce(
          `${node.id} (${node.role}, ${schema.name} at txn ${last}) holds rows [${a}], the history up to txn ${upTo}${isPrimary ? ' and its pending queue' : ''} has [${e}]`,
        );
      for (const row of rows) {
        const id = Number(row.id);
        const origin = writeOf.get(id);
        const withQ = origin !== undefined && origin.part.table === 'trades' && row.q !== null;
        const good =
          row.v === id + 0.5 &&
          row.sym === `s${id % 4}` &&
          (row.q === null || row.q === undefined || (withQ && Number(row.q) === id * 3));
        if (!good) this.violateOnce(`${node.id}: row ${id} of ${schema.name} reads ${JSON.stringify(row)}`);
      }
    }
  }

  /** A read-only connection to the node's current database, kept until the database is moved aside. */
  reader(node: SimNode): DatabaseReader {
    const key = `${node.id}/${node.dbGeneration}`;
    let reader = this.readers.get(key);
    if (reader === undefined) {
      reader = new DatabaseReader(node.dbFile);
      this.readers.set(key, reader);
    }
    return reader;
  }

  /** Test hook: plant a violation the auditor must report. */
  async plantBug(): Promise<void> {
    if (this.planted) return;
    if (this.options.plant === 'lose-acked') {
      const acked = this.writes.find((w) => w.status === 'durable-ack');
      if (acked === undefined) return;
      const part = acked.parts[0]!;
      const history = await this.readHistory();
      const stored = history.get(part.key)?.[Number(part.txn) - 1];
      if (stored === undefined) return;
      await this.mem.delete(stored.segment);
      this.segmentCache.delete(stored.segment);
      this.planted = true;
      this.note(`PLANT deleted ${stored.segment}`);
    }
    if (this.options.plant === 'zombie-segment' && this.completedEpoch > 1n) {
      const history = await this.readHistory();
      for (const [key, txns] of history) {
        const last = txns.at(-1);
        if (last === undefined) continue;
        const txn = last.txn + 1n;
        const holders = await this.epochHolders();
        const segment = await sealSegment({
          tableName: this.segmentCache.get(last.segment)!.tableName,
          epoch: 1n,
          writerNodeId: holders.get(1n)!,
          records: [encodeTxnRecord({ txn, commitTimeUs: 1n, kind: 'fence', rowCount: 0, columns: [] })],
          codec: 'deflate',
          compressionLevel: 1,
        });
        const planted = segmentKey(asTableKey(key), txn);
        await this.mem.put(planted, segment, { condition: { type: 'absent' } });
        this.planted = true;
        this.note(`PLANT epoch-1 segment ${planted}`);
        return;
      }
    }
  }

  // --- the run ---

  async run(): Promise<SimulationResult> {
    this.baseDir = await mkdtemp(
      path.join(this.options.baseDir ?? defaultBaseDir(), `walship-sim-${this.seed}-`),
    );
    try {
      const count = this.options.nodes ?? 3;
      for (let i = 1; i <= count; i++) {
        const dataDir = path.join(this.baseDir, `n${i}`);
        await mkdir(dataDir, { recursive: true });
        this.nodes.push({
          id: `n${i}`,
          dataDir,
          dbFile: path.join(dataDir, 'tables.sqlite'),
          role: 'down',
          intent: 'replica',
          primary: undefined,
          replica: undefined,
          busy: undefined,
          pausedSteps: 0,
          dbGeneration: 0,
          jitter: derive(this.seed, `jitter-${i}`),
          retryRandom: derive(this.seed, `retry-${i}`),
          uploaderRandom: derive(this.seed, `uploader-${i}`),
        });
      }
      this.faulty.setRules([]);
      await this.startPrimary(this.nodes[0]!);
      for (const node of this.nodes.slice(1)) this.startReplica(node);
      this.faulty.setRules(FAULT_MODES.calm!);
      this.note(
        `start: ${this.nodes[0]!.id} primary of epoch 1, ${this.stepsTotal} steps, rollover ${this.rolloverBytes} B, ` +
          `fills from step ${this.fillsFrom}, column q from step ${this.qFrom}`,
      );
      for (this.step = 1; this.step <= this.stepsTotal && this.violations.length === 0; this.step++) {
        this.completedThisStep = [];
        try {
          await this.runStep();
          await this.afterStep();
          if (this.options.plant !== undefined) await this.plantBug();
          await this.audit();
        } catch (error) {
          this.violate(`the step threw: ${(error as Error).stack ?? String(error)}`);
        }
        for (const epoch of this.completedThisStep)
          if (epoch > this.completedEpoch) this.completedEpoch = epoch;
        this.trace[this.trace.length - 1] += `  | ${this.stateLine()}`;
        this.stats.steps++;
      }
      if (this.violations.length === 0) {
        try {
          await this.converge();
        } catch (error) {
          this.violate(`convergence threw: ${(error as Error).stack ?? String(error)}`);
        }
      }
      this.stats.faultsInjected = Object.values(this.faulty.injected).reduce((a, b) => a + b, 0);
      return {
        seed: this.seed,
        trace: this.trace,
        violations: this.violations,
        storeDigest: await this.storeDigest(),
        planted: this.planted,
        stats: this.stats,
      };
    } finally {
      await this.shutdown();
      await rm(this.baseDir, { recursive: true, force: true });
    }
  }

  async storeDigest(): Promise<string> {
    const hash = createHash('sha256');
    for await (const info of listAll(this.mem, '')) {
      if (info.key.startsWith(EPOCHS_PREFIX) || info.key === 'cluster.json') continue;
      const got = await this.mem.get(info.key);
      if (got === null || got.status !== 'ok') continue;
      hash.update(`${info.key}\n`).update(got.body);
    }
    return hash.digest('hex');
  }

  async shutdown(): Promise<void> {
    for (const reader of this.readers.values()) reader.close();
    this.readers.clear();
    for (const node of this.nodes) {
      if (node.primary !== undefined) {
        node.primary.inc.dead = true;
        await node.primary.uploader.stop();
        node.primary.tables.close();
        node.primary = undefined;
      }
      if (node.replica !== undefined) {
        node.replica.tables.close();
        node.replica = undefined;
      }
    }
  }

  /**
   * The end: heal the store, resume everyone, bring crashed nodes back, make sure the newest epoch
   * has a live primary, make every zombie write (its upload must be refused), flush, catch up, and
   * compare every node with the history.
   */
  async converge(): Promise<void> {
    this.step++;
    this.setFaults('none', 0);
    for (const node of this.nodes) node.pausedSteps = 0;
    const stepDone = async (text: string) => {
      await this.settle();
      await this.afterStep();
      this.note(`final: ${text}  | ${this.stateLine()}`);
      await this.audit();
      for (const epoch of this.completedThisStep)
        if (epoch > this.completedEpoch) this.completedEpoch = epoch;
      this.completedThisStep = [];
    };
    for (const node of this.nodes)
      if (node.role === 'down') await stepDone(`restart ${node.id}: ${await this.restart(node)}`);
    await stepDone('fence reactions');
    for (let round = 0; round < 5; round++) {
      const holders = await this.epochHolders();
      const newest = [...holders.keys()].reduce((a, b) => (b > a ? b : a), 0n);
      const live = this.nodes.find(
        (n) => n.role === 'primary' && n.primary!.epoch === newest && n.primary!.gate.accepting,
      );
      if (live !== undefined) break;
      const replica = this.nodes.find((n) => n.role === 'replica');
      if (replica === undefined) {
        this.violate('no live primary of the newest epoch and no replica to promote');
        return;
      }
      await stepDone(await this.promoteNode(replica));
    }
    const holders = await this.epochHolders();
    const newest = [...holders.keys()].reduce((a, b) => (b > a ? b : a), 0n);
    const live = this.nodes.filter((n) => n.role === 'primary' && n.primary!.epoch === newest);
    if (live.length !== 1) {
      this.violate(`after healing, ${live.length} primaries of the newest epoch ${newest}`);
      return;
    }
    // Zombies: a write and a flush each; the upload must be refused and the node must follow.
    for (const node of this.nodes) {
      if (node.role !== 'primary' || node.primary!.epoch === newest) continue;
      const text = await this.write(node, 'local', 'trades');
      const flushed = await this.flush(node, FINAL_FLUSH_MS);
      if (node.primary!.gate.fencedBy === null)
        this.violate(
          `zombie ${node.id} of epoch ${node.primary!.epoch} wrote and flushed after epoch ${newest} was promoted, and was not fenced`,
        );
      await stepDone(`zombie ${text}; ${flushed}`);
    }
    const primary = live[0]!;
    await stepDone(await this.flush(primary, FINAL_FLUSH_MS));
    if (primary.primary!.tables.pendingSummary().length > 0)
      this.violate(`${primary.id} could not upload its backlog on a healthy store`);
    for (const node of this.nodes)
      if (node.role === 'replica') await stepDone(await this.catchUp(node, true));
    // Everyone holds the same rows as the history, which holds every acknowledged row not in a divergence file.
    const history = await this.readHistory();
    const inHistory = new Set([...history.values()].flatMap((txns) => txns.flatMap((t) => t.ids)));
    for (const node of this.nodes) {
      const tables = node.primary?.tables ?? node.replica?.tables;
      if (tables === undefined) {
        this.violate(`${node.id} is still down after healing`);
        continue;
      }
      for (const [key, txns] of history) {
        const schema = tables.schemas().find((s) => s.key === key);
        const last = schema === undefined ? 0n : tables.lastTxn(schema.name);
        if (last !== BigInt(txns.length))
          this.violate(`${node.id} ends at ${key}#${last}, the store at ${txns.length}`);
      }
    }
    for (const w of this.writes) {
      if (w.status === 'rejected') continue;
      for (const part of w.parts) {
        for (const id of part.ids) {
          const kept = inHistory.has(id);
          const diverged = this.diverged.has(id);
          if (!kept && !diverged)
            this.violate(
              `w${w.n} (${w.status} by ${w.node}@${w.epoch}) row ${id} is neither in the store nor in a divergence file`,
            );
        }
      }
    }
    this.note(
      `final: ${this.stats.writes} writes, ${this.stats.durableAcks} durable acks, ${this.stats.promotions} promotions, ` +
        `${inHistory.size} rows in the store, ${this.diverged.size} diverged`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Reads a node's rows beside its own connection (SQLite in WAL mode lets a reader in at any time). */
class DatabaseReader {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(file: string) {
    this.#db = new Database(file, { readonly: true, fileMustExist: true });
  }

  /** Every row of `table`; `columns` tells a changed schema apart (the statement is prepared again). */
  rows(table: string, columns: number): Record<string, unknown>[] {
    const key = `${table}/${columns}`;
    let statement = this.#statements.get(key);
    if (statement === undefined) {
      statement = this.#db.prepare(`SELECT * FROM "${table}"`);
      this.#statements.set(key, statement);
    }
    return statement.all() as Record<string, unknown>[];
  }

  close(): void {
    this.#db.close();
  }
}

function rowLine(table: TableName, id: number, withQ: boolean): string {
  const q = withQ ? `,q=${id * 3}i` : '';
  return `${table},sym=s${id % 4} id=${id}i,v=${id}.5${q} ${BASE_NS + BigInt(id) * 1000n}\n`;
}

function idsOf(record: TxnRecord): number[] {
  const column = record.columns.find((c) => c.name === 'id');
  if (column === undefined || column.data.type !== 'long') return [];
  const ids: number[] = [];
  for (let row = 0; row < record.rowCount; row++) {
    if (!isNull(column, row)) ids.push(Number(column.data.values[row]));
  }
  return ids;
}

function pendingRecords(tables: TableStore): { table: string; record: TxnRecord }[] {
  const out: { table: string; record: TxnRecord }[] = [];
  for (const { table } of tables.pendingSummary()) {
    for (const p of tables.pending(table, { limitBytes: Number.MAX_SAFE_INTEGER }))
      out.push({ table, record: decodeTxnRecord(p.bytes) });
  }
  return out;
}

/** True when `promise` has settled within one turn of the event loop. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await turn();
  return done;
}

function describeResult(result: unknown): string {
  if (result === null || result === undefined) return String(result);
  const r = result as { status?: string; objects?: { key: string }[]; info?: { key: string } };
  if (r.objects !== undefined) return `[${r.objects.map((o) => o.key).join(', ')}]`;
  return r.status ?? 'ok';
}

function errorCode(error: unknown): string {
  return isWalshipError(error) ? error.code : String(error);
}

/**
 * The seeds one test file runs: `WALSHIP_SIM_SEED=s` replays seed s alone (in shard 1),
 * `WALSHIP_SIM_SEEDS=N` runs seeds 1..N (default 300), split round-robin over `shards` files so
 * that they run in parallel.
 */
export function seedsOfShard(shard: number, shards: number): number[] {
  const replay = process.env.WALSHIP_SIM_SEED;
  if (replay !== undefined && replay !== '') return shard === 1 ? [Number(replay)] : [];
  const count = Number(process.env.WALSHIP_SIM_SEEDS ?? DEFAULT_SEEDS);
  return Array.from({ length: count }, (_, i) => i + 1).filter((seed) => seed % shards === shard - 1);
}

/** Seeds CI runs. */
export const DEFAULT_SEEDS = 300;

/** Runs `seeds` one after the other; returns the failed ones (all seeds' traces printed when replaying one). */
export async function runSeeds(seeds: number[]): Promise<{ failures: SimulationResult[]; summary: string }> {
  const replaying = process.env.WALSHIP_SIM_SEED !== undefined && process.env.WALSHIP_SIM_SEED !== '';
  const failures: SimulationResult[] = [];
  const totals = {
    steps: 0,
    writes: 0,
    durableAcks: 0,
    promotions: 0,
    fencedPrimaries: 0,
    crashes: 0,
    faults: 0,
  };
  for (const seed of seeds) {
    const result = await runSimulation({ seed, verbose: process.env.WALSHIP_SIM_VERBOSE === '1' });
    if (replaying) console.log(result.trace.join('\n'));
    totals.steps += result.stats.steps;
    totals.writes += result.stats.writes;
    totals.durableAcks += result.stats.durableAcks;
    totals.promotions += result.stats.promotions;
    totals.fencedPrimaries += result.stats.fencedPrimaries;
    totals.crashes += result.stats.crashes;
    totals.faults += result.stats.faultsInjected;
    if (result.violations.length > 0) failures.push(result);
  }
  const summary =
    `${seeds.length} seeds: ${Object.entries(totals)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}` +
    (failures.length === 0 ? '' : `; FAILED seeds ${failures.map((f) => f.seed).join(' ')}`);
  return { failures, summary };
}

/** The message for failed seeds: each seed with its violations and last trace lines (the first few in full). */
export function describeFailures(failures: SimulationResult[]): string {
  const shown = failures.slice(0, 5).map((f) => describeFailure(f));
  const rest = failures.slice(5).map((f) => `seed ${f.seed}: ${f.violations[0]}`);
  return [
    `${failures.length} seeds broke the failover invariants: ${failures.map((f) => f.seed).join(' ')}`,
    ...shown,
    ...rest,
  ].join('\n\n');
}

/** Run one seed. Needs `setTimeout` faked by the caller (see the header comment). */
export function runSimulation(options: SimulationOptions): Promise<SimulationResult> {
  return new Simulation(options).run();
}

/** The message of a failed seed: the seed, how to replay it, the violations and the last trace lines. */
export function describeFailure(result: SimulationResult, lastLines = 30): string {
  return [
    `seed ${result.seed} broke the failover invariants (replay: WALSHIP_SIM_SEED=${result.seed} npx vitest run tests/simulation)`,
    ...result.violations.map((v) => `  ✗ ${v}`),
    `last ${Math.min(lastLines, result.trace.length)} trace lines:`,
    ...result.trace.slice(-lastLines).map((line) => `  ${line}`),
  ].join('\n');
}

/** Data dirs on tmpfs when there is one: the simulation fsyncs divergence files and SQLite often. */
function defaultBaseDir(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}
