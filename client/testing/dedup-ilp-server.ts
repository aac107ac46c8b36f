import {
  ilpError,
  type RecordedRequest,
  type ScriptedAnswer,
  type ScriptedServer,
  startScriptedServer,
} from './scripted-http-server.js';

/**
 * A stand-in for a walship primary's `/write` as the client sees it (issue 18), for the client's
 * tests: it dedups by `X-Walship-Batch: <writerId>:<seq>` exactly as the wire protocol says, and
 * records every body it "writes". Test code only; the real server side lives in ilp/ and primary/.
 *
 * - a new identity → written, 204 `X-Walship-Batch-Status: committed`, a token `trades=<n>`;
 * - a known identity with the same body → nothing written, 204 `replayed` with the original token;
 * - a known identity with another body, or a seq at or below the writer's newest minus the window
 *   (1000) → 409 with QuestDB's JSON error body;
 * - no identity → written, 204 without the status header (as a server that ignores identities).
 */

export const DEDUP_WINDOW = 1_000;
const BATCH_ID = /^([A-Za-z0-9._-]{1,64}):([1-9][0-9]{0,18})$/;

/** One body the server wrote. */
export interface DedupWrite {
  writerId: string | undefined;
  seq: bigint | undefined;
  body: string;
}

export type DedupAnswer = 'committed' | 'replayed' | 'ignored' | 'conflict' | 'below_window' | 'scripted';

export interface DedupServerOptions {
  /** Answers a request before the dedup (e.g. a 503); undefined lets it through. */
  before?: (request: RecordedRequest, index: number) => ScriptedAnswer | undefined;
  /**
   * What happens to the 204 of a request that was written (committed or replayed): `answer` (the
   * default), `hang` (the answer is lost: the client times out), a delay in ms before it goes, or
   * a promise it waits for.
   */
  afterWrite?: (request: RecordedRequest, index: number) => 'answer' | 'hang' | number | Promise<unknown>;
}

export interface DedupIlpServer extends ScriptedServer {
  /** Bodies written, in order. */
  readonly writes: DedupWrite[];
  /** What each request to /write got, in order. */
  readonly answers: DedupAnswer[];
}

type Reply = { status: number; headers?: Record<string, string>; body?: string };

interface WriterState {
  newest: bigint;
  /** seq → body and token, for the last DEDUP_WINDOW seqs. */
  seqs: Map<bigint, { body: string; token: string }>;
}

export async function startDedupIlpServer(options: DedupServerOptions = {}): Promise<DedupIlpServer> {
  const writes: DedupWrite[] = [];
  const answers: DedupAnswer[] = [];
  const writers = new Map<string, WriterState>();

  const write = (writerId: string | undefined, seq: bigint | undefined, body: string): string => {
    writes.push({ writerId, seq, body });
    return `trades=${writes.length}`;
  };

  const decide = (request: RecordedRequest): { answer: DedupAnswer; reply: Reply } => {
    const header = request.headers['x-walship-batch'];
    if (header === undefined) {
      const token = write(undefined, undefined, request.body);
      return { answer: 'ignored', reply: { status: 204, headers: { 'x-walship-txn': token } } };
    }
    const match = BATCH_ID.exec(String(header));
    if (match === null) return { answer: 'scripted', reply: ilpError(400, 'invalid', 'bad X-Walship-Batch') };
    const writerId = match[1]!;
    const seq = BigInt(match[2]!);
    const state = writers.get(writerId) ?? { newest: 0n, seqs: new Map() };
    writers.set(writerId, state);
    const seen = state.seqs.get(seq);
    if (seen !== undefined) {
      if (seen.body !== request.body) {
        const message = `batch ${writerId}:${seq} was committed before with other content`;
        return { answer: 'conflict', reply: ilpError(409, 'batch_conflict', message) };
      }
      const headers = { 'x-walship-batch-status': 'replayed', 'x-walship-txn': seen.token };
      return { answer: 'replayed', reply: { status: 204, headers } };
    }
    if (seq <= state.newest - BigInt(DEDUP_WINDOW)) {
      const message = `batch ${writerId}:${seq} is below the window of the last ${DEDUP_WINDOW} sequences`;
      return { answer: 'below_window', reply: ilpError(409, 'batch_below_window', message) };
    }
    const token = write(writerId, seq, request.body);
    state.seqs.set(seq, { body: request.body, token });
    if (seq > state.newest) state.newest = seq;
    for (const old of state.seqs.keys())
      if (old <= state.newest - BigInt(DEDUP_WINDOW)) state.seqs.delete(old);
    const headers = { 'x-walship-batch-status': 'committed', 'x-walship-txn': token };
    return { answer: 'committed', reply: { status: 204, headers } };
  };

  const server = await startScriptedServer((request, index) => {
    const scripted = options.before?.(request, index);
    if (scripted !== undefined) {
      answers.push('scripted');
      return scripted;
    }
    const { answer, reply } = decide(request);
    answers.push(answer);
    if (answer !== 'committed' && answer !== 'replayed' && answer !== 'ignored') return reply;
    const after = options.afterWrite?.(request, index) ?? 'answer';
    if (after === 'hang') return 'hang';
    if (after === 'answer') return reply;
    if (typeof after !== 'number') return after.then(() => reply);
    if (after <= 0) return reply;
    return new Promise<Reply>((resolve) => setTimeout(() => resolve(reply), after));
  });
  return Object.assign(server, { writes, answers });
}
