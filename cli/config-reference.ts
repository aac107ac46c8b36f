import { renderMarkdownTable } from '../core/index.js';
import { CONFIG_KEYS, type ConfigKey, envNameOf } from './config.js';

/** The page that holds the generated configuration reference, from the repository root. */
export const CONFIG_DOC = 'docs/configuration.md';

/** Markers around the generated configuration reference in docs/configuration.md. */
export const CONFIG_BEGIN =
  '<!-- config:begin (generated from cli/config.ts; cli/config-reference.test.ts checks it) -->';
export const CONFIG_END = '<!-- config:end -->';

const UNITS: Record<string, string> = {
  duration: 'duration (ms, s, m, h; a bare number is ms)',
  bytes: 'bytes (k, m, g suffixes, binary)',
  int: 'integer',
  bool: 'true / false',
  string: 'text',
  secret: 'secret (never printed)',
  store: 'connection string (fs::… or s3::…)',
};

/** Every configuration key as a Markdown table: key, environment variable, default, unit, meaning. */
export function renderConfigMarkdown(): string {
  const rows: string[][] = [];
  for (const [key, spec] of Object.entries(CONFIG_KEYS) as [ConfigKey, (typeof CONFIG_KEYS)[ConfigKey]][]) {
    const kind: unknown = spec.kind;
    const unit =
      typeof kind === 'object' && kind !== null && 'oneOf' in kind
        ? (kind.oneOf as readonly string[]).join(' \\| ')
        : (UNITS[String(kind)] ?? String(kind));
    const fallback = 'default' in spec && spec.default !== undefined ? `\`${spec.default}\`` : '—';
    rows.push([`\`${key}\``, `\`${envNameOf(key)}\``, fallback, unit, spec.doc.replaceAll('|', '\\|')]);
  }
  return renderMarkdownTable(['key', 'environment variable', 'default', 'type / unit', 'meaning'], rows);
}

/** `doc` (docs/configuration.md's text) with the block between the config markers replaced by the generated reference. */
export function withConfigReference(doc: string): string {
  const begin = doc.indexOf(CONFIG_BEGIN);
  const end = doc.indexOf(CONFIG_END);
  if (begin < 0 || end < begin)
    throw new Error(`${CONFIG_DOC} has no '${CONFIG_BEGIN}' … '${CONFIG_END}' block`);
  return `${doc.slice(0, begin + CONFIG_BEGIN.length)}\n${renderConfigMarkdown()}\n${doc.slice(end)}`;
}
