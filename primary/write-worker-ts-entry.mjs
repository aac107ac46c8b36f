// Development-only entry of the write worker when the node runs from TypeScript source (under
// vitest, which transforms the test thread's modules but not a worker thread's): registers the
// module hooks the query hosts use (table/query-host-ts-hooks.mjs: .ts compiled on load) and
// imports write-worker-thread.ts. Compiled code in dist/ starts dist/primary/write-worker-thread.js
// directly (write-worker.ts `workerEntry`), so production never loads this file.
import { register } from 'node:module';
import { workerData } from 'node:worker_threads';

register(workerData.hooks);
await import(workerData.thread);
