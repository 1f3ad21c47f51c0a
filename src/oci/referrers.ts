/**
 * The OCI 1.1 referrers model, pure: the fallback tag schema (an image index tagged `<alg>-<hex>` of
 * the subject lists its referrers, for registries without the referrers API and for layouts), the
 * empty config, and what an artifact to attach is made of. Registries (registry/referrers.ts) and
 * layouts (store/referrers.ts) keep the fallback tag themselves.
 */
import { KilnError } from '../errors.js';
import { parseDigest } from './digest.js';
import { MediaType } from './media-types.js';
import type { Descriptor, ImageIndex } from './types.js';
import { parseManifest } from './validate.js';

/** The empty JSON object `{}` as image-spec 1.1 defines it, for artifacts without a config. */
export const EMPTY_DESCRIPTOR: Descriptor = {
  mediaType: MediaType.OciEmpty,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
};
export const EMPTY_BYTES = Buffer.from('{}');

/** The fallback tag for a subject's referrers: `<algorithm>-<hex>`. */
export function referrersTag(subject: string): string {
  const { algorithm, hex } = parseDigest(subject);
  return `${algorithm}-${hex}`;
}

/** An artifact manifest to store as a referrer: its descriptor (as a referrers list holds it), bytes, blobs. */
export interface ReferrerArtifact {
  descriptor: Descriptor;
  bytes: Buffer;
  /** Every blob the manifest names (config and layers), with its content. */
  blobs: [Descriptor, Buffer][];
}

/** How an artifact was recorded under its subject. */
export interface AttachResult {
  descriptor: Descriptor;
  via: 'referrers-api' | 'fallback-tag';
}

/** The fallback index read back; refuses anything else under that tag. */
export function fallbackIndex(bytes: Buffer, where: string): ImageIndex {
  const parsed = parseManifest(bytes, where);
  if (parsed.kind !== 'index')
    throw new KilnError('E_BAD_MANIFEST', `${where} is not an image index; refusing to replace it`, {
      hint: 'the referrers tag schema keeps an index of referrers under this tag',
    });
  return parsed.index;
}

/** The fallback index with one more entry. */
export function withEntry(current: ImageIndex | undefined, entry: Descriptor): ImageIndex {
  return {
    ...current,
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [...(current?.manifests ?? []), entry],
  };
}
