/**
 * `kiln rebase SRC --old-base OLD --new-base NEW`, like `crane rebase`: SRC's layers that came from
 * OLD are swapped for NEW's; SRC's own layers are kept as they are (the same blobs).
 */
import { isDeepStrictEqual } from 'node:util';
import { KilnError } from '../errors.js';
import { createdFamily, type Family, indexInFamily, indexType } from '../oci/media-type-policy.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import { indexImages } from '../oci/select.js';
import type { Descriptor, HistoryEntry, ImageIndex } from '../oci/types.js';
import {
  type ComposedSource,
  type CopiedResult,
  configPlatform,
  copied,
  type DeriveOptions,
  derive,
  eachImage,
  type Input,
  imageOf,
  type LoadedImage,
  loadImage,
  openInput,
  replacedEntry,
} from './compose.js';
import { Image } from './image.js';
import {
  checkLayers,
  type InputImage,
  imageHistory,
  layersOf,
  nonEmpty,
  restacked,
  samePlatform,
} from './merge.js';

/** Options of `rebaseImage`: the image, its old base and the new one, the destination. */
export interface RebaseOptions extends DeriveOptions {
  /** The image to rebase (any source transport). */
  source: string;
  /** The base SRC was built on: its layers must be the first of SRC's. */
  oldBase: string;
  /** The base to put under SRC's own layers instead. */
  newBase: string;
  to: string;
  /** From an index SRC: rebase only this image and write it alone. Without: every image of the index. */
  platform?: Platform;
}

/** One image `rebaseImage` wrote (one per platform). */
export interface RebasedImage {
  platform: Platform;
  descriptor: Descriptor;
  /** OLD's layers taken away, NEW's put in their place, SRC's own kept. */
  removed: number;
  added: number;
  kept: number;
}

/** What `rebaseImage` wrote. */
export interface RebaseResult extends CopiedResult {
  images: RebasedImage[];
}

/** Rebases SRC (every image of an index, or the one `platform` names) and writes it to `to`; nothing is written when a check fails. */
export async function rebaseImage(options: RebaseOptions): Promise<RebaseResult> {
  const family = createdFamily(options.format);
  return derive('kiln rebase', options, async (composed) => {
    const src = await openInput(composed, options.source);
    const oldBase = await openInput(composed, options.oldBase);
    const newBase = await openInput(composed, options.newBase);
    const images: RebasedImage[] = [];
    // One image: SRC itself (checked against --platform), or the one --platform picks from it.
    const descriptor = await eachImage(
      src,
      options.platform,
      (image) => rebaseOne(composed, { ...src, image }, oldBase, newBase, images, family),
      (index) => rebaseIndex(composed, src, index, oldBase, newBase, images, family),
    );
    return { ...copied(await composed.writeTo(descriptor, options.to), options.to), images };
  });
}

async function rebaseIndex(
  composed: ComposedSource,
  src: Input,
  index: ImageIndex,
  oldBase: Input,
  newBase: Input,
  images: RebasedImage[],
  family: Family,
): Promise<Descriptor> {
  const manifests: Descriptor[] = [];
  // Attestations (unknown/unknown) are left out: they describe the images as they were.
  for (const child of indexImages(index)) {
    const image = await loadImage(src.source, child);
    const next = await rebaseOne(composed, { ...src, image }, oldBase, newBase, images, family);
    manifests.push(replacedEntry(child, next));
  }
  const next = indexInFamily({ ...index, mediaType: indexType(family) }, family, manifests);
  return composed.putJson(indexType(family), next);
}

/** The image of a base for `platform`: a single image must be for it, an index must list it. */
async function baseFor(base: Input, platform: Platform): Promise<InputImage> {
  const image =
    base.parsed.kind === 'index'
      ? await imageOf(base, platform)
      : await loadImage(base.source, base.root, base.bytes); // samePlatform says what does not match
  return { ...base, image };
}

async function rebaseOne(
  composed: ComposedSource,
  src: InputImage,
  oldOpened: Input,
  newOpened: Input,
  images: RebasedImage[],
  family: Family,
): Promise<Descriptor> {
  const platform = configPlatform(src.image.config)!;
  const oldBase = await baseFor(oldOpened, platform);
  const newBase = await baseFor(newOpened, platform);
  samePlatform([src, oldBase, newBase]);
  for (const input of [src, oldBase, newBase]) checkLayers(input);
  checkPrefix(src, oldBase);

  const cut = oldBase.image.manifest.layers.length;
  const own = layersOf(src).slice(cut);
  const image = restacked(
    Image.of(src.source, src.image),
    newBase,
    [...layersOf(newBase), ...own],
    [...imageHistory(newBase.image, 'kiln rebase'), ...ownHistory(src.image, oldBase.image)],
    family,
  );
  const descriptor = await image.write(composed);
  const added = newBase.image.manifest.layers.length;
  images.push({ platform, descriptor, removed: cut, added, kept: own.length });
  return descriptor;
}

/** SRC's diff_ids must begin with OLD's: else SRC was not built on OLD, and a rebase would drop or keep the wrong files. */
function checkPrefix(src: InputImage, oldBase: InputImage): void {
  const have = src.image.config.rootfs.diff_ids;
  const old = oldBase.image.config.rootfs.diff_ids;
  // diff_ids (the uncompressed layers' digests) are what is compared: the config shows them, not
  // the manifest's layer list `kiln inspect` prints (compressed blob digests).
  const platform = configPlatform(src.image.config);
  const hint = `give as --old-base the image ${src.name} was built on; compare their rootfs.diff_ids: kiln inspect IMAGE --config${platform ? ` --platform ${formatPlatform(platform)}` : ''}`;
  if (old.length > have.length)
    throw new KilnError(
      'E_BASE_MISMATCH',
      `${src.name} is not built on ${oldBase.name}: the old base has ${old.length} layers, the image only ${have.length}`,
      { hint },
    );
  const i = old.findIndex((d, n) => d !== have[n]);
  if (i >= 0)
    throw new KilnError(
      'E_BASE_MISMATCH',
      `${src.name} is not built on ${oldBase.name}: its layer ${i + 1} has diff_id ${have[i]}, the old base's ${old[i]}`,
      { hint },
    );
}

/**
 * SRC's history after OLD's part. An image built FROM OLD starts with OLD's whole history (its
 * empty_layer entries, ENV or CMD, included); otherwise the cut is after OLD's last layer.
 */
function ownHistory(src: LoadedImage, oldBase: LoadedImage): HistoryEntry[] {
  const history = imageHistory(src, 'kiln rebase');
  const old = oldBase.config.history ?? [];
  const layers = oldBase.manifest.layers.length;
  if (
    old.length > 0 &&
    old.length <= history.length &&
    nonEmpty(old) === layers &&
    old.every((h, i) => isDeepStrictEqual(h, history[i]))
  )
    return history.slice(old.length);
  let seen = 0;
  let i = 0;
  while (i < history.length && seen < layers) {
    if (!history[i]!.empty_layer) seen++;
    i++;
  }
  return history.slice(i);
}
