import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, withFaults } from '../objectstore/index.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import type { CommandIo } from './io.js';
import { main } from './main.js';

const s3 = s3TestEnvOrSkipReason();

function captureIo(env: Record<string, string> = {}): CommandIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, env, stdout: (t) => out.push(t), stderr: (t) => err.push(t) };
}

let base = '';
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'walship-cli-'));
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('walship store check', () => {
  it('passes against a filesystem root and exits 0', async () => {
    const io = captureIo();
    const code = await main(['store', 'check', '--store', `fs::root=${path.join(base, 'fs')};`], io);
    expect(io.err).toEqual([]);
    expect(code).toBe(0);
    expect(io.out.join('\n')).toMatch(/PASS +create-only: racing writers, one wins/);
    expect(io.out.join('\n')).toContain('OK: the store honours create-only and compare-and-swap');
  });

  it('reads the store from WALSHIP_REPLICATION_OBJECT_STORE and prints JSON on request', async () => {
    const io = captureIo({ WALSHIP_REPLICATION_OBJECT_STORE: `fs::root=${path.join(base, 'env')};` });
    expect(await main(['store', 'check', '--json'], io)).toBe(0);
    const report = JSON.parse(io.out.join('\n'));
    expect(report).toMatchObject({ ok: true, fencingSafe: true });
  });

  it.skipIf(s3.env === null)(
    'passes against Ceph RGW, notes the If-Match quirk and never prints the secret',
    async () => {
      const bucket = await createTestBucket(s3.env!, 'cli-check');
      const { endpoint, accessKeyId, secretAccessKey } = s3.env!;
      const io = captureIo();
      const connection = `s3::bucket=${bucket};root=check;endpoint=${endpoint};access_key_id=${accessKeyId};secret_access_key=${secretAccessKey};`;
      const code = await main(['store', 'check', '--store', connection], io);
      const all = [...io.out, ...io.err].join('\n');
      expect(code).toBe(0);
      expect(all).toContain('compares If-Match without quotes');
      expect(all).not.toContain(secretAccessKey);
    },
  );

  it('fails clearly, exit 1, against a store that ignores create-only', async () => {
    const io = captureIo();
    const open = async () => {
      const store = withFaults(new MemoryStore(), [{ fault: { type: 'ignore-conditions' } }]);
      return { store, raw: store as never };
    };
    const code = await main(['store', 'check', '--store', 'fs::root=/unused;'], io, { storeCheck: { open } });
    expect(code).toBe(1);
    const text = io.out.join('\n');
    expect(text).toMatch(/FAIL +create-only: second write refused +.*ignores If-None-Match/);
    expect(text).toContain('UNSAFE: the store does not honour conditional writes');
  });

  it('exits 2 on bad arguments and configuration, naming the problem', async () => {
    const missing = captureIo();
    expect(await main(['store', 'check'], missing)).toBe(2);
    expect(missing.err.join()).toContain('--store is required');
    const badKey = captureIo();
    expect(await main(['store', 'check', '--store', 'fs::root=/x;colour=red;'], badKey)).toBe(2);
    expect(badKey.err.join()).toContain('unknown key "colour"');
    const badFlag = captureIo();
    expect(await main(['store', 'check', '--frobnicate'], badFlag)).toBe(2);
    expect(await main(['no-such-command'], captureIo())).toBe(2);
  });

  it('exits 3 when the store cannot be reached, without printing secrets', async () => {
    const io = captureIo();
    const code = await main(
      [
        'store',
        'check',
        '--store',
        's3::bucket=b;root=r;endpoint=http://127.0.0.1:1;access_key_id=AK;secret_access_key=TOPSECRET;retry_attempts=1;',
      ],
      io,
    );
    expect(code).toBe(3);
    expect(io.err.join()).toContain('cannot reach');
    expect([...io.out, ...io.err].join()).not.toContain('TOPSECRET');
  });
});
