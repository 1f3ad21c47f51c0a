/**
 * The files of an image, with digests, for its SBOM: its layers flattened as a runtime would apply
 * them, each regular file hashed as it streams by. No layer is held in memory; only paths and sums.
 */
import { createHash } from 'node:crypto';
import { KilnError } from '../errors.js';
import { flattenLayers } from '../image/flatten.js';
import { layerCompression } from '../oci/media-types.js';
import { type Descriptor, TITLE_ANNOTATION } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import { verified } from '../oci/verify.js';
import type { ImageSource } from '../transport/types.js';
import type { SbomFile } from './spdx.js';

/** Options of `imageFiles`: the layers to skip (a base's). */
export interface ImageFilesOptions {
  /** Layers at the bottom to leave out: the base image's, whose files kiln did not put there. */
  skipLayers?: number;
}

/**
 * Every regular file in the image `manifest` (from `skipLayers` up), sorted by path, with SHA-256
 * and SHA-1 and size. A hard link gets its target's sums. A layer that is not a tar (a raw
 * `application/wasm` layer of the artifact formats) is one file, named by its title annotation.
 */
export async function imageFiles(
  source: ImageSource,
  manifest: Descriptor,
  options: ImageFilesOptions = {},
): Promise<SbomFile[]> {
  const bytes = await source.fetchManifest(manifest);
  const parsed = parseManifest(bytes, `${source.name} manifest ${manifest.digest}`, manifest.mediaType);
  if (parsed.kind !== 'manifest')
    throw new KilnError(
      'E_BAD_MANIFEST',
      `${source.name}: ${manifest.digest} is an index; an SBOM lists the files of one image`,
    );
  const layers = parsed.manifest.layers.slice(options.skipLayers ?? 0);
  const found = new Map<string, SbomFile>();
  const tars: Descriptor[] = [];
  for (const layer of layers) {
    if (layerCompression(layer.mediaType) !== undefined) {
      tars.push(layer);
      continue;
    }
    const name = layer.annotations?.[TITLE_ANNOTATION] ?? `blobs/${layer.digest.replace(':', '/')}`;
    const sums = await hashStream(verified(await source.fetchBlob(layer), layer, source.name));
    found.set(name.replace(/^\/+/, ''), { path: name.replace(/^\/+/, ''), ...sums });
  }
  if (tars.length > 0) {
    for await (const item of flattenLayers(source, tars)) {
      if (item.kind !== 'entry') continue;
      const { entry } = item;
      if (entry.type === 'file' && item.content) {
        found.set(entry.path, { path: entry.path, ...(await hashStream(item.content)) });
      } else if (entry.type === 'hardlink' && entry.linkname !== undefined) {
        const target = found.get(entry.linkname);
        if (target) found.set(entry.path, { ...target, path: entry.path });
      }
    }
  }
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function hashStream(
  content: AsyncIterable<Uint8Array>,
): Promise<{ sha256: string; sha1: string; size: number }> {
  const h256 = createHash('sha256');
  const h1 = createHash('sha1');
  let size = 0;
  for await (const chunk of content) {
    h256.update(chunk);
    h1.update(chunk);
    size += chunk.byteLength;
  }
  return { sha256: h256.digest('hex'), sha1: h1.digest('hex'), size };
}
