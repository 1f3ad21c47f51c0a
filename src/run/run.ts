import * as fs from 'node:fs/promises';
import type { KilnContext } from '../context.js';
import { ioError, KilnError } from '../errors.js';
import { type ResolvedImage, resolveImage, selectWasmManifest } from '../image/resolve.js';
import { MediaType } from '../oci/media-types.js';
import { formatPlatform, isWasmPlatform, normalizePlatform, type Platform } from '../oci/platform.js';
import type { ImageIndex } from '../oci/types.js';
import { openSource } from '../transport/open.js';
import { VARIANT_ANNOTATION } from '../wasm/package.js';
import { findModule } from './find-module.js';
import { type RunOptions, runWasiModule } from './wasi.js';

/** How `runWasm` runs a module: the WASI options of `RunOptions`, and where the image comes from. */
export interface RunImageOptions extends RunOptions {
  /** The image to take from an index (default: its wasm image). */
  platform?: Platform;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
}

const NATIVE_HINT = '`kiln run` runs WebAssembly images; use docker or podman for native ones';

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
  const source = await openSource(target, { context: options.context });
  try {
    const image = await resolveImage(source, (index) => {
      if (
        !options.platform &&
        !index.manifests.some((m) => m.platform && isWasmPlatform(normalizePlatform(m.platform)))
      )
        throw new KilnError(
          'E_NOT_WASM',
          `${source.name} is not a WebAssembly image: an index of ${indexPlatforms(index)}`,
          { hint: NATIVE_HINT },
        );
      return selectWasmManifest(index, options.platform, source.name);
    });
    if (isNativeImage(image)) {
      const platform = formatPlatform({
        os: image.config.os ?? 'unknown',
        architecture: image.config.architecture ?? 'unknown',
        ...(image.config.variant ? { variant: image.config.variant } : {}),
      });
      throw new KilnError(
        'E_NOT_WASM',
        image.index
          ? `${source.name}: the image chosen for ${platform} is not a WebAssembly image (the index has ${indexPlatforms(image.index)})`
          : `${source.name} is not a WebAssembly image: it is for ${platform}`,
        { hint: NATIVE_HINT },
      );
    }
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

const WASM_MEDIA_TYPES: Set<string> = new Set([
  MediaType.WasmLayer,
  MediaType.WasmToOciLayer,
  MediaType.IstioOciLayer,
  MediaType.WasmConfigV0,
  MediaType.WasmToOciConfig,
  MediaType.IstioOciConfig,
]);

/**
 * An image no WebAssembly convention claims: a native architecture, no wasm layer or config, no
 * `module.wasm.image/variant` marker (crun's wasm images are linux/amd64 but carry it), and a
 * program that is not a `.wasm` file. Images with no program at all may be Istio's (plugin.wasm).
 */
function isNativeImage({ manifest, config }: ResolvedImage): boolean {
  if (config.architecture === 'wasm') return false;
  if (WASM_MEDIA_TYPES.has(manifest.config.mediaType)) return false;
  if (manifest.layers.some((l) => WASM_MEDIA_TYPES.has(l.mediaType))) return false;
  if (manifest.annotations?.[VARIANT_ANNOTATION] || config.config?.Labels?.[VARIANT_ANNOTATION]) return false;
  const program = config.config?.Entrypoint?.[0] ?? config.config?.Cmd?.[0];
  return program !== undefined && !program.endsWith('.wasm');
}

/** Every platform an index names (attestations and other unplatformed entries left out). */
function indexPlatforms(index: ImageIndex): string {
  const platforms = [
    ...new Set(
      index.manifests
        .filter((m) => m.platform && m.platform.os !== 'unknown')
        .map((m) => formatPlatform(m.platform!)),
    ),
  ];
  return platforms.length ? platforms.join(', ') : 'images with no platform';
}
