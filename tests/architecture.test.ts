/**
 * The house rules of docs/ARCHITECTURE.md, checked on the code's own imports (product files only:
 * no tests, no testing/ folders): the top-level modules form no cycle, no import reaches past
 * another module's index.ts, the store's keys live only in layout/, and no product file outside
 * core/ and client/ calls Math.random (the time globals are biome's noRestrictedGlobals). File-level cycles are
 * `npm run cycles` (madge), part of `npm run check`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODULES = readdirSync(ROOT).filter(
  (name) =>
    !['node_modules', 'dist', 'tests', 'bench', 'docs'].includes(name) &&
    isFile(path.join(ROOT, name, 'index.ts')),
);

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function productFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'testing') out.push(...productFiles(full));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

/** [importing file, imported file] for every relative import of every product file, paths from ROOT. */
function imports(): [string, string][] {
  const edges: [string, string][] = [];
  const specifier =
    /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*'(\.{1,2}\/[^']+)'|import\(\s*'(\.{1,2}\/[^']+)'\s*\)/g;
  for (const module of MODULES) {
    for (const file of productFiles(path.join(ROOT, module))) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(specifier)) {
        const spec = (match[1] ?? match[2])!;
        const target = path.relative(ROOT, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts');
        edges.push([path.relative(ROOT, file), target]);
      }
    }
  }
  return edges;
}

const moduleOf = (file: string) => file.split(path.sep)[0]!;

describe('the house', () => {
  const edges = imports();

  it('reads imports: the check sees the modules and their edges', () => {
    expect(MODULES).toEqual(expect.arrayContaining(['core', 'layout', 'wal', 'primary', 'replica', 'node']));
    expect(edges.some(([from, to]) => from.startsWith('primary/') && to === 'layout/index.ts')).toBe(true);
  });

  it('no import reaches past another module’s index.ts', () => {
    const reaching = edges.filter(
      ([from, to]) =>
        moduleOf(from) !== moduleOf(to) && MODULES.includes(moduleOf(to)) && !to.endsWith('/index.ts'),
    );
    expect(reaching).toEqual([]);
  });

  it('the top-level modules form no cycle', () => {
    const graph = new Map<string, Set<string>>();
    for (const [from, to] of edges) {
      if (moduleOf(from) === moduleOf(to) || !MODULES.includes(moduleOf(to))) continue;
      const targets = graph.get(moduleOf(from)) ?? new Set<string>();
      targets.add(moduleOf(to));
      graph.set(moduleOf(from), targets);
    }
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (module: string, trail: string[]) => {
      if (state.get(module) === 'done') return;
      if (state.get(module) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(module)), module].join(' → '));
        return;
      }
      state.set(module, 'open');
      for (const next of graph.get(module) ?? []) visit(next, [...trail, module]);
      state.set(module, 'done');
    };
    for (const module of MODULES) visit(module, []);
    expect(cycles).toEqual([]);
  });

  it('store keys are spelled only in layout/: no other product file names a top-level object of the bucket', () => {
    const spelled =
      /'(cluster\.json|head\.json|tables\.json|lease\.json|sequencer\.json|epochs\/|nodes\/|snapshots\/|tables\/)'/;
    const offenders = MODULES.filter((m) => m !== 'layout')
      .flatMap((m) => productFiles(path.join(ROOT, m)))
      .filter((file) => spelled.test(readFileSync(file, 'utf8')))
      .map((file) => path.relative(ROOT, file));
    expect(offenders).toEqual([]);
  });

  // biome's noRestrictedGlobals keeps setTimeout, Date and performance out of product code, but it
  // cannot ban Math.random without banning Math: randomness goes through core/random.ts (STYLE rule 8).
  it('randomness is injected: no product file outside core/ and client/ calls Math.random', () => {
    const folders = readdirSync(ROOT, { withFileTypes: true }).filter(
      (entry) =>
        entry.isDirectory() &&
        !entry.name.startsWith('.') &&
        !['node_modules', 'dist', 'tests', 'bench', 'docs', 'core', 'client'].includes(entry.name),
    );
    const offenders = folders
      .flatMap((folder) => productFiles(path.join(ROOT, folder.name)))
      .filter((file) => /\bMath\.random\b/.test(readFileSync(file, 'utf8')))
      .map((file) => path.relative(ROOT, file));
    expect(folders.map((f) => f.name)).toContain('primary');
    expect(offenders).toEqual([]);
  });
});
