/**
 * OCI referrers (image-spec and distribution-spec 1.1): artifacts such as SBOMs stored beside an
 * image, whose manifest names the image as its `subject`.
 *
 * Pushing: the blobs, then the artifact manifest by digest. A registry with the referrers API says so
 * with `OCI-Subject` in its answer and indexes the artifact itself. Otherwise kiln keeps the
 * "referrers tag schema" fallback: an image index tagged `sha256-<hex of subject>` listing every
 * referrer. The same tag, as a `ref.name` entry of index.json, serves `oci:` layouts.
 *
 * Concurrency: in a layout the tag's update is a compare-and-swap under index.json's lock, so no
 * entry is lost. A registry offers no compare-and-swap on tags: kiln re-reads the tag just before
 * writing, and after writing checks twice (at once, then a few round trips later) that its entry is
 * still there, writing again if a concurrent writer's update dropped it, and failing (E_REGISTRY)
 * after TAG_ATTEMPTS writes. That closes most of the window but not all: a writer whose PUT lands
 * after our second look still drops our entry (measured against distribution 2.8: none lost with up
 * to 8 parallel attaches to one image, about 1 in 16 with 16). Attaching is idempotent, so attaching
 * again repairs it. Each platform's image is its own subject, so one build never contends with itself.
 */
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { readSmallBlob, selectManifest } from '../image/resolve.js';
import { defaultMtime } from '../layer/tar-writer.js';
import { type Digest, parseDigest, sha256 } from '../oci/digest.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import {
  CREATED_ANNOTATION,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  REF_NAME_ANNOTATION,
} from '../oci/types.js';
import { encodeJson, parseManifest } from '../oci/validate.js';
import type { RegistryOptions } from '../registry/registry.js';
import type { Repository } from '../registry/repository.js';
import { sleep } from '../registry/retry.js';
import { OciLayout } from '../store/layout.js';
import { openSource } from '../transport/open.js';
import { type ImageLocation, parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import { type SbomInput, spdxDocument } from './spdx.js';

export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** The empty JSON object `{}` as image-spec 1.1 defines it, for artifacts without a config. */
export const EMPTY_DESCRIPTOR: Descriptor = {
  mediaType: MediaType.OciEmpty,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
};
const EMPTY_BYTES = Buffer.from('{}');

/** An SBOM is a document a person could read; this bounds what `kiln sbom` holds in memory. */
const MAX_SBOM_BYTES = 256 * 1024 * 1024;
/** Writes of the fallback tag that a concurrent writer may undo before kiln gives up. */
const TAG_ATTEMPTS = 6;
/** The least wait before the second look at a fallback tag kiln wrote (see attachInRegistry). */
const SETTLE_MIN_MS = 50;

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

/** The fallback tag for a subject's referrers: `<algorithm>-<hex>`. */
export function referrersTag(subject: string): string {
  const { algorithm, hex } = parseDigest(subject);
  return `${algorithm}-${hex}`;
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

export interface AttachOptions extends ArtifactOptions {
  /** Where the subject is: a registry reference (`repo[:tag]`) or `oci:DIR[:TAG]`. */
  to: string;
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

export interface AttachResult {
  descriptor: Descriptor;
  via: 'referrers-api' | 'fallback-tag';
}

/** Stores an artifact as a referrer of `subject` in `to`. Attaching the same artifact again changes nothing. */
export async function attachReferrer(options: AttachOptions): Promise<AttachResult> {
  const artifact = artifactManifest(options);
  const loc = parseLocation(options.to);
  if (loc.transport === 'registry')
    return withContext(options.context, async (context) =>
      attachInRegistry(
        await context.repository(loc.ref, options.registry),
        artifact,
        options.subject,
        context.signalWith(options.signal),
      ),
    );
  if (loc.transport === 'oci') return attachInLayout(loc.path, artifact, options.subject);
  throw unsupported(options.to, 'attach');
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
  if (loc.transport !== 'registry' && loc.transport !== 'oci') throw unsupported(ref, 'list');
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
    return referrersIn(loc, target.digest, artifactType, scoped);
  });
}

async function referrersIn(
  loc: ImageLocation,
  digest: string,
  artifactType: string | undefined,
  options: ListOptions & { context: KilnContext },
): Promise<Descriptor[]> {
  const { context } = options;
  if (loc.transport === 'registry')
    return (await context.repository(loc.ref, options.registry)).referrers(
      digest,
      artifactType,
      context.signalWith(options.signal),
    );
  if (loc.transport !== 'oci') return [];
  const layout = await OciLayout.open(loc.path);
  const { index } = await layoutFallback(layout, referrersTag(digest));
  const found = index?.manifests ?? [];
  return artifactType ? found.filter((d) => d.artifactType === artifactType) : found;
}

export interface AttachSbomOptions extends SbomInput {
  to: string;
  signal?: AbortSignal;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
  /** Registry settings on top of the context's. */
  registry?: RegistryOptions;
}

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
  if (loc.transport !== 'registry' && loc.transport !== 'oci') throw unsupported(ref, 'read');
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
    const found = await referrersIn(loc, subject.digest, SPDX_MEDIA_TYPE, options);
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
  loc: ImageLocation,
  ref: string,
  options: ListOptions & { context: KilnContext },
): Promise<ImageSource> {
  if (loc.transport === 'registry')
    return openSource(ref, { context: options.context, registry: options.registry, signal: options.signal });
  return openSource(ref);
}

async function attachInRegistry(
  repo: Repository,
  artifact: Artifact,
  subject: Descriptor,
  signal: AbortSignal | undefined,
): Promise<AttachResult> {
  const blobs: [Descriptor, Buffer][] = [
    [EMPTY_DESCRIPTOR, EMPTY_BYTES],
    [artifact.layer, artifact.data],
  ];
  for (const [desc, bytes] of blobs) {
    const size = await repo.hasBlob(desc.digest, signal);
    if (size === desc.size || size === -1) continue;
    const blob = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    await repo.uploadBlob(blob, async () => once(bytes), signal ? { signal } : {});
  }
  const pushed = await repo.pushManifest(
    artifact.descriptor.digest,
    artifact.bytes,
    MediaType.OciManifest,
    signal,
  );
  if (pushed.subject) return { descriptor: artifact.descriptor, via: 'referrers-api' };
  const tag = referrersTag(subject.digest);
  let writes = 0;
  let settled = false;
  let roundTrip = 0;
  for (;;) {
    // Read just before writing, and again after: the write is done when the entry is there.
    const started = Date.now();
    const current = await registryFallback(repo, tag, signal);
    if (current?.manifests.some((m) => m.digest === artifact.descriptor.digest)) {
      // After a write of ours, look once more a little later: a concurrent writer that read before
      // our write lands its PUT within about a round trip, and would drop our entry unseen.
      if (writes === 0 || settled) return { descriptor: artifact.descriptor, via: 'fallback-tag' };
      settled = true;
      await sleep(Math.max(SETTLE_MIN_MS, 3 * roundTrip) * (1 + Math.random()), signal);
      continue;
    }
    settled = false;
    if (writes >= TAG_ATTEMPTS)
      throw new KilnError(
        'E_REGISTRY',
        `concurrent writers replaced the referrers tag ${tag} in ${repo.registry.host}/${repo.name} ${writes} times without kiln's entry`,
        { hint: 'attach again: attaching is idempotent' },
      );
    await repo.putManifest(
      tag,
      encodeJson(withEntry(current, artifact.descriptor)),
      MediaType.OciIndex,
      signal,
    );
    writes++;
    roundTrip = Date.now() - started;
  }
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function registryFallback(
  repo: Repository,
  tag: string,
  signal: AbortSignal | undefined,
): Promise<ImageIndex | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { bytes } = await repo.getManifest(tag, signal);
      return fallbackIndex(bytes, `${repo.registry.host}/${repo.name}:${tag}`);
    } catch (err) {
      if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return undefined;
      // distribution may announce one version of a tag being rewritten and send another: read again.
      if (!(err instanceof KilnError && err.code === 'E_DIGEST_MISMATCH') || attempt >= 3) throw err;
    }
  }
}

function fallbackIndex(bytes: Buffer, where: string): ImageIndex {
  const parsed = parseManifest(bytes, where);
  if (parsed.kind !== 'index')
    throw new KilnError('E_BAD_MANIFEST', `${where} is not an image index; refusing to replace it`, {
      hint: 'the referrers tag schema keeps an index of referrers under this tag',
    });
  return parsed.index;
}

function withEntry(current: ImageIndex | undefined, entry: Descriptor): ImageIndex {
  return {
    ...current,
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [...(current?.manifests ?? []), entry],
  };
}

async function layoutFallback(
  layout: OciLayout,
  tag: string,
): Promise<{ tagged?: Descriptor; index?: ImageIndex }> {
  const entries = (await layout.readIndex()).manifests.filter(
    (m) => m.annotations?.[REF_NAME_ANNOTATION] === tag,
  );
  const tagged = entries.at(-1);
  if (!tagged) return {};
  return { tagged, index: fallbackIndex(await layout.readBlob(tagged.digest), `${layout.dir}:${tag}`) };
}

async function attachInLayout(dir: string, artifact: Artifact, subject: Descriptor): Promise<AttachResult> {
  const layout = await OciLayout.open(dir);
  if (!(await layout.hasBlob(subject.digest, subject.size)))
    throw new KilnError('E_NOT_FOUND', `${dir} does not hold ${subject.digest}, the referrer's subject`);
  await layout.putBytes(EMPTY_BYTES);
  await layout.putBytes(artifact.data);
  await layout.putBytes(artifact.bytes);
  const tag = referrersTag(subject.digest);
  for (;;) {
    const { tagged, index } = await layoutFallback(layout, tag);
    if (index?.manifests.some((m) => m.digest === artifact.descriptor.digest))
      return { descriptor: artifact.descriptor, via: 'fallback-tag' };
    const written = await layout.putBytes(encodeJson(withEntry(index, artifact.descriptor)));
    let raced = false;
    // Compare-and-swap under index.json's lock: replace the tag only if nobody moved it since the read.
    await layout.updateIndex((current) => {
      const now = current.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag).at(-1);
      if (now?.digest !== tagged?.digest) {
        raced = true;
        return current;
      }
      const manifests = current.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag);
      manifests.push({
        mediaType: MediaType.OciIndex,
        digest: written.digest as Digest,
        size: written.size,
        annotations: { [REF_NAME_ANNOTATION]: tag },
      });
      return { ...current, manifests };
    });
    if (!raced) return { descriptor: artifact.descriptor, via: 'fallback-tag' };
  }
}
