/**
 * Progress of blob transfers on stderr: bars redrawn in place on a TTY, one plain line per finished
 * blob otherwise (logs stay readable). Silent with --quiet or --json.
 */
import type { CopyEvent } from '../api/transport.js';
import { dim, type GlobalFlags, humanSize } from './output.js';

const REDRAW_MS = 100;
const BAR_WIDTH = 24;

export class Progress {
  private readonly active = new Map<string, { size: number; done: number }>();
  private drawn = 0;
  private lastDraw = 0;
  private readonly tty: boolean;
  private readonly enabled: boolean;

  constructor(
    flags: GlobalFlags,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.enabled = !flags.quiet && !flags.json;
    this.tty = stream.isTTY === true && process.env.TERM !== 'dumb';
  }

  /** The handler to pass as `onEvent`, or undefined when nothing is shown (no counting cost). */
  handler(): ((e: CopyEvent) => void) | undefined {
    return this.enabled ? (e) => this.event(e) : undefined;
  }

  private event(e: CopyEvent): void {
    const short = 'digest' in e ? e.digest.slice(7, 19) : '';
    switch (e.type) {
      case 'blob-start':
        this.active.set(e.digest, { size: e.size, done: 0 });
        break;
      case 'blob-progress': {
        const a = this.active.get(e.digest);
        if (a) a.done = e.done;
        break;
      }
      case 'blob-done':
        this.active.delete(e.digest);
        this.line(`${short}  ${humanSize(e.size)}  copied`);
        break;
      case 'blob-skip':
        this.line(`${short}  ${humanSize(e.size)}  ${dim('already there')}`);
        break;
      case 'blob-mount':
        this.line(`${short}  ${humanSize(e.size)}  ${dim(`mounted from ${e.from}`)}`);
        break;
      case 'manifest':
        return;
    }
    this.draw(e.type !== 'blob-progress');
  }

  /** A permanent line: on a TTY it goes above the bars. */
  private line(text: string): void {
    if (this.tty) this.clear();
    this.stream.write(`${text}\n`);
  }

  private clear(): void {
    if (this.drawn > 0) this.stream.write(`\u001b[${this.drawn}A\u001b[J`);
    this.drawn = 0;
  }

  private draw(force: boolean): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    this.clear();
    const lines: string[] = [];
    for (const [digest, a] of this.active) {
      const frac = a.size > 0 ? Math.min(1, a.done / a.size) : 1;
      const filled = Math.round(frac * BAR_WIDTH);
      lines.push(
        `${digest.slice(7, 19)}  [${'='.repeat(filled)}${' '.repeat(BAR_WIDTH - filled)}] ${humanSize(a.done)} / ${humanSize(a.size)}`,
      );
    }
    if (lines.length) this.stream.write(`${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }

  /** Removes the bars (call before printing the result). */
  finish(): void {
    if (this.tty) this.clear();
  }
}
