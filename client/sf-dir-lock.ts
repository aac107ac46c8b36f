import { Buffer } from 'node:buffer';
import { linkSync, readFileSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { ClientRandomBytes } from './clock.js';
import { writeFileAtomicSync } from './durable-file.js';
import { WalshipClientError } from './errors.js';

/**
 * One Sender per sf_dir: two senders sharing a directory would send each other's batches and
 * reuse seqs. The lock is the file `lock`, holding `{"pid","host","token"}`.
 *
 * Taking it: the content is written to a file of our own first and then hard-linked as `lock`,
 * which fails if `lock` exists — an exclusive create (like `open(…, 'wx')`) that never leaves a
 * lock without content behind, whatever moment the process dies at.
 *
 * A lock whose process is gone (same host, `kill(pid, 0)` → ESRCH) is taken over: renamed to a
 * name of our own, read back, and removed only if it is still the lock judged stale — if another
 * process took it over and locked in between, its lock is put back and we give up (SF_DIR_LOCKED).
 * A lock of a live process, of another host, or unreadable is refused with SF_DIR_LOCKED.
 */

export const LOCK_FILE = 'lock';
/** Takeovers tried before giving up, should other processes keep racing for a stale lock. */
const TAKEOVER_ATTEMPTS_MAX = 3;
const TOKEN_BYTES = 16;

interface LockContent {
  pid: number;
  host: string;
  token: string;
}

/** A held sf_dir lock. */
export class SfDirLock {
  readonly #file: string;
  readonly #token: string;
  #held = true;

  private constructor(file: string, token: string) {
    this.#file = file;
    this.#token = token;
  }

  /** Takes the lock of `dir`; throws SF_DIR_LOCKED when a live or unknown holder has it. */
  static acquire(dir: string, randomBytes: ClientRandomBytes): SfDirLock {
    const file = path.join(dir, LOCK_FILE);
    const mine: LockContent = {
      pid: process.pid,
      host: hostname(),
      token: Buffer.from(randomBytes(TOKEN_BYTES)).toString('hex'),
    };
    const staged = path.join(dir, `${LOCK_FILE}.${mine.token}`);
    writeFileAtomicSync(staged, Buffer.from(`${JSON.stringify(mine)}\n`), { fsync: true });
    try {
      for (let attempt = 0; attempt <= TAKEOVER_ATTEMPTS_MAX; attempt++) {
        if (tryLink(staged, file)) return new SfDirLock(file, mine.token);
        const holder = readLock(file);
        if (holder === 'gone') continue;
        refuseUnlessStale(file, holder);
        takeOver(file, holder as LockContent, mine.token);
      }
      throw lockedError(file, 'other processes keep taking it over');
    } finally {
      rmSync(staged, { force: true });
    }
  }

  /** Removes the lock if it is still ours. Idempotent. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    const holder = readLock(this.#file);
    if (holder !== 'gone' && holder !== 'unreadable' && holder.token === this.#token) {
      rmSync(this.#file, { force: true });
    }
  }
}

function tryLink(staged: string, file: string): boolean {
  try {
    linkSync(staged, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // Our staged file is gone: a process that took the lock meanwhile cleared leftovers.
    if (code === 'ENOENT') throw lockedError(file, 'another process took it at the same time');
    throw error;
  }
}

/** True for the names the lock leaves behind when a process dies while taking it. */
export function isLockLeftover(name: string): boolean {
  return name.startsWith(`${LOCK_FILE}.`);
}

function readLock(file: string): LockContent | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const value = JSON.parse(text) as Partial<LockContent>;
    if (Number.isInteger(value.pid) && typeof value.host === 'string' && typeof value.token === 'string') {
      return value as LockContent;
    }
  } catch {
    // Falls through: not a lock this client wrote.
  }
  return 'unreadable';
}

/** Throws SF_DIR_LOCKED unless `holder` is a lock of a process of this host that is gone. */
function refuseUnlessStale(file: string, holder: LockContent | 'unreadable'): void {
  if (holder === 'unreadable') throw lockedError(file, 'its content is not a lock this client wrote');
  if (holder.host !== hostname()) {
    throw lockedError(file, `it is held by pid ${holder.pid} on host ${JSON.stringify(holder.host)}`);
  }
  if (processIsAlive(holder.pid)) {
    const who = holder.pid === process.pid ? 'another Sender of this process' : `live process ${holder.pid}`;
    throw lockedError(file, `it is held by ${who}`, holder.pid);
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Moves a stale lock out of the way, making sure it is the one judged stale (see the file comment). */
function takeOver(file: string, stale: LockContent, myToken: string): void {
  const aside = `${file}.stale.${myToken}`;
  try {
    renameSync(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it: retry
    throw error;
  }
  const moved = readLock(aside);
  if (moved !== 'gone' && moved !== 'unreadable' && moved.token === stale.token) {
    unlinkSync(aside);
    return;
  }
  // We moved a fresh lock another process had just taken over: put it back.
  try {
    linkSync(aside, file);
  } catch {
    // A third process locked meanwhile; its lock stands.
  }
  rmSync(aside, { force: true });
  throw lockedError(file, 'another process took it over at the same time');
}

function lockedError(file: string, why: string, pid?: number): WalshipClientError {
  return new WalshipClientError(
    'SF_DIR_LOCKED',
    'unavailable',
    `the sf_dir is locked (${file}): ${why}; one Sender per directory — close the other one, or give ` +
      'this sender its own sf_dir (if no sender uses the directory any more, delete the lock file)',
    { details: { lockFile: file, ...(pid === undefined ? {} : { pid }) } },
  );
}
