import * as path from 'node:path';
import { KilnError } from '../errors.js';
import type { ResolvedImage } from '../image/resolve.js';
import { readFileFromTar } from '../layer/tar-reader.js';
import { layerCompression, MediaType } from '../oci/media-types.js';
import { TITLE_ANNOTATION } from '../oci/types.js';
import { verified } from '../oci/verify.js';
import { readSmallBlob } from '../transport/read.js';
import type { ImageSource } from '../transport/types.js';
import { MAX_MODULE_BYTES } from '../wasm/package.js';

export interface FoundModule {
  bytes: Buffer;
  /** argv[0] for the program: the entrypoint path, or the module's title. */
  argv0: string;
  /** Arguments the image gives by default (rest of Entrypoint, then Cmd). */
  defaultArgs: string[];
  /** Arguments that always come first (rest of Entrypoint). */
  fixedArgs: string[];
  env: string[];
}

const RAW_LAYER_TYPES: Set<string> = new Set([
  MediaType.WasmLayer,
  MediaType.WasmToOciLayer,
  MediaType.IstioOciLayer,
]);

/**
 * Finds the WebAssembly module in an image by the rules of the format it was packed in:
 * artifact-style formats carry the module as a raw layer; image-style ones as a file in a
 * layer, named by the entrypoint (or Istio's plugin.wasm).
 */
export async function findModule(source: ImageSource, image: ResolvedImage): Promise<FoundModule> {
  const { manifest, config } = image;
  const raw = manifest.layers.filter((l) => RAW_LAYER_TYPES.has(l.mediaType));
  if (raw.length > 0) {
    if (raw.length > 1)
      throw new KilnError(
        'E_NOT_RUNNABLE',
        `${source.name} has ${raw.length} wasm layers; a runnable artifact has exactly one`,
      );
    const layer = raw[0]!;
    const bytes = await readSmallBlob(source, layer, MAX_MODULE_BYTES);
    const argv0 = layer.annotations?.[TITLE_ANNOTATION] ?? 'module.wasm';
    return { bytes, argv0, defaultArgs: [], fixedArgs: [], env: [] };
  }

  const entrypoint = config.config?.Entrypoint ?? [];
  const cmd = config.config?.Cmd ?? [];
  const env = config.config?.Env ?? [];
  const program = entrypoint[0] ?? cmd[0];
  const wanted = program !== undefined ? [stripSlash(program)] : [];
  if (wanted.length === 0) wanted.push('plugin.wasm'); // Istio compat images have no entrypoint
  for (const layer of [...manifest.layers].reverse()) {
    if (layerCompression(layer.mediaType) === undefined) continue;
    const hit = await readFileFromTar(
      verified(await source.fetchBlob(layer), layer, source.name),
      (e) => wanted.includes(e.path),
      MAX_MODULE_BYTES,
      `layer ${layer.digest}`,
    );
    if (hit) {
      const fixedArgs = entrypoint.length ? entrypoint.slice(1) : [];
      const defaultArgs = entrypoint.length ? cmd : cmd.slice(1);
      return { bytes: hit.data, argv0: program ?? `/${hit.entry.path}`, defaultArgs, fixedArgs, env };
    }
  }
  if (program === undefined)
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${source.name} has no entrypoint and no plugin.wasm; kiln cannot tell which module to run`,
    );
  throw new KilnError('E_NOT_RUNNABLE', `${source.name}: the entrypoint ${program} is not in any layer`);
}

function stripSlash(p: string): string {
  return path.posix.normalize(p).replace(/^\/+/, '');
}
