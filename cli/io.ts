/** What a command needs from its process, injectable so tests run commands in-process. */
export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

export const processIo: CommandIo = {
  stdout: (text) => process.stdout.write(`${text}\n`),
  stderr: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
};

/** Exit codes shared by every command. */
export const EXIT = {
  ok: 0,
  /** The command ran and found a problem (a failed check). */
  failed: 1,
  /** Bad arguments or configuration. */
  usage: 2,
  /** A dependency (the object store) could not be reached. */
  unavailable: 3,
} as const;
