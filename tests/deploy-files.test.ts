/**
 * Issue 19 item 6: the files of deploy/ say what walship expects of them. The configuration files
 * load with walship's own parser and one starts a node (`walship --config`, the role from the
 * file); the systemd unit waits longer than a node's stop bound and does not restart a
 * configuration error; the container file exposes the ports its configuration listens on and asks
 * /health on the HTTP one. Where systemd-analyze is installed it verifies the unit. What could not
 * be run here (systemd as PID 1, a container engine) is listed in docs/deploy.md.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseHostPort } from '../cli/config.js';
import { EXIT, STOP_BOUND_MS } from '../cli/io.js';
import { startRole } from '../cli/node.js';
import { spawnWalship } from './helpers/walship-process.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DEPLOY = path.join(ROOT, 'deploy');
const HAS_SYSTEMD_ANALYZE = await run('systemd-analyze', ['--version']).then(
  () => true,
  () => false,
);

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-deploy-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** `Key=Value` lines of one section of a systemd unit (a key given twice keeps both, in order). */
function unitSection(text: string, section: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      current = line.slice(1, -1);
      continue;
    }
    const equals = line.indexOf('=');
    if (current !== section || equals < 0) continue;
    const key = line.slice(0, equals);
    keys.set(key, [...(keys.get(key) ?? []), line.slice(equals + 1)]);
  }
  return keys;
}

/** systemd's time spans as these files write them: `15s`, `2s`, `1min`. */
function systemdSeconds(text: string): number {
  const match = /^(\d+)(s|min)?$/.exec(text);
  if (match === null) throw new Error(`not a time span this test reads: ${text}`);
  return Number(match[1]) * (match[2] === 'min' ? 60 : 1);
}

describe('deploy/server.conf and deploy/container.conf', () => {
  it('server.conf loads with every key known and starts a primary', async () => {
    const config = await loadConfig({ argv: ['--config', path.join(DEPLOY, 'server.conf')], env: {} });
    expect(startRole(config, undefined)).toBe('primary');
    expect(config.string('admin.token.file')).toBe('/var/lib/walship/admin.token');
    expect(String(config.get('node.data.dir')).startsWith('/var/lib/walship/')).toBe(true);
  });

  it('container.conf takes its role from the environment, and refuses to guess one', async () => {
    const file = path.join(DEPLOY, 'container.conf');
    const replica = await loadConfig({
      argv: ['--config', file],
      env: { WALSHIP_REPLICATION_ROLE: 'replica' },
    });
    expect(startRole(replica, undefined)).toBe('replica');
    const none = await loadConfig({ argv: ['--config', file], env: {} });
    expect(() => startRole(none, undefined)).toThrow(/replication\.role is none \(default\)/);
  });

  it('`walship --config deploy/server.conf` runs a primary that made its admin token and answers /health', async () => {
    const token = path.join(dir, 'admin.token');
    const node = spawnWalship(['--config', path.join(DEPLOY, 'server.conf')], {
      // Variables win over the file: its paths and public addresses, made local to this test.
      WALSHIP_REPLICATION_OBJECT_STORE: `fs::root=${path.join(dir, 'store')};`,
      WALSHIP_NODE_DATA_DIR: path.join(dir, 'primary'),
      WALSHIP_ADMIN_TOKEN_FILE: token,
      WALSHIP_HTTP_BIND_TO: '127.0.0.1:0',
      WALSHIP_LINE_TCP_NET_BIND_TO: '127.0.0.1:0',
      WALSHIP_PG_NET_BIND_TO: '127.0.0.1:0',
    });
    try {
      const [, port] = await node.waitFor(/walship primary \S+ listening: http (\d+)/);
      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', role: 'primary' });
      expect((await stat(token)).mode & 0o777).toBe(0o600);
      const secret = (await readFile(token, 'utf8')).trim();
      expect(node.output()).toContain(`created a random admin token in ${token}`);
      expect(node.output()).not.toContain(secret);
      // The node holds the file's token: a wrong one is 401, the right one reaches the actions (404: none by that name).
      const ask = (bearer: string) =>
        fetch(`http://127.0.0.1:${port}/admin/no-such-action`, {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}` },
        }).then((response) => response.status);
      expect(await ask('wrong')).toBe(401);
      expect(await ask(secret)).toBe(404);
    } finally {
      node.kill('SIGTERM');
    }
    expect((await node.exited).code).toBe(0);
  });
});

describe('deploy/walship@.service', () => {
  it('starts `walship --config` per instance, outwaits the stop bound and does not restart a bad configuration', async () => {
    const service = unitSection(await readFile(path.join(DEPLOY, 'walship@.service'), 'utf8'), 'Service');
    expect(service.get('ExecStart')).toEqual(['walship --config /etc/walship/%i.conf']);
    expect(service.get('KillSignal')).toEqual(['SIGTERM']);
    expect(systemdSeconds(service.get('TimeoutStopSec')![0]!) * 1000).toBeGreaterThan(STOP_BOUND_MS);
    expect(service.get('Restart')).toEqual(['on-failure']);
    expect(service.get('RestartPreventExitStatus')).toEqual([String(EXIT.usage)]);
    expect(service.get('User')).toEqual(['walship']);
    expect(service.get('NoNewPrivileges')).toEqual(['yes']);
    expect(service.get('ProtectSystem')).toEqual(['strict']);
    expect(service.get('StateDirectory')).toEqual(['walship']);
  });

  it.skipIf(!HAS_SYSTEMD_ANALYZE)(
    'passes systemd-analyze verify (its ExecStart pointed at an existing file)',
    async () => {
      // verify checks that the command exists; walship is not installed here, node is.
      const text = await readFile(path.join(DEPLOY, 'walship@.service'), 'utf8');
      const unitDir = path.join(dir, 'units');
      await mkdir(unitDir);
      await writeFile(
        path.join(unitDir, 'walship@.service'),
        text.replace('ExecStart=walship ', `ExecStart=${process.execPath} `),
      );
      const { stdout, stderr } = await run('systemd-analyze', ['verify', 'walship@primary.service'], {
        cwd: unitDir,
      });
      expect(`${stdout}${stderr}`.trim()).toBe('');
    },
  );
});

describe('deploy/Containerfile', () => {
  it('exposes the ports container.conf listens on, asks /health on the HTTP one and runs that file', async () => {
    const text = await readFile(path.join(DEPLOY, 'Containerfile'), 'utf8');
    const config = await loadConfig({
      argv: ['--config', path.join(DEPLOY, 'container.conf')],
      env: {},
    });
    const ports = (['http.bind.to', 'line.tcp.net.bind.to', 'pg.net.bind.to'] as const).map(
      (key) => parseHostPort(config, key).port,
    );
    const exposed = /^EXPOSE (.+)$/m.exec(text)?.[1]?.split(/\s+/).map(Number);
    expect(exposed).toEqual(ports);
    expect(text).toContain(`fetch('http://127.0.0.1:${ports[0]}/health')`);
    expect(text).toMatch(/^COPY deploy\/container\.conf \/etc\/walship\/server\.conf$/m);
    expect(text).toMatch(/^CMD \["--config", "\/etc\/walship\/server\.conf"\]$/m);
    expect(text).toMatch(/^VOLUME \["\/var\/lib\/walship"\]$/m);
    expect(String(config.get('node.data.dir')).startsWith('/var/lib/walship/')).toBe(true);
    expect(text).toMatch(/^USER walship/m);
    expect(text).toContain('npm ci --omit=dev');
  });

  it('tells docker stop to wait longer than the stop bound', async () => {
    const doc = await readFile(path.join(ROOT, 'docs', 'deploy.md'), 'utf8');
    const seconds = Number(/--stop-timeout (\d+)/.exec(doc)?.[1]);
    expect(seconds * 1000).toBeGreaterThan(STOP_BOUND_MS);
  });
});
