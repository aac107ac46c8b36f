/**
 * The S3 server of a test run, as provided by tests/helpers/global-setup.ts: a Ceph RGW booted for the
 * run, or an external server named by WALSHIP_S3_ENDPOINT; `null` (with a reason) when neither exists.
 *
 *   const s3 = s3TestEnvOrSkipReason();
 *   describe.skipIf(s3.env === null)('my store', () => {
 *     it('puts', async () => {
 *       const bucket = await createTestBucket(s3.env!, 'my-store');
 *       ...
 */
import { randomBytes } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectVersionsCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { inject } from 'vitest';

export interface S3TestEnv {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestEnv | null;
    s3SkipReason: string;
  }
}

export type S3TestEnvOrSkip = { env: S3TestEnv; skipReason: null } | { env: null; skipReason: string };

const logged = new Set<string>();

/**
 * The provided S3 server, or the reason there is none (printed once per test file, so a skipped S3
 * suite says why). Call at the top level of a test file and use with `describe.skipIf(s3.env === null)`.
 */
export function s3TestEnvOrSkipReason(): S3TestEnvOrSkip {
  const env = inject('s3');
  if (env) return { env, skipReason: null };
  const skipReason =
    inject('s3SkipReason') || 'no S3 server was provided (is tests/helpers/global-setup.ts configured?)';
  if (!logged.has(skipReason)) {
    logged.add(skipReason);
    console.warn(`[walship tests] skipping S3 tests: ${skipReason}`);
  }
  return { env: null, skipReason };
}

/** Client settings that work on Ceph RGW (and on AWS S3). */
export function s3ClientConfig(env: S3TestEnv, overrides: S3ClientConfig = {}): S3ClientConfig {
  return {
    endpoint: env.endpoint,
    region: env.region,
    credentials: { accessKeyId: env.accessKeyId, secretAccessKey: env.secretAccessKey },
    // Ceph: path-style addressing (no wildcard DNS on 127.0.0.1).
    forcePathStyle: true,
    // The SDK default streams aws-chunked bodies with trailing checksums, which Ceph 16 rejects (411).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  };
}

export function createTestS3Client(env: S3TestEnv, overrides: S3ClientConfig = {}): S3Client {
  return new S3Client(s3ClientConfig(env, overrides));
}

/** A valid, unique bucket name: `<prefix>-<time>-<random>` (lower case, at most 63 characters). */
export function uniqueBucketName(prefix: string): string {
  const clean =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40) || 'test';
  const name = `${clean}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  return name.length < 3 ? `${name}-b` : name;
}

/** Create a new, uniquely named bucket on the test server and return its name. */
export async function createTestBucket(env: S3TestEnv, prefix: string): Promise<string> {
  const bucket = uniqueBucketName(prefix);
  const client = createTestS3Client(env);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/**
 * Delete every object (and version) in a test bucket, then the bucket. Optional on the throwaway Ceph
 * (its data lives in RAM and dies with the run); polite on an external server.
 */
export async function deleteTestBucket(env: S3TestEnv, bucket: string): Promise<void> {
  const client = createTestS3Client(env);
  try {
    for (;;) {
      const page = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, MaxKeys: 1000 }));
      const ids = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]
        .filter((v) => v.Key !== undefined)
        .map((v) => ({ Key: v.Key!, VersionId: v.VersionId }));
      if (ids.length === 0) break;
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: ids, Quiet: true } }));
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}
