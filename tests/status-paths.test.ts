/**
 * Issue 13 item 10: the public `/status` and `/status/history` of a real primary and replica name
 * no absolute server path — not the data dir, not an fs store's root — while the node itself still
 * knows them (its in-process status keeps them for its log).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WalshipNode } from '../node/index.js';
import { FsStore } from '../objectstore/index.js';
import { startTestNode } from './helpers/test-node.js';

/** Anything that looks like an absolute POSIX path in a JSON text (a URL's path is not one). */
const ABSOLUTE_PATH = /(?<![\w:/.-])\/(?:[\w.-]+\/)*[\w.-]+/g;

let base = '';
let store: FsStore;
const nodes: Partial<Record<'primary' | 'replica', WalshipNode>> = {};

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-status-paths-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  nodes.primary = await startTestNode('primary', store, path.join(base, 'p'));
  nodes.replica = await startTestNode('replica', store, path.join(base, 'r'), {
    replica: { pollIntervalMs: 20 },
  });
  const write = await fetch(`http://127.0.0.1:${nodes.primary.httpPort}/write`, {
    method: 'POST',
    body: 'paths v=1i\n',
  });
  expect(write.status).toBe(204);
}, 60_000);

afterAll(async () => {
  await nodes.replica?.close();
  await nodes.primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

describe.each(['primary', 'replica'] as const)('the public status of a %s', (role) => {
  it.each(['/status', '/status/history'])('%s names no absolute path', async (target) => {
    const node = nodes[role]!;
    const response = await fetch(`http://127.0.0.1:${node.httpPort}${target}`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).not.toContain(base);
    expect(text.match(ABSOLUTE_PATH) ?? []).toEqual([]);
    if (target === '/status') {
      // The fs store is still described, relative to the data dir.
      expect(JSON.parse(text).store.description).toMatch(/^fs::root=\.\.\/store;/);
      // In process, the node keeps the absolute form (its log names real files).
      expect(JSON.stringify(node.status())).toContain(base);
    }
  });
});
