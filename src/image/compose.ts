/**
 * Shared machinery for commands that make new images out of existing ones (append, mutate,
 * index create): new blobs and manifests go into kiln's cache layout, everything else is served
 * from the base sources, so a base layer is read only when the destination lacks it.
 */
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { defaultMtime } from '../layer/tar-writer.js';
import type { ManifestFormat } from '../oci/media-type-policy.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, normalizePlatform, type Platform, platformMatches } from '../oci/platform.js';
import { isUnknownPlatform, pickImage } from '../oci/select.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import {
  encodeJson,
  MAX_CONFIG_BYTES,
  type ParsedManifest,
  parseConfig,
  parseManifest,
} from '../oci/validate.js';
import type { OciLayout } from '../store/layout.js';
import { type CopyOptions, type CopyResult, copyImage } from '../transport/copy.js';
import { OciDirSource } from '../transport/oci-dir.js';
import { openDestination, openSource } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import { readSmallBlob } from '../transport/read.js';
import type { BlobOrigin, ImageSource } from '../transport/types.js';

/** What every command that writes an image it derives from others takes (append, mutate, merge, ...). */
export interface DeriveOptions {
  /** The manifests' media-type family: OCI unless `docker` (Docker v2 schema 2) is asked for. */
  format?: ManifestFormat;
  /** Where new blobs go; default the context's store. */
  store?: OciLayout;
  /** Registry settings and connections, the store, the abort signal; default: a context for this call. */
  context?: KilnContext;
}

/** What append, mutate and index create return, like `pack`. */
export interface ComposeResult {
  destination: string;
  /** The root written: a manifest, or an index. */
  descriptor: Descriptor;
}

/** What a command reports of the copy of its composition to the destination (merge, rebase). */
export interface CopiedResult extends ComposeResult {
  blobsCopied: number;
  blobsSkipped: number;
  blobsMounted: number;
}

/** The copy's counts as a command reports them. */
export function copied(written: CopyResult, destination: string): CopiedResult {
  const { descriptor, blobsCopied, blobsSkipped, blobsMounted } = written;
  return { destination, descriptor, blobsCopied, blobsSkipped, blobsMounted };
}

/**
 * An ImageSource over a composition: digests written by it are read from `store`, any other
 * digest from the base source it was registered with. A base manifest's config, layers and
 * children follow it to the same base when it is fetched, so only roots need registering.
 */
export class ComposedSource implements ImageSource {
  private root: Descriptor | undefined;
  private readonly own = new Set<string>();
  private readonly base = new Map<string, ImageSource>();
  private readonly sources = new Set<ImageSource>();

  /** What kiln wrote, served as any layout serves its blobs (size-checked). */
  private readonly ownBlobs: OciDirSource;

  constructor(
    readonly name: string,
    readonly store: OciLayout,
    /** What its bases are opened with and it is written with (registry connections, the signal). */
    readonly context?: KilnContext,
  ) {
    this.ownBlobs = new OciDirSource(`kiln cache ${store.dir}`, store, undefined);
  }

  /** Takes ownership of a base source: closed with this one. */
  addSource(source: ImageSource): ImageSource {
    this.sources.add(source);
    return source;
  }

  /** Serves `desc` (a blob or a manifest) from `source`, unless this composition wrote it. */
  addBase(desc: Descriptor, source: ImageSource): void {
    this.sources.add(source);
    if (!this.own.has(desc.digest) && !this.base.has(desc.digest)) this.base.set(desc.digest, source);
  }

  /** Marks a digest as written into the store by this composition. */
  addOwn(desc: Descriptor): void {
    this.own.add(desc.digest);
    this.base.delete(desc.digest);
  }

  /** Stores a JSON document (config, manifest, index) as encoded by kiln and serves it from the store. */
  async putJson(mediaType: string, value: unknown): Promise<Descriptor> {
    const desc: Descriptor = { mediaType, ...(await this.store.putBytes(encodeJson(value))) };
    this.addOwn(desc);
    return desc;
  }

  /** Stores bytes already encoded (their descriptor computed by the caller) and serves them from the store. */
  async putBytes(desc: Descriptor, bytes: Buffer): Promise<void> {
    const written = await this.store.putBytes(bytes);
    if (written.digest !== desc.digest) throw new Error(`putBytes: ${written.digest} is not ${desc.digest}`);
    this.addOwn(desc);
  }

  setRoot(desc: Descriptor): void {
    this.root = desc;
  }

  /** Copies the composition, rooted at `root`, to `to` (any destination transport), then closes it. */
  writeTo(root: Descriptor, to: string, options?: CopyOptions): Promise<CopyResult> {
    this.setRoot(root);
    return writeComposed(this, to, options);
  }

  async resolve(): Promise<Descriptor> {
    if (!this.root) throw new Error('ComposedSource has no root');
    return this.root;
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    if (this.own.has(desc.digest)) return this.ownBlobs.fetchManifest(desc);
    const source = this.sourceOf(desc);
    const bytes = await source.fetchManifest(desc);
    const parsed = parseManifest(bytes, `${source.name} manifest ${desc.digest}`, desc.mediaType);
    for (const child of children(parsed)) this.addBase(child, source);
    return bytes;
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    if (this.own.has(desc.digest)) return this.ownBlobs.fetchBlob(desc);
    return this.sourceOf(desc).fetchBlob(desc);
  }

  /** A base blob keeps its origin, so a registry destination can mount it instead of copying. */
  blobOrigin(desc: Descriptor): BlobOrigin | undefined {
    if (this.own.has(desc.digest)) return undefined;
    return this.base.get(desc.digest)?.blobOrigin?.(desc);
  }

  async close(): Promise<void> {
    const sources = [...this.sources];
    this.sources.clear();
    await Promise.all(sources.map((s) => s.close().catch(() => {})));
  }

  private sourceOf(desc: Descriptor): ImageSource {
    const source = this.base.get(desc.digest);
    if (!source) throw new KilnError('E_NOT_FOUND', `${this.name}: no blob or manifest ${desc.digest}`);
    return source;
  }
}

function children(parsed: ParsedManifest): Descriptor[] {
  if (parsed.kind === 'index') return parsed.index.manifests;
  return [parsed.manifest.config, ...parsed.manifest.layers];
}

/** Copies the composition to `to` (any destination transport), then closes it and its bases. */
export async function writeComposed(
  composed: ComposedSource,
  to: string,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const { context } = composed;
  try {
    const destination = await openDestination(to, { context });
    return await copyImage(
      composed,
      destination,
      context
        ? { ...options, signal: context.signalWith(options.signal), onEvent: context.events(options.onEvent) }
        : options,
    );
  } finally {
    await composed.close();
  }
}

/**
 * The skeleton of every command that derives an image from others (append, mutate, merge, rebase,
 * flatten, diff, index create): the destination checked before any work, then `body` runs on a
 * composition in the store; the composition's bases are closed and the context released however it ends.
 */
export async function derive<T>(
  name: string,
  options: DeriveOptions & { to?: string },
  body: (composed: ComposedSource, context: KilnContext) => Promise<T>,
): Promise<T> {
  if (options.to !== undefined) parseLocation(options.to);
  return withContext(options.context, async (ctx) => {
    const composed = new ComposedSource(name, options.store ?? (await ctx.store()), ctx);
    try {
      return await body(composed, ctx);
    } finally {
      await composed.close();
    }
  });
}

/** An input of a derivation as given (`name`) and as opened: its source and its root, parsed. */
export interface Input {
  name: string;
  source: ImageSource;
  root: Descriptor;
  bytes: Buffer;
  parsed: ParsedManifest;
}

/** Opens `name` (any source transport) into `composed`, which closes it, and reads its root. */
export async function openInput(composed: ComposedSource, name: string): Promise<Input> {
  const source = composed.addSource(await openSource(name, { context: composed.context }));
  return { name, source, ...(await loadRoot(source)) };
}

/**
 * The image of an input: from an index, the one `platform` picks (else `prefer`, a hint only, else
 * the only one); a single image, checked against `platform` when given.
 */
export async function imageOf(
  input: Input,
  platform: Platform | undefined,
  prefer?: Platform,
): Promise<LoadedImage> {
  const { source, parsed } = input;
  if (parsed.kind === 'manifest') {
    const image = await loadImage(source, input.root, input.bytes);
    checkPlatform(image, platform, input.name);
    return image;
  }
  let chosen: Descriptor;
  try {
    chosen = pickImage(parsed.index, platform ?? prefer, input.name);
  } catch (err) {
    if (platform !== undefined || prefer === undefined) throw err;
    chosen = pickImage(parsed.index, undefined, input.name);
  }
  return loadImage(source, chosen);
}

/** Opens `name` into `composed` and takes its image (see `imageOf`). */
export async function openImage(
  composed: ComposedSource,
  name: string,
  platform: Platform | undefined,
  prefer?: Platform,
): Promise<{ source: ImageSource; image: LoadedImage }> {
  const input = await openInput(composed, name);
  return { source: input.source, image: await imageOf(input, platform, prefer) };
}

/**
 * What a command that changes images one by one writes for an input: for an index without
 * `platform`, what `whole` makes of the index; else what `one` makes of the image `imageOf` gives.
 */
export async function eachImage(
  input: Input,
  platform: Platform | undefined,
  one: (image: LoadedImage) => Promise<Descriptor>,
  whole: (index: ImageIndex) => Promise<Descriptor>,
): Promise<Descriptor> {
  if (input.parsed.kind === 'index' && !platform) return whole(input.parsed.index);
  return one(await imageOf(input, platform));
}

/** The root a source names, parsed. */
export async function loadRoot(
  source: ImageSource,
): Promise<{ root: Descriptor; bytes: Buffer; parsed: ParsedManifest }> {
  const resolved = await source.resolve();
  // Only what identifies the content: a layout's ref.name annotation is not part of the image.
  const root: Descriptor = { mediaType: resolved.mediaType, digest: resolved.digest, size: resolved.size };
  const bytes = await source.fetchManifest(root);
  return { root, bytes, parsed: parseManifest(bytes, `${source.name} manifest`, root.mediaType) };
}

export interface LoadedImage {
  descriptor: Descriptor;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  config: ImageConfig;
  configBytes: Buffer;
}

/** Reads one image manifest and its config; refuses anything that is not a container image. */
export async function loadImage(source: ImageSource, desc: Descriptor, bytes?: Buffer): Promise<LoadedImage> {
  const manifestBytes = bytes ?? (await source.fetchManifest(desc));
  const parsed = parseManifest(manifestBytes, `${source.name} manifest ${desc.digest}`, desc.mediaType);
  if (parsed.kind !== 'manifest')
    throw new KilnError('E_UNSUPPORTED', `${source.name}: ${desc.digest} is a nested index, not an image`);
  const manifest = parsed.manifest;
  if (!isImageConfigType(manifest.config.mediaType))
    throw new KilnError(
      'E_UNSUPPORTED',
      `${source.name} is not a container image (config type ${manifest.config.mediaType})`,
      { hint: 'only images with an OCI or Docker image config can be changed' },
    );
  const configBytes = await readSmallBlob(source, manifest.config, MAX_CONFIG_BYTES);
  const config = parseConfig(configBytes, `${source.name} config`);
  if (typeof config.os !== 'string' || typeof config.architecture !== 'string')
    throw new KilnError('E_BAD_CONFIG', `${source.name} config has no os or architecture`);
  return { descriptor: desc, manifest, manifestBytes, config, configBytes };
}

export function isImageConfigType(mediaType: string): boolean {
  return mediaType === MediaType.OciConfig || mediaType === MediaType.DockerConfig;
}

/** The platform an image config declares, with the optional fields only when present. */
export function configPlatform(config: Partial<ImageConfig>): Platform | undefined {
  if (typeof config.os !== 'string' || typeof config.architecture !== 'string') return undefined;
  const p: Platform = { os: config.os, architecture: config.architecture };
  if (typeof config.variant === 'string' && config.variant !== '') p.variant = config.variant;
  const version = config['os.version'];
  if (typeof version === 'string' && version !== '') p['os.version'] = version;
  const features = config['os.features'];
  if (Array.isArray(features) && features.length > 0 && features.every((f) => typeof f === 'string'))
    p['os.features'] = features as string[];
  return p;
}

export { describePlatforms, indexImages, isUnknownPlatform, pickImage } from '../oci/select.js';

/** Checks that a single image is for the platform asked for (when one was). */
export function checkPlatform(image: LoadedImage, want: Platform | undefined, where: string): void {
  if (!want) return;
  const have = configPlatform(image.config);
  if (!have || !platformMatches(want, have))
    throw new KilnError(
      'E_NO_MATCHING_PLATFORM',
      `${where} is an image for ${have ? formatPlatform(have) : 'an unknown platform'}, not ${formatPlatform(want)}`,
    );
}

/** A stable key for duplicate detection: normalised os/arch/variant plus os.version and features. */
export function platformKey(p: Platform): string {
  const n = normalizePlatform(p);
  return JSON.stringify([
    n.os,
    n.architecture,
    n.variant ?? '',
    n['os.version'] ?? '',
    [...(n['os.features'] ?? [])].sort(),
  ]);
}

/** The time written into history and new configs: SOURCE_DATE_EPOCH, else the epoch (like package). */
export function defaultCreated(): string {
  return new Date(defaultMtime() * 1000).toISOString().replace('.000Z', 'Z');
}

/** `--created` as given, checked to be an RFC 3339 time, else `defaultCreated()`. */
export function checkCreated(created: string | undefined): string {
  const time = created ?? defaultCreated();
  if (Number.isNaN(Date.parse(time)))
    throw new KilnError(
      'E_USAGE',
      `--created must be an RFC 3339 time such as 2024-01-31T12:00:00Z, got '${time}'`,
    );
  return time;
}

/**
 * An index's manifests with every image (a manifest with an image config) replaced by what `each`
 * makes of it. Nested indexes, attestations (unknown/unknown) and artifacts are kept as they are,
 * served from `source`.
 */
export async function mapIndexImages(
  composed: ComposedSource,
  source: ImageSource,
  index: ImageIndex,
  each: (image: LoadedImage) => Promise<Descriptor>,
): Promise<Descriptor[]> {
  const manifests: Descriptor[] = [];
  for (const child of index.manifests) {
    let image: LoadedImage | undefined;
    if (isManifestType(child.mediaType) && !isUnknownPlatform(child.platform)) {
      const bytes = await source.fetchManifest(child);
      const parsed = parseManifest(bytes, `${source.name} manifest ${child.digest}`, child.mediaType);
      if (parsed.kind === 'manifest' && isImageConfigType(parsed.manifest.config.mediaType))
        image = await loadImage(source, child, bytes);
    }
    if (!image) {
      composed.addBase(child, source);
      manifests.push(child);
      continue;
    }
    manifests.push(replacedEntry(child, await each(image)));
  }
  return manifests;
}

/** An index entry pointing at `next` instead, keeping its platform and annotations. */
export function replacedEntry(child: Descriptor, next: Descriptor): Descriptor {
  const entry: Descriptor = { ...child, mediaType: next.mediaType, digest: next.digest, size: next.size };
  delete entry.data; // embedded content would be the old manifest's
  return entry;
}
