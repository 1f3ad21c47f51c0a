/**
 * Layers as values: `kiln diff LOWER UPPER` is one layer holding what UPPER adds or changes over
 * LOWER, with OCI whiteouts for what it deletes, so that LOWER's layers followed by the diff give
 * UPPER's filesystem. `kiln flatten` (flatten-image.ts) is the diff of an image over nothing.
 *
 * When LOWER's diff_ids are a prefix of UPPER's, the diff is UPPER's own remaining layers, reused.
 * Otherwise both images are flattened (flatten.ts) into maps of metadata and content digests (content
 * is never kept), and the diff is written sorted by path, its files' content read again from UPPER's
 * layers (LayerContent): in one forward pass over each layer, as layers are mostly sorted by path;
 * what a layer holds out of that order is spooled to a temporary file when passed over.
 */
import { closeSync, createReadStream, openSync, readSync, writeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { ioError, KilnError } from '../errors.js';
import { compareBytes } from '../layer/entries.js';
import { parallelGzip } from '../layer/gzip.js';
import { type ExpansionLimits, expansionLimits, layerStream } from '../layer/tar-reader.js';
import { defaultMtime } from '../layer/tar-writer.js';
import { type Digest, digesting, newHash } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import { verified } from '../oci/verify.js';
import type { OciLayout } from '../store/layout.js';
import type { ImageSource } from '../transport/types.js';
import {
  type ComposeResult,
  checkCreated,
  configPlatform,
  type DeriveOptions,
  derive,
  type LoadedImage,
  openImage,
} from './compose.js';
import {
  type ContentAt,
  checkLayers,
  collectIssue,
  type FlatEntry,
  type FlatIssue,
  type FlatItem,
  type FlattenOptions,
  flattenLayers,
  layerEntries,
  packFlatEntry,
  type RawEntry,
  writeFileAtomic,
} from './flatten.js';
import { Image } from './image.js';

// ---------------------------------------------------------------------------------------------------
// Trees: a flattened filesystem as metadata only

/** One inode of a flattened tree: every path that names it (hard links), its metadata, its content's digest. */
export interface Inode {
  /** The metadata as flattened (of the entry that carried the content); its `path` is not meaningful. */
  entry: FlatEntry;
  /** Everything that makes two inodes equal: type, mode, owners, mtime, link target, xattrs, content. */
  key: string;
  paths: string[];
  /** Where its content is in UPPER's layers (files). */
  at?: ContentAt;
  /** Where the content sits in the spool, when it was passed over before it was wanted. */
  spooled?: { start: number; size: number };
}

export type Tree = Map<string, Inode>;

function inodeKey(e: FlatEntry, digest: string): string {
  const xattrs = Object.entries(e.xattrs ?? {}).sort((a, b) => compareBytes(a[0], b[0]));
  return JSON.stringify([
    e.type,
    e.mode,
    e.uid,
    e.gid,
    e.mtime,
    e.linkname ?? '',
    e.devmajor ?? 0,
    e.devminor ?? 0,
    xattrs,
    e.type === 'file' ? e.size : 0,
    digest,
  ]);
}

/** Bytes the spool gathers before one write, and reads back at once. */
const SPOOL_BLOCK = 1 << 20;

/**
 * Content passed over before it is wanted: appended to one temporary file. Reads and writes are
 * synchronous, in blocks of up to 1 MiB: libuv's thread pool is busy gunzipping and gzipping, where
 * each small asynchronous call would queue behind a megabyte of compression.
 */
class Spool {
  private end = 0;
  /** Bytes not yet in the file, which go at `pendingAt`. */
  private pending: Buffer | undefined;
  private pendingLength = 0;
  private pendingAt = 0;

  private constructor(
    readonly dir: string,
    private readonly file: string,
    private readonly fd: number,
  ) {}

  static async create(): Promise<Spool> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-diff-')).catch((err) => {
      throw ioError(err, os.tmpdir());
    });
    const file = path.join(dir, 'spool');
    let fd: number;
    try {
      fd = openSync(file, 'wx+', 0o600);
    } catch (err) {
      await fs.rm(dir, { recursive: true, force: true });
      throw ioError(err, file);
    }
    return new Spool(dir, file, fd);
  }

  private flush(): void {
    let done = 0;
    while (done < this.pendingLength) {
      try {
        done += writeSync(this.fd, this.pending!, done, this.pendingLength - done, this.pendingAt + done);
      } catch (err) {
        throw ioError(err, `spool file ${this.file}`);
      }
    }
    this.pendingAt += this.pendingLength;
    this.pendingLength = 0;
  }

  /** Appends `content`; where it went, for `read`. */
  async write(content: AsyncIterable<Uint8Array>): Promise<{ start: number; size: number }> {
    const start = this.end;
    this.pending ??= Buffer.allocUnsafe(SPOOL_BLOCK);
    for await (const chunk of content) {
      let done = 0;
      while (done < chunk.byteLength) {
        if (this.pendingLength === SPOOL_BLOCK) this.flush();
        const n = Math.min(chunk.byteLength - done, SPOOL_BLOCK - this.pendingLength);
        this.pending.set(chunk.subarray(done, done + n), this.pendingLength);
        this.pendingLength += n;
        done += n;
      }
      this.end += chunk.byteLength;
    }
    return { start, size: this.end - start };
  }

  /** The bytes of `ref`, in fresh buffers of up to 1 MiB. */
  *read(ref: { start: number; size: number }): Generator<Buffer> {
    this.flush();
    for (let pos = ref.start; pos < ref.start + ref.size; ) {
      const buf = Buffer.allocUnsafe(Math.min(SPOOL_BLOCK, ref.start + ref.size - pos));
      let n: number;
      try {
        n = readSync(this.fd, buf, 0, buf.byteLength, pos);
      } catch (err) {
        throw ioError(err, `spool file ${this.file}`);
      }
      if (n === 0) throw ioError(new Error('spool file ended early'), this.file);
      pos += n;
      yield n === buf.byteLength ? buf : buf.subarray(0, n);
    }
  }

  async close(): Promise<void> {
    try {
      closeSync(this.fd);
    } catch {
      // removed below all the same
    }
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The content of UPPER's files, in the order the diff writes them: each layer read again from the
 * start (at most once), in step with the others; a wanted member passed over on the way to another
 * is spooled. The layers are verified against their digests again, read to the end at `finish`.
 */
class LayerContent {
  private readonly readers = new Map<number, AsyncIterator<RawEntry>>();
  /** Inodes whose content is still to come, by layer, by member index. */
  private readonly wanted = new Map<number, Map<number, Inode>>();

  constructor(
    private readonly source: ImageSource,
    private readonly layers: Descriptor[],
    private readonly limits: ExpansionLimits,
    private readonly spool: Spool,
    inodes: Iterable<Inode>,
  ) {
    for (const inode of inodes) {
      if (!inode.at) continue;
      let byIndex = this.wanted.get(inode.at.layer);
      if (!byIndex) {
        byIndex = new Map();
        this.wanted.set(inode.at.layer, byIndex);
      }
      byIndex.set(inode.at.index, inode);
    }
  }

  /** The content of `inode`: read, or abandoned, before the next call. */
  async content(inode: Inode): Promise<AsyncIterable<Buffer> | Iterable<Buffer>> {
    if (inode.spooled) return this.spool.read(inode.spooled);
    const at = inode.at;
    const wanted = at && this.wanted.get(at.layer);
    if (!at || !wanted?.has(at.index)) throw new Error(`diff: no content for ${inode.paths[0]}`);
    let reader = this.readers.get(at.layer);
    if (!reader) {
      const layer = this.layers[at.layer]!;
      reader = layerEntries(this.source, layer, at.layer, this.limits)[Symbol.asyncIterator]();
      this.readers.set(at.layer, reader);
    }
    for (;;) {
      const r = await reader.next();
      if (r.done) break;
      const raw = r.value;
      const other = wanted.get(raw.index);
      if (other === undefined) continue;
      wanted.delete(raw.index);
      if (other === inode) return raw.content;
      other.spooled = await this.spool.write(raw.content);
    }
    throw new Error(`diff: content of ${inode.paths[0]} was not found again`);
  }

  /** Reads what is left of each layer opened, for its digest check. */
  async finish(): Promise<void> {
    for (const reader of this.readers.values()) while (!(await reader.next()).done) {}
  }

  async close(): Promise<void> {
    for (const reader of this.readers.values()) await reader.return?.(undefined);
  }
}

/**
 * `source` as LayerContent reads it twice: a registry's blobs are kept in `dir` as they are first
 * read (compressed, as fetched), so they are not downloaded again; local sources are read again.
 */
function rereadable(source: ImageSource, dir: string): ImageSource {
  if (source.blobOrigin === undefined) return source;
  const kept = new Map<string, string>();
  return {
    name: source.name,
    resolve: () => source.resolve(),
    fetchManifest: (desc) => source.fetchManifest(desc),
    close: () => source.close(),
    async fetchBlob(desc) {
      const file = kept.get(desc.digest);
      if (file) return createReadStream(file);
      const blob = await source.fetchBlob(desc);
      const copy = path.join(dir, `blob-${kept.size}`);
      return (async function* () {
        const handle = await fs.open(copy, 'wx', 0o600).catch((err) => {
          throw ioError(err, copy);
        });
        try {
          for await (const chunk of blob) {
            await handle.writeFile(chunk).catch((err) => {
              throw ioError(err, copy);
            });
            yield chunk;
          }
        } finally {
          await handle.close();
        }
        kept.set(desc.digest, copy);
      })();
    },
  };
}

interface ScanOptions {
  /** False when nothing compares contents (an empty LOWER): digests are left empty, content unread. */
  hash?: boolean;
  issues: FlatIssue[];
}

/** Reads a flattened filesystem into a tree: metadata, where each file's content is, and its digest. */
export async function scanTree(items: AsyncIterable<FlatItem>, options: ScanOptions): Promise<Tree> {
  const tree: Tree = new Map();
  const set = (p: string, inode: Inode) => {
    const old = tree.get(p);
    if (old) old.paths = old.paths.filter((q) => q !== p);
    tree.set(p, inode);
    inode.paths.push(p);
  };
  for await (const item of items) {
    if (collectIssue(item, options.issues)) continue;
    const e = item.entry;
    if (e.type === 'hardlink') {
      const target = tree.get(e.linkname ?? '');
      if (target) set(e.path, target);
      else
        options.issues.push({ path: e.path, layer: e.layer, reason: 'hard link to nothing', unsafe: false });
      continue;
    }
    let digest = '';
    if (e.type === 'file' && options.hash !== false) {
      const hash = newHash();
      for await (const chunk of item.content ?? []) hash.update(chunk);
      digest = hash.digest('hex');
    }
    const inode: Inode = { entry: e, key: inodeKey(e, digest), paths: [] };
    if (item.at) inode.at = item.at;
    set(e.path, inode);
  }
  for (const inode of new Set(tree.values())) inode.paths.sort(compareBytes);
  return tree;
}

/** Directories implied by deeper paths but without an entry of their own (the root excluded). */
function implicitDirs(tree: Tree): Set<string> {
  const out = new Set<string>();
  for (const p of tree.keys())
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      const a = p.slice(0, i);
      if (!tree.has(a)) out.add(a);
    }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The plan: which entries and whiteouts the diff holds

export type PlanItem =
  | { kind: 'entry'; path: string; entry: FlatEntry; inode?: Inode }
  | { kind: 'whiteout'; path: string; target: string }
  | { kind: 'opaque'; path: string; dir: string };

/** How many paths an image diff found added, removed and changed. */
export interface DiffCounts {
  /** Paths UPPER has and LOWER has not. */
  added: number;
  /** Paths both have, with different type, metadata, content or hard links. */
  changed: number;
  /** Whiteouts: paths of LOWER gone from UPPER (only the topmost of a deleted subtree). */
  deleted: number;
  /** Opaque markers: directories whose every LOWER child is gone. */
  opaque: number;
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i === -1 ? '' : p.slice(0, i);
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Children of each directory in a tree (implicit directories included), by parent path. */
function childCounts(paths: Iterable<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of paths) if (p !== '') out.set(parentOf(p), (out.get(parentOf(p)) ?? 0) + 1);
  return out;
}

const OPAQUE_MIN = 2;

/**
 * The diff of two trees, sorted by path (parents before children, a hard link after its target).
 * An inode is written whole (all its paths) when any of its paths changed: its metadata, content, or
 * the set of paths sharing it. So a hard link in the diff always finds its target earlier in it.
 */
export function planDiff(lower: Tree, upper: Tree): { items: PlanItem[]; counts: DiffCounts } {
  const counts: DiffCounts = { added: 0, changed: 0, deleted: 0, opaque: 0 };
  const items: PlanItem[] = [];
  const changed = new Set<Inode>();
  for (const [p, u] of upper) {
    const l = lower.get(p);
    if (
      !l ||
      l.key !== u.key ||
      l.paths.length !== u.paths.length ||
      l.paths.some((q, i) => q !== u.paths[i])
    )
      changed.add(u);
  }
  for (const inode of changed) {
    const [first, ...rest] = inode.paths;
    if (first === undefined) continue;
    items.push({ kind: 'entry', path: first, entry: { ...inode.entry, path: first }, inode });
    for (const p of rest) {
      const { xattrs: _x, devmajor: _ma, devminor: _mi, ...meta } = inode.entry;
      items.push({
        kind: 'entry',
        path: p,
        entry: { ...meta, path: p, type: 'hardlink', size: 0, linkname: first },
      });
    }
    for (const p of inode.paths) {
      if (lower.has(p)) counts.changed++;
      else counts.added++;
    }
  }

  const upperImplicit = implicitDirs(upper);
  const lowerImplicit = implicitDirs(lower);
  // A directory UPPER implies where LOWER has something else: it must become a directory.
  const mtime = defaultMtime();
  for (const d of upperImplicit) {
    const l = lower.get(d);
    if (l && l.entry.type !== 'dir') {
      items.push({
        kind: 'entry',
        path: d,
        entry: { path: d, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime, layer: 0 },
      });
      counts.changed++;
    }
  }

  // Deleted: in LOWER (with its implied directories), in neither form in UPPER. Only the topmost.
  const exists = (p: string) => upper.has(p) || upperImplicit.has(p);
  const deleted = new Set<string>();
  for (const p of [...lower.keys(), ...lowerImplicit]) if (p !== '' && !exists(p)) deleted.add(p);
  const topmost: string[] = [];
  for (const p of deleted) {
    let hidden = false;
    for (let i = p.indexOf('/'); i !== -1 && !hidden; i = p.indexOf('/', i + 1)) {
      const a = p.slice(0, i);
      // Under a deleted directory, or under something UPPER made a non-directory (which hides it).
      hidden = deleted.has(a) || (upper.get(a)?.entry.type ?? 'dir') !== 'dir';
    }
    if (!hidden) topmost.push(p);
  }
  // A directory that lost every child of LOWER gets one opaque marker instead of a whiteout each:
  // nothing of LOWER survives below it, so everything UPPER has there is new and in the diff already.
  const lowerChildren = childCounts([...lower.keys(), ...lowerImplicit]);
  const gone = childCounts(topmost);
  for (const [dir, n] of gone)
    if (n >= OPAQUE_MIN && n === lowerChildren.get(dir)) {
      items.push({ kind: 'opaque', path: join(dir, '.wh..wh..opq'), dir });
      counts.opaque++;
    }
  for (const p of topmost) {
    const dir = parentOf(p);
    const n = gone.get(dir)!;
    if (n >= OPAQUE_MIN && n === lowerChildren.get(dir)) continue;
    items.push({
      kind: 'whiteout',
      path: join(dir, `.wh.${p.slice(dir === '' ? 0 : dir.length + 1)}`),
      target: p,
    });
    counts.deleted++;
  }
  items.sort((a, b) => compareBytes(a.path, b.path));
  return { items, counts };
}

// ---------------------------------------------------------------------------------------------------
// Writing a layer

/** The tar bytes `produce` packs, handed to `consume` as they come (back-pressure both ways). */
async function packTo<T>(
  produce: (pack: tar.Pack) => Promise<void>,
  consume: (bytes: AsyncIterable<Buffer>) => Promise<T>,
): Promise<T> {
  const pack = tar.pack();
  const producing = (async () => {
    try {
      await produce(pack);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error); // the tar must never look complete
      throw err;
    }
  })();
  producing.catch(() => {}); // awaited below
  let result: T;
  try {
    result = await consume(pack as unknown as AsyncIterable<Buffer>);
  } catch (err) {
    pack.destroy();
    const cause = await producing.then(
      () => undefined,
      (e: unknown) => e,
    );
    // A layer that could not be read is the cause; the writer's complaint is its consequence.
    throw cause instanceof KilnError ? cause : err;
  }
  await producing;
  return result;
}

export interface LayerBytes {
  /** sha256 of the uncompressed tar. */
  diffId: Digest;
  /** Digest and size of what was written (gzip or plain). */
  digest: Digest;
  size: number;
  gzip: boolean;
}

/** Where a layer goes: a store blob, or a file written under a temporary name and renamed. */
export type LayerSink = { store: OciLayout } | { file: string; gzip: boolean };

/**
 * One gzip member per core in flight, not parallelGzip's default of two: the tar comes from layers
 * being gunzipped on the same thread pool, whose small jobs would otherwise queue behind a full
 * pool of 1 MiB members. (The output's bytes do not depend on it.)
 */
const GZIP = { parallel: availableParallelism() };

/** Streams a tar through the diff_id hash and gzip (unless plain) into `sink`. */
async function writeLayerBytes(tarBytes: AsyncIterable<Uint8Array>, sink: LayerSink): Promise<LayerBytes> {
  const diff = digesting(tarBytes);
  if ('store' in sink) {
    const blob = await sink.store.writeBlob(parallelGzip(diff.stream, GZIP));
    return { diffId: diff.digest(), digest: blob.digest, size: blob.size, gzip: true };
  }
  const written = await writeFileHashed(sink.file, sink.gzip ? parallelGzip(diff.stream, GZIP) : diff.stream);
  return { diffId: diff.digest(), ...written, gzip: sink.gzip };
}

/** Writes a stream to `file` as writeFileAtomic does, with its digest and size. */
async function writeFileHashed(
  file: string,
  bytes: AsyncIterable<Uint8Array>,
): Promise<{ digest: Digest; size: number }> {
  const content = digesting(bytes);
  await writeFileAtomic(file, (out) => pipeline(Readable.from(content.stream), out));
  return { digest: content.digest(), size: content.size() };
}

export interface TreeDiffOptions extends FlattenOptions {
  /** An empty tree when absent: the diff is then the whole of UPPER (`kiln flatten`). */
  lower?: { source: ImageSource; layers: Descriptor[] };
  upper: { source: ImageSource; layers: Descriptor[] };
}

export interface TreeDiffResult extends LayerBytes {
  /** Entries in the layer, whiteouts and opaque markers included. */
  entries: number;
  counts: DiffCounts;
  /** Entries the flattening left out (unsafe paths, broken hard links), of LOWER then UPPER. */
  issues: FlatIssue[];
}

/** Flattens both sides and writes the diff as one sorted, deterministic layer into `sink`. */
export async function writeTreeDiff(options: TreeDiffOptions, sink: LayerSink): Promise<TreeDiffResult> {
  const limits = expansionLimits(options.limits);
  const flat: FlattenOptions = { onLayer: options.onLayer, limits };
  const issues: FlatIssue[] = [];
  const lower: Tree = options.lower
    ? await scanTree(flattenLayers(options.lower.source, options.lower.layers, flat), { issues })
    : new Map();
  const spool = await Spool.create();
  let content: LayerContent | undefined;
  try {
    const layers = options.upper.layers;
    const source = rereadable(options.upper.source, spool.dir);
    const upper = await scanTree(flattenLayers(source, layers, flat), { hash: lower.size > 0, issues });
    const plan = planDiff(lower, upper);
    const files = plan.items.flatMap((item) =>
      item.kind === 'entry' && item.inode && item.entry.type === 'file' && item.entry.size > 0
        ? [item.inode]
        : [],
    );
    const reader = new LayerContent(source, layers, limits, spool, files);
    content = reader;
    const mtime = defaultMtime();
    const written = await packTo(
      async (pack) => {
        for (const item of plan.items) {
          if (item.kind === 'entry') {
            const file = item.entry.type === 'file' && item.entry.size > 0 ? item.inode : undefined;
            await packFlatEntry(pack, item.entry, file ? await reader.content(file) : undefined);
          } else {
            const marker: FlatEntry = {
              path: item.path,
              type: 'file',
              mode: 0o644,
              uid: 0,
              gid: 0,
              size: 0,
              mtime,
              layer: 0,
            };
            await packFlatEntry(pack, marker, undefined);
          }
        }
        await reader.finish(); // before the tar is complete: a layer that changed fails the write
      },
      (bytes) => writeLayerBytes(bytes, sink),
    );
    return { ...written, entries: plan.items.length, counts: plan.counts, issues };
  } finally {
    await content?.close();
    await spool.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// kiln diff

/** Options of `diffImages`: the two images and what to compare. */
export interface DiffOptions extends DeriveOptions, TreeLayerOptions {
  /** Any source transport. */
  lower: string;
  upper: string;
  /** Writes an image: UPPER's config over the diff layers. One of `to` and `output`. */
  to?: string;
  /** Writes the diff as one layer file: gzip, or plain tar when the name ends in `.tar`. */
  output?: string;
  /** Chooses the images out of indexes (LOWER defaults to UPPER's platform). */
  platform?: Platform;
}

/** What diff and flatten take for the layer they write out of a flattened filesystem. */
export interface TreeLayerOptions {
  /** RFC 3339 time of the history entries; default SOURCE_DATE_EPOCH, else the epoch. */
  created?: string;
  /** Gzip bomb limits; default from the environment. */
  limits?: Partial<ExpansionLimits>;
  onLayer?: FlattenOptions['onLayer'];
}

/** A layer in a diff: its descriptor and diff_id. */
export interface DiffLayer {
  descriptor: Descriptor;
  diffId: Digest;
}

/** What `diffImages` found between the lower and the upper image. */
export interface DiffResult {
  lower: string;
  upper: string;
  /** The image manifests compared (chosen from indexes by platform). */
  lowerDigest: string;
  upperDigest: string;
  /** True when the diff is UPPER's own layers, reused byte for byte (LOWER's are a prefix of them). */
  reused: boolean;
  layers: DiffLayer[];
  /** Entries in the layer written; undefined when layers were reused as they are. */
  entries?: number;
  counts?: DiffCounts;
  issues: FlatIssue[];
  /** With `to`: where the image went and its root. */
  destination?: string;
  descriptor?: Descriptor;
  /** With `output`: the file written. */
  output?: string;
}

/** diff_ids as the config lists them, when they match the manifest's layers one for one. */
function diffIdsOf(image: LoadedImage): string[] | undefined {
  const ids = image.config.rootfs?.diff_ids;
  return Array.isArray(ids) && ids.length === image.manifest.layers.length ? ids : undefined;
}

function isGzipLayer(mediaType: string): boolean {
  return mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip');
}

/** The layer file name's choice: plain tar for `.tar`, else gzip. */
export function outputIsGzip(file: string): boolean {
  return !file.toLowerCase().endsWith('.tar');
}

/** The difference of two images as a layer (or UPPER's own layers), written as an image or a layer file. */
export async function diffImages(options: DiffOptions): Promise<DiffResult> {
  if ((options.to === undefined) === (options.output === undefined))
    throw new KilnError('E_USAGE', 'diff writes either an image (--to DST) or a layer file (--output FILE)');
  const created = checkCreated(options.created);
  const limits = expansionLimits(options.limits);
  return derive('kiln diff', options, async (composed) => {
    const up = await openImage(composed, options.upper, options.platform);
    const low = await openImage(composed, options.lower, options.platform, configPlatform(up.image.config));
    const lowerIds = diffIdsOf(low.image);
    const upperIds = diffIdsOf(up.image);
    const upperLayers = up.image.manifest.layers;
    const base = {
      lower: low.source.name,
      upper: up.source.name,
      lowerDigest: low.image.descriptor.digest,
      upperDigest: up.image.descriptor.digest,
    };

    let layers: DiffLayer[];
    let reused = false;
    let tree: TreeDiffResult | undefined;
    const prefix =
      lowerIds !== undefined &&
      upperIds !== undefined &&
      lowerIds.length < upperIds.length &&
      lowerIds.every((id, i) => id === upperIds[i]);
    const same =
      lowerIds !== undefined &&
      upperIds !== undefined &&
      lowerIds.length === upperIds.length &&
      lowerIds.every((id, i) => id === upperIds[i]);
    const rest = prefix ? upperLayers.slice(lowerIds!.length) : [];

    if (prefix && (options.to !== undefined || rest.length === 1)) {
      reused = true;
      layers = rest.map((descriptor, i) => ({
        descriptor,
        diffId: upperIds![lowerIds!.length + i] as Digest,
      }));
      for (const l of rest) composed.addBase(l, up.source);
      if (options.output !== undefined) checkLayers(rest, up.source.name);
      if (options.output !== undefined) await copyLayer(up.source, rest[0]!, options.output, limits);
    } else {
      const sink: LayerSink =
        options.output !== undefined
          ? { file: options.output, gzip: outputIsGzip(options.output) }
          : { store: composed.store };
      // Identical layers: the empty layer, without reading anything.
      const upper = { source: up.source, layers: same ? [] : upperLayers };
      const lower = { source: low.source, layers: same ? [] : low.image.manifest.layers };
      tree = await writeTreeDiff({ lower, upper, limits, onLayer: options.onLayer }, sink);
      const mediaType = tree.gzip ? MediaType.OciLayerGzip : MediaType.OciLayer;
      const descriptor: Descriptor = { mediaType, digest: tree.digest, size: tree.size };
      if ('store' in sink) composed.addOwn(descriptor);
      layers = [{ descriptor, diffId: tree.diffId }];
    }

    const result: DiffResult = {
      ...base,
      reused,
      layers,
      ...(tree ? { entries: tree.entries, counts: tree.counts } : {}),
      issues: tree?.issues ?? [],
    };
    if (options.output !== undefined) return { ...result, output: options.output };

    // A new manifest: OCI unless Docker v2 is asked for (a Docker upper's types renamed, same blobs).
    const image = Image.of(up.source, up.image)
      .withLayers(
        layers.map((l) => ({ ...l, source: reused ? up.source : undefined })),
        layers.map(() => ({ created, created_by: 'kiln diff' })),
      )
      .created(options.format);
    result.layers = image.layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId }));
    const descriptor = await image.write(composed);
    const written: ComposeResult = {
      destination: options.to!,
      descriptor: (await composed.writeTo(descriptor, options.to!)).descriptor,
    };
    return { ...result, ...written };
  });
}

/** One layer of a source as a file: its bytes as they are when the compression matches, else (un)compressed. */
async function copyLayer(
  source: ImageSource,
  layer: Descriptor,
  file: string,
  limits: ExpansionLimits,
): Promise<void> {
  const blob = verified(await source.fetchBlob(layer), layer, source.name);
  const gzip = outputIsGzip(file);
  if (gzip && isGzipLayer(layer.mediaType)) {
    await writeFileHashed(file, blob);
    return;
  }
  const plain = layerStream(blob, `layer ${layer.digest} of ${source.name}`, limits);
  await writeFileHashed(file, gzip ? parallelGzip(plain) : plain);
}
