/**
 * What the server-side suites share (exactly-once.ts, retention.ts): the official client's bodies
 * of the trades rows, a fresh primary (product defaults, fs store) per run, and its HTTP requests.
 */
import type { Buffer } from 'node:buffer';
import path from 'node:path';
import { createBuffer, SenderOptions } from '@questdb/nodejs-client';
import { FsStore } from '../objectstore/index.js';
import type { PrimaryNode, PrimarySettings } from '../primary/index.js';
import { startTestPrimary } from '../tests/helpers/test-primary.js';
import { PRIMARY_PRODUCT_DEFAULTS } from './product-defaults.js';
import { encodeTradeRow, type Trades, timestampUsOf } from './trades.js';

/** The admin token of every bench primary (loopback only, for `POST /admin/sql`). */
export const BENCH_ADMIN_TOKEN = 'bench-admin';

/** The official client's bodies of the rows of `t` into `table`, `rowsPerRequest` rows each. */
export async function tradesBodies(t: Trades, table: string, rowsPerRequest: number): Promise<Buffer[]> {
  const buffer = createBuffer(await SenderOptions.fromConfig('http::addr=127.0.0.1:1;protocol_version=1;'));
  const bodies: Buffer[] = [];
  for (let row = 0; row < t.count; row++) {
    encodeTradeRow(buffer, t, row, table).at(timestampUsOf(row), 'us');
    if ((row + 1) % rowsPerRequest === 0 || row + 1 === t.count) bodies.push(buffer.toBufferNew()!);
  }
  return bodies;
}

/** `fn` with a fresh primary over a fresh fs store under `dir`, closed after. */
export async function withBenchPrimary<T>(
  dir: string,
  name: string,
  overrides: Partial<PrimarySettings>,
  fn: (node: PrimaryNode) => Promise<T>,
): Promise<T> {
  const store = await FsStore.open({ root: path.join(dir, `store-${name}`) });
  try {
    const node = await startTestPrimary(store, path.join(dir, `data-${name}`), {
      ...PRIMARY_PRODUCT_DEFAULTS,
      adminToken: BENCH_ADMIN_TOKEN,
      ...overrides,
    });
    try {
      return await fn(node);
    } finally {
      await node.close();
    }
  } finally {
    await store.close();
  }
}

/** POST /write of one body (with a batch identity when given); throws unless 204. */
export async function postBody(port: number, body: Buffer, batch?: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/write`, {
    method: 'POST',
    body,
    headers: batch === undefined ? {} : { 'X-Walship-Batch': batch },
  });
  if (response.status !== 204) throw new Error(`POST /write: ${response.status} ${await response.text()}`);
}

/** Every body POSTed in turn (`writer:1`, `writer:2`… as identities when given); ms from the first to the last 204. */
export async function postBodies(port: number, bodies: readonly Buffer[], writer?: string): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < bodies.length; i++)
    await postBody(port, bodies[i]!, writer === undefined ? undefined : `${writer}:${i + 1}`);
  return performance.now() - started;
}

/** POST /admin/sql of one of QuestDB's table statements; throws unless 200. */
export async function adminSql(port: number, query: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/admin/sql?${new URLSearchParams({ query })}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}` },
  });
  if (response.status !== 200) throw new Error(`${query}: ${response.status} ${await response.text()}`);
}
