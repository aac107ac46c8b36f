/**
 * Issue 13 item 3, on real processes: a durable primary SIGKILLed with txns that never reached the
 * store, replaced by a promotion, and restarted as a replica keeps its database — it undoes only
 * the txns that never reached the store (after writing them to divergence files) and follows the
 * new primary from its last uploaded txn, instead of moving the database aside and replaying every
 * table from txn 1. Its data then equals the cluster's (cli/table-digest.ts).
 *
 * Which txns never reach the store is decided, not left to timing: on the filesystem store, the
 * test puts a plain file where the primary's next segment of `rejoin` would go (its `wal`
 * directory, moved aside meanwhile) and where the new table `lostonly` would be created, so those
 * uploads fail and retry until the kill. The lost txns also create a column (`extra`) that the new
 * primary later creates with another type: a rejoined node that kept the lost column would suspend
 * the table on TYPE_CONFLICT. Filesystem store only: S3 offers no such way to hold one key's PUTs.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tableDigest } from '../cli/table-digest.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { startTestNode } from './helpers/test-node.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

/** A generous bound for waits (a node to change role, a replica to catch up): never a performance check. */
const WAIT_MS = 60_000;
const BASE_NS = 1_700_000_000_000_000_000n;

let base = '';
const processes: WalshipProcess[] = [];
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-rejoin-'));
});
afterEach(async () => {
  for (const child of processes) child.kill('SIGKILL');
  await Promise.all(processes.splice(0).map((child) => child.exited));
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function spawnNode(role: 'primary' | 'replica', root: string, dir: string, extra: string[] = []) {
  const child = spawnWalship([
    role,
    `--replication.object.store=fs::root=${root};`,
    `--node.data.dir=${dir}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.enabled=false',
    '--replication.replica.poll.interval=20ms',
    '--log.level=warn',
    ...extra,
  ]);
  processes.push(child);
  const match = await child.waitFor(new RegExp(`walship ${role} \\S+ listening: http (\\d+)`), WAIT_MS);
  return { child, port: Number(match[1]) };
}

type Status = Record<string, unknown> & {
  role: string;
  tables?: { name: string; committedTxn?: string; uploadedTxn?: string; appliedTxn?: string }[];
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

/** Rows `ids` of `table` as ILP, with `fields` after `id`. */
function ilp(table: string, ids: number[], fields = ''): string {
  return ids.map((id) => `${table},src=t id=${id}i${fields} ${BASE_NS + BigInt(id) * 1000n}\n`).join('');
}

async function post(port: number, body: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST', body });
  await response.text();
  return response.status;
}

const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);

describe('rejoin after a crash', () => {
  it('a killed durable primary with lost txns rejoins as a replica on its own database, undoing only those txns, and equals the cluster', async () => {
    const root = path.join(base, `store-${randomUUID()}`);
    const store = await FsStore.open({ root });
    stores.push(store);
    const dirA = path.join(base, `a-${randomUUID()}`);
    const a = await spawnNode('primary', root, dirA, ['--replication.ack.mode=durable']);
    const b = await startTestNode('replica', store, path.join(base, `b-${randomUUID()}`));
    nodes.push(b);

    // History, every txn acknowledged (durable: in the store): 12 txns of `rejoin`, one of `other`.
    for (let i = 0; i < 12; i++) expect(await post(a.port, ilp('rejoin', range(i * 10, 10)))).toBe(204);
    expect(await post(a.port, ilp('other', range(0, 5)))).toBe(204);

    // From now on no upload of `rejoin` or `lostonly` succeeds.
    const walDir = path.join(root, 'tables', 'rejoin', 'wal');
    await rename(walDir, `${walDir}.held`);
    await writeFile(walDir, 'not a directory');
    await writeFile(path.join(root, 'tables', 'lostonly'), 'not a directory');
    const lost = [
      ilp('rejoin', range(1_000, 7), ',extra=1.5'),
      ilp('rejoin', range(2_000, 3)),
      ilp('lostonly', range(0, 4)),
    ];
    const unanswered = lost.map((body) => post(a.port, body).catch(() => 0));
    await waitFor('the lost txns to be committed on A', async () => {
      const tables = (await status(a.port))?.tables ?? [];
      const rejoin = tables.find((t) => t.name === 'rejoin');
      const lostonly = tables.find((t) => t.name === 'lostonly');
      return rejoin?.committedTxn === '14' && lostonly?.committedTxn === '1' ? true : undefined;
    });
    a.child.kill('SIGKILL');
    await a.child.exited;
    expect(await Promise.all(unanswered)).toEqual([0, 0, 0]); // durable: none of them was acknowledged
    await rm(walDir);
    await rename(`${walDir}.held`, walDir);
    await rm(path.join(root, 'tables', 'lostonly'));

    // B is promoted and takes writes, `extra` now a string column of `rejoin`.
    await b.promote('test');
    expect(b.role).toBe('primary');
    expect(await post(b.httpPort, ilp('rejoin', range(3_000, 5), ',extra="text"'))).toBe(204);
    expect(await post(b.httpPort, ilp('other', range(100, 5)))).toBe(204);

    // A's data dir, restarted as a replica (same configuration: durable acks).
    const a2 = await spawnNode('replica', root, dirA, ['--replication.ack.mode=durable']);
    const rejoined = await waitFor('A to follow as a replica', async () => {
      const s = await status(a2.port);
      return s?.role === 'replica' ? s : undefined;
    });
    const divergence = rejoined.divergence as
      | { files: { table: string; file: string; txns: number; rows: number }[]; movedTo: string | null }
      | undefined;
    // The database was kept, not moved aside (nothing to replay from txn 1).
    expect(divergence?.movedTo).toBeNull();
    expect((await readdir(dirA)).filter((name) => name.startsWith('diverged-'))).toEqual([]);
    // The lost rows are in the divergence files first, with a durable header.
    expect(divergence?.files.map((f) => [f.table, f.txns, f.rows]).sort()).toEqual([
      ['lostonly', 1, 4],
      ['rejoin', 2, 10],
    ]);
    // `/status` names it relative to the data dir (issue 13 item 10).
    for (const file of divergence?.files ?? [])
      expect(await readFile(path.resolve(dirA, file.file), 'utf8')).toContain('NEVER acknowledged');

    // It follows B from its own last uploaded txn and ends equal to B, table by table.
    const committed = (await status(b.httpPort))?.tables ?? [];
    await waitFor('A to catch up with B', async () => {
      const s = await status(a2.port);
      const applied = new Map((s?.tables ?? []).map((t) => [t.name, t.appliedTxn]));
      return committed.every((t) => applied.get(t.name) === t.committedTxn) ? true : undefined;
    });
    for (const table of ['rejoin', 'other', 'lostonly']) {
      const onB = await tableDigest(`http://127.0.0.1:${b.httpPort}`, table);
      const onA = await tableDigest(`http://127.0.0.1:${a2.port}`, table);
      expect(onA, table).toEqual(onB);
    }
    const suspended = ((await status(a2.port))?.tables ?? []).filter((t) => 'suspended' in t && t.suspended);
    expect(suspended).toEqual([]);
  }, 120_000);
});
