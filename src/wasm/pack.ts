/**
 * Packaging a .wasm and writing it to any destination in one step: what `kiln package` and a build's
 * wasm images run.
 */
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import { openCache } from '../store/cache.js';
import type { OciLayout } from '../store/layout.js';
import { copyImage } from '../transport/copy.js';
import { OciDirSource } from '../transport/oci-dir.js';
import { openDestination } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { WasmInfo } from './inspect.js';
import { type PackageOptions, packageWasm, type WasmFormat } from './package.js';

export interface PackResult {
  destination: string;
  descriptor: Descriptor;
  format: WasmFormat;
  platform: Platform;
  wasm: WasmInfo;
}

/** Packages a .wasm file in one of the formats of docs/formats.md and writes it to `to` (any destination transport). */
export async function pack(options: PackageOptions & { to: string; store?: OciLayout }): Promise<PackResult> {
  // Parse the destination before any work, so a bad reference fails fast and writes nothing.
  parseLocation(options.to);
  // Opened first: a registry destination starts its handshake while the image is built.
  const destination = await openDestination(options.to);
  const store = options.store ?? (await openCache());
  let packaged: Awaited<ReturnType<typeof packageWasm>>;
  try {
    packaged = await packageWasm(store, options);
  } catch (err) {
    await destination.abort().catch(() => {});
    throw err;
  }
  await copyImage(OciDirSource.forDescriptor(store, packaged.descriptor), destination);
  return {
    destination: options.to,
    descriptor: packaged.descriptor,
    format: options.format ?? 'image',
    platform: packaged.platform,
    wasm: packaged.info,
  };
}
