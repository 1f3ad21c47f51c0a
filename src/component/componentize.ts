/**
 * A WASI preview 1 module made into a component (WASI 0.2) with the preview 1 adapter jco ships
 * (wasmtime's `wasi_snapshot_preview1.{command,reactor}.wasm`), as `jco new --wasi-command` does.
 * The same module and jco version give the same bytes.
 */
import * as fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../errors.js';
import { inspectWasm, type WasmInfo } from '../wasm/inspect.js';
import { loadJco } from './jco.js';

export interface Componentized {
  bytes: Uint8Array;
  /** What the input was: a command gets the command adapter (exports wasi:cli/run), a reactor the reactor one. */
  role: 'command' | 'reactor';
  adapter: string;
}

/** Makes a preview 1 command or reactor module into a component; refuses components and non-WASI modules. */
export async function componentize(
  bytes: Uint8Array,
  label = 'input',
  info?: WasmInfo,
): Promise<Componentized> {
  const wasm = info ?? inspectWasm(bytes, label);
  if (wasm.kind === 'component')
    throw new KilnError('E_USAGE', `${label} is already a component`, {
      hint: 'package it as it is: kiln package detects components (wasip2)',
    });
  if (wasm.wasi !== 'preview1')
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${label} imports no wasi_snapshot_preview1: it is not a WASI preview 1 module`,
      {
        hint: 'build for wasm32-wasip1 (wasm32-wasi), or give a component',
      },
    );
  if (wasm.role === 'library')
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${label} exports neither _start (a command) nor _initialize (a reactor); the adapter needs one`,
      { hint: 'link it as a command (a main function) or a reactor (-mexec-model=reactor)' },
    );
  const jco = await loadJco();
  const adapterUrl =
    wasm.role === 'command' ? jco.preview1AdapterCommandPath() : jco.preview1AdapterReactorPath();
  const adapter = await fs.readFile(fileURLToPath(adapterUrl));
  try {
    const out = await jco.componentNew(bytes, [['wasi_snapshot_preview1', adapter]]);
    return { bytes: out, role: wasm.role, adapter: `jco ${jco.version} ${wasm.role} adapter` };
  } catch (err) {
    const reason = String((err as Error)?.message ?? err).split('\n')[0];
    throw new KilnError('E_NOT_RUNNABLE', `${label} could not be made a component: ${reason}`, {
      hint: 'a module importing anything but wasi_snapshot_preview1 cannot go through the preview 1 adapter',
      cause: err,
    });
  }
}
