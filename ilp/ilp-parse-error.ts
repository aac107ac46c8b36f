import { WalshipError } from '../core/index.js';

/** What the HTTP surface prints before the per-line part; QuestDB's exact wording. */
const MESSAGE_PREFIX = 'failed to parse line protocol:errors encountered on line(s):\nerror in line ';

/**
 * An ILP request is not valid line protocol. Nothing of the request may be committed.
 *
 * `details.line` is the 1-based line number within the request (empty and comment lines count),
 * `details.what` the per-line reason, and `details.tooLarge` is true when a size limit was broken
 * (the HTTP surface answers 413 for those, 400 otherwise). The message has QuestDB's shape:
 * `failed to parse line protocol:errors encountered on line(s):\nerror in line N: <what>`.
 */
export class IlpParseError extends WalshipError {
  readonly line: number;
  readonly what: string;
  readonly tooLarge: boolean;

  constructor(line: number, what: string, options: { tooLarge?: boolean } = {}) {
    const tooLarge = options.tooLarge === true;
    super('ILP_PARSE', 'invalid', `${MESSAGE_PREFIX}${line}: ${what}`, {
      details: tooLarge ? { line, what, tooLarge } : { line, what },
    });
    this.name = 'IlpParseError';
    this.line = line;
    this.what = what;
    this.tooLarge = tooLarge;
  }
}
