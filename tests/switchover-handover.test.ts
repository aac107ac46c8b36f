/**
 * A planned switchover in a cluster with automatic failover on: the demoted primary hands the
 * lease over instead of letting it lapse, so no candidate promotes itself while the switchover's
 * target catches up; and promotions carrying `only_after_epoch` (what `walship switchover` sends)
 * never replace a primary that took over meanwhile. In-process nodes on the filesystem store.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../cli/main.js';
import { EPOCHS_PREFIX, LEASE_KEY, parseLease } from '../layout/index.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore, listAll, type ObjectStore } from '../objectstore/index.js';
import { startTestNode } from './helpers/test-node.js';
import { postAdmin, TEST_ADMIN_TOKEN } from './helpers/test-replica.js';

const LEASE_MS = 400;
/** Several lease timeouts: a lapsed lease would have been taken by a candidate by then. */
const LAPSE_MS = 4 * LEASE_MS;
const WAIT_MS = 15_000;

let dir = '';
let store: ObjectStore;
const nodes: WalshipNode[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-handover-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function start(role: 'primary' | 'replica', name: string, auto: boolean): Promise<WalshipNode> {
  const node = await startTestNode(role, store, path.join(dir, name), {
    autoFailover: { enabled: auto, leaseTimeoutMs: LEASE_MS },
  });
  nodes.push(node);
  return node;
}

async function epochs(): Promise<number> {
  let count = 0;
  for await (const _ of listAll(store, EPOCHS_PREFIX)) count++;
  return count;
}

async function leaseEpoch(): Promise<bigint | undefined> {
  const got = await store.get(LEASE_KEY);
  return got !== null && got.status === 'ok' ? parseLease(got.body)?.epoch : undefined;
}

async function until(done: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function write(node: WalshipNode, line: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, { method: 'POST', body: line });
  await response.arrayBuffer();
  return response.status;
}

describe('a switchover with automatic failover on', () => {
  it('keeps the lease alive after the demotion until the target is promoted, which then holds it', async () => {
    const a = await start('primary', 'a', true);
    const b = await start('replica', 'b', true);
    const c = await start('replica', 'c', true);
    expect(await write(a, 't id=1i\n')).toBe(204);
    await until(async () => (await leaseEpoch()) === 1n, 'the primary holds the lease');

    const { epoch } = await a.demote();
    expect(epoch).toBe(1n);
    // The target "catches up" slowly: several lease timeouts pass before it is promoted.
    await new Promise((resolve) => setTimeout(resolve, LAPSE_MS));
    expect([a.role, b.role, c.role]).toEqual(['replica', 'replica', 'replica']);
    expect(await epochs()).toBe(1);

    const promotion = await b.promote('switchover', epoch);
    expect(promotion.epoch).toBe(2n);
    await until(async () => (await leaseEpoch()) === 2n, 'the new primary holds the lease');
    // The handover keeper stopped; the new primary's keeper renews: nobody else takes over.
    await new Promise((resolve) => setTimeout(resolve, LAPSE_MS));
    expect([a.role, b.role, c.role]).toEqual(['replica', 'primary', 'replica']);
    expect(await epochs()).toBe(2);
    expect(await write(b, 't id=2i\n')).toBe(204);
  });

  it('lets the lease lapse when the primary is killed instead (a candidate takes over)', async () => {
    const a = await start('primary', 'a', true);
    const b = await start('replica', 'b', true);
    await until(async () => (await leaseEpoch()) === 1n, 'the primary holds the lease');
    await a.close();
    await until(() => b.role === 'primary', 'the candidate promoted itself');
    expect(await epochs()).toBe(2);
  });
});

describe('promotion with only_after_epoch', () => {
  it('is refused (409, the node stays a replica) once another node took that epoch over', async () => {
    await start('primary', 'a', false);
    const b = await start('replica', 'b', false);
    const c = await start('replica', 'c', false);
    expect((await postAdmin(b.httpPort, 'promote?only_after_epoch=1')).status).toBe(200);
    const refused = await postAdmin(c.httpPort, 'promote?only_after_epoch=1');
    expect(refused.status).toBe(409);
    expect(JSON.stringify(refused.body)).toMatch(/PROMOTION_LOST|already replaced/);
    expect(c.role).toBe('replica');
    expect(await epochs()).toBe(2);
    expect((await postAdmin(c.httpPort, 'promote?only_after_epoch=x')).status).toBe(400);
  });

  it('walship switchover whose target was promoted meanwhile does not promote the old primary back', async () => {
    const a = await start('primary', 'a', false);
    const b = await start('replica', 'b', false);
    const urlA = `http://127.0.0.1:${a.httpPort}`;
    const urlB = `http://127.0.0.1:${b.httpPort}`;
    expect(await write(a, 't id=1i\n')).toBe(204);
    // The target is promoted by someone else while the command waits for it to catch up: the
    // command's first /status of the target after the demotion answers as a primary (the one
    // before it, the pre-check's, still sees a replica).
    const realFetch = globalThis.fetch;
    let demoted = false;
    const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      if (url.origin === urlA && url.pathname === '/admin/demote') demoted = true;
      if (demoted && url.origin === urlB && url.pathname === '/status' && b.role === 'replica')
        await b.promote('someone else', 1n);
      return realFetch(input, init);
    }) as typeof fetch;
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(
      ['switchover', '--from', urlA, '--to', urlB, `--admin.token=${TEST_ADMIN_TOKEN}`, '--timeout', '5s'],
      { stdout: (t) => out.push(t), stderr: (t) => err.push(t), env: {} },
      { fetch: fetchImpl },
    );
    expect(err.join('\n')).toMatch(/promoted by something else/);
    expect(code).toBe(0);
    expect(JSON.parse(out[0]!)).toMatchObject({ from: urlA, to: urlB, promotedBy: 'another promotion' });
    expect([a.role, b.role]).toEqual(['replica', 'primary']);
    expect(await epochs()).toBe(2);
  });
});
