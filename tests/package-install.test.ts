/**
 * Issue 19 item 6: the packed tarball installs in an empty folder, `npx walship --help` works and
 * every `exports` entry imports. The package is built into a temporary folder (never the
 * checkout's dist/, which other runs use), packed with npm's own `files` rules, checked for what it
 * must not carry (test helpers, tests, benchmarks) and for imports it cannot satisfy, then
 * installed from npm's cache.
 *
 * The install skips dependency install scripts (`--ignore-scripts`): better-sqlite3's would
 * download a prebuilt binary, or compile SQLite for minutes where GitHub is out of reach, and
 * neither `walship --help` nor an export's import loads SQLite. What that script needs is in
 * docs/deploy.md. About 30 s, most of it the TypeScript build.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The build, the pack and the install from npm's cache, with room for a busy machine. */
const SETUP_TIMEOUT_MS = 240_000;

interface PackedManifest {
  version: string;
  bin: Record<string, string>;
  exports: Record<string, string>;
}

let dir = '';
let app = '';
let packed: string[] = [];
let manifest: PackedManifest;

/** npm without the npm_* variables of a parent `npm test`, which would re-point its prefix and config. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
}

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, env: npmEnv(), maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'walship-package-'));
  const pkg = path.join(dir, 'walship');
  await mkdir(pkg);
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(process.execPath, [
    tsc,
    '-p',
    path.join(ROOT, 'tsconfig.build.json'),
    '--outDir',
    path.join(pkg, 'dist'),
  ]);
  for (const file of ['package.json', 'README.md', 'LICENSE'])
    await copyFile(path.join(ROOT, file), path.join(pkg, file));
  // --ignore-scripts: `prepare` would build again, into this folder, what was just built.
  const [report] = JSON.parse(
    await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir], pkg),
  ) as {
    filename: string;
    files: { path: string }[];
  }[];
  packed = report!.files.map((file) => file.path);
  manifest = JSON.parse(await readFile(path.join(pkg, 'package.json'), 'utf8')) as PackedManifest;
  app = path.join(dir, 'app');
  await mkdir(app);
  await writeFile(path.join(app, 'package.json'), '{ "name": "app", "private": true }\n');
  await npm(
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--ignore-scripts',
      path.join(dir, report!.filename),
    ],
    app,
  );
}, SETUP_TIMEOUT_MS);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the packed tarball', () => {
  it('carries no test helpers, tests or benchmarks, and the bin and every export', () => {
    expect(packed.length).toBeGreaterThan(100);
    const unwanted = packed.filter(
      (file) => /(^|\/)testing\//.test(file) || /\.test\./.test(file) || /^dist\/(tests|bench)\//.test(file),
    );
    expect(unwanted).toEqual([]);
    for (const target of [...Object.values(manifest.bin), ...Object.values(manifest.exports)])
      expect(packed).toContain(path.posix.normalize(target));
    expect(packed).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE']));
  });

  it('has every relative import of its modules inside it', async () => {
    const contents = new Set(packed);
    const missing: string[] = [];
    for (const file of packed.filter((name) => name.endsWith('.js'))) {
      const text = await readFile(path.join(app, 'node_modules', 'walship', file), 'utf8');
      for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)) {
        const target = path.posix.join(path.posix.dirname(file), match[1]!);
        if (!contents.has(target)) missing.push(`${file} -> ${match[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('installs in an empty folder, where `npx walship --help` lists the commands', async () => {
    const { stdout } = await run('npx', ['--no-install', 'walship', '--help'], { cwd: app, env: npmEnv() });
    for (const command of ['primary', 'replica', '--config server.conf', 'switchover', 'restore', 'verify'])
      expect(stdout).toContain(command);
    const version = await run('npx', ['--no-install', 'walship', 'version'], { cwd: app, env: npmEnv() });
    expect(version.stdout.trim()).toBe(`walship ${manifest.version}`);
  });

  it('imports every exports entry from the installed package', async () => {
    const script = `
      const names = ${JSON.stringify(Object.keys(manifest.exports).map((key) => `walship/${key.slice(2)}`))};
      const out = {};
      for (const name of names) out[name] = Object.keys(await import(name)).length;
      const { Sender, ReadRouter } = await import('walship/client');
      out.client = [typeof Sender, typeof ReadRouter];
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: app });
    const out = JSON.parse(stdout) as Record<string, number | string[]>;
    for (const key of Object.keys(manifest.exports))
      expect(out[`walship/${key.slice(2)}`]).toBeGreaterThan(0);
    expect(out.client).toEqual(['function', 'function']);
  });
});
