import { type Command, Option } from 'commander';
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

/** Values of a repeatable flag that also takes comma-separated lists (`--platform a,b --platform c`). */
export function commaList(values: string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/** `--wasi-alias` and `--node-alias`: the wasm image listed in the index under other platforms too. */
export function aliasOptions(cmd: Command): Command {
  return cmd
    .option('--wasi-alias', 'also list the wasm image under wasi/wasm in an index (Docker)')
    .option(
      '--node-alias <os/arch,...>',
      'also list the wasm image under these node platforms in an index, e.g. linux/amd64,linux/arm64 (Kubernetes nodes pulling by their own platform)',
      collect,
    );
}

/** The aliases `aliasOptions` set, with the node platforms parsed by `parse`; undefined when none. */
export function aliasesOf<P>(
  opts: { wasiAlias?: boolean; nodeAlias?: string[] },
  parse: (s: string) => P,
): { wasi?: boolean; node?: P[] } | undefined {
  const node = commaList(opts.nodeAlias).map(parse);
  if (!opts.wasiAlias && node.length === 0) return undefined;
  return { ...(opts.wasiAlias ? { wasi: true } : {}), ...(node.length ? { node } : {}) };
}

/** `--compression gzip|zstd`: how new tar layers are compressed. */
export function compressionOption(): Option {
  return new Option(
    '--compression <type>',
    'new layers as gzip (every consumer reads it) or zstd (smaller and faster; kiln check --for says who reads it)',
  )
    .choices(['gzip', 'zstd'])
    .default('gzip');
}
