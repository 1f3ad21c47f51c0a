/**
 * A native image out of a build: the base image for the platform (or nothing), the build's files
 * on top in layers planned by layering.ts, and a config with the entrypoint, user, workdir and env.
 *
 * The binary goes to `/usr/local/bin/<name>` (on every base's PATH, so `docker run IMAGE` and
 * `docker run IMAGE <name> ...` both work) and is the default entrypoint; other files the build
 * wrote under /out (compile's `extras`) keep their path under `/usr/local` (`lib/x.so` →
 * `/usr/local/lib/x.so`, symlinks as symlinks), in the lower layers of the plan.
 *
 * Base blobs are registered with the composition, never read: the copy engine sends them only
 * when a destination lacks them (and a registry mounts them from the base's repository).
 */
import * as fs from 'node:fs/promises';
import { ioError, KilnError } from '../errors.js';
import {
  type ComposedSource,
  checkPlatform,
  configPlatform,
  type LoadedImage,
  loadImage,
  loadRoot,
  pickImage,
} from '../image/compose.js';
import { Image } from '../image/image.js';
import { writeLayer } from '../layer/write-layer.js';
import type { Digest } from '../oci/digest.js';
import { createdFamily } from '../oci/media-type-policy.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import type { Descriptor, ImageConfig, ImageManifest } from '../oci/types.js';
import { ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME } from '../project/provenance.js';
import type { OciLayout } from '../store/layout.js';
import { openSource } from '../transport/open.js';
import type { ImageSource } from '../transport/types.js';
import {
  DEFAULT_LAYER_BUDGET,
  groupFiles,
  layerEntries,
  NATIVE_PREFIX,
  outFiles,
  type PlannedFile,
  planLayers,
} from './layering.js';

export interface NativeBase {
  /** The reference as given (`base:` / `--base`). */
  name: string;
  image: LoadedImage;
  /** Where the base's blobs are read from. */
  source: ImageSource;
  platform: Platform;
}

/**
 * Resolves a base for each platform: an index gives the manifest for each, a single image must be
 * for the one platform asked. A platform the base lacks is E_NO_MATCHING_PLATFORM listing what it
 * has. Only manifests and configs are read; the base's layers are registered with `composed`.
 */
export async function resolveBases(
  composed: ComposedSource,
  ref: string,
  platforms: Platform[],
): Promise<NativeBase[]> {
  const source = composed.addSource(await openSource(ref, { context: composed.context }));
  const where = `the base ${ref}`;
  const { root, bytes, parsed } = await loadRoot(source);
  const out: NativeBase[] = [];
  for (const platform of platforms) {
    let image: LoadedImage;
    if (parsed.kind === 'index') {
      image = await loadImage(source, pickImage(parsed.index, platform, where));
    } else {
      image = await loadImage(source, root, bytes);
      checkPlatform(image, platform, where);
    }
    for (const layer of image.manifest.layers) composed.addBase(layer, source);
    out.push({ name: ref, image, source, platform: configPlatform(image.config) ?? platform });
  }
  return out;
}

export interface NativeImageOptions {
  composed: ComposedSource;
  store: OciLayout;
  platform: Platform;
  base?: NativeBase;
  /** The binary's name in the image: `/usr/local/bin/<name>`. */
  name: string;
  /** The compiled binary on the host. */
  artifact: string;
  /**
   * A directory with more files the build wrote (compile's `extras`, or a build's /out), packed
   * under /usr/local in layers of their own, below the binary's.
   */
  extraDir?: string;
  /** The artifact's path relative to `extraDir`, left out of the extras. */
  artifactRel?: string;
  /** The layer budget (default 3). */
  layers?: number;
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
  workdir?: string;
  env?: Record<string, string>;
  labels?: Record<string, string>;
  /** Manifest annotations (base.name and base.digest are added for a base). */
  annotations?: Record<string, string>;
  /** RFC 3339: the config's and history's time. */
  created: string;
  /** How the layers are compressed (default gzip). */
  compression?: 'gzip' | 'zstd';
}

export interface NativeLayer {
  descriptor: Descriptor;
  diffId: Digest;
  /** What went into it: top-level directories under /out, `app` for the binary. */
  groups: string[];
}

export interface NativeImage {
  descriptor: Descriptor;
  manifest: ImageManifest;
  platform: Platform;
  /** The layers kiln added, bottom first (the last one holds the binary). */
  layers: NativeLayer[];
  /** Where the binary is in the image. */
  binary: string;
}

/** Builds one native image into the store and registers what it wrote with `composed`. */
export async function buildNativeImage(options: NativeImageOptions): Promise<NativeImage> {
  const { composed, store, base } = options;
  const binary = `${NATIVE_PREFIX}/bin/${options.name}`;
  const { size } = await fs.stat(options.artifact).catch((err) => {
    throw ioError(err, options.artifact);
  });
  const app: PlannedFile = { path: binary, source: options.artifact, size, executable: true };
  const extras = options.extraDir ? await outFiles(options.extraDir, options.artifactRel ?? '') : [];
  // Also a file or link where a parent of the binary goes (`bin` itself): the app layer would hide it.
  const clash = extras.find((f) => f.path === binary || binary.startsWith(`${f.path}/`));
  if (clash)
    throw new KilnError('E_USAGE', `the build wrote ${clash.rel} besides the binary`, {
      hint: `/${binary} is where kiln puts the binary; write other files elsewhere under /out`,
    });
  const plan = planLayers(groupFiles(extras), app, options.layers ?? DEFAULT_LAYER_BUDGET);

  const layers: NativeLayer[] = [];
  for (const planned of plan) {
    const written = await writeLayer(store, layerEntries(planned.files), {
      compression: options.compression,
    });
    composed.addOwn(written.descriptor);
    layers.push({ descriptor: written.descriptor, diffId: written.diffId, groups: planned.groups });
  }

  const annotations: Record<string, string> = { ...(options.annotations ?? {}) };
  if (base) {
    annotations[ANNOTATION_BASE_NAME] = base.name;
    annotations[ANNOTATION_BASE_DIGEST] = base.image.descriptor.digest;
  }
  // A created manifest (media-type policy): OCI, a Docker base's layers the same bytes under OCI types.
  const image = (
    base ? Image.of(base.source, base.image) : Image.fromConfig(scratchConfig(options.platform), options.name)
  )
    .withFamily(createdFamily())
    .withConfig({
      created: options.created,
      entrypoint: options.entrypoint?.length ? options.entrypoint : [`/${binary}`],
      // As a Dockerfile's ENTRYPOINT does: the base's CMD (busybox's `sh`) is not an argument for the app.
      cmd: options.cmd ?? [],
      user: options.user,
      workdir: options.workdir,
      env: options.env,
      labels: options.labels,
    })
    .appendLayers(
      layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
      layers.map((l) => ({ created: options.created, created_by: `kiln build (${l.groups.join(', ')})` })),
    )
    .withAnnotationsReplaced(annotations);
  const descriptor = await image.write(composed);
  return { descriptor, manifest: image.manifest(), platform: image.platform, layers, binary: `/${binary}` };
}

/** The config of an image with no base: the platform and an empty filesystem. */
function scratchConfig(platform: Platform): ImageConfig {
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    rootfs: { type: 'layers', diff_ids: [] },
  };
  if (platform.variant) config.variant = platform.variant;
  return config;
}

/** `linux/arm64/v8` → `linux-arm64-v8`: a platform in a file name. */
export function platformSlug(p: Platform): string {
  return formatPlatform(p).replaceAll('/', '-');
}
