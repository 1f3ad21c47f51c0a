/**
 * A source seen in one media-type family (`kiln copy --format`, and what `index create` lists):
 * the conversion of src/oci/media-type-policy.ts applied to every manifest and index under the root.
 */
import { KilnError } from '../errors.js';
import { sha256 } from '../oci/digest.js';
import {
  type Family,
  familyOf,
  indexInFamily,
  indexType,
  type ManifestFormat,
  manifestInFamily,
} from '../oci/media-type-policy.js';
import { isIndexType, isManifestType } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import { encodeJson, parseManifest } from '../oci/validate.js';
import type { BlobOrigin, ImageSource } from './types.js';

/** Attestations (buildx) in an index name the image they describe by digest in this annotation. */
const REFERENCE_DIGEST = 'vnd.docker.reference.digest';
const MAX_DEPTH = 4;

/**
 * `source` seen in `format`: every manifest and index under its root that is in the other family is
 * converted (re-serialised with the family's media types; config and layer blobs are the same bytes);
 * what is in the family already keeps its bytes and digest. Converting to Docker leaves out
 * attestations (a Docker manifest list can't hold them) and refuses artifacts.
 */
export function inFormat(source: ImageSource, format: ManifestFormat): ImageSource {
  return new FormatSource(source, format);
}

/** An attestation entry of an index (buildx): describes the image whose digest it names. */
function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

class FormatSource implements ImageSource {
  /** Converted manifests and indexes, by their new digest. */
  private readonly converted = new Map<string, Buffer>();
  private readonly done = new Map<string, Promise<Descriptor>>();

  constructor(
    private readonly inner: ImageSource,
    private readonly family: Family,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get synthesized(): boolean | undefined {
    return this.inner.synthesized;
  }

  async resolve(): Promise<Descriptor> {
    return this.convert(await this.inner.resolve(), 0);
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    const bytes = this.converted.get(desc.digest);
    if (bytes) {
      if (bytes.length !== desc.size)
        throw new KilnError(
          'E_SIZE_MISMATCH',
          `manifest ${desc.digest} is ${bytes.length} bytes, not ${desc.size}`,
        );
      return bytes;
    }
    return this.inner.fetchManifest(desc);
  }

  fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    return this.inner.fetchBlob(desc);
  }

  blobOrigin(desc: Descriptor): BlobOrigin | undefined {
    return this.inner.blobOrigin?.(desc);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** `desc` in the family: a new descriptor when converted (its bytes kept here), else `desc`. */
  private convert(desc: Descriptor, depth: number): Promise<Descriptor> {
    let result = this.done.get(desc.digest);
    if (!result) {
      result = this.convertOnce(desc, depth);
      this.done.set(desc.digest, result);
    }
    return result.then((next) => (next.digest === desc.digest ? desc : replaced(desc, next)));
  }

  private async convertOnce(desc: Descriptor, depth: number): Promise<Descriptor> {
    if (depth > MAX_DEPTH)
      throw new KilnError('E_BAD_MANIFEST', `indexes nest deeper than ${MAX_DEPTH} levels at ${desc.digest}`);
    if (desc.mediaType !== undefined && !isManifestType(desc.mediaType) && !isIndexType(desc.mediaType)) {
      if (this.family === 'docker')
        throw new KilnError(
          'E_UNSUPPORTED',
          `${this.name} lists a ${desc.mediaType}, which Docker v2 can't`,
          {
            hint: 'keep it OCI: leave out --format docker',
          },
        );
      return desc;
    }
    const bytes = await this.inner.fetchManifest(desc);
    const parsed = parseManifest(bytes, `${this.name} manifest ${desc.digest}`, desc.mediaType);
    const where = `${this.name} (${desc.digest})`;
    if (parsed.kind === 'manifest') {
      const next = manifestInFamily(parsed.manifest, this.family, where);
      return next === parsed.manifest ? desc : this.keep(next.mediaType!, encodeJson(next));
    }
    const index = parsed.index;
    const renamed = new Map<string, string>();
    const entries: Descriptor[] = [];
    for (const child of index.manifests) {
      if (child.digest === desc.digest)
        throw new KilnError('E_BAD_MANIFEST', `index ${desc.digest} lists itself`);
      if (this.family === 'docker' && isAttestation(child)) continue;
      if (this.family === 'docker' && isIndexType(child.mediaType))
        throw new KilnError('E_UNSUPPORTED', `${where} nests an index, which a Docker manifest list can't`, {
          hint: 'keep it OCI: leave out --format docker',
        });
      const next = await this.convert(child, depth + 1);
      if (next.digest !== child.digest) renamed.set(child.digest, next.digest);
      entries.push(next);
    }
    // An attestation names its image by digest: the converted image's.
    const manifests = entries.map((e) => {
      const ref = e.annotations?.[REFERENCE_DIGEST];
      const to = ref === undefined ? undefined : renamed.get(ref);
      return to ? { ...e, annotations: { ...e.annotations, [REFERENCE_DIGEST]: to } } : e;
    });
    const next = indexInFamily(index, this.family, manifests);
    const same =
      familyOf(index.mediaType ?? desc.mediaType) === this.family &&
      encodeJson(next).equals(encodeJson(index));
    return same ? desc : this.keep(indexType(this.family), encodeJson(next));
  }

  private keep(mediaType: string, bytes: Buffer): Descriptor {
    const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
    this.converted.set(desc.digest, bytes);
    return desc;
  }
}

/** An index entry or root descriptor moved to a converted manifest: platform kept, old content dropped. */
function replaced(desc: Descriptor, next: Descriptor): Descriptor {
  const out: Descriptor = { ...desc, mediaType: next.mediaType, digest: next.digest, size: next.size };
  delete out.data;
  if (familyOf(next.mediaType) === 'docker') {
    delete out.annotations;
    delete out.artifactType;
  }
  return out;
}
