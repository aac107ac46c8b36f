/**
 * vitest globalSetup: provides the S3 server for the whole run (`inject('s3')`, see s3-test-env.ts).
 *
 * 1. WALSHIP_S3_ENDPOINT (+ WALSHIP_S3_ACCESS_KEY_ID, WALSHIP_S3_SECRET_ACCESS_KEY, optional
 *    WALSHIP_S3_REGION, default us-east-1) set: use that external server.
 * 2. Else, if Ceph is installed: boot one throwaway Ceph RGW for the run and stop it at teardown.
 * 3. Else: provide `s3: null` and a reason; the S3 tests skip and say why.
 * With CI set, case 3 (or a failed boot) is an error: CI must never silently skip the S3 tests.
 */
import type { TestProject } from 'vitest/node';
import { type CephRgw, cephRgwAvailable, startCephRgw } from './ceph-rgw.js';
import type { S3TestEnv } from './s3-test-env.js';

function say(line: string): void {
  process.stderr.write(`[walship tests] ${line}\n`);
}

function externalServer(): S3TestEnv | undefined {
  const endpoint = process.env.WALSHIP_S3_ENDPOINT;
  if (!endpoint) return undefined;
  const accessKeyId = process.env.WALSHIP_S3_ACCESS_KEY_ID;
  const secretAccessKey = process.env.WALSHIP_S3_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new Error(
      'WALSHIP_S3_ENDPOINT is set, but WALSHIP_S3_ACCESS_KEY_ID and WALSHIP_S3_SECRET_ACCESS_KEY are not',
    );
  }
  return { endpoint, accessKeyId, secretAccessKey, region: process.env.WALSHIP_S3_REGION || 'us-east-1' };
}

export default async function globalSetup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const inCi = Boolean(process.env.CI);

  const external = externalServer();
  if (external) {
    say(`S3 server: external, ${external.endpoint} (from WALSHIP_S3_ENDPOINT)`);
    project.provide('s3', external);
    project.provide('s3SkipReason', '');
    return undefined;
  }

  const available = cephRgwAvailable();
  if (!available.ok) {
    if (inCi) throw new Error(`CI is set, but no S3 server can be started: ${available.reason}`);
    say(`S3 server: none, S3 tests will be skipped (${available.reason})`);
    project.provide('s3', null);
    project.provide('s3SkipReason', available.reason);
    return undefined;
  }

  const t0 = performance.now();
  let rgw: CephRgw;
  try {
    rgw = await startCephRgw();
  } catch (e) {
    const reason = `Ceph RGW failed to boot: ${e instanceof Error ? e.message : String(e)}`;
    if (inCi) throw new Error(reason);
    say(`S3 server: none, S3 tests will be skipped (${reason})`);
    project.provide('s3', null);
    project.provide('s3SkipReason', reason);
    return undefined;
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  say(`S3 server: Ceph RGW at ${rgw.endpoint}, booted in ${secs} s (data and logs in ${rgw.dir})`);
  project.provide('s3', {
    endpoint: rgw.endpoint,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
    region: rgw.region,
  });
  project.provide('s3SkipReason', '');
  return () => rgw.stop();
}
