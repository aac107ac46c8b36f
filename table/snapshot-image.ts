import { fork } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  type ErrorKind,
  fileExists,
  isErrorCode,
  serializeWalshipError,
  WalshipError,
} from '../core/index.js';
import { asTableKey, type TableKey } from './names.js';
import { STORE_FORMAT_VERSION, storageError } from './store-sql.js';

/**
 * The image of a snapshot (DESIGN §8): one self-contained SQLite file holding a consistent copy of
 * a node's table store, scrubbed of everything that belongs to the node rather than to the data.
 *
 * Scrubbed from the copy:
 * - the pending queue (`_walship_pending`): those txns are the primary's upload backlog; a node
 *   restoring the image fetches them as segments;
 * - the uploaded watermark: set to `last_txn`, since a restored node has nothing of its own to upload;
 * - node facts in `_walship_kv` (`node.id`, `cluster.id`, `epoch`, `claim.id`, …): copying them
 *   would give the restoring node another node's identity. Only keys starting with `table.` (facts
 *   about a table, such as `table.epoch.<tableKey>`) survive.
 * The scrub runs with `secure_delete` on, so the deleted bytes do not linger in free pages either.
 * The image is in rollback (DELETE) journal mode: no `-wal` file belongs to it.
 *
 * The copy runs in a child process (snapshot-image-host.ts), never on the node's thread: `VACUUM
 * INTO` is one native call that takes as long as the database is big (~0.6 s for 280 MB), and on
 * the main thread it would stall the event loop — `/ping`, `/status`, lease renewal, apply — for
 * all of it. A process rather than a worker thread for the same reason query hosts are processes
 * (RFC-0004): `Worker.terminate()` waits until the native call returns (measured: 0.56 s of a
 * 0.6 s copy), and so does process exit, which joins worker threads; SIGKILL ends a process at
 * once, so aborting a snapshot (a node closing on SIGTERM) takes milliseconds whatever the size.
 * The host opens the database file with its own read-only connection: in WAL mode its read
 * transaction sees the last commit, consistent, while the node goes on writing (the WAL grows
 * meanwhile: a checkpoint cannot pass a reader).
 */

/** One table of a snapshot: canonical name, store key, and the last txn the image holds. */
export interface SnapshotTable {
  name: string;
  key: TableKey;
  lastTxn: bigint;
}

/** What an image holds: its tables ordered by key, and its size in bytes. */
export interface SnapshotImageInfo {
  tables: SnapshotTable[];
  rawBytes: number;
}

/** Keys of `_walship_kv` that describe a table and travel with the data. */
const TABLE_FACT_PREFIX = 'table.';

const SCRUB_SQL = `
DELETE FROM _walship_pending;
UPDATE _walship_tables SET uploaded_txn = last_txn WHERE uploaded_txn <> last_txn;
DELETE FROM _walship_kv WHERE substr(key, 1, ${TABLE_FACT_PREFIX.length}) <> '${TABLE_FACT_PREFIX}';
`;

/** What the host answers the parent over IPC (`serialization: 'advanced'`: bigints cross as they are). */
export type ImageHostMessage =
  | { type: 'done'; info: SnapshotImageInfo }
  | {
      type: 'failed';
      error: { code: string; kind: string; message: string; details: Record<string, unknown> };
    };

/** The host's one argument (argv[2], JSON). */
export interface ImageHostArgs {
  databaseFile: string;
  destFile: string;
}

// --- Bounds (TIGER_STYLE: a limit on everything, with its reason) ---

/**
 * How long the host's connection waits for a lock, in ms. A read-only connection in WAL mode waits
 * only while the WAL index is being rebuilt or restarted, which takes milliseconds; 5 s is the
 * table store's own bound (table-store.ts).
 */
const COPY_BUSY_TIMEOUT_MS = 5_000;
/** What the host wrote to stderr is kept for the error message, up to this many characters (the end). */
const STDERR_TAIL_CHARS = 2_048;

export interface CreateSnapshotImageOptions {
  /**
   * Ends the copy: the host is killed (SIGKILL), `destFile` removed, and the promise rejects with the
   * signal's reason once the host is gone.
   */
  signal?: AbortSignal;
}

/**
 * Copies the table store `databaseFile` (`VACUUM INTO`: one read transaction, so a consistent copy
 * of its last commit) into the new file `destFile` and scrubs the copy (see the header), in a child
 * process: the caller's thread stays free. The node's own connection may be open, writing, even
 * inside a transaction (the copy holds only what was committed). On failure `destFile` is removed.
 * Rejects with `INVALID_ARGUMENT` when `destFile` exists (it is left alone), `STORAGE_FAILED` when
 * SQLite fails (`databaseFile` missing or no table store …) or the host dies, and with the signal's
 * reason when aborted. No second VACUUM: it would rewrite the whole file to drop free pages that
 * secure_delete has already zeroed, and zeros cost next to nothing compressed.
 */
export async function createSnapshotImage(
  databaseFile: string,
  destFile: string,
  options: CreateSnapshotImageOptions = {},
): Promise<SnapshotImageInfo> {
  const { signal } = options;
  signal?.throwIfAborted();
  // Refused here, not only by SQLite: the cleanup below must never remove a file it did not make.
  if (await fileExists(destFile)) {
    throw new WalshipError(
      'INVALID_ARGUMENT',
      'invalid',
      `cannot make a snapshot image at ${JSON.stringify(destFile)}: the file exists`,
    );
  }
  try {
    const outcome = await runImageHost({ databaseFile, destFile }, signal);
    signal?.throwIfAborted();
    if (outcome.message?.type === 'done') return outcome.message.info;
    if (outcome.message?.type === 'failed') throw hostError(outcome.message.error);
    throw new WalshipError(
      'STORAGE_FAILED',
      'internal',
      `could not copy the table store into ${JSON.stringify(destFile)}: the snapshot copy process ${outcome.how}`,
      { details: { databaseFile, destFile } },
    );
  } catch (error) {
    // A host killed while it scrubbed may leave the copy's journal files too.
    for (const suffix of ['', '-journal', '-wal', '-shm']) await rm(`${destFile}${suffix}`, { force: true });
    throw error;
  }
}

/**
 * The copy and the scrub, on the calling thread: what the host process runs (snapshot-image-host.ts).
 * Throws `STORAGE_FAILED`; on failure `destFile` is removed.
 */
export function copyAndScrub(databaseFile: string, destFile: string): SnapshotImageInfo {
  copyInto(databaseFile, destFile);
  try {
    const tables = scrub(destFile);
    return { tables, rawBytes: statSync(destFile).size };
  } catch (error) {
    rmSync(destFile, { force: true });
    throw storageError(error, `scrub the snapshot image ${JSON.stringify(destFile)}`);
  }
}

function copyInto(databaseFile: string, destFile: string): void {
  let db: Database.Database | undefined;
  try {
    db = new Database(databaseFile, { readonly: true, fileMustExist: true, timeout: COPY_BUSY_TIMEOUT_MS });
    db.prepare('VACUUM INTO ?').run(destFile);
  } catch (error) {
    throw storageError(
      error,
      `copy the table store ${JSON.stringify(databaseFile)} into ${JSON.stringify(destFile)}`,
    );
  } finally {
    db?.close();
  }
}

// --- the host process ---

interface HostOutcome {
  /** The host's answer, or undefined when it died without one. */
  message: ImageHostMessage | undefined;
  /** How it ended, for error messages. */
  how: string;
}

/** Forks the host, and resolves once it is gone (reaped), with its answer. Never rejects. */
function runImageHost(args: ImageHostArgs, signal: AbortSignal | undefined): Promise<HostOutcome> {
  const { entry, execArgv } = imageHostEntry();
  const child = fork(entry, [JSON.stringify(args)], {
    serialization: 'advanced',
    // Not the parent's execArgv: an inspector port or a loader of the parent has no place here.
    execArgv,
    // stdout ignored: a stray write must not interleave with the node's log lines.
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const kill = () => child.kill('SIGKILL');
  signal?.addEventListener('abort', kill, { once: true });
  let message: ImageHostMessage | undefined;
  let stderrTail = '';
  child.on('message', (received: ImageHostMessage) => {
    message ??= received;
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
  });
  return new Promise((resolve) => {
    const done = (how: string) => {
      signal?.removeEventListener('abort', kill);
      resolve({ message, how });
    };
    // 'close' comes after the exit and after stderr ended, so the tail is complete.
    child.on('close', (code, killedBy) => {
      const how = killedBy !== null ? `was killed by ${killedBy}` : `exited with code ${code}`;
      const reason = stderrTail.trim().split('\n').at(-1) ?? '';
      done(reason === '' ? how : `${how} (stderr: ${reason.slice(0, 300)})`);
    });
    // A fork that failed (no pid) may never emit 'close'.
    child.on('error', (error) => {
      if (child.pid === undefined) done(`could not start: ${error.message}`);
    });
  });
}

/**
 * What to fork. Compiled (dist/table/): snapshot-image-host.js beside this file. From TypeScript
 * source (vitest): snapshot-image-host.ts with `--import` of the query hosts' module hooks, which
 * compile .ts on load (query-host-process.ts explains them).
 */
function imageHostEntry(): { entry: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    return {
      entry: fileURLToPath(new URL('./snapshot-image-host.ts', here)),
      execArgv: ['--import', new URL('./query-host-ts-register.mjs', here).href],
    };
  }
  return { entry: fileURLToPath(new URL('./snapshot-image-host.js', here)), execArgv: [] };
}

/** The host's error as a WalshipError again (its code, kind, message and details). */
function hostError(error: Extract<ImageHostMessage, { type: 'failed' }>['error']): WalshipError {
  const code = isErrorCode(error.code) ? error.code : 'STORAGE_FAILED';
  return new WalshipError(code, error.kind as ErrorKind, error.message, { details: error.details });
}

/** An error of the host, for the parent: a WalshipError keeps its code, anything else is STORAGE_FAILED. */
export function serializeImageHostError(
  error: unknown,
): Extract<ImageHostMessage, { type: 'failed' }>['error'] {
  return serializeWalshipError(error);
}

function scrub(file: string): SnapshotTable[] {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('secure_delete = ON');
    const mode = db.pragma('journal_mode = DELETE', { simple: true });
    if (mode !== 'delete') {
      throw new WalshipError('STORAGE_FAILED', 'internal', `the snapshot image kept journal mode '${mode}'`);
    }
    db.exec(`BEGIN IMMEDIATE; ${SCRUB_SQL} COMMIT;`);
    return readTables(db);
  } finally {
    db.close();
  }
}

function readTables(db: Database.Database): SnapshotTable[] {
  const rows = db
    .prepare('SELECT name, key, last_txn AS lastTxn FROM _walship_tables ORDER BY key')
    .safeIntegers(true)
    .all() as { name: string; key: string; lastTxn: bigint }[];
  return rows.map((row) => ({ name: row.name, key: asTableKey(row.key), lastTxn: row.lastTxn }));
}

/**
 * Checks that `imageFile` is a snapshot image fit to become a node's table store: SQLite's
 * `quick_check` passes, the layout version is STORE_FORMAT_VERSION, the journal mode is DELETE, its
 * tables and watermarks are exactly `expected` (each uploaded watermark equal to its last txn), and
 * nothing node-local is left (no pending txns, no kv keys outside `table.`). Opens the file
 * read-only and changes nothing. Throws `SNAPSHOT_CORRUPT` (kind data) naming the check that failed.
 */
export function restoreSnapshotImage(imageFile: string, expected: readonly SnapshotTable[]): void {
  let db: Database.Database | undefined;
  let check = 'open';
  try {
    db = new Database(imageFile, { readonly: true, fileMustExist: true });
    check = 'quick_check';
    const quick = db.pragma('quick_check', { simple: true });
    if (quick !== 'ok') fail(imageFile, check, `SQLite reports ${JSON.stringify(quick)}`);
    check = 'layout version';
    const version = db.pragma('user_version', { simple: true });
    if (version !== STORE_FORMAT_VERSION) {
      fail(imageFile, check, `it has layout version ${version}, expected ${STORE_FORMAT_VERSION}`);
    }
    check = 'journal mode';
    const mode = db.pragma('journal_mode', { simple: true });
    if (mode !== 'delete') fail(imageFile, check, `it is in journal mode '${mode}', expected 'delete'`);
    check = 'watermarks';
    checkWatermarks(imageFile, db, expected);
    check = 'node-local state';
    checkScrubbed(imageFile, db);
  } catch (error) {
    if (error instanceof WalshipError && error.code === 'SNAPSHOT_CORRUPT') throw error;
    if (!(error instanceof Database.SqliteError)) throw error;
    fail(imageFile, check, `SQLite failed: ${error.message}`, error);
  } finally {
    db?.close();
  }
}

function checkWatermarks(file: string, db: Database.Database, expected: readonly SnapshotTable[]): void {
  const rows = db
    .prepare('SELECT name, key, last_txn AS lastTxn, uploaded_txn AS uploadedTxn FROM _walship_tables')
    .safeIntegers(true)
    .all() as (SnapshotTable & { uploadedTxn: bigint })[];
  const found = new Map(rows.map((row) => [row.key, row]));
  for (const table of expected) {
    const row = found.get(table.key);
    if (row === undefined) fail(file, 'watermarks', `table ${JSON.stringify(table.name)} is missing`);
    if (row.name !== table.name || row.lastTxn !== table.lastTxn || row.uploadedTxn !== row.lastTxn) {
      fail(
        file,
        'watermarks',
        `table ${JSON.stringify(row.name)} is at txn ${row.lastTxn} (uploaded ${row.uploadedTxn}), the manifest says ${JSON.stringify(table.name)} at txn ${table.lastTxn}`,
      );
    }
    found.delete(table.key);
  }
  const extra = [...found.values()].map((row) => row.name);
  if (extra.length > 0) fail(file, 'watermarks', `it holds tables the manifest lacks: ${extra.join(', ')}`);
}

function checkScrubbed(file: string, db: Database.Database): void {
  const pending = db.prepare('SELECT count(*) FROM _walship_pending').pluck().get() as number;
  if (pending !== 0) fail(file, 'node-local state', `it holds ${pending} pending txns`);
  const keys = db
    .prepare('SELECT key FROM _walship_kv WHERE substr(key, 1, ?) <> ? ORDER BY key')
    .pluck()
    .all(TABLE_FACT_PREFIX.length, TABLE_FACT_PREFIX) as string[];
  if (keys.length > 0) fail(file, 'node-local state', `it holds node facts: ${keys.join(', ')}`);
}

function fail(file: string, check: string, problem: string, cause?: unknown): never {
  throw new WalshipError(
    'SNAPSHOT_CORRUPT',
    'data',
    `the snapshot image ${JSON.stringify(file)} failed the ${check} check: ${problem}; do not use it (restore another snapshot)`,
    { cause, details: { file, check } },
  );
}
