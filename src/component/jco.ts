/**
 * @bytecodealliance/jco, loaded only when a component is made or run (it is large: wasm-tools and
 * js-component-bindgen compiled to WebAssembly), and kept out of the CLI bundle.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { KilnError } from '../errors.js';

export interface Jco {
  version: string;
  transpile(
    component: Uint8Array,
    options: Record<string, unknown>,
  ): Promise<{ files: Record<string, Uint8Array>; imports: string[]; exports: [string, string][] }>;
  componentNew(bytes: Uint8Array, adapters?: Array<[string, Uint8Array]>): Promise<Uint8Array>;
  preview1AdapterCommandPath(): URL;
  preview1AdapterReactorPath(): URL;
}

const PACKAGE = '@bytecodealliance/jco';
let loaded: Promise<Jco> | undefined;

export function loadJco(): Promise<Jco> {
  loaded ??= (async () => {
    try {
      const api = (await import('@bytecodealliance/jco')) as unknown as Omit<Jco, 'version'>;
      // The package exports no package.json; it is beside lib/, where the adapters are.
      const manifest = new URL('../package.json', api.preview1AdapterCommandPath());
      const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
      return { ...api, version };
    } catch (err) {
      loaded = undefined;
      throw new KilnError('E_UNSUPPORTED', `${PACKAGE} could not be loaded: ${(err as Error).message}`, {
        hint: 'components need kiln installed from npm with its dependencies (the single executable has no jco)',
        cause: err,
      });
    }
  })();
  return loaded;
}

let versionMemo: string | undefined;

/** jco's version without loading jco (a cache key is checked before jco is needed). */
export function jcoVersion(): string {
  if (versionMemo) return versionMemo;
  try {
    const entry = createRequire(import.meta.url).resolve(PACKAGE);
    // dist/api.js → the package root
    const manifest = path.join(path.dirname(entry), '..', 'package.json');
    versionMemo = (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
    return versionMemo;
  } catch (err) {
    throw new KilnError('E_UNSUPPORTED', `${PACKAGE} could not be found: ${(err as Error).message}`, {
      hint: 'components need kiln installed from npm with its dependencies (the single executable has no jco)',
      cause: err,
    });
  }
}
