import type { Digest } from '../oci/digest.js';
import { digesting } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import type { LayerEntry } from './entries.js';
import { parallelGzip } from './gzip.js';
import { type TarOptions, tarStream } from './tar-writer.js';
import { parallelZstd } from './zstd.js';

/** How a layer's tar is compressed: gzip (every consumer reads it), zstd (smaller and faster; not every consumer reads it), or none. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

const MEDIA_TYPES: Record<LayerCompression, string> = {
  gzip: MediaType.OciLayerGzip,
  zstd: MediaType.OciLayerZstd,
  none: MediaType.OciLayer,
};

/** A layer written into a layout: its descriptor (compressed) and diff_id (uncompressed). */
export interface WrittenLayer {
  descriptor: Descriptor; // the compressed blob, as listed in a manifest
  diffId: Digest; // sha256 of the uncompressed tar, as listed in the config's rootfs
  uncompressedSize: number;
}

export interface WriteLayerOptions extends TarOptions {
  /** The compression level; default 6 for gzip, 3 for zstd. */
  level?: number;
  compression?: LayerCompression;
  annotations?: Record<string, string>;
}

/**
 * Writes entries as one layer blob into the store in a single pass: tar, diff_id hash, parallel
 * gzip or zstd, blob hash and file write all stream; no layer is ever held in memory whole.
 */
export async function writeLayer(
  store: OciLayout,
  entries: LayerEntry[],
  options: WriteLayerOptions = {},
): Promise<WrittenLayer> {
  return writeTarLayer(store, tarStream(entries, options), options);
}

/**
 * Writes a tar stream made elsewhere (already deterministic, end-of-archive blocks included) as one
 * layer blob, as writeLayer does: diff_id hash, parallel gzip, blob hash and file write in one pass.
 */
export async function writeTarLayer(
  store: OciLayout,
  tar: AsyncIterable<Uint8Array>,
  options: Omit<WriteLayerOptions, keyof TarOptions> = {},
): Promise<WrittenLayer> {
  const diff = digesting(tar);
  const compression = options.compression ?? 'gzip';
  const level = options.level;
  const blob = await store.writeBlob(
    compression === 'gzip'
      ? parallelGzip(diff.stream, { level })
      : compression === 'zstd'
        ? parallelZstd(diff.stream, { level })
        : diff.stream,
  );
  const diffId = diff.digest();
  const descriptor: Descriptor = {
    mediaType: MEDIA_TYPES[compression],
    digest: blob.digest,
    size: blob.size,
  };
  if (options.annotations && Object.keys(options.annotations).length)
    descriptor.annotations = options.annotations;
  return { descriptor, diffId, uncompressedSize: diff.size() };
}
