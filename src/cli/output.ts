import { redact } from '../errors.js';

export interface GlobalFlags {
  json: boolean;
  debug: boolean;
  quiet: boolean;
}

const useColor = () => process.stderr.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';

function paint(code: string, text: string): string {
  return useColor() ? `\u001b[${code}m${text}\u001b[0m` : text;
}
export const dim = (t: string) => paint('2', t);
export const bold = (t: string) => paint('1', t);
export const red = (t: string) => paint('31', t);
export const green = (t: string) => paint('32', t);

/** Renders what commands return: data on stdout, everything else on stderr. */
export class Output {
  constructor(readonly flags: GlobalFlags) {}

  /** Data: a digest, a reference, a table. In --json mode commands call `json` instead. */
  data(text: string): void {
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  json(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A status line for people; silent with --quiet or --json. */
  info(text: string): void {
    if (this.flags.quiet || this.flags.json) return;
    process.stderr.write(`${text}\n`);
  }

  debug(text: string): void {
    if (this.flags.debug) process.stderr.write(`${dim(`debug: ${redact(text)}`)}\n`);
  }
}

/** `1 layer`, `2 layers`, `0 entries`: a count with its noun, singular only for exactly one. */
export function plural(n: number, singular: string, pluralForm = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : pluralForm}`;
}

export function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
