import { rename } from 'node:fs/promises';

/**
 * Moves a closed SQLite database and whatever WAL and shared-memory files it left from `from` to
 * `to`. The companions go first and the database last, so the database appears at `to` only with
 * them. Files that are absent are skipped.
 */
export async function moveDatabaseFiles(from: string, to: string): Promise<void> {
  for (const suffix of ['-wal', '-shm', '']) {
    try {
      await rename(`${from}${suffix}`, `${to}${suffix}`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}
