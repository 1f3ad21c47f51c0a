import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { type IndexedEntry, indexTarFile } from '../layer/tar-index.js';
import { isGzip } from '../layer/tar-reader.js';
import { type Digest, parseDigest, sha256 } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import { familiarReference, formatReference, parseReference, type Reference } from '../oci/reference.js';
import { type Descriptor, type ImageIndex, type ImageManifest, REF_NAME_ANNOTATION } from '../oci/types.js';
import { encodeJson, MAX_MANIFEST_BYTES, parseManifest } from '../oci/validate.js';
import { ArchiveWriter } from './archive-writer.js';
import type { ImageDestination, ImageSource } from './types.js';
import { verified } from './verify.js';

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

/** Reads an OCI layout packed in a tar file, member by member through an offset index. */
export class OciArchiveSource implements ImageSource {
  private constructor(
    readonly name: string,
    private readonly file: string,
    private readonly entries: Map<string, IndexedEntry>,
    private readonly tag: string | undefined,
  ) {}

  static async open(name: string, file: string, tag: string | undefined): Promise<OciArchiveSource> {
    const entries = await indexArchive(file);
    if (!entries.has('oci-layout') || !entries.has('index.json'))
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${file} is not an OCI archive (no oci-layout or index.json inside)`,
        {
          hint: entries.has('manifest.json')
            ? `it looks like a docker save archive: use docker-archive:${file}`
            : undefined,
        },
      );
    return new OciArchiveSource(name, file, entries, tag);
  }

  private member(p: string): IndexedEntry {
    const e = this.entries.get(p);
    if (!e) throw new KilnError('E_BAD_ARCHIVE', `${this.file} is missing ${p}`);
    return e;
  }

  private async read(p: string, limit: number): Promise<Buffer> {
    return readMember(this.file, this.member(p), limit);
  }

  async resolve(): Promise<Descriptor> {
    const parsed = parseManifest(
      await this.read('index.json', MAX_MANIFEST_BYTES),
      `${this.name} index.json`,
      MediaType.OciIndex,
    );
    if (parsed.kind !== 'index')
      throw new KilnError('E_BAD_ARCHIVE', `${this.name}: index.json is not an index`);
    const list = parsed.index.manifests;
    if (this.tag !== undefined) {
      const hit = list.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === this.tag);
      if (!hit) throw new KilnError('E_NOT_FOUND', `no image tagged '${this.tag}' in ${this.file}`);
      return hit;
    }
    if (list.length !== 1)
      throw new KilnError(
        list.length ? 'E_AMBIGUOUS' : 'E_NOT_FOUND',
        `${this.file} holds ${list.length} images; name one with :TAG`,
      );
    return list[0]!;
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    const bytes = await this.read(blobMember(desc.digest), MAX_MANIFEST_BYTES);
    checkBytes(bytes, desc, this.name);
    return bytes;
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    const e = this.member(blobMember(desc.digest));
    return memberStream(this.file, e);
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
    private readonly file: string,
    private readonly entries: Map<string, IndexedEntry>,
    private readonly ref: Reference | undefined,
  ) {}

  static async open(name: string, file: string, ref: Reference | undefined): Promise<DockerArchiveSource> {
    const entries = await indexArchive(file);
    if (!entries.has('manifest.json'))
      throw new KilnError('E_BAD_ARCHIVE', `${file} is not a docker save archive (no manifest.json inside)`);
    return new DockerArchiveSource(name, file, entries, ref);
  }

  async resolve(): Promise<Descriptor> {
    const raw = await readMember(this.file, this.entries.get('manifest.json')!, MAX_MANIFEST_BYTES);
    let list: { Config?: string; RepoTags?: string[] | null; Layers?: string[] }[];
    try {
      list = JSON.parse(raw.toString('utf8'));
      if (!Array.isArray(list)) throw new Error('not an array');
    } catch (err) {
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${this.file}: manifest.json is not valid: ${(err as Error).message}`,
      );
    }
    let item = list[0];
    if (this.ref) {
      // RepoTags may be short (docker save: hello:2) or full (skopeo: docker.io/library/hello:2)
      const want = formatReference({ ...this.ref, digest: undefined });
      item = list.find((i) => i.RepoTags?.some((t) => sameReference(t, want)));
      if (!item)
        throw new KilnError('E_NOT_FOUND', `no image tagged ${familiarReference(this.ref)} in ${this.file}`, {
          hint: `tags there: ${list.flatMap((i) => i.RepoTags ?? []).join(', ') || 'none'}`,
        });
    } else if (list.length !== 1) {
      throw new KilnError('E_AMBIGUOUS', `${this.file} holds ${list.length} images; name one with :NAME:TAG`);
    }
    if (!item?.Config || !Array.isArray(item.Layers))
      throw new KilnError('E_BAD_ARCHIVE', `${this.file}: manifest.json has no Config or Layers`);
    const config = await this.describe(item.Config, MediaType.OciConfig);
    const layers: Descriptor[] = [];
    for (const l of item.Layers) {
      const head = await readHead(this.file, this.member(l));
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

  private member(p: string): IndexedEntry {
    const e = this.entries.get(p.replace(/^\.\//, ''));
    if (!e) throw new KilnError('E_BAD_ARCHIVE', `${this.file} is missing ${p}`);
    return e;
  }

  /** Files under blobs/<alg>/<hex> carry their digest; older `docker save` names need hashing. */
  private async describe(p: string, mediaType: string): Promise<Descriptor> {
    const e = this.member(p);
    const m = /^blobs\/(sha256|sha512)\/([0-9a-f]+)$/.exec(e.path);
    let digest: Digest;
    if (m) digest = `${m[1]}:${m[2]}` as Digest;
    else {
      const { createHash } = await import('node:crypto');
      const h = createHash('sha256');
      for await (const c of memberStream(this.file, e)) h.update(c);
      digest = `sha256:${h.digest('hex')}`;
    }
    this.blobs.set(digest, e);
    return { mediaType, digest, size: e.size };
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    if (!this.manifestBytes) await this.resolve();
    if (sha256(this.manifestBytes!) !== desc.digest)
      throw new KilnError('E_NOT_FOUND', `no manifest ${desc.digest} in ${this.file}`);
    return this.manifestBytes!;
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    const e = this.blobs.get(desc.digest);
    if (!e) throw new KilnError('E_NOT_FOUND', `no blob ${desc.digest} in ${this.file}`);
    return memberStream(this.file, e);
  }

  async close(): Promise<void> {}
}

async function indexArchive(file: string): Promise<Map<string, IndexedEntry>> {
  const st = await fs.stat(file).catch((err) => {
    throw ioError(err, file);
  });
  if (!st.isFile()) throw new KilnError('E_BAD_ARCHIVE', `${file} is not a file`);
  const head = Buffer.alloc(2);
  const h = await fs.open(file, 'r');
  await h.read(head, 0, 2, 0).finally(() => h.close());
  if (isGzip(head))
    throw new KilnError('E_BAD_ARCHIVE', `${file} is gzip-compressed; image archives are plain tar`, {
      hint: `decompress it first: gunzip -k ${path.basename(file)}`,
    });
  return indexTarFile(file);
}

function memberStream(file: string, e: IndexedEntry): AsyncIterable<Uint8Array> {
  if (e.size === 0) return [][Symbol.iterator]() as unknown as AsyncIterable<Uint8Array>;
  return createReadStream(file, { start: e.offset, end: e.offset + e.size - 1 });
}

async function readHead(file: string, e: IndexedEntry): Promise<Buffer> {
  const h = await fs.open(file, 'r');
  try {
    const b = Buffer.alloc(Math.min(2, e.size));
    await h.read(b, 0, b.length, e.offset);
    return b;
  } finally {
    await h.close();
  }
}

async function readMember(file: string, e: IndexedEntry, limit: number): Promise<Buffer> {
  if (e.size > limit)
    throw new KilnError(
      'E_TOO_LARGE',
      `${e.path} in ${file} is ${e.size} bytes, over the ${limit} byte limit`,
    );
  const h = await fs.open(file, 'r');
  try {
    const b = Buffer.alloc(e.size);
    await h.read(b, 0, e.size, e.offset);
    return b;
  } finally {
    await h.close();
  }
}

function checkBytes(bytes: Buffer, desc: Descriptor, where: string): void {
  if (bytes.length !== desc.size)
    throw new KilnError(
      'E_SIZE_MISMATCH',
      `${desc.digest} in ${where} is ${bytes.length} bytes, its descriptor says ${desc.size}`,
    );
  if (sha256(bytes) !== desc.digest)
    throw new KilnError('E_DIGEST_MISMATCH', `${desc.digest} in ${where} does not match its content`);
}

function sameReference(tag: string, want: string): boolean {
  try {
    return formatReference(parseReference(tag)) === want;
  } catch {
    return false;
  }
}
