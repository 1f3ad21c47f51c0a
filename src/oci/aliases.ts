/**
 * Platform aliases: the same wasm manifest listed again in an index under the platforms consumers
 * pull by. Docker names wasm `wasi/wasm` (`docker run --platform wasi/wasm`); a Kubernetes node's
 * containerd pulls an index by the node's platform (`linux/amd64`) and fails with "no match for
 * platform in manifest" when only a wasm entry is there (docs/formats.md, "Platform aliases").
 */
import { KilnError } from '../errors.js';
import {
  formatPlatform,
  isWasmPlatform,
  normalizePlatform,
  type Platform,
  platformMatches,
} from './platform.js';
import type { Descriptor } from './types.js';

/** Which alias entries to add for the wasm image of an index. */
export interface PlatformAliases {
  /** List the wasm image under `wasi/wasm` too (Docker). */
  wasi?: boolean;
  /** List the wasm image under these node platforms too (`linux/amd64`, `linux/arm64`: Kubernetes with a runwasi RuntimeClass). */
  node?: Platform[];
}

/** Whether any alias is asked for. */
export function hasAliases(aliases: PlatformAliases | undefined): boolean {
  return Boolean(aliases?.wasi) || (aliases?.node?.length ?? 0) > 0;
}

/**
 * `manifests` with alias entries for the first wasm image, each right after it. An alias whose
 * platform already has an entry of its own is skipped for wasi/wasm (it is there) and refused for a
 * node platform with another image (the alias would hide a native image: one image per platform).
 */
export function withPlatformAliases(
  manifests: readonly Descriptor[],
  aliases: PlatformAliases,
  where: string,
): Descriptor[] {
  if (!hasAliases(aliases)) return [...manifests];
  const wasmAt = manifests.findIndex((m) => m.platform && isWasmPlatform(m.platform));
  if (wasmAt < 0)
    throw new KilnError('E_USAGE', `${where} has no wasm image to list under another platform`, {
      hint: 'platform aliases (--wasi-alias, --node-alias) are for images with a wasm platform',
    });
  const wasm = manifests[wasmAt]!;
  const wanted: Platform[] = [];
  if (aliases.wasi) wanted.push({ os: 'wasi', architecture: 'wasm' });
  for (const p of aliases.node ?? []) {
    if (isWasmPlatform(p))
      throw new KilnError('E_USAGE', `--node-alias ${formatPlatform(p)} is a wasm platform, not a node's`, {
        hint: 'name the nodes platforms, e.g. --node-alias linux/amd64,linux/arm64',
      });
    wanted.push(normalizePlatform(p));
  }
  const added: Descriptor[] = [];
  for (const platform of wanted) {
    const have = [...manifests, ...added].find((m) => m.platform && samePlatform(m.platform, platform));
    if (have) {
      if (have.digest === wasm.digest || isWasmPlatform(platform)) continue;
      throw new KilnError(
        'E_AMBIGUOUS',
        `${where} has an image of its own for ${formatPlatform(platform)} (${have.digest}); listing the wasm image there too would hide it`,
        { hint: `leave ${formatPlatform(platform)} out of --node-alias` },
      );
    }
    const { platform: _, ...rest } = wasm;
    added.push({ ...rest, platform });
  }
  return [...manifests.slice(0, wasmAt + 1), ...added, ...manifests.slice(wasmAt + 1)];
}

function samePlatform(a: Platform, b: Platform): boolean {
  return platformMatches(a, b) && platformMatches(b, a);
}
