import { randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { type Digest, hasherFor, newHash, parseDigest, sha256 } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import { type Descriptor, type ImageIndex, REF_NAME_ANNOTATION } from '../oci/types.js';
import { encodeJson, MAX_MANIFEST_BYTES, parseManifest } from '../oci/validate.js';
import { withLock } from './lock.js';

const LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

export interface WrittenBlob {
  digest: Digest;
  size: number;
}

export interface ExpectedBlob {
  digest: Digest;
  size?: number;
}

/**
 * An OCI image layout directory: kiln's own cache and the `oci:` transport alike.
 * Every blob is written to a temp file, verified, then renamed into place, so a crash or a
 * concurrent writer can never leave a blob whose content does not match its name.
 */
export class OciLayout {
  private constructor(readonly dir: string) {}

  /** Opens a layout; with `create`, makes it if absent. A directory that exists but is not a layout is refused. */
  static async open(dir: string, options: { create?: boolean } = {}): Promise<OciLayout> {
    const layout = new OciLayout(path.resolve(dir));
    let marker: string | undefined;
    try {
      marker = await fs.readFile(path.join(layout.dir, 'oci-layout'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(err, `${dir}/oci-layout`);
    }
    if (marker !== undefined) {
      let version: unknown;
      try {
        version = JSON.parse(marker).imageLayoutVersion;
      } catch {
        version = undefined;
      }
      if (typeof version !== 'string' || !version.startsWith('1.'))
        throw new KilnError('E_BAD_LAYOUT', `${dir} is not an OCI image layout: oci-layout is unreadable`);
      if (options.create) {
        // A writer: finish a layout whose creation was cut short (earlier kiln wrote oci-layout
        // first), and clear what killed writers left behind.
        await layout.ensureIndex();
        layout.sweepLater();
      }
      return layout;
    }
    if (!options.create) {
      const exists = await fs.stat(layout.dir).then(
        () => true,
        () => false,
      );
      throw new KilnError(
        exists ? 'E_BAD_LAYOUT' : 'E_NOT_FOUND',
        exists ? `${dir} is not an OCI image layout (no oci-layout file)` : `${dir}: no such OCI layout`,
      );
    }
    await layout.init();
    return layout;
  }

  /**
   * Makes the layout. oci-layout is written last, so a directory that has it is complete; one left
   * half made (a killed kiln, or another kiln making it right now) holds only what this writes, and
   * is finished here.
   */
  private async init(): Promise<void> {
    try {
      const entries = await fs.readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [] as string[];
        throw err;
      });
      if (entries.some((e) => !isLayoutEntry(e)))
        throw new KilnError(
          'E_BAD_LAYOUT',
          `${this.dir} exists and is not an OCI image layout; refusing to write into it`,
        );
      await fs.mkdir(path.join(this.dir, 'blobs', 'sha256'), { recursive: true });
      await this.ensureIndex();
      await writeFileAtomic(path.join(this.dir, 'oci-layout'), LAYOUT_FILE);
      this.sweepLater();
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw ioError(err, this.dir);
    }
  }

  /** Writes an empty index.json unless there is one. */
  private async ensureIndex(): Promise<void> {
    const exists = () =>
      fs.stat(this.indexPath).then(
        () => true,
        () => false,
      );
    if (await exists()) return;
    try {
      await withLock(this.indexPath, async () => {
        if (!(await exists())) await writeFileAtomic(this.indexPath, encodeJson(emptyIndex()));
      });
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw ioError(err, this.indexPath);
    }
  }

  /**
   * Removes, in the background, the temp files killed writers left (`blobs/<alg>/.tmp-*`,
   * `index.json.tmp-*`, ...) once they are an hour old: a write in progress changes its file far
   * more often than that, whichever process (or container, or host) it runs in. Once per process
   * and layout; errors are ignored (another kiln may be sweeping too).
   */
  private sweepLater(): void {
    if (swept.has(this.dir)) return;
    swept.add(this.dir);
    removeStaleTemps(this.dir).catch(() => {});
  }

  get indexPath(): string {
    return path.join(this.dir, 'index.json');
  }

  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return path.join(this.dir, 'blobs', algorithm, hex);
  }

  async hasBlob(digest: string, size?: number): Promise<boolean> {
    try {
      const st = await fs.stat(this.blobPath(digest));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  async blobSize(digest: string): Promise<number> {
    try {
      return (await fs.stat(this.blobPath(digest))).size;
    } catch (err) {
      throw this.missing(err, digest);
    }
  }

  /** A stream of the blob. Content was verified when written; readers that need certainty verify again. */
  openBlob(digest: string, range?: { start: number; end?: number }): ReadStream {
    const stream = createReadStream(this.blobPath(digest), range);
    stream.on('error', () => {}); // errors surface to whoever consumes the stream
    return stream;
  }

  async readBlob(digest: string, limit = MAX_MANIFEST_BYTES): Promise<Buffer> {
    const file = this.blobPath(digest);
    try {
      const st = await fs.stat(file);
      if (st.size > limit)
        throw new KilnError(
          'E_TOO_LARGE',
          `blob ${digest} is ${st.size} bytes, over the ${limit} byte limit`,
        );
      const bytes = await fs.readFile(file);
      const actual = hasherFor(digest).update(bytes).digest('hex');
      if (`${parseDigest(digest).algorithm}:${actual}` !== digest)
        throw new KilnError(
          'E_DIGEST_MISMATCH',
          `blob ${digest} in ${this.dir} is corrupt (content hashes to another digest)`,
        );
      return bytes;
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw this.missing(err, digest);
    }
  }

  private missing(err: unknown, digest: string): KilnError {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return new KilnError('E_BAD_LAYOUT', `${this.dir} is missing blob ${digest}`, { cause: err });
    return ioError(err, this.blobPath(digest));
  }

  /**
   * Streams `source` into the store. The digest (of `expected`'s algorithm, else sha256) is
   * computed while writing; a mismatch with `expected` deletes the temp file and throws.
   */
  async writeBlob(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    expected?: ExpectedBlob,
  ): Promise<WrittenBlob> {
    const algorithm = expected ? parseDigest(expected.digest).algorithm : 'sha256';
    const dir = path.join(this.dir, 'blobs', algorithm);
    await fs.mkdir(dir, { recursive: true });
    const tmp = path.join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const hash = newHash(algorithm);
    let size = 0;
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(tmp, 'wx');
      const out = new CoalescingWriter(handle);
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.byteLength;
        if (expected?.size !== undefined && size > expected.size)
          throw new KilnError(
            'E_SIZE_MISMATCH',
            `blob ${expected.digest} is larger than its descriptor's ${expected.size} bytes`,
          );
        await out.write(chunk);
      }
      await out.flush();
      await handle.close();
      handle = undefined;
      const digest = `${algorithm}:${hash.digest('hex')}` as Digest;
      if (expected) {
        if (expected.size !== undefined && size !== expected.size)
          throw new KilnError(
            'E_SIZE_MISMATCH',
            `blob ${expected.digest} is ${size} bytes, but its descriptor says ${expected.size}`,
          );
        if (digest !== expected.digest)
          throw new KilnError('E_DIGEST_MISMATCH', `blob ${expected.digest} arrived with content ${digest}`);
      }
      await fs.rename(tmp, this.blobPath(digest));
      return { digest, size };
    } catch (err) {
      await handle?.close().catch(() => {});
      await fs.rm(tmp, { force: true });
      if (err instanceof KilnError) throw err;
      throw ioError(err, `writing a blob into ${this.dir}`);
    }
  }

  async writeBytes(bytes: Uint8Array, expected?: ExpectedBlob): Promise<WrittenBlob> {
    return this.writeBlob([bytes], expected);
  }

  /** Stores small in-memory content (configs, manifests, modules) unless the store has it already. */
  async putBytes(bytes: Uint8Array): Promise<WrittenBlob> {
    const digest = sha256(bytes);
    if (await this.hasBlob(digest, bytes.byteLength)) return { digest, size: bytes.byteLength };
    return this.writeBytes(bytes, { digest, size: bytes.byteLength });
  }

  /** The names in index.json (org.opencontainers.image.ref.name), in order. */
  async tags(): Promise<string[]> {
    const index = await this.readIndex();
    return index.manifests.flatMap((m) => {
      const name = m.annotations?.[REF_NAME_ANNOTATION];
      return name === undefined ? [] : [name];
    });
  }

  async readIndex(): Promise<ImageIndex> {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(this.indexPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new KilnError(
          'E_BAD_LAYOUT',
          `${this.dir} is not a complete OCI layout: index.json is missing`,
        );
      throw ioError(err, this.indexPath);
    }
    const parsed = parseManifest(bytes, `${this.dir}/index.json`, MediaType.OciIndex);
    if (parsed.kind !== 'index')
      throw new KilnError('E_BAD_LAYOUT', `${this.dir}/index.json is not an image index`);
    return parsed.index;
  }

  /** Read-modify-write of index.json under a lock, so parallel writers never lose each other's tags. */
  async updateIndex(change: (index: ImageIndex) => ImageIndex): Promise<void> {
    await withLock(this.indexPath, async () => {
      const next = change(await this.readIndex());
      await writeFileAtomic(this.indexPath, encodeJson(next));
    });
  }

  /**
   * Lists `desc` in index.json under `name` (the ref.name annotation), replacing what had that name.
   * Without a name the descriptor is listed untagged, once.
   */
  async tag(desc: Descriptor, name?: string): Promise<void> {
    await this.updateIndex((index) => {
      const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
      if (desc.platform) entry.platform = desc.platform;
      if (desc.artifactType) entry.artifactType = desc.artifactType;
      const annotations = { ...(desc.annotations ?? {}) };
      delete annotations[REF_NAME_ANNOTATION];
      if (name !== undefined) annotations[REF_NAME_ANNOTATION] = name;
      if (Object.keys(annotations).length > 0) entry.annotations = annotations;
      const manifests = index.manifests.filter((m) => {
        const ref = m.annotations?.[REF_NAME_ANNOTATION];
        if (name !== undefined) return ref !== name;
        return !(ref === undefined && m.digest === desc.digest);
      });
      manifests.push(entry);
      return { ...index, manifests };
    });
  }

  /** Finds the manifest named `name`; without a name, the only manifest in the layout. */
  async resolve(name?: string): Promise<Descriptor> {
    return findInIndex(await this.readIndex(), name, this.dir);
  }
}

/**
 * Picks a manifest out of a layout's index.json: by ref.name (the last one wins), else by digest;
 * without a name, the only one. Shared by `oci:` directories and `oci-archive:` files.
 */
export function findInIndex(index: ImageIndex, name: string | undefined, where: string): Descriptor {
  if (name !== undefined) {
    const hit = index.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] === name);
    if (hit.length > 0) return hit[hit.length - 1]!;
    const byDigest = name.includes(':') ? index.manifests.find((m) => m.digest === name) : undefined;
    if (byDigest) return byDigest;
    throw new KilnError('E_NOT_FOUND', `no image tagged '${name}' in ${where}`, { hint: tagsHint(index) });
  }
  // Referrer indexes (SBOMs, signatures) under their fallback tags describe an image; they are not one.
  const images = index.manifests.filter((m) => !isReferrersTag(m.annotations?.[REF_NAME_ANNOTATION]));
  if (images.length === 1) return images[0]!;
  if (images.length === 0) throw new KilnError('E_NOT_FOUND', `${where} holds no images`);
  throw new KilnError('E_AMBIGUOUS', `${where} holds ${images.length} images; name one with :TAG`, {
    hint: tagsHint(index),
  });
}

/**
 * The referrers fallback tag scheme (distribution spec 1.1): `<alg>-<hex>` of the subject; and
 * cosign's tags beside it, `<alg>-<hex>.sig`, `.att`, `.sbom`.
 */
export function isReferrersTag(tag: string | undefined): boolean {
  return tag !== undefined && /^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(\.(sig|att|sbom))?$/.test(tag);
}

function tagsHint(index: ImageIndex): string {
  const tags = index.manifests
    .map((m) => m.annotations?.[REF_NAME_ANNOTATION])
    .filter((t) => t !== undefined);
  return tags.length ? `tags here: ${tags.join(', ')}` : 'the layout has no tagged images';
}

/** Temp files older than this are taken to be left by a killed writer. */
export const STALE_TEMP_MS = 60 * 60_000;

const swept = new Set<string>();

/** What kiln itself puts at a layout's top: a half-made layout holding only these is finished, not refused. */
function isLayoutEntry(name: string): boolean {
  return (
    name === 'index.json' ||
    name === 'blobs' ||
    name === 'oci-layout' ||
    name.startsWith('.') ||
    isRootTemp(name) ||
    name === 'index.json.lock'
  );
}

/** writeFileAtomic's temp files, and locks set aside by withLock, for the layout's own files. */
function isRootTemp(name: string): boolean {
  return /^(?:index\.json|oci-layout)\.(?:tmp-|lock\.stale-)/.test(name);
}

/**
 * Removes temp files older than `maxAgeMs` that killed writers left in the layout at `dir`; returns
 * how many. Exported for tests.
 */
export async function removeStaleTemps(dir: string, maxAgeMs = STALE_TEMP_MS): Promise<number> {
  const candidates: string[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[]))
    if (isRootTemp(name)) candidates.push(path.join(dir, name));
  const blobs = path.join(dir, 'blobs');
  for (const algorithm of await fs.readdir(blobs).catch(() => [] as string[])) {
    if (algorithm.startsWith('.')) continue;
    for (const name of await fs.readdir(path.join(blobs, algorithm)).catch(() => [] as string[]))
      if (name.startsWith('.tmp-')) candidates.push(path.join(blobs, algorithm, name));
  }
  let removed = 0;
  for (const file of candidates) {
    const st = await fs.lstat(file).catch(() => undefined);
    if (!st?.isFile() || Date.now() - st.mtimeMs <= maxAgeMs) continue;
    await fs.rm(file, { force: true });
    removed++;
  }
  return removed;
}

function emptyIndex(): ImageIndex {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
}

/** Gathers small chunks (tar headers) into larger writes; large chunks go straight through. */
class CoalescingWriter {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  constructor(private readonly handle: fs.FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    if (this.pendingBytes >= 256 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    await this.handle.writeFile(data);
  }
}

/** Writes a small file through a temp name and rename, so readers never see half of it. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await fs.writeFile(tmp, data, { flag: 'wx' });
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}
