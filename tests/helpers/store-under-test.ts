/**
 * The two stores an integration test runs on (filesystem and S3 on Ceph RGW), each as an opener
 * for the test process and a connection string for child `walship` processes, ready for
 * `describe.each`: `[name, skipReason (null = run), make]`.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { FsStore, type ObjectStore, S3Store } from '../../objectstore/index.js';
import type { S3TestEnvOrSkip } from './s3-test-env.js';

export interface StoreUnderTest {
  open(): Promise<ObjectStore>;
  connectionString: string;
}

/** `baseDir` and `bucket` are read when a store is made (they are set in beforeAll). */
export function storesUnderTest(options: {
  s3: S3TestEnvOrSkip;
  baseDir: () => string;
  bucket: () => string;
  rootPrefix: string;
}): [string, string | null, () => StoreUnderTest][] {
  const fs = (): StoreUnderTest => {
    const root = path.join(options.baseDir(), `store-${randomUUID()}`);
    return { open: async () => FsStore.open({ root }), connectionString: `fs::root=${root};` };
  };
  const s3 = (): StoreUnderTest => {
    const env = options.s3.env!;
    const bucket = options.bucket();
    const root = `${options.rootPrefix}-${randomUUID()}`;
    return {
      open: async () => new S3Store({ bucket, root, ...env }),
      connectionString:
        `s3::bucket=${bucket};root=${root};region=${env.region};endpoint=${env.endpoint};` +
        `access_key_id=${env.accessKeyId};secret_access_key=${env.secretAccessKey};`,
    };
  };
  return [
    ['fs', null, fs],
    ['s3 (Ceph RGW)', options.s3.skipReason, s3],
  ];
}
