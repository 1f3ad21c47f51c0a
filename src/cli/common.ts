import type { Command } from 'commander';
import { KilnError } from '../errors.js';
import type { GlobalFlags } from './output.js';

/** The global flags as set on the program, wherever they appeared on the command line. */
export function globals(cmd: Command): GlobalFlags {
  const o = cmd.optsWithGlobals() as Partial<GlobalFlags>;
  return { json: !!o.json, debug: !!o.debug, quiet: !!o.quiet };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function keyValues(pairs: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const i = p.indexOf('=');
    if (i <= 0) throw new KilnError('E_USAGE', `${flag} takes KEY=VALUE, got '${p}'`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

export function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}
