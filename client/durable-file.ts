import { closeSync, fsyncSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';

/**
 * Files that survive a crash: written to `<name>.tmp`, fsynced, renamed over `<name>`, and the
 * directory fsynced so the rename itself is durable. A crash leaves either the old file or the new
 * one, and maybe a `.tmp` that a reader ignores and removes. With `fsync: false` the same steps
 * run without the fsyncs: a process crash is survived (the kernel keeps the data), a power loss
 * may not be.
 */

/** The suffix of a file being written; never read as data. */
export const TEMP_SUFFIX = '.tmp';

/** Writes `bytes` to `file` atomically (see above). */
export async function writeFileAtomic(file: string, bytes: Uint8Array, options: { fsync: boolean }) {
  const temp = `${file}${TEMP_SUFFIX}`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(bytes);
    if (options.fsync) await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  if (options.fsync) await fsyncDirectory(path.dirname(file));
}

/** writeFileAtomic, blocking (for files written once, at open). */
export function writeFileAtomicSync(file: string, bytes: Uint8Array, options: { fsync: boolean }): void {
  const temp = `${file}${TEMP_SUFFIX}`;
  writeFileSync(temp, bytes, { flag: 'w' });
  if (options.fsync) fsyncFileSync(temp);
  renameSync(temp, file);
  if (options.fsync) fsyncDirectorySync(path.dirname(file));
}

/** Makes the entries of `dir` (creations, renames, removals) durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function fsyncDirectorySync(dir: string): void {
  fsyncFileSync(dir);
}

function fsyncFileSync(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
