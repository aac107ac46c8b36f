import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenOf, createAdminTokenFile } from './admin-token.js';
import { loadConfig } from './config.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-admin-token-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const configWith = (...argv: string[]) => loadConfig({ argv, env: {} });

describe('admin.token.file', () => {
  it('a node creates it once, mode 0600, with a random token the commands then read', async () => {
    const file = path.join(dir, 'fresh', 'nested', 'admin.token');
    const config = await configWith(`--admin.token.file=${file}`);
    expect(await createAdminTokenFile(config)).toBe(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const token = await adminTokenOf(config);
    expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await readFile(file, 'utf8')).toBe(`${token}\n`);
    // Already there: kept as it is, and nothing is written beside it.
    expect(await createAdminTokenFile(config)).toBeUndefined();
    expect(await adminTokenOf(config)).toBe(token);
    expect(await readdir(path.dirname(file))).toEqual(['admin.token']);
  });

  it('nodes started at once over one file all end with the one token that file holds', async () => {
    const file = path.join(dir, 'race', 'admin.token');
    const config = await configWith(`--admin.token.file=${file}`);
    const created = await Promise.all(Array.from({ length: 8 }, () => createAdminTokenFile(config)));
    expect(created.filter((made) => made !== undefined)).toEqual([file]);
    const tokens = await Promise.all(Array.from({ length: 8 }, () => adminTokenOf(config)));
    expect(new Set(tokens).size).toBe(1);
    expect(await readFile(file, 'utf8')).toBe(`${tokens[0]}\n`);
  });

  it('reads the first line of a file written by hand, trimmed', async () => {
    const file = path.join(dir, 'by-hand.token');
    await writeFile(file, '  hand-written-token \nsecond line\n');
    expect(await adminTokenOf(await configWith(`--admin.token.file=${file}`))).toBe('hand-written-token');
  });

  it('refuses both keys at once, a missing file, an empty one and one too long to be a token', async () => {
    const empty = path.join(dir, 'empty.token');
    await writeFile(empty, '\n');
    const huge = path.join(dir, 'huge.token');
    await writeFile(huge, 'x'.repeat(5000));
    const missing = path.join(dir, 'missing.token');
    await expect(
      adminTokenOf(await configWith('--admin.token=t', `--admin.token.file=${empty}`)),
    ).rejects.toThrow('admin.token and admin.token.file are both set');
    await expect(adminTokenOf(await configWith(`--admin.token.file=${missing}`))).rejects.toThrow(
      `cannot read ${missing}: ENOENT (a node creates it at its first start)`,
    );
    await expect(adminTokenOf(await configWith(`--admin.token.file=${empty}`))).rejects.toThrow(
      'holds no token',
    );
    await expect(adminTokenOf(await configWith(`--admin.token.file=${huge}`))).rejects.toThrow(
      'holds no token',
    );
  });

  it('creates nothing when admin.token is given or no file is named', async () => {
    const file = path.join(dir, 'not-made.token');
    // Both keys (refused by adminTokenOf when the node reads its settings): nothing is written first.
    expect(
      await createAdminTokenFile(await configWith('--admin.token=t', `--admin.token.file=${file}`)),
    ).toBeUndefined();
    expect(await createAdminTokenFile(await configWith())).toBeUndefined();
    await expect(stat(file)).rejects.toThrow(/ENOENT/);
    expect(await adminTokenOf(await configWith('--admin.token=given'))).toBe('given');
    expect(await adminTokenOf(await configWith())).toBeUndefined();
  });
});
