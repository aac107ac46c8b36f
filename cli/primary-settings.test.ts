import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';
import { openNodeStore, primarySettings } from './node-settings.js';

let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-primary-settings-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function settingsOf(...flags: string[]) {
  const config = await loadConfig({
    argv: [
      `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
      `--node.data.dir=${dir}`,
      ...flags,
    ],
    env: {},
  });
  const opened = await openNodeStore(config);
  try {
    return await primarySettings(config, opened);
  } finally {
    await opened.store.close();
  }
}

async function tcpOf(...flags: string[]) {
  const settings = await settingsOf(...flags);
  return settings.tcp === undefined ? undefined : { host: settings.tcp.host, port: settings.tcp.port };
}

describe('the ILP/TCP listener address', () => {
  it('follows the HTTP host when line.tcp.net.bind.to is not set: a loopback node stays on loopback', async () => {
    expect(await tcpOf('--http.bind.to=127.0.0.1:9100')).toEqual({ host: '127.0.0.1', port: 9009 });
    expect(await tcpOf()).toEqual({ host: '0.0.0.0', port: 9009 });
  });

  it('is line.tcp.net.bind.to when it is set', async () => {
    expect(await tcpOf('--http.bind.to=127.0.0.1:9100', '--line.tcp.net.bind.to=0.0.0.0:9109')).toEqual({
      host: '0.0.0.0',
      port: 9109,
    });
  });
});

describe('the PostgreSQL door', () => {
  it('listens on 8812 on the HTTP host, on a free port when HTTP asks for one, or where pg.net.bind.to says', async () => {
    const where = async (...flags: string[]) => {
      const pg = (await settingsOf(...flags)).pg;
      return pg === undefined ? undefined : { host: pg.host, port: pg.port };
    };
    expect(await where('--http.bind.to=127.0.0.1:9100')).toEqual({ host: '127.0.0.1', port: 8812 });
    expect(await where('--http.bind.to=127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(await where('--pg.net.bind.to=0.0.0.0:5432')).toEqual({ host: '0.0.0.0', port: 5432 });
    expect(await where('--pg.enabled=false')).toBeUndefined();
  });

  it("has QuestDB's users: admin, and the second user when enabled; SCRAM unless md5 is asked for", async () => {
    const plain = (await settingsOf()).pg!;
    expect(plain.credentials).toEqual([{ user: 'admin', password: 'quest' }]);
    expect(plain.authMethod).toBe('scram-sha-256');
    const both = (
      await settingsOf('--pg.readonly.user.enabled=true', '--pg.readonly.password=ro', '--pg.auth.method=md5')
    ).pg!;
    expect(both.credentials).toEqual([
      { user: 'admin', password: 'quest' },
      { user: 'user', password: 'ro' },
    ]);
    expect(both.authMethod).toBe('md5');
  });
});

describe('the ILP HTTP in-flight budget', () => {
  it('is 256 MiB by default, and grows to line.http.max.request.size when that is larger', async () => {
    expect((await settingsOf()).maxInflightBytes).toBe(256 * 1024 * 1024);
    expect((await settingsOf('--line.http.max.request.size=1g')).maxInflightBytes).toBe(1024 ** 3);
    expect(
      (await settingsOf('--line.http.max.inflight.size=64m', '--line.http.max.request.size=10m'))
        .maxInflightBytes,
    ).toBe(64 * 1024 * 1024);
  });

  it('set by hand below line.http.max.request.size, is refused naming both keys', async () => {
    await expect(
      settingsOf('--line.http.max.inflight.size=10m', '--line.http.max.request.size=20m'),
    ).rejects.toThrow(/line\.http\.max\.inflight\.size .* line\.http\.max\.request\.size/);
  });
});
