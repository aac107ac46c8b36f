/**
 * The demo's live view: a block of lines (one per node: role, epoch, per-table watermarks and lag)
 * redrawn in place on a terminal, appended otherwise, with phase lines printed above it.
 */
import type { NodeStatus } from './node-http.js';

/** What the view shows of one node. */
export interface NodeLine {
  name: string;
  url: string;
  status: NodeStatus | null;
}

/**
 * Per-table watermarks, a column per node: a primary's committed/uploaded txn (and pending txns),
 * a replica's applied txn (and how many it is behind, or SUSPENDED). walship status's table shows
 * the roles and lag; this shows where each table is on each node.
 */
export function renderWatermarks(nodes: readonly NodeLine[], tables: readonly string[]): string[] {
  const cells = (table: string) =>
    nodes.map(({ status }) => {
      if (status === null) return 'unreachable';
      const t = status.tables?.find((entry) => entry.name === table);
      if (t === undefined) return status.role === 'switching' ? 'switching' : '-';
      if (status.role === 'primary')
        return `${t.committedTxn}/${t.uploadedTxn} committed/uploaded${(t.pendingTxns ?? 0) > 0 ? ` (${t.pendingTxns} pending)` : ''}`;
      const behind = t.suspended ? `SUSPENDED ${t.suspended.code}` : `${t.txnsBehind ?? '?'} behind`;
      return `${t.appliedTxn} applied (${behind})`;
    });
  const header = ['WATERMARKS', ...nodes.map((n) => `${n.name} :${new URL(n.url).port}`)];
  const rows = [header, ...tables.map((table) => [table, ...cells(table)])];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
}

/** A primary's epoch; for a replica (its /status has an epoch per table), the newest it applied. */
export function epochOf(status: NodeStatus | null): string | undefined {
  if (status === null) return undefined;
  if (status.epoch !== undefined) return status.epoch;
  // A sequenced node's tables have no epoch (null).
  const epochs = (status.tables ?? []).map((t) => t.epoch).filter((e): e is string => typeof e === 'string');
  if (epochs.length === 0) return undefined;
  return epochs.reduce((a, b) => (BigInt(a) >= BigInt(b) ? a : b));
}

/**
 * Writes phase lines and the live block to `write` (which ends each call with a newline). On a
 * terminal the block is redrawn in place (ANSI: cursor up, clear to the end of the screen) and a
 * phase line goes above it; elsewhere everything is appended.
 */
export class LiveView {
  readonly #write: (text: string) => void;
  readonly tty: boolean;
  /** A terminal's width: a longer line would wrap, and the redraw would miscount its lines. */
  readonly columns: number | undefined;
  #block: string[] = [];
  #drawn = 0;

  constructor(options: { write: (text: string) => void; tty: boolean; columns?: number | undefined }) {
    this.#write = options.write;
    this.tty = options.tty;
    this.columns = options.columns;
  }

  /** A line that stays (what the demo is doing now). */
  phase(line: string): void {
    if (!this.tty) {
      this.#write(line);
      return;
    }
    this.#write(`${this.#erase()}${line}`);
    this.#drawn = 0;
    if (this.#block.length > 0) this.#draw();
  }

  /** Replaces the live block. */
  show(block: string[]): void {
    const width = this.columns;
    this.#block =
      this.tty && width !== undefined && width > 1 ? block.map((line) => fitLine(line, width)) : block;
    if (block.length > 0) this.#draw();
  }

  /** Leaves the last block on screen and stops redrawing over it. */
  done(): void {
    this.#block = [];
    this.#drawn = 0;
  }

  #draw(): void {
    const text = this.#block.join('\n');
    if (!this.tty) {
      this.#write(text);
      return;
    }
    this.#write(`${this.#erase()}${text}`);
    this.#drawn = this.#block.length;
  }

  /** Cursor to the start of the block drawn last, and clear from there down. */
  #erase(): string {
    return this.#drawn === 0 ? '' : `\u001b[${this.#drawn}F\u001b[J`;
  }
}

/** `line` cut to fewer than `width` visible characters (a cut line loses its ANSI colours). */
function fitLine(line: string, width: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are what is matched
  const plain = line.replace(/\u001b\[[0-9;]*m/g, '');
  return plain.length < width ? line : `${plain.slice(0, width - 2)}…`;
}
