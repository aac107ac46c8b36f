/**
 * Commit tokens stay unambiguous across a failover (issue 13 item 10, RFC-0005): in `local` ack
 * mode a primary answers 204 before uploading; when it is replaced before the upload, the new
 * primary hands out the same txn numbers to other writes. A read that waits for the lost write's
 * token must not be answered with another write's rows: the token names its epoch (`t=3@1`), and a
 * replica whose txn 3 was written by epoch 2 answers 409 TXN_NOT_IN_CLUSTER.
 * In-process nodes on the filesystem store; the old primary's uploads are held by a store wrapper.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentPrefix } from '../layout/index.js';
import type { WalshipNode } from '../node/index.js';
import { FsStore, type ObjectStore } from '../objectstore/index.js';
import { tableKey } from '../table/index.js';
import { withPutHook } from './helpers/gated-store.js';
import { startTestNode } from './helpers/test-node.js';

let dir = '';
let store: ObjectStore;
const nodes: WalshipNode[] = [];
let release: () => void = () => {};

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-token-epochs-'));
  store = await FsStore.open({ root: path.join(dir, 'store') });
});
afterEach(async () => {
  release();
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function write(node: WalshipNode, line: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, { method: 'POST', body: line });
  expect(response.status, await response.text()).toBe(204);
  return response.headers.get('x-walship-txn') ?? '';
}

async function read(node: WalshipNode, token: string) {
  const query = new URLSearchParams({ query: 'SELECT id FROM t ORDER BY id' });
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/exec?${query}`, {
    headers: { 'x-walship-min-txn': token },
  });
  return {
    status: response.status,
    body: (await response.json()) as { dataset?: unknown[][]; error?: string },
  };
}

async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('commit tokens across a failover that lost acknowledged txns (local ack)', () => {
  it('a replica refuses a lost txn token with 409 and answers the new epoch token with its write', async () => {
    let holding = false;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The old primary's uploads of table t hang once `holding` is set: it is cut off from the store.
    const oldPrimaryStore = withPutHook(store, async (key) => {
      if (holding && key.startsWith(segmentPrefix(tableKey('t')))) await held;
    });
    const a = await startTestNode('primary', oldPrimaryStore, path.join(dir, 'a'));
    nodes.push(a);
    const b = await startTestNode('replica', store, path.join(dir, 'b'));
    nodes.push(b);
    const c = await startTestNode('replica', store, path.join(dir, 'c'));
    nodes.push(c);

    expect(await write(a, 't id=1i\n')).toBe('t=1@1');
    await until(
      () => (a.status() as { tables?: { uploadedTxn: string }[] }).tables?.[0]?.uploadedTxn === '1',
      'txn 1 is uploaded',
    );
    holding = true;
    // Acknowledged (local ack) but never uploaded: lost when b takes over.
    expect(await write(a, 't id=2i\n')).toBe('t=2@1');
    expect(await write(a, 't id=3i\n')).toBe('t=3@1');

    const promotion = await b.promote('test');
    expect(promotion.epoch).toBe(2n);
    expect(promotion.fenced).toEqual([expect.objectContaining({ fenceTxn: 2n })]);
    // The new primary's first write is txn 3 again: another write than a's txn 3.
    expect(await write(b, 't id=30i\n')).toBe('t=3@2');

    const lost = await read(c, 't=3@1');
    expect(lost.status).toBe(409);
    expect(lost.body.error).toMatch(/^t txn 3 of epoch 1 never reached the cluster/);
    expect((await read(c, 't=2@1')).status).toBe(409);
    const kept = await read(c, 't=3@2');
    expect(kept.status).toBe(200);
    expect(kept.body.dataset).toEqual([[1], [30]]);
    // A token of a write that did reach the cluster is still answered.
    expect((await read(c, 't=1@1')).status).toBe(200);
  });
});
