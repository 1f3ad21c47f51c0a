/**
 * Referrers in an OCI layout: the fallback tag as a `ref.name` entry of index.json, and cosign's
 * `.sig` beside it, each updated by compare-and-swap under index.json's lock, so concurrent
 * attaches and signers lose no entry.
 */
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import {
  type AmendResult,
  type AttachResult,
  type BlobContent,
  FALLBACK_LIST,
  fallbackIndex,
  type ReferrerArtifact,
  referrersTag,
  type TagList,
} from '../oci/referrers.js';
import { type Descriptor, type ImageIndex, REF_NAME_ANNOTATION } from '../oci/types.js';
import type { OciLayout } from './layout.js';

/** The fallback index under `tag` in the layout, and the index.json entry that names it. */
export async function layoutFallback(
  layout: OciLayout,
  tag: string,
): Promise<{ tagged?: Descriptor; index?: ImageIndex }> {
  const tagged = await taggedEntry(layout, tag);
  if (!tagged) return {};
  return { tagged, index: fallbackIndex(await layout.readBlob(tagged.digest), `${layout.dir}:${tag}`) };
}

async function taggedEntry(layout: OciLayout, tag: string): Promise<Descriptor | undefined> {
  return (await layout.readIndex()).manifests
    .filter((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag)
    .at(-1);
}

/** The referrers of `digest` listed in the layout (of one artifactType when given). */
export async function layoutReferrers(
  layout: OciLayout,
  digest: string,
  artifactType?: string,
): Promise<Descriptor[]> {
  const { index } = await layoutFallback(layout, referrersTag(digest));
  const found = index?.manifests ?? [];
  return artifactType ? found.filter((d) => d.artifactType === artifactType) : found;
}

/** Stores `artifact` in the layout as a referrer of `subject`. */
export async function attachInLayout(
  layout: OciLayout,
  artifact: ReferrerArtifact,
  subject: Descriptor,
): Promise<AttachResult> {
  const dir = layout.dir;
  if (!(await layout.hasBlob(subject.digest, subject.size)))
    throw new KilnError('E_NOT_FOUND', `${dir} does not hold ${subject.digest}, the referrer's subject`);
  await putBlobs(layout, artifact.blobs);
  await layout.putBytes(artifact.bytes);
  await amendInLayout(layout, referrersTag(subject.digest), FALLBACK_LIST, [artifact.descriptor], []);
  return { descriptor: artifact.descriptor, via: 'fallback-tag' };
}

async function putBlobs(layout: OciLayout, blobs: readonly BlobContent[]): Promise<void> {
  for (const [desc, content] of blobs) {
    if (Buffer.isBuffer(content)) await layout.putBytes(content);
    else if (!(await layout.hasBlob(desc.digest, desc.size)))
      await layout.writeBlob(await content(), { digest: desc.digest as Digest, size: desc.size });
  }
}

/**
 * Adds `add` to the list `list` keeps under `tag` (the blobs they name written first), keeping
 * every entry there: the tag is replaced only if nobody moved it since it was read.
 */
export async function amendInLayout<E>(
  layout: OciLayout,
  tag: string,
  list: TagList<E>,
  add: readonly E[],
  blobs: readonly BlobContent[],
): Promise<AmendResult> {
  await putBlobs(layout, blobs);
  const where = `${layout.dir}:${tag}`;
  for (;;) {
    const tagged = await taggedEntry(layout, tag);
    const bytes = tagged ? await layout.readBlob(tagged.digest) : undefined;
    const entries = bytes ? list.entries(bytes, where) : [];
    const present = new Set(entries.map((e) => list.key(e)));
    const missing = [...new Map(add.map((e) => [list.key(e), e])).entries()].flatMap(([k, e]) =>
      present.has(k) ? [] : [e],
    );
    if (tagged && missing.length === 0) return { descriptor: tagged, entries: entries.length };
    const next = list.manifest([...entries, ...missing], bytes);
    for (const [, blob] of next.blobs) await layout.putBytes(blob);
    const written = await layout.putBytes(next.bytes);
    const entry: Descriptor = {
      mediaType: next.mediaType,
      digest: written.digest,
      size: written.size,
      annotations: { [REF_NAME_ANNOTATION]: tag },
    };
    let raced = false;
    // Compare-and-swap under index.json's lock: replace the tag only if nobody moved it since the read.
    await layout.updateIndex((current) => {
      const now = current.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag).at(-1);
      if (now?.digest !== tagged?.digest) {
        raced = true;
        return current;
      }
      const manifests = current.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag);
      manifests.push(entry);
      return { ...current, manifests };
    });
    if (!raced) return { descriptor: entry, entries: entries.length + missing.length };
  }
}
