// Development-only preload of a query host process, used when QueryPool runs from TypeScript source
// (under vitest, which transforms the test process's modules but not a child process's: a host is a
// fresh Node process that only understands JavaScript). QueryPool forks query-host.ts with
// `--import` of this file, which registers query-host-ts-hooks.mjs; the hooks compile .ts files on
// load with the project's own `typescript` devDependency. (tests/helpers/walship-process.ts preloads
// it too, to run the CLI from source.) Production never loads this file: compiled code in dist/ forks
// dist/table/query-host.js directly, so `typescript` is not needed at run time.
import { register } from 'node:module';

register('./query-host-ts-hooks.mjs', import.meta.url);
