import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsStore } from './fs.js';

// Issue 13 item 1: one readdir() of a directory being written is not a snapshot. On ext4, whose
// directories are hashed from ~1 200 entries on, a file linked during the scan can be missed while
// one linked after it is returned: a replica saw segment k+1 without k and suspended its table.
// (This machine's /tmp and /work are ext4: `df -T`.) The fs store's listing must never show a file
// without the ones written before it in key order.

/** Files the linker publishes, in order: well past the ~1 200 entries where ext4 hashes a directory. */
const FILES = 6000;
/**
 * The linker's pause between two files (Atomics.wait: sub-millisecond, without burning a core).
 * Back-to-back link()s rarely land inside a scan; paced ones do, as a primary's uploads do.
 */
const LINK_PAUSE_MS = 0.2;
/** Keys one listing asks for: pages smaller than a far-behind replica's (FOLLOWER_LIMITS.listBatchKeys), so more scans race the linker. */
const PAGE_KEYS = 100;
/** Listers running at once, each following the directory as a replica does. */
const LISTERS = 3;
const PREFIX = 'tables/t/wal/';

/** The key of the k-th file (k from 1), 20 digits as a segment key. */
const keyOf = (k: number) => `${PREFIX}${String(k).padStart(20, '0')}.seg`;

/**
 * A worker thread that publishes files 1..count under `dir` one after the other with link(), as a
 * primary publishes a table's segments (each complete before the next begins), as fast as it can.
 */
const LINKER = `
const { linkSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const { source, dir, count, pauseMs } = workerData;
const pause = new Int32Array(new SharedArrayBuffer(4));
for (let k = 1; k <= count; k++) {
  linkSync(source, dir + '/' + String(k).padStart(20, '0') + '.seg');
  Atomics.wait(pause, 0, 0, pauseMs);
}
parentPort.postMessage('done');
`;

let root: string;
let store: FsStore;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'walship-fs-listing-'));
  store = await FsStore.open({ root });
});

afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

describe('FsStore listing while a directory is written', () => {
  it(`never shows file k+1 without file k while ${FILES} files are linked in order`, async () => {
    const dir = path.join(root, ...PREFIX.split('/').filter((part) => part !== ''));
    await mkdir(dir, { recursive: true });
    // One inode linked under every name: the link() is what a listing races with.
    const source = path.join(root, '.walship', 'tmp', 'source.seg');
    await writeFile(source, 'x');
    const linker = new Worker(LINKER, {
      eval: true,
      workerData: { source, dir, count: FILES, pauseMs: LINK_PAUSE_MS },
    });
    const linked = new Promise<void>((resolve, reject) => {
      linker.once('message', () => resolve());
      linker.once('error', reject);
    });
    let done = false;
    void linked.then(() => {
      done = true;
    });

    // A replica's pattern: LIST after the watermark, expect the next keys in order, move on.
    const torn: string[] = [];
    /** Listings made while the linker ran that reached its tail (fewer keys than asked for). */
    let tailListings = 0;
    const follow = async () => {
      let watermark = 0;
      const followOnce = async () => {
        const page = await store.list(PREFIX, { startAfter: keyOf(watermark), limit: PAGE_KEYS });
        if (!done && page.objects.length < PAGE_KEYS) tailListings++;
        for (const [i, object] of page.objects.entries()) {
          if (object.key !== keyOf(watermark + 1 + i)) {
            torn.push(`after file ${watermark}: position ${i} holds ${object.key}`);
            return; // list again from the same watermark
          }
        }
        watermark += page.objects.length;
      };
      while (!done) await followOnce();
      while (watermark < FILES) await followOnce();
      return watermark;
    };
    const reached = await Promise.all(Array.from({ length: LISTERS }, follow));
    await linked;
    await linker.terminate();

    expect(torn).toEqual([]);
    expect(reached).toEqual(Array(LISTERS).fill(FILES));
    // The listers really raced the linker at the tail of the directory, where torn reads show.
    expect(tailListings).toBeGreaterThan(0);
  });

  it('a listing holds every file published before it began, across pages', async () => {
    // Written directly (not by put(), which fsyncs each file): the listing is what is tested.
    const dir = path.join(root, ...PREFIX.split('/').filter((part) => part !== ''));
    await mkdir(dir, { recursive: true });
    for (let k = 1; k <= 1500; k++) await writeFile(path.join(root, ...keyOf(k).split('/')), 'x');
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await store.list(PREFIX, { limit: 700, ...(token === undefined ? {} : { token }) });
      keys.push(...page.objects.map((o) => o.key));
      token = page.nextToken;
    } while (token !== undefined);
    expect(keys).toEqual(Array.from({ length: 1500 }, (_, i) => keyOf(i + 1)));
  });
});
