import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidConfigError } from '../core/index.js';
import { CONFIG_KEYS, envNameOf, loadConfig, parseBytes, parseDurationMs, parseHostPort } from './config.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-config-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function conf(text: string): Promise<string> {
  const file = path.join(dir, `${Math.random()}.conf`);
  await writeFile(file, text);
  return file;
}

describe('node configuration', () => {
  it('checks for a snapshot to publish hourly by default, failover or not; 0 turns it off', async () => {
    for (const argv of [[], ['--replication.failover.auto=true']]) {
      const config = await loadConfig({ argv, env: {} });
      expect(config.number('replication.snapshot.interval')).toBe(3_600_000);
      expect(config.sourceOf('replication.snapshot.interval')).toBe('default');
    }
    const off = await loadConfig({
      argv: ['--replication.failover.auto=true', '--replication.snapshot.interval=0'],
      env: {},
    });
    expect(off.number('replication.snapshot.interval')).toBe(0);
  });

  it('fills defaults with their units', async () => {
    const config = await loadConfig({ argv: [], env: {} });
    expect(config.number('cairo.wal.segment.rollover.size')).toBe(2 * 1024 * 1024);
    expect(config.number('replication.primary.throttle.window.duration')).toBe(10_000);
    expect(config.number('replication.replica.poll.interval')).toBe(1000);
    expect(config.get('replication.ack.mode')).toBe('local');
    expect(config.sourceOf('replication.ack.mode')).toBe('default');
    expect(config.get('replication.object.store')).toBeUndefined();
    expect(() => config.require('replication.object.store')).toThrow(/WALSHIP_REPLICATION_OBJECT_STORE/);
  });

  it('reads file, environment and flags; flags win over the environment, the environment over the file', async () => {
    const file = await conf(
      '# comment\nreplication.ack.mode=durable\nhttp.bind.to=127.0.0.1:1111\nnode.id=from-file\nquery.workers=3\n',
    );
    const config = await loadConfig({
      argv: ['--config', file, '--http.bind.to=127.0.0.1:3333', '--node.id', 'from-flag'],
      env: {
        WALSHIP_HTTP_BIND_TO: '127.0.0.1:2222',
        WALSHIP_QUERY_WORKERS: '5',
        WALSHIP_S3_ENDPOINT: 'ignored',
      },
    });
    expect(config.get('replication.ack.mode')).toBe('durable');
    expect(config.sourceOf('replication.ack.mode')).toBe(`${file}:2`);
    expect(config.get('http.bind.to')).toBe('127.0.0.1:3333');
    expect(config.get('query.workers')).toBe(5);
    expect(config.sourceOf('query.workers')).toBe('env WALSHIP_QUERY_WORKERS');
    expect(config.get('node.id')).toBe('from-flag');
    expect(parseHostPort(config, 'http.bind.to')).toEqual({ host: '127.0.0.1', port: 3333 });
  });

  it('every key has an environment name and a parsable default', async () => {
    for (const key of Object.keys(CONFIG_KEYS)) expect(envNameOf(key as never)).toMatch(/^WALSHIP_[A-Z_]+$/);
    await expect(loadConfig({ argv: [], env: {} })).resolves.toBeDefined();
  });

  it.each([
    [{ argv: ['--bogus.key=1'] }, 'unknown flag --bogus.key'],
    [
      { argv: ['--replication.ack.mode=eventually'] },
      'replication.ack.mode (flag --replication.ack.mode): expected one of local, durable',
    ],
    [
      { env: { WALSHIP_QUERY_WORKERS: 'two' } },
      'query.workers (env WALSHIP_QUERY_WORKERS): expected a whole number',
    ],
    [{ argv: ['--cairo.wal.segment.rollover.size=lots'] }, 'expected a size in bytes'],
    [{ argv: ['--replication.replica.poll.interval=fast'] }, 'expected a duration'],
    [{ argv: ['--node.id'] }, 'flag --node.id needs a value'],
    [{ argv: ['stray'] }, 'unexpected argument (not a --flag; values go in --key=value)'],
    [{ argv: ['--replication.object.store=s3::bucket=b;'] }, 'required key root is missing'],
  ])('refuses %j naming the key', async (sources, message) => {
    const error = await loadConfig({ argv: [], env: {}, ...sources }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidConfigError);
    expect((error as Error).message).toContain(message);
  });

  it('refuses unknown keys and repeated keys in a file, naming the line', async () => {
    const unknown = await conf('replication.ack.mode=local\nreplication.pool.size=3\n');
    await expect(loadConfig({ argv: ['--config', unknown], env: {} })).rejects.toThrow(
      `${unknown}:2: unknown key "replication.pool.size"`,
    );
    const twice = await conf('node.id=a\nnode.id=b\n');
    await expect(loadConfig({ argv: ['--config', twice], env: {} })).rejects.toThrow(
      'key node.id is set twice',
    );
    await expect(loadConfig({ argv: ['--config', path.join(dir, 'missing.conf')], env: {} })).rejects.toThrow(
      'cannot read config file',
    );
  });

  it('never shows secrets, in descriptions or in errors', async () => {
    const config = await loadConfig({
      argv: [
        '--admin.token=ADMIN-SECRET',
        '--http.password=HTTP-SECRET',
        '--replication.object.store=s3::bucket=b;root=r;access_key_id=AK;secret_access_key=S3-SECRET;',
      ],
      env: {},
    });
    const described = config.describe().join('\n');
    for (const secret of ['ADMIN-SECRET', 'HTTP-SECRET', 'S3-SECRET'])
      expect(described).not.toContain(secret);
    expect(described).toContain('admin.token=**** (flag --admin.token)');
    const error = await loadConfig({
      argv: ['--replication.object.store=s3::bucket=b;root=r;secret_access_key=S3-SECRET;bad'],
      env: {},
    }).catch((e: Error) => e);
    expect((error as Error).message).not.toContain('S3-SECRET');
  });

  it('parses sizes and durations with units', () => {
    expect(parseBytes('2097152')).toBe(2097152);
    expect(parseBytes('512k')).toBe(524288);
    expect(parseBytes('2M')).toBe(2097152);
    expect(parseBytes('1g')).toBe(1073741824);
    expect(parseBytes('2.5m')).toBeUndefined();
    expect(parseDurationMs('250')).toBe(250);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('10s')).toBe(10_000);
    expect(parseDurationMs('5m')).toBe(300_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
    expect(parseDurationMs('-1s')).toBeUndefined();
  });
});
