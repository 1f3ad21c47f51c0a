/**
 * The OCI 1.1 referrers model, pure: the fallback tag schema (an image index tagged `<alg>-<hex>` of
 * the subject lists its referrers, for registries without the referrers API and for layouts), the
 * empty config, and what an artifact to attach is made of. Registries (registry/referrers.ts) and
 * layouts (store/referrers.ts) keep the fallback tag themselves.
 *
 * Both the fallback index and cosign's tags beside it (`<alg>-<hex>.sig`, `.att`: a manifest whose
 * layers are the signatures) are lists kept in one manifest under a tag, amended by read, add,
 * write: `TagList` says how to read and write each, so one amend loop serves both.
 */
import { KilnError } from '../errors.js';
import { parseDigest, sha256 } from './digest.js';
import { MediaType } from './media-types.js';
import type { Descriptor, ImageIndex, ImageManifest } from './types.js';
import { encodeJson, parseManifest } from './validate.js';

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

/** cosign's tag for a subject's signatures: `<algorithm>-<hex>.sig`. */
export function signatureTag(subject: string): string {
  return `${referrersTag(subject)}.sig`;
}

/** cosign's tags beside a subject, each a manifest of layers: signatures, attestations, an SBOM. */
export const COSIGN_TAG_SUFFIXES = ['sig', 'att', 'sbom'] as const;

/** A blob's content: in memory, or a function that opens it as a stream (checked where it is written). */
export type BlobContent = [Descriptor, Buffer | (() => Promise<AsyncIterable<Uint8Array>>)];

/** An artifact manifest to store as a referrer: its descriptor (as a referrers list holds it), bytes, blobs. */
export interface ReferrerArtifact {
  /** Its media type is the manifest's (an OCI image manifest, as a rule). */
  descriptor: Descriptor;
  bytes: Buffer;
  /** Every blob the manifest names (config and layers), with its content. */
  blobs: BlobContent[];
}

/**
 * A list kept in one manifest under a tag: entries are added by reading it, adding, writing it back.
 * A registry has no compare-and-swap on tags, so the writer re-reads to see its entries land
 * (registry/referrers.ts); a layout swaps under index.json's lock (store/referrers.ts).
 */
export interface TagList<E> {
  /** What the tag holds, for messages. */
  readonly what: string;
  /** The entries of the manifest under the tag; E_BAD_MANIFEST when it is not such a list. */
  entries(bytes: Buffer, where: string): E[];
  /** Two entries with one key are one entry. */
  key(entry: E): string;
  /** The manifest listing `entries` (what `current` held besides them kept), and the blobs it names that it makes. */
  manifest(
    entries: E[],
    current: Buffer | undefined,
  ): { mediaType: string; bytes: Buffer; blobs: [Descriptor, Buffer][] };
}

/** The fallback tag's index: one entry per referrer, by digest. */
export const FALLBACK_LIST: TagList<Descriptor> = {
  what: 'referrers index',
  entries: (bytes, where) => fallbackIndex(bytes, where).manifests,
  key: (d) => d.digest,
  manifest(entries, current) {
    const index = current ? fallbackIndex(current, 'the referrers index') : undefined;
    const next: ImageIndex = {
      ...index,
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: entries,
    };
    return { mediaType: MediaType.OciIndex, bytes: encodeJson(next), blobs: [] };
  },
};

/**
 * cosign's signature (`.sig`) or attestation (`.att`) manifest: an OCI image manifest, one layer per
 * signature, and an image config whose rootfs lists the layers (cosign's form; `created` its time).
 */
export function cosignList(created: string): TagList<Descriptor> {
  return {
    what: 'cosign signature manifest',
    entries(bytes, where) {
      const parsed = parseManifest(bytes, where);
      if (parsed.kind !== 'manifest')
        throw new KilnError('E_BAD_MANIFEST', `${where} is an index, not a cosign signature manifest`, {
          hint: "cosign's sha256-<hex>.sig tag holds an image manifest with one layer per signature",
        });
      return parsed.manifest.layers;
    },
    // The same payload signed twice is two signatures: the annotations tell them apart.
    key: (l) => `${l.digest} ${JSON.stringify(Object.entries(l.annotations ?? {}).sort())}`,
    manifest(layers, current) {
      const config = encodeJson({
        architecture: '',
        config: {},
        created,
        history: layers.map(() => ({ created: '0001-01-01T00:00:00Z' })),
        os: '',
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      });
      const configDesc: Descriptor = {
        mediaType: MediaType.OciConfig,
        digest: sha256(config),
        size: config.length,
      };
      const previous = current ? parseManifest(current, 'the cosign signature manifest') : undefined;
      const annotations = previous?.kind === 'manifest' ? previous.manifest.annotations : undefined;
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: configDesc,
        layers,
        ...(annotations ? { annotations } : {}),
      };
      return { mediaType: MediaType.OciManifest, bytes: encodeJson(manifest), blobs: [[configDesc, config]] };
    },
  };
}

/** What amending a tag left there: the manifest under it and how many entries it lists. */
export interface AmendResult {
  descriptor: Descriptor;
  entries: number;
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
