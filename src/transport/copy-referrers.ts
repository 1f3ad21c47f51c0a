/**
 * What refers to an image, copied along with it (`kiln copy --referrers`). For every manifest
 * copied (the root and, for an index, each manifest under it):
 *
 * - its OCI 1.1 referrers (Sigstore bundles, attestations, SBOMs), listed by the source's referrers
 *   API or fallback tag, are stored in the destination's ReferrerStore: pushed to a registry (which
 *   indexes them, or gets the fallback tag `sha256-<hex>` amended), or written into a layout with
 *   index.json's fallback entry amended. A listed manifest whose `subject` is not the manifest it is
 *   listed for is left behind (`skipped`), as is a referrer that is an index;
 * - cosign's tags beside it (`sha256-<hex>.sig`, `.att`, `.sbom`) are copied byte for byte; when the
 *   destination already holds another `.sig` or `.att` there, the source's layers are added to it
 *   (the amend every signer uses), so signatures made at the mirror are kept;
 * - and then the same for every manifest copied this way (referrers of referrers), to MAX_DEPTH.
 *
 * Everything is addressed by digest and checked as it is written: blobs stream from the source
 * into the destination, which verifies them; manifests are checked against their digests here.
 */
import { KilnError } from '../errors.js';
import { hasherFor } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import {
  type AttachResult,
  type BlobContent,
  COSIGN_TAG_SUFFIXES,
  cosignList,
  referrersTag,
} from '../oci/referrers.js';
import type { Descriptor } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import { copyImage } from './copy.js';
import { openDestination, openReferrers, openSource } from './open.js';
import { siblingLocation } from './parse.js';
import type { OpenOptions, ReferrerStore } from './transports.js';
import type { ImageSource } from './types.js';

/** Referrers of referrers are followed this deep. */
const MAX_DEPTH = 8;

/** A referrer copied: the manifest it refers to, and how the destination recorded it. */
export interface CopiedReferrer {
  /** The digest of the manifest it refers to. */
  subject: string;
  /** The referrer's manifest, with its artifactType and annotations. */
  descriptor: Descriptor;
  via: AttachResult['via'];
}

/** A cosign tag copied (`sha256-<hex>.sig`, `.att`, `.sbom`). */
export interface CopiedTag {
  tag: string;
  /** What the destination holds under the tag now. */
  descriptor: Descriptor;
  /** `copied` byte for byte, `merged` into what the destination had, or `present` already. */
  how: 'copied' | 'merged' | 'present';
}

/** A manifest listed as a referrer that was not copied, and why. */
export interface SkippedReferrer {
  digest: string;
  /** The manifest it was listed for. */
  subject: string;
  reason: string;
}

/** What `copy --referrers` carried over. */
export interface ReferrersCopy {
  referrers: CopiedReferrer[];
  tags: CopiedTag[];
  skipped: SkippedReferrer[];
}

/** One side of the copy: the reference as the user wrote it, and how to open it. */
export interface ReferrersSide {
  ref: string;
  options: OpenOptions;
}

/**
 * Copies the referrers and cosign tags of `manifests` (and theirs, recursively) from `from` to `to`;
 * `source` is `from` opened (manifests and blobs are read through it).
 */
export async function copyReferrers(
  source: ImageSource,
  from: ReferrersSide,
  to: ReferrersSide,
  manifests: readonly Descriptor[],
  created: string,
  signal?: AbortSignal,
): Promise<ReferrersCopy> {
  const result: ReferrersCopy = { referrers: [], tags: [], skipped: [] };
  const srcStore = await openReferrers(from.ref, from.options);
  let dstStore: ReferrerStore | undefined;
  try {
    dstStore = await openReferrers(to.ref, to.options);
    const queue = manifests.map((desc) => ({ desc: plain(desc), depth: 0 }));
    const seen = new Set(queue.map((q) => q.desc.digest));
    const follow = (desc: Descriptor, depth: number) => {
      if (seen.has(desc.digest) || depth > MAX_DEPTH) return;
      seen.add(desc.digest);
      queue.push({ desc: plain(desc), depth });
    };
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { desc, depth } = next;
      signal?.throwIfAborted();
      for (const suffix of COSIGN_TAG_SUFFIXES) {
        const copied = await copyTag(
          `${referrersTag(desc.digest)}.${suffix}`,
          from,
          to,
          dstStore,
          created,
          signal,
        );
        if (!copied) continue;
        result.tags.push(copied.tag);
        if (copied.tag.how !== 'merged') follow(copied.source, depth + 1);
      }
      for (const listed of await srcStore.list(desc.digest)) {
        if (seen.has(listed.digest)) continue;
        const referrer = await readReferrer(source, listed, desc);
        if ('reason' in referrer) {
          result.skipped.push({ digest: listed.digest, subject: desc.digest, reason: referrer.reason });
          continue;
        }
        const attached = await dstStore.attach(referrer, desc);
        result.referrers.push({ subject: desc.digest, descriptor: referrer.descriptor, via: attached.via });
        follow(referrer.descriptor, depth + 1);
      }
    }
    return result;
  } finally {
    await srcStore.close();
    await dstStore?.close();
  }
}

/** The manifests of an image: the root and, for an index, every manifest under it. */
export async function manifestsUnder(source: ImageSource, root: Descriptor): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  const seen = new Set<string>();
  const walk = async (desc: Descriptor, depth: number): Promise<void> => {
    if (seen.has(desc.digest) || depth > MAX_DEPTH) return;
    seen.add(desc.digest);
    out.push(plain(desc));
    const parsed = parseManifest(await source.fetchManifest(desc), `manifest ${desc.digest}`, desc.mediaType);
    if (parsed.kind === 'index') for (const child of parsed.index.manifests) await walk(child, depth + 1);
  };
  await walk(root, 0);
  return out;
}

/** A listed referrer read from the source, as an artifact to attach; or why it is left behind. */
async function readReferrer(
  source: ImageSource,
  listed: Descriptor,
  subject: Descriptor,
): Promise<{ descriptor: Descriptor; bytes: Buffer; blobs: BlobContent[] } | { reason: string }> {
  const bytes = await source.fetchManifest(listed);
  const hash = hasherFor(listed.digest).update(bytes).digest('hex');
  if (`${listed.digest.split(':')[0]}:${hash}` !== listed.digest)
    throw new KilnError('E_DIGEST_MISMATCH', `${source.name}: referrer ${listed.digest} has other content`);
  const parsed = parseManifest(bytes, `${source.name} referrer ${listed.digest}`, listed.mediaType);
  if (parsed.kind !== 'manifest') return { reason: 'an index: kiln copies referrers that are manifests' };
  const m = parsed.manifest;
  if (m.subject?.digest !== subject.digest)
    return { reason: `listed for ${subject.digest} but its subject is ${m.subject?.digest ?? 'missing'}` };
  // As the referrers API lists it (image-spec 1.1): artifactType, else the config's media type.
  const descriptor: Descriptor = {
    mediaType: listed.mediaType || m.mediaType || MediaType.OciManifest,
    digest: listed.digest,
    size: bytes.length,
    artifactType: m.artifactType ?? m.config.mediaType,
    ...(m.annotations ? { annotations: m.annotations } : {}),
  };
  const blobs = new Map<string, BlobContent>();
  for (const b of [m.config, ...m.layers]) blobs.set(b.digest, [plain(b), () => source.fetchBlob(plain(b))]);
  return { descriptor, bytes, blobs: [...blobs.values()] };
}

/**
 * Copies the cosign tag `tag` when the source has it: byte for byte, or merged into the
 * destination's `.sig`/`.att` when it holds another one. Undefined when the source has no such tag.
 */
async function copyTag(
  tag: string,
  from: ReferrersSide,
  to: ReferrersSide,
  dstStore: ReferrerStore,
  created: string,
  signal: AbortSignal | undefined,
): Promise<{ tag: CopiedTag; source: Descriptor } | undefined> {
  const src = await openTagged(siblingLocation(from.ref, tag)!, from.options);
  if (!src) return undefined;
  try {
    const dstRef = siblingLocation(to.ref, tag)!;
    const existing = await openTagged(dstRef, to.options);
    await existing?.source.close();
    if (existing?.root.digest === src.root.digest)
      return { tag: { tag, descriptor: src.root, how: 'present' }, source: src.root };
    const parsed = parseManifest(
      await src.source.fetchManifest(src.root),
      `${src.source.name}`,
      src.root.mediaType,
    );
    if (!existing || tag.endsWith('.sbom') || parsed.kind !== 'manifest') {
      const destination = await openDestination(dstRef, to.options);
      await copyImage(src.source, destination, signal ? { signal } : {});
      return { tag: { tag, descriptor: src.root, how: 'copied' }, source: src.root };
    }
    const layers = parsed.manifest.layers;
    const blobs: BlobContent[] = layers.map((l) => [plain(l), () => src.source.fetchBlob(plain(l))]);
    const amended = await dstStore.amend(tag, cosignList(created), layers, blobs);
    return { tag: { tag, descriptor: plain(amended.descriptor), how: 'merged' }, source: src.root };
  } finally {
    await src.source.close();
  }
}

/** The source `ref` names and what it resolves to; undefined when there is no such tag. */
async function openTagged(
  ref: string,
  options: OpenOptions,
): Promise<{ source: ImageSource; root: Descriptor } | undefined> {
  const source = await openSource(ref, options);
  try {
    return { source, root: plain(await source.resolve()) };
  } catch (err) {
    await source.close();
    if (err instanceof KilnError && err.code === 'E_NOT_FOUND') return undefined;
    throw err;
  }
}

function plain(d: Descriptor): Descriptor {
  return { mediaType: d.mediaType || MediaType.OciManifest, digest: d.digest, size: d.size };
}
