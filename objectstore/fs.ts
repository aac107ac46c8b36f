import { randomUUID } from 'node:crypto';
import { type BigIntStats, constants, type Dirent } from 'node:fs';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rmdir,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import {
  type Clock,
  ClosedError,
  InvalidArgumentError,
  InvalidConfigError,
  StoreUnavailableError,
  systemClock,
  WalshipError,
} from '../core/index.js';
import {
  assertValidDelimiter,
  assertValidKey,
  assertValidPrefix,
  assertValidWriteId,
  clipRange,
  compareKeys,
  pageLimit,
  RESERVED_FIRST_SEGMENT,
} from './keys.js';
import { maxKey } from './memory.js';
import {
  DELETE_MANY_KEYS_MAX,
  type GetOptions,
  type GetResult,
  LIST_PAGE_KEYS_MAX,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type PutResult,
} from './object-store.js';

export interface FsStoreOptions {
  /** The directory that holds the objects (`fs::root=`). Created if missing. */
  root: string;
  /**
   * Where temp files are written before they are published (`fs::atomic_write_dir=`); it must be
   * on the same filesystem as `root`, because publishing is a `link()`/`rename()`. Default
   * `<root>/.walship/tmp`.
   */
  atomicWriteDir?: string;
  /** A key lock older than this is taken to belong to a crashed writer and is broken. Default 30 000 ms. */
  lockStaleMs?: number;
  /** Give up waiting for a key lock after this long (StoreUnavailableError). Default 10 000 ms. */
  lockWaitMs?: number;
  clock?: Clock;
}

const LOCK_STALE_MS_DEFAULT = 30_000;
/** What a lock file holds: the host and process that took it. */
const LOCK_OWNER = `${hostname()} ${process.pid}\n`;
const LOCK_WAIT_MS_DEFAULT = 10_000;
/** Temp files older than this at open are leftovers of a crashed writer and are removed. */
const TEMP_FILE_ORPHAN_MS = 60 * 60 * 1000;
/** Concurrent unlinks in one deleteMany. */
const DELETE_CONCURRENCY = 16;
/** Each new version of a key gets an mtime at least this far past the previous one (see `etagOf`). */
const MTIME_STEP_MS = 0.01;
/**
 * Tries to create a key's directory and publish into it, when a delete pruning that directory
 * removes it in between (#pruneEmptyDirs). Each loss needs a delete to empty the directory in a
 * window of microseconds, so more than a few in a row mean something else is wrong.
 */
const PUBLISH_ATTEMPTS_MAX = 8;

/** Directories FsStore remembers as existing, at most (a table's `wal/` is one): past it, it starts over. */
const KNOWN_DIRS_MAX = 100_000;

/**
 * The embedded default store: one file per object under a root directory, usable on a local
 * disk or on NFS (RFC-0001 of the store is this comment):
 * - every write goes to a temp file in `atomicWriteDir`, is fsynced, then published:
 *   create-only with `link()` (fails atomically if the key exists), plain and compare-and-swap
 *   writes with `rename()` under a per-key lock file; the directory is fsynced after publishing;
 * - readers open the file once and read from that handle, so they see one whole version;
 * - the ETag is the file's inode, size and mtime (nanoseconds). Under the key lock each new
 *   version's mtime is set strictly past the previous version's, so an ETag never repeats for a
 *   key even when the filesystem reuses an inode within its timestamp granularity;
 * - NFS: a `link()` retransmitted after a lost reply answers EEXIST although it succeeded; the
 *   store recognises that case by comparing the inode of the key with its temp file's.
 * - a directory exists exactly while some key lies below it, as a common prefix does on S3: a
 *   delete removes the directories it leaves empty (#pruneEmptyDirs), and a put whose directory
 *   was removed that way between its mkdir and its publish creates it again (#publish). So a
 *   delimiter listing, which reports subdirectories as common prefixes without reading them, does
 *   not report a table whose objects are all gone. An empty directory survives only a crash
 *   between an unlink and its rmdir (the rmdir is not fsynced either), a failed rmdir, or a root
 *   written before deletes pruned; it is reported as a prefix with nothing below until a delete
 *   under it (even of a missing key, as a retry is) prunes it. Reading every subdirectory to rule
 *   that out would cost what the delimiter listing exists to save.
 * Limitation: a key cannot also be the directory part of another key (`a` and `a/b`).
 * Write ids are not recorded (no portable place for them); `withRetries` then recognises a
 * write of its own by comparing bytes.
 */
export class FsStore implements ObjectStore {
  readonly description: string;
  readonly #root: string;
  readonly #tmpDir: string;
  readonly #lockDir: string;
  readonly #lockStaleMs: number;
  readonly #lockWaitMs: number;
  readonly #clock: Clock;
  /** Directories known to exist (#ensureParentDir), forgotten by this store's prunes and publishes that found one gone. */
  readonly #knownDirs = new Set<string>();
  #closed = false;

  private constructor(options: FsStoreOptions, tmpDir: string) {
    this.#root = path.resolve(options.root);
    this.#tmpDir = tmpDir;
    this.#lockDir = path.join(this.#root, RESERVED_FIRST_SEGMENT, 'locks');
    this.#lockStaleMs = options.lockStaleMs ?? LOCK_STALE_MS_DEFAULT;
    this.#lockWaitMs = options.lockWaitMs ?? LOCK_WAIT_MS_DEFAULT;
    this.#clock = options.clock ?? systemClock;
    const atomic = options.atomicWriteDir === undefined ? '' : `atomic_write_dir=${options.atomicWriteDir};`;
    this.description = `fs::root=${options.root};${atomic}`;
  }

  /** Create the directories, check that temp files can be linked into the root, remove old temp files. */
  static async open(options: FsStoreOptions): Promise<FsStore> {
    const root = path.resolve(options.root);
    const tmpDir = path.resolve(options.atomicWriteDir ?? path.join(root, RESERVED_FIRST_SEGMENT, 'tmp'));
    await mkdirOrThrow(root, 'root');
    await mkdirOrThrow(tmpDir, 'atomic_write_dir');
    await mkdirOrThrow(path.join(root, RESERVED_FIRST_SEGMENT, 'locks'), 'root');
    const store = new FsStore(options, tmpDir);
    await store.#checkSameFilesystem();
    await store.#removeOrphanTempFiles();
    return store;
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    this.#checkOpen();
    assertValidKey(key);
    if (options.writeId !== undefined) assertValidWriteId(options.writeId);
    const condition = options.condition ?? { type: 'none' };
    const target = this.#pathOf(key);
    await this.#ensureParentDir(key, target);
    if (condition.type === 'absent') return this.#putAbsent(key, target, body);
    return this.#withKeyLock(key, async () => {
      const current = await statOrNull(target);
      if (condition.type === 'match' && (current === null || etagOf(current) !== condition.etag)) {
        return { status: 'precondition-failed' };
      }
      const minMtimeMs = current === null ? 0 : Number(current.mtimeNs / 1_000_000n) + MTIME_STEP_MS;
      const { temp, etag, closed } = await this.#writeTemp(body, minMtimeMs);
      await closed;
      try {
        await this.#publish(key, target, () => rename(temp, target));
      } catch (error) {
        await unlink(temp).catch(() => {});
        throw error instanceof WalshipError ? error : this.#ioError('publish', key, error);
      }
      await fsyncDirIfPresent(path.dirname(target));
      return { status: 'written', etag };
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult | null> {
    this.#checkOpen();
    assertValidKey(key);
    let handle: FileHandle;
    try {
      handle = await open(this.#pathOf(key), constants.O_RDONLY);
    } catch (error) {
      if (isMissing(error)) return null;
      throw this.#ioError('open', key, error);
    }
    try {
      const stats = await handle.stat({ bigint: true });
      if (!stats.isFile()) return null;
      const info = infoOf(key, stats);
      if (options.ifNoneMatch !== undefined && options.ifNoneMatch === info.etag)
        return { status: 'not-modified' };
      const [start, end] = clipRange(options.range, info.sizeBytes);
      const body = new Uint8Array(end - start);
      let filled = 0;
      while (filled < body.byteLength) {
        const { bytesRead } = await handle.read(body, filled, body.byteLength - filled, start + filled);
        if (bytesRead === 0) throw new StoreUnavailableError(`${key}: file shrank while being read`);
        filled += bytesRead;
      }
      return { status: 'ok', body, info };
    } catch (error) {
      if (error instanceof InvalidArgumentError || error instanceof StoreUnavailableError) throw error;
      throw this.#ioError('read', key, error);
    } finally {
      await handle.close();
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    this.#checkOpen();
    assertValidKey(key);
    const stats = await statOrNull(this.#pathOf(key)).catch((error) => {
      throw this.#ioError('stat', key, error);
    });
    return stats === null || !stats.isFile() ? null : infoOf(key, stats);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    this.#checkOpen();
    assertValidPrefix(prefix);
    assertValidDelimiter(options.delimiter);
    const limit = pageLimit(options.limit, LIST_PAGE_KEYS_MAX);
    const after = maxKey(options.startAfter, options.token);
    if (options.delimiter !== undefined) return this.#listLevel(prefix, after, limit);
    // Walk the deepest directory the prefix names completely; filter the rest by string.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const objects: ObjectInfo[] = [];
    let more = false;
    for await (const key of this.#keysUnder(dirKey, prefix, after)) {
      if (objects.length === limit) {
        more = true;
        break;
      }
      const stats = await statOrNull(this.#pathOf(key));
      if (stats?.isFile()) objects.push(infoOf(key, stats)); // deleted meanwhile: skip, as S3 would
    }
    const last = objects.at(-1);
    return more && last !== undefined ? { objects, nextToken: last.key } : { objects };
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    assertValidKey(key);
    await this.#unlink(key);
    await this.#pruneEmptyDirs(path.dirname(this.#pathOf(key)));
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    this.#checkOpen();
    if (keys.length > DELETE_MANY_KEYS_MAX) {
      throw new InvalidArgumentError(
        `deleteMany takes at most ${DELETE_MANY_KEYS_MAX} keys, got ${keys.length}`,
      );
    }
    for (const key of keys) assertValidKey(key);
    for (let i = 0; i < keys.length; i += DELETE_CONCURRENCY) {
      await Promise.all(keys.slice(i, i + DELETE_CONCURRENCY).map((key) => this.#unlink(key)));
    }
    // Each directory once, not once per key: a batch of segments shares one.
    for (const dir of new Set(keys.map((key) => path.dirname(this.#pathOf(key))))) {
      await this.#pruneEmptyDirs(dir);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /**
   * A delimiter listing (see ObjectStore.list): one settled read of the directory `prefix` names
   * (`tables/ab` names `tables`, whose entries must then start with `ab`); its files are keys, its
   * subdirectories common prefixes, reported without reading them.
   */
  async #listLevel(prefix: string, after: string | undefined, limit: number): Promise<ListPage> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash < 0 ? '' : prefix.slice(0, slash);
    const namePrefix = prefix.slice(slash + 1);
    const objects: ObjectInfo[] = [];
    const prefixes: string[] = [];
    let last: string | undefined;
    for (const entry of await this.#readDirSettled(dirKey)) {
      if (dirKey === '' && entry.name === RESERVED_FIRST_SEGMENT) continue;
      if (!entry.name.startsWith(namePrefix)) continue;
      // As reported: `dir/name` for a file, `dir/name/` for a subdirectory (its sortKey).
      const reported = dirKey === '' ? entry.sortKey : `${dirKey}/${entry.sortKey}`;
      if (after !== undefined && compareKeys(reported, after) <= 0) continue;
      if (objects.length + prefixes.length === limit) return { objects, prefixes, nextToken: last! };
      if (entry.isDirectory) {
        prefixes.push(reported);
      } else {
        const stats = await statOrNull(this.#pathOf(reported)).catch((error) => {
          throw this.#ioError('stat', reported, error);
        });
        if (!stats?.isFile()) continue; // deleted meanwhile: skip, as S3 would
        objects.push(infoOf(reported, stats));
      }
      last = reported;
    }
    return { objects, prefixes };
  }

  async #unlink(key: string): Promise<void> {
    try {
      await unlink(this.#pathOf(key));
    } catch (error) {
      if (!isMissing(error)) throw this.#ioError('delete', key, error);
    }
  }

  /**
   * Remove `dir` and then its parents, below the root, while they are empty, so that no directory
   * outlives the keys below it (see the class comment). Best effort: the first directory that is
   * not empty, or cannot be removed, ends it; one already removed by a concurrent delete does not.
   * Not fsynced: a removal lost in a crash leaves an empty directory, which a listing tolerates.
   */
  async #pruneEmptyDirs(dir: string): Promise<void> {
    for (let d = dir; d.startsWith(`${this.#root}${path.sep}`); d = path.dirname(d)) {
      try {
        this.#knownDirs.delete(d);
        await rmdir(d);
      } catch (error) {
        if (!isCode(error, 'ENOENT')) return;
      }
    }
  }

  /**
   * Run `publish`, a link() or rename() of a temp file to `target`. When a delete pruned the key's
   * directory since it was created (ENOENT), create it again and retry. A directory so recreated
   * by another put is durable once this put's directory fsync is: ext4 and XFS journal metadata
   * operations in order, and an NFS server commits a mkdir before it replies.
   */
  async #publish(key: string, target: string, publish: () => Promise<void>): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        await publish();
        return attempt;
      } catch (error) {
        if (!isCode(error, 'ENOENT') || attempt >= PUBLISH_ATTEMPTS_MAX) throw error;
      }
      this.#knownDirs.delete(path.dirname(target));
      await this.#ensureParentDir(key, target);
    }
  }

  /**
   * A create-only put: the temp file written and fsynced, link()ed to the key, the directory
   * fsynced. Each I/O step resumes on a turn of the event loop, and under load a turn waits for
   * the ILP requests being parsed, so a segment upload of 12 sequential steps took ~200 ms at 80 %
   * of a primary's rate (issue 16). Steps that do not depend on each other share a turn: the key's
   * directory is opened beside the temp file, the temp file closed beside the link, removed beside
   * the directory's fsync: 7 turns.
   */
  async #putAbsent(key: string, target: string, body: Uint8Array): Promise<PutResult> {
    const dir = path.dirname(target);
    const dirHandle = open(dir, constants.O_RDONLY).catch(() => undefined);
    const closeDir = () => void dirHandle.then((handle) => handle?.close().catch(() => {}));
    let written: { temp: string; etag: string; closed: Promise<void> };
    try {
      written = await this.#writeTemp(body, 0);
    } catch (error) {
      closeDir();
      throw error;
    }
    const { temp, etag, closed } = written;
    let attempts: number;
    try {
      // A close after the fsync has nothing left to report: the bytes are on disk.
      [, attempts] = await Promise.all([
        closed.catch(() => {}),
        this.#publish(key, target, () => link(temp, target)),
      ]);
    } catch (error) {
      closeDir();
      if (!isExists(error)) {
        await unlink(temp).catch(() => {});
        throw error instanceof WalshipError ? error : this.#ioError('publish', target, error);
      }
      // NFS: a retransmitted LINK whose first reply was lost answers EEXIST although it worked.
      const [mine, theirs] = await Promise.all([stat(temp, { bigint: true }), statOrNull(target)]);
      if (theirs === null || theirs.ino !== mine.ino || theirs.dev !== mine.dev) {
        await unlink(temp).catch(() => {});
        return { status: 'precondition-failed' };
      }
      await Promise.all([unlink(temp).catch(() => {}), fsyncDirIfPresent(dir)]);
      return { status: 'written', etag };
    }
    // The handle opened before the link names the directory the link went into, unless a delete
    // pruned that one and a put made it anew meanwhile: #publish did (a retry), or another put did
    // (the inodes differ). Then the directory there now is fsynced, in a turn of its own.
    const handle = attempts === 1 ? await dirHandle : undefined;
    try {
      const [, , opened, now] = await Promise.all([
        unlink(temp).catch(() => {}),
        handle?.sync(),
        handle?.stat({ bigint: true }),
        handle === undefined ? undefined : statOrNull(dir),
      ]);
      if (handle === undefined || now === null || opened?.ino !== now?.ino || opened?.dev !== now?.dev)
        await fsyncDirIfPresent(dir);
    } finally {
      closeDir();
    }
    return { status: 'written', etag };
  }

  /**
   * Write `body` to a new temp file, stamp an mtime of at least `minMtimeMs`, fsync it; return its
   * path and the ETag it will have once published (link and rename change neither inode nor mtime).
   * The file is closed after it returns, by `closed`, which the caller awaits (a create-only put
   * beside its link).
   */
  async #writeTemp(
    body: Uint8Array,
    minMtimeMs: number,
  ): Promise<{ temp: string; etag: string; closed: Promise<void> }> {
    const temp = path.join(this.#tmpDir, `${randomUUID()}.tmp`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      let written = 0;
      while (written < body.byteLength) {
        const { bytesWritten } = await handle.write(body, written, body.byteLength - written);
        written += bytesWritten;
      }
      const mtimeMs = Math.max(this.#clock.wallMs(), minMtimeMs);
      await handle.utimes(mtimeMs / 1000, mtimeMs / 1000);
      await handle.sync();
      const etag = etagOf(await handle.stat({ bigint: true }));
      return { temp, etag, closed: handle.close() };
    } catch (error) {
      await handle?.close().catch(() => {});
      await unlink(temp).catch(() => {});
      throw this.#ioError('write temp file for', temp, error);
    }
  }

  async #withKeyLock<T>(key: string, body: () => Promise<T>): Promise<T> {
    const lockPath = path.join(this.#lockDir, `${Buffer.from(key).toString('base64url').slice(0, 200)}.lock`);
    const startedMs = this.#clock.monotonicMs();
    let waitMs = 1;
    for (;;) {
      if (await this.#tryLock(key, lockPath)) break;
      this.#checkOpen(); // a store closed while waiting (a node shutting down) stops waiting
      await this.#breakIfStale(lockPath);
      if (this.#clock.monotonicMs() - startedMs > this.#lockWaitMs) {
        throw new StoreUnavailableError(
          `${this.description}: timed out after ${this.#lockWaitMs} ms waiting for the lock of ${key} (${lockPath})`,
        );
      }
      await this.#clock.sleep(waitMs);
      waitMs = Math.min(waitMs * 2, 50);
    }
    try {
      return await body();
    } finally {
      await unlink(lockPath).catch(() => {});
    }
  }

  /**
   * Takes the lock file at `lockPath` if it is free. The file is written whole (its holder: host
   * and pid) before it appears, by link() from a claim file, so a lock never exists without its
   * holder and a killed holder on this host is recognised at once (#breakIfStale). An EEXIST that
   * is really our own link (an NFS retransmit) is recognised by inode.
   */
  async #tryLock(key: string, lockPath: string): Promise<boolean> {
    const claim = `${lockPath}.${randomUUID()}.claim`;
    try {
      await writeFile(claim, LOCK_OWNER, { flag: 'wx', mode: 0o644 });
      try {
        await link(claim, lockPath);
        return true;
      } catch (error) {
        if (!isExists(error)) throw error;
        const [ours, held] = await Promise.all([statOrNull(claim), statOrNull(lockPath)]);
        return ours !== null && held !== null && ours.ino === held.ino;
      }
    } catch (error) {
      throw this.#ioError('lock', key, error);
    } finally {
      await unlink(claim).catch(() => {});
    }
  }

  /**
   * A lock file older than lockStaleMs belongs to a writer that crashed between taking and
   * releasing it (a write holds it for milliseconds). So does one that names a process of this
   * host that no longer exists (a killed node restarted at once need not wait lockStaleMs). Rename
   * it away first so that only one breaker removes it. Clocks of NFS clients must agree within
   * lockStaleMs for this to be safe.
   */
  async #breakIfStale(lockPath: string): Promise<void> {
    const stats = await statOrNull(lockPath);
    if (stats === null) return;
    const ageMs = this.#clock.wallMs() - Number(stats.mtimeNs / 1_000_000n);
    if (ageMs < this.#lockStaleMs && !(await ownerIsGone(lockPath))) return;
    const aside = `${lockPath}.stale-${randomUUID()}`;
    try {
      await rename(lockPath, aside);
      await unlink(aside);
    } catch {
      // Someone else broke or released it: just try again.
    }
  }

  #pathOf(key: string): string {
    return path.join(this.#root, ...key.split('/'));
  }

  /** True when `dir` or one of its parents below the root is something other than a directory. */
  async #fileOnPath(dir: string): Promise<boolean> {
    for (let d = dir; d.startsWith(`${this.#root}${path.sep}`); d = path.dirname(d)) {
      const stats = await statOrNull(d).catch(() => null);
      if (stats !== null && !stats.isDirectory()) return true;
    }
    return false;
  }

  /** Create the key's directory and its missing parents, durably; again if a delete prunes it meanwhile. */
  async #ensureParentDir(key: string, target: string): Promise<void> {
    const dir = path.dirname(target);
    // A directory this store made or found is not looked at again: one fewer I/O step per put. A
    // delete elsewhere may prune it since; the publish then fails ENOENT and makes it anew (#publish).
    if (this.#knownDirs.has(dir)) return;
    for (let attempt = 1; ; attempt++) {
      try {
        const firstCreated = await mkdir(dir, { recursive: true });
        if (firstCreated !== undefined) await fsyncNewDirs(path.dirname(firstCreated), dir);
        if (this.#knownDirs.size >= KNOWN_DIRS_MAX) this.#knownDirs.clear();
        this.#knownDirs.add(dir);
        return;
      } catch (error) {
        // EEXIST also comes from a race: mkdir found the directory, a delete pruned it
        // (#pruneEmptyDirs) before mkdir's own check of it. Only a file in the path is the key's fault.
        if ((isCode(error, 'ENOTDIR') || isCode(error, 'EEXIST')) && (await this.#fileOnPath(dir))) {
          throw new InvalidArgumentError(
            `key ${JSON.stringify(key)} cannot be stored in a filesystem store: a part of it is an existing object`,
          );
        }
        // A directory just created, still empty, was pruned by a delete (#pruneEmptyDirs).
        const raced = isCode(error, 'ENOENT') || isCode(error, 'EEXIST') || isCode(error, 'ENOTDIR');
        if (!raced || attempt >= PUBLISH_ATTEMPTS_MAX) {
          throw this.#ioError('create directory for', key, error);
        }
      }
    }
  }

  /**
   * The keys under directory `dirKey` that start with `prefix` and sort after `after`, in key order
   * (a depth-first walk of directories read by #readDirSettled). A subdirectory whose every key
   * sorts before `after` is not read at all.
   */
  async *#keysUnder(dirKey: string, prefix: string, after: string | undefined): AsyncGenerator<string> {
    for (const entry of await this.#readDirSettled(dirKey)) {
      if (dirKey === '' && entry.name === RESERVED_FIRST_SEGMENT) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory) {
        const asPrefix = `${key}/`;
        if (!asPrefix.startsWith(prefix) && !prefix.startsWith(asPrefix)) continue;
        // Every key below differs from `after` within `asPrefix`, as `asPrefix` itself does.
        if (after !== undefined && !after.startsWith(asPrefix) && compareKeys(asPrefix, after) < 0) continue;
        yield* this.#keysUnder(key, prefix, after);
      } else if (key.startsWith(prefix) && (after === undefined || compareKeys(key, after) > 0)) {
        yield key;
      }
    }
  }

  /**
   * The entries of one directory in key order (a subdirectory sorts as `name/`, as its keys do).
   * One readdir() is not a snapshot: POSIX leaves open whether an entry added during the scan is
   * returned, and on ext4 (hashed directories, from ~1 200 entries) a file linked during the scan
   * is missed while one linked after it is returned, so a listing showed segment k+1 without k
   * (issue 13). So the directory is read twice and the second read is kept, cut at the last entry
   * (in key order) that the first read saw:
   * - everything in the first read was published before the second began, and so was everything
   *   published before any of it: the second read holds all of that (unless deleted meanwhile);
   * - an entry of the second read past the first read's last may have been published during the
   *   second read, after others it missed: it is left for the next listing.
   * Hence a listing holds every object whose put completed before list() was called, and, for
   * keys written in ascending order within a directory (a table's segments, its txn log), never
   * one without those written before it. Cost: two readdirs per directory walked, no retry loop
   * (a directory written to without pause never has two reads that agree).
   */
  async #readDirSettled(dirKey: string): Promise<DirEntry[]> {
    const first = await this.#readDirOnce(dirKey);
    if (first.length === 0) return first;
    const cut = first.reduce(
      (max, e) => (compareKeys(e.sortKey, max) > 0 ? e.sortKey : max),
      first[0]!.sortKey,
    );
    const second = await this.#readDirOnce(dirKey);
    return second
      .filter((e) => compareKeys(e.sortKey, cut) <= 0)
      .sort((a, b) => compareKeys(a.sortKey, b.sortKey));
  }

  /** One readdir() of `dirKey`: its files and subdirectories (a missing directory has none). */
  async #readDirOnce(dirKey: string): Promise<DirEntry[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(dirKey === '' ? this.#root : this.#pathOf(dirKey), { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return [];
      throw this.#ioError('list', dirKey, error);
    }
    const found: DirEntry[] = [];
    for (const entry of entries) {
      if (entry.isDirectory()) found.push({ name: entry.name, isDirectory: true, sortKey: `${entry.name}/` });
      else if (entry.isFile()) found.push({ name: entry.name, isDirectory: false, sortKey: entry.name });
    }
    return found;
  }

  async #checkSameFilesystem(): Promise<void> {
    const probe = path.join(this.#tmpDir, `${randomUUID()}.tmp`);
    const linked = path.join(this.#root, RESERVED_FIRST_SEGMENT, `${randomUUID()}.link-probe`);
    const handle = await open(probe, 'wx');
    await handle.close();
    try {
      await link(probe, linked);
      await unlink(linked);
    } catch (error) {
      throw new InvalidConfigError(
        `fs store: atomic_write_dir ${this.#tmpDir} must be on the same filesystem as root ${this.#root} ` +
          `(link() failed: ${(error as Error).message})`,
        { cause: error },
      );
    } finally {
      await unlink(probe).catch(() => {});
    }
  }

  async #removeOrphanTempFiles(): Promise<void> {
    const now = this.#clock.wallMs();
    for (const name of await readdir(this.#tmpDir).catch(() => [] as string[])) {
      if (!name.endsWith('.tmp')) continue;
      const stats = await statOrNull(path.join(this.#tmpDir, name));
      if (stats !== null && now - Number(stats.mtimeNs / 1_000_000n) > TEMP_FILE_ORPHAN_MS) {
        await unlink(path.join(this.#tmpDir, name)).catch(() => {});
      }
    }
  }

  #ioError(action: string, what: string, error: unknown): StoreUnavailableError {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
    return new StoreUnavailableError(`${this.description}: cannot ${action} ${what}: ${code}`, {
      cause: error,
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`${this.description} is closed`);
  }
}

type BigStats = BigIntStats;

/** A directory entry as a listing walks it; `sortKey` orders it among its siblings as its keys sort. */
interface DirEntry {
  name: string;
  isDirectory: boolean;
  sortKey: string;
}

function etagOf(stats: BigStats): string {
  return `${stats.ino.toString(36)}-${stats.size.toString(36)}-${stats.mtimeNs.toString(36)}`;
}

function infoOf(key: string, stats: BigStats): ObjectInfo {
  return {
    key,
    sizeBytes: Number(stats.size),
    etag: etagOf(stats),
    modifiedAtMs: Number(stats.mtimeNs / 1_000_000n),
  };
}

async function statOrNull(file: string): Promise<BigStats | null> {
  try {
    return await stat(file, { bigint: true });
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * fsync a directory just published into, unless it is gone: a delete of the new key, after the
 * publish, may have pruned it, and then there is nothing left to make durable.
 */
async function fsyncDirIfPresent(dir: string): Promise<void> {
  try {
    await fsyncDir(dir);
  } catch (error) {
    if (!isCode(error, 'ENOENT')) throw error;
  }
}

/** Make new directory entries durable: fsync every directory from `top` down to `bottom`. */
async function fsyncNewDirs(top: string, bottom: string): Promise<void> {
  const dirs: string[] = [];
  for (let d = bottom; d !== top && d.length > top.length; d = path.dirname(d)) dirs.push(d);
  dirs.push(top);
  for (const d of dirs) await fsyncDir(d);
}

async function mkdirOrThrow(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new InvalidConfigError(
      `fs store: cannot create ${what} directory ${dir}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

function isCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

function isMissing(error: unknown): boolean {
  return isCode(error, 'ENOENT') || isCode(error, 'ENOTDIR') || isCode(error, 'EISDIR');
}

function isExists(error: unknown): boolean {
  return isCode(error, 'EEXIST');
}

/**
 * True when the lock file names a process of this host that does not exist any more. An empty or
 * unreadable file, another host's process, or a live (or reused) pid: false, and the lock waits to
 * be stale by age.
 */
async function ownerIsGone(lockPath: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch {
    return false;
  }
  const match = /^(\S+) (\d{1,10})\n$/.exec(text);
  if (match === null || match[1] !== hostname()) return false;
  try {
    process.kill(Number(match[2]), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
