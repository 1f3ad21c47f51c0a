/**
 * `kiln build`: compile (or take from the cache), package the .wasm in the image format kiln.yaml
 * or the flags ask for, and write it to every destination. Packaging is deterministic, so an
 * unchanged project writes the same digests (and a registry that has them is only asked a HEAD).
 */
import { KilnError } from '../errors.js';
import { isWasmPlatform, type Platform } from '../oci/platform.js';
import type { PackResult } from '../operations.js';
import type { WasmFormat } from '../wasm/package.js';
import { type CompileOptions, type CompileResult, compile } from './compile.js';

export interface BuildOptions extends CompileOptions {
  /** Destinations; default kiln.yaml's `to`. */
  to?: string[];
  format?: WasmFormat;
  platform?: Platform;
}

export interface BuildResult {
  compile: CompileResult;
  images: PackResult[];
}

export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const compiled = await compile(options);
  const p = compiled.project.project;
  const to = options.to?.length ? options.to : (p.to ?? []);
  if (to.length === 0)
    throw new KilnError('E_USAGE', 'kiln build needs a destination', {
      hint: 'pass --to REGISTRY/REPO:TAG (or oci:DIR:TAG), or set `to:` in kiln.yaml; `kiln compile` only makes the .wasm',
    });
  const platforms = options.platform ? [options.platform] : (p.image?.platforms ?? []);
  if (platforms.length > 1 || platforms.some((x) => !isWasmPlatform(x)))
    throw new KilnError(
      'E_UNSUPPORTED',
      'kiln build makes one WebAssembly image for now (os wasip1/wasip2/wasi, arch wasm)',
      {
        hint: 'native and multi-platform builds are planned; use `kiln index create` to combine images meanwhile',
      },
    );
  const { pack } = await import('../operations.js');
  const images: PackResult[] = [];
  for (const dest of to) {
    images.push(
      await pack({
        file: compiled.output,
        to: dest,
        format: options.format ?? (p.image?.format as WasmFormat | undefined) ?? 'image',
        ...(p.image?.name ? { name: p.image.name } : {}),
        ...(platforms[0] ? { platform: platforms[0] } : {}),
        annotations: p.image?.annotations ?? {},
        labels: p.image?.labels ?? {},
      }),
    );
  }
  return { compile: compiled, images };
}
