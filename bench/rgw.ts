/**
 * A private Ceph RGW for a benchmark suite: booted, one bucket created, handed to `run`, stopped.
 * The suites' fs figures stand on their own; a machine that cannot boot RGW says why in
 * `context.rgw` and the suite goes on without its RGW rows.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '../objectstore/index.js';
import { type CephRgw, cephRgwAvailable, startCephRgw } from '../tests/helpers/ceph-rgw.js';

/** What `run` gets: the gateway's bucket, as a store opener and as a connection string for child processes. */
export interface BenchRgw {
  bucket: string;
  /** A new S3Store on the bucket under `root` (the caller closes it). */
  open(root: string): S3Store;
  /** `s3::…;` for `root` in the bucket, with the gateway's credentials. */
  connectionString(root: string): string;
}

export const RGW_CONTEXT = 'Ceph RGW 16 memstore on 127.0.0.1, sharing the cores';

/** Runs `run` against a fresh RGW bucket; undefined (and `context.rgw` says why) when no RGW boots. */
export async function withBenchRgw<T>(
  bucket: string,
  context: Record<string, unknown>,
  log: (text: string) => void,
  run: (rgw: BenchRgw) => Promise<T>,
): Promise<T | undefined> {
  const ceph = cephRgwAvailable();
  if (!ceph.ok) {
    context.rgw = `skipped: ${ceph.reason}`;
    log(`rgw skipped: ${ceph.reason}`);
    return undefined;
  }
  log('booting a Ceph RGW');
  let rgw: CephRgw;
  try {
    rgw = await startCephRgw();
  } catch (error) {
    context.rgw = `skipped: ${(error as Error).message.split('\n')[0]}`;
    log(`rgw skipped: ${context.rgw}`);
    return undefined;
  }
  try {
    const credentials = { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
    const admin = new S3Client({
      endpoint: rgw.endpoint,
      region: rgw.region,
      forcePathStyle: true,
      credentials,
    });
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    admin.destroy();
    const result = await run({
      bucket,
      open: (root) =>
        new S3Store({ bucket, root, endpoint: rgw.endpoint, region: rgw.region, ...credentials }),
      connectionString: (root) =>
        `s3::bucket=${bucket};root=${root};region=${rgw.region};endpoint=${rgw.endpoint};` +
        `access_key_id=${rgw.accessKeyId};secret_access_key=${rgw.secretAccessKey};`,
    });
    context.rgw = RGW_CONTEXT;
    return result;
  } finally {
    await rgw.stop();
  }
}
