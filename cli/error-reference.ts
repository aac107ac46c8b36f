import { ERROR_CODES, ERROR_KINDS, HTTP_ANSWER_CODES, renderMarkdownTable } from '../core/index.js';

/** A code of the client library (client/errors.ts), which imports nothing of ours on purpose. */
export interface ClientCodeDoc {
  code: string;
  meaning: string;
}

/** The command that rewrites docs/errors.md from the registry. */
export const ERRORS_REGENERATE = 'WALSHIP_UPDATE_DOCS=1 npx vitest run cli/error-reference.test.ts';

const cell = (text: string) => text.replaceAll('|', '\\|');

/**
 * docs/errors.md: every error code of walship (core/error-codes.ts), the codes of HTTP error
 * answers, and the client library's codes (passed in: the client is kept free of our imports).
 */
export function renderErrorReference(clientCodes: readonly ClientCodeDoc[]): string {
  const sorted = <T>(table: Record<string, T>) =>
    Object.entries(table).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const kinds = renderMarkdownTable(
    ['kind', 'what to do'],
    Object.entries(ERROR_KINDS).map(([kind, doc]) => [`\`${kind}\``, cell(doc)]),
  );
  const codes = renderMarkdownTable(
    ['code', 'kind', 'meaning', 'what to do'],
    sorted(ERROR_CODES).map(([code, spec]) => [
      `\`${code}\``,
      spec.kinds.map((kind) => `\`${kind}\``).join(', '),
      cell(spec.meaning),
      cell(spec.action),
    ]),
  );
  const answers = renderMarkdownTable(
    ['code', 'HTTP status', 'sent by', 'meaning', 'what to do'],
    sorted(HTTP_ANSWER_CODES).map(([code, spec]) => [
      `\`${code}\``,
      spec.status.map((s) => (s === 0 ? '—' : String(s))).join(', '),
      cell(spec.sentBy),
      cell(spec.meaning),
      cell(spec.action),
    ]),
  );
  const client = renderMarkdownTable(
    ['code', 'meaning'],
    clientCodes.map(({ code, meaning }) => [`\`${code}\``, cell(meaning)]),
  );
  return [
    `<!-- generated from core/error-codes.ts by cli/error-reference.ts; cli/error-reference.test.ts checks it. Regenerate: ${ERRORS_REGENERATE} -->`,
    '',
    '# Error codes',
    '',
    'Every error walship raises is a `WalshipError` with a stable `code` (what happened) and a `kind`',
    '(what to do about it). Match on the code, never on the message: messages are for people and may',
    'change. Logs carry both; the admin endpoints and the sequencer answer `{"code", "message"}` (the',
    'sequencer adds `"kind"`) with the code below.',
    '',
    '## Kinds',
    '',
    kinds,
    '',
    `## Codes (${Object.keys(ERROR_CODES).length})`,
    '',
    'A code listed with several kinds is thrown with the later ones in some places (the first is the usual one).',
    '',
    codes,
    '',
    '## Codes of HTTP error answers',
    '',
    'Answers of the HTTP listeners that are no `WalshipError`. ILP over HTTP answers as QuestDB does:',
    '`{"code", "message", "line", "errorId"}` with the lower-case codes below.',
    '',
    answers,
    '',
    '## Client library codes',
    '',
    'The client (`walship/client`, client/errors.ts) throws `WalshipClientError` with its own codes:',
    '',
    client,
    '',
  ].join('\n');
}
