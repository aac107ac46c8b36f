import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createAdminHttpHandler, type RunningHttpServer, startHttpServer } from '../core/index.js';
import { ADMIN_USAGE } from './admin.js';
import { EXIT } from './io.js';
import { main } from './main.js';

const TOKEN = 'admin-tok-4c1d-secret';

function capture(env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env }, out, err };
}

interface Sent {
  url: string;
  method: string | undefined;
  authorization: string | null;
}

/** A fetch that records what it was asked and answers `status` with `body`. */
function fakeFetch(status = 200, body: unknown = { ok: true }) {
  const sent: Sent[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    sent.push({
      url: String(input),
      method: init?.method,
      authorization: new Headers(init?.headers).get('authorization'),
    });
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { fetchImpl, sent };
}

const servers: RunningHttpServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.close();
});

describe('walship admin', () => {
  it('resume posts /admin/resume?table=… with the bearer token and prints the answer', async () => {
    const { io, out, err } = capture();
    const { fetchImpl, sent } = fakeFetch(200, { table: 't', resumed: true });
    const code = await main(
      ['admin', 'resume', '--table', 't', '--admin.token=x', '--url', 'http://h:1'],
      io,
      { fetch: fetchImpl },
    );
    expect(code).toBe(EXIT.ok);
    expect(sent).toEqual([
      { url: 'http://h:1/admin/resume?table=t', method: 'POST', authorization: 'Bearer x' },
    ]);
    expect(out.map((t) => JSON.parse(t))).toEqual([{ table: 't', resumed: true }]);
    expect(err).toEqual([]);
  });

  it('encodes the table name; --table=… and --url=… forms work too', async () => {
    const { io } = capture();
    const { fetchImpl, sent } = fakeFetch();
    const name = 'Prix €&table=other #1';
    const code = await main(
      ['admin', 'resume', `--table=${name}`, `--admin.token=${TOKEN}`, '--url=http://h:2/ignored/path'],
      io,
      {
        fetch: fetchImpl,
      },
    );
    expect(code).toBe(EXIT.ok);
    const url = new URL(sent[0]!.url);
    expect(url.origin).toBe('http://h:2');
    expect(url.pathname).toBe('/admin/resume');
    expect([...url.searchParams]).toEqual([['table', name]]);
  });

  it('snapshot posts /admin/snapshot without parameters; the token may come from the environment', async () => {
    const { io } = capture({ WALSHIP_ADMIN_TOKEN: TOKEN });
    const { fetchImpl, sent } = fakeFetch(200, { snapshotId: 'x' });
    expect(await main(['admin', 'snapshot', '--url', 'http://h:3'], io, { fetch: fetchImpl })).toBe(EXIT.ok);
    const url = new URL(sent[0]!.url);
    expect([url.origin, url.pathname, [...url.searchParams]]).toEqual(['http://h:3', '/admin/snapshot', []]);
    expect(sent[0]!.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('sql posts the statement as `query` to /admin/sql; without one it is a usage error', async () => {
    const { io } = capture({ WALSHIP_ADMIN_TOKEN: TOKEN });
    const { fetchImpl, sent } = fakeFetch(200, { table: 'trades' });
    const statement = 'ALTER TABLE trades DEDUP ENABLE UPSERT KEYS(timestamp, sym)';
    expect(await main(['admin', 'sql', statement, '--url', 'http://h:4'], io, { fetch: fetchImpl })).toBe(
      EXIT.ok,
    );
    const url = new URL(sent[0]!.url);
    expect([url.pathname, [...url.searchParams]]).toEqual(['/admin/sql', [['query', statement]]]);
    expect(await main(['admin', 'sql', '--url', 'http://h:4'], io, { fetch: fetchImpl })).toBe(EXIT.usage);
    expect(sent).toHaveLength(1);
  });

  it.each([
    [['--node.url=http://node-b:9100'], 'http://node-b:9100'],
    [['--http.bind.to=0.0.0.0:9101'], 'http://127.0.0.1:9101'],
    [['--http.bind.to=10.1.2.3:9102'], 'http://10.1.2.3:9102'],
    [['--http.bind.to=[::]:9103'], 'http://[::1]:9103'],
    [['--http.bind.to=[::1]:9104'], 'http://[::1]:9104'],
    [[], 'http://127.0.0.1:9000'],
  ])('without --url the node is node.url, else http.bind.to (%j)', async (flags, origin) => {
    const { io } = capture();
    const { fetchImpl, sent } = fakeFetch();
    expect(
      await main(['admin', 'snapshot', `--admin.token=${TOKEN}`, ...flags], io, { fetch: fetchImpl }),
    ).toBe(EXIT.ok);
    expect(new URL(sent[0]!.url).origin).toBe(origin);
  });

  it('admin, switchover and promote read the token from admin.token.file, as npm start writes it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'walship-admin-token-file-'));
    try {
      const file = path.join(dir, 'admin.token');
      await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
      for (const argv of [
        ['admin', 'snapshot', '--url', 'http://h:1'],
        ['promote', '--node', 'http://h:1'],
        ['switchover', '--from', 'http://h:1', '--to', 'http://h:2'],
      ]) {
        const { io } = capture();
        const { fetchImpl, sent } = fakeFetch(500, { code: 'down' });
        // Not a usage error: the file was read (a missing one is, below).
        expect(await main([...argv, `--admin.token.file=${file}`], io, { fetch: fetchImpl })).not.toBe(
          EXIT.usage,
        );
        const posts = sent.filter((request) => request.method === 'POST');
        // switchover reads both nodes' /status first and stops there: no POST, no token sent.
        if (argv[0] !== 'switchover') expect(posts.map((p) => p.authorization)).toEqual([`Bearer ${TOKEN}`]);
        expect(sent.length, argv.join(' ')).toBeGreaterThan(0);
      }
      const { io, err } = capture();
      expect(await main(['admin', 'snapshot', `--admin.token.file=${path.join(dir, 'none')}`], io)).toBe(
        EXIT.usage,
      );
      expect(err.join('\n')).toContain('a node creates it at its first start');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a missing token is a usage error (exit 2) and nothing is sent', async () => {
    const { io, err } = capture();
    const { fetchImpl, sent } = fakeFetch();
    expect(
      await main(['admin', 'resume', '--table', 't', '--url', 'http://h:1'], io, { fetch: fetchImpl }),
    ).toBe(EXIT.usage);
    expect(err.join('\n')).toContain('admin.token');
    expect(sent).toEqual([]);
  });

  it.each([
    [['admin', 'resume', '--admin.token=x', '--url', 'http://h:1'], '--table'],
    [['admin', 'resume', '--admin.token=x', '--table'], '--table needs a value'],
    [['admin', 'frobnicate', '--admin.token=x'], 'walship admin <action>'],
    [['admin', 'resume', '--admin.token=x', '--table', 't', '--bogus=1'], 'unknown flag --bogus'],
  ])('bad arguments are usage errors (exit 2): %j', async (argv, message) => {
    const { io, err } = capture();
    const { fetchImpl, sent } = fakeFetch();
    expect(await main(argv, io, { fetch: fetchImpl })).toBe(EXIT.usage);
    expect(err.join('\n')).toContain(message);
    expect(sent).toEqual([]);
  });

  it('--help prints the usage (exit 0); no action prints it too (exit 2)', async () => {
    const help = capture();
    expect(await main(['admin', '--help'], help.io)).toBe(EXIT.ok);
    expect(help.out).toEqual([ADMIN_USAGE]);
    const none = capture();
    expect(await main(['admin'], none.io)).toBe(EXIT.usage);
    expect([...none.out, ...none.err].join('\n')).toContain('walship admin <action>');
  });

  it('an unreachable node is exit 3, naming the node and never the token', async () => {
    const { io, out, err } = capture();
    const failing = (async () => {
      throw new TypeError('fetch failed');
    }) as typeof fetch;
    expect(
      await main(['admin', 'resume', '--table', 't', `--admin.token=${TOKEN}`, '--url', 'http://h:1'], io, {
        fetch: failing,
      }),
    ).toBe(EXIT.unavailable);
    expect(err.join('\n')).toContain('cannot reach http://h:1');
    expect([...out, ...err].join('\n')).not.toContain(TOKEN);
  });

  it('a closed port (real fetch) is exit 3', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const { io, err } = capture();
    expect(
      await main(['admin', 'snapshot', `--admin.token=${TOKEN}`, '--url', `http://127.0.0.1:${port}`], io),
    ).toBe(EXIT.unavailable);
    expect(err.join('\n')).toContain(`cannot reach http://127.0.0.1:${port}`);
  });

  it.each([
    [401, EXIT.failed],
    [404, EXIT.failed],
    [400, EXIT.failed],
    [409, EXIT.failed],
    [500, EXIT.unavailable],
    [503, EXIT.unavailable],
  ])('an answer of %i prints the body on stderr and exits %i', async (status, exit) => {
    const { io, out, err } = capture();
    const body = { code: 'SOME_CODE', message: 'what happened' };
    const { fetchImpl } = fakeFetch(status, body);
    expect(
      await main(['admin', 'resume', '--table', 't', '--admin.token=x', '--url', 'http://h:1'], io, {
        fetch: fetchImpl,
      }),
    ).toBe(exit);
    expect(out).toEqual([]);
    expect(err.map((t) => JSON.parse(t))).toEqual([body]);
  });

  it('talks to a real admin endpoint: right token 200, wrong token 401 (exit 1)', async () => {
    const resumed: string[] = [];
    const server = await startHttpServer(
      [
        createAdminHttpHandler(TOKEN, {
          resume: async (params) => {
            resumed.push(params.get('table') ?? '');
            return { resumed: params.get('table') };
          },
        }),
      ],
      { host: '127.0.0.1', port: 0 },
      pino({ level: 'silent' }),
    );
    servers.push(server);
    const url = `http://127.0.0.1:${server.port}`;
    const good = capture();
    expect(
      await main(['admin', 'resume', '--table', 'Trades', `--admin.token=${TOKEN}`, '--url', url], good.io),
    ).toBe(EXIT.ok);
    expect(JSON.parse(good.out[0]!)).toEqual({ resumed: 'Trades' });
    const bad = capture();
    expect(
      await main(['admin', 'resume', '--table', 'Trades', '--admin.token=wrong', '--url', url], bad.io),
    ).toBe(EXIT.failed);
    expect(JSON.parse(bad.err[0]!)).toMatchObject({ code: 'unauthorized' });
    expect(resumed).toEqual(['Trades']);
    for (const text of [...good.out, ...good.err, ...bad.out, ...bad.err]) expect(text).not.toContain(TOKEN);
  });
});

describe('walship admin as the docs write it (issue 13 item 10)', () => {
  it('--node URL names the node, as in `walship promote --node`; --node=URL too', async () => {
    for (const flags of [['--node', 'http://h:4'], ['--node=http://h:4']]) {
      const { io, err } = capture();
      const { fetchImpl, sent } = fakeFetch();
      const code = await main(['admin', 'resume', '--table', 'T', ...flags, '--admin.token=x'], io, {
        fetch: fetchImpl,
      });
      expect([code, err]).toEqual([EXIT.ok, []]);
      expect(sent.map((s) => s.url)).toEqual(['http://h:4/admin/resume?table=T']);
    }
  });

  it('--node and --url naming different nodes is a usage error, and nothing is sent', async () => {
    const { io, err } = capture();
    const { fetchImpl, sent } = fakeFetch();
    const argv = ['admin', 'snapshot', '--node', 'http://a:1', '--url', 'http://b:1', '--admin.token=x'];
    expect(await main(argv, io, { fetch: fetchImpl })).toBe(EXIT.usage);
    expect(err.join('\n')).toContain('--node and --url both name the node');
    expect(sent).toEqual([]);
  });

  it('every `walship admin …` example in README.md and docs/ parses and runs', async () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const files = [
      'README.md',
      ...(await readdir(path.join(root, 'docs'), { recursive: true }))
        .filter((f) => f.endsWith('.md'))
        .map((f) => path.join('docs', f)),
    ];
    const examples: { file: string; argv: string[] }[] = [];
    for (const file of files) {
      const text = await readFile(path.join(root, file), 'utf8');
      for (const match of text.matchAll(/`walship (admin [^`]*)`/g)) {
        // Placeholders as the docs write them: T a table, URL a node, … a token.
        // Words as a shell splits them: a "double-quoted" statement is one word.
        const argv = (match[1]!.match(/"[^"]*"|\S+/g) ?? [])
          .map((word) => (word.startsWith('"') ? word.slice(1, -1) : word))
          .map((word) => (word === 'URL' ? 'http://h:5' : word.replace('…', 'x')));
        if (!argv.some((word) => word.startsWith('--admin.token'))) argv.push('--admin.token=x');
        examples.push({ file, argv });
      }
    }
    expect(examples.length).toBeGreaterThanOrEqual(3);
    for (const { file, argv } of examples) {
      const { io, err } = capture();
      const { fetchImpl, sent } = fakeFetch();
      const code = await main(argv, io, { fetch: fetchImpl });
      expect({ file, argv, code, err }).toEqual({ file, argv, code: EXIT.ok, err: [] });
      expect(sent).toHaveLength(1);
    }
  });
});
