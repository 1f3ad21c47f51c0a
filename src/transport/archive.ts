import { KilnError } from '../errors.js';
import type { IndexedEntry } from '../layer/tar-index.js';
import { isGzip } from '../layer/tar-reader.js';
import { type Digest, newHash, parseDigest, sha256 } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import { familiarReference, formatReference, parseReference, type Reference } from '../oci/reference.js';
import { type Descriptor, type ImageIndex, type ImageManifest, REF_NAME_ANNOTATION } from '../oci/types.js';
import { encodeJson, MAX_MANIFEST_BYTES, parseManifest } from '../oci/validate.js';
import { expectSize, verified } from '../oci/verify.js';
import { findInIndex } from '../store/layout.js';
import { ArchiveFile } from './archive-file.js';
import { ArchiveWriter } from './archive-writer.js';
import type { ImageDestination, ImageSource } from './types.js';

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

function blobMember(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `blobs/${algorithm}/${hex}`;
}

/**
 * Writes an OCI layout as a tar stream (`oci-archive:`), and with `docker` also the
 * `manifest.json` and `repositories` of `docker save`, so `docker load` reads the same file.
 * Members go straight into the archive as they arrive; nothing is staged on disk first.
 */
export class ArchiveDestination implements ImageDestination {
  private readonly writer: ArchiveWriter;
  private readonly written = new Set<string>();
  private readonly manifests = new Map<string, Buffer>();
  private started = false;
  readonly singleImage: boolean;
  readonly sequential = true;

  constructor(
    readonly name: string,
    file: string,
    private readonly kind: 'oci' | 'docker',
    private readonly tag: string | undefined,
    private readonly dockerRef?: Reference,
  ) {
    this.writer = new ArchiveWriter(file);
    this.singleImage = kind === 'docker';
  }

  private async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.writer.addBytes('oci-layout', Buffer.from(LAYOUT_FILE));
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.written.has(desc.digest);
  }

  async putBlob(desc: Descriptor, content: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.written.has(desc.digest)) return;
    await this.start();
    this.written.add(desc.digest);
    await this.writer.addStream(blobMember(desc.digest), desc.size, verified(content, desc, this.name));
  }

  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    this.manifests.set(desc.digest, bytes);
    if (this.written.has(desc.digest)) return;
    if (sha256(bytes) !== desc.digest)
      throw new KilnError('E_DIGEST_MISMATCH', `manifest ${desc.digest} does not match its content`);
    await this.start();
    this.written.add(desc.digest);
    await this.writer.addBytes(blobMember(desc.digest), bytes);
  }

  async commit(root: Descriptor): Promise<void> {
    await this.start();
    const entry: Descriptor = { mediaType: root.mediaType, digest: root.digest, size: root.size };
    if (root.platform) entry.platform = root.platform;
    const refName =
      this.kind === 'docker' ? (this.dockerRef ? familiarReference(this.dockerRef) : undefined) : this.tag;
    if (refName) entry.annotations = { [REF_NAME_ANNOTATION]: refName };
    const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [entry] };
    await this.writer.addBytes('index.json', encodeJson(index));
    if (this.kind === 'docker') await this.writeDockerSave(root);
    await this.writer.finish();
  }

  /** `docker load` reads manifest.json: config and layer paths inside the archive, and the tags. */
  private async writeDockerSave(root: Descriptor): Promise<void> {
    const bytes = this.manifests.get(root.digest);
    if (!bytes) throw new Error('docker-archive commit without its manifest');
    const parsed = parseManifest(bytes, 'manifest', root.mediaType);
    if (parsed.kind !== 'manifest') throw new Error('docker-archive needs a single image, not an index');
    const m: ImageManifest = parsed.manifest;
    const repoTags = this.dockerRef?.tag ? [familiarReference({ ...this.dockerRef, digest: undefined })] : [];
    const entry = {
      Config: blobMember(m.config.digest),
      RepoTags: repoTags,
      Layers: m.layers.map((l) => blobMember(l.digest)),
    };
    await this.writer.addBytes('manifest.json', encodeJson([entry]));
    if (this.dockerRef?.tag) {
      const repo = familiarReference({ ...this.dockerRef, tag: undefined, digest: undefined });
      const repositories = { [repo]: { [this.dockerRef.tag]: parseDigest(m.config.digest).hex } };
      await this.writer.addBytes('repositories', encodeJson(repositories));
    }
  }

  async abort(): Promise<void> {
    await this.writer.discard();
  }
}

/** Reads an OCI layout packed in a tar file, member by member. */
export class OciArchiveSource implements ImageSource {
  private constructor(
    readonly name: string,
    private readonly archive: ArchiveFile,
    private readonly tag: string | undefined,
  ) {}

  static async open(name: string, file: string, tag: string | undefined): Promise<OciArchiveSource> {
    const archive = await ArchiveFile.open(file);
    if (!archive.has('oci-layout') || !archive.has('index.json'))
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${file} is not an OCI archive (no oci-layout or index.json inside)`,
        {
          hint: archive.has('manifest.json')
            ? `it looks like a docker save archive: use docker-archive:${file}`
            : undefined,
        },
      );
    return new OciArchiveSource(name, archive, tag);
  }

  async resolve(): Promise<Descriptor> {
    const bytes = await this.archive.read(this.archive.member('index.json'), { limit: MAX_MANIFEST_BYTES });
    const parsed = parseManifest(bytes, `${this.name} index.json`, MediaType.OciIndex);
    if (parsed.kind !== 'index')
      throw new KilnError('E_BAD_ARCHIVE', `${this.name}: index.json is not an index`);
    return findInIndex(parsed.index, this.tag, this.archive.file);
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    const bytes = await this.archive.read(this.archive.member(blobMember(desc.digest)), {
      limit: MAX_MANIFEST_BYTES,
    });
    expectSize(bytes, desc, this.name);
    if (sha256(bytes) !== desc.digest)
      throw new KilnError('E_DIGEST_MISMATCH', `${desc.digest} in ${this.name} does not match its content`);
    return bytes;
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    return this.archive.stream(this.archive.member(blobMember(desc.digest)));
  }

  async close(): Promise<void> {}
}

/**
 * Reads a `docker save` archive: manifest.json names the config and layer files, from which an
 * OCI manifest is made (layer digests are computed by reading each layer once).
 */
export class DockerArchiveSource implements ImageSource {
  private manifestBytes: Buffer | undefined;
  private readonly blobs = new Map<string, IndexedEntry>();

  private constructor(
    readonly name: string,
    private readonly archive: ArchiveFile,
    private readonly ref: Reference | undefined,
  ) {}

  static async open(name: string, file: string, ref: Reference | undefined): Promise<DockerArchiveSource> {
    const archive = await ArchiveFile.open(file);
    if (!archive.has('manifest.json'))
      throw new KilnError('E_BAD_ARCHIVE', `${file} is not a docker save archive (no manifest.json inside)`);
    return new DockerArchiveSource(name, archive, ref);
  }

  async resolve(): Promise<Descriptor> {
    const file = this.archive.file;
    const raw = await this.archive.read(this.archive.member('manifest.json'), { limit: MAX_MANIFEST_BYTES });
    let list: { Config?: string; RepoTags?: string[] | null; Layers?: string[] }[];
    try {
      list = JSON.parse(raw.toString('utf8'));
      if (!Array.isArray(list)) throw new Error('not an array');
    } catch (err) {
      throw new KilnError('E_BAD_ARCHIVE', `${file}: manifest.json is not valid: ${(err as Error).message}`);
    }
    let item = list[0];
    if (this.ref) {
      // RepoTags may be short (docker save: hello:2) or full (skopeo: docker.io/library/hello:2)
      const want = formatReference({ ...this.ref, digest: undefined });
      item = list.find((i) => i.RepoTags?.some((t) => sameReference(t, want)));
      if (!item)
        throw new KilnError('E_NOT_FOUND', `no image tagged ${familiarReference(this.ref)} in ${file}`, {
          hint: `tags there: ${list.flatMap((i) => i.RepoTags ?? []).join(', ') || 'none'}`,
        });
    } else if (list.length !== 1) {
      throw new KilnError('E_AMBIGUOUS', `${file} holds ${list.length} images; name one with :NAME:TAG`);
    }
    if (!item?.Config || !Array.isArray(item.Layers))
      throw new KilnError('E_BAD_ARCHIVE', `${file}: manifest.json has no Config or Layers`);
    const config = await this.describe(item.Config, MediaType.OciConfig);
    const layers: Descriptor[] = [];
    for (const l of item.Layers) {
      const head = await this.archive.read(this.archive.member(l), { length: 2 });
      layers.push(await this.describe(l, isGzip(head) ? MediaType.OciLayerGzip : MediaType.OciLayer));
    }
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers };
    this.manifestBytes = encodeJson(manifest);
    return {
      mediaType: MediaType.OciManifest,
      digest: sha256(this.manifestBytes),
      size: this.manifestBytes.length,
    };
  }

  /** Files under blobs/<alg>/<hex> carry their digest; older `docker save` names need hashing. */
  private async describe(p: string, mediaType: string): Promise<Descriptor> {
    const e = this.archive.member(p);
    const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(e.path);
    let digest: Digest;
    if (m) digest = `${m[1]}:${m[2]}` as Digest;
    else {
      const h = newHash();
      for await (const c of this.archive.stream(e)) h.update(c);
      digest = `sha256:${h.digest('hex')}`;
    }
    this.blobs.set(digest, e);
    return { mediaType, digest, size: e.size };
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    if (!this.manifestBytes) await this.resolve();
    if (sha256(this.manifestBytes!) !== desc.digest)
      throw new KilnError('E_NOT_FOUND', `no manifest ${desc.digest} in ${this.archive.file}`);
    return this.manifestBytes!;
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    const e = this.blobs.get(desc.digest);
    if (!e) throw new KilnError('E_NOT_FOUND', `no blob ${desc.digest} in ${this.archive.file}`);
    return this.archive.stream(e);
  }

  async close(): Promise<void> {}
}

function sameReference(tag: string, want: string): boolean {
  try {
    return formatReference(parseReference(tag)) === want;
  } catch {
    return false;
  }
}
