/**
 * Read-your-writes through `walship router` by default (issue 17 item 5): a primary that answers
 * writes at its local commit (ack mode `local`, the default) and a replica that follows the store,
 * so the replica is behind right after each write; a read sent to the router after a write it
 * forwarded still sees that write, 1 000 times out of 1 000, and says what it waited for. A read
 * that asks for eventual consistency does not wait.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore } from '../objectstore/index.js';
import type { RunningRouter } from '../router/index.js';
import { startTestNode } from './helpers/test-node.js';
import { startTestRouter } from './helpers/test-router.js';

let base = '';
let store: FsStore;
let primary: WalshipNode;
let replica: WalshipNode;
let router: RunningRouter;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-router-ryw-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  const local = { ackMode: 'local' as const, windowMs: 10, headIntervalMs: 10 };
  primary = await startTestNode('primary', store, path.join(base, 'p'), {
    primary: { ...local, nodeId: 'p' },
  });
  replica = await startTestNode('replica', store, path.join(base, 'r'), {
    primary: { ...local, nodeId: 'r' },
    replica: { nodeId: 'r', pollIntervalMs: 10 },
  });
  router = await startTestRouter({
    nodes: [`http://127.0.0.1:${primary.httpPort}`, `http://127.0.0.1:${replica.httpPort}`],
    store,
  });
}, 60_000);

afterAll(async () => {
  await router?.close();
  await replica?.close();
  await primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

const routerUrl = () => `http://127.0.0.1:${router.port}`;

async function maxId(headers: Record<string, string>): Promise<{ id: number; response: Response }> {
  const query = encodeURIComponent('SELECT max(id) FROM ryw');
  const response = await fetch(`${routerUrl()}/exec?query=${query}`, {
    headers: { 'x-walship-read-preference': 'replica', ...headers },
  });
  const body = (await response.json()) as { dataset?: number[][] };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return { id: body.dataset?.[0]?.[0] ?? 0, response };
}

describe('read-your-writes through the router', () => {
  it('a read after a write through the router sees it, 1 000 times out of 1 000, from the replica', async () => {
    let seen = 0;
    for (let i = 1; i <= 1_000; i++) {
      const write = await fetch(`${routerUrl()}/write`, { method: 'POST', body: `ryw id=${i}i\n` });
      expect(write.status).toBe(204);
      const { id, response } = await maxId({});
      expect(response.headers.get('x-walship-served-by')).toBe('r (replica)');
      expect(response.headers.get('x-walship-read-your-writes')).toMatch(/^ryw=\d+@\d+$/);
      if (id === i) seen++;
    }
    expect(seen).toBe(1_000);
  }, 120_000);

  it('a read that asks for eventual consistency, or names its own token, does not get the router’s', async () => {
    const write = await fetch(`${routerUrl()}/write`, { method: 'POST', body: 'ryw id=5000i\n' });
    expect(write.status).toBe(204);
    const eventual = await maxId({ 'x-walship-consistency': 'eventual' });
    expect(eventual.response.headers.get('x-walship-read-your-writes')).toBeNull();
    const own = await maxId({ 'x-walship-min-txn': write.headers.get('x-walship-txn')! });
    expect(own.response.headers.get('x-walship-read-your-writes')).toBeNull();
    expect(own.id).toBe(5000);
  });
});
