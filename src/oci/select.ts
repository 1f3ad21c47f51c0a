/**
 * Choosing one image from an index: the platform asked for, else the host's, else the only one; and the
 * WebAssembly variant for `kiln run`. Pure functions over the index, so every layer above can use them.
 */
import { KilnError } from '../errors.js';
import { isManifestType } from './media-types.js';
import {
  formatPlatform,
  hostPlatform,
  isWasmPlatform,
  normalizePlatform,
  type Platform,
  platformMatches,
} from './platform.js';
import type { Descriptor, ImageIndex } from './types.js';

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
