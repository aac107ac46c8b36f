import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileExists, InvalidConfigError } from '../core/index.js';
import type { NodeConfig } from './config.js';

/**
 * The admin token, from `admin.token` or from the file `admin.token.file` names. A node creates
 * that file when it is missing (createAdminTokenFile), so `npm start` and `npm run replica` share
 * one token without anyone typing it, and the admin commands read the same file. The token never
 * reaches a log or a message: only the file's path does.
 */

/** A token file longer than this is not a token file (a wrong path, say); it is refused. */
const TOKEN_FILE_BYTES_MAX = 4096;
/** Random bytes in a generated token: 192 bits, 32 base64url characters. */
const TOKEN_RANDOM_BYTES = 24;

/** `admin.token`, else the first line of `admin.token.file`, else undefined (admin routes answer 403). */
export async function adminTokenOf(config: NodeConfig): Promise<string | undefined> {
  const token = config.string('admin.token');
  const file = config.string('admin.token.file');
  if (token !== undefined && file !== undefined)
    throw new InvalidConfigError('admin.token and admin.token.file are both set: give one');
  if (file === undefined) return token;
  return readTokenFile(file);
}

/**
 * Creates `admin.token.file` with a fresh random token, mode 0600, when the key is set and the file
 * does not exist; resolves to its path when it made it, else undefined. Create-only: two nodes
 * started at once over one file (`npm start`, `npm run replica`) end with the same token, since
 * the file appears whole (written aside, then hard-linked into place) or not at all.
 */
export async function createAdminTokenFile(config: NodeConfig): Promise<string | undefined> {
  const file = config.string('admin.token.file');
  if (file === undefined || config.string('admin.token') !== undefined) return undefined;
  // A file that is there is left alone, in a folder the node may not write to (/etc/walship).
  const present = await fileExists(file).catch((error: NodeJS.ErrnoException) => {
    throw new InvalidConfigError(`admin.token.file: cannot reach ${file}: ${error.code}`, { cause: error });
  });
  if (present) return undefined;
  await mkdir(path.dirname(file), { recursive: true });
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(aside, `${randomBytes(TOKEN_RANDOM_BYTES).toString('base64url')}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
    await link(aside, file);
    return file;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new InvalidConfigError(
      `admin.token.file: cannot create ${file}: ${(error as NodeJS.ErrnoException).code}`,
      { cause: error },
    );
  } finally {
    await rm(aside, { force: true });
  }
}

async function readTokenFile(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? ' (a node creates it at its first start)' : '';
    throw new InvalidConfigError(`admin.token.file: cannot read ${file}: ${code}${hint}`, { cause: error });
  }
  const first = bytes.length > TOKEN_FILE_BYTES_MAX ? '' : bytes.toString('utf8').split(/\r?\n/, 1)[0];
  const token = (first ?? '').trim();
  if (token === '')
    throw new InvalidConfigError(
      `admin.token.file: ${file} holds no token (expected one line, at most ${TOKEN_FILE_BYTES_MAX} bytes)`,
    );
  return token;
}
