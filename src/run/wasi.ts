import { createRequire } from 'node:module';
import * as path from 'node:path';
import { KilnError } from '../errors.js';
import { inspectWasm } from '../wasm/inspect.js';

export interface RunOptions {
  args?: string[];
  /** K=V pairs; later ones win. */
  env?: string[];
  /** Host directories the module may open: `HOST` or `HOST:GUEST`. */
  dirs?: string[];
  stdin?: number;
  stdout?: number;
  stderr?: number;
}

/** Parses `--dir HOST[:GUEST]`: the guest path defaults to the host path as written. */
export function parseDirMapping(spec: string): { host: string; guest: string } {
  const i = spec.indexOf(':');
  const host = i === -1 ? spec : spec.slice(0, i);
  const guest = i === -1 ? spec : spec.slice(i + 1);
  if (host === '' || guest === '') throw new KilnError('E_USAGE', `--dir takes HOST[:GUEST], got '${spec}'`);
  return { host: path.resolve(host), guest };
}

export function envObject(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new KilnError('E_USAGE', `environment entries are K=V, got '${pair}'`);
    env[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return env;
}

/**
 * Runs a WASI preview 1 command module with Node's WASI and returns its exit code.
 * Components and reactors are refused with a clear reason rather than failing inside the engine.
 */
export async function runWasiModule(
  bytes: Uint8Array,
  argv0: string,
  options: RunOptions = {},
): Promise<number> {
  const info = inspectWasm(bytes, argv0);
  if (info.kind === 'component')
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${argv0} is a WebAssembly component (WASI preview 2); kiln run runs preview 1 modules only, for now`,
      {
        hint: 'run components with wasmtime, or package a preview 1 build (wasm32-wasip1)',
      },
    );
  if (info.role !== 'command')
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${argv0} is a ${info.role} module with no _start export; there is nothing to run`,
    );
  const foreign = info.imports.filter((i) => !i.startsWith('wasi_snapshot_preview1#'));
  if (foreign.length)
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${argv0} imports ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}, which WASI preview 1 does not provide`,
    );

  const preopens: Record<string, string> = {};
  for (const spec of options.dirs ?? []) {
    const { host, guest } = parseDirMapping(spec);
    preopens[guest] = host;
  }
  const { WASI } = loadWasi();
  const wasi = new WASI({
    version: 'preview1',
    args: [argv0, ...(options.args ?? [])],
    env: envObject(options.env ?? []),
    preopens,
    returnOnExit: true,
    stdin: options.stdin ?? 0,
    stdout: options.stdout ?? 1,
    stderr: options.stderr ?? 2,
  });
  const module = await WebAssembly.compile(bytes);
  const instance = await WebAssembly.instantiate(
    module,
    wasi.getImportObject() as Record<string, Record<string, unknown>>,
  );
  try {
    return wasi.start(instance as unknown as object) ?? 0;
  } catch (err) {
    if (err instanceof WebAssembly.RuntimeError)
      throw new KilnError('E_TRAP', `${argv0} trapped: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * node:wasi without the `ExperimentalWarning: WASI is an experimental feature` Node 20 emits when it
 * is first loaded: kiln chose WASI, its users did not. Only that warning is dropped; every other
 * warning (and the process's own listeners) is left alone. Loading is synchronous, so nothing else
 * runs while process.emitWarning is wrapped.
 */
function loadWasi(): typeof import('node:wasi') {
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const opt = rest[0];
    const type =
      typeof warning === 'string'
        ? typeof opt === 'string'
          ? opt
          : (opt as { type?: string })?.type
        : warning.name;
    const message = typeof warning === 'string' ? warning : warning.message;
    if (type === 'ExperimentalWarning' && /\bWASI\b/.test(message)) return;
    return (emitWarning as (...a: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    return createRequire(import.meta.url)('node:wasi');
  } finally {
    process.emitWarning = emitWarning;
  }
}
