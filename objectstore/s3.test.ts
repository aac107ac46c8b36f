/**
 * S3 store behaviour that needs a real server misbehaving: a lost response recognised through
 * the write id, a stopped gateway (connection refused), and a hung one (time limit). Each test
 * that stops the gateway boots its own RGW, so the shared one keeps serving other files.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../core/index.js';
import { type CephRgw, cephRgwAvailable, startCephRgw } from '../tests/helpers/ceph-rgw.js';
import { createTestBucket, s3TestEnvOrSkipReason } from '../tests/helpers/s3-test-env.js';
import { withFaults } from './faults.js';
import { withRetries } from './retries.js';
import { S3Store, type S3StoreOptions } from './s3.js';

const s3 = s3TestEnvOrSkipReason();
const bytes = (text: string) => new TextEncoder().encode(text);

describe.skipIf(s3.env === null)('S3 store on Ceph RGW', () => {
  it('recognises its own create-only write after a lost response, by the write id', async () => {
    const bucket = await createTestBucket(s3.env!, 'lost');
    const raw = new S3Store({ bucket, root: 'r', ...s3.env! });
    const faulty = withFaults(raw, [{ fault: { type: 'lost-response' }, operations: ['put'], times: 1 }]);
    const store = withRetries(faulty, { policy: { baseDelayMs: 1 }, random: seededRandom(1) });
    const result = await store.put('seg', bytes('ours'), {
      condition: { type: 'absent' },
      writeId: 'writer-a-1',
    });
    expect(result.status).toBe('written');
    expect(faulty.injected['lost-response']).toBe(1);
    expect((await raw.head('seg'))?.writeId).toBe('writer-a-1');
    // A different writer's retry after the same kind of loss is told the truth.
    faulty.setRules([{ fault: { type: 'error' }, operations: ['put'], times: 1 }]);
    const other = await store.put('seg', bytes('theirs'), {
      condition: { type: 'absent' },
      writeId: 'writer-b-1',
    });
    expect(other.status).toBe('precondition-failed');
    await raw.close();
  });

  it('refuses an unknown bucket as a configuration problem, not an outage', async () => {
    const store = new S3Store({ bucket: 'no-such-bucket-walship', root: 'r', ...s3.env! });
    await expect(store.put('k', bytes('x'))).rejects.toMatchObject({
      kind: 'invalid',
      code: 'STORE_REJECTED',
    });
    await store.close();
  });

  it('refuses wrong credentials as a configuration problem and keeps the secret out of the message', async () => {
    const bucket = await createTestBucket(s3.env!, 'creds');
    const store = new S3Store({ bucket, root: 'r', ...s3.env!, secretAccessKey: 'WRONG-SECRET-1234' });
    const error = await store.get('k').catch((e: Error) => e);
    expect(error).toMatchObject({ kind: 'invalid', code: 'STORE_REJECTED' });
    expect((error as Error).message).not.toContain('WRONG-SECRET-1234');
    await store.close();
  });
});

const ceph = cephRgwAvailable();
describe.skipIf(s3.env === null || !ceph.ok)('S3 store when the gateway fails (private RGW)', () => {
  let rgw: CephRgw;
  let options: S3StoreOptions;
  beforeAll(async () => {
    rgw = await startCephRgw();
    const env = {
      endpoint: rgw.endpoint,
      region: rgw.region,
      accessKeyId: rgw.accessKeyId,
      secretAccessKey: rgw.secretAccessKey,
    };
    options = { bucket: await createTestBucket(env, 'outage'), root: 'r', ...env, requestTimeoutMs: 500 };
  });
  afterAll(() => rgw?.stop());

  it('a stopped gateway is StoreUnavailable; after a restart retries go through and data is intact', async () => {
    const store = new S3Store(options);
    await store.put('before', bytes('kept'), { condition: { type: 'absent' } });
    await rgw.stopGateway();
    await expect(store.put('during', bytes('x'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const retrying = withRetries(store, { policy: { attempts: 50, baseDelayMs: 50, maxDelayMs: 200 } });
    const pending = retrying.put('during', bytes('x'), { condition: { type: 'absent' } });
    await rgw.startGateway();
    expect((await pending).status).toBe('written');
    const kept = await store.get('before');
    expect(kept?.status === 'ok' && new TextDecoder().decode(kept.body)).toBe('kept');
    await store.close();
  });

  it('a hung gateway hits the request time limit with StoreTimeout (outcome unknown)', async () => {
    const store = new S3Store(options);
    await store.head('warm-up');
    await rgw.pauseGateway();
    try {
      await expect(store.get('k')).rejects.toMatchObject({ code: 'STORE_TIMEOUT', kind: 'unavailable' });
    } finally {
      await rgw.resumeGateway();
    }
    expect(await store.get('k')).toBeNull();
    await store.close();
  });
});
