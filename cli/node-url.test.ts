import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodeUrl, systemClock, systemRandom } from '../core/index.js';
import { listNodeRegistrations, readEpoch } from '../layout/index.js';
import { WalshipNode } from '../node/index.js';
import { loadConfig } from './config.js';
import { nodeSettings } from './node-settings.js';

describe('nodeUrl: the one derivation of the URL a node advertises', () => {
  it('is node.url when set, else the listener with a wildcard host shown as loopback', () => {
    expect(nodeUrl({ host: '10.0.0.5', port: 9000 }, 'https://db.example:443')).toBe(
      'https://db.example:443',
    );
    expect(nodeUrl({ host: '0.0.0.0', port: 9000 }, undefined)).toBe('http://127.0.0.1:9000');
    expect(nodeUrl({ host: '::', port: 9000 }, undefined)).toBe('http://[::1]:9000');
    expect(nodeUrl({ host: 'fd00::1', port: 9000, tls: {} }, undefined)).toBe('https://[fd00::1]:9000');
  });

  it('replaces a port of 0 by the bound port, and leaves any other port alone', () => {
    expect(nodeUrl({ host: '127.0.0.1', port: 0 }, undefined, 41234)).toBe('http://127.0.0.1:41234');
    expect(nodeUrl({ host: '127.0.0.1', port: 0 }, 'http://node-a:0', 41234)).toBe('http://node-a:41234');
    expect(nodeUrl({ host: '127.0.0.1', port: 9000 }, undefined, 41234)).toBe('http://127.0.0.1:9000');
  });
});

describe('with node.url unset, the epoch record and the registration advertise the same URL', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'walship-node-url-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('a primary bound to 0.0.0.0 on a free port', async () => {
    const config = await loadConfig({
      argv: [
        `--replication.object.store=fs::root=${path.join(dir, 'store')};`,
        `--node.data.dir=${path.join(dir, 'data')}`,
        '--http.bind.to=0.0.0.0:0',
        '--line.tcp.enabled=false',
        '--replication.node.register.interval=60s',
      ],
      env: {},
      fixed: { 'replication.role': 'primary' },
    });
    const settings = await nodeSettings(config);
    const node = await WalshipNode.open('primary', settings, {
      clock: systemClock,
      random: systemRandom,
      log: pino({ level: 'silent' }),
    });
    try {
      await node.started;
      const expected = `http://127.0.0.1:${node.httpPort}`;
      expect((await readEpoch(settings.primary.store, 1n))?.url).toBe(expected);
      let registered: string | undefined;
      for (let attempt = 0; attempt < 100 && registered === undefined; attempt++) {
        registered = (await listNodeRegistrations(settings.primary.store)).nodes[0]?.record.url;
        if (registered === undefined) await systemClock.sleep(50);
      }
      expect(registered).toBe(expected);
    } finally {
      await node.close();
      await settings.primary.store.close();
    }
  });
});
