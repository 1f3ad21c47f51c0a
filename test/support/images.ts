/**
 * The one home of test image fixtures, all written with kiln's own writers (writeLayer, writeJsonBlob,
 * writeManifest, OciLayout): digests, seeded bytes, images in an OCI layout (N layers of seeded
 * pseudo-random bytes, so digests are stable and gzip can't shrink them away, or one layer of given
 * files), Docker v2 images, indexes of several platforms, wasm images, hello.wasm; and reading back
 * what a layout holds (blobs, index.json, tags) straight from disk, not through kiln.
 *
 * Hand-made tars and layouts that lie (hostile input) are in hostile.ts.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeJsonBlob, writeManifest } from '../../src/image/write.js';
import type { LayerEntry } from '../../src/layer/entries.js';
import { writeLayer } from '../../src/layer/write-layer.js';
import type { Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { type Platform, parsePlatform } from '../../src/oci/platform.js';
import {
  type Annotations,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  REF_NAME_ANNOTATION,
} from '../../src/oci/types.js';
import { type AttachOptions, type AttachResult, attachReferrer } from '../../src/sbom/referrers.js';
import { OciLayout } from '../../src/store/layout.js';

export type { Descriptor, ImageConfig, ImageIndex, ImageManifest };

/** Media types, spelled out (not taken from src/) so that tests hold kiln to the specs. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

/** examples/hello/hello.wasm: a small WASI module checked into the repository. */
export const HELLO_WASM = fileURLToPath(new URL('../../examples/hello/hello.wasm', import.meta.url));

/** Annotation keys (docs/formats.md), spelled out as the media types are. */
export const TITLE_ANNOTATION = 'org.opencontainers.image.title';
export const VARIANT_ANNOTATION = 'module.wasm.image/variant';
export const BASE_NAME_ANNOTATION = 'org.opencontainers.image.base.name';
export const BASE_DIGEST_ANNOTATION = 'org.opencontainers.image.base.digest';

/** SHA-256 of `data`, hex. */
export function sha256hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** SHA-256 of `data` as an OCI digest, `sha256:…`. */
export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${sha256hex(data)}`;
}

/** SHA-256 of a stream of chunks (a blob as a registry or a file streams it), as an OCI digest. */
export async function sha256Of(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Digest> {
  const hash = createHash('sha256');
  for await (const chunk of chunks) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** Deterministic bytes: SHA-256 in counter mode over a seed. */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  for (let i = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

export interface TestImage<Tag extends string | undefined = string> {
  layout: string;
  /** Undefined for an image listed in index.json without a name. */
  tag: Tag;
  /** `oci:LAYOUT:TAG` (`oci:LAYOUT` when untagged). */
  ref: string;
  descriptor: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  platform: Platform;
}

export interface ImageOptions {
  /** This many layers of `layerBytes` seeded bytes each, one file `data/layer-I.bin` per layer. */
  layers?: number;
  layerBytes?: number;
  /** Seed of the layers' bytes (default: the tag). */
  seed?: string;
  /** Instead of seeded layers: one layer of these files (path → content). */
  files?: Record<string, string | Buffer>;
  /** os/arch[/variant] of the config (default linux/amd64). */
  platform?: string;
  /**
   * Top-level config fields, over the defaults (architecture, os, `config: { Cmd: ['/bin/sh'] }`,
   * rootfs): `{ config: { Env: […] }, history: […] }`, `{ architecture: 'arm64' }`…
   */
  config?: Record<string, unknown>;
  /** A Docker v2 schema 2 image: Docker manifest, config and layer types (default OCI). */
  docker?: boolean;
  annotations?: Annotations;
}

/** Writes an image to the OCI layout at `dir` (created if need be), under `tag` (none: listed unnamed). */
export async function makeImage<Tag extends string | undefined>(
  dir: string,
  tag: Tag,
  options: ImageOptions,
): Promise<TestImage<Tag>> {
  const store = await OciLayout.open(dir, { create: true });
  const layerFiles: LayerEntry[][] = options.files
    ? [
        Object.entries(options.files).map(([path, c]) => {
          const content = Buffer.from(c);
          return { path, type: 'file', content, size: content.length };
        }),
      ]
    : Array.from({ length: options.layers ?? 1 }, (_, i) => {
        const content = seededBytes(`${options.seed ?? tag}-${i}`, options.layerBytes ?? 1024);
        return [{ path: `data/layer-${i}.bin`, type: 'file', content, size: content.length }];
      });
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const entries of layerFiles) {
    const written = await writeLayer(store, entries);
    const mediaType = options.docker ? MediaType.DockerLayerGzip : written.descriptor.mediaType;
    layers.push({ ...written.descriptor, mediaType });
    diffIds.push(written.diffId);
  }
  const { os, architecture, variant } = parsePlatform(options.platform ?? 'linux/amd64');
  const config = await writeJsonBlob(store, options.docker ? MediaType.DockerConfig : MediaType.OciConfig, {
    architecture,
    os,
    ...(variant ? { variant } : {}),
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    ...options.config,
  });
  const descriptor = options.docker
    ? await writeJsonBlob(store, MediaType.DockerManifest, {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config,
        layers,
        ...(options.annotations ? { annotations: options.annotations } : {}),
      })
    : (await writeManifest(store, { config, layers, annotations: options.annotations })).descriptor;
  await store.tag(descriptor, tag);
  const written = JSON.parse((await store.readBlob(config.digest)).toString()) as ImageConfig;
  const platform: Platform = { os: written.os, architecture: written.architecture };
  if (written.variant) platform.variant = written.variant;
  const ref = tag === undefined ? `oci:${dir}` : `oci:${dir}:${tag}`;
  return { layout: dir, tag, ref, descriptor, config, layers, platform };
}

/**
 * A series of seeded images in `dir`, each new: `img-N` tagged `tN`, seed `PREFIX-N`, with `layers`
 * layers of `layerBytes` each.
 */
export function imageSeries(
  dir: string,
  prefix: string,
): (layers: number, layerBytes: number) => Promise<TestImage> {
  let n = 0;
  return (layers, layerBytes) => {
    const i = n++;
    return makeImage(join(dir, `img-${i}`), `t${i}`, { layers, layerBytes, seed: `${prefix}-${i}` });
  };
}

/** A WebAssembly image (wasip1/wasm): one layer holding `module` (default hello.wasm) as /hello.wasm. */
export function makeWasmImage(dir: string, tag: string, module = readFileSync(HELLO_WASM)) {
  return makeImage(dir, tag, {
    platform: 'wasip1/wasm',
    files: { 'hello.wasm': module },
    config: { config: { Entrypoint: ['/hello.wasm'] } },
  });
}

/** An index entry for `image`: its descriptor (no ref.name) with its platform, or with `platform`. */
export function indexEntry(
  image: TestImage<string | undefined> | Descriptor,
  platform?: string | Platform,
): Descriptor {
  const d = 'descriptor' in image ? image.descriptor : image;
  const p = typeof platform === 'string' ? parsePlatform(platform) : platform;
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    platform: p ?? ('platform' in image ? image.platform : d.platform)!,
  };
}

/**
 * Writes an OCI index to the layout at `dir` under `tag`: each image as {@link indexEntry} makes it,
 * each descriptor as it is.
 */
export async function makeIndex(
  dir: string,
  tag: string,
  entries: (TestImage<string | undefined> | Descriptor)[],
  annotations?: Annotations,
): Promise<Descriptor> {
  const store = await OciLayout.open(dir, { create: true });
  const manifests = entries.map((e) => ('descriptor' in e ? indexEntry(e) : e));
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
  if (annotations) index.annotations = annotations;
  const descriptor = await writeJsonBlob(store, MediaType.OciIndex, index);
  await store.tag(descriptor, tag);
  return descriptor;
}

/** One image per platform (files naming it) and an index of them under `tag`, in the layout at `dir`. */
export async function makeMultiPlatform(
  dir: string,
  tag: string,
  platforms: string[],
): Promise<{ index: Descriptor; images: TestImage<undefined>[] }> {
  const images: TestImage<undefined>[] = [];
  for (const platform of platforms)
    images.push(await makeImage(dir, undefined, { platform, files: { platform: `${platform}\n` } }));
  return { index: await makeIndex(dir, tag, images), images };
}

// ---------------------------------------------------------------------------------------------------
// Reading a layout from disk

/** A blob of the OCI layout at `dir`. */
export function layoutBlob(dir: string, digest: string): Buffer {
  return readFileSync(join(dir, 'blobs', digest.replace(':', '/')));
}

/** A JSON blob (manifest, index, config) of the OCI layout at `dir`. */
export function layoutJson<T = ImageManifest>(dir: string, digest: string): T {
  return JSON.parse(layoutBlob(dir, digest).toString('utf8')) as T;
}

/** The index.json of the OCI layout at `dir`. */
export function layoutIndex(dir: string): ImageIndex {
  return JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as ImageIndex;
}

/** The descriptor index.json names `tag`; throws if there is none. */
export function tagged(dir: string, tag: string): Descriptor {
  const hit = layoutIndex(dir).manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
  if (!hit) throw new Error(`${dir} has no tag ${tag}`);
  return hit;
}

/** A stand-in referrer of `subject` at `to`: `text` as an octet-stream layer of `artifactType`. */
export function attachOctetReferrer(
  to: string,
  subject: AttachOptions['subject'],
  artifactType: string,
  text: string,
): Promise<AttachResult> {
  return attachReferrer({
    to,
    subject,
    artifactType,
    mediaType: 'application/octet-stream',
    data: Buffer.from(text),
  });
}
