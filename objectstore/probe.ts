import { randomUUID } from 'node:crypto';
import { listAll, type ObjectStore } from './object-store.js';

/**
 * The conformance probe (DESIGN §7): before a node trusts a store with fencing, it checks that
 * the store honours what fencing stands on. Every check writes only under
 * `probe/<random id>/` and the probe removes what it wrote.
 */
export interface ProbeCheck {
  name: string;
  /** A failed required check makes the store unsafe for a primary. */
  required: boolean;
  passed: boolean;
  /** True when a request failed (store unreachable or broken), not when the store answered wrongly. */
  errored: boolean;
  detail: string;
}

export interface ProbeReport {
  store: string;
  checks: ProbeCheck[];
  /** Behaviour worth knowing that is not a failure (e.g. Ceph's unquoted If-Match). */
  notes: string[];
  /** True when every required check passed. */
  ok: boolean;
  /** True when create-only and compare-and-swap are both honoured: the store can fence. */
  fencingSafe: boolean;
  /** The first request error, when checks could not run: the verdict is "unreachable", not "unsafe". */
  error: Error | null;
}

export interface ProbeOptions {
  /** Writers racing for one create-only key. Default 8. */
  racingWriters?: number;
  /** Extra facts from the store implementation, read after the checks (e.g. how it sends If-Match). */
  notes?: () => string[];
}

const FENCING_CHECKS = new Set([
  'create-only: first write succeeds',
  'create-only: second write refused',
  'create-only: racing writers, one wins',
  'compare-and-swap: current ETag accepted',
  'compare-and-swap: stale ETag refused',
  'compare-and-swap: missing object refused',
]);

export async function runConformanceProbe(
  store: ObjectStore,
  options: ProbeOptions = {},
): Promise<ProbeReport> {
  const base = `probe/${randomUUID()}`;
  const checks: ProbeCheck[] = [];
  let firstError: Error | null = null;
  const check = async (name: string, run: () => Promise<string>) => {
    try {
      checks.push({ name, required: true, passed: true, errored: false, detail: await run() });
    } catch (error) {
      const errored = !(error instanceof ProbeFailure);
      if (errored) firstError ??= error as Error;
      checks.push({ name, required: true, passed: false, errored, detail: (error as Error).message });
    }
  };
  const bytes = (text: string) => new TextEncoder().encode(text);
  const text = (body: Uint8Array) => new TextDecoder().decode(body);

  try {
    const createKey = `${base}/create-only`;
    await check('create-only: first write succeeds', async () => {
      const result = await store.put(createKey, bytes('first'), { condition: { type: 'absent' } });
      expect(result.status === 'written', `the first create-only PUT answered ${result.status}`);
      return 'written';
    });
    await check('create-only: second write refused', async () => {
      const result = await store.put(createKey, bytes('second'), { condition: { type: 'absent' } });
      const now = await store.get(createKey);
      const content = now?.status === 'ok' ? text(now.body) : String(now);
      expect(
        result.status === 'precondition-failed' && content === 'first',
        `a create-only PUT on an existing key answered ${result.status} and the object now holds "${content}": the store ignores If-None-Match`,
      );
      return 'refused, object unchanged';
    });
    await check('create-only: racing writers, one wins', async () => {
      const key = `${base}/race`;
      const writers = options.racingWriters ?? 8;
      const results = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          store.put(key, bytes(`writer-${i}`), { condition: { type: 'absent' } }),
        ),
      );
      const winners = results.flatMap((r, i) => (r.status === 'written' ? [i] : []));
      const now = await store.get(key);
      const content = now?.status === 'ok' ? text(now.body) : '';
      expect(winners.length === 1, `${winners.length} of ${writers} racing create-only writers won`);
      expect(
        content === `writer-${winners[0]}`,
        `the winner was writer-${winners[0]} but the object holds "${content}"`,
      );
      return `1 of ${writers} won`;
    });

    const casKey = `${base}/cas`;
    let etag = '';
    let staleEtag = '';
    await check('compare-and-swap: current ETag accepted', async () => {
      const created = await store.put(casKey, bytes('v1'), { condition: { type: 'absent' } });
      expect(created.status === 'written', 'could not create the CAS test object');
      staleEtag = created.status === 'written' ? created.etag : '';
      const result = await store.put(casKey, bytes('v2'), { condition: { type: 'match', etag: staleEtag } });
      expect(
        result.status === 'written',
        `a PUT with the current ETag in If-Match answered ${result.status}`,
      );
      etag = result.status === 'written' ? result.etag : '';
      expect(etag !== staleEtag, 'the ETag did not change when the object did');
      return 'written, ETag changed';
    });
    await check('compare-and-swap: stale ETag refused', async () => {
      const result = await store.put(casKey, bytes('v3'), { condition: { type: 'match', etag: staleEtag } });
      const now = await store.get(casKey);
      const content = now?.status === 'ok' ? text(now.body) : String(now);
      expect(
        result.status === 'precondition-failed' && content === 'v2',
        `a PUT with a stale If-Match answered ${result.status} and the object holds "${content}": the store ignores If-Match`,
      );
      return 'refused, object unchanged';
    });
    await check('compare-and-swap: missing object refused', async () => {
      const result = await store.put(`${base}/cas-missing`, bytes('x'), {
        condition: { type: 'match', etag },
      });
      const now = await store.head(`${base}/cas-missing`);
      expect(
        result.status === 'precondition-failed' && now === null,
        `If-Match on a missing key answered ${result.status}`,
      );
      return 'refused';
    });

    await check('range reads', async () => {
      const key = `${base}/range`;
      await store.put(key, bytes('0123456789'));
      const middle = await store.get(key, { range: { offset: 3, length: 4 } });
      const tail = await store.get(key, { range: { offset: 8, length: 10 } });
      const middleText = middle?.status === 'ok' ? text(middle.body) : '';
      const tailText = tail?.status === 'ok' ? text(tail.body) : '';
      expect(middleText === '3456', `bytes 3..6 read as "${middleText}"`);
      expect(tailText === '89', `a range past the end read as "${tailText}"`);
      expect(
        middle?.status === 'ok' && middle.info.sizeBytes === 10,
        'a range read did not report the object size',
      );
      return 'exact bytes, cut at the end';
    });
    await check('conditional GET (If-None-Match)', async () => {
      const key = `${base}/poll`;
      const first = await store.put(key, bytes('v1'));
      const second = await store.put(key, bytes('v2'));
      expect(
        first.status === 'written' && second.status === 'written',
        'could not write the poll test object',
      );
      const current = await store.get(key, { ifNoneMatch: second.status === 'written' ? second.etag : '' });
      const stale = await store.get(key, { ifNoneMatch: first.status === 'written' ? first.etag : '' });
      expect(
        current?.status === 'not-modified',
        `If-None-Match with the current ETag answered ${current?.status}`,
      );
      expect(stale?.status === 'ok', `If-None-Match with a stale ETag answered ${stale?.status}`);
      return 'not modified (304) / full body';
    });

    const listKeys = ['k_3', 'k0', 'k-0', 'k/2', 'k.1'].map((k) => `${base}/list/${k}`);
    await check('listing order and paging', async () => {
      for (const key of listKeys) await store.put(key, bytes(key));
      const expected = [...listKeys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const paged: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await store.list(`${base}/list/`, {
          limit: 2,
          ...(token === undefined ? {} : { token }),
        });
        expect(page.objects.length <= 2, `a page with limit 2 held ${page.objects.length} keys`);
        paged.push(...page.objects.map((o) => o.key));
        token = page.nextToken;
        expect(++pages <= listKeys.length + 1, 'paging did not end');
      } while (token !== undefined);
      expect(
        paged.join() === expected.join(),
        `listing order ${paged.join(' ')}; expected ${expected.join(' ')}`,
      );
      const after = await store.list(`${base}/list/`, { startAfter: expected[2]! });
      expect(
        after.objects.map((o) => o.key).join() === expected.slice(3).join(),
        'start-after did not resume after the given key',
      );
      return `${expected.length} keys in byte order over ${pages} pages; start-after honoured`;
    });
    await check('delimiter listing', async () => {
      // Table discovery lists `tables/` one level deep (layout/store-scan.ts).
      const dir = `${base}/list/`;
      const page = await store.list(dir, { delimiter: '/' });
      const objects = page.objects.map((o) => o.key.slice(dir.length)).join(' ');
      const prefixes = (page.prefixes ?? []).map((p) => p.slice(dir.length)).join(' ');
      expect(
        objects === 'k-0 k.1 k0 k_3' && prefixes === 'k/',
        `a listing with delimiter / held keys [${objects}] and prefixes [${prefixes}]; expected [k-0 k.1 k0 k_3] and [k/]`,
      );
      const after = await store.list(dir, { delimiter: '/', startAfter: `${dir}k/2` });
      const rest = [...after.objects.map((o) => o.key), ...(after.prefixes ?? [])].map((k) =>
        k.slice(dir.length),
      );
      expect(
        rest.join(' ') === 'k0 k_3',
        `start-after inside the common prefix k/ listed [${rest.join(' ')}]; expected [k0 k_3]`,
      );
      return 'keys below a / rolled up into one common prefix; start-after inside it skips it';
    });
    await check('delete-many', async () => {
      await store.deleteMany([...listKeys, `${base}/list/never-existed`]);
      const left = await store.list(`${base}/list/`);
      expect(left.objects.length === 0, `${left.objects.length} objects left after delete-many`);
      await store.delete(`${base}/list/never-existed`);
      return 'removed; missing keys ignored';
    });
  } finally {
    await cleanUp(store, base);
  }

  const notes = options.notes?.() ?? [];
  const ok = checks.every((c) => c.passed || !c.required);
  const fencingSafe = checks.filter((c) => FENCING_CHECKS.has(c.name)).every((c) => c.passed);
  return { store: store.description, checks, notes, ok, fencingSafe, error: firstError };
}

/** The probe as a table for a terminal. */
export function renderProbeReport(report: ProbeReport): string {
  const rows = report.checks.map((c) => [c.passed ? 'PASS' : 'FAIL', c.name, c.detail]);
  const widths = [4, Math.max(5, ...rows.map((r) => r[1]!.length))];
  const lines = [`Conformance of ${report.store}`, ''];
  for (const [result, name, detail] of rows)
    lines.push(`${result!.padEnd(widths[0]!)}  ${name!.padEnd(widths[1]!)}  ${detail}`);
  for (const note of report.notes) lines.push(`note  ${note}`);
  lines.push('');
  if (report.ok)
    lines.push('OK: the store honours create-only and compare-and-swap; it can fence a primary.');
  else if (report.error !== null) {
    lines.push(
      `UNREACHABLE: requests to the store failed, so it could not be checked: ${report.error.message}`,
    );
  } else if (!report.fencingSafe) {
    lines.push(
      'UNSAFE: the store does not honour conditional writes; a primary must not run on it (fencing would not work).',
    );
  } else lines.push('FAILED: the store is missing behaviour replicas rely on (see the failed checks).');
  return lines.join('\n');
}

/** The store answered, but not as the contract says. */
class ProbeFailure extends Error {}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new ProbeFailure(message);
}

async function cleanUp(store: ObjectStore, base: string): Promise<void> {
  try {
    const keys: string[] = [];
    for await (const info of listAll(store, `${base}/`)) keys.push(info.key);
    for (let i = 0; i < keys.length; i += 1000) await store.deleteMany(keys.slice(i, i + 1000));
  } catch {
    // Best effort: probe objects are tiny and under their own prefix.
  }
}
