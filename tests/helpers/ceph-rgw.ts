/**
 * A throwaway single-node Ceph RADOS Gateway (a real S3 server, honouring conditional writes) booted
 * on 127.0.0.1 by `ceph-rgw.sh` next to this file. Used by the vitest global setup and by benchmarks,
 * so this module must not import vitest.
 *
 * Each instance gets its own free ports and its own data directory under os.tmpdir(); the daemons
 * (mon, memstore OSD, radosgw) run under PIDs recorded in `<dir>/pids`, and `stop()` SIGKILLs exactly
 * those (the cluster is throwaway: a memstore OSD spends seconds dumping its RAM store on SIGTERM).
 * A watchdog stops the daemons if this process dies without calling `stop()`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CephRgw {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Ceph's default zonegroup only accepts CreateBucket with this region. */
  readonly region: 'us-east-1';
  /** Data directory (config, daemon state, logs in `<dir>/log`). Removed by `stop()`. */
  readonly dir: string;
  /** Kill the daemons (SIGKILL, recorded PIDs only) and remove `dir`. Idempotent. */
  stop(): Promise<void>;
  /** Kill only radosgw (SIGKILL): the endpoint refuses connections; the cluster and its data stay. */
  stopGateway(): Promise<void>;
  /** Start radosgw again on the same port over the same data; resolves once it answers HTTP. */
  startGateway(): Promise<void>;
  /** `stopGateway()` then `startGateway()`. */
  restartGateway(): Promise<void>;
  /** SIGSTOP radosgw: connections are accepted by the kernel but never answered (a hung store). */
  pauseGateway(): Promise<void>;
  /** SIGCONT radosgw after `pauseGateway()`. */
  resumeGateway(): Promise<void>;
}

export interface StartCephRgwOptions {
  /** Data directory to use (wiped first). Default: a new `walship-rgw-*` directory under os.tmpdir(). */
  dir?: string;
}

export type CephRgwAvailability = { ok: true } | { ok: false; reason: string };

const REQUIRED_BINARIES = [
  'bash',
  'monmaptool',
  'ceph-mon',
  'ceph-osd',
  'ceph',
  'radosgw',
  'radosgw-admin',
  'curl',
];
export const CEPH_INSTALL_HINT =
  'run `bash .ci/run`, or as root: apt-get update && apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl';
const BOOT_TIMEOUT_MS = 180_000;
const ACCESS_KEY_ID = 'walshiptestaccesskey';
const SECRET_ACCESS_KEY = 'walshiptestsecretkey';

function onPath(binary: string): boolean {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d !== '' && existsSync(join(d, binary))) return true;
  }
  return false;
}

/** Whether this machine can boot a Ceph RGW (Linux with the Debian ceph packages installed). */
export function cephRgwAvailable(): CephRgwAvailability {
  if (process.platform !== 'linux') {
    return { ok: false, reason: `Ceph RGW test server needs Linux (this is ${process.platform})` };
  }
  const missing = REQUIRED_BINARIES.filter((b) => !onPath(b));
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `radosgw not installed (missing: ${missing.join(', ')}): ${CEPH_INSTALL_HINT}`,
    };
  }
  if (cephRgwScript() === undefined) {
    return { ok: false, reason: 'tests/helpers/ceph-rgw.sh not found next to ceph-rgw.ts' };
  }
  return { ok: true };
}

/** The start/stop script: next to this file, or (when running from dist/tests/helpers) in the source tree. */
export function cephRgwScript(): string | undefined {
  for (const rel of ['./ceph-rgw.sh', '../../../tests/helpers/ceph-rgw.sh']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Free TCP ports on 127.0.0.1 (all held open at once, so they are distinct), then released. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === 'string') throw new Error('unexpected server address');
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

interface ScriptResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runScript(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = BOOT_TIMEOUT_MS,
): Promise<ScriptResult> {
  const script = cephRgwScript();
  if (script === undefined) return Promise.reject(new Error('tests/helpers/ceph-rgw.sh not found'));
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function runScriptOrThrow(what: string, args: string[], env?: Record<string, string>): Promise<string> {
  const r = await runScript(args, env);
  if (r.code !== 0) {
    throw new Error(
      `ceph-rgw.sh ${what} failed (${r.signal ?? `exit ${r.code}`}):\n${r.stderr.trim()}${r.stdout.trim() ? `\n${r.stdout.trim()}` : ''}`,
    );
  }
  return r.stdout;
}

/** Read `KEY=VALUE KEY=VALUE ...` from the last line of the script output that has S3_ENDPOINT. */
function parseReadyLine(stdout: string): Record<string, string> {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('S3_ENDPOINT='));
  if (line === undefined) throw new Error(`ceph-rgw.sh start printed no S3_ENDPOINT line:\n${stdout}`);
  const out: Record<string, string> = {};
  for (const part of line.trim().split(/\s+/)) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

class CephRgwInstance implements CephRgw {
  readonly region = 'us-east-1' as const;
  #stopped = false;

  constructor(
    readonly endpoint: string,
    readonly accessKeyId: string,
    readonly secretAccessKey: string,
    readonly dir: string,
  ) {}

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await stopCluster(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }

  async stopGateway(): Promise<void> {
    this.#assertRunning();
    await runScriptOrThrow('stop-gateway', ['stop-gateway', this.dir]);
  }

  async startGateway(): Promise<void> {
    this.#assertRunning();
    await runScriptOrThrow('start-gateway', ['start-gateway', this.dir]);
  }

  async restartGateway(): Promise<void> {
    await this.stopGateway();
    await this.startGateway();
  }

  async pauseGateway(): Promise<void> {
    this.#assertRunning();
    await runScriptOrThrow('pause-gateway', ['pause-gateway', this.dir]);
  }

  async resumeGateway(): Promise<void> {
    this.#assertRunning();
    await runScriptOrThrow('resume-gateway', ['resume-gateway', this.dir]);
  }

  #assertRunning(): void {
    if (this.#stopped) throw new Error(`Ceph RGW in ${this.dir} was stopped`);
  }
}

async function stopCluster(dir: string): Promise<void> {
  const r = await runScript(['stop', dir], {}, 30_000);
  if (r.code !== 0) throw new Error(`ceph-rgw.sh stop ${dir} failed:\n${r.stderr}`);
}

/**
 * Boot a throwaway Ceph RGW (~2 s on 2 cores). Throws (with the boot log) if it cannot; the data
 * directory of a failed boot is kept for debugging and named in the error.
 */
export async function startCephRgw(options: StartCephRgwOptions = {}): Promise<CephRgw> {
  const available = cephRgwAvailable();
  if (!available.ok) throw new Error(available.reason);
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'walship-rgw-')));
  let lastError: unknown;
  // Two attempts: the free ports are released before the daemons bind them, so another process can
  // (rarely) take one in between.
  for (let attempt = 1; attempt <= 2; attempt++) {
    const [rgwPort, monPort] = await freePorts(2);
    try {
      const stdout = await runScriptOrThrow('start', ['start', dir], {
        RGW_PORT: String(rgwPort),
        MON_PORT: String(monPort),
        AK: ACCESS_KEY_ID,
        SK: SECRET_ACCESS_KEY,
        WATCH_PID: String(process.pid),
      });
      const ready = parseReadyLine(stdout);
      const endpoint = ready.S3_ENDPOINT;
      if (endpoint === undefined) throw new Error(`no S3_ENDPOINT in: ${stdout}`);
      return new CephRgwInstance(
        endpoint,
        ready.AWS_ACCESS_KEY_ID ?? ACCESS_KEY_ID,
        ready.AWS_SECRET_ACCESS_KEY ?? SECRET_ACCESS_KEY,
        dir,
      );
    } catch (e) {
      lastError = e;
      // The script stops what it started on failure; make sure, but keep the logs.
      await stopCluster(dir).catch(() => {});
    }
  }
  const msg = lastError instanceof Error ? lastError.message : String(lastError);
  throw new Error(`could not boot Ceph RGW (logs in ${join(dir, 'log')}): ${msg}`);
}

/** Stop only the radosgw process of `rgw` (same as `rgw.stopGateway()`). */
export function stopCephRgwDaemon(rgw: CephRgw): Promise<void> {
  return rgw.stopGateway();
}

/** Start the radosgw process of `rgw` again, same port and data (same as `rgw.startGateway()`). */
export function startCephRgwDaemon(rgw: CephRgw): Promise<void> {
  return rgw.startGateway();
}
