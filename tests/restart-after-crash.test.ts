/**
 * Issue 13 item 4, on real processes and the filesystem store: a SIGKILLed primary restarted at
 * once, before anyone was promoted, must not exit (a supervisor would restart it into a loop).
 *
 * - `walship replica` on its data dir (which holds a txn that never reached the store) keeps
 *   running: listening, `/ping` 503, `waiting` in `/status` saying what it waits for and what a
 *   person can do; once another node is promoted it rejoins as a replica, the txn in a divergence
 *   file. Before the fix it exited 2 ("this data dir holds 1 txns of a primary that never reached
 *   the object store…").
 * - `walship primary` on the same data dir after that promotion joins as a replica, saying why
 *   (RFC-0002 W3); before, it exited 2 (PRIMARY_REFUSED).
 *
 * Which txn never reaches the store is decided, not left to timing: the test puts a plain file
 * where the table's `wal` directory is, so its next upload fails until the kill.
 */
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { startTestNode } from './helpers/test-node.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

/** A generous bound for waits (a process start, a role change): never a performance check. */
const WAIT_MS = 60_000;

let base = '';
const processes: WalshipProcess[] = [];
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-restart-'));
});
afterEach(async () => {
  for (const child of processes) child.kill('SIGKILL');
  await Promise.all(processes.splice(0).map((child) => child.exited));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** `walship <role>`; resolves once it listens (before it knows its role), with its HTTP port. */
async function spawnNode(role: 'primary' | 'replica', root: string, dir: string) {
  const child = spawnWalship([
    role,
    `--replication.object.store=fs::root=${root};`,
    `--node.data.dir=${dir}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    '--replication.replica.poll.interval=20ms',
    '--log.level=warn',
  ]);
  processes.push(child);
  const match = await child.waitFor(new RegExp(`walship ${role} starting: http (\\d+)`), WAIT_MS);
  return { child, port: Number(match[1]) };
}

type Status = Record<string, unknown> & {
  role: string;
  waiting?: Record<string, unknown>;
  events?: { kind: string; message: string }[];
  divergence?: { epoch: string; files: { table: string; file: string; txns: number; rows: number }[] };
  tables?: { name: string; committedTxn?: string; pendingTxns?: number; appliedTxn?: string }[];
};

async function status(port: number): Promise<Status | undefined> {
  try {
    return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
  } catch {
    return undefined;
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function post(port: number, body: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  await response.text();
  return response.status;
}

describe('a primary restarted right after SIGKILL', () => {
  it('as a replica waits for the cluster instead of exiting, then rejoins; as primary after the promotion joins as a replica', async () => {
    const root = path.join(base, `store-${randomUUID()}`);
    const store = await FsStore.open({ root });
    stores.push(store);
    const dirA = path.join(base, `a-${randomUUID()}`);
    const a = await spawnNode('primary', root, dirA);
    await a.child.waitFor(/walship primary \S+ listening/, WAIT_MS);
    expect(await post(a.port, 't id=1i\n')).toBe(204);
    await waitFor('txn 1 to be uploaded', async () =>
      (await status(a.port))?.tables?.find((t) => t.name === 't')?.pendingTxns === 0 ? true : undefined,
    );
    // From now on no upload of `t` succeeds: txn 2 is committed (and acknowledged: local acks), never uploaded.
    const walDir = path.join(root, 'tables', 't', 'wal');
    await rename(walDir, `${walDir}.held`);
    await writeFile(walDir, 'not a directory');
    expect(await post(a.port, 't id=2i\n')).toBe(204);
    a.child.kill('SIGKILL');
    await a.child.exited;
    const dirAToo = path.join(base, `a-too-${randomUUID()}`);
    await cp(dirA, dirAToo, { recursive: true });
    const dirAStopped = path.join(base, `a-stopped-${randomUUID()}`);
    await cp(dirA, dirAStopped, { recursive: true });

    // Restarted as a replica at once: it waits, and says so.
    const b = await spawnNode('replica', root, dirA);
    const waiting = await waitFor('the restarted node to say what it waits for', async () => {
      const s = await status(b.port);
      return s?.waiting !== undefined && Number(s.waiting.waitedMs) > 2_500 ? s : undefined;
    });
    expect(b.child.child.exitCode).toBeNull(); // several polls later, still running
    expect(waiting.role).toBe('switching');
    expect(waiting.waiting).toMatchObject({ epoch: '1', pendingTxns: 1 });
    expect(String(waiting.waiting?.hint)).toMatch(/start this node as primary.*promote another node/);
    expect(waiting.events?.some((e) => e.kind === 'waiting')).toBe(true);
    expect((await fetch(`http://127.0.0.1:${b.port}/ping`)).status).toBe(503);
    expect(b.child.output()).toContain('waiting: the cluster to choose its primary');

    // A waiting node stops cleanly on SIGTERM (what a supervisor sends), exit code 0.
    const stopped = await spawnNode('replica', root, dirAStopped);
    await waitFor('the other copy to wait', async () =>
      (await status(stopped.port))?.waiting ? true : undefined,
    );
    stopped.child.kill('SIGTERM');
    expect((await stopped.child.exited).code).toBe(0);

    // The cluster decides: C is promoted (epoch 2).
    await rm(walDir);
    await rename(`${walDir}.held`, walDir);
    const c = await startTestNode('replica', store, path.join(base, `c-${randomUUID()}`));
    nodes.push(c);
    await c.promote('test');
    expect(c.role).toBe('primary');

    await b.child.waitFor(/walship replica \S+ listening/, WAIT_MS);
    const rejoined = await waitFor('B to follow as a replica', async () => {
      const s = await status(b.port);
      return s?.role === 'replica' ? s : undefined;
    });
    expect(rejoined.waiting).toBeUndefined();
    expect(rejoined.divergence?.files.map((f) => [f.table, f.txns, f.rows])).toEqual([['t', 1, 1]]);
    // `/status` names it relative to the data dir (issue 13 item 10).
    expect(await readFile(path.resolve(dirA, rejoined.divergence!.files[0]!.file), 'utf8')).toContain(
      'id=2i',
    );

    // The other copy of the killed data dir, started as primary now that epoch 2 replaced it.
    const d = await spawnNode('primary', root, dirAToo);
    await d.child.waitFor(/walship replica \S+ listening/, WAIT_MS);
    const joined = await waitFor('the replaced primary to follow as a replica', async () => {
      const s = await status(d.port);
      return s?.role === 'replica' ? s : undefined;
    });
    expect(joined.divergence?.files.map((f) => [f.table, f.rows])).toEqual([['t', 1]]);
    expect(joined.events?.map((e) => e.message)).toContainEqual(
      expect.stringMatching(/^started as primary, but epoch 2 .* while it was down: joining as a replica/),
    );
    expect(d.child.child.exitCode).toBeNull();
  }, 120_000);
});
