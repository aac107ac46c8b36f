import { describe, expect, it } from 'vitest';
import { statusPathHider } from './status-paths.js';

/** Anything that looks like an absolute POSIX path in a JSON text (not a URL's path). */
const ABSOLUTE_PATH = /(?<![\w:/.-])\/(?:[\w.-]+\/)*[\w.-]+/g;

describe('statusPathHider (issue 13 item 10)', () => {
  const hide = statusPathHider({
    dataDir: '/srv/walship/a',
    storeDescription: 'fs::root=/srv/walship/store;atomic',
  });

  it('shows files under the data dir relative to it, and an fs store root relative to the data dir', () => {
    const status = {
      role: 'replica',
      epoch: 3n,
      store: { description: 'fs::root=/srv/walship/store;atomic', lastError: null },
      divergence: {
        epoch: '1',
        files: [{ table: 't', file: '/srv/walship/a/divergence/1-t.ilp', txns: 1, rows: 2 }],
        movedTo: '/srv/walship/a/diverged-epoch-1-5',
      },
      events: [
        {
          message:
            '1 txns of epoch 1 never reached the store: /srv/walship/a/divergence/1-t.ilp; database moved to /srv/walship/a',
        },
        { message: 'cannot read /srv/walship/store/tables/t/wal/1.seg: EIO' },
      ],
      dataDir: '/srv/walship/a',
    };
    expect(hide(status)).toEqual({
      role: 'replica',
      epoch: 3n,
      store: { description: 'fs::root=../store;atomic', lastError: null },
      divergence: {
        epoch: '1',
        files: [{ table: 't', file: 'divergence/1-t.ilp', txns: 1, rows: 2 }],
        movedTo: 'diverged-epoch-1-5',
      },
      events: [
        { message: '1 txns of epoch 1 never reached the store: divergence/1-t.ilp; database moved to .' },
        { message: 'cannot read ../store/tables/t/wal/1.seg: EIO' },
      ],
      dataDir: '.',
    });
    expect(JSON.stringify(hide(status), (_k, v) => (typeof v === 'bigint' ? String(v) : v))).not.toMatch(
      ABSOLUTE_PATH,
    );
    // The input is left as it was: the node's own uses of its status (logs, metrics) keep the paths.
    expect(status.divergence.files[0]!.file).toBe('/srv/walship/a/divergence/1-t.ilp');
  });

  it('never rewrites a longer name that starts like the data dir, nor URLs', () => {
    expect(hide('/srv/walship/ab/x and http://h:9000/srv/walship/a')).toBe(
      '/srv/walship/ab/x and http://h:9000/srv/walship/a',
    );
  });

  it('a relative data dir is resolved as the node resolves it', () => {
    const relative = statusPathHider({ dataDir: 'walship-data' });
    expect(relative(`${process.cwd()}/walship-data/divergence/x.ilp`)).toBe('divergence/x.ilp');
  });
});
