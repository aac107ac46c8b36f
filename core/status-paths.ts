import path from 'node:path';

/**
 * `/status` and `/status/history` are public (SECURITY.md), yet a node's status names files: its
 * divergence files, where a database was moved aside, an fs store's root in its description and
 * errors. An absolute server path tells an anonymous reader how the host is laid out (issue 13
 * item 10). So the public answers show every such path relative to the node's data dir
 * (`divergence/1-t.ilp`, `../store`): enough for the operator, who knows the data dir, and for
 * tools, which resolve it against the data dir they started the node with. The node's own log
 * keeps the absolute paths.
 */

/** What a node knows of its own absolute paths. */
export interface StatusPathOptions {
  /** `node.data.dir` (relative ones are resolved against the working directory, as the node does). */
  dataDir: string;
  /** The store's `description`; for an fs store (`fs::root=…;`) its root is shown relative too. */
  storeDescription?: string | undefined;
}

/** Nesting depth rewritten at most (a status is a few levels deep; a bound against cycles). */
const STATUS_DEPTH_MAX = 32;

/**
 * A function that returns a copy of a status value with every occurrence of the data dir (and an
 * fs store root) in its strings rewritten relative to the data dir. Other values are copied as
 * they are; the input is not changed.
 */
export function statusPathHider(options: StatusPathOptions): <T>(value: T) => T {
  const dataDir = path.resolve(options.dataDir);
  const roots = [dataDir];
  const fsRoot = /^fs::root=([^;]+);/.exec(options.storeDescription ?? '')?.[1];
  if (fsRoot !== undefined) roots.push(path.resolve(fsRoot));
  // The longest root first: a store inside the data dir is rewritten as such.
  const rewrites = roots
    .filter((root) => root !== path.parse(root).root)
    .sort((a, b) => b.length - a.length)
    .map((root) => ({ pattern: rootPattern(root), relative: path.relative(dataDir, root) }));
  const rewrite = (text: string) =>
    rewrites.reduce(
      (out, { pattern, relative }) =>
        out.replace(pattern, (_match, rest: string | undefined) =>
          rest === undefined || rest === ''
            ? relative || '.'
            : relative === ''
              ? rest
              : `${relative}/${rest}`,
        ),
      text,
    );
  return <T>(value: T) => mapStrings(value, rewrite, 0) as T;
}

/**
 * `root` as a whole path: not inside another path or a URL (`http://h:9000/srv/…`), followed by `/more` (captured without the slash) or by the end of the
 * path (a quote, space, `;`, `)`, `,` or the end of the text), never a longer name like `root2`.
 */
function rootPattern(root: string): RegExp {
  const escaped = root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\w.:/-])${escaped}(?:/([^\\s"'\`;,)]*)|(?=$|[\\s"'\`;,)]))`, 'g');
}

function mapStrings(value: unknown, rewrite: (text: string) => string, depth: number): unknown {
  if (typeof value === 'string') return rewrite(value);
  if (depth >= STATUS_DEPTH_MAX || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, rewrite, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = mapStrings(item, rewrite, depth + 1);
  return out;
}
