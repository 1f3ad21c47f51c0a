/**
 * The operations behind the commands: pack, copy, inspect, digest, tags. Kept apart from index.ts
 * so a command loads only these and what they use, not the whole library (start-up time).
 */
import { type KilnContext, withContext } from './context.js';
import { type InspectResult, inspectSource } from './image/inspect.js';
import type { Platform } from './oci/platform.js';
import type { Descriptor } from './oci/types.js';
import { type CopyOptions, type CopyResult, copyImage } from './transport/copy.js';
import { type OpenOptions, openDestination, openSource, openTags } from './transport/open.js';

export { type PackResult, pack } from './wasm/pack.js';

/** What every operation may be given: the context it runs with (see KilnContext). */
export interface ContextOption {
  /** Registry settings and connections, the store, an abort signal, an event sink; default: one for this call. */
  context?: KilnContext;
}

/** Options of `copy`: those of an image copy, a context, and options of opening the source and destination. */
export interface CopyCommandOptions extends CopyOptions, ContextOption {
  /** How to open the source and the destination (credentials of each side, say), on top of the context. */
  source?: Omit<OpenOptions, 'context'>;
  destination?: Omit<OpenOptions, 'context'>;
}

/** Copies an image or index between any two transports. */
export async function copy(
  src: string | import('./transport/types.js').ImageSource,
  dst: string,
  options: CopyCommandOptions = {},
): Promise<CopyResult> {
  return withContext(options.context, async (context) => {
    // The copy's signal reaches the transports too, so an abort stops requests in flight.
    const signal = context.signalWith(options.signal);
    const open = (o: OpenOptions | undefined): OpenOptions => ({
      ...o,
      context,
      signal: o?.signal ?? signal,
    });
    const source = typeof src === 'string' ? await openSource(src, open(options.source)) : src;
    try {
      const destination = await openDestination(dst, open(options.destination));
      return await copyImage(source, destination, {
        ...options,
        signal,
        onEvent: context.events(options.onEvent),
      });
    } finally {
      await source.close();
    }
  });
}

/** The manifest (or index), config and layers of an image. */
export async function inspect(
  ref: string,
  options: { platform?: Platform } & ContextOption = {},
): Promise<InspectResult> {
  return withContext(options.context, async (context) => {
    const source = await openSource(ref, { context });
    try {
      return await inspectSource(source, options);
    } finally {
      await source.close();
    }
  });
}

/** The digest of what a reference names (the platform's manifest with `platform`), as `crane digest`. */
export async function digest(
  ref: string,
  options: { platform?: Platform } & ContextOption = {},
): Promise<Descriptor> {
  return withContext(options.context, async (context) => {
    const source = await openSource(ref, { context });
    try {
      const root = await source.resolve();
      if (!options.platform) return root;
      const { selectManifest } = await import('./image/resolve.js');
      const { parseManifest } = await import('./oci/validate.js');
      const parsed = parseManifest(
        await source.fetchManifest(root),
        `manifest ${root.digest}`,
        root.mediaType,
      );
      if (parsed.kind !== 'index') return root;
      return selectManifest(parsed.index, options.platform, ref);
    } finally {
      await source.close();
    }
  });
}

/** The tags of a registry repository, or of an OCI layout (`oci:DIR`). */
export async function listTags(repo: string, options: ContextOption = {}): Promise<string[]> {
  return openTags(repo, options.context ? { context: options.context } : {});
}
