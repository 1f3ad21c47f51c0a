/**
 * Packaging a .wasm and writing it to any destination in one step: what `kiln package` and a build's
 * wasm images run.
 */
import { assertChecked, checkSource, consumersOf } from '../check/check.js';
import { type KilnContext, withContext } from '../context.js';
import { writeJsonBlob } from '../image/write.js';
import { hasAliases, type PlatformAliases, withPlatformAliases } from '../oci/aliases.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import { copyImage } from '../transport/copy.js';
import { OciDirSource } from '../transport/oci-dir.js';
import { openDestination } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { WasmInfo } from './inspect.js';
import { type PackageOptions, packageWasm, type WasmFormat } from './package.js';
import type { SpinPackaged } from './spin.js';

/** What `pack` wrote: the image, its format and platform, the destination. */
export interface PackResult {
  destination: string;
  descriptor: Descriptor;
  format: WasmFormat;
  platform: Platform;
  /** The module (for `spin`: the first component). */
  wasm: WasmInfo;
  /** For `spin`: the components' ids and the locked app layer. */
  spin?: SpinPackaged;
}

/** Options of `pack`: what `packageWasm` takes, the destination, and index entries to add. */
export interface PackOptions extends PackageOptions {
  to: string;
  store?: OciLayout;
  context?: KilnContext;
  /** List the image in an index under wasi/wasm or node platforms too (then the root is that index). */
  aliases?: PlatformAliases;
  /** Consumers (`kiln check --for`) that must take the image; any failing verdict writes nothing (E_CHECK_FAILED). */
  check?: readonly string[];
}

/**
 * Packages a .wasm file in one of the formats of docs/formats.md (for `spin`, a Spin application from
 * its spin.toml) and writes it to `to` (any destination transport).
 */
export async function pack(options: PackOptions): Promise<PackResult> {
  // Parse the destination before any work, so a bad reference fails fast and writes nothing.
  parseLocation(options.to);
  return withContext(options.context, async (context) => {
    // Opened first: a registry destination starts its handshake while the image is built.
    const destination = await openDestination(options.to, { context });
    let packaged: Awaited<ReturnType<typeof packageWasm>>;
    let store: OciLayout;
    let root: Descriptor;
    try {
      store = options.store ?? (await context.store());
      packaged = await packageWasm(store, options);
      root = packaged.descriptor;
      if (hasAliases(options.aliases)) {
        const entry = { ...packaged.descriptor, platform: packaged.platform };
        const manifests = withPlatformAliases([entry], options.aliases ?? {}, options.file);
        root = await writeJsonBlob(store, MediaType.OciIndex, {
          schemaVersion: 2,
          mediaType: MediaType.OciIndex,
          manifests,
        });
      }
      if (options.check?.length) {
        const checked = OciDirSource.forDescriptor(store, root);
        try {
          assertChecked(await checkSource(checked, consumersOf(options.check)));
        } finally {
          await checked.close();
        }
      }
    } catch (err) {
      await destination.abort().catch(() => {});
      throw err;
    }
    await copyImage(OciDirSource.forDescriptor(store, root), destination, {
      signal: context.signal,
      onEvent: context.events(),
    });
    return {
      destination: options.to,
      descriptor: root,
      format: options.format ?? 'image',
      platform: packaged.platform,
      wasm: packaged.info,
      ...(packaged.spin ? { spin: packaged.spin } : {}),
    };
  });
}
