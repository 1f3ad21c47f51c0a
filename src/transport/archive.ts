import * as fs from 'node:fs/promises';
import { ioError, isKilnError, KilnError } from '../errors.js';
import type { IndexedEntry } from '../layer/tar-index.js';
import { isGzip } from '../layer/tar-reader.js';
import { type Digest, newHash, parseDigest, sha256 } from '../oci/digest.js';
import { isIndexType, isManifestType, MediaType } from '../oci/media-types.js';
import { hostPlatform, platformMatches } from '../oci/platform.js';
import { familiarReference, formatReference, parseReference, type Reference } from '../oci/reference.js';
import { type Descriptor, type ImageIndex, type ImageManifest, REF_NAME_ANNOTATION } from '../oci/types.js';
import { encodeJson, MAX_MANIFEST_BYTES, parseManifest } from '../oci/validate.js';
import { expectSize, verified } from '../oci/verify.js';
import { findInIndex } from '../store/layout.js';
import { ArchiveFile } from './archive-file.js';
import { ArchiveWriter } from './archive-writer.js';
import type { ImageDestination, ImageSource } from './types.js';

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';
/** The full name containerd (and `docker save` since Docker 25) gives an image in index.json. */
const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';
const MAX_DEPTH = 4;

function blobMember(digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return `blobs/${algorithm}/${hex}`;
}

/** A manifest or index stored in an archive under blobs/, verified against its descriptor. */
async function readManifestMember(archive: ArchiveFile, desc: Descriptor, where: string): Promise<Buffer> {
  const bytes = await archive.read(archive.member(blobMember(desc.digest)), { limit: MAX_MANIFEST_BYTES });
  expectSize(bytes, desc, where);
  if (sha256(bytes) !== desc.digest)
    throw new KilnError('E_DIGEST_MISMATCH', `${desc.digest} in ${where} does not match its content`);
  return bytes;
}

async function readLayoutIndex(archive: ArchiveFile, where: string): Promise<ImageIndex> {
  const bytes = await archive.read(archive.member('index.json'), { limit: MAX_MANIFEST_BYTES });
  const parsed = parseManifest(bytes, `${where} index.json`, MediaType.OciIndex);
  if (parsed.kind !== 'index') throw new KilnError('E_BAD_ARCHIVE', `${where}: index.json is not an index`);
  return parsed.index;
}

function isLayoutArchive(archive: ArchiveFile): boolean {
  return archive.has('oci-layout') && archive.has('index.json');
}

/** Attestations (buildx) sit in an index as images of platform unknown/unknown; docker load takes none. */
function isAttestation(desc: Descriptor): boolean {
  return desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

/**
 * The archive an `oci-archive:` write replaces, when there is one: its index and blobs go into the
 * new archive, all but the tag written.
 */
class PreviousArchive {
  private constructor(
    readonly archive: ArchiveFile,
    readonly index: ImageIndex,
  ) {}

  static async open(file: string, name: string): Promise<PreviousArchive | undefined> {
    const st = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw ioError(err, file);
    });
    if (!st || (st.isFile() && st.size === 0)) return undefined;
    const refuse = (why: string) =>
      new KilnError(
        'E_BAD_ARCHIVE',
        `${file} is there and is not an OCI archive (${why}); kiln won't write ${name} over it`,
        {
          hint: 'remove it, or write to another file',
        },
      );
    let archive: ArchiveFile;
    try {
      archive = await ArchiveFile.open(file);
    } catch (err) {
      if (isKilnError(err, 'E_BAD_ARCHIVE') || isKilnError(err, 'E_BAD_TAR')) throw refuse(err.message);
      throw err;
    }
    if (!isLayoutArchive(archive)) throw refuse('no oci-layout or index.json inside');
    return new PreviousArchive(archive, await readLayoutIndex(archive, file));
  }

  /** The member holding this blob, if the archive has it at the right size. */
  blob(desc: Descriptor): IndexedEntry | undefined {
    const member = blobMember(desc.digest);
    if (!this.archive.has(member)) return undefined;
    const e = this.archive.member(member);
    return e.size === desc.size ? e : undefined;
  }

  /**
   * Every blob under `roots` that the archive holds, in a fixed order (depth first, as listed).
   * What it lacks is left out: the new archive is as complete as the old one, no more.
   */
  async reachable(roots: Descriptor[]): Promise<Descriptor[]> {
    const seen = new Map<string, Descriptor>();
    const visit = async (desc: Descriptor, depth: number): Promise<void> => {
      if (seen.has(desc.digest) || !this.blob(desc)) return;
      seen.set(desc.digest, desc);
      if (!(isIndexType(desc.mediaType) || isManifestType(desc.mediaType)) || depth > MAX_DEPTH) return;
      const bytes = await readManifestMember(this.archive, desc, this.archive.file);
      const parsed = parseManifest(bytes, `manifest ${desc.digest}`, desc.mediaType);
      const children =
        parsed.kind === 'index'
          ? parsed.index.manifests
          : [parsed.manifest.config, ...parsed.manifest.layers];
      for (const child of children) await visit(child, depth + 1);
    };
    for (const root of roots) await visit(root, 0);
    return [...seen.values()];
  }
}

/**
 * Writes an OCI layout as a tar stream (`oci-archive:`), and with `docker` also the
 * `manifest.json` and `repositories` of `docker save`, so `docker load` reads the same file.
 * Members go straight into the archive as they arrive; nothing is staged on disk first.
 * An `oci-archive:` that exists keeps its other tags: its blobs and index entries are streamed
 * into the new archive, which replaces it only once complete.
 */
export class ArchiveDestination implements ImageDestination {
  private readonly writer: ArchiveWriter;
  private readonly written = new Set<string>();
  private readonly manifests = new Map<string, Buffer>();
  /** Blobs of the previous archive that the new one keeps, found while copying. */
  private readonly carried = new Map<string, Descriptor>();
  private previousArchive: Promise<PreviousArchive | undefined> | undefined;
  private started = false;
  readonly sequential = true;

  constructor(
    readonly name: string,
    private readonly file: string,
    private readonly kind: 'oci' | 'docker',
    private readonly tag: string | undefined,
    private readonly dockerRef?: Reference,
  ) {
    this.writer = new ArchiveWriter(file);
  }

  /** The archive this write replaces (oci-archive: only; a docker-archive holds what docker save would). */
  private previous(): Promise<PreviousArchive | undefined> {
    if (this.kind !== 'oci') return Promise.resolve(undefined);
    this.previousArchive ??= PreviousArchive.open(this.file, this.name);
    return this.previousArchive;
  }

  private async start(): Promise<void> {
    if (this.started) return;
    await this.previous();
    this.started = true;
    await this.writer.addBytes('oci-layout', Buffer.from(LAYOUT_FILE));
  }

  /** True when the previous archive holds the blob, which then goes into the new one from there. */
  private async carry(desc: Descriptor): Promise<boolean> {
    if (!(await this.previous())?.blob(desc)) return false;
    this.carried.set(desc.digest, desc);
    return true;
  }

  async hasBlob(desc: Descriptor): Promise<boolean> {
    return this.written.has(desc.digest) || this.carried.has(desc.digest) || this.carry(desc);
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
    if (await this.carry(desc)) return;
    await this.start();
    this.written.add(desc.digest);
    await this.writer.addBytes(blobMember(desc.digest), bytes);
  }

  async commit(root: Descriptor): Promise<void> {
    await this.start();
    const entry: Descriptor = { mediaType: root.mediaType, digest: root.digest, size: root.size };
    if (root.platform) entry.platform = root.platform;
    if (this.kind === 'docker') {
      if (this.dockerRef) {
        entry.annotations = { [REF_NAME_ANNOTATION]: familiarReference(this.dockerRef) };
        if (this.dockerRef.tag) entry.annotations[IMAGE_NAME_ANNOTATION] = formatReference(this.dockerRef);
      }
    } else if (this.tag) entry.annotations = { [REF_NAME_ANNOTATION]: this.tag };
    let index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [entry] };
    const previous = await this.previous();
    if (previous) {
      // As `oci:` layouts do: the tag written replaces its entry, every other entry stays.
      const kept = previous.index.manifests.filter((m) => {
        const ref = m.annotations?.[REF_NAME_ANNOTATION];
        return this.tag !== undefined ? ref !== this.tag : !(ref === undefined && m.digest === root.digest);
      });
      index = { ...previous.index, manifests: [...kept, entry] };
      for (const desc of await previous.reachable(kept)) this.carried.set(desc.digest, desc);
      for (const desc of this.carried.values()) {
        if (this.written.has(desc.digest)) continue;
        this.written.add(desc.digest);
        const e = previous.blob(desc)!;
        await this.writer.addStream(
          blobMember(desc.digest),
          desc.size,
          verified(previous.archive.stream(e), desc, previous.archive.file),
        );
      }
    }
    await this.writer.addBytes('index.json', encodeJson(index));
    if (this.kind === 'docker') await this.writeDockerSave(root);
    await this.writer.finish();
  }

  /**
   * The image `docker load` takes from an index: the host's platform, else one of the host's os
   * (an engine without the containerd image store loads no other), else the first.
   */
  private loadable(root: Descriptor): { desc: Descriptor; manifest: ImageManifest } {
    const parse = (desc: Descriptor) => {
      const bytes = this.manifests.get(desc.digest);
      if (!bytes) throw new Error(`docker-archive commit without manifest ${desc.digest}`);
      return parseManifest(bytes, 'manifest', desc.mediaType);
    };
    const parsed = parse(root);
    if (parsed.kind === 'manifest') return { desc: root, manifest: parsed.manifest };
    const images = parsed.index.manifests.filter(
      (m) => isManifestType(m.mediaType) && !isAttestation(m) && this.manifests.has(m.digest),
    );
    const host = hostPlatform();
    const pick =
      images.find((m) => m.platform && platformMatches(host, m.platform)) ??
      images.find((m) => m.platform?.os === host.os) ??
      images[0];
    if (!pick)
      throw new KilnError(
        'E_UNSUPPORTED',
        `${this.name}: the index ${root.digest} lists no image docker load could take`,
      );
    const chosen = parse(pick);
    if (chosen.kind !== 'manifest') throw new Error('an index entry of manifest type parsed as an index');
    return { desc: pick, manifest: chosen.manifest };
  }

  /**
   * `docker load` reads manifest.json: config and layer paths inside the archive, and the tags. It
   * names one image, the one docker can load; index.json (read by engines with the containerd
   * image store, and by kiln) holds the whole index.
   */
  private async writeDockerSave(root: Descriptor): Promise<void> {
    const m = this.loadable(root).manifest;
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

/** Opens `file` as a tar archive, refused (E_BAD_ARCHIVE) unless it is `what` (`is` holds of it). */
async function openArchive(
  file: string,
  is: (archive: ArchiveFile) => boolean,
  what: string,
  hint?: (archive: ArchiveFile) => string | undefined,
): Promise<ArchiveFile> {
  const archive = await ArchiveFile.open(file);
  if (!is(archive)) throw new KilnError('E_BAD_ARCHIVE', `${file} is not ${what}`, { hint: hint?.(archive) });
  return archive;
}

/** Reads an OCI layout packed in a tar file, member by member. */
export class OciArchiveSource implements ImageSource {
  private constructor(
    readonly name: string,
    private readonly archive: ArchiveFile,
    private readonly tag: string | undefined,
  ) {}

  static async open(name: string, file: string, tag: string | undefined): Promise<OciArchiveSource> {
    const archive = await openArchive(
      file,
      isLayoutArchive,
      'an OCI archive (no oci-layout or index.json inside)',
      (a) =>
        a.has('manifest.json')
          ? `it looks like a docker save archive: use docker-archive:${file}`
          : undefined,
    );
    return new OciArchiveSource(name, archive, tag);
  }

  async resolve(): Promise<Descriptor> {
    return findInIndex(await readLayoutIndex(this.archive, this.name), this.tag, this.archive.file);
  }

  fetchManifest(desc: Descriptor): Promise<Buffer> {
    return readManifestMember(this.archive, desc, this.name);
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    return this.archive.stream(this.archive.member(blobMember(desc.digest)));
  }

  async close(): Promise<void> {}
}

type DockerSaveItem = { Config?: string; RepoTags?: string[] | null; Layers?: string[] };

/**
 * Reads a `docker save` archive. One that is also an OCI layout (kiln's, Docker 25's) is read
 * through its index.json, so manifests keep their digests and annotations; the image is found by the
 * names there (io.containerd.image.name, org.opencontainers.image.ref.name). Otherwise manifest.json
 * names the config and layer files, from which an OCI manifest is made (`synthesized`: layer digests
 * are computed by reading each layer once).
 */
export class DockerArchiveSource implements ImageSource {
  private manifestBytes: Buffer | undefined;
  private readonly blobs = new Map<string, IndexedEntry>();
  synthesized = false;

  private constructor(
    readonly name: string,
    private readonly archive: ArchiveFile,
    private readonly ref: Reference | undefined,
  ) {}

  static async open(name: string, file: string, ref: Reference | undefined): Promise<DockerArchiveSource> {
    const archive = await openArchive(
      file,
      (a) => a.has('manifest.json') || isLayoutArchive(a),
      'a docker save archive (no manifest.json inside)',
    );
    return new DockerArchiveSource(name, archive, ref);
  }

  async resolve(): Promise<Descriptor> {
    const file = this.archive.file;
    if (isLayoutArchive(this.archive)) {
      const index = await readLayoutIndex(this.archive, this.name);
      const hit = this.findInLayout(index);
      if (hit) return hit;
      if (!this.archive.has('manifest.json')) {
        if (this.ref)
          throw new KilnError('E_NOT_FOUND', `no image named ${familiarReference(this.ref)} in ${file}`, {
            hint: `names there: ${index.manifests.flatMap(namesOf).join(', ') || 'none'}`,
          });
        throw new KilnError(
          'E_AMBIGUOUS',
          `${file} holds ${index.manifests.length} images; name one with :NAME:TAG`,
        );
      }
    }
    return this.synthesize();
  }

  /** The index entry named like `ref`, or without a ref the only one; undefined if none fits. */
  private findInLayout(index: ImageIndex): Descriptor | undefined {
    if (!this.ref) return index.manifests.length === 1 ? index.manifests[0] : undefined;
    const want = formatReference({ ...this.ref, digest: undefined });
    return index.manifests.filter((m) => namesOf(m).some((n) => sameReference(n, want))).at(-1);
  }

  /** An OCI manifest made from manifest.json: what a Docker-only archive (no index.json) gives. */
  private async synthesize(): Promise<Descriptor> {
    const file = this.archive.file;
    const raw = await this.archive.read(this.archive.member('manifest.json'), { limit: MAX_MANIFEST_BYTES });
    let list: DockerSaveItem[];
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
    this.synthesized = true;
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
    if (this.manifestBytes && sha256(this.manifestBytes) === desc.digest) return this.manifestBytes;
    if (this.archive.has(blobMember(desc.digest))) return readManifestMember(this.archive, desc, this.name);
    throw new KilnError('E_NOT_FOUND', `no manifest ${desc.digest} in ${this.archive.file}`);
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    const e =
      this.blobs.get(desc.digest) ??
      (this.archive.has(blobMember(desc.digest)) ? this.archive.member(blobMember(desc.digest)) : undefined);
    if (!e) throw new KilnError('E_NOT_FOUND', `no blob ${desc.digest} in ${this.archive.file}`);
    return this.archive.stream(e);
  }

  async close(): Promise<void> {}
}

/** The names an index entry gives its image: containerd's full name, the OCI ref.name. */
function namesOf(desc: Descriptor): string[] {
  const a = desc.annotations ?? {};
  return [a[IMAGE_NAME_ANNOTATION], a[REF_NAME_ANNOTATION]].filter((n) => n !== undefined);
}

function sameReference(tag: string, want: string): boolean {
  try {
    return formatReference(parseReference(tag)) === want;
  } catch {
    return false;
  }
}
