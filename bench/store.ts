/**
 * Object-store latency: create-only PUT and GET of 4 KiB and 2 MiB objects (a small segment
 * and one at the default rollover size) on the fs store and on a throwaway Ceph RGW, each beside
 * a same-run baseline: a raw open/write/fsync/close (PUT) and readFile (GET) on the same disk
 * for fs; the raw SDK PutObject/GetObject without conditions or our wrappers for RGW. Besides
 * latency, the client's CPU per request: S3Store signs and sends its requests through undici
 * (objectstore/s3-requests.ts), where the SDK's command pipeline cost 3–4× the CPU.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { FsStore, type ObjectStore, S3Store } from '../objectstore/index.js';
import { type CephRgw, cephRgwAvailable, startCephRgw } from '../tests/helpers/ceph-rgw.js';
import { type BenchRow, type BenchSuiteResult, percentile } from './report.js';

const SIZES = [
  { label: '4 KiB', bytes: 4 * 1024, samples: 400 },
  { label: '2 MiB', bytes: 2 * 1024 * 1024, samples: 40 },
];

/** Per-sample latencies in ms, and the process CPU (user + system) the samples took, in µs per sample. */
async function time(
  samples: number,
  op: (i: number) => Promise<unknown>,
): Promise<number[] & { cpuUs: number }> {
  const out: number[] = [];
  const cpu = process.cpuUsage();
  for (let i = 0; i < samples; i++) {
    const started = performance.now();
    await op(i);
    out.push(performance.now() - started);
  }
  const used = process.cpuUsage(cpu);
  return Object.assign(out, { cpuUs: (used.user + used.system) / samples });
}

function rows(
  subject: string,
  op: string,
  size: string,
  ours: number[] & { cpuUs: number },
  baselineName: string,
  base: number[] & { cpuUs: number },
): BenchRow[] {
  return [
    ...[50, 99].map((p) => ({
      name: `${subject} ${op} ${size} p${p}`,
      value: percentile(ours, p),
      unit: 'ms',
      better: 'lower' as const,
      baselineName: `${baselineName} p${p}`,
      baseline: percentile(base, p),
      note: `${ours.length} samples`,
    })),
    {
      name: `${subject} ${op} ${size} client CPU`,
      value: ours.cpuUs,
      unit: 'µs/request',
      better: 'lower' as const,
      baselineName: `${baselineName} client CPU`,
      baseline: base.cpuUs,
      note: `this process's user+system CPU over the ${ours.length} requests (the server's is not in it)`,
    },
  ];
}

async function storeRows(subject: string, store: ObjectStore, baseline: Baseline): Promise<BenchRow[]> {
  const out: BenchRow[] = [];
  for (const size of SIZES) {
    const body = randomBytes(size.bytes);
    const key = (i: number) => `bench/${size.label.replace(' ', '')}/${i}`;
    const basePut = await time(size.samples, (i) => baseline.put(i, body));
    const put = await time(size.samples, (i) => store.put(key(i), body, { condition: { type: 'absent' } }));
    const baseGet = await time(size.samples, (i) => baseline.get(i));
    const get = await time(size.samples, (i) => store.get(key(i)));
    out.push(...rows(subject, 'create-only PUT', size.label, put, `${baseline.name} PUT`, basePut));
    out.push(...rows(subject, 'GET', size.label, get, `${baseline.name} GET`, baseGet));
  }
  return out;
}

interface Baseline {
  name: string;
  put(i: number, body: Uint8Array): Promise<void>;
  get(i: number): Promise<void>;
}

function rawFsBaseline(dir: string): Baseline {
  let lastSize = 0;
  const file = (i: number) => path.join(dir, `raw-${lastSize}-${i}`);
  return {
    name: 'raw writeFile+fsync',
    async put(i, body) {
      lastSize = body.byteLength;
      const handle = await open(file(i), 'w');
      await handle.write(body);
      await handle.sync();
      await handle.close();
    },
    async get(i) {
      await readFile(file(i));
    },
  };
}

function rawS3Baseline(rgw: CephRgw, bucket: string): Baseline & { close(): void } {
  const client = new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let lastSize = 0;
  return {
    name: 'raw SDK',
    async put(i, body) {
      lastSize = body.byteLength;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `raw/${lastSize}/${i}`, Body: body }));
    },
    async get(i) {
      const response = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key: `raw/${lastSize}/${i}` }),
      );
      await response.Body?.transformToByteArray();
    },
    close: () => client.destroy(),
  };
}

export async function benchStore(): Promise<BenchSuiteResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'walship-bench-store-'));
  const result: BenchSuiteResult = { suite: 'store', context: { node: process.version }, rows: [] };
  try {
    const fsStore = await FsStore.open({ root: path.join(dir, 'store') });
    result.rows.push(...(await storeRows('fs', fsStore, rawFsBaseline(dir))));
    await fsStore.close();
    const ceph = cephRgwAvailable();
    if (!ceph.ok) {
      result.context.rgw = `skipped: ${ceph.reason}`;
      return result;
    }
    const rgw = await startCephRgw();
    try {
      const bucket = 'bench-store';
      const baseline = rawS3Baseline(rgw, bucket);
      const { CreateBucketCommand } = await import('@aws-sdk/client-s3');
      const admin = new S3Client({
        endpoint: rgw.endpoint,
        region: rgw.region,
        forcePathStyle: true,
        credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
      });
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      admin.destroy();
      const s3Store = new S3Store({
        bucket,
        root: 'bench',
        endpoint: rgw.endpoint,
        accessKeyId: rgw.accessKeyId,
        secretAccessKey: rgw.secretAccessKey,
      });
      result.rows.push(...(await storeRows('rgw', s3Store, baseline)));
      result.context.rgw = 'Ceph RGW 16 memstore on 127.0.0.1 (client and server share 2 cores)';
      await s3Store.close();
      baseline.close();
    } finally {
      await rgw.stop();
    }
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
