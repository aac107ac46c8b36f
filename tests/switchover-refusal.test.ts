/**
 * `walship switchover` checks its target before it demotes anything (issue 13 item 2): a target
 * that does not answer, serves chosen tables only, or is further behind than `--max-lag-txns`
 * is refused with the reason, and the primary goes on taking writes at the same epoch.
 * In-process nodes on the filesystem store and on Ceph RGW; the command runs in-process (`main`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.js';
import type { WalshipNode } from '../node/index.js';
import type { ObjectStore } from '../objectstore/index.js';
import { TableFilter } from '../replica/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from './helpers/s3-test-env.js';
import { storesUnderTest } from './helpers/store-under-test.js';
import { startTestNode } from './helpers/test-node.js';
import { TEST_ADMIN_TOKEN } from './helpers/test-replica.js';

const s3 = s3TestEnvOrSkipReason();
let base = '';
let bucket = '';
const nodes: WalshipNode[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-switchover-refusal-'));
  if (s3.env !== null) bucket = await createTestBucket(s3.env, 'switchover-refusal');
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});
afterAll(() => rm(base, { recursive: true, force: true }));

async function write(node: WalshipNode, line: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}/write`, { method: 'POST', body: line });
  await response.arrayBuffer();
  return response.status;
}

async function switchover(from: string, to: string, ...extra: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const exit = await main(
    ['switchover', '--from', from, '--to', to, `--admin.token=${TEST_ADMIN_TOKEN}`, ...extra],
    {
      stdout: (t) => out.push(t),
      stderr: (t) => err.push(t),
      env: {},
    },
  );
  return { exit, out: out.join('\n'), err: err.join('\n') };
}

const url = (node: WalshipNode) => `http://127.0.0.1:${node.httpPort}`;

describe.each(storesUnderTest({ s3, baseDir: () => base, bucket: () => bucket, rootPrefix: 'refusal' }))(
  'walship switchover refuses an unready target on %s',
  (_name, skipReason, makeStore) => {
    it.skipIf(skipReason !== null)(
      'leaves the primary untouched, taking writes at the same epoch',
      async () => {
        const store = await makeStore().open();
        stores.push(store);
        const dir = await mkdtemp(path.join(base, 'nodes-'));
        const a = await startTestNode('primary', store, path.join(dir, 'a'));
        nodes.push(a);
        expect(await write(a, 't id=1i\n')).toBe(204);
        // A replica that polls once a minute: started after txn 1, it stays behind what follows.
        const lagging = await startTestNode('replica', store, path.join(dir, 'b'), {
          replica: { pollIntervalMs: 60_000, sweepIntervalMs: 60_000 },
        });
        nodes.push(lagging);
        const filtered = await startTestNode('replica', store, path.join(dir, 'c'), {
          replica: { tables: TableFilter.parse('other', undefined) },
        });
        nodes.push(filtered);
        for (let id = 2; id <= 6; id++) expect(await write(a, `t id=${id}i\n`)).toBe(204);

        const behind = await switchover(url(a), url(lagging), '--max-lag-txns', '2');
        expect(behind.exit).toBe(1);
        expect(behind.err).toMatch(/switchover refused, nothing was demoted/);
        expect(behind.err).toMatch(/is [3-6] txns behind .* \(most in t\), more than --max-lag-txns 2/);

        const chosen = await switchover(url(a), url(filtered));
        expect(chosen.exit).toBe(1);
        expect(chosen.err).toMatch(/replicates chosen tables only/);

        const gone = await switchover(url(a), 'http://127.0.0.1:9');
        expect(gone.exit).toBe(1);
        expect(gone.err).toMatch(/http:\/\/127\.0\.0\.1:9 did not answer \/status/);

        // Nothing was demoted: A is still the primary of epoch 1 and takes writes.
        expect(a.role).toBe('primary');
        expect((a.status() as { epoch?: string }).epoch).toBe('1');
        expect(await write(a, 't id=7i\n')).toBe(204);
      },
    );
  },
);
