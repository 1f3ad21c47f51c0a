/**
 * `kiln check FILE.wasm`: what each consumer would do with the file packaged in a format, before
 * anything is pushed. The image is packaged into kiln's store (as `pack` would) and checked there.
 */
import { type CheckResult, checkSource, consumersOf } from '../check/check.js';
import { type KilnContext, withContext } from '../context.js';
import { OciDirSource } from '../transport/oci-dir.js';
import { type PackageOptions, packageWasm } from './package.js';

/** Options of `checkWasmFile`: the packaging options, and the consumers to check for (all when none). */
export interface CheckWasmFileOptions extends PackageOptions {
  for?: readonly string[];
  context?: KilnContext;
}

/** Packages `file` (default format `image`) into the store and checks the image for each consumer. */
export async function checkWasmFile(
  options: CheckWasmFileOptions,
): Promise<CheckResult & { format: string }> {
  const names = consumersOf(options.for);
  return withContext(options.context, async (context) => {
    const store = await context.store();
    const packaged = await packageWasm(store, options);
    const source = OciDirSource.forDescriptor(store, packaged.descriptor);
    try {
      const result = await checkSource(source, names);
      return { ...result, name: options.file, format: options.format ?? 'image' };
    } finally {
      await source.close();
    }
  });
}
