/**
 * Issue 13 item 10: the command line never echoes a secret it was given. `walship --admin.token=…`
 * answered `unknown command "--admin.token=…"`, and several parsers quoted a stray argument whole
 * (which may be a token that missed its flag). Every command is tried with every kind of bad
 * argument carrying a token; the token must appear in neither stream.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epochKey } from '../layout/index.js';
import { FsStore } from '../objectstore/index.js';
import { describeArgument, EXIT, redactArgvValues } from './io.js';
import { main } from './main.js';

const SECRET = 'S3cr3t-t0ken-value-4711';

/** Every command line prefix that `walship help` lists, with its sub-commands. */
const COMMANDS: readonly string[][] = [
  ['primary'],
  ['replica'],
  ['admin', 'resume'],
  ['admin', 'snapshot'],
  ['promote'],
  ['switchover'],
  ['status'],
  ['drill'],
  ['demo'],
  ['verify'],
  ['sequencer', 'serve'],
  ['sequencer', 'init'],
  ['sequencer', 'status'],
  ['sequencer', 'fence'],
  ['router'],
  ['gc'],
  ['restore'],
  ['store', 'check'],
  ['--config', '/nonexistent/server.conf'],
  ['-c', '/nonexistent/server.conf'],
];

/** Bad arguments, each carrying SECRET where a careless message would quote it. */
const BAD_ARGUMENTS: readonly string[][] = [
  [`--admin.tokn=${SECRET}`], // a typo of a known key
  [`--ADMIN_TOKEN=${SECRET}`], // a key in the environment's spelling
  ['--bogus-flag', SECRET], // an unknown flag with a separate value
  [SECRET], // a stray positional
  ['--admin.token=', SECRET], // a value that missed its flag
];

async function run(argv: string[]): Promise<{ code: number | string; output: string }> {
  const lines: string[] = [];
  const io = { stdout: (t: string) => lines.push(t), stderr: (t: string) => lines.push(t), env: {} };
  // A throw would reach bin.ts's default handler, which prints the whole error: count it as output.
  const code = await main(argv, io).catch((error: unknown) => `threw ${String(error)}`);
  return { code, output: lines.join('\n') };
}

describe('no secret from argv in any message (issue 13 item 10)', () => {
  it('the list above covers every command of `walship help`', async () => {
    const { output } = await run(['help']);
    const listed = output
      .slice(output.indexOf('Commands:'))
      .split('\n')
      .slice(1)
      .map((line) => /^ {2}([a-z]+)/.exec(line)?.[1])
      .filter((word): word is string => word !== undefined && word !== 'help' && word !== 'version');
    expect(listed.length).toBeGreaterThan(10);
    for (const word of listed) expect(COMMANDS.map((c) => c[0])).toContain(word);
  });

  it.each([
    [[`--admin.token=${SECRET}`], 'expected a command before --admin.token'],
    [[`--admin.token=${SECRET}`, 'primary'], 'expected a command before --admin.token'],
    [[SECRET], 'unknown command (not shown: not a command word)'],
    [['frobnicate', `--admin.token=${SECRET}`], 'unknown command "frobnicate"'],
    [['store', `--admin.token=${SECRET}`], 'unknown command "store"'],
    [
      ['sequencer', `--sequencer.auth.admin.token=${SECRET}`],
      'unknown sequencer command --sequencer.auth.admin.token',
    ],
  ])('an unknown command %j names the command word only', async (argv, message) => {
    const { code, output } = await run(argv);
    expect(code).toBe(EXIT.usage);
    expect(output).toContain(message);
    expect(output).not.toContain(SECRET);
  });

  const cases = COMMANDS.flatMap((command) => BAD_ARGUMENTS.map((bad) => [...command, ...bad]));
  it.each(cases)('%j: refused without the token in the output', async (...argv) => {
    const { code, output } = await run(argv);
    expect(output).not.toContain(SECRET);
    expect(code).not.toBe(EXIT.ok);
  });

  it('redactArgvValues scrubs the values of secret-looking flags, in every form, from a message', () => {
    const argv = [
      '--admin.tokn',
      SECRET,
      '--http.password=Pa55word-long',
      '--query.auth.token=',
      'Z9-late-value',
      '--x=y',
    ];
    const message = `a ${SECRET} b Pa55word-long c Z9-late-value d y`;
    expect(redactArgvValues(message, argv)).toBe('a **** b **** c **** d y');
    // Short values are left alone: scrubbing "x" would mangle every message.
    expect(redactArgvValues('exit', ['--admin.token=x'])).toBe('exit');
  });

  it('describeArgument shows a flag by its name only, and no other argument', () => {
    expect(describeArgument(`--admin.token=${SECRET}`)).toBe('--admin.token');
    expect(describeArgument(SECRET)).toBe('not a --flag; values go in --key=value');
  });
});

describe('a garbage epoch record (issue 13 item 10)', () => {
  it.each([
    ['not JSON', 'garbage{'],
    ['another shape', '[1,2,3]'],
    ['an epoch that is not a number', '{"epoch":"one","nodeId":"a","url":"","reason":"r","at":"t"}'],
  ])('%s: `walship primary` says so in one line and exits 1', async (_name, body) => {
    const base = await mkdtemp(path.join(tmpdir(), 'walship-garbage-epoch-'));
    try {
      const root = path.join(base, 'store');
      const store = await FsStore.open({ root });
      await store.put(epochKey(1n), new TextEncoder().encode(body));
      await store.close();
      const err: string[] = [];
      const io = { stdout: () => {}, stderr: (t: string) => err.push(t), env: {} };
      const code = await main(
        [
          'primary',
          `--replication.object.store=fs::root=${root};`,
          `--node.data.dir=${path.join(base, 'data')}`,
          '--http.bind.to=127.0.0.1:0',
          '--line.tcp.net.bind.to=127.0.0.1:0',
        ],
        io,
      );
      expect(code).toBe(EXIT.failed);
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(/^walship: epochs\/0+1\.json in .* is not an epoch record \(/);
      expect(err[0]).not.toContain('\n    at ');
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('walship --config: the role from server.conf (issue 19 item 6)', () => {
  let base = '';
  const conf = (role: string) => path.join(base, `${role}.conf`);
  beforeAll(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'walship-config-role-'));
    for (const role of ['primary', 'replica'])
      await writeFile(conf(role), `# a node\nreplication.role=${role}\nnode.data.dir=${base}/${role}\n`);
    await writeFile(conf('none'), `node.data.dir=${base}/none\n`);
  });
  afterAll(() => rm(base, { recursive: true, force: true }));

  async function refused(argv: string[], env: Record<string, string> = {}) {
    const err: string[] = [];
    const io = { stdout: () => {}, stderr: (t: string) => err.push(t), env };
    const code = await main(argv, io);
    return { code, err: err.join('\n') };
  }

  it.each([
    [
      ['primary', '--config', 'CONF:replica'],
      'the command says primary but replication.role=replica (FILE:2)',
    ],
    [['replica', '-c', 'CONF:primary'], 'the command says replica but replication.role=primary (FILE:2)'],
    [['--config', 'CONF:none'], 'replication.role is none (default): set replication.role=primary or'],
    [['-c', 'CONF:none'], 'replication.role is none (default)'],
  ])('%j is refused before anything starts', async (words, message) => {
    const argv = words.map((word) => (word.startsWith('CONF:') ? conf(word.slice(5)) : word));
    const file = argv.find((arg) => arg.endsWith('.conf'))!;
    const { code, err } = await refused(argv);
    expect(code).toBe(EXIT.usage);
    expect(err.startsWith(`walship: ${message.replace('FILE', file)}`)).toBe(true);
    expect(err.split('\n')).toHaveLength(1);
  });

  it('a role from the environment conflicts with the command too; none does not', async () => {
    const { code, err } = await refused(['primary', '--config', conf('none')], {
      WALSHIP_REPLICATION_ROLE: 'replica',
    });
    expect(code).toBe(EXIT.usage);
    expect(err).toContain(
      'the command says primary but replication.role=replica (env WALSHIP_REPLICATION_ROLE)',
    );
  });

  it('`walship --config FILE --help` and `walship --help` describe it', async () => {
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t), env: {} };
    expect(await main(['--config', conf('primary'), '--help'], io)).toBe(EXIT.ok);
    expect(out.join('\n')).toContain("Runs a node in the role server.conf's replication.role names");
    out.length = 0;
    expect(await main(['--help'], io)).toBe(EXIT.ok);
    expect(out.join('\n')).toContain('walship --config server.conf');
    out.length = 0;
    expect(await main(['--config'], io)).toBe(EXIT.usage);
    expect(out.join('\n')).toContain('flag --config needs a value');
  });
});
