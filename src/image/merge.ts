/**
 * `kiln merge BASE SRC...`: BuildKit's MergeOp on images. The result's layers are BASE's, then each
 * SRC's in order, as they are (the same blobs, never repacked), so later layers win where paths
 * meet and a whiteout in a later image deletes a file of an earlier one.
 */
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { createdFamily, type Family, indexType } from '../oci/media-type-policy.js';
import { layerCompression } from '../oci/media-types.js';
import { formatPlatform, isWasmPlatform, type Platform, platformMatches } from '../oci/platform.js';
import { formatReference } from '../oci/reference.js';
import { describePlatforms, indexImages } from '../oci/select.js';
import type { Descriptor, HistoryEntry, ImageIndex } from '../oci/types.js';
import { parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  type ComposedSource,
  type CopiedResult,
  configPlatform,
  copied,
  type DeriveOptions,
  defaultCreated,
  derive,
  type Input,
  imageOf,
  type LoadedImage,
  loadImage,
  openInput,
  platformKey,
} from './compose.js';
import { Image, type ImageLayer, type KeyChanges } from './image.js';

export const BASE_NAME_ANNOTATION = 'org.opencontainers.image.base.name';
export const BASE_DIGEST_ANNOTATION = 'org.opencontainers.image.base.digest';

/**
 * Whose container config (Entrypoint, Cmd, Env, WorkingDir, User, Labels, ...) the result gets:
 * - `auto`: the last input, SRCs from the end back to BASE, that has an Entrypoint or a Cmd;
 * - `base`: BASE's; `last`: the last SRC's.
 */
export type ConfigFrom = 'auto' | 'base' | 'last';
export const CONFIG_FROM: readonly ConfigFrom[] = ['auto', 'base', 'last'];

/** Options of `mergeImages`: the images whose layers are stacked, the config to keep, the destination. */
export interface MergeOptions extends DeriveOptions {
  /** The bottom image (any source transport). */
  base: string;
  /** Images whose layers go on top of BASE's, in order. */
  sources: string[];
  to: string;
  /** Chooses the image out of index inputs. Without it, indexes are merged per platform (see mergeImages). */
  platform?: Platform;
  /** Default `auto`. */
  configFrom?: ConfigFrom;
}

/** One image `mergeImages` wrote (one per platform). */
export interface MergedImage {
  platform: Platform;
  descriptor: Descriptor;
  layers: number;
  /** The input whose container config the image got. */
  configFrom: string;
}

/** What `mergeImages` wrote. */
export interface MergeResult extends CopiedResult {
  /** One per platform written. */
  images: MergedImage[];
}

/** One input of a merge or a rebase, as given and as read. */
export interface InputImage {
  name: string;
  source: ImageSource;
  image: LoadedImage;
}

/**
 * Merges images. Inputs are single images of one platform, or indexes: `platform` picks one image
 * out of each index; without it, a single image among the inputs sets the platform, and when every
 * input is an index they are merged platform by platform (they must list the same platforms) into
 * a new index.
 */
export async function mergeImages(options: MergeOptions): Promise<MergeResult> {
  if (options.sources.length === 0)
    throw new KilnError('E_USAGE', 'merge needs at least one image after BASE');
  const configFrom = options.configFrom ?? 'auto';
  if (!CONFIG_FROM.includes(configFrom))
    throw new KilnError('E_USAGE', `--config-from takes ${CONFIG_FROM.join(', ')}, got '${configFrom}'`);
  const family = createdFamily(options.format);
  return derive('kiln merge', options, async (composed) => {
    const roots: Input[] = [];
    for (const name of [options.base, ...options.sources]) roots.push(await openInput(composed, name));
    const images: MergedImage[] = [];
    let descriptor: Descriptor;
    if (!options.platform && roots.every((r) => r.parsed.kind === 'index')) {
      descriptor = await mergeIndexes(composed, roots, configFrom, images, family);
    } else {
      const inputs = await pickInputs(roots, options.platform);
      descriptor = await mergeOne(composed, inputs, configFrom, images, family);
    }
    return { ...copied(await composed.writeTo(descriptor, options.to), options.to), images };
  });
}

/** One image per input: single images first, so one of them can set the platform for the indexes. */
async function pickInputs(roots: Input[], platform: Platform | undefined): Promise<InputImage[]> {
  const loaded = new Map<Input, LoadedImage>();
  let want = platform;
  for (const r of roots) {
    if (r.parsed.kind !== 'manifest') continue;
    const image = await imageOf(r, want);
    want ??= configPlatform(image.config);
    loaded.set(r, image);
  }
  for (const r of roots) if (r.parsed.kind === 'index') loaded.set(r, await imageOf(r, want));
  return roots.map((r) => ({ name: r.name, source: r.source, image: loaded.get(r)! }));
}

/** Every input an index of the same platforms: one merged image per platform, in BASE's order. */
async function mergeIndexes(
  composed: ComposedSource,
  roots: Input[],
  configFrom: ConfigFrom,
  images: MergedImage[],
  family: Family,
): Promise<Descriptor> {
  const lists = roots.map((r) => {
    const entries = indexImages((r.parsed as { index: ImageIndex }).index);
    if (entries.some((e) => !e.platform))
      throw new KilnError('E_AMBIGUOUS', `${r.name} lists an image without a platform`, {
        hint: 'choose the images to merge with --platform',
      });
    return entries;
  });
  const keys = (entries: Descriptor[]) => entries.map((e) => platformKey(e.platform!)).sort();
  const want = keys(lists[0]!);
  for (const [i, entries] of lists.entries()) {
    const have = keys(entries);
    if (have.length !== new Set(have).size)
      throw new KilnError('E_AMBIGUOUS', `${roots[i]!.name} lists two images for one platform`, {
        hint: 'choose the images to merge with --platform',
      });
    if (JSON.stringify(have) !== JSON.stringify(want))
      throw new KilnError(
        'E_NO_MATCHING_PLATFORM',
        `${roots[i]!.name} has images for ${describePlatforms(entries)}, ${roots[0]!.name} for ${describePlatforms(lists[0]!)}`,
        { hint: 'indexes are merged platform by platform; merge one platform with --platform' },
      );
  }
  const manifests: Descriptor[] = [];
  for (const entry of lists[0]!) {
    const key = platformKey(entry.platform!);
    const inputs: InputImage[] = [];
    for (const [i, r] of roots.entries()) {
      const child = lists[i]!.find((e) => platformKey(e.platform!) === key)!;
      inputs.push({ name: r.name, source: r.source, image: await loadImage(r.source, child) });
    }
    const merged = await mergeOne(composed, inputs, configFrom, images, family);
    manifests.push({
      mediaType: merged.mediaType,
      digest: merged.digest,
      size: merged.size,
      platform: entry.platform!,
    });
  }
  // A new index: the base index's annotations and attestations describe the base, not the merge.
  const index: ImageIndex = { schemaVersion: 2, mediaType: indexType(family), manifests };
  return composed.putJson(index.mediaType!, index);
}

async function mergeOne(
  composed: ComposedSource,
  inputs: InputImage[],
  configFrom: ConfigFrom,
  images: MergedImage[],
  family: Family,
): Promise<Descriptor> {
  const base = inputs[0]!;
  const platform = samePlatform(inputs);
  for (const input of inputs) {
    checkLayers(input);
    for (const layer of input.image.manifest.layers) composed.addBase(layer, input.source);
  }
  const chosen = chooseConfig(inputs, configFrom);
  const image = restacked(
    Image.of(base.source, base.image).withContainerConfig(chosen.image.config.config),
    base,
    inputs.flatMap((i) => layersOf(i)),
    inputs.flatMap((i) => imageHistory(i.image, 'kiln merge')),
    family,
  );
  const descriptor = await image.write(composed);
  images.push({ platform, descriptor, layers: image.layers.length, configFrom: chosen.name });
  return descriptor;
}

/**
 * `image` with its filesystem replaced by `layers` (one history entry each), naming `base` as the
 * image it is on, in `family`: what merge and rebase write.
 */
export function restacked(
  image: Image,
  base: InputImage,
  layers: ImageLayer[],
  history: HistoryEntry[],
  family: Family,
): Image {
  return image.withLayers(layers, history).withAnnotations(baseAnnotations(base)).withFamily(family);
}

function chooseConfig(inputs: InputImage[], configFrom: ConfigFrom): InputImage {
  if (configFrom === 'base') return inputs[0]!;
  if (configFrom === 'last') return inputs[inputs.length - 1]!;
  const runs = (i: InputImage) => {
    const c = i.image.config.config;
    return (c?.Entrypoint?.length ?? 0) > 0 || (c?.Cmd?.length ?? 0) > 0;
  };
  return [...inputs].reverse().find(runs) ?? inputs[0]!;
}

/** The inputs' common platform; a wasm image is refused (one module per image: a merge makes no sense). */
export function samePlatform(inputs: InputImage[]): Platform {
  const [first, ...rest] = inputs;
  const platform = configPlatform(first!.image.config)!;
  for (const input of inputs) {
    const have = configPlatform(input.image.config)!;
    if (isWasmPlatform(have))
      throw new KilnError('E_UNSUPPORTED', `${input.name} is a WebAssembly image (${formatPlatform(have)})`, {
        hint: 'only container filesystems can be merged or rebased; a wasm image holds one module',
      });
  }
  for (const input of rest) {
    const have = configPlatform(input.image.config)!;
    if (!platformMatches(platform, have) || !platformMatches(have, platform))
      throw new KilnError(
        'E_NO_MATCHING_PLATFORM',
        `${input.name} is an image for ${formatPlatform(have)}, ${first!.name} for ${formatPlatform(platform)}`,
        { hint: 'every image must be for the same platform; pick one out of an index with --platform' },
      );
  }
  return platform;
}

/** Every layer a filesystem tar (any compression), as many as the config has diff_ids. */
export function checkLayers(input: InputImage): void {
  const { manifest, config } = input.image;
  for (const layer of manifest.layers)
    if (layerCompression(layer.mediaType) === undefined)
      throw new KilnError('E_UNSUPPORTED', `${input.name} has a layer of type ${layer.mediaType}`, {
        hint: 'only filesystem layers (tar, tar+gzip, tar+zstd) can be merged or rebased',
      });
  const diffIds = config.rootfs?.diff_ids;
  if (!Array.isArray(diffIds) || diffIds.length !== manifest.layers.length)
    throw new KilnError(
      'E_BAD_CONFIG',
      `${input.name} has ${manifest.layers.length} layers but ${Array.isArray(diffIds) ? diffIds.length : 'no'} diff_ids`,
    );
}

/** An input's layers as image-value layers, served from its source. */
export function layersOf(input: InputImage): ImageLayer[] {
  const diffIds = input.image.config.rootfs.diff_ids;
  return input.image.manifest.layers.map((descriptor, n) => ({
    descriptor,
    diffId: diffIds[n] as Digest,
    source: input.source,
  }));
}

/**
 * The annotations naming the base an image was made on: base.digest always, base.name only for a
 * registry base (a local path is no reference another machine could pull).
 */
export function baseAnnotations(base: InputImage): KeyChanges {
  const location = parseLocation(base.name);
  return {
    [BASE_NAME_ANNOTATION]: location.transport === 'registry' ? formatReference(location.ref) : null,
    [BASE_DIGEST_ANNOTATION]: base.image.descriptor.digest,
  };
}

/**
 * An image's history, one non-empty entry per layer. Images without history (or with a history
 * that does not match their layers) get one entry per layer, so the merged history still lines up.
 */
export function imageHistory(image: LoadedImage, createdBy: string): HistoryEntry[] {
  const history = Array.isArray(image.config.history) ? image.config.history : [];
  if (nonEmpty(history) === image.manifest.layers.length) return structuredClone(history);
  const created = defaultCreated();
  return image.manifest.layers.map(() => ({ created, created_by: createdBy }));
}

export function nonEmpty(history: HistoryEntry[]): number {
  return history.filter((h) => !h.empty_layer).length;
}
