import { KilnError } from '../errors.js';
import type { Platform } from '../oci/platform.js';
import type { Annotations, ContainerConfig, Descriptor, ImageConfig, ImageIndex } from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import { openCache } from '../store/cache.js';
import type { OciLayout } from '../store/layout.js';
import { openSource } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import {
  ComposedSource,
  type ComposeResult,
  checkPlatform,
  type LoadedImage,
  loadImage,
  loadRoot,
  mapIndexImages,
  pickImage,
  writeComposed,
} from './compose.js';
import { sortKeys } from './write.js';

/** A change to a keyed map: a value sets the key, null removes it. */
export type KeyChanges = Record<string, string | null>;

export interface MutateOptions {
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
  store?: OciLayout;
}

export interface MutateResult extends ComposeResult {
  /** Images whose config or manifest changed. */
  changed: number;
}

/** Edits an image's config and annotations (every image of an index, or the one chosen) and writes it to `to`. */
export async function mutateImage(options: MutateOptions): Promise<MutateResult> {
  parseLocation(options.to); // a bad destination fails before any work
  for (const key of Object.keys(options.env ?? {}))
    if (key === '' || key.includes('='))
      throw new KilnError('E_USAGE', `invalid environment variable name '${key}'`);
  const store = options.store ?? (await openCache());
  const composed = new ComposedSource('kiln mutate', store);
  try {
    const source = composed.addSource(await openSource(options.source));
    const { root, bytes, parsed } = await loadRoot(source);
    const state = { changed: 0 };
    let descriptor: Descriptor;
    if (parsed.kind === 'manifest') {
      const image = await loadImage(source, root, bytes);
      checkPlatform(image, options.platform, source.name);
      descriptor = await mutateOne(composed, source, image, options, state);
    } else if (options.platform) {
      const chosen = pickImage(parsed.index, options.platform, source.name);
      descriptor = await mutateOne(composed, source, await loadImage(source, chosen), options, state);
    } else {
      descriptor = await mutateIndex(composed, source, root, parsed.index, options, state);
    }
    composed.setRoot(descriptor);
    // A single-image destination (docker-archive) gets the host's image of an index.
    const written = await writeComposed(composed, options.to);
    return { destination: options.to, descriptor: written.descriptor, changed: state.changed };
  } finally {
    await composed.close();
  }
}

async function mutateIndex(
  composed: ComposedSource,
  source: ImageSource,
  root: Descriptor,
  index: ImageIndex,
  options: MutateOptions,
  state: { changed: number },
): Promise<Descriptor> {
  const manifests = await mapIndexImages(composed, source, index, (image) =>
    mutateOne(composed, source, image, options, state),
  );
  const next: ImageIndex = { ...index, manifests };
  const annotations = mergeKeys(index.annotations, options.annotations);
  if (annotations) next.annotations = annotations;
  else delete next.annotations;
  if (encodeJson(next).equals(encodeJson(index))) {
    composed.addBase(root, source); // nothing changed: the original bytes, so the same digest
    return root;
  }
  return composed.putJson(index.mediaType ?? root.mediaType, next);
}

async function mutateOne(
  composed: ComposedSource,
  source: ImageSource,
  image: LoadedImage,
  options: MutateOptions,
  state: { changed: number },
): Promise<Descriptor> {
  const root: Descriptor = {
    mediaType: image.descriptor.mediaType,
    digest: image.descriptor.digest,
    size: image.descriptor.size,
  };
  for (const layer of image.manifest.layers) composed.addBase(layer, source);
  const config = mutateConfig(image.config, options);
  const configChanged = !encodeJson(config).equals(encodeJson(image.config));
  const manifest = { ...image.manifest };
  if (configChanged) manifest.config = await composed.putJson(image.manifest.config.mediaType, config);
  else composed.addBase(image.manifest.config, source); // unchanged: the base's bytes, mountable
  const annotations = mergeKeys(image.manifest.annotations, options.annotations);
  if (annotations) manifest.annotations = annotations;
  else delete manifest.annotations;
  if (!configChanged && encodeJson(manifest).equals(encodeJson(image.manifest))) {
    composed.addBase(root, source);
    return root;
  }
  state.changed++;
  return composed.putJson(image.manifest.mediaType ?? root.mediaType, manifest);
}

/** The config with the requested changes; fields not asked about stay as they were, in their order. */
export function mutateConfig(config: ImageConfig, options: MutateOptions): ImageConfig {
  const next = structuredClone(config);
  const had = typeof next.config === 'object' && next.config !== null;
  const c: ContainerConfig = had ? next.config! : {};
  const setList = (key: 'Entrypoint' | 'Cmd', value: string[] | undefined) => {
    if (value === undefined) return;
    if (value.length > 0) c[key] = [...value];
    else delete c[key];
  };
  setList('Entrypoint', options.entrypoint);
  setList('Cmd', options.cmd);
  if (options.env && Object.keys(options.env).length > 0) {
    const env = mergeEnv(Array.isArray(c.Env) ? c.Env : [], options.env);
    if (env.length > 0) c.Env = env;
    else delete c.Env;
  }
  if (options.labels && Object.keys(options.labels).length > 0) {
    const labels = mergeKeys(c.Labels ?? undefined, options.labels);
    if (labels) c.Labels = labels;
    else delete c.Labels;
  }
  if (options.workdir !== undefined) c.WorkingDir = options.workdir;
  if (options.user !== undefined) c.User = options.user;
  if (had || Object.keys(c).length > 0) next.config = c;
  return next;
}

/** Env by name: a set replaces the variable where it stands, or appends it; null removes it. */
export function mergeEnv(env: string[], changes: KeyChanges): string[] {
  let out = [...env];
  const nameOf = (e: string) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) {
      out = out.filter((e) => nameOf(e) !== key);
      continue;
    }
    const i = out.findIndex((e) => nameOf(e) === key);
    if (i >= 0) out[i] = `${key}=${value}`;
    else out.push(`${key}=${value}`);
  }
  return out;
}

/** A merged map with keys sorted (so the same changes always encode the same); undefined when emptied. */
function mergeKeys(
  current: Annotations | undefined,
  changes: KeyChanges | undefined,
): Annotations | undefined {
  if (!changes || Object.keys(changes).length === 0) return current; // untouched, even if empty
  const out: Annotations = { ...(current ?? {}) };
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return Object.keys(out).length > 0 ? sortKeys(out) : undefined;
}
