/**
 * `walship sequencer serve` and `walship sequencer status` (cli/sequencer.ts): in-process for the
 * flags, tokens and the status rendering; as a child process for the crash: four writers commit
 * concurrently and retry SEQUENCER_UNAVAILABLE with the same request, the service is SIGKILLed
 * mid-stream and restarted on the same file and port, and every table's log ends 1..N gap-free
 * with each batch exactly once.
 *
 * The child runs cli/sequencer.ts from source through the development hooks (as
 * tests/helpers/walship-process.ts does for cli/bin.ts), so it does not depend on cli/main.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { runSequencerCommand } from '../cli/sequencer.js';
import { isWalshipError, type WalshipError } from '../core/index.js';
import { HttpSequencerClient } from './http-client.js';
import type { CommitRequest, CommitResult, LogEntry } from './sequencer-store.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TOKENS = { read: 'serve-read-token', write: 'serve-write-token', admin: 'serve-admin-token' };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'walship-seq-serve-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function capture(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env } };
}

function client(port: number, token: string, timeoutMs = 10_000): HttpSequencerClient {
  const c = new HttpSequencerClient({ origin: `http://127.0.0.1:${port}`, token, timeoutMs });
  cleanups.push(() => c.close());
  return c;
}

function segment(table: string, writer: string, epoch: bigint, batchSeq: bigint, txnCount: number) {
  return {
    table,
    staged: `tables/${table}/staged/${writer}/${epoch}/${batchSeq}.seg`,
    txnCount,
    bytes: 10,
    crc32: 7,
  };
}

describe('walship sequencer serve (in process)', () => {
  it('serves the file under sequencer.data.dir with tokens from flags and the environment; status renders it', async () => {
    const dir = await tempDir();
    const { port, stop, running } = await serveInProcess(
      [
        `--sequencer.data.dir=${dir}`,
        '--http.bind.to',
        '127.0.0.1:0',
        `--sequencer.auth.read.token=${TOKENS.read}`,
        `--sequencer.auth.admin.token=${TOKENS.admin}`,
      ],
      { WALSHIP_SEQUENCER_AUTH_WRITE_TOKEN: TOKENS.write },
    );
    const admin = client(port, TOKENS.admin);
    await admin.initialize('cluster-serve', new Map([['trades', 10n]]));
    // The write token came from WALSHIP_SEQUENCER_AUTH_WRITE_TOKEN.
    const writer = client(port, TOKENS.write);
    const record = await writer.registerWriter('p1');
    await writer.commit({
      writer: 'p1',
      writerEpoch: record.epoch,
      batchSeq: 1n,
      segments: [segment('trades', 'p1', 1n, 1n, 5)],
    });
    const anonymous = await client(port, 'nope')
      .heads()
      .catch((e: unknown) => e);
    expect((anonymous as WalshipError).code).toBe('SEQUENCER_UNAUTHORIZED');

    const connection = `http::addr=127.0.0.1:${port};token=${TOKENS.read};`;
    const table = capture();
    expect(await runSequencerCommand(['status', `--sequencer=${connection}`], table.io)).toBe(0);
    const text = table.out.join('\n');
    expect(text).toMatch(/cluster id\s+cluster-serve/);
    expect(text).toMatch(/\| trades\s*\| 15\s*\|/);
    expect(text).toMatch(/\| p1\s*\| 1\s*\| 1\s*\| no\s*\|/);
    expect(text).not.toContain(TOKENS.read);
    const json = capture();
    expect(await runSequencerCommand(['status', '--sequencer', connection, '--json'], json.io)).toBe(0);
    const parsed = JSON.parse(json.out.join('')) as {
      clusterId: string;
      heads: { tables: Record<string, string> };
    };
    expect(parsed.clusterId).toBe('cluster-serve');
    expect(parsed.heads.tables).toEqual({ trades: '15' });

    stop();
    expect(await running).toBe(0);
    expect(existsSync(join(dir, 'sequencer.sqlite'))).toBe(true);
    const gone = capture();
    expect(await runSequencerCommand(['status', `--sequencer=${connection}`], gone.io)).toBe(3);
    expect(gone.err.join('\n')).toMatch(/SEQUENCER|sequencer/);
    expect(gone.err.join('\n')).not.toContain(TOKENS.read);
  });

  it('sequencer fence: the writer epoch is refused from then on; a read token may not fence', async () => {
    const dir = await tempDir();
    const { port } = await serveInProcess([
      `--sequencer.data.dir=${dir}`,
      '--http.bind.to=127.0.0.1:0',
      `--sequencer.auth.read.token=${TOKENS.read}`,
      `--sequencer.auth.write.token=${TOKENS.write}`,
      `--sequencer.auth.admin.token=${TOKENS.admin}`,
    ]);
    await client(port, TOKENS.admin).initialize('cluster-fence', new Map());
    const writer = client(port, TOKENS.write);
    const { epoch } = await writer.registerWriter('p1');
    const batch = (batchSeq: bigint) => ({
      writer: 'p1',
      writerEpoch: epoch,
      batchSeq,
      segments: [segment('trades', 'p1', epoch, batchSeq, 2)],
    });
    await writer.commit(batch(1n));

    const readOnly = capture();
    const readConnection = `http::addr=127.0.0.1:${port};token=${TOKENS.read};`;
    expect(
      await runSequencerCommand(['fence', `--sequencer=${readConnection}`, '--writer=p1'], readOnly.io),
    ).toBe(2);
    await writer.commit(batch(2n)); // still not fenced

    const fenced = capture();
    const adminConnection = `http::addr=127.0.0.1:${port};token=${TOKENS.admin};`;
    expect(
      await runSequencerCommand(
        ['fence', '--sequencer', adminConnection, '--writer', 'p1', '--json'],
        fenced.io,
      ),
    ).toBe(0);
    expect(JSON.parse(fenced.out.join(''))).toMatchObject({
      writer: 'p1',
      fencedEpoch: String(epoch),
      heads: { trades: '4' },
    });
    expect(fenced.out.join('')).not.toContain(TOKENS.admin);
    const refused = await writer.commit(batch(3n)).catch((e: unknown) => e);
    expect(isWalshipError(refused, 'SEQUENCER_FENCED')).toBe(true);
    expect((await writer.heads()).tables.get('trades')).toBe(4n);
    expect(await runSequencerCommand(['fence', `--sequencer=${adminConnection}`], capture().io)).toBe(2);
  });

  it('refuses unknown flags and node keys it does not take, and status without a connection string', async () => {
    const { io } = capture();
    await expect(runSequencerCommand(['serve', '--replication.ack.mode=durable'], io)).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
    });
    await expect(runSequencerCommand(['serve', '--sequencer.group.max=many'], io)).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
    });
    const status = capture();
    expect(await runSequencerCommand(['status'], status.io)).toBe(2);
    expect(await runSequencerCommand(['status', '--sequencer=ftp::addr=x;'], status.io)).toBe(2);
    expect(await runSequencerCommand(['nonsense'], status.io)).toBe(2);
    expect(await runSequencerCommand(['--help'], status.io)).toBe(0);
  });
});

/** `walship sequencer serve` in this process until `stop()` (or the test's cleanup); its port. */
async function serveInProcess(args: string[], env: Record<string, string> = {}) {
  const serve = capture(env);
  let stop: () => void = () => {};
  const until = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const running = runSequencerCommand(['serve', ...args, '--log.level=silent'], serve.io, { until });
  cleanups.push(async () => {
    stop();
    await running.catch(() => {});
  });
  return { port: await waitForListening(serve.out), stop, running };
}

async function waitForListening(lines: string[]): Promise<number> {
  for (;;) {
    const line = lines.find((l) => /walship sequencer listening: http \d+/.test(l));
    if (line !== undefined) return Number(/http (\d+)/.exec(line)![1]);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// --- The service as a child process ------------------------------------------------------------

interface ServiceProcess {
  child: ChildProcess;
  port: Promise<number>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

const ENTRY =
  "const m = await import('./cli/sequencer.ts'); const io = await import('./cli/io.ts');" +
  ' process.exitCode = await m.runSequencerCommand(process.argv.slice(1), io.processIo);';

function spawnService(dataDir: string, port: number): ServiceProcess {
  const child = spawn(
    process.execPath,
    [
      '--import',
      './table/query-host-ts-register.mjs',
      '--input-type=module',
      '-e',
      ENTRY,
      'serve',
      `--sequencer.data.dir=${dataDir}`,
      `--http.bind.to=127.0.0.1:${port}`,
      `--sequencer.auth.admin.token=${TOKENS.admin}`,
      `--sequencer.auth.write.token=${TOKENS.write}`,
      '--log.level=warn',
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  let resolvePort: (port: number) => void = () => {};
  let rejectPort: (error: Error) => void = () => {};
  const portPromise = new Promise<number>((resolve, reject) => {
    resolvePort = resolve;
    rejectPort = reject;
  });
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    const match = /walship sequencer listening: http (\d+)/.exec(output);
    if (match !== null) resolvePort(Number(match[1]));
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      rejectPort(new Error(`the sequencer exited (${code ?? signal}) before listening:\n${output}`));
      resolve({ code, signal });
    });
  });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, port: portPromise, exited, output: () => output };
}

const WRITERS = 4;
const BATCHES_PER_WRITER = 60;
const TABLES = ['trades', 'quotes', 'orders'];
/** Retry backoff of a writer after SEQUENCER_UNAVAILABLE (RFC-0003 uses 250 ms → 10 s; shorter here). */
const BACKOFF_MS_FIRST = 50;
const BACKOFF_MS_MAX = 500;

describe('walship sequencer serve (child process)', () => {
  it('survives SIGKILL under load: restarted on the same file and port, writers finish gap-free, each batch once', async () => {
    const dataDir = await tempDir();
    let service = spawnService(dataDir, 0);
    const port = await service.port;
    const admin = client(port, TOKENS.admin, 2_000);
    await admin.initialize('cluster-crash', new Map([['trades', 100n]]));

    let acked = 0;
    let replays = 0;
    let retries = 0;
    const results = new Map<string, CommitResult>();
    const versions: bigint[] = [];

    /** The same request until it returns; only SEQUENCER_UNAVAILABLE is retried. */
    const commitUntilDone = async (c: HttpSequencerClient, request: CommitRequest): Promise<CommitResult> => {
      let backoffMs = BACKOFF_MS_FIRST;
      for (;;) {
        try {
          return await c.commit(request);
        } catch (error) {
          if (!isWalshipError(error, 'SEQUENCER_UNAVAILABLE')) throw error;
          retries++;
          await new Promise((resolve) => setTimeout(resolve, backoffMs));
          backoffMs = Math.min(backoffMs * 2, BACKOFF_MS_MAX);
        }
      }
    };
    const writerRun = async (index: number) => {
      const name = `w${index}`;
      const c = client(port, TOKENS.write, 2_000);
      const { epoch } = await c.registerWriter(name);
      for (let batch = 1n; batch <= BigInt(BATCHES_PER_WRITER); batch++) {
        // One to three tables per batch, rotating, each 1..3 txns: every table is shared by all writers.
        const tables = TABLES.slice(0, 1 + ((index + Number(batch)) % 3));
        const request: CommitRequest = {
          writer: name,
          writerEpoch: epoch,
          batchSeq: batch,
          segments: tables.map((t, i) =>
            segment(t, name, epoch, batch, 1 + ((index + i + Number(batch)) % 3)),
          ),
        };
        const result = await commitUntilDone(c, request);
        if (result.replayed) replays++;
        results.set(`${name}/${batch}`, result);
        acked++;
      }
    };
    let watching = true;
    const versionWatch = (async () => {
      const c = client(port, TOKENS.admin, 1_000);
      while (watching) {
        try {
          versions.push((await c.heads()).version);
        } catch {
          // down: the version is read again after the restart
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const writers = Promise.all(Array.from({ length: WRITERS }, (_, i) => writerRun(i)));
    // Mid-stream: some batches acked, most still to come.
    while (acked < (WRITERS * BATCHES_PER_WRITER) / 4) await new Promise((resolve) => setTimeout(resolve, 5));
    service.child.kill('SIGKILL');
    expect((await service.exited).signal).toBe('SIGKILL');
    const ackedAtKill = acked;
    service = spawnService(dataDir, port);
    expect(await service.port).toBe(port);
    await writers;
    watching = false;
    await versionWatch;

    expect(ackedAtKill).toBeLessThan(WRITERS * BATCHES_PER_WRITER);
    expect(acked).toBe(WRITERS * BATCHES_PER_WRITER);
    // Per table: the log is txns startAfter+1..head, contiguous, and each (writer, batch) once.
    const reader = client(port, TOKENS.admin);
    const heads = await reader.heads();
    for (const table of TABLES) {
      const first = table === 'trades' ? 101n : 1n;
      const log = await readWholeLog(reader, table, first);
      expect(log[0]?.txnFirst, table).toBe(first);
      for (let i = 1; i < log.length; i++) expect(log[i]!.txnFirst, table).toBe(log[i - 1]!.txnLast + 1n);
      expect(log.at(-1)?.txnLast).toBe(heads.tables.get(table));
      const batches = log.map((e) => `${e.writer}/${e.batchSeq}`);
      expect(new Set(batches).size, `${table}: a batch twice`).toBe(batches.length);
      // Every acked entry of this table is in the log exactly as it was answered (replays too).
      const answered = [...results.values()].flatMap((r) => r.entries).filter((e) => e.table === table);
      expect(answered.length).toBe(log.length);
      const byFirst = new Map(log.map((e) => [e.txnFirst, e]));
      for (const entry of answered) expect(byFirst.get(entry.txnFirst)).toEqual(entry);
    }
    // The version seen before, during and after the crash, then now: never back.
    versions.push(heads.version);
    for (let i = 1; i < versions.length; i++) expect(versions[i]! >= versions[i - 1]!).toBe(true);
    console.log(
      `sequencer serve crash: ${acked} batches acked (${ackedAtKill} before SIGKILL), ${retries} retries, ${replays} replayed`,
    );

    // A clean stop: SIGTERM ends the service with exit code 0.
    service.child.kill('SIGTERM');
    expect(await service.exited).toEqual({ code: 0, signal: null });
  }, 120_000);
});

async function readWholeLog(c: HttpSequencerClient, table: string, first: bigint): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  let from = first;
  for (;;) {
    const page = await c.readLog(table, from, 1000);
    const fresh = page.filter((e) => e.txnLast >= from);
    if (fresh.length === 0) return entries;
    entries.push(...fresh);
    from = fresh.at(-1)!.txnLast + 1n;
  }
}
