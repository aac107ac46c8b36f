/**
 * TLS end to end (issue 7 part 5): a primary and a replica started by the CLI with
 * `http.tls.*` (ILP/TCP inherits the certificate), written to by the official client over
 * `https::` and `tcps::` and by walship's own Sender over `https::`, read back over HTTPS from both
 * nodes, and watched by `walship status` trusting the CA through NODE_EXTRA_CA_CERTS. The
 * certificates are made by the `openssl` binary at the start (skipped with a reason when it is
 * missing outside CI; a failure under CI).
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Sender as QuestDbSender } from '@questdb/nodejs-client';
import pg from 'pg';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Sender } from '../client/index.js';
import { InvalidConfigError, loadTlsCredentials } from '../core/index.js';
import { EPOCHS_PREFIX } from '../layout/index.js';
import { FsStore, listAll } from '../objectstore/index.js';
import { spawnWalship, type WalshipProcess } from './helpers/walship-process.js';

const ILP_TOKEN = 'tls-ilp-token';
const QUERY_TOKEN = 'tls-query-token';
const KEYS = { cert: 'http.tls.cert.path', key: 'http.tls.key.path' };

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl && process.env.CI !== undefined) throw new Error('the openssl binary is required under CI');
if (!hasOpenssl) console.log('tests/tls.test.ts skipped: no openssl binary to make certificates with');

const run = promisify(execFile);
let dir: string;
let caPath: string;
let primary: { process: WalshipProcess; http: number; tcp: number; pg: number };
let replica: { process: WalshipProcess; http: number };
let agent: Agent;

/** A CA and a server certificate for 127.0.0.1 and localhost signed by it, as PEM files in `dir`. */
function makeCertificates(into: string): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: into, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=walship test CA',
  );
  run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\n" > ext.cnf'], {
    cwd: into,
  });
  run(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  );
}

function nodeArgs(role: 'primary' | 'replica', name: string): string[] {
  return [
    role,
    `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
    `--node.data.dir=${path.join(dir, name)}`,
    '--http.bind.to=127.0.0.1:0',
    '--line.tcp.net.bind.to=127.0.0.1:0',
    `--http.tls.cert.path=${path.join(dir, 'server.pem')}`,
    `--http.tls.key.path=${path.join(dir, 'server.key')}`,
    `--ilp.auth.token=${ILP_TOKEN}`,
    `--query.auth.token=${QUERY_TOKEN}`,
    '--replication.primary.throttle.window.duration=20ms',
    '--replication.replica.poll.interval=20ms',
    '--query.workers=1',
    '--log.level=warn',
  ];
}

beforeAll(async () => {
  if (!hasOpenssl) return;
  dir = await mkdtemp(path.join(tmpdir(), 'walship-tls-'));
  makeCertificates(dir);
  caPath = path.join(dir, 'ca.pem');
  agent = new Agent({ connect: { ca: await readFile(caPath) } });
  const p = spawnWalship(nodeArgs('primary', 'p'));
  const r = spawnWalship(nodeArgs('replica', 'r'));
  const [pm, rm_] = await Promise.all([
    p.waitFor(/walship primary \S+ listening: http (\d+), tcp (\d+), pg (\d+)/, 60_000),
    r.waitFor(/walship replica \S+ listening: http (\d+)/, 60_000),
  ]);
  primary = { process: p, http: Number(pm[1]), tcp: Number(pm[2]), pg: Number(pm[3]) };
  replica = { process: r, http: Number(rm_[1]) };
}, 90_000);

afterAll(async () => {
  for (const node of [primary?.process, replica?.process]) {
    node?.kill('SIGTERM');
    await node?.exited;
  }
  await agent?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** GET over HTTPS trusting only the test CA. */
async function httpsGet(
  port: number,
  target: string,
  token?: string,
): Promise<{ status: number; text: string }> {
  const response = await request(`https://127.0.0.1:${port}${target}`, {
    dispatcher: agent,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.statusCode, text: await response.body.text() };
}

/** The row count of `table` on the node at `port` once it reaches `expected` (or the last seen). */
async function countOnceAt(port: number, table: string, expected: number): Promise<number> {
  const deadline = Date.now() + 20_000;
  let count = -1;
  while (Date.now() < deadline) {
    const answer = await httpsGet(
      port,
      `/exec?query=${encodeURIComponent(`SELECT count(*) FROM ${table}`)}`,
      QUERY_TOKEN,
    );
    if (answer.status === 200) count = (JSON.parse(answer.text) as { dataset: number[][] }).dataset[0]![0]!;
    if (count === expected) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return count;
}

describe.skipIf(!hasOpenssl)('TLS on every listener', () => {
  test('the PostgreSQL port speaks TLS after SSLRequest, verified by psql and node-postgres, and refuses plain text', async () => {
    const psql = (sslmode: string) =>
      run(
        'psql',
        [
          `host=localhost port=${primary.pg} user=admin dbname=qdb sslmode=${sslmode} sslrootcert=${caPath}`,
          '-X',
          '-A',
          '-t',
          '-c',
          'SELECT 40 + 2',
        ],
        {
          env: { ...process.env, PGPASSWORD: 'quest', PGCONNECT_TIMEOUT: '5' },
        },
      );
    expect((await psql('verify-full')).stdout.trim()).toBe('42');
    const plain = await psql('disable').then(
      () => '',
      (error: { stderr: string }) => error.stderr,
    );
    expect(plain).toMatch(/requires TLS/);
    const client = new pg.Client({
      host: 'localhost',
      port: primary.pg,
      user: 'admin',
      password: 'quest',
      database: 'qdb',
      ssl: { ca: await readFile(caPath) },
    });
    await client.connect();
    try {
      expect((await client.query('SELECT 7 AS seven')).rows).toEqual([{ seven: '7' }]);
    } finally {
      await client.end();
    }
  });

  test('the official client writes over https:: and tcps::; both nodes answer over HTTPS', async () => {
    const https = await QuestDbSender.fromConfig(
      `https::addr=127.0.0.1:${primary.http};tls_ca=${caPath};token=${ILP_TOKEN};auto_flush=off;`,
    );
    for (let i = 0; i < 3; i++) await https.table('tls_http').intColumn('i', i).atNow();
    await https.flush();
    await https.close();
    const tcps = await QuestDbSender.fromConfig(
      `tcps::addr=127.0.0.1:${primary.tcp};tls_ca=${caPath};auto_flush=off;`,
    );
    await tcps.connect();
    for (let i = 0; i < 2; i++) await tcps.table('tls_tcp').intColumn('i', i).atNow();
    await tcps.flush();
    await tcps.close();
    for (const port of [primary.http, replica.http]) {
      expect(await countOnceAt(port, 'tls_http', 3)).toBe(3);
      expect(await countOnceAt(port, 'tls_tcp', 2)).toBe(2);
    }
  });

  test('walship’s Sender writes over https:: with tls_ca, and is refused without the CA', async () => {
    const sender = Sender.fromConfig(
      `https::addr=127.0.0.1:${primary.http};tls_ca=${caPath};token=${ILP_TOKEN};`,
    );
    await sender.table('tls_sender').intColumn('i', 1).atNow();
    await sender.flush();
    await sender.close();
    expect(await countOnceAt(primary.http, 'tls_sender', 1)).toBe(1);
    const untrusting = Sender.fromConfig(
      `https::addr=127.0.0.1:${primary.http};token=${ILP_TOKEN};retry_timeout=0;`,
    );
    await untrusting.table('tls_sender').intColumn('i', 2).atNow();
    await expect(untrusting.flush()).rejects.toThrow();
    await untrusting.close().catch(() => {});
  });

  test('plain HTTP to the TLS port gets no answer', async () => {
    await expect(fetch(`http://127.0.0.1:${primary.http}/status`)).rejects.toThrow();
  });

  test('the primary advertises an https:// URL, and walship status reads both nodes with NODE_EXTRA_CA_CERTS', async () => {
    const store = await FsStore.open({ root: path.join(dir, 'store') });
    const epochKeys: string[] = [];
    for await (const info of listAll(store, EPOCHS_PREFIX)) epochKeys.push(info.key);
    const records = await Promise.all(
      epochKeys.map(async (key) => {
        const got = await store.get(key);
        return got?.status === 'ok' ? new TextDecoder().decode(got.body) : '';
      }),
    );
    expect(records.join('\n')).toContain(`"https://127.0.0.1:`);
    const nodes = `https://127.0.0.1:${primary.http},https://127.0.0.1:${replica.http}`;
    const trusted = spawnWalship(['status', '--nodes', nodes, '--json'], { NODE_EXTRA_CA_CERTS: caPath });
    const untrusted = spawnWalship(['status', '--nodes', nodes, '--json'], { NODE_EXTRA_CA_CERTS: '' });
    const [ok, refused] = [await trusted.exited, await untrusted.exited];
    expect([ok.code, trusted.output()]).toEqual([0, expect.stringContaining('"role":"replica"')]);
    expect(trusted.output()).toContain('"role":"primary"');
    expect(refused.code).not.toBe(0);
  });

  test('a certificate with a key that is not its own, or a file that is missing, stops the start', async () => {
    await expect(
      loadTlsCredentials(path.join(dir, 'server.pem'), path.join(dir, 'ca.key'), KEYS),
    ).rejects.toThrow(/http\.tls\.cert\.path \/ http\.tls\.key\.path: not a usable certificate and key/);
    await expect(
      loadTlsCredentials(path.join(dir, 'nope.pem'), path.join(dir, 'server.key'), KEYS),
    ).rejects.toThrow(InvalidConfigError);
    await writeFile(path.join(dir, 'garbage.pem'), 'not pem');
    await expect(
      loadTlsCredentials(path.join(dir, 'garbage.pem'), path.join(dir, 'server.key'), KEYS),
    ).rejects.toThrow(InvalidConfigError);
    const child = spawnWalship([
      ...nodeArgs('primary', 'bad'),
      `--http.tls.key.path=${path.join(dir, 'ca.key')}`,
    ]);
    const exit = await child.exited;
    expect(exit.code).not.toBe(0);
    expect(child.output()).toMatch(/not a usable certificate and key/);
    expect(child.output()).not.toContain(ILP_TOKEN);
  });
});
