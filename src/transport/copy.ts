import { KilnError } from '../errors.js';
import type { Platform } from '../oci/platform.js';
import { selectManifest } from '../oci/select.js';
import type { Descriptor } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { ImageDestination, ImageSource } from './types.js';

export type CopyEvent =
  | { type: 'blob-skip'; digest: string; size: number }
  | { type: 'blob-mount'; digest: string; size: number; from: string }
  | { type: 'blob-start'; digest: string; size: number }
  | { type: 'blob-progress'; digest: string; size: number; done: number }
  | { type: 'blob-done'; digest: string; size: number }
  | { type: 'manifest'; digest: string };

export interface CopyOptions {
  /** Copy only the manifest for this platform out of an index. */
  platform?: Platform;
  /** Blobs in flight at once (archives are always written one member at a time). */
  jobs?: number;
  onEvent?: (e: CopyEvent) => void;
  signal?: AbortSignal;
}

export interface CopyResult {
  descriptor: Descriptor;
  blobsCopied: number;
  blobsSkipped: number;
  blobsMounted: number;
  bytesCopied: number;
}

const MAX_DEPTH = 4;

/**
 * Copies an image or index from `src` to `dst`: blobs first (skipping what exists), then
 * manifests bottom-up, then the commit that names the root. Any failure aborts the destination.
 */
export async function copyImage(
  src: ImageSource,
  dst: ImageDestination,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const result: CopyResult = {
    descriptor: undefined as unknown as Descriptor,
    blobsCopied: 0,
    blobsSkipped: 0,
    blobsMounted: 0,
    bytesCopied: 0,
  };
  const jobs = dst.sequential ? 1 : Math.max(1, options.jobs ?? 4);
  try {
    let root = await src.resolve();
    let bytes = await src.fetchManifest(root);
    let parsed = parseManifest(bytes, `manifest ${root.digest}`, root.mediaType);
    if (parsed.kind === 'index' && (options.platform || dst.singleImage)) {
      root = selectManifest(parsed.index, options.platform, src.name);
      bytes = await src.fetchManifest(root);
      parsed = parseManifest(bytes, `manifest ${root.digest}`, root.mediaType);
    }
    // Already there (a warm copy): only the name is written, if that.
    const exists = dst.hasManifest ? await dst.hasManifest(root) : false;
    if (exists) await dst.putManifest(root, bytes);
    else await copyNode(src, dst, root, bytes, 0, jobs, options, result);
    options.signal?.throwIfAborted();
    await dst.commit(root);
    result.descriptor = root;
    return result;
  } catch (err) {
    await dst.abort().catch(() => {});
    throw err;
  }
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
