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

async function tcpOf(...flags: string[]) {
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
    const settings = await primarySettings(config, opened);
    return settings.tcp === undefined ? undefined : { host: settings.tcp.host, port: settings.tcp.port };
  } finally {
    await opened.store.close();
  }
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
