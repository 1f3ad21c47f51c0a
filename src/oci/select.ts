/**
 * Choosing one image from an index: kiln's one selection policy, with the behaviour for "no platform
 * asked for" named by the caller. Pure functions over the index, so every layer above can use them.
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

/**
 * What to do when no platform is asked for:
 * - `prefer-host`: the host's image, else the only one (reading: inspect, copy, pulling a toolchain);
 * - `fail-if-ambiguous`: the only image, else E_AMBIGUOUS (commands that write one image from an
 *   index: guessing the host's would silently drop the others);
 * - `wasm`: the WebAssembly image, wasip1 before wasi before any other (`kiln run`).
 */
export type SelectPolicy = 'prefer-host' | 'fail-if-ambiguous' | 'wasm';

export interface SelectOptions {
  /** The platform asked for (`--platform`): when given, it must be there, whatever the policy. */
  platform?: Platform;
  policy: SelectPolicy;
  /** How the user named the index, for messages. */
  where: string;
}

/** An index's image entries: manifests, minus attestations (buildx lists those as unknown/unknown). */
export function indexImages(index: ImageIndex): Descriptor[] {
  return index.manifests.filter(
    (m) => (isManifestType(m.mediaType) || m.mediaType === undefined) && !isUnknownPlatform(m.platform),
  );
}

export function isUnknownPlatform(p: Platform | undefined): boolean {
  return p?.os === 'unknown' && p.architecture === 'unknown';
}

/** `linux/amd64, wasip1/wasm`, or `none`. */
export function describePlatforms(descs: Descriptor[]): string {
  return descs.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ') || 'none';
}

/** The one image of `index` the options name. */
export function selectImage(index: ImageIndex, options: SelectOptions): Descriptor {
  const { platform: want, policy, where } = options;
  const images = indexImages(index);
  if (want) {
    const hit = images.find((m) => m.platform && platformMatches(want, m.platform));
    if (!hit)
      throw new KilnError('E_NO_MATCHING_PLATFORM', `${where} has no image for ${formatPlatform(want)}`, {
        hint: `platforms there: ${describePlatforms(images)}`,
      });
    return hit;
  }
  if (policy === 'wasm') {
    const wasm = images.filter((m) => m.platform && isWasmPlatform(normalizePlatform(m.platform)));
    const preferred =
      wasm.find((m) => m.platform?.os === 'wasip1') ?? wasm.find((m) => m.platform?.os === 'wasi') ?? wasm[0];
    if (!preferred)
      throw new KilnError('E_NO_MATCHING_PLATFORM', `${where} is an index with no WebAssembly image`, {
        hint: `platforms there: ${describePlatforms(images)}`,
      });
    return preferred;
  }
  if (policy === 'prefer-host') {
    const host = hostPlatform();
    const hit = images.find((m) => m.platform && platformMatches(host, m.platform));
    if (hit) return hit;
    if (images.length === 1) return images[0]!;
    throw new KilnError(
      'E_NO_MATCHING_PLATFORM',
      `${where} is an index with no image for this host (${formatPlatform(host)})`,
      { hint: `choose one with --platform; platforms there: ${describePlatforms(images)}` },
    );
  }
  if (images.length === 1) return images[0]!;
  if (images.length === 0) throw new KilnError('E_NOT_FOUND', `${where} is an index with no images`);
  throw new KilnError('E_AMBIGUOUS', `${where} is an index of ${images.length} images; choose one`, {
    hint: `use --platform with one of: ${describePlatforms(images)}`,
  });
}

/** `selectImage` with the `prefer-host` policy. */
export function selectManifest(index: ImageIndex, want: Platform | undefined, where: string): Descriptor {
  return selectImage(index, { platform: want, policy: 'prefer-host', where });
}

/** `selectImage` with the `wasm` policy. */
export function selectWasmManifest(index: ImageIndex, want: Platform | undefined, where: string): Descriptor {
  return selectImage(index, { platform: want, policy: 'wasm', where });
}

/** `selectImage` with the `fail-if-ambiguous` policy. */
export function pickImage(index: ImageIndex, want: Platform | undefined, where: string): Descriptor {
  return selectImage(index, { platform: want, policy: 'fail-if-ambiguous', where });
}
