import { createRequire } from 'node:module';
import * as path from 'node:path';
import { checkRunnable, type GuestOptions, prepareGuest, runGuest } from '../component/sandbox.js';
import { KilnError } from '../errors.js';
import { inspectWasm } from '../wasm/inspect.js';

/**
 * args, env (K=V, later ones win), dirs (`HOST[:GUEST[:ro]]`), stdio fds, and the sandbox's limits:
 * maxMemoryMiB, timeoutMs, allowNet (see component/sandbox.ts).
 */
export type RunOptions = GuestOptions;

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
 * Runs a WASI command, a preview 1 module or a component (wasi:cli/run), and returns its exit code.
 * It runs in the sandbox of component/sandbox.ts: a child Node under the permission model, a preview 1
 * module through the preview 1 adapter (its exit code kept whole). Guests that cannot run are refused
 * with a clear reason before anything starts.
 *
 * The single executable (`npm run sea`) has no jco and cannot start a child Node: there a preview 1
 * module runs in this process with node:wasi, without the sandbox (so without its limits).
 */
export async function runWasiModule(
  bytes: Uint8Array,
  argv0: string,
  options: RunOptions = {},
): Promise<number> {
  const info = inspectWasm(bytes, argv0);
  checkRunnable(info, argv0);
  if (!isSingleExecutable())
    return runGuest(await prepareGuest(bytes, argv0, info, options.storeDir), argv0, options);
  if (info.kind === 'component')
    throw new KilnError(
      'E_UNSUPPORTED',
      `${argv0} is a component; the single executable runs preview 1 modules only`,
      {
        hint: 'install kiln from npm to run components',
      },
    );
  if (options.maxMemoryMiB !== undefined || options.timeoutMs !== undefined || options.allowNet)
    throw new KilnError(
      'E_UNSUPPORTED',
      'the single executable has no sandbox for --max-memory, --timeout or --allow-net',
      {
        hint: 'install kiln from npm to use them',
      },
    );
  return runInProcess(bytes, argv0, options);
}

function isSingleExecutable(): boolean {
  try {
    return (createRequire(import.meta.url)('node:sea') as { isSea(): boolean }).isSea();
  } catch {
    return false;
  }
}

/** A preview 1 command with node:wasi, in this process: what the single executable runs. */
async function runInProcess(bytes: Uint8Array, argv0: string, options: RunOptions): Promise<number> {
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
