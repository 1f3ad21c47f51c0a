import { KilnError } from '../errors.js';
import { type ManifestFormat, parseFormat } from '../oci/media-type-policy.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, hostPlatform, type Platform, platformMatches } from '../oci/platform.js';
import { selectManifest } from '../oci/select.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../oci/types.js';
import { MAX_CONFIG_BYTES, parseConfig, parseManifest } from '../oci/validate.js';
import { inFormat } from './format.js';
import { readSmallBlob } from './read.js';
import type { ImageDestination, ImageSource } from './types.js';

/** Progress of a copy: a blob started, advanced, done or skipped; a manifest written. */
export type CopyEvent =
  | { type: 'blob-skip'; digest: string; size: number }
  | { type: 'blob-mount'; digest: string; size: number; from: string }
  | { type: 'blob-start'; digest: string; size: number }
  | { type: 'blob-progress'; digest: string; size: number; done: number }
  | { type: 'blob-done'; digest: string; size: number }
  | { type: 'manifest'; digest: string };

/** Options of an image copy: platforms, format, jobs, signal, events. */
export interface CopyOptions {
  /** Copy only the manifest for this platform out of an index. */
  platform?: Platform;
  /**
   * Convert manifests and indexes to this family (as `skopeo copy --format`): re-serialised with its
   * media types, over the same config and layer blobs. Without it every manifest keeps its bytes.
   */
  format?: ManifestFormat;
  /** Blobs in flight at once (archives are always written one member at a time). */
  jobs?: number;
  onEvent?: (e: CopyEvent) => void;
  signal?: AbortSignal;
}

/** What a copy did: the descriptor written, blobs copied, skipped and mounted, bytes copied. */
export interface CopyResult {
  descriptor: Descriptor;
  blobsCopied: number;
  blobsSkipped: number;
  blobsMounted: number;
  bytesCopied: number;
}

const MAX_DEPTH = 4;

/** What a caller does inside a copy (not options a user gives). */
export interface CopyHooks {
  /**
   * Runs once everything is written but before the commit names the root (the tag): referrers
   * copied here are in place before the image can be pulled by its tag. A failure aborts the copy.
   */
  beforeCommit?(root: Descriptor): Promise<void>;
}

/**
 * Copies an image or index from `src` to `dst`: blobs first (skipping what exists), then
 * manifests bottom-up, then the commit that names the root. Any failure aborts the destination.
 */
export async function copyImage(
  source: ImageSource,
  dst: ImageDestination,
  options: CopyOptions = {},
  hooks: CopyHooks = {},
): Promise<CopyResult> {
  const format = parseFormat(options.format);
  const src = format ? inFormat(source, format) : source;
  const result: CopyResult = {
    descriptor: undefined as unknown as Descriptor,
    blobsCopied: 0,
    blobsSkipped: 0,
    blobsMounted: 0,
    bytesCopied: 0,
  };
  const jobs = dst.sequential ? 1 : Math.max(1, options.jobs ?? 4);
  // A staged destination (a load into an engine) has delivered nothing until its commit: what it
  // staged is reported once the commit succeeded, so a refused load prints no "copied" lines.
  const held: CopyEvent[] = [];
  const report = options.onEvent;
  const opts: CopyOptions =
    dst.staged && report
      ? {
          ...options,
          onEvent: (e) => {
            if (e.type === 'blob-start' || e.type === 'blob-progress') report(e);
            else held.push(e);
          },
        }
      : options;
  try {
    let root = await src.resolve();
    let bytes = await src.fetchManifest(root);
    let parsed = parseManifest(bytes, `manifest ${root.digest}`, root.mediaType);
    if (parsed.kind === 'index' && (opts.platform || dst.singleImage)) {
      root = opts.platform
        ? selectManifest(parsed.index, opts.platform, src.name)
        : onlyImage(parsed.index, src.name, dst.name);
      bytes = await src.fetchManifest(root);
      parsed = parseManifest(bytes, `manifest ${root.digest}`, root.mediaType);
    }
    if (dst.prepare) await dst.prepare({ root, platforms: await platformsOf(src, root, parsed) });
    // Already there (a warm copy): only the name is written, if that.
    const exists = dst.hasManifest ? await dst.hasManifest(root) : false;
    if (exists) await dst.putManifest(root, bytes);
    else await copyNode(src, dst, root, bytes, 0, jobs, opts, result);
    opts.signal?.throwIfAborted();
    await hooks.beforeCommit?.(root);
    opts.signal?.throwIfAborted();
    await dst.commit(root);
    for (const e of held) report?.(e);
    result.descriptor = root;
    return result;
  } catch (err) {
    await dst.abort().catch(() => {});
    throw err;
  }
}

/** Attestations (buildx) sit in an index as images of platform unknown/unknown; they are not one. */
function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

/**
 * The one image of an index, for a destination that holds one image: an index of several is
 * refused rather than narrowed to one platform behind the user's back.
 */
function onlyImage(index: ImageIndex, source: string, destination: string): Descriptor {
  const images = index.manifests.filter(
    (m) => (isManifestType(m.mediaType) || m.mediaType === undefined) && !isAttestation(m),
  );
  if (images.length === 1) return images[0]!;
  const platforms = images.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown'));
  const host = hostPlatform();
  const example = images.find((m) => m.platform && platformMatches(host, m.platform))?.platform;
  throw new KilnError(
    'E_AMBIGUOUS',
    `${destination} takes one image, and ${source} is an index of ${images.length}: ${platforms.join(', ') || 'none'}`,
    {
      hint: `choose one with --platform (e.g. --platform ${example ? formatPlatform(example) : (platforms[0] ?? 'linux/amd64')})`,
    },
  );
}

/** The platforms of what is copied: an index's entries, or an image's own (from its config if need be). */
async function platformsOf(
  src: ImageSource,
  root: Descriptor,
  parsed: ReturnType<typeof parseManifest>,
): Promise<Platform[]> {
  if (parsed.kind === 'index')
    return parsed.index.manifests.flatMap((m) => (m.platform && !isAttestation(m) ? [m.platform] : []));
  if (root.platform) return [root.platform];
  const platform = await configPlatform(src, parsed.manifest);
  return platform ? [platform] : [];
}

/** An image config's os/architecture; undefined for an artifact (its config is not an image config). */
async function configPlatform(src: ImageSource, manifest: ImageManifest): Promise<Platform | undefined> {
  const desc = manifest.config;
  if (desc.mediaType !== MediaType.OciConfig && desc.mediaType !== MediaType.DockerConfig) return undefined;
  const config = parseConfig(await readSmallBlob(src, desc, MAX_CONFIG_BYTES), `${src.name} config`);
  if (!config.os) return undefined;
  const platform: Platform = { os: config.os, architecture: config.architecture ?? '' };
  if (config.variant) platform.variant = config.variant;
  return platform;
}

async function copyNode(
  src: ImageSource,
  dst: ImageDestination,
  desc: Descriptor,
  bytes: Buffer,
  depth: number,
  jobs: number,
  options: CopyOptions,
  result: CopyResult,
): Promise<void> {
  if (depth > MAX_DEPTH)
    throw new KilnError('E_BAD_MANIFEST', `indexes nest deeper than ${MAX_DEPTH} levels at ${desc.digest}`);
  const parsed = parseManifest(bytes, `manifest ${desc.digest}`, desc.mediaType);
  if (parsed.kind === 'index') {
    for (const child of parsed.index.manifests) {
      if (child.digest === desc.digest)
        throw new KilnError('E_BAD_MANIFEST', `index ${desc.digest} lists itself`);
      const childBytes = await src.fetchManifest(child);
      await copyNode(src, dst, child, childBytes, depth + 1, jobs, options, result);
    }
  } else {
    const blobs = [parsed.manifest.config, ...parsed.manifest.layers];
    await eachLimit(blobs, jobs, async (blob, stop) => {
      options.signal?.throwIfAborted();
      // Same registry, other repository: a mount links the blob without a transfer (and succeeds
      // if the destination has it already), so it comes before the HEAD.
      const origin = src.blobOrigin?.(blob);
      if (origin && dst.mountBlob && (await dst.mountBlob(blob, origin))) {
        result.blobsMounted++;
        options.onEvent?.({
          type: 'blob-mount',
          digest: blob.digest,
          size: blob.size,
          from: origin.repository,
        });
        return;
      }
      if (await dst.hasBlob(blob)) {
        result.blobsSkipped++;
        options.onEvent?.({ type: 'blob-skip', digest: blob.digest, size: blob.size });
        return;
      }
      options.onEvent?.({ type: 'blob-start', digest: blob.digest, size: blob.size });
      const open = async () => counted(await src.fetchBlob(blob), blob, options.onEvent, stop);
      await dst.putBlob(blob, await open(), open);
      result.blobsCopied++;
      result.bytesCopied += blob.size;
      options.onEvent?.({ type: 'blob-done', digest: blob.digest, size: blob.size });
    });
  }
  await dst.putManifest(desc, bytes);
  options.onEvent?.({ type: 'manifest', digest: desc.digest });
}

/**
 * Reports bytes read off a blob as progress events (throttled to one per 256 KiB), and ends the
 * transfer once `stop` says another blob failed, so the copy need not wait for it to finish.
 */
async function* counted(
  content: AsyncIterable<Uint8Array>,
  blob: Descriptor,
  onEvent: ((e: CopyEvent) => void) | undefined,
  stop: AbortSignal,
): AsyncGenerator<Uint8Array> {
  let done = 0;
  let reported = 0;
  for await (const chunk of content) {
    stop.throwIfAborted();
    done += chunk.byteLength;
    if (onEvent && (done - reported >= 256 * 1024 || done === blob.size)) {
      reported = done;
      onEvent({ type: 'blob-progress', digest: blob.digest, size: blob.size, done });
    }
    yield chunk;
  }
}

/**
 * Runs `fn` over items with at most `limit` at once, in order of start; the first failure wins. After
 * it no item starts and `stop` tells those in flight to end; the promise settles only once they have,
 * so the caller's cleanup (a destination's abort) can't race writes still under way: an `oci:`
 * directory removed on failure used to be re-created by a blob that landed after the removal.
 */
export async function eachLimit<T>(
  items: T[],
  limit: number,
  fn: (item: T, stop: AbortSignal) => Promise<void>,
): Promise<void> {
  let next = 0;
  const seen = new Set<T>();
  const stop = new AbortController();
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      if (seen.has(item)) continue;
      seen.add(item);
      try {
        await fn(item, stop.signal);
      } catch (error) {
        failure ??= { error };
        // Not the error itself: a retryable one (E_NETWORK) would make an upload in flight start over.
        stop.abort(new KilnError('E_ABORTED', 'stopped: another blob failed', { cause: error }));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}
