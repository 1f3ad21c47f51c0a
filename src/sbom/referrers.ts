/**
 * OCI referrers (image-spec and distribution-spec 1.1): artifacts such as SBOMs stored beside an
 * image, whose manifest names the image as its `subject`.
 *
 * Pushing: the blobs, then the artifact manifest by digest. A registry with the referrers API says so
 * with `OCI-Subject` in its answer and indexes the artifact itself. Otherwise kiln keeps the
 * "referrers tag schema" fallback: an image index tagged `sha256-<hex of subject>` listing every
 * referrer. The same tag, as a `ref.name` entry of index.json, serves `oci:` layouts.
 *
 * Where they are kept is the transport's business (transport/transports.ts: a registry keeps the
 * fallback tag in registry/referrers.ts, a layout in store/referrers.ts); this module makes the
 * artifacts and finds them.
 */
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { selectManifest } from '../image/resolve.js';
import { defaultMtime } from '../layer/tar-writer.js';
import { sha256 } from '../oci/digest.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import type { AttachResult } from '../oci/referrers.js';
import { EMPTY_BYTES, EMPTY_DESCRIPTOR, referrersTag } from '../oci/referrers.js';
import { CREATED_ANNOTATION, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/types.js';
import { encodeJson, parseManifest } from '../oci/validate.js';
import type { RegistryOptions } from '../registry/registry.js';
import { openReferrers, openSource } from '../transport/open.js';
import { readSmallBlob } from '../transport/read.js';
import { transportOf } from '../transport/transports.js';

export type { AttachResult };
export { EMPTY_DESCRIPTOR, referrersTag };

import { type ImageLocation, parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import { type SbomInput, spdxDocument } from './spdx.js';

/** The media type of an SPDX JSON document. */
export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** An SBOM is a document a person could read; this bounds what `kiln sbom` holds in memory. */
const MAX_SBOM_BYTES = 256 * 1024 * 1024;
export interface ArtifactOptions {
  subject: Descriptor;
  artifactType: string;
  /** The media type of the one layer, `data`. */
  mediaType: string;
  data: Buffer;
  /** `org.opencontainers.image.created` defaults to SOURCE_DATE_EPOCH, else the epoch. */
  annotations?: Record<string, string>;
}

export interface Artifact {
  manifest: ImageManifest;
  bytes: Buffer;
  /** The manifest's descriptor as a referrers list holds it: with artifactType and annotations. */
  descriptor: Descriptor;
  layer: Descriptor;
  /** The layer's content. */
  data: Buffer;
}

/** The artifact manifest (image-spec 1.1 guidance: empty config, one layer, subject). Pure. */
export function artifactManifest(options: ArtifactOptions): Artifact {
  const layer: Descriptor = {
    mediaType: options.mediaType,
    digest: sha256(options.data),
    size: options.data.length,
  };
  const merged: Record<string, string> = { [CREATED_ANNOTATION]: defaultCreated(), ...options.annotations };
  const annotations: Record<string, string> = {};
  for (const key of Object.keys(merged).sort()) annotations[key] = merged[key]!;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: options.artifactType,
    config: { ...EMPTY_DESCRIPTOR },
    layers: [layer],
    subject: {
      mediaType: options.subject.mediaType,
      digest: options.subject.digest,
      size: options.subject.size,
    },
    annotations,
  };
  const bytes = encodeJson(manifest);
  const descriptor: Descriptor = {
    mediaType: MediaType.OciManifest,
    digest: sha256(bytes),
    size: bytes.length,
    artifactType: options.artifactType,
    annotations,
  };
  return { manifest, bytes, descriptor, layer, data: options.data };
}

function defaultCreated(): string {
  return new Date(defaultMtime() * 1000).toISOString().replace('.000Z', 'Z');
}

/** Options of `attachReferrer`: the subject image and the artifact to attach. */
export interface AttachOptions extends ArtifactOptions {
  /** Where the subject is: a registry reference (`repo[:tag]`) or `oci:DIR[:TAG]`. */
  to: string;
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

/** Stores an artifact as a referrer of `subject` in `to`. Attaching the same artifact again changes nothing. */
export async function attachReferrer(options: AttachOptions): Promise<AttachResult> {
  const artifact = artifactManifest(options);
  const store = await openReferrers(options.to, {
    ...(options.context ? { context: options.context } : {}),
    ...(options.registry ? { registry: options.registry } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    const blobs: [Descriptor, Buffer][] = [
      [EMPTY_DESCRIPTOR, EMPTY_BYTES],
      [artifact.layer, artifact.data],
    ];
    return await store.attach(
      { descriptor: artifact.descriptor, bytes: artifact.bytes, blobs },
      options.subject,
    );
  } finally {
    await store.close();
  }
}

export interface ListOptions {
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

/**
 * The referrers of `subject` (default: the manifest `ref` names) in `ref`'s repository or layout,
 * optionally only those of one artifactType.
 */
export async function listReferrers(
  ref: string,
  subject?: Descriptor,
  artifactType?: string,
  options: ListOptions = {},
): Promise<Descriptor[]> {
  const loc = parseLocation(ref);
  if (!transportOf(loc).capabilities.referrers) throw unsupported(ref, 'list');
  return withContext(options.context, async (context) => {
    const scoped = { ...options, context };
    let target = subject;
    if (!target) {
      const source = await openForReading(loc, ref, scoped);
      try {
        target = await source.resolve();
      } finally {
        await source.close();
      }
    }
    return referrersIn(ref, target.digest, artifactType, scoped);
  });
}

async function referrersIn(
  ref: string,
  digest: string,
  artifactType: string | undefined,
  options: ListOptions & { context: KilnContext },
): Promise<Descriptor[]> {
  const store = await openReferrers(ref, {
    context: options.context,
    ...(options.registry ? { registry: options.registry } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    return await store.list(digest, artifactType);
  } finally {
    await store.close();
  }
}

/** Options of `attachSbom`: the subject image and the SPDX document. */
export interface AttachSbomOptions extends SbomInput {
  to: string;
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

/** What `attachSbom` wrote. */
export interface AttachSbomResult extends AttachResult {
  /** The SPDX document's blob. */
  document: Descriptor;
}

/** Generates the SPDX document for `input` and attaches it to `input.subject` in `to`. */
export async function attachSbom(options: AttachSbomOptions): Promise<AttachSbomResult> {
  const { to, signal, registry, context, ...input } = options;
  const data = spdxDocument(input);
  const attach: AttachOptions = {
    to,
    subject: input.subject,
    artifactType: SPDX_MEDIA_TYPE,
    mediaType: SPDX_MEDIA_TYPE,
    data,
    annotations: { [CREATED_ANNOTATION]: input.created },
  };
  if (signal) attach.signal = signal;
  if (registry) attach.registry = registry;
  if (context) attach.context = context;
  const result = await attachReferrer(attach);
  return { ...result, document: { mediaType: SPDX_MEDIA_TYPE, digest: sha256(data), size: data.length } };
}

/** An SBOM found among an image's referrers. */
export interface FoundSbom {
  /** The image manifest the SBOM describes. */
  subject: Descriptor;
  /** The artifact manifest holding it. */
  referrer: Descriptor;
  /** The SPDX JSON, as stored. */
  document: Buffer;
}

/**
 * The SBOM of the image `ref` names. For an index: the manifest for `platform`, else the only one.
 * With several SBOMs attached, the newest (by created annotation, then digest) wins.
 */
export async function findSbom(
  ref: string,
  options: { platform?: Platform } & ListOptions = {},
): Promise<FoundSbom> {
  const loc = parseLocation(ref);
  if (!transportOf(loc).capabilities.referrers) throw unsupported(ref, 'read');
  return withContext(options.context, (context) => findIn(loc, ref, { ...options, context }));
}

async function findIn(
  loc: ImageLocation,
  ref: string,
  options: { platform?: Platform } & ListOptions & { context: KilnContext },
): Promise<FoundSbom> {
  const source = await openForReading(loc, ref, options);
  try {
    const root = await source.resolve();
    const parsed = parseManifest(await source.fetchManifest(root), `${source.name} manifest`, root.mediaType);
    let subject: Descriptor = root;
    if (parsed.kind === 'index') subject = chooseImage(parsed.index, options.platform, source.name);
    subject = { mediaType: subject.mediaType, digest: subject.digest, size: subject.size };
    const found = await referrersIn(ref, subject.digest, SPDX_MEDIA_TYPE, options);
    if (found.length === 0)
      throw new KilnError('E_NOT_FOUND', `no SBOM is attached to ${ref} (${subject.digest})`, {
        hint: `kiln build attaches one unless --sbom=false; without the referrers API a registry lists them under the tag ${referrersTag(subject.digest)}`,
      });
    const referrer = [...found].sort(newestLast).at(-1)!;
    const art = parseManifest(
      await source.fetchManifest(referrer),
      `${source.name} referrer ${referrer.digest}`,
    );
    if (art.kind !== 'manifest' || art.manifest.layers.length === 0)
      throw new KilnError(
        'E_BAD_MANIFEST',
        `${source.name}: referrer ${referrer.digest} holds no SBOM layer`,
      );
    const layer =
      art.manifest.layers.find((l) => l.mediaType === SPDX_MEDIA_TYPE) ??
      (art.manifest.layers[0] as Descriptor);
    const document = await readSmallBlob(source, layer, MAX_SBOM_BYTES);
    return { subject, referrer, document };
  } finally {
    await source.close();
  }
}

/** The SPDX document attached to the image `ref` names (see findSbom). */
export async function readSbom(
  ref: string,
  options: { platform?: Platform; context?: KilnContext } = {},
): Promise<Buffer> {
  return (await findSbom(ref, options)).document;
}

function newestLast(a: Descriptor, b: Descriptor): number {
  const ca = a.annotations?.[CREATED_ANNOTATION] ?? '';
  const cb = b.annotations?.[CREATED_ANNOTATION] ?? '';
  if (ca !== cb) return ca < cb ? -1 : 1;
  return a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0;
}

/** From an index: the platform asked for, else the only image (attestations are not images). */
function chooseImage(index: ImageIndex, platform: Platform | undefined, where: string): Descriptor {
  if (platform) return selectManifest(index, platform, where);
  const images = index.manifests.filter(
    (m) =>
      (isManifestType(m.mediaType) || m.mediaType === undefined) &&
      !(m.platform?.os === 'unknown' && m.platform.architecture === 'unknown'),
  );
  if (images.length === 1) return images[0]!;
  const platforms = images.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
  throw new KilnError(
    images.length === 0 ? 'E_NOT_FOUND' : 'E_AMBIGUOUS',
    images.length === 0
      ? `${where} is an index without images`
      : `${where} is an index of ${images.length} images; each has its own SBOM`,
    images.length === 0 ? {} : { hint: `choose one with --platform: ${platforms}` },
  );
}

function unsupported(ref: string, what: string): KilnError {
  return new KilnError('E_UNSUPPORTED', `can't ${what} referrers in ${ref}`, {
    hint: 'referrers live in a registry (REGISTRY/REPO[:TAG]) or an OCI layout (oci:DIR[:TAG])',
  });
}

/** A source for the image `ref` names (an untagged `oci:DIR` skips fallback tags: see findInIndex). */
function openForReading(
  _loc: ImageLocation,
  ref: string,
  options: ListOptions & { context: KilnContext },
): Promise<ImageSource> {
  return openSource(ref, { context: options.context, registry: options.registry, signal: options.signal });
}
