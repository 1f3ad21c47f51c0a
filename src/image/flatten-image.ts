import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { ImageSource } from '../transport/types.js';
import {
  type ComposedSource,
  type ComposeResult,
  checkCreated,
  configPlatform,
  type DeriveOptions,
  derive,
  eachImage,
  type LoadedImage,
  mapIndexImages,
  openInput,
} from './compose.js';
import { type DiffLayer, type TreeLayerOptions, writeTreeDiff } from './diff.js';
import type { FlatIssue } from './flatten.js';
import { Image } from './image.js';

/** Options of `flattenImage`: the image (or index), the destination. */
export interface FlattenImageOptions extends DeriveOptions, TreeLayerOptions {
  /** Any source transport. */
  source: string;
  to: string;
  /** From an index: flatten only this image and write it alone. Without: every image of the index. */
  platform?: Platform;
}

/** One image `flattenImage` squashed into a single layer. */
export interface FlattenedImage {
  /** The image manifest flattened, and the one written in its place. */
  from: string;
  descriptor: Descriptor;
  platform?: Platform;
  /** Layers before; after, always one. */
  layersBefore: number;
  layer: DiffLayer;
  /** Entries in the new layer. */
  entries: number;
  /** Entries left out (unsafe paths, broken hard links), as `kiln export` reports them. */
  issues: FlatIssue[];
}

/** What `flattenImage` wrote: the image, or each image of an index. */
export interface FlattenImageResult extends ComposeResult {
  images: FlattenedImage[];
}

/** Squashes an image (every image of an index, or the one chosen) to one layer and writes it to `to`. */
export async function flattenImage(options: FlattenImageOptions): Promise<FlattenImageResult> {
  const created = checkCreated(options.created);
  return derive('kiln flatten', options, async (composed) => {
    const input = await openInput(composed, options.source);
    const images: FlattenedImage[] = [];
    const one = (image: LoadedImage) => flattenOne(composed, input.source, image, created, options, images);
    const root = await eachImage(input, options.platform, one, async (index) => {
      const manifests = await mapIndexImages(composed, input.source, index, one);
      return composed.putJson(index.mediaType ?? input.root.mediaType, { ...index, manifests });
    });
    const written = await composed.writeTo(root, options.to);
    return { destination: options.to, descriptor: written.descriptor, images };
  });
}

async function flattenOne(
  composed: ComposedSource,
  source: ImageSource,
  image: LoadedImage,
  created: string,
  options: FlattenImageOptions,
  out: FlattenedImage[],
): Promise<Descriptor> {
  const layers = image.manifest.layers;
  const tree = await writeTreeDiff(
    { upper: { source, layers }, limits: options.limits, onLayer: options.onLayer },
    { store: composed.store },
  );
  // A new manifest: OCI unless Docker v2 is asked for (a Docker base's types renamed, same blobs).
  const next = Image.of(source, image)
    .withLayers(
      [
        {
          descriptor: { mediaType: MediaType.OciLayerGzip, digest: tree.digest, size: tree.size },
          diffId: tree.diffId,
        },
      ],
      [{ created, created_by: 'kiln flatten' }],
    )
    .created(options.format);
  const layer = next.layers[0]!.descriptor;
  const descriptor = await next.write(composed);
  const platform = configPlatform(image.config);
  out.push({
    from: image.descriptor.digest,
    descriptor,
    ...(platform ? { platform } : {}),
    layersBefore: layers.length,
    layer: { descriptor: layer, diffId: tree.diffId },
    entries: tree.entries,
    issues: tree.issues,
  });
  return descriptor;
}
