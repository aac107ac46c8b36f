import { type Clock, systemClock, type Timer } from '../core/index.js';
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
 * How long a process may take to stop after SIGTERM or SIGINT before it exits anyway. A node's
 * close() aborts its store requests and waits for at most one segment's apply, a bounded upload
 * flush (primary) and its HTTP answers in flight: well under this on a healthy store. Exiting
 * past it loses nothing acknowledged: every acknowledged txn is committed in SQLite (which rolls
 * back the rest at the next open) and, when durable, in the store.
 */
export const STOP_BOUND_MS = 10_000;

export interface SignalOptions {
  /** Where the signals come from (tests pass an emitter). Default: the process. */
  signals?: NodeJS.EventEmitter;
  /** Ends the process when the bound passes or a second signal arrives. Default: process.exit. */
  exit?: (code: number) => void;
  boundMs?: number;
}

/**
 * Keeps a started node running until SIGINT or SIGTERM, then closes it and then its store (the
 * node does not own the store it was given). Resolves once both are closed. A second signal, or
 * STOP_BOUND_MS without the close finishing, exits at once with code 1.
 */
export function runUntilSignal(
  node: { close(): Promise<void> },
  store: { close(): Promise<void> },
  log: { info(fields: object, message: string): void; error(fields: object, message: string): void },
  options: SignalOptions = {},
): Promise<void> {
  const signals = options.signals ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const boundMs = options.boundMs ?? STOP_BOUND_MS;
  return new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log.error({ signal }, 'second signal while shutting down: exiting now');
        exit(1);
        return;
      }
      stopping = true;
      log.info({ signal, boundMs }, 'shutting down');
      const timer = systemClock.setTimer(
        boundMs,
        () => {
          log.error(
            { boundMs },
            'shutdown did not finish within its bound: exiting now (nothing acknowledged is lost)',
          );
          exit(1);
        },
        { unref: true },
      );
      void node
        .close()
        .then(() => store.close())
        .finally(() => {
          timer.cancel();
          signals.off('SIGINT', onInt);
          signals.off('SIGTERM', onTerm);
          resolve();
        });
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    signals.on('SIGINT', onInt);
    signals.on('SIGTERM', onTerm);
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
      return `unknown option ${describeArgument(`--${token.name}`)}`;
    if (token.kind === 'positional' && 'value' in token)
      return `unexpected argument (${describeArgument(token.value)})`;
  }
  return undefined;
}

/** Characters of a flag's name shown in a message at most (a name is never a secret, but may be junk). */
const SHOWN_NAME_CHARS_MAX = 64;

/**
 * A command-line argument as an error message may show it: a flag by its name only (`--key`, never
 * the `=value`), anything else not at all — it may be a token that missed its flag
 * (`--admin.token= s3cret`), and messages are read over shoulders, pasted into tickets and kept in
 * CI logs (issue 13 item 10).
 */
export function describeArgument(arg: string): string {
  const flag = /^(--?[A-Za-z0-9][A-Za-z0-9._-]*)/.exec(arg);
  if (flag === null) return 'not a --flag; values go in --key=value';
  return flag[1]!.slice(0, SHOWN_NAME_CHARS_MAX);
}

/** A command word as a message may show it: quoted when it looks like one, else as describeArgument does. */
export function describeCommandWord(word: string): string {
  if (word.startsWith('-')) return describeArgument(word);
  // Command words are short, lower case and digit-free; a token rarely is.
  return /^[a-z][a-z-]{0,19}$/.test(word) ? JSON.stringify(word) : '(not shown: not a command word)';
}

/** Secrets shorter than this are not scrubbed by redactArgvValues: they would mangle every message. */
const SCRUBBED_VALUE_CHARS_MIN = 8;
/**
 * Flag names whose values are taken for secrets: the secret keys and typos of them (`--admin.tokn`),
 * and the sequencer's connection string (it carries a token). Store connection strings are not
 * here: messages show them through redactConnectionString, and an fs root is worth reading.
 */
const SECRET_FLAG_NAME = /tok|pass|secret|pwd|credential|sequencer/i;

/**
 * `message` with every value of a secret-looking flag of `argv` (`--admin.token=…`, `--http.password …`,
 * a connection string) replaced by `****`: a net under every error main() prints, whichever parser
 * wrote it. Values under SCRUBBED_VALUE_CHARS_MIN characters are left alone.
 */
export function redactArgvValues(message: string, argv: readonly string[]): string {
  let out = message;
  for (const value of secretValuesOf(argv)) out = out.replaceAll(value, '****');
  return out;
}

function secretValuesOf(argv: readonly string[]): string[] {
  const values: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = /^--?([^=]+)(?:=(.*))?$/s.exec(argv[i]!);
    if (flag === null || !SECRET_FLAG_NAME.test(flag[1]!)) continue;
    // `--key=value`, `--key value`, and `--key= value` (a value after an empty one).
    if (flag[2] !== undefined && flag[2] !== '') values.push(flag[2]);
    const next = argv[i + 1];
    if ((flag[2] === undefined || flag[2] === '') && next !== undefined && !next.startsWith('--'))
      values.push(next);
  }
  return values.filter((value) => value.length >= SCRUBBED_VALUE_CHARS_MIN);
}

/**
 * Node's parseArgs messages quote the offending argument whole (`Unexpected argument 's3cret'`):
 * they are rewritten to name an option by its name only and a positional not at all.
 */
export function parseArgsMessage(error: Error & { code: string }): string {
  if (error.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return `unexpected argument (${describeArgument('')}); see --help`;
  const option = /'(--?[^'\s=<]+)/.exec(error.message)?.[1];
  const name = option === undefined ? 'an option' : describeArgument(option);
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${name}; see --help`;
  return `${name}: a value is missing, or given to an option that takes none; see --help`;
}

// --- Progress of a long command ---------------------------------------------------------------

/** A terminal's progress line is redrawn at most this often (work may report thousands of steps a second). */
export const PROGRESS_REDRAW_MS = 100;
/** …and at least this often, its elapsed time moving on even while the work reports nothing. */
export const PROGRESS_HEARTBEAT_MS = 1_000;
/** Plain lines (a log, a pipe): at most this often, the first after as long. */
export const PROGRESS_PLAIN_MS = 5_000;

export interface ProgressLine {
  /** The newest state, as text (`3/10 tables, 1200 segments, 2.1 GiB`). */
  update(text: string): void;
  /** Ends the line with `summary` (`done`, `failed`) and the time taken; idempotent. */
  finish(summary: string): void;
}

export interface ProgressOptions {
  /**
   * One line redrawn in place (a terminal), or plain lines on `io.stderr` (a log, a pipe, or a
   * terminal that other output shares). Default: in place when `io` is this process's own and its
   * stderr is a terminal.
   */
  inPlace?: boolean;
  /** Draws the line in place (default: `\r`, clear, the line on process.stderr; a newline at the end). */
  draw?: (line: string, final: boolean) => void;
  clock?: Clock;
}

/**
 * A long command's progress on stderr (restore, verify, gc, a replica's bootstrap): on a terminal
 * one line, `title: text · 12 s`, redrawn in place every PROGRESS_HEARTBEAT_MS at least and
 * PROGRESS_REDRAW_MS at most, ended by finish() with a summary; otherwise a plain line at most
 * every PROGRESS_PLAIN_MS (so a short run prints nothing, and a log is not flooded). stdout keeps
 * the command's report alone.
 */
export function progressLine(io: CommandIo, title: string, options: ProgressOptions = {}): ProgressLine {
  const clock = options.clock ?? systemClock;
  const inPlace = options.inPlace ?? (io === processIo && process.stderr.isTTY === true);
  const draw =
    options.draw ??
    ((line: string, final: boolean) => process.stderr.write(`\r\u001b[2K${line}${final ? '\n' : ''}`));
  const startedMs = clock.monotonicMs();
  const everyMs = inPlace ? PROGRESS_HEARTBEAT_MS : PROGRESS_PLAIN_MS;
  let text = '';
  let drawnMs = inPlace ? Number.NEGATIVE_INFINITY : startedMs;
  let drew = false;
  let finished = false;
  let timer: Timer | undefined;
  const line = (nowMs: number) =>
    `${title}${text === '' ? '' : `: ${text}`} · ${elapsedText(nowMs - startedMs)}`;
  const show = (nowMs: number) => {
    drawnMs = nowMs;
    drew = true;
    if (inPlace) draw(line(nowMs), false);
    else io.stderr(line(nowMs));
  };
  // The heartbeat: a line at least every `everyMs`, counted from the last one drawn.
  const beat = (delayMs: number) => {
    timer = clock.setTimer(
      delayMs,
      () => {
        if (finished) return;
        const nowMs = clock.monotonicMs();
        const dueInMs = drawnMs + everyMs - nowMs;
        if (dueInMs > 0) return beat(dueInMs);
        show(nowMs);
        beat(everyMs);
      },
      { unref: true },
    );
  };
  beat(everyMs);
  return {
    update(next) {
      if (finished) return;
      text = next;
      const nowMs = clock.monotonicMs();
      if (nowMs - drawnMs >= (inPlace ? PROGRESS_REDRAW_MS : PROGRESS_PLAIN_MS)) show(nowMs);
    },
    finish(summary) {
      if (finished) return;
      finished = true;
      timer?.cancel();
      const nowMs = clock.monotonicMs();
      // A run too short to have shown anything stays silent: its report says it all.
      if (!drew) return;
      text = text === '' ? summary : `${text}; ${summary}`;
      if (inPlace) draw(line(nowMs), true);
      else io.stderr(line(nowMs));
    },
  };
}

/** `850 ms`, `12 s`, `3 min 05 s`: the time a command has run. */
function elapsedText(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const seconds = Math.floor(ms / 1_000);
  if (seconds < 60) return `${seconds} s`;
  return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, '0')} s`;
}
