import { InvalidConfigError } from '../core/index.js';
import { adminTokenOf } from './admin-token.js';
import { loadConfig, parseHostPort } from './config.js';
import { type CommandIo, EXIT } from './io.js';

export const ADMIN_USAGE = `walship admin <action> [--node http://host:port] [--table NAME] [--config server.conf] [--key=value …]

Asks a running node to act, with admin.token (from server.conf, WALSHIP_ADMIN_TOKEN or --admin.token)
or the file admin.token.file names (--admin.token.file=./walship-data/admin.token after npm start):
  resume --table NAME   resume a table a replica suspended (after the bad object was repaired)
  snapshot              upload a snapshot of a replica's tables now
  sql "STATEMENT"       on the primary, one of QuestDB's table statements, applied on every node:
                        ALTER TABLE <t> DEDUP ENABLE UPSERT KEYS(timestamp, …) | DEDUP DISABLE
                        (keep the newest row per key: docs/rfcs/0011-exactly-once-batches.md),
                        ALTER TABLE <t> SET TTL 2 WEEKS | SET TTL 0 (drop rows as they expire),
                        DROP TABLE [IF EXISTS] <t> (docs/rfcs/0007-retention-and-gc.md)
The node is --node (or --url), else node.url, else http://<http.bind.to> (0.0.0.0 as 127.0.0.1).`;

const ACTIONS = new Set(['resume', 'snapshot', 'sql']);

/** `walship admin <action>`: POST /admin/<action> to a node; prints its JSON answer. */
export async function adminCommand(
  argv: string[],
  io: CommandIo,
  fetchImpl: typeof fetch = fetch,
): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === '--help' || !ACTIONS.has(action)) {
    (action === undefined || action === '--help' ? io.stdout : io.stderr)(ADMIN_USAGE);
    return action === '--help' ? EXIT.ok : EXIT.usage;
  }
  // `sql` takes its statement as the next argument.
  const statement = action === 'sql' ? rest.shift() : undefined;
  if (action === 'sql' && (statement === undefined || statement.startsWith('--')))
    throw new InvalidConfigError(
      'admin sql needs the statement: walship admin sql "ALTER TABLE t DEDUP DISABLE"',
    );
  const { url, table, others } = takeOwnFlags(rest);
  const config = await loadConfig({ argv: others, env: io.env });
  const token = await adminTokenOf(config);
  if (token === undefined)
    throw new InvalidConfigError('admin.token (or admin.token.file) is required to talk to a node');
  const params = new URLSearchParams();
  if (action === 'resume') {
    if (table === undefined) throw new InvalidConfigError('admin resume needs --table NAME');
    params.set('table', table);
  }
  if (statement !== undefined) params.set('query', statement);
  const base = url ?? config.string('node.url') ?? bindUrl(parseHostPort(config, 'http.bind.to'));
  const target = new URL(`/admin/${action}?${params}`, base);
  let response: Response;
  try {
    response = await fetchImpl(target, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  } catch (error) {
    io.stderr(`walship: cannot reach ${target.origin}: ${(error as Error).message}`);
    return EXIT.unavailable;
  }
  const text = await response.text();
  (response.ok ? io.stdout : io.stderr)(text);
  if (response.ok) return EXIT.ok;
  return response.status >= 500 ? EXIT.unavailable : EXIT.failed;
}

/**
 * `--node URL` (as `walship promote --node`), `--url URL` (its older name) and `--table NAME`, in
 * `--flag value` or `--flag=value` form; everything else is configuration for loadConfig.
 */
function takeOwnFlags(argv: string[]): { url?: string; table?: string; others: string[] } {
  const own: { url?: string; table?: string } = {};
  const others: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--(url|node|table)(?:=(.*))?$/.exec(arg);
    if (match === null) {
      others.push(arg);
      continue;
    }
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new InvalidConfigError(`--${match[1]} needs a value`);
    const field = match[1] === 'table' ? 'table' : 'url';
    if (own[field] !== undefined && own[field] !== value)
      throw new InvalidConfigError(
        field === 'table' ? '--table given twice' : '--node and --url both name the node: give one',
      );
    own[field] = value;
  }
  return { ...own, others };
}

function bindUrl({ host, port }: { host: string; port: number }): string {
  const reachable = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '[::1]' : host;
  return `http://${reachable.includes(':') && !reachable.startsWith('[') ? `[${reachable}]` : reachable}:${port}`;
}
