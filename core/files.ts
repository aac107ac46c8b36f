import { stat } from 'node:fs/promises';

/** Whether `file` exists (any kind of entry); other errors than ENOENT are thrown. */
export async function fileExists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
