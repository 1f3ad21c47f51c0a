/**
 * Packaging a .wasm and writing it to any destination in one step: what `kiln package` and a build's
 * wasm images run.
 */
import { type KilnContext, withContext } from '../context.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import { copyImage } from '../transport/copy.js';
import { OciDirSource } from '../transport/oci-dir.js';
import { openDestination } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { WasmInfo } from './inspect.js';
import { type PackageOptions, packageWasm, type WasmFormat } from './package.js';

/** What `pack` wrote: the image, its format and platform, the destination. */
export interface PackResult {
  destination: string;
  descriptor: Descriptor;
  format: WasmFormat;
  platform: Platform;
  wasm: WasmInfo;
}

/** Packages a .wasm file in one of the formats of docs/formats.md and writes it to `to` (any destination transport). */
export async function pack(
  options: PackageOptions & { to: string; store?: OciLayout; context?: KilnContext },
): Promise<PackResult> {
  // Parse the destination before any work, so a bad reference fails fast and writes nothing.
  parseLocation(options.to);
  return withContext(options.context, async (context) => {
    // Opened first: a registry destination starts its handshake while the image is built.
    const destination = await openDestination(options.to, { context });
    let packaged: Awaited<ReturnType<typeof packageWasm>>;
    let store: OciLayout;
    try {
      store = options.store ?? (await context.store());
      packaged = await packageWasm(store, options);
    } catch (err) {
      await destination.abort().catch(() => {});
      throw err;
    }
    await copyImage(OciDirSource.forDescriptor(store, packaged.descriptor), destination, {
      signal: context.signal,
      onEvent: context.events(),
    });
    return {
      destination: options.to,
      descriptor: packaged.descriptor,
      format: options.format ?? 'image',
      platform: packaged.platform,
      wasm: packaged.info,
    };
  });
}
