import type { Command } from 'commander';
import type { RegistryOptions } from '../api/registry.js';
import { KilnError, redact } from '../errors.js';
import { dim, type GlobalFlags } from './output.js';

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

/** Registry settings from the global flags: --creds, --insecure-registry, --ca-cert, --debug. */
export function registryOptions(cmd: Command, creds?: string): RegistryOptions {
  const o = cmd.optsWithGlobals() as {
    creds?: string;
    insecureRegistry?: string[];
    caCert?: string[];
    debug?: boolean;
  };
  return {
    creds: creds ?? o.creds,
    insecureRegistries: o.insecureRegistry,
    caFiles: o.caCert,
    debug: o.debug ? (line) => process.stderr.write(`${dim(`debug: ${redact(line)}`)}\n`) : undefined,
  };
}

/** --jobs as a positive integer. */
export function jobs(cmd: Command): number {
  const raw = (cmd.optsWithGlobals() as { jobs?: string }).jobs ?? '4';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new KilnError('E_USAGE', `--jobs takes a number from 1 to 64, got '${raw}'`);
  return n;
}
