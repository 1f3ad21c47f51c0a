/**
 * Referrers in an OCI layout: the fallback tag as a `ref.name` entry of index.json, updated by
 * compare-and-swap under index.json's lock, so concurrent attaches lose no entry.
 */
import { KilnError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import {
  type AttachResult,
  fallbackIndex,
  type ReferrerArtifact,
  referrersTag,
  withEntry,
} from '../oci/referrers.js';
import { type Descriptor, type ImageIndex, REF_NAME_ANNOTATION } from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import type { OciLayout } from './layout.js';

/** The fallback index under `tag` in the layout, and the index.json entry that names it. */
export async function layoutFallback(
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
  for (const [, bytes] of artifact.blobs) await layout.putBytes(bytes);
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
