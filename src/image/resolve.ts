import { KilnError } from '../errors.js';
import { isManifestType } from '../oci/media-types.js';
import {
  formatPlatform,
  hostPlatform,
  isWasmPlatform,
  normalizePlatform,
  type Platform,
  platformMatches,
} from '../oci/platform.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import { MAX_CONFIG_BYTES, parseConfig, parseManifest } from '../oci/validate.js';
import type { ImageSource } from '../transport/types.js';
import { verified } from '../transport/verify.js';

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

/** Picks one manifest from an index: the platform asked for, else the host's, else the only one. */
export function selectManifest(index: ImageIndex, want: Platform | undefined, where: string): Descriptor {
  const images = index.manifests.filter((m) => isManifestType(m.mediaType) || m.mediaType === undefined);
  const platforms = images.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
  if (want) {
    const hit = images.find((m) => m.platform && platformMatches(want, m.platform));
    if (!hit)
      throw new KilnError('E_NO_MATCHING_PLATFORM', `${where} has no image for ${formatPlatform(want)}`, {
        hint: `platforms there: ${platforms || 'none'}`,
      });
    return hit;
  }
  const host = hostPlatform();
  const hit = images.find((m) => m.platform && platformMatches(host, m.platform));
  if (hit) return hit;
  if (images.length === 1) return images[0]!;
  throw new KilnError(
    'E_NO_MATCHING_PLATFORM',
    `${where} is an index with no image for this host (${formatPlatform(host)})`,
    {
      hint: `choose one with --platform; platforms there: ${platforms || 'none'}`,
    },
  );
}

/** Picks the WebAssembly image from an index: the platform asked for, else wasip1, else any wasm. */
export function selectWasmManifest(index: ImageIndex, want: Platform | undefined, where: string): Descriptor {
  if (want) return selectManifest(index, want, where);
  const wasm = index.manifests.filter((m) => m.platform && isWasmPlatform(normalizePlatform(m.platform)));
  const preferred =
    wasm.find((m) => m.platform?.os === 'wasip1') ?? wasm.find((m) => m.platform?.os === 'wasi') ?? wasm[0];
  if (!preferred)
    throw new KilnError('E_NO_MATCHING_PLATFORM', `${where} is an index with no WebAssembly image`, {
      hint: `platforms there: ${index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ')}`,
    });
  return preferred;
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

/** Reads a small blob (a config, a module) whole, refusing anything over `limit`. */
export async function readSmallBlob(source: ImageSource, desc: Descriptor, limit: number): Promise<Buffer> {
  if (desc.size > limit)
    throw new KilnError(
      'E_TOO_LARGE',
      `blob ${desc.digest} is ${desc.size} bytes, over the ${limit} byte limit`,
    );
  const parts: Buffer[] = [];
  for await (const chunk of verified(await source.fetchBlob(desc), desc, source.name))
    parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}
