/**
 * The flattened filesystem of an image: its layers applied as the OCI image spec says (bottom to top,
 * `.wh.NAME` whiteouts, `.wh..wh..opq` opaque directories, later layers win), as one stream of entries.
 *
 * Layers are walked top to bottom and each entry is yielded only if nothing above shadows it, so every
 * layer is read once, in one pass, and no content is held in memory; only paths are remembered.
 * Hard links are yielded after their target (a link whose target lives in a lower layer waits for it),
 * and a link whose target was later replaced or deleted gets the target's old content, as it would
 * after applying the layers in order.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import type { KilnContext } from '../context.js';
import { ioError, KilnError } from '../errors.js';
import { packEntry } from '../layer/tar-pack.js';
import {
  type ExpansionLimits,
  expansionLimits,
  layerStream,
  type TarEntryInfo,
  tarEntryType,
} from '../layer/tar-reader.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import { verified } from '../oci/verify.js';
import { openSource } from '../transport/open.js';
import type { ImageSource } from '../transport/types.js';
import { type ResolvedImage, resolveImage, selectManifest } from './resolve.js';

export type FlatEntryType = Exclude<TarEntryInfo['type'], 'other'>;

/**
 * One entry of the flattened filesystem: a tar entry whose path is relative posix (no leading `/` or
 * `./`, no `.` or `..` segments; `''` is the root), mode the permission bits (with setuid/setgid/sticky)
 * without the file type, size 0 for anything but files, and a hard link's `linkname` the path of an
 * entry yielded before it.
 */
export interface FlatEntry extends Omit<TarEntryInfo, 'type'> {
  type: FlatEntryType;
  /** Extended attributes from PAX `SCHILY.xattr.NAME` records (values as tar-stream decodes them: UTF-8). */
  xattrs?: Record<string, string>;
  /** Index in the manifest's layers of the layer the entry comes from (0 is the bottom). */
  layer: number;
}

/** An entry left out: `unsafe` when its path (or link target) leaves the root. */
export interface FlatIssue {
  path: string;
  layer: number;
  reason: string;
  unsafe: boolean;
}

/** An entry of the merged filesystem (with its content), or an issue met while merging. */
export type FlatItem =
  /**
   * `content` (files only) must be read, or abandoned, before asking for the next item; `at` says
   * where it was read from, for reading it again (see `layerEntries`).
   */
  | { kind: 'entry'; entry: FlatEntry; content?: AsyncIterable<Buffer>; at?: ContentAt }
  | ({ kind: 'issue' } & FlatIssue);

/** Moves an issue item into `issues`; true when it was one (and the caller moves on). */
export function collectIssue(item: FlatItem, issues: FlatIssue[]): item is { kind: 'issue' } & FlatIssue {
  if (item.kind !== 'issue') return false;
  const { kind: _kind, ...issue } = item;
  issues.push(issue);
  return true;
}

/** Where a file's content is: the `index`th member (from 0) of the tar of layer `layer`. */
export interface ContentAt {
  layer: number;
  index: number;
}

const OPAQUE = '.wh..wh..opq';
const WHITEOUT = '.wh.';
const WASM_LAYERS = new Set<string>([MediaType.WasmLayer, MediaType.WasmToOciLayer, MediaType.IstioOciLayer]);

/**
 * Normalises a member name the way tar does: leading `/` and `./` dropped, empty and `.` segments
 * removed. Undefined when a `..` segment remains (GNU tar refuses those too: with a symlink among the
 * earlier segments, even `a/../b` can land anywhere).
 */
export function flatPath(name: string): string | undefined {
  if (name.includes('\0')) return undefined;
  const parts: string[] = [];
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') return undefined;
    parts.push(seg);
  }
  return parts.join('/');
}

/** Fails early, before anything is written, on layers kiln cannot read as filesystem tars. */
export function checkLayers(layers: Descriptor[], where: string): void {
  layers.forEach((layer, i) => {
    if (WASM_LAYERS.has(layer.mediaType))
      throw new KilnError(
        'E_UNSUPPORTED',
        `${where}: layer ${i} (${layer.mediaType}) is a WebAssembly module, not a filesystem tar`,
        { hint: 'this is a Wasm artifact; `kiln inspect` shows its layers' },
      );
  });
}

/** Shortens a (hostile) path for messages and reports: names may be megabytes long. */
export function shownPath(p: string): string {
  return p.length > 256 ? `${p.slice(0, 200)}... (${Buffer.byteLength(p)} bytes)` : p;
}

export interface RawEntry {
  header: tar.Header;
  content: AsyncIterable<Buffer>;
  /** Its place among the members of the layer's tar, from 0. */
  index: number;
}

/**
 * The entries of one layer, its digest verified as it streams (a mismatch fails after the last
 * entry), decompressed (gzip or zstd, by its magic) within `limits`.
 */
export async function* layerEntries(
  source: ImageSource,
  layer: Descriptor,
  index: number,
  limits: ExpansionLimits,
): AsyncGenerator<RawEntry> {
  const what = `layer ${index} (${layer.digest}) of ${source.name}`;
  const bytes = layerStream(verified(await source.fetchBlob(layer), layer, source.name), what, limits);
  const extract = tar.extract();
  const fed = pipeline(Readable.from(bytes), extract).then(
    () => undefined,
    (err: unknown) => err ?? new Error('unknown error'),
  );
  // The feed's error is the cause (a digest mismatch, bad gzip, a limit); the extractor's, and an
  // entry's "stream was destroyed", are consequences.
  const failure = async (err: unknown): Promise<KilnError> => {
    const cause = (await fed) ?? err;
    if (cause instanceof KilnError) return cause;
    return new KilnError('E_BAD_TAR', `${what} is not a readable tar stream: ${(cause as Error).message}`, {
      cause,
    });
  };
  let finished = false;
  let member = 0;
  try {
    for await (const entry of extract) {
      const content = failingWith(entry as AsyncIterable<Buffer>, failure);
      yield { header: entry.header, content, index: member++ };
      for await (const _ of entry) {
        // skip what the consumer left unread
      }
    }
    const err = await fed;
    if (err) throw err;
    finished = true;
  } catch (err) {
    throw await failure(err);
  } finally {
    if (!finished) extract.destroy();
  }
}

/** An entry's content whose read errors (a layer cut short) become the layer's error. */
function failingWith(
  content: AsyncIterable<Buffer>,
  failure: (err: unknown) => Promise<KilnError>,
): AsyncIterable<Buffer> {
  return {
    [Symbol.asyncIterator]() {
      const it = content[Symbol.asyncIterator]();
      return {
        async next() {
          try {
            return await it.next();
          } catch (err) {
            throw await failure(err);
          }
        },
        async return(value?: unknown) {
          return (await it.return?.(value)) ?? { done: true, value: undefined };
        },
      };
    },
  };
}

/** Links that share one inode whose content is not (yet) in the output under a path of its own. */
interface Group {
  links: string[];
  /** The path the links point at once it has been yielded. */
  resolved?: string;
  /** Set when merged into another group. */
  forward?: Group;
  /** The layer that asked; its own whiteouts do not break the request. */
  layer: number;
}

function find(g: Group): Group {
  let r = g;
  while (r.forward) r = r.forward;
  return r;
}

/** What a path of the layer being read is, for hard links made later in the same layer. */
type Identity =
  | { kind: 'emitted'; path: string }
  | { kind: 'group'; group: Group }
  | { kind: 'shadowed'; index: number }
  | { kind: 'alias'; target: string } // a hard link nobody needed yet: resolved only if asked
  | { kind: 'dir' }
  | { kind: 'gone' };

/** True when a proper ancestor of `p` (the root included) is in `set`. */
function underAny(set: Set<string>, p: string): boolean {
  if (set.size === 0 || p === '') return false;
  if (set.has('')) return true;
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) if (set.has(p.slice(0, i))) return true;
  return false;
}

function addAncestors(set: Set<string>, p: string): void {
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) set.add(p.slice(0, i));
}

/** Largest uid/gid chown(2) takes ((uid_t)-1 means "unchanged"). */
const MAX_ID = 0xfffffffe;
/** Times beyond ±2^33 s (about the year 2242) are refused by some system calls; none are real. */
const MAX_TIME = 2 ** 33;

function toEntry(raw: RawEntry, p: string, type: FlatEntryType, layer: number): FlatEntry {
  const h = raw.header;
  const pax = (h.pax ?? {}) as Record<string, string | undefined>;
  // PAX records are free text: an owner or a time no system call takes falls back to the header's.
  const id = (v: string | number | undefined): number | undefined => {
    const n = typeof v === 'string' ? (/^\d+$/.test(v) ? Number(v) : Number.NaN) : v;
    return n !== undefined && Number.isSafeInteger(n) && n >= 0 && n <= MAX_ID ? n : undefined;
  };
  const time = (v: string | number | undefined): number | undefined => {
    const n = typeof v === 'string' ? Number(v) : v;
    return n !== undefined && Number.isFinite(n) && Math.abs(n) <= MAX_TIME ? Math.floor(n) : undefined;
  };
  const entry: FlatEntry = {
    path: p,
    type,
    mode: (h.mode ?? 0) & 0o7777,
    uid: id(pax.uid) ?? id(h.uid) ?? 0,
    gid: id(pax.gid) ?? id(h.gid) ?? 0,
    size: type === 'file' ? (h.size ?? 0) : 0,
    mtime: time(pax.mtime) ?? time(h.mtime ? h.mtime.getTime() / 1000 : undefined) ?? 0,
    layer,
  };
  if (type === 'symlink' || type === 'hardlink') entry.linkname = h.linkname ?? '';
  if (type === 'char' || type === 'block') {
    entry.devmajor = h.devmajor ?? 0;
    entry.devminor = h.devminor ?? 0;
  }
  const xattrs = paxXattrs(pax);
  if (xattrs) entry.xattrs = xattrs;
  return entry;
}

const XATTR = 'SCHILY.xattr.';

/** The `SCHILY.xattr.*` records of a PAX header (GNU tar, Go, BuildKit write these), keys sorted. */
export function paxXattrs(pax: Record<string, string | undefined>): Record<string, string> | undefined {
  const keys = Object.keys(pax)
    .filter((k) => k.startsWith(XATTR) && k.length > XATTR.length && typeof pax[k] === 'string')
    .sort();
  if (keys.length === 0) return undefined;
  return Object.fromEntries(keys.map((k) => [k.slice(XATTR.length), pax[k]!]));
}

export interface FlattenOptions {
  /** Called before each layer is read (for progress). */
  onLayer?: (index: number, layer: Descriptor) => void;
  /** Gzip bomb limits; default from the environment (see expansionLimits). */
  limits?: Partial<ExpansionLimits>;
}

/**
 * Yields the flattened filesystem of `layers` (bottom first, as in a manifest) read from `source`.
 * Order: top layer's entries first; a lower directory's entry may come after entries inside it, so a
 * writer creates missing parents and sets directory metadata at the end, as tar does.
 */
export async function* flattenLayers(
  source: ImageSource,
  layers: Descriptor[],
  options: FlattenOptions = {},
): AsyncGenerator<FlatItem> {
  checkLayers(layers, source.name);
  const limits = expansionLimits(options.limits);
  // Paths decided by the layers above the one being read.
  const covered = new Set<string>(); // an entry or whiteout at exactly this path
  const hiddenBelow = new Set<string>(); // everything strictly below is hidden (whiteout, opaque, non-dir)
  const dirsAbove = new Set<string>(); // a directory here (maybe implied by a child), so no file below
  // Hard links waiting for their target in a lower layer, by target path.
  const pending = new Map<string, Group>();
  // Targets that were passed over before a link to them turned up: read again at the end.
  const repairs = new Map<number, Map<number, Group>>();

  function* linkTo(links: string[], target: string, layer: number): Generator<FlatItem> {
    for (const l of links)
      yield {
        kind: 'entry',
        entry: {
          path: l,
          type: 'hardlink',
          mode: 0,
          uid: 0,
          gid: 0,
          size: 0,
          mtime: 0,
          linkname: target,
          layer,
        },
      };
  }

  function* broken(links: string[], layer: number, reason: string): Generator<FlatItem> {
    for (const l of links) yield { kind: 'issue', path: shownPath(l), layer, reason, unsafe: false };
  }

  /** Gives the links of `g` the content of `raw`: the first gets a copy, the others link to it. */
  function* adopt(g: Group, raw: RawEntry, type: FlatEntryType, layer: number): Generator<FlatItem> {
    const [first, ...rest] = g.links;
    if (first === undefined) return;
    g.links = [];
    g.resolved = first;
    const entry = toEntry(raw, first, type, layer);
    yield type === 'file'
      ? { kind: 'entry', entry, content: raw.content, at: { layer, index: raw.index } }
      : { kind: 'entry', entry };
    yield* linkTo(rest, first, layer);
  }

  /** Joins `links` (or a whole group) to an identity, yielding the links that can be written now. */
  function* join(id: Identity, links: string[], layer: number, from?: Group): Generator<FlatItem> {
    switch (id.kind) {
      case 'emitted':
        if (from) {
          from.resolved = id.path;
          from.links = [];
        }
        yield* linkTo(links, id.path, layer);
        return;
      case 'group': {
        const g = find(id.group);
        if (from && find(from) === g) return;
        if (g.resolved !== undefined) {
          if (from) {
            from.resolved = g.resolved;
            from.links = [];
          }
          yield* linkTo(links, g.resolved, layer);
          return;
        }
        g.links.push(...links);
        if (from) {
          from.links = [];
          from.forward = g;
          g.layer = Math.min(g.layer, from.layer);
        }
        return;
      }
      case 'dir':
        yield* broken(links, layer, 'hard link to a directory');
        return;
      default:
        yield* broken(links, layer, 'hard link to an entry that was refused');
    }
  }

  for (let i = layers.length - 1; i >= 0; i--) {
    const layer = layers[i]!;
    options.onLayer?.(i, layer);
    const records = new Map<string, Identity>();
    const layerCovered = new Set<string>();
    const layerHidden = new Set<string>();
    const layerDirs = new Set<string>();
    const whiteouts = new Set<string>();

    /** What `target` is right now in this layer: an earlier entry here, else whatever is below. */
    const identityOf = (target: string, hops = 0): Identity => {
      const rec = records.get(target);
      if (rec?.kind === 'alias') {
        // A chain of links in one layer; a cycle (only in a broken tar) resolves to nothing.
        const id = hops > 64 ? ({ kind: 'gone' } as const) : identityOf(rec.target, hops + 1);
        records.set(target, id);
        return id;
      }
      if (rec === undefined) {
        let g = pending.get(target);
        if (g) g = find(g);
        else {
          g = { links: [], layer: i };
          pending.set(target, g);
        }
        return { kind: 'group', group: g };
      }
      if (rec.kind !== 'shadowed') return rec;
      // Passed over already: its content is fetched again after the last layer.
      const g: Group = { links: [], layer: i };
      let byIndex = repairs.get(i);
      if (!byIndex) {
        byIndex = new Map();
        repairs.set(i, byIndex);
      }
      byIndex.set(rec.index, g);
      const id: Identity = { kind: 'group', group: g };
      records.set(target, id);
      return id;
    };

    for await (const raw of layerEntries(source, layer, i, limits)) {
      const index = raw.index;
      const h = raw.header;
      const p = flatPath(h.name);
      if (p === undefined) {
        yield {
          kind: 'issue',
          path: shownPath(h.name),
          layer: i,
          reason: 'path leaves the root (..)',
          unsafe: true,
        };
        continue;
      }
      const hidden = underAny(hiddenBelow, p);
      const type = tarEntryType(h.type);
      if (type === undefined) {
        if (!hidden && !covered.has(p))
          yield {
            kind: 'issue',
            path: shownPath(p),
            layer: i,
            reason: `unsupported tar entry type ${h.type}`,
            unsafe: false,
          };
        continue;
      }
      const slash = p.lastIndexOf('/');
      const parent = slash === -1 ? '' : p.slice(0, slash);
      const base = p.slice(slash + 1);

      if (base.startsWith(WHITEOUT)) {
        // Whiteouts act on the layers below only, never on entries of their own layer.
        if (hidden) continue;
        addAncestors(layerDirs, p);
        if (base === OPAQUE) layerHidden.add(parent);
        else if (base !== WHITEOUT && !base.startsWith(`${WHITEOUT}${WHITEOUT}`)) {
          // `.wh..wh.*` other than the opaque marker is aufs bookkeeping: ignored, as runtimes do.
          const target =
            parent === '' ? base.slice(WHITEOUT.length) : `${parent}/${base.slice(WHITEOUT.length)}`;
          layerCovered.add(target);
          layerHidden.add(target);
          whiteouts.add(target);
        }
        continue;
      }
      if (p === '' && type !== 'dir') {
        yield {
          kind: 'issue',
          path: shownPath(h.name),
          layer: i,
          reason: 'the root is not a directory',
          unsafe: false,
        };
        continue;
      }

      if (!hidden) {
        layerCovered.add(p);
        if (type !== 'dir') layerHidden.add(p);
        addAncestors(layerDirs, p);
      }
      const visible = !hidden && !covered.has(p) && !(type !== 'dir' && dirsAbove.has(p));
      const waiting = pending.get(p);
      if (waiting) pending.delete(p);

      if (type === 'hardlink') {
        const target = flatPath(h.linkname ?? '');
        if (target === undefined || target === '' || target === p) {
          records.set(p, { kind: 'gone' });
          const unsafe = target === undefined;
          const reason = unsafe
            ? `hard link target ${shownPath(h.linkname ?? '')} leaves the root (..)`
            : 'hard link without a usable target';
          if (visible) yield { kind: 'issue', path: shownPath(p), layer: i, reason, unsafe };
          if (waiting) yield* broken(find(waiting).links, i, reason);
          continue;
        }
        if (!visible && !waiting) {
          // Resolving now could mean re-reading this layer for a link that is never written.
          records.set(p, { kind: 'alias', target });
          continue;
        }
        const id = identityOf(target);
        records.set(p, id);
        if (visible) yield* join(id, [p], i);
        if (waiting) {
          const w = find(waiting);
          yield* join(id, w.links, i, w);
        }
        continue;
      }

      if (type === 'dir') {
        records.set(p, { kind: 'dir' });
        if (waiting) yield* broken(find(waiting).links, i, 'hard link to a directory');
        if (visible) yield { kind: 'entry', entry: toEntry(raw, p, type, i) };
        continue;
      }

      if (visible) {
        const entry = toEntry(raw, p, type, i);
        yield type === 'file'
          ? { kind: 'entry', entry, content: raw.content, at: { layer: i, index: raw.index } }
          : { kind: 'entry', entry };
        records.set(p, { kind: 'emitted', path: p });
        if (waiting) {
          const w = find(waiting);
          w.resolved = p;
          yield* linkTo(w.links, p, i);
          w.links = [];
        }
      } else if (waiting) {
        const w = find(waiting);
        records.set(p, { kind: 'group', group: w });
        yield* adopt(w, raw, type, i);
      } else {
        records.set(p, { kind: 'shadowed', index });
      }
    }

    // A link from above whose target this layer deleted has nothing to point at.
    for (const [target, g] of pending) {
      const w = find(g);
      if (w.layer > i && (whiteouts.has(target) || underAny(layerHidden, target))) {
        pending.delete(target);
        yield* broken(w.links, i, `hard link target ${target} was deleted by layer ${i}`);
      }
    }
    for (const p of layerCovered) covered.add(p);
    for (const p of layerHidden) hiddenBelow.add(p);
    for (const p of layerDirs) dirsAbove.add(p);
  }

  for (const [target, g] of pending)
    yield* broken(find(g).links, 0, `hard link target ${target} is in no layer`);

  // Rare: a link came after its target in the same layer, and a higher layer had replaced the target.
  for (const [i, byIndex] of [...repairs].sort((a, b) => b[0] - a[0])) {
    const wanted = new Map([...byIndex].filter(([, g]) => find(g).links.length > 0));
    if (wanted.size === 0) continue;
    for await (const raw of layerEntries(source, layers[i]!, i, limits)) {
      const g = wanted.get(raw.index);
      if (!g) continue;
      const type = tarEntryType(raw.header.type);
      if (type === undefined || type === 'dir' || type === 'hardlink') continue;
      yield* adopt(find(g), raw, type, i);
    }
  }
}

/** Resolves `src` to one image, choosing `platform` from an index (else the host's, else the only one). */
async function resolveFor(source: ImageSource, platform: Platform | undefined): Promise<ResolvedImage> {
  return resolveImage(source, (index) => selectManifest(index, platform, source.name));
}

/**
 * Opens `src` (unless it is a source already, with `context`), resolves the image (`platform` from
 * an index), and runs `fn`; closes what it opened.
 */
export async function withImage<T>(
  src: string | ImageSource,
  { platform, context }: { platform?: Platform; context?: KilnContext },
  fn: (source: ImageSource, image: ResolvedImage) => Promise<T>,
): Promise<T> {
  const source = typeof src === 'string' ? await openSource(src, { context }) : src;
  try {
    const image = await resolveFor(source, platform);
    checkLayers(image.manifest.layers, source.name);
    return await fn(source, image);
  } finally {
    if (typeof src === 'string') await source.close();
  }
}

export interface WriteFlatResult {
  entries: number;
  issues: FlatIssue[];
}

/** Writes `file` through `write` under a temporary name, renamed when complete; nothing is left on failure. */
export async function writeFileAtomic<T>(file: string, write: (out: Writable) => Promise<T>): Promise<T> {
  const target = path.resolve(file);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.kiln-${process.pid}-${Date.now()}`);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(tmp, 'wx', 0o644);
  } catch (err) {
    throw ioError(err, file);
  }
  try {
    const result = await write(handle.createWriteStream());
    await fs.rename(tmp, target);
    return result;
  } catch (err) {
    await fs.rm(tmp, { force: true });
    if (err instanceof KilnError) throw err;
    throw ioError(err, file);
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * Writes flattened entries to `out` as one tar. Entries keep their modes, owners and mtimes.
 * Directory entries (metadata only, so cheap to hold) go last, deepest first: a lower layer's files
 * land in directories an upper layer defined, and an extractor that set a directory's mtime or a
 * read-only mode on the spot would see it changed or be stopped by it.
 */
export async function writeFlatTar(
  items: AsyncIterable<FlatItem>,
  out: NodeJS.WritableStream,
  options: { end?: boolean } = {},
): Promise<WriteFlatResult> {
  const pack = tar.pack();
  const piped = pipeline(pack, out as Writable, { end: options.end ?? true });
  piped.catch(() => {}); // awaited below; an early failure also ends the loop through the entry callbacks
  const result: WriteFlatResult = { entries: 0, issues: [] };
  const dirs = new Map<string, FlatEntry>();
  try {
    for await (const item of items) {
      if (collectIssue(item, result.issues)) continue;
      const e = item.entry;
      if (e.type === 'dir') dirs.set(e.path, e);
      else {
        dirs.delete(e.path);
        await packFlatEntry(pack, e, item.content);
      }
      result.entries++;
    }
    const order = [...dirs.values()].sort((a, b) => depth(b.path) - depth(a.path));
    for (const e of order) await packFlatEntry(pack, e, undefined);
  } catch (err) {
    // A half-written tar must not end with the end-of-archive blocks: readers then see it is cut short.
    pack.destroy(err as Error);
    const failed = await piped.then(
      () => undefined,
      (e: unknown) => e,
    );
    // When the output failed first, that is the cause; tar-stream's complaint is a consequence.
    throw err instanceof KilnError || failed === undefined ? err : failed;
  }
  pack.finalize();
  await piped;
  return result;
}

const MAX_USTAR_ID = 0o777777;

/** Slashes in a path; the root (`''`) is shallower than anything. */
function depth(p: string): number {
  if (p === '') return -1;
  let n = 0;
  for (const c of p) if (c === '/') n++;
  return n;
}

/** Writes one flattened entry (a file's bytes from `content`) with its owners, mtime and xattrs. */
export async function packFlatEntry(
  pack: tar.Pack,
  e: FlatEntry,
  content: AsyncIterable<Buffer> | Iterable<Buffer> | undefined,
): Promise<void> {
  const type = (
    {
      file: 'file',
      dir: 'directory',
      symlink: 'symlink',
      hardlink: 'link',
      char: 'character-device',
      block: 'block-device',
      fifo: 'fifo',
    } as const
  )[e.type];
  const header: Partial<tar.Header> & { name: string } = {
    name: e.path === '' ? './' : e.type === 'dir' ? `${e.path}/` : e.path,
    type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.type === 'file' ? e.size : 0,
    mtime: new Date(Math.max(0, e.mtime) * 1000),
  };
  if (e.linkname !== undefined) header.linkname = e.linkname;
  if (e.devmajor !== undefined) header.devmajor = e.devmajor;
  if (e.devminor !== undefined) header.devminor = e.devminor;
  const pax: Record<string, string> = {};
  // tar-stream writes ids as 6 octal digits; larger ones go in a PAX header, as GNU tar does.
  if (e.uid > MAX_USTAR_ID || e.gid > MAX_USTAR_ID) {
    pax.uid = String(e.uid);
    pax.gid = String(e.gid);
    header.uid = Math.min(e.uid, MAX_USTAR_ID);
    header.gid = Math.min(e.gid, MAX_USTAR_ID);
  }
  // Sorted, so the same attributes always encode the same bytes.
  for (const k of Object.keys(e.xattrs ?? {}).sort()) pax[`${XATTR}${k}`] = e.xattrs![k]!;
  if (Object.keys(pax).length > 0) header.pax = pax;
  await packEntry(pack, header, e.type === 'file' ? content : undefined);
}

/** Options of `exportImage`: the image and the tar to write its merged filesystem to. */
export interface ExportOptions {
  platform?: Platform;
  /** Called before each layer is read (for progress). */
  onLayer?: (index: number, layer: Descriptor) => void;
  /** Gzip bomb limits; default from the environment (see expansionLimits). */
  limits?: Partial<ExpansionLimits>;
  /** Registry settings and connections, the abort signal; default: a context for this call. */
  context?: KilnContext;
}

/** What `exportImage` wrote: the image read, its layers and the entries written. */
export interface ExportResult {
  source: string;
  /** The image manifest exported (chosen from an index by platform). */
  digest: string;
  layers: number;
  /** Entries written. */
  entries: number;
  /** Entries left out; `unsafe` ones had paths leaving the root. */
  issues: FlatIssue[];
}

/**
 * Writes the flattened filesystem of an image as one tar to `output`: a file path (written under a
 * temporary name and renamed, so a failure leaves nothing at that path) or a stream (not ended).
 */
export async function exportImage(
  src: string | ImageSource,
  output: string | NodeJS.WritableStream,
  options: ExportOptions = {},
): Promise<ExportResult> {
  const limits = expansionLimits(options.limits); // a bad KILN_MAX_* fails before anything is opened
  return withImage(src, options, async (source, image) => {
    const layers = image.manifest.layers;
    const items = flattenLayers(source, layers, { onLayer: options.onLayer, limits });
    let written: WriteFlatResult;
    if (typeof output === 'string') {
      written = await writeFileAtomic(output, (out) => writeFlatTar(items, out));
    } else {
      written = await writeFlatTar(items, output, { end: false });
    }
    return {
      source: source.name,
      digest: image.descriptor.digest,
      layers: layers.length,
      entries: written.entries,
      issues: written.issues,
    };
  });
}
