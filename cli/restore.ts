import { parseArgs } from 'node:util';
import { type Logger, pino } from 'pino';
import { type Clock, isWalshipError, parseTimeMs, systemClock, WalshipError } from '../core/index.js';
import {
  type RestoreProgress,
  type RestoreResult,
  type RestoreTarget,
  restoreToPoint,
} from '../maintenance/index.js';
import { type OpenedStore, openStore } from '../objectstore/index.js';
import { type CommandIo, EXIT, parseArgsMessage, progressLine } from './io.js';
import { formatMs, renderProgress } from './status.js';

export const RESTORE_USAGE = `walship restore --store CONNSTRING --to POINT --data-dir DIR [options]

Point-in-time recovery (RFC-0006): builds a new node data dir holding every table as it was at
POINT, from the newest snapshot in the store that holds nothing past it plus the segments after
it, each verified as a replica verifies it. The data dir can then be started as a replica of the
same store (it follows on from the restored point), or, with --new-cluster, as the primary of a
new cluster on another store root.

POINT is one of:
  2024-05-01T12:00:00Z   an ISO-8601 time: per table, every txn from the start whose commit time
                         (the primary's clock, recorded in each txn) is at or before it
  42  (or txn:42)        txn 42 of every restored table
  trades=42,quotes=17    a txn per table (only these tables are restored)

Options:
  --store CONNSTRING     'fs::root=…;' or 's3::bucket=…;…' (default: $WALSHIP_REPLICATION_OBJECT_STORE)
  --to POINT             where to stop (above)
  --data-dir DIR         the data dir to create; must be absent or empty
  --table T              restore only table T (repeatable); default every table in the store
  --new-cluster          leave no cluster, epoch or node identity in the data dir: start it with
                         'walship primary' on another store root to found a new cluster
  --json                 print the result as JSON on stdout instead of the summary

Progress goes to stderr: a bar redrawn every second on a terminal, else a line every 5 s.

Exit codes: 0 restored; 1 the point cannot be reached (a segment missing before it, a txn past
the end of a table's chain, a corrupt segment or snapshot); 2 bad arguments (or a data dir that
is not empty); 3 the store could not be reached.`;

export interface RestoreDeps {
  /** Opens the store (default: openStore, with the connection string's retries). */
  open?: (connection: string) => Promise<Pick<OpenedStore, 'store'>>;
  /** Receives each progress line, as a terminal would show it (default: cli/io.ts progressLine on stderr). */
  progress?: (line: string) => void;
  clock?: Clock;
  log?: Logger;
}

interface RestoreArgs {
  store: string;
  to: RestoreTarget;
  dataDir: string;
  tables: string[] | undefined;
  newCluster: boolean;
  json: boolean;
}

/** `walship restore`: see RESTORE_USAGE. */
export async function restoreCommand(argv: string[], io: CommandIo, deps: RestoreDeps = {}): Promise<number> {
  let args: RestoreArgs | 'help';
  try {
    args = parseRestoreArgs(argv, io);
  } catch (error) {
    const parse = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    if (!isWalshipError(error) && !parse) throw error;
    // parseArgs quotes a stray argument whole, which may be a secret: parseArgsMessage does not.
    const message = parse ? parseArgsMessage(error as Error & { code: string }) : (error as Error).message;
    io.stderr(`walship restore: ${message}\n\n${RESTORE_USAGE}`);
    return EXIT.usage;
  }
  if (args === 'help') {
    io.stdout(RESTORE_USAGE);
    return EXIT.ok;
  }
  let opened: Pick<OpenedStore, 'store'>;
  try {
    opened = await (deps.open ?? openStore)(args.store);
  } catch (error) {
    io.stderr(`walship restore: ${(error as Error).message}`);
    return isWalshipError(error) && error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  }
  const clock = deps.clock ?? systemClock;
  const progress = restoreProgress(io, deps, clock);
  try {
    const result = await restoreToPoint({
      store: opened.store,
      dataDir: args.dataDir,
      to: args.to,
      ...(args.tables === undefined ? {} : { tables: args.tables }),
      newCluster: args.newCluster,
      onProgress: progress.update,
      log: deps.log ?? pino({ level: 'warn' }, pino.destination(2)),
      clock,
    });
    progress.finish('done');
    io.stdout(args.json ? JSON.stringify(resultJson(result), null, 2) : renderSummary(result, args));
    return EXIT.ok;
  } catch (error) {
    progress.finish('failed');
    if (!isWalshipError(error)) throw error;
    io.stderr(`walship restore: ${error.message}`);
    if (error.kind === 'unavailable') return EXIT.unavailable;
    if (error.kind === 'invalid' && error.code !== 'RESTORE_NO_CLUSTER') return EXIT.usage;
    return EXIT.failed;
  } finally {
    await opened.store.close();
  }
}

function parseRestoreArgs(argv: string[], io: CommandIo): RestoreArgs | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      to: { type: 'string' },
      'data-dir': { type: 'string' },
      table: { type: 'string', multiple: true },
      'new-cluster': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) return 'help';
  const store = values.store ?? io.env.WALSHIP_REPLICATION_OBJECT_STORE;
  if (store === undefined) throw usage('--store is required');
  if (values.to === undefined) throw usage('--to is required');
  if (values['data-dir'] === undefined || values['data-dir'] === '') throw usage('--data-dir is required');
  const to = parseRestorePoint(values.to);
  if (to.txn !== undefined && typeof to.txn !== 'bigint' && values.table !== undefined) {
    throw usage('--to table=N,… names the tables already: give --table only with a time or a single txn');
  }
  return {
    store,
    to,
    dataDir: values['data-dir'],
    tables: values.table,
    newCluster: values['new-cluster'] === true,
    json: values.json === true,
  };
}

/** `42`, `txn:42`, `txn 42`, `trades=42,quotes=17`, or an ISO-8601 time with a date. */
export function parseRestorePoint(text: string): RestoreTarget {
  const trimmed = text.trim();
  const single = /^(?:txn[\s:=]?)?(\d{1,19})$/i.exec(trimmed);
  if (single !== null) return { txn: BigInt(single[1]!) };
  if (trimmed.includes('=')) {
    const txns: Record<string, bigint> = {};
    for (const part of trimmed.split(',')) {
      const match = /^([^=]+)=(\d{1,19})$/.exec(part.trim());
      if (match === null) throw usage(`--to ${JSON.stringify(text)}: expected table=txn,… (e.g. trades=42)`);
      txns[match[1]!.trim()] = BigInt(match[2]!);
    }
    return { txn: txns };
  }
  const atMs = /^\d{4}-\d{2}-\d{2}/.test(trimmed) ? parseTimeMs(trimmed) : Number.NaN;
  if (Number.isNaN(atMs)) {
    throw usage(
      `--to ${JSON.stringify(text)} is neither a txn (42, trades=42) nor an ISO-8601 time (2024-05-01T12:00:00Z)`,
    );
  }
  return { atMs };
}

function usage(message: string): WalshipError {
  return new WalshipError('INVALID_ARGUMENT', 'invalid', message);
}

/** The progress line (cli/io.ts progressLine): the phase, a bar and an ETA per phase. */
function restoreProgress(
  io: CommandIo,
  deps: RestoreDeps,
  clock: Clock,
): { update: (p: RestoreProgress) => void; finish: (summary: string) => void } {
  const progress = deps.progress;
  const line = progressLine(io, 'walship', {
    clock,
    ...(progress === undefined ? {} : { inPlace: true, draw: (text: string) => progress(text) }),
  });
  let phase: RestoreProgress['phase'] | undefined;
  let phaseStartedMs = clock.monotonicMs();
  return {
    update: (p) => {
      const nowMs = clock.monotonicMs();
      if (p.phase !== phase) {
        phase = p.phase;
        phaseStartedMs = nowMs;
      }
      line.update(
        renderProgress({
          name: 'restore',
          phase: p.phase === 'snapshot' ? 'download snapshot' : 'replay segments',
          done: p.done,
          total: p.total,
          unit: p.unit,
          startedAgoMs: nowMs - phaseStartedMs,
        }),
      );
    },
    finish: (summary) => line.finish(summary),
  };
}

function resultJson(result: RestoreResult): Record<string, unknown> {
  return {
    dataDir: result.dataDir,
    clusterId: result.clusterId,
    snapshot:
      result.snapshot === null
        ? null
        : {
            id: result.snapshot.id,
            createdAt: result.snapshot.createdAt,
            bytes: result.snapshot.image.bytes,
          },
    tables: result.tables.map((t) => ({
      ...t,
      snapshotTxn: t.snapshotTxn.toString(),
      restoredTxn: t.restoredTxn.toString(),
    })),
    durationMs: Math.round(result.durationMs),
  };
}

/** The summary: snapshot used, per table the restored watermark and rows, the time, and what next. */
export function renderSummary(result: RestoreResult, args: Pick<RestoreArgs, 'newCluster'>): string {
  const out: string[] = [];
  const snapshot = result.snapshot;
  out.push(
    snapshot === null
      ? 'snapshot: none usable; replayed every table from txn 1'
      : `snapshot: ${snapshot.id} (taken ${snapshot.createdAt}, ${snapshot.image.bytes} bytes)`,
  );
  out.push('table  snapshot txn  restored txn  txns replayed  rows  note');
  for (const t of result.tables) {
    const note =
      t.partialSegment !== null
        ? `stopped inside ${t.partialSegment}`
        : t.endOfChain
          ? 'the whole chain'
          : t.restoredTxn === 0n
            ? 'nothing at or before the point'
            : '';
    out.push(`${t.name}  ${t.snapshotTxn}  ${t.restoredTxn}  ${t.txnsApplied}  ${t.rows}  ${note}`.trimEnd());
  }
  out.push(`restored into ${result.dataDir} in ${formatMs(result.durationMs)}`);
  if (args.newCluster) {
    out.push(
      "next: start it with 'walship primary --node.data.dir=… --replication.object.store=<a new, empty root>' to found a new cluster",
    );
    return out.join('\n');
  }
  out.push(
    "next: start it with 'walship replica --node.data.dir=… --replication.object.store=<the same store>': it follows on from here",
  );
  return out.join('\n');
}
