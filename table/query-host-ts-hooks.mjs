// Node module hooks (node:module `register`) that let a query host process import this project's
// TypeScript source: `.ts` files are compiled per file with `typescript.transpileModule` (types are
// erased, nothing is type-checked: `tsc --noEmit` does that), and the `.js` specifiers of NodeNext
// imports fall back to the `.ts` file beside them. Development only; see query-host-ts-register.mjs.
//
// Every host is a new process, so the compiled output is cached on disk: loading `typescript` and
// compiling a host's dozen files costs ~0.5 s of CPU per start, a cache hit a few ms. The cache holds
// one file per source file (`node_modules/.cache/walship-ts/<hash of the URL>.js`, overwritten when
// the source, the compiler version or the options change), so it never grows past the sources.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const CACHE_DIR = new URL('../node_modules/.cache/walship-ts/', import.meta.url);
const TS_VERSION = require('typescript/package.json').version;
/** Part of every cache key: change it with the options below. */
const OPTIONS_KEY = 'module=ESNext target=ES2022 verbatimModuleSyntax inlineSourceMap';

let compiler;

/**
 * `typescript` and its options, loaded on the first cache miss only. require, not import: Node's ESM
 * wrapper would scan the 9 MB CommonJS file for its exports first, which doubles the load time.
 */
function typescript() {
  if (compiler === undefined) {
    const ts = require('typescript');
    const options = {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true,
      inlineSourceMap: true,
    };
    compiler = { ts, options };
  }
  return compiler;
}

/** Resolves `./x.js` to `./x.ts` when only the TypeScript source exists and the importer is TypeScript. */
export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const fromTs = context.parentURL?.endsWith('.ts') ?? false;
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !fromTs || !specifier.endsWith('.js')) throw error;
    return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
  }
}

/** Loads `.ts` files as ES modules compiled to JavaScript; everything else as Node would. */
export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context);
  const source = await readFile(new URL(url), 'utf8');
  return { format: 'module', source: await compiled(url, source), shortCircuit: true };
}

async function compiled(url, source) {
  const key = sha256(`${TS_VERSION}\n${OPTIONS_KEY}\n${url}\n${source}`);
  const cacheFile = new URL(`${sha256(url).slice(0, 32)}.js`, CACHE_DIR);
  const header = `// ${key}\n`;
  const cached = await readFile(cacheFile, 'utf8').catch(() => '');
  if (cached.startsWith(header)) return cached.slice(header.length);
  const { ts, options } = typescript();
  const output = ts.transpileModule(source, { fileName: url, compilerOptions: options }).outputText;
  // Write-then-rename, so hosts starting together never read half a file; a failed write only
  // costs the next start a compile.
  const temporary = new URL(`${cacheFile.href}.${process.pid}.tmp`);
  try {
    await mkdir(CACHE_DIR, { recursive: true });
    await writeFile(temporary, header + output);
    await rename(temporary, cacheFile);
  } catch {}
  return output;
}

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}
