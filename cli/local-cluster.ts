/**
 * A local walship cluster for the drill and the demo: a primary and N replicas as child processes
 * of this walship command line, on 127.0.0.1 with ports they pick, over one store, with small
 * throttle-window and poll settings so a failover shows within a second or two. Every line a node
 * prints goes to `<dir>/node-N.log`. The nodes die with this process (an `exit` hook SIGKILLs them).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { systemClock, type Timer, WalshipError } from '../core/index.js';

// --- Bounds -------------------------------------------------------------------------------------

/** Output kept in memory per node, for the error when it exits before listening. */
const NODE_OUTPUT_CHARS = 16_384;
/** A cluster has at most this many replicas (each one a process). */
export const REPLICAS_MAX = 8;

export type AckMode = 'local' | 'durable';

export interface LocalClusterOptions {
  /** Where the data dirs and logs go; undefined = a new temporary directory (`tempPrefix`). */
  dir?: string;
  /** Prefix of the temporary directory's name (default `walship-cluster-`). */
  tempPrefix?: string;
  /** Connection string of the store; undefined = `fs::root=<dir>/store;`. */
  store?: string;
  ack: AckMode;
  /** Replicas besides the primary (1 to REPLICAS_MAX). */
  replicas: number;
  /** Automatic failover on every node (`replication.failover.auto`) with this lease timeout. */
  autoFailover?: { leaseTimeoutMs: number };
  /** Every node's admin token; it goes by environment, never on a command line. */
  adminToken: string;
  /** Told of every node once it listens (at start and after restartAsReplica). */
  onNode?: (node: LocalNodeInfo) => void;
  /** More `--key=value` settings for every node (no secrets: command lines are visible). */
  settings?: string[];
}

/** What a caller may know of a node. */
export interface LocalNodeInfo {
  /** `node-0` is the first primary, `node-1`… the replicas it started with. */
  name: string;
  url: string;
  pid: number;
  startedAs: 'primary' | 'replica';
  dataDir: string;
  log: string;
}

interface LocalNode extends LocalNodeInfo {
  child: ChildProcess;
  output: string;
}

export class LocalCluster {
  readonly dir: string;
  /** `fs` or `s3`: a store's connection string may hold credentials, so only its kind is shown. */
  readonly storeDescription: string;
  readonly #ownsDir: boolean;
  readonly #options: LocalClusterOptions;
  readonly #env: Record<string, string | undefined>;
  readonly #nodes: LocalNode[] = [];
  /** Once stop() began no node starts again (a restart racing a stop would outlive the cluster). */
  #stopping = false;
  readonly #onExit = () => {
    for (const node of this.#nodes) node.child.kill('SIGKILL');
  };

  private constructor(dir: string, ownsDir: boolean, options: LocalClusterOptions) {
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.#options = options;
    const store = options.store ?? `fs::root=${path.join(dir, 'store')};`;
    this.storeDescription = store.startsWith('fs::') ? 'fs' : 's3';
    // The store (it may hold credentials) and the token go by environment, not on a command line.
    this.#env = {
      ...process.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      WALSHIP_REPLICATION_OBJECT_STORE: store,
      WALSHIP_ADMIN_TOKEN: options.adminToken,
    };
  }

  /** Starts the primary, then the replicas; on any failure every started node is ended again. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    if (!(options.replicas >= 1 && options.replicas <= REPLICAS_MAX))
      throw new RangeError(`replicas: expected 1 to ${REPLICAS_MAX}, got ${options.replicas}`);
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? (await mkdtemp(path.join(tmpdir(), options.tempPrefix ?? 'walship-cluster-')));
    const cluster = new LocalCluster(dir, ownsDir, options);
    process.once('exit', cluster.#onExit);
    try {
      await cluster.#spawn('primary', 'node-0');
      const replicas = Array.from({ length: options.replicas }, (_, i) => `node-${i + 1}`);
      await Promise.all(replicas.map((name) => cluster.#spawn('replica', name)));
    } catch (error) {
      await cluster.stop({ keep: false }); // a given directory stays: only a temporary one goes
      throw error;
    }
    return cluster;
  }

  /** Every node's URL, in start order (a restarted node moves to the end). */
  get urls(): string[] {
    return this.#nodes.map((node) => node.url);
  }

  get nodes(): LocalNodeInfo[] {
    return this.#nodes.map(({ name, url, pid, startedAs, dataDir, log }) => ({
      name,
      url,
      pid,
      startedAs,
      dataDir,
      log,
    }));
  }

  signal(url: string, signal: NodeJS.Signals): void {
    this.#node(url).child.kill(signal);
  }

  /**
   * Starts the (killed) node at `url` again as a replica on its own data dir and its own port, so
   * a client's address list stays right across any number of failovers.
   */
  async restartAsReplica(url: string): Promise<string> {
    const node = this.#node(url);
    await exitOf(node.child);
    this.#nodes.splice(this.#nodes.indexOf(node), 1);
    return (await this.#spawn('replica', node.name, Number(new URL(node.url).port))).url;
  }

  /**
   * Ends every node and removes a temporary directory unless `keep`. With `graceMs`, SIGTERM
   * first (a node then closes its database cleanly) and SIGKILL whoever still runs after it;
   * without, SIGKILL at once (SIGCONT first, for a stopped node). A given directory is never removed.
   */
  async stop(options: { keep: boolean; graceMs?: number }): Promise<void> {
    this.#stopping = true;
    const live = this.#nodes.filter((node) => node.child.exitCode === null && node.child.signalCode === null);
    if (options.graceMs !== undefined && options.graceMs > 0) {
      for (const node of live) {
        node.child.kill('SIGCONT');
        node.child.kill('SIGTERM');
      }
      const timer = sleepUnref(options.graceMs);
      await Promise.race([Promise.all(live.map((node) => exitOf(node.child))), timer.done]);
      timer.cancel();
    }
    for (const node of live) {
      node.child.kill('SIGCONT');
      node.child.kill('SIGKILL');
    }
    await Promise.all(live.map((node) => exitOf(node.child)));
    process.off('exit', this.#onExit);
    if (!options.keep && this.#ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  #node(url: string): LocalNode {
    const node = this.#nodes.find((n) => n.url === url);
    if (node === undefined) throw new Error(`no local node at ${url}`);
    return node;
  }

  #args(role: 'primary' | 'replica', dataDir: string, port: number): string[] {
    const { ack, autoFailover } = this.#options;
    return [
      ...walshipEntry(),
      role,
      `--node.data.dir=${dataDir}`,
      `--http.bind.to=127.0.0.1:${port}`,
      '--pg.net.bind.to=127.0.0.1:0',
      '--line.tcp.enabled=false',
      `--replication.ack.mode=${ack}`,
      '--replication.primary.throttle.window.duration=20ms',
      '--replication.primary.head.update.interval=50ms',
      `--replication.replica.poll.interval=${this.storeDescription === 'fs' ? 20 : 50}ms`,
      '--query.workers=1',
      '--log.level=info',
      ...(autoFailover === undefined
        ? []
        : [
            '--replication.failover.auto=true',
            `--replication.failover.lease.timeout=${autoFailover.leaseTimeoutMs}ms`,
          ]),
      ...(this.#options.settings ?? []),
    ];
  }

  async #spawn(role: 'primary' | 'replica', name: string, bindPort = 0): Promise<LocalNode> {
    if (this.#stopping)
      throw new WalshipError(
        'CLUSTER_STOPPED',
        'closed',
        `the local cluster is stopping: ${name} is not started`,
      );
    const dataDir = path.join(this.dir, name);
    const log = `${dataDir}.log`;
    const child = spawn(process.execPath, this.#args(role, dataDir, bindPort), {
      cwd: this.dir,
      env: this.#env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const node: LocalNode = {
      name,
      url: '',
      pid: child.pid ?? -1,
      startedAs: role,
      dataDir,
      log,
      child,
      output: '',
    };
    this.#nodes.push(node);
    // Every line the node prints, beside its data dir (for a failed run's post-mortem).
    const logFile = createWriteStream(log, { flags: 'a' });
    child.once('exit', () => logFile.end());
    const port = await new Promise<number>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        logFile.write(chunk);
        node.output = (node.output + chunk.toString('utf8')).slice(-NODE_OUTPUT_CHARS);
        const match = /walship (?:primary|replica) \S+ listening: http (\d+)/.exec(node.output);
        if (match !== null) resolve(Number(match[1]));
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('error', (error) =>
        reject(new WalshipError('CLUSTER_START_FAILED', 'unavailable', `walship ${role}: ${error.message}`)),
      );
      child.once('exit', (code, signal) =>
        reject(
          new WalshipError(
            'CLUSTER_START_FAILED',
            'unavailable',
            `walship ${role} (${dataDir}) exited (${signal ?? code}) before listening:\n${node.output}`,
          ),
        ),
      );
    });
    node.url = `http://127.0.0.1:${port}`;
    this.#options.onNode?.(this.nodes.find((n) => n.url === node.url)!);
    return node;
  }
}

/**
 * The walship command line this module belongs to: `dist/cli/bin.js` beside the compiled file, or
 * from TypeScript source (under vitest) `cli/bin.ts` with the development hooks that compile it.
 */
export function walshipEntry(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (!here.endsWith('.ts')) return [path.join(path.dirname(here), 'bin.js')];
  const root = path.dirname(path.dirname(here));
  return [
    '--import',
    pathToFileURL(path.join(root, 'table', 'query-host-ts-register.mjs')).href,
    path.join(root, 'cli', 'bin.ts'),
  ];
}

/** Resolves once `child` has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A wait that does not keep the process alive and can be cancelled. */
function sleepUnref(ms: number): { done: Promise<void>; cancel: () => void } {
  let timer: Timer | undefined;
  const done = new Promise<void>((resolve) => {
    timer = systemClock.setTimer(ms, resolve, { unref: true });
  });
  return { done, cancel: () => timer?.cancel() };
}
