/**
 * Images as values. An `Image` is a manifest, its config and its layers, read from any ImageSource;
 * every change (append layers, set config fields, set annotations, change the media-type family)
 * returns a new value holding the base plus the change. Nothing is written until `write`, and the
 * manifest is computed only when asked: an image no change touched keeps its base's bytes and digest.
 *
 * This module is the one place that assembles manifests and configs of images kiln derives from
 * others; the commands (append, mutate, merge, rebase, native images) are compositions of it.
 */
import { KilnError } from '../errors.js';
import { type Digest, sha256 } from '../oci/digest.js';
import {
  createdFamily,
  type Family,
  familyOf,
  hasDockerType,
  inFamily,
  type ManifestFormat,
} from '../oci/media-type-policy.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type {
  Annotations,
  ContainerConfig,
  Descriptor,
  HistoryEntry,
  ImageConfig,
  ImageManifest,
} from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import type { ImageSource } from '../transport/types.js';
import { type ComposedSource, configPlatform, type LoadedImage, loadImage } from './compose.js';
import { sortKeys } from './write.js';

export type { Family };

/** A change to a keyed map: a value sets the key, null removes it. */
export type KeyChanges = Record<string, string | null>;

/** One layer of an image value: its blob, its diff_id, and where the blob is read from. */
export interface ImageLayer {
  descriptor: Descriptor;
  diffId: Digest;
  /** The base source that serves the blob; undefined for a blob kiln wrote into its store. */
  source?: ImageSource;
}

/** Fields of the container config a change can set. Lists: an empty array removes the field. */
export interface ConfigChanges {
  entrypoint?: string[];
  cmd?: string[];
  /** By name: a value replaces the variable where it stands (or is appended), null removes it. */
  env?: KeyChanges;
  labels?: KeyChanges;
  workdir?: string;
  user?: string;
  /** The config's `created` time (RFC 3339). */
  created?: string;
}

interface Base {
  source: ImageSource;
  loaded: LoadedImage;
}

interface State {
  name: string;
  base?: Base;
  mediaType: string;
  configMediaType: string;
  /** Fields of the base manifest other than those below (artifactType, subject), kept as they were. */
  rest: Partial<ImageManifest>;
  config: ImageConfig;
  layers: readonly ImageLayer[];
  annotations?: Annotations;
  configChanged: boolean;
  manifestChanged: boolean;
}

/** An image value: config and layers read from a source; changes return new values, writing computes the manifest. */
export class Image {
  private constructor(private readonly s: State) {}

  /** The image `desc` names in `source` (its manifest bytes when already fetched). */
  static async load(source: ImageSource, desc: Descriptor, bytes?: Buffer): Promise<Image> {
    return Image.of(source, await loadImage(source, desc, bytes));
  }

  /** A value over an image already read. */
  static of(source: ImageSource, loaded: LoadedImage): Image {
    const { config: _c, layers: _l, annotations, mediaType, ...rest } = loaded.manifest;
    const diffIds = loaded.config.rootfs?.diff_ids ?? [];
    return new Image({
      name: source.name,
      base: { source, loaded },
      mediaType: mediaType ?? loaded.descriptor.mediaType,
      configMediaType: loaded.manifest.config.mediaType,
      rest: rest as Partial<ImageManifest>,
      config: loaded.config,
      layers: loaded.manifest.layers.map((descriptor, i) => ({
        descriptor,
        diffId: diffIds[i] as Digest,
        source,
      })),
      ...(annotations ? { annotations } : {}),
      configChanged: false,
      manifestChanged: false,
    });
  }

  /** An image with no layers for `platform`, as `FROM scratch`. */
  static scratch(platform: Platform, created: string, name = 'scratch'): Image {
    const config: ImageConfig = {
      created,
      architecture: platform.architecture,
      os: platform.os,
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    };
    if (platform.variant) config.variant = platform.variant;
    return Image.fromConfig(config, name);
  }

  /** A new OCI image of `config` and no layers yet (its rootfs.diff_ids must be empty). */
  static fromConfig(config: ImageConfig, name: string): Image {
    return new Image({
      name,
      mediaType: MediaType.OciManifest,
      configMediaType: MediaType.OciConfig,
      rest: {},
      config,
      layers: [],
      configChanged: true,
      manifestChanged: true,
    });
  }

  /** How the user named the image, for messages. */
  get name(): string {
    return this.s.name;
  }

  /** The image this value was read from, unchanged. */
  get base(): LoadedImage | undefined {
    return this.s.base?.loaded;
  }

  get source(): ImageSource | undefined {
    return this.s.base?.source;
  }

  /** The config as it will be written (treat as read-only: change it through the methods). */
  get config(): ImageConfig {
    return this.s.config;
  }

  get layers(): readonly ImageLayer[] {
    return this.s.layers;
  }

  get annotations(): Annotations | undefined {
    return this.s.annotations;
  }

  get family(): Family {
    return familyOf(this.s.mediaType);
  }

  get platform(): Platform {
    const p = configPlatform(this.s.config);
    if (!p) throw new KilnError('E_BAD_CONFIG', `${this.s.name} config has no os or architecture`);
    return p;
  }

  /** True when nothing changed: writing reuses the base's bytes. */
  get unchanged(): boolean {
    return this.s.base !== undefined && !this.s.configChanged && !this.s.manifestChanged;
  }

  private with(change: Partial<State>): Image {
    return new Image({ ...this.s, ...change });
  }

  /** Adds layers on top, with one history entry each (typed in this image's family). */
  appendLayers(layers: ImageLayer[], history: HistoryEntry[]): Image {
    if (history.length !== layers.length) throw new Error('appendLayers: one history entry per layer');
    const config = structuredClone(this.s.config);
    config.rootfs = {
      ...config.rootfs,
      type: 'layers',
      diff_ids: [...(config.rootfs?.diff_ids ?? []), ...layers.map((l) => l.diffId)],
    };
    config.history = [...(config.history ?? []), ...history];
    const family = this.family;
    const typed = layers.map((l) => ({
      ...l,
      descriptor: { ...l.descriptor, mediaType: inFamily(l.descriptor.mediaType, family) },
    }));
    return this.with({
      config,
      layers: [...this.s.layers, ...typed],
      configChanged: true,
      manifestChanged: true,
    });
  }

  /**
   * Replaces the filesystem: layers, their diff_ids and the history. For merge and rebase, which
   * rebuild the layer list from several images.
   */
  withLayers(layers: ImageLayer[], history: HistoryEntry[]): Image {
    const config = structuredClone(this.s.config);
    config.rootfs = { ...config.rootfs, type: 'layers', diff_ids: layers.map((l) => l.diffId) };
    config.history = history;
    const family = this.family;
    return this.with({
      config,
      layers: layers.map((l) => ({
        ...l,
        descriptor: { ...l.descriptor, mediaType: inFamily(l.descriptor.mediaType, family) },
      })),
      configChanged: true,
      manifestChanged: true,
    });
  }

  /** Sets container config fields; an image whose config comes out the same stays unchanged. */
  withConfig(changes: ConfigChanges): Image {
    const next = changeConfig(this.s.config, changes);
    if (encodeJson(next).equals(encodeJson(this.s.config))) return this;
    return this.with({ config: next, configChanged: true });
  }

  /** Replaces the whole container config (`config.config`), as merge's `--config-from` does. */
  withContainerConfig(container: ContainerConfig | undefined): Image {
    const next = structuredClone(this.s.config);
    if (container) next.config = structuredClone(container);
    else delete next.config;
    if (encodeJson(next).equals(encodeJson(this.s.config))) return this;
    return this.with({ config: next, configChanged: true });
  }

  /** Sets or removes manifest annotations (the changed map is written with its keys sorted). */
  withAnnotations(changes: KeyChanges): Image {
    if (Object.keys(changes).length === 0) return this;
    const annotations = mergeKeys(this.s.annotations, changes);
    if (JSON.stringify(annotations ?? null) === JSON.stringify(this.s.annotations ?? null)) return this;
    const next = this.with({ manifestChanged: true });
    if (annotations) next.s.annotations = annotations;
    else delete next.s.annotations;
    return next;
  }

  /** Replaces every manifest annotation with `annotations` (none: the manifest has no annotations). */
  withAnnotationsReplaced(annotations: Annotations): Image {
    const changes: KeyChanges = Object.fromEntries(
      Object.keys(this.s.annotations ?? {}).map((k) => [k, null]),
    );
    return this.withAnnotations({ ...changes, ...annotations });
  }

  /** The same image in the other media-type family (the blobs are the same bytes). */
  withFamily(family: Family): Image {
    if (family === 'docker' && !this.s.layers.every((l) => hasDockerType(l.descriptor.mediaType)))
      throw new KilnError('E_UNSUPPORTED', `${this.s.name} has layers with no Docker v2 media type`, {
        hint: 'keep it an OCI image (zstd and uncompressed layers have no Docker type)',
      });
    const mediaType = inFamily(this.s.mediaType, family);
    const configMediaType = inFamily(this.s.configMediaType, family);
    const layers = this.s.layers.map((l) => {
      const type = inFamily(l.descriptor.mediaType, family);
      return type === l.descriptor.mediaType ? l : { ...l, descriptor: { ...l.descriptor, mediaType: type } };
    });
    // Docker v2 manifests have no annotations.
    const dropAnnotations = family === 'docker' && this.s.annotations !== undefined;
    if (
      mediaType === this.s.mediaType &&
      configMediaType === this.s.configMediaType &&
      layers.every((l, i) => l === this.s.layers[i]) &&
      !dropAnnotations
    )
      return this;
    const next = this.with({ mediaType, configMediaType, layers, manifestChanged: true });
    if (dropAnnotations) delete next.s.annotations;
    return next;
  }

  /**
   * As the media-type policy has a manifest kiln creates: OCI unless `format` asks for Docker v2. An
   * image no change touched (and no format asked for) stays as it is, bytes and digest.
   */
  created(format?: ManifestFormat): Image {
    if (this.unchanged && format === undefined) return this;
    return this.withFamily(createdFamily(format));
  }

  /** The config as written: its bytes and descriptor (the base's own bytes when unchanged). */
  configBlob(): { descriptor: Descriptor; bytes: Buffer } {
    const base = this.s.base?.loaded;
    if (base && !this.s.configChanged) {
      const descriptor = { ...base.manifest.config, mediaType: this.s.configMediaType };
      return { descriptor, bytes: base.configBytes };
    }
    const bytes = encodeJson(this.s.config);
    return {
      descriptor: { mediaType: this.s.configMediaType, digest: sha256(bytes), size: bytes.length },
      bytes,
    };
  }

  /** The manifest as it will be written. */
  manifest(): ImageManifest {
    const base = this.s.base?.loaded;
    if (base && this.unchanged) return base.manifest;
    // From the base, its fields keep their order (the bytes of what did not change stay the same).
    const manifest: ImageManifest = base
      ? { ...base.manifest }
      : ({ schemaVersion: 2, mediaType: this.s.mediaType, ...this.s.rest } as ImageManifest);
    if (manifest.mediaType !== undefined || this.s.mediaType !== base?.descriptor.mediaType)
      manifest.mediaType = this.s.mediaType;
    manifest.config = this.configBlob().descriptor;
    manifest.layers = this.s.layers.map((l) => l.descriptor);
    if (this.s.annotations && Object.keys(this.s.annotations).length > 0)
      manifest.annotations = this.s.annotations;
    else delete manifest.annotations;
    return manifest;
  }

  /** The manifest's bytes and descriptor, computed (not written). */
  manifestBlob(): { descriptor: Descriptor; bytes: Buffer } {
    const base = this.s.base?.loaded;
    if (base && this.unchanged) {
      const d = base.descriptor;
      return {
        descriptor: { mediaType: d.mediaType, digest: d.digest, size: d.size },
        bytes: base.manifestBytes,
      };
    }
    const bytes = encodeJson(this.manifest());
    return { descriptor: { mediaType: this.s.mediaType, digest: sha256(bytes), size: bytes.length }, bytes };
  }

  /** The manifest's descriptor, computed (not written). */
  get descriptor(): Descriptor {
    return this.manifestBlob().descriptor;
  }

  /**
   * Writes what changed into the composition's store (config, manifest) and registers every blob
   * kept from a base with its source, so a destination reads (or mounts) it from there.
   */
  async write(composed: ComposedSource): Promise<Descriptor> {
    for (const layer of this.s.layers) {
      if (layer.source) composed.addBase(layer.descriptor, layer.source);
      else composed.addOwn(layer.descriptor);
    }
    const base = this.s.base;
    if (base && this.unchanged) {
      const root = this.manifestBlob().descriptor;
      composed.addBase(root, base.source);
      return root;
    }
    const config = this.configBlob();
    if (base && !this.s.configChanged) composed.addBase(config.descriptor, base.source);
    else await composed.putBytes(config.descriptor, config.bytes);
    const manifest = this.manifestBlob();
    await composed.putBytes(manifest.descriptor, manifest.bytes);
    return manifest.descriptor;
  }
}

/** The config with the requested changes; fields not asked about stay as they were, in their order. */
export function changeConfig(config: ImageConfig, changes: ConfigChanges): ImageConfig {
  const next = structuredClone(config);
  if (changes.created !== undefined) next.created = changes.created;
  const had = typeof next.config === 'object' && next.config !== null;
  const c: ContainerConfig = had ? next.config! : {};
  const setList = (key: 'Entrypoint' | 'Cmd', value: string[] | undefined) => {
    if (value === undefined) return;
    if (value.length > 0) c[key] = [...value];
    else delete c[key];
  };
  setList('Entrypoint', changes.entrypoint);
  setList('Cmd', changes.cmd);
  if (changes.env && Object.keys(changes.env).length > 0) {
    const env = mergeEnv(Array.isArray(c.Env) ? c.Env : [], changes.env);
    if (env.length > 0) c.Env = env;
    else delete c.Env;
  }
  if (changes.labels && Object.keys(changes.labels).length > 0) {
    const labels = mergeKeys(c.Labels ?? undefined, changes.labels);
    if (labels) c.Labels = labels;
    else delete c.Labels;
  }
  if (changes.workdir !== undefined) c.WorkingDir = changes.workdir;
  if (changes.user !== undefined) c.User = changes.user;
  if (had || Object.keys(c).length > 0) next.config = c;
  return next;
}

/**
 * kiln's one environment merge: a variable set replaces the one of that name where it stands, or is
 * appended (in the order given); null removes it.
 */
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
export function mergeKeys(
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
