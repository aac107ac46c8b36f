import { parseArgs } from 'node:util';
import { isWalshipError } from '../core/index.js';
import {
  type ObjectStore,
  type OpenedStore,
  openStore,
  renderProbeReport,
  runConformanceProbe,
  S3Store,
} from '../objectstore/index.js';
import { type CommandIo, EXIT } from './io.js';

export const STORE_CHECK_USAGE = `walship store check --store '<connection string>' [--json]

Checks what an object store honours — create-only writes, compare-and-swap on an ETag,
racing writers, range reads, conditional GET, listing order and paging, delete-many — and
prints a table. Exits 0 when everything holds, 1 when a check fails (a store that ignores
create-only or compare-and-swap cannot fence a primary), 2 on bad arguments, 3 when the
store cannot be reached.

  --store   e.g. 'fs::root=/var/lib/walship/store;' or
            's3::bucket=B;root=prod;endpoint=http://127.0.0.1:7480;access_key_id=…;secret_access_key=…;'
            (default: $WALSHIP_REPLICATION_OBJECT_STORE)
  --json    print the report as JSON`;

export interface StoreCheckDeps {
  /** Opens the store; tests substitute a fault-injecting one. */
  open?: (connection: string) => Promise<Pick<OpenedStore, 'store' | 'raw'>>;
}

export async function storeCheck(argv: string[], io: CommandIo, deps: StoreCheckDeps = {}): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    io.stdout(STORE_CHECK_USAGE);
    return EXIT.ok;
  }
  const connection = values.store ?? io.env.WALSHIP_REPLICATION_OBJECT_STORE;
  if (connection === undefined) {
    io.stderr(`walship store check: --store is required\n\n${STORE_CHECK_USAGE}`);
    return EXIT.usage;
  }
  let opened: Pick<OpenedStore, 'store' | 'raw'>;
  try {
    opened = await (deps.open ?? openStore)(connection);
  } catch (error) {
    io.stderr(`walship store check: ${(error as Error).message}`);
    return isWalshipError(error) && error.kind === 'invalid' ? EXIT.usage : EXIT.unavailable;
  }
  try {
    const reachable = await reach(opened.store);
    if (reachable !== undefined) {
      io.stderr(`walship store check: cannot reach ${opened.store.description}: ${reachable}`);
      return EXIT.unavailable;
    }
    const raw = opened.raw;
    const report = await runConformanceProbe(opened.store, {
      notes: () =>
        raw instanceof S3Store && raw.ifMatchQuoting === 'unquoted'
          ? [
              'the server compares If-Match without quotes (Ceph RGW 16 quirk); the client now sends ETags unquoted',
            ]
          : [],
    });
    io.stdout(values.json === true ? JSON.stringify(report, null, 2) : renderProbeReport(report));
    return report.ok ? EXIT.ok : EXIT.failed;
  } finally {
    await opened.store.close();
  }
}

/** Undefined when a listing works; otherwise what went wrong. */
async function reach(store: ObjectStore): Promise<string | undefined> {
  try {
    await store.list('probe/', { limit: 1 });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
