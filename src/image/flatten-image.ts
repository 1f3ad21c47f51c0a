/**
 * `kiln flatten`: an image squashed into one layer holding its flattened filesystem, sorted and
 * deterministic (the diff of the image over nothing, see diff.ts). The config is kept, with one
 * diff_id and one history entry. An index is flattened image by image into a new index.
 */
import { useContext } from '../context.js';
import { KilnError } from '../errors.js';
import type { ExpansionLimits } from '../layer/tar-reader.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { openSource } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  ComposedSource,
  type ComposeResult,
  checkPlatform,
  configPlatform,
  type DeriveOptions,
  defaultCreated,
  type LoadedImage,
  loadImage,
  loadRoot,
  mapIndexImages,
  pickImage,
  writeComposed,
} from './compose.js';
import { type DiffLayer, writeTreeDiff } from './diff.js';
import type { FlatIssue, FlattenOptions } from './flatten.js';
import { Image } from './image.js';

/** Options of `flattenImage`: the image (or index), the destination. */
export interface FlattenImageOptions extends DeriveOptions {
  /** Any source transport. */
  source: string;
  to: string;
  /** From an index: flatten only this image and write it alone. Without: every image of the index. */
  platform?: Platform;
  /** RFC 3339 time of the history entry; default SOURCE_DATE_EPOCH, else the epoch. */
  created?: string;
  /** Gzip bomb limits; default from the environment. */
  limits?: Partial<ExpansionLimits>;
  onLayer?: FlattenOptions['onLayer'];
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
  parseLocation(options.to); // a bad destination fails before any work
  const created = options.created ?? defaultCreated();
  if (Number.isNaN(Date.parse(created)))
    throw new KilnError('E_USAGE', `--created must be an RFC 3339 time, got '${created}'`);
  const { ctx, release } = useContext(options.context);
  const store = options.store ?? (await ctx.store());
  const composed = new ComposedSource('kiln flatten', store, ctx);
  try {
    const source = composed.addSource(await openSource(options.source, { context: ctx }));
    const { root, bytes, parsed } = await loadRoot(source);
    const images: FlattenedImage[] = [];
    const one = (image: LoadedImage) => flattenOne(composed, source, image, created, options, images);
    let descriptor: Descriptor;
    if (parsed.kind === 'manifest') {
      const image = await loadImage(source, root, bytes);
      checkPlatform(image, options.platform, source.name);
      descriptor = await one(image);
    } else if (options.platform) {
      descriptor = await one(await loadImage(source, pickImage(parsed.index, options.platform, source.name)));
    } else {
      const manifests = await mapIndexImages(composed, source, parsed.index, one);
      const index: ImageIndex = { ...parsed.index, manifests };
      descriptor = await composed.putJson(parsed.index.mediaType ?? root.mediaType, index);
    }
    composed.setRoot(descriptor);
    const written = await writeComposed(composed, options.to);
    return { destination: options.to, descriptor: written.descriptor, images };
  } finally {
    await composed.close();
    release();
  }
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
