/**
 * `npm run bench -- [suite …]`: runs the named suites (all when none is named), prints one JSON
 * document with every result, then a table per suite. Each suite measures its own baseline in
 * the same run, so figures are read as ratios, not absolutes.
 */
import { benchIlp } from './ilp.js';
import { benchIngest } from './ingest.js';
import { benchReplicate } from './replicate.js';
import { type BenchSuiteResult, renderTables } from './report.js';
import { benchStore } from './store.js';
import { benchTable } from './table.js';
import { benchWal } from './wal.js';

const SUITES: Record<string, () => Promise<BenchSuiteResult>> = {
  store: benchStore,
  wal: benchWal,
  ilp: benchIlp,
  table: benchTable,
  ingest: benchIngest,
  replicate: benchReplicate,
  failover: async () => (await import('./failover.js')).benchFailover(),
};

async function run(): Promise<number> {
  const requested = process.argv.slice(2);
  const unknown = requested.filter((name) => !(name in SUITES));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown bench suite(s): ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}\n`,
    );
    return 2;
  }
  const names = requested.length === 0 ? Object.keys(SUITES) : requested;
  const results: BenchSuiteResult[] = [];
  for (const name of names) {
    process.stderr.write(`bench: running ${name}…\n`);
    results.push(await SUITES[name]!());
  }
  process.stdout.write(`${JSON.stringify({ at: new Date().toISOString(), results }, null, 2)}\n`);
  process.stdout.write(`${renderTables(results)}\n`);
  return 0;
}

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.exitCode = await run();
