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

/**
 * Keeps a started node running until SIGINT or SIGTERM, then closes it and then its store (the
 * node does not own the store it was given). Resolves once both are closed.
 */
export function runUntilSignal(
  node: { close(): Promise<void> },
  store: { close(): Promise<void> },
  log: { info(fields: object, message: string): void },
): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      void node
        .close()
        .then(() => store.close())
        .finally(resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/**
 * With `parseArgs({ strict: false, tokens: true })`: the first unknown option or stray positional
 * argument, as a message for the usage error; undefined when there is none.
 */
export function strayArgument(
  tokens: readonly (
    | { kind: 'option'; name: string }
    | { kind: 'positional'; value: string }
    | { kind: string }
  )[],
  known: ReadonlySet<string>,
): string | undefined {
  for (const token of tokens) {
    if (token.kind === 'option' && 'name' in token && !known.has(token.name))
      return `unknown option --${token.name}`;
    if (token.kind === 'positional' && 'value' in token) return `unexpected ${JSON.stringify(token.value)}`;
  }
  return undefined;
}
