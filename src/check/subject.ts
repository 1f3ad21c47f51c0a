/**
 * What `kiln check` looks at: an image or an index read through any source, reduced to the fields
 * consumers decide on (platforms, media types, annotations, config fields, the kind of each raw
 * wasm layer). Read once; every consumer's rules are pure functions over it.
 */
import { KilnError } from '../errors.js';
import { readTar } from '../layer/tar-reader.js';
import { isIndexType, isManifestType, layerCompression, MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Annotations, Descriptor, ImageIndex, ImageManifest } from '../oci/types.js';
import { MAX_CONFIG_BYTES, parseManifest } from '../oci/validate.js';
import { verified } from '../oci/verify.js';
import { readSmallBlob } from '../transport/read.js';
import type { ImageSource } from '../transport/types.js';

/** Layer types whose blob is a WebAssembly binary as is (no tar around it). */
export const RAW_WASM_LAYER_TYPES: readonly string[] = [
  MediaType.WasmLayer,
  MediaType.RunwasiLayer,
  MediaType.WasmToOciLayer,
  MediaType.IstioOciLayer,
];

/** A core module or a component, told apart by the binary's version field; undefined when not wasm. */
export type WasmKind = 'module' | 'component';

/** A layer: type, digest, and what was read of its content. */
export interface SubjectLayer {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Annotations;
  /** For a raw wasm layer: what its first bytes say it is. */
  wasm?: WasmKind | 'not-wasm';
  /**
   * For a tar layer within the read budget: its regular files, and for `.wasm` files and the
   * entrypoint what their first bytes say. Absent when the layer was not read (too large).
   */
  files?: SubjectFile[];
}

/** A regular file of a tar layer. */
export interface SubjectFile {
  path: string;
  wasm?: WasmKind | 'not-wasm';
}

/** Tar layers are listed while their total stays under this: a wasm image's are small. */
const TAR_READ_BUDGET = 64 * 1024 * 1024;

/** One image (manifest) as a consumer sees it. */
export interface SubjectImage {
  digest: string;
  mediaType: string;
  /** The manifest's own mediaType field (absent in some writers' manifests, e.g. Spin's). */
  declaredMediaType?: string;
  /** The platform its index entry names (none for a top-level manifest). */
  entryPlatform?: Platform;
  annotations: Annotations;
  artifactType?: string;
  config: {
    mediaType: string;
    /** The config as JSON when it parses as an object; undefined otherwise. */
    json?: Record<string, unknown>;
  };
  layers: SubjectLayer[];
}

/** An image or index as every consumer check reads it. */
export interface CheckSubject {
  name: string;
  root: { mediaType: string; digest: string };
  /** The index entries (images and others), when the root is an index. */
  index?: ImageIndex;
  /** The images: the root, or every manifest entry of the index (nested indexes are not followed). */
  images: SubjectImage[];
}

/** Reads `source` into a subject: manifests, configs, and the first bytes of raw wasm layers. */
export async function loadSubject(source: ImageSource): Promise<CheckSubject> {
  const root = await source.resolve();
  const bytes = await source.fetchManifest(root);
  const parsed = parseManifest(bytes, `${source.name} manifest`, root.mediaType);
  const subject: CheckSubject = {
    name: source.name,
    root: { mediaType: root.mediaType, digest: root.digest },
    images: [],
  };
  if (parsed.kind === 'manifest') {
    subject.images.push(await loadImage(source, root, parsed.manifest));
    return subject;
  }
  subject.index = parsed.index;
  // The same manifest under several platforms (aliases) is read once; each entry keeps its platform.
  const read = new Map<string, SubjectImage | undefined>();
  for (const entry of parsed.index.manifests) {
    if (isIndexType(entry.mediaType) || !isManifestType(entry.mediaType)) continue;
    if (!read.has(entry.digest)) {
      const raw = await source.fetchManifest(entry);
      const child = parseManifest(raw, `${source.name} manifest ${entry.digest}`, entry.mediaType);
      read.set(
        entry.digest,
        child.kind === 'manifest' ? await loadImage(source, entry, child.manifest) : undefined,
      );
    }
    const image = read.get(entry.digest);
    if (!image) continue;
    const { entryPlatform: _, ...rest } = image;
    subject.images.push(entry.platform ? { ...rest, entryPlatform: entry.platform } : rest);
  }
  if (subject.images.length === 0)
    throw new KilnError('E_BAD_MANIFEST', `${source.name}: the index lists no image manifests`);
  return subject;
}

async function loadImage(
  source: ImageSource,
  desc: Descriptor,
  manifest: ImageManifest,
): Promise<SubjectImage> {
  const image: SubjectImage = {
    digest: desc.digest,
    mediaType: manifest.mediaType ?? desc.mediaType,
    annotations: manifest.annotations ?? {},
    config: { mediaType: manifest.config.mediaType },
    layers: [],
  };
  if (manifest.mediaType) image.declaredMediaType = manifest.mediaType;
  if (desc.platform) image.entryPlatform = desc.platform;
  if (manifest.artifactType) image.artifactType = manifest.artifactType;
  if (manifest.config.size <= MAX_CONFIG_BYTES) {
    try {
      const json = JSON.parse(
        (await readSmallBlob(source, manifest.config, MAX_CONFIG_BYTES)).toString('utf8'),
      );
      if (typeof json === 'object' && json !== null && !Array.isArray(json)) image.config.json = json;
    } catch (err) {
      if (err instanceof KilnError && err.code !== 'E_TOO_LARGE') throw err;
    }
  }
  let budget = TAR_READ_BUDGET;
  for (const layer of manifest.layers) {
    const l: SubjectLayer = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
    if (layer.annotations) l.annotations = layer.annotations;
    if (RAW_WASM_LAYER_TYPES.includes(layer.mediaType)) l.wasm = await wasmKindOf(source, layer);
    else if (layerCompression(layer.mediaType) !== undefined && layer.size <= budget) {
      budget -= layer.size;
      l.files = await listFiles(source, layer, argvOf(image)[0]);
    }
    image.layers.push(l);
  }
  return image;
}

/** A tar layer's regular files; `.wasm` files and the entrypoint get their header read. */
async function listFiles(
  source: ImageSource,
  layer: Descriptor,
  entrypoint: string | undefined,
): Promise<SubjectFile[]> {
  const files: SubjectFile[] = [];
  const target = entrypoint?.replace(/^\/+/, '').split('#')[0];
  await readTar(
    verified(await source.fetchBlob(layer), layer, source.name),
    async (entry, content) => {
      if (entry.type !== 'file') return;
      const file: SubjectFile = { path: entry.path };
      if (entry.path.endsWith('.wasm') || entry.path === target) {
        const head: Buffer[] = [];
        let have = 0;
        for await (const chunk of content) {
          if (have < 8) head.push(chunk);
          have += chunk.length;
        }
        file.wasm = wasmKindOfBytes(Buffer.concat(head));
      }
      files.push(file);
    },
    `${source.name} layer ${layer.digest}`,
  );
  return files;
}

/** The kind a raw layer's first 8 bytes name: `\0asm` then version 1 (module) or 0x0d 0x00 0x01 0x00 (component). */
async function wasmKindOf(source: ImageSource, layer: Descriptor): Promise<WasmKind | 'not-wasm'> {
  const head: Buffer[] = [];
  let have = 0;
  const stream = await source.fetchBlob(layer);
  for await (const chunk of stream) {
    head.push(Buffer.from(chunk));
    have += chunk.length;
    if (have >= 8) break; // leaving the loop closes the stream: no whole blob is read
  }
  return wasmKindOfBytes(Buffer.concat(head));
}

/** A module or component by its header; `not-wasm` for anything else. */
export function wasmKindOfBytes(bytes: Uint8Array): WasmKind | 'not-wasm' {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    return 'not-wasm';
  if (bytes[4] === 1 && bytes[5] === 0 && bytes[6] === 0 && bytes[7] === 0) return 'module';
  if (bytes[4] === 0x0d && bytes[5] === 0 && bytes[6] === 1 && bytes[7] === 0) return 'component';
  return 'not-wasm';
}

/** The config's platform fields, as strings ('' when absent). */
export function configPlatformOf(image: SubjectImage): { os: string; architecture: string } {
  const json = image.config.json ?? {};
  return {
    os: typeof json.os === 'string' ? json.os : '',
    architecture: typeof json.architecture === 'string' ? json.architecture : '',
  };
}

/** The container config (`config` object of an image config), if any. */
export function containerConfigOf(image: SubjectImage): {
  Entrypoint?: unknown;
  Cmd?: unknown;
  Labels?: unknown;
} {
  const c = image.config.json?.config;
  return typeof c === 'object' && c !== null ? (c as Record<string, unknown>) : {};
}

/** argv as the container's process gets it: Entrypoint then Cmd. */
export function argvOf(image: SubjectImage): string[] {
  const c = containerConfigOf(image);
  const strings = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : [];
  return [...strings(c.Entrypoint), ...strings(c.Cmd)];
}

/**
 * The file at `path` (leading `/` and `#func` ignored) in the image's root filesystem as far as its
 * tar layers were read: `unknown` when a layer above it was not read, undefined when absent.
 */
export function fileIn(image: SubjectImage, path: string): SubjectFile | 'unknown' | undefined {
  const want = path.replace(/^\/+/, '').split('#')[0];
  for (let i = image.layers.length - 1; i >= 0; i--) {
    const layer = image.layers[i]!;
    if (layerCompression(layer.mediaType) === undefined) continue;
    if (!layer.files) return 'unknown';
    const hit = layer.files.find((f) => f.path === want);
    if (hit) return hit;
  }
  return undefined;
}
