import { KilnError } from '../errors.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import { MAX_CONFIG_BYTES, parseConfig, parseManifest } from '../oci/validate.js';
import type { ImageSource } from '../transport/types.js';

export { selectManifest, selectWasmManifest } from '../oci/select.js';
export { readSmallBlob } from '../transport/read.js';

import { selectManifest } from '../oci/select.js';
import { readSmallBlob } from '../transport/read.js';

export interface ResolvedImage {
  /** The root the user named: an index or a manifest. */
  root: Descriptor;
  index?: ImageIndex;
  descriptor: Descriptor;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  /** Parsed config, and its raw bytes. */
  config: ImageConfig;
  configBytes: Buffer;
}

/** Resolves a source to one image (manifest + config), choosing from an index with `choose`. */
export async function resolveImage(
  source: ImageSource,
  choose: (index: ImageIndex) => Descriptor = (index) => selectManifest(index, undefined, source.name),
): Promise<ResolvedImage> {
  const root = await source.resolve();
  let descriptor = root;
  let bytes = await source.fetchManifest(root);
  let parsed = parseManifest(bytes, `${source.name} manifest`, root.mediaType);
  let index: ImageIndex | undefined;
  if (parsed.kind === 'index') {
    index = parsed.index;
    descriptor = choose(index);
    bytes = await source.fetchManifest(descriptor);
    parsed = parseManifest(bytes, `${source.name} manifest ${descriptor.digest}`, descriptor.mediaType);
    if (parsed.kind !== 'manifest')
      throw new KilnError('E_BAD_MANIFEST', `${source.name}: nested indexes are not supported here`);
  }
  const manifest = parsed.manifest;
  const configBytes = await readSmallBlob(source, manifest.config, MAX_CONFIG_BYTES);
  const config = parseConfig(configBytes, `${source.name} config`);
  const result: ResolvedImage = { root, descriptor, manifest, manifestBytes: bytes, config, configBytes };
  if (index) result.index = index;
  return result;
}
