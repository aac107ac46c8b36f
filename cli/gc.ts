import { parseArgs } from 'node:util';
import { isWalshipError, systemClock } from '../core/index.js';
import {
  formatDuration,
  GC_ORPHAN_AGE_MS,
  GC_TABLE_KINDS,
  type GcDeletion,
  type GcObjectKind,
  type GcPolicy,
  type GcResult,
  type GcSequencer,
  runGc,
} from '../maintenance/index.js';
import { REGISTRATION_UNCHANGED_REWRITE_MS } from '../node/index.js';
import {
  type ObjectStore,
  type OpenedStore,
  openStore,
  type StoreOperation,
  withMetrics,
} from '../objectstore/index.js';
import { openHttpSequencer } from '../sequencer/index.js';
import { loadConfig, type NodeConfig, parseDurationMs } from './config.js';
import { type CommandIo, EXIT, type ProgressOptions, progressLine, strayArgument } from './io.js';

export const GC_USAGE = `walship gc --store CONNSTRING [options]

WAL retention and garbage collection (RFC-0007). Deletes, per table, the oldest segments that
are (a) older than the retention window, (b) within the oldest kept snapshot's watermark and
(c) applied by every live registered node — never the newest segment of a table, never a hole
in the middle of a chain — and the snapshots older than the newest N (manifest before image).
On a sequenced cluster (RFC-0003) the same rules apply to each table's txnlog/ entries, each
deleted before the staged segment it names; with the sequencer, staged segments of closed or
fenced writer epochs that were never committed (orphans) go once older than ${GC_ORPHAN_AGE_MS / 60_000} minutes.
Prints what goes, what stays and why, and which registrations expired. Safe to run from two
hosts at once.

Options:
  --store CONNSTRING          'fs::root=…;' or 's3::bucket=…;…'
                              (default: replication.object.store from --config, WALSHIP_REPLICATION_OBJECT_STORE)
  --sequencer CONNSTRING      a sequenced cluster's sequencer, to collect orphans: 'http::addr=…;token=…;'
                              (default: replication.sequencer, WALSHIP_REPLICATION_SEQUENCER; read scope is enough)
  --dry-run                   list what would be deleted; delete nothing
  --retention 7d              replication.retention.duration (default 168h); units ms s m h d
  --keep-snapshots 2          replication.retention.snapshots (default 2, at least 1)
  --registration-expiry 1h    replication.gc.registration.expiry (default 1h)
  --json                      print the plan and result as JSON
  --config FILE               server.conf to read the keys above from

Exit codes: 0 done (or planned, with --dry-run); 2 bad arguments (or a sequencer of another
cluster); 3 the store or the sequencer could not be reached.`;

/** Deletions printed per table (and snapshots) in the text report; --json lists every one. */
const DELETIONS_PRINTED_PER_GROUP_MAX = 20;

export interface GcCommandDeps {
  storeOpen?: (connection: string) => Promise<Pick<OpenedStore, 'store'>>;
  /** Opens `--sequencer` (default: the HTTP client); `close` is called when GC is done. */
  sequencerOpen?: (connection: string) => Promise<GcSequencer & { close(): Promise<void> }>;
  /** The GC's clock (wall ms), compared with the store objects' times; default the system clock. */
  clock?: { wallMs(): number };
  /** Where and how progress is shown (default: cli/io.ts progressLine on this process's stderr). */
  progress?: ProgressOptions;
}

const KNOWN_OPTIONS = new Set([
  'store',
  'sequencer',
  'dry-run',
  'retention',
  'keep-snapshots',
  'registration-expiry',
  'json',
  'config',
  'help',
  'h',
]);

/** `walship gc`: see GC_USAGE. */
export async function gcCommand(argv: string[], io: CommandIo, deps: GcCommandDeps = {}): Promise<number> {
  const { values, tokens } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      sequencer: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      retention: { type: 'string' },
      'keep-snapshots': { type: 'string' },
      'registration-expiry': { type: 'string' },
      json: { type: 'boolean', default: false },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: false,
    tokens: true,
  });
  if (values.help === true) {
    io.stdout(GC_USAGE);
    return EXIT.ok;
  }
  const stray = strayArgument(tokens, KNOWN_OPTIONS);
  if (stray !== undefined) return usage(io, stray);
  for (const name of [
    'store',
    'sequencer',
    'retention',
    'keep-snapshots',
    'registration-expiry',
    'config',
  ] as const) {
    if (values[name] !== undefined && typeof values[name] !== 'string')
      return usage(io, `--${name} needs a value`);
  }

  let config: NodeConfig;
  try {
    const configArgv = typeof values.config === 'string' ? [`--config=${values.config}`] : [];
    config = await loadConfig({ argv: configArgv, env: io.env });
  } catch (error) {
    return usage(io, (error as Error).message);
  }
  const policy: GcPolicy = {
    retentionMs: config.number('replication.retention.duration'),
    keepSnapshots: config.number('replication.retention.snapshots'),
    registrationExpiryMs: config.number('replication.gc.registration.expiry'),
  };
  if (typeof values.retention === 'string') {
    const ms = parseDays(values.retention);
    if (ms === undefined)
      return usage(io, `--retention: ${JSON.stringify(values.retention)} is not a duration (7d, 36h)`);
    policy.retentionMs = ms;
  }
  if (typeof values['registration-expiry'] === 'string') {
    const ms = parseDays(values['registration-expiry']);
    if (ms === undefined || ms < 1)
      return usage(
        io,
        `--registration-expiry: ${JSON.stringify(values['registration-expiry'])} is not a duration > 0 (1h, 30m)`,
      );
    policy.registrationExpiryMs = ms;
  }
  if (typeof values['keep-snapshots'] === 'string') {
    const text = values['keep-snapshots'];
    if (!/^\d{1,6}$/.test(text) || Number(text) < 1)
      return usage(io, `--keep-snapshots: ${JSON.stringify(text)} is not a whole number ≥ 1`);
    policy.keepSnapshots = Number(text);
  }
  if (policy.keepSnapshots < 1) return usage(io, 'replication.retention.snapshots must be at least 1');
  if (policy.registrationExpiryMs < 1)
    return usage(io, 'replication.gc.registration.expiry must be more than 0');
  // An idle node rewrites an unchanged registration only this often: a shorter expiry would take
  // it for gone and collect segments it may still need.
  const expiryMinMs = 2 * REGISTRATION_UNCHANGED_REWRITE_MS;
  if (policy.registrationExpiryMs < expiryMinMs)
    return usage(
      io,
      `replication.gc.registration.expiry must be at least ${expiryMinMs / 60_000}m: an idle node rewrites its unchanged registration every ${REGISTRATION_UNCHANGED_REWRITE_MS / 60_000}m`,
    );

  const connection =
    typeof values.store === 'string' ? values.store : config.string('replication.object.store');
  if (connection === undefined) return usage(io, 'give --store CONNSTRING (or replication.object.store)');
  let store: Pick<OpenedStore, 'store'>['store'];
  try {
    store = (await (deps.storeOpen ?? openStore)(connection)).store;
  } catch (error) {
    io.stderr(`walship gc: ${(error as Error).message}`);
    return isWalshipError(error) && error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  }
  const sequencerConnection =
    typeof values.sequencer === 'string' ? values.sequencer : config.string('replication.sequencer');
  let sequencer: (GcSequencer & { close(): Promise<void> }) | undefined;
  try {
    if (sequencerConnection !== undefined)
      sequencer = await (deps.sequencerOpen ?? openHttpSequencer)(sequencerConnection);
  } catch (error) {
    await store.close();
    // Never the connection string: it may hold a token.
    io.stderr(`walship gc: --sequencer: ${(error as Error).message}`);
    return isWalshipError(error) && error.kind === 'unavailable' ? EXIT.unavailable : EXIT.usage;
  }
  // GC reports no steps of its own; the requests it made so far show it moving (cli/io.ts).
  const progress = progressLine(io, 'walship gc', deps.progress ?? {});
  try {
    const result = await runGc(withRequestCounts(store, progress.update), policy, {
      clock: deps.clock ?? systemClock,
      dryRun: values['dry-run'] === true,
      ...(sequencer === undefined ? {} : { sequencer }),
    });
    progress.finish(`done: ${result.deleted.length} objects deleted`);
    io.stdout(
      values.json === true ? JSON.stringify(result, jsonValue, 2) : renderGc(result, store.description),
    );
    return EXIT.ok;
  } catch (error) {
    progress.finish('failed');
    if (
      !isWalshipError(error) ||
      (error.kind !== 'unavailable' && error.kind !== 'invalid' && error.kind !== 'data')
    )
      throw error;
    io.stderr(`walship gc: ${error.message}`);
    return error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  } finally {
    await sequencer?.close();
    await store.close();
  }
}

/** Request names as the store's API calls them; a batch delete counts as one DELETE. */
const REQUEST_NAMES: Record<StoreOperation, string> = {
  list: 'LIST',
  get: 'GET',
  head: 'HEAD',
  put: 'PUT',
  delete: 'DELETE',
  deleteMany: 'DELETE',
};

/** `store`, reporting after each request the counts so far: `12 LIST, 140 GET, 3 DELETE requests`. */
function withRequestCounts(store: ObjectStore, report: (text: string) => void): ObjectStore {
  const counts = new Map<string, number>();
  return withMetrics(store, (event) => {
    const name = REQUEST_NAMES[event.operation];
    counts.set(name, (counts.get(name) ?? 0) + 1);
    report(`${[...counts].map(([request, n]) => `${n} ${request}`).join(', ')} requests`);
  });
}

function usage(io: CommandIo, problem: string): number {
  io.stderr(`walship gc: ${problem}\n\n${GC_USAGE}`);
  return EXIT.usage;
}

/** parseDurationMs plus days (`7d`). */
function parseDays(text: string): number | undefined {
  const days = /^(\d{1,6})d$/.exec(text.trim());
  if (days !== null) return Number(days[1]) * 86_400_000;
  return parseDurationMs(text);
}

function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The text report: policy, registrations, per table what goes and what stays, snapshots, totals. */
export function renderGc(result: GcResult, description: string): string {
  const { plan } = result;
  const verb = result.dryRun ? 'would delete' : 'delete';
  const lines: string[] = [];
  lines.push(
    `store ${description}: cluster ${plan.clusterId ?? '(none)'}${result.dryRun ? ' — DRY RUN, nothing is deleted' : ''}`,
    `policy: retention ${formatDuration(plan.policy.retentionMs)}, keep the ${plan.policy.keepSnapshots} newest snapshots, ` +
      `registrations expire after ${formatDuration(plan.policy.registrationExpiryMs)}`,
  );
  lines.push('', 'registrations:');
  if (plan.registrations.length === 0) lines.push('  (none: no node blocks anything)');
  for (const r of plan.registrations) {
    lines.push(
      `  ${r.nodeId} (${r.role}) written ${formatDuration(r.ageMs)} ago: ` +
        (r.live
          ? 'live, blocks what it has not applied'
          : 'EXPIRED, blocks nothing (it re-bootstraps from a snapshot if it needs collected segments)'),
    );
  }
  if (plan.sequenced !== null)
    lines.push(
      '',
      plan.sequenced.sequencerAccess
        ? `sequenced cluster: ${plan.sequenced.writers ?? 0} writers at the sequencer, ${plan.sequenced.foldersListed} staged folders of closed or fenced writer epochs listed for orphans`
        : 'sequenced cluster, no sequencer given: txnlog entries and the staged segments they name are collected, orphans are not',
    );
  const tables = new Set<string>();
  for (const d of plan.delete) if (d.table !== null) tables.add(d.table);
  for (const k of plan.keep) if (k.table !== null) tables.add(k.table);
  for (const table of [...tables].sort()) {
    const gone = plan.delete.filter((d) => d.table === table);
    const kept = plan.keep.filter((k) => k.table === table && k.key !== null);
    const keptObjects = kept.reduce((total, k) => total + k.objects, 0);
    lines.push(
      '',
      `table ${table}: ${verb} ${kindCounts(gone)} (${formatBytes(sum(gone))}), keep ${keptObjects}`,
    );
    for (const d of gone.slice(0, DELETIONS_PRINTED_PER_GROUP_MAX))
      lines.push(`  ${verb} ${d.key}: ${d.reason}`);
    if (gone.length > DELETIONS_PRINTED_PER_GROUP_MAX)
      lines.push(`  … and ${gone.length - DELETIONS_PRINTED_PER_GROUP_MAX} more (--json lists every one)`);
    for (const k of kept.slice(0, DELETIONS_PRINTED_PER_GROUP_MAX))
      lines.push(`  keep ${k.key}${k.objects > 1 ? ` and the ${k.objects - 1} after it` : ''}: ${k.reason}`);
    if (kept.length > DELETIONS_PRINTED_PER_GROUP_MAX)
      lines.push(
        `  … and ${kept.length - DELETIONS_PRINTED_PER_GROUP_MAX} more kept (--json lists every one)`,
      );
  }
  lines.push('', 'snapshots:');
  const snapshotKeeps = plan.keep.filter((k) => k.table === null && k.key !== null);
  const snapshotGone = plan.delete.filter((d) => !GC_TABLE_KINDS.includes(d.kind));
  if (snapshotKeeps.length === 0 && snapshotGone.length === 0) lines.push('  (none)');
  for (const k of snapshotKeeps) lines.push(`  keep ${k.key}: ${k.reason}`);
  for (const d of snapshotGone.slice(0, DELETIONS_PRINTED_PER_GROUP_MAX))
    lines.push(`  ${verb} ${d.key}: ${d.reason}`);
  if (snapshotGone.length > DELETIONS_PRINTED_PER_GROUP_MAX)
    lines.push(
      `  … and ${snapshotGone.length - DELETIONS_PRINTED_PER_GROUP_MAX} more (--json lists every one)`,
    );
  for (const k of plan.keep.filter((k) => k.key === null)) lines.push('', `note: ${k.reason}`);
  const tableObjects = plan.delete.filter((d) => GC_TABLE_KINDS.includes(d.kind));
  lines.push(
    '',
    `${result.dryRun ? 'would delete' : 'deleted'} ${plan.delete.length} objects (${kindCounts(tableObjects)}, ` +
      `${snapshotGone.length} snapshot objects), ${formatBytes(result.dryRun ? sum(plan.delete) : result.deletedBytes)}; ` +
      `${plan.expiredRegistrations.length} expired registration${plan.expiredRegistrations.length === 1 ? '' : 's'}`,
  );
  return lines.join('\n');
}

const KIND_NOUNS: Partial<Record<GcObjectKind, [string, string]>> = {
  segment: ['segment', 'segments'],
  txnlog: ['txnlog entry', 'txnlog entries'],
  staged: ['staged segment', 'staged segments'],
  'staged-orphan': ['orphan', 'orphans'],
};

/** `3 segments` on a single-primary table; each sequenced kind present added: `2 txnlog entries, 2 staged segments`. */
function kindCounts(deletions: readonly GcDeletion[]): string {
  const parts: string[] = [];
  for (const kind of GC_TABLE_KINDS) {
    const n = deletions.filter((d) => d.kind === kind).length;
    if (n === 0 && kind !== 'segment') continue;
    const [one, many] = KIND_NOUNS[kind]!;
    parts.push(`${n} ${n === 1 ? one : many}`);
  }
  return parts.join(', ');
}

function sum(deletions: readonly { sizeBytes: number }[]): number {
  return deletions.reduce((total, d) => total + d.sizeBytes, 0);
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
