/**
 * The operations behind the commands: pack, copy, inspect, digest, tags. Kept apart from index.ts
 * so a command loads only these and what they use, not the whole library (start-up time).
 */
import { KilnError } from './errors.js';
import { type InspectResult, inspectSource } from './image/inspect.js';
import type { Platform } from './oci/platform.js';
import type { Descriptor } from './oci/types.js';
import { type CopyOptions, type CopyResult, copyImage } from './transport/copy.js';
import { currentRegistryOptions, type OpenOptions, openDestination, openSource } from './transport/open.js';
import { parseLocation } from './transport/parse.js';

export { type PackResult, pack } from './wasm/pack.js';

export interface CopyCommandOptions extends CopyOptions {
  /** How to open the source and the destination (credentials of each side, say). */
  source?: OpenOptions;
  destination?: OpenOptions;
}

/** Copies an image or index between any two transports. */
export async function copy(
  src: string | import('./transport/types.js').ImageSource,
  dst: string,
  options: CopyCommandOptions = {},
): Promise<CopyResult> {
  // The copy's signal reaches the transports too, so an abort stops requests in flight.
  const withSignal = (o: OpenOptions | undefined): OpenOptions | undefined =>
    options.signal
      ? { ...o, signal: o?.signal ?? options.signal, registry: o?.registry ?? currentRegistryOptions() }
      : o;
  const source = typeof src === 'string' ? await openSource(src, withSignal(options.source)) : src;
  try {
    const destination = await openDestination(dst, withSignal(options.destination));
    return await copyImage(source, destination, options);
  } finally {
    await source.close();
  }
}

/** The manifest (or index), config and layers of an image. */
export async function inspect(ref: string, options: { platform?: Platform } = {}): Promise<InspectResult> {
  const source = await openSource(ref);
  try {
    return await inspectSource(source, options);
  } finally {
    await source.close();
  }
}

/** The digest of what a reference names (the platform's manifest with `platform`), as `crane digest`. */
export async function digest(ref: string, options: { platform?: Platform } = {}): Promise<Descriptor> {
  const source = await openSource(ref);
  try {
    const root = await source.resolve();
    if (!options.platform) return root;
    const { selectManifest } = await import('./image/resolve.js');
    const { parseManifest } = await import('./oci/validate.js');
    const parsed = parseManifest(await source.fetchManifest(root), `manifest ${root.digest}`, root.mediaType);
    if (parsed.kind !== 'index') return root;
    return selectManifest(parsed.index, options.platform, ref);
  } finally {
    await source.close();
  }
}

/** The tags of a registry repository, or of an OCI layout (`oci:DIR`). */
export async function listTags(repo: string): Promise<string[]> {
  const loc = parseLocation(repo);
  if (loc.transport === 'oci') {
    const { OciLayout: Layout } = await import('./store/layout.js');
    return (await Layout.open(loc.path)).tags();
  }
  if (loc.transport !== 'registry')
    throw new KilnError(
      'E_UNSUPPORTED',
      `kiln tags reads registries and oci: layouts, not ${loc.transport}:`,
    );
  const last = repo.slice(repo.lastIndexOf('/') + 1);
  if (last.includes(':') || last.includes('@'))
    throw new KilnError('E_USAGE', `kiln tags takes a repository without tag or digest, got ${repo}`, {
      hint: `kiln tags ${loc.ref.registry}/${loc.ref.repository}`,
    });
  const { openRepository } = await import('./transport/registry.js');
  return openRepository(loc.ref, currentRegistryOptions()).listTags();
}
