import * as fs from 'node:fs/promises';
import { ioError } from '../errors.js';
import { resolveImage, selectWasmManifest } from '../image/resolve.js';
import type { Platform } from '../oci/platform.js';
import { openSource } from '../transport/open.js';
import { findModule } from './find-module.js';
import { type RunOptions, runWasiModule } from './wasi.js';

export interface RunImageOptions extends RunOptions {
  platform?: Platform;
}

/**
 * `kiln run`: a `.wasm` file on disk, or an image from any source transport. For an index the
 * wasm entry is chosen. Image args replace Cmd as `docker run` does; image env comes first.
 */
export async function runWasm(target: string, options: RunImageOptions = {}): Promise<number> {
  if (target.endsWith('.wasm') && !target.includes(':')) {
    const bytes = await fs.readFile(target).catch((err) => {
      throw ioError(err, target);
    });
    return runWasiModule(bytes, target, options);
  }
  const source = await openSource(target);
  try {
    const image = await resolveImage(source, (index) =>
      selectWasmManifest(index, options.platform, source.name),
    );
    const found = await findModule(source, image);
    const args = [...found.fixedArgs, ...(options.args?.length ? options.args : found.defaultArgs)];
    return await runWasiModule(found.bytes, found.argv0, {
      ...options,
      args,
      env: [...found.env, ...(options.env ?? [])],
    });
  } finally {
    await source.close();
  }
}
