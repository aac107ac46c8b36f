/**
 * The client against real walship nodes in this process: a primary and a replica on one
 * filesystem store. A Sender configured replica-first fails over to the primary (421 → next
 * address) and lands every row exactly once; the ReadRouter reads them back from the replica with
 * the sender's commit token, and falls back to the primary when the replica is gone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isClientError, ReadRouter, Sender } from '../client/index.js';
import { FsStore } from '../objectstore/index.js';
import type { PrimaryNode } from '../primary/index.js';
import type { ReplicaNode } from '../replica/index.js';
import { getJson, startTestPrimary } from './helpers/test-primary.js';
import { startTestReplica } from './helpers/test-replica.js';

const ROWS = 10_000;
const TABLE = 'client_failover';
/** One count per row id: exactly-once shows as count = distinct = ROWS over ids 0..ROWS-1. */
const AUDIT_SQL = `select count(*) as n, count(distinct id) as ids, min(id) as lo, max(id) as hi from ${TABLE}`;
const EXACTLY_ONCE = [[ROWS, ROWS, 0, ROWS - 1]];

let base = '';
let store: FsStore;
let primary: PrimaryNode;
let replica: ReplicaNode;
let sender: Sender;
let router: ReadRouter;

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-client-failover-'));
  store = await FsStore.open({ root: path.join(base, 'store') });
  primary = await startTestPrimary(store, path.join(base, 'primary'), { windowMs: 20, headIntervalMs: 20 });
  replica = await startTestReplica(store, path.join(base, 'replica'));
});

afterAll(async () => {
  await sender?.close();
  await router?.close();
  await replica?.close();
  await primary?.close();
  await store?.close();
  await rm(base, { recursive: true, force: true });
});

const replicaUrl = () => `http://127.0.0.1:${replica.httpPort}`;
const primaryUrl = () => `http://127.0.0.1:${primary.httpPort}`;

describe('client failover against a real primary and replica', () => {
  it('a replica-first sender lands every row on the primary exactly once', async () => {
    sender = Sender.fromConfig(
      `http::addr=127.0.0.1:${replica.httpPort};addr=127.0.0.1:${primary.httpPort};` +
        'auto_flush_rows=1000;auto_flush_interval=off;',
    );
    for (let id = 0; id < ROWS; id++) {
      await sender
        .table(TABLE)
        .symbol('kind', id % 2 === 0 ? 'even' : 'odd')
        .intColumn('id', id)
        .floatColumn('value', id / 8)
        .stringColumn('note', `row "${id}", with\nnewline`)
        .at(1_700_000_000_000_000n + BigInt(id), 'us');
    }
    await sender.flush();
    expect(sender.bufferedRows).toBe(0);
    expect(sender.currentAddress).toBe(`127.0.0.1:${primary.httpPort}`);
    expect(sender.lastCommitToken).toMatch(new RegExp(`^${TABLE}=[1-9][0-9]*@1$`));

    const onPrimary = await getJson(primary.httpPort, `/exec?query=${encodeURIComponent(AUDIT_SQL)}`);
    expect(onPrimary.status).toBe(200);
    expect((onPrimary.body as { dataset: unknown[][] }).dataset).toEqual(EXACTLY_ONCE);
    const sample = await getJson(
      primary.httpPort,
      `/exec?query=${encodeURIComponent(`select kind, value, note from ${TABLE} where id = 4001`)}`,
    );
    expect((sample.body as { dataset: unknown[][] }).dataset).toEqual([
      ['odd', 4001 / 8, 'row "4001", with\nnewline'],
    ]);
  });

  it('the router reads the rows back from the replica with the commit token', async () => {
    router = new ReadRouter({ nodes: [primaryUrl(), replicaUrl()], requestTimeoutMs: 10_000 });
    const result = await router.query(AUDIT_SQL, { preference: 'replica', minTxn: sender.lastCommitToken });
    expect(result.node).toBe(replicaUrl());
    expect(result.role).toBe('replica');
    expect(result.body.dataset).toEqual(EXACTLY_ONCE);
    // The replica says what the answer reflects: at least the sender's txn.
    const wanted = BigInt(sender.lastCommitToken!.split('=')[1]!.split('@')[0]!);
    const applied = BigInt(result.appliedTxn!.split('=')[1]!);
    expect(applied >= wanted).toBe(true);
    // X-Walship-Staleness-Ms is there: ms since caught up, or null ('unknown') right after applying.
    expect(result.stalenessMs === null || typeof result.stalenessMs === 'number').toBe(true);
  });

  it('replica_preferred falls back to the primary when the replica is closed', async () => {
    await replica.close();
    const result = await router.query(AUDIT_SQL, {
      preference: 'replica_preferred',
      minTxn: sender.lastCommitToken,
    });
    expect(result.node).toBe(primaryUrl());
    expect(result.role).toBe('primary');
    expect(result.body.dataset).toEqual(EXACTLY_ONCE);
    const error = await router.query(AUDIT_SQL, { preference: 'replica' }).catch((e: unknown) => e);
    expect(isClientError(error, 'NO_NODE_FOR_READ')).toBe(true);
  });
});
