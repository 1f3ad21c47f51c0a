import { KilnError } from '../errors.js';
import { createdFamily, familyOf, indexInFamily, indexType } from '../oci/media-type-policy.js';
import { isManifestType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import type { ImageSource } from '../transport/types.js';
import {
  type ComposedSource,
  type ComposeResult,
  type DeriveOptions,
  derive,
  eachImage,
  type Input,
  type LoadedImage,
  mapIndexImages,
  openInput,
} from './compose.js';
import { Image, type KeyChanges, mergeEnv, mergeKeys } from './image.js';

export type { KeyChanges };

/** Options of `mutateImage`: the image, the config and annotation changes, the destination. */
export interface MutateOptions extends DeriveOptions {
  source: string;
  to: string;
  /** From an index: change only this image and write it alone. Without: change every image of an index. */
  platform?: Platform;
  /** Replaces the entrypoint; an empty array removes it. */
  entrypoint?: string[];
  /** Replaces the command; an empty array removes it. */
  cmd?: string[];
  /** Environment by name: a value replaces the variable where it stands (or is appended), null removes it. */
  env?: KeyChanges;
  labels?: KeyChanges;
  /** On the manifest of each image changed, and on the index when the source is one. */
  annotations?: KeyChanges;
  workdir?: string;
  user?: string;
}

/** What `mutateImage` wrote. */
export interface MutateResult extends ComposeResult {
  /** Images whose config or manifest changed. */
  changed: number;
}

/** Edits an image's config and annotations (every image of an index, or the one chosen) and writes it to `to`. */
export async function mutateImage(options: MutateOptions): Promise<MutateResult> {
  for (const key of Object.keys(options.env ?? {}))
    if (key === '' || key.includes('='))
      throw new KilnError('E_USAGE', `invalid environment variable name '${key}'`);
  return derive('kiln mutate', options, async (composed) => {
    const input = await openInput(composed, options.source);
    const state = { changed: 0 };
    const root = await eachImage(
      input,
      options.platform,
      (image) => mutateOne(composed, input.source, image, options, state),
      (index) => mutateIndex(composed, input, index, options, state),
    );
    // A single-image destination (docker-archive) gets the host's image of an index.
    const written = await composed.writeTo(root, options.to);
    return { destination: options.to, descriptor: written.descriptor, changed: state.changed };
  });
}

async function mutateIndex(
  composed: ComposedSource,
  { source, root }: Input,
  index: ImageIndex,
  options: MutateOptions,
  state: { changed: number },
): Promise<Descriptor> {
  const family = createdFamily(options.format);
  const each = (convert: boolean) =>
    mapIndexImages(composed, source, index, (image) =>
      mutateOne(composed, source, image, options, state, convert),
    );
  let manifests = await each(options.format !== undefined);
  const annotations = mergeKeys(index.annotations, options.annotations);
  const changed: ImageIndex = { ...index };
  if (annotations) changed.annotations = annotations;
  else delete changed.annotations;
  const same = familyOf(index.mediaType ?? root.mediaType) === family;
  if (same && encodeJson({ ...changed, manifests }).equals(encodeJson(index))) {
    composed.addBase(root, source); // nothing changed: the original bytes, so the same digest
    return root;
  }
  // A new index, in the family of what kiln creates, and so is every image it lists.
  if (manifests.some((m) => isManifestType(m.mediaType) && familyOf(m.mediaType) !== family)) {
    state.changed = 0;
    manifests = await each(true);
  }
  return composed.putJson(indexType(family), indexInFamily(changed, family, manifests));
}

async function mutateOne(
  composed: ComposedSource,
  source: ImageSource,
  image: LoadedImage,
  options: MutateOptions,
  state: { changed: number },
  /** Into the created family even when nothing else changed (the image is listed by a new index). */
  convert = false,
): Promise<Descriptor> {
  const changed = Image.of(source, image)
    .withConfig(options)
    .withAnnotations(options.annotations ?? {});
  const next = convert ? changed.withFamily(createdFamily(options.format)) : changed.created(options.format);
  if (!next.unchanged) state.changed++;
  return next.write(composed);
}

export { mergeEnv };
