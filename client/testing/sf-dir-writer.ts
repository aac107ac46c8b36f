/**
 * A writer process for tests/client-sf-dir.test.ts, which SIGKILLs it at random moments and starts
 * it again on the same sf_dir. Test code only.
 *
 *   node --import ./table/query-host-ts-register.mjs client/testing/sf-dir-writer.ts \
 *     <addr[,addr…]> <sf_dir> <rows per batch> <batches to add, or "forever">
 *
 * Its durable progress is the Sender's own: batch `seq` holds rows (seq−1)·R … seq·R−1, so after a
 * restart it continues numbering from `sender.lastBatchSeq` — the newest batch sealed into the
 * sf_dir. Rows added but not sealed when it is killed are numbered again by the next run; each row
 * also names the run's pid, so a seq ever reused for other bytes would be refused by the server
 * (409) and the run would die with that error. Between batches it idles up to IDLE_MS_MAX ms, so
 * some kills find nothing held and test the seq mark. It prints one JSON line per event:
 * `{"event":"open","writerId":…,"held":n,"lastSeq":"s"}`, `{"event":"done","lastSeq":"s"}`.
 */
import { Sender } from '../sender.js';

/** The longest pause between two batches, in ms. */
const IDLE_MS_MAX = 8;

function say(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function main(): Promise<void> {
  const [addr, dir, rowsText, limitText] = process.argv.slice(2);
  if (addr === undefined || dir === undefined || rowsText === undefined || limitText === undefined) {
    throw new Error('usage: sf-dir-writer.ts <addr> <sf_dir> <rows per batch> <batches|forever>');
  }
  const rowsPerBatch = BigInt(rowsText);
  const sender = Sender.fromConfig(
    `http::${addr
      .split(',')
      .map((one) => `addr=${one};`)
      .join('')}sf_dir=${dir};auto_flush=off;request_timeout=5000;retry_timeout=60000;`,
    { onCorruptBatch: (report) => say({ event: 'corrupt', seq: String(report.seq), reason: report.reason }) },
  );
  const startSeq = sender.lastBatchSeq;
  say({ event: 'open', writerId: sender.writerId, held: sender.heldBatches, lastSeq: String(startSeq) });
  // What a previous run sealed goes first, under its original identity.
  await sender.flush();
  const stopSeq = limitText === 'forever' ? undefined : startSeq + BigInt(limitText);
  while (stopSeq === undefined || sender.lastBatchSeq < stopSeq) {
    const seq = sender.lastBatchSeq + 1n;
    for (let i = 0n; i < rowsPerBatch; i++) {
      const n = (seq - 1n) * rowsPerBatch + i;
      await sender.table('rows').symbol('run', String(process.pid)).intColumn('n', n).atNow();
    }
    await sender.flush();
    if (sender.lastBatchSeq !== seq) throw new Error(`sealed as ${sender.lastBatchSeq}, expected ${seq}`);
    // Idle a moment with every batch acknowledged and no file held: a kill there must find the
    // seq mark, or the next run would reuse seqs.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * IDLE_MS_MAX)));
  }
  say({ event: 'done', lastSeq: String(sender.lastBatchSeq), stats: sender.batchStats });
  await sender.close();
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
